//! Follower appends: [`Log::append_replicated`] writes record batches fetched from the leader at
//! the offsets the leader gave them, byte for byte.
//!
//! Invariants kept here: a replicated batch is stored exactly as the leader stored it (no header
//! is patched, so the follower's bytes equal the leader's and its CRC is the leader's); each
//! batch starts where the previous one ended, the first at the log end (no gap, no overlap);
//! leader epochs never go below the latest one the log recorded; every refusal is decided
//! before anything is written, so a refused call changes nothing; the producer state records
//! every idempotent batch without a verdict (the leader gave it), so it matches the leader's and
//! a later leader still answers a retry as a duplicate.

use std::rc::Rc;

use bytes::Bytes;
use spate_wire::batch::{batches, CheckedBatch, BATCH_HEADER_BYTES};
use spate_wire::types::{LeaderEpoch, Offset};

use super::{Core, Log};
use crate::cache::BatchBytes;
use crate::error::{Result, StorageError};
use crate::io::{Disk, DiskFile};

/// What [`Log::append_replicated`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicatedAppend {
    /// The log end after the call: where the next fetch from the leader starts.
    pub log_end: Offset,
    /// The `partitionLeaderEpoch` of the last batch appended, as the leader wrote it (`None`
    /// if the call appended nothing).
    pub last_epoch: Option<LeaderEpoch>,
    /// Batches appended.
    pub batches: usize,
}

impl<D: Disk> Log<D> {
    /// Appends record batches fetched from the leader, keeping the leader's offsets and leader
    /// epochs: `records` is one or more whole v2 batches back to back, exactly as the leader's
    /// [`Log::read`] returned them, and they are stored unchanged. Each batch's structure and
    /// CRC are checked (outside the core lock), then, under one acquisition of the lock for the
    /// whole call, that the first batch starts at the log end and each next one where the
    /// previous ended, and that no batch's `partitionLeaderEpoch` is below the latest epoch the
    /// log recorded or below an earlier batch's of the call (a batch without an epoch, -1, is
    /// not recorded, as in Kafka). Each batch then goes through the path of [`Log::append`]:
    /// segment rolls, the epoch cache, the producer state (recorded, never refused: the leader
    /// decided), the tail cache, and the flush policy once for the call.
    ///
    /// An empty `records` appends nothing and succeeds.
    ///
    /// # Errors
    /// Refusals, decided before anything is written (the call changes nothing):
    /// [`StorageError::InvalidBatch`] if a batch is malformed, truncated or fails its CRC (also
    /// a trailing partial batch); [`StorageError::BatchTooLarge`] if a batch is over
    /// `batch_bytes_max` (a topic setting, the same on leader and follower);
    /// [`StorageError::NonContiguousBatch`] for a gap or an overlap;
    /// [`StorageError::EpochRegression`] for an epoch below the log's latest.
    ///
    /// I/O failures, as for [`Log::append`]: [`StorageError::DiskFull`] while a batch's space
    /// is reserved (or its segment rolled) leaves the batches of the call before it appended
    /// and nothing of it or later ones ([`Log::log_end_offset`] tells where to fetch from
    /// next); [`StorageError::Fenced`] after an earlier failure; a failed write or sync fences
    /// the log.
    pub async fn append_replicated(&self, records: impl Into<Bytes>) -> Result<ReplicatedAppend> {
        let records: Bytes = records.into();
        let checked = self.check_replicated(&records)?;
        if checked.is_empty() {
            return Ok(ReplicatedAppend {
                log_end: self.log_end.get(),
                last_epoch: None,
                batches: 0,
            });
        }
        self.before_append().await?;
        let end = {
            let mut core = self.core.lock().await;
            self.check_fenced()?;
            check_follows(&core, &checked)?;
            for batch in &checked {
                let (header, bytes) = (batch.header(), batch.bytes());
                let bytes = BatchBytes {
                    header: bytes.slice(..BATCH_HEADER_BYTES),
                    records: bytes.slice(BATCH_HEADER_BYTES..),
                };
                self.append_locked(&mut core, header, bytes).await?;
            }
            core.log_end
        };
        let last = checked.last().expect("not empty").header();
        assert_eq!(last.last_offset().next(), end);
        self.after_append(end).await?;
        Ok(ReplicatedAppend {
            log_end: end,
            last_epoch: Some(last.partition_leader_epoch),
            batches: checked.len(),
        })
    }

    /// Splits `records` into whole batches and checks each one's structure, CRC and size
    /// against this log's limit. Never panics, whatever the bytes.
    fn check_replicated(&self, records: &Bytes) -> Result<Vec<CheckedBatch>> {
        let mut out = Vec::new();
        for item in batches(records) {
            let (header, raw) = item.map_err(StorageError::InvalidBatch)?;
            if header.total_bytes() > self.config().batch_bytes_max {
                return Err(StorageError::BatchTooLarge {
                    bytes: header.total_bytes(),
                    bytes_max: self.config().batch_bytes_max,
                });
            }
            let batch =
                CheckedBatch::check(records.slice_ref(raw)).map_err(StorageError::InvalidBatch)?;
            out.push(batch);
        }
        Ok(out)
    }
}

/// Checks, before anything is written, that `checked` continues the log: dense offsets from the
/// log end on, and leader epochs that never go below the latest recorded one.
fn check_follows<F: DiskFile>(core: &Core<F>, checked: &[CheckedBatch]) -> Result<()> {
    let mut expected = core.log_end;
    let mut latest = core.epochs.latest().map(|e| e.epoch);
    for batch in checked {
        let header = batch.header();
        if header.base_offset != expected {
            return Err(StorageError::NonContiguousBatch {
                base_offset: header.base_offset,
                expected,
            });
        }
        // Safe from overflow: the base is the log end, and the delta is a non-negative i32.
        expected = header.last_offset().next();
        let epoch = header.partition_leader_epoch;
        if epoch.0 < 0 {
            continue;
        }
        if let Some(latest) = latest.filter(|&latest| epoch < latest) {
            return Err(StorageError::EpochRegression {
                base_offset: header.base_offset,
                epoch,
                latest,
            });
        }
        latest = Some(epoch);
    }
    Ok(())
}

impl<D: Disk> Log<D> {
    /// Empties the log and starts it again, empty, at `start`, past its end: what a follower
    /// does when its leader no longer has the records after this follower's end (retention or
    /// DeleteRecords moved the leader's start past it, say after the follower was down for
    /// longer than `retention.ms`, or it comes back with an empty disk). Kafka's
    /// `truncateFullyAndStartAt`. Every segment, producer snapshot and epoch entry goes; the
    /// producer state starts empty (the batches that described it are gone on the leader too).
    ///
    /// Crash-safe in this order: the log start checkpoint first (a crash now reopens the old
    /// log, the checkpoint past its end rewritten to it), then the new empty segment (a crash
    /// now reopens an empty log at `start`; the old segments lie below the start and the next
    /// retention pass removes them), then the old files.
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] if `start` is not past the log end (a follower then
    /// truncates or moves its start instead), unless the log is empty and `start` is not its
    /// end; [`StorageError::Fenced`]; I/O errors, after which
    /// the log is fenced (a reopen recovers one of the states above).
    pub async fn truncate_fully_and_start_at(&self, start: Offset) -> Result<()> {
        // As in `truncate_to`: no active-segment checkpoint may land after this.
        let _checkpoint = self.checkpoint.lock().await;
        let mut core = self.core.lock().await;
        self.wait_sealed().await?;
        self.check_fenced()?;
        // Past the end; or anywhere for a log that holds nothing (a follower restarted at its
        // leader's start, which fell inside a batch, restarts again at that batch's base).
        let empty = self.log_start.get() == core.log_end;
        if start <= core.log_end && !(empty && start != core.log_end) {
            return Err(StorageError::OffsetOutOfRange {
                offset: start,
                start: self.log_start.get(),
                end: core.log_end,
            });
        }
        // No write of the old active segment may still be in flight when its buffers move on.
        self.write_out(&mut core).await?;
        self.truncations.set(self.truncations.get() + 1);
        let result = self.restart_at(&mut core, start).await;
        if result.is_err() {
            self.fenced.set(true);
        }
        result
    }

    async fn restart_at(&self, core: &mut Core<D::File>, start: Offset) -> Result<()> {
        let config = self.config();
        super::start::save_log_start(&self.disk, &self.dir, start).await?;
        let new = super::roll::create_segment(&self.disk, &self.dir, &config, start).await?;
        let old: Vec<Offset> = core.segments.keys().copied().collect();
        for base in old.iter().rev() {
            self.remove_segment_files(&core.segments[base]).await?;
        }
        for offset in std::mem::take(&mut core.snapshots) {
            let path = self.dir.join(crate::segment::file_name(
                offset,
                crate::segment::SNAPSHOT_SUFFIX,
            ));
            super::remove_if_exists(&self.disk, &path).await?;
        }
        // The new file gets a queue of its own, with the old one's buffers (as at a roll).
        let capacity = config.write_buffer_bytes_max;
        let writes = super::writes::Writes::new(0, capacity);
        for (buf, grant) in self.writes().retire() {
            writes.give_spare(buf, grant);
        }
        core.epochs = crate::epoch::EpochCache::default();
        crate::files::write_atomically(
            &self.disk,
            &self.dir,
            crate::epoch::EPOCH_FILE_NAME,
            &core.epochs.encode(),
        )
        .await?;
        // The files are changed; now the state, with no await in between.
        core.segments.clear();
        core.segments.insert(start, new);
        core.write = super::WriteBuffer::released(0);
        *self.writes.borrow_mut() = Rc::new(writes);
        core.checkpointed = 0;
        core.cache.truncate_from(Offset(0));
        core.producers = crate::producer_state::ProducerState::new(
            config.producers_per_partition_max,
            config.producer_id_expiration_ms,
        );
        core.log_end = start;
        self.log_end.set(start);
        self.log_start.set(start);
        // Nothing is left to sync: the empty log is durable as it is.
        self.durable.set(start);
        self.synced_bytes.set(self.appended_bytes.get());
        Ok(())
    }
}
