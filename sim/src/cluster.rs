//! The simulated cluster: brokers, their network and disks, the fault schedule, and the checker.
//!
//! One `Sim` per seed. Each step: faults (while they last), clients, packet delivery, the
//! controller quorum (ticks, the leader's timers, persistence, applied entries), and every broker's
//! metadata publication and replica ticks. The checker runs inside: on every high watermark, ack,
//! leadership, consumer read, log recovery and committed metadata entry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use spate_controller::controller::{
    AlterPartition, AlterPartitionError as ControllerAlterError, Controller, ControllerConfig,
    CreateTopic, IsrMember, RegisterBroker, UNCLEAN_LEADER_ELECTION_CONFIG,
};
use spate_controller::ids::{
    Incarnation, LeaderEpoch as CLeaderEpoch, MetadataOffset, MonotonicMs, NodeId as CNodeId,
    PartitionEpoch as CPartitionEpoch, PartitionIndex,
};
use spate_controller::image::{MetadataImage, PartitionState as CPartitionState};
use spate_controller::log_store::{PersistBatch, RaftLogStore};
use spate_controller::node::{
    decode_message, encode_message, Actions, CommittedRead, ControllerNode, MetadataFollower,
    NodeConfig,
};
use spate_controller::records::{Endpoint, MetadataRecord};
use spate_controller::rng::{RandomSource, SplitMix64};
use spate_replication::{
    AckDurability, AckError, Acks, Action, AlterPartitionError, AlterPartitionRequest,
    AlterPartitionResponse, CorrelationId, EpochHistory, Event, FetchAnswer, FetchRequest,
    FetchResponse, LeaderEpoch, NodeId, NowMs, Offset, PartitionEpoch, PartitionState, Replica,
    ReplicaConfig, RoleKind, WaiterId,
};
use spate_storage::io::mem::{FaultOp, MemDisk};
use spate_storage::{block_on, FlushPolicy, Log, LogConfig, ReadChunk, ReadUpTo, StorageError};

use crate::model::{produce_batch, records_of, sim_batches_of, PartitionModel, Rec, SimBatch};

/// Simulated milliseconds per step.
const TICK_MS: u64 = 10;
/// Steps with faults.
const FAULT_STEPS: u64 = 600;
/// Steps after healing within which every partition must acknowledge a new produce and converge.
const LIVENESS_STEPS_MAX: u64 = 2000;
/// No disk fault is armed this close to the end of the faults: one that fires after the heal would
/// stop a broker during the liveness phase, which must see a fault-free cluster.
const DISK_FAULT_QUIET_STEPS: u64 = 100;
/// The controller fences a broker silent this long (Kafka: 9 s; everything is scaled down).
const SESSION_TIMEOUT_MS: u64 = 600;
/// Brokers heartbeat this often.
const HEARTBEAT_EVERY_STEPS: u64 = 10;
/// A broker whose image does not show its registration yet sends it again this often.
const REGISTER_EVERY_STEPS: u64 = 10;
/// Observers fetch committed metadata this often.
const METADATA_FETCH_EVERY_STEPS: u64 = 3;
/// The admin client looks for the topic this often, and creates it if it is missing.
const ADMIN_EVERY_STEPS: u64 = 10;
/// Raft ticks once per step: an election timeout of 200-400 ms, above a round trip (up to 8
/// steps) plus two persistence delays (up to 3 steps each), so elections finish.
const ELECTION_TICKS: usize = 20;
const RAFT_HEARTBEAT_TICKS: usize = 4;
/// Snapshots often, so that a voter that was down long catches up from one.
const SNAPSHOT_EVERY_ENTRIES: u64 = 64;
const RAFT_DISK_DELAY_STEPS_MAX: u64 = 3;
/// The first brokers are the voters; the rest are observers.
const VOTERS: usize = 3;
const BROKERS_MAX: usize = 5;
const PARTITIONS: usize = 3;
const REPLICATION_FACTOR: i16 = 3;
const MIN_INSYNC_REPLICAS: usize = 2;
const TOPIC: &str = "events";
/// A leader's fetch answer carries about this many bytes of batches (at least one batch).
const FETCH_BYTES_MAX: u64 = 1024;
/// A consumer reads about this many bytes at a time.
const CONSUME_BYTES_MAX: u64 = 4096;
const PRODUCE_TIMEOUT_MS: u64 = 500;
/// Records per produced batch at most.
const BATCH_RECORDS_MAX: u64 = 3;
const _: () = assert!(VOTERS <= BROKERS_MAX && REPLICATION_FACTOR as usize <= VOTERS);
const _: () = assert!(MIN_INSYNC_REPLICAS <= REPLICATION_FACTOR as usize);

/// Which world a seed runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What Spate promises: `write.caching=false` (acks=all counts fsynced records), every crash
    /// kind including power loss of the whole cluster, no unclean election.
    Safe,
    /// Unsafe on purpose: `write.caching=true` (acks=all counts records in memory) with power
    /// losses, often of every broker at once. The checker must catch lost acknowledged records.
    UnflushedAcksWithPowerLoss,
    /// Unsafe on purpose: the topic allows unclean leader election, and power losses and
    /// partitions leave only out-of-sync replicas alive. The checker must catch the loss.
    UncleanElection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashKind {
    /// The process dies: the disk keeps what the log handed it, the log's buffer is lost.
    Process,
    /// The machine loses power: unsynced bytes may be lost or torn.
    PowerLoss,
}

/// What a run did, summed over seeds to show the simulator is not idle.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub produced: u64,
    pub acked: u64,
    pub ack_errors: u64,
    pub produce_refused: u64,
    pub committed: u64,
    pub consumed: u64,
    /// Consumer reads that found the leader's high watermark below one it saw from an earlier
    /// leader: allowed (a new leader learns its high watermark from its followers' fetches), and
    /// counted to show the scope of the high watermark check is the one Kafka gives.
    pub hw_behind_after_leader_change: u64,
    pub leader_changes: u64,
    pub truncations: u64,
    pub crashes: u64,
    pub power_losses: u64,
    pub cluster_power_losses: u64,
    pub disk_faults_armed: u64,
    pub storage_failures: u64,
    pub recoveries_checked: u64,
    pub metadata_entries: u64,
    pub raft_leaders: u64,
    pub isr_changes: u64,
    pub alter_refused: u64,
    pub fences: u64,
    /// A hash of every final log and the counts: equal for two runs of one seed.
    pub digest: u64,
}

impl Stats {
    /// Adds `other`'s counts (the digest is not summed).
    pub fn add(&mut self, o: &Stats) {
        self.produced += o.produced;
        self.acked += o.acked;
        self.ack_errors += o.ack_errors;
        self.produce_refused += o.produce_refused;
        self.committed += o.committed;
        self.consumed += o.consumed;
        self.hw_behind_after_leader_change += o.hw_behind_after_leader_change;
        self.leader_changes += o.leader_changes;
        self.truncations += o.truncations;
        self.crashes += o.crashes;
        self.power_losses += o.power_losses;
        self.cluster_power_losses += o.cluster_power_losses;
        self.disk_faults_armed += o.disk_faults_armed;
        self.storage_failures += o.storage_failures;
        self.recoveries_checked += o.recoveries_checked;
        self.metadata_entries += o.metadata_entries;
        self.raft_leaders += o.raft_leaders;
        self.isr_changes += o.isr_changes;
        self.alter_refused += o.alter_refused;
        self.fences += o.fences;
    }
}

/// Runs one seed; a failed check comes back as its message, with the seed and the command that
/// replays it.
///
/// # Errors
/// The first failed check (a panic anywhere in the run, the simulator's own checks included).
pub fn run_seed(seed: u64, mode: Mode) -> Result<Stats, String> {
    catch_unwind(AssertUnwindSafe(|| Sim::new(seed, mode).run())).map_err(|e| {
        let what = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!(
            "seed {seed} ({mode:?}) failed: {what}\n  replay: SPATE_CLUSTER_SEED={seed} \
             SPATE_CLUSTER_TRACE=1 cargo test -p spate-sim --test cluster"
        )
    })
}

// ---- network ----

#[derive(Debug)]
enum Msg {
    Raft(Vec<u8>),
    Register,
    Heartbeat,
    Alter {
        partition: usize,
        request: AlterPartitionRequest,
        /// Each proposed member with the incarnation the leader saw it fetch with (KIP-903).
        members: Vec<(NodeId, Option<u64>)>,
    },
    AlterResp {
        partition: usize,
        request: AlterPartitionRequest,
        response: AlterPartitionResponse,
    },
    NotController {
        leader: Option<CNodeId>,
    },
    MetadataRead {
        from: MetadataOffset,
    },
    MetadataAnswer(CommittedRead),
    Fetch {
        partition: usize,
        request: FetchRequest,
    },
    FetchResp {
        partition: usize,
        response: FetchResponse<SimBatch>,
        records: Bytes,
    },
}

#[derive(Debug)]
struct Packet {
    at: u64,
    seq: u64,
    from: usize,
    to: usize,
    /// Both ends' incarnations when sent: a restart closes its connections, so nothing sent to or
    /// by an earlier life is delivered (answers are tied to the connection that asked).
    from_incarnation: u64,
    to_incarnation: u64,
    msg: Msg,
}

// ---- brokers ----

/// One partition's replica on one broker: the real log, the real core, and the checker's mirror
/// of the log (one record per offset), kept equal to the log by every append and truncation.
struct Part {
    log: Log<MemDisk>,
    replica: Replica<SimBatch>,
    shadow: Vec<Rec>,
    last_state: Option<PartitionState>,
    seen_role: (RoleKind, Option<LeaderEpoch>),
    /// Below this the shadow was checked against the committed sequence.
    hw_checked: usize,
}

/// What a partition's log held when its broker stopped: the reopened log must be a prefix of it,
/// at least `floor` long (its durable offset then).
struct Stopped {
    shadow: Vec<Rec>,
    floor: usize,
}

struct PendingAlter {
    to: usize,
    to_incarnation: u64,
    partition: usize,
    request: AlterPartitionRequest,
    state: PartitionState,
}

struct Broker {
    id: NodeId,
    voter: bool,
    incarnation: u64,
    up: bool,
    down_until: u64,
    // The controller side (voters).
    raft_disk: RaftLogStore,
    /// Raft batches handed to the disk and not yet durable, with the step they complete at.
    writing: VecDeque<(u64, PersistBatch)>,
    node: Option<ControllerNode>,
    controller: Controller,
    was_leader: bool,
    /// AlterPartition answers waiting for their records to commit, by (term, offset).
    pending_alters: BTreeMap<(u64, u64), Vec<PendingAlter>>,
    // The metadata side (observers).
    follower: MetadataFollower,
    controller_hint: Option<usize>,
    // The data side.
    disk: MemDisk,
    parts: Vec<Option<Part>>,
    stopped: Vec<Option<Stopped>>,
    /// Each partition's high watermark checkpoint as the broker keeps it (a durable file,
    /// written now and then with the current high watermark, never lowered by a truncation):
    /// a restarted replica starts from it, capped at its recovered log end.
    hw_checkpoints: Vec<Offset>,
    /// The incarnation each follower last fetched with, for the ISR proposals (KIP-903).
    fetch_incarnations: BTreeMap<NodeId, u64>,
}

struct Sim {
    seed: u64,
    mode: Mode,
    trace: bool,
    rng: SplitMix64,
    step: u64,
    durability: AckDurability,
    brokers: Vec<Broker>,
    packets: Vec<Packet>,
    packet_seq: u64,
    blocked: BTreeSet<(usize, usize)>,
    drop_per_mille: u64,
    delay_steps_max: u64,
    faults: bool,
    // The checker's model of the metadata log.
    global: Vec<(u64, Vec<MetadataRecord>)>,
    raft_leaders_by_term: BTreeMap<u64, usize>,
    reference: MetadataImage,
    partition_leaders: BTreeMap<(usize, i32), Option<CNodeId>>,
    // The checker's model of the data.
    models: Vec<PartitionModel>,
    leaders_by_epoch: BTreeMap<(usize, LeaderEpoch), NodeId>,
    leader_hw: BTreeMap<(usize, LeaderEpoch), Offset>,
    /// The highest high watermark the consumer saw per partition, from any leader.
    consumer_hw_max: Vec<Offset>,
    /// Every produce: its partition, base offset and record count, by its first value.
    produced: BTreeMap<u64, (usize, Offset, u64)>,
    acked: BTreeSet<u64>,
    ack_failed: BTreeSet<u64>,
    /// Produces waiting for their answer, with the broker they wait on: a crash of that broker
    /// ends them (the client sees its connection close and gives up on them, or retries).
    waiting: BTreeMap<u64, usize>,
    next_value: u64,
    stats: Stats,
}

fn log_config() -> LogConfig {
    LogConfig {
        // Small, so that a run rolls segments and evicts the tail cache.
        segment_bytes_max: 16 << 10,
        segment_ms: i64::MAX / 2,
        index_interval_bytes: 1024,
        retention_ms: None,
        retention_bytes: None,
        // The simulator flushes as the broker does: a leader after its produces, a follower after
        // each append (under write.caching=false), plus a random group commit.
        flush: FlushPolicy::Never,
        tail_cache_bytes_max: 4 << 10,
        write_buffer_bytes_max: 4 << 10,
        batch_bytes_max: 16 << 10,
        preallocate_bytes: 4 << 10,
        // Small steps too, so a run grows segments by several preallocations.
        preallocate_step_bytes_max: 8 << 10,
        active_checkpoint_bytes: 4 << 10,
        producers_per_partition_max: 100,
        producer_id_expiration_ms: 24 * 3600 * 1000,
    }
}

fn controller_config() -> ControllerConfig {
    ControllerConfig {
        session_timeout_ms: SESSION_TIMEOUT_MS,
        replication_factor_max: REPLICATION_FACTOR,
        default_replication_factor: REPLICATION_FACTOR,
    }
}

fn partition_dir(p: usize) -> PathBuf {
    PathBuf::from(format!("/{TOPIC}-{p}"))
}

fn endpoint(id: NodeId) -> Endpoint {
    Endpoint {
        host: format!("broker-{id}"),
        port: 9092,
    }
}

/// The controller's state of a partition as the replication protocol takes it (as the broker's
/// `partition_state` does).
fn replica_state(p: &CPartitionState) -> PartitionState {
    PartitionState {
        replicas: p.replicas.iter().map(|n| NodeId(n.0)).collect(),
        leader: p.leader.map(|n| NodeId(n.0)),
        leader_epoch: LeaderEpoch(p.leader_epoch.0),
        partition_epoch: PartitionEpoch(p.partition_epoch.0),
        isr: p.isr.iter().map(|n| NodeId(n.0)).collect(),
    }
}

/// The replication error a controller refusal maps to (as the broker's Kafka error codes do).
fn alter_error(e: &ControllerAlterError) -> AlterPartitionError {
    match e {
        ControllerAlterError::FencedLeaderEpoch { .. } => AlterPartitionError::FencedLeaderEpoch,
        ControllerAlterError::InvalidUpdateVersion { .. } => {
            AlterPartitionError::InvalidUpdateVersion
        }
        ControllerAlterError::IneligibleReplica { .. } => AlterPartitionError::IneligibleReplica,
        _ => AlterPartitionError::OperationNotAttempted,
    }
}

/// Whether a storage error is an operating failure the broker handles by stopping (I/O, a fenced
/// log, a full disk), as opposed to a bug (corruption, a refused batch), which fails the run.
fn is_operating_failure(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::Io { .. } | StorageError::Fenced | StorageError::DiskFull { .. }
    )
}

/// Everything `log` holds from `from` below `to`, as bytes of whole batches (file ranges loaded,
/// which checks their CRCs).
fn read_bytes(
    log: &Log<MemDisk>,
    from: Offset,
    bytes_max: u64,
    up_to: ReadUpTo,
) -> Result<Bytes, StorageError> {
    let wire = spate_wire::types::Offset(from.0);
    let read = block_on(log.read(wire, bytes_max, up_to))?;
    let mut out = BytesMut::new();
    for chunk in read.chunks {
        match chunk {
            ReadChunk::Memory(b) => out.extend_from_slice(&b.to_bytes()),
            ReadChunk::File(range) => out.extend_from_slice(&block_on(range.load())?),
        }
    }
    Ok(out.freeze())
}

/// The whole log as records.
fn read_all(log: &Log<MemDisk>) -> Result<Vec<Rec>, StorageError> {
    let mut out = Vec::new();
    let end = log.log_end_offset().0;
    while (out.len() as i64) < end {
        let bytes = read_bytes(log, Offset(out.len() as i64), 64 << 10, ReadUpTo::LogEnd)?;
        let recs = records_of(&bytes);
        assert!(
            !recs.is_empty(),
            "a read below the log end returned nothing"
        );
        out.extend(recs);
    }
    Ok(out)
}

fn fnv(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100_0000_01b3)
}

impl Sim {
    fn new(seed: u64, mode: Mode) -> Sim {
        let mut rng = SplitMix64::new(seed);
        let count = VOTERS + rng.below((BROKERS_MAX - VOTERS) as u64 + 1) as usize;
        let durability = match mode {
            Mode::UnflushedAcksWithPowerLoss => AckDurability::Replicated,
            Mode::Safe | Mode::UncleanElection => AckDurability::ReplicatedAndFlushed,
        };
        let voters: Vec<CNodeId> = (1..=VOTERS as i32).map(CNodeId).collect();
        let brokers = (0..count)
            .map(|i| Broker {
                id: NodeId(i as i32 + 1),
                voter: i < VOTERS,
                incarnation: 1,
                up: false,
                down_until: 0,
                raft_disk: RaftLogStore::new(&voters),
                writing: VecDeque::new(),
                node: None,
                controller: Controller::new(controller_config()),
                was_leader: false,
                pending_alters: BTreeMap::new(),
                follower: MetadataFollower::new(),
                controller_hint: None,
                disk: MemDisk::new(),
                parts: (0..PARTITIONS).map(|_| None).collect(),
                stopped: (0..PARTITIONS).map(|_| None).collect(),
                hw_checkpoints: vec![Offset(0); PARTITIONS],
                fetch_incarnations: BTreeMap::new(),
            })
            .collect();
        let drop_per_mille = rng.below(100);
        // One seed in four has a slow network: messages of a deposed leader's epoch arrive long
        // after the controller moved on.
        let delay_steps_max = if rng.below(4) == 0 {
            1 + rng.below(20)
        } else {
            1 + rng.below(4)
        };
        let mut sim = Sim {
            seed,
            mode,
            trace: std::env::var_os("SPATE_CLUSTER_TRACE").is_some(),
            rng,
            step: 0,
            durability,
            brokers,
            packets: Vec::new(),
            packet_seq: 0,
            blocked: BTreeSet::new(),
            drop_per_mille,
            delay_steps_max,
            faults: true,
            global: Vec::new(),
            raft_leaders_by_term: BTreeMap::new(),
            reference: MetadataImage::new(),
            partition_leaders: BTreeMap::new(),
            models: (0..PARTITIONS).map(|_| PartitionModel::default()).collect(),
            leaders_by_epoch: BTreeMap::new(),
            leader_hw: BTreeMap::new(),
            consumer_hw_max: vec![Offset(0); PARTITIONS],
            produced: BTreeMap::new(),
            acked: BTreeSet::new(),
            ack_failed: BTreeSet::new(),
            waiting: BTreeMap::new(),
            next_value: 1,
            stats: Stats::default(),
        };
        for i in 0..count {
            sim.start(i);
        }
        sim
    }

    fn now_ms(&self) -> u64 {
        self.step * TICK_MS
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.rng.below(1000) < per_mille
    }

    fn log_trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{}] {}", self.step, what());
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "{what} (seed {}, step {}, mode {:?}, {} brokers)",
            self.seed,
            self.step,
            self.mode,
            self.brokers.len()
        )
    }

    fn index_of(&self, id: NodeId) -> usize {
        let i = id.0 as usize - 1;
        assert!(i < self.brokers.len(), "unknown broker {id}");
        i
    }

    // ---- lifecycle ----

    fn start(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let b = &mut self.brokers[i];
        assert!(!b.up);
        b.up = true;
        b.controller_hint = None;
        b.fetch_incarnations.clear();
        if b.voter {
            let voters = (1..=VOTERS as i32).map(CNodeId).collect();
            let mut config = NodeConfig::new(CNodeId(b.id.0), voters, seed);
            config.election_ticks = ELECTION_TICKS;
            config.heartbeat_ticks = RAFT_HEARTBEAT_TICKS;
            config.snapshot_every_entries = SNAPSHOT_EVERY_ENTRIES;
            let node = ControllerNode::new(config, b.raft_disk.clone());
            b.node = Some(node.expect("valid node config"));
        } else {
            b.follower = MetadataFollower::new();
        }
        let (id, inc) = (b.id, b.incarnation);
        self.log_trace(|| format!("broker {id} starts, incarnation {inc}"));
    }

    fn crash(&mut self, i: usize, kind: CrashKind) {
        if !self.brokers[i].up {
            return;
        }
        let down_for = 5 + self.rng.below(60);
        let reached = self.rng.below(self.brokers[i].writing.len() as u64 + 1) as usize;
        let power_seed = self.rng.next_u64();
        let b = &mut self.brokers[i];
        b.up = false;
        b.down_until = self.step + down_for;
        // Its connections close now; its next life registers with a larger incarnation.
        b.incarnation += 1;
        // Raft batches in flight: a prefix reached the disk, without their acknowledgement.
        for (_, batch) in b.writing.drain(..).take(reached) {
            b.raft_disk.apply(&batch);
        }
        b.writing.clear();
        b.node = None;
        b.was_leader = false;
        b.controller = Controller::new(controller_config());
        b.pending_alters.clear();
        for p in 0..PARTITIONS {
            if let Some(part) = b.parts[p].take() {
                b.stopped[p] = Some(Stopped {
                    floor: part.log.durable_offset().0 as usize,
                    shadow: part.shadow,
                });
                // Dropped without a close: the write-behind buffer goes with the process.
            }
        }
        let gone: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| **w == i)
            .map(|(v, _)| *v)
            .collect();
        for v in gone {
            self.waiting.remove(&v);
            self.ack_failed.insert(v);
        }
        let b = &mut self.brokers[i];
        if kind == CrashKind::PowerLoss {
            b.disk.crash(power_seed);
            self.stats.power_losses += 1;
        }
        self.stats.crashes += 1;
        let id = b.id;
        self.log_trace(|| format!("broker {id} crashes: {kind:?}"));
    }

    /// A storage operation failed cleanly: the broker stops (as the broker must be restarted), and
    /// its reopened log must be a prefix of what it held plus what the failed call tried to add.
    fn storage_failure(&mut self, i: usize, p: usize, e: &StorageError, tried: &[Rec]) {
        if !is_operating_failure(e) {
            self.fail(format!(
                "broker {} partition {p}: storage error {e}",
                self.brokers[i].id
            ));
        }
        self.stats.storage_failures += 1;
        let id = self.brokers[i].id;
        self.log_trace(|| format!("broker {id} partition {p}: {e}, stopping"));
        if let Some(part) = self.brokers[i].parts[p].as_mut() {
            part.shadow.extend_from_slice(tried);
        }
        self.crash(i, CrashKind::Process);
    }

    // ---- the network ----

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        let to_incarnation = self.brokers[to].incarnation;
        self.reply(from, to, to_incarnation, msg);
    }

    /// Sends to one life of `to` only (an answer goes back on the connection that asked).
    fn reply(&mut self, from: usize, to: usize, to_incarnation: u64, msg: Msg) {
        if self.faults && self.chance(self.drop_per_mille) {
            return;
        }
        let delay = if self.faults {
            1 + self.rng.below(self.delay_steps_max)
        } else {
            1
        };
        self.packet_seq += 1;
        self.packets.push(Packet {
            at: self.step + delay,
            seq: self.packet_seq,
            from,
            to,
            from_incarnation: self.brokers[from].incarnation,
            to_incarnation,
            msg,
        });
    }

    fn deliver(&mut self) {
        let (mut due, later): (Vec<Packet>, Vec<Packet>) = std::mem::take(&mut self.packets)
            .into_iter()
            .partition(|p| p.at <= self.step);
        self.packets = later;
        due.sort_by_key(|p| (p.at, p.seq));
        for p in due {
            let (from, to) = (&self.brokers[p.from], &self.brokers[p.to]);
            if self.blocked.contains(&(p.from, p.to))
                || !from.up
                || !to.up
                || p.from_incarnation != from.incarnation
                || p.to_incarnation != to.incarnation
            {
                continue;
            }
            self.receive(p);
        }
    }

    fn receive(&mut self, p: Packet) {
        let (from, to) = (p.from, p.to);
        match p.msg {
            Msg::Raft(bytes) => {
                let message = decode_message(&bytes).expect("what we encoded decodes");
                let node = self.brokers[to].node.as_mut().expect("a voter that is up");
                // Refusals (a stale response) are part of life on a lossy network.
                let _ = node.step(message);
            }
            Msg::Register | Msg::Heartbeat | Msg::Alter { .. } => {
                self.serve_controller(to, from, p.from_incarnation, p.msg)
            }
            Msg::NotController { leader } => {
                self.brokers[to].controller_hint = leader.map(|l| l.0 as usize - 1);
            }
            Msg::AlterResp {
                partition,
                request,
                response,
            } => {
                let now_ms = NowMs(self.now_ms());
                let event = Event::AlterPartitionResponse {
                    request,
                    response,
                    now_ms,
                };
                self.step_part(to, partition, event, None);
            }
            Msg::MetadataRead { from: offset } => {
                let Some(node) = self.brokers[to].node.as_ref() else {
                    return;
                };
                let read = node.read_committed(offset);
                self.reply(to, from, p.from_incarnation, Msg::MetadataAnswer(read));
            }
            Msg::MetadataAnswer(read) => {
                let follower = &mut self.brokers[to].follower;
                follower.apply(read).expect("committed reads decode");
            }
            Msg::Fetch { partition, request } => {
                let replica = request.replica;
                self.brokers[to]
                    .fetch_incarnations
                    .insert(replica, p.from_incarnation);
                let now_ms = NowMs(self.now_ms());
                let log_start = self.brokers[to].parts[partition]
                    .as_ref()
                    .map_or(Offset(0), |part| Offset(part.log.log_start_offset().0));
                let event = Event::FetchRequest {
                    request,
                    log_start,
                    now_ms,
                };
                self.step_part_answering(to, partition, event, (from, p.from_incarnation));
            }
            Msg::FetchResp {
                partition,
                response,
                records,
            } => {
                let now_ms = NowMs(self.now_ms());
                let event = Event::FetchResponse { response, now_ms };
                self.step_part(to, partition, event, Some(records));
            }
        }
    }

    // ---- the controller quorum ----

    /// Where broker `i` sends its controller requests: its own node's leader, or the last hint.
    fn controller_target(&mut self, i: usize) -> usize {
        let b = &self.brokers[i];
        if let Some(leader) = b.node.as_ref().and_then(|n| n.leader()) {
            return leader.0 as usize - 1;
        }
        match b.controller_hint {
            Some(j) => j,
            None => self.rng.below(VOTERS as u64) as usize,
        }
    }

    fn serve_controller(&mut self, j: usize, from: usize, from_incarnation: u64, msg: Msg) {
        let now = MonotonicMs(self.now_ms());
        let id = CNodeId(self.brokers[from].id.0);
        let incarnation = Incarnation(from_incarnation);
        let Some(node) = self.brokers[j].node.as_mut() else {
            return;
        };
        if !node.is_leader() {
            let leader = node.leader();
            self.reply(j, from, from_incarnation, Msg::NotController { leader });
            return;
        }
        let image = node.speculative_image().clone();
        let controller = &mut self.brokers[j].controller;
        let records = match msg {
            Msg::Register => controller.register_broker(
                &image,
                now,
                RegisterBroker {
                    node: id,
                    incarnation,
                    client: endpoint(NodeId(id.0)),
                    cluster: endpoint(NodeId(id.0)),
                    rack: None,
                },
            ),
            Msg::Heartbeat => controller.heartbeat(&image, now, id, incarnation),
            Msg::Alter {
                partition,
                request,
                members,
            } => {
                let answer = (from, from_incarnation, partition, request.clone());
                self.alter_partition(j, &image, answer, members);
                return;
            }
            _ => unreachable!("not a controller request"),
        };
        if let Ok(records) = records {
            self.propose(j, &records);
        }
    }

    fn alter_partition(
        &mut self,
        j: usize,
        image: &MetadataImage,
        (to, to_incarnation, partition, request): (usize, u64, usize, AlterPartitionRequest),
        members: Vec<(NodeId, Option<u64>)>,
    ) {
        let Some(topic_id) = image.topic_id(TOPIC) else {
            return;
        };
        let req = AlterPartition {
            node: CNodeId(self.brokers[to].id.0),
            incarnation: Incarnation(to_incarnation),
            topic_id,
            index: PartitionIndex(partition as i32),
            leader_epoch: CLeaderEpoch(request.leader_epoch.0),
            partition_epoch: CPartitionEpoch(request.partition_epoch.0),
            new_isr: members
                .iter()
                .map(|(n, inc)| IsrMember {
                    node: CNodeId(n.0),
                    incarnation: inc.map(Incarnation),
                })
                .collect(),
        };
        let decided = self.brokers[j].controller.alter_partition(image, &req);
        let response = match decided {
            Ok(outcome) if outcome.records.is_empty() => Ok(replica_state(&outcome.partition)),
            Ok(outcome) => {
                let node = self.brokers[j].node.as_mut().expect("leader is up");
                if let Ok(id) = node.propose(&outcome.records) {
                    let pending = PendingAlter {
                        to,
                        to_incarnation,
                        partition,
                        request,
                        state: replica_state(&outcome.partition),
                    };
                    self.brokers[j]
                        .pending_alters
                        .entry((id.term.0, id.offset.0))
                        .or_default()
                        .push(pending);
                    return;
                }
                Err(AlterPartitionError::OperationNotAttempted)
            }
            Err(e) => {
                self.log_trace(|| format!("controller refuses {req:?}: {e}"));
                self.stats.alter_refused += 1;
                Err(alter_error(&e))
            }
        };
        let msg = Msg::AlterResp {
            partition,
            request,
            response,
        };
        self.reply(j, to, to_incarnation, msg);
    }

    fn propose(&mut self, j: usize, records: &[MetadataRecord]) {
        if records.is_empty() {
            return;
        }
        let node = self.brokers[j].node.as_mut().expect("leader is up");
        // A proposal that does not commit is retried by whoever asked (heartbeats, registrations,
        // the leaders' ISR proposals, the controller's own timer).
        let _ = node.propose(records);
    }

    fn raft_leader(&self) -> Option<usize> {
        (0..VOTERS).find(|&j| self.brokers[j].node.as_ref().is_some_and(|n| n.is_leader()))
    }

    /// The raft leader's timers: fencing expired sessions, and the admin creating the topic.
    fn controller_timers(&mut self) {
        let Some(j) = self.raft_leader() else {
            return;
        };
        let now = MonotonicMs(self.now_ms());
        let node = self.brokers[j].node.as_mut().expect("leader is up");
        let image = node.speculative_image().clone();
        let records = self.brokers[j].controller.tick(&image, now);
        self.propose(j, &records);
        if self.step % ADMIN_EVERY_STEPS != 0 || image.topic_id(TOPIC).is_some() {
            return;
        }
        let configs = if self.mode == Mode::UncleanElection {
            vec![(
                UNCLEAN_LEADER_ELECTION_CONFIG.to_string(),
                "true".to_string(),
            )]
        } else {
            Vec::new()
        };
        let request = CreateTopic {
            name: TOPIC.to_string(),
            partitions: PARTITIONS as i32,
            replication_factor: REPLICATION_FACTOR,
            assignment: None,
            configs,
        };
        let node = self.brokers[j].node.as_mut().expect("leader is up");
        let image = node.speculative_image().clone();
        let controller = &mut self.brokers[j].controller;
        // Refused while fewer than three brokers are live: tried again later.
        if let Ok(records) = controller.create_topic(&image, &mut self.rng, request) {
            self.propose(j, &records);
        }
    }

    /// Runs every voter's ready loop until all are quiet.
    fn drain_raft(&mut self) {
        loop {
            let mut busy = false;
            for j in 0..VOTERS {
                let Some(node) = self.brokers[j].node.as_mut() else {
                    continue;
                };
                let actions = node.ready();
                if !actions.is_empty() {
                    busy = true;
                    self.handle_raft(j, actions);
                }
                self.check_raft_leader(j);
            }
            if !busy {
                return;
            }
        }
    }

    fn handle_raft(&mut self, j: usize, actions: Actions) {
        for m in actions.messages {
            let to = m.to.0 as usize - 1;
            self.send(j, to, Msg::Raft(encode_message(&m.message)));
        }
        for batch in actions.persist {
            let at = self.step + self.rng.below(RAFT_DISK_DELAY_STEPS_MAX + 1);
            // The disk completes in order: never before the batch ahead of it.
            let writing = &mut self.brokers[j].writing;
            let at = writing.back().map_or(at, |(prev, _)| at.max(*prev));
            writing.push_back((at, batch));
        }
        for applied in actions.applied {
            let (term, offset) = (applied.term.0, applied.offset.0);
            self.record_global(j, term, offset, &applied.records);
            let answers = self.brokers[j]
                .pending_alters
                .remove(&(term, offset))
                .unwrap_or_default();
            for a in answers {
                let response = match &applied.outcome {
                    Ok(()) => Ok(a.state),
                    Err(_) => Err(AlterPartitionError::OperationNotAttempted),
                };
                let msg = Msg::AlterResp {
                    partition: a.partition,
                    request: a.request,
                    response,
                };
                self.reply(j, a.to, a.to_incarnation, msg);
            }
            // Proposals at or below an applied offset with another term were lost with their term.
            self.brokers[j]
                .pending_alters
                .retain(|(_, o), _| *o > offset);
        }
    }

    fn check_raft_leader(&mut self, j: usize) {
        let b = &mut self.brokers[j];
        let node = b.node.as_ref().expect("checked up");
        let leading = node.is_leader();
        if leading {
            let term = node.term().0;
            let first = *self.raft_leaders_by_term.entry(term).or_insert(j);
            if first != j {
                self.fail(format!("two raft leaders in term {term}: {first} and {j}"));
            }
            if !b.was_leader {
                self.stats.raft_leaders += 1;
            }
        } else if b.was_leader {
            // Sessions and answers in waiting belong to one term of leadership.
            b.controller.reset();
            b.pending_alters.clear();
        }
        b.was_leader = leading;
    }

    fn complete_raft_writes(&mut self) {
        for j in 0..VOTERS {
            let b = &mut self.brokers[j];
            while b.writing.front().is_some_and(|(at, _)| *at <= self.step) {
                let (_, batch) = b.writing.pop_front().expect("checked");
                b.raft_disk.apply(&batch);
                let token = batch.token.expect("batches carry tokens");
                b.node.as_mut().expect("up").on_persisted(token);
            }
        }
    }

    /// The global committed metadata sequence: the first voter to apply an offset defines it, every
    /// other must agree. The partitions of the reference image keep one leader per leader epoch.
    fn record_global(&mut self, j: usize, term: u64, offset: u64, records: &[MetadataRecord]) {
        let o = offset as usize;
        if o <= self.global.len() {
            let (t, r) = &self.global[o - 1];
            if *t != term || r != records {
                self.fail(format!(
                    "voter {j} applied a different metadata entry at {o}: term {term} {records:?}, \
                     committed term {t} {r:?}"
                ));
            }
            return;
        }
        assert_eq!(
            o,
            self.global.len() + 1,
            "voter {j} skipped metadata entries"
        );
        self.global.push((term, records.to_vec()));
        self.stats.metadata_entries += 1;
        let offset = MetadataOffset(offset);
        if records.is_empty() {
            self.reference.skip(offset);
            return;
        }
        if self.reference.apply_batch(offset, records).is_err() {
            return;
        }
        for r in records {
            match r {
                MetadataRecord::FenceBroker { .. } => self.stats.fences += 1,
                MetadataRecord::ChangePartition { isr: Some(_), .. } => self.stats.isr_changes += 1,
                _ => {}
            }
        }
        self.check_reference_partitions();
    }

    fn check_reference_partitions(&mut self) {
        let Some(topic_id) = self.reference.topic_id(TOPIC) else {
            return;
        };
        let topic = self.reference.topic(topic_id).expect("named").clone();
        for (p, state) in topic.partitions.iter().enumerate() {
            if let Some(leader) = state.leader {
                if !state.isr.contains(&leader) {
                    self.fail(format!("partition {p} leader outside its isr: {state:?}"));
                }
            }
            let key = (p, state.leader_epoch.0);
            let first = *self.partition_leaders.entry(key).or_insert(state.leader);
            if first != state.leader {
                self.fail(format!(
                    "partition {p} leader epoch {} names {first:?} and {:?}",
                    state.leader_epoch, state.leader
                ));
            }
        }
    }

    // ---- brokers: metadata ----

    /// The metadata image broker `i` has applied from the committed log.
    fn image(&self, i: usize) -> Option<&MetadataImage> {
        let b = &self.brokers[i];
        if !b.up {
            None
        } else if b.voter {
            b.node.as_ref().map(|n| n.image())
        } else {
            Some(b.follower.image())
        }
    }

    /// Whether broker `i`'s image holds its current registration: only then does it act on it.
    fn registered(&self, i: usize) -> bool {
        let b = &self.brokers[i];
        self.image(i).is_some_and(|image| {
            image
                .broker(CNodeId(b.id.0))
                .is_some_and(|r| r.incarnation == Incarnation(b.incarnation))
        })
    }

    /// The partitions of the topic as broker `i`'s image has them.
    fn topic_states(&self, i: usize) -> Option<Vec<CPartitionState>> {
        let image = self.image(i)?;
        let topic = image.topic(image.topic_id(TOPIC)?)?;
        Some(topic.partitions.clone())
    }

    /// Broker `i`'s periodic work: registration, heartbeat, metadata fetch (observers), and the
    /// publication of its image to its replicas.
    fn broker_timers(&mut self, i: usize) {
        let phase = i as u64;
        if !self.registered(i) && self.step % REGISTER_EVERY_STEPS == phase % REGISTER_EVERY_STEPS {
            let to = self.controller_target(i);
            self.send(i, to, Msg::Register);
        }
        if self.step % HEARTBEAT_EVERY_STEPS == phase % HEARTBEAT_EVERY_STEPS {
            let to = self.controller_target(i);
            self.send(i, to, Msg::Heartbeat);
        }
        if !self.brokers[i].voter && self.step % METADATA_FETCH_EVERY_STEPS == 0 {
            let to = self.rng.below(VOTERS as u64) as usize;
            let from = self.brokers[i].follower.next_offset();
            self.send(i, to, Msg::MetadataRead { from });
        }
        self.publish(i);
    }

    /// Steps each hosted partition's state from the broker's applied image (once it holds the
    /// broker's registration), opening the partition's log on first sight.
    fn publish(&mut self, i: usize) {
        if !self.registered(i) {
            return;
        }
        let Some(states) = self.topic_states(i) else {
            return;
        };
        let me = CNodeId(self.brokers[i].id.0);
        for (p, state) in states.iter().enumerate() {
            if !state.replicas.contains(&me) {
                continue;
            }
            if self.brokers[i].parts[p].is_none() && !self.open_part(i, p) {
                return;
            }
            let state = replica_state(state);
            let part = self.brokers[i].parts[p].as_mut().expect("opened");
            if part.last_state.as_ref() == Some(&state) {
                continue;
            }
            part.last_state = Some(state.clone());
            let now_ms = NowMs(self.now_ms());
            self.step_part(i, p, Event::Metadata { state, now_ms }, None);
            if !self.brokers[i].up {
                return;
            }
        }
    }

    /// Opens partition `p`'s log on broker `i` (recovering it) and checks what it recovered
    /// against what it held when it stopped. False if the broker had to stop.
    fn open_part(&mut self, i: usize, p: usize) -> bool {
        let disk = self.brokers[i].disk.clone();
        let log = match block_on(Log::open(disk, &partition_dir(p), log_config())) {
            Ok(log) => log,
            Err(e) => {
                self.storage_failure(i, p, &e, &[]);
                return false;
            }
        };
        let shadow = match read_all(&log) {
            Ok(s) => s,
            Err(e) => self.fail(format!("reading a recovered log: {e}")),
        };
        if let Some(stopped) = self.brokers[i].stopped[p].take() {
            self.check_recovered(i, p, &shadow, &stopped);
        }
        let epochs = block_on(log.epochs())
            .entries()
            .iter()
            .map(|e| (LeaderEpoch(e.epoch.0), Offset(e.start_offset.0)))
            .collect();
        let state = spate_replication::LogState {
            log_end: Offset(log.log_end_offset().0),
            durable_end: Offset(log.durable_offset().0),
            // The broker's checkpoint (`Replica::new` caps it at the log end); the rest is
            // learnt again.
            high_watermark: self.brokers[i].hw_checkpoints[p],
            epochs: EpochHistory::from_entries(epochs).expect("the log's epochs are ordered"),
        };
        let config = ReplicaConfig {
            node: self.brokers[i].id,
            ack_durability: self.durability,
            min_insync_replicas: MIN_INSYNC_REPLICAS,
            replica_lag_time_max_ms: 300,
            fetch_backoff_ms: 20,
            empty_fetch_backoff_ms: 20,
            fetch_timeout_ms: 150,
            alter_partition_retry_ms: 100,
            waiters_max: 64,
        };
        let replica = Replica::new(config, state).expect("a recovered log is a valid state");
        self.brokers[i].parts[p] = Some(Part {
            log,
            replica,
            shadow,
            last_state: None,
            seen_role: (RoleKind::Idle, None),
            hw_checked: 0,
        });
        true
    }

    fn check_recovered(&mut self, i: usize, p: usize, recovered: &[Rec], stopped: &Stopped) {
        let id = self.brokers[i].id;
        let n = recovered.len();
        if n > stopped.shadow.len() || recovered != &stopped.shadow[..n] {
            self.fail(format!(
                "broker {id} partition {p} recovered {n} records that are not a prefix of the \
                 {} it held",
                stopped.shadow.len()
            ));
        }
        if n < stopped.floor {
            self.fail(format!(
                "broker {id} partition {p} recovered {n} records, below its durable offset {}",
                stopped.floor
            ));
        }
        self.stats.recoveries_checked += 1;
        self.log_trace(|| {
            format!(
                "broker {id} partition {p} recovered {n} of {} records (durable {})",
                stopped.shadow.len(),
                stopped.floor
            )
        });
    }

    // ---- brokers: replicas ----

    fn step_part(&mut self, i: usize, p: usize, event: Event<SimBatch>, records: Option<Bytes>) {
        self.step_part_inner(i, p, event, records, None);
    }

    /// As `step_part`, for a fetch request: the answer goes back to the asking life.
    fn step_part_answering(
        &mut self,
        i: usize,
        p: usize,
        event: Event<SimBatch>,
        asker: (usize, u64),
    ) {
        self.step_part_inner(i, p, event, None, Some(asker));
    }

    /// Steps one event and carries out the actions in order, as the broker's replica slot does:
    /// appends and truncations on the log before anything else, and under write.caching=false a
    /// follower's append is flushed before its next fetch reports it.
    fn step_part_inner(
        &mut self,
        i: usize,
        p: usize,
        event: Event<SimBatch>,
        mut records: Option<Bytes>,
        asker: Option<(usize, u64)>,
    ) {
        let Some(part) = self.brokers[i].parts[p].as_mut() else {
            return;
        };
        let actions = match part.replica.step(event) {
            Ok(actions) => actions,
            Err(e) => self.fail(format!(
                "broker {} partition {p} refused an event: {e}",
                self.brokers[i].id
            )),
        };
        let mut appended = false;
        for action in actions {
            if self.brokers[i].parts[p].is_none() {
                return; // the broker stopped on a storage failure
            }
            match action {
                Action::Append { batches } => {
                    let bytes = records
                        .take()
                        .expect("an append comes from a fetch response");
                    appended |= self.append_replicated(i, p, batches.len(), bytes);
                }
                Action::Truncate { to } => self.truncate(i, p, to),
                // Nothing here moves a log start (no retention, no DeleteRecords), so no
                // follower can fall behind one.
                Action::RestartAt { start } => self.fail(format!(
                    "broker {} partition {p} restarts its log at {start}, but no log start moved",
                    self.brokers[i].id
                )),
                Action::SendFetch { to, request } => {
                    let to = self.index_of(to);
                    self.send(
                        i,
                        to,
                        Msg::Fetch {
                            partition: p,
                            request,
                        },
                    );
                }
                Action::AnswerFetch {
                    correlation,
                    answer,
                    ..
                } => {
                    let asker = asker.expect("answers come from fetch requests");
                    self.answer_fetch(i, p, asker, correlation, answer);
                }
                Action::ProposeIsr { request } => self.propose_isr(i, p, request),
                Action::CompleteWaiter { waiter, result } => self.on_ack(p, waiter, result),
                Action::HighWatermark { offset } => self.on_high_watermark(i, p, offset),
            }
        }
        if appended && self.durability == AckDurability::ReplicatedAndFlushed {
            self.flush(i, p);
        }
        self.observe_role(i, p);
    }

    fn append_replicated(&mut self, i: usize, p: usize, batches: usize, bytes: Bytes) -> bool {
        let part = self.brokers[i].parts[p].as_mut().expect("checked");
        let recs = records_of(&bytes);
        match block_on(part.log.append_replicated(bytes)) {
            Ok(done) => {
                assert_eq!(done.batches, batches, "appended as fetched");
                part.shadow.extend(recs);
                assert_eq!(part.shadow.len() as i64, part.log.log_end_offset().0);
                true
            }
            Err(e) => {
                self.storage_failure(i, p, &e, &recs);
                false
            }
        }
    }

    fn truncate(&mut self, i: usize, p: usize, to: Offset) {
        let id = self.brokers[i].id;
        let part = self.brokers[i].parts[p].as_mut().expect("checked");
        let from = part.shadow.len();
        match block_on(part.log.truncate_to(spate_wire::types::Offset(to.0))) {
            Ok(_) => {
                part.shadow.truncate(to.0 as usize);
                part.hw_checked = part.hw_checked.min(to.0 as usize);
                assert_eq!(part.shadow.len() as i64, part.log.log_end_offset().0);
                self.stats.truncations += 1;
                self.log_trace(|| format!("broker {id} partition {p} truncates {from} to {to}"));
            }
            Err(e) => {
                // A failed truncation may leave the log anywhere from `to` to its end: recovery
                // keeps at least `to`.
                let part = self.brokers[i].parts[p].as_mut().expect("checked");
                let floor = (part.log.durable_offset().0 as usize).min(to.0 as usize);
                self.storage_failure(i, p, &e, &[]);
                if let Some(stopped) = self.brokers[i].stopped[p].as_mut() {
                    stopped.floor = stopped.floor.min(floor);
                }
            }
        }
    }

    fn flush(&mut self, i: usize, p: usize) {
        let part = self.brokers[i].parts[p].as_mut().expect("checked");
        match block_on(part.log.flush()) {
            Ok(_) => {
                let durable_end = Offset(part.log.durable_offset().0);
                let now_ms = NowMs(self.now_ms());
                self.step_part(
                    i,
                    p,
                    Event::Flushed {
                        durable_end,
                        now_ms,
                    },
                    None,
                );
            }
            Err(e) => self.storage_failure(i, p, &e, &[]),
        }
    }

    fn answer_fetch(
        &mut self,
        i: usize,
        p: usize,
        (to, to_incarnation): (usize, u64),
        correlation: CorrelationId,
        answer: FetchAnswer,
    ) {
        let part = self.brokers[i].parts[p].as_ref().expect("checked");
        let records = match answer {
            FetchAnswer::Records { from, .. } => {
                match read_bytes(&part.log, from, FETCH_BYTES_MAX, ReadUpTo::LogEnd) {
                    Ok(bytes) => bytes,
                    Err(e) if is_operating_failure(&e) => {
                        return self.storage_failure(i, p, &e, &[]);
                    }
                    Err(e) => self.fail(format!("leader read at {from}: {e}")),
                }
            }
            FetchAnswer::Diverging { .. }
            | FetchAnswer::BelowLogStart { .. }
            | FetchAnswer::Error(_) => Bytes::new(),
        };
        if let FetchAnswer::Records { from, .. } = answer {
            // What the leader's log returns is what the checker's mirror says it holds.
            let got = records_of(&records);
            let at = from.0 as usize;
            let want = &part.shadow[at.min(part.shadow.len())..];
            if got.len() > want.len() || got[..] != want[..got.len()] {
                self.fail(format!(
                    "broker {} partition {p} read {got:?} at {from}, its log holds {:?}",
                    self.brokers[i].id,
                    &want[..want.len().min(got.len())]
                ));
            }
        }
        let response = FetchResponse {
            leader: self.brokers[i].id,
            correlation,
            answer,
            batches: sim_batches_of(&records),
        };
        let msg = Msg::FetchResp {
            partition: p,
            response,
            records,
        };
        self.reply(i, to, to_incarnation, msg);
    }

    fn propose_isr(&mut self, i: usize, p: usize, request: AlterPartitionRequest) {
        let b = &self.brokers[i];
        let members = request
            .new_isr
            .iter()
            .map(|n| {
                if *n == b.id {
                    (*n, Some(b.incarnation))
                } else {
                    (*n, b.fetch_incarnations.get(n).copied())
                }
            })
            .collect();
        let to = self.controller_target(i);
        let id = self.brokers[i].id;
        self.log_trace(|| format!("broker {id} partition {p} proposes {members:?} to {to}"));
        let msg = Msg::Alter {
            partition: p,
            request,
            members,
        };
        self.send(i, to, msg);
    }

    /// A new leadership: one leader per (partition, leader epoch), and it holds every record
    /// committed in an earlier epoch. (A broker that learns late of an epoch the controller has
    /// moved past leads a stale epoch: it need not hold what later epochs committed, and it cannot
    /// commit anything, as its ISR follows the newer leader.)
    fn observe_role(&mut self, i: usize, p: usize) {
        let id = self.brokers[i].id;
        let Some(part) = self.brokers[i].parts[p].as_mut() else {
            return;
        };
        let now = (part.replica.role(), part.replica.role_epoch());
        if now == part.seen_role {
            return;
        }
        part.seen_role = now;
        let log_end = part.shadow.len();
        self.log_trace(|| format!("broker {id} partition {p} is now {now:?}, log end {log_end}"));
        let (RoleKind::Leader, Some(epoch)) = now else {
            return;
        };
        if let Some(other) = self.leaders_by_epoch.insert((p, epoch), id) {
            if other != id {
                self.fail(format!(
                    "partition {p} has two leaders in epoch {epoch}: {other} and {id}"
                ));
            }
        }
        self.stats.leader_changes += 1;
        let part = self.brokers[i].parts[p].as_ref().expect("checked");
        let model = &self.models[p];
        for (o, c) in model.committed.iter().enumerate() {
            if model.committed_in[o] >= epoch {
                continue;
            }
            if part.shadow.get(o) != Some(c) {
                self.fail(format!(
                    "broker {id} leads partition {p} epoch {epoch} without committed offset {o} \
                     ({c:?}): it has {:?}",
                    part.shadow.get(o)
                ));
            }
        }
    }

    /// A replica's high watermark moved: everything below it is the committed sequence (a
    /// leader's extends it), and a leader's never goes back within its epoch.
    fn on_high_watermark(&mut self, i: usize, p: usize, hw: Offset) {
        let id = self.brokers[i].id;
        let part = self.brokers[i].parts[p].as_mut().expect("checked");
        let leading = match (part.replica.role(), part.replica.role_epoch()) {
            (RoleKind::Leader, Some(epoch)) => Some(epoch),
            _ => None,
        };
        let from = part.hw_checked.min(hw.0 as usize);
        let checked = self.models[p].check_below(&part.shadow, from, hw.0 as usize, leading);
        if let Err(e) = checked {
            self.fail(format!("broker {id} partition {p}: {e}"));
        }
        part.hw_checked = hw.0 as usize;
        self.stats.committed = self.models.iter().map(|m| m.committed.len() as u64).sum();
        // The broker writes its checkpoint every few seconds: here at one high watermark
        // move in eight, so a restart finds it anywhere from current to long stale.
        if self.chance(125) {
            self.brokers[i].hw_checkpoints[p] = hw;
        }
        if let Some(epoch) = leading {
            let seen = self.leader_hw.entry((p, epoch)).or_insert(hw);
            if hw < *seen {
                let was = *seen;
                self.fail(format!(
                    "partition {p} leader {id} high watermark went from {was} to {hw} in epoch {epoch}"
                ));
            }
            *seen = hw;
        }
    }

    fn on_ack(&mut self, p: usize, waiter: WaiterId, result: Result<(), AckError>) {
        let value = waiter.0;
        self.waiting.remove(&value);
        let (partition, base, count) = self.produced[&value];
        assert_eq!(partition, p);
        let Err(e) = result else {
            let model = &self.models[p];
            for k in 0..count {
                let o = (base.0 as u64 + k) as usize;
                match model.committed.get(o) {
                    Some(c) if c.value == value + k => {}
                    other => self.fail(format!(
                        "value {} acknowledged at partition {p} offset {o}, committed there: {other:?}",
                        value + k
                    )),
                }
            }
            self.acked.insert(value);
            self.stats.acked += 1;
            self.log_trace(|| format!("produce {value} at {p}/{base}: acknowledged"));
            return;
        };
        self.log_trace(|| format!("produce {value} at {p}/{base}: {e}"));
        self.ack_failed.insert(value);
        self.stats.ack_errors += 1;
    }

    // ---- clients ----

    /// The leader of `p` in the metadata of a random live broker (a client's view, maybe stale).
    fn client_leader(&mut self, p: usize) -> Option<usize> {
        let i = self.rng.below(self.brokers.len() as u64) as usize;
        let states = self.topic_states(i)?;
        let leader = states[p].leader?;
        Some(leader.0 as usize - 1)
    }

    /// An acks=all produce of 1-3 records to partition `p`. Returns its first value if the leader
    /// took it.
    fn produce(&mut self, p: usize) -> Option<u64> {
        let i = self.client_leader(p)?;
        let count = 1 + self.rng.below(BATCH_RECORDS_MAX);
        let flush_now = self.rng.below(2) == 0;
        let part = self.brokers[i].parts[p].as_mut()?;
        let epoch = match part.replica.check_produce(Acks::All) {
            Ok(epoch) => epoch,
            Err(_) => {
                self.stats.produce_refused += 1;
                return None;
            }
        };
        let value = self.next_value;
        self.next_value += count;
        let batch = produce_batch(value, count);
        let appended = block_on(
            part.log
                .append(batch, spate_wire::types::LeaderEpoch(epoch.0)),
        );
        let info = match appended {
            Ok(info) => info,
            Err(e) => {
                let tried: Vec<Rec> = (value..value + count)
                    .map(|v| Rec { epoch, value: v })
                    .collect();
                self.storage_failure(i, p, &e, &tried);
                return None;
            }
        };
        let base = Offset(info.base_offset.0);
        assert_eq!(
            base.0 as usize,
            part.shadow.len(),
            "appended at the log end"
        );
        part.shadow
            .extend((value..value + count).map(|v| Rec { epoch, value: v }));
        self.produced.insert(value, (p, base, count));
        self.waiting.insert(value, i);
        self.stats.produced += 1;
        let id = self.brokers[i].id;
        self.log_trace(|| format!("produce {value}+{count} at {p}/{base} epoch {epoch} on {id}"));
        let now_ms = NowMs(self.now_ms());
        let log_end = Offset(info.last_offset.0 + 1);
        self.step_part(i, p, Event::LeaderAppended { log_end, now_ms }, None);
        let last_offset = Offset(info.last_offset.0);
        let event = Event::AwaitAcks {
            waiter: WaiterId(value),
            last_offset,
            timeout_ms: PRODUCE_TIMEOUT_MS,
            now_ms,
        };
        self.step_part(i, p, event, None);
        // The broker starts the leader's fsync at the produce (or its group commit does later).
        if flush_now && self.brokers[i].parts[p].is_some() {
            self.flush(i, p);
        }
        Some(value)
    }

    /// A consumer reads partition `p` from the leader its metadata names, below that leader's high
    /// watermark, from where it stopped: every record it reads is committed, at its offset.
    fn consume(&mut self, p: usize) {
        let Some(i) = self.client_leader(p) else {
            return;
        };
        let Some(part) = self.brokers[i].parts[p].as_ref() else {
            return;
        };
        let (RoleKind::Leader, Some(epoch)) = (part.replica.role(), part.replica.role_epoch())
        else {
            return;
        };
        let hw = part.replica.high_watermark();
        if let Some(seen) = self.leader_hw.get(&(p, epoch)) {
            if hw < *seen {
                self.fail(format!(
                    "consumer saw partition {p} high watermark {seen} then {hw} in epoch {epoch}"
                ));
            }
        }
        if hw < self.consumer_hw_max[p] {
            self.stats.hw_behind_after_leader_change += 1;
        }
        self.consumer_hw_max[p] = self.consumer_hw_max[p].max(hw);
        let at = self.models[p].consumed.len() as i64;
        if at >= hw.0 {
            return;
        }
        let bytes = match read_bytes(
            &part.log,
            Offset(at),
            CONSUME_BYTES_MAX,
            ReadUpTo::Below(spate_wire::types::Offset(hw.0)),
        ) {
            Ok(bytes) => bytes,
            Err(e) if is_operating_failure(&e) => return self.storage_failure(i, p, &e, &[]),
            Err(e) => self.fail(format!("consumer read at {at}: {e}")),
        };
        let model = &mut self.models[p];
        for rec in records_of(&bytes) {
            let o = model.consumed.len();
            if o >= hw.0 as usize {
                break;
            }
            if model.committed.get(o) != Some(&rec) {
                let committed = model.committed.get(o).copied();
                self.fail(format!(
                    "consumer read partition {p} offset {o} as {rec:?}, committed: {committed:?}"
                ));
            }
            model.consumed.push(rec);
        }
        self.stats.consumed = self.models.iter().map(|m| m.consumed.len() as u64).sum();
    }

    // ---- faults ----

    fn faults(&mut self) {
        for i in 0..self.brokers.len() {
            if !self.brokers[i].up && self.step >= self.brokers[i].down_until {
                self.start(i);
            }
        }
        let (single_per_mille, all_per_mille) = match self.mode {
            Mode::Safe => (6, 1),
            Mode::UnflushedAcksWithPowerLoss => (8, 6),
            Mode::UncleanElection => (12, 2),
        };
        if self.chance(single_per_mille) {
            let i = self.rng.below(self.brokers.len() as u64) as usize;
            let kind = if self.mode == Mode::Safe && self.rng.below(2) == 0 {
                CrashKind::Process
            } else {
                CrashKind::PowerLoss
            };
            self.crash(i, kind);
        }
        if self.chance(all_per_mille) {
            self.stats.cluster_power_losses += 1;
            for i in 0..self.brokers.len() {
                self.crash(i, CrashKind::PowerLoss);
            }
        }
        if self.chance(10) {
            self.cut_links();
        }
        if self.chance(15) {
            self.blocked.clear();
        }
        if self.step + DISK_FAULT_QUIET_STEPS < FAULT_STEPS && self.chance(3) {
            let i = self.rng.below(self.brokers.len() as u64) as usize;
            let op = [FaultOp::Write, FaultOp::Sync][self.rng.below(2) as usize];
            let nth = 1 + self.rng.below(5);
            self.brokers[i].disk.fail_nth(op, nth);
            self.stats.disk_faults_armed += 1;
            let id = self.brokers[i].id;
            self.log_trace(|| format!("broker {id}: {op:?} call {nth} from now fails"));
        }
    }

    /// Isolates one broker from everyone, or cuts its links one way, or one link both ways.
    fn cut_links(&mut self) {
        let n = self.brokers.len();
        // Half the time the broker is a partition's leader (per the controller), the case that
        // matters most: it goes on leading its epoch for whoever still reaches it.
        let p = self.rng.below(PARTITIONS as u64) as usize;
        let leader = match self.rng.below(2) {
            0 => self
                .raft_leader()
                .and_then(|j| self.topic_states(j)?[p].leader),
            _ => None,
        };
        let i = match leader {
            Some(l) => l.0 as usize - 1,
            None => self.rng.below(n as u64) as usize,
        };
        let others: Vec<usize> = (0..n).filter(|j| *j != i).collect();
        match self.rng.below(4) {
            0 => {
                for j in others {
                    self.blocked.insert((i, j));
                    self.blocked.insert((j, i));
                }
            }
            1 => {
                for j in others {
                    self.blocked.insert((i, j));
                }
            }
            2 => {
                for j in others {
                    self.blocked.insert((j, i));
                }
            }
            _ => {
                let j = others[self.rng.below(others.len() as u64) as usize];
                self.blocked.insert((i, j));
                self.blocked.insert((j, i));
            }
        }
        let id = self.brokers[i].id;
        self.log_trace(|| format!("links of broker {id} cut: {:?}", self.blocked));
    }

    fn heal(&mut self) {
        self.faults = false;
        self.blocked.clear();
        self.log_trace(|| "faults stop, the network heals".to_string());
    }

    // ---- the run ----

    fn step_once(&mut self) {
        self.step += 1;
        if self.faults {
            self.faults();
            if self.chance(300) {
                let p = self.rng.below(PARTITIONS as u64) as usize;
                self.produce(p);
            }
        } else {
            // After the heal every broker comes back at once; a broker a disk fault stopped during
            // the heal comes back too.
            for i in 0..self.brokers.len() {
                if !self.brokers[i].up {
                    self.start(i);
                }
            }
        }
        if self.chance(200) {
            let p = self.rng.below(PARTITIONS as u64) as usize;
            self.consume(p);
        }
        self.deliver();
        for j in 0..VOTERS {
            if let Some(node) = self.brokers[j].node.as_mut() {
                node.tick();
            }
        }
        self.complete_raft_writes();
        self.drain_raft();
        self.controller_timers();
        self.drain_raft();
        let now_ms = NowMs(self.now_ms());
        for i in 0..self.brokers.len() {
            if !self.brokers[i].up {
                continue;
            }
            self.broker_timers(i);
            for p in 0..PARTITIONS {
                self.step_part(i, p, Event::Tick { now_ms }, None);
                // A group commit now and then, which may complete acks=all waiters.
                if self.brokers[i].parts[p].is_some() && self.chance(100) {
                    self.flush(i, p);
                }
            }
        }
    }

    fn run(mut self) -> Stats {
        for _ in 0..FAULT_STEPS {
            self.step_once();
        }
        self.heal();
        let healed_at = self.step;
        // Liveness: every partition acknowledges a new produce, and every replica converges.
        let mut markers: Vec<Option<u64>> = vec![None; PARTITIONS];
        loop {
            if self.step - healed_at > LIVENESS_STEPS_MAX {
                self.fail(format!(
                    "no convergence {LIVENESS_STEPS_MAX} steps after healing: markers {markers:?}, {}",
                    self.describe()
                ));
            }
            let acked = markers
                .iter()
                .all(|m| m.is_some_and(|v| self.acked.contains(&v)));
            if acked && self.converged() {
                break;
            }
            for (p, marker) in markers.iter_mut().enumerate() {
                // One marker at a time per partition; a failed one is retried as a new record.
                if marker.is_none_or(|v| self.ack_failed.contains(&v)) && self.step % 5 == 0 {
                    if let Some(v) = self.produce(p) {
                        *marker = Some(v);
                    }
                }
            }
            self.step_once();
        }
        self.final_checks();
        self.stats.digest = self.digest();
        self.stats
    }

    /// Every partition led by the controller's choice with its full ISR, every replica's log equal
    /// to the leader's and its high watermark at the log end.
    fn converged(&self) -> bool {
        if self.brokers.iter().any(|b| !b.up) {
            return false;
        }
        let Some(j) = self.raft_leader() else {
            return false;
        };
        let Some(states) = self.topic_states(j) else {
            return false;
        };
        states.iter().enumerate().all(|(p, s)| {
            let Some(leader) = s.leader else {
                return false;
            };
            let Some(lp) = self.brokers[leader.0 as usize - 1].parts[p].as_ref() else {
                return false;
            };
            let end = Offset(lp.shadow.len() as i64);
            lp.replica.role() == RoleKind::Leader
                && lp.replica.role_epoch() == Some(LeaderEpoch(s.leader_epoch.0))
                && s.isr.len() == s.replicas.len()
                && s.replicas.iter().all(|r| {
                    self.brokers[r.0 as usize - 1].parts[p]
                        .as_ref()
                        .is_some_and(|rp| {
                            rp.shadow == lp.shadow && rp.replica.high_watermark() == end
                        })
                })
        })
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for b in &self.brokers {
            let parts: Vec<String> = b
                .parts
                .iter()
                .map(|p| match p {
                    Some(p) => format!(
                        "{:?}@{:?} end {} hw {}",
                        p.replica.role(),
                        p.replica.role_epoch(),
                        p.shadow.len(),
                        p.replica.high_watermark()
                    ),
                    None => "-".to_string(),
                })
                .collect();
            out += &format!("\n  broker {} up {} {parts:?}", b.id, b.up);
        }
        if let Some(states) = self.raft_leader().and_then(|j| self.topic_states(j)) {
            out += &format!("\n  controller: {states:?}");
        }
        out
    }

    /// After convergence: every acknowledged record is on every replica at its offset, and every
    /// replica's real log holds exactly what the checker's mirror says.
    fn final_checks(&mut self) {
        for (value, (p, base, count)) in &self.produced {
            if !self.acked.contains(value) {
                continue;
            }
            for b in &self.brokers {
                let Some(part) = b.parts[*p].as_ref() else {
                    continue;
                };
                for k in 0..*count {
                    let o = (base.0 as u64 + k) as usize;
                    if part.shadow.get(o).map(|r| r.value) != Some(value + k) {
                        self.fail(format!(
                            "broker {} lost acknowledged value {} at partition {p} offset {o}: \
                             it has {:?}",
                            b.id,
                            value + k,
                            part.shadow.get(o)
                        ));
                    }
                }
            }
        }
        for b in &self.brokers {
            for (p, part) in b.parts.iter().enumerate() {
                let Some(part) = part else { continue };
                match read_all(&part.log) {
                    Ok(recs) if recs == part.shadow => {}
                    Ok(recs) => self.fail(format!(
                        "broker {} partition {p}: the log holds {} records, the mirror {}",
                        b.id,
                        recs.len(),
                        part.shadow.len()
                    )),
                    Err(e) => self.fail(format!("final read: {e}")),
                }
            }
        }
    }

    fn digest(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325;
        for b in &self.brokers {
            for part in b.parts.iter().flatten() {
                for r in &part.shadow {
                    h = fnv(h, r.value);
                    h = fnv(h, r.epoch.0 as u64);
                }
            }
        }
        for v in [
            self.stats.acked,
            self.stats.crashes,
            self.stats.leader_changes,
            self.stats.metadata_entries,
            self.step,
        ] {
            h = fnv(h, v);
        }
        h
    }
}
