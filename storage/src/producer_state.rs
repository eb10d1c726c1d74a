//! Idempotent-producer state of one partition: a sans-I/O state machine.
//!
//! For each producer id the partition remembers the producer's epoch and the metadata of its
//! last [`BATCHES_PER_PRODUCER_MAX`] batches (first/last sequence, first/last offset, max
//! timestamp). Before a batch that carries a producer id is appended, [`ProducerState::check`]
//! decides: append it, answer it as a duplicate of a batch already in the log (with that batch's
//! offsets), or refuse it. After the append, [`ProducerState::record`] remembers it. Recovery
//! feeds the batch headers after the latest snapshot to [`ProducerState::replay`], which records
//! without checking (they were checked when first appended).
//!
//! The rules follow Kafka's `ProducerAppendInfo` and `UnifiedLog.analyzeAndValidateProducerState`
//! (read at apache/kafka 1eb7644, October 2024, i.e. Kafka 3.9/4.0; unchanged since 2.5 for
//! these cases):
//! - the duplicate check comes first: same epoch and the same first and last sequence as one of
//!   the last 5 batches → no append, the original offsets, no error;
//! - an epoch below the known one → INVALID_PRODUCER_EPOCH;
//! - a new (higher) epoch must start at sequence 0, else OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - the same epoch must continue at `last sequence + 1` (wrapping from `i32::MAX` to 0), else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - an unknown producer id is accepted at any sequence. Kafka before 2.5 answered
//!   UNKNOWN_PRODUCER_ID when the sequence was not 0; since KIP-360 (2.5) the broker accepts it,
//!   because a producer's state legitimately disappears when retention deletes its batches or
//!   it expires, and its next batch must not be refused for that. Spate matches the newer rule.
//!
//! Idle producers are dropped by [`ProducerState::remove_expired`] once `now - last batch's max
//! timestamp >= expiration_ms` (Kafka's `producer.id.expiration.ms` rule). The number of
//! producers is bounded by `producers_max`; a new producer beyond it is refused with
//! [`ProducerError::TooManyProducers`] (Kafka has no such bound).
//!
//! Transactions: a transactional batch opens its producer's transaction in this partition (at its
//! first offset) unless one is open; a transaction marker (control batch, COMMIT or ABORT, with
//! the producer's epoch and no sequence) closes it. A marker is refused only for an epoch older
//! than the producer's (Kafka's fencing of zombie coordinators' markers); it never enters the
//! duplicate window. The first offset of the earliest open transaction bounds the last stable
//! offset ([`ProducerState::first_unstable_offset`]); each aborted transaction is remembered
//! ([`AbortedTxn`], Kafka's aborted-transaction index) until retention drops the log below its
//! marker ([`ProducerState::trim_aborted`]). Both are in the snapshot (version 2), so recovery
//! knows them without reading the whole log. A producer with an open transaction never expires.
//!
//! For log compaction: the last batch of every producer must survive a rewrite, or a retry of it
//! would be appended again. [`ProducerState::is_last_batch_of_producer`] answers that per batch;
//! [`ProducerState::last_batch_offsets`] lists them.

use std::collections::{HashMap, VecDeque};

use std::collections::BTreeSet;

use spate_wire::batch::{control_type_of_records, BatchHeader, ControlType};
use spate_wire::types::{Offset, ProducerEpoch, ProducerId};

/// Batches remembered per producer, for duplicate detection (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`, and the most in-flight requests an idempotent
/// client may have).
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;

/// Default of `producer.id.expiration.ms` (one day, as in Kafka).
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 24 * 3600 * 1000;

/// Default bound on producers remembered per partition.
pub const PRODUCERS_PER_PARTITION_MAX_DEFAULT: usize = 10_000;

/// Bytes of one batch's metadata in a snapshot.
const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;
/// Bytes of one producer's fixed part in a snapshot.
const SNAPSHOT_PRODUCER_BYTES: usize = 8 + 2 + 8 + 1;
/// Bytes before the first producer: magic, version, crc32, offset, count.
const SNAPSHOT_HEADER_BYTES: usize = 4 + 2 + 4 + 8 + 4;
const SNAPSHOT_MAGIC: &[u8; 4] = b"SPPS";
/// Version 2 adds the open transactions and the aborted ones after the producers.
const SNAPSHOT_VERSION: u16 = 2;
/// Bytes of one open transaction in a snapshot.
const SNAPSHOT_OPEN_TXN_BYTES: usize = 8 + 8;
/// Bytes of one aborted transaction in a snapshot.
const SNAPSHOT_ABORTED_TXN_BYTES: usize = 8 + 8 + 8;

/// What one appended batch of a producer covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record (wrapped past `i32::MAX`).
    pub last_sequence: i32,
    /// Offset of the first record.
    pub first_offset: Offset,
    /// Offset of the last record.
    pub last_offset: Offset,
    /// The batch's max timestamp.
    pub max_timestamp_ms: i64,
}

/// A producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The epoch of its latest batch.
    pub epoch: ProducerEpoch,
    /// Its last batches in this epoch, oldest first (at most [`BATCHES_PER_PRODUCER_MAX`]).
    pub batches: VecDeque<BatchMetadata>,
    /// Max timestamp of its latest batch: what expiry measures idleness from.
    pub last_timestamp_ms: i64,
}

impl ProducerEntry {
    fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_sequence)
    }
}

/// One producer of a partition as Kafka's DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    /// The producer id.
    pub producer_id: ProducerId,
    /// The epoch of its latest batch or marker.
    pub epoch: ProducerEpoch,
    /// Sequence of its last record in this epoch (-1 if none since the epoch began).
    pub last_sequence: i32,
    /// Max timestamp of its latest batch.
    pub last_timestamp_ms: i64,
    /// First offset of its open transaction, if one is open here.
    pub txn_start_offset: Option<Offset>,
}

/// The producer fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer id (never negative here).
    pub producer_id: ProducerId,
    /// The producer's epoch.
    pub epoch: ProducerEpoch,
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Idempotent data, transactional data or a control batch.
    pub kind: BatchKind,
}

/// What a batch with a producer id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Data outside a transaction.
    Idempotent,
    /// Data in the producer's transaction.
    Transactional,
    /// A control batch: a transaction marker (`Some`) or another control record Spate does not
    /// interpret (`None`, e.g. KRaft's leader-change records), which only moves the epoch.
    Control(Option<ControlType>),
}

/// An aborted transaction in a partition, as a `read_committed` Fetch lists it: its records
/// are the producer's batches from `first_offset` up to the ABORT marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: ProducerId,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: Offset,
    /// Offset of its ABORT marker.
    pub last_offset: Offset,
}

impl ProducerBatch {
    /// The producer fields of a batch given as its header and the bytes after the header (only
    /// read for a control batch: its first record says COMMIT or ABORT), or `None` for a batch
    /// without a producer id (Kafka's `hasProducerId`: any id above -1).
    pub fn from_batch(header: &BatchHeader, records: &[u8]) -> Option<ProducerBatch> {
        if header.producer_id.0 < 0 {
            return None;
        }
        let kind = if header.is_control() {
            BatchKind::Control(control_type_of_records(header, records))
        } else if header.is_transactional() {
            BatchKind::Transactional
        } else {
            BatchKind::Idempotent
        };
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: increment_sequence(
                header.base_sequence.max(0),
                header.last_offset_delta,
            ),
            kind,
        })
    }
}

/// `sequence + increment` wrapping from `i32::MAX` to 0, as producers number records.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    debug_assert!(increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Whether `next` directly follows `last`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// What to do with a batch that carries a producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// It repeats a batch already appended: do not append, answer with these offsets.
    Duplicate(BatchMetadata),
}

/// Why a producer's batch is refused. The broker maps each to a Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The epoch is older than the one the partition knows (INVALID_PRODUCER_EPOCH).
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer.
        producer_id: ProducerId,
        /// The batch's epoch.
        epoch: ProducerEpoch,
        /// The known epoch.
        current: ProducerEpoch,
    },
    /// The sequence does not continue the producer's last batch, or a new epoch does not start
    /// at 0 (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("producer {producer_id} epoch {epoch}: sequence {sequence} out of order, expected {expected}")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: ProducerId,
        /// The batch's epoch.
        epoch: ProducerEpoch,
        /// The batch's first sequence.
        sequence: i32,
        /// The sequence it should have had.
        expected: i32,
    },
    /// A batch with a producer id but a negative sequence (INVALID_RECORD, as Kafka's
    /// `LogValidator`).
    #[error("invalid sequence number {sequence} in a batch of producer {producer_id}")]
    InvalidSequence {
        /// The producer.
        producer_id: ProducerId,
        /// The batch's first sequence.
        sequence: i32,
    },
    /// The partition already remembers `producers_max` producers; a new one is refused until
    /// idle ones expire.
    #[error("partition already tracks {producers_max} producer ids (producers_per_partition_max)")]
    TooManyProducers {
        /// The bound.
        producers_max: usize,
    },
}

/// The producer state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<ProducerId, ProducerEntry>,
    producers_max: usize,
    expiration_ms: i64,
    /// First offset of each producer's open transaction.
    open_txns: HashMap<ProducerId, Offset>,
    /// The same, ordered by first offset (the earliest bounds the last stable offset).
    open_by_offset: BTreeSet<(Offset, ProducerId)>,
    /// Aborted transactions, by growing marker offset.
    aborted: VecDeque<AbortedTxn>,
}

impl ProducerState {
    /// An empty state.
    ///
    /// # Panics
    /// If `producers_max` is 0 or `expiration_ms` is not positive.
    pub fn new(producers_max: usize, expiration_ms: i64) -> ProducerState {
        assert!(producers_max > 0);
        assert!(expiration_ms > 0);
        ProducerState {
            producers: HashMap::new(),
            producers_max,
            expiration_ms,
            open_txns: HashMap::new(),
            open_by_offset: BTreeSet::new(),
            aborted: VecDeque::new(),
        }
    }

    /// Number of producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// A producer's entry.
    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every remembered producer, by producer id.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(&producer_id, entry)| ActiveProducer {
                producer_id,
                epoch: entry.epoch,
                last_sequence: entry.last_sequence().unwrap_or(-1),
                last_timestamp_ms: entry.last_timestamp_ms,
                txn_start_offset: self.open_txns.get(&producer_id).copied(),
            })
            .collect();
        active.sort_by_key(|p| p.producer_id.0);
        debug_assert!(self
            .open_txns
            .keys()
            .all(|id| self.producers.contains_key(id)));
        active
    }

    /// Decides what to do with `batch` (see the module doc for the rules). Changes nothing.
    ///
    /// # Errors
    /// The [`ProducerError`] the batch is refused with.
    pub fn check(&self, batch: &ProducerBatch) -> Result<Verdict, ProducerError> {
        let producer_id = batch.producer_id;
        let coordinator_written =
            batch.kind == BatchKind::Transactional && batch.first_sequence < 0;
        if matches!(batch.kind, BatchKind::Control(_)) || coordinator_written {
            // Markers carry no sequence, nor do the transactional offset commits a group
            // coordinator writes for a producer (Kafka's `AppendOrigin.COORDINATOR`; clients'
            // batches without a sequence are refused before they reach the log): only an older
            // epoch is refused (a zombie's write after the producer was fenced).
            return match self.producers.get(&producer_id) {
                Some(entry) if batch.epoch < entry.epoch => {
                    Err(ProducerError::InvalidProducerEpoch {
                        producer_id,
                        epoch: batch.epoch,
                        current: entry.epoch,
                    })
                }
                _ => Ok(Verdict::Append),
            };
        }
        if batch.first_sequence < 0 {
            return Err(ProducerError::InvalidSequence {
                producer_id,
                sequence: batch.first_sequence,
            });
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            if self.producers.len() >= self.producers_max {
                return Err(ProducerError::TooManyProducers {
                    producers_max: self.producers_max,
                });
            }
            return Ok(Verdict::Append);
        };
        if batch.epoch == entry.epoch {
            let same = |b: &&BatchMetadata| {
                b.first_sequence == batch.first_sequence && b.last_sequence == batch.last_sequence
            };
            if let Some(original) = entry.batches.iter().find(same) {
                return Ok(Verdict::Duplicate(*original));
            }
        }
        if batch.epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch: batch.epoch,
                current: entry.epoch,
            });
        }
        let out_of_order = |expected| ProducerError::OutOfOrderSequence {
            producer_id,
            epoch: batch.epoch,
            sequence: batch.first_sequence,
            expected,
        };
        if batch.epoch != entry.epoch {
            // A bumped epoch restarts the sequence.
            if batch.first_sequence != 0 && entry.epoch != ProducerEpoch(-1) {
                return Err(out_of_order(0));
            }
            return Ok(Verdict::Append);
        }
        if entry.epoch == ProducerEpoch(-1) {
            // Kafka: no known epoch, any sequence.
            return Ok(Verdict::Append);
        }
        let last = entry.last_sequence().unwrap_or(-1);
        if !in_sequence(last, batch.first_sequence) {
            return Err(out_of_order(increment_sequence(last, 1).max(0)));
        }
        Ok(Verdict::Append)
    }

    /// Remembers a batch that was appended at `[first_offset, last_offset]`.
    ///
    /// # Panics
    /// If the offsets go backwards for this producer (a programmer error: the log assigns
    /// growing offsets).
    pub fn record(
        &mut self,
        batch: &ProducerBatch,
        first_offset: Offset,
        last_offset: Offset,
        max_timestamp_ms: i64,
    ) {
        assert!(first_offset <= last_offset);
        if let BatchKind::Control(marker) = batch.kind {
            self.record_control(batch, marker, last_offset, max_timestamp_ms);
            return;
        }
        if batch.kind == BatchKind::Transactional
            && !self.open_txns.contains_key(&batch.producer_id)
        {
            self.open_txns.insert(batch.producer_id, first_offset);
            self.open_by_offset
                .insert((first_offset, batch.producer_id));
        }
        if batch.first_sequence < 0 {
            // Coordinator-written (see `check`): no sequence to remember, only the epoch.
            self.record_control(batch, None, last_offset, max_timestamp_ms);
            return;
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER_MAX),
                last_timestamp_ms: max_timestamp_ms,
            });
        if entry.epoch != batch.epoch {
            entry.epoch = batch.epoch;
            entry.batches.clear();
        }
        if let Some(prev) = entry.batches.back() {
            assert!(
                prev.last_offset < first_offset,
                "producer offsets only grow"
            );
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            first_offset,
            last_offset,
            max_timestamp_ms,
        });
        entry.last_timestamp_ms = max_timestamp_ms;
    }

    /// A control batch at `offset`: moves the producer's epoch and, for a marker, closes its
    /// open transaction (remembering it if aborted).
    fn record_control(
        &mut self,
        batch: &ProducerBatch,
        marker: Option<ControlType>,
        offset: Offset,
        max_timestamp_ms: i64,
    ) {
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER_MAX),
                last_timestamp_ms: max_timestamp_ms,
            });
        if batch.epoch > entry.epoch {
            // A bumped epoch (the coordinator fenced the producer): the next data batch of the
            // new epoch starts at sequence 0.
            entry.epoch = batch.epoch;
            entry.batches.clear();
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(max_timestamp_ms);
        if marker.is_none() {
            return;
        }
        let Some(first_offset) = self.open_txns.remove(&batch.producer_id) else {
            // No data of this transaction here (or a marker written twice): nothing to close.
            return;
        };
        assert!(
            first_offset < offset,
            "a marker follows its transaction's data"
        );
        self.open_by_offset
            .remove(&(first_offset, batch.producer_id));
        if marker == Some(ControlType::Abort) {
            if let Some(last) = self.aborted.back() {
                assert!(
                    last.last_offset < offset,
                    "markers are appended in offset order"
                );
            }
            self.aborted.push_back(AbortedTxn {
                producer_id: batch.producer_id,
                first_offset,
                last_offset: offset,
            });
        }
    }

    /// The first offset of the earliest open transaction: the last stable offset is at most
    /// this (`None`: no transaction is open).
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.open_by_offset.first().map(|(offset, _)| *offset)
    }

    /// Whether `producer_id` has a transaction open here in `epoch` (Kafka's
    /// `hasOngoingTransaction`): a transactional batch of that producer and epoch then belongs
    /// to it, since its marker (which closes it) is not written yet.
    pub fn in_transaction(&self, producer_id: ProducerId, epoch: ProducerEpoch) -> bool {
        self.open_txns.contains_key(&producer_id)
            && self
                .producers
                .get(&producer_id)
                .is_some_and(|entry| entry.epoch == epoch)
    }

    /// Number of open transactions.
    pub fn open_transactions(&self) -> usize {
        self.open_txns.len()
    }

    /// The aborted transactions a read of `[from, below)` must list (Kafka's
    /// `collectAbortedTxns`: marker at or after `from`, first offset below `below`), oldest
    /// first.
    pub fn aborted_between(&self, from: Offset, below: Offset) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|t| t.last_offset < from);
        self.aborted
            .range(start..)
            .filter(|t| t.first_offset < below)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions whose marker is below `log_start` (retention deleted them).
    pub fn trim_aborted(&mut self, log_start: Offset) {
        while self
            .aborted
            .front()
            .is_some_and(|t| t.last_offset < log_start)
        {
            self.aborted.pop_front();
        }
    }

    /// Forgets the aborted transactions whose ABORT marker sat at one of `markers` (sorted):
    /// the cleaner removed those markers, after every batch of their transactions. An entry
    /// must not outlive its marker: a `read_committed` reader that is handed it skips the
    /// producer's batches from its first offset until it reads that producer's ABORT marker,
    /// which would then be a later, unrelated one, or none.
    pub fn forget_aborted(&mut self, markers: &[Offset]) {
        debug_assert!(markers.is_sorted(), "markers sorted");
        self.aborted
            .retain(|t| markers.binary_search(&t.last_offset).is_err());
    }

    /// For compaction: producers whose current epoch only a marker carries (no data batch of
    /// that epoch is remembered, e.g. the coordinator bumped it when it fenced them). Such a
    /// marker stays in the log as a header without records, as Kafka keeps it, so that a
    /// rebuild from the log alone still knows the epoch and fences older ones.
    pub fn epochs_held_by_markers(&self) -> impl Iterator<Item = (ProducerId, ProducerEpoch)> + '_ {
        self.producers
            .iter()
            .filter(|(_, e)| e.batches.is_empty())
            .map(|(id, e)| (*id, e.epoch))
    }

    /// Recovery: remembers a batch read back from the log (already checked when appended),
    /// given as its header and the bytes after it (see [`ProducerBatch::from_batch`]).
    /// Batches without a producer id are ignored.
    pub fn replay(&mut self, header: &BatchHeader, records: &[u8]) {
        if let Some(batch) = ProducerBatch::from_batch(header, records) {
            if let BatchKind::Control(_) = batch.kind {
                self.record(
                    &batch,
                    header.base_offset,
                    header.last_offset(),
                    header.max_timestamp_ms,
                );
                return;
            }
            if self.producers.get(&batch.producer_id).is_some_and(|e| {
                e.batches
                    .back()
                    .is_some_and(|b| b.last_offset >= header.base_offset)
            }) {
                // Already in the snapshot (a snapshot never covers later batches, but be safe).
                return;
            }
            self.record(
                &batch,
                header.base_offset,
                header.last_offset(),
                header.max_timestamp_ms,
            );
        }
    }

    /// Drops producers idle for `expiration_ms` or more; returns how many.
    pub fn remove_expired(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let expiration_ms = self.expiration_ms;
        let open = &self.open_txns;
        self.producers.retain(|id, e| {
            open.contains_key(id) || now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Forgets every producer (before a rebuild).
    pub fn clear(&mut self) {
        self.producers.clear();
        self.open_txns.clear();
        self.open_by_offset.clear();
        self.aborted.clear();
    }

    /// For compaction: whether the batch ending at `last_offset` is the latest batch of
    /// `producer_id`, which a rewrite must keep so a retry of it is still recognised.
    pub fn is_last_batch_of_producer(&self, producer_id: ProducerId, last_offset: Offset) -> bool {
        self.producers
            .get(&producer_id)
            .and_then(|e| e.batches.back())
            .is_some_and(|b| b.last_offset == last_offset)
    }

    /// For compaction: the last offset of every producer's latest batch, unordered.
    pub fn last_batch_offsets(&self) -> impl Iterator<Item = Offset> + '_ {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.last_offset))
    }

    /// Encodes a snapshot of the state as of `offset` (every batch below it, none at or above):
    /// magic, version, crc32 of what follows it, the offset, then the producers.
    pub fn encode_snapshot(&self, offset: Offset) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER_BYTES
                + self.producers.len()
                    * (SNAPSHOT_PRODUCER_BYTES + BATCHES_PER_PRODUCER_MAX * SNAPSHOT_BATCH_BYTES),
        );
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&offset.0.to_be_bytes());
        let count = u32::try_from(self.producers.len()).expect("producers are bounded");
        out.extend_from_slice(&count.to_be_bytes());
        let mut ids: Vec<&ProducerId> = self.producers.keys().collect();
        ids.sort();
        for id in ids {
            let e = &self.producers[id];
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&e.epoch.0.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                debug_assert!(b.last_offset < offset);
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.first_offset.0.to_be_bytes());
                out.extend_from_slice(&b.last_offset.0.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp_ms.to_be_bytes());
            }
        }
        let open = u32::try_from(self.open_by_offset.len()).expect("open transactions are bounded");
        out.extend_from_slice(&open.to_be_bytes());
        for (first, id) in &self.open_by_offset {
            debug_assert!(*first < offset);
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&first.0.to_be_bytes());
        }
        let aborted = u32::try_from(self.aborted.len()).expect("aborted transactions fit u32");
        out.extend_from_slice(&aborted.to_be_bytes());
        for t in &self.aborted {
            out.extend_from_slice(&t.producer_id.0.to_be_bytes());
            out.extend_from_slice(&t.first_offset.0.to_be_bytes());
            out.extend_from_slice(&t.last_offset.0.to_be_bytes());
        }
        let crc = crc32fast::hash(&out[10..]);
        out[6..10].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Replaces the state with a snapshot's; returns the snapshot's offset. `None` (state
    /// unchanged) if the bytes are not a whole, valid snapshot.
    pub fn load_snapshot(&mut self, bytes: &[u8]) -> Option<Offset> {
        let snapshot = decode_snapshot(bytes)?;
        self.producers = snapshot.producers;
        self.open_by_offset = snapshot.open.iter().map(|(id, o)| (*o, *id)).collect();
        self.open_txns = snapshot.open.into_iter().collect();
        self.aborted = snapshot.aborted;
        Some(snapshot.offset)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
}

struct Snapshot {
    offset: Offset,
    producers: HashMap<ProducerId, ProducerEntry>,
    open: Vec<(ProducerId, Offset)>,
    aborted: VecDeque<AbortedTxn>,
}

fn decode_snapshot(bytes: &[u8]) -> Option<Snapshot> {
    let mut r = Reader(bytes);
    if &r.take::<4>()? != SNAPSHOT_MAGIC {
        return None;
    }
    // Version 1 (before transactions) has no transaction sections.
    let version = u16::from_be_bytes(r.take()?);
    if version != 1 && version != SNAPSHOT_VERSION {
        return None;
    }
    let crc = u32::from_be_bytes(r.take()?);
    if crc32fast::hash(r.0) != crc {
        return None;
    }
    let offset = Offset(r.i64()?);
    let count = u32::from_be_bytes(r.take()?) as usize;
    // Each producer needs at least its fixed part: refuse a count the bytes cannot hold before
    // sizing the map from it.
    if count > r.0.len() / SNAPSHOT_PRODUCER_BYTES {
        return None;
    }
    let mut producers = HashMap::with_capacity(count);
    for _ in 0..count {
        let id = ProducerId(r.i64()?);
        let epoch = ProducerEpoch(i16::from_be_bytes(r.take()?));
        let last_timestamp_ms = r.i64()?;
        let n = usize::from(r.take::<1>()?[0]);
        if n > BATCHES_PER_PRODUCER_MAX {
            return None;
        }
        let mut batches = VecDeque::with_capacity(BATCHES_PER_PRODUCER_MAX);
        for _ in 0..n {
            let b = BatchMetadata {
                first_sequence: r.i32()?,
                last_sequence: r.i32()?,
                first_offset: Offset(r.i64()?),
                last_offset: Offset(r.i64()?),
                max_timestamp_ms: r.i64()?,
            };
            if b.first_offset > b.last_offset || b.last_offset >= offset {
                return None;
            }
            batches.push_back(b);
        }
        let entry = ProducerEntry {
            epoch,
            batches,
            last_timestamp_ms,
        };
        if id.0 < 0 || producers.insert(id, entry).is_some() {
            return None;
        }
    }
    let mut open = Vec::new();
    let mut aborted = VecDeque::new();
    if version >= 2 {
        let count = u32::from_be_bytes(r.take()?) as usize;
        if count > r.0.len() / SNAPSHOT_OPEN_TXN_BYTES {
            return None;
        }
        let mut seen = std::collections::HashSet::with_capacity(count);
        for _ in 0..count {
            let id = ProducerId(r.i64()?);
            let first = Offset(r.i64()?);
            if id.0 < 0 || first >= offset || !seen.insert(id) {
                return None;
            }
            open.push((id, first));
        }
        let count = u32::from_be_bytes(r.take()?) as usize;
        if count > r.0.len() / SNAPSHOT_ABORTED_TXN_BYTES {
            return None;
        }
        aborted.reserve(count);
        for _ in 0..count {
            let t = AbortedTxn {
                producer_id: ProducerId(r.i64()?),
                first_offset: Offset(r.i64()?),
                last_offset: Offset(r.i64()?),
            };
            let ordered = aborted
                .back()
                .is_none_or(|p: &AbortedTxn| p.last_offset < t.last_offset);
            if t.first_offset >= t.last_offset || t.last_offset >= offset || !ordered {
                return None;
            }
            aborted.push_back(t);
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(Snapshot {
        offset,
        producers,
        open,
        aborted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerId = ProducerId(7);

    fn batch(epoch: i16, first: i32, records: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: P,
            epoch: ProducerEpoch(epoch),
            first_sequence: first,
            last_sequence: increment_sequence(first, records - 1),
            kind: BatchKind::Idempotent,
        }
    }

    /// Appends through check + record like the log does; returns the verdict.
    fn send(
        state: &mut ProducerState,
        end: &mut i64,
        b: ProducerBatch,
        records: i64,
    ) -> Result<Verdict, ProducerError> {
        let verdict = state.check(&b)?;
        if verdict == Verdict::Append {
            state.record(&b, Offset(*end), Offset(*end + records - 1), 1000);
            *end += records;
        }
        Ok(verdict)
    }

    fn state() -> ProducerState {
        ProducerState::new(100, 60_000)
    }

    #[test]
    fn a_retry_of_each_of_the_last_five_batches_is_a_duplicate_with_its_offsets() {
        let mut s = state();
        let mut end = 0;
        for i in 0..6 {
            assert_eq!(
                send(&mut s, &mut end, batch(0, i * 3, 3), 3),
                Ok(Verdict::Append)
            );
        }
        assert_eq!(end, 18);
        // Batches 1..=5 (sequences 3..18) are remembered, each with its offsets.
        for i in 1..6 {
            match s.check(&batch(0, i * 3, 3)) {
                Ok(Verdict::Duplicate(m)) => {
                    assert_eq!(m.first_offset, Offset(i64::from(i) * 3));
                    assert_eq!(m.last_offset, Offset(i64::from(i) * 3 + 2));
                    assert_eq!(m.first_sequence, i * 3);
                }
                other => panic!("batch {i}: {other:?}"),
            }
        }
        // The sixth-newest is forgotten: a retry of it is out of order, never appended again.
        assert_eq!(
            s.check(&batch(0, 0, 3)),
            Err(ProducerError::OutOfOrderSequence {
                producer_id: P,
                epoch: ProducerEpoch(0),
                sequence: 0,
                expected: 18
            })
        );
    }

    #[test]
    fn a_gap_is_out_of_order() {
        let mut s = state();
        let mut end = 0;
        send(&mut s, &mut end, batch(0, 0, 2), 2).unwrap();
        let err = s.check(&batch(0, 3, 1)).unwrap_err();
        assert!(matches!(
            err,
            ProducerError::OutOfOrderSequence {
                sequence: 3,
                expected: 2,
                ..
            }
        ));
        // A batch overlapping a remembered one without matching it is out of order too.
        assert!(s.check(&batch(0, 1, 1)).is_err());
        assert_eq!(s.check(&batch(0, 2, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn an_older_epoch_is_invalid() {
        let mut s = state();
        let mut end = 0;
        send(&mut s, &mut end, batch(3, 0, 1), 1).unwrap();
        assert_eq!(
            s.check(&batch(2, 1, 1)),
            Err(ProducerError::InvalidProducerEpoch {
                producer_id: P,
                epoch: ProducerEpoch(2),
                current: ProducerEpoch(3)
            })
        );
    }

    #[test]
    fn a_new_epoch_starts_at_zero_and_forgets_the_old_batches() {
        let mut s = state();
        let mut end = 0;
        send(&mut s, &mut end, batch(0, 0, 5), 5).unwrap();
        assert!(matches!(
            s.check(&batch(1, 5, 1)),
            Err(ProducerError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            send(&mut s, &mut end, batch(1, 0, 1), 1),
            Ok(Verdict::Append)
        );
        let e = s.get(P).unwrap();
        assert_eq!(e.epoch, ProducerEpoch(1));
        assert_eq!(e.batches.len(), 1);
        // The old epoch's batch is now a fenced producer's, not a duplicate.
        assert!(matches!(
            s.check(&batch(0, 0, 5)),
            Err(ProducerError::InvalidProducerEpoch { .. })
        ));
    }

    #[test]
    fn an_unknown_producer_is_accepted_at_any_sequence() {
        let s = state();
        assert_eq!(s.check(&batch(0, 0, 1)), Ok(Verdict::Append));
        assert_eq!(s.check(&batch(4, 1234, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn a_negative_sequence_is_an_invalid_record() {
        assert!(matches!(
            state().check(&batch(0, -1, 1)),
            Err(ProducerError::InvalidSequence { sequence: -1, .. })
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = state();
        let mut end = 0;
        send(&mut s, &mut end, batch(0, i32::MAX - 1, 4), 4).unwrap();
        assert_eq!(s.get(P).unwrap().batches[0].last_sequence, 1);
        assert_eq!(s.check(&batch(0, 2, 1)), Ok(Verdict::Append));
        assert!(matches!(
            s.check(&batch(0, i32::MAX - 1, 4)),
            Ok(Verdict::Duplicate(_))
        ));
        let mut s = state();
        send(&mut s, &mut end, batch(0, i32::MAX, 1), 1).unwrap();
        assert_eq!(s.check(&batch(0, 0, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn idle_producers_expire_and_then_are_unknown() {
        let mut s = ProducerState::new(100, 1000);
        let b = batch(0, 0, 1);
        s.record(&b, Offset(0), Offset(0), 5_000);
        assert_eq!(s.remove_expired(5_999), 0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.remove_expired(6_000), 1);
        assert!(s.is_empty());
        assert_eq!(s.check(&batch(0, 9, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn producers_beyond_the_bound_are_refused() {
        let mut s = ProducerState::new(2, 1000);
        for id in 0..2 {
            let b = ProducerBatch {
                producer_id: ProducerId(id),
                ..batch(0, 0, 1)
            };
            s.record(&b, Offset(id), Offset(id), 0);
        }
        let third = ProducerBatch {
            producer_id: ProducerId(2),
            ..batch(0, 0, 1)
        };
        assert_eq!(
            s.check(&third),
            Err(ProducerError::TooManyProducers { producers_max: 2 })
        );
        // Known producers go on.
        let known = ProducerBatch {
            producer_id: ProducerId(1),
            ..batch(0, 1, 1)
        };
        assert_eq!(s.check(&known), Ok(Verdict::Append));
        s.remove_expired(1000);
        assert_eq!(s.check(&third), Ok(Verdict::Append));
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut s = state();
        let mut end = 0;
        for i in 0..7 {
            send(&mut s, &mut end, batch(2, i, 1), 1).unwrap();
        }
        let other = ProducerBatch {
            producer_id: ProducerId(99),
            ..batch(0, 0, 3)
        };
        s.record(&other, Offset(7), Offset(9), 77);
        let bytes = s.encode_snapshot(Offset(10));
        let mut back = state();
        assert_eq!(back.load_snapshot(&bytes), Some(Offset(10)));
        assert_eq!(back, s);
        assert!(back.is_last_batch_of_producer(ProducerId(99), Offset(9)));
        assert!(back.is_last_batch_of_producer(P, Offset(6)));
        assert!(!back.is_last_batch_of_producer(P, Offset(5)));
        let mut lasts: Vec<Offset> = back.last_batch_offsets().collect();
        lasts.sort();
        assert_eq!(lasts, vec![Offset(6), Offset(9)]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(state().load_snapshot(&bad), None, "flipped byte {i}");
            assert_eq!(state().load_snapshot(&bytes[..i]), None, "cut at {i}");
        }
    }

    fn txn(pid: i64, epoch: i16, kind: BatchKind) -> ProducerBatch {
        ProducerBatch {
            producer_id: ProducerId(pid),
            epoch: ProducerEpoch(epoch),
            first_sequence: if matches!(kind, BatchKind::Control(_)) {
                -1
            } else {
                0
            },
            last_sequence: 0,
            kind,
        }
    }

    #[test]
    fn active_producers_show_the_open_transaction_until_its_marker() {
        let mut s = state();
        s.record(
            &txn(2, 3, BatchKind::Transactional),
            Offset(5),
            Offset(5),
            40,
        );
        s.record(
            &txn(1, 0, BatchKind::Transactional),
            Offset(6),
            Offset(6),
            50,
        );
        let active = s.active_producers();
        assert_eq!(active.len(), 2);
        assert_eq!(active[0].producer_id, ProducerId(1));
        assert_eq!(active[0].txn_start_offset, Some(Offset(6)));
        assert_eq!(active[1].epoch, ProducerEpoch(3));
        assert_eq!(active[1].last_sequence, 0);
        assert_eq!(active[1].last_timestamp_ms, 40);
        assert_eq!(active[1].txn_start_offset, Some(Offset(5)));
        let commit = BatchKind::Control(Some(ControlType::Commit));
        s.record(&txn(2, 3, commit), Offset(7), Offset(7), 60);
        let active = s.active_producers();
        assert_eq!(active[1].txn_start_offset, None);
        assert_eq!(active[1].last_timestamp_ms, 60);
        assert_eq!(active[0].txn_start_offset, Some(Offset(6)));
    }

    #[test]
    fn open_and_aborted_transactions_round_trip_through_a_snapshot() {
        let mut s = state();
        s.record(
            &txn(1, 0, BatchKind::Transactional),
            Offset(0),
            Offset(0),
            1,
        );
        s.record(
            &txn(2, 0, BatchKind::Transactional),
            Offset(1),
            Offset(1),
            1,
        );
        let abort = BatchKind::Control(Some(ControlType::Abort));
        assert_eq!(s.check(&txn(1, 0, abort)), Ok(Verdict::Append));
        s.record(&txn(1, 0, abort), Offset(2), Offset(2), 1);
        assert_eq!(s.first_unstable_offset(), Some(Offset(1)));
        assert_eq!(s.open_transactions(), 1);
        // Producer 2 stays open: it never expires while its transaction is open.
        assert_eq!(s.remove_expired(i64::MAX / 2), 1);
        assert_eq!(s.first_unstable_offset(), Some(Offset(1)));
        let bytes = s.encode_snapshot(Offset(3));
        let mut back = state();
        assert_eq!(back.load_snapshot(&bytes), Some(Offset(3)));
        assert_eq!(back, s);
        // Producer 1 expired; its aborted transaction is still listed.
        let aborted = AbortedTxn {
            producer_id: ProducerId(1),
            first_offset: Offset(0),
            last_offset: Offset(2),
        };
        assert_eq!(back.aborted_between(Offset(0), Offset(3)), vec![aborted]);
        back.trim_aborted(Offset(3));
        assert!(back.aborted_between(Offset(0), Offset(3)).is_empty());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(state().load_snapshot(&bad), None, "flipped byte {i}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_load_as_a_snapshot_or_change_nothing(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut s = state();
            let before = s.clone();
            if s.load_snapshot(&bytes).is_none() {
                proptest::prop_assert_eq!(s, before);
            }
        }

        #[test]
        fn any_state_round_trips_through_a_snapshot(
            producers in proptest::collection::vec((0i64..1000, 0i16..5, 0usize..7), 0..20)
        ) {
            let mut s = state();
            let mut end = 0i64;
            for (id, epoch, batches) in producers {
                for k in 0..batches {
                    let b = ProducerBatch {
                        producer_id: ProducerId(id),
                        epoch: ProducerEpoch(epoch),
                        first_sequence: k as i32,
                        last_sequence: k as i32,
                        kind: BatchKind::Idempotent,
                    };
                    s.record(&b, Offset(end), Offset(end), end);
                    end += 1;
                }
            }
            let bytes = s.encode_snapshot(Offset(end));
            let mut back = state();
            proptest::prop_assert_eq!(back.load_snapshot(&bytes), Some(Offset(end)));
            proptest::prop_assert_eq!(back, s);
        }
    }
}
