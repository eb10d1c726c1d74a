//! One segment: a log file named by its base offset, its indexes, and the recovery scan.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use spate_wire::batch::{
    verify_crc, BatchError, BatchHeader, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES,
};
use spate_wire::types::Offset;

use crate::config::RECOVERY_BATCH_BYTES_MAX;
use crate::error::{Result, StorageError};
use crate::index::SegmentIndex;
use crate::io::DiskFile;

/// Suffix of segment files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of index checkpoint files.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of producer-state snapshot files (`<offset>.snapshot`, like Kafka's).
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Suffix of files being written before an atomic rename.
pub const TMP_SUFFIX: &str = ".tmp";
/// Marker `<base>.sealing`: the segment was rolled away from and its seal (fdatasync, index
/// checkpoint) may not have completed, so recovery treats it like an active segment.
pub const SEALING_SUFFIX: &str = ".sealing";

/// Bytes the recovery scan reads at a time.
pub const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// `00000000000000000042.log` for base offset 42, like Kafka.
pub fn file_name(base: Offset, suffix: &str) -> String {
    format!("{:020}{suffix}", base.0)
}

/// The base offset in a file name with the given suffix, if it is one.
pub fn parse_file_name(name: &str, suffix: &str) -> Option<Offset> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(Offset)
}

/// An open segment.
#[derive(Debug)]
pub struct Segment<F> {
    /// Offset of the first batch this segment may hold.
    pub base: Offset,
    /// The log file, shared with readers holding file ranges.
    pub file: Rc<F>,
    /// Path of the log file.
    pub path: PathBuf,
    /// The sparse indexes.
    pub index: SegmentIndex,
    /// Logical size: bytes of whole batches.
    pub size: u64,
    /// Offset after the last batch.
    pub next_offset: Offset,
    /// Max timestamp of the first batch, for time-based rolling.
    pub first_timestamp_ms: Option<i64>,
    /// Bytes the file has been extended to (preallocation); `>= size`.
    pub allocated: u64,
}

impl<F> Segment<F> {
    /// Path of this segment's index checkpoint.
    pub fn index_path(&self, dir: &Path) -> PathBuf {
        dir.join(file_name(self.base, INDEX_SUFFIX))
    }
    /// Whether the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

/// Why a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// At the end of the file, or at zeros (space preallocated or padded but never written).
    Clean,
    /// At bytes that are not a whole valid batch.
    Invalid {
        /// Where the bad batch starts.
        position: u64,
        /// What check failed.
        reason: BatchError,
    },
}

/// Result of scanning a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Position after the last valid batch.
    pub end_position: u64,
    /// Offset after the last valid batch.
    pub next_offset: Offset,
    /// Max timestamp of the first valid batch seen (only when the scan began at 0).
    pub first_timestamp_ms: Option<i64>,
    /// Why it stopped.
    pub end: ScanEnd,
}

/// What a scan requires of consecutive batches' offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetOrder {
    /// Each batch starts right after the previous one (what appends write).
    Dense,
    /// Each batch starts after the previous one, gaps allowed (a compacted segment).
    Increasing,
}

/// Reads batches from `position` to the end of the file, checking length, structure, CRC32C
/// and that offsets are dense (or only increasing, per `order`), and adds them to `index`.
///
/// The stop rule: twelve zero bytes where a batch should start (a zero `baseOffset` and a zero
/// `batchLength`, which no batch has) are the end of the data, as are fewer than twelve bytes
/// left that are all zero; anything else that is not a whole valid batch is `Invalid`.
///
/// # Errors
/// I/O errors reading the file.
pub async fn scan<F: DiskFile>(
    file: &F,
    file_size: u64,
    mut position: u64,
    mut next_offset: Offset,
    order: OffsetOrder,
    index: &mut SegmentIndex,
) -> Result<Scan> {
    let mut chunk = Bytes::new();
    let mut chunk_pos = position;
    let mut first_timestamp_ms = None;
    let scanned_from_start = position == 0;
    let read = |pos: u64, len: usize| async move {
        file.read_at(pos, len)
            .await
            .map_err(|e| StorageError::from_io("scanning", file.path(), e))
    };
    loop {
        let remaining = file_size.saturating_sub(position);
        if remaining == 0 {
            break;
        }
        let want = (remaining as usize).min(BATCH_HEADER_BYTES);
        if position < chunk_pos || position + want as u64 > chunk_pos + chunk.len() as u64 {
            chunk = read(position, SCAN_CHUNK_BYTES.min(remaining as usize)).await?;
            chunk_pos = position;
        }
        let at = (position - chunk_pos) as usize;
        let head = &chunk[at..at + want.min(chunk.len() - at)];
        let overhead = head.len().min(BATCH_LOG_OVERHEAD_BYTES);
        if head[..overhead].iter().all(|&b| b == 0) {
            break;
        }
        let invalid = |reason| Scan {
            end_position: position,
            next_offset,
            first_timestamp_ms,
            end: ScanEnd::Invalid { position, reason },
        };
        let header = match BatchHeader::parse(head) {
            Ok(h) => h,
            Err(reason) => return Ok(invalid(reason)),
        };
        let total = header.total_bytes();
        if total > RECOVERY_BATCH_BYTES_MAX || total as u64 > remaining {
            return Ok(invalid(BatchError::Truncated {
                needed: total,
                available: remaining as usize,
            }));
        }
        let out_of_order = match order {
            OffsetOrder::Dense => header.base_offset != next_offset,
            OffsetOrder::Increasing => header.base_offset < next_offset,
        };
        if out_of_order {
            // Offsets out of order mean the bytes are not what the log wrote.
            return Ok(invalid(BatchError::BadOffsets {
                last_offset_delta: header.last_offset_delta,
                record_count: header.record_count,
            }));
        }
        if at + total > chunk.len() {
            chunk = read(
                position,
                SCAN_CHUNK_BYTES.max(total).min(remaining as usize),
            )
            .await?;
            chunk_pos = position;
        }
        let at = (position - chunk_pos) as usize;
        if let Err(reason) = verify_crc(&chunk[at..at + total]) {
            return Ok(invalid(reason));
        }
        index.on_batch(&header, position);
        if scanned_from_start && first_timestamp_ms.is_none() {
            first_timestamp_ms = Some(header.max_timestamp_ms);
        }
        position += total as u64;
        next_offset = header.last_offset().next();
    }
    Ok(Scan {
        end_position: position,
        next_offset,
        first_timestamp_ms,
        end: ScanEnd::Clean,
    })
}
