//! One partition's replica: the leader and follower state machines behind one event/action API.
//!
//! The controller's metadata decides the role ([`Event::Metadata`]); the core never elects itself and
//! never bumps an epoch. As leader it counts followers' fetch positions into the high watermark, proposes
//! ISR changes (AlterPartition) and completes acks=all waiters; as follower it fetches, appends and
//! truncates by leader epoch. See the crate docs for the protocol and the rules taken from Kafka.

use std::collections::{BTreeMap, VecDeque};

use crate::epochs::EpochHistory;
use crate::error::{AckError, AlterPartitionError, FetchError, ProduceRefusal, ReplicationError};
use crate::ids::{CorrelationId, LeaderEpoch, NodeId, NowMs, Offset, WaiterId};
use crate::messages::{
    AlterPartitionRequest, AlterPartitionResponse, Batch, FetchAnswer, FetchRequest, FetchResponse,
    PartitionState, REPLICAS_MAX,
};

/// Which end of a replica's log counts toward the high watermark (and toward joining the ISR). A
/// per-topic setting: what an acks=all acknowledgement promises after crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDurability {
    /// Kafka's default: a record counts once every ISR member has it in its log (page cache), fsynced
    /// or not. Survives any minority of crashes that keep the OS running; a power loss of every ISR
    /// member at once can lose acknowledged records.
    Replicated,
    /// A record counts once every ISR member (the leader too) has fsynced it: followers report their
    /// durable end in each fetch and the leader counts that. Survives any crash pattern.
    ReplicatedAndFlushed,
}

/// The producer's acks setting, for [`Replica::check_produce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0 or acks=1: answered once the leader appended; no waiter.
    Leader,
    /// acks=all: answered when the high watermark passes the batch.
    All,
}

/// Settings of one partition's replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This broker.
    pub node: NodeId,
    /// What counts toward the high watermark.
    pub ack_durability: AckDurability,
    /// `min.insync.replicas`: acks=all needs an ISR at least this large.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms` (Kafka: 30 s): an ISR member not caught up for longer is proposed out.
    pub replica_lag_time_max_ms: u64,
    /// Wait before the next fetch after an error (`replica.fetch.backoff.ms`).
    pub fetch_backoff_ms: u64,
    /// Wait before the next fetch after an empty answer. A leader that long-polls (the broker's
    /// do) answers empty only after waiting for records, or at once because another partition
    /// of the same frame had some: either way the next fetch should go at once (0), or this
    /// partition falls out of step with the others it shares frames with and waits behind their
    /// long-poll. A leader that answers at once (test harnesses) needs a pause here.
    pub empty_fetch_backoff_ms: u64,
    /// A fetch with no answer after this long is presumed lost and sent again.
    pub fetch_timeout_ms: u64,
    /// An AlterPartition with no answer after this long is sent again.
    pub alter_partition_retry_ms: u64,
    /// acks=all waiters kept at most; produce is refused beyond.
    pub waiters_max: usize,
}

/// Upper bound on `waiters_max`: each waiter is a few words, and completing them is a linear scan.
pub const WAITERS_MAX_LIMIT: usize = 65_536;

impl ReplicaConfig {
    /// Settings with Kafka's defaults for `node` (lag 30 s, backoff 1 s, min.insync 1; 1 s
    /// after an empty answer too, for a leader that does not long-poll).
    pub fn new(node: NodeId, ack_durability: AckDurability) -> Self {
        Self {
            node,
            ack_durability,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            fetch_backoff_ms: 1_000,
            empty_fetch_backoff_ms: 1_000,
            fetch_timeout_ms: 30_000,
            alter_partition_retry_ms: 5_000,
            waiters_max: 4_096,
        }
    }

    fn validate(&self) -> Result<(), ReplicationError> {
        let bad = |reason| Err(ReplicationError::InvalidConfig { reason });
        if self.min_insync_replicas == 0 || self.min_insync_replicas > REPLICAS_MAX {
            return bad("min_insync_replicas out of range");
        }
        if self.waiters_max == 0 || self.waiters_max > WAITERS_MAX_LIMIT {
            return bad("waiters_max out of range");
        }
        if self.replica_lag_time_max_ms == 0 || self.fetch_timeout_ms == 0 {
            return bad("zero timeout");
        }
        Ok(())
    }
}

/// The local log as recovered at start: the core's only knowledge of it until it is told more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The offset the next record gets.
    pub log_end: Offset,
    /// Everything below is fsynced.
    pub durable_end: Offset,
    /// The last checkpointed high watermark (clamped to `log_end` by the core: a crash may have taken
    /// records the checkpoint had counted).
    pub high_watermark: Offset,
    /// The leader epoch history of the log.
    pub epochs: EpochHistory,
}

impl LogState {
    /// An empty log.
    pub fn empty() -> Self {
        Self {
            log_end: Offset(0),
            durable_end: Offset(0),
            high_watermark: Offset(0),
            epochs: EpochHistory::new(),
        }
    }
}

/// Something that happened, fed to [`Replica::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<B> {
    /// The controller's state of the partition changed (or was re-sent). Stale ones are ignored.
    Metadata {
        /// The state.
        state: PartitionState,
        /// The time.
        now_ms: NowMs,
    },
    /// Time passed: timeouts of waiters, fetches and proposals; the ISR lag check.
    Tick {
        /// The time.
        now_ms: NowMs,
    },
    /// As leader, the caller appended batches stamped with the epoch [`Replica::check_produce`]
    /// gave; the log now ends at `log_end`.
    LeaderAppended {
        /// The new log end.
        log_end: Offset,
        /// The time.
        now_ms: NowMs,
    },
    /// An acks=all produce whose last record is at `last_offset` waits for the high watermark.
    AwaitAcks {
        /// The caller's handle, returned in [`Action::CompleteWaiter`].
        waiter: WaiterId,
        /// The offset of the produce's last record.
        last_offset: Offset,
        /// The produce's `timeout_ms`.
        timeout_ms: u64,
        /// The time.
        now_ms: NowMs,
    },
    /// Everything below `durable_end` is fsynced (in the log as it is now: the caller reports a flush
    /// only for content no truncation has replaced since).
    Flushed {
        /// The durable end.
        durable_end: Offset,
        /// The time.
        now_ms: NowMs,
    },
    /// As leader: a follower's fetch.
    FetchRequest {
        /// The request.
        request: FetchRequest,
        /// The leader's log start now (retention and DeleteRecords move it outside the core).
        log_start: Offset,
        /// The time.
        now_ms: NowMs,
    },
    /// As follower: the answer to a fetch this replica sent.
    FetchResponse {
        /// The response with its batches.
        response: FetchResponse<B>,
        /// The time.
        now_ms: NowMs,
    },
    /// As leader: the controller's answer to a proposal.
    AlterPartitionResponse {
        /// The request it answers (the broker's RPC layer pairs them). An answer to anything but the
        /// pending proposal is ignored: a late refusal of an earlier copy must not touch a newer one.
        request: AlterPartitionRequest,
        /// The answer.
        response: AlterPartitionResponse,
        /// The time.
        now_ms: NowMs,
    },
}

/// What the caller must do, in order. Append and Truncate must be carried out on the log before the
/// next event is stepped (the core already counts them in its log end); their durability comes later
/// with [`Event::Flushed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<B> {
    /// Send a fetch to the leader.
    SendFetch {
        /// The leader.
        to: NodeId,
        /// The request.
        request: FetchRequest,
    },
    /// Answer a follower's fetch: for `Records`, read batches from `from` and send them with it.
    AnswerFetch {
        /// The follower.
        to: NodeId,
        /// Its request's correlation id.
        correlation: CorrelationId,
        /// The answer.
        answer: FetchAnswer,
    },
    /// Append these batches to the log (follower).
    Append {
        /// Contiguous batches starting at the old log end.
        batches: Vec<B>,
    },
    /// Remove every record at or after `to` (follower, after a diverging epoch).
    Truncate {
        /// The new log end.
        to: Offset,
    },
    /// Remove every record and start the log again, empty, at `start` (follower, when the
    /// leader's log starts there, [`FetchAnswer::BelowLogStart`]: past its end; or, for a log so
    /// restarted and still empty, at the base of the batch holding its end).
    RestartAt {
        /// The new log start and end.
        start: Offset,
    },
    /// Send this AlterPartition to the controller.
    ProposeIsr {
        /// The request.
        request: AlterPartitionRequest,
    },
    /// Answer an acks=all produce.
    CompleteWaiter {
        /// Its handle.
        waiter: WaiterId,
        /// Success, or why not.
        result: Result<(), AckError>,
    },
    /// The high watermark moved: consumers may read below it (wake fetch waiters, checkpoint it).
    HighWatermark {
        /// The new high watermark.
        offset: Offset,
    },
}

/// The role the core is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// No metadata, not a replica, or refusing to lead an epoch its log already has (a restart of that
    /// epoch's leader: leading it again could write different records at offsets others already have).
    Idle,
    /// Leading the partition.
    Leader,
    /// Following (or waiting for a leader when the partition is offline).
    Follower,
}

#[derive(Debug, Clone)]
struct Progress {
    /// The follower's log end from its last valid fetch in this leader epoch; `None` before one.
    end: Option<Offset>,
    /// Its durable end from that fetch.
    durable: Option<Offset>,
    /// Kafka's `lastCaughtUpTimeMs`.
    last_caught_up_ms: NowMs,
    /// The leader's counted end when the last fetch arrived, and when.
    last_fetch_leader_end: Option<Offset>,
    last_fetch_ms: NowMs,
}

#[derive(Debug, Clone)]
struct PendingIsr {
    request: AlterPartitionRequest,
    /// Current ISR ∪ proposed: what the high watermark counts while the outcome is unknown.
    maximal: Vec<NodeId>,
    /// When it was last sent, or last refused as stale: it is sent again a retry interval later.
    sent_ms: NowMs,
}

#[derive(Debug, Clone)]
struct Waiter {
    id: WaiterId,
    /// The high watermark at or past which the produce is replicated (its last offset + 1).
    required_end: Offset,
    deadline_ms: NowMs,
}

#[derive(Debug, Clone)]
struct LeaderRole {
    epoch: LeaderEpoch,
    /// Where this epoch's records start (the log end when leadership began).
    epoch_start: Offset,
    followers: BTreeMap<NodeId, Progress>,
    pending: Option<PendingIsr>,
    waiters: VecDeque<Waiter>,
}

#[derive(Debug, Clone)]
struct FollowerRole {
    leader: Option<NodeId>,
    epoch: LeaderEpoch,
    in_flight: Option<(CorrelationId, NowMs)>,
    next_fetch_ms: NowMs,
}

#[derive(Debug, Clone)]
enum Role {
    Idle,
    Leader(LeaderRole),
    Follower(FollowerRole),
}

/// One partition's replica protocol core. `B` is the caller's record batch type.
#[derive(Debug, Clone)]
pub struct Replica<B> {
    config: ReplicaConfig,
    state: Option<PartitionState>,
    role: Role,
    log_end: Offset,
    durable_end: Offset,
    high_watermark: Offset,
    epochs: EpochHistory,
    correlation_next: u64,
    _batch: std::marker::PhantomData<fn() -> B>,
}

impl<B: Batch> Replica<B> {
    /// A replica over a recovered log, idle until the first metadata.
    ///
    /// # Errors
    /// [`ReplicationError::InvalidConfig`] or [`ReplicationError::InvalidLogState`] (durable end past
    /// the log end, an epoch starting past it).
    pub fn new(config: ReplicaConfig, log: LogState) -> Result<Self, ReplicationError> {
        config.validate()?;
        let bad = |reason| Err(ReplicationError::InvalidLogState { reason });
        if log.log_end.0 < 0 || log.durable_end > log.log_end || log.durable_end.0 < 0 {
            return bad("durable end outside the log");
        }
        if log.epochs.entries().iter().any(|(_, s)| *s > log.log_end) {
            return bad("epoch starts past the log end");
        }
        Ok(Self {
            config,
            state: None,
            role: Role::Idle,
            log_end: log.log_end,
            durable_end: log.durable_end,
            high_watermark: Offset(log.high_watermark.0.clamp(0, log.log_end.0)),
            epochs: log.epochs,
            correlation_next: 0,
            _batch: std::marker::PhantomData,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Changes `min.insync.replicas` (a live topic config change): acks=all requests admitted
    /// and waiters completed from the next event on count against the new value.
    ///
    /// # Errors
    /// [`ReplicationError::InvalidConfig`] for 0 or more than [`REPLICAS_MAX`]; nothing changes.
    pub fn set_min_insync_replicas(
        &mut self,
        min_insync_replicas: usize,
    ) -> Result<(), ReplicationError> {
        let config = ReplicaConfig {
            min_insync_replicas,
            ..self.config.clone()
        };
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The role.
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Idle => RoleKind::Idle,
            Role::Leader(_) => RoleKind::Leader,
            Role::Follower(_) => RoleKind::Follower,
        }
    }

    /// The leader epoch this replica leads or follows in, if any.
    pub fn role_epoch(&self) -> Option<LeaderEpoch> {
        match &self.role {
            Role::Idle => None,
            Role::Leader(l) => Some(l.epoch),
            Role::Follower(f) => Some(f.epoch),
        }
    }

    /// The high watermark: consumers read below it. On a leader it never goes backwards.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// While leading: where this leader epoch's records start (the log end when leadership
    /// began). Until the high watermark reaches it, the high watermark may be below the one the
    /// previous leader answered (followers learn it a fetch late), so ListOffsets answers
    /// OFFSET_NOT_AVAILABLE then, as Kafka does.
    pub fn leader_epoch_start(&self) -> Option<Offset> {
        match &self.role {
            Role::Leader(l) => Some(l.epoch_start),
            _ => None,
        }
    }

    /// The log end as the core counts it.
    pub fn log_end(&self) -> Offset {
        self.log_end
    }

    /// The durable end as last reported.
    pub fn durable_end(&self) -> Offset {
        self.durable_end
    }

    /// The leader epoch history.
    pub fn epochs(&self) -> &EpochHistory {
        &self.epochs
    }

    /// The controller's state last applied.
    pub fn partition_state(&self) -> Option<&PartitionState> {
        self.state.as_ref()
    }

    /// As leader: the ISR the high watermark counts (current ∪ proposed while a proposal is pending).
    pub fn maximal_isr(&self) -> Option<Vec<NodeId>> {
        match &self.role {
            Role::Leader(l) => Some(self.maximal_isr_of(l)),
            _ => None,
        }
    }

    /// As leader: how many records each follower is behind, its log end from its last valid fetch
    /// in this leader epoch (what the high watermark and the ISR count) below the leader's log end,
    /// in replica order. A follower that has not fetched in this epoch is left out: the leader
    /// does not know its log end. Empty on a follower or an idle replica.
    pub fn follower_lags(&self) -> Vec<(NodeId, u64)> {
        let Role::Leader(l) = &self.role else {
            return Vec::new();
        };
        l.followers
            .iter()
            .filter_map(|(node, p)| {
                // Never negative: `check_invariants` holds every follower at or below the log end.
                let end = p.end?;
                Some((*node, (self.log_end.0 - end.0) as u64))
            })
            .collect()
    }

    /// acks=all waiters pending.
    pub fn waiters_len(&self) -> usize {
        match &self.role {
            Role::Leader(l) => l.waiters.len(),
            _ => 0,
        }
    }

    /// May a produce with `acks` be appended now? On success, the leader epoch to stamp its batches
    /// with; after appending, step [`Event::LeaderAppended`] and (for acks=all) [`Event::AwaitAcks`].
    ///
    /// # Errors
    /// Not the leader; acks=all with the ISR below `min.insync.replicas` (checked against the ISR
    /// the controller committed, as Kafka does before appending); or the waiters are full.
    pub fn check_produce(&self, acks: Acks) -> Result<LeaderEpoch, ProduceRefusal> {
        let Role::Leader(leader) = &self.role else {
            return Err(ProduceRefusal::NotLeaderOrFollower);
        };
        if acks == Acks::All {
            let isr = &self.state.as_ref().expect("a leader has metadata").isr;
            if isr.len() < self.config.min_insync_replicas {
                return Err(ProduceRefusal::NotEnoughReplicas);
            }
            if leader.waiters.len() >= self.config.waiters_max {
                return Err(ProduceRefusal::WaitersFull);
            }
        }
        Ok(leader.epoch)
    }

    /// Feeds one event in and returns what to do, in order.
    ///
    /// # Errors
    /// A [`ReplicationError`] for input that breaks the protocol (invalid metadata, batches that do
    /// not continue the log, a leader append that goes backwards); the state is then unchanged except
    /// for actions already returned by earlier events.
    pub fn step(&mut self, event: Event<B>) -> Result<Vec<Action<B>>, ReplicationError> {
        let mut out = Vec::new();
        match event {
            Event::Metadata { state, now_ms } => self.on_metadata(state, now_ms, &mut out)?,
            Event::Tick { now_ms } => self.on_tick(now_ms, &mut out),
            Event::LeaderAppended { log_end, now_ms } => {
                self.on_leader_appended(log_end, now_ms, &mut out)?
            }
            Event::AwaitAcks {
                waiter,
                last_offset,
                timeout_ms,
                now_ms,
            } => self.on_await(waiter, last_offset, timeout_ms, now_ms, &mut out)?,
            Event::Flushed {
                durable_end,
                now_ms,
            } => self.on_flushed(durable_end, now_ms, &mut out)?,
            Event::FetchRequest {
                request,
                log_start,
                now_ms,
            } => self.on_fetch(request, log_start, now_ms, &mut out),
            Event::FetchResponse { response, now_ms } => {
                self.on_fetch_response(response, now_ms, &mut out)?
            }
            Event::AlterPartitionResponse {
                request,
                response,
                now_ms,
            } => self.on_alter_response(&request, response, now_ms, &mut out)?,
        }
        self.check_invariants();
        Ok(out)
    }

    fn check_invariants(&self) {
        assert!(self.durable_end <= self.log_end, "durable past log end");
        if let Role::Leader(l) = &self.role {
            assert!(
                self.high_watermark <= self.log_end,
                "leader hw past log end"
            );
            assert!(l.waiters.len() <= self.config.waiters_max);
            assert!(l.followers.len() < REPLICAS_MAX);
            // A fetch offset past the log end is refused, and a leader's log end only grows.
            assert!(
                l.followers.values().all(|p| p.end <= Some(self.log_end)),
                "follower past the leader's log end"
            );
            assert_eq!(
                self.epochs.latest(),
                Some(l.epoch),
                "leader epoch not latest"
            );
        }
        if let Some(last) = self.epochs.entries().last() {
            assert!(last.1 <= self.log_end, "epoch starts past log end");
        }
    }

    // ---- metadata ----

    fn on_metadata(
        &mut self,
        state: PartitionState,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) -> Result<(), ReplicationError> {
        state.validate()?;
        if let Some(cur) = &self.state {
            if state.partition_epoch <= cur.partition_epoch {
                return Ok(()); // a late or repeated copy
            }
            if state.leader_epoch < cur.leader_epoch {
                return Err(ReplicationError::InvalidPartitionState {
                    reason: "leader epoch went backwards",
                });
            }
        }
        let me = self.config.node;
        self.state = Some(state.clone());
        if !state.replicas.contains(&me) {
            self.step_down(out);
            self.role = Role::Idle;
            return Ok(());
        }
        if state.leader == Some(me) {
            match &self.role {
                Role::Leader(l) if l.epoch == state.leader_epoch => {
                    self.leader_state_changed(now, out)
                }
                _ => {
                    // Leading again in a newer epoch straight from leading: nothing truncated our log
                    // in between, so waiters keep their records and carry over (as Kafka's delayed
                    // produces do). From any other role there are none.
                    let carried = match &mut self.role {
                        Role::Leader(l) => std::mem::take(&mut l.waiters),
                        _ => VecDeque::new(),
                    };
                    self.step_down(out);
                    self.become_leader(now, out);
                    self.adopt_waiters(carried, out);
                }
            }
            return Ok(());
        }
        self.step_down(out);
        let same = matches!(&self.role, Role::Follower(f)
            if f.leader == state.leader && f.epoch == state.leader_epoch);
        if !same {
            // A new leader or epoch: restart fetching from the log end; the first answer tells where
            // the logs diverge (never truncate by high watermark alone, KIP-101).
            self.role = Role::Follower(FollowerRole {
                leader: state.leader,
                epoch: state.leader_epoch,
                in_flight: None,
                next_fetch_ms: now,
            });
            self.maybe_fetch(now, out);
        }
        Ok(())
    }

    /// Leaving the leader role fails every waiter: another leader decides their fate now.
    fn step_down(&mut self, out: &mut Vec<Action<B>>) {
        if let Role::Leader(l) = &mut self.role {
            for w in l.waiters.drain(..) {
                out.push(Action::CompleteWaiter {
                    waiter: w.id,
                    result: Err(AckError::NotLeaderOrFollower),
                });
            }
            self.role = Role::Idle;
        }
    }

    fn adopt_waiters(&mut self, carried: VecDeque<Waiter>, out: &mut Vec<Action<B>>) {
        match &mut self.role {
            Role::Leader(l) => {
                l.waiters = carried;
                self.complete_waiters(out);
            }
            _ => {
                for w in carried {
                    out.push(Action::CompleteWaiter {
                        waiter: w.id,
                        result: Err(AckError::NotLeaderOrFollower),
                    });
                }
            }
        }
    }

    fn become_leader(&mut self, now: NowMs, out: &mut Vec<Action<B>>) {
        let state = self.state.clone().expect("metadata applied");
        let epoch = state.leader_epoch;
        if self.epochs.latest().is_some_and(|latest| latest >= epoch) {
            // Our log already has records of this epoch or a later one, so we led it in an earlier
            // life (or the metadata is broken). Leading it again could put different records at
            // offsets followers hold for this epoch; wait for the controller's next epoch.
            self.role = Role::Idle;
            return;
        }
        self.epochs.assign(epoch, self.log_end);
        let followers = state
            .replicas
            .iter()
            .filter(|r| **r != self.config.node)
            .map(|r| {
                // Kafka's resetReplicaState: ISR members start caught up now, so they get a full lag
                // period to fetch before being proposed out; their positions are unknown until then.
                let caught_up = if state.isr.contains(r) { now } else { NowMs(0) };
                (*r, Progress::new(caught_up))
            })
            .collect();
        self.role = Role::Leader(LeaderRole {
            epoch,
            epoch_start: self.log_end,
            followers,
            pending: None,
            waiters: VecDeque::new(),
        });
        self.update_high_watermark(out);
        self.maybe_change_isr(now, out);
    }

    /// Same leader epoch, new partition epoch: the ISR or replicas changed (our proposal or the
    /// controller's own, e.g. fencing a broker).
    fn leader_state_changed(&mut self, now: NowMs, out: &mut Vec<Action<B>>) {
        let state = self.state.clone().expect("metadata applied");
        let me = self.config.node;
        let Role::Leader(l) = &mut self.role else {
            unreachable!("caller checked the role")
        };
        l.pending = None;
        l.followers.retain(|r, _| state.replicas.contains(r));
        for r in &state.replicas {
            if *r != me {
                l.followers
                    .entry(*r)
                    .or_insert_with(|| Progress::new(NowMs(0)));
            }
        }
        self.update_high_watermark(out);
        self.maybe_change_isr(now, out);
    }

    // ---- leader ----

    fn counted(&self, p: &Progress) -> Option<Offset> {
        match self.config.ack_durability {
            AckDurability::Replicated => p.end,
            AckDurability::ReplicatedAndFlushed => p.durable,
        }
    }

    fn own_counted(&self) -> Offset {
        match self.config.ack_durability {
            AckDurability::Replicated => self.log_end,
            AckDurability::ReplicatedAndFlushed => self.durable_end,
        }
    }

    fn maximal_isr_of(&self, l: &LeaderRole) -> Vec<NodeId> {
        let mut isr = self
            .state
            .as_ref()
            .expect("leader has metadata")
            .isr
            .clone();
        if let Some(p) = &l.pending {
            for r in &p.maximal {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }

    /// HW = min over the maximal ISR of what each member counts; it only moves forward.
    fn update_high_watermark(&mut self, out: &mut Vec<Action<B>>) {
        let Role::Leader(l) = &self.role else { return };
        let me = self.config.node;
        let mut hw = self.own_counted();
        for r in self.maximal_isr_of(l) {
            if r == me {
                continue;
            }
            match l.followers.get(&r).and_then(|p| self.counted(p)) {
                Some(o) => hw = hw.min(o),
                None => return, // a member that has not fetched in this epoch holds the HW
            }
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            out.push(Action::HighWatermark { offset: hw });
            self.complete_waiters(out);
        }
    }

    fn complete_waiters(&mut self, out: &mut Vec<Action<B>>) {
        let hw = self.high_watermark;
        let enough = match &self.role {
            Role::Leader(l) => self.maximal_isr_of(l).len() >= self.config.min_insync_replicas,
            _ => return,
        };
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.waiters.retain(|w| {
            if hw < w.required_end {
                return true;
            }
            let result = if enough {
                Ok(())
            } else {
                Err(AckError::NotEnoughReplicasAfterAppend)
            };
            out.push(Action::CompleteWaiter {
                waiter: w.id,
                result,
            });
            false
        });
    }

    fn on_leader_appended(
        &mut self,
        log_end: Offset,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) -> Result<(), ReplicationError> {
        if !matches!(self.role, Role::Leader(_)) {
            return Err(ReplicationError::InvalidAppend {
                reason: "not the leader",
            });
        }
        if log_end < self.log_end {
            return Err(ReplicationError::InvalidAppend {
                reason: "log end went backwards",
            });
        }
        self.log_end = log_end;
        self.update_high_watermark(out);
        self.maybe_change_isr(now, out);
        Ok(())
    }

    fn on_await(
        &mut self,
        waiter: WaiterId,
        last_offset: Offset,
        timeout_ms: u64,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) -> Result<(), ReplicationError> {
        let required_end = last_offset.next();
        let hw = self.high_watermark;
        let max = self.config.waiters_max;
        let log_end = self.log_end;
        let enough = match &self.role {
            Role::Leader(l) => self.maximal_isr_of(l).len() >= self.config.min_insync_replicas,
            _ => false,
        };
        let Role::Leader(l) = &mut self.role else {
            out.push(Action::CompleteWaiter {
                waiter,
                result: Err(AckError::NotLeaderOrFollower),
            });
            return Ok(());
        };
        if required_end > log_end {
            return Err(ReplicationError::InvalidAppend {
                reason: "awaiting an offset not appended",
            });
        }
        if hw >= required_end {
            let result = if enough {
                Ok(())
            } else {
                Err(AckError::NotEnoughReplicasAfterAppend)
            };
            out.push(Action::CompleteWaiter { waiter, result });
        } else if l.waiters.len() >= max {
            // check_produce refuses before this; a caller that skipped it gets a timeout at once.
            out.push(Action::CompleteWaiter {
                waiter,
                result: Err(AckError::RequestTimedOut),
            });
        } else {
            l.waiters.push_back(Waiter {
                id: waiter,
                required_end,
                deadline_ms: NowMs(now.0.saturating_add(timeout_ms)),
            });
        }
        Ok(())
    }

    fn on_flushed(
        &mut self,
        durable_end: Offset,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) -> Result<(), ReplicationError> {
        if durable_end > self.log_end {
            return Err(ReplicationError::InvalidLogState {
                reason: "flushed past the log end",
            });
        }
        if durable_end <= self.durable_end {
            return Ok(());
        }
        self.durable_end = durable_end;
        match self.role {
            Role::Leader(_) => {
                self.update_high_watermark(out);
                self.maybe_change_isr(now, out);
            }
            // The leader learns our durable end from the next fetch; send it now when none is out,
            // so acks under ReplicatedAndFlushed do not wait a backoff.
            Role::Follower(ref mut f) => {
                if self.config.ack_durability == AckDurability::ReplicatedAndFlushed {
                    f.next_fetch_ms = f.next_fetch_ms.min(now);
                    self.maybe_fetch(now, out);
                }
            }
            Role::Idle => {}
        }
        Ok(())
    }

    fn on_fetch(
        &mut self,
        req: FetchRequest,
        log_start: Offset,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) {
        let answer = self.answer_fetch(&req, log_start, now, out);
        out.push(Action::AnswerFetch {
            to: req.replica,
            correlation: req.correlation,
            answer,
        });
    }

    fn answer_fetch(
        &mut self,
        req: &FetchRequest,
        log_start: Offset,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) -> FetchAnswer {
        let Role::Leader(l) = &self.role else {
            return FetchAnswer::Error(FetchError::NotLeaderOrFollower);
        };
        if req.current_leader_epoch < l.epoch {
            return FetchAnswer::Error(FetchError::FencedLeaderEpoch);
        }
        if req.current_leader_epoch > l.epoch {
            return FetchAnswer::Error(FetchError::UnknownLeaderEpoch);
        }
        if !l.followers.contains_key(&req.replica) {
            return FetchAnswer::Error(FetchError::NotAReplica);
        }
        let hw = self.high_watermark;
        // The log start never passes the log end; clamped, not asserted, as it comes from
        // outside the core.
        let log_start = log_start.min(self.log_end);
        if req.fetch_offset < log_start {
            // Not counted: the follower has none of what it would need to count.
            return FetchAnswer::BelowLogStart {
                log_start,
                high_watermark: hw,
            };
        }
        match req.last_fetched_epoch {
            Some(fetched) => match self.epochs.end_offset_for(fetched, self.log_end) {
                Some((epoch, end_offset)) if epoch < fetched || end_offset < req.fetch_offset => {
                    return FetchAnswer::Diverging {
                        epoch,
                        end_offset,
                        high_watermark: hw,
                    };
                }
                Some(_) => {}
                // The follower names an epoch newer than ours: impossible while it fetches in our
                // epoch, since a leader's own epoch is its latest.
                None => return FetchAnswer::Error(FetchError::OffsetOutOfRange),
            },
            // An empty follower log fetches from our start (0, or where it restarted after a
            // `BelowLogStart`); anything else must name its last epoch.
            None if req.fetch_offset != log_start => {
                return FetchAnswer::Error(FetchError::OffsetOutOfRange)
            }
            None => {}
        }
        if req.fetch_offset > self.log_end || req.durable_end_offset.0 < 0 {
            return FetchAnswer::Error(FetchError::OffsetOutOfRange);
        }
        self.record_fetch(req, now);
        self.update_high_watermark(out);
        self.maybe_change_isr(now, out);
        FetchAnswer::Records {
            from: req.fetch_offset,
            high_watermark: self.high_watermark,
        }
    }

    /// Counts a valid fetch: the follower has our records below its fetch offset.
    fn record_fetch(&mut self, req: &FetchRequest, now: NowMs) {
        let leader_end = self.own_counted();
        let durability = self.config.ack_durability;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let p = l.followers.get_mut(&req.replica).expect("checked");
        p.end = Some(req.fetch_offset);
        p.durable = Some(req.durable_end_offset.min(req.fetch_offset));
        let counted = match durability {
            AckDurability::Replicated => p.end,
            AckDurability::ReplicatedAndFlushed => p.durable,
        }
        .expect("just set");
        // Kafka's rule: caught up now if at the leader's end now; caught up as of the previous fetch
        // if at least where the leader's end was then.
        if counted >= leader_end {
            p.last_caught_up_ms = p.last_caught_up_ms.max(now);
        } else if p.last_fetch_leader_end.is_some_and(|e| counted >= e) {
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.last_fetch_leader_end = Some(leader_end);
        p.last_fetch_ms = now;
    }

    /// Proposes one ISR change if none is pending: shrink the lagging out first, else add a caught-up
    /// replica. The ISR itself changes only when the controller's state says so.
    fn maybe_change_isr(&mut self, now: NowMs, out: &mut Vec<Action<B>>) {
        let Role::Leader(l) = &self.role else { return };
        if l.pending.is_some() {
            return;
        }
        let state = self.state.as_ref().expect("leader has metadata");
        let me = self.config.node;
        let leader_end = self.own_counted();
        let lagging: Vec<NodeId> = state
            .isr
            .iter()
            .copied()
            .filter(|r| *r != me)
            .filter(|r| {
                let p = &l.followers[r];
                let at_end = self.counted(p) == Some(leader_end);
                !at_end && now.since_ms(p.last_caught_up_ms) > self.config.replica_lag_time_max_ms
            })
            .collect();
        let new_isr: Vec<NodeId> = if !lagging.is_empty() {
            state
                .isr
                .iter()
                .copied()
                .filter(|r| !lagging.contains(r))
                .collect()
        } else {
            // Kafka's isFollowerInSync: at or past the HW and into this leader's epoch.
            let joining = state.replicas.iter().copied().find(|r| {
                *r != me
                    && !state.isr.contains(r)
                    && self
                        .counted(&l.followers[r])
                        .is_some_and(|o| o >= self.high_watermark && o >= l.epoch_start)
            });
            let Some(joining) = joining else { return };
            let mut isr = state.isr.clone();
            isr.push(joining);
            isr
        };
        let request = AlterPartitionRequest {
            leader: me,
            leader_epoch: l.epoch,
            partition_epoch: state.partition_epoch,
            new_isr,
        };
        let mut maximal = state.isr.clone();
        for r in &request.new_isr {
            if !maximal.contains(r) {
                maximal.push(*r);
            }
        }
        out.push(Action::ProposeIsr {
            request: request.clone(),
        });
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.pending = Some(PendingIsr {
            request,
            maximal,
            sent_ms: now,
        });
    }

    fn on_alter_response(
        &mut self,
        request: &AlterPartitionRequest,
        response: AlterPartitionResponse,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) -> Result<(), ReplicationError> {
        let Role::Leader(l) = &mut self.role else {
            return Ok(());
        };
        let Some(pending) = &mut l.pending else {
            return Ok(());
        };
        if pending.request != *request {
            return Ok(());
        }
        match response {
            // Applied like metadata: only if newer than what we have.
            Ok(state) => self.on_metadata(state, now, out)?,
            Err(
                AlterPartitionError::InvalidUpdateVersion | AlterPartitionError::FencedLeaderEpoch,
            ) => {
                // Maybe applied by an earlier copy of this request: keep counting the maximal ISR
                // until the controller's state arrives. But not forever: the controller may have
                // decided on a state it had not committed yet and then lost with its leadership, and
                // then no metadata ever comes. So the proposal is sent again a retry interval later
                // (refused again, harmlessly, if the state did move); the whole-cluster simulation
                // found a leader whose ISR could never grow again (spate-sim seed 3).
                pending.sent_ms = now;
            }
            Err(
                AlterPartitionError::IneligibleReplica | AlterPartitionError::OperationNotAttempted,
            ) => {
                // The controller says its epoch is ours and nothing was applied: safe to revert.
                l.pending = None;
            }
        }
        Ok(())
    }

    // ---- ticks ----

    fn on_tick(&mut self, now: NowMs, out: &mut Vec<Action<B>>) {
        match &mut self.role {
            Role::Leader(l) => {
                l.waiters.retain(|w| {
                    if now < w.deadline_ms {
                        return true;
                    }
                    out.push(Action::CompleteWaiter {
                        waiter: w.id,
                        result: Err(AckError::RequestTimedOut),
                    });
                    false
                });
                if let Some(p) = &mut l.pending {
                    if now.since_ms(p.sent_ms) >= self.config.alter_partition_retry_ms {
                        p.sent_ms = now;
                        out.push(Action::ProposeIsr {
                            request: p.request.clone(),
                        });
                    }
                }
                self.maybe_change_isr(now, out);
            }
            Role::Follower(f) => {
                if let Some((_, sent)) = f.in_flight {
                    if now.since_ms(sent) >= self.config.fetch_timeout_ms {
                        f.in_flight = None; // presumed lost; a late answer will not match
                    }
                }
                self.maybe_fetch(now, out);
            }
            Role::Idle => {}
        }
    }

    // ---- follower ----

    fn maybe_fetch(&mut self, now: NowMs, out: &mut Vec<Action<B>>) {
        let Role::Follower(f) = &mut self.role else {
            return;
        };
        let Some(leader) = f.leader else { return };
        if f.in_flight.is_some() || now < f.next_fetch_ms {
            return;
        }
        self.correlation_next += 1;
        let correlation = CorrelationId(self.correlation_next);
        f.in_flight = Some((correlation, now));
        out.push(Action::SendFetch {
            to: leader,
            request: FetchRequest {
                replica: self.config.node,
                correlation,
                current_leader_epoch: f.epoch,
                fetch_offset: self.log_end,
                last_fetched_epoch: self.epochs.latest(),
                durable_end_offset: self.durable_end,
            },
        });
    }

    fn on_fetch_response(
        &mut self,
        resp: FetchResponse<B>,
        now: NowMs,
        out: &mut Vec<Action<B>>,
    ) -> Result<(), ReplicationError> {
        let Role::Follower(f) = &mut self.role else {
            return Ok(());
        };
        let expected = f.leader == Some(resp.leader)
            && f.in_flight.is_some_and(|(c, _)| c == resp.correlation);
        if !expected {
            return Ok(()); // late, duplicated, or from a leader we no longer follow
        }
        f.in_flight = None;
        let backoff = NowMs(now.0.saturating_add(self.config.fetch_backoff_ms));
        match resp.answer {
            FetchAnswer::Error(_) => {
                f.next_fetch_ms = backoff;
            }
            FetchAnswer::Diverging {
                epoch, end_offset, ..
            } => {
                self.truncate_diverging(epoch, end_offset, out);
                self.maybe_fetch(now, out);
            }
            FetchAnswer::BelowLogStart { log_start, .. } => {
                if log_start <= self.log_end {
                    // Answers a fetch from before an append that caught up: ask again.
                    f.next_fetch_ms = backoff;
                    return Ok(());
                }
                // Our whole log is below the leader's start: nothing of it can be fetched
                // after, so it goes, and the log starts again where the leader's does. The
                // empty log is durable once the action is done (before the next event).
                out.push(Action::RestartAt { start: log_start });
                self.log_end = log_start;
                self.durable_end = log_start;
                self.epochs = EpochHistory::new();
                self.maybe_fetch(now, out);
            }
            FetchAnswer::Records {
                from,
                high_watermark,
            } => {
                if from != self.log_end {
                    return Ok(()); // answers a fetch from before a truncation
                }
                let empty = resp.batches.is_empty();
                self.append_fetched(resp.batches, out)?;
                let hw = high_watermark.min(self.log_end);
                if hw > self.high_watermark {
                    self.high_watermark = hw;
                    out.push(Action::HighWatermark { offset: hw });
                }
                if let Role::Follower(f) = &mut self.role {
                    f.next_fetch_ms = if empty {
                        NowMs(now.0.saturating_add(self.config.empty_fetch_backoff_ms))
                    } else {
                        now
                    };
                }
                self.maybe_fetch(now, out);
            }
        }
        Ok(())
    }

    /// Kafka's follower truncation on a diverging epoch (KIP-279): to the smaller of the leader's end
    /// for that epoch and ours; if we do not have that epoch, to the end of our largest epoch below
    /// it, and ask again.
    fn truncate_diverging(
        &mut self,
        leader_epoch: LeaderEpoch,
        leader_end: Offset,
        out: &mut Vec<Action<B>>,
    ) {
        let to = match self.epochs.end_offset_for(leader_epoch, self.log_end) {
            Some((epoch, end)) if epoch == leader_epoch => end.min(leader_end),
            Some((_, end)) => end,
            None => leader_end,
        }
        .min(self.log_end)
        .max(Offset(0));
        if to < self.log_end {
            out.push(Action::Truncate { to });
            self.log_end = to;
            self.durable_end = self.durable_end.min(to);
            self.high_watermark = self.high_watermark.min(to);
        }
        // Also drops an epoch that starts exactly at our end (one we led without writing), so the
        // next fetch names an epoch we have records of.
        self.epochs.truncate_to(to);
    }

    fn append_fetched(
        &mut self,
        batches: Vec<B>,
        out: &mut Vec<Action<B>>,
    ) -> Result<(), ReplicationError> {
        let bad = |log_end: Offset, reason| ReplicationError::NonContiguousBatches {
            log_end: log_end.0,
            reason,
        };
        let Role::Follower(f) = &self.role else {
            return Ok(());
        };
        // A log restarted at the leader's start ([`FetchAnswer::BelowLogStart`]) may start
        // inside a batch (the leader's start moved to an offset within one), and the leader
        // sends whole batches: the first then begins before our end. Our log holds nothing
        // fetched (no epoch recorded; every batch a leader writes has one), so it restarts at
        // that batch's base, as Kafka's follower does on UnexpectedAppendOffsetException; the
        // records below the leader's start that come with it are hidden again when this
        // replica follows the leader's start after the append.
        if let Some(first) = batches.first() {
            let inside = first.base_offset() < self.log_end && first.last_offset() >= self.log_end;
            if inside && self.epochs.latest().is_none() {
                let start = first.base_offset();
                out.push(Action::RestartAt { start });
                self.log_end = start;
                self.durable_end = start;
                self.high_watermark = self.high_watermark.min(start);
            }
        }
        let mut end = self.log_end;
        let mut epoch = self.epochs.latest();
        for b in &batches {
            if b.base_offset() != end {
                return Err(bad(self.log_end, "gap or overlap"));
            }
            if b.last_offset() < b.base_offset() {
                return Err(bad(self.log_end, "batch ends before it starts"));
            }
            if epoch.is_some_and(|e| b.epoch() < e) || b.epoch() > f.epoch {
                return Err(bad(self.log_end, "epoch out of order"));
            }
            epoch = Some(b.epoch());
            end = b.last_offset().next();
        }
        for b in &batches {
            self.epochs.assign(b.epoch(), b.base_offset());
        }
        self.log_end = end;
        if !batches.is_empty() {
            out.push(Action::Append { batches });
        }
        Ok(())
    }
}

impl Progress {
    fn new(last_caught_up_ms: NowMs) -> Self {
        Self {
            end: None,
            durable: None,
            last_caught_up_ms,
            last_fetch_leader_end: None,
            last_fetch_ms: NowMs(0),
        }
    }
}
