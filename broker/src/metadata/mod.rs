//! What the broker knows about the cluster's topics and ids, apart from the partitions' data:
//! topic names, configs and files (`topics`), and the producer id allocator (`producer_ids`).
//!
//! A single broker's controller core (core 0) changes this state, writing each change durably
//! before it tells every core (`changes`). In cluster mode the same facts come from the
//! Raft-replicated metadata log, replayed into an image on every broker (`crate::cluster`).

pub mod alter;
pub mod changes;
pub mod cluster;
pub mod producer_ids;
#[cfg(test)]
mod topic_config_doc_tests;
pub mod topics;
