//! Rolling to a new segment and sealing the old one: the switch under the core lock, the seal
//! outside it (`SealFiles::seal`, driven by appends, waiters and [`Log::drive_io`]), and the
//! spare file made ahead for the next roll.
//!
//! Invariants kept here: at most one seal in flight (a roll waits for the previous one); the
//! old segment's `.sealing` marker is durable before the new segment is, and goes only once the
//! old segment's data is durable; the seal's fdatasync starts only after every write of the old
//! segment completed; nothing in the new segment is reported durable before the seal completed;
//! a full disk at the roll leaves the old segment active and its data unchanged.

use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::Poll;

use spate_wire::batch::BatchHeader;
use spate_wire::types::Offset;

use super::writes::{Until, Writes};
use super::{
    io_err, remove_if_exists, ClosedWrites, Core, Log, PendingSync, Spare, SpareState, SyncMeta,
    WriteBuffer, SPARE_SEGMENT_NAME,
};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::files::write_atomically;
use crate::index::{Checkpoint, SegmentIndex};
use crate::io::{align_up, Disk, DiskFile, OpenMode};
use crate::segment::{
    file_name, Segment, INDEX_SUFFIX, LOG_SUFFIX, SEALING_SUFFIX, SNAPSHOT_SUFFIX,
};

/// What the seal writes besides the segment file itself (encoded under the core lock).
struct SealFiles<D: Disk> {
    disk: D,
    dir: PathBuf,
    marker: PathBuf,
    index_name: String,
    index_bytes: Vec<u8>,
    snapshot_name: String,
    snapshot_bytes: Vec<u8>,
}

impl<D: Disk> SealFiles<D> {
    /// The seal's steps on the old segment `file`, which holds `size` bytes of data once its
    /// `writes` (the roll added the last one, the tail) completed. Order matters: the fdatasync
    /// covers only completed writes, so it waits for all of them; the marker goes only once the
    /// data is durable, and the index rename's directory fsync makes the marker's removal
    /// durable too.
    ///
    /// # Errors
    /// A failed write of the old segment, and those of the truncate, the fdatasync and the
    /// marker's removal, which fence the log. The index and snapshot writes only save work at the
    /// next open (a closed segment without a checkpoint is rescanned and given one, producers are
    /// replayed from an older snapshot), so a full disk there costs nothing durable and is not an
    /// error.
    async fn seal(
        self,
        writes: Rc<Writes<D::File>>,
        file: Rc<D::File>,
        path: PathBuf,
        size: u64,
    ) -> Result<()> {
        // Driven by whoever polls the seal (appends, waiters); no write is added any more.
        writes.wait(Until::Empty).await;
        if let Some(e) = writes.failure() {
            return Err(e);
        }
        assert_eq!(writes.written(), size, "the closed segment is written out");
        // Cut first: then one fdatasync makes both the data and the size durable.
        file.truncate(size)
            .await
            .map_err(io_err("truncating", &path))?;
        file.fdatasync().await.map_err(io_err("syncing", &path))?;
        remove_if_exists(&self.disk, &self.marker).await?;
        let index = write_atomically(&self.disk, &self.dir, &self.index_name, &self.index_bytes);
        if index.await.is_err() {
            // The marker's removal must still become durable before the segment can be
            // compacted (recovery scans a marked segment for dense offsets).
            self.disk
                .sync_dir(&self.dir)
                .await
                .map_err(io_err("syncing", &self.dir))?;
        }
        // Everything below the new base is durable now, so the snapshot never describes a
        // batch a crash could take away.
        let snapshot = write_atomically(
            &self.disk,
            &self.dir,
            &self.snapshot_name,
            &self.snapshot_bytes,
        );
        // Ignored for the reason above; `rebuild_producers` skips a missing snapshot.
        let _ = snapshot.await;
        Ok(())
    }
}

/// Makes the next roll's file ahead, off the append path: a create, an fallocate and a
/// directory fsync (a journal commit). Optional: without it (a full disk, say) the roll creates
/// the file itself and reports a full disk there.
async fn create_spare<D: Disk>(
    disk: D,
    dir: PathBuf,
    bytes: u64,
) -> std::io::Result<Spare<D::File>> {
    let path = dir.join(SPARE_SEGMENT_NAME);
    let file = disk.open(&path, OpenMode::CreateTruncate).await?;
    let made = async {
        file.pre_allocate(bytes).await?;
        disk.sync_dir(&dir).await
    };
    if let Err(e) = made.await {
        drop(file);
        let _ = disk.remove(&path).await;
        return Err(e);
    }
    Ok(Spare {
        file,
        allocated: bytes,
    })
}

/// Clears `driving` when the task polling the seal stops (finished or dropped), and wakes the
/// waiters so one of them drives on.
struct DrivingGuard<'a, D: Disk>(&'a Log<D>);

impl<D: Disk> Drop for DrivingGuard<'_, D> {
    fn drop(&mut self) {
        self.0.seal.driving.set(false);
        self.0.synced.notify_all();
    }
}

impl<D: Disk> Log<D> {
    /// Rolls to a new segment if the batch would overflow the active one or it is too old.
    pub(super) async fn maybe_roll(
        &self,
        core: &mut Core<D::File>,
        header: &BatchHeader,
    ) -> Result<()> {
        let active = core
            .segments
            .values()
            .next_back()
            .expect("a log has a segment");
        if active.is_empty() {
            return Ok(());
        }
        let too_big = active.size + header.total_bytes() as u64 > self.config().segment_bytes_max;
        let too_old = active.first_timestamp_ms.is_some_and(|first| {
            header.max_timestamp_ms.saturating_sub(first) > self.config().segment_ms
        });
        if too_big || too_old {
            self.roll(core).await?;
        }
        Ok(())
    }

    /// Closes the active segment and opens a new one at the log end. Under the lock (on the
    /// append path) only what the switch needs: add the write of the old segment's tail (not
    /// waiting for its writes: at saturation that was 30-130 ms), create its `.sealing` marker
    /// and the new file (a full disk fails here and leaves the old segment active, its data
    /// unchanged), encode its index and the producer snapshot, and move the old segment's write
    /// queue to the seal slot, with a new queue for the new file. The seal (wait for the old
    /// writes, truncate, fdatasync, index and snapshot writes: several journal commits) runs
    /// without the lock, started here and driven by later appends and waiters (`poll_seal`,
    /// `drive_seal`).
    async fn roll(&self, core: &mut Core<D::File>) -> Result<()> {
        // At most one seal in flight; segments roll seconds apart, so this rarely waits.
        self.wait_sealed().await?;
        assert!(
            self.seal.writes.borrow().is_none(),
            "a completed seal released the closed segment's writes"
        );
        // Only a dropped sync leaves a tail write behind (see `start_sync`): waiting for it
        // (rare) keeps one tail copy per queue. Then, with no await in between (a failure seen
        // meanwhile would forbid adding), the last write of the old segment.
        self.wait_writes(Until::NoTail).await?;
        self.add_tail_write(core);
        let old_base = *core
            .segments
            .keys()
            .next_back()
            .expect("a log has a segment");
        let marker = self.dir.join(file_name(old_base, SEALING_SUFFIX));
        // No fsync of its own: `create_segment` fsyncs the directory, so the marker is durable
        // before the new segment exists durably, and before any byte of it can be.
        drop(
            self.disk
                .open(&marker, OpenMode::CreateTruncate)
                .await
                .map_err(io_err("creating", &marker))?,
        );
        let spare = match self.spare.replace(SpareState::None) {
            SpareState::None => None,
            SpareState::Ready(spare) => Some(spare),
            // Rolled again before the spare was made (segments roll seconds apart): wait.
            SpareState::Making(making) => making.await.ok(),
        };
        let new = match spare {
            Some(spare) => self.adopt_spare(spare, core.log_end).await,
            None => create_segment(&self.disk, &self.dir, &self.config(), core.log_end).await,
        };
        let new = match new {
            Ok(new) => new,
            Err(e) => {
                // Best effort: a marker on the active segment is harmless (recovery removes it).
                let _ = self.disk.remove(&marker).await;
                return Err(e);
            }
        };
        let new_base = new.base;
        let log_end = core.log_end;
        // A write of the old segment that failed meanwhile fences the log before the switch.
        self.check_fenced()?;
        let old = core
            .segments
            .get_mut(&old_base)
            .expect("the active segment");
        assert_eq!(old.next_offset, log_end);
        let old_writes = self.writes();
        assert_eq!(
            old_writes.issued(),
            old.size,
            "every byte of the old segment has its write"
        );
        // The seal cuts the preallocated tail; nothing allocates in a closed segment.
        old.allocated = old.size;
        let checkpoint = Checkpoint {
            covered_bytes: old.size,
            next_offset: old.next_offset,
        };
        let files = SealFiles {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            marker,
            index_name: file_name(old_base, INDEX_SUFFIX),
            index_bytes: old.index.encode(checkpoint),
            snapshot_name: file_name(log_end, SNAPSHOT_SUFFIX),
            snapshot_bytes: core.producers.encode_snapshot(log_end),
        };
        let meta = SyncMeta {
            path: old.path.clone(),
            segment: old_base,
            position: old.size,
            target: log_end,
            appended: self.appended_bytes.get(),
            truncations: self.truncations.get(),
        };
        let future = files.seal(
            Rc::clone(&old_writes),
            old.file.clone(),
            old.path.clone(),
            old.size,
        );
        // The new file gets a queue of its own; the old one's spare buffers move to it, so the
        // appends that follow cause no page faults.
        let capacity = self.config().write_buffer_bytes_max;
        let new_writes = Writes::new(0, capacity);
        for (buf, grant) in old_writes.retire() {
            new_writes.give_spare(buf, grant);
        }
        core.segments.insert(new_base, new);
        core.write = WriteBuffer::released(0);
        // A sync in flight keeps its `Rc` of the old queue and goes on waiting for the old
        // file's writes.
        *self.writes.borrow_mut() = Rc::new(new_writes);
        *self.seal.writes.borrow_mut() = Some(ClosedWrites {
            base: old_base,
            writes: old_writes,
        });
        core.checkpointed = 0;
        // Listed before the file exists: readers of the set tolerate a missing snapshot, and
        // retention and pruning never remove the one at the active segment's base.
        core.snapshots.insert(log_end);
        let mut slot = self.seal.pending.borrow_mut();
        assert!(slot.is_none(), "one seal at a time");
        *slot = Some(PendingSync {
            future: Box::pin(future),
            meta,
        });
        Ok(())
    }

    /// Makes the spare file segment `base` by renaming it. No directory fsync here: nothing in
    /// the new segment is relied on before the seal completed, and the seal's index write
    /// fsyncs the directory first; the marker, created before the rename, cannot be lost
    /// while the new name survives (the filesystem journal keeps directory operations of one
    /// directory in order).
    async fn adopt_spare(&self, spare: Spare<D::File>, base: Offset) -> Result<Segment<D::File>> {
        let from = self.dir.join(SPARE_SEGMENT_NAME);
        let path = self.dir.join(file_name(base, LOG_SUFFIX));
        if let Err(e) = self.disk.rename(&from, &path).await {
            drop(spare);
            // Best effort: a leftover is deleted at the next open.
            let _ = self.disk.remove(&from).await;
            return Err(StorageError::from_io("renaming", &from, e));
        }
        // Reopened under its new name: glommio's DMA file keeps the path it was opened with and
        // looks it up again (fallocate reads the size through it), so the old handle would fail.
        drop(spare.file);
        let file = self
            .disk
            .open(&path, OpenMode::Existing)
            .await
            .map_err(io_err("opening", &path))?;
        Ok(Segment {
            base,
            file: Rc::new(file),
            path,
            index: SegmentIndex::new(base, self.config().index_interval_bytes),
            size: 0,
            next_offset: base,
            first_timestamp_ms: None,
            allocated: spare.allocated,
        })
    }

    /// Moves the spare file's making on without waiting (polled once per append, like the
    /// seal); a failure only means the next roll creates its file itself.
    pub(super) fn poll_spare(&self) {
        let mut spare = self.spare.borrow_mut();
        let SpareState::Making(making) = &mut *spare else {
            return;
        };
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(result) = making.as_mut().poll(&mut cx) {
            *spare = match result {
                Ok(made) => SpareState::Ready(made),
                Err(_) => SpareState::None,
            };
        }
    }

    /// Whether a roll's seal is pending.
    pub(super) fn sealing(&self) -> bool {
        self.seal.pending.borrow().is_some()
    }

    /// Collects the seal if it has finished; never waits. Polls it once in place unless another
    /// task is driving it (a future wakes only the waker it was last polled with); that also
    /// moves the closed segment's queued writes on. Returns whether it submitted one of them
    /// (glommio hands it to the kernel when the task yields).
    pub(super) fn poll_seal(&self) -> Result<bool> {
        if self.seal.driving.get() {
            return Ok(false);
        }
        // Driven here rather than inside the seal only to learn whether a write was submitted.
        let submitted = self
            .closed_writes()
            .is_some_and(|(_, writes)| writes.drive());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match self.poll_seal_in_place(&mut cx) {
            Poll::Ready(Some((pending, result))) => self.finish_seal(&pending.meta, result)?,
            Poll::Ready(None) | Poll::Pending => {}
        }
        Ok(submitted)
    }

    /// Polls the seal in its slot and takes it out once it finished (`None`: no seal).
    fn poll_seal_in_place(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<(PendingSync, Result<()>)>> {
        let mut slot = self.seal.pending.borrow_mut();
        let Some(pending) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        match pending.future.as_mut().poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some((slot.take().expect("polled above"), result))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Drives the seal until it completes, or waits for the task that drives it. Returns
    /// whether there was a seal.
    pub(super) async fn drive_seal(&self) -> Result<bool> {
        if !self.sealing() {
            return Ok(false);
        }
        if self.seal.driving.get() {
            self.synced.notified().await;
            return Ok(true);
        }
        self.seal.driving.set(true);
        let driving = DrivingGuard(self);
        let finished = poll_fn(|cx| self.poll_seal_in_place(cx)).await;
        drop(driving);
        let (pending, result) = finished.expect("only its driver removes a seal");
        self.finish_seal(&pending.meta, result)?;
        Ok(true)
    }

    /// Waits until no seal is pending (for what needs the closed segments settled: a roll,
    /// truncation, retention, a compaction swap, close). Never takes the core lock, so callers
    /// may hold it.
    pub(super) async fn wait_sealed(&self) -> Result<()> {
        while self.drive_seal().await? {}
        Ok(())
    }

    /// Records a finished seal: the old segment is durable, so everything below the new
    /// segment's base is.
    fn finish_seal(&self, meta: &SyncMeta, result: Result<()>) -> Result<()> {
        assert!(!self.sealing(), "the finished seal left its slot");
        self.synced.notify_all();
        if let Err(e) = result {
            // As for a failed sync: never retry, fence until a reopen rescans the tail. (The
            // closed segment's writes stay in the slot: reads keep using their written position.)
            self.fenced.set(true);
            return Err(e);
        }
        // Every write of the closed segment completed (the seal waited for them): it is whole
        // on its file, and reads and the cache's eviction treat it as any sealed segment.
        let closed = self.seal.writes.borrow_mut().take();
        let closed = closed.expect("a roll leaves its closed segment's writes with the seal");
        assert_eq!(closed.base, meta.segment);
        assert_eq!(closed.writes.written(), meta.position);
        let mut spare = self.spare.borrow_mut();
        assert!(
            matches!(*spare, SpareState::None),
            "the roll that started this seal took the spare"
        );
        let bytes = spare_allocation_bytes(&self.config(), meta.position);
        *spare = SpareState::Making(Box::pin(create_spare(
            self.disk.clone(),
            self.dir.clone(),
            bytes,
        )));
        drop(spare);
        self.mark_durable(meta.target, meta.truncations);
        self.synced_bytes
            .set(self.synced_bytes.get().max(meta.appended));
        Ok(())
    }
}

/// What a new segment file is preallocated to (later steps double it: `Log::reserve`).
fn first_allocation_bytes(config: &LogConfig) -> u64 {
    config
        .preallocate_bytes
        .min(align_up(config.segment_bytes_max))
}

/// What the next segment's file is preallocated to after a segment of `closed_bytes` was
/// sealed: a busy partition (whose segments fill) starts its next one at a full step, so it
/// keeps few fallocates per segment; one rolled by time with little in it starts small again.
fn spare_allocation_bytes(config: &LogConfig, closed_bytes: u64) -> u64 {
    align_up(closed_bytes)
        .clamp(config.preallocate_bytes, config.preallocate_step_bytes_max)
        .min(align_up(config.segment_bytes_max))
}

pub(super) async fn create_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    config: &LogConfig,
    base: Offset,
) -> Result<Segment<D::File>> {
    let path = dir.join(file_name(base, LOG_SUFFIX));
    let file = disk
        .open(&path, OpenMode::CreateTruncate)
        .await
        .map_err(io_err("creating", &path))?;
    let allocated = first_allocation_bytes(config);
    if let Err(e) = file.pre_allocate(allocated).await {
        drop(file);
        // Best effort: a leftover empty segment would be recovered as empty and is harmless.
        let _ = disk.remove(&path).await;
        return Err(StorageError::from_io("preallocating", &path, e));
    }
    disk.sync_dir(dir).await.map_err(io_err("syncing", dir))?;
    Ok(Segment {
        base,
        file: Rc::new(file),
        path,
        index: SegmentIndex::new(base, config.index_interval_bytes),
        size: 0,
        next_offset: base,
        first_timestamp_ms: None,
        allocated,
    })
}
