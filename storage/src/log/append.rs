//! Appends: [`Log::append`] / [`Log::append_checked`] (idempotence check, offsets and epoch
//! patched into a copy of the header, the batch copied into the aligned write-behind buffer and
//! kept in the tail cache), preallocation, and the submission of full buffers and tail writes.
//!
//! Invariants kept here: offsets are dense in the active segment (asserted); the producer
//! check and record happen under the same lock as the append; space is reserved before a batch
//! is accepted, so a full disk changes nothing; every write is block-aligned, and at most
//! `FULL_WRITES_QUEUED_MAX` full buffers and one tail copy are queued per segment; a batch stays
//! in the tail cache until its write completed.

use std::rc::Rc;

use bytes::Bytes;
use spate_wire::batch::{
    set_base_offset, set_partition_leader_epoch, BatchError, BatchHeader, CheckedBatch,
    BATCH_HEADER_BYTES,
};
use spate_wire::types::{LeaderEpoch, Offset};

use super::writes::{self, Until, WriteKind, Writes};
use super::{io_err, AppendInfo, AppendKind, Core, Log, WriteBuffer, FULL_WRITES_QUEUED_MAX};
use crate::cache::{BatchBytes, CachedBatch};
use crate::config::FlushPolicy;
use crate::epoch::{EpochCache, EPOCH_FILE_NAME};
use crate::error::{io_error_kind, IoErrorKind, Result, StorageError};
use crate::files::write_atomically;
use crate::io::{align_down, align_up, AlignedBuf, Disk, DiskFile};
use crate::pool;
use crate::producer_state::{ProducerBatch, Verdict};

/// Fences the log if dropped before `done`: see `append_locked`.
struct FenceUnlessCopied<'a> {
    fenced: &'a std::cell::Cell<bool>,
    copied: bool,
}

impl FenceUnlessCopied<'_> {
    fn done(mut self) {
        self.copied = true;
    }
}

impl Drop for FenceUnlessCopied<'_> {
    fn drop(&mut self) {
        if !self.copied {
            self.fenced.set(true);
        }
    }
}

/// Drops the epoch entries at or after `start_offset` when dropped: see `append_locked`.
struct UndoEpoch<'a> {
    epochs: &'a mut EpochCache,
    start_offset: Offset,
}

impl Drop for UndoEpoch<'_> {
    fn drop(&mut self) {
        self.epochs.truncate_from_end(self.start_offset);
    }
}

/// Which transactional batches an append takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnAdmission {
    /// Any (the caller verified the batch's transaction, or it is not transactional).
    Any,
    /// A transactional batch only if its producer has a transaction open here in the batch's
    /// epoch (the batch continues it), else [`StorageError::NoOngoingTransaction`]: how a
    /// partition leader admits a transactional batch its coordinator could not confirm, as
    /// Kafka skips verification for a partition with the producer's transaction ongoing.
    OngoingOnly,
}

impl<D: Disk> Log<D> {
    /// Appends one record batch, assigning its offsets: `baseOffset` and `partitionLeaderEpoch`
    /// are written into the header (outside the CRC range, so the producer's CRC stays valid).
    /// Returns once the batch is in the write-behind buffer (and, under
    /// [`FlushPolicy::EveryAppend`], durable). Use [`Log::wait_durable`] for `acks=all`.
    ///
    /// # Errors
    /// [`StorageError::InvalidBatch`] / [`StorageError::BatchTooLarge`] for a bad batch (nothing
    /// written); [`StorageError::DiskFull`] if space could not be reserved (nothing changed, retry
    /// later); [`StorageError::Fenced`] after an earlier write or sync failure; other I/O errors.
    /// A write or sync failure after the batch was buffered (under `EveryAppend`, or when this
    /// append starts a group-commit sync) also fences the log: the batch was assigned offsets
    /// and may or may not survive the reopen that the fence requires.
    ///
    /// The batch is not copied into a new buffer: the header is patched in a copy and the body
    /// is kept as the given `Bytes` (a slice of the request, typically) for the tail cache.
    pub async fn append(&self, batch: impl Into<Bytes>, epoch: LeaderEpoch) -> Result<AppendInfo> {
        let batch: Bytes = batch.into();
        if batch.len() > self.config().batch_bytes_max {
            return Err(StorageError::BatchTooLarge {
                bytes: batch.len(),
                bytes_max: self.config().batch_bytes_max,
            });
        }
        if let Ok(header) = BatchHeader::parse(&batch) {
            if header.total_bytes() > batch.len() {
                return Err(StorageError::InvalidBatch(BatchError::Truncated {
                    needed: header.total_bytes(),
                    available: batch.len(),
                }));
            }
        }
        let batch = CheckedBatch::check(batch).map_err(StorageError::InvalidBatch)?;
        self.append_checked(batch, epoch, TxnAdmission::Any).await
    }

    /// [`Log::append`] of a batch whose structure and CRC the caller already checked (the
    /// broker checks each produced batch once, as it parses the request); only its size is
    /// checked against this log's limit.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub async fn append_checked(
        &self,
        batch: CheckedBatch,
        epoch: LeaderEpoch,
        admission: TxnAdmission,
    ) -> Result<AppendInfo> {
        if batch.len() > self.config().batch_bytes_max {
            return Err(StorageError::BatchTooLarge {
                bytes: batch.len(),
                bytes_max: self.config().batch_bytes_max,
            });
        }
        let (mut header, batch) = batch.into_parts();
        self.before_append().await?;
        let producer = ProducerBatch::from_batch(&header, &batch[BATCH_HEADER_BYTES..]);
        let info = {
            let mut core = self.core.lock().await;
            self.check_fenced()?;
            // Under the lock a marker is also written with, so the transaction cannot close
            // between this check and the append.
            if admission == TxnAdmission::OngoingOnly
                && header.is_transactional()
                && !core
                    .producers
                    .in_transaction(header.producer_id, header.producer_epoch)
            {
                return Err(StorageError::NoOngoingTransaction {
                    producer_id: header.producer_id.0,
                    epoch: header.producer_epoch.0,
                });
            }
            // Checked and recorded under the same lock as the append, so two appends of one
            // producer in flight at once cannot both pass the check.
            if let Some(producer) = &producer {
                if let Verdict::Duplicate(original) = core.producers.check(producer)? {
                    return Ok(AppendInfo {
                        base_offset: original.first_offset,
                        last_offset: original.last_offset,
                        max_timestamp_ms: original.max_timestamp_ms,
                        kind: AppendKind::Duplicate,
                    });
                }
            }
            let base = core.log_end;
            let mut head = [0u8; BATCH_HEADER_BYTES];
            head.copy_from_slice(&batch[..BATCH_HEADER_BYTES]);
            set_base_offset(&mut head, base);
            set_partition_leader_epoch(&mut head, epoch);
            header.base_offset = base;
            header.partition_leader_epoch = epoch;
            let bytes = BatchBytes {
                header: core.headers.carve(&head),
                records: batch.slice(BATCH_HEADER_BYTES..),
            };
            self.append_locked(&mut core, &header, bytes).await?;
            AppendInfo {
                base_offset: base,
                last_offset: header.last_offset(),
                max_timestamp_ms: header.max_timestamp_ms,
                kind: AppendKind::Appended,
            }
        };
        self.after_append(info.last_offset.next()).await?;
        Ok(info)
    }

    /// What every append does before it takes the core lock: collects a finished background
    /// sync first, so its failure is reported before a batch is accepted rather than after, and
    /// moves a roll's seal and the spare file on.
    pub(super) async fn before_append(&self) -> Result<()> {
        self.poll_background_sync().await?;
        if self.poll_seal()? {
            self.disk.yield_to_io().await;
        }
        self.poll_spare();
        Ok(())
    }

    /// Writes one accepted batch at the log end, under the core lock: rolls if it does not fit
    /// the active segment, reserves its space, records its leader epoch (the checkpoint file is
    /// rewritten before the batch's bytes can reach the disk, so no batch is ever durable in an
    /// epoch the checkpoint lacks), indexes and caches it, records it in its producer's state,
    /// and copies it into the write buffer. `header` is the batch's header as stored (offsets
    /// and epoch final) and `bytes` the batch exactly as it will be on disk; their base offset
    /// must be the log end (asserted). The caller decided the batch is to be written: this
    /// checks nothing about its producer.
    ///
    /// Changes nothing if the roll or the reservation fail (a full disk); a failure after that
    /// fences the log (a failed write) or leaves the epoch entry unrecorded (a failed checkpoint
    /// write), so the log never holds a batch its state does not describe.
    pub(super) async fn append_locked(
        &self,
        core: &mut Core<D::File>,
        header: &BatchHeader,
        bytes: BatchBytes,
    ) -> Result<()> {
        assert_eq!(
            header.base_offset, core.log_end,
            "batches are appended at the log end"
        );
        assert_eq!(bytes.len(), header.total_bytes());
        assert_eq!(bytes.header.len(), BATCH_HEADER_BYTES);
        self.maybe_roll(core, header).await?;
        self.reserve(core, bytes.len()).await?;
        let base = header.base_offset;
        if core.epochs.assign(header.partition_leader_epoch, base) {
            let encoded = core.epochs.encode();
            // Undone if the write fails or the task is dropped while it waits for it: an entry
            // with no batch would make a follower refuse its leader's next batches as an epoch
            // regression (and a truncation at the log end changes nothing to remove it).
            let undo = UndoEpoch {
                epochs: &mut core.epochs,
                start_offset: base,
            };
            write_atomically(&self.disk, &self.dir, EPOCH_FILE_NAME, &encoded).await?;
            std::mem::forget(undo);
        }
        let (head, records) = (bytes.header.clone(), bytes.records.clone());
        self.buffer_batch(core, header, bytes);
        // Non-idempotent batches (producer id -1) skip the producer state entirely.
        if let Some(producer) = ProducerBatch::from_batch(header, &records) {
            core.producers.record(
                &producer,
                base,
                header.last_offset(),
                header.max_timestamp_ms,
            );
        }
        // The batch is counted now (log end, index, cache), but its bytes reach the write
        // buffer across awaits (a full buffer waits for the device). A task dropped in between
        // would leave the buffer short of bytes the log counts, and the next append tripped an
        // assertion (or would have written after a hole): fence instead, and the reopen cuts
        // the torn batch by its CRC.
        let copying = FenceUnlessCopied {
            fenced: &self.fenced,
            copied: false,
        };
        self.copy_in(core, &head).await?;
        self.copy_in(core, &records).await?;
        copying.done();
        Ok(())
    }

    /// What every append does after it released the core lock, once the log end is `end`:
    /// under [`FlushPolicy::EveryAppend`] waits until it is durable; under group commit starts
    /// a background sync once `bytes_max` unsynced bytes accumulated.
    pub(super) async fn after_append(&self, end: Offset) -> Result<()> {
        match self.config().flush {
            FlushPolicy::EveryAppend => self.wait_durable(end).await,
            FlushPolicy::GroupCommit { bytes_max, .. }
                if self.unflushed_bytes() >= bytes_max
                    && !self.sync_in_flight.get()
                    && !self.sealing() =>
            {
                self.start_background_sync().await
            }
            _ => Ok(()),
        }
    }

    /// Waits until every write of a closed segment still being sealed completed (for what reads
    /// its file: timestamp lookup, the cleaner); a failed write fences the log.
    pub(super) async fn wait_closed_writes(&self, writes: &Writes<D::File>) -> Result<()> {
        if writes.wait(Until::Empty).await {
            self.disk.yield_to_io().await;
        }
        if let Some(e) = writes.failure() {
            self.fenced.set(true);
            return Err(e);
        }
        Ok(())
    }

    /// Waits for the writes of the closed segment still being sealed, if any: for a timestamp
    /// lookup, which reads its file, and for an append once `FULL_WRITES_QUEUED_MAX` buffers of
    /// the new segment were written (see `submit_full_buffer`). Not for its seal: the bytes
    /// must be on the file, not durable.
    pub(super) async fn wait_closed_segment_drained(&self) -> Result<()> {
        match self.closed_writes() {
            Some((_, writes)) => self.wait_closed_writes(&writes).await,
            None => Ok(()),
        }
    }

    /// Records an accepted batch in the indexes, the cache and the offsets; `copy_in` then puts
    /// its bytes in the write buffer. Space on disk for it was reserved by `reserve`.
    fn buffer_batch(&self, core: &mut Core<D::File>, header: &BatchHeader, bytes: BatchBytes) {
        let len = bytes.len();
        let Core {
            segments,
            write,
            cache,
            ..
        } = core;
        let active = segments
            .values_mut()
            .next_back()
            .expect("a log has a segment");
        assert_eq!(write.start + write.filled as u64, active.size);
        let position = active.size;
        active.index.on_batch(header, position);
        active
            .first_timestamp_ms
            .get_or_insert(header.max_timestamp_ms);
        active.size += len as u64;
        assert_eq!(active.next_offset, header.base_offset);
        active.next_offset = header.last_offset().next();
        cache.push(CachedBatch {
            base: header.base_offset,
            last: header.last_offset(),
            segment: active.base,
            position,
            bytes,
        });
        let active_base = active.base;
        // Evicts only batches on the file (a closed segment still being sealed may have writes
        // queued too).
        cache.evict(|b| {
            b.position + b.bytes.len() as u64 <= self.written_in(active_base, b.segment, u64::MAX)
        });
        core.log_end = header.last_offset().next();
        self.log_end.set(core.log_end);
        self.appended_bytes
            .set(self.appended_bytes.get() + len as u64);
    }

    /// Makes sure the file has space for a batch of `len` bytes, extending its preallocation if
    /// needed. Changes nothing on failure.
    ///
    /// The step runs under the core lock, on the append path. A version that ran it in the
    /// background was tried and not kept: ext4's fallocate takes the inode lock and waits for
    /// the writes in flight, so the writes behind it stall anyway, and the A/B runs were too
    /// noisy to show a gain.
    async fn reserve(&self, core: &mut Core<D::File>, len: usize) -> Result<()> {
        let active = core
            .segments
            .values_mut()
            .next_back()
            .expect("a log has a segment");
        let needed = align_up(active.size + len as u64);
        if needed <= active.allocated {
            return Ok(());
        }
        // Each step doubles the allocation (at least `preallocate_bytes`, at most
        // `preallocate_step_bytes_max`): an fallocate waits for the file's writes in flight,
        // 0.5-1.5 ms on the test machine, so a busy partition takes a few steps per segment,
        // while an idle one holds only the first step and no segment holds more than twice
        // what it was written, or one step more.
        let config = self.config();
        let step_bytes = active
            .allocated
            .max(config.preallocate_bytes)
            .min(config.preallocate_step_bytes_max);
        let step = (active.allocated + step_bytes).min(align_up(config.segment_bytes_max));
        for target in [step.max(needed), needed] {
            match active.file.pre_allocate(target).await {
                Ok(()) => {
                    active.allocated = target;
                    return Ok(());
                }
                Err(e) if io_error_kind(&e) == IoErrorKind::NoSpace && target != needed => {}
                Err(e) => {
                    // A full disk refuses this append and changes nothing: a later one may fit
                    // once space is freed. Any other failure is the device's, as a failed write
                    // is, and fences the log (the broker then hands its partitions over instead
                    // of refusing appends forever on a dead disk).
                    if io_error_kind(&e) != IoErrorKind::NoSpace {
                        self.fenced.set(true);
                    }
                    return Err(StorageError::from_io("preallocating", &active.path, e));
                }
            }
        }
        unreachable!("the loop returns on its last iteration")
    }

    /// Copies a batch into the write buffer; each time the buffer fills, it is submitted as one
    /// write and appending continues in a spare buffer while that write is in flight.
    async fn copy_in(&self, core: &mut Core<D::File>, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            self.ensure_buffer(core).await?;
            let write = &mut core.write;
            let buf = write.buf.as_mut().expect("write buffer present");
            // The buffer's own size: a short budget gives smaller ones.
            let capacity = buf.as_slice().len();
            let n = (capacity - write.filled).min(data.len());
            buf.as_mut_slice()[write.filled..write.filled + n].copy_from_slice(&data[..n]);
            write.filled += n;
            data = &data[n..];
            if write.filled == capacity {
                self.submit_full_buffer(core).await?;
            }
        }
        Ok(())
    }

    /// Submits the full write buffer as one write without waiting for it (at most
    /// `FULL_WRITES_QUEUED_MAX` queued) and continues in a spare buffer. Full buffers cover
    /// disjoint block ranges; one that overlaps a sync's tail write still in flight is chained
    /// behind it (see `writes`), so this never waits for a sync.
    async fn submit_full_buffer(&self, core: &mut Core<D::File>) -> Result<()> {
        let usual_bytes = self.config().write_buffer_bytes_max;
        // The tail cache evicts oldest first and never an unwritten batch, so while one of the
        // closed segment's writes is pending nothing appended since can be evicted either: a
        // device that completes the new segment's writes and leaves one of the old behind (out
        // of order) would let the cache grow by up to a whole segment. Bounded so: the new
        // segment's written buffers, its queue, and the closed segment's queue. The old writes
        // were submitted before the new ones, so a device that completes writes about in order
        // drained them by the time eight new buffers are written: no wait then.
        if self.writes().written() >= (FULL_WRITES_QUEUED_MAX * usual_bytes) as u64 {
            self.wait_closed_segment_drained().await?;
        }
        // Waits for the device, not for a sync: the writes drain at its bandwidth.
        self.wait_writes(Until::FullBelow(writes::FULL_WRITES_MAX))
            .await?;
        let active = core
            .segments
            .values()
            .next_back()
            .expect("a log has a segment");
        // The next append takes the next buffer (`ensure_buffer`): none is held meanwhile.
        let buf = core.write.buf.take().expect("write buffer present");
        let grant = core.write.grant.take().expect("a buffer has its grant");
        let capacity = buf.as_slice().len();
        assert_eq!(core.write.filled, capacity);
        let position = core.write.start;
        core.write.start += capacity as u64;
        core.write.filled = 0;
        let end = position + capacity as u64;
        self.writes().add(
            WriteKind::Full,
            active.file.clone(),
            buf,
            Some(grant),
            position,
            end,
        );
        // Submitted (or chained); glommio hands it to the kernel when this task yields.
        self.disk.yield_to_io().await;
        self.check_fenced()
    }

    /// Gives the active segment a write buffer if it has none (a log just opened, a new
    /// segment, a full buffer just handed to the device, a log that went idle): a spare, else
    /// one from the core's budget (smaller if the budget is short), else, while this log's own
    /// full buffers are queued, the first of them to come back (backpressure that waits on
    /// nothing but this log's device writes), else the minimum beyond the budget. Reads the
    /// partial last block back from the file: a log lets its buffer go only once everything
    /// in it was written.
    async fn ensure_buffer(&self, core: &mut Core<D::File>) -> Result<()> {
        if core.write.buf.is_some() {
            return Ok(());
        }
        let wanted = self.config().write_buffer_bytes_max;
        let file = Rc::clone(
            &core
                .segments
                .values()
                .next_back()
                .expect("a log has a segment")
                .file,
        );
        let (mut buf, grant) = loop {
            if let Some(spare) = self.writes().take_spare() {
                break spare;
            }
            if let Some(grant) = pool::try_grant(wanted) {
                break (file.alloc_buf(grant.bytes()), grant);
            }
            let queued = self.writes().full_queued();
            if queued == 0 {
                let grant = pool::grant_or_minimum(wanted);
                break (file.alloc_buf(grant.bytes()), grant);
            }
            // One of them completes and comes back as a spare (or, if the device kept it,
            // gives its grant back): either way the next turn has a buffer.
            self.wait_writes(Until::FullBelow(queued)).await?;
        };
        assert_eq!(buf.as_slice().len(), grant.bytes());
        let end = core.write.end();
        let start = align_down(end);
        let partial = (end - start) as usize;
        if partial > 0 {
            assert!(
                self.writes().written() >= end,
                "a buffer is let go only once written"
            );
            let path = file.path();
            let tail = file
                .read_at(start, partial)
                .await
                .map_err(io_err("reading", &path))?;
            if tail.len() != partial {
                return Err(StorageError::from_io(
                    "reading",
                    &path,
                    std::io::Error::other("short read of the tail block"),
                ));
            }
            buf.as_mut_slice()[..partial].copy_from_slice(&tail);
        }
        core.write = WriteBuffer {
            buf: Some(buf),
            grant: Some(grant),
            start,
            filled: partial,
        };
        Ok(())
    }

    /// Lets go of the write buffers (the one being filled and the spares) if nothing was
    /// appended since the last call and every write completed, so an idle partition holds
    /// none of the core's budget; adds the write of an unwritten tail first if there is one
    /// (no fdatasync: durability is unchanged), for the next call to find it written. Never
    /// waits: skips the turn if the log is busy. Returns whether it let buffers go.
    ///
    /// The owner calls it periodically (the broker every ~100 ms), so a partition idle for
    /// one to two periods gives its buffers back, and one appended to steadily keeps them.
    pub fn release_idle_buffers(&self) -> bool {
        let appended = self.appended_bytes.get();
        if self.idle_mark.replace(appended) != appended || self.fenced.get() {
            return false;
        }
        let writes = self.writes();
        let Some(mut core) = self.core.try_lock() else {
            return false;
        };
        // While the core's caches are over their budget, an idle partition gives back its
        // written batches too (appending ones evict theirs as they append).
        let active_base = *core
            .segments
            .keys()
            .next_back()
            .expect("a log has a segment");
        core.cache.evict(|b| {
            b.position + b.bytes.len() as u64 <= self.written_in(active_base, b.segment, u64::MAX)
        });
        if core.write.buf.is_none() && !writes.has_spares() {
            return false;
        }
        if !writes.is_idle() {
            return false;
        }
        if writes.issued() < core.write.end() {
            // Written now, let go at the next call (if nothing is appended meanwhile). Nothing
            // is queued, so this is the only tail write, as syncs expect (they wait for a
            // leftover one first, like a dropped sync's).
            self.add_tail_write(&mut core);
            return false;
        }
        assert_eq!(writes.written(), core.write.end());
        core.write = WriteBuffer::released(core.write.end());
        writes.drop_spares();
        true
    }

    /// Adds the write of everything appended and not yet covered by a write: the blocks from
    /// the last one not fully covered up to the end, the last one zero-padded, from a copy, so
    /// the buffer keeps filling afterwards. Returns whether it submitted a write now.
    ///
    /// The buffer then starts over at the last, partly filled block: the blocks before it are
    /// covered by writes already, and a full-buffer write that began at the buffer's old start
    /// would write them to the device a second time. Under group commit a sync runs about
    /// every millisecond, so without this nearly every byte went to the device twice (once in
    /// a tail write, once in the full buffer), and each 1 MiB full write held up the syncs
    /// queued behind it. Moving the partial block costs a copy of less than a block.
    pub(super) fn add_tail_write(&self, core: &mut Core<D::File>) -> bool {
        let Core {
            segments, write, ..
        } = core;
        let active = segments.values().next_back().expect("a log has a segment");
        let end = write.start + write.filled as u64;
        assert_eq!(end, active.size);
        let issued = self.writes().issued();
        assert!(issued >= write.start, "earlier buffers were added whole");
        assert!(issued <= end);
        if issued == end {
            return false;
        }
        let from = align_down(issued);
        let length = (align_up(end) - from) as usize;
        let data = (end - from) as usize;
        let offset = (from - write.start) as usize;
        let mut out = active.file.alloc_buf(length);
        let buf = write.buf.as_ref().expect("write buffer present");
        out.as_mut_slice()[..data].copy_from_slice(&buf.as_slice()[offset..offset + data]);
        out.as_mut_slice()[data..].fill(0);
        let submitted =
            self.writes()
                .add(WriteKind::Tail, active.file.clone(), out, None, from, end);
        let last_block = align_down(end);
        if last_block > write.start {
            let buf = write.buf.as_mut().expect("write buffer present");
            let moved = (last_block - write.start) as usize;
            buf.as_mut_slice().copy_within(moved..write.filled, 0);
            write.start = last_block;
            write.filled -= moved;
            assert_eq!(write.start + write.filled as u64, end);
        }
        submitted
    }

    /// Writes everything out and waits until all writes of the active segment completed (under
    /// the lock: for truncation and timestamp lookup, which need the file complete; a roll only
    /// adds the tail write and leaves the waiting to the seal).
    pub(super) async fn write_out(&self, core: &mut Core<D::File>) -> Result<()> {
        // Only a dropped sync leaves a tail write behind (see `start_sync`).
        self.wait_writes(Until::NoTail).await?;
        self.add_tail_write(core);
        self.wait_writes(Until::Empty).await?;
        let active = core
            .segments
            .values()
            .next_back()
            .expect("a log has a segment");
        assert_eq!(self.writes().written(), active.size);
        Ok(())
    }

    /// Waits (driving the writes) until `until` holds; fails if a write failed.
    pub(super) async fn wait_writes(&self, until: Until) -> Result<()> {
        if self.writes().wait(until).await {
            self.disk.yield_to_io().await;
        }
        self.check_fenced()
    }
}
