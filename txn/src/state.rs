//! The transaction coordinator's state machine: one [`TxnMetadata`] per transactional id and the
//! transitions of Kafka's transaction protocol (clients before KIP-890 part 2, i.e.
//! `transaction.version` 0/1: the epoch is bumped by InitProducerId, by fencing and by the
//! coordinator's own timeout abort, not at every transaction).
//!
//! Every change of a transaction's state is first a [`StateRecord`] the caller appends to the
//! transactional id's `__transaction_state` partition; the change applies only once the caller
//! reports the append with [`TxnCoordinator::appended`], and until then the id is busy (other calls
//! get `CONCURRENT_TRANSACTIONS`, as Kafka's `pendingState`). A decided transaction
//! (`PrepareCommit`/`PrepareAbort`) asks the caller to write markers ([`MarkerWrite`]); once they
//! are in every partition the caller calls [`TxnCoordinator::markers_written`], and the
//! coordinator appends the `Complete*` record. The coordinator is rebuilt from the records
//! ([`TxnCoordinator::load`]); decided transactions found there have their markers written again
//! (markers are idempotent for a partition: a second marker of the same producer and epoch
//! with no data in between changes nothing a reader sees).

use std::collections::{BTreeSet, HashMap};

use spate_wire::types::{ProducerEpoch, ProducerId};

use crate::records::{StateRecord, TxnValue};

/// A topic partition taking part in a transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_owned(),
            partition,
        }
    }
}

/// Kafka's transaction states, with their ids in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// A transaction is open: partitions have been added.
    Ongoing,
    /// Commit decided and durable; markers are being written.
    PrepareCommit,
    /// Abort decided and durable; markers are being written.
    PrepareAbort,
    /// The last transaction committed; every marker is written.
    CompleteCommit,
    /// The last transaction aborted; every marker is written.
    CompleteAbort,
    /// The transactional id expired (Kafka writes a tombstone after it).
    Dead,
    /// Kafka's in-memory state while fencing; never written by Spate, read for compatibility.
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in id order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The id stored in `__transaction_state`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state stored as `id`.
    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name Kafka's admin APIs use (`DescribeTransactions`, `ListTransactions`).
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    /// Its records become visible to `read_committed` readers.
    Commit,
    /// Its records are skipped by `read_committed` readers.
    Abort,
}

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// Producer id in use.
    pub producer_id: ProducerId,
    /// Its current epoch (-1 before the first InitProducerId completes).
    pub producer_epoch: ProducerEpoch,
    /// The epoch before the last bump the producer asked for (-1 if none), so a retried
    /// InitProducerId is answered again instead of fenced (Kafka's `lastProducerEpoch`; not
    /// persisted in value v0, as in Kafka).
    pub last_producer_epoch: ProducerEpoch,
    /// Transaction timeout.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions of the open or deciding transaction.
    pub partitions: BTreeSet<TopicPartition>,
    /// When the open transaction started (-1 if none).
    pub start_ms: i64,
    /// When the state last changed.
    pub last_update_ms: i64,
}

impl TxnMetadata {
    pub(crate) fn to_value(&self) -> TxnValue {
        TxnValue {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
        }
    }

    fn from_value(value: &TxnValue) -> TxnMetadata {
        TxnMetadata {
            producer_id: value.producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: ProducerEpoch(-1),
            timeout_ms: value.timeout_ms,
            state: value.state,
            partitions: value.partitions.clone(),
            start_ms: value.start_ms,
            last_update_ms: value.last_update_ms,
        }
    }

    fn marker_write(&self, transactional_id: &str) -> Option<MarkerWrite> {
        let result = match self.state {
            TxnState::PrepareCommit => TxnResult::Commit,
            TxnState::PrepareAbort => TxnResult::Abort,
            _ => return None,
        };
        Some(MarkerWrite {
            transactional_id: transactional_id.to_owned(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            result,
            partitions: self.partitions.iter().cloned().collect(),
        })
    }
}

/// Why a call is refused; the broker maps each to a Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// Another change of this transactional id is in flight, or its transaction is being
    /// completed: retry (CONCURRENT_TRANSACTIONS).
    #[error("a change of this transactional id is in progress")]
    ConcurrentTransactions,
    /// A newer producer with the same transactional id exists (PRODUCER_FENCED).
    #[error("producer fenced by a newer epoch")]
    ProducerFenced,
    /// The producer id does not belong to the transactional id (INVALID_PRODUCER_ID_MAPPING).
    #[error("producer id does not match the transactional id")]
    InvalidProducerIdMapping,
    /// The call does not fit the transaction's state (INVALID_TXN_STATE).
    #[error("call not valid in transaction state {0:?}")]
    InvalidTxnState(TxnState),
    /// The timeout is not positive or above `transaction.max.timeout.ms`
    /// (INVALID_TRANSACTION_TIMEOUT).
    #[error("transaction timeout {0} ms out of range")]
    InvalidTransactionTimeout(i32),
    /// The empty transactional id (INVALID_REQUEST, as Kafka).
    #[error("empty transactional id")]
    EmptyTransactionalId,
    /// A bound of the coordinator is reached (the broker answers a retriable error).
    #[error("transaction coordinator bound reached: {0}")]
    Bound(&'static str),
    /// The state record could not be appended: the coordinator may have moved or the disk
    /// failed (the broker answers NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE; the client
    /// retries).
    #[error("transaction state could not be written")]
    AppendFailed,
}

/// Limits of a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms` (Kafka's default: 15 minutes).
    pub timeout_max_ms: i32,
    /// Most partitions one transaction may touch.
    pub partitions_per_txn_max: usize,
    /// Most transactional ids one coordinator remembers.
    pub transactional_ids_max: usize,
    /// `transactional.id.expiration.ms` (Kafka's default: 7 days): an id with no transaction
    /// open whose state has not changed for this long is forgotten (a tombstone in its
    /// `__transaction_state` partition), freeing its slot under `transactional_ids_max`.
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            timeout_max_ms: 900_000,
            partitions_per_txn_max: 10_000,
            transactional_ids_max: 100_000,
            id_expiration_ms: 604_800_000,
        }
    }
}

/// The answer to a client call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// InitProducerId succeeded.
    ProducerIdAndEpoch(ProducerId, ProducerEpoch),
    /// AddPartitionsToTxn, AddOffsetsToTxn or EndTxn succeeded.
    Done,
    /// The call is refused.
    Error(TxnError),
}

/// Markers the caller must write: one control batch of `result`, with the producer's id and
/// epoch, in each partition. Then it calls [`TxnCoordinator::markers_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerWrite {
    /// Whose transaction.
    pub transactional_id: String,
    /// The producer id the markers carry.
    pub producer_id: ProducerId,
    /// The epoch the markers carry.
    pub producer_epoch: ProducerEpoch,
    /// Commit or abort.
    pub result: TxnResult,
    /// Every partition of the transaction.
    pub partitions: Vec<TopicPartition>,
}

/// What a call asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer the client now; nothing changed.
    Answer(Answer),
    /// Append this record to the transactional id's `__transaction_state` partition, then call
    /// [`TxnCoordinator::appended`], which gives the answer.
    Append(StateRecord),
    /// InitProducerId needs a fresh producer id: allocate one and call again with it.
    NeedProducerId,
}

/// What follows an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterAppend {
    /// The answer to the client whose call made the record (none for the coordinator's own
    /// records: completions and timeout aborts).
    pub answer: Option<Answer>,
    /// Markers to write now.
    pub markers: Option<MarkerWrite>,
}

/// Why a transition is in flight, which decides the answer once it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// InitProducerId: answer with the new id and epoch.
    Init,
    /// InitProducerId found a transaction open: abort it, answer CONCURRENT_TRANSACTIONS so the
    /// client retries (Kafka's PrepareEpochFence path).
    FenceAbort,
    /// AddPartitionsToTxn / AddOffsetsToTxn / EndTxn: answer Done.
    Client,
    /// The coordinator's own: timeout abort or completion after markers.
    Internal,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Durable state (appended and acknowledged).
    meta: TxnMetadata,
    /// A transition whose record is being appended.
    pending: Option<(TxnMetadata, Purpose)>,
}

/// The coordinator of the transactional ids of one or more `__transaction_state` partitions.
#[derive(Debug, Clone)]
pub struct TxnCoordinator {
    config: TxnConfig,
    txns: HashMap<String, Entry>,
}

fn bump(epoch: ProducerEpoch) -> ProducerEpoch {
    ProducerEpoch(epoch.0 + 1)
}

/// Kafka's `isEpochExhausted`: the last epoch is kept for fencing, so at `i16::MAX - 1` a new
/// producer id is needed.
fn epoch_exhausted(epoch: ProducerEpoch) -> bool {
    epoch.0 >= i16::MAX - 1
}

impl TxnCoordinator {
    /// An empty coordinator.
    ///
    /// # Panics
    /// If a bound of `config` is zero or the maximum timeout is not positive.
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        assert!(config.timeout_max_ms > 0);
        assert!(config.partitions_per_txn_max > 0 && config.transactional_ids_max > 0);
        assert!(config.id_expiration_ms > 0);
        TxnCoordinator {
            config,
            txns: HashMap::new(),
        }
    }

    /// Rebuilds from records read back from `__transaction_state`, oldest first (the last one per
    /// id wins; a tombstone removes it). Returns the markers of decided transactions, which the
    /// caller writes again before calling [`TxnCoordinator::markers_written`].
    pub fn load(&mut self, records: impl IntoIterator<Item = StateRecord>) -> Vec<MarkerWrite> {
        for record in records {
            match record.value {
                Some(value) => {
                    self.txns.insert(
                        record.transactional_id,
                        Entry {
                            meta: TxnMetadata::from_value(&value),
                            pending: None,
                        },
                    );
                }
                None => {
                    self.txns.remove(&record.transactional_id);
                }
            }
        }
        let mut markers: Vec<MarkerWrite> = self
            .txns
            .iter()
            .filter_map(|(id, e)| e.meta.marker_write(id))
            .collect();
        markers.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        markers
    }

    /// Forgets the ids of `partition` of `partitions` (after losing its leadership).
    pub fn unload(&mut self, partition: i32, partitions: i32) {
        self.txns
            .retain(|id, _| crate::records::partition_for(id, partitions) != partition);
    }

    /// The durable state of a transactional id.
    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id).map(|e| &e.meta)
    }

    /// Every transactional id with its durable state, unordered.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TxnMetadata)> {
        self.txns.iter().map(|(id, e)| (id.as_str(), &e.meta))
    }

    /// Number of transactional ids.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether no transactional id is known.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    fn begin(&mut self, id: &str, target: TxnMetadata, purpose: Purpose) -> Step {
        let record = StateRecord {
            transactional_id: id.to_owned(),
            value: Some(target.to_value()),
        };
        let entry = self.txns.get_mut(id).expect("begin on a known id");
        debug_assert!(entry.pending.is_none());
        entry.pending = Some((target, purpose));
        Step::Append(record)
    }

    /// InitProducerId with a transactional id. `expected` is the producer id and epoch a v3+
    /// request carries (KIP-360), `None` when it carries -1. `fresh_producer_id` is a newly
    /// allocated id, passed on the second call after [`Step::NeedProducerId`].
    pub fn init_producer_id(
        &mut self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(ProducerId, ProducerEpoch)>,
        fresh_producer_id: Option<ProducerId>,
        now_ms: i64,
    ) -> Step {
        if id.is_empty() {
            return Step::Answer(Answer::Error(TxnError::EmptyTransactionalId));
        }
        if timeout_ms <= 0 || timeout_ms > self.config.timeout_max_ms {
            return Step::Answer(Answer::Error(TxnError::InvalidTransactionTimeout(
                timeout_ms,
            )));
        }
        if !self.txns.contains_key(id) {
            let Some(pid) = fresh_producer_id else {
                return Step::NeedProducerId;
            };
            if self.txns.len() >= self.config.transactional_ids_max {
                return Step::Answer(Answer::Error(TxnError::Bound("transactional_ids_max")));
            }
            self.txns.insert(
                id.to_owned(),
                Entry {
                    meta: TxnMetadata {
                        producer_id: pid,
                        producer_epoch: ProducerEpoch(-1),
                        last_producer_epoch: ProducerEpoch(-1),
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        start_ms: -1,
                        last_update_ms: now_ms,
                    },
                    pending: None,
                },
            );
        }
        let entry = &self.txns[id];
        if entry.pending.is_some() {
            return Step::Answer(Answer::Error(TxnError::ConcurrentTransactions));
        }
        let meta = &entry.meta;
        if let Some((pid, _)) = expected {
            // Kafka's isValidProducerId: a new id (no epoch yet) or the same producer id.
            if meta.producer_epoch != ProducerEpoch(-1) && pid != meta.producer_id {
                return Step::Answer(Answer::Error(TxnError::ProducerFenced));
            }
        }
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Step::Answer(Answer::Error(TxnError::ConcurrentTransactions))
            }
            TxnState::Ongoing => {
                // Fence the old producer and abort its transaction with the bumped epoch; the
                // client retries and gets a second bump once the abort completes.
                let mut target = meta.clone();
                if !epoch_exhausted(meta.producer_epoch) {
                    target.producer_epoch = bump(meta.producer_epoch);
                }
                target.state = TxnState::PrepareAbort;
                target.last_update_ms = now_ms;
                self.begin(id, target, Purpose::FenceAbort)
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead
            | TxnState::PrepareEpochFence => {
                let mut target = meta.clone();
                let expected_epoch = expected.map(|(_, e)| e);
                if epoch_exhausted(meta.producer_epoch)
                    && expected_epoch.is_none_or(|e| e == meta.producer_epoch)
                {
                    let Some(pid) = fresh_producer_id else {
                        return Step::NeedProducerId;
                    };
                    target.producer_id = pid;
                    target.producer_epoch = ProducerEpoch(0);
                    target.last_producer_epoch = ProducerEpoch(-1);
                } else {
                    match expected_epoch {
                        None => {
                            target.producer_epoch = bump(meta.producer_epoch);
                            target.last_producer_epoch = ProducerEpoch(-1);
                        }
                        Some(e)
                            if meta.producer_epoch == ProducerEpoch(-1)
                                || e == meta.producer_epoch =>
                        {
                            target.producer_epoch = bump(meta.producer_epoch);
                            target.last_producer_epoch = meta.producer_epoch;
                        }
                        Some(e) if e == meta.last_producer_epoch => {
                            // A retry of a bump that succeeded: answer the same epoch again.
                        }
                        Some(_) => return Step::Answer(Answer::Error(TxnError::ProducerFenced)),
                    }
                }
                target.timeout_ms = timeout_ms;
                target.state = TxnState::Empty;
                target.partitions.clear();
                target.start_ms = -1;
                target.last_update_ms = now_ms;
                self.begin(id, target, Purpose::Init)
            }
        }
    }

    /// Checks a call of a producer against the durable state; `Ok` is the metadata.
    fn check_producer(
        &self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
    ) -> Result<&TxnMetadata, TxnError> {
        let entry = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if entry.pending.is_some() {
            return Err(TxnError::ConcurrentTransactions);
        }
        let meta = &entry.meta;
        if meta.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(meta)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets`
    /// partition): adds `partitions` to the producer's transaction, opening it if none is.
    pub fn add_partitions(
        &mut self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Step {
        let meta = match self.check_producer(id, producer_id, epoch) {
            Ok(meta) => meta,
            Err(e) => return Step::Answer(Answer::Error(e)),
        };
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Step::Answer(Answer::Error(TxnError::ConcurrentTransactions))
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                return Step::Answer(Answer::Error(TxnError::InvalidTxnState(meta.state)))
            }
            TxnState::Ongoing if partitions.iter().all(|p| meta.partitions.contains(p)) => {
                return Step::Answer(Answer::Done)
            }
            _ => {}
        }
        let mut target = meta.clone();
        if target.state != TxnState::Ongoing {
            target.partitions.clear();
            target.start_ms = now_ms;
        }
        target.partitions.extend(partitions.iter().cloned());
        if target.partitions.len() > self.config.partitions_per_txn_max {
            return Step::Answer(Answer::Error(TxnError::Bound("partitions_per_txn_max")));
        }
        target.state = TxnState::Ongoing;
        target.last_update_ms = now_ms;
        self.begin(id, target, Purpose::Client)
    }

    /// The producer checks of a verification (KIP-890: a partition leader or the group
    /// coordinator asking whether a producer's data belongs to its transaction), as Kafka's
    /// `handleVerifyPartitionsInTransaction` makes them before looking at partitions: an unknown
    /// id or another producer id is INVALID_PRODUCER_ID_MAPPING, another epoch PRODUCER_FENCED,
    /// a transaction being completed CONCURRENT_TRANSACTIONS.
    ///
    /// # Errors
    /// As above.
    pub fn verify_producer(
        &self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
    ) -> Result<(), TxnError> {
        let entry = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if entry.meta.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if entry.meta.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        // Not refused while another change's record is in flight (Kafka refuses then): the
        // partitions already in the transaction stay in it, and a produce to them while the
        // producer adds others must not fail (Spate's Produce has no retriable answer for it).
        if matches!(
            entry.meta.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(())
    }

    /// Whether `partition` is in the open transaction of `producer_id` at `epoch` (KIP-890's
    /// check before a transactional batch is appended).
    pub fn is_in_transaction(
        &self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partition: &TopicPartition,
    ) -> bool {
        self.txns.get(id).is_some_and(|e| {
            e.meta.producer_id == producer_id
                && e.meta.producer_epoch == epoch
                && e.meta.state == TxnState::Ongoing
                && e.meta.partitions.contains(partition)
        })
    }

    /// EndTxn: commits or aborts the producer's open transaction.
    pub fn end_txn(
        &mut self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        result: TxnResult,
        now_ms: i64,
    ) -> Step {
        let meta = match self.check_producer(id, producer_id, epoch) {
            Ok(meta) => meta,
            Err(e) => return Step::Answer(Answer::Error(e)),
        };
        let step = match (meta.state, result) {
            (TxnState::Ongoing, _) => None,
            // A retry of an EndTxn whose answer was lost.
            (TxnState::CompleteCommit, TxnResult::Commit)
            | (TxnState::CompleteAbort, TxnResult::Abort) => Some(Answer::Done),
            (TxnState::PrepareCommit, TxnResult::Commit)
            | (TxnState::PrepareAbort, TxnResult::Abort) => {
                Some(Answer::Error(TxnError::ConcurrentTransactions))
            }
            (state, _) => Some(Answer::Error(TxnError::InvalidTxnState(state))),
        };
        if let Some(answer) = step {
            return Step::Answer(answer);
        }
        let mut target = meta.clone();
        target.state = match result {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        };
        target.last_update_ms = now_ms;
        self.begin(id, target, Purpose::Client)
    }

    /// Aborts transactions open for longer than their timeout, bumping the epoch so the
    /// producer is fenced (Kafka's `abortTimedOutTransactions`), and expires ids idle for
    /// longer than `id_expiration_ms` (Kafka's `removeExpiredTransactionalIds`: only with no
    /// transaction open or being decided). Each record returned is appended and reported with
    /// [`TxnCoordinator::appended`] like any other; an expiry's is a tombstone, and the id is
    /// forgotten once it is durable.
    pub fn tick(&mut self, now_ms: i64) -> Vec<StateRecord> {
        let mut records = self.abort_timed_out(now_ms);
        records.extend(self.expire_idle(now_ms));
        records
    }

    fn expire_idle(&mut self, now_ms: i64) -> Vec<StateRecord> {
        let expiration_ms = self.config.id_expiration_ms;
        let mut idle: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, e)| {
                e.pending.is_none()
                    && matches!(
                        e.meta.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    )
                    && now_ms.saturating_sub(e.meta.last_update_ms) > expiration_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        idle.sort();
        idle.into_iter()
            .map(|id| {
                let entry = self.txns.get_mut(&id).expect("listed above");
                let mut target = entry.meta.clone();
                target.state = TxnState::Dead;
                target.last_update_ms = now_ms;
                entry.pending = Some((target, Purpose::Internal));
                StateRecord {
                    transactional_id: id,
                    value: None,
                }
            })
            .collect()
    }

    fn abort_timed_out(&mut self, now_ms: i64) -> Vec<StateRecord> {
        let mut expired: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, e)| {
                e.pending.is_none()
                    && e.meta.state == TxnState::Ongoing
                    && now_ms.saturating_sub(e.meta.start_ms) > i64::from(e.meta.timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort();
        let mut records = Vec::with_capacity(expired.len());
        for id in expired {
            let meta = &self.txns[&id].meta;
            let mut target = meta.clone();
            if !epoch_exhausted(meta.producer_epoch) {
                target.producer_epoch = bump(meta.producer_epoch);
            }
            target.state = TxnState::PrepareAbort;
            target.last_update_ms = now_ms;
            if let Step::Append(record) = self.begin(&id, target, Purpose::Internal) {
                records.push(record);
            }
        }
        records
    }

    /// Reports the append of the pending record of `id`: `ok` if it is durable. A failed append
    /// drops the transition (the durable state is unchanged) and answers
    /// [`TxnError::AppendFailed`]; if the transaction is decided, its markers come back to be
    /// written again (a timeout abort that failed is retried by the next tick).
    ///
    /// # Panics
    /// If `id` has no pending transition (a programmer error of the caller).
    pub fn appended(&mut self, id: &str, ok: bool) -> AfterAppend {
        let entry = self.txns.get_mut(id).expect("appended for a known id");
        let (target, purpose) = entry
            .pending
            .take()
            .expect("appended with a pending record");
        if !ok {
            // A new id whose first record failed is forgotten again.
            if entry.meta.producer_epoch == ProducerEpoch(-1) && entry.meta.state == TxnState::Empty
            {
                self.txns.remove(id);
            }
            let answer =
                (purpose != Purpose::Internal).then_some(Answer::Error(TxnError::AppendFailed));
            // A decided transaction whose completion could not be written must not be left
            // waiting: its markers are asked for again (writing them twice is harmless), and
            // their report retries the completion.
            let markers = self.txns.get(id).and_then(|e| e.meta.marker_write(id));
            return AfterAppend { answer, markers };
        }
        if target.state == TxnState::Dead {
            // The tombstone is durable: the id is gone, as after a load that reads it.
            self.txns.remove(id);
            return AfterAppend {
                answer: None,
                markers: None,
            };
        }
        assert!(
            target.producer_id != entry.meta.producer_id
                || target.producer_epoch >= entry.meta.producer_epoch,
            "epochs of a producer id only grow"
        );
        entry.meta = target;
        let markers = entry.meta.marker_write(id);
        let answer = match purpose {
            Purpose::Init => Some(Answer::ProducerIdAndEpoch(
                entry.meta.producer_id,
                entry.meta.producer_epoch,
            )),
            Purpose::FenceAbort => Some(Answer::Error(TxnError::ConcurrentTransactions)),
            Purpose::Client => Some(Answer::Done),
            Purpose::Internal => None,
        };
        AfterAppend { answer, markers }
    }

    /// Reports that every marker of `write` is in its partition: returns the `Complete*`
    /// record to append (then [`TxnCoordinator::appended`]), or `None` if the transaction has
    /// moved on (a duplicate report) or another change of it is in flight (the caller retries
    /// later).
    pub fn markers_written(&mut self, write: &MarkerWrite, now_ms: i64) -> Option<StateRecord> {
        let id = write.transactional_id.as_str();
        let entry = self.txns.get(id)?;
        if entry.pending.is_some() {
            return None;
        }
        let meta = &entry.meta;
        if meta.marker_write(id).as_ref() != Some(write) {
            return None;
        }
        let mut target = meta.clone();
        target.state = match write.result {
            TxnResult::Commit => TxnState::CompleteCommit,
            TxnResult::Abort => TxnState::CompleteAbort,
        };
        target.partitions.clear();
        target.start_ms = -1;
        target.last_update_ms = now_ms;
        match self.begin(id, target, Purpose::Internal) {
            Step::Append(record) => Some(record),
            _ => None,
        }
    }

    /// Whether `id` has a transition in flight.
    pub fn is_pending(&self, id: &str) -> bool {
        self.txns.get(id).is_some_and(|e| e.pending.is_some())
    }
}
