//! The storage error type.
//!
//! Operating errors only: a full disk, a failed device, corrupt bytes on disk, an offset outside
//! the log. Programmer errors (a misaligned write, offsets going backwards) are assertions.

use std::path::PathBuf;

use spate_wire::batch::BatchError;
use spate_wire::types::{LeaderEpoch, Offset};

/// What an I/O operation on the disk seam failed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoErrorKind {
    /// No space left on the device (ENOSPC) or over quota: the operation wrote nothing that the
    /// log counts on, and it can be retried once space is freed.
    NoSpace,
    /// The file or directory does not exist.
    NotFound,
    /// Any other failure (EIO and friends).
    Other,
}

/// An error from the storage engine. The broker maps it to a Kafka error code:
/// [`StorageError::OffsetOutOfRange`] to OFFSET_OUT_OF_RANGE, [`StorageError::InvalidBatch`] to
/// CORRUPT_MESSAGE, [`StorageError::Producer`] per
/// [`crate::producer_state::ProducerError`], everything else to KAFKA_STORAGE_ERROR.
/// [`StorageError::NonContiguousBatch`] and [`StorageError::EpochRegression`] come only from a
/// follower's appends and are for its replica fetcher (truncate, fetch again), not for clients.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch handed to `append` is not a valid v2 batch (bad header or CRC); nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[source] BatchError),
    /// A batch handed to `append` is larger than the configured limit.
    #[error("record batch of {bytes} bytes exceeds the limit of {bytes_max} bytes")]
    BatchTooLarge {
        /// Size of the rejected batch.
        bytes: usize,
        /// The configured `batch_bytes_max`.
        bytes_max: usize,
    },
    /// Bytes on disk that were once written whole are no longer valid (bit rot, a bad sector):
    /// the partition must not serve them.
    #[error("corrupt batch in segment {segment}: position {position}: {reason}")]
    CorruptBatch {
        /// The segment file.
        segment: PathBuf,
        /// Byte position of the bad batch in the segment.
        position: u64,
        /// What check failed.
        reason: BatchError,
    },
    /// A batch on disk passed its CRC but its records do not decode (or decompress within
    /// bounds): the partition must not answer from them.
    #[error("corrupt records in segment {segment}: position {position}: {reason}")]
    CorruptRecords {
        /// The segment file.
        segment: PathBuf,
        /// Byte position of the batch in the segment.
        position: u64,
        /// What the decoder said.
        reason: spate_wire::WireError,
    },
    /// A batch handed to `append_replicated` does not start where the log (or the call's
    /// previous batch) ends: a gap or an overlap with what the follower holds. Nothing of the
    /// call was written; the follower fetches again from its log end, or truncates first.
    #[error("replicated batch starts at offset {base_offset}, expected {expected}")]
    NonContiguousBatch {
        /// The batch's base offset.
        base_offset: Offset,
        /// Where it had to start.
        expected: Offset,
    },
    /// A batch handed to `append_replicated` carries a leader epoch below the latest one the
    /// log recorded: the follower's log diverged from the leader's and must be truncated by
    /// epoch first (KIP-101). Nothing of the call was written.
    #[error("replicated batch at offset {base_offset} has leader epoch {epoch}, below the latest epoch {latest}")]
    EpochRegression {
        /// The batch's base offset.
        base_offset: Offset,
        /// Its `partitionLeaderEpoch`.
        epoch: LeaderEpoch,
        /// The latest epoch the log (or the call's previous batches) recorded.
        latest: LeaderEpoch,
    },
    /// A read asked for an offset before the log start or after the log end.
    #[error("offset {offset} out of range [{start}, {end})")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: Offset,
        /// The log start offset.
        start: Offset,
        /// The log end offset.
        end: Offset,
    },
    /// The disk is full: the append failed without changing the log; retry after space is freed.
    #[error("no space left on device while {op} {path}")]
    DiskFull {
        /// What the log was doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("i/o error while {op} {path}: {source}")]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A damaged segment could not be rebuilt from another replica (see `Log::repair_segment`).
    #[error("cannot repair the segment holding offset {offset}: {reason}")]
    NotRepairable {
        /// The first offset a read could not return.
        offset: Offset,
        /// Why.
        reason: String,
    },
    /// A previous write or sync failed in a way that leaves the on-disk state unknown (EIO on
    /// fdatasync): the log refuses further appends until it is reopened, which re-validates the
    /// tail. Retrying an fsync after EIO is known to lose data silently on Linux.
    #[error("log is fenced after an earlier i/o failure; reopen the partition")]
    Fenced,
    /// A transactional batch appended with [`crate::log::TxnAdmission::OngoingOnly`] whose
    /// producer has no transaction open here in its epoch; nothing was written.
    #[error("no transaction of producer {producer_id} in epoch {epoch} is open here")]
    NoOngoingTransaction {
        /// The batch's producer id.
        producer_id: i64,
        /// The batch's producer epoch.
        epoch: i16,
    },
    /// An idempotent producer's batch was refused by the partition's producer state; nothing
    /// was written.
    #[error(transparent)]
    Producer(#[from] crate::producer_state::ProducerError),
    /// The cleaner found a batch whose records it cannot decode (it passed its CRC, so the
    /// producer wrote it that way): compaction of the partition stops rather than drop data.
    #[error("cannot compact batch in segment {segment}: position {position}: {reason}")]
    UncleanableBatch {
        /// The segment file.
        segment: PathBuf,
        /// Byte position of the batch in the segment.
        position: u64,
        /// What failed.
        reason: spate_wire::WireError,
    },
    /// A checkpoint file (index, leader epochs) could not be parsed.
    #[error("bad checkpoint file {path}: {reason}")]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

impl StorageError {
    /// Builds an error for a failed disk operation, classifying ENOSPC as [`StorageError::DiskFull`].
    pub fn from_io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if io_error_kind(&source) == IoErrorKind::NoSpace {
            StorageError::DiskFull { op, path }
        } else {
            StorageError::Io { op, path, source }
        }
    }
}

/// Classifies an `std::io::Error` from either disk implementation.
pub fn io_error_kind(error: &std::io::Error) -> IoErrorKind {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    match error.raw_os_error() {
        Some(ENOSPC) | Some(EDQUOT) => IoErrorKind::NoSpace,
        _ if error.kind() == std::io::ErrorKind::StorageFull => IoErrorKind::NoSpace,
        _ if error.kind() == std::io::ErrorKind::NotFound => IoErrorKind::NotFound,
        _ => IoErrorKind::Other,
    }
}

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
