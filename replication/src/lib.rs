//! Spate's partition replication, sans I/O: the leader and follower state machines of one partition.
//!
//! # Role
//!
//! Each partition has replicas on several brokers; the controller (the metadata quorum, `spate-controller`)
//! names its leader, leader epoch, partition epoch and in-sync replicas (ISR). Followers fetch from the
//! leader; the leader counts what every ISR member has into the high watermark (HW), below which records
//! are committed: consumers read them, acks=all producers are answered, and only ISR members can become
//! leader, so committed records survive leader changes. This crate is that protocol, Kafka's
//! (`Partition.scala`, `ReplicaFetcherThread`, KIP-101/279/320 truncation by leader epoch, KIP-497
//! AlterPartition), in the shape of raft-rs: one [`Replica`] per partition per broker, fed events, handing
//! back actions. It does no I/O, reads no clock, keeps no record bytes and spawns nothing, so the same
//! code runs in the broker and in `tests/sim.rs`, a seeded simulator of three brokers, a model controller,
//! lossy networks and crashing disks.
//!
//! # Events and actions
//!
//! [`Replica::step`] takes an [`Event`] and returns [`Action`]s, to be carried out in order:
//!
//! | event | from | typical actions |
//! |---|---|---|
//! | `Metadata` | the controller's image | `SendFetch` (new follower), `CompleteWaiter` (lost leadership) |
//! | `Tick` | a timer | `SendFetch` (retry), `ProposeIsr` (lagging member out), `CompleteWaiter` (timeout) |
//! | `LeaderAppended`, `AwaitAcks` | the produce path, after [`Replica::check_produce`] | `HighWatermark`, `CompleteWaiter` |
//! | `Flushed` | the log's fsync | `HighWatermark` under [`AckDurability::ReplicatedAndFlushed`] |
//! | `FetchRequest` | a follower | `AnswerFetch` (records from an offset, a diverging epoch, or an error), `ProposeIsr` (caught-up replica in) |
//! | `FetchResponse` | the leader | `Append`, `Truncate`, `HighWatermark`, `SendFetch` |
//! | `AlterPartitionResponse` | the controller | as `Metadata` when accepted |
//!
//! The leader never reads its log through the core: `AnswerFetch` says where to read from. The follower's
//! `Append`/`Truncate` must be done before the next event (the core counts them in its log end at once);
//! durability is reported back later with `Flushed`.
//!
//! # Rules (Kafka's semantics)
//!
//! - HW = min over the *maximal* ISR (the controller's ISR ∪ a pending proposal's additions) of each
//!   member's log end from its last fetch in this leader epoch (or its durable end under
//!   `ReplicatedAndFlushed`; the leader's own end likewise). It never goes backwards on a leader, and a
//!   member that has not fetched in this epoch holds it.
//! - A follower is caught up at a fetch at or beyond the leader's end at that time (or beyond the end at
//!   its previous fetch: Kafka's `lastCaughtUpTimeMs`); an ISR member not caught up for
//!   `replica_lag_time_max_ms` is proposed out; a replica at or past the HW and this epoch's start is
//!   proposed in. One proposal at a time, carrying the partition epoch; the ISR changes only when the
//!   controller's state says so.
//! - acks=all: refused before appending if the ISR is below `min.insync.replicas`; answered OK when HW ≥
//!   last offset + 1 and the maximal ISR is at least `min.insync.replicas`, else
//!   `NOT_ENOUGH_REPLICAS_AFTER_APPEND`; `REQUEST_TIMED_OUT` at the timeout; `NOT_LEADER_OR_FOLLOWER` when
//!   leadership moves.
//! - Fetch validation: an older epoch is `FENCED_LEADER_EPOCH`, a newer one `UNKNOWN_LEADER_EPOCH`; a
//!   (last fetched epoch, fetch offset) the leader's epoch history contradicts gets the diverging epoch
//!   and its end offset; the follower truncates to the smaller of that and its own end for the epoch,
//!   never by HW. Follower HW = min(leader HW, own log end), never backwards except by truncation.
//! - Epochs come only from the controller. A replica told to lead an epoch its log already has refuses
//!   (it led that epoch before a restart).
//!
//! # What the caller must guarantee
//!
//! - Carry out `Append` and `Truncate` before stepping the next event, and report `Flushed` only for
//!   content no truncation has replaced since.
//! - Pair each fetch answer and AlterPartition answer with the request that asked, over the connection
//!   that asked: a restarted broker must never take an answer meant for its previous life (correlation
//!   ids restart with the core).
//! - After a restart, step `Metadata` only from an image that includes this broker's new registration
//!   (as a KRaft broker catches up past its registration before publishing). The controller moves
//!   leadership off a restarted broker; an image from before that may still name it leader of an
//!   epoch whose records a power loss took, and leading that epoch again would write different records
//!   at offsets its followers hold for it. The core's own check (refusing an epoch its log has) cannot
//!   see an epoch that left no record. The simulator found this (seed 1154 before the rule).
//! - Bound the rest: one `Replica` per partition, fed from one thread (the partition's core).
//!
//! # Example
//!
//! A partition of one replica: lead, append, and see an acks=all produce answered.
//!
//! ```
//! use spate_replication::*;
//!
//! #[derive(Debug, Clone, PartialEq, Eq)]
//! struct B(Offset, LeaderEpoch);
//! impl Batch for B {
//!     fn base_offset(&self) -> Offset { self.0 }
//!     fn last_offset(&self) -> Offset { self.0 }
//!     fn epoch(&self) -> LeaderEpoch { self.1 }
//! }
//!
//! let me = NodeId(1);
//! let mut replica: Replica<B> =
//!     Replica::new(ReplicaConfig::new(me, AckDurability::Replicated), LogState::empty()).unwrap();
//! let state = PartitionState {
//!     replicas: vec![me],
//!     leader: Some(me),
//!     leader_epoch: LeaderEpoch(1),
//!     partition_epoch: PartitionEpoch(1),
//!     isr: vec![me],
//! };
//! replica.step(Event::Metadata { state, now_ms: NowMs(0) }).unwrap();
//! let epoch = replica.check_produce(Acks::All).unwrap();
//! assert_eq!(epoch, LeaderEpoch(1));
//! // The broker appends one record at offset 0 in epoch 1, then:
//! replica.step(Event::LeaderAppended { log_end: Offset(1), now_ms: NowMs(1) }).unwrap();
//! let actions = replica
//!     .step(Event::AwaitAcks { waiter: WaiterId(7), last_offset: Offset(0), timeout_ms: 100, now_ms: NowMs(1) })
//!     .unwrap();
//! assert_eq!(actions, vec![Action::CompleteWaiter { waiter: WaiterId(7), result: Ok(()) }]);
//! assert_eq!(replica.high_watermark(), Offset(1));
//! ```
#![warn(missing_docs)]

pub mod epochs;
pub mod error;
pub mod ids;
pub mod messages;
pub mod replica;

pub use epochs::EpochHistory;
pub use error::{AckError, AlterPartitionError, FetchError, ProduceRefusal, ReplicationError};
pub use ids::{CorrelationId, LeaderEpoch, NodeId, NowMs, Offset, PartitionEpoch, WaiterId};
pub use messages::{
    AlterPartitionRequest, AlterPartitionResponse, Batch, FetchAnswer, FetchRequest, FetchResponse,
    PartitionState,
};
pub use replica::{AckDurability, Acks, Action, Event, LogState, Replica, ReplicaConfig, RoleKind};
