//! Produce on the owning core: the checks a client's batches must pass, then the append and,
//! for acks=all, the wait for durability.

use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_storage::io::Disk;
use spate_storage::{AppendKind, StorageError, TxnAdmission};
use spate_wire::batch::{batches, BatchError, CheckedBatch, MAGIC_V2};
use spate_wire::compression::DECOMPRESSED_BYTES_MAX_DEFAULT;
use spate_wire::records::batch_records;
use spate_wire::types::Offset;
use spate_wire::ErrorCode;
use tracing::{debug, warn};

use super::{Compaction, Partition, Writers};
use crate::errors::KafkaCode;
use crate::ops::{Durability, ProduceOp, ProduceResult, TxnCheck};
use crate::stats::CoreStats;

/// Why a partition's records were refused before anything was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceRefused {
    /// A batch is not a whole v2 batch with a good CRC.
    #[error("{0}")]
    Batch(#[from] BatchError),
    /// The records field holds no batch.
    #[error("no record batch")]
    NoBatch,
    /// A batch is larger than the topic's `max.message.bytes`.
    #[error("batch of {bytes} bytes exceeds max.message.bytes {bytes_max}")]
    TooLarge {
        /// The batch's size.
        bytes: usize,
        /// The topic's limit.
        bytes_max: usize,
    },
    /// The record count disagrees with `lastOffsetDelta` (a producer's batch is dense).
    #[error("record count {record_count} does not match last offset delta {last_offset_delta}")]
    RecordCount {
        /// The declared record count.
        record_count: i32,
        /// The declared last offset delta.
        last_offset_delta: i32,
    },
    /// A control batch from a client (only the transaction coordinator writes markers).
    #[error("control batches are written by the broker only")]
    ControlBatch,
    /// A transactional batch for a partition not in the producer's transaction (KIP-890: the
    /// producer did not add it with AddPartitionsToTxn, or its transaction ended).
    #[error("partition is not in the producer's transaction")]
    NotInTransaction,
    /// The coordinator's verification failed with this code (already as the producer gets it).
    #[error("the transaction coordinator could not verify the partition: {0:?}")]
    Unverifiable(ErrorCode),
    /// A transactional batch without a sequence: only the broker's own coordinators write
    /// those (transactional offset commits); a client's must carry one.
    #[error("transactional batch without a sequence number")]
    TransactionalWithoutSequence,
    /// Keyless records for a compacted topic: their indexes among the partition's records
    /// (KIP-467's `batch_index`), at most [`RECORD_ERRORS_MAX`].
    #[error("{KEYLESS_MESSAGE}")]
    KeylessRecords(Vec<i32>),
    /// A batch's records do not decode.
    #[error("{0}")]
    BadRecords(String),
    /// More than one batch for the partition: Produce v3+ carries exactly one, as Kafka's
    /// `ProduceRequest.validateRecords` requires (every client sends one).
    #[error("produce requests carry exactly one record batch per partition")]
    SeveralBatches,
    /// A client's records for a topic only the broker writes.
    #[error("cannot append to an internal topic")]
    InternalTopic,
}

/// Where the magic byte is in a batch or message: after base offset (8) and length (4), and,
/// in a v2 batch, the partition leader epoch (4); in v0/v1 messages, after the CRC (4).
const MAGIC_POSITION: usize = 16;

/// Kafka's reason for refusing a keyless record on a compacted topic.
pub const KEYLESS_MESSAGE: &str = "Compacted topic cannot accept message without key";

/// Most per-record errors one partition's answer lists (the rest are refused all the same).
pub const RECORD_ERRORS_MAX: usize = 1000;

/// Adds to `keyless` the indexes (counted from `first_index`) of the records of a
/// (CRC-checked) batch that have no key, as Kafka refuses them on compacted topics (it answers
/// INVALID_RECORD and names each one, KIP-467); returns the batch's record count.
///
/// # Errors
/// The decoder's message, when the records do not decode.
pub fn check_keys(batch: &[u8], first_index: i32, keyless: &mut Vec<i32>) -> Result<i32, String> {
    let mut scratch = Vec::new();
    let (_, records) = batch_records(batch, &mut scratch, DECOMPRESSED_BYTES_MAX_DEFAULT)
        .map_err(|e| e.to_string())?;
    let mut count = 0i32;
    for record in records {
        let record = record.map_err(|e| e.to_string())?;
        if record.key.is_none() && keyless.len() < RECORD_ERRORS_MAX {
            keyless.push(first_index.saturating_add(count));
        }
        count = count.saturating_add(1);
    }
    Ok(count)
}

/// Checks a client's records for one partition: exactly one batch (as Kafka requires from
/// Produce v3 on), whole, a v2 batch with a good CRC, within the size limit.
///
/// # Errors
/// The first problem found.
pub fn check_produce(
    records: &Bytes,
    batch_bytes_max: usize,
    writers: Writers,
    compaction: Compaction,
    transaction: TxnCheck,
) -> Result<Vec<CheckedBatch>, ProduceRefused> {
    if writers == Writers::CoordinatorOnly {
        return Err(ProduceRefused::InternalTopic);
    }
    // The magic byte sits at the same place in every message format (after the offset and
    // length fields): an old-format message set is refused for its format, as Kafka's
    // ProduceRequest.validateRecords does, even when it is too short for a v2 header.
    if let Some(&magic) = records.get(MAGIC_POSITION) {
        if magic as i8 != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic as i8).into());
        }
    }
    let mut checked = Vec::with_capacity(1);
    let mut keyless = Vec::new();
    for item in batches(records) {
        // Before looking at a second batch at all, as Kafka checks the count first.
        if !checked.is_empty() {
            return Err(ProduceRefused::SeveralBatches);
        }
        let (header, batch) = item?;
        // Before the CRC: an oversized batch is refused without reading all of it.
        if batch.len() > batch_bytes_max {
            return Err(ProduceRefused::TooLarge {
                bytes: batch.len(),
                bytes_max: batch_bytes_max,
            });
        }
        let batch = CheckedBatch::check(records.slice_ref(batch))?;
        if header.record_count != header.last_offset_delta + 1 {
            return Err(ProduceRefused::RecordCount {
                record_count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        if header.is_control() {
            return Err(ProduceRefused::ControlBatch);
        }
        if header.is_transactional() {
            match transaction {
                TxnCheck::Verified => {}
                TxnCheck::Unverified => return Err(ProduceRefused::NotInTransaction),
                TxnCheck::Failed(code) => return Err(ProduceRefused::Unverifiable(code)),
            }
        }
        if header.is_transactional() && header.base_sequence < 0 {
            return Err(ProduceRefused::TransactionalWithoutSequence);
        }
        if compaction == Compaction::Compacted {
            check_keys(batch.bytes(), 0, &mut keyless).map_err(ProduceRefused::BadRecords)?;
        }
        checked.push(batch);
    }
    if !keyless.is_empty() {
        return Err(ProduceRefused::KeylessRecords(keyless));
    }
    if checked.is_empty() {
        return Err(ProduceRefused::NoBatch);
    }
    Ok(checked)
}

/// Replicas in a partition's in-sync set: its leader, until replication lands.
const IN_SYNC_REPLICAS: u32 = 1;

fn refused(error: ErrorCode, message: String) -> ProduceResult {
    ProduceResult {
        error,
        base_offset: Offset(-1),
        log_start_offset: Offset(-1),
        message: Some(message),
        record_errors: Vec::new(),
        log_append_time_ms: -1,
    }
}

impl<D: Disk> Partition<D> {
    /// Checks and appends `op`'s records, then for acks=all waits until they are durable or
    /// the op's timeout passes. Append times go to `stats`.
    pub async fn produce(
        self: &std::rc::Rc<Self>,
        op: ProduceOp,
        stats: &CoreStats,
    ) -> ProduceResult {
        let settings = self.settings();
        if self.replica.is_none()
            && op.durability == Durability::Flushed
            && settings.min_insync_replicas > IN_SYNC_REPLICAS
        {
            // Refused before the append, as Kafka does when the in-sync set is too small.
            return refused(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "min.insync.replicas is {} but {}-{} has {IN_SYNC_REPLICAS} in-sync replica \
                     (replication is not implemented yet)",
                    settings.min_insync_replicas, op.topic, op.partition
                ),
            );
        }
        let check = |transaction| {
            check_produce(
                &op.records,
                settings.batch_bytes_max,
                settings.writers,
                settings.compaction,
                transaction,
            )
        };
        let refuse = |error: ProduceRefused| {
            let message = match &error {
                ProduceRefused::KeylessRecords(_) | ProduceRefused::InternalTopic => {
                    format!("{error} in topic partition {}-{}.", op.topic, op.partition)
                }
                _ => error.to_string(),
            };
            let mut answer = refused(error.kafka_code(), message);
            if let ProduceRefused::KeylessRecords(indexes) = error {
                answer.record_errors = indexes;
            }
            answer
        };
        // A transactional batch its coordinator did not confirm (or could not: it is moving)
        // is still taken if it continues its producer's transaction open here, checked at the
        // append under the log's lock: Kafka's leader asks the coordinator only for a partition
        // without that transaction ongoing, so an open transaction keeps producing through a
        // coordinator failover. `unless_ongoing` is the answer otherwise.
        let (checked, unless_ongoing) = match check(op.transaction) {
            Ok(checked) => (checked, None),
            Err(refusal @ (ProduceRefused::NotInTransaction | ProduceRefused::Unverifiable(_))) => {
                match check(TxnCheck::Verified) {
                    Ok(checked) => (checked, Some(refusal)),
                    Err(error) => return refuse(error),
                }
            }
            Err(error) => return refuse(error),
        };
        let admission = match unless_ongoing {
            None => TxnAdmission::Any,
            Some(_) => TxnAdmission::OngoingOnly,
        };
        let log_append_time_ms = if settings.rewrite.log_append_time {
            crate::core::now_ms()
        } else {
            -1
        };
        let checked = if settings.rewrite == super::Rewrite::NONE {
            checked
        } else {
            match rewrite(
                checked,
                settings.rewrite,
                log_append_time_ms,
                settings.batch_bytes_max,
            ) {
                Ok(rewritten) => rewritten,
                Err((code, message)) => return refused(code, message),
            }
        };
        if self.replica.is_some() {
            let answer = self
                .produce_replicated(&op, checked, log_append_time_ms, admission, stats)
                .await;
            return match (answer.error, unless_ongoing) {
                // Only the append's NoOngoingTransaction answers this code here (a request
                // carries one batch, refused before the append otherwise).
                (ErrorCode::InvalidTxnState, Some(refusal)) => refuse(refusal),
                _ => answer,
            };
        }
        let mut first = None;
        let mut last = Offset(-1);
        for batch in checked {
            let append_started = Instant::now();
            let appended = self.append(batch, admission).await;
            stats.record_append(append_started.elapsed());
            match appended {
                Ok(info) => {
                    if info.kind == AppendKind::Duplicate {
                        // Answered with the original offsets; for acks=all the wait below
                        // still covers them, since the original may not be durable yet.
                        debug!(topic = %op.topic, partition = op.partition, base = %info.base_offset, "duplicate batch");
                    }
                    first.get_or_insert(info.base_offset);
                    last = info.last_offset;
                }
                Err(StorageError::Producer(e)) => {
                    debug!(topic = %op.topic, partition = op.partition, error = %e, "batch refused by producer state");
                    return refused(e.kafka_code(), e.to_string());
                }
                Err(StorageError::NoOngoingTransaction { .. }) => {
                    return refuse(unless_ongoing.expect("only refused when admitted so"));
                }
                Err(e) => {
                    warn!(topic = %op.topic, partition = op.partition, error = %e, "append failed");
                    // Batches appended before the failure stay; the client retries the rest.
                    return refused(e.kafka_code(), e.to_string());
                }
            }
        }
        // Wakes consumers at once under `spate.visibility=appended`; under `durable` the commit
        // task wakes them when its sync covers these batches.
        self.notify_if_advanced();
        self.request_commit();
        if op.durability == Durability::Flushed {
            // The wait runs as its own task so a timeout never cancels a sync this request
            // happens to lead: it finishes anyway. The log is not proven live under cancelled
            // flushes (storage/tests/log_interleaved.rs, ignored test), so none is cancelled.
            let waiter = self.clone();
            let wait =
                glommio::spawn_local(async move { waiter.log.wait_durable(last.next()).await })
                    .detach();
            let durable = futures_lite::future::or(wait, async {
                glommio::timer::sleep(Duration::from_millis(op.timeout_ms)).await;
                None
            });
            match durable.await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    warn!(topic = %op.topic, partition = op.partition, error = %e, "flush failed");
                    return refused(e.kafka_code(), e.to_string());
                }
                None => {
                    // Appended but not known durable within the client's timeout; the sync goes
                    // on, and a retry may duplicate the batch (as in Kafka without idempotence).
                    return refused(
                        ErrorCode::RequestTimedOut,
                        format!("not durable within timeout_ms {}", op.timeout_ms),
                    );
                }
            }
            self.notify_if_advanced();
        }
        ProduceResult {
            error: ErrorCode::None,
            base_offset: first.expect("at least one batch"),
            log_start_offset: self.log.log_start_offset(),
            message: None,
            record_errors: Vec::new(),
            log_append_time_ms,
        }
    }
}

impl<D: Disk> Partition<D> {
    /// Appends a batch the broker itself wrote (the group coordinator's offsets and group
    /// records) as the partition's leader, and waits until the in-sync replicas have it.
    ///
    /// # Errors
    /// Why it was not appended or not replicated within `timeout_ms`.
    pub async fn append_internal(
        self: &std::rc::Rc<Self>,
        batch: Bytes,
        timeout_ms: u64,
    ) -> Result<Offset, String> {
        let Some(slot) = &self.replica else {
            return Err("not a replicated partition".to_owned());
        };
        let hold = slot
            .begin_append(spate_replication::Acks::All)
            .await
            .map_err(|e| e.to_string())?;
        let appended = self.log.append(batch, hold.epoch).await;
        slot.appended(hold, &self.log);
        self.grew.notify_all();
        self.request_commit();
        let info = appended.map_err(|e| e.to_string())?;
        let waiting = slot.await_acks(info.last_offset, timeout_ms);
        // As a client's acks=all produce: the leader's own copy counts once fsynced, so that
        // sync starts now and counts the moment it completes, not at the next group commit
        // or replication tick (without it every coordinator write, a transaction's state and
        // markers and a group's offsets, waited out a follower's 500 ms long-poll).
        self.count_own_copy_when_durable(slot, info.last_offset);
        match waiting.await {
            Ok(Ok(())) => {
                self.notify_if_advanced();
                Ok(info.base_offset)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("partition closed".to_owned()),
        }
    }

    /// The leader's own copy counts toward the high watermark once fsynced (unless
    /// write.caching): starts that sync now rather than at the next group commit, in a task of
    /// its own (a sync is never cancelled), and counts it the moment it completes.
    fn count_own_copy_when_durable(
        self: &std::rc::Rc<Self>,
        slot: &crate::partition::replica::ReplicaSlot,
        last: Offset,
    ) {
        if slot.counts_fsynced() {
            let partition = self.clone();
            glommio::spawn_local(async move {
                if partition.log.wait_durable(last.next()).await.is_ok() {
                    partition.notify_if_advanced();
                }
            })
            .detach();
        }
    }

    /// Appends checked batches as the partition's leader in cluster mode, then for acks=all
    /// waits until the in-sync replicas have them (the replicated high watermark passes them).
    async fn produce_replicated(
        self: &std::rc::Rc<Self>,
        op: &ProduceOp,
        checked: Vec<CheckedBatch>,
        log_append_time_ms: i64,
        admission: TxnAdmission,
        stats: &CoreStats,
    ) -> ProduceResult {
        let slot = self.replica.as_ref().expect("checked by the caller");
        let acks = match op.durability {
            Durability::Flushed => spate_replication::Acks::All,
            _ => spate_replication::Acks::Leader,
        };
        let hold = match slot.begin_append(acks).await {
            Ok(hold) => hold,
            Err(refusal) => {
                let message = format!("{refusal} for {}-{}", op.topic, op.partition);
                return refused(KafkaCode::kafka_code(&refusal), message);
            }
        };
        let mut first = None;
        let mut last = Offset(-1);
        let mut failure = None;
        for batch in checked {
            let append_started = Instant::now();
            let appended = self.log.append_checked(batch, hold.epoch, admission).await;
            stats.record_append(append_started.elapsed());
            match appended {
                Ok(info) => {
                    first.get_or_insert(info.base_offset);
                    last = info.last_offset;
                }
                Err(e) => {
                    if !matches!(e, StorageError::Producer(_)) {
                        warn!(topic = %op.topic, partition = op.partition, error = %e, "append failed");
                    }
                    failure = Some(refused(e.kafka_code(), e.to_string()));
                    break;
                }
            }
        }
        slot.appended(hold, &self.log);
        self.grew.notify_all();
        // The leader's own copy counts toward the high watermark once fsynced (unless
        // write.caching): sync it as soon as the device can, for acks=1 batches too.
        self.request_commit();
        if let Some(failure) = failure {
            return failure;
        }
        if acks == spate_replication::Acks::All {
            let waiting = slot.await_acks(last, op.timeout_ms);
            self.count_own_copy_when_durable(slot, last);
            // The replica answers at its timeout; this bound only guards against a waiter lost
            // with its replica (a deleted partition).
            let bound = Duration::from_millis(op.timeout_ms.saturating_add(5_000));
            let outcome = futures_lite::future::or(async { waiting.await.ok() }, async {
                glommio::timer::sleep(bound).await;
                None
            })
            .await;
            match outcome {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    return refused(
                        KafkaCode::kafka_code(&e),
                        format!("{e} for {}-{}", op.topic, op.partition),
                    )
                }
                None => {
                    return refused(
                        ErrorCode::RequestTimedOut,
                        format!("not replicated within timeout_ms {}", op.timeout_ms),
                    )
                }
            }
            self.notify_if_advanced();
        }
        ProduceResult {
            error: ErrorCode::None,
            base_offset: first.expect("at least one batch"),
            log_start_offset: self.log.log_start_offset(),
            message: None,
            record_errors: Vec::new(),
            log_append_time_ms,
        }
    }
}

/// Rewrites a partition's checked batches as the topic stores them: recompressed into its
/// `compression.type` where the producer used another codec, then stamped with the append time
/// under `message.timestamp.type=LogAppendTime` (after recompression, since the stamp's CRC
/// covers the new bytes). Each rewritten batch is checked again, and against the topic's
/// `max.message.bytes` (a batch can grow when it is stored uncompressed).
fn rewrite(
    checked: Vec<CheckedBatch>,
    rewrite: super::Rewrite,
    now_ms: i64,
    batch_bytes_max: usize,
) -> Result<Vec<CheckedBatch>, (ErrorCode, String)> {
    let mut out = Vec::with_capacity(checked.len());
    for batch in checked {
        let mut bytes = match rewrite.codec {
            Some(codec) if batch.header().compression() != codec => {
                let mut buffer = bytes::BytesMut::with_capacity(batch.len());
                spate_wire::batch::recompress(
                    batch.bytes(),
                    codec,
                    DECOMPRESSED_BYTES_MAX_DEFAULT,
                    &mut buffer,
                )
                .map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
                buffer
            }
            _ => bytes::BytesMut::from(&batch.bytes()[..]),
        };
        if rewrite.log_append_time {
            spate_wire::batch::set_log_append_time(&mut bytes, now_ms);
        }
        if bytes.len() > batch_bytes_max {
            return Err((
                ErrorCode::MessageTooLarge,
                format!(
                    "batch of {} bytes once stored in the topic's compression.type exceeds \
                     max.message.bytes {batch_bytes_max}",
                    bytes.len()
                ),
            ));
        }
        let checked = CheckedBatch::check(bytes.freeze())
            .map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
        out.push(checked);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use spate_wire::batch::{BatchBuilder, BatchSpec};

    #[test]
    fn transactional_batches_need_a_verified_transaction_and_markers_are_never_accepted() {
        let spec = BatchSpec {
            producer_id: spate_wire::types::ProducerId(4),
            producer_epoch: spate_wire::types::ProducerEpoch(0),
            base_sequence: 0,
            ..BatchSpec::default()
        };
        let mut txn = batch(&[Some(b"k")], spec);
        spate_wire::batch::set_transactional(&mut txn);
        let txn = Bytes::copy_from_slice(&txn);
        let check = |records: &Bytes, verdict| {
            check_produce(
                records,
                1 << 20,
                Writers::Clients,
                Compaction::NotCompacted,
                verdict,
            )
            .map(|b| b.len())
        };
        assert_eq!(
            check(&txn, TxnCheck::Unverified),
            Err(ProduceRefused::NotInTransaction)
        );
        assert_eq!(check(&txn, TxnCheck::Verified), Ok(1));
        // A coordinator that could not answer: refused with the code the handler chose.
        assert_eq!(
            check(&txn, TxnCheck::Failed(ErrorCode::NotEnoughReplicas)),
            Err(ProduceRefused::Unverifiable(ErrorCode::NotEnoughReplicas))
        );
        let mut marker = BytesMut::new();
        spate_wire::batch::put_txn_marker(
            &mut marker,
            spate_wire::types::ProducerId(4),
            spate_wire::types::ProducerEpoch(0),
            0,
            spate_wire::batch::ControlType::Commit,
            0,
        );
        let marker = Bytes::copy_from_slice(&marker);
        assert_eq!(
            check(&marker, TxnCheck::Verified),
            Err(ProduceRefused::ControlBatch)
        );
    }

    fn batch(keys: &[Option<&[u8]>], spec: BatchSpec) -> BytesMut {
        let mut out = BytesMut::new();
        let mut builder = BatchBuilder::new(&mut out, spec);
        for key in keys {
            builder.push(0, *key, Some(b"v"), &[]);
        }
        builder.finish();
        out
    }

    fn check(records: &[u8], compaction: Compaction) -> Result<usize, ProduceRefused> {
        check_produce(
            &Bytes::copy_from_slice(records),
            1 << 20,
            Writers::Clients,
            compaction,
            TxnCheck::Unverified,
        )
        .map(|batches| batches.len())
    }

    #[test]
    fn a_partition_carries_exactly_one_whole_batch_like_kafka() {
        let good = batch(&[Some(b"k")], BatchSpec::default());
        assert_eq!(check(&good, Compaction::NotCompacted), Ok(1));
        let mut two = good.clone();
        two.extend_from_slice(&good);
        assert_eq!(
            check(&two, Compaction::NotCompacted),
            Err(ProduceRefused::SeveralBatches)
        );
        let mut corrupt = good.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(
            check(&corrupt, Compaction::NotCompacted),
            Err(ProduceRefused::Batch(BatchError::CrcMismatch { .. }))
        ));
        // A second batch is refused before it is read, as Kafka counts batches first.
        let mut bad_second = good.clone();
        bad_second.extend_from_slice(&corrupt);
        assert_eq!(
            check(&bad_second, Compaction::NotCompacted),
            Err(ProduceRefused::SeveralBatches)
        );
        // Message format v1 (magic at the same place): refused for its format.
        let mut v1 = good.clone();
        v1[MAGIC_POSITION] = 1;
        assert_eq!(
            check(&v1[..40], Compaction::NotCompacted),
            Err(ProduceRefused::Batch(BatchError::BadMagic(1)))
        );
        assert_eq!(
            check(&[], Compaction::NotCompacted),
            Err(ProduceRefused::NoBatch)
        );
    }

    #[test]
    fn keyless_records_are_named_by_their_index_like_kafka() {
        let mut keyless = Vec::new();
        assert_eq!(
            check_keys(&batch(&[Some(b"k")], BatchSpec::default()), 0, &mut keyless),
            Ok(1)
        );
        assert!(keyless.is_empty());
        let mixed = batch(&[Some(b"k"), None, Some(b"k"), None], BatchSpec::default());
        assert_eq!(check_keys(&mixed, 5, &mut keyless), Ok(4));
        assert_eq!(keyless, vec![6, 8]);
    }

    #[test]
    fn compacted_topics_refuse_keyless_records_and_size_is_checked() {
        let keyless = batch(&[Some(b"k"), None], BatchSpec::default());
        assert_eq!(check(&keyless, Compaction::NotCompacted), Ok(1));
        assert_eq!(
            check(&keyless, Compaction::Compacted),
            Err(ProduceRefused::KeylessRecords(vec![1]))
        );
        let records = Bytes::copy_from_slice(&keyless);
        assert_eq!(
            check_produce(
                &records,
                10,
                Writers::Clients,
                Compaction::NotCompacted,
                TxnCheck::Unverified
            ),
            Err(ProduceRefused::TooLarge {
                bytes: keyless.len(),
                bytes_max: 10
            })
        );
        assert_eq!(
            check_produce(
                &records,
                1 << 20,
                Writers::CoordinatorOnly,
                Compaction::NotCompacted,
                TxnCheck::Unverified
            ),
            Err(ProduceRefused::InternalTopic)
        );
    }

    #[test]
    fn an_idempotent_producer_sends_one_batch_per_partition() {
        let spec = BatchSpec {
            producer_id: spate_wire::types::ProducerId(5),
            producer_epoch: spate_wire::types::ProducerEpoch(0),
            base_sequence: 0,
            ..BatchSpec::default()
        };
        let one = batch(&[Some(b"k")], spec);
        assert_eq!(check(&one, Compaction::NotCompacted), Ok(1));
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(
            check(&two, Compaction::NotCompacted),
            Err(ProduceRefused::SeveralBatches)
        );
    }
}
