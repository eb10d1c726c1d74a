//! Opening and closing a [`Log`]: recovery (swaps left by the cleaner, leftover temporary
//! files, segments checked against their index checkpoints or rescanned, a torn tail or an
//! unfinished seal cut off), the producer state rebuilt from snapshots and batch headers, and
//! the clean close that spares the next open a scan.
//!
//! Invariants kept here: recovery keeps only whole, valid batches with dense offsets at the end
//! of the log, syncs what it kept (so all of it is durable), and reports an invalid batch in a
//! sealed segment as corruption rather than skipping it; a producer snapshot only ever covers
//! synced data; snapshots are bounded to one per segment plus one.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use spate_wire::batch::{BatchError, BatchHeader, BATCH_HEADER_BYTES};
use spate_wire::types::Offset;

use super::clean;
use super::roll::create_segment;
use super::start;
use super::writes::Writes;
use super::{
    io_err, remove_file, Core, Log, SealSlot, SpareState, WriteBuffer, DIR_ENTRIES_MAX,
    SPARE_SEGMENT_NAME,
};
use crate::cache::{HeaderArena, TailCache};
use crate::config::LogConfig;
use crate::epoch::{EpochCache, EPOCH_FILE_NAME};
use crate::error::{Result, StorageError};
use crate::files::{read_whole, write_atomically};
use crate::index::{Checkpoint, SegmentIndex};
use crate::io::{Disk, DiskFile, OpenMode};
use crate::producer_state::ProducerState;
use crate::segment::{
    file_name, parse_file_name, scan, OffsetOrder, Scan, ScanEnd, Segment, INDEX_SUFFIX,
    LOG_SUFFIX, SCAN_CHUNK_BYTES, SEALING_SUFFIX, SNAPSHOT_SUFFIX, TMP_SUFFIX,
};
use crate::sync::{AsyncMutex, Notify};

impl<D: Disk> Log<D> {
    /// Opens the log in `dir` (creating it if empty) and recovers it: closed segments are
    /// checked against their index checkpoints (or rescanned when one is missing or stale), the
    /// active segment is scanned from its checkpoint with CRC checks, and a torn tail is cut off.
    ///
    /// # Errors
    /// [`StorageError::CorruptBatch`] if a closed segment holds an invalid batch (bit rot);
    /// I/O errors.
    ///
    /// # Panics
    /// If `config` is inconsistent ([`LogConfig::validate`]).
    pub async fn open(disk: D, dir: &Path, config: LogConfig) -> Result<Self> {
        config.validate();
        disk.create_dir_all(dir)
            .await
            .map_err(io_err("creating", dir))?;
        let mut names = disk
            .list_dir(dir, DIR_ENTRIES_MAX)
            .await
            .map_err(io_err("listing", dir))?;
        if clean::recover_swaps(&disk, dir, &names).await? {
            names = disk
                .list_dir(dir, DIR_ENTRIES_MAX)
                .await
                .map_err(io_err("listing", dir))?;
        }
        let mut bases = Vec::new();
        let mut snapshots = BTreeSet::new();
        let mut unsealed = BTreeSet::new();
        for name in &names {
            if let Some(offset) = parse_file_name(name, SNAPSHOT_SUFFIX) {
                snapshots.insert(offset);
            }
            if let Some(base) = parse_file_name(name, SEALING_SUFFIX) {
                unsealed.insert(base);
            }
            if name.ends_with(TMP_SUFFIX) {
                let path = dir.join(name);
                disk.remove(&path)
                    .await
                    .map_err(io_err("removing", &path))?;
            } else if let Some(base) = parse_file_name(name, LOG_SUFFIX) {
                bases.push(base);
            }
        }
        bases.sort();
        for name in &names {
            if let Some(base) = parse_file_name(name, INDEX_SUFFIX) {
                if bases.binary_search(&base).is_err() {
                    let path = dir.join(name);
                    disk.remove(&path)
                        .await
                        .map_err(io_err("removing", &path))?;
                }
            }
        }
        let mut segments = BTreeMap::new();
        let mut checkpointed = 0;
        if bases.is_empty() {
            let segment = create_segment(&disk, dir, &config, Offset(0)).await?;
            segments.insert(segment.base, segment);
        }
        for (i, &base) in bases.iter().enumerate() {
            let role = if i + 1 == bases.len() {
                Role::Active
            } else if unsealed.contains(&base) {
                Role::Unsealed
            } else {
                Role::Closed
            };
            let (segment, covered) = recover_segment(&disk, dir, &config, base, role).await?;
            checkpointed = covered;
            if let Some(prev) = segments.values_mut().next_back() {
                let prev: &mut Segment<D::File> = prev;
                // A cleaned segment may end before the next one starts (its last batches were
                // compacted away); it then covers offsets up to the next base.
                if prev.next_offset > base {
                    return Err(StorageError::CorruptBatch {
                        segment: segment.path.clone(),
                        position: 0,
                        reason: BatchError::BadOffsets {
                            last_offset_delta: (base.0 - prev.next_offset.0) as i32,
                            record_count: 0,
                        },
                    });
                }
                prev.next_offset = base;
            }
            // The crash came before a seal's fdatasync and took some of this segment's tail:
            // nothing after it was reported durable (no sync of a later segment starts before
            // the seal completed), and keeping it would leave a hole. This segment becomes the
            // active one.
            //
            // A roll does not wait for the old segment's writes, so at the crash several may
            // have been in flight or queued, and the device may complete them in any order:
            // what survived can be a hole in the middle (a later block written, an earlier one
            // not), not only a cut tail. The scan treats both alike: it stops at the first
            // position that is not a whole valid batch with the next dense offset, and the file
            // is cut there, blocks past the hole included. A never-written block reads as zeros
            // (segment files are created empty or truncated, and extended by fallocate), which
            // ends the scan where a batch starts; a batch that crosses into the hole fails its
            // CRC32C. Nothing at or past the hole was durable: the durable offset only covers
            // bytes whose writes completed before an fdatasync of the file that completed (a
            // sync waits for its writes; the seal waits for all of the segment's), and a block
            // written before a completed fdatasync survives the crash.
            let torn_seal = role == Role::Unsealed && segment.next_offset < bases[i + 1];
            if role == Role::Unsealed && !torn_seal {
                // Whole (a longer one fails the join in the next round): closed like any other,
                // with a full checkpoint from now on.
                write_index(&disk, dir, &segment).await?;
            }
            segments.insert(base, segment);
            if torn_seal {
                for &later in &bases[i + 1..] {
                    for suffix in [INDEX_SUFFIX, LOG_SUFFIX] {
                        remove_file(&disk, &dir.join(file_name(later, suffix))).await?;
                    }
                }
                break;
            }
        }
        // Every marker has served: its segment was recovered as whole or made active.
        for &base in &unsealed {
            let path = dir.join(file_name(base, SEALING_SUFFIX));
            disk.remove(&path)
                .await
                .map_err(io_err("removing", &path))?;
        }
        disk.sync_dir(dir).await.map_err(io_err("syncing", dir))?;
        let active = segments.values().next_back().expect("a log has a segment");
        let log_end = active.next_offset;
        let first_base = *segments.keys().next().expect("a log has a segment");
        // A start moved by DeleteRecords; never past the log end (a truncation cut below it
        // and crashed before rewriting it).
        let log_start = match start::load_log_start(&disk, dir).await? {
            Some(checkpointed) if checkpointed > log_end => {
                // The crash took records the start had been moved over (flush policy never,
                // or a truncation cut below it): rewritten now, or records appended from here
                // on would be hidden by the stale checkpoint at the next open.
                start::save_log_start(&disk, dir, log_end).await?;
                log_end
            }
            Some(checkpointed) => checkpointed.max(first_base),
            None => first_base,
        };
        // No write buffer until the first append: a partition nobody writes holds none.
        let write = WriteBuffer::released(active.size);
        let writes = Rc::new(Writes::new(active.size, config.write_buffer_bytes_max));
        let epoch_path = dir.join(EPOCH_FILE_NAME);
        let mut epochs = match read_whole(&disk, &epoch_path).await? {
            Some(bytes) => EpochCache::decode(&bytes).ok_or(StorageError::BadCheckpoint {
                path: epoch_path.clone(),
                reason: "malformed leader epoch checkpoint",
            })?,
            None => EpochCache::default(),
        };
        let epochs_changed =
            epochs.truncate_from_end(log_end) | epochs.truncate_from_start(log_start);
        if epochs_changed {
            write_atomically(&disk, dir, EPOCH_FILE_NAME, &epochs.encode()).await?;
        }
        let mut producers = ProducerState::new(
            config.producers_per_partition_max,
            config.producer_id_expiration_ms,
        );
        let replayed_from = rebuild_producers(
            &disk,
            dir,
            &segments,
            &mut snapshots,
            log_start,
            &mut producers,
        )
        .await?;
        if replayed_from < log_end {
            // Recovery synced everything it kept, so a snapshot at the log end is safe, and it
            // spares the next open this replay (a crash, or a log from before snapshots).
            let name = file_name(log_end, SNAPSHOT_SUFFIX);
            write_atomically(&disk, dir, &name, &producers.encode_snapshot(log_end)).await?;
            snapshots.insert(log_end);
            let active_base = *segments.keys().next_back().expect("a log has a segment");
            prune_snapshots(&disk, dir, &mut snapshots, active_base, log_end).await?;
        }
        let core = Core {
            segments,
            write,
            checkpointed,
            cache: TailCache::new(config.tail_cache_bytes_max),
            headers: HeaderArena::default(),
            epochs,
            log_end,
            producers,
            snapshots,
        };
        Ok(Log {
            disk,
            dir: dir.to_owned(),
            config: Cell::new(config),
            core: AsyncMutex::new(core),
            writes: std::cell::RefCell::new(writes),
            checkpoint: AsyncMutex::new(()),
            checkpoint_in_flight: Cell::new(false),
            log_start: Cell::new(log_start),
            log_end: Cell::new(log_end),
            // Recovery synced the active segment, so everything it kept is durable.
            durable: Cell::new(log_end),
            fenced: Cell::new(false),
            sync_in_flight: Cell::new(false),
            seal: SealSlot::default(),
            spare: std::cell::RefCell::new(SpareState::None),
            background_sync: std::cell::RefCell::new(None),
            checkpoint_due: std::cell::RefCell::new(None),
            synced: Notify::default(),
            appended_bytes: Cell::new(0),
            synced_bytes: Cell::new(0),
            truncations: Cell::new(0),
            hw_floor: Cell::new(Offset(0)),
            idle_mark: Cell::new(u64::MAX),
        })
    }

    /// Writes `<log_end>.snapshot` with the producer state as of the log end.
    async fn write_producer_snapshot(&self, core: &mut Core<D::File>) -> Result<()> {
        let offset = core.log_end;
        let bytes = core.producers.encode_snapshot(offset);
        write_atomically(
            &self.disk,
            &self.dir,
            &file_name(offset, SNAPSHOT_SUFFIX),
            &bytes,
        )
        .await?;
        core.snapshots.insert(offset);
        Ok(())
    }

    /// Syncs everything and writes the active segment's index checkpoint, so the next open
    /// needs no scan.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        // `flush` drives a pending seal only if the log end was not durable yet.
        self.wait_sealed().await?;
        let spare = self.spare.replace(SpareState::None);
        if !matches!(spare, SpareState::None) {
            if let SpareState::Making(making) = spare {
                // Finished first, so its file is not created after the removal below.
                drop(making.await);
            }
            // Best effort: a leftover is deleted at the next open.
            let _ = self.disk.remove(&self.dir.join(SPARE_SEGMENT_NAME)).await;
        }
        let core = self.core.into_inner();
        let active = core
            .segments
            .values()
            .next_back()
            .expect("a log has a segment");
        write_index(&self.disk, &self.dir, active).await?;
        let active_base = active.base;
        if core.snapshots.last() == Some(&core.log_end) {
            return Ok(());
        }
        let log = Log {
            core: AsyncMutex::new(core),
            ..self
        };
        let mut core = log.core.lock().await;
        log.write_producer_snapshot(&mut core).await?;
        let log_end = core.log_end;
        prune_snapshots(
            &log.disk,
            &log.dir,
            &mut core.snapshots,
            active_base,
            log_end,
        )
        .await
    }
}

/// Removes the snapshots strictly between the active segment's base and `newest`: each clean
/// close or crash recovery adds one there, and the newest supersedes them (the one at the base
/// stays, for truncation). Bounds the files to one per segment plus one.
async fn prune_snapshots<D: Disk>(
    disk: &D,
    dir: &Path,
    snapshots: &mut BTreeSet<Offset>,
    active_base: Offset,
    newest: Offset,
) -> Result<()> {
    let stale: Vec<Offset> = snapshots
        .iter()
        .copied()
        .filter(|&o| o > active_base && o < newest)
        .collect();
    for offset in stale {
        snapshots.remove(&offset);
        remove_file(disk, &dir.join(file_name(offset, SNAPSHOT_SUFFIX))).await?;
    }
    Ok(())
}

pub(super) async fn write_index<D: Disk>(
    disk: &D,
    dir: &Path,
    segment: &Segment<D::File>,
) -> Result<()> {
    let checkpoint = Checkpoint {
        covered_bytes: segment.size,
        next_offset: segment.next_offset,
    };
    let name = file_name(segment.base, INDEX_SUFFIX);
    write_atomically(disk, dir, &name, &segment.index.encode(checkpoint)).await
}

/// How recovery treats a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The last segment: a torn tail is cut off.
    Active,
    /// Rolled away from, and its `.sealing` marker is still there: the crash may have come
    /// before its seal's fdatasync, so it is recovered like the active segment; the caller
    /// decides what that means for the segments after it.
    Unsealed,
    /// Sealed: any invalid batch is corruption.
    Closed,
}

/// Opens and validates one segment. A closed segment must be whole (any invalid batch is
/// corruption); the last one may end in a torn write, which is cut off.
async fn recover_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    config: &LogConfig,
    base: Offset,
    role: Role,
) -> Result<(Segment<D::File>, u64)> {
    // A segment whose seal may not have completed may end in a torn write, like the active one.
    let tolerant = role != Role::Closed;
    let path = dir.join(file_name(base, LOG_SUFFIX));
    let file = disk
        .open(&path, OpenMode::Existing)
        .await
        .map_err(io_err("opening", &path))?;
    let file_size = file.size().await.map_err(io_err("sizing", &path))?;
    let index_path = dir.join(file_name(base, INDEX_SUFFIX));
    let checkpoint = match read_whole(disk, &index_path).await? {
        Some(bytes) => SegmentIndex::decode(&bytes, base, config.index_interval_bytes),
        None => None,
    };
    // A closed segment's checkpoint must cover the whole file; the active one's a prefix.
    let usable = checkpoint.filter(|(_, cp)| {
        if tolerant {
            cp.covered_bytes <= file_size
        } else {
            cp.covered_bytes == file_size
        }
    });
    let had_checkpoint = usable.is_some();
    let (mut index, from, next) = match usable {
        Some((index, cp)) => (index, cp.covered_bytes, cp.next_offset),
        None => (
            SegmentIndex::new(base, config.index_interval_bytes),
            0,
            base,
        ),
    };
    // Only the active segment is written by appends (dense offsets); closed segments may have
    // been compacted, which leaves gaps where whole batches were removed.
    let order = if tolerant {
        OffsetOrder::Dense
    } else {
        OffsetOrder::Increasing
    };
    let scan_result: Scan = scan(&file, file_size, from, next, order, &mut index).await?;
    if let ScanEnd::Invalid { position, reason } = scan_result.end {
        if !tolerant {
            return Err(StorageError::CorruptBatch {
                segment: path,
                position,
                reason,
            });
        }
    }
    let size = scan_result.end_position;
    if size != file_size {
        // A torn tail, or zeros past the data (preallocation, or a crash during a roll):
        // cut the file to its whole batches so the next writes start from a clean end.
        file.truncate(size)
            .await
            .map_err(io_err("truncating", &path))?;
    }
    // Synced even when unchanged: what recovery read may have sat only in a volatile cache,
    // and the log reports all of it as durable.
    file.fdatasync().await.map_err(io_err("syncing", &path))?;
    let first_timestamp_ms = match scan_result.first_timestamp_ms {
        Some(ts) => Some(ts),
        None if size > 0 => {
            let bytes = file
                .read_at(0, BATCH_HEADER_BYTES)
                .await
                .map_err(io_err("reading", &path))?;
            BatchHeader::parse(&bytes).ok().map(|h| h.max_timestamp_ms)
        }
        None => None,
    };
    let segment = Segment {
        base,
        file: Rc::new(file),
        path,
        index,
        size,
        next_offset: scan_result.next_offset,
        first_timestamp_ms,
        allocated: size,
    };
    if role == Role::Closed && !had_checkpoint {
        write_index(disk, dir, &segment).await?;
    }
    Ok((segment, from))
}

/// Rebuilds the producer state for the log `segments` hold: drops snapshots past the log end,
/// loads the newest valid one, and replays the batch headers after it (or from the log start
/// when there is none). All batches must be in the files (nothing buffered). Returns where the
/// replay started.
pub(super) async fn rebuild_producers<D: Disk>(
    disk: &D,
    dir: &Path,
    segments: &BTreeMap<Offset, Segment<D::File>>,
    snapshots: &mut BTreeSet<Offset>,
    log_start: Offset,
    producers: &mut ProducerState,
) -> Result<Offset> {
    let log_end = segments
        .values()
        .next_back()
        .expect("a log has a segment")
        .next_offset;
    let beyond: Vec<Offset> = snapshots.range(log_end.next()..).copied().collect();
    for offset in beyond {
        snapshots.remove(&offset);
        remove_file(disk, &dir.join(file_name(offset, SNAPSHOT_SUFFIX))).await?;
    }
    producers.clear();
    let mut from = log_start;
    for &offset in snapshots.iter().rev() {
        let path = dir.join(file_name(offset, SNAPSHOT_SUFFIX));
        let Some(bytes) = read_whole(disk, &path).await? else {
            continue;
        };
        // A damaged snapshot is skipped: an older one plus a longer replay gives the same state.
        if producers.load_snapshot(&bytes) == Some(offset) {
            from = offset.max(log_start);
            break;
        }
        producers.clear();
    }
    for segment in segments.values() {
        if segment.next_offset > from {
            replay_segment(segment, from, producers).await?;
        }
    }
    producers.trim_aborted(log_start);
    Ok(from)
}

/// Feeds the headers of the batches of `segment` that end at or after `from` to `producers`,
/// reading the file in chunks.
async fn replay_segment<F: DiskFile>(
    segment: &Segment<F>,
    from: Offset,
    producers: &mut ProducerState,
) -> Result<()> {
    let mut position = if from > segment.base {
        segment.index.lookup(from).position
    } else {
        0
    };
    let mut chunk = Bytes::new();
    let mut chunk_pos = position;
    while position < segment.size {
        let in_chunk = position >= chunk_pos
            && position + BATCH_HEADER_BYTES as u64 <= chunk_pos + chunk.len() as u64;
        if !in_chunk {
            let len = (segment.size - position).min(SCAN_CHUNK_BYTES as u64) as usize;
            chunk = segment
                .file
                .read_at(position, len)
                .await
                .map_err(io_err("reading", &segment.path))?;
            chunk_pos = position;
        }
        let at = (position - chunk_pos) as usize;
        let header =
            BatchHeader::parse(&chunk[at..]).map_err(|reason| StorageError::CorruptBatch {
                segment: segment.path.clone(),
                position,
                reason,
            })?;
        if header.last_offset() >= from {
            let at_records = at + BATCH_HEADER_BYTES;
            let end = at + header.total_bytes();
            if header.is_control() && end > chunk.len() {
                // A marker's type is in its record: read the whole (small) batch.
                let whole = segment
                    .file
                    .read_at(position, header.total_bytes())
                    .await
                    .map_err(io_err("reading", &segment.path))?;
                producers.replay(&header, whole.get(BATCH_HEADER_BYTES..).unwrap_or(&[]));
            } else {
                producers.replay(
                    &header,
                    &chunk[at_records.min(chunk.len())..end.min(chunk.len())],
                );
            }
        }
        position += header.total_bytes() as u64;
    }
    Ok(())
}
