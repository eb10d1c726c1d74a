//! Durability: [`Log::wait_durable`], [`Log::flush`], group commit (concurrent waiters share
//! one fdatasync), the background sync an append starts past `bytes_max`, [`Log::drive_io`],
//! and the active segment's index checkpoint written after a sync.
//!
//! Invariants kept here: a sync holds the core lock only to add its tail write, then waits for
//! its writes and runs the fdatasync without it, so it covers only writes that completed before
//! the fdatasync started; the durable offset only grows, and only over bytes such a sync (or a
//! seal) covered; no sync of a new segment starts while the old one's seal is pending; a sync
//! that spanned a truncation proves nothing and is not counted; a failed write or fdatasync
//! fences the log and is never retried.

use std::future::poll_fn;
use std::task::Poll;

use spate_wire::types::Offset;

use super::writes::Until;
use super::{Log, PendingSync, SyncMeta};
use crate::error::{Result, StorageError};
use crate::files::write_atomically_via;
use crate::index::Checkpoint;
use crate::io::{Disk, DiskFile};
use crate::segment::{file_name, INDEX_SUFFIX};

/// Clears "sync in flight" if the task driving a sync is dropped or fails before finishing it,
/// so other waiters do not wait forever.
struct SyncGuard<'a, D: Disk>(&'a Log<D>);

impl<D: Disk> Drop for SyncGuard<'_, D> {
    fn drop(&mut self) {
        self.0.sync_in_flight.set(false);
        self.0.synced.notify_all();
    }
}

impl<D: Disk> Log<D> {
    /// Waits until everything below `offset` is durable, running an fdatasync if none in flight
    /// covers it. Concurrent callers share syncs: while one runs, later appends accumulate and
    /// the next sync covers them all.
    ///
    /// # Errors
    /// [`StorageError::Fenced`] if a write or sync failed (durability then is unknown); I/O
    /// errors from the sync this call ran.
    pub async fn wait_durable(&self, offset: Offset) -> Result<()> {
        let mut yielded = false;
        loop {
            if self.durable.get() >= offset {
                return Ok(());
            }
            self.check_fenced()?;
            if self.drive_seal().await? {
                continue;
            }
            if self.await_background_sync().await? {
                continue;
            }
            if self.sync_in_flight.get() {
                self.synced.notified().await;
                continue;
            }
            if !yielded {
                // Tasks woken by the same completed sync append their next batches first, so
                // the sync this task is about to lead covers them too.
                yielded = true;
                crate::sync::yield_now().await;
                continue;
            }
            self.sync_now().await?;
        }
    }

    /// Writes and syncs everything appended so far, and writes the active segment's index
    /// checkpoint if a sync an append collected left it due. Returns the durable offset.
    ///
    /// # Errors
    /// As [`Log::wait_durable`].
    pub async fn flush(&self) -> Result<Offset> {
        self.wait_durable(self.log_end.get()).await?;
        let due = self.checkpoint_due.borrow_mut().take();
        if let Some(meta) = due {
            self.maybe_checkpoint_active(&meta).await?;
        }
        Ok(self.durable.get())
    }

    /// Moves the log's pending I/O on without waiting for any of it: submits the active
    /// segment's queued writes that a device slot freed up for and collects completed ones,
    /// polls a roll's pending seal (and with it the closed segment's writes), a background sync
    /// and the making of the spare file. The owner calls it periodically for every partition:
    /// the writes are otherwise driven only by appends, syncs and waiters, so under
    /// [`FlushPolicy::Never`](crate::FlushPolicy::Never) a partition that went idle would keep
    /// queued buffers in memory and its seal parked (the durable offset behind) until the next
    /// append. Takes no lock; costs a few loads when nothing is pending. Yields once to the
    /// runtime if it submitted anything (glommio hands queued I/O to the kernel only then),
    /// never waits for the device.
    ///
    /// It does not write the partly filled buffer: under `Never` that waits for the next
    /// flush, roll or close, as before.
    ///
    /// # Errors
    /// The first failure of a write, a seal or a background sync it observes (the log is fenced
    /// from then on); a fenced log reports nothing more here (appends and flushes report
    /// [`StorageError::Fenced`]).
    pub async fn drive_io(&self) -> Result<()> {
        if self.fenced.get() {
            return Ok(());
        }
        let mut submitted = self.writes().drive();
        // Polls the seal (and the closed segment's writes) unless another task drives it.
        let sealing = self.sealing();
        if sealing {
            submitted |= self.poll_seal()?;
        }
        self.poll_background_sync().await?;
        self.poll_spare();
        // A write that failed fences the log: report it now, not at the next append.
        self.check_fenced()?;
        // Chained writes drive() submitted, or a seal step (truncate, fdatasync, file writes)
        // it may have issued: let them reach the kernel now rather than at the owner's next
        // sleep.
        if submitted || sealing {
            self.disk.yield_to_io().await;
        }
        Ok(())
    }

    /// Runs one sync now and waits for it.
    async fn sync_now(&self) -> Result<()> {
        self.sync_in_flight.set(true);
        let guard = SyncGuard(self);
        let Some(pending) = self.start_sync().await? else {
            // A roll's seal started meanwhile: the caller drives it first.
            return Ok(());
        };
        let result = pending.future.await;
        std::mem::forget(guard);
        self.finish_sync(&pending.meta, result)?;
        self.maybe_checkpoint_active(&pending.meta).await
    }

    /// Rewrites the active segment's index checkpoint to cover what a completed sync made
    /// durable, once `active_checkpoint_bytes` more are durable than the last checkpoint covers.
    async fn maybe_checkpoint_active(&self, meta: &SyncMeta) -> Result<()> {
        if self.checkpoint_in_flight.get() {
            // Another task is writing one; the next sync will cover this.
            return Ok(());
        }
        self.checkpoint_in_flight.set(true);
        let result = self.checkpoint_active(meta).await;
        self.checkpoint_in_flight.set(false);
        result
    }

    async fn checkpoint_active(&self, meta: &SyncMeta) -> Result<()> {
        let _writing = self.checkpoint.lock().await;
        // Encoded under the core lock (cheap), written without it: the write is a file create,
        // an fdatasync, a rename and a directory fsync, and appends would otherwise stall for
        // all of them several times a second under load.
        let (name, bytes) = {
            let core = self.core.lock().await;
            if self.truncations.get() != meta.truncations
                || meta.position < core.checkpointed + self.config().active_checkpoint_bytes
            {
                return Ok(());
            }
            let Some(active) = core.segments.values().next_back() else {
                return Ok(());
            };
            if active.base != meta.segment {
                // Rolled since: the segment was closed with a full checkpoint.
                return Ok(());
            }
            let checkpoint = Checkpoint {
                covered_bytes: meta.position,
                next_offset: meta.target,
            };
            (
                file_name(active.base, INDEX_SUFFIX),
                active.index.encode(checkpoint),
            )
        };
        // A roll meanwhile may write the full checkpoint of this segment first and see it
        // replaced by this prefix one: still valid (recovery rescans a closed segment whose
        // checkpoint does not cover the whole file). A truncation cannot interleave: it takes
        // `checkpoint` first. Its own temporary file: the roll's write of the same index runs
        // under the core lock, not `checkpoint`, and must not rename this one's away.
        write_atomically_via(&self.disk, &self.dir, &name, ".active", &bytes).await?;
        let mut core = self.core.lock().await;
        let same_segment = core
            .segments
            .values()
            .next_back()
            .is_some_and(|active| active.base == meta.segment);
        if same_segment && self.truncations.get() == meta.truncations {
            core.checkpointed = core.checkpointed.max(meta.position);
        }
        Ok(())
    }

    /// Prepares a sync under the core lock without waiting for any write: adds the write of the
    /// unwritten tail and returns a future that waits (without the lock) for it and every write
    /// added before it, then runs the fdatasync, which so covers only completed writes. Appends
    /// go on meanwhile; a full buffer that overlaps the tail write is chained behind it.
    ///
    /// Returns `None` while a roll's seal is pending: a sync of the new segment must not be
    /// relied on before the old segment is durable (a crash could otherwise keep later offsets
    /// and lose earlier ones).
    async fn start_sync(&self) -> Result<Option<PendingSync>> {
        let mut core = self.core.lock().await;
        self.check_fenced()?;
        if self.sealing() {
            return Ok(None);
        }
        // Normally no tail write is queued: the previous sync waited for its own. Only a sync
        // dropped before its writes completed leaves one; waiting for it (rare, under the lock)
        // bounds the tail copies in memory.
        self.wait_writes(Until::NoTail).await?;
        self.add_tail_write(&mut core);
        let upto = self.writes().next_seq();
        let active = core
            .segments
            .values()
            .next_back()
            .expect("a log has a segment");
        let file = active.file.clone();
        let meta = SyncMeta {
            path: active.path.clone(),
            segment: active.base,
            position: active.size,
            target: core.log_end,
            appended: self.appended_bytes.get(),
            truncations: self.truncations.get(),
        };
        drop(core);
        let writes = self.writes();
        let generation = writes.generation();
        let (path, position) = (meta.path.clone(), meta.position);
        Ok(Some(PendingSync {
            future: Box::pin(async move {
                // An fdatasync covers only writes that completed before it was issued.
                writes.wait(Until::Before(upto)).await;
                if let Some(e) = writes.failure() {
                    return Err(e);
                }
                // A truncation since drained these writes and moved the queue on. A roll does
                // not: it retires this queue (the old file's) and the writes before `upto` still
                // complete in it, so `written` covers `position` here too.
                assert!(
                    writes.generation() != generation || writes.written() >= position,
                    "a sync covers only written bytes"
                );
                file.fdatasync()
                    .await
                    .map_err(|e| StorageError::from_io("syncing", &path, e))
            }),
            meta,
        }))
    }

    /// Records a finished sync and wakes everyone waiting for one.
    fn finish_sync(&self, meta: &SyncMeta, result: Result<()>) -> Result<()> {
        self.sync_in_flight.set(false);
        self.synced.notify_all();
        if let Err(e) = result {
            // After a failed fdatasync Linux may drop the dirty pages and report success on a
            // retry: never retry, fence until a reopen re-validates what is on disk.
            // A failed write fences too: which blocks reached the disk is unknown.
            self.fenced.set(true);
            return Err(e);
        }
        self.mark_durable(meta.target, meta.truncations);
        self.synced_bytes
            .set(self.synced_bytes.get().max(meta.appended));
        Ok(())
    }

    /// Starts a sync without waiting for it, so the appender that crossed `bytes_max` goes on
    /// appending while the device syncs; later appends and waiters collect it.
    pub(super) async fn start_background_sync(&self) -> Result<()> {
        self.sync_in_flight.set(true);
        let guard = SyncGuard(self);
        let Some(mut pending) = self.start_sync().await? else {
            // A roll's seal started meanwhile; it is the sync in flight now.
            return Ok(());
        };
        std::mem::forget(guard);
        assert!(self.background_sync.borrow().is_none());
        match poll_fn(|cx| Poll::Ready(pending.future.as_mut().poll(cx))).await {
            Poll::Ready(result) => {
                self.finish_sync(&pending.meta, result)?;
                self.defer_checkpoint(pending.meta);
                Ok(())
            }
            Poll::Pending => {
                *self.background_sync.borrow_mut() = Some(pending);
                // A waiter that saw `sync_in_flight` before the sync was parked here waits for
                // `synced`, which only a finished sync sends, and nobody drives a parked one
                // but the next append: wake it to take the sync over (`await_background_sync`).
                self.synced.notify_all();
                self.disk.yield_to_io().await;
                Ok(())
            }
        }
    }

    /// Leaves the active segment's index checkpoint after a sync an append collected to the next
    /// `flush` (the owner's timer) or sync a waiter leads: writing it takes a file create, an
    /// fdatasync, a rename and a directory fsync, and the append would wait for all of them.
    fn defer_checkpoint(&self, meta: SyncMeta) {
        *self.checkpoint_due.borrow_mut() = Some(meta);
    }

    /// Collects the background sync if it has finished; never waits.
    pub(super) async fn poll_background_sync(&self) -> Result<()> {
        let taken = self.background_sync.borrow_mut().take();
        let Some(mut pending) = taken else {
            return Ok(());
        };
        match poll_fn(|cx| Poll::Ready(pending.future.as_mut().poll(cx))).await {
            Poll::Ready(result) => {
                self.finish_sync(&pending.meta, result)?;
                self.defer_checkpoint(pending.meta);
                Ok(())
            }
            Poll::Pending => {
                *self.background_sync.borrow_mut() = Some(pending);
                Ok(())
            }
        }
    }

    /// Waits for the background sync, if there is one. Returns whether there was.
    async fn await_background_sync(&self) -> Result<bool> {
        let taken = self.background_sync.borrow_mut().take();
        let Some(pending) = taken else {
            return Ok(false);
        };
        let guard = SyncGuard(self);
        let result = pending.future.await;
        std::mem::forget(guard);
        self.finish_sync(&pending.meta, result)?;
        self.maybe_checkpoint_active(&pending.meta).await?;
        Ok(true)
    }

    pub(super) fn mark_durable(&self, target: Offset, truncations_before: u64) {
        // A truncation during the sync removed offsets the sync was meant to cover, and batches
        // appended since reuse them without this sync covering their bytes: it proves nothing
        // (`log_end` now may be past the truncation point, so `min(target, log_end)` would claim
        // unsynced batches). The truncation synced what it kept; the next sync covers the rest.
        if self.truncations.get() != truncations_before {
            return;
        }
        if target > self.durable.get() {
            self.durable.set(target);
        }
    }
}
