//! Spate's transaction coordinator, sans I/O: the state of each transactional id, the records of
//! `__transaction_state` in Kafka's layout, and the transitions of Kafka's transaction protocol
//! (InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, the
//! coordinator's timeout abort).
//!
//! # Model
//!
//! Nothing here does I/O or reads a clock. A call returns a [`state::Step`]: answer the client
//! now, or append a [`records::StateRecord`] to the id's `__transaction_state` partition
//! (`records::partition_for`, 50 partitions by default) and report it with
//! [`state::TxnCoordinator::appended`], which gives the answer and, for a decided transaction,
//! the [`state::MarkerWrite`] to do. The broker does the appends, writes the COMMIT/ABORT control
//! batches and feeds time through [`state::TxnCoordinator::tick`]. A coordinator is rebuilt from
//! its records at startup ([`state::TxnCoordinator::load`]).
//!
//! Invariants: the durable state of an id changes only after its record is appended; a
//! transaction gets one outcome (once `PrepareCommit` or `PrepareAbort` is durable it is
//! never reversed, and markers of a transaction all carry that outcome); epochs of a producer id
//! only grow; a producer with an older epoch is fenced.
//!
//! # Example
//!
//! ```
//! use spate_txn::state::{Answer, Step, TopicPartition, TxnConfig, TxnCoordinator, TxnResult};
//! use spate_wire::types::{ProducerEpoch, ProducerId};
//!
//! let mut c = TxnCoordinator::new(TxnConfig::default());
//! assert_eq!(c.init_producer_id("app", 60_000, None, None, 0), Step::NeedProducerId);
//! let Step::Append(_record) = c.init_producer_id("app", 60_000, None, Some(ProducerId(7)), 0) else {
//!     panic!()
//! };
//! // ... the caller appends the record, then:
//! let after = c.appended("app", true);
//! assert_eq!(after.answer, Some(Answer::ProducerIdAndEpoch(ProducerId(7), ProducerEpoch(0))));
//! let tp = TopicPartition::new("out", 0);
//! let Step::Append(_) = c.add_partitions("app", ProducerId(7), ProducerEpoch(0), &[tp], 1) else { panic!() };
//! c.appended("app", true);
//! let Step::Append(_) = c.end_txn("app", ProducerId(7), ProducerEpoch(0), TxnResult::Commit, 2) else { panic!() };
//! let after = c.appended("app", true);
//! assert_eq!(after.answer, Some(Answer::Done));
//! let markers = after.markers.unwrap(); // write a COMMIT marker to out-0, then:
//! let complete = c.markers_written(&markers, 3).unwrap();
//! c.appended("app", true);
//! # let _ = complete;
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod records;
pub mod state;

#[cfg(test)]
mod state_tests;
