//! Transactions on one broker: the shell around `spate_txn`'s sans-I/O coordinator.
//!
//! A transactional id is coordinated by the core owning its `__transaction_state` partition
//! (`spate_txn::records::partition_for`, Kafka's `abs(hashCode) % 50`), as a group is by the
//! owner of its `__consumer_offsets` partition. Calls are plain data ([`TxnCall`]) run there
//! ([`run`]): the coordinator's step is applied, its record appended to the partition and made
//! durable, and only then is the transition applied and the client answered. Markers of decided
//! transactions are queued and written by the core's [`txn_loop`] to each partition's owning
//! core (`CoreRequest::WriteTxnMarker`, appended with the producer's id and epoch and made
//! durable); once all are written the `Complete*` record is appended. The same loop aborts
//! transactions past their timeout. At startup each core rebuilds its coordinator from its
//! `__transaction_state` partitions before clients are accepted, and queues the markers of
//! transactions that were decided but not completed.
//!
//! Deliberately absent: cluster mode (the APIs are not advertised there and a transactional
//! FindCoordinator or InitProducerId is refused, see `handlers/find_coordinator.rs`),
//! transactional-id expiry.
//!
//! The admin APIs read the coordinators without changing them: ListTransactions sends
//! [`TxnCall::List`] to every core, DescribeTransactions [`TxnCall::Describe`] to the id's
//! coordinating core ([`describe`], which never creates `__transaction_state`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use spate_storage::{ReadChunk, ReadUpTo};
use spate_txn::admin::{ListFilter, ListedTxn};
use spate_txn::records::{partition_for, StateRecord};
use spate_txn::state::{
    Answer, MarkerWrite, Step, TopicPartition, TxnConfig, TxnCoordinator, TxnMetadata, TxnResult,
};
use spate_wire::batch::{batches, put_txn_marker, BatchBuilder, BatchSpec, ControlType};
use spate_wire::records::batch_records;
use spate_wire::types::{ProducerEpoch, ProducerId};
use spate_wire::ErrorCode;
use tracing::{info, warn};

use crate::core::{now_ms, Core, Partition, CONTROLLER_CORE};
use crate::ops::{CoreReply, CoreRequest};
use crate::routing::Route;

/// The internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Its partitions (Kafka's `transaction.state.log.num.partitions` default).
pub const TXN_PARTITIONS: i32 = 50;
/// How often the loop writes queued markers.
const MARKER_INTERVAL: Duration = Duration::from_millis(10);
/// How often the loop looks for timed-out transactions (Kafka: every 10 s).
const TIMEOUT_CHECK_INTERVAL_MS: i64 = 1_000;
/// Bytes read per step while loading.
const LOAD_READ_BYTES: u64 = 1 << 20;
/// Most decompressed bytes of one loaded batch.
const LOAD_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;
/// Most marker writes queued per core; beyond it the coordinator's transitions still happen,
/// the writes wait in the coordinator (re-found by the timeout pass is not needed: each decided
/// transaction's write is queued exactly once, so the bound is the number of transactions
/// deciding at once, which the coordinator itself bounds by `transactional_ids_max`).
const QUEUED_MARKERS_MAX: usize = 100_000;

/// A call for the core coordinating a transactional id.
#[derive(Debug, Clone)]
pub enum TxnCall {
    /// InitProducerId with a transactional id.
    Init {
        id: String,
        timeout_ms: i32,
        expected: Option<(ProducerId, ProducerEpoch)>,
    },
    /// AddPartitionsToTxn (or AddOffsetsToTxn with the group's offsets partition).
    Add {
        id: String,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: Vec<(String, i32)>,
    },
    /// EndTxn.
    End {
        id: String,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        commit: bool,
    },
    /// Produce's KIP-890 check: which of these partitions are in the producer's transaction.
    Verify {
        id: String,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: Vec<(String, i32)>,
    },
    /// ListTransactions: this core's transactional ids that pass the filter.
    List(ListFilter),
    /// DescribeTransactions: the durable state of one id.
    Describe { id: String },
}

/// The answer to a [`TxnCall`].
#[derive(Debug, Clone)]
pub enum TxnAnswer {
    Answer(Answer),
    Verified(Vec<bool>),
    Listed(Vec<ListedTxn>),
    /// `None`: the id is not known here.
    Described(Option<Box<TxnMetadata>>),
    /// The call could not run (no coordinator here, a failed append).
    Failed(ErrorCode),
}

/// A marker to append to one partition (run on its owning core).
#[derive(Debug, Clone)]
pub struct MarkerOp {
    pub topic: String,
    pub partition: i32,
    pub producer_id: ProducerId,
    pub epoch: ProducerEpoch,
    pub commit: bool,
}

/// One core's transaction coordinator and its queue of marker writes.
#[derive(Debug)]
pub struct TxnShell {
    coordinator: RefCell<TxnCoordinator>,
    markers: RefCell<Vec<MarkerWrite>>,
}

impl Default for TxnShell {
    fn default() -> TxnShell {
        TxnShell {
            coordinator: RefCell::new(TxnCoordinator::new(TxnConfig::default())),
            markers: RefCell::new(Vec::new()),
        }
    }
}

impl TxnShell {
    fn queue(&self, write: MarkerWrite) {
        let mut markers = self.markers.borrow_mut();
        if markers.len() >= QUEUED_MARKERS_MAX {
            // A programmer error rather than load: see the constant.
            warn!(
                queued = markers.len(),
                "marker queue full; the write waits for a retry"
            );
        }
        markers.push(write);
    }

    /// Rebuilds the coordinator from this core's `__transaction_state` partitions.
    ///
    /// # Errors
    /// If a partition cannot be read.
    pub async fn load(&self, core: &Core) -> anyhow::Result<()> {
        let Some(meta) = core.topic(TXN_TOPIC) else {
            return Ok(());
        };
        let mut records = Vec::new();
        for index in 0..meta.partitions {
            if let Some(partition) = core.partition(TXN_TOPIC, index) {
                load_partition(&partition, &mut records).await?;
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len();
        let markers = self.coordinator.borrow_mut().load(records);
        let ids = self.coordinator.borrow().len();
        info!(
            core = core.id,
            records = count,
            transactional_ids = ids,
            resumed = markers.len(),
            "transaction state loaded"
        );
        for write in markers {
            self.queue(write);
        }
        Ok(())
    }
}

async fn load_partition(partition: &Partition, out: &mut Vec<StateRecord>) -> anyhow::Result<()> {
    let log = &partition.log;
    let end = log.log_end_offset();
    let mut next = log.log_start_offset();
    let mut scratch = Vec::new();
    while next < end {
        let read = log.read(next, LOAD_READ_BYTES, ReadUpTo::LogEnd).await?;
        if read.chunks.is_empty() {
            break;
        }
        for chunk in read.chunks {
            let bytes = match chunk {
                ReadChunk::Memory(batch) => batch.to_bytes(),
                ReadChunk::File(range) => range.load().await?,
            };
            for item in batches(&bytes) {
                let (header, batch) = item?;
                next = header.last_offset().next();
                if header.is_control() {
                    continue;
                }
                let (_, records) = batch_records(batch, &mut scratch, LOAD_DECOMPRESSED_BYTES_MAX)?;
                for record in records {
                    let record = record?;
                    let Some(key) = record.key else { continue };
                    match StateRecord::decode(key, record.value) {
                        Ok(r) => out.push(r),
                        Err(e) => warn!(error = %e, "skipping unreadable transaction record"),
                    }
                }
            }
        }
        next = next.max(read.next_offset);
    }
    Ok(())
}

/// The core coordinating `id`, `None` when its partition is not on this broker.
pub fn coordinator_core(core: &Core, id: &str) -> Option<usize> {
    let partitions = core
        .topic(TXN_TOPIC)
        .map_or(TXN_PARTITIONS, |t| t.partitions);
    match core.route(TXN_TOPIC, partition_for(id, partitions)) {
        Route::ThisCore => Some(core.id),
        Route::OtherCore(owner) => Some(owner),
        Route::OtherBroker(_) | Route::NoLeader | Route::NotHere => None,
    }
}

/// Creates `__transaction_state` on first use, as Kafka does (a broker that never sees a
/// transactional producer never has it); an error code if it is not there now.
pub async fn ensure_topic(core: &Core) -> Result<(), ErrorCode> {
    if core.topic(TXN_TOPIC).is_some() {
        return Ok(());
    }
    let created = crate::handlers::create_assigned_via_controller(
        core,
        vec![crate::ops::NewTopic {
            meta: txn_topic_meta(&core.config),
            assignment: None,
            replication_factor: 1,
        }],
    )
    .await;
    match created.first().map(|(e, _)| *e) {
        Some(ErrorCode::None | ErrorCode::TopicAlreadyExists) => {
            info!(
                core = core.id,
                partitions = TXN_PARTITIONS,
                "created __transaction_state"
            );
            Ok(())
        }
        other => {
            // No field when the controller gave no answer at all.
            warn!(
                core = core.id,
                error = other.map(tracing::field::display),
                "cannot create __transaction_state"
            );
            Err(ErrorCode::CoordinatorNotAvailable)
        }
    }
}

/// Runs `call` on the core coordinating its id.
pub async fn call(core: &Core, id: &str, call: TxnCall) -> TxnAnswer {
    if let Err(error) = ensure_topic(core).await {
        return TxnAnswer::Failed(error);
    }
    let Some(to) = coordinator_core(core, id) else {
        return TxnAnswer::Failed(ErrorCode::CoordinatorNotAvailable);
    };
    match core.call(to, CoreRequest::Txn(Box::new(call))).await {
        Some(CoreReply::Txn(answer)) => *answer,
        _ => TxnAnswer::Failed(ErrorCode::CoordinatorNotAvailable),
    }
}

/// The durable state of `id` from its coordinating core, or the error Kafka answers in
/// DescribeTransactions: TRANSACTIONAL_ID_NOT_FOUND for an id no coordinator here knows (or
/// when no transaction was ever coordinated: `__transaction_state` does not exist, and is not
/// created by a describe), NOT_COORDINATOR when another broker coordinates it,
/// COORDINATOR_NOT_AVAILABLE when no one does or the core cannot be reached.
pub async fn describe(core: &Core, id: &str) -> Result<TxnMetadata, ErrorCode> {
    let Some(meta) = core.topic(TXN_TOPIC) else {
        return Err(ErrorCode::TransactionalIdNotFound);
    };
    let to = match core.route(TXN_TOPIC, partition_for(id, meta.partitions)) {
        Route::ThisCore => core.id,
        Route::OtherCore(owner) => owner,
        Route::OtherBroker(_) => return Err(ErrorCode::NotCoordinator),
        Route::NoLeader | Route::NotHere => return Err(ErrorCode::CoordinatorNotAvailable),
    };
    let call = TxnCall::Describe { id: id.to_owned() };
    match core.call(to, CoreRequest::Txn(Box::new(call))).await {
        Some(CoreReply::Txn(answer)) => match *answer {
            TxnAnswer::Described(Some(meta)) => Ok(*meta),
            TxnAnswer::Described(None) => Err(ErrorCode::TransactionalIdNotFound),
            _ => Err(ErrorCode::CoordinatorNotAvailable),
        },
        _ => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// The transactional ids of every core's coordinator that pass `filter`, sorted by id;
/// COORDINATOR_NOT_AVAILABLE if a core could not be asked.
pub async fn list(core: &Core, filter: ListFilter) -> Result<Vec<ListedTxn>, ErrorCode> {
    let replies = core
        .broadcast(|| CoreRequest::Txn(Box::new(TxnCall::List(filter.clone()))))
        .await;
    let mut listed = Vec::new();
    for reply in replies {
        match reply {
            Some(CoreReply::Txn(answer)) => match *answer {
                TxnAnswer::Listed(some) => listed.extend(some),
                _ => return Err(ErrorCode::CoordinatorNotAvailable),
            },
            _ => return Err(ErrorCode::CoordinatorNotAvailable),
        }
    }
    listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    Ok(listed)
}

fn partitions_of(list: &[(String, i32)]) -> Vec<TopicPartition> {
    list.iter()
        .map(|(t, p)| TopicPartition::new(t, *p))
        .collect()
}

/// Executes `call` on this (the coordinating) core.
pub async fn run(core: &Core, call: TxnCall) -> TxnAnswer {
    let shell = &core.txns;
    let now = now_ms();
    let (id, step) = match call {
        TxnCall::Init {
            id,
            timeout_ms,
            expected,
        } => {
            let mut step = shell
                .coordinator
                .borrow_mut()
                .init_producer_id(&id, timeout_ms, expected, None, now);
            if step == Step::NeedProducerId {
                let fresh = match core
                    .call(CONTROLLER_CORE, CoreRequest::AllocateProducerId)
                    .await
                {
                    Some(CoreReply::ProducerId(Ok(pid))) => ProducerId(pid),
                    Some(CoreReply::ProducerId(Err(message))) => {
                        warn!(core = core.id, %message, "producer id allocation failed");
                        return TxnAnswer::Failed(ErrorCode::KafkaStorageError);
                    }
                    _ => return TxnAnswer::Failed(ErrorCode::CoordinatorNotAvailable),
                };
                step = shell.coordinator.borrow_mut().init_producer_id(
                    &id,
                    timeout_ms,
                    expected,
                    Some(fresh),
                    now_ms(),
                );
            }
            (id, step)
        }
        TxnCall::Add {
            id,
            producer_id,
            epoch,
            partitions,
        } => {
            let step = shell.coordinator.borrow_mut().add_partitions(
                &id,
                producer_id,
                epoch,
                &partitions_of(&partitions),
                now,
            );
            (id, step)
        }
        TxnCall::End {
            id,
            producer_id,
            epoch,
            commit,
        } => {
            let result = if commit {
                TxnResult::Commit
            } else {
                TxnResult::Abort
            };
            let step = shell
                .coordinator
                .borrow_mut()
                .end_txn(&id, producer_id, epoch, result, now);
            (id, step)
        }
        TxnCall::Verify {
            id,
            producer_id,
            epoch,
            partitions,
        } => {
            let c = shell.coordinator.borrow();
            if let Err(e) = c.verify_producer(&id, producer_id, epoch) {
                return TxnAnswer::Answer(Answer::Error(e));
            }
            let verified = partitions_of(&partitions)
                .iter()
                .map(|tp| c.is_in_transaction(&id, producer_id, epoch, tp))
                .collect();
            return TxnAnswer::Verified(verified);
        }
        TxnCall::List(filter) => {
            return TxnAnswer::Listed(shell.coordinator.borrow().list(&filter, now));
        }
        TxnCall::Describe { id } => {
            let meta = shell.coordinator.borrow().get(&id).cloned().map(Box::new);
            return TxnAnswer::Described(meta);
        }
    };
    match step {
        Step::Answer(answer) => TxnAnswer::Answer(answer),
        Step::NeedProducerId => TxnAnswer::Failed(ErrorCode::CoordinatorNotAvailable),
        Step::Append(record) => {
            let ok = append_record(core, &record).await;
            let after = shell.coordinator.borrow_mut().appended(&id, ok);
            if let Some(write) = after.markers {
                shell.queue(write);
            }
            match after.answer {
                Some(answer) => TxnAnswer::Answer(answer),
                None => TxnAnswer::Failed(ErrorCode::CoordinatorNotAvailable),
            }
        }
    }
}

/// Appends one state record to its `__transaction_state` partition and waits until it is
/// durable; whether it is.
async fn append_record(core: &Core, record: &StateRecord) -> bool {
    let partitions = core
        .topic(TXN_TOPIC)
        .map_or(TXN_PARTITIONS, |t| t.partitions);
    let index = partition_for(&record.transactional_id, partitions);
    let Some(partition) = core.partition(TXN_TOPIC, index) else {
        warn!(
            core = core.id,
            partition = index,
            "transaction state partition not on this core"
        );
        return false;
    };
    let now = now_ms();
    let key = record.encode_key();
    let value = record.encode_value();
    let mut batch = BytesMut::new();
    let mut builder = BatchBuilder::new(
        &mut batch,
        BatchSpec {
            first_timestamp_ms: now,
            ..BatchSpec::default()
        },
    );
    builder.push(now, Some(&key), value.as_deref(), &[]);
    builder.finish();
    crate::group::coordinator::append_durably(partition, batch)
        .await
        .is_ok()
}

/// Appends a marker to a partition this core owns and waits until it is durable. A partition
/// that no longer exists (its topic was deleted) counts as written.
pub async fn write_marker(core: &Core, op: MarkerOp) -> Result<(), ErrorCode> {
    let Some(partition) = core.partition(&op.topic, op.partition) else {
        return Ok(());
    };
    let control = if op.commit {
        ControlType::Commit
    } else {
        ControlType::Abort
    };
    let mut batch = BytesMut::new();
    put_txn_marker(&mut batch, op.producer_id, op.epoch, 0, control, now_ms());
    let result = crate::group::coordinator::append_durably(partition, batch).await;
    if let Err(error) = result {
        warn!(core = core.id, topic = %op.topic, partition = op.partition, ?error, "writing a transaction marker");
        return Err(error);
    }
    if op.topic == crate::group::OFFSETS_TOPIC {
        // The group coordinator of this offsets partition runs on this core (its owner).
        core.groups
            .complete_txn_offsets(op.partition, op.producer_id, op.commit);
    }
    Ok(())
}

/// Writes every marker of `write` on the partitions' owning cores; whether all were written.
async fn write_markers(core: &Core, write: &MarkerWrite) -> bool {
    let commit = write.result == TxnResult::Commit;
    let calls = write.partitions.iter().map(|tp| {
        let op = MarkerOp {
            topic: tp.topic.clone(),
            partition: tp.partition,
            producer_id: write.producer_id,
            epoch: write.producer_epoch,
            commit,
        };
        async move {
            let owner = match core.route(&op.topic, op.partition) {
                Route::ThisCore => core.id,
                Route::OtherCore(owner) => owner,
                // Deleted since it was added: nothing to mark.
                Route::NotHere => return true,
                Route::OtherBroker(_) | Route::NoLeader => return false,
            };
            matches!(
                core.call(owner, CoreRequest::WriteTxnMarker(op)).await,
                Some(CoreReply::Marker(Ok(())))
            )
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// Writes queued markers, completes their transactions, and aborts timed-out ones, until
/// shutdown.
pub async fn txn_loop(core: Rc<Core>, shutdown: std::sync::Arc<crate::runtime::ShutdownFlag>) {
    let mut last_timeout_check = 0i64;
    while !shutdown.is_triggered() {
        glommio::timer::sleep(MARKER_INTERVAL).await;
        let now = now_ms();
        if now - last_timeout_check >= TIMEOUT_CHECK_INTERVAL_MS {
            last_timeout_check = now;
            let expired = core.txns.coordinator.borrow_mut().tick(now);
            for record in expired {
                let id = record.transactional_id.clone();
                info!(core = core.id, transactional_id = %id, "aborting a transaction past its timeout");
                let ok = append_record(&core, &record).await;
                let after = core.txns.coordinator.borrow_mut().appended(&id, ok);
                if let Some(write) = after.markers {
                    core.txns.queue(write);
                }
            }
        }
        let queued: Vec<MarkerWrite> = core.txns.markers.borrow_mut().drain(..).collect();
        for write in queued {
            if !write_markers(&core, &write).await {
                // Retried at the next pass (the partition's core or disk is back by then).
                core.txns.queue(write);
                continue;
            }
            let record = core
                .txns
                .coordinator
                .borrow_mut()
                .markers_written(&write, now_ms());
            let Some(record) = record else { continue };
            let ok = append_record(&core, &record).await;
            let after = core
                .txns
                .coordinator
                .borrow_mut()
                .appended(&write.transactional_id, ok);
            if let Some(write) = after.markers {
                core.txns.queue(write);
            }
        }
    }
}

/// The `__transaction_state` topic as created at first start: compacted, never deleted by
/// time or size, small preallocated segments (as `__consumer_offsets`).
pub fn txn_topic_meta(config: &crate::config::Config) -> crate::metadata::topics::TopicMeta {
    let mut meta = crate::group::offsets_topic_meta(config);
    meta.name = TXN_TOPIC.to_owned();
    meta.partitions = TXN_PARTITIONS;
    meta
}
