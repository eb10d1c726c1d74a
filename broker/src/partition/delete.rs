//! DeleteRecords on the owning core: moves one partition's log start.

use spate_storage::io::Disk;
use spate_wire::types::Offset;
use spate_wire::ErrorCode;
use tracing::{info, warn};

use super::Partition;
use crate::errors::KafkaCode;
use crate::ops::{DeleteRecordsOp, DeleteRecordsResult};

/// DeleteRecords' offset meaning "the high watermark".
const HIGH_WATERMARK: i64 = -1;

impl<D: Disk> Partition<D> {
    /// Moves the log start to `op.offset` (-1: the high watermark), durably, and answers the
    /// log start afterwards (Kafka's low watermark). OFFSET_OUT_OF_RANGE for an offset above the
    /// high watermark or below -1, as Kafka answers; an offset at or below the log start
    /// changes nothing.
    pub async fn delete_records(&self, op: &DeleteRecordsOp) -> DeleteRecordsResult {
        let failed = |error| DeleteRecordsResult {
            error,
            low_watermark: Offset(-1),
        };
        let offset = match op.offset {
            HIGH_WATERMARK => self.high_watermark(),
            o if o < 0 => return failed(ErrorCode::OffsetOutOfRange),
            o => Offset(o),
        };
        let before = self.log.log_start_offset();
        match self.log.delete_records(offset).await {
            Ok(low_watermark) => {
                if low_watermark > before {
                    info!(topic = %op.topic, partition = op.partition, from = before.0, to = low_watermark.0, "log start moved (DeleteRecords)");
                }
                DeleteRecordsResult {
                    error: ErrorCode::None,
                    low_watermark,
                }
            }
            Err(e) => {
                let error = e.kafka_code();
                if error != ErrorCode::OffsetOutOfRange {
                    warn!(topic = %op.topic, partition = op.partition, error = %e, "DeleteRecords failed");
                }
                failed(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use spate_storage::io::mem::MemDisk;
    use spate_storage::{block_on, CleanerState, Log, LogConfig, ReadUpTo};
    use spate_wire::batch::{BatchBuilder, BatchSpec};
    use spate_wire::types::LeaderEpoch;

    use super::*;
    use crate::partition::{Compaction, Rewrite, Settings, Writers};

    fn partition(disk: &MemDisk) -> Partition<MemDisk> {
        let log = block_on(Log::open(
            disk.clone(),
            std::path::Path::new("/data/t-0"),
            LogConfig::default(),
        ))
        .unwrap();
        let settings = Settings {
            batch_bytes_max: 1 << 20,
            compaction: Compaction::NotCompacted,
            writers: Writers::Clients,
            min_insync_replicas: 1,
            rewrite: Rewrite::NONE,
            visibility: crate::partition::Visibility::Durable,
        };
        Partition::new(log, settings, CleanerState::default(), LeaderEpoch(0))
    }

    fn append(p: &Partition<MemDisk>, records: usize) {
        let mut out = BytesMut::new();
        let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
        for _ in 0..records {
            builder.push(0, None, Some(b"v"), &[]);
        }
        builder.finish();
        block_on(p.log.append(out, LeaderEpoch(0))).unwrap();
        block_on(p.log.flush()).unwrap();
    }

    fn op(offset: i64) -> DeleteRecordsOp {
        DeleteRecordsOp {
            topic: "t".into(),
            partition: 0,
            offset,
        }
    }

    #[test]
    fn delete_records_answers_the_low_watermark_and_kafkas_errors() {
        let disk = MemDisk::new();
        let p = partition(&disk);
        append(&p, 10);
        let moved = block_on(p.delete_records(&op(4)));
        assert_eq!(
            (moved.error, moved.low_watermark),
            (ErrorCode::None, Offset(4))
        );
        // Lower: nothing changes, the current start is answered.
        let same = block_on(p.delete_records(&op(2)));
        assert_eq!(
            (same.error, same.low_watermark),
            (ErrorCode::None, Offset(4))
        );
        for bad in [11, -2, i64::MIN] {
            let refused = block_on(p.delete_records(&op(bad)));
            assert_eq!(refused.error, ErrorCode::OffsetOutOfRange, "{bad}");
            assert_eq!(refused.low_watermark, Offset(-1));
        }
        // -1 is the high watermark.
        append(&p, 5);
        let all = block_on(p.delete_records(&op(-1)));
        assert_eq!(
            (all.error, all.low_watermark),
            (ErrorCode::None, Offset(15))
        );
        assert_eq!(p.log.log_start_offset(), Offset(15));
        // A fetch below it is out of range, at it is empty.
        let below = block_on(p.log.read(Offset(14), 1 << 20, ReadUpTo::HighWatermark));
        assert!(below.is_err());
        drop(p);
        disk.crash(7);
        assert_eq!(partition(&disk).log.log_start_offset(), Offset(15));
    }

    #[test]
    fn visibility_decides_what_consumers_read_and_never_goes_back() {
        use crate::partition::Visibility;
        let disk = MemDisk::new();
        let p = partition(&disk);
        append(&p, 10);
        // Appended, not synced: hidden under `durable`, the default.
        let mut out = BytesMut::new();
        let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
        for _ in 0..5 {
            builder.push(0, None, Some(b"v"), &[]);
        }
        builder.finish();
        block_on(p.log.append(out, LeaderEpoch(0))).unwrap();
        assert_eq!(p.log.log_end_offset(), Offset(15));
        assert_eq!(p.high_watermark(), Offset(10));
        let read = |p: &Partition<MemDisk>| {
            block_on(p.log.read(Offset(0), 1 << 20, p.consumer_limit()))
                .unwrap()
                .next_offset
        };
        assert_eq!(read(&p), Offset(10));
        // `appended`: everything appended is visible.
        let appended = Settings {
            visibility: Visibility::Appended,
            ..p.settings()
        };
        p.set_settings(appended);
        assert_eq!(p.high_watermark(), Offset(15));
        assert_eq!(read(&p), Offset(15));
        // Back to `durable` before the sync: what consumers could read stays readable.
        p.set_settings(Settings {
            visibility: Visibility::Durable,
            ..appended
        });
        assert_eq!(p.log.durable_offset(), Offset(10));
        assert_eq!(p.high_watermark(), Offset(15));
        assert_eq!(read(&p), Offset(15));
    }
}
