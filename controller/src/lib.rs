//! Spate's controller quorum, sans I/O: the records of the metadata log, the image they build, the
//! controller logic that turns cluster requests into records, and a Raft node that replicates them.
//!
//! # Role
//!
//! A Spate cluster keeps its metadata (brokers, topics, partitions, leaders, epochs, producer id blocks)
//! in one replicated log, as Kafka's KRaft does. A few brokers (`--controller-voters 1@host:port,...`)
//! run a [`node::ControllerNode`] each and form the Raft quorum; the leader's [`controller::Controller`]
//! turns requests (register, heartbeat, create topic...) into batches of [`records::MetadataRecord`]s
//! and proposes each batch as one Raft entry; every broker applies the committed records, in order, to a [`image::MetadataImage`]. Brokers
//! that are not voters fetch committed records from a voter ([`node::MetadataFollower`]).
//!
//! # Model
//!
//! Nothing here does I/O, reads a clock or spawns a thread. The caller feeds in ticks, messages, time
//! and persistence completions, and gets back messages to send, batches to persist (in order) and
//! records that committed. The same code runs on glommio in the broker and in `tests/sim.rs`, a seeded
//! single-thread simulator with a faulty network and disks. Randomness comes from a seeded
//! [`rng::RandomSource`], so a simulated run replays exactly from its seed.
//!
//! - [`records`]: the record enum and its versioned, bounded binary codec (never panics on input).
//! - [`image`]: the pure state machine; a batch applies all or nothing, and a batch with an invalid
//!   record is refused identically everywhere.
//! - [`controller`]: placement (replication factor capped by
//!   [`controller::ControllerConfig::replication_factor_max`], 1 by default until followers
//!   replicate), fencing by session timeout, incarnations, producer id blocks, leader election and
//!   ISR maintenance on fence, unfence, controlled shutdown and re-registration, AlterPartition
//!   (KIP-497) and preferred-leader election. Leader and ISR changes follow Kafka's KRaft rules
//!   without eligible leader replicas: the first in-sync, live replica in replica order leads; the
//!   ISR never empties; every change bumps the partition epoch, every leader change the leader
//!   epoch. A topic may allow unclean election (`unclean.leader.election.enable`).
//! - [`node`]: raft-rs's `RawNode` behind `tick`/`step`/`propose`/`ready`/`on_persisted`; snapshots of
//!   the image bound the log. [`log_store`] is the log as raft-rs reads it and as the disk keeps it.
//!
//! # Raft crate
//!
//! Raft comes from TiKV's raft-rs (crate `raft` 0.7, `RawNode`), with its `protobuf-codec` feature: the
//! generated protobuf code ships in the crate, so it builds from crates.io alone, with no `protoc`.
//! raft-rs is itself sans-I/O (tick, step, ready, advance), single-threaded and synchronous, which fits
//! glommio's thread-per-core model and a one-thread seeded simulator; openraft would need an async
//! runtime adapter and drives its own storage and network tasks. raft-rs draws election timeouts from
//! the thread's RNG; [`node::ControllerNode`] overwrites each draw with its own seeded one.
//!
//! # Example
//!
//! A quorum of one voter: elect, propose, persist, and see the record applied.
//!
//! ```
//! use spate_controller::ids::NodeId;
//! use spate_controller::log_store::RaftLogStore;
//! use spate_controller::node::{ControllerNode, NodeConfig};
//! use spate_controller::records::MetadataRecord;
//!
//! let voters = vec![NodeId(1)];
//! let mut disk = RaftLogStore::new(&voters); // stands for the durable log
//! let mut node = ControllerNode::new(NodeConfig::new(NodeId(1), voters, 42), disk.clone()).unwrap();
//! node.campaign();
//! assert!(node.is_leader());
//! let proposal = node.propose(&[MetadataRecord::UnregisterBroker { node: NodeId(7) }]).unwrap();
//! let mut applied = Vec::new();
//! loop {
//!     let actions = node.ready();
//!     if actions.is_empty() {
//!         break;
//!     }
//!     assert!(actions.messages.is_empty(), "no peers to talk to");
//!     for batch in &actions.persist {
//!         disk.apply(batch); // write, fsync...
//!         node.on_persisted(batch.token.unwrap()); // ...then acknowledge
//!     }
//!     applied.extend(actions.applied);
//! }
//! let committed = applied.iter().find(|a| a.offset == proposal.offset).unwrap();
//! assert_eq!(committed.term, proposal.term);
//! // The image refused it (no broker 7), identically on every node.
//! assert!(committed.outcome.is_err());
//! assert_eq!(node.image().last_applied(), proposal.offset);
//! ```
#![warn(missing_docs)]

pub mod codec;
pub mod controller;
pub mod durable;
pub mod ids;
pub mod image;
pub mod log_store;
pub mod node;
mod partition_change;
pub mod records;
pub mod rng;
