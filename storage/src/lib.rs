//! Spate's partition commit log.
//!
//! A partition is an append-only sequence of Kafka v2 record batches stored byte-for-byte as the
//! producer sent them, split into segments on disk, addressed by offsets. [`Log::append`]
//! assigns offsets by patching `baseOffset` and `partitionLeaderEpoch` into the batch header
//! (outside the CRC), copies the batch into an aligned write-behind buffer and writes it with
//! direct I/O; [`Log::wait_durable`] resolves once an fdatasync covers an offset, and concurrent
//! waiters share syncs (group commit). [`Log::read`] returns whole batches as cached slices
//! (recent data) or file ranges (older data, to be sent zero-copy or loaded with
//! [`FileRange::load`], which checks CRCs). [`Log::open`] recovers from a crash: it validates
//! the tail by length and CRC32C, cuts a torn write, and rebuilds missing indexes.
//! [`Log::clean`] compacts closed segments (keep each key's latest record, at its offset) for
//! `cleanup.policy=compact`; the per-batch rules are in [`compaction`].
//!
//! A follower copies its leader's log with [`Log::append_replicated`]: whole batches as the
//! leader stored them, kept byte for byte at the leader's offsets, with the leader epoch each
//! batch carries recorded in the epoch cache ([`Log::epochs`], [`Log::end_offset_for_epoch`])
//! and its producer recorded without a verdict. A gap, an overlap, an older epoch or a damaged
//! batch is refused before anything is written. To cut a divergent suffix (KIP-101) the
//! follower calls [`Log::truncate_to`], which restores the log end, the epoch cache, the
//! producer state, the indexes and the tail cache to the kept prefix, durably.
//!
//! All file access goes through the [`io::Disk`] seam: [`io::glommio::GlommioDisk`] in
//! production, [`io::mem::MemDisk`] (torn writes, ENOSPC, EIO, crashes from a seed) in tests.
//!
//! ```
//! use bytes::BytesMut;
//! use spate_storage::io::mem::MemDisk;
//! use spate_storage::{block_on, Log, LogConfig, ReadChunk, ReadUpTo};
//! use spate_wire::batch::{BatchBuilder, BatchSpec};
//! use spate_wire::types::{LeaderEpoch, Offset};
//!
//! block_on(async {
//!     let log = Log::open(MemDisk::new(), "/p0".as_ref(), LogConfig::default()).await?;
//!     let mut batch = BytesMut::new();
//!     let mut builder = BatchBuilder::new(&mut batch, BatchSpec::default());
//!     builder.push(0, None, Some(b"hello"), &[]);
//!     builder.finish();
//!     let info = log.append(batch, LeaderEpoch(0)).await?;
//!     log.wait_durable(info.last_offset.next()).await?;
//!     let read = log.read(Offset(0), 1 << 20, ReadUpTo::HighWatermark).await?;
//!     assert!(matches!(read.chunks[0], ReadChunk::Memory(_)));
//!     assert_eq!(read.next_offset, Offset(1));
//!     Ok::<(), spate_storage::StorageError>(())
//! })
//! .unwrap();
//! ```
#![warn(missing_docs)]

pub mod cache;
pub mod compaction;
pub mod config;
pub mod epoch;
pub mod error;
pub mod files;
pub mod index;
pub mod io;
pub mod log;
pub mod pool;
pub mod producer_state;
pub mod segment;
pub mod sync;

pub use config::{FlushPolicy, LogConfig};
pub use error::{Result, StorageError};
pub use log::{
    AppendInfo, AppendKind, CleanConfig, CleanOutcome, CleanerState, FileRange, IoBudget,
    LoadedRange, Log, ReadChunk, ReadResult, ReadUpTo, RepairOutcome, ReplicatedAppend,
    RetentionOutcome, TxnAdmission, Unthrottled, FULL_WRITES_QUEUED_MAX, LOG_START_FILE,
    REPAIR_FETCH_BYTES_MAX, WRITES_IN_FLIGHT_MAX,
};
pub use sync::block_on;
