//! The seeded simulator of partition replication: one thread, no clock, no sockets.
//!
//! Each seed builds three brokers holding one partition (replication factor 3), each running the real
//! [`Replica`] core over an in-memory log with a durable prefix; a model controller that fences a broker
//! whose heartbeats stop for a session timeout (or that restarts with a new incarnation), elects a new
//! leader from the ISR (never an unclean one unless a test asks), bumps leader and partition epochs and
//! checks AlterPartition by partition epoch; a network that drops, delays and reorders messages and
//! partitions brokers from each other and from the controller, then heals; crashes (a process crash
//! keeps the log, a power loss loses its unflushed suffix) and restarts; producers with acks=all sent to
//! whoever leads, and a consumer reading below the leader's high watermark.
//!
//! Checked after every event: at most one leader per leader epoch; every record below any replica's
//! high watermark equals the committed sequence (the union of everything ever below a leader's HW), so
//! logs agree below the min of their HWs and a consumer never reads a record that is later replaced;
//! every acknowledged record is committed at its offset; a replica that becomes leader of an epoch
//! holds every record committed in earlier epochs; the HW a consumer sees never decreases within a leader epoch. After the faults
//! stop, every broker comes back and the network heals: within a bounded time a new produce must be
//! acknowledged, all three logs must equal the leader's up to its end, and every acknowledged record
//! must be there.
//!
//! Safe seeds run either `AckDurability::Replicated` with process crashes only (Kafka's promise: no
//! fsync, survives crashes that keep the OS) or `ReplicatedAndFlushed` with power losses, including all
//! three brokers at once. Two tests run the unsafe combinations (Replicated with power losses; unclean
//! election) and assert the checker catches a loss, so it is not vacuous.
//!
//! `SPATE_REPL_SEED=<n>` replays one seed exactly; `SPATE_REPL_SEEDS` sets how many seeds the default run
//! covers, `SPATE_REPL_SEED_FIRST` where they start. A failure prints the seed and the replay command;
//! `SPATE_REPL_TRACE=1` with a replayed seed prints its crashes, leaderships, produces, truncations,
//! high watermarks and controller states, step by step.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use spate_replication::{
    AckDurability, Acks, Action, AlterPartitionError, AlterPartitionRequest,
    AlterPartitionResponse, Batch, EpochHistory, Event, FetchAnswer, FetchRequest, FetchResponse,
    LeaderEpoch, LogState, NodeId, NowMs, Offset, PartitionEpoch, PartitionState, Replica,
    ReplicaConfig, RoleKind, WaiterId,
};

/// Simulated milliseconds per step.
const TICK_MS: u64 = 10;
/// Steps with faults.
const FAULT_STEPS: u64 = 700;
/// Steps after healing within which a new produce must be acknowledged and the logs converge.
const LIVENESS_STEPS_MAX: u64 = 1500;
/// The controller fences a broker silent this long (Kafka: 9 s; scaled down with everything else).
const SESSION_TIMEOUT_MS: u64 = 400;
/// Brokers heartbeat this often.
const HEARTBEAT_EVERY_STEPS: u64 = 5;
/// The controller re-sends its state this often (a broker that missed a change catches up, as a broker
/// replaying the metadata log would).
const METADATA_RESEND_EVERY_STEPS: u64 = 25;
/// Entries per fetch answer at most.
const FETCH_ENTRIES_MAX: usize = 8;
/// Seeds in the default run; `SPATE_REPL_SEEDS` overrides.
const SEEDS_DEFAULT: u64 = 4000;
const BROKERS: usize = 3;

/// A one-record batch in a simulated log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    offset: Offset,
    epoch: LeaderEpoch,
    payload: u64,
}

impl Batch for Entry {
    fn base_offset(&self) -> Offset {
        self.offset
    }
    fn last_offset(&self) -> Offset {
        self.offset
    }
    fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }
}

/// Which world a seed runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Safe: the seed picks the durability setting and the crash kind that setting promises to survive.
    Safe,
    /// Unsafe: `Replicated` acknowledgements, and crashes are power losses (often all brokers at once).
    ReplicatedWithPowerLoss,
    /// Unsafe: the controller elects any live replica when no ISR member is live.
    UncleanElection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashKind {
    /// The process dies; the OS keeps what was written.
    Process,
    /// The machine loses power: the unflushed suffix is gone.
    PowerLoss,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    produced: u64,
    acked: u64,
    refused: u64,
    ack_errors: u64,
    committed: u64,
    leader_changes: u64,
    crashes: u64,
    power_losses: u64,
    truncations: u64,
    isr_shrinks: u64,
    isr_expands: u64,
    alter_refused: u64,
    consumed: u64,
    digest: u64,
}

/// A peer in the network: a broker (by index) or the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Broker(usize),
    Controller,
}

#[derive(Debug, Clone)]
enum Msg {
    Fetch(FetchRequest),
    FetchResp(FetchResponse<Entry>),
    Alter(AlterPartitionRequest),
    AlterResp(AlterPartitionRequest, AlterPartitionResponse),
    /// The partition's state and the incarnation each broker is registered with.
    Metadata(PartitionState, BTreeMap<NodeId, u64>),
    Heartbeat {
        incarnation: u64,
    },
}

#[derive(Debug, Clone)]
struct Packet {
    at: u64,
    seq: u64,
    from: Peer,
    to: Peer,
    /// The incarnations of both ends when sent: a restart closes its connections, so a packet of an
    /// earlier life is never delivered (the broker ties answers to the connection that asked).
    from_incarnation: u64,
    to_incarnation: u64,
    msg: Msg,
}

struct Disk {
    log: Vec<Entry>,
    /// Entries below this survive a power loss.
    durable: usize,
    hw_checkpoint: Offset,
}

struct Broker {
    id: NodeId,
    replica: Option<Replica<Entry>>,
    disk: Disk,
    incarnation: u64,
    down_until: u64,
    /// The role and epoch seen after the last event, to spot a new leadership.
    seen: (RoleKind, Option<LeaderEpoch>),
}

struct Controller {
    state: PartitionState,
    incarnations: BTreeMap<NodeId, u64>,
    last_heartbeat_ms: BTreeMap<NodeId, u64>,
    fenced: BTreeSet<NodeId>,
    unclean: bool,
}

struct Sim {
    mode: Mode,
    seed: u64,
    rng: SplitMix64,
    step: u64,
    durability: AckDurability,
    crash_kind: CrashKind,
    min_insync: usize,
    brokers: Vec<Broker>,
    controller: Controller,
    packets: Vec<Packet>,
    packet_seq: u64,
    blocked: BTreeSet<(Peer, Peer)>,
    drop_per_mille: u64,
    delay_steps_max: u64,
    faults: bool,
    // The checker's model.
    committed: Vec<(LeaderEpoch, u64)>,
    /// The leader epoch in which each committed record first went below a leader's HW.
    committed_in: Vec<LeaderEpoch>,
    leaders_by_epoch: BTreeMap<LeaderEpoch, NodeId>,
    consumer_hw_by_epoch: BTreeMap<LeaderEpoch, Offset>,
    consumed: Vec<(LeaderEpoch, u64)>,
    produced: BTreeMap<u64, Offset>,
    acked: BTreeMap<u64, Offset>,
    ack_failed: BTreeSet<u64>,
    next_payload: u64,
    stats: Stats,
}

/// SplitMix64: small, every seed good, and its stream cannot change under us with a crate update.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }
}

fn epochs_of(log: &[Entry]) -> EpochHistory {
    let mut h = EpochHistory::new();
    for e in log {
        h.assign(e.epoch, e.offset);
    }
    h
}

impl Sim {
    fn new(seed: u64, mode: Mode) -> Sim {
        let mut rng = SplitMix64(seed);
        let (durability, crash_kind) = match mode {
            Mode::Safe if rng.below(2) == 0 => (AckDurability::Replicated, CrashKind::Process),
            Mode::Safe => (AckDurability::ReplicatedAndFlushed, CrashKind::PowerLoss),
            Mode::ReplicatedWithPowerLoss => (AckDurability::Replicated, CrashKind::PowerLoss),
            Mode::UncleanElection => (AckDurability::ReplicatedAndFlushed, CrashKind::PowerLoss),
        };
        let ids: Vec<NodeId> = (1..=BROKERS as i32).map(NodeId).collect();
        let leader = ids[rng.below(BROKERS as u64) as usize];
        let state = PartitionState {
            replicas: ids.clone(),
            leader: Some(leader),
            leader_epoch: LeaderEpoch(1),
            partition_epoch: PartitionEpoch(1),
            isr: ids.clone(),
        };
        let min_insync = 1 + rng.below(2) as usize;
        let mut sim = Sim {
            mode,
            seed,
            step: 0,
            durability,
            crash_kind,
            min_insync,
            brokers: Vec::new(),
            controller: Controller {
                state: state.clone(),
                incarnations: ids.iter().map(|id| (*id, 1)).collect(),
                last_heartbeat_ms: ids.iter().map(|id| (*id, 0)).collect(),
                fenced: BTreeSet::new(),
                unclean: mode == Mode::UncleanElection,
            },
            packets: Vec::new(),
            packet_seq: 0,
            blocked: BTreeSet::new(),
            drop_per_mille: rng.below(150),
            // One seed in four has a slow network (up to 30 steps, longer than a session timeout), so
            // messages of a deposed leader's epoch arrive long after the controller moved on.
            delay_steps_max: if rng.below(4) == 0 {
                1 + rng.below(30)
            } else {
                1 + rng.below(4)
            },
            faults: true,
            committed: Vec::new(),
            committed_in: Vec::new(),
            leaders_by_epoch: BTreeMap::new(),
            consumer_hw_by_epoch: BTreeMap::new(),
            consumed: Vec::new(),
            produced: BTreeMap::new(),
            acked: BTreeMap::new(),
            ack_failed: BTreeSet::new(),
            next_payload: 1,
            stats: Stats::default(),
            rng,
        };
        for id in ids {
            let disk = Disk {
                log: Vec::new(),
                durable: 0,
                hw_checkpoint: Offset(0),
            };
            sim.brokers.push(Broker {
                id,
                replica: None,
                disk,
                incarnation: 1,
                down_until: 0,
                seen: (RoleKind::Idle, None),
            });
        }
        for i in 0..BROKERS {
            sim.start(i);
            let actions = sim.brokers[i]
                .replica
                .as_mut()
                .expect("started")
                .step(Event::Metadata {
                    state: state.clone(),
                    now_ms: NowMs(0),
                })
                .expect("valid metadata");
            sim.apply(i, actions);
            sim.observe_role(i);
        }
        sim
    }

    fn now(&self) -> NowMs {
        NowMs(self.step * TICK_MS)
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.rng.below(1000) < per_mille
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if std::env::var_os("SPATE_REPL_TRACE").is_some() {
            eprintln!("[{}] {}", self.step, what());
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "{what} (seed {}, step {}, mode {:?})",
            self.seed, self.step, self.mode
        )
    }

    // ---- brokers ----

    fn start(&mut self, i: usize) {
        let b = &mut self.brokers[i];
        let config = ReplicaConfig {
            node: b.id,
            ack_durability: self.durability,
            min_insync_replicas: self.min_insync,
            replica_lag_time_max_ms: 200,
            fetch_backoff_ms: 20,
            empty_fetch_backoff_ms: 20,
            fetch_timeout_ms: 150,
            alter_partition_retry_ms: 100,
            waiters_max: 64,
        };
        let log = LogState {
            log_end: Offset(b.disk.log.len() as i64),
            durable_end: Offset(b.disk.durable as i64),
            high_watermark: b.disk.hw_checkpoint,
            epochs: epochs_of(&b.disk.log),
        };
        b.replica = Some(Replica::new(config, log).expect("valid recovered state"));
        b.seen = (RoleKind::Idle, None);
    }

    fn crash(&mut self, i: usize, kind: CrashKind) {
        let down_for = 5 + self.rng.below(60);
        let b = &mut self.brokers[i];
        if b.replica.is_none() {
            return;
        }
        b.replica = None;
        b.down_until = self.step + down_for;
        b.incarnation += 1; // its connections close now
        let (len, durable) = (b.disk.log.len(), b.disk.durable);
        self.trace(|| {
            format!(
                "crash broker {} {kind:?}: log {len}, durable {durable}",
                i + 1
            )
        });
        let b = &mut self.brokers[i];
        if kind == CrashKind::PowerLoss {
            b.disk.log.truncate(b.disk.durable);
            self.stats.power_losses += 1;
        }
        self.stats.crashes += 1;
    }

    fn step_broker(&mut self, i: usize, event: Event<Entry>) {
        let Some(replica) = self.brokers[i].replica.as_mut() else {
            return;
        };
        let actions = match replica.step(event) {
            Ok(a) => a,
            Err(e) => self.fail(format!("broker {} refused an event: {e}", i + 1)),
        };
        self.apply(i, actions);
        self.observe_role(i);
    }

    fn apply(&mut self, i: usize, actions: Vec<Action<Entry>>) {
        for action in actions {
            match action {
                Action::SendFetch { to, request } => self.send(
                    Peer::Broker(i),
                    Peer::Broker(to.0 as usize - 1),
                    Msg::Fetch(request),
                ),
                Action::AnswerFetch {
                    to,
                    correlation,
                    answer,
                } => {
                    let batches = match answer {
                        FetchAnswer::Records { from, .. } => {
                            let log = &self.brokers[i].disk.log;
                            let start = from.0 as usize;
                            let end = log.len().min(start + FETCH_ENTRIES_MAX);
                            log[start..end].to_vec()
                        }
                        FetchAnswer::Diverging { .. }
                        | FetchAnswer::BelowLogStart { .. }
                        | FetchAnswer::Error(_) => Vec::new(),
                    };
                    let resp = FetchResponse {
                        leader: self.brokers[i].id,
                        correlation,
                        answer,
                        batches,
                    };
                    self.send(
                        Peer::Broker(i),
                        Peer::Broker(to.0 as usize - 1),
                        Msg::FetchResp(resp),
                    );
                }
                Action::Append { batches } => {
                    let disk = &mut self.brokers[i].disk;
                    for e in batches {
                        assert_eq!(e.offset.0 as usize, disk.log.len(), "append not at the end");
                        disk.log.push(e);
                    }
                }
                Action::Truncate { to } => {
                    self.trace(|| format!("broker {} truncates to {to}", i + 1));
                    let disk = &mut self.brokers[i].disk;
                    disk.log.truncate(to.0 as usize);
                    disk.durable = disk.durable.min(to.0 as usize);
                    disk.hw_checkpoint = disk.hw_checkpoint.min(to);
                    self.stats.truncations += 1;
                }
                Action::RestartAt { start } => {
                    unreachable!(
                        "broker {} restarts at {start}: no simulated log moves its start",
                        i + 1
                    )
                }
                Action::ProposeIsr { request } => {
                    self.send(Peer::Broker(i), Peer::Controller, Msg::Alter(request))
                }
                Action::CompleteWaiter { waiter, result } => self.on_ack(waiter, result),
                Action::HighWatermark { offset } => self.on_high_watermark(i, offset),
            }
        }
    }

    fn observe_role(&mut self, i: usize) {
        let Some(replica) = self.brokers[i].replica.as_ref() else {
            return;
        };
        let now = (replica.role(), replica.role_epoch());
        if now == self.brokers[i].seen {
            return;
        }
        self.brokers[i].seen = now;
        self.trace(|| {
            format!(
                "broker {} is now {now:?} log {}",
                i + 1,
                self.brokers[i].disk.log.len()
            )
        });
        if let (RoleKind::Leader, Some(epoch)) = now {
            let id = self.brokers[i].id;
            if let Some(other) = self.leaders_by_epoch.insert(epoch, id) {
                if other != id {
                    self.fail(format!("two leaders in epoch {epoch}: {other} and {id}"));
                }
            }
            self.stats.leader_changes += 1;
            // The replica that becomes leader holds every record committed in an earlier epoch, at
            // its offset. (A deposed broker that learns late of an epoch the controller has since
            // moved past leads a stale epoch: it need not hold what later epochs committed, and it
            // cannot commit anything, as its ISR follows the newer leader.)
            let log = &self.brokers[i].disk.log;
            for (o, (e, p)) in self.committed.iter().enumerate() {
                if self.committed_in[o] >= epoch {
                    continue;
                }
                match log.get(o) {
                    Some(x) if x.epoch == *e && x.payload == *p => {}
                    other => self.fail(format!(
                        "broker {id} leads epoch {epoch} without committed record {o} \
                         (epoch {e}, payload {p}): it has {other:?}"
                    )),
                }
            }
        }
    }

    /// Extends the committed sequence from a leader's HW and checks every replica's HW range against it.
    fn on_high_watermark(&mut self, i: usize, hw: Offset) {
        self.trace(|| format!("broker {} hw {hw}", i + 1));
        self.brokers[i].disk.hw_checkpoint = hw;
        let is_leader = self.brokers[i]
            .replica
            .as_ref()
            .is_some_and(|r| r.role() == RoleKind::Leader);
        let hw = hw.0 as usize;
        let id = self.brokers[i].id;
        if hw > self.brokers[i].disk.log.len() {
            self.fail(format!("broker {id} hw {hw} past its log end"));
        }
        for o in 0..hw {
            let x = &self.brokers[i].disk.log[o];
            match self.committed.get(o) {
                Some((e, p)) if *e == x.epoch && *p == x.payload => {}
                Some((e, p)) => self.fail(format!(
                    "broker {id} has offset {o} below its hw {hw} as (epoch {}, payload {}) but \
                     (epoch {e}, payload {p}) was committed there",
                    x.epoch, x.payload
                )),
                None if is_leader => {
                    self.committed.push((x.epoch, x.payload));
                    let epoch = self.brokers[i]
                        .replica
                        .as_ref()
                        .and_then(|r| r.role_epoch());
                    self.committed_in
                        .push(epoch.expect("a leader has an epoch"));
                }
                None => self.fail(format!(
                    "follower {id} hw {hw} past the committed end {}",
                    self.committed.len()
                )),
            }
        }
        self.stats.committed = self.committed.len() as u64;
    }

    fn on_ack(&mut self, waiter: WaiterId, result: Result<(), spate_replication::AckError>) {
        let payload = waiter.0;
        let offset = self.produced[&payload];
        match result {
            Ok(()) => {
                let o = offset.0 as usize;
                match self.committed.get(o) {
                    Some((_, p)) if *p == payload => {}
                    other => self.fail(format!(
                        "payload {payload} acknowledged at {o} but committed there is {other:?}"
                    )),
                }
                self.acked.insert(payload, offset);
                self.stats.acked += 1;
            }
            Err(_) => {
                self.ack_failed.insert(payload);
                self.stats.ack_errors += 1;
            }
        }
    }

    // ---- network ----

    fn incarnation_of(&self, p: Peer) -> u64 {
        match p {
            Peer::Broker(i) => self.brokers[i].incarnation,
            Peer::Controller => 0,
        }
    }

    fn send(&mut self, from: Peer, to: Peer, msg: Msg) {
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
            from_incarnation: self.incarnation_of(from),
            to_incarnation: self.incarnation_of(to),
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
            if self.blocked.contains(&(p.from, p.to))
                || p.from_incarnation != self.incarnation_of(p.from)
                || p.to_incarnation != self.incarnation_of(p.to)
            {
                continue;
            }
            let now = self.now();
            match p.to {
                Peer::Controller => self.controller_receive(p.from, p.msg),
                Peer::Broker(i) => {
                    let event = match p.msg {
                        Msg::Fetch(request) => Event::FetchRequest {
                            request,
                            // The simulated logs keep every record: nothing moves a start.
                            log_start: Offset(0),
                            now_ms: now,
                        },
                        Msg::FetchResp(response) => Event::FetchResponse {
                            response,
                            now_ms: now,
                        },
                        Msg::AlterResp(request, response) => Event::AlterPartitionResponse {
                            request,
                            response,
                            now_ms: now,
                        },
                        Msg::Metadata(state, registered) => {
                            // Like a KRaft broker catching up past its own registration before it
                            // publishes metadata: a restarted broker ignores the state of its previous
                            // life, in which it may lead an epoch whose records its power loss took.
                            if registered.get(&self.brokers[i].id)
                                != Some(&self.brokers[i].incarnation)
                            {
                                continue;
                            }
                            Event::Metadata { state, now_ms: now }
                        }
                        Msg::Alter(_) | Msg::Heartbeat { .. } => unreachable!("to the controller"),
                    };
                    self.step_broker(i, event);
                }
            }
        }
    }

    // ---- the model controller ----

    fn broadcast(&mut self) {
        self.trace(|| format!("controller state {:?}", self.controller.state));
        for i in 0..BROKERS {
            let state = self.controller.state.clone();
            let registered = self.controller.incarnations.clone();
            self.send(
                Peer::Controller,
                Peer::Broker(i),
                Msg::Metadata(state, registered),
            );
        }
    }

    fn controller_receive(&mut self, from: Peer, msg: Msg) {
        let Peer::Broker(i) = from else {
            unreachable!("the controller does not talk to itself")
        };
        let id = self.brokers[i].id;
        match msg {
            Msg::Heartbeat { incarnation } => {
                let known = self.controller.incarnations[&id];
                if incarnation > known {
                    // A restart: the previous life is gone (KRaft re-registration fences it).
                    self.fence(id);
                    self.controller.incarnations.insert(id, incarnation);
                    self.broadcast();
                }
                if incarnation < known {
                    return;
                }
                self.controller.last_heartbeat_ms.insert(id, self.now().0);
                if self.controller.fenced.remove(&id) {
                    self.elect_if_offline();
                }
            }
            Msg::Alter(request) => {
                let response = self.alter_partition(&request);
                if response.is_ok() {
                    self.broadcast();
                } else {
                    self.stats.alter_refused += 1;
                }
                self.send(Peer::Controller, from, Msg::AlterResp(request, response));
            }
            _ => unreachable!("brokers send the controller heartbeats and proposals"),
        }
    }

    fn alter_partition(&mut self, req: &AlterPartitionRequest) -> AlterPartitionResponse {
        self.trace(|| format!("alter {req:?} at {:?}", self.controller.state));
        let c = &mut self.controller;
        if Some(req.leader) != c.state.leader || req.leader_epoch != c.state.leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        if req.partition_epoch != c.state.partition_epoch {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        if req
            .new_isr
            .iter()
            .any(|r| !c.state.isr.contains(r) && c.fenced.contains(r))
        {
            return Err(AlterPartitionError::IneligibleReplica);
        }
        assert!(
            req.new_isr.contains(&req.leader),
            "a leader proposed itself out"
        );
        assert!(req.new_isr.iter().all(|r| c.state.replicas.contains(r)));
        if req.new_isr.len() < c.state.isr.len() {
            self.stats.isr_shrinks += 1;
        } else {
            self.stats.isr_expands += 1;
        }
        c.state.isr = req.new_isr.clone();
        c.state.partition_epoch = c.state.partition_epoch.next();
        Ok(c.state.clone())
    }

    /// Fences a broker: out of the ISR (unless it is the last member) and out of leadership.
    fn fence(&mut self, id: NodeId) {
        let c = &mut self.controller;
        c.fenced.insert(id);
        let mut changed = false;
        if c.state.isr.contains(&id) && c.state.isr.len() > 1 {
            c.state.isr.retain(|r| *r != id);
            changed = true;
        }
        if c.state.leader == Some(id) {
            c.state.leader = None;
            c.state.leader_epoch = c.state.leader_epoch.next();
            changed = true;
        }
        if changed {
            c.state.partition_epoch = c.state.partition_epoch.next();
            self.elect_if_offline();
            self.broadcast();
        }
    }

    fn elect_if_offline(&mut self) {
        let c = &self.controller;
        if c.state.leader.is_some() {
            return;
        }
        let mut candidates: Vec<NodeId> = c
            .state
            .isr
            .iter()
            .copied()
            .filter(|r| !c.fenced.contains(r))
            .collect();
        let mut unclean = false;
        if candidates.is_empty() && c.unclean {
            candidates = c
                .state
                .replicas
                .iter()
                .copied()
                .filter(|r| !c.fenced.contains(r))
                .collect();
            unclean = true;
        }
        if candidates.is_empty() {
            return;
        }
        let pick = candidates[self.rng.below(candidates.len() as u64) as usize];
        let c = &mut self.controller;
        c.state.leader = Some(pick);
        if unclean {
            c.state.isr = vec![pick];
        }
        c.state.leader_epoch = c.state.leader_epoch.next();
        c.state.partition_epoch = c.state.partition_epoch.next();
        self.broadcast();
    }

    fn controller_tick(&mut self) {
        let now = self.now().0;
        let silent: Vec<NodeId> = self
            .controller
            .last_heartbeat_ms
            .iter()
            .filter(|(id, t)| {
                !self.controller.fenced.contains(id) && now.saturating_sub(**t) > SESSION_TIMEOUT_MS
            })
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.fence(id);
        }
        if self.step % METADATA_RESEND_EVERY_STEPS == 0 {
            self.broadcast();
        }
    }

    // ---- faults, clients, consumer ----

    fn faults(&mut self) {
        let crash_per_mille = if self.crash_kind == CrashKind::PowerLoss && self.mode != Mode::Safe
        {
            12
        } else {
            8
        };
        if self.chance(crash_per_mille) {
            let i = self.rng.below(BROKERS as u64) as usize;
            self.crash(i, self.crash_kind);
        }
        // Correlated failure: every broker at once (a rack's power, a bad deploy).
        let all_per_mille = if self.mode == Mode::Safe { 2 } else { 6 };
        if self.chance(all_per_mille) {
            for i in 0..BROKERS {
                self.crash(i, self.crash_kind);
            }
        }
        for i in 0..BROKERS {
            if self.brokers[i].replica.is_none() && self.step >= self.brokers[i].down_until {
                self.start(i);
            }
        }
        if self.chance(10) {
            // Isolate one broker from everyone, or from the controller only (it goes on leading a
            // stale epoch for the brokers that still reach it), or cut one link between brokers.
            let i = self.rng.below(BROKERS as u64) as usize;
            let others: Vec<Peer> = match self.rng.below(3) {
                0 => (0..BROKERS)
                    .filter(|j| *j != i)
                    .map(Peer::Broker)
                    .chain([Peer::Controller])
                    .collect(),
                1 => vec![Peer::Controller],
                _ => {
                    let j = (i + 1 + self.rng.below(BROKERS as u64 - 1) as usize) % BROKERS;
                    vec![Peer::Broker(j)]
                }
            };
            for o in others {
                self.blocked.insert((Peer::Broker(i), o));
                self.blocked.insert((o, Peer::Broker(i)));
            }
        }
        if self.chance(15) {
            self.blocked.clear();
        }
    }

    fn produce(&mut self) {
        // Clients find the leader from metadata; now and then one asks a stale or wrong broker.
        let i = match self.controller.state.leader {
            Some(l) if self.rng.below(10) > 0 => l.0 as usize - 1,
            _ => self.rng.below(BROKERS as u64) as usize,
        };
        let now = self.now();
        let Some(replica) = self.brokers[i].replica.as_mut() else {
            return;
        };
        let epoch = match replica.check_produce(Acks::All) {
            Ok(e) => e,
            Err(_) => {
                self.stats.refused += 1;
                return;
            }
        };
        let payload = self.next_payload;
        self.next_payload += 1;
        let disk = &mut self.brokers[i].disk;
        let offset = Offset(disk.log.len() as i64);
        disk.log.push(Entry {
            offset,
            epoch,
            payload,
        });
        self.produced.insert(payload, offset);
        self.trace(|| {
            format!(
                "produce {payload} at {offset} epoch {epoch} on broker {}",
                i + 1
            )
        });
        self.stats.produced += 1;
        self.step_broker(
            i,
            Event::LeaderAppended {
                log_end: offset.next(),
                now_ms: now,
            },
        );
        self.step_broker(
            i,
            Event::AwaitAcks {
                waiter: WaiterId(payload),
                last_offset: offset,
                timeout_ms: 500,
                now_ms: now,
            },
        );
    }

    fn consume(&mut self) {
        let Some(l) = self.controller.state.leader else {
            return;
        };
        let i = l.0 as usize - 1;
        let Some(replica) = self.brokers[i].replica.as_ref() else {
            return;
        };
        let (RoleKind::Leader, Some(epoch)) = (replica.role(), replica.role_epoch()) else {
            return;
        };
        let hw = replica.high_watermark();
        let seen = self.consumer_hw_by_epoch.entry(epoch).or_insert(hw);
        if hw < *seen {
            let was = *seen;
            self.fail(format!("consumer saw hw {was} then {hw} in epoch {epoch}"));
        }
        *seen = hw;
        let log = &self.brokers[i].disk.log;
        // A consumer switching to a new leader must find what it already read at the same offsets.
        for (o, (e, p)) in self.consumed.iter().enumerate() {
            if o >= hw.0 as usize {
                break;
            }
            if log[o].epoch != *e || log[o].payload != *p {
                self.fail(format!(
                    "consumer read offset {o} as payload {p}, now it is {:?}",
                    log[o]
                ));
            }
        }
        let start = self.consumed.len();
        for e in &log[start.min(hw.0 as usize)..hw.0 as usize] {
            self.consumed.push((e.epoch, e.payload));
        }
        self.stats.consumed = self.consumed.len() as u64;
    }

    /// Logs agree below the min of their HWs, and each HW range equals the committed sequence.
    fn check_all(&self) {
        for a in &self.brokers {
            let Some(ra) = a.replica.as_ref() else {
                continue;
            };
            let hw = ra.high_watermark().0 as usize;
            assert!(hw <= a.disk.log.len(), "broker {} hw past its log", a.id);
            for o in 0..hw {
                let x = &a.disk.log[o];
                match self.committed.get(o) {
                    Some((e, p)) if *e == x.epoch && *p == x.payload => {}
                    other => self.fail(format!(
                        "broker {} has {x:?} below its hw {hw}; committed there: {other:?}",
                        a.id
                    )),
                }
            }
            assert_eq!(
                ra.log_end().0 as usize,
                a.disk.log.len(),
                "core and log disagree"
            );
            assert_eq!(ra.epochs(), &epochs_of_trimmed(ra.epochs(), &a.disk.log));
        }
    }

    fn step_once(&mut self) {
        self.step += 1;
        let now = self.now();
        if self.faults {
            self.faults();
            if self.chance(300) {
                self.produce();
            }
        }
        self.deliver();
        self.controller_tick();
        for i in 0..BROKERS {
            if self.brokers[i].replica.is_none() {
                continue;
            }
            if self.step % HEARTBEAT_EVERY_STEPS == i as u64 % HEARTBEAT_EVERY_STEPS {
                let incarnation = self.brokers[i].incarnation;
                self.send(
                    Peer::Broker(i),
                    Peer::Controller,
                    Msg::Heartbeat { incarnation },
                );
            }
            self.step_broker(i, Event::Tick { now_ms: now });
            if self.chance(300) {
                let disk = &mut self.brokers[i].disk;
                disk.durable = disk.log.len();
                let durable_end = Offset(disk.durable as i64);
                self.step_broker(
                    i,
                    Event::Flushed {
                        durable_end,
                        now_ms: now,
                    },
                );
            }
        }
        self.consume();
        if self.step % 16 == 0 {
            self.check_all();
        }
    }

    fn heal(&mut self) {
        self.faults = false;
        self.blocked.clear();
        for i in 0..BROKERS {
            if self.brokers[i].replica.is_none() {
                self.start(i);
            }
        }
    }

    fn run(mut self) -> Stats {
        for _ in 0..FAULT_STEPS {
            self.step_once();
        }
        self.heal();
        let healed_at = self.step;
        let mut marker: Option<u64> = None;
        loop {
            if self.step - healed_at > LIVENESS_STEPS_MAX {
                let state = &self.controller.state;
                let roles: Vec<_> = self
                    .brokers
                    .iter()
                    .map(|b| {
                        let r = b.replica.as_ref().expect("all up");
                        (r.role(), r.role_epoch(), r.log_end(), r.high_watermark())
                    })
                    .collect();
                self.fail(format!(
                    "no convergence {LIVENESS_STEPS_MAX} steps after healing: controller {state:?}, \
                     brokers {roles:?}, marker {marker:?}"
                ));
            }
            if marker.is_some_and(|m| self.acked.contains_key(&m)) && self.converged() {
                break;
            }
            // One marker produce at a time; a failed or refused one is retried as a new record.
            if marker.is_none_or(|m| self.ack_failed.contains(&m)) {
                let before = self.next_payload;
                self.produce();
                if self.next_payload > before {
                    marker = Some(before);
                }
            }
            self.step_once();
        }
        self.check_all();
        // Every acknowledged record is below the final leader's HW, at its offset, on every broker.
        let leader = self.controller.state.leader.expect("converged");
        let hw = self.brokers[leader.0 as usize - 1]
            .replica
            .as_ref()
            .expect("up")
            .high_watermark();
        for (payload, offset) in &self.acked {
            assert!(
                *offset < hw,
                "acked {payload} at {offset} not below final hw {hw}"
            );
            for b in &self.brokers {
                let e = &b.disk.log[offset.0 as usize];
                assert_eq!(
                    e.payload, *payload,
                    "broker {} lost acked record {offset}",
                    b.id
                );
            }
        }
        self.stats.digest = self.digest();
        self.stats
    }

    fn converged(&self) -> bool {
        let Some(leader) = self.controller.state.leader else {
            return false;
        };
        let l = &self.brokers[leader.0 as usize - 1];
        let Some(lr) = l.replica.as_ref() else {
            return false;
        };
        lr.role() == RoleKind::Leader
            && lr.high_watermark().0 as usize == l.disk.log.len()
            && self.controller.state.isr.len() == BROKERS
            && self.brokers.iter().all(|b| {
                b.disk.log == l.disk.log
                    && b.replica
                        .as_ref()
                        .is_some_and(|r| r.high_watermark() == lr.high_watermark())
            })
    }

    fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in &self.brokers {
            for e in &b.disk.log {
                for v in [e.offset.0 as u64, e.epoch.0 as u64, e.payload] {
                    h = (h ^ v).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        h ^ self.stats.acked ^ (self.stats.leader_changes << 32)
    }
}

/// The history the core should hold for `log`: the log's own epochs, plus a trailing epoch with no
/// records yet if the core holds one (a leader's new epoch starts at its log end).
fn epochs_of_trimmed(core: &EpochHistory, log: &[Entry]) -> EpochHistory {
    let mut h = epochs_of(log);
    if let Some(&(e, start)) = core.entries().last() {
        if start.0 as usize == log.len() && h.latest().is_none_or(|l| l < e) {
            h.assign(e, start);
        }
    }
    h
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

thread_local! {
    /// Set while a test runs seeds that are meant to fail, so their panics do not flood the output.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
}

/// Runs one seed, turning a panic into the seed's replay line.
fn run_seed(seed: u64, mode: Mode) -> Result<Stats, String> {
    catch_unwind(AssertUnwindSafe(|| Sim::new(seed, mode).run())).map_err(|e| {
        let what = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!(
            "seed {seed} failed: {what}\n  replay: SPATE_REPL_SEED={seed} cargo test -p spate-replication --test sim"
        )
    })
}

fn failures_in(seeds: std::ops::Range<u64>, mode: Mode) -> Vec<String> {
    install_quiet_hook();
    QUIET.with(|q| q.set(true));
    let failures = seeds
        .filter_map(|seed| run_seed(seed, mode).err())
        .collect();
    QUIET.with(|q| q.set(false));
    failures
}

#[test]
fn acknowledged_records_survive_crashes_partitions_and_leader_changes() {
    let seeds: Vec<u64> = match env_u64("SPATE_REPL_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("SPATE_REPL_SEED_FIRST").unwrap_or(0);
            (first..first + env_u64("SPATE_REPL_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect()
        }
    };
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for &seed in &seeds {
        match run_seed(seed, Mode::Safe) {
            Ok(s) => {
                total.produced += s.produced;
                total.acked += s.acked;
                total.refused += s.refused;
                total.ack_errors += s.ack_errors;
                total.committed += s.committed;
                total.leader_changes += s.leader_changes;
                total.crashes += s.crashes;
                total.power_losses += s.power_losses;
                total.truncations += s.truncations;
                total.isr_shrinks += s.isr_shrinks;
                total.isr_expands += s.isr_expands;
                total.alter_refused += s.alter_refused;
                total.consumed += s.consumed;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "{} seeds in {:.1} s: {total:?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    // A simulator that does nothing passes everything: insist that it did things.
    let n = seeds.len() as u64;
    if n < 10 {
        return;
    }
    assert!(total.acked >= 20 * n, "{total:?}");
    assert!(total.committed >= 20 * n, "{total:?}");
    assert!(total.consumed >= 10 * n, "{total:?}");
    assert!(total.leader_changes >= 3 * n, "{total:?}");
    assert!(total.crashes >= 2 * n, "{total:?}");
    assert!(total.power_losses >= n / 2, "{total:?}");
    assert!(total.truncations >= n / 10, "{total:?}");
    assert!(
        total.isr_shrinks >= n / 2 && total.isr_expands >= n,
        "{total:?}"
    );
    assert!(total.refused > 0 && total.ack_errors > 0, "{total:?}");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17] {
        let a = run_seed(seed, Mode::Safe).unwrap();
        let b = run_seed(seed, Mode::Safe).unwrap();
        assert_eq!(
            (
                a.digest,
                a.acked,
                a.leader_changes,
                a.crashes,
                a.truncations
            ),
            (
                b.digest,
                b.acked,
                b.leader_changes,
                b.crashes,
                b.truncations
            )
        );
        assert!(a.acked > 0);
    }
}

#[test]
fn the_checker_catches_losses_when_unflushed_acks_meet_power_loss() {
    let failures = failures_in(0..200, Mode::ReplicatedWithPowerLoss);
    eprintln!(
        "replicated acks with power loss: {} of 200 seeds lost data; first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        failures.len() >= 5,
        "unflushed acks and power losses went unnoticed: {} of 200 seeds failed",
        failures.len()
    );
    assert!(failures.iter().all(|f| f.contains("SPATE_REPL_SEED=")));
}

#[test]
fn the_checker_catches_losses_from_unclean_election() {
    let failures = failures_in(0..200, Mode::UncleanElection);
    eprintln!(
        "unclean election: {} of 200 seeds lost data; first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        failures.len() >= 5,
        "unclean elections went unnoticed: {} of 200 seeds failed",
        failures.len()
    );
}
