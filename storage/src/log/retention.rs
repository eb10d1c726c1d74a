//! Removing data: [`Log::apply_retention`] (oldest closed segments past time or size),
//! [`Log::truncate_to`] (everything at or above an offset) and idempotent producers' expiry.
//!
//! Invariants kept here: retention never deletes the active segment, and both wait for a
//! pending seal first (it would otherwise write the index or snapshot of a segment removed
//! here); a truncation is durable before it returns (the durable offset is then the new log
//! end), removes later segments newest first (a crash part way leaves a prefix of the old log,
//! never a hole), replaces the index checkpoint by one of the kept batches before cutting the
//! file, changes the in-memory state only once the files are cut, truncates the epoch cache
//! and rebuilds the producer state from what is left, fences the log if it fails part way, and
//! counts itself in `truncations` so that no sync started before it advances the durable
//! offset; snapshots below the log start go with the segments, the one at the new start stays.

use spate_wire::types::Offset;

use super::open::rebuild_producers;
use super::read::read_header;
use super::start::save_log_start;
use super::{io_err, remove_file, remove_if_exists, Core, Log, RetentionOutcome};
use crate::epoch::EPOCH_FILE_NAME;
use crate::error::{Result, StorageError};
use crate::files::write_atomically;
use crate::index::{Checkpoint, SegmentIndex};
use crate::io::{Disk, DiskFile};
use crate::segment::{
    file_name, scan, OffsetOrder, ScanEnd, Segment, INDEX_SUFFIX, SNAPSHOT_SUFFIX,
};

impl<D: Disk> Log<D> {
    /// Drops idempotent producers idle for `producer_id_expiration_ms` (measured from their
    /// latest batch's max timestamp to `now_ms`); returns how many. The owner calls this
    /// periodically (the log has no clock).
    pub async fn remove_expired_producers(&self, now_ms: i64) -> usize {
        self.core.lock().await.producers.remove_expired(now_ms)
    }

    /// Removes every batch with offsets at or above `offset`, cutting before the batch that
    /// contains it (the log end may end up below `offset`); returns the new log end. Durable
    /// before it returns. A follower cuts its divergent suffix with this (KIP-101): afterwards
    /// the epoch cache has no entry at or past the new end, the producer state is what the
    /// batches kept give (a removed batch's sequences no longer count), the indexes and the
    /// tail cache hold only kept batches, and the durable offset is the new end. An `offset` at
    /// or past the log end changes nothing.
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] if `offset` is below the log start; I/O errors. A
    /// failure after the first file was changed fences the log ([`StorageError::Fenced`] from
    /// then on); the reopen recovers a prefix of the log as it was, at least as long as asked.
    pub async fn truncate_to(&self, offset: Offset) -> Result<Offset> {
        // Before `core`: an active-segment checkpoint being written must land before this
        // replaces it, not after.
        let _checkpoint = self.checkpoint.lock().await;
        let mut core = self.core.lock().await;
        // The seal writes the closed segment's index and the snapshot at the active base: both
        // may be cut away here, and must not be written back after.
        self.wait_sealed().await?;
        self.check_fenced()?;
        if offset >= core.log_end {
            return Ok(core.log_end);
        }
        let start = self.log_start.get();
        if offset < start {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start,
                end: core.log_end,
            });
        }
        self.write_out(&mut core).await?;
        self.truncations.set(self.truncations.get() + 1);
        let result = self.cut_tail(&mut core, offset).await;
        if result.is_err() {
            // Part way, the files may already be cut while the producer state or the epoch
            // checkpoint are not: appends must not go on from a state the files do not back.
            // A reopen recovers from the files, which hold a prefix of the old log.
            self.fenced.set(true);
        }
        result
    }

    /// The body of [`Log::truncate_to`] once the active segment is written out: reads what the
    /// cut needs, changes the files, then the in-memory state in one step (so a failure on the
    /// files leaves the old state in memory, every byte of it still readable through the open
    /// files), then rewrites the epoch checkpoint and rebuilds the producer state.
    async fn cut_tail(&self, core: &mut Core<D::File>, offset: Offset) -> Result<Offset> {
        let (&cut_base, _) = core.segments.range(..=offset).next_back().expect("segment");
        let later: Vec<Offset> = core
            .segments
            .range(cut_base..)
            .skip(1)
            .map(|(b, _)| *b)
            .collect();
        let segment = core.segments.get(&cut_base).expect("segment");
        // Find the first batch that holds `offset` or later.
        let mut position = segment.index.lookup(offset).position;
        let mut new_end = segment.next_offset;
        while position < segment.size {
            let header = read_header(segment, position).await?;
            if header.last_offset() >= offset {
                new_end = header.base_offset;
                break;
            }
            position += header.total_bytes() as u64;
        }
        // In a compacted segment `offset` may fall in a gap (its batch was cleaned away): the
        // log then ends at `offset` itself, as Kafka's truncation sets its end to the target,
        // so a follower fetches from there and not from past a batch the leader may still have.
        let new_end = new_end.min(offset);
        let mut index = SegmentIndex::new(segment.base, self.config().index_interval_bytes);
        let rescan = scan(
            &*segment.file,
            position,
            0,
            segment.base,
            OffsetOrder::Increasing,
            &mut index,
        )
        .await?;
        assert_eq!(
            rescan.end,
            ScanEnd::Clean,
            "bytes before the cut were valid"
        );
        // A cleaned segment may have a gap before the cut batch.
        assert!(rescan.next_offset <= new_end);
        // The partial last block is read back at the next append, from the cut file.
        let write = super::WriteBuffer::released(position);
        // Newest first: a crash part way leaves the log a prefix of what it was, never one with
        // a hole that recovery would take for a gap left by compaction (it joins a segment that
        // ends early to the next one) and so bring removed batches back after it.
        for base in later.iter().rev() {
            self.remove_segment_files(&core.segments[base]).await?;
        }
        // The index checkpoint would describe batches that are gone: before the file is cut it
        // is replaced (atomically, durably) by one covering exactly the kept batches, valid
        // before and after the cut. Not just removed: recovery would then rescan this segment,
        // now the last one, for dense offsets, and cut a compacted segment at its first gap,
        // losing batches this truncation kept and reported durable.
        let checkpoint = Checkpoint {
            covered_bytes: position,
            next_offset: new_end,
        };
        let name = file_name(cut_base, INDEX_SUFFIX);
        write_atomically(&self.disk, &self.dir, &name, &index.encode(checkpoint)).await?;
        segment
            .file
            .truncate(position)
            .await
            .map_err(io_err("truncating", &segment.path))?;
        segment
            .file
            .fdatasync()
            .await
            .map_err(io_err("syncing", &segment.path))?;
        // The files are cut; now the state, with no await in between.
        for base in &later {
            core.segments.remove(base);
        }
        let segment = core.segments.get_mut(&cut_base).expect("segment");
        segment.allocated = position;
        segment.index = index;
        segment.size = position;
        segment.next_offset = new_end;
        segment.first_timestamp_ms = rescan.first_timestamp_ms;
        core.write = write;
        self.writes().reset(position);
        core.checkpointed = position;
        core.cache.truncate_from(new_end);
        core.log_end = new_end;
        self.log_end.set(new_end);
        // Everything kept is durable: the closed segments were sealed (the caller waited) and
        // the cut one was written out and synced above. Syncs in flight no longer count (the
        // caller bumped `truncations`), and nothing is owed one.
        self.durable.set(new_end);
        self.hw_floor.set(self.hw_floor.get().min(new_end));
        self.synced_bytes.set(self.appended_bytes.get());
        if self.log_start.get() > new_end {
            // The cut batch held the start (DeleteRecords moved it inside a batch): the start
            // follows the end down, as Kafka's truncateTo does. A crash before this write is
            // clamped the same way at open.
            self.log_start.set(new_end);
            save_log_start(&self.disk, &self.dir, new_end).await?;
        }
        let epochs_changed = core.epochs.truncate_from_end(new_end);
        if epochs_changed {
            write_atomically(
                &self.disk,
                &self.dir,
                EPOCH_FILE_NAME,
                &core.epochs.encode(),
            )
            .await?;
        }
        let Core {
            segments,
            snapshots,
            producers,
            ..
        } = core;
        rebuild_producers(
            &self.disk,
            &self.dir,
            segments,
            snapshots,
            self.log_start.get(),
            producers,
        )
        .await?;
        Ok(new_end)
    }

    /// Deletes the closed segments wholly below the log start (DeleteRecords), then the oldest
    /// closed segments that are past `retention_ms` (their newest batch is older than
    /// `now_ms - retention_ms`) or beyond `retention_bytes`, and advances the log start. Never touches the active segment; readers holding a
    /// [`FileRange`](super::FileRange) keep their bytes.
    ///
    /// # Errors
    /// I/O errors removing files (the segments already removed stay removed).
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let mut core = self.core.lock().await;
        // A segment being sealed may be deleted here; its seal must not write its index after.
        self.wait_sealed().await?;
        // Segments wholly below a start moved by DeleteRecords go first (those a crash kept
        // between the checkpoint write and their removal, too).
        let (mut segments_deleted, mut bytes_deleted) =
            self.remove_segments_below_start(&mut core).await?;
        let mut total: u64 = core.segments.values().map(|s| s.size).sum();
        loop {
            if core.segments.len() < 2 {
                break;
            }
            let oldest = core.segments.values().next().expect("segment");
            let expired = self
                .config()
                .retention_ms
                .is_some_and(|ms| oldest.index.max_timestamp_ms() < now_ms.saturating_sub(ms));
            let oversize = self
                .config()
                .retention_bytes
                .is_some_and(|bytes_max| total - oldest.size >= bytes_max);
            if !expired && !oversize {
                break;
            }
            let base = oldest.base;
            let segment = core.segments.remove(&base).expect("segment");
            self.remove_segment_files(&segment).await?;
            total -= segment.size;
            segments_deleted += 1;
            bytes_deleted += segment.size;
            let first = *core.segments.keys().next().expect("segment");
            // A start moved by DeleteRecords may already be past this segment's base.
            self.log_start.set(self.log_start.get().max(first));
        }
        if segments_deleted > 0 {
            self.forget_below_start(&mut core).await?;
        }
        Ok(RetentionOutcome {
            segments_deleted,
            bytes_deleted,
            log_start_offset: self.log_start.get(),
        })
    }

    /// After segments below the log start were removed: drops their cached batches, the
    /// producer snapshots below the start and the epoch entries before it.
    pub(super) async fn forget_below_start(&self, core: &mut Core<D::File>) -> Result<()> {
        let start = self.log_start.get();
        // Only below the first kept segment: the cache also holds batches not yet written,
        // which a start inside the active segment must not drop.
        let first = *core.segments.keys().next().expect("segment");
        core.cache.drop_before(first);
        // Kafka's rule: snapshots below the log start go, the producers stay in memory (a
        // producer whose batches were all deleted is still deduplicated until it expires).
        // The snapshot at the new log start stays: recovery replays from it.
        let old: Vec<Offset> = core.snapshots.range(..start).copied().collect();
        for offset in old {
            core.snapshots.remove(&offset);
            remove_file(
                &self.disk,
                &self.dir.join(file_name(offset, SNAPSHOT_SUFFIX)),
            )
            .await?;
        }
        if core.epochs.truncate_from_start(start) {
            write_atomically(
                &self.disk,
                &self.dir,
                EPOCH_FILE_NAME,
                &core.epochs.encode(),
            )
            .await?;
        }
        Ok(())
    }

    pub(super) async fn remove_segment_files(&self, segment: &Segment<D::File>) -> Result<()> {
        let index_path = segment.index_path(&self.dir);
        for path in [&index_path, &segment.path] {
            remove_if_exists(&self.disk, path).await?;
        }
        self.disk
            .sync_dir(&self.dir)
            .await
            .map_err(io_err("syncing", &self.dir))
    }
}
