//! Reads: [`Log::read`] (whole batches from the tail cache or as checked file ranges),
//! [`FileRange::load`], timestamp lookup ([`Log::offset_for_timestamp`]) and the leader epochs.
//!
//! Invariants kept here: a read never goes past its limit (the high watermark or the log end)
//! and returns whole batches only; a batch not yet written to its file is served from the tail
//! cache, and a file range never reaches past the position its segment's own write queue
//! reports written; every byte loaded from a file is checked (length, CRC32C, offsets) before it
//! is handed out, so corrupt bytes on disk are never served.

use bytes::Bytes;
use spate_wire::batch::{verify_crc, BatchError, BatchHeader, TimestampType, BATCH_HEADER_BYTES};
use spate_wire::types::{LeaderEpoch, Offset};

use super::{io_err, FileRange, Log, ReadChunk, ReadResult, ReadUpTo, READ_CHUNKS_MAX};
use crate::cache::TailCache;
use crate::epoch::EpochCache;
use crate::error::{Result, StorageError};
use crate::io::{Disk, DiskFile};
use crate::segment::Segment;

impl<F: DiskFile> FileRange<F> {
    /// Reads the range into memory through the I/O seam, checking every batch's length and
    /// CRC32C, so corrupt bytes on disk are never handed out.
    ///
    /// # Errors
    /// [`StorageError::CorruptBatch`] if a batch fails a check; I/O errors.
    pub async fn load(&self) -> Result<Bytes> {
        let loaded = self.load_valid().await?;
        match loaded.damage {
            None => Ok(loaded.bytes),
            Some(damage) => Err(damage),
        }
    }

    /// As [`Self::load`], but a batch that fails its checks ends the range instead of failing
    /// it: the batches before it are returned (a reader gets what is intact, and meets the
    /// damage on its next read, at the bad batch), with the failure beside them.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn load_valid(&self) -> Result<LoadedRange> {
        let bytes = self
            .file
            .read_at(self.position, self.length as usize)
            .await
            .map_err(|e| StorageError::from_io("reading", &self.path, e))?;
        let mut at = 0usize;
        let mut expected = self.first_offset;
        let mut damage = None;
        for item in spate_wire::batch::batches(&bytes) {
            let corrupt = |reason| StorageError::CorruptBatch {
                segment: self.path.clone(),
                position: self.position + at as u64,
                reason,
            };
            let checked = item.and_then(|(header, batch)| {
                verify_crc(batch)?;
                // Offsets only grow; compaction leaves gaps where it removed whole batches.
                // The base offset is not covered by the CRC: one that went past the range's
                // end is caught here, one that went back by the check against the previous.
                if header.base_offset < expected || header.last_offset() >= self.end_offset {
                    return Err(BatchError::BadOffsets {
                        last_offset_delta: header.last_offset_delta,
                        record_count: header.record_count,
                    });
                }
                Ok((header, batch.len()))
            });
            match checked {
                Ok((header, len)) => {
                    expected = header.last_offset().next();
                    at += len;
                }
                Err(reason) => {
                    damage = Some(corrupt(reason));
                    break;
                }
            }
        }
        if damage.is_none() && at as u64 != self.length {
            damage = Some(StorageError::CorruptBatch {
                segment: self.path.clone(),
                position: self.position + at as u64,
                reason: BatchError::Truncated {
                    needed: self.length as usize,
                    available: at,
                },
            });
        }
        Ok(LoadedRange {
            bytes: bytes.slice(..at),
            damage,
            resume_at: expected,
        })
    }
}

/// What [`FileRange::load_valid`] read: the intact batches from the range's start, and why the
/// rest was not returned, if it was not.
#[derive(Debug)]
pub struct LoadedRange {
    /// Whole, checked batches from the range's first one; empty if that one is damaged.
    pub bytes: Bytes,
    /// The check the first batch after `bytes` failed ([`StorageError::CorruptBatch`]).
    pub damage: Option<StorageError>,
    /// The offset after the batches returned (the range's first offset if none): where a
    /// reader goes on, and, with `damage`, the first offset the damage hides.
    pub resume_at: Offset,
}

impl<D: Disk> Log<D> {
    /// Reads whole batches starting with the one containing `offset` (or the next one, if
    /// compaction removed it), up to about `bytes_max` bytes (at least one batch if any is
    /// readable), as cached slices and file ranges.
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] if `offset` is below the log start or above the log
    /// end; [`StorageError::CorruptBatch`] if a header on disk is invalid; I/O errors.
    pub async fn read(
        &self,
        offset: Offset,
        bytes_max: u64,
        up_to: ReadUpTo,
    ) -> Result<ReadResult<D::File>> {
        let limit = match up_to {
            ReadUpTo::HighWatermark => self.high_watermark(),
            ReadUpTo::LogEnd => self.log_end.get(),
            ReadUpTo::Below(offset) => offset.min(self.log_end.get()),
        };
        let core = self.core.lock().await;
        let start = self.log_start.get();
        if offset < start || offset > core.log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start,
                end: core.log_end,
            });
        }
        let mut result = ReadResult {
            chunks: Vec::new(),
            next_offset: offset,
            bytes: 0,
        };
        while result.next_offset < limit
            && (result.bytes < bytes_max || result.chunks.is_empty())
            && result.chunks.len() < READ_CHUNKS_MAX
        {
            let cur = result.next_offset;
            if let Some(i) = core.cache.find(cur) {
                read_from_cache(&core.cache, i, limit, bytes_max, &mut result);
                break;
            }
            let (&base, segment) = core
                .segments
                .range(..=cur)
                .next_back()
                .expect("offset within the log has a segment");
            if cur >= segment.next_offset {
                // An empty or finished segment: the next one starts here (or, after
                // compaction removed batches, a little later).
                let next = core.segments.range(base..).nth(1).map(|(b, _)| *b);
                let next = next.expect("an offset below the log end has a segment");
                assert!(next >= cur, "segments are in offset order");
                result.next_offset = next;
                continue;
            }
            let active_base = *core
                .segments
                .keys()
                .next_back()
                .expect("a log has a segment");
            let written = self.written_in(active_base, base, segment.size);
            let budget = bytes_max.saturating_sub(result.bytes);
            let Some((range, next)) = file_range(segment, cur, limit, written, budget).await?
            else {
                // `cur` falls in a gap compaction left at the end of the segment.
                result.next_offset = segment.next_offset;
                continue;
            };
            result.bytes += range.length;
            result.next_offset = next;
            result.chunks.push(ReadChunk::File(range));
        }
        Ok(result)
    }

    /// The first record below `limit` whose timestamp is at least `timestamp_ms` (ListOffsets
    /// by time): its offset and timestamp, or `None` if every record below `limit` is older.
    ///
    /// Record granularity, as Kafka answers: the batch is found from the time index and its
    /// headers, then its records are decoded, so a batch holding records stamped 1234 and
    /// 999999999999 answers the second record's offset for 999999999999. Records at or above
    /// `limit` (the high watermark) are not visible to consumers and are not answered.
    ///
    /// # Errors
    /// [`StorageError::CorruptBatch`] for an invalid header or batch on disk; I/O errors.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
        limit: Offset,
    ) -> Result<Option<(Offset, i64)>> {
        let mut core = self.core.lock().await;
        // Scanning reads headers from the file, so put the buffered tail there first, and wait
        // for the writes of a closed segment still being sealed (not for its seal: reading
        // needs the bytes on the file, not durable). Under the lock, so no roll moves on.
        self.write_out(&mut core).await?;
        self.wait_closed_segment_drained().await?;
        // Records below a start moved by DeleteRecords are not answered (Kafka looks from the
        // log start too), though their batch may still be in the file.
        let start = self.log_start.get();
        for segment in core.segments.values() {
            if segment.index.max_timestamp_ms() < timestamp_ms || segment.next_offset <= start {
                continue;
            }
            let entry = segment.index.lookup_time(timestamp_ms);
            let mut position = entry.position;
            while position < segment.size {
                let header = read_header(segment, position).await?;
                if header.base_offset >= limit {
                    return Ok(None);
                }
                if header.max_timestamp_ms >= timestamp_ms && header.last_offset() >= start {
                    let wanted = |offset, ts| offset >= start && ts >= timestamp_ms;
                    let found = scan_records(segment, position, &header, limit, wanted).await?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// The first record below `limit` with the largest timestamp (ListOffsets
    /// MAX_TIMESTAMP, KIP-734): its offset and timestamp, or `None` for a log with no record
    /// below `limit`.
    ///
    /// Each segment's largest timestamp is known from its index; only segments that could beat
    /// the best so far are read, from the time index's entry for that timestamp.
    ///
    /// # Errors
    /// [`StorageError::CorruptBatch`] for an invalid header or batch on disk; I/O errors.
    pub async fn offset_of_max_timestamp(&self, limit: Offset) -> Result<Option<(Offset, i64)>> {
        let mut core = self.core.lock().await;
        self.write_out(&mut core).await?;
        self.wait_closed_segment_drained().await?;
        let mut best: Option<(Offset, i64)> = None;
        for (&base, segment) in core.segments.iter() {
            if base >= limit {
                break;
            }
            let segment_max = segment.index.max_timestamp_ms();
            if segment.size == 0 || best.is_some_and(|(_, ts)| segment_max <= ts) {
                continue;
            }
            // Usually the batch holding the segment's largest timestamp is below `limit`:
            // found from the time index, one batch decoded.
            let mut position = segment.index.lookup_time(segment_max).position;
            let mut direct = None;
            while position < segment.size {
                let header = read_header(segment, position).await?;
                if header.base_offset >= limit {
                    break;
                }
                if header.max_timestamp_ms >= segment_max {
                    direct =
                        scan_records(segment, position, &header, limit, |_, ts| ts >= segment_max)
                            .await?;
                    break;
                }
                position += header.total_bytes() as u64;
            }
            if let Some(found) = direct {
                best = Some(found);
                continue;
            }
            // The segment's largest timestamp lies at or above `limit` (not yet visible):
            // the largest one below it needs the whole segment.
            let mut position = 0;
            while position < segment.size {
                let header = read_header(segment, position).await?;
                if header.base_offset >= limit {
                    break;
                }
                let beats = |ts: i64| best.is_none_or(|(_, b)| ts > b);
                if beats(header.max_timestamp_ms) {
                    let mut local: Option<(Offset, i64)> = None;
                    visit_records(segment, position, &header, limit, |offset, ts| {
                        if local.is_none_or(|(_, b)| ts > b) {
                            local = Some((offset, ts));
                        }
                        false
                    })
                    .await?;
                    if let Some(found) = local.filter(|&(_, ts)| beats(ts)) {
                        best = Some(found);
                    }
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(best)
    }

    /// The leader epochs recorded so far.
    pub async fn epochs(&self) -> EpochCache {
        self.core.lock().await.epochs.clone()
    }

    /// For OffsetsForLeaderEpoch: the largest known epoch `<= epoch` and where it ends.
    pub async fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let core = self.core.lock().await;
        core.epochs.end_offset_for(epoch, core.log_end)
    }
}

fn read_from_cache<F>(
    cache: &TailCache,
    mut i: usize,
    limit: Offset,
    bytes_max: u64,
    result: &mut ReadResult<F>,
) {
    while let Some(batch) = cache.get(i) {
        let over_budget = result.bytes + batch.bytes.len() as u64 > bytes_max;
        if batch.base >= limit || (over_budget && !result.chunks.is_empty()) {
            break;
        }
        if result.chunks.len() == READ_CHUNKS_MAX {
            break;
        }
        assert!(batch.last < limit, "limits fall on batch boundaries");
        result.bytes += batch.bytes.len() as u64;
        result.next_offset = batch.last.next();
        result.chunks.push(ReadChunk::Memory(batch.bytes.clone()));
        i += 1;
    }
}

/// Largest byte range of `segment` that starts at the batch holding `offset`, ends on a batch
/// boundary at or below `limit` (an offset) and `written` (a position), and is at most `budget`
/// bytes unless a single batch is larger. Also returns the offset after the range. `None` if no
/// batch of the segment reaches `offset` (compaction removed the batches that did).
async fn file_range<F: DiskFile>(
    segment: &Segment<F>,
    offset: Offset,
    limit: Offset,
    written: u64,
    budget: u64,
) -> Result<Option<(FileRange<F>, Offset)>> {
    let mut position = segment.index.lookup(offset).position;
    let header = loop {
        if position >= segment.size {
            return Ok(None);
        }
        let header = read_header(segment, position).await?;
        if header.last_offset() >= offset {
            break header;
        }
        position += header.total_bytes() as u64;
    };
    let first_end = position + header.total_bytes() as u64;
    assert!(
        first_end <= written,
        "batches missing from the cache are on disk"
    );
    let cap = position.saturating_add(budget).min(written);
    let (mut end, mut next) = (first_end, header.last_offset().next());
    if segment.size <= cap && segment.next_offset <= limit {
        (end, next) = (segment.size, segment.next_offset);
    } else if let Some(entry) = segment.index.entry_at_or_before(cap, position) {
        if entry.offset <= limit && entry.position > end {
            (end, next) = (entry.position, entry.offset);
        }
    }
    let range = FileRange {
        file: segment.file.clone(),
        path: segment.path.clone(),
        position,
        length: end - position,
        first_offset: header.base_offset,
        end_offset: next,
    };
    Ok(Some((range, next)))
}

/// The first record of the batch at `position` below `limit` whose timestamp passes `wanted`.
async fn scan_records<F: DiskFile>(
    segment: &Segment<F>,
    position: u64,
    header: &BatchHeader,
    limit: Offset,
    wanted: impl Fn(Offset, i64) -> bool,
) -> Result<Option<(Offset, i64)>> {
    let mut found = None;
    visit_records(segment, position, header, limit, |offset, ts| {
        if wanted(offset, ts) {
            found = Some((offset, ts));
            return true;
        }
        false
    })
    .await?;
    Ok(found)
}

/// Calls `visit(offset, timestamp)` for each record of the batch at `position` below `limit`,
/// in order, until it returns true. The batch is read whole and its CRC checked, so corrupt
/// bytes are an error rather than a wrong answer. A LogAppendTime batch stamps every record
/// with its max timestamp, as Kafka reads it.
async fn visit_records<F: DiskFile>(
    segment: &Segment<F>,
    position: u64,
    header: &BatchHeader,
    limit: Offset,
    mut visit: impl FnMut(Offset, i64) -> bool,
) -> Result<()> {
    let corrupt = |reason| StorageError::CorruptBatch {
        segment: segment.path.clone(),
        position,
        reason,
    };
    let bytes = segment
        .file
        .read_at(position, header.total_bytes())
        .await
        .map_err(io_err("reading", &segment.path))?;
    verify_crc(&bytes).map_err(corrupt)?;
    let mut scratch = Vec::new();
    let records = spate_wire::records::header_records(
        header,
        &bytes,
        &mut scratch,
        spate_wire::compression::DECOMPRESSED_BYTES_MAX_DEFAULT,
    )
    .map_err(|reason| StorageError::CorruptRecords {
        segment: segment.path.clone(),
        position,
        reason,
    })?;
    let append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    for record in records {
        let record = record.map_err(|reason| StorageError::CorruptRecords {
            segment: segment.path.clone(),
            position,
            reason,
        })?;
        let offset = Offset(header.base_offset.0 + i64::from(record.offset_delta));
        if offset >= limit {
            break;
        }
        let ts = if append_time {
            header.max_timestamp_ms
        } else {
            header
                .first_timestamp_ms
                .saturating_add(record.timestamp_delta_ms)
        };
        if visit(offset, ts) {
            break;
        }
    }
    Ok(())
}

pub(super) async fn read_header<F: DiskFile>(
    segment: &Segment<F>,
    position: u64,
) -> Result<BatchHeader> {
    let bytes = segment
        .file
        .read_at(position, BATCH_HEADER_BYTES)
        .await
        .map_err(io_err("reading", &segment.path))?;
    BatchHeader::parse(&bytes).map_err(|reason| StorageError::CorruptBatch {
        segment: segment.path.clone(),
        position,
        reason,
    })
}
