//! Reads on the owning core: Fetch, ListOffsets and OffsetForLeaderEpoch of one partition.

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
        // Consumers read below the high watermark, so lookups answer from below it only.
        let visible = self.high_watermark();
        let looked_up =
            |answer: Result<Option<(Offset, i64)>, spate_storage::StorageError>| match answer {
                Ok(Some((offset, timestamp_ms))) => found(offset, timestamp_ms),
                Ok(None) => found(Offset(-1), -1),
                Err(e) => failed(e.kafka_code()),
            };
        match op.timestamp_ms {
            LATEST_TIMESTAMP => found(visible, -1),
            EARLIEST_TIMESTAMP => found(log.log_start_offset(), -1),
            // KIP-734 (v7+): the first record carrying the largest timestamp.
            MAX_TIMESTAMP => looked_up(log.offset_of_max_timestamp(visible).await),
            t if t < 0 => failed(ErrorCode::UnsupportedVersion),
            t => looked_up(log.offset_for_timestamp(t, visible).await),
        }
    }

    /// Where a leader epoch ends (OffsetForLeaderEpoch).
    ///
    /// While a broker leads alone, in one epoch, any epoch at or below it ends at the log end
    /// and a later one is unknown. Answering from the log's epoch cache, as a follower
    /// truncating after a failover needs (KIP-101/279), comes with replication.
    pub fn epoch_end(&self, op: &EpochEndOp) -> EpochEndResult {
        if let Err(error) = self.check_current_leader_epoch(op.current_leader_epoch) {
            return EpochEndResult {
                error,
                leader_epoch: -1,
                end_offset: Offset(-1),
            };
        }
        let epoch = self.leader_epoch();
        if op.leader_epoch > epoch.0 {
            return EpochEndResult {
                error: ErrorCode::None,
                leader_epoch: -1,
                end_offset: Offset(-1),
            };
        }
        EpochEndResult {
            error: ErrorCode::None,
            leader_epoch: epoch.0,
            end_offset: self.log.log_end_offset(),
        }
    }
}
