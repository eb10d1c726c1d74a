//! The log cleaner's I/O: choosing what to clean, rewriting closed segments and swapping them in
//! crash-safely. The per-batch rules are in [`crate::compaction`].
//!
//! One cleaning ([`Log::clean`]) of a partition:
//! 1. Snapshot the closed segments (never the active one) old enough for
//!    `min.compaction.lag.ms`; the *dirty* part starts at the owner's [`CleanerState`].
//! 2. Skip unless dirty bytes / cleanable bytes reach `min.cleanable.dirty.ratio`, or a kept
//!    tombstone's delete horizon has passed.
//! 3. Build the [`OffsetMap`] over the dirty segments in order; if it fills, the cleaning covers
//!    only the segments that fit (the rest stays dirty for the next run).
//! 4. Rewrite every cleanable segment below that end, from the log start, in groups of adjacent
//!    segments whose sizes add up to at most `segment_bytes_max` (small cleaned segments merge).
//! 5. For each group: write `<base>.<end>.cleaned`, fdatasync, then under the log's lock check
//!    the group is unchanged, rename to `<base>.<end>.swap` (the commit point), fsync the
//!    directory, remove the old segments' files, rename the swap over `<base>.log`, fsync the
//!    directory, and replace the segments in memory. Recovery ([`recover_swaps`]) deletes
//!    `.cleaned` files and completes any `.swap`.
//!
//! Readers are never disturbed: a reader holds a [`crate::FileRange`] with the old file open,
//! and unlinked files stay readable while open (POSIX; `MemDisk` models the same).

use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use spate_wire::batch::{
    control_type_of_records, verify_crc, BatchHeader, ControlType, BATCH_HEADER_BYTES,
};
use spate_wire::records::header_records;
use spate_wire::types::{Offset, ProducerEpoch, ProducerId};

use super::open::write_index;
use super::{io_err, remove_if_exists, Core, Log};
use crate::compaction::{
    filter_batch, BatchRole, BatchVerdict, EmptyBatch, FilterScratch, MapFull, OffsetMap,
    ParsedBatch, TombstonePolicy, TxnTracker,
};
use crate::config::RECOVERY_BATCH_BYTES_MAX;
use crate::error::{Result, StorageError};
use crate::files::{read_whole, write_atomically};
use crate::index::SegmentIndex;
use crate::io::{align_up, AlignedBuf, Disk, DiskFile, OpenMode};
use crate::producer_state::ProducerState;
use crate::segment::{
    file_name, parse_file_name, Segment, INDEX_SUFFIX, LOG_SUFFIX, SNAPSHOT_SUFFIX,
};

/// Suffix of a cleaned segment still being written (deleted by recovery).
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment committed to replace its group (completed by recovery).
pub const SWAP_SUFFIX: &str = ".swap";
/// The file in a partition directory holding its [`CleanerState`] (Kafka keeps the same fact
/// in `cleaner-offset-checkpoint`), so a restart does not make the whole log dirty again.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-checkpoint";
/// Bytes the cleaner reads from a segment at a time (more for a larger batch): small reads
/// interleave with the appends' writes on the device (see docs/benchmarks.md).
pub const CLEAN_READ_CHUNK_BYTES: usize = 128 << 10;

/// The cleaning settings of a compacted topic (Kafka's names in the field docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanConfig {
    /// `delete.retention.ms`: how long a tombstone stays after its batch was first cleaned.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment is cleaned only once its newest record is this old.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes are this fraction of the cleanable.
    pub min_cleanable_dirty_ratio: f64,
    /// Bound on one batch's decompressed records.
    pub decompressed_bytes_max: usize,
}

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig {
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
            decompressed_bytes_max: spate_wire::compression::DECOMPRESSED_BYTES_MAX_DEFAULT,
        }
    }
}

/// What the owner remembers about a partition between cleanings. [`Log::clean`] writes it to
/// [`CLEANER_CHECKPOINT_FILE`] after each cleaning and [`Log::load_cleaner_state`] reads it back
/// after a restart; losing it costs work (the whole log is dirty again), never correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanerState {
    /// Everything below was cleaned with a map covering it.
    pub first_dirty: Offset,
    /// Earliest delete horizon of a kept tombstone: a cleaning is due then even if little is
    /// dirty, so deletes disappear on time.
    pub tombstone_horizon_ms: Option<i64>,
}

/// What one [`Log::clean`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanOutcome {
    /// The new first dirty offset.
    pub cleaned_up_to: Offset,
    /// Segments rewritten.
    pub segments_before: usize,
    /// Segments they became.
    pub segments_after: usize,
    /// Bytes of the rewritten segments before.
    pub bytes_before: u64,
    /// And after.
    pub bytes_after: u64,
    /// Records dropped.
    pub records_removed: u64,
    /// Of which tombstones past their horizon.
    pub tombstones_removed: u64,
    /// Of which records of aborted transactions.
    pub aborted_records_removed: u64,
    /// Transaction markers removed (their horizon passed and no batch of their transaction was
    /// left).
    pub markers_removed: u64,
    /// Groups skipped because the log changed under the cleaner (retention, truncation).
    pub groups_skipped: usize,
}

/// The cleaner's I/O budget: called with the bytes it read or wrote (and with 0 after each
/// batch it processed), it may wait (throttling) and is also where a long cleaning yields to
/// other tasks.
#[allow(async_fn_in_trait)]
pub trait IoBudget {
    /// Accounts for `bytes` of I/O; returns when the cleaner may go on.
    async fn spend(&mut self, bytes: u64);

    /// Whether the cleaner should stop as soon as it can (shutdown): checked after each batch;
    /// a group not yet committed is then abandoned and its `.cleaned` file removed.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// No throttling (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unthrottled;

impl IoBudget for Unthrottled {
    async fn spend(&mut self, _bytes: u64) {}
}

/// A closed segment as the cleaner saw it when it started.
#[derive(Debug)]
pub(super) struct Snapshot<F> {
    pub(super) base: Offset,
    pub(super) next_offset: Offset,
    pub(super) size: u64,
    pub(super) file: Rc<F>,
    pub(super) path: std::path::PathBuf,
}

impl CleanerState {
    fn encode(&self) -> Vec<u8> {
        format!(
            "0\n{}\n{}\n",
            self.first_dirty.0,
            self.tombstone_horizon_ms.unwrap_or(-1)
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<CleanerState> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "0" {
            return None;
        }
        let first_dirty: i64 = lines.next()?.parse().ok()?;
        let horizon: i64 = lines.next()?.parse().ok()?;
        (first_dirty >= 0).then_some(CleanerState {
            first_dirty: Offset(first_dirty),
            tombstone_horizon_ms: (horizon >= 0).then_some(horizon),
        })
    }
}

impl<D: Disk> Log<D> {
    /// The cleaner state saved by the last cleaning, or the default (everything dirty) if there
    /// is none or it cannot be parsed.
    ///
    /// # Errors
    /// I/O errors reading the file.
    pub async fn load_cleaner_state(&self) -> Result<CleanerState> {
        let path = self.dir.join(CLEANER_CHECKPOINT_FILE);
        Ok(read_whole(&self.disk, &path)
            .await?
            .and_then(|bytes| CleanerState::decode(&bytes))
            .unwrap_or_default())
    }

    /// Cleans the partition if it is due (see the module doc), with `map` as the key → offset
    /// memory (cleared first) and `budget` throttling the I/O. Returns `None` if nothing was
    /// due. Only closed segments are read or replaced, so appends go on meanwhile; the log's
    /// lock is taken briefly to snapshot the segments and for each swap.
    ///
    /// # Errors
    /// [`StorageError::CorruptBatch`] for a batch that fails its checks,
    /// [`StorageError::UncleanableBatch`] for records that cannot be decoded (the caller
    /// should stop cleaning this partition), I/O errors. A failed cleaning leaves the log as
    /// it was, except that groups already swapped stay swapped.
    pub async fn clean(
        &self,
        map: &mut OffsetMap,
        state: &mut CleanerState,
        config: &CleanConfig,
        now_ms: i64,
        budget: &mut impl IoBudget,
    ) -> Result<Option<CleanOutcome>> {
        let cleanable = self.cleanable_segments(config, now_ms).await?;
        if cleanable.is_empty() {
            return Ok(None);
        }
        let first_dirty = state.first_dirty.max(self.log_start.get());
        let total: u64 = cleanable.iter().map(|s| s.size).sum();
        let dirty: u64 = cleanable
            .iter()
            .filter(|s| s.next_offset > first_dirty)
            .map(|s| s.size)
            .sum();
        let tombstones_due = state.tombstone_horizon_ms.is_some_and(|h| now_ms >= h);
        let ratio_due = total > 0
            && dirty > 0
            && dirty as f64 / total as f64 >= config.min_cleanable_dirty_ratio;
        if !ratio_due && !tombstones_due {
            return Ok(None);
        }
        // Aborted transactions' records never supersede anything: a key whose newest record
        // was aborted keeps its committed value (read_committed readers skip the aborted one).
        let aborted = {
            let below = cleanable.last().map_or(first_dirty, |s| s.next_offset);
            self.core
                .lock()
                .await
                .producers
                .aborted_between(first_dirty, below)
        };
        let Some(end) = self
            .build_offset_map(&cleanable, first_dirty, &aborted, map, config, budget)
            .await?
        else {
            return Ok(None);
        };
        let mut outcome = CleanOutcome {
            cleaned_up_to: end,
            ..CleanOutcome::default()
        };
        let mut horizon: Option<i64> = None;
        let policy = TombstonePolicy {
            now_ms,
            delete_retention_ms: config.delete_retention_ms,
        };
        let to_clean: Vec<&Snapshot<D::File>> =
            cleanable.iter().filter(|s| s.next_offset <= end).collect();
        // The rewrite walks every cleanable segment from the first, so it needs every aborted
        // transaction with data below `end` (all decided: `end` is at or below the first
        // unstable offset), and which markers hold their producer's epoch.
        let (aborted, mut marker_epochs) = {
            let core = self.core.lock().await;
            let aborted = core.producers.aborted_between(Offset(0), end);
            let epochs: Vec<(ProducerId, ProducerEpoch)> =
                core.producers.epochs_held_by_markers().collect();
            (aborted, epochs)
        };
        marker_epochs.sort_unstable();
        // One tracker for the whole pass, across groups: a transaction's data and its marker
        // may lie in different groups.
        let mut txns = TxnTracker::new(aborted);
        for group in self.groups(&to_clean) {
            let finished = self
                .clean_group(
                    group,
                    map,
                    policy,
                    config,
                    budget,
                    &mut txns,
                    &marker_epochs,
                    &mut outcome,
                    &mut horizon,
                )
                .await?;
            if !finished {
                // Stopped: the groups swapped so far stay; the next cleaning redoes the rest.
                return Ok(None);
            }
        }
        state.first_dirty = end;
        state.tombstone_horizon_ms = horizon;
        // After the swaps (each durable when it returned): a crash before this write only
        // means the next cleaning redoes this one.
        write_atomically(
            &self.disk,
            &self.dir,
            CLEANER_CHECKPOINT_FILE,
            &state.encode(),
        )
        .await?;
        Ok(Some(outcome))
    }

    /// The closed segments whose newest record is at least `min_compaction_lag_ms` old and that
    /// end at or below the first offset of an open transaction (its records may still be
    /// aborted, so they must not supersede anything yet: Kafka's cleaner stops at the first
    /// unstable offset too), oldest first, stopping at the first that is not (cleaning never
    /// skips over a segment). Returns
    /// once all their bytes are on their files: the segment the last roll closed may still have
    /// writes queued, which this waits for (without the lock).
    ///
    /// # Errors
    /// A failed write of that segment (which fences the log).
    async fn cleanable_segments(
        &self,
        config: &CleanConfig,
        now_ms: i64,
    ) -> Result<Vec<Snapshot<D::File>>> {
        let (segments, closed_writes) = {
            let core = self.core.lock().await;
            let closed = core.segments.len() - 1;
            let lag_end_ms = now_ms.saturating_sub(config.min_compaction_lag_ms);
            let unstable = core.producers.first_unstable_offset();
            let segments: Vec<Snapshot<D::File>> = core
                .segments
                .values()
                .take(closed)
                .take_while(|s| s.index.max_timestamp_ms() <= lag_end_ms)
                .take_while(|s| unstable.is_none_or(|first| s.next_offset <= first))
                .map(|s| Snapshot {
                    base: s.base,
                    next_offset: s.next_offset,
                    size: s.size,
                    file: s.file.clone(),
                    path: s.path.clone(),
                })
                .collect();
            let closed_writes = self
                .closed_writes()
                .filter(|(base, _)| segments.iter().any(|s| s.base == *base));
            (segments, closed_writes)
        };
        if let Some((_, writes)) = closed_writes {
            // No write is added to a closed segment's queue, so once it is empty the snapshot's
            // size is on the file. (The swap waits for the seal itself, `install`.)
            self.wait_closed_writes(&writes).await?;
        }
        Ok(segments)
    }

    /// Fills `map` from the dirty segments; returns the offset it covers up to (a segment
    /// boundary), or `None` if the budget asked to stop. The first dirty segment is always covered, even if the map fills inside it
    /// (keys that did not fit are then kept, never wrongly dropped), so every run progresses.
    async fn build_offset_map(
        &self,
        cleanable: &[Snapshot<D::File>],
        first_dirty: Offset,
        aborted: &[crate::producer_state::AbortedTxn],
        map: &mut OffsetMap,
        config: &CleanConfig,
        budget: &mut impl IoBudget,
    ) -> Result<Option<Offset>> {
        // Cleared in steps with a chance to yield between them: zeroing megabytes at once
        // would hold the executor for milliseconds.
        map.start_clear();
        while !map.clear_step(crate::compaction::OFFSET_MAP_CLEAR_STEP_SLOTS) {
            budget.spend(0).await;
        }
        let mut end = first_dirty;
        let mut scratch = Vec::new();
        for (i, segment) in cleanable
            .iter()
            .filter(|s| s.next_offset > first_dirty)
            .enumerate()
        {
            let mut reader = SegmentReader::new(segment);
            let mut full = false;
            while let Some(StoredBatch {
                position,
                header,
                bytes,
            }) = reader.next(budget).await?
            {
                let records =
                    header_records(&header, &bytes, &mut scratch, config.decompressed_bytes_max)
                        .map_err(|e| uncleanable(segment, position, e))?;
                if header.is_control() || is_aborted(&header, aborted) {
                    continue;
                }
                for record in records {
                    let record = record.map_err(|e| uncleanable(segment, position, e))?;
                    let Some(key) = record.key else { continue };
                    let offset = Offset(header.base_offset.0 + i64::from(record.offset_delta));
                    if map.insert(key, offset) == Err(MapFull) {
                        full = true;
                    }
                }
                // The reads were accounted when made; this lets the owner yield between
                // batches (hashing a batch's keys is CPU work).
                budget.spend(0).await;
                if budget.stop_requested() {
                    return Ok(None);
                }
            }
            if full && i > 0 {
                // This segment's later keys did not fit: it stays dirty. Its keys that did fit
                // point at offsets above `end`, which only drops records that really were
                // superseded.
                return Ok(Some(end));
            }
            end = segment.next_offset;
            if full {
                return Ok(Some(end));
            }
        }
        Ok(Some(end))
    }

    /// Adjacent segments whose sizes add up to at most `segment_bytes_max` and whose offsets
    /// span fits the index's 32-bit relative offsets.
    fn groups<'a>(&self, segments: &[&'a Snapshot<D::File>]) -> Vec<Vec<&'a Snapshot<D::File>>> {
        let mut groups: Vec<Vec<&Snapshot<D::File>>> = Vec::new();
        let mut bytes = 0u64;
        for &segment in segments {
            let fits = groups.last().is_some_and(|g| {
                bytes + segment.size <= self.config().segment_bytes_max
                    && segment.next_offset.0 - g[0].base.0 < i64::from(i32::MAX)
            });
            if fits {
                bytes += segment.size;
                groups.last_mut().expect("a group").push(segment);
            } else {
                bytes = segment.size;
                groups.push(vec![segment]);
            }
        }
        groups
    }

    /// Rewrites one group into a cleaned segment and swaps it in. Returns `false` if the
    /// budget asked to stop first (the cleaned file is then removed, the group untouched).
    #[allow(clippy::too_many_arguments)]
    async fn clean_group(
        &self,
        group: Vec<&Snapshot<D::File>>,
        map: &OffsetMap,
        policy: TombstonePolicy,
        config: &CleanConfig,
        budget: &mut impl IoBudget,
        txns: &mut TxnTracker,
        marker_epochs: &[(ProducerId, ProducerEpoch)],
        outcome: &mut CleanOutcome,
        horizon: &mut Option<i64>,
    ) -> Result<bool> {
        let base = group[0].base;
        let end = group.last().expect("a group has a segment").next_offset;
        let cleaned_path = self.dir.join(swap_name(base, end, CLEANED_SUFFIX));
        let file = self
            .disk
            .open(&cleaned_path, OpenMode::CreateTruncate)
            .await
            .map_err(io_err("creating", &cleaned_path))?;
        let mut writer = CleanedWriter::new(file, base, &self.config());
        let mut scratch = FilterScratch::default();
        let mut rewritten = BytesMut::new();
        // The latest batch of every idempotent producer, as of now: one in this group must
        // survive even when all its records are superseded. A producer that appends meanwhile
        // moves its latest batch to the active segment, so keeping this one is then merely
        // harmless. Bounded by `producers_per_partition_max`.
        let mut producer_last: Vec<Offset> = {
            let core = self.core.lock().await;
            core.producers.last_batch_offsets().collect()
        };
        producer_last.sort_unstable();
        let mut removed = RemovedMarkers::default();
        for segment in &group {
            outcome.bytes_before += segment.size;
            let mut reader = SegmentReader::new(segment);
            while let Some(StoredBatch {
                position,
                header,
                bytes,
            }) = reader.next(budget).await?
            {
                rewritten.clear();
                let control = control_type_of_records(
                    &header,
                    bytes.get(BATCH_HEADER_BYTES..).unwrap_or(&[]),
                );
                let role = txns.on_batch(&header, control);
                let producers_last = if header.is_control() {
                    marker_epochs
                        .binary_search(&(header.producer_id, header.producer_epoch))
                        .is_ok()
                } else {
                    header.producer_id.0 >= 0
                        && producer_last.binary_search(&header.last_offset()).is_ok()
                };
                let empty = if producers_last {
                    EmptyBatch::KeepHeader
                } else {
                    EmptyBatch::Remove
                };
                let filtered = filter_batch(
                    ParsedBatch::new(header, &bytes),
                    map,
                    policy,
                    role,
                    empty,
                    &mut scratch,
                    config.decompressed_bytes_max,
                    &mut rewritten,
                )
                .map_err(|e| uncleanable(segment, position, e))?;
                outcome.records_removed += u64::from(filtered.records_removed);
                outcome.tombstones_removed += u64::from(filtered.tombstones_removed);
                if role == BatchRole::Aborted {
                    outcome.aborted_records_removed += u64::from(filtered.records_removed);
                }
                if filtered.marker_removed {
                    outcome.markers_removed += 1;
                    removed.add(header.base_offset, control);
                }
                if let Some(h) = filtered.tombstone_horizon_ms {
                    *horizon = Some(horizon.map_or(h, |old: i64| old.min(h)));
                }
                budget.spend(0).await;
                if budget.stop_requested() {
                    drop(writer);
                    self.disk
                        .remove(&cleaned_path)
                        .await
                        .map_err(io_err("removing", &cleaned_path))?;
                    return Ok(false);
                }
                let kept: &[u8] = match filtered.verdict {
                    BatchVerdict::Keep => &bytes,
                    BatchVerdict::Rewritten => &rewritten,
                    BatchVerdict::Remove => continue,
                };
                writer
                    .push(
                        ParsedBatch::new(filtered.header, kept),
                        &cleaned_path,
                        budget,
                    )
                    .await?;
            }
        }
        let written = writer.finish(&cleaned_path, budget).await?;
        outcome.bytes_after += written.size;
        if self.install(&group, base, end, written, &removed).await? {
            outcome.segments_before += group.len();
            outcome.segments_after += 1;
        } else {
            outcome.groups_skipped += 1;
        }
        Ok(true)
    }

    /// Makes the producer state and its snapshots forget what the markers `removed` from a
    /// group closed, durably: the aborted transactions they ended leave the in-memory index and
    /// every snapshot, and the snapshots at or below the last removed marker are deleted, since
    /// one of them may hold a transaction open that only a removed marker closed (a rebuild from
    /// it would keep that transaction open forever and the last stable offset with it). The
    /// newest snapshot is above the cleaned segments, so recovery loses little replay.
    async fn forget_removed_markers(
        &self,
        core: &mut Core<D::File>,
        removed: &RemovedMarkers,
    ) -> Result<()> {
        let Some(last) = removed.last else {
            return Ok(());
        };
        let stale: Vec<Offset> = core.snapshots.range(..=last).copied().collect();
        for offset in stale {
            core.snapshots.remove(&offset);
            remove_if_exists(
                &self.disk,
                &self.dir.join(file_name(offset, SNAPSHOT_SUFFIX)),
            )
            .await?;
        }
        if removed.aborts.is_empty() {
            return Ok(());
        }
        let later: Vec<Offset> = core.snapshots.iter().copied().collect();
        for offset in later {
            let name = file_name(offset, SNAPSHOT_SUFFIX);
            let path = self.dir.join(&name);
            let Some(bytes) = read_whole(&self.disk, &path).await? else {
                continue;
            };
            let mut state = ProducerState::new(
                self.config().producers_per_partition_max,
                self.config().producer_id_expiration_ms,
            );
            if state.load_snapshot(&bytes) != Some(offset) {
                // Damaged: recovery would skip it anyway; gone, it cannot be misread.
                core.snapshots.remove(&offset);
                remove_if_exists(&self.disk, &path).await?;
                continue;
            }
            state.forget_aborted(&removed.aborts);
            let rewritten = state.encode_snapshot(offset);
            if rewritten != bytes.as_ref() {
                write_atomically(&self.disk, &self.dir, &name, &rewritten).await?;
            }
        }
        self.disk
            .sync_dir(&self.dir)
            .await
            .map_err(io_err("syncing", &self.dir))?;
        core.producers.forget_aborted(&removed.aborts);
        Ok(())
    }

    /// Swaps the cleaned file in for `group` if the group is still what the cleaner read.
    /// Returns `false` (and deletes the cleaned file) if the log changed meanwhile.
    pub(super) async fn install(
        &self,
        group: &[&Snapshot<D::File>],
        base: Offset,
        end: Offset,
        written: Written<D::File>,
        removed: &RemovedMarkers,
    ) -> Result<bool> {
        let cleaned_path = self.dir.join(swap_name(base, end, CLEANED_SUFFIX));
        let mut core = self.core.lock().await;
        // A seal still to write a replaced segment's index would leave a stale checkpoint next
        // to the cleaned file.
        self.wait_sealed().await?;
        let active = *core
            .segments
            .keys()
            .next_back()
            .expect("a log has a segment");
        let unchanged = group.iter().all(|snap| {
            snap.base != active
                && core.segments.get(&snap.base).is_some_and(|s| {
                    Rc::ptr_eq(&s.file, &snap.file)
                        && s.size == snap.size
                        && s.next_offset == snap.next_offset
                })
        });
        if !unchanged {
            drop(core);
            drop(written);
            self.disk
                .remove(&cleaned_path)
                .await
                .map_err(io_err("removing", &cleaned_path))?;
            return Ok(false);
        }
        // Before the commit point: a crash in between leaves markers whose transactions have
        // no data left, which an aborted index without them reads the same.
        self.forget_removed_markers(&mut core, removed).await?;
        let swap_path = self.dir.join(swap_name(base, end, SWAP_SUFFIX));
        self.disk
            .rename(&cleaned_path, &swap_path)
            .await
            .map_err(io_err("renaming", &cleaned_path))?;
        self.disk
            .sync_dir(&self.dir)
            .await
            .map_err(io_err("syncing", &self.dir))?;
        // Committed: from here a crash ends with the swap completed by recovery.
        let old: Vec<Offset> = group.iter().map(|s| s.base).collect();
        complete_swap(&self.disk, &self.dir, &swap_path, base, &old).await?;
        drop(written.file);
        let path = self.dir.join(file_name(base, LOG_SUFFIX));
        let file = self
            .disk
            .open(&path, OpenMode::Existing)
            .await
            .map_err(io_err("opening", &path))?;
        let segment = Segment {
            base,
            file: Rc::new(file),
            path,
            index: written.index,
            size: written.size,
            next_offset: end,
            first_timestamp_ms: written.first_timestamp_ms,
            allocated: written.size,
        };
        write_index(&self.disk, &self.dir, &segment).await?;
        for b in &old {
            core.segments.remove(b);
        }
        core.segments.insert(base, segment);
        // Cached copies of the old batches would serve records the cleaner removed; readers
        // already holding them keep a consistent (older) view.
        core.cache.drop_before(end);
        Ok(true)
    }
}

/// The transaction markers a group's rewrite removed.
#[derive(Debug, Default)]
pub(super) struct RemovedMarkers {
    /// Offsets of the removed ABORT markers, growing.
    aborts: Vec<Offset>,
    /// Offset of the last removed marker of any kind.
    last: Option<Offset>,
}

impl RemovedMarkers {
    fn add(&mut self, offset: Offset, control: Option<ControlType>) {
        assert!(self.last.is_none_or(|l| l < offset), "offsets grow");
        self.last = Some(offset);
        if control == Some(ControlType::Abort) {
            self.aborts.push(offset);
        }
    }
}

/// Names a cleaned or swap file after the offsets it covers: `<base>.<end><suffix>`.
pub(super) fn swap_name(base: Offset, end: Offset, suffix: &str) -> String {
    format!("{:020}.{:020}{suffix}", base.0, end.0)
}

/// The base and end offsets in a cleaned or swap file name.
fn parse_swap_name(name: &str, suffix: &str) -> Option<(Offset, Offset)> {
    let stem = name.strip_suffix(suffix)?;
    let (base, end) = stem.split_once('.')?;
    let base = parse_file_name(&format!("{base}{LOG_SUFFIX}"), LOG_SUFFIX)?;
    let end = parse_file_name(&format!("{end}{LOG_SUFFIX}"), LOG_SUFFIX)?;
    (base <= end).then_some((base, end))
}

/// Replaces the segments `old` (the first is `base`) by the committed swap file `swap`:
/// removes their index checkpoints and log files (all but `base`'s, which the rename
/// replaces), fsyncs the directory, renames the swap over `<base>.log`, fsyncs the directory.
/// Idempotent, so recovery can rerun it.
async fn complete_swap<D: Disk>(
    disk: &D,
    dir: &Path,
    swap: &Path,
    base: Offset,
    old: &[Offset],
) -> Result<()> {
    for &b in old {
        let index = dir.join(file_name(b, INDEX_SUFFIX));
        remove_if_exists(disk, &index).await?;
        if b != base {
            let log = dir.join(file_name(b, LOG_SUFFIX));
            remove_if_exists(disk, &log).await?;
        }
    }
    // The old checkpoints must be gone before the new file takes the name: a stale checkpoint
    // that happened to cover the new file's exact size would be trusted at the next open.
    disk.sync_dir(dir).await.map_err(io_err("syncing", dir))?;
    let log = dir.join(file_name(base, LOG_SUFFIX));
    disk.rename(swap, &log)
        .await
        .map_err(io_err("renaming", swap))?;
    disk.sync_dir(dir).await.map_err(io_err("syncing", dir))
}

/// Finishes or discards what a crash left of a cleaning, before the log lists its segments:
/// `.cleaned` files (not committed) are deleted; each `.swap` (committed) replaces the segments
/// whose base offsets fall in its range. Returns whether anything changed.
///
/// # Errors
/// I/O errors.
pub(super) async fn recover_swaps<D: Disk>(disk: &D, dir: &Path, names: &[String]) -> Result<bool> {
    let mut changed = false;
    for name in names {
        if parse_swap_name(name, CLEANED_SUFFIX).is_some() {
            let path = dir.join(name);
            disk.remove(&path)
                .await
                .map_err(io_err("removing", &path))?;
            changed = true;
        }
    }
    for name in names {
        let Some((base, end)) = parse_swap_name(name, SWAP_SUFFIX) else {
            continue;
        };
        let old: Vec<Offset> = names
            .iter()
            .filter_map(|n| parse_file_name(n, LOG_SUFFIX))
            .filter(|&b| b >= base && b < end)
            .collect();
        complete_swap(disk, dir, &dir.join(name), base, &old).await?;
        changed = true;
    }
    if changed {
        disk.sync_dir(dir).await.map_err(io_err("syncing", dir))?;
    }
    Ok(changed)
}

fn uncleanable<F>(
    segment: &Snapshot<F>,
    position: u64,
    reason: spate_wire::WireError,
) -> StorageError {
    StorageError::UncleanableBatch {
        segment: segment.path.clone(),
        position,
        reason,
    }
}

/// One batch read back from a segment, with its header parsed once for every later step.
pub(super) struct StoredBatch {
    /// Byte position of the batch in its segment.
    pub(super) position: u64,
    pub(super) header: BatchHeader,
    /// The whole batch, CRC-checked.
    pub(super) bytes: Bytes,
}

/// Reads a closed segment batch by batch in large chunks, checking each batch's CRC32C.
pub(super) struct SegmentReader<'a, F> {
    segment: &'a Snapshot<F>,
    position: u64,
    chunk: Bytes,
    chunk_pos: u64,
}

impl<'a, F: DiskFile> SegmentReader<'a, F> {
    pub(super) fn new(segment: &'a Snapshot<F>) -> Self {
        SegmentReader {
            segment,
            position: 0,
            chunk: Bytes::new(),
            chunk_pos: 0,
        }
    }

    async fn read(&mut self, len: usize, budget: &mut impl IoBudget) -> Result<()> {
        let s = self.segment;
        let len = len.min((s.size - self.position) as usize);
        self.chunk = s
            .file
            .read_at(self.position, len)
            .await
            .map_err(io_err("reading", &s.path))?;
        self.chunk_pos = self.position;
        budget.spend(len as u64).await;
        Ok(())
    }

    /// The next batch, or `None` at the end of the segment.
    pub(super) async fn next(&mut self, budget: &mut impl IoBudget) -> Result<Option<StoredBatch>> {
        let s = self.segment;
        if self.position >= s.size {
            return Ok(None);
        }
        let corrupt = |position, reason| StorageError::CorruptBatch {
            segment: s.path.clone(),
            position,
            reason,
        };
        let in_chunk = |r: &Self, len: u64| r.position + len <= r.chunk_pos + r.chunk.len() as u64;
        if !in_chunk(self, BATCH_HEADER_BYTES as u64) {
            self.read(CLEAN_READ_CHUNK_BYTES, budget).await?;
        }
        let at = (self.position - self.chunk_pos) as usize;
        let header =
            BatchHeader::parse(&self.chunk[at..]).map_err(|r| corrupt(self.position, r))?;
        let total = header.total_bytes();
        if total > RECOVERY_BATCH_BYTES_MAX || self.position + total as u64 > s.size {
            return Err(corrupt(
                self.position,
                spate_wire::batch::BatchError::Truncated {
                    needed: total,
                    available: (s.size - self.position) as usize,
                },
            ));
        }
        if !in_chunk(self, total as u64) {
            self.read(CLEAN_READ_CHUNK_BYTES.max(total), budget).await?;
        }
        let at = (self.position - self.chunk_pos) as usize;
        let bytes = self.chunk.slice(at..at + total);
        verify_crc(&bytes).map_err(|r| corrupt(self.position, r))?;
        let position = self.position;
        self.position += total as u64;
        Ok(Some(StoredBatch {
            position,
            header,
            bytes,
        }))
    }
}

/// What a finished cleaned file holds.
pub(super) struct Written<F> {
    file: F,
    size: u64,
    index: SegmentIndex,
    first_timestamp_ms: Option<i64>,
}

/// Writes a cleaned segment sequentially through one aligned buffer (direct I/O rules).
pub(super) struct CleanedWriter<F: DiskFile> {
    file: F,
    buf: F::Buf,
    capacity: usize,
    buf_start: u64,
    filled: usize,
    index: SegmentIndex,
    first_timestamp_ms: Option<i64>,
}

impl<F: DiskFile> CleanedWriter<F> {
    pub(super) fn new(file: F, base: Offset, config: &crate::LogConfig) -> Self {
        let capacity = config.write_buffer_bytes_max;
        let buf = file.alloc_buf(capacity);
        CleanedWriter {
            file,
            buf,
            capacity,
            buf_start: 0,
            filled: 0,
            index: SegmentIndex::new(base, config.index_interval_bytes),
            first_timestamp_ms: None,
        }
    }

    pub(super) async fn push(
        &mut self,
        batch: ParsedBatch<'_>,
        path: &Path,
        budget: &mut impl IoBudget,
    ) -> Result<()> {
        let header = batch.header();
        let position = self.buf_start + self.filled as u64;
        self.index.on_batch(header, position);
        self.first_timestamp_ms
            .get_or_insert(header.max_timestamp_ms);
        let mut data = batch.bytes();
        while !data.is_empty() {
            let n = (self.capacity - self.filled).min(data.len());
            self.buf.as_mut_slice()[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.capacity {
                let buf = std::mem::replace(&mut self.buf, self.file.alloc_buf(self.capacity));
                let (result, back) = self.file.write_at(buf, self.buf_start).await;
                result.map_err(io_err("writing", path))?;
                if let Some(back) = back {
                    self.buf = back;
                }
                budget.spend(self.capacity as u64).await;
                self.buf_start += self.capacity as u64;
                self.filled = 0;
            }
        }
        Ok(())
    }

    /// Writes the rest (zero-padded to a block), cuts the file to its exact size and syncs it.
    pub(super) async fn finish(
        mut self,
        path: &Path,
        budget: &mut impl IoBudget,
    ) -> Result<Written<F>> {
        let size = self.buf_start + self.filled as u64;
        if self.filled > 0 {
            let len = align_up(self.filled as u64) as usize;
            self.buf.as_mut_slice()[self.filled..len].fill(0);
            self.buf.shrink_to(len);
            let (result, _) = self.file.write_at(self.buf, self.buf_start).await;
            result.map_err(io_err("writing", path))?;
            budget.spend(len as u64).await;
        }
        self.file
            .truncate(size)
            .await
            .map_err(io_err("truncating", path))?;
        self.file
            .fdatasync()
            .await
            .map_err(io_err("syncing", path))?;
        Ok(Written {
            file: self.file,
            size,
            index: self.index,
            first_timestamp_ms: self.first_timestamp_ms,
        })
    }
}

/// Whether `header`'s batch belongs to one of the `aborted` transactions (its producer's, and
/// between its first batch and its ABORT marker).
fn is_aborted(header: &BatchHeader, aborted: &[crate::producer_state::AbortedTxn]) -> bool {
    header.is_transactional()
        && aborted.iter().any(|t| {
            t.producer_id == header.producer_id
                && t.first_offset <= header.base_offset
                && header.base_offset < t.last_offset
        })
}
