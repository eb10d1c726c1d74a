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
//! In a cluster `__transaction_state` is replicated (`transaction.state.log.replication.factor`,
//! 3 where three brokers exist) and a partition's transactional ids are coordinated by its
//! leader: the state is loaded from the partition's log when this broker becomes its leader
//! ([`TxnShell::load_partition`], from `cluster::replication::apply_states`) and forgotten when
//! it stops ([`TxnShell::unload_partition`]); until loaded its ids are answered
//! COORDINATOR_LOAD_IN_PROGRESS. State records are appended as acks=all writes. Markers for
//! partitions led elsewhere go to their leaders over the cluster listener
//! (`cluster::txn_rpc`), and a partition leader verifies transactional batches (KIP-890) with a
//! coordinator on another broker the same way.
//!
//! Ids idle for `--transactional-id-expiration-ms` are expired by [`txn_loop`]'s tick (a
//! tombstone, as Kafka writes).
//!
//! Deliberately absent: coordinator epochs in markers (Kafka fences a
//! deposed coordinator's late markers with them; here a deposed coordinator's marker write can
//! only repeat a decision the new one also writes, since both read it from the same log).
//!
//! The admin APIs read the coordinators without changing them: ListTransactions sends
//! [`TxnCall::List`] to every core, DescribeTransactions [`TxnCall::Describe`] to the id's
//! coordinating core ([`describe`], which never creates `__transaction_state`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use spate_storage::{ReadChunk, ReadUpTo};
use spate_txn::admin::{ListFilter, ListedTxn};
use spate_txn::records::{partition_for, StateRecord};
use spate_txn::state::{
    AfterAppend, Answer, MarkerWrite, Step, TopicPartition, TxnConfig, TxnCoordinator, TxnError,
    TxnMetadata, TxnResult,
};
use spate_wire::batch::{batches, put_txn_marker, BatchBuilder, BatchSpec, ControlType};
use spate_wire::cluster::{
    TxnMarker, TxnMarkerResult, TxnMarkersRequest, TxnMarkersResponse, TxnVerifyRequest,
    TxnVerifyResponse, TXN_MARKERS_MAX,
};
use spate_wire::records::batch_records;
use spate_wire::types::{
    LeaderEpoch as WireLeaderEpoch, PartitionIndex, ProducerEpoch, ProducerId,
};
use spate_wire::ErrorCode;
use tracing::{debug, info, warn};

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
    /// Cluster mode: the `__transaction_state` partitions whose ids are loaded on this core
    /// (this broker leads them). A single broker loads all of its own at startup.
    loaded: RefCell<BTreeSet<i32>>,
    /// Per partition, bumped each time its ids are forgotten: an append or a load that began
    /// before does not touch the coordinator after (its entries are gone, or newer).
    generations: RefCell<HashMap<i32, u64>>,
}

impl TxnShell {
    /// The coordinators of a core, with the broker's transaction settings.
    pub fn new(config: TxnConfig) -> TxnShell {
        TxnShell {
            coordinator: RefCell::new(TxnCoordinator::new(config)),
            markers: RefCell::new(Vec::new()),
            loaded: RefCell::new(BTreeSet::new()),
            generations: RefCell::new(HashMap::new()),
        }
    }

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

    fn generation(&self, partition: i32) -> u64 {
        self.generations
            .borrow()
            .get(&partition)
            .copied()
            .unwrap_or(0)
    }

    /// Cluster mode: loads the ids of `__transaction_state` partition `index`, which this
    /// broker now leads, from its log, and queues the markers of its decided transactions.
    ///
    /// # Errors
    /// If the partition cannot be read; its ids stay unloaded (COORDINATOR_LOAD_IN_PROGRESS)
    /// until the next leadership change.
    pub async fn load_partition(&self, core: &Core, index: i32) -> anyhow::Result<()> {
        let Some(partition) = core.partition(TXN_TOPIC, index) else {
            return Ok(());
        };
        let generation = self.generation(index);
        let mut records = Vec::new();
        load_partition(&partition, &mut records).await?;
        if self.generation(index) != generation {
            // Led no more by the time it was read.
            return Ok(());
        }
        let partitions = txn_partitions(core);
        let count = records.len();
        let markers = self.coordinator.borrow_mut().load(records);
        let mut resumed = 0usize;
        // `load` returns the decided transactions of every loaded partition: only this one's
        // are new here.
        for write in markers {
            if partition_for(&write.transactional_id, partitions) == index {
                resumed += 1;
                self.queue(write);
            }
        }
        self.loaded.borrow_mut().insert(index);
        if count > 0 {
            info!(
                core = core.id,
                partition = index,
                records = count,
                resumed,
                "transaction state partition loaded; coordinating its ids"
            );
        } else {
            debug!(
                core = core.id,
                partition = index,
                "empty transaction state partition led here"
            );
        }
        Ok(())
    }

    /// Cluster mode: forgets the ids of `__transaction_state` partition `index` (this broker no
    /// longer leads it) and their queued marker writes; the new leader loads them from its log.
    pub fn unload_partition(&self, index: i32, partitions: i32) {
        *self.generations.borrow_mut().entry(index).or_default() += 1;
        self.loaded.borrow_mut().remove(&index);
        self.coordinator.borrow_mut().unload(index, partitions);
        self.markers
            .borrow_mut()
            .retain(|w| partition_for(&w.transactional_id, partitions) != index);
    }

    /// Whether the ids of `partition` can be served on this core now.
    fn serves(&self, core: &Core, partition: i32) -> bool {
        core.config.cluster.is_none() || self.loaded.borrow().contains(&partition)
    }

    /// Applies the outcome of an append begun in `generation` of the id's partition, unless
    /// the partition was unloaded since (then `None`: the id is not coordinated here now).
    fn appended(&self, core: &Core, id: &str, generation: u64, ok: bool) -> Option<AfterAppend> {
        let partition = partition_for(id, txn_partitions(core));
        if self.generation(partition) != generation || !self.coordinator.borrow().is_pending(id) {
            return None;
        }
        let after = self.coordinator.borrow_mut().appended(id, ok);
        if let Some(write) = &after.markers {
            self.queue(write.clone());
        }
        Some(after)
    }
}

/// The partitions of `__transaction_state`, as created (or as it will be).
fn txn_partitions(core: &Core) -> i32 {
    core.topic(TXN_TOPIC)
        .map_or(TXN_PARTITIONS, |t| t.partitions)
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
            replication_factor: crate::group::internal_topic_replication_factor(core),
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

/// The core of this broker coordinating `id` (of `partitions` state partitions), or the error
/// a client gets: NOT_COORDINATOR when another broker leads its partition (the client asked the
/// wrong broker, or the leadership moved: it finds the new one), COORDINATOR_NOT_AVAILABLE when
/// no one does.
fn coordinating_core(core: &Core, id: &str, partitions: i32) -> Result<usize, ErrorCode> {
    match core.route(TXN_TOPIC, partition_for(id, partitions)) {
        Route::ThisCore => Ok(core.id),
        Route::OtherCore(owner) => Ok(owner),
        Route::OtherBroker(_) => Err(ErrorCode::NotCoordinator),
        Route::NoLeader | Route::NotHere => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// Runs `call` on the core coordinating its id.
pub async fn call(core: &Core, id: &str, call: TxnCall) -> TxnAnswer {
    if let Err(error) = ensure_topic(core).await {
        return TxnAnswer::Failed(error);
    }
    let to = match coordinating_core(core, id, txn_partitions(core)) {
        Ok(to) => to,
        Err(error) => return TxnAnswer::Failed(error),
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
    let to = coordinating_core(core, id, meta.partitions)?;
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
    let id_partition = match &call {
        TxnCall::Init { id, .. }
        | TxnCall::Add { id, .. }
        | TxnCall::End { id, .. }
        | TxnCall::Verify { id, .. }
        | TxnCall::Describe { id } => Some(partition_for(id, txn_partitions(core))),
        TxnCall::List(_) => None,
    };
    if let Some(partition) = id_partition {
        if !shell.serves(core, partition) {
            // Led here, not loaded yet (or being given up): clients retry, as Kafka's
            // coordinator answers while it loads.
            return TxnAnswer::Failed(ErrorCode::CoordinatorLoadInProgress);
        }
    }
    let generation = id_partition.map_or(0, |p| shell.generation(p));
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
            match shell.appended(core, &id, generation, ok) {
                Some(AfterAppend {
                    answer: Some(answer),
                    ..
                }) => TxnAnswer::Answer(answer),
                Some(_) => TxnAnswer::Failed(ErrorCode::CoordinatorNotAvailable),
                // Given up meanwhile: the client finds the new coordinator.
                None => TxnAnswer::Failed(ErrorCode::NotCoordinator),
            }
        }
    }
}

/// Appends one state record to its `__transaction_state` partition and waits until it is
/// durable; whether it is.
async fn append_record(core: &Core, record: &StateRecord) -> bool {
    let index = partition_for(&record.transactional_id, txn_partitions(core));
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

/// Writes every marker of `write`: on this broker's owning cores, and through the cluster
/// listener on the leaders of partitions led elsewhere; whether all were written.
async fn write_markers(core: &Core, write: &MarkerWrite) -> bool {
    let commit = write.result == TxnResult::Commit;
    let mut local = Vec::new();
    let mut remote: BTreeMap<i32, Vec<TxnMarker>> = BTreeMap::new();
    for tp in &write.partitions {
        let op = MarkerOp {
            topic: tp.topic.clone(),
            partition: tp.partition,
            producer_id: write.producer_id,
            epoch: write.producer_epoch,
            commit,
        };
        match core.route(&op.topic, op.partition) {
            Route::ThisCore => local.push((core.id, op)),
            Route::OtherCore(owner) => local.push((owner, op)),
            // Deleted since it was added: nothing to mark.
            Route::NotHere => {}
            Route::OtherBroker(node) => {
                let Some(meta) = core.topic(&op.topic) else {
                    continue;
                };
                remote.entry(node.0).or_default().push(TxnMarker {
                    topic_id: meta.id,
                    partition: PartitionIndex(op.partition),
                    producer_id: op.producer_id,
                    producer_epoch: op.epoch,
                    commit,
                });
            }
            Route::NoLeader => return false,
        }
    }
    let local = local.into_iter().map(|(owner, op)| async move {
        matches!(
            core.call(owner, CoreRequest::WriteTxnMarker(op)).await,
            Some(CoreReply::Marker(Ok(())))
        )
    });
    // Sent with this coordinator's leader epoch of the id's partition, so that a leader that
    // knows of a newer one refuses them (a deposed coordinator's late markers).
    let coordinator_partition = partition_for(&write.transactional_id, txn_partitions(core));
    let coordinator_epoch = core
        .placement(TXN_TOPIC, coordinator_partition)
        .map_or(WireLeaderEpoch(-1), |p| WireLeaderEpoch(p.leader_epoch.0));
    let remote = remote.into_iter().map(|(to, markers)| async move {
        let chunks = markers.chunks(TXN_MARKERS_MAX).map(|chunk| {
            let request = TxnMarkersRequest {
                coordinator_partition: PartitionIndex(coordinator_partition),
                coordinator_epoch,
                markers: chunk.to_vec(),
            };
            async move {
                match crate::cluster::txn_rpc::send(core, to, TxnPeerCall::Markers(request)).await
                {
                    Some(TxnPeerAnswer::Markers(response)) => {
                        let failed = response
                            .markers
                            .iter()
                            .find(|m| m.error_code != ErrorCode::None);
                        if let Some(m) = failed {
                            debug!(to, partition = m.partition.0, error = ?m.error_code, "a marker was not written; retried");
                        }
                        response.markers.len() == chunk.len() && failed.is_none()
                    }
                    _ => false,
                }
            }
        });
        futures::future::join_all(chunks)
            .await
            .into_iter()
            .all(|ok| ok)
    });
    let (local, remote) = futures::future::join(
        futures::future::join_all(local),
        futures::future::join_all(remote),
    )
    .await;
    local.into_iter().chain(remote).all(|ok| ok)
}

/// Writes markers another broker's coordinator sent for partitions this broker leads (run on
/// core 0, which holds the cluster listener): each on its owning core, durably, as acks=all.
pub async fn serve_markers(core: &Core, request: TxnMarkersRequest) -> TxnMarkersResponse {
    let deposed = core
        .placement(TXN_TOPIC, request.coordinator_partition.0)
        .is_some_and(|p| p.leader_epoch.0 > request.coordinator_epoch.0);
    if deposed {
        warn!(
            core = core.id,
            partition = request.coordinator_partition.0,
            epoch = request.coordinator_epoch.0,
            "markers from a deposed transaction coordinator; refused"
        );
        return refused_markers(&request, ErrorCode::TransactionCoordinatorFenced);
    }
    let names = core.topic_names_by_id();
    let writes = request.markers.iter().map(|m| {
        let name = names.get(&m.topic_id).cloned();
        async move {
            let error_code = match name {
                None => ErrorCode::UnknownTopicOrPartition,
                Some(topic) => {
                    let owner = match core.route(&topic, m.partition.0) {
                        Route::ThisCore => Some(core.id),
                        Route::OtherCore(owner) => Some(owner),
                        Route::NotHere => None,
                        Route::OtherBroker(_) | Route::NoLeader => None,
                    };
                    match owner {
                        None => ErrorCode::NotLeaderOrFollower,
                        Some(owner) => {
                            let op = MarkerOp {
                                topic,
                                partition: m.partition.0,
                                producer_id: m.producer_id,
                                epoch: m.producer_epoch,
                                commit: m.commit,
                            };
                            match core.call(owner, CoreRequest::WriteTxnMarker(op)).await {
                                Some(CoreReply::Marker(Ok(()))) => ErrorCode::None,
                                Some(CoreReply::Marker(Err(e))) => e,
                                _ => ErrorCode::NotLeaderOrFollower,
                            }
                        }
                    }
                }
            };
            TxnMarkerResult {
                topic_id: m.topic_id,
                partition: m.partition,
                error_code,
            }
        }
    });
    TxnMarkersResponse {
        markers: futures::future::join_all(writes).await,
    }
}

/// The answer to `request` with `error_code` for every marker: none was written.
pub fn refused_markers(request: &TxnMarkersRequest, error_code: ErrorCode) -> TxnMarkersResponse {
    TxnMarkersResponse {
        markers: request
            .markers
            .iter()
            .map(|m| TxnMarkerResult {
                topic_id: m.topic_id,
                partition: m.partition,
                error_code,
            })
            .collect(),
    }
}

/// KIP-890's check, asked by a partition leader: which of `partitions` are in the open
/// transaction of `producer_id` and `epoch` of `id`, from its coordinator on this broker or
/// another one. Errors: PRODUCER_FENCED (an older epoch), NOT_COORDINATOR,
/// COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, or the coordinator's others.
pub async fn verify(
    core: &Core,
    id: &str,
    producer_id: ProducerId,
    epoch: ProducerEpoch,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<bool>, ErrorCode> {
    let route = core
        .topic(TXN_TOPIC)
        .map(|meta| core.route(TXN_TOPIC, partition_for(id, meta.partitions)));
    let node = match route {
        Some(Route::OtherBroker(node)) => node.0,
        Some(Route::NoLeader) => return Err(ErrorCode::CoordinatorNotAvailable),
        // This broker (or on a single broker, where `call` creates the topic).
        _ => return verify_here(core, id, producer_id, epoch, partitions).await,
    };
    let count = partitions.len();
    let request = TxnVerifyRequest {
        transactional_id: id.to_owned(),
        producer_id,
        producer_epoch: epoch,
        partitions: partitions
            .into_iter()
            .map(|(t, p)| (t, PartitionIndex(p)))
            .collect(),
    };
    match crate::cluster::txn_rpc::send(core, node, TxnPeerCall::Verify(request)).await {
        Some(TxnPeerAnswer::Verify(answer)) if answer.error_code != ErrorCode::None => {
            Err(answer.error_code)
        }
        Some(TxnPeerAnswer::Verify(answer)) if answer.verified.len() == count => {
            Ok(answer.verified)
        }
        _ => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// [`verify`] by this broker's coordinator (also what a peer's [`TxnVerifyRequest`] gets).
pub async fn verify_here(
    core: &Core,
    id: &str,
    producer_id: ProducerId,
    epoch: ProducerEpoch,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<bool>, ErrorCode> {
    let call = TxnCall::Verify {
        id: id.to_owned(),
        producer_id,
        epoch,
        partitions,
    };
    match self::call(core, id, call).await {
        TxnAnswer::Verified(verified) => Ok(verified),
        TxnAnswer::Answer(Answer::Error(TxnError::ProducerFenced)) => {
            Err(ErrorCode::ProducerFenced)
        }
        TxnAnswer::Answer(Answer::Error(e)) => Err(crate::errors::KafkaCode::kafka_code(&e)),
        // Listed and Described answer other calls: not an answer to Verify.
        TxnAnswer::Answer(_) | TxnAnswer::Listed(_) | TxnAnswer::Described(_) => {
            Err(ErrorCode::InvalidTxnState)
        }
        TxnAnswer::Failed(e) => Err(e),
    }
}

/// A peer's [`TxnVerifyRequest`], answered by this broker's coordinator.
pub async fn serve_verify(core: &Core, request: TxnVerifyRequest) -> TxnVerifyResponse {
    let partitions = request
        .partitions
        .into_iter()
        .map(|(t, p)| (t, p.0))
        .collect();
    let answer = if core.topic(TXN_TOPIC).is_none() {
        // Never created here: not this broker's to answer.
        Err(ErrorCode::NotCoordinator)
    } else {
        verify_here(
            core,
            &request.transactional_id,
            request.producer_id,
            request.producer_epoch,
            partitions,
        )
        .await
    };
    match answer {
        Ok(verified) => TxnVerifyResponse {
            error_code: ErrorCode::None,
            verified,
        },
        Err(error_code) => TxnVerifyResponse {
            error_code,
            verified: Vec::new(),
        },
    }
}

/// A call to another broker over the cluster listener.
#[derive(Debug, Clone)]
pub enum TxnPeerCall {
    Markers(TxnMarkersRequest),
    Verify(TxnVerifyRequest),
}

/// Its answer.
#[derive(Debug, Clone)]
pub enum TxnPeerAnswer {
    Markers(TxnMarkersResponse),
    Verify(TxnVerifyResponse),
}

/// Writes queued markers, completes their transactions, aborts timed-out ones and expires
/// idle transactional ids, until shutdown.
pub async fn txn_loop(core: Rc<Core>, shutdown: std::sync::Arc<crate::runtime::ShutdownFlag>) {
    let mut last_timeout_check = 0i64;
    while !shutdown.is_triggered() {
        glommio::timer::sleep(MARKER_INTERVAL).await;
        let now = now_ms();
        if now - last_timeout_check >= TIMEOUT_CHECK_INTERVAL_MS {
            last_timeout_check = now;
            let expired = core.txns.coordinator.borrow_mut().tick(now);
            let partitions = txn_partitions(&core);
            for record in expired {
                let id = record.transactional_id.clone();
                let generation = core.txns.generation(partition_for(&id, partitions));
                match record.value {
                    Some(_) => {
                        info!(core = core.id, transactional_id = %id, "aborting a transaction past its timeout")
                    }
                    None => {
                        info!(core = core.id, transactional_id = %id, "expiring a transactional id idle past transactional-id-expiration-ms")
                    }
                }
                let ok = append_record(&core, &record).await;
                core.txns.appended(&core, &id, generation, ok);
            }
        }
        let queued: Vec<MarkerWrite> = core.txns.markers.borrow_mut().drain(..).collect();
        // Each decided transaction on its own: one whose partition leader does not answer
        // (a stopped peer, up to the call's timeout) holds up no other.
        futures::future::join_all(queued.into_iter().map(|write| complete(&core, write))).await;
    }
}

/// Writes the markers of one decided transaction and then appends its `Complete*` record; a
/// write that fails is queued again for the next pass.
async fn complete(core: &Core, write: MarkerWrite) {
    let partitions = txn_partitions(core);
    let partition = partition_for(&write.transactional_id, partitions);
    let generation = core.txns.generation(partition);
    let written = write_markers(core, &write).await;
    if core.txns.generation(partition) != generation {
        // Given up meanwhile: the new coordinator writes them.
        return;
    }
    if !written {
        // Retried at the next pass (the partition's core, disk or leader is back by then).
        core.txns.queue(write);
        return;
    }
    let record = core
        .txns
        .coordinator
        .borrow_mut()
        .markers_written(&write, now_ms());
    let Some(record) = record else { return };
    let ok = append_record(core, &record).await;
    core.txns
        .appended(core, &write.transactional_id, generation, ok);
}

/// The `__transaction_state` topic as created at first start: compacted, never deleted by
/// time or size, small preallocated segments (as `__consumer_offsets`).
pub fn txn_topic_meta(config: &crate::config::Config) -> crate::metadata::topics::TopicMeta {
    let mut meta = crate::group::offsets_topic_meta(config);
    meta.name = TXN_TOPIC.to_owned();
    meta.partitions = TXN_PARTITIONS;
    meta
}
