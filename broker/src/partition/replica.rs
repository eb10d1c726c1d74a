//! A replicated partition's side of the replication protocol (cluster mode): the partition's
//! [`Replica`] state machine from `spate-replication`, fed on the owning core, and the carrying
//! out of what it asks that touches the partition itself (follower appends and truncations,
//! acks=all answers, consumers woken by the high watermark). What goes beyond the partition
//! (fetches to send to the leader, ISR proposals to the controller, answers to followers) is
//! handed back to the caller as [`Effects`]: the core's fetcher and core 0's transport carry
//! those out.
//!
//! Invariants: every event is stepped under `io`, and an `Append` or `Truncate` the replica asks
//! for is done on the log before `io` is released, so the replica's log end is the log's at
//! every release (the replica counts an append as soon as it asks for it). A leader's produce
//! holds `io` from `check_produce` to `LeaderAppended`, so a role change never lands between a
//! leader's check and its append (Kafka's `leaderIsrUpdateLock`). Flushed is reported with the
//! log's durable offset read under `io`, which truncation lowers, so it never covers content a
//! truncation replaced.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;
use spate_replication::{
    Acks, Action, AlterPartitionRequest, AlterPartitionResponse, Batch, CorrelationId,
    EpochHistory, Event, FetchAnswer, FetchRequest, FetchResponse, LeaderEpoch as RLeaderEpoch,
    LogState, NodeId as RNodeId, NowMs, Offset as ROffset, PartitionState, ProduceRefusal, Replica,
    WaiterId,
};
use spate_storage::io::Disk;
use spate_storage::sync::{AsyncMutex, Guard};
use spate_storage::Log;
use spate_wire::batch::batches;
use spate_wire::types::{LeaderEpoch, Offset};
use tracing::{debug, error, info, warn};

/// Milliseconds since this process started: the replicas' clock (monotonic, one per process).
pub fn now() -> NowMs {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    NowMs(start.elapsed().as_millis() as u64)
}

/// What the replica needs of a batch the follower fetched: where it sits and its epoch. The
/// bytes travel beside it (a fetch's batches are appended as the one buffer they came in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchedBatch {
    base: ROffset,
    last: ROffset,
    epoch: RLeaderEpoch,
}

impl Batch for FetchedBatch {
    fn base_offset(&self) -> ROffset {
        self.base
    }
    fn last_offset(&self) -> ROffset {
        self.last
    }
    fn epoch(&self) -> RLeaderEpoch {
        self.epoch
    }
}

/// Splits fetched records into whole batches; a trailing partial batch (a leader's read cut
/// by its byte budget) is dropped: the bytes returned are exactly the batches returned.
///
/// # Errors
/// The reason, for records that are not v2 batches (the caller refuses the whole answer).
pub fn split_batches(records: &Bytes) -> Result<(Bytes, Vec<FetchedBatch>), String> {
    let mut out = Vec::new();
    let mut whole = 0usize;
    for item in batches(records) {
        let (header, raw) = match item {
            Ok(item) => item,
            Err(spate_wire::batch::BatchError::Truncated { .. }) => break,
            Err(e) => return Err(e.to_string()),
        };
        out.push(FetchedBatch {
            base: ROffset(header.base_offset.0),
            last: ROffset(header.last_offset().0),
            epoch: RLeaderEpoch(header.partition_leader_epoch.0.max(0)),
        });
        whole += raw.len();
    }
    Ok((records.slice(..whole), out))
}

/// Names a replicated partition in what leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKey {
    /// The topic's name.
    pub topic: std::rc::Rc<str>,
    /// The topic's id (what the cluster protocol names topics by).
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: i32,
}

/// A core's queue of what its replicas ask of the outside: fetches for the core's fetcher, ISR
/// proposals for the controller. Bounded by the partitions: each has at most one fetch in
/// flight and one proposal pending (retried every few seconds).
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Fetches to send, by leader.
    pub fetches: RefCell<Vec<(PartitionKey, RNodeId, FetchRequest)>>,
    /// ISR changes to propose.
    pub proposals: RefCell<Vec<(PartitionKey, AlterPartitionRequest)>>,
    /// Woken when either gets an entry.
    pub ready: spate_storage::sync::Notify,
}

/// What a step asks of the outside, before it is queued on [`Outgoing`].
#[derive(Debug, Default)]
struct Effects {
    /// Fetches to send to the leader (at most one per partition is in flight).
    pub fetches: Vec<(RNodeId, FetchRequest)>,
    /// ISR changes to propose to the controller.
    pub proposals: Vec<AlterPartitionRequest>,
    /// Answers to followers' fetches: for `Records`, read from `from` on.
    pub answers: Vec<(RNodeId, CorrelationId, FetchAnswer)>,
}

/// The outcome of an acks=all wait.
pub type AckOutcome = Result<(), spate_replication::AckError>;

/// Answers to followers' fetches: for `Records`, read from `from` on.
pub type Answers = Vec<(RNodeId, CorrelationId, FetchAnswer)>;

/// How long a follower whose append failed (a full disk) waits before fetching again.
const FOLLOWER_APPEND_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The replication state of one partition; see the module doc.
pub struct ReplicaSlot {
    key: PartitionKey,
    outgoing: std::rc::Rc<Outgoing>,
    replica: RefCell<Replica<FetchedBatch>>,
    io: AsyncMutex<()>,
    waiters: RefCell<HashMap<WaiterId, oneshot::Sender<AckOutcome>>>,
    next_waiter: Cell<u64>,
    /// Whether followers fsync fetched records before the next fetch reports them.
    flush_before_fetch: bool,
    /// Set at shutdown: no event touches the log any more (it is being closed).
    closed: Cell<bool>,
}

impl std::fmt::Debug for ReplicaSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSlot")
            .field("role", &self.replica.borrow().role())
            .finish()
    }
}

/// A produce's hold on the partition between its check and its append.
pub struct Appending<'a> {
    _io: Guard<'a, ()>,
    /// The epoch to stamp the batches with.
    pub epoch: LeaderEpoch,
}

impl ReplicaSlot {
    /// A slot around a new replica.
    pub fn new(
        key: PartitionKey,
        outgoing: std::rc::Rc<Outgoing>,
        replica: Replica<FetchedBatch>,
        flush_before_fetch: bool,
    ) -> ReplicaSlot {
        ReplicaSlot {
            key,
            outgoing,
            replica: RefCell::new(replica),
            io: AsyncMutex::new(()),
            waiters: RefCell::new(HashMap::new()),
            next_waiter: Cell::new(0),
            flush_before_fetch,
            closed: Cell::new(false),
        }
    }

    /// Takes the topic's new `min.insync.replicas` (clamped to what a replica set can hold,
    /// as at creation).
    pub fn set_min_insync_replicas(&self, min_insync_replicas: u32) {
        let n = (min_insync_replicas as usize).clamp(1, spate_replication::messages::REPLICAS_MAX);
        self.replica
            .borrow_mut()
            .set_min_insync_replicas(n)
            .expect("clamped into range");
    }

    /// The partition's key (topic, its id, partition).
    pub fn key(&self) -> &PartitionKey {
        &self.key
    }

    /// The high watermark: consumers read below it.
    pub fn high_watermark(&self) -> Offset {
        Offset(self.replica.borrow().high_watermark().0)
    }

    /// While leading: where this leader epoch's records start (see
    /// [`spate_replication::Replica::leader_epoch_start`]).
    pub fn leader_epoch_start(&self) -> Option<Offset> {
        self.replica
            .borrow()
            .leader_epoch_start()
            .map(|start| Offset(start.0))
    }

    /// Whether records count toward the high watermark only once fsynced (the topic's
    /// `write.caching=false`).
    pub fn counts_fsynced(&self) -> bool {
        self.flush_before_fetch
    }

    /// Whether this broker leads the partition now.
    pub fn is_leader(&self) -> bool {
        self.replica.borrow().role() == spate_replication::RoleKind::Leader
    }

    /// The epoch this replica leads or follows in.
    pub fn epoch(&self) -> Option<LeaderEpoch> {
        self.replica.borrow().role_epoch().map(|e| LeaderEpoch(e.0))
    }

    /// While leading: each follower (by broker id) and how many records its last fetch in this
    /// leader epoch was behind the log end (see [`Replica::follower_lags`]); empty otherwise.
    pub fn follower_lags(&self) -> Vec<(i32, u64)> {
        self.replica
            .borrow()
            .follower_lags()
            .into_iter()
            .map(|(node, lag)| (node.0, lag))
            .collect()
    }

    /// The controller's state of the partition, as last applied.
    pub fn partition_state(&self) -> Option<PartitionState> {
        self.replica.borrow().partition_state().cloned()
    }

    /// Checks a produce against the replica's role and ISR, and holds the partition until
    /// [`Self::appended`]: no role change can land in between.
    ///
    /// # Errors
    /// Why the produce is refused before anything is appended.
    pub async fn begin_append(&self, acks: Acks) -> Result<Appending<'_>, ProduceRefusal> {
        let io = self.io.lock().await;
        if self.closed.get() {
            return Err(ProduceRefusal::NotLeaderOrFollower);
        }
        let epoch = self.replica.borrow().check_produce(acks)?;
        Ok(Appending {
            _io: io,
            epoch: LeaderEpoch(epoch.0),
        })
    }

    /// The leader appended: its log now ends at `log_end`. Releases the hold.
    pub fn appended<D: Disk>(&self, hold: Appending<'_>, log: &Log<D>) {
        let event = Event::LeaderAppended {
            log_end: ROffset(log.log_end_offset().0),
            now_ms: now(),
        };
        let effects = self.step_sync(event);
        drop(hold);
        self.dispatch(effects);
    }

    /// Registers an acks=all wait for the records up to `last_offset`; the receiver resolves
    /// when the high watermark passes them, leadership moves, or `timeout_ms` passes.
    pub fn await_acks(
        &self,
        last_offset: Offset,
        timeout_ms: u64,
    ) -> oneshot::Receiver<AckOutcome> {
        let id = WaiterId(self.next_waiter.get());
        self.next_waiter.set(id.0 + 1);
        let (done, receiver) = oneshot::channel();
        self.waiters.borrow_mut().insert(id, done);
        let stepped = self.try_step_sync(Event::AwaitAcks {
            waiter: id,
            last_offset: ROffset(last_offset.0),
            timeout_ms,
            now_ms: now(),
        });
        match stepped {
            Some(effects) => {
                self.dispatch(effects);
            }
            // Refused (the replica does not have the offset): answered now, not left waiting
            // in the map for ever.
            None => {
                if let Some(done) = self.waiters.borrow_mut().remove(&id) {
                    let _ = done.send(Err(spate_replication::AckError::RequestTimedOut));
                }
            }
        }
        receiver
    }

    /// Queues what leaves the partition; returns the answers to followers for the caller.
    fn dispatch(&self, effects: Effects) -> Answers {
        if !effects.fetches.is_empty() || !effects.proposals.is_empty() {
            let mut fetches = self.outgoing.fetches.borrow_mut();
            for (to, request) in effects.fetches {
                fetches.push((self.key.clone(), to, request));
            }
            let mut proposals = self.outgoing.proposals.borrow_mut();
            for request in effects.proposals {
                proposals.push((self.key.clone(), request));
            }
            self.outgoing.ready.notify_all();
        }
        effects.answers
    }

    /// Steps an event that asks for no log work (never `Append` or `Truncate`), without `io`:
    /// callers hold it or step events that cannot race an append.
    fn step_sync(&self, event: Event<FetchedBatch>) -> Effects {
        self.try_step_sync(event).unwrap_or_default()
    }

    /// As [`Self::step_sync`]; `None` when the replica refused the event (logged).
    fn try_step_sync(&self, event: Event<FetchedBatch>) -> Option<Effects> {
        let actions = match self.replica.borrow_mut().step(event) {
            Ok(actions) => actions,
            Err(e) => {
                error!(topic = %self.key.topic, partition = self.key.partition, error = %e, "replication refused an event");
                return None;
            }
        };
        let mut effects = Effects::default();
        for action in actions {
            match action {
                Action::Append { .. } | Action::Truncate { .. } | Action::RestartAt { .. } => {
                    unreachable!("only fetch responses ask for log work")
                }
                other => self.simple_action(other, &mut effects),
            }
        }
        Some(effects)
    }

    fn simple_action(&self, action: Action<FetchedBatch>, effects: &mut Effects) {
        match action {
            Action::SendFetch { to, request } => effects.fetches.push((to, request)),
            Action::AnswerFetch {
                to,
                correlation,
                answer,
            } => effects.answers.push((to, correlation, answer)),
            Action::ProposeIsr { request } => effects.proposals.push(request),
            Action::CompleteWaiter { waiter, result } => {
                if let Some(done) = self.waiters.borrow_mut().remove(&waiter) {
                    let _ = done.send(result);
                }
            }
            // The partition's maintenance wakes consumers when the high watermark moved.
            Action::HighWatermark { .. } => {}
            Action::Append { .. } | Action::Truncate { .. } | Action::RestartAt { .. } => {
                unreachable!("handled by caller")
            }
        }
    }

    /// Steps an event under `io` that may ask for log work, and does that work.
    async fn step_with_log<D: Disk>(
        &self,
        event: Event<FetchedBatch>,
        log: &Log<D>,
        records: Option<Bytes>,
    ) -> Answers {
        let _io = self.io.lock().await;
        if self.closed.get() {
            return Answers::new();
        }
        let effects = self.step_locked(event, log, records).await;
        self.dispatch(effects)
    }

    async fn step_locked<D: Disk>(
        &self,
        event: Event<FetchedBatch>,
        log: &Log<D>,
        records: Option<Bytes>,
    ) -> Effects {
        let actions = match self.replica.borrow_mut().step(event) {
            Ok(actions) => actions,
            Err(e) => {
                warn!(topic = %self.key.topic, partition = self.key.partition, error = %e, "replication refused an event");
                return Effects::default();
            }
        };
        let mut effects = Effects::default();
        let mut records = records;
        let mut appended = false;
        for action in actions {
            match action {
                Action::Append { batches } => {
                    let bytes = records
                        .take()
                        .expect("an append comes from a fetch response");
                    match log.append_replicated(bytes).await {
                        Ok(done) => {
                            appended = true;
                            assert_eq!(done.batches, batches.len(), "appended as fetched");
                        }
                        Err(e) => {
                            // The replica counted the batches; the log has not got them. A
                            // fenced log stops the broker (`Core::maintain`); a full disk
                            // refuses before changing anything, so the replica starts again
                            // from the log as it is and fetches the same batches again, after
                            // a pause that keeps a full disk from turning into a busy loop.
                            error!(
                                topic = %self.key.topic,
                                partition = self.key.partition,
                                error = %e,
                                retry_in_ms = FOLLOWER_APPEND_RETRY.as_millis() as u64,
                                "follower append failed"
                            );
                            glommio::timer::sleep(FOLLOWER_APPEND_RETRY).await;
                            return Box::pin(self.restart_from_log(log)).await;
                        }
                    }
                }
                Action::Truncate { to } => {
                    debug!(to = to.0, "truncating to the leader's log");
                    if let Err(e) = log.truncate_to(Offset(to.0)).await {
                        error!(error = %e, to = to.0, "follower truncation failed");
                        return effects;
                    }
                }
                Action::RestartAt { start } => {
                    info!(
                        topic = %self.key.topic,
                        partition = self.key.partition,
                        log_end = log.log_end_offset().0,
                        start = start.0,
                        "the leader's log starts elsewhere than this replica's end: emptying the log to fetch from its start"
                    );
                    if let Err(e) = log.truncate_fully_and_start_at(Offset(start.0)).await {
                        error!(error = %e, start = start.0, "follower log restart failed");
                        return effects;
                    }
                }
                other => self.simple_action(other, &mut effects),
            }
        }
        if appended && self.flush_before_fetch {
            // Under replicated-and-flushed the leader counts only what followers fsynced, so
            // the fetch that reports these records waits for their fsync.
            match log.flush().await {
                Ok(_) => {
                    let event = Event::Flushed {
                        durable_end: ROffset(log.durable_offset().0),
                        now_ms: now(),
                    };
                    let more = self.step_sync(event);
                    effects.fetches.extend(more.fetches);
                    effects.proposals.extend(more.proposals);
                }
                Err(e) => error!(error = %e, "follower flush failed"),
            }
        }
        effects
    }

    /// Replaces the replica by one built from `log` as it is (its end, durable end and epoch
    /// history; the high watermark kept), then applies the controller's last state to it again,
    /// so a follower fetches from the log's real end. Called under `io`.
    async fn restart_from_log<D: Disk>(&self, log: &Log<D>) -> Effects {
        let (config, state, high_watermark) = {
            let replica = self.replica.borrow();
            (
                replica.config().clone(),
                replica.partition_state().cloned(),
                replica.high_watermark(),
            )
        };
        let epochs = log
            .epochs()
            .await
            .entries()
            .iter()
            .map(|e| (RLeaderEpoch(e.epoch.0), ROffset(e.start_offset.0)))
            .collect();
        let fresh = EpochHistory::from_entries(epochs)
            .map_err(|e| e.to_string())
            .and_then(|epochs| {
                let state = LogState {
                    log_end: ROffset(log.log_end_offset().0),
                    durable_end: ROffset(log.durable_offset().0),
                    high_watermark,
                    epochs,
                };
                Replica::new(config, state).map_err(|e| e.to_string())
            });
        match fresh {
            Ok(fresh) => *self.replica.borrow_mut() = fresh,
            Err(e) => {
                error!(topic = %self.key.topic, partition = self.key.partition, error = %e, "the replica could not start again from its log");
                return Effects::default();
            }
        }
        let Some(state) = state else {
            return Effects::default();
        };
        self.step_locked(
            Event::Metadata {
                state,
                now_ms: now(),
            },
            log,
            None,
        )
        .await
    }

    /// The controller's new state of the partition.
    pub async fn metadata<D: Disk>(&self, state: PartitionState, log: &Log<D>) {
        self.step_with_log(
            Event::Metadata {
                state,
                now_ms: now(),
            },
            log,
            None,
        )
        .await;
    }

    /// A follower's fetch (as leader): the answer to send it.
    pub async fn fetch_request<D: Disk>(&self, request: FetchRequest, log: &Log<D>) -> Answers {
        self.step_with_log(
            Event::FetchRequest {
                request,
                log_start: ROffset(log.log_start_offset().0),
                now_ms: now(),
            },
            log,
            None,
        )
        .await
    }

    /// The leader's answer to this replica's fetch (as follower), with its records.
    pub async fn fetch_response<D: Disk>(
        &self,
        response: FetchResponse<FetchedBatch>,
        records: Bytes,
        log: &Log<D>,
    ) {
        self.step_with_log(
            Event::FetchResponse {
                response,
                now_ms: now(),
            },
            log,
            Some(records),
        )
        .await;
    }

    /// Follows the leader's log start (moved by its retention or by DeleteRecords), so records
    /// deleted there do not come back should this replica lead: up to the leader's start, but
    /// never past this replica's high watermark (Kafka's bound on a follower's start too).
    pub async fn follow_log_start<D: Disk>(&self, leader_start: Offset, log: &Log<D>) {
        let target = leader_start
            .min(self.high_watermark())
            .min(log.high_watermark());
        if target <= log.log_start_offset() {
            return;
        }
        let _io = self.io.lock().await;
        if self.closed.get() {
            return;
        }
        if let Err(e) = log.delete_records(target).await {
            warn!(topic = %self.key.topic, partition = self.key.partition, error = %e, "following the leader's log start failed");
        }
    }

    /// The controller's answer to this replica's ISR proposal.
    pub async fn alter_partition_response<D: Disk>(
        &self,
        request: AlterPartitionRequest,
        response: AlterPartitionResponse,
        log: &Log<D>,
    ) {
        self.step_with_log(
            Event::AlterPartitionResponse {
                request,
                response,
                now_ms: now(),
            },
            log,
            None,
        )
        .await;
    }

    /// The log's durable offset may have moved (a flush finished): counts it now, so an
    /// acks=all produce is answered when its fsync completes rather than at the next tick.
    /// Cheap when nothing moved; skipped when the partition is busy (the caller retries).
    pub fn note_durable<D: Disk>(&self, log: &Log<D>) {
        let durable = ROffset(log.durable_offset().0);
        if durable <= self.replica.borrow().durable_end() {
            return;
        }
        let Some(_io) = self.io.try_lock() else {
            return;
        };
        let effects = self.step_sync(Event::Flushed {
            durable_end: durable,
            now_ms: now(),
        });
        self.dispatch(effects);
    }

    /// Time passed: waiter timeouts, ISR lag checks, fetch and proposal retries. Skipped when
    /// the partition is busy (the next tick does it). Durability is counted apart, by
    /// [`Self::note_durable`].
    pub fn tick(&self) {
        let Some(_io) = self.io.try_lock() else {
            return;
        };
        let effects = self.step_sync(Event::Tick { now_ms: now() });
        self.dispatch(effects);
    }

    /// Stops the replica touching the log: waits for the step in progress (a follower's append,
    /// say), then refuses every later one. Called before the log is closed.
    pub async fn close(&self) {
        let _io = self.io.lock().await;
        self.closed.set(true);
    }

    /// The replica's durable end (a follower reports it with each fetch).
    pub fn durable_end(&self) -> Offset {
        Offset(self.replica.borrow().durable_end().0)
    }
}

#[cfg(test)]
mod tests {
    //! The glue between the protocol and real logs (on the in-memory disk), without a network:
    //! a leader and a follower slot, fetches carried by hand as the broker's fetcher would.

    use std::path::Path;
    use std::rc::Rc;

    use bytes::BytesMut;
    use spate_replication::{AckDurability, LogState, ReplicaConfig};
    use spate_storage::io::mem::MemDisk;
    use spate_storage::{block_on, LogConfig, ReadChunk, ReadUpTo};
    use spate_wire::batch::{BatchBuilder, BatchSpec};

    use super::*;

    fn log(disk: &MemDisk, dir: &str) -> Log<MemDisk> {
        block_on(Log::open(
            disk.clone(),
            Path::new(dir),
            LogConfig::default(),
        ))
        .unwrap()
    }

    fn slot(node: i32, outgoing: &Rc<Outgoing>) -> ReplicaSlot {
        let config = ReplicaConfig::new(RNodeId(node), AckDurability::ReplicatedAndFlushed);
        let replica = Replica::new(config, LogState::empty()).unwrap();
        let key = PartitionKey {
            topic: Rc::from("t"),
            topic_id: [1; 16],
            partition: 0,
        };
        ReplicaSlot::new(key, outgoing.clone(), replica, true)
    }

    fn state(epoch: i32, partition_epoch: i32) -> PartitionState {
        PartitionState {
            replicas: vec![RNodeId(1), RNodeId(2)],
            leader: Some(RNodeId(1)),
            leader_epoch: RLeaderEpoch(epoch),
            partition_epoch: spate_replication::PartitionEpoch(partition_epoch),
            isr: vec![RNodeId(1), RNodeId(2)],
        }
    }

    fn batch(records: usize) -> Bytes {
        let mut out = BytesMut::new();
        let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
        for _ in 0..records {
            builder.push(0, None, Some(b"value"), &[]);
        }
        builder.finish();
        out.freeze()
    }

    /// Reads what a leader's answer says to send, as `cluster::replication` does.
    fn read_from(log: &Log<MemDisk>, from: Offset) -> Bytes {
        if from >= log.log_end_offset() {
            return Bytes::new();
        }
        let read = block_on(log.read(from, 1 << 20, ReadUpTo::LogEnd)).unwrap();
        let mut out = BytesMut::new();
        for chunk in read.chunks {
            match chunk {
                ReadChunk::Memory(b) => {
                    out.extend_from_slice(&b.header);
                    out.extend_from_slice(&b.records);
                }
                ReadChunk::File(range) => out.extend_from_slice(&block_on(range.load()).unwrap()),
            }
        }
        out.freeze()
    }

    /// Carries the follower's queued fetch to the leader and the answer back.
    fn round_trip(
        leader: &ReplicaSlot,
        leader_log: &Log<MemDisk>,
        follower: &ReplicaSlot,
        follower_log: &Log<MemDisk>,
        follower_out: &Outgoing,
    ) -> bool {
        let Some((_, to, mut request)) = follower_out.fetches.borrow_mut().pop() else {
            return false;
        };
        // As the fetcher does at send time: the durable end may have moved since the replica
        // asked (it fsynced after its append).
        request.durable_end_offset = ROffset(follower.durable_end().0).min(request.fetch_offset);
        assert_eq!(to, RNodeId(1));
        let answers = block_on(leader.fetch_request(request.clone(), leader_log));
        let (_, _, answer) = answers.into_iter().next().expect("one answer");
        let records = match answer {
            FetchAnswer::Records { from, .. } => read_from(leader_log, Offset(from.0)),
            _ => Bytes::new(),
        };
        let (records, batches) = split_batches(&records).unwrap();
        let response = FetchResponse {
            leader: RNodeId(1),
            correlation: request.correlation,
            answer,
            batches,
        };
        block_on(follower.fetch_response(response, records, follower_log));
        true
    }

    #[test]
    fn a_follower_copies_the_leaders_batches_and_acks_wait_for_its_fsync() {
        let disk = MemDisk::new();
        let (leader_out, follower_out) =
            (Rc::new(Outgoing::default()), Rc::new(Outgoing::default()));
        let (leader_log, follower_log) = (log(&disk, "/l/t-0"), log(&disk, "/f/t-0"));
        let leader = slot(1, &leader_out);
        let follower = slot(2, &follower_out);
        block_on(leader.metadata(state(1, 1), &leader_log));
        block_on(follower.metadata(state(1, 1), &follower_log));
        assert!(leader.is_leader() && !follower.is_leader());

        // The leader appends two batches in its epoch; an acks=all wait is registered.
        let hold = block_on(leader.begin_append(Acks::All)).unwrap();
        assert_eq!(hold.epoch, LeaderEpoch(1));
        block_on(leader_log.append(batch(3), hold.epoch)).unwrap();
        let info = block_on(leader_log.append(batch(2), hold.epoch)).unwrap();
        leader.appended(hold, &leader_log);
        let mut acked = leader.await_acks(info.last_offset, 10_000);
        assert_eq!(acked.try_recv(), Ok(None), "nothing replicated yet");

        // The follower's first fetch (asked at metadata) brings both batches; it fsyncs them
        // and its next fetch reports them durable.
        assert!(round_trip(
            &leader,
            &leader_log,
            &follower,
            &follower_log,
            &follower_out
        ));
        assert_eq!(follower_log.log_end_offset(), Offset(5));
        assert_eq!(follower_log.durable_offset(), Offset(5));
        assert_eq!(
            read_from(&follower_log, Offset(0)),
            read_from(&leader_log, Offset(0))
        );
        assert_eq!(
            acked.try_recv(),
            Ok(None),
            "the leader has not fsynced its own copy"
        );
        block_on(leader_log.flush()).unwrap();
        leader.note_durable(&leader_log);
        assert!(round_trip(
            &leader,
            &leader_log,
            &follower,
            &follower_log,
            &follower_out
        ));
        assert_eq!(leader.high_watermark(), Offset(5));
        assert_eq!(acked.try_recv(), Ok(Some(Ok(()))));
    }

    #[test]
    fn a_new_leader_epoch_fails_waiters_and_fetched_garbage_is_refused() {
        let disk = MemDisk::new();
        let out = Rc::new(Outgoing::default());
        let leader_log = log(&disk, "/l/t-0");
        let leader = slot(1, &out);
        block_on(leader.metadata(state(1, 1), &leader_log));
        let hold = block_on(leader.begin_append(Acks::All)).unwrap();
        let info = block_on(leader_log.append(batch(1), hold.epoch)).unwrap();
        leader.appended(hold, &leader_log);
        let mut acked = leader.await_acks(info.last_offset, 10_000);
        // Leadership moves to broker 2.
        let mut moved = state(2, 2);
        moved.leader = Some(RNodeId(2));
        block_on(leader.metadata(moved, &leader_log));
        assert!(!leader.is_leader());
        assert_eq!(
            acked.try_recv(),
            Ok(Some(Err(spate_replication::AckError::NotLeaderOrFollower)))
        );
        assert!(block_on(leader.begin_append(Acks::Leader)).is_err());
        // Bytes that are not batches are refused whole; a truncated last batch is dropped.
        assert!(split_batches(&Bytes::from_static(&[0xff; 80])).is_err());
        let two = [batch(1), batch(1)].concat();
        let cut = Bytes::from(two[..two.len() - 5].to_vec());
        let (kept, batches) = split_batches(&cut).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(kept.len(), batch(1).len());
    }
}
