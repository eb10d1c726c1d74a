//! [`ControllerNode`]: one member of the controller quorum, a sans-I/O wrapper over raft-rs's `RawNode`.
//!
//! The caller drives it with four inputs and one output:
//!
//! - [`ControllerNode::tick`] on a timer (raft-rs counts elections and heartbeats in ticks),
//! - [`ControllerNode::step`] with each Raft message from a peer ([`decode_message`] first),
//! - [`ControllerNode::propose`] with the batch of records one
//!   [`Controller`](crate::controller::Controller) call returned (one entry, applied all or nothing),
//! - [`ControllerNode::on_persisted`] when a [`PersistBatch`] is durable,
//! - and [`ControllerNode::ready`] after any of them: an [`Actions`] with messages to send now, batches
//!   to persist in order, and the records committed and applied to the node's image.
//!
//! Persistence follows raft-rs's asynchronous ready protocol: each ready's entries, hard state and
//! received snapshot go out as one batch; messages that promise durability (a follower's append
//! response, a vote) are held until that batch is acknowledged, while a leader's appends go out at once
//! (the leader counts its own log only once persisted, raft thesis 10.2.1). Batches must be made durable
//! in the order given; acknowledging one acknowledges all before it. A crash may keep any prefix of the
//! unacknowledged batches; restart from what the disk holds ([`RaftLogStore`]).
//!
//! Snapshots bound the log: every `snapshot_every_entries` applied entries, the node snapshots its image
//! and emits a compaction batch; a follower too far behind receives that snapshot from the leader.
//!
//! Brokers that are not voters follow the log by *fetching committed records* from a voter
//! ([`ControllerNode::read_committed`] and [`MetadataFollower`]), as KRaft's observers do, rather than as
//! raft-rs learners: learners are members of the Raft configuration, so every broker joining or leaving
//! would be a conf change (out of scope here), and the leader would track and push to every broker of the
//! cluster. Fetching keeps the quorum's work independent of the cluster's size and needs no membership.

use std::collections::VecDeque;

use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message, MessageType, Snapshot};
use raft::{Config, GetEntriesContext, RawNode, StateRole, Storage};
use thiserror::Error;

use crate::codec::DecodeError;
use crate::ids::{MetadataOffset, NodeId, RaftTerm};
use crate::image::BatchRefused;
use crate::image::{ApplyError, MetadataImage};
use crate::log_store::{PersistBatch, PersistToken, RaftLogStore};
use crate::records::{decode_batch, encode_batch, BatchError, MetadataRecord, BATCH_BYTES_MAX};
use crate::rng::{RandomSource, SplitMix64};

/// Ticks without a leader's heartbeat before a follower campaigns; the actual timeout is drawn from
/// `[election_ticks, 2 * election_ticks)` by the node's seeded RNG. It must comfortably exceed two
/// durable writes plus a network round trip (a candidate persists its vote before asking, each voter
/// persists its vote before answering), or elections never finish: the simulator found a 5-voter
/// cluster that never elected a leader with writes as slow as the timeout.
pub const ELECTION_TICKS_DEFAULT: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS_DEFAULT: usize = 2;
/// Ticks a voter told the leader is gone ([`ControllerNode::leader_gone`]) waits before it
/// campaigns itself, leaving the designated successor's election to finish first.
pub const LEADER_GONE_GRACE_TICKS: usize = 3;
/// Applied entries between two snapshots of the image.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 1024;
/// The largest append message raft-rs builds (it always sends at least one entry); room for the largest batch.
pub const APPEND_BYTES_MAX: u64 = 2 * 1024 * 1024;
/// Appends in flight to one follower.
pub const INFLIGHT_APPENDS_MAX: usize = 256;
/// Bytes proposed but not committed; above it proposals are refused (back pressure, not memory growth).
pub const UNCOMMITTED_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// The largest encoded Raft message accepted from the network (a snapshot carries the whole image).
pub const MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Voters in the quorum.
pub const VOTERS_MAX: usize = 9;
/// Records returned by one [`ControllerNode::read_committed`].
pub const READ_RECORDS_MAX: usize = 4096;
/// Election timeouts a follower may stay in the leader's "snapshot in flight" state before the leader
/// gives up on that snapshot and probes again: raft-rs waits for the transport to report a snapshot's
/// fate, and a snapshot lost without a report would otherwise stall that follower forever.
pub const SNAPSHOT_TIMEOUT_ELECTIONS: usize = 2;
/// The version byte in front of every encoded Raft message.
pub const MESSAGE_FORMAT_VERSION: u8 = 1;

const _: () = assert!(BATCH_BYTES_MAX as u64 <= APPEND_BYTES_MAX);
const _: () = assert!(APPEND_BYTES_MAX <= UNCOMMITTED_BYTES_MAX);

/// Why the node refused an input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeError {
    /// Only the leader proposes; `leader_hint` is the leader if this node knows it.
    #[error("not the leader, leader {leader_hint:?}")]
    NotLeader {
        /// The leader, if known.
        leader_hint: Option<NodeId>,
    },
    /// The leader refused the proposal: too many uncommitted bytes, or a leadership transfer.
    #[error("proposal dropped")]
    ProposalDropped,
    /// A message raft-rs refuses (from an unknown peer, or a local message type from the network).
    #[error("message refused: {reason}")]
    MessageRefused {
        /// raft-rs's reason.
        reason: String,
    },
    /// The batch cannot be proposed.
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    /// The configuration is invalid.
    #[error("invalid config: {reason}")]
    InvalidConfig {
        /// Why.
        reason: String,
    },
}

/// A node's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node.
    pub node: NodeId,
    /// The fixed voter set (`--controller-voters`), this node among them: only voters run a
    /// `ControllerNode` (other brokers follow with a [`MetadataFollower`]).
    pub voters: Vec<NodeId>,
    /// See [`ELECTION_TICKS_DEFAULT`].
    pub election_ticks: usize,
    /// See [`HEARTBEAT_TICKS_DEFAULT`].
    pub heartbeat_ticks: usize,
    /// See [`SNAPSHOT_EVERY_ENTRIES_DEFAULT`].
    pub snapshot_every_entries: u64,
    /// Seeds the election timeouts, so that a run replays. The node id is mixed in, so that voters given
    /// the same seed still draw different timeouts (equal timeouts would split every vote).
    pub seed: u64,
}

impl NodeConfig {
    /// Defaults for `node` in `voters`.
    pub fn new(node: NodeId, voters: Vec<NodeId>, seed: u64) -> Self {
        Self {
            node,
            voters,
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            seed,
        }
    }
}

/// Identifies a proposal: the entry it became. Raft's log matching makes `(term, offset)` unique: when
/// the entry committed at `offset` has this `term`, the proposal committed; any other term means it was
/// lost with its leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProposalId {
    /// The leader's term when it proposed.
    pub term: RaftTerm,
    /// The entry's index.
    pub offset: MetadataOffset,
}

/// A Raft message and where to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// The destination.
    pub to: NodeId,
    /// The message; send `encode_message(&message)`.
    pub message: Message,
}

/// One committed entry, applied to the node's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Its offset.
    pub offset: MetadataOffset,
    /// The term it was proposed in: compare with [`ProposalId`].
    pub term: RaftTerm,
    /// The batch of records, empty for Raft's empty entry at the start of a term (and for an entry
    /// that does not decode).
    pub records: Vec<MetadataRecord>,
    /// Whether the image accepted the batch.
    pub outcome: Result<(), BatchRefused>,
}

/// What the caller must do after an input. See the module docs for the order.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    /// Send these now.
    pub messages: Vec<Outbound>,
    /// Make these durable in order, then acknowledge each token.
    pub persist: Vec<PersistBatch>,
    /// Entries committed and applied to [`ControllerNode::image`], in order.
    pub applied: Vec<Applied>,
    /// The image was replaced by a snapshot from the leader at this offset, before `applied` (brokers
    /// rebuild their derived state from [`ControllerNode::image`]).
    pub snapshot_installed: Option<MetadataOffset>,
}

impl Actions {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_empty()
            && self.applied.is_empty()
            && self.snapshot_installed.is_none()
    }
}

/// An answer to [`ControllerNode::read_committed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommittedRead {
    /// Committed entries from the offset asked for, in order (`None` for Raft's empty entries, and for
    /// entries that do not decode, which every image refuses alike).
    Records(Vec<(MetadataOffset, Vec<MetadataRecord>)>),
    /// The offset asked for is compacted: start again from this snapshot of the image.
    Snapshot(Vec<u8>),
}

struct InFlight {
    token: PersistToken,
    ready_number: Option<u64>,
    held: Vec<Message>,
}

/// How far one voter's copy of the log matches the leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterProgress {
    /// The voter.
    pub node: NodeId,
    /// The last offset the leader knows the voter holds (the leader's own: what it persisted).
    pub matched: MetadataOffset,
}

/// The quorum as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// This node, the leader.
    pub leader: NodeId,
    /// The leader's term (Kafka's leader epoch of the metadata partition).
    pub term: RaftTerm,
    /// The highest committed offset (Kafka's high watermark of the metadata log).
    pub committed: MetadataOffset,
    /// The leader's last offset, committed or not.
    pub last: MetadataOffset,
    /// Every voter, the leader included, by node id.
    pub voters: Vec<VoterProgress>,
}

/// One voter of the controller quorum. See the module docs.
pub struct ControllerNode {
    config: NodeConfig,
    raw: RawNode<RaftLogStore>,
    image: MetadataImage,
    /// The committed image plus the leader's own log, and the term it was built in.
    speculative: Option<(u64, MetadataImage)>,
    rng: SplitMix64,
    next_token: u64,
    in_flight: VecDeque<InFlight>,
    releasable: Vec<Outbound>,
    /// Per peer (raft id), ticks spent with a snapshot in flight.
    snapshot_ticks: std::collections::BTreeMap<u64, usize>,
}

impl ControllerNode {
    /// Starts a node from its durable log: [`RaftLogStore::new`] for a node that never ran, or the
    /// durable copy the caller rebuilt after a restart.
    ///
    /// # Errors
    ///
    /// [`NodeError::InvalidConfig`] if the node is not a voter, the voters are too many, have
    /// duplicates or differ from the durable log's, or raft-rs refuses the tick settings.
    ///
    /// # Panics
    ///
    /// Panics if the durable snapshot does not decode: it was written by this node, so that is a bug or
    /// a disk corruption the caller's checksums should have caught.
    pub fn new(config: NodeConfig, store: RaftLogStore) -> Result<Self, NodeError> {
        let invalid = |reason: &str| {
            Err(NodeError::InvalidConfig {
                reason: reason.into(),
            })
        };
        if !config.voters.contains(&config.node) {
            return invalid("this node is not a voter");
        }
        if config.voters.len() > VOTERS_MAX || config.voters.iter().any(|v| v.0 < 0) {
            return invalid("too many voters or a negative id");
        }
        if config
            .voters
            .iter()
            .enumerate()
            .any(|(i, v)| config.voters[..i].contains(v))
        {
            return invalid("duplicate voter");
        }
        let mut durable_voters = store.voters();
        let mut config_voters: Vec<u64> = config.voters.iter().map(|v| v.to_raft_id()).collect();
        durable_voters.sort_unstable();
        config_voters.sort_unstable();
        if durable_voters != config_voters {
            return invalid(
                "the voters differ from those in the durable log (conf changes are not supported)",
            );
        }
        let snapshot_index = store.snapshot_index();
        let image = if snapshot_index == 0 {
            MetadataImage::new()
        } else {
            let image = MetadataImage::from_snapshot(store.snapshot_ref().get_data())
                .expect("own snapshot decodes");
            assert_eq!(image.last_applied().0, snapshot_index);
            image
        };
        let raft_config = Config {
            id: config.node.to_raft_id(),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            // raft-rs draws election timeouts from the thread's RNG, which would break replay; this node
            // overwrites each draw with its own seeded one, see `reseed_election_timeout`.
            min_election_tick: config.election_ticks,
            max_election_tick: 2 * config.election_ticks,
            applied: snapshot_index,
            max_size_per_msg: APPEND_BYTES_MAX,
            max_inflight_msgs: INFLIGHT_APPENDS_MAX,
            max_uncommitted_size: UNCOMMITTED_BYTES_MAX,
            // Pre-vote and check-quorum keep a partitioned or one-way-deaf node from disrupting a healthy
            // leader by bumping terms, and step down a leader that lost its quorum.
            pre_vote: true,
            check_quorum: true,
            ..Config::default()
        };
        raft_config
            .validate()
            .map_err(|e| NodeError::InvalidConfig {
                reason: e.to_string(),
            })?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw =
            RawNode::new(&raft_config, store, &logger).map_err(|e| NodeError::InvalidConfig {
                reason: e.to_string(),
            })?;
        let seed = config.seed;
        let node_id = config.node;
        let mut node = Self {
            config,
            raw,
            image,
            speculative: None,
            rng: SplitMix64::new(seed ^ node_id.to_raft_id().wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            next_token: 1,
            in_flight: VecDeque::new(),
            releasable: Vec::new(),
            snapshot_ticks: std::collections::BTreeMap::new(),
        };
        node.reseed_election_timeout();
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.node
    }

    /// The committed image.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// The current term.
    pub fn term(&self) -> RaftTerm {
        RaftTerm(self.raw.raft.term)
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        NodeId::from_raft_id(self.raw.raft.leader_id)
    }

    /// Whether this node leads the quorum.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The highest committed offset this node knows.
    pub fn committed(&self) -> MetadataOffset {
        MetadataOffset(self.raw.raft.raft_log.committed)
    }

    /// The quorum as its leader sees it (DescribeQuorum): `None` on a node that does not lead,
    /// since only the leader knows how far each voter's copy of the log goes.
    pub fn quorum_status(&self) -> Option<QuorumStatus> {
        if !self.is_leader() {
            return None;
        }
        let raft = &self.raw.raft;
        let mut voters: Vec<VoterProgress> = raft
            .prs()
            .iter()
            .filter_map(|(&id, progress)| {
                Some(VoterProgress {
                    node: NodeId::from_raft_id(id)?,
                    matched: MetadataOffset(progress.matched),
                })
            })
            .collect();
        voters.sort_by_key(|v| v.node);
        Some(QuorumStatus {
            leader: self.id(),
            term: self.term(),
            committed: self.committed(),
            last: MetadataOffset(raft.raft_log.last_index()),
            voters,
        })
    }

    /// Whether `voter` holds everything this leader has (false on a node that does not lead):
    /// the moment DescribeQuorum reports as its last caught-up time.
    pub fn is_caught_up(&self, voter: NodeId) -> bool {
        if !self.is_leader() {
            return false;
        }
        let raft = &self.raw.raft;
        raft.prs()
            .get(voter.to_raft_id())
            .is_some_and(|p| p.matched >= raft.raft_log.last_index())
    }

    /// The durable-equivalent log as this node sees it (for tests and diagnostics).
    pub fn log_store(&self) -> &RaftLogStore {
        self.raw.store()
    }

    /// Advances raft-rs's logical clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.expire_snapshots();
        self.reseed_election_timeout();
    }

    /// On the leader, reports as failed every snapshot in flight for longer than
    /// [`SNAPSHOT_TIMEOUT_ELECTIONS`] election timeouts, so that raft-rs probes that follower again
    /// (and sends a new snapshot if it still needs one).
    fn expire_snapshots(&mut self) {
        if !self.is_leader() {
            self.snapshot_ticks.clear();
            return;
        }
        let limit = SNAPSHOT_TIMEOUT_ELECTIONS * self.config.election_ticks;
        let sending: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, pr)| pr.state == raft::ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_ticks.retain(|id, _| sending.contains(id));
        for id in sending {
            let ticks = self.snapshot_ticks.entry(id).or_insert(0);
            *ticks += 1;
            if *ticks >= limit {
                self.snapshot_ticks.remove(&id);
                self.raw.report_snapshot(id, raft::SnapshotStatus::Failure);
            }
        }
    }

    /// The quorum leader's process is known to be gone (its broker's cluster port refuses
    /// connections, which only happens once no process listens there): instead of waiting out
    /// an election timeout, this voter stops honouring the leader's lease (so it grants votes at
    /// once), and the lowest-id other voter campaigns now. Only the one campaigns, so the
    /// survivors do not split the vote; if it cannot win (its log is behind, or it is gone
    /// too), the others' timeouts, already run down to the minimum, elect one as usual. Safety
    /// does not depend on this (Raft's never does on timing); reads go through ReadIndex, not
    /// leases, so an ended lease cannot serve a stale read.
    pub fn leader_gone(&mut self, leader: NodeId) {
        if self.raw.raft.state != StateRole::Follower || self.leader() != Some(leader) {
            return;
        }
        // A snapshot from the leader is in the store but not yet durable here, so raft-rs's
        // applied index is still below it: a campaign now would read the compacted entries
        // after that index (raft-rs panics). Rare (the leader died right after sending a
        // snapshot); the election timeout then runs as usual.
        if self.raw.raft.raft_log.applied < self.raw.store().snapshot_index() {
            return;
        }
        let timeout = self.raw.raft.election_timeout();
        let raft = &mut self.raw.raft;
        raft.election_elapsed = raft.election_elapsed.max(timeout);
        let successor = self
            .config
            .voters
            .iter()
            .copied()
            .filter(|v| *v != leader)
            .min();
        if successor == Some(self.config.node) {
            self.campaign();
        } else if raft.randomized_election_timeout() < timeout + LEADER_GONE_GRACE_TICKS {
            // Its own timeout must not fire before the successor's votes arrive: two
            // candidates at once would split the vote.
            raft.set_randomized_election_timeout(timeout + LEADER_GONE_GRACE_TICKS);
        }
    }

    /// Starts an election now (tests; or a broker that knows the leader is gone).
    pub fn campaign(&mut self) {
        // Refused only when this node already leads or cannot be promoted, which is not an error here.
        let _ = self.raw.campaign();
        self.reseed_election_timeout();
    }

    /// Feeds a message from a peer.
    ///
    /// # Errors
    ///
    /// [`NodeError::MessageRefused`] for a message not addressed to this node, of a local type, or that
    /// raft-rs refuses (a response from an unknown peer).
    pub fn step(&mut self, message: Message) -> Result<(), NodeError> {
        if message.to != self.config.node.to_raft_id()
            || raft::raw_node::is_local_msg(message.get_msg_type())
        {
            return Err(NodeError::MessageRefused {
                reason: "not addressed to this node, or local".into(),
            });
        }
        let result = self.raw.step(message);
        self.reseed_election_timeout();
        result.map_err(|e| NodeError::MessageRefused {
            reason: e.to_string(),
        })
    }

    /// Proposes a batch of records, as one entry applied all or nothing (what one
    /// [`Controller`](crate::controller::Controller) call returns). It commits when an [`Applied`] with
    /// the same offset and term comes out of [`ControllerNode::ready`]; a leader change may lose it,
    /// which the caller sees as a different term at that offset (or no progress: proposals need a
    /// timeout).
    ///
    /// # Errors
    ///
    /// [`NodeError::NotLeader`] unless this node leads; [`NodeError::ProposalDropped`] under back
    /// pressure; [`NodeError::InvalidBatch`] for an empty batch or one above the limits.
    ///
    /// # Panics
    ///
    /// Panics if a record is above its own field limits (the controller validates its input, so that
    /// is a programmer error, see [`MetadataRecord::to_bytes`]).
    pub fn propose(&mut self, records: &[MetadataRecord]) -> Result<ProposalId, NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NotLeader {
                leader_hint: self.leader(),
            });
        }
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose(Vec::new(), encode_batch(records)?)
            .map_err(|_| NodeError::ProposalDropped)?;
        let offset = self.raw.raft.raft_log.last_index();
        assert_eq!(offset, before + 1, "a leader appends a proposal at once");
        Ok(ProposalId {
            term: self.term(),
            offset: MetadataOffset(offset),
        })
    }

    /// Whether this node may propose now: the check a request handler makes before asking the
    /// [`Controller`](crate::controller::Controller) for records.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotLeader`] with the leader this node knows of, if any.
    pub fn propose_check(&self) -> Result<(), NodeError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(NodeError::NotLeader {
                leader_hint: self.leader(),
            })
        }
    }

    /// The image a controller should decide against: on the leader, the committed image plus every
    /// entry of its log (its own proposals included), which all commit unless it loses leadership; on
    /// other nodes, the committed image.
    pub fn speculative_image(&mut self) -> &MetadataImage {
        if !self.is_leader() {
            return &self.image;
        }
        let term = self.raw.raft.term;
        let stale = match &self.speculative {
            Some((t, image)) => *t != term || image.last_applied() < self.image.last_applied(),
            None => true,
        };
        if stale {
            self.speculative = Some((term, self.image.clone()));
        }
        let (_, spec) = self.speculative.as_mut().expect("just set");
        let from = spec.last_applied().0 + 1;
        let entries = self
            .raw
            .raft
            .raft_log
            .entries(from, None, GetEntriesContext::empty(false))
            .expect("a leader's log above its applied index is not compacted");
        for e in &entries {
            apply_entry(spec, e);
        }
        spec
    }

    /// Collects what the caller must do now. Call after every input until it returns empty actions.
    ///
    /// # Panics
    ///
    /// Panics if raft-rs hands over a snapshot whose image does not decode ([`decode_message`] refuses
    /// those before they reach `step`).
    pub fn ready(&mut self) -> Actions {
        let mut actions = Actions {
            messages: std::mem::take(&mut self.releasable),
            ..Actions::default()
        };
        if self.raw.has_ready() {
            self.handle_ready(&mut actions);
        }
        self.maybe_compact(&mut actions);
        self.reseed_election_timeout();
        actions
    }

    fn handle_ready(&mut self, actions: &mut Actions) {
        let mut rd = self.raw.ready();
        actions
            .messages
            .extend(rd.take_messages().into_iter().map(outbound));
        let mut batch = PersistBatch::default();
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            let image = MetadataImage::from_snapshot(snapshot.get_data())
                .expect("checked by decode_message");
            assert_eq!(image.last_applied().0, snapshot.get_metadata().index);
            assert!(
                image.last_applied() >= self.image.last_applied(),
                "a snapshot never goes back"
            );
            actions.snapshot_installed = Some(image.last_applied());
            self.image = image;
            self.speculative = None;
            self.raw.mut_store().install_snapshot(snapshot.clone());
            batch.snapshot = Some(snapshot);
        }
        batch.entries = rd.take_entries();
        self.raw.mut_store().append(&batch.entries);
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
            batch.hard_state = Some(hs.clone());
        }
        let committed = rd.take_committed_entries();
        let held = rd.take_persisted_messages();
        let number = rd.number();
        let nothing_to_persist =
            batch.snapshot.is_none() && batch.entries.is_empty() && batch.hard_state.is_none();
        self.raw.advance_append_async(rd);
        if nothing_to_persist && self.in_flight.is_empty() {
            // Everything before is durable and this ready adds nothing: its held messages may go now.
            self.raw.on_persist_ready(number);
            actions.messages.extend(held.into_iter().map(outbound));
        } else {
            let token = self.take_token();
            batch.token = Some(token);
            self.in_flight.push_back(InFlight {
                token,
                ready_number: Some(number),
                held,
            });
            actions.persist.push(batch);
        }
        for e in &committed {
            actions.applied.push(apply_entry(&mut self.image, e));
        }
        self.sync_applied();
    }

    fn take_token(&mut self) -> PersistToken {
        let token = PersistToken(self.next_token);
        self.next_token += 1;
        token
    }

    /// Tells raft-rs how far the image has applied, within what it allows (committed and persisted).
    fn sync_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let target = self
            .image
            .last_applied()
            .0
            .min(log.committed)
            .min(log.persisted);
        if target > log.applied {
            self.raw.advance_apply_to(target);
        }
    }

    fn maybe_compact(&mut self, actions: &mut Actions) {
        let applied = self.image.last_applied().0;
        let store = self.raw.store();
        // Not past what raft-rs counts as applied (the image may be ahead: committed entries
        // are applied before they are durable here, raft-rs's applied index waits for that):
        // raft-rs reads the entries after its applied index when it campaigns, and would find
        // them compacted (a panic the simulator found once elections could start at any time).
        if applied < store.snapshot_index() + self.config.snapshot_every_entries
            || applied > store.last_index().unwrap_or(0)
            || applied > self.raw.raft.raft_log.applied
        {
            return;
        }
        let mut snapshot = Snapshot::default();
        snapshot.set_data(self.image.to_snapshot().into());
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = store.term(applied).expect("applied entries are in the log");
        meta.set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        self.raw.mut_store().compact(snapshot.clone());
        let token = self.take_token();
        self.in_flight.push_back(InFlight {
            token,
            ready_number: None,
            held: Vec::new(),
        });
        actions.persist.push(PersistBatch {
            token: Some(token),
            compaction: Some(snapshot),
            ..PersistBatch::default()
        });
    }

    /// Acknowledges that every batch up to `token` is durable; held messages come out of the next
    /// [`ControllerNode::ready`].
    ///
    /// # Panics
    ///
    /// Panics if `token` was never issued by this node (an acknowledgement from before a restart).
    pub fn on_persisted(&mut self, token: PersistToken) {
        assert!(
            token.0 < self.next_token,
            "token {token:?} was never issued"
        );
        let mut ready_number = None;
        while self.in_flight.front().is_some_and(|f| f.token <= token) {
            let done = self.in_flight.pop_front().expect("checked");
            ready_number = done.ready_number.or(ready_number);
            self.releasable.extend(done.held.into_iter().map(outbound));
        }
        if let Some(number) = ready_number {
            self.raw.on_persist_ready(number);
        }
        self.sync_applied();
        self.reseed_election_timeout();
    }

    /// Committed records from `from` on, for a broker that follows the log without voting.
    pub fn read_committed(&self, from: MetadataOffset) -> CommittedRead {
        let store = self.raw.store();
        if from.0 <= store.snapshot_index() {
            return CommittedRead::Snapshot(store.snapshot_ref().get_data().to_vec());
        }
        // Only what this node applied: committed, and durable here.
        let last = self.image.last_applied().0;
        let records = store
            .entries_ref()
            .iter()
            .filter(|e| e.index >= from.0 && e.index <= last)
            .take(READ_RECORDS_MAX)
            .map(|e| (MetadataOffset(e.index), decode_entry(e).unwrap_or_default()))
            .collect();
        CommittedRead::Records(records)
    }

    /// raft-rs draws a new election timeout from the thread's RNG whenever it resets its term or role,
    /// and every reset zeroes `election_elapsed`. So whenever `election_elapsed` is 0 after a call,
    /// replace the timeout with a draw from the node's seeded RNG. That also redraws when a follower
    /// merely heard from its leader (which zeroes the count too): harmless, and it keeps the rule a
    /// deterministic function of raft-rs's state, which is what replay needs.
    fn reseed_election_timeout(&mut self) {
        if self.raw.raft.election_elapsed == 0 {
            let e = self.config.election_ticks;
            let t = e + self.rng.below(e as u64) as usize;
            self.raw.raft.set_randomized_election_timeout(t);
        }
    }
}

fn outbound(message: Message) -> Outbound {
    let to = NodeId::from_raft_id(message.to).expect("raft-rs sends to peers of the config");
    Outbound { to, message }
}

fn decode_entry(e: &Entry) -> Result<Vec<MetadataRecord>, DecodeError> {
    assert_eq!(
        e.get_entry_type(),
        EntryType::EntryNormal,
        "conf changes are out of scope"
    );
    if e.data.is_empty() {
        return Ok(Vec::new());
    }
    decode_batch(&e.data)
}

fn apply_entry(image: &mut MetadataImage, e: &Entry) -> Applied {
    let offset = MetadataOffset(e.index);
    let (records, outcome) = match decode_entry(e) {
        Ok(records) if records.is_empty() => {
            image.skip(offset);
            (records, Ok(()))
        }
        Ok(records) => {
            let outcome = image.apply_batch(offset, &records);
            (records, outcome)
        }
        Err(err) => {
            // Every node holds the same bytes, so every node refuses them alike.
            image.skip(offset);
            let error = ApplyError::Undecodable {
                reason: err.to_string(),
            };
            (Vec::new(), Err(BatchRefused { index: 0, error }))
        }
    };
    Applied {
        offset,
        term: RaftTerm(e.term),
        records,
        outcome,
    }
}

/// Encodes a Raft message for the network: a version byte, then raft-rs's protobuf encoding.
/// (The transport adds framing and a checksum.)
pub fn encode_message(message: &Message) -> Vec<u8> {
    let mut out = vec![MESSAGE_FORMAT_VERSION];
    out.extend_from_slice(
        &message
            .write_to_bytes()
            .expect("in-memory protobuf encoding does not fail"),
    );
    out
}

/// Decodes a Raft message from the network. A snapshot message's image is decoded too, so that a bad
/// one is refused here rather than after raft-rs has accepted it.
///
/// # Errors
///
/// [`DecodeError`] for an unknown version, bytes above [`MESSAGE_BYTES_MAX`], a protobuf error, a
/// message without sender or receiver, or a snapshot whose image does not decode. Never panics.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(DecodeError::TooLong {
            field: "raft message",
            len: bytes.len(),
            max: MESSAGE_BYTES_MAX,
        });
    }
    match bytes.first() {
        None => {
            return Err(DecodeError::Truncated {
                field: "message version",
                needed_bytes: 1,
            })
        }
        Some(&MESSAGE_FORMAT_VERSION) => {}
        Some(&version) => {
            return Err(DecodeError::UnknownVersion {
                what: "raft message",
                version,
            })
        }
    }
    let message = Message::parse_from_bytes(&bytes[1..]).map_err(|e| DecodeError::RaftMessage {
        reason: e.to_string(),
    })?;
    if NodeId::from_raft_id(message.from).is_none() || NodeId::from_raft_id(message.to).is_none() {
        return Err(DecodeError::RaftMessage {
            reason: "no sender or receiver".into(),
        });
    }
    if raft::raw_node::is_local_msg(message.get_msg_type()) {
        return Err(DecodeError::RaftMessage {
            reason: "local message type".into(),
        });
    }
    if message.get_msg_type() == MessageType::MsgSnapshot {
        let snapshot = message.get_snapshot();
        let image = MetadataImage::from_snapshot(snapshot.get_data())?;
        if image.last_applied().0 != snapshot.get_metadata().index {
            return Err(DecodeError::Invalid {
                what: "snapshot message",
                reason: "image offset is not the snapshot's".into(),
            });
        }
    }
    for e in message.get_entries() {
        if e.get_entry_type() != EntryType::EntryNormal || e.data.len() > BATCH_BYTES_MAX {
            return Err(DecodeError::RaftMessage {
                reason: "entry of another type or too large".into(),
            });
        }
    }
    Ok(message)
}

/// A broker that follows the metadata log without voting: it applies what
/// [`ControllerNode::read_committed`] returns, in order, and asks again from
/// [`MetadataFollower::next_offset`].
#[derive(Debug, Clone, Default)]
pub struct MetadataFollower {
    image: MetadataImage,
}

impl MetadataFollower {
    /// A follower with an empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Its image.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// The offset to read from next.
    pub fn next_offset(&self) -> MetadataOffset {
        MetadataOffset(self.image.last_applied().0 + 1)
    }

    /// Applies a read. Records before [`MetadataFollower::next_offset`] (a duplicate or reordered
    /// answer) are skipped; a gap stops the apply (the next read fills it); an older snapshot is ignored.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] if a snapshot does not decode; the image is then unchanged.
    pub fn apply(&mut self, read: CommittedRead) -> Result<usize, DecodeError> {
        match read {
            CommittedRead::Snapshot(bytes) => {
                let image = MetadataImage::from_snapshot(&bytes)?;
                if image.last_applied() > self.image.last_applied() {
                    self.image = image;
                }
                Ok(0)
            }
            CommittedRead::Records(records) => {
                let mut applied = 0;
                for (offset, batch) in records {
                    if offset < self.next_offset() {
                        continue;
                    }
                    if offset > self.next_offset() {
                        break;
                    }
                    if batch.is_empty() {
                        self.image.skip(offset);
                    } else {
                        // A refused batch is refused on every node alike: nothing to report.
                        let _ = self.image.apply_batch(offset, &batch);
                    }
                    applied += 1;
                }
                Ok(applied)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_decode_as_a_message_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_message(&bytes);
            let mut versioned = vec![MESSAGE_FORMAT_VERSION];
            versioned.extend_from_slice(&bytes);
            let _ = decode_message(&versioned);
        }
    }

    fn snapshot_message() -> Message {
        let mut image = MetadataImage::new();
        let register = MetadataRecord::RegisterBroker {
            node: NodeId(1),
            incarnation: crate::ids::Incarnation(1),
            client: crate::records::Endpoint {
                host: "a".into(),
                port: 1,
            },
            cluster: crate::records::Endpoint {
                host: "b".into(),
                port: 2,
            },
            rack: Some("r".into()),
        };
        image.apply(MetadataOffset(5), &register).unwrap();
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = 2;
        m.mut_snapshot().set_data(image.to_snapshot().into());
        m.mut_snapshot().mut_metadata().index = 5;
        m
    }

    proptest! {
        #[test]
        fn a_snapshot_message_with_a_byte_flipped_or_cut_never_panics(
            at in any::<usize>(), xor in 1u8..=255, cut in any::<bool>()
        ) {
            let mut bytes = encode_message(&snapshot_message());
            let at = at % bytes.len();
            if cut { bytes.truncate(at) } else { bytes[at] ^= xor }
            let _ = decode_message(&bytes);
        }
    }

    #[test]
    fn a_snapshot_message_round_trips() {
        let m = snapshot_message();
        assert_eq!(decode_message(&encode_message(&m)), Ok(m));
    }

    #[test]
    fn a_message_round_trips_and_a_bad_snapshot_is_refused() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.term = 3;
        let e = Entry {
            index: 4,
            data: encode_batch(&[MetadataRecord::UnregisterBroker { node: NodeId(1) }])
                .unwrap()
                .into(),
            ..Default::default()
        };
        m.mut_entries().push(e);
        assert_eq!(decode_message(&encode_message(&m)), Ok(m.clone()));
        m.set_msg_type(MessageType::MsgSnapshot);
        m.mut_snapshot().set_data(vec![1, 2, 3].into());
        assert!(decode_message(&encode_message(&m)).is_err());
        m.set_msg_type(MessageType::MsgHup);
        assert!(decode_message(&encode_message(&m)).is_err());
    }
}
