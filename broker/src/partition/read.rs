//! Reads on the owning core: Fetch, ListOffsets and OffsetForLeaderEpoch of one partition.

use spate_storage::epoch::EpochEntry;
use spate_storage::io::Disk;
use spate_storage::{ReadChunk, ReadUpTo};
use spate_wire::fetch::AbortedTransaction;
use spate_wire::types::{LeaderEpoch, Offset};
use spate_wire::ErrorCode;
use tracing::{error, warn};

use super::Partition;
use crate::errors::KafkaCode;
use crate::ops::{
    EpochEndOp, EpochEndResult, FetchOp, FetchResult, Isolation, ListOffsetsOp, ListOffsetsResult,
};

/// ListOffsets' special timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

impl<D: Disk> Partition<D> {
    /// Whole batches from `op.offset` below the high watermark (read_committed: below the last
    /// stable offset, with the aborted transactions from `op.offset` on), at most about
    /// `op.bytes_max`.
    pub async fn fetch(&self, op: &FetchOp) -> FetchResult {
        let log = &self.log;
        let high_watermark = self.high_watermark();
        let mut result = FetchResult {
            error: ErrorCode::None,
            high_watermark,
            last_stable_offset: high_watermark,
            aborted: Vec::new(),
            log_start_offset: log.log_start_offset(),
            records: Vec::new(),
            bytes: 0,
        };
        if let Err(error) = self.check_current_leader_epoch(op.current_leader_epoch) {
            return FetchResult::failed(error);
        }
        let limit = match op.isolation {
            Isolation::ReadUncommitted => self.consumer_limit(),
            Isolation::ReadCommitted => {
                if let Some(first) = log.first_unstable_offset().await {
                    result.last_stable_offset = first.min(high_watermark);
                }
                let lso = result.last_stable_offset;
                result.aborted = log
                    .aborted_transactions(op.offset, lso)
                    .await
                    .into_iter()
                    .map(|t| AbortedTransaction {
                        producer_id: t.producer_id,
                        first_offset: t.first_offset,
                    })
                    .collect();
                ReadUpTo::Below(lso)
            }
        };
        if op.offset == result.last_stable_offset {
            return result;
        }
        let read = match log.read(op.offset, op.bytes_max, limit).await {
            Ok(read) => read,
            Err(e) => {
                result.error = e.kafka_code();
                if result.error != ErrorCode::OffsetOutOfRange {
                    warn!(topic = %op.topic, partition = op.partition, error = %e, "read failed");
                }
                return result;
            }
        };
        for chunk in read.chunks {
            let bytes = match chunk {
                ReadChunk::Memory(batch) => {
                    // Two pieces, sent back to back by the zero-copy response encoder.
                    result.bytes += batch.len() as u64;
                    result.records.push(batch.header);
                    result.records.push(batch.records);
                    continue;
                }
                ReadChunk::File(range) => match range.load_valid().await {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        error!(topic = %op.topic, partition = op.partition, error = %e, "reading segment");
                        if result.records.is_empty() {
                            result.error = e.kafka_code();
                        }
                        break;
                    }
                },
            };
            if !bytes.bytes.is_empty() {
                result.bytes += bytes.bytes.len() as u64;
                result.records.push(bytes.bytes);
            }
            if let Some(damage) = bytes.damage {
                // The intact batches before it are served; the consumer meets the damage on
                // its next fetch, as a retriable storage error, until the segment is repaired
                // from another replica.
                error!(topic = %op.topic, partition = op.partition, error = %damage, "corrupt batch on disk, not served");
                self.damaged.set(Some(bytes.resume_at));
                if result.records.is_empty() {
                    result.error = damage.kafka_code();
                }
                break;
            }
        }
        result
    }

    /// ListOffsets for this partition: the latest or earliest offset, the first record at or
    /// after a timestamp, or the first record with the largest timestamp.
    pub async fn list_offsets(&self, op: &ListOffsetsOp) -> ListOffsetsResult {
        let failed = |error| ListOffsetsResult {
            error,
            offset: Offset(-1),
            timestamp_ms: -1,
            leader_epoch: LeaderEpoch(-1),
        };
        let found = |offset, timestamp_ms| ListOffsetsResult {
            error: ErrorCode::None,
            offset,
            timestamp_ms,
            leader_epoch: self.leader_epoch(),
        };
        if let Err(error) = self.check_current_leader_epoch(op.current_leader_epoch) {
            return failed(error);
        }
        let log = &self.log;
        // Consumers read below the high watermark (read_committed: below the last stable
        // offset), so lookups answer from below it only.
        let high_watermark = self.high_watermark();
        let visible = match op.isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => log
                .first_unstable_offset()
                .await
                .map_or(high_watermark, |first| first.min(high_watermark)),
        };
        // A new leader's high watermark can trail the one its predecessor answered until its
        // followers fetch again: answering from it would move a client's "latest" back. Kafka
        // (Partition.fetchOffsetForTimestamp) answers OFFSET_NOT_AVAILABLE, which clients retry,
        // while the high watermark is below the start of the leader's epoch.
        let lagging = self
            .replica
            .as_ref()
            .and_then(|slot| slot.leader_epoch_start())
            .is_some_and(|start| start > high_watermark);
        let looked_up =
            |answer: Result<Option<(Offset, i64)>, spate_storage::StorageError>| match answer {
                Ok(Some((offset, timestamp_ms))) => found(offset, timestamp_ms),
                // Nothing visible matches; a lagging leader may just not show it yet.
                Ok(None) if lagging => failed(ErrorCode::OffsetNotAvailable),
                Ok(None) => found(Offset(-1), -1),
                Err(e) => failed(e.kafka_code()),
            };
        match op.timestamp_ms {
            LATEST_TIMESTAMP if lagging => failed(ErrorCode::OffsetNotAvailable),
            LATEST_TIMESTAMP => found(visible, -1),
            EARLIEST_TIMESTAMP => found(log.log_start_offset(), -1),
            // KIP-734 (v7+): the first record carrying the largest timestamp.
            MAX_TIMESTAMP => looked_up(log.offset_of_max_timestamp(visible).await),
            t if t < 0 => failed(ErrorCode::UnsupportedVersion),
            t => looked_up(log.offset_for_timestamp(t, visible).await),
        }
    }

    /// Where a leader epoch ends (OffsetForLeaderEpoch), from the log's epoch cache as Kafka's
    /// `LeaderEpochFileCache.endOffsetFor` answers: the current epoch ends at the log end; an
    /// older one at the start of the next epoch in the cache, named by the largest cached epoch
    /// at or below it (so a consumer whose position is past that end after a failover sees its
    /// log was truncated, KIP-320); one older than every cached epoch at the first epoch's
    /// start; a newer one is unknown (-1, -1).
    pub async fn epoch_end(&self, op: &EpochEndOp) -> EpochEndResult {
        if let Err(error) = self.check_current_leader_epoch(op.current_leader_epoch) {
            return EpochEndResult {
                error,
                leader_epoch: -1,
                end_offset: Offset(-1),
            };
        }
        let current = self.leader_epoch();
        let epochs = self.log.epochs().await;
        let (leader_epoch, end_offset) = epoch_end_in(
            epochs.entries(),
            current,
            LeaderEpoch(op.leader_epoch),
            self.log.log_end_offset(),
        );
        EpochEndResult {
            error: ErrorCode::None,
            leader_epoch: leader_epoch.0,
            end_offset,
        }
    }
}

/// [`Partition::epoch_end`]'s rule over the epoch cache's `entries` (ascending epochs), this
/// partition's `current` epoch and its `log_end`. The current epoch may have no entry yet (no
/// record appended in it): it still ends at the log end, as Kafka's leader, which caches its
/// epoch when it takes over, answers.
fn epoch_end_in(
    entries: &[EpochEntry],
    current: LeaderEpoch,
    requested: LeaderEpoch,
    log_end: Offset,
) -> (LeaderEpoch, Offset) {
    const UNDEFINED: (LeaderEpoch, Offset) = (LeaderEpoch(-1), Offset(-1));
    if requested.0 < 0 || requested > current {
        return UNDEFINED;
    }
    if requested == current {
        return (current, log_end);
    }
    let after = entries.partition_point(|e| e.epoch <= requested);
    match (after.checked_sub(1).map(|i| entries[i]), entries.get(after)) {
        // The next cached epoch starts where this one ends.
        (Some(floor), Some(next)) => (floor.epoch, next.start_offset),
        // Older than every cached epoch: it ended where the first cached one starts.
        (None, Some(first)) => (requested, first.start_offset),
        // At or past the newest cached epoch, below the current one: nothing was appended
        // since, so it ends at the log end.
        (Some(floor), None) => (floor.epoch, log_end),
        (None, None) => (requested, log_end),
    }
}

#[cfg(test)]
mod epoch_end_tests {
    use super::*;

    fn entries(list: &[(i32, i64)]) -> Vec<EpochEntry> {
        list.iter()
            .map(|&(epoch, start)| EpochEntry {
                epoch: LeaderEpoch(epoch),
                start_offset: Offset(start),
            })
            .collect()
    }

    #[test]
    fn an_epoch_ends_where_the_next_cached_one_starts_as_in_kafka() {
        // Epoch 1 from 0, epoch 3 from 100, epoch 6 from 250; current 7; log end 300.
        let cache = entries(&[(1, 0), (3, 100), (6, 250)]);
        let end =
            |requested| epoch_end_in(&cache, LeaderEpoch(7), LeaderEpoch(requested), Offset(300));
        assert_eq!(end(7), (LeaderEpoch(7), Offset(300)), "the current epoch");
        assert_eq!(end(6), (LeaderEpoch(6), Offset(300)), "the newest cached");
        assert_eq!(end(3), (LeaderEpoch(3), Offset(250)));
        assert_eq!(
            end(4),
            (LeaderEpoch(3), Offset(250)),
            "the largest cached at or below"
        );
        assert_eq!(end(1), (LeaderEpoch(1), Offset(100)));
        assert_eq!(end(2), (LeaderEpoch(1), Offset(100)));
        assert_eq!(
            end(0),
            (LeaderEpoch(0), Offset(0)),
            "older than every cached epoch"
        );
        assert_eq!(
            end(8),
            (LeaderEpoch(-1), Offset(-1)),
            "newer than the current"
        );
        assert_eq!(end(-1), (LeaderEpoch(-1), Offset(-1)));
    }

    #[test]
    fn an_empty_cache_answers_the_current_epoch_and_older_ones_at_the_log_end() {
        let end = |requested| epoch_end_in(&[], LeaderEpoch(0), LeaderEpoch(requested), Offset(42));
        assert_eq!(end(0), (LeaderEpoch(0), Offset(42)));
        assert_eq!(end(1), (LeaderEpoch(-1), Offset(-1)));
    }
}
