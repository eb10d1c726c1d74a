//! Spate's controller quorum, sans I/O: the metadata log's records, the image they build, the
//! controller logic that turns requests into records, and a Raft node that replicates them.
//!
//! Raft comes from TiKV's raft-rs (crate `raft` 0.7, `RawNode`), with its `protobuf-codec` feature: the
//! generated protobuf code ships in the crate, so it builds from crates.io alone, with no `protoc`.
//! raft-rs is itself sans-I/O (tick, step, ready, advance), single-threaded and synchronous, which fits
//! glommio's thread-per-core model and a one-thread seeded simulator; openraft would need an async
//! runtime adapter and drives its own storage and network tasks.
#![warn(missing_docs)]

pub mod codec;
pub mod controller;
pub mod ids;
pub mod image;
pub mod log_store;
pub mod node;
pub mod records;
pub mod rng;
