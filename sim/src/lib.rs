//! Spate's deterministic whole-cluster simulation: the real pieces, one thread, one seed.
//!
//! # Role
//!
//! `spate-controller` and `spate-replication` each have a seeded simulator of their own, each over
//! a model of the other (scripted brokers; a model controller over model logs). This crate runs the
//! real ones together: 3 to 5 brokers, the first three of them controller voters (raft-rs
//! [`spate_controller::node::ControllerNode`] and the real [`spate_controller::controller::Controller`]),
//! the others observers that follow the metadata log with a
//! [`spate_controller::node::MetadataFollower`]; every broker hosts real
//! [`spate_replication::Replica`]s over real [`spate_storage::Log`]s on its own
//! [`spate_storage::io::mem::MemDisk`]. Brokers register, heartbeat, are fenced and elected through
//! the controller; a broker steps a partition's `Metadata` only from the image it applied from the
//! committed metadata log, and only once that image holds its current registration (the rule of
//! `spate-replication`). ISR changes go through AlterPartition, answered once their records commit.
//! Producers (acks=all) and consumers talk to whoever their (possibly stale) metadata names leader.
//!
//! Faults come from the seed: messages dropped, delayed and reordered; links cut one way or both,
//! a leader cut off from everyone; process crashes (the disk keeps what was handed to it, the log's
//! write-behind buffer is lost) and power losses ([`spate_storage::io::mem::MemDisk::crash`]: only
//! synced bytes survive, plus a random prefix of the rest, maybe torn), of one broker or of all at
//! once; restarts with a new incarnation; EIO on a write or an fsync, after which the broker stops
//! and restarts (the log fences itself and its reopen must recover a clean prefix).
//!
//! Nothing here reads a clock, spawns a thread or iterates a hash map: a seed replays exactly.
//! The checks and how to run and replay seeds are in `tests/cluster.rs`'s module docs.
//!
//! # Example
//!
//! ```
//! let stats = spate_sim::run_seed(7, spate_sim::Mode::Safe).expect("seed 7 passes");
//! assert!(stats.acked > 0);
//! ```
#![warn(missing_docs)]

mod cluster;
mod model;

pub use cluster::{run_seed, Mode, Stats};
