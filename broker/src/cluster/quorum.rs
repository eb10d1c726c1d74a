//! This broker's voter of the controller quorum: the glommio shell around
//! `spate_controller::node::ControllerNode` and, while this node leads, its `Controller`.
//!
//! One driver task owns the order of everything: it collects the node's actions after each
//! input, appends the batches to persist to the [`RaftFile`] (fdatasync) and only then tells the
//! node they are durable, sends the Raft messages through the [`Transport`], and publishes the
//! committed image to every core before it answers the requests whose records committed. Other
//! tasks (the inbox, the tick, callers of [`Quorum::submit`]) only feed the node and wake the
//! driver.
//!
//! Invariants: a persist batch is acknowledged only after its fdatasync returned; batches are
//! written in the order the node gave them; a submit is answered only once its entry committed
//! in the term it was proposed in and the image that contains it was published to every core.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use spate_controller::controller::{Controller, ControllerConfig, ControllerError};
use spate_controller::ids::{Incarnation, MetadataOffset, MonotonicMs, NodeId, RaftTerm};
use spate_controller::image::MetadataImage;
use spate_controller::node::{
    decode_message, encode_message, CommittedRead, ControllerNode, NodeConfig, ProposalId,
};
use spate_controller::records::MetadataRecord;
use spate_controller::rng::SplitMix64;
use spate_storage::sync::Notify;
use spate_wire::cluster::{
    Body, ControllerAnswer, ControllerRequest, ControllerResponse, QuorumReplica, Raft,
    QUORUM_REPLICAS_MAX,
};
use tracing::{debug, error, info, warn};

use super::raft_file::RaftFile;
use super::rpc::{Rpc, RpcError};
use super::transport::{Inbound, Transport};
use crate::runtime::ShutdownFlag;

/// One Raft tick: elections take `ELECTION_TICKS_DEFAULT` (10) to 20 ticks, 1-2 s, leaders
/// heartbeat every 2 ticks.
pub const TICK: Duration = Duration::from_millis(100);
/// Submits waiting for their entry to commit, at most; beyond it a submit is refused at once.
pub const SUBMITS_IN_FLIGHT_MAX: usize = 1024;

/// When this leader last heard from a broker, for DescribeQuorum: wall-clock ms, -1 never.
#[derive(Debug, Clone, Copy)]
struct Seen {
    last_fetch_ms: i64,
    last_caught_up_ms: i64,
    /// How far it said it applied the log (heartbeats; voters' come from Raft).
    metadata_offset: Option<u64>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            last_fetch_ms: -1,
            last_caught_up_ms: -1,
            metadata_offset: None,
        }
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(-1, |d| d.as_millis() as i64)
}

/// The committed image as the cores get it, with the quorum's leader.
#[derive(Debug, Clone)]
pub struct Published {
    /// The image.
    pub image: MetadataImage,
    /// The quorum's leader, if known.
    pub leader: Option<NodeId>,
}

/// Hands a published image to every core and resolves once all applied it.
pub type Publish = Box<dyn Fn(Arc<Published>) -> LocalBoxFuture<'static, ()>>;

/// A request's records, built from the leader's image; see [`Quorum::submit`].
pub type Build<'a> = dyn FnOnce(
        &mut Controller,
        &MetadataImage,
        &mut SplitMix64,
        MonotonicMs,
    ) -> Result<Vec<MetadataRecord>, ControllerError>
    + 'a;

struct Waiter {
    proposal: ProposalId,
    done: oneshot::Sender<Result<MetadataOffset, ControllerError>>,
}

/// See the module docs.
pub struct Quorum {
    node: RefCell<ControllerNode>,
    controller: RefCell<Controller>,
    rng: RefCell<SplitMix64>,
    file: RaftFile,
    transport: Rc<Transport>,
    publish: Publish,
    waiters: RefCell<Vec<Waiter>>,
    /// The leader the cores were last told of.
    published_leader: Cell<Option<NodeId>>,
    wake: Notify,
    was_leader: Cell<bool>,
    started: Instant,
    failed: Cell<bool>,
    /// Requests this node sent to the leader, awaiting answers.
    rpc: Rpc,
    /// Woken after each image is published to the cores.
    published: Notify,
    /// The offset of the image the cores last finished applying.
    published_offset: Cell<MetadataOffset>,
    /// Per broker, when this node (as leader) last heard from it; at most
    /// [`QUORUM_REPLICAS_MAX`] brokers.
    seen: RefCell<BTreeMap<NodeId, Seen>>,
    voters: Vec<NodeId>,
    /// Observers' metadata fetches being served (long polls); see `observer::serve_fetch`.
    pub(super) fetches_in_flight: Cell<usize>,
    /// This broker's topic config defaults, over which the leader checks a topic config change
    /// it decides (a forwarded AlterConfigs included).
    topic_defaults: crate::config::TopicDefaults,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum").finish_non_exhaustive()
    }
}

/// Who this voter is: its node id, the voter set, and the seed of its randomness (election
/// timeouts, placement).
#[derive(Debug, Clone)]
pub struct VoterIdentity {
    /// This node.
    pub me: NodeId,
    /// Every voter, this one included.
    pub voters: Vec<NodeId>,
    /// The seed (this run's incarnation).
    pub seed: u64,
}

impl Quorum {
    /// Replays the log under `data_dir`, starts the node, and spawns the driver, inbox and tick
    /// tasks.
    ///
    /// # Errors
    /// If the log cannot be replayed or the node refuses its configuration.
    pub async fn start(
        data_dir: &std::path::Path,
        identity: VoterIdentity,
        transport: Rc<Transport>,
        publish: Publish,
        controller_config: ControllerConfig,
        topic_defaults: crate::config::TopicDefaults,
        shutdown: Arc<ShutdownFlag>,
    ) -> anyhow::Result<Rc<Quorum>> {
        let VoterIdentity { me, voters, seed } = identity;
        let voters_kept = voters.clone();
        let (file, store) = RaftFile::open(data_dir, &voters).await?;
        let node = ControllerNode::new(NodeConfig::new(me, voters, seed), store)
            .map_err(|e| anyhow::anyhow!("starting the controller node: {e}"))?;
        let quorum = Rc::new(Quorum {
            node: RefCell::new(node),
            controller: RefCell::new(Controller::new(controller_config)),
            rng: RefCell::new(SplitMix64::new(seed)),
            file,
            transport,
            publish,
            waiters: RefCell::new(Vec::new()),
            published_leader: Cell::new(None),
            wake: Notify::default(),
            was_leader: Cell::new(false),
            started: Instant::now(),
            failed: Cell::new(false),
            rpc: Rpc::default(),
            published: Notify::default(),
            published_offset: Cell::new(MetadataOffset(0)),
            seen: RefCell::new(BTreeMap::new()),
            voters: voters_kept,
            fetches_in_flight: Cell::new(0),
            topic_defaults,
        });
        // The image replayed from the log, before anything new commits.
        quorum.publish_now().await;
        glommio::spawn_local(quorum.clone().drive(shutdown.clone())).detach();
        glommio::spawn_local(quorum.clone().read_inbox(shutdown.clone())).detach();
        glommio::spawn_local(quorum.clone().tick(shutdown)).detach();
        Ok(quorum)
    }

    /// The topic config defaults a change is checked over.
    pub fn topic_defaults(&self) -> &crate::config::TopicDefaults {
        &self.topic_defaults
    }

    /// The quorum's leader, if this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.node.borrow().leader()
    }

    /// Whether the committed image has `node` registered in run `incarnation`.
    pub fn is_registered(&self, node: NodeId, incarnation: u64) -> bool {
        self.node
            .borrow()
            .image()
            .broker(node)
            .is_some_and(|b| b.incarnation.0 == incarnation)
    }

    /// The offset of the last record applied to the committed image.
    pub fn applied_offset(&self) -> MetadataOffset {
        self.node.borrow().image().last_applied()
    }

    /// Whether the committed image has `node` fenced (or does not know it).
    pub fn is_fenced(&self, node: NodeId) -> bool {
        self.node
            .borrow()
            .image()
            .broker(node)
            .is_none_or(|b| b.fenced)
    }

    /// A topic's id and partition count in the committed image (zeros and -1 if absent).
    pub fn topic_id_and_partitions(&self, name: &str) -> ([u8; 16], i32) {
        let node = self.node.borrow();
        let image = node.image();
        match image
            .topic_id(name)
            .and_then(|id| Some((id, image.topic(id)?)))
        {
            Some((id, topic)) => (id.0, topic.partitions.len() as i32),
            None => ([0; 16], -1),
        }
    }

    /// Sends `request` to the quorum's leader (another node) and waits for its answer.
    ///
    /// # Errors
    /// [`RpcError::NoController`] when no other node is known to lead, or the transport's.
    pub async fn call_leader(
        &self,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, RpcError> {
        let leader = self.leader().ok_or(RpcError::NoController)?;
        if leader.0 == self.transport.node_id() {
            return Err(RpcError::NoController);
        }
        self.rpc.call(&self.transport, leader.0, request).await
    }

    /// Records that `node` was heard from now (a Raft message, or a heartbeat saying how far
    /// it applied the log), for [`Quorum::describe`].
    pub fn note_seen(&self, node: NodeId, caught_up: bool, metadata_offset: Option<u64>) {
        let mut seen = self.seen.borrow_mut();
        if !seen.contains_key(&node) && seen.len() >= QUORUM_REPLICAS_MAX {
            return;
        }
        let now = wall_clock_ms();
        let entry = seen.entry(node).or_default();
        entry.last_fetch_ms = now;
        if let Some(offset) = metadata_offset {
            entry.metadata_offset = Some(offset);
        }
        let caught_up =
            caught_up || metadata_offset.is_some_and(|o| o >= self.node.borrow().committed().0);
        if caught_up {
            entry.last_caught_up_ms = now;
        }
    }

    /// The quorum as this leader sees it (DescribeQuorum), or `None` on a node that does not
    /// lead. Raft indexes start at 1, so a log holding indexes up to N has Kafka's exclusive log
    /// end offset N, and a commit index N is the high watermark N. Voters' log ends come from Raft; observers (registered brokers that are not
    /// voters) report theirs in heartbeats.
    pub fn describe(&self) -> Option<ControllerAnswer> {
        let node = self.node.borrow();
        let status = node.quorum_status()?;
        let seen = self.seen.borrow();
        let now = wall_clock_ms();
        let replica = |id: NodeId, log_end: i64| {
            let s = seen.get(&id).copied().unwrap_or_default();
            QuorumReplica {
                node_id: id.0,
                log_end,
                last_fetch_ms: s.last_fetch_ms,
                last_caught_up_ms: s.last_caught_up_ms,
            }
        };
        let voters = status
            .voters
            .iter()
            .map(|v| {
                if v.node == status.leader {
                    // The leader is always current with itself.
                    QuorumReplica {
                        node_id: v.node.0,
                        log_end: v.matched.0 as i64,
                        last_fetch_ms: now,
                        last_caught_up_ms: now,
                    }
                } else {
                    replica(v.node, v.matched.0 as i64)
                }
            })
            .take(QUORUM_REPLICAS_MAX)
            .collect();
        let observers = node
            .image()
            .brokers()
            .keys()
            .filter(|id| !self.voters.contains(id))
            .map(|&id| {
                let log_end = seen
                    .get(&id)
                    .and_then(|s| s.metadata_offset)
                    .map_or(-1, |o| o as i64);
                replica(id, log_end)
            })
            .take(QUORUM_REPLICAS_MAX)
            .collect();
        Some(ControllerAnswer::DescribeQuorum {
            leader: status.leader.0,
            term: status.term.0,
            committed: status.committed.0,
            voters,
            observers,
        })
    }

    /// Committed records from `from` on (or the snapshot, when `from` was compacted away), for
    /// an observer's metadata fetch.
    pub fn read_committed(&self, from: MetadataOffset) -> CommittedRead {
        self.node.borrow().read_committed(from)
    }

    /// This node.
    pub fn node_id(&self) -> NodeId {
        self.node.borrow().id()
    }

    /// This node's Raft term.
    pub fn term(&self) -> RaftTerm {
        self.node.borrow().term()
    }

    /// Whether this node leads the quorum.
    pub fn is_leader(&self) -> bool {
        self.node.borrow().is_leader()
    }

    /// A clock for the controller's sessions: time since this node started.
    pub fn now(&self) -> MonotonicMs {
        MonotonicMs(self.started.elapsed().as_millis() as u64)
    }

    /// Builds records with the controller from the leader's view (its image plus what it
    /// proposed and has not committed yet), proposes them as one entry, and resolves once they
    /// committed and every core has the image with them.
    ///
    /// # Errors
    /// [`ControllerError::NotController`] on a node that does not lead (or lost leadership before
    /// the entry committed), or the controller's refusal.
    pub async fn submit(&self, build: Box<Build<'_>>) -> Result<MetadataOffset, ControllerError> {
        let receiver = {
            let mut node = self.node.borrow_mut();
            if !node.is_leader() || self.failed.get() {
                return Err(ControllerError::NotController {
                    leader_hint: node.leader().filter(|_| !self.failed.get()),
                });
            }
            if self.waiters.borrow().len() >= SUBMITS_IN_FLIGHT_MAX {
                return Err(ControllerError::NotController {
                    leader_hint: node.leader(),
                });
            }
            let now = self.now();
            let records = {
                let image = node.speculative_image();
                build(
                    &mut self.controller.borrow_mut(),
                    image,
                    &mut self.rng.borrow_mut(),
                    now,
                )?
            };
            if records.is_empty() {
                return Ok(node.image().last_applied());
            }
            let proposal = node.propose(&records).map_err(|e| {
                warn!(error = %e, "proposal refused");
                ControllerError::NotController {
                    leader_hint: node.leader(),
                }
            })?;
            let (done, receiver) = oneshot::channel();
            self.waiters.borrow_mut().push(Waiter { proposal, done });
            receiver
        };
        self.wake.notify_all();
        receiver
            .await
            .unwrap_or(Err(ControllerError::NotController { leader_hint: None }))
    }

    async fn read_inbox(self: Rc<Self>, shutdown: Arc<ShutdownFlag>) {
        while !shutdown.is_triggered() {
            let inbound =
                futures_lite::future::or(async { Some(self.transport.recv().await) }, async {
                    shutdown.wait().await;
                    None
                })
                .await;
            let Some(inbound) = inbound else { return };
            self.handle(inbound);
            self.wake.notify_all();
        }
    }

    fn handle(self: &Rc<Self>, inbound: Inbound) {
        match inbound.body {
            Body::ControllerRequest(request) => {
                let quorum = self.clone();
                let me = self.transport.node_id();
                glommio::spawn_local(async move {
                    let response = super::rpc::serve(quorum, request).await;
                    let body = Body::ControllerResponse(response);
                    if let Err(e) = inbound.connection.send(me, inbound.correlation_id, &body) {
                        debug!(to = inbound.from, error = %e, "controller answer not sent");
                    }
                })
                .detach();
            }
            Body::ControllerResponse(response) => {
                self.rpc.deliver(inbound.correlation_id, response)
            }
            Body::MetadataFetchRequest(request) => {
                super::observer::serve_fetch(self.clone(), request, inbound)
            }
            Body::Raft(raft) => match decode_message(&raft.message) {
                Ok(message) => {
                    if let Err(e) = self.node.borrow_mut().step(message) {
                        debug!(from = inbound.from, error = %e, "raft message refused");
                    }
                    let from = NodeId(inbound.from);
                    let caught_up = self.node.borrow().is_caught_up(from);
                    self.note_seen(from, caught_up, None);
                }
                Err(e) => warn!(from = inbound.from, error = %e, "undecodable raft message"),
            },
            Body::Error(error) => {
                warn!(from = inbound.from, message = %error.message, "cluster peer reported an error")
            }
            other => {
                debug!(from = inbound.from, kind = ?other.kind(), "cluster frame not handled here")
            }
        }
    }

    async fn tick(self: Rc<Self>, shutdown: Arc<ShutdownFlag>) {
        while !shutdown.is_triggered() {
            glommio::timer::sleep(TICK).await;
            let unreachable = self.transport.unreachable_peers();
            {
                let mut node = self.node.borrow_mut();
                if let Some(leader) = node.leader() {
                    if unreachable.iter().any(|(peer, _)| *peer == leader.0) {
                        node.leader_gone(leader);
                    }
                }
                node.tick();
            }
            self.watch_leadership();
            if self.is_leader() {
                // Fence brokers whose session ran out or whose port refuses connections;
                // usually nothing to propose.
                let unreachable: BTreeMap<NodeId, Incarnation> = unreachable
                    .into_iter()
                    .map(|(node, incarnation)| (NodeId(node), Incarnation(incarnation)))
                    .collect();
                let quorum = self.clone();
                glommio::spawn_local(async move {
                    let fenced = quorum
                        .submit(Box::new(move |controller, image, _rng, now| {
                            controller.set_unreachable(unreachable);
                            let records = controller.tick(image, now);
                            for record in &records {
                                if let MetadataRecord::FenceBroker { node, incarnation } = record {
                                    info!(
                                        node = node.0,
                                        incarnation = incarnation.0,
                                        "fencing a broker: its session expired or its port refuses connections"
                                    );
                                }
                            }
                            Ok(records)
                        }))
                        .await;
                    if let Err(e) = fenced {
                        debug!(error = %e, "session check not committed");
                    }
                })
                .detach();
            }
            self.wake.notify_all();
        }
    }

    /// A new leader starts with fresh sessions (every broker gets a full session timeout to
    /// heartbeat it); a node that stopped leading fails its waiters, whose entries may still
    /// commit under the new leader: the client's retry then finds the result.
    fn watch_leadership(&self) {
        let leading = self.node.borrow().is_leader();
        if leading == self.was_leader.get() {
            return;
        }
        self.was_leader.set(leading);
        self.controller.borrow_mut().reset();
        let term = self.node.borrow().term();
        // An Option is a structured value: the leader's id, or no field while there is none
        // (Debug would log the text `Some(3)`).
        info!(
            leading,
            term = term.0,
            leader = self.leader().map(|n| n.0),
            "controller quorum leadership changed"
        );
        if !leading {
            let hint = self.leader();
            for waiter in self.waiters.borrow_mut().drain(..) {
                let _ = waiter
                    .done
                    .send(Err(ControllerError::NotController { leader_hint: hint }));
            }
        }
    }

    async fn drive(self: Rc<Self>, shutdown: Arc<ShutdownFlag>) {
        while !shutdown.is_triggered() && !self.failed.get() {
            if let Err(e) = self.drain_ready().await {
                // A write or fdatasync failed: the node must not be told anything is durable, and
                // it cannot be told that something is not. Stop voting; the quorum goes on without
                // this node, and a restart replays what is on disk.
                error!(error = %e, "metadata log write failed: this node stops taking part in the quorum");
                self.failed.set(true);
                for waiter in self.waiters.borrow_mut().drain(..) {
                    let _ = waiter
                        .done
                        .send(Err(ControllerError::NotController { leader_hint: None }));
                }
                return;
            }
            futures_lite::future::or(self.wake.notified(), async {
                glommio::timer::sleep(TICK).await;
            })
            .await;
        }
    }

    async fn drain_ready(&self) -> anyhow::Result<()> {
        loop {
            let actions = self.node.borrow_mut().ready();
            if actions.is_empty() {
                return Ok(());
            }
            for outbound in &actions.messages {
                let body = Body::Raft(Raft {
                    message: encode_message(&outbound.message).into(),
                });
                if let Err(e) = self.transport.send(outbound.to.0, 0, &body) {
                    debug!(to = outbound.to.0, error = %e, "raft message dropped");
                }
            }
            for batch in &actions.persist {
                self.file.append(batch).await?;
                if let Some(token) = batch.token {
                    self.node.borrow_mut().on_persisted(token);
                }
            }
            let changed = !actions.applied.is_empty() || actions.snapshot_installed.is_some();
            for applied in &actions.applied {
                if let Err(refused) = &applied.outcome {
                    debug!(offset = applied.offset.0, error = ?refused, "committed batch refused by the image");
                }
            }
            if changed || self.leader() != self.published_leader.get() {
                self.publish_now().await;
                self.resolve_waiters(&actions.applied);
            }
            self.watch_leadership();
        }
    }

    fn resolve_waiters(&self, applied: &[spate_controller::node::Applied]) {
        let mut waiters = self.waiters.borrow_mut();
        for a in applied {
            let mut i = 0;
            while i < waiters.len() {
                if waiters[i].proposal.offset == a.offset {
                    let waiter = waiters.swap_remove(i);
                    let result = if waiter.proposal.term != a.term {
                        Err(ControllerError::NotController {
                            leader_hint: self.leader(),
                        })
                    } else {
                        match &a.outcome {
                            Ok(()) => Ok(a.offset),
                            Err(refused) => Err(ControllerError::InvalidConfig {
                                reason: format!("refused when applied: {refused:?}"),
                            }),
                        }
                    };
                    let _ = waiter.done.send(result);
                } else {
                    i += 1;
                }
            }
        }
    }

    async fn publish_now(&self) {
        let leader = self.leader();
        self.published_leader.set(leader);
        let published = Arc::new(Published {
            image: self.node.borrow().image().clone(),
            leader,
        });
        let offset = published.image.last_applied();
        (self.publish)(published).await;
        self.published_offset.set(offset);
        self.published.notify_all();
    }

    /// Waits until the published image satisfies `done`, or `timeout` passes: after the
    /// leader answered a forwarded change, so that this broker's next Metadata answer shows it.
    pub async fn wait_published(&self, done: impl Fn(&MetadataImage) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // The predicate is asked of the applied image; the cores have it once an image at
        // least as new was published to them.
        let published = |offset: MetadataOffset| self.published_offset.get() >= offset;
        loop {
            let satisfied_at = {
                let held = self.node.borrow();
                let image = held.image();
                done(image).then(|| image.last_applied())
            };
            if satisfied_at.is_some_and(published) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            futures_lite::future::or(self.published.notified(), async {
                glommio::timer::sleep(left).await;
            })
            .await;
        }
    }
}
