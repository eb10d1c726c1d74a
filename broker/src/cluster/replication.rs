//! Partition replication between brokers: the followers' fetchers, the leaders' answers, and
//! the ISR proposals, around each partition's [`ReplicaSlot`] (the sans-I/O protocol of
//! `spate-replication`).
//!
//! Shape (docs/ARCHITECTURE.md, "Replication"):
//! - **Follower side, on every core.** Each replica asks for fetches through its core's
//!   [`Outgoing`] queue. The core's [`run`] loop batches them into one `ReplicaFetchRequest`
//!   frame per leader broker (one frame in flight per leader and core), hands it to core 0,
//!   which owns the cluster transport, and feeds each partition's answer back to its replica,
//!   which appends (or truncates) and asks for the next fetch at once: a busy follower is never
//!   more than a round trip behind.
//! - **Leader side.** Core 0 takes the frame off the transport's replication inbox and asks each
//!   core owning some of its partitions to step the fetch and read the records. If no partition
//!   has anything, the frame is long-polled (up to [`FETCH_MAX_WAIT_MS`]) until one of them
//!   grows, so an idle follower costs a frame every half second, not a loop.
//! - **ISR changes** the replicas propose go to the controller through core 0
//!   (`ClusterNode::alter_partition`), and the answer is stepped back on the owning core.
//!
//! Limits: frames carry at most [`REPLICA_FETCH_PARTITIONS_MAX`] partitions and about
//! [`FETCH_BYTES_MAX`] of records; each replica has at most one fetch in flight and one
//! proposal pending, so every queue here is bounded by the partitions a core owns.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use spate_replication::{
    AckDurability, AlterPartitionError as RAlterError, AlterPartitionRequest,
    AlterPartitionResponse, CorrelationId, EpochHistory, FetchAnswer, FetchRequest, FetchResponse,
    LeaderEpoch as RLeaderEpoch, LogState, NodeId as RNodeId, Offset as ROffset,
    PartitionEpoch as RPartitionEpoch, PartitionState, Replica, ReplicaConfig,
};
use spate_storage::io::glommio::GlommioDisk;
use spate_storage::sync::AsyncMutex;
use spate_storage::{Log, ReadChunk, ReadUpTo};
use spate_wire::cluster::{
    Body, EpochEndOffset, FetchPartition, FetchedPartition, IsrChange, IsrChangeResult, IsrMember,
    RecordChunks, ReplicaFetchRequest, ReplicaFetchResponse, REPLICA_FETCH_PARTITIONS_MAX,
    REPLICA_FETCH_RECORDS_BYTES_MAX,
};
use spate_wire::types::{LeaderEpoch, Offset, PartitionIndex};
use spate_wire::ErrorCode;
use tracing::{debug, error, info, warn};

use super::hw_checkpoint::PartitionId;
use super::rpc::Calls;
use super::transport::{Inbound, Transport};
use crate::core::Core;
use crate::errors::{fetch_error_of, KafkaCode};
use crate::metadata::topics::TopicMeta;
use crate::ops::{CoreReply, CoreRequest};
use crate::partition::replica::{split_batches, Outgoing, PartitionKey, ReplicaSlot};
use crate::routing::owner_core;
use crate::runtime::ShutdownFlag;

/// How long a leader holds a fetch that found nothing, waiting for records.
pub const FETCH_MAX_WAIT_MS: u32 = 500;
/// Record bytes a follower asks for per frame (each core answering gets its share; a batch
/// larger than the share still comes whole).
pub const FETCH_BYTES_MAX: u32 = 4 << 20;
/// How often replicas are ticked (waiter timeouts, ISR lag checks, retries, durability).
pub const TICK: Duration = Duration::from_millis(50);
/// A follower's pause after an error (an empty answer is followed at once: it was long-polled).
const FETCH_BACKOFF_MS: u64 = 50;
/// A fetch with no answer after this long is presumed lost.
const FETCH_TIMEOUT_MS: u64 = 15_000;
/// How long core 0 waits for a leader's answer beyond its long-poll.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// A pending ISR proposal is sent again after this long.
const ALTER_PARTITION_RETRY_MS: u64 = 2_000;
/// acks=all produces waiting per partition, at most.
const WAITERS_MAX: usize = 4_096;
/// Frames awaiting an answer on core 0, at most.
const FRAMES_IN_FLIGHT_MAX: usize = 4_096;

/// This run of the broker, the same on every core: registered with the controller, sent in
/// fetches, and compared with the image's registration before a replica takes metadata.
pub fn incarnation() -> u64 {
    static INCARNATION: OnceLock<u64> = OnceLock::new();
    // Wall-clock milliseconds: a restarted broker's incarnation is larger than its last one's
    // (unless the clock went back by more than the restart took).
    *INCARNATION.get_or_init(|| crate::core::now_ms().max(1) as u64)
}

/// One core's replication state.
#[derive(Debug, Default)]
pub struct CoreReplication {
    /// What the core's replicas ask of the outside.
    pub outgoing: Rc<Outgoing>,
    /// Fetches waiting for their leader's frame, by leader.
    pending: RefCell<BTreeMap<i32, Vec<(PartitionKey, FetchRequest)>>>,
    /// Leaders with a frame in flight from this core.
    in_flight: RefCell<BTreeSet<i32>>,
    /// The incarnation each follower last fetched with (for AlterPartition's check that an
    /// ISR member is the run that caught up, KIP-903).
    incarnations: RefCell<HashMap<i32, u64>>,
    /// Partitions whose damaged segment is being repaired (at most one repair each).
    repairing: RefCell<BTreeSet<(std::rc::Rc<str>, i32)>>,
    /// Fetches of replicas a reassignment is adding, held back by the throttle (at most one
    /// per partition: a newer fetch of the same partition replaces the held one).
    throttled: RefCell<Vec<(PartitionKey, RNodeId, FetchRequest)>>,
    /// When the throttle lets the held fetches go (see [`Throttle`]).
    throttle: RefCell<Throttle>,
    /// The throttle rates set at runtime (the same on every core).
    pub dynamic_throttle: Cell<DynamicThrottle>,
    /// The high watermarks earlier runs checkpointed (every core's file), loaded when the
    /// first replica opens (see [`super::hw_checkpoint`]).
    checkpointed: RefCell<Option<Rc<HashMap<PartitionId, Offset>>>>,
    /// What this core last wrote to its checkpoint file (an unchanged set is not written
    /// again), held across a write: the periodic write and the one at shutdown replace the
    /// same file through the same temporary name, so they must never overlap.
    hw_written: AsyncMutex<Option<Vec<(PartitionId, Offset)>>>,
}

impl CoreReplication {
    /// The checkpointed high watermark of a partition (0 if none), loading the files once.
    async fn checkpointed_high_watermark(
        &self,
        data_dir: &std::path::Path,
        id: PartitionId,
    ) -> Offset {
        let loaded = self.checkpointed.borrow().clone();
        let map = match loaded {
            Some(map) => map,
            None => {
                let map = Rc::new(super::hw_checkpoint::load(data_dir).await);
                // Another replica opening meanwhile may have loaded it too: the same files.
                self.checkpointed.borrow_mut().get_or_insert(map).clone()
            }
        };
        map.get(&id).copied().unwrap_or(Offset(0))
    }
}

/// Writes core `core`'s high watermark checkpoint with its replicas' high watermarks, unless
/// they are what it last wrote. A failed write is logged: the old file stays, only older.
pub async fn checkpoint_high_watermarks(
    replication: &CoreReplication,
    data_dir: &std::path::Path,
    core: usize,
    mut entries: Vec<(PartitionId, Offset)>,
) {
    entries.sort_unstable();
    let mut written = replication.hw_written.lock().await;
    if written.as_ref() == Some(&entries) {
        return;
    }
    match super::hw_checkpoint::save(data_dir, core, &entries).await {
        Ok(()) => *written = Some(entries),
        Err(e) => {
            warn!(core, error = %e, "writing the high watermark checkpoint failed; the previous one stays")
        }
    }
}

/// The catch-up throttle of one core (`--reassignment-throttle-bytes-per-sec` shared by the
/// cores): every record byte fetched for a replica being added pushes `open_at` forward by
/// `bytes / rate`, and those replicas' next fetches wait until then. So over any stretch longer
/// than one answer, their fetch rate stays at most the core's share; replicas in the ISR, and
/// out-of-sync replicas that are not being added, are never held.
#[derive(Debug, Default)]
pub struct Throttle {
    open_at: Option<Instant>,
}

impl Throttle {
    /// Whether held fetches may go at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        self.open_at.is_none_or(|at| now >= at)
    }

    /// Counts `bytes` fetched at `now` against `rate_bytes_per_sec`.
    pub fn charge(&mut self, now: Instant, bytes: u64, rate_bytes_per_sec: u64) {
        assert!(rate_bytes_per_sec > 0);
        let from = self.open_at.map_or(now, |at| at.max(now));
        let wait = Duration::from_secs_f64(bytes as f64 / rate_bytes_per_sec as f64);
        self.open_at = Some(from + wait);
    }
}

/// This core's share of the broker's reassignment throttle, bytes per second; `None`:
/// unlimited.
fn throttle_rate(core: &Core) -> Option<u64> {
    core.replication
        .dynamic_throttle
        .get()
        .rate()
        .or(core.config.reassignment_throttle_bytes_per_sec)
        .map(|rate| (rate / core.cores as u64).max(1))
}

/// The replication throttle set at runtime on this broker: Kafka's dynamic broker configs
/// `follower.replication.throttled.rate` and `leader.replication.throttled.rate` (bytes per
/// second), which `kafka-reassign-partitions --throttle` sets on each broker and removes at
/// `--verify`. Kept in memory on every core, so a restart goes back to
/// `--reassignment-throttle-bytes-per-sec`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DynamicThrottle {
    /// `follower.replication.throttled.rate`, if set.
    pub follower_bytes_per_sec: Option<u64>,
    /// `leader.replication.throttled.rate`, if set.
    pub leader_bytes_per_sec: Option<u64>,
}

impl DynamicThrottle {
    /// The rate this broker's catch-up fetches are held to, if either is set: the smaller.
    /// Spate throttles on the follower's side only (the fetches of replicas a reassignment is
    /// adding), so a leader's rate bounds the same traffic from the receiving end.
    pub fn rate(&self) -> Option<u64> {
        match (self.follower_bytes_per_sec, self.leader_bytes_per_sec) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whether fetches for `key` are throttled: the throttle is on and a reassignment is adding
/// this broker as a replica of the partition.
fn is_throttled(core: &Core, key: &PartitionKey) -> bool {
    throttle_rate(core).is_some()
        && core.topics.borrow().get(&*key.topic).is_some_and(|meta| {
            usize::try_from(key.partition)
                .ok()
                .and_then(|i| meta.replica_sets.get(i))
                .is_some_and(|set| set.adding.contains(&core.config.node_id))
        })
}

/// Record bytes one frame of only throttled fetches asks for: about a quarter second of the
/// core's share, so that a slow rate makes short pauses rather than one long one (a fetch held
/// past the replica's fetch timeout would be sent again); the first batch still comes whole.
fn throttled_frame_bytes(rate_bytes_per_sec: u64) -> u32 {
    u32::try_from(rate_bytes_per_sec / 4)
        .unwrap_or(u32::MAX)
        .clamp(64 << 10, FETCH_BYTES_MAX)
}

/// Core 0's correlation of replication frames with their answers.
#[derive(Debug)]
pub struct ReplicaRpc {
    calls: Calls<ReplicaFetchResponse>,
}

impl Default for ReplicaRpc {
    fn default() -> ReplicaRpc {
        ReplicaRpc {
            calls: Calls::new(FRAMES_IN_FLIGHT_MAX),
        }
    }
}

impl ReplicaRpc {
    /// Sends a follower's frame to `to` and waits for the answer (the leader's long-poll plus
    /// [`ANSWER_TIMEOUT`]); `None` when none came.
    pub async fn call(
        &self,
        transport: &Transport,
        to: i32,
        request: ReplicaFetchRequest,
    ) -> Option<ReplicaFetchResponse> {
        let wait = Duration::from_millis(u64::from(request.max_wait_ms)) + ANSWER_TIMEOUT;
        let body = Body::ReplicaFetchRequest(request);
        match self.calls.call(transport, to, &body, wait).await {
            Ok(response) => Some(response),
            Err(e) => {
                debug!(to, error = %e, "replica fetch not answered");
                None
            }
        }
    }

    fn deliver(&self, correlation_id: u64, response: ReplicaFetchResponse) {
        self.calls.deliver(correlation_id, response);
    }
}

/// The replica settings of a topic's partitions on this broker.
fn replica_config(core: &Core, meta: &TopicMeta) -> ReplicaConfig {
    let durability = if meta.config.write_caching {
        AckDurability::Replicated
    } else {
        AckDurability::ReplicatedAndFlushed
    };
    let mut config = ReplicaConfig::new(RNodeId(core.config.node_id), durability);
    config.min_insync_replicas = (meta.config.min_insync_replicas as usize)
        .clamp(1, spate_replication::messages::REPLICAS_MAX);
    config.replica_lag_time_max_ms = core.config.replica_lag_time_max_ms.max(1);
    config.fetch_backoff_ms = FETCH_BACKOFF_MS;
    // This broker's leaders long-poll (FETCH_MAX_WAIT_MS): an empty answer already waited.
    config.empty_fetch_backoff_ms = 0;
    config.fetch_timeout_ms = FETCH_TIMEOUT_MS;
    config.alter_partition_retry_ms = ALTER_PARTITION_RETRY_MS;
    config.waiters_max = WAITERS_MAX;
    config
}

/// The replication state of a partition just opened from `log`.
///
/// # Errors
/// If the log's epoch history or the settings are refused by the protocol.
pub async fn new_slot(
    core: &Core,
    meta: &TopicMeta,
    index: i32,
    log: &Log<GlommioDisk>,
) -> anyhow::Result<ReplicaSlot> {
    let epochs = log
        .epochs()
        .await
        .entries()
        .iter()
        .map(|e| (RLeaderEpoch(e.epoch.0), ROffset(e.start_offset.0)))
        .collect();
    let state = LogState {
        log_end: ROffset(log.log_end_offset().0),
        durable_end: ROffset(log.durable_offset().0),
        // What the last run checkpointed, capped at the log end by the replica; the rest is
        // learnt again from the leader (or, leading, from the followers' fetches), so
        // consumers never see past what is committed.
        high_watermark: ROffset(
            core.replication
                .checkpointed_high_watermark(&core.config.data_dir, (meta.id, index))
                .await
                .0,
        ),
        epochs: EpochHistory::from_entries(epochs)
            .map_err(|e| anyhow::anyhow!("{}-{index}: {e}", meta.name))?,
    };
    let config = replica_config(core, meta);
    let flush_before_fetch = config.ack_durability == AckDurability::ReplicatedAndFlushed;
    let replica = Replica::new(config, state).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = PartitionKey {
        topic: Rc::from(meta.name.as_str()),
        topic_id: meta.id,
        partition: index,
    };
    Ok(ReplicaSlot::new(
        key,
        core.replication.outgoing.clone(),
        replica,
        flush_before_fetch,
    ))
}

/// The controller's state of a partition as the replication protocol takes it.
pub fn partition_state(p: &spate_controller::image::PartitionState) -> PartitionState {
    PartitionState {
        replicas: p.replicas.iter().map(|n| RNodeId(n.0)).collect(),
        leader: p.leader.map(|n| RNodeId(n.0)),
        leader_epoch: RLeaderEpoch(p.leader_epoch.0),
        partition_epoch: RPartitionEpoch(p.partition_epoch.0),
        isr: p.isr.iter().map(|n| RNodeId(n.0)).collect(),
    }
}

/// Hands each partition this core keeps its controller state. Only once the image has this
/// run's registration: an older image may name this broker leader of an epoch a crash took
/// records of (the replication crate's rule).
pub async fn apply_states(core: &Core, topics: &[(String, Vec<bool>, Vec<PartitionState>)]) {
    for (name, hosted, states) in topics {
        for (index, state) in states.iter().enumerate() {
            if !hosted[index] {
                continue;
            }
            let Some(partition) = core.partition(name, index as i32) else {
                continue;
            };
            if let Some(slot) = &partition.replica {
                let led = slot.is_leader();
                slot.metadata(state.clone(), &partition.log).await;
                partition.notify_if_advanced();
                if name == crate::txn::TXN_TOPIC && led != slot.is_leader() {
                    // So do the transactional ids of a transaction state partition.
                    if slot.is_leader() {
                        if let Err(e) = core.txns.load_partition(core, index as i32).await {
                            warn!(partition = index, error = %e, "loading a transaction state partition");
                        }
                    } else {
                        core.txns
                            .unload_partition(index as i32, states.len() as i32);
                    }
                }
                if name == crate::group::OFFSETS_TOPIC && led != slot.is_leader() {
                    // The partition's groups move with its leadership.
                    if slot.is_leader() {
                        if let Err(e) = core.groups.reload_partition(core, index as i32).await {
                            warn!(partition = index, error = %e, "rebuilding the groups of an offsets partition");
                        }
                    } else {
                        core.groups
                            .forget_partition(index as i32, states.len() as i32);
                    }
                }
            }
        }
    }
}

/// The core's replication loop: ticks the replicas, sends their fetches batched per leader,
/// and their ISR proposals to the controller. Runs until shutdown.
pub async fn run(core: Rc<Core>, shutdown: Arc<ShutdownFlag>) {
    let outgoing = core.replication.outgoing.clone();
    let mut ticked = Instant::now();
    while !shutdown.is_triggered() {
        let queued =
            !outgoing.fetches.borrow().is_empty() || !outgoing.proposals.borrow().is_empty();
        if !queued {
            futures_lite::future::or(outgoing.ready.notified(), async {
                glommio::timer::sleep(TICK).await;
            })
            .await;
        }
        if ticked.elapsed() >= TICK {
            ticked = Instant::now();
            for partition in core.replicated_partitions() {
                // Durability first (it may complete waiters), then the timeouts.
                partition.notify_if_advanced();
                if let Some(slot) = &partition.replica {
                    slot.tick();
                    if let Some(damaged) = partition.damaged.take() {
                        let key = (slot.key().topic.clone(), slot.key().partition);
                        if core.replication.repairing.borrow_mut().insert(key.clone()) {
                            let core = core.clone();
                            let partition = partition.clone();
                            glommio::spawn_local(async move {
                                repair(&core, &partition, damaged).await;
                                // A repair that failed is tried again at the next damaged
                                // read, not in a loop.
                                glommio::timer::sleep(REPAIR_RETRY).await;
                                core.replication.repairing.borrow_mut().remove(&key);
                            })
                            .detach();
                        }
                    }
                }
            }
        }
        let proposals = std::mem::take(&mut *outgoing.proposals.borrow_mut());
        for (key, request) in proposals {
            glommio::spawn_local(propose(core.clone(), key, request)).detach();
        }
        let fetches = std::mem::take(&mut *outgoing.fetches.borrow_mut());
        {
            let mut pending = core.replication.pending.borrow_mut();
            let mut throttled = core.replication.throttled.borrow_mut();
            for (key, to, request) in fetches {
                if is_throttled(&core, &key) {
                    throttled.retain(|(k, _, _)| *k != key);
                    throttled.push((key, to, request));
                } else {
                    pending.entry(to.0).or_default().push((key, request));
                }
            }
            if !throttled.is_empty() && core.replication.throttle.borrow().is_open(Instant::now()) {
                for (key, to, request) in throttled.drain(..) {
                    pending.entry(to.0).or_default().push((key, request));
                }
            }
        }
        let ready: Vec<i32> = {
            let pending = core.replication.pending.borrow();
            let in_flight = core.replication.in_flight.borrow();
            pending
                .iter()
                .filter(|(leader, items)| !items.is_empty() && !in_flight.contains(leader))
                .map(|(leader, _)| *leader)
                .collect()
        };
        for leader in ready {
            let items = {
                let mut pending = core.replication.pending.borrow_mut();
                let queue = pending.get_mut(&leader).expect("listed above");
                let take = queue.len().min(REPLICA_FETCH_PARTITIONS_MAX);
                queue.drain(..take).collect::<Vec<_>>()
            };
            core.replication.in_flight.borrow_mut().insert(leader);
            glommio::spawn_local(fetch_from(core.clone(), leader, items)).detach();
        }
    }
}

/// The fetch epoch of a repair read ([`repair`]): not a follower's fetch but a read of another
/// replica's log below its high watermark, answered by any replica, leader or follower, and
/// never counted by the replication protocol (docs/CLUSTER-PROTOCOL.md).
const REPAIR_READ_EPOCH: LeaderEpoch = LeaderEpoch(-1);
/// A partition's next repair starts no sooner than this after the last one ended.
const REPAIR_RETRY: Duration = Duration::from_secs(1);

/// Rebuilds the closed segment holding `damaged` (the first offset a read found hidden by a
/// batch that failed its CRC) from another in-sync replica: this log's intact batches before
/// the damage, that replica's from it on (`Log::repair_segment`). Each in-sync replica is
/// tried in turn; the outcome is logged.
async fn repair(core: &Rc<Core>, partition: &Rc<crate::partition::Partition>, damaged: Offset) {
    let Some(slot) = &partition.replica else {
        return;
    };
    let key = slot.key().clone();
    let me = core.config.node_id;
    let sources: Vec<i32> = slot
        .partition_state()
        .map(|s| s.isr.iter().map(|n| n.0).filter(|n| *n != me).collect())
        .unwrap_or_default();
    if sources.is_empty() {
        error!(topic = %key.topic, partition = key.partition, offset = damaged.0, "a damaged segment has no in-sync replica to be repaired from; its records stay unreadable here");
        return;
    }
    for source in sources {
        let fetch = |from: Offset| {
            let core = core.clone();
            let key = key.clone();
            async move { repair_read(&core, source, &key, from).await }
        };
        match partition.log.repair_segment(damaged, fetch).await {
            Ok(outcome) => {
                info!(
                    topic = %key.topic,
                    partition = key.partition,
                    from = source,
                    segment = outcome.segment.0,
                    batches_kept = outcome.batches_kept,
                    batches_fetched = outcome.batches_fetched,
                    superseded = outcome.superseded,
                    "damaged segment repaired from another replica"
                );
                return;
            }
            Err(e) => {
                warn!(topic = %key.topic, partition = key.partition, from = source, error = %e, "repairing a damaged segment failed");
            }
        }
    }
}

/// One repair read of `source`'s log from `from`: whole batches below its high watermark.
async fn repair_read(
    core: &Core,
    source: i32,
    key: &PartitionKey,
    from: Offset,
) -> Result<bytes::Bytes, String> {
    let request = ReplicaFetchRequest {
        replica_node_id: core.config.node_id,
        replica_incarnation: incarnation(),
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: spate_storage::REPAIR_FETCH_BYTES_MAX as u32,
        partitions: vec![FetchPartition {
            topic_id: key.topic_id,
            partition: PartitionIndex(key.partition),
            fetch_offset: from,
            current_leader_epoch: REPAIR_READ_EPOCH,
            last_fetched_epoch: LeaderEpoch(-1),
            durable_end_offset: Offset(-1),
        }],
    };
    let reply = core
        .call(
            crate::core::CONTROLLER_CORE,
            CoreRequest::ReplicaSend {
                to: source,
                request,
            },
        )
        .await;
    match reply {
        Some(CoreReply::ReplicaFetched(Some(response)))
            if response.error_code == ErrorCode::None =>
        {
            match response.partitions.into_iter().next() {
                Some(p) if p.error_code == ErrorCode::None => Ok(p.records.to_bytes()),
                Some(p) => Err(format!("replica {source} answered {:?}", p.error_code)),
                None => Err(format!("replica {source} answered nothing")),
            }
        }
        Some(CoreReply::ReplicaFetched(Some(response))) => Err(format!(
            "replica {source} refused: {:?}",
            response.error_code
        )),
        _ => Err(format!("replica {source} did not answer")),
    }
}

/// Sends one frame of fetches to `leader` (through core 0) and feeds the answers back.
async fn fetch_from(core: Rc<Core>, leader: i32, items: Vec<(PartitionKey, FetchRequest)>) {
    let partitions = items
        .iter()
        .map(|(key, request)| {
            // The durable end may have moved since the replica asked (its flush finished):
            // the newer one is as true, and saves a round trip under replicated-and-flushed.
            let durable = core
                .partition(&key.topic, key.partition)
                .and_then(|p| p.replica.as_ref().map(|slot| slot.durable_end()))
                .map_or(request.durable_end_offset.0, |d| d.0)
                .max(request.durable_end_offset.0)
                .min(request.fetch_offset.0);
            FetchPartition {
                topic_id: key.topic_id,
                partition: PartitionIndex(key.partition),
                fetch_offset: Offset(request.fetch_offset.0),
                current_leader_epoch: LeaderEpoch(request.current_leader_epoch.0),
                last_fetched_epoch: LeaderEpoch(request.last_fetched_epoch.map_or(-1, |e| e.0)),
                durable_end_offset: Offset(durable),
            }
        })
        .collect();
    let throttled: Vec<bool> = items
        .iter()
        .map(|(key, _)| is_throttled(&core, key))
        .collect();
    let max_bytes = match throttle_rate(&core) {
        Some(rate) if throttled.iter().all(|t| *t) => throttled_frame_bytes(rate),
        _ => FETCH_BYTES_MAX,
    };
    let request = ReplicaFetchRequest {
        replica_node_id: core.config.node_id,
        replica_incarnation: incarnation(),
        max_wait_ms: FETCH_MAX_WAIT_MS,
        min_bytes: 1,
        max_bytes,
        partitions,
    };
    let reply = core
        .call(
            crate::core::CONTROLLER_CORE,
            CoreRequest::ReplicaSend {
                to: leader,
                request,
            },
        )
        .await;
    let response = match reply {
        Some(CoreReply::ReplicaFetched(Some(response)))
            if response.error_code == ErrorCode::None
                && response.partitions.len() == items.len() =>
        {
            Some(response)
        }
        Some(CoreReply::ReplicaFetched(Some(response))) => {
            debug!(leader, error = ?response.error_code, "replica fetch refused");
            None
        }
        _ => None,
    };
    let mut fetched = response.map(|r| r.partitions.into_iter());
    let mut throttled_bytes = 0u64;
    for ((key, request), throttled) in items.into_iter().zip(throttled) {
        let answer = fetched.as_mut().and_then(|f| f.next());
        if throttled {
            throttled_bytes += answer.as_ref().map_or(0, |a| a.records.len() as u64);
        }
        let Some(partition) = core.partition(&key.topic, key.partition) else {
            continue;
        };
        let Some(slot) = &partition.replica else {
            continue;
        };
        let lost = |correlation| FetchResponse {
            leader: RNodeId(leader),
            correlation,
            answer: FetchAnswer::Error(spate_replication::FetchError::NotLeaderOrFollower),
            batches: Vec::new(),
        };
        let mut leader_start = None;
        let (response, records) = match answer {
            Some(fetched)
                if fetched.topic_id == key.topic_id && fetched.partition.0 == key.partition =>
            {
                leader_start =
                    (fetched.log_start_offset.0 >= 0).then_some(fetched.log_start_offset);
                match follower_answer(leader, &request, fetched) {
                    Ok(answer) => answer,
                    Err(e) => {
                        warn!(topic = %key.topic, partition = key.partition, leader, error = %e, "leader sent records that are not batches");
                        (lost(request.correlation), bytes::Bytes::new())
                    }
                }
            }
            _ => (lost(request.correlation), bytes::Bytes::new()),
        };
        let leader_start = match &response.answer {
            FetchAnswer::Records { .. } => Some(leader_start),
            _ => None,
        };
        slot.fetch_response(response, records, &partition.log).await;
        if let Some(start) = leader_start.flatten() {
            slot.follow_log_start(start, &partition.log).await;
        }
    }
    if let (Some(rate), true) = (throttle_rate(&core), throttled_bytes > 0) {
        core.replication
            .throttle
            .borrow_mut()
            .charge(Instant::now(), throttled_bytes, rate);
    }
    core.replication.in_flight.borrow_mut().remove(&leader);
    core.replication.outgoing.ready.notify_all();
}

/// A leader's answer for one partition, as the follower's replica takes it.
fn follower_answer(
    leader: i32,
    request: &FetchRequest,
    fetched: FetchedPartition,
) -> Result<
    (
        FetchResponse<crate::partition::replica::FetchedBatch>,
        bytes::Bytes,
    ),
    String,
> {
    let high_watermark = ROffset(fetched.high_watermark.0.max(0));
    let answer = if fetched.error_code == ErrorCode::OffsetOutOfRange
        && fetched.log_start_offset.0 > request.fetch_offset.0
    {
        FetchAnswer::BelowLogStart {
            log_start: ROffset(fetched.log_start_offset.0),
            high_watermark,
        }
    } else if fetched.error_code != ErrorCode::None {
        FetchAnswer::Error(fetch_error_of(fetched.error_code))
    } else if let Some(diverging) = fetched.diverging_epoch {
        FetchAnswer::Diverging {
            epoch: RLeaderEpoch(diverging.leader_epoch.0.max(0)),
            end_offset: ROffset(diverging.end_offset.0.max(0)),
            high_watermark,
        }
    } else {
        FetchAnswer::Records {
            from: request.fetch_offset,
            high_watermark,
        }
    };
    let (records, batches) = if matches!(answer, FetchAnswer::Records { .. }) {
        split_batches(&fetched.records.to_bytes())?
    } else {
        (bytes::Bytes::new(), Vec::new())
    };
    Ok((
        FetchResponse {
            leader: RNodeId(leader),
            correlation: request.correlation,
            answer,
            batches,
        },
        records,
    ))
}

/// Sends a replica's ISR proposal to the controller and steps the answer.
async fn propose(core: Rc<Core>, key: PartitionKey, request: AlterPartitionRequest) {
    let me = core.config.node_id;
    let new_isr = {
        let incarnations = core.replication.incarnations.borrow();
        request
            .new_isr
            .iter()
            .map(|n| IsrMember {
                node_id: n.0,
                incarnation: if n.0 == me {
                    Some(incarnation())
                } else {
                    incarnations.get(&n.0).copied()
                },
            })
            .collect()
    };
    let change = IsrChange {
        topic_id: key.topic_id,
        partition: key.partition,
        leader_epoch: request.leader_epoch.0,
        partition_epoch: request.partition_epoch.0,
        new_isr,
    };
    let reply = core
        .call(crate::core::CONTROLLER_CORE, CoreRequest::AlterIsr(change))
        .await;
    let Some(partition) = core.partition(&key.topic, key.partition) else {
        return;
    };
    let Some(slot) = &partition.replica else {
        return;
    };
    let response: AlterPartitionResponse = match reply {
        Some(CoreReply::IsrChanged(Ok(result))) => isr_answer(slot, &result),
        Some(CoreReply::IsrChanged(Err(code))) => {
            debug!(topic = %key.topic, partition = key.partition, error = ?code, "AlterPartition not decided");
            Err(RAlterError::OperationNotAttempted)
        }
        _ => Err(RAlterError::OperationNotAttempted),
    };
    slot.alter_partition_response(request, response, &partition.log)
        .await;
    partition.notify_if_advanced();
}

fn isr_answer(slot: &ReplicaSlot, result: &IsrChangeResult) -> AlterPartitionResponse {
    match result.error_code {
        ErrorCode::None => {
            let replicas = slot
                .partition_state()
                .map(|s| s.replicas)
                .ok_or(RAlterError::OperationNotAttempted)?;
            Ok(PartitionState {
                replicas,
                leader: (result.leader >= 0).then_some(RNodeId(result.leader)),
                leader_epoch: RLeaderEpoch(result.leader_epoch),
                partition_epoch: RPartitionEpoch(result.partition_epoch),
                isr: result.isr.iter().map(|n| RNodeId(*n)).collect(),
            })
        }
        ErrorCode::InvalidUpdateVersion => Err(RAlterError::InvalidUpdateVersion),
        // NEW_LEADER_ELECTED: the change completed a reassignment; like a fenced epoch, the
        // replica waits for the metadata that carries the new state.
        ErrorCode::FencedLeaderEpoch | ErrorCode::NewLeaderElected => {
            Err(RAlterError::FencedLeaderEpoch)
        }
        ErrorCode::IneligibleReplica => Err(RAlterError::IneligibleReplica),
        _ => Err(RAlterError::OperationNotAttempted),
    }
}

/// What core 0 asks of a core owning some of a frame's partitions.
#[derive(Debug)]
pub struct ServeOp {
    /// The fetching follower.
    pub replica: i32,
    /// Its run.
    pub incarnation: u64,
    /// Whether to step the fetch (the first round) or only read again (after a long-poll).
    pub step: bool,
    /// Record bytes this core may send.
    pub bytes_max: u64,
    /// The partitions, with their topic names.
    pub partitions: Vec<(String, FetchPartition)>,
}

/// Runs a frame's fetches for the partitions of this core: steps each (counting the follower's
/// position), then reads the records the answer says.
pub async fn serve(core: &Core, op: ServeOp) -> Vec<FetchedPartition> {
    core.replication
        .incarnations
        .borrow_mut()
        .insert(op.replica, op.incarnation);
    let mut budget = op.bytes_max;
    let mut out = Vec::with_capacity(op.partitions.len());
    for (name, wanted) in &op.partitions {
        out.push(serve_partition(core, &op, name, wanted, &mut budget).await);
    }
    out
}

fn failed(wanted: &FetchPartition, error_code: ErrorCode) -> FetchedPartition {
    FetchedPartition {
        topic_id: wanted.topic_id,
        partition: wanted.partition,
        error_code,
        high_watermark: Offset(-1),
        log_start_offset: Offset(-1),
        leader_epoch: LeaderEpoch(-1),
        diverging_epoch: None,
        records: RecordChunks::new(),
    }
}

async fn serve_partition(
    core: &Core,
    op: &ServeOp,
    name: &str,
    wanted: &FetchPartition,
    budget: &mut u64,
) -> FetchedPartition {
    let Some(partition) = core.partition(name, wanted.partition.0) else {
        return failed(wanted, ErrorCode::NotLeaderOrFollower);
    };
    let Some(slot) = &partition.replica else {
        return failed(wanted, ErrorCode::NotLeaderOrFollower);
    };
    let mut out = failed(wanted, ErrorCode::None);
    out.log_start_offset = partition.log.log_start_offset();
    if wanted.current_leader_epoch == REPAIR_READ_EPOCH {
        // A repair read: whole batches below this replica's high watermark, whatever its
        // role; nothing is stepped or counted.
        let limit = slot.high_watermark();
        out.high_watermark = limit;
        let read = partition
            .log
            .read(wanted.fetch_offset, *budget, ReadUpTo::Below(limit))
            .await;
        let read = match read {
            Ok(read) => read,
            Err(e) => return failed(wanted, e.kafka_code()),
        };
        if let Err(e) = take_records(&partition, name, wanted, read.chunks, &mut out).await {
            return failed(wanted, e.kafka_code());
        }
        *budget = budget.saturating_sub(out.records.len() as u64);
        return out;
    }
    let from = if op.step {
        let request = FetchRequest {
            replica: RNodeId(op.replica),
            correlation: CorrelationId(0),
            current_leader_epoch: RLeaderEpoch(wanted.current_leader_epoch.0),
            fetch_offset: ROffset(wanted.fetch_offset.0),
            last_fetched_epoch: (wanted.last_fetched_epoch.0 >= 0)
                .then_some(RLeaderEpoch(wanted.last_fetched_epoch.0)),
            durable_end_offset: ROffset(wanted.durable_end_offset.0.min(wanted.fetch_offset.0)),
        };
        let answers = slot.fetch_request(request, &partition.log).await;
        // A follower may now count toward the high watermark.
        partition.notify_if_advanced();
        match answers.into_iter().next().map(|(_, _, answer)| answer) {
            Some(FetchAnswer::Records {
                from,
                high_watermark,
            }) => {
                out.high_watermark = Offset(high_watermark.0);
                Offset(from.0)
            }
            Some(FetchAnswer::Diverging {
                epoch,
                end_offset,
                high_watermark,
            }) => {
                out.high_watermark = Offset(high_watermark.0);
                out.leader_epoch = slot.epoch().unwrap_or(LeaderEpoch(-1));
                out.diverging_epoch = Some(EpochEndOffset {
                    leader_epoch: LeaderEpoch(epoch.0),
                    end_offset: Offset(end_offset.0),
                });
                return out;
            }
            Some(FetchAnswer::BelowLogStart {
                log_start,
                high_watermark,
            }) => {
                // Kafka's answer: OFFSET_OUT_OF_RANGE with the log start to restart from.
                out.error_code = ErrorCode::OffsetOutOfRange;
                out.log_start_offset = Offset(log_start.0);
                out.high_watermark = Offset(high_watermark.0);
                out.leader_epoch = slot.epoch().unwrap_or(LeaderEpoch(-1));
                return out;
            }
            Some(FetchAnswer::Error(e)) => return failed(wanted, KafkaCode::kafka_code(&e)),
            None => return failed(wanted, ErrorCode::NotLeaderOrFollower),
        }
    } else {
        if !slot.is_leader() || slot.epoch() != Some(wanted.current_leader_epoch) {
            return failed(wanted, ErrorCode::NotLeaderOrFollower);
        }
        out.high_watermark = slot.high_watermark();
        wanted.fetch_offset
    };
    out.leader_epoch = slot.epoch().unwrap_or(LeaderEpoch(-1));
    if *budget == 0 || from >= partition.log.log_end_offset() {
        return out;
    }
    let read = match partition.log.read(from, *budget, ReadUpTo::LogEnd).await {
        Ok(read) => read,
        Err(e) => {
            let code = e.kafka_code();
            if code != ErrorCode::OffsetOutOfRange {
                warn!(topic = name, partition = wanted.partition.0, error = %e, "reading for a follower");
            }
            return failed(wanted, code);
        }
    };
    if let Err(e) = take_records(&partition, name, wanted, read.chunks, &mut out).await {
        // What was read before the failure still goes.
        warn!(topic = name, partition = wanted.partition.0, error = %e, "reading a segment for a follower");
    }
    *budget = budget.saturating_sub(out.records.len() as u64);
    out
}

/// Puts a read's batches into `out`, as stored. A batch that fails its checks ends them: the
/// replica gets the intact batches before it and asks again from the damaged one, once the
/// partition (marked here) is repaired. An I/O error ends them too, and is returned.
async fn take_records<D: spate_storage::io::Disk>(
    partition: &crate::partition::Partition<D>,
    name: &str,
    wanted: &FetchPartition,
    chunks: Vec<ReadChunk<D::File>>,
    out: &mut FetchedPartition,
) -> Result<(), spate_storage::StorageError> {
    for chunk in chunks {
        match chunk {
            ReadChunk::Memory(batch) => {
                out.records.push(batch.header);
                out.records.push(batch.records);
            }
            ReadChunk::File(range) => {
                let loaded = range.load_valid().await?;
                out.records.push(loaded.bytes);
                if let Some(damage) = loaded.damage {
                    error!(topic = name, partition = wanted.partition.0, error = %damage, "corrupt batch on disk, not sent to a replica");
                    partition.damaged.set(Some(loaded.resume_at));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Followers' frames served at once by this broker, over all peers: one per follower core per
/// leader in normal operation (16 brokers of 64 cores each stay below it).
const SERVED_FRAMES_MAX: usize = 1024;

/// Core 0's loop over the transport's replication frames: followers' fetches are served,
/// answers to this broker's fetches delivered.
pub async fn serve_inbox(
    core: Rc<Core>,
    transport: Rc<Transport>,
    rpc: Rc<ReplicaRpc>,
    txn_rpc: Rc<super::txn_rpc::TxnRpc>,
    shutdown: Arc<ShutdownFlag>,
) {
    let serving = Rc::new(Cell::new(0usize));
    loop {
        let inbound =
            futures_lite::future::or(async { Some(transport.recv_replica().await) }, async {
                shutdown.wait().await;
                None
            })
            .await;
        let Some(inbound) = inbound else { return };
        // Transaction frames share this inbox (and its task on core 0).
        let Some(inbound) = super::txn_rpc::dispatch(&core, &txn_rpc, transport.node_id(), inbound)
        else {
            continue;
        };
        match inbound.body {
            Body::ReplicaFetchResponse(response) => rpc.deliver(inbound.correlation_id, response),
            Body::ReplicaFetchRequest(_) if serving.get() >= SERVED_FRAMES_MAX => {
                // Each follower core keeps one frame in flight per leader, so this is only
                // reached by a peer that misbehaves: refused whole, it backs off and retries.
                warn!(
                    from = inbound.from,
                    "too many replica fetches in flight; refused"
                );
                let refusal = ReplicaFetchResponse {
                    error_code: ErrorCode::ThrottlingQuotaExceeded,
                    partitions: Vec::new(),
                };
                let _ = inbound.connection.send(
                    transport.node_id(),
                    inbound.correlation_id,
                    &Body::ReplicaFetchResponse(refusal),
                );
            }
            Body::ReplicaFetchRequest(_) => {
                let core = core.clone();
                let me = transport.node_id();
                let serving = serving.clone();
                serving.set(serving.get() + 1);
                glommio::spawn_local(async move {
                    serve_frame(core, me, inbound).await;
                    serving.set(serving.get() - 1);
                })
                .detach();
            }
            other => debug!(kind = ?other.kind(), "not a replication frame"),
        }
    }
}

/// A frame's partitions owned by one core: their indexes in the frame, and the partitions.
type CoreShare = (Vec<usize>, Vec<(String, FetchPartition)>);

/// Answers one follower's frame: every owning core steps and reads its partitions; if none had
/// records, the frame waits for one to grow (or the follower's wait), then reads again.
async fn serve_frame(core: Rc<Core>, me: i32, inbound: Inbound) {
    let Body::ReplicaFetchRequest(request) = inbound.body else {
        unreachable!("checked by the caller")
    };
    if request.replica_node_id != inbound.from {
        warn!(
            from = inbound.from,
            claimed = request.replica_node_id,
            "replica fetch for another node; ignored"
        );
        return;
    }
    let names = core.topic_names_by_id();
    let count = request.partitions.len();
    let mut results: Vec<Option<FetchedPartition>> = (0..count).map(|_| None).collect();
    // By owning core: (indexes into the request, partitions).
    let mut by_core: BTreeMap<usize, CoreShare> = BTreeMap::new();
    for (i, wanted) in request.partitions.iter().enumerate() {
        match names.get(&wanted.topic_id) {
            Some(name) => {
                let owner = owner_core(name, wanted.partition.0, core.cores);
                let entry = by_core.entry(owner).or_default();
                entry.0.push(i);
                entry.1.push((name.clone(), *wanted));
            }
            None => results[i] = Some(failed(wanted, ErrorCode::UnknownTopicOrPartition)),
        }
    }
    let share = u64::from(request.max_bytes) / by_core.len().max(1) as u64;
    let round = |step: bool| {
        let core = &core;
        let request = &request;
        let by_core = &by_core;
        async move {
            let calls = by_core.iter().map(|(owner, (_, partitions))| {
                core.call(
                    *owner,
                    CoreRequest::ReplicaServe(ServeOp {
                        replica: request.replica_node_id,
                        incarnation: request.replica_incarnation,
                        step,
                        bytes_max: share,
                        partitions: partitions.clone(),
                    }),
                )
            });
            futures::future::join_all(calls).await
        }
    };
    let mut replies = round(true).await;
    let idle = |replies: &[Option<CoreReply>]| {
        replies.iter().all(|reply| match reply {
            Some(CoreReply::ReplicaServed(parts)) => parts.iter().all(|p| {
                p.error_code == ErrorCode::None
                    && p.diverging_epoch.is_none()
                    && p.records.is_empty()
            }),
            _ => false,
        })
    };
    if request.max_wait_ms > 0 && !by_core.is_empty() && idle(&replies) {
        let waits = by_core.iter().map(|(owner, (_, partitions))| {
            let partitions = partitions
                .iter()
                .map(|(name, p)| (name.clone(), p.partition.0, p.fetch_offset))
                .collect();
            Box::pin(core.call(
                *owner,
                CoreRequest::WaitForData {
                    partitions,
                    wait_ms: u64::from(request.max_wait_ms),
                    reader: crate::partition::Reader::Follower,
                },
            ))
        });
        futures::future::select_all(waits).await;
        let again = round(false).await;
        // A partition that lost leadership meanwhile keeps its first answer.
        for (first, second) in replies.iter_mut().zip(again) {
            if let (Some(CoreReply::ReplicaServed(first)), Some(CoreReply::ReplicaServed(second))) =
                (first.as_mut(), second)
            {
                for (a, b) in first.iter_mut().zip(second) {
                    if b.error_code == ErrorCode::None {
                        *a = b;
                    }
                }
            }
        }
    }
    for ((_, (indexes, partitions)), reply) in by_core.iter().zip(replies) {
        match reply {
            Some(CoreReply::ReplicaServed(parts)) if parts.len() == indexes.len() => {
                for (i, part) in indexes.iter().zip(parts) {
                    results[*i] = Some(part);
                }
            }
            _ => {
                for (i, (_, wanted)) in indexes.iter().zip(partitions) {
                    results[*i] = Some(failed(wanted, ErrorCode::NotLeaderOrFollower));
                }
            }
        }
    }
    // Each core may exceed its share by one batch: drop records past the frame's limit (the
    // follower asks again from the same offset).
    let mut total = 0usize;
    let partitions = results
        .into_iter()
        .map(|r| {
            let mut part = r.expect("every partition has a result");
            total += part.records.len();
            if total > REPLICA_FETCH_RECORDS_BYTES_MAX {
                total -= part.records.len();
                part.records = RecordChunks::new();
            }
            part
        })
        .collect();
    let response = ReplicaFetchResponse {
        error_code: ErrorCode::None,
        partitions,
    };
    if let Err(e) = inbound.connection.send(
        me,
        inbound.correlation_id,
        &Body::ReplicaFetchResponse(response),
    ) {
        debug!(to = inbound.from, error = %e, "replica fetch answer not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_replication::FetchError;

    #[test]
    fn the_throttle_closes_for_the_time_its_bytes_take_at_the_rate() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert!(throttle.is_open(start), "open before anything was fetched");
        throttle.charge(start, 500_000, 1_000_000);
        assert!(!throttle.is_open(start + Duration::from_millis(499)));
        assert!(throttle.is_open(start + Duration::from_millis(500)));
        // Bytes fetched while closed queue behind the earlier ones.
        throttle.charge(start + Duration::from_millis(100), 1_000_000, 1_000_000);
        assert!(!throttle.is_open(start + Duration::from_millis(1499)));
        assert!(throttle.is_open(start + Duration::from_millis(1500)));
        // Once open, a charge counts from now, not from the past.
        let later = start + Duration::from_secs(10);
        throttle.charge(later, 100_000, 1_000_000);
        assert!(!throttle.is_open(later + Duration::from_millis(99)));
        assert!(throttle.is_open(later + Duration::from_millis(100)));
    }

    #[test]
    fn throttled_frames_ask_for_a_quarter_second_within_bounds() {
        assert_eq!(throttled_frame_bytes(1_000_000), 250_000);
        assert_eq!(throttled_frame_bytes(1), 64 << 10);
        assert_eq!(throttled_frame_bytes(u64::MAX), FETCH_BYTES_MAX);
    }

    fn request(fetch_offset: i64) -> FetchRequest {
        FetchRequest {
            replica: RNodeId(2),
            correlation: CorrelationId(9),
            current_leader_epoch: RLeaderEpoch(3),
            fetch_offset: ROffset(fetch_offset),
            last_fetched_epoch: Some(RLeaderEpoch(2)),
            durable_end_offset: ROffset(fetch_offset),
        }
    }

    fn fetched(error_code: ErrorCode) -> FetchedPartition {
        FetchedPartition {
            topic_id: [1; 16],
            partition: PartitionIndex(0),
            error_code,
            high_watermark: Offset(7),
            log_start_offset: Offset(0),
            leader_epoch: LeaderEpoch(3),
            diverging_epoch: None,
            records: RecordChunks::new(),
        }
    }

    #[test]
    fn a_leaders_answer_becomes_the_replicas_fetch_response() {
        // Records (none here) from the fetch offset, with the leader's high watermark.
        let (response, records) =
            follower_answer(1, &request(5), fetched(ErrorCode::None)).unwrap();
        assert_eq!(response.leader, RNodeId(1));
        assert_eq!(response.correlation, CorrelationId(9));
        assert_eq!(
            response.answer,
            FetchAnswer::Records {
                from: ROffset(5),
                high_watermark: ROffset(7)
            }
        );
        assert!(records.is_empty() && response.batches.is_empty());
        // A diverging epoch wins over records.
        let mut diverging = fetched(ErrorCode::None);
        diverging.diverging_epoch = Some(EpochEndOffset {
            leader_epoch: LeaderEpoch(2),
            end_offset: Offset(4),
        });
        let (response, _) = follower_answer(1, &request(5), diverging).unwrap();
        assert_eq!(
            response.answer,
            FetchAnswer::Diverging {
                epoch: RLeaderEpoch(2),
                end_offset: ROffset(4),
                high_watermark: ROffset(7)
            }
        );
        // Errors map back to the protocol's; unknown codes read as "not the leader" (retry).
        for (code, expected) in [
            (ErrorCode::FencedLeaderEpoch, FetchError::FencedLeaderEpoch),
            (
                ErrorCode::UnknownLeaderEpoch,
                FetchError::UnknownLeaderEpoch,
            ),
            (ErrorCode::OffsetOutOfRange, FetchError::OffsetOutOfRange),
            (
                ErrorCode::UnknownTopicOrPartition,
                FetchError::NotLeaderOrFollower,
            ),
        ] {
            let (response, _) = follower_answer(1, &request(5), fetched(code)).unwrap();
            assert_eq!(response.answer, FetchAnswer::Error(expected), "{code:?}");
        }
        // OFFSET_OUT_OF_RANGE with a log start past the fetch offset: the leader no longer has
        // what the replica lacks, and it restarts its log there.
        let mut below = fetched(ErrorCode::OffsetOutOfRange);
        below.log_start_offset = Offset(40);
        let (response, _) = follower_answer(1, &request(5), below).unwrap();
        assert_eq!(
            response.answer,
            FetchAnswer::BelowLogStart {
                log_start: ROffset(40),
                high_watermark: ROffset(7)
            }
        );
        // Bytes that are not batches are refused whole.
        let mut garbage = fetched(ErrorCode::None);
        garbage.records = RecordChunks::from(bytes::Bytes::from_static(&[0xff; 70]));
        assert!(follower_answer(1, &request(5), garbage).is_err());
    }
}
