//! The controller: the quorum leader's logic that turns cluster requests into metadata records.
//!
//! It is pure. Each call takes the image to decide against, the time (a [`MonotonicMs`] the caller
//! passes in) and, where placement or ids need chance, a seeded [`RandomSource`]; it returns the records
//! to propose, in order, as one batch: [`ControllerNode::propose`] makes them one Raft entry, which
//! every image applies all or nothing. It keeps only broker sessions (the time of each broker's last heartbeat) in
//! memory: heartbeats are not logged, only their consequences (fence, unfence) are.
//!
//! The image it is given should be the *speculative* one, [`ControllerNode::speculative_image`]: the
//! committed image plus every entry of the leader's own log, so that two requests in a row see each
//! other's records before they commit. Records are still checked again when applied, so a decision made
//! on a view that loses the race is refused identically everywhere instead of corrupting the image.
//!
//! # Replication
//!
//! [`ControllerConfig::replication_factor_max`] caps the replication factor (1 by default here; the
//! broker sets it to `REPLICAS_MAX`): with 1, CreateTopics refuses more with "replication is not
//! implemented yet", the answer of a build without follower replication. Whatever the factor, leaders and ISRs follow
//! Kafka's KRaft rules (written once, in `partition_change.rs`): a broker that is fenced, shuts down or
//! registers a new incarnation leaves every ISR and hands its leadership to the first in-sync, live
//! replica; the last member of an ISR stays, leaderless, and leads again when it is back; a leader
//! grows and shrinks its ISR with [`Controller::alter_partition`] (KIP-497); an operator moves
//! leadership back to the first replica with [`Controller::elect_preferred_leaders`].
//!
//! Unclean leader election is off unless a topic sets [`UNCLEAN_LEADER_ELECTION_CONFIG`] to `true`:
//! then a partition whose in-sync replicas are all down is led by its first live replica, with the ISR
//! reset to that one (whatever only the lost ISR members had is gone), when a broker is fenced or
//! unfenced and at once when the config is set. Kafka's leader recovery state (KIP-704), which keeps
//! such a leader's ISR at one until it recovered, is not modelled.
//!
//! [`ControllerNode::speculative_image`]: crate::node::ControllerNode::speculative_image
//! [`ControllerNode::propose`]: crate::node::ControllerNode::propose

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::ids::{
    Incarnation, LeaderEpoch, MonotonicMs, NodeId, PartitionEpoch, PartitionIndex, TopicId,
};
use crate::image::{
    topic_name_is_valid, MetadataImage, PartitionState, BROKERS_MAX, PARTITIONS_PER_TOPIC_MAX,
};
use crate::partition_change::{
    broker_joins, build_change, change_partition, partitions, remove_broker, unclean_elections,
    BrokerChange, Election, Eligibility, Target,
};
use crate::records::{
    Endpoint, LeaderChange, MetadataRecord, BATCH_BYTES_MAX, CONFIGS_MAX, CONFIG_KEY_BYTES_MAX,
    CONFIG_VALUE_BYTES_MAX, HOST_BYTES_MAX, RACK_BYTES_MAX, RECORDS_PER_BATCH_MAX, REPLICAS_MAX,
};
use crate::rng::RandomSource;

/// Kafka's default `broker.session.timeout.ms`.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 9000;
/// Producer ids handed out per request, as Kafka's `ProducerIdManager` block.
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;
/// The default of [`ControllerConfig::replication_factor_max`]: 1 (the broker, whose followers
/// replicate, passes `REPLICAS_MAX`).
pub const REPLICATION_FACTOR_MAX_DEFAULT: i16 = 1;
/// The default of [`ControllerConfig::default_replication_factor`] (Kafka's `default.replication.factor`).
pub const DEFAULT_REPLICATION_FACTOR_DEFAULT: i16 = 1;
/// Partitions one ElectLeaders call may name: their records are one batch.
pub const ELECTION_PARTITIONS_MAX: usize = 1000;
/// Partitions one AlterPartitionReassignments call may name: their records are one batch, and a
/// reassignment's record can carry four lists of [`REPLICAS_MAX`] brokers.
pub const REASSIGNMENT_PARTITIONS_MAX: usize = 500;
/// The largest ChangePartition a reassignment builds: tag, topic id, index, leader, ISR, replicas,
/// epochs, adding and removing.
const REASSIGN_CHANGE_BYTES_MAX: usize = 1 + 16 + 4 + 5 + 4 * (1 + 2 + 4 * REPLICAS_MAX) + 8;
const _: () = assert!(
    BATCH_HEADER_BYTES + REASSIGNMENT_PARTITIONS_MAX * REASSIGN_CHANGE_BYTES_MAX <= BATCH_BYTES_MAX
);
/// Partitions the drain of decommissioned brokers moves at once: a new move starts only while
/// fewer are under way. Each move's catch-up is throttled as any reassignment's
/// (`--reassignment-throttle-bytes-per-sec`), so this bounds the replicas catching up, the
/// open files they need, and the records of one tick's batch.
pub const DRAIN_MOVES_IN_FLIGHT_MAX: usize = 64;
/// Leaderships one tick moves off draining brokers (one ChangePartition each, ISR unchanged).
pub const DRAIN_LEADERSHIPS_PER_TICK_MAX: usize = 1000;
const _: () = assert!(DRAIN_MOVES_IN_FLIGHT_MAX <= REASSIGNMENT_PARTITIONS_MAX);
// A leadership move is a ChangePartition with a new leader and nothing else.
const _: () = assert!(
    BATCH_HEADER_BYTES + DRAIN_LEADERSHIPS_PER_TICK_MAX * (1 + 16 + 4 + 5 + 3 + 8)
        <= BATCH_BYTES_MAX
);

/// Kafka's topic config that allows electing a replica outside the ISR when no in-sync one is live
/// (`true`, in any case; anything else is false). See the module docs.
pub const UNCLEAN_LEADER_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

/// Partition changes one fence batch may carry. A broker in more ISRs than this is fenced over several
/// ticks: the first batches move its leaderships (first) and ISR memberships, the last one fences it.
/// Without the bound, a broker in some 40,000 ISRs would make a batch over [`BATCH_BYTES_MAX`] that
/// could never be proposed, and it would never be fenced.
pub const FENCE_PARTITION_CHANGES_PER_BATCH_MAX: usize = 1900;
/// The largest ChangePartition a fence builds: tag, topic id, index, leader, a full ISR, no replicas,
/// epochs; or, when an unclean election completes a reassignment, an ISR of one, the full replicas
/// and the emptied adding and removing lists.
const FENCE_CHANGE_BYTES_MAX: usize = {
    let isr_change = 1 + 16 + 4 + 5 + (1 + 2 + 4 * REPLICAS_MAX) + 1 + 8;
    let unclean_completion =
        1 + 16 + 4 + 5 + (1 + 2 + 4) + (1 + 2 + 4 * REPLICAS_MAX) + 8 + 2 * (1 + 2);
    if isr_change > unclean_completion {
        isr_change
    } else {
        unclean_completion
    }
};
/// A FenceBroker record: tag, node, incarnation.
const FENCE_BROKER_BYTES: usize = 1 + 4 + 8;
/// A batch's header: format version and count.
const BATCH_HEADER_BYTES: usize = 1 + 4;
const _: () = assert!(
    BATCH_HEADER_BYTES
        + FENCE_PARTITION_CHANGES_PER_BATCH_MAX * FENCE_CHANGE_BYTES_MAX
        + FENCE_BROKER_BYTES
        <= BATCH_BYTES_MAX
);
const _: () = assert!(FENCE_PARTITION_CHANGES_PER_BATCH_MAX < RECORDS_PER_BATCH_MAX);

const _: () = assert!(REPLICATION_FACTOR_MAX_DEFAULT >= 1);
const _: () = assert!(DEFAULT_REPLICATION_FACTOR_DEFAULT <= REPLICATION_FACTOR_MAX_DEFAULT);
const _: () = assert!(REPLICAS_MAX <= i16::MAX as usize);

/// Why a request was refused. Each variant maps to one Kafka error code in the broker.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControllerError {
    /// This node does not lead the quorum (NOT_CONTROLLER); `leader_hint` is the leader if known.
    #[error("not the controller, leader {leader_hint:?}")]
    NotController {
        /// The current leader, if this node knows it.
        leader_hint: Option<NodeId>,
    },
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic {name} already exists")]
    TopicAlreadyExists {
        /// The topic.
        name: String,
    },
    /// INVALID_REPLICATION_FACTOR.
    #[error("invalid replication factor: {reason}")]
    InvalidReplicationFactor {
        /// Why.
        reason: String,
    },
    /// INVALID_REPLICA_ASSIGNMENT.
    #[error("invalid replica assignment: {reason}")]
    InvalidReplicaAssignment {
        /// Why.
        reason: String,
    },
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("unknown topic {name}")]
    UnknownTopic {
        /// The topic.
        name: String,
    },
    /// INVALID_PARTITIONS.
    #[error("invalid partitions: {reason}")]
    InvalidPartitions {
        /// Why.
        reason: String,
    },
    /// INVALID_TOPIC_EXCEPTION.
    #[error("invalid topic name {name:?}")]
    InvalidTopicName {
        /// The name.
        name: String,
    },
    /// INVALID_TOPIC_EXCEPTION: the name differs from an existing topic's only in '.' and '_'.
    #[error("topic {name:?} collides with existing topic {existing:?}")]
    TopicNameCollides {
        /// The name.
        name: String,
        /// The existing topic's name.
        existing: String,
    },
    /// INVALID_CONFIG.
    #[error("invalid config: {reason}")]
    InvalidConfig {
        /// Why.
        reason: String,
    },
    /// INVALID_REQUEST, for a registration with malformed fields.
    #[error("invalid registration: {reason}")]
    InvalidRegistration {
        /// Why.
        reason: String,
    },
    /// UNKNOWN_TOPIC_OR_PARTITION, for a partition index the topic lacks.
    #[error("unknown partition {index} of topic {name}")]
    UnknownPartition {
        /// The topic.
        name: String,
        /// The partition.
        index: PartitionIndex,
    },
    /// NO_REASSIGNMENT_IN_PROGRESS: a cancel names a partition that is not being reassigned.
    #[error("no reassignment in progress")]
    NoReassignmentInProgress,
    /// INVALID_REQUEST, for a request that breaks a rule of its own shape.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// Why.
        reason: String,
    },
    /// BROKER_ID_NOT_REGISTERED (Kafka's answer to UnregisterBroker for an unknown id): an
    /// operator named a broker the cluster does not know.
    #[error("broker {node} is not registered")]
    BrokerNotRegistered {
        /// The broker.
        node: NodeId,
    },
    /// STALE_BROKER_EPOCH: the request comes from an older run of the broker, or one that is not registered.
    #[error("stale or unknown broker {node} incarnation {incarnation}")]
    StaleBroker {
        /// The broker.
        node: NodeId,
        /// The incarnation it sent.
        incarnation: Incarnation,
    },
}

/// Controller settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// A broker that has not heartbeated for this long is fenced (`broker.session.timeout.ms`).
    pub session_timeout_ms: u64,
    /// The largest replication factor a topic may have, 1 to [`REPLICAS_MAX`]. With 1 (the default)
    /// a larger factor is refused as not implemented: the broker raises it once followers replicate.
    pub replication_factor_max: i16,
    /// The replication factor of a CreateTopics that asks for -1 (Kafka's `default.replication.factor`),
    /// 1 to `replication_factor_max`.
    pub default_replication_factor: i16,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: SESSION_TIMEOUT_MS_DEFAULT,
            replication_factor_max: REPLICATION_FACTOR_MAX_DEFAULT,
            default_replication_factor: DEFAULT_REPLICATION_FACTOR_DEFAULT,
        }
    }
}

impl ControllerConfig {
    /// Checks the relations between the settings; the broker calls it on its flags.
    ///
    /// # Errors
    ///
    /// [`ControllerError::InvalidConfig`] when `replication_factor_max` is not in 1..=[`REPLICAS_MAX`]
    /// or `default_replication_factor` not in 1..=`replication_factor_max`.
    pub fn validate(&self) -> Result<(), ControllerError> {
        let max = self.replication_factor_max;
        if !(1..=REPLICAS_MAX as i16).contains(&max) {
            return Err(ControllerError::InvalidConfig {
                reason: format!("replication factor max {max} is not between 1 and {REPLICAS_MAX}"),
            });
        }
        let default = self.default_replication_factor;
        if !(1..=max).contains(&default) {
            return Err(ControllerError::InvalidConfig {
                reason: format!("default replication factor {default} is not between 1 and {max}"),
            });
        }
        Ok(())
    }
}

/// One member of the ISR a leader proposes: the broker and the incarnation the leader saw it fetch
/// with (KIP-903), so that a follower that restarted, and may have lost unflushed records, is not
/// put back in the ISR on the strength of its previous run's fetches. `None` skips that check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrMember {
    /// The broker.
    pub node: NodeId,
    /// The incarnation it fetched with.
    pub incarnation: Option<Incarnation>,
}

/// A partition leader's AlterPartition request (KIP-497) for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartition {
    /// The sender, which must lead the partition.
    pub node: NodeId,
    /// The sender's incarnation.
    pub incarnation: Incarnation,
    /// The topic.
    pub topic_id: TopicId,
    /// The partition.
    pub index: PartitionIndex,
    /// The leader epoch the sender leads in.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch of the state the sender last saw.
    pub partition_epoch: PartitionEpoch,
    /// The ISR it asks for, at most [`REPLICAS_MAX`] members.
    pub new_isr: Vec<IsrMember>,
}

/// Why a replica may not join an ISR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    /// The broker is not registered.
    NotRegistered,
    /// The broker is shutting down.
    ShuttingDown,
    /// The broker is fenced.
    Fenced,
    /// The incarnation the leader saw is not the registered one: the broker restarted since.
    StaleIncarnation,
}

impl std::fmt::Display for Ineligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ineligible::NotRegistered => "not registered",
            Ineligible::ShuttingDown => "shutting down",
            Ineligible::Fenced => "fenced",
            Ineligible::StaleIncarnation => "restarted since",
        })
    }
}

/// Why an AlterPartition was refused, with the Kafka error code each variant maps to (checked in
/// Kafka's order, so that a sender sees the same code Kafka would give it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AlterPartitionError {
    /// STALE_BROKER_EPOCH: the sender is not registered with this incarnation.
    #[error("stale or unknown broker {node} incarnation {incarnation}")]
    StaleBroker {
        /// The sender.
        node: NodeId,
        /// The incarnation it sent.
        incarnation: Incarnation,
    },
    /// UNKNOWN_TOPIC_ID, or UNKNOWN_TOPIC_OR_PARTITION for a partition index the topic lacks.
    #[error("unknown partition {index} of topic {topic_id}")]
    UnknownPartition {
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        index: PartitionIndex,
    },
    /// NOT_CONTROLLER: the request carries epochs newer than this controller's view, so this node has
    /// most likely stopped leading the quorum; the sender should find the new controller.
    #[error("epochs {leader_epoch}/{partition_epoch} are ahead of this controller's view")]
    EpochsAhead {
        /// The request's leader epoch.
        leader_epoch: LeaderEpoch,
        /// The request's partition epoch.
        partition_epoch: PartitionEpoch,
    },
    /// FENCED_LEADER_EPOCH: the sender led in an older epoch.
    #[error("leader epoch {sent} is older than the current {current}")]
    FencedLeaderEpoch {
        /// The request's.
        sent: LeaderEpoch,
        /// The image's.
        current: LeaderEpoch,
    },
    /// INVALID_REQUEST: the sender does not lead the partition.
    #[error("broker {node} does not lead the partition, {leader:?} does")]
    NotLeader {
        /// The sender.
        node: NodeId,
        /// The leader.
        leader: Option<NodeId>,
    },
    /// INVALID_UPDATE_VERSION: the partition changed since the sender last saw it.
    #[error("partition epoch {sent} is older than the current {current}")]
    InvalidUpdateVersion {
        /// The request's.
        sent: PartitionEpoch,
        /// The image's.
        current: PartitionEpoch,
    },
    /// INVALID_REQUEST: the new ISR is empty, too long, has duplicates or non-replicas, or lacks the leader.
    #[error("invalid isr: {reason}")]
    InvalidIsr {
        /// Which rule.
        reason: &'static str,
    },
    /// INELIGIBLE_REPLICA: a member of the new ISR may not join it.
    #[error("replica {node} is ineligible for the isr: {why}")]
    IneligibleReplica {
        /// The member.
        node: NodeId,
        /// Why.
        why: Ineligible,
    },
}

/// An accepted AlterPartition: the records to propose (none when the ISR is already the one asked
/// for) and the partition as they leave it, for the answer. Answer only once the records committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionOutcome {
    /// The records, as one batch.
    pub records: Vec<MetadataRecord>,
    /// The partition's new state: leader, ISR and epochs to answer with.
    pub partition: PartitionState,
    /// The change completes a reassignment: replicas leave, the leader epoch moves and the leader
    /// may too. Kafka answers such a request NEW_LEADER_ELECTED, so that the sender waits for the
    /// metadata instead of taking the answer as its new state.
    pub reassignment_completed: bool,
}

/// One partition of an AlterPartitionReassignments request (KIP-455).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassign {
    /// The topic's name.
    pub topic: String,
    /// The partition.
    pub index: PartitionIndex,
    /// The replicas to move to, preferred leader first; `None` cancels the ongoing reassignment.
    pub target: Option<Vec<NodeId>>,
}

/// What [`Controller::alter_partition_reassignments`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignments {
    /// The records, as one batch.
    pub records: Vec<MetadataRecord>,
    /// One result per requested partition, in request order.
    pub results: Vec<Result<(), ControllerError>>,
}

/// One ongoing reassignment, as ListPartitionReassignments answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    /// The topic's name.
    pub topic: String,
    /// The partition.
    pub index: PartitionIndex,
    /// Every replica: the target ones in target order, then the removing ones.
    pub replicas: Vec<NodeId>,
    /// Replicas being added.
    pub adding: Vec<NodeId>,
    /// Replicas being removed.
    pub removing: Vec<NodeId>,
}

/// The result of a preferred-leader election for one partition, as Kafka's ElectLeaders answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionResult {
    /// NONE: leadership moves to the first replica (or, for a leaderless partition, to a live ISR member).
    Elected,
    /// ELECTION_NOT_NEEDED: the first replica leads already.
    NotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE: the first replica is out of the ISR, fenced or shutting down.
    PreferredLeaderNotAvailable,
    /// UNKNOWN_TOPIC_OR_PARTITION.
    UnknownTopicOrPartition,
}

/// What [`Controller::elect_preferred_leaders`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elections {
    /// The records, as one batch.
    pub records: Vec<MetadataRecord>,
    /// One result per requested partition, in request order.
    pub results: Vec<ElectionResult>,
}

/// An operator's decommission request ([`Controller::decommission_broker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decommission {
    /// Start draining the broker (again, after a cancel).
    Start,
    /// Stop draining it: it takes new replicas again (recommission). Moves already under way
    /// complete; what moved stays moved.
    Cancel,
}

/// How far a broker's decommission is ([`decommission_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecommissionStatus {
    /// Whether it is draining.
    pub draining: bool,
    /// Partitions it is still a replica of (those being moved off it included).
    pub replicas: usize,
    /// Partitions it still leads.
    pub leaderships: usize,
    /// Partitions being moved off it now.
    pub moving: usize,
}

impl DecommissionStatus {
    /// Draining and empty: it may be shut down and unregistered.
    pub fn is_complete(&self) -> bool {
        self.draining && self.replicas == 0
    }
}

/// A broker's decommission progress, read from `image` (any broker can answer it); `None` for
/// an unregistered broker.
pub fn decommission_status(image: &MetadataImage, node: NodeId) -> Option<DecommissionStatus> {
    let broker = image.broker(node)?;
    let mut status = DecommissionStatus {
        draining: broker.draining,
        replicas: 0,
        leaderships: 0,
        moving: 0,
    };
    for (_, _, p) in partitions(image) {
        if p.replicas.contains(&node) {
            status.replicas += 1;
            if p.removing.contains(&node) {
                status.moving += 1;
            }
        }
        if p.leader == Some(node) {
            status.leaderships += 1;
        }
    }
    Some(status)
}

/// A broker's registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterBroker {
    /// Its id.
    pub node: NodeId,
    /// Its run; must be larger than any earlier one of this id.
    pub incarnation: Incarnation,
    /// Where clients connect.
    pub client: Endpoint,
    /// Where brokers connect.
    pub cluster: Endpoint,
    /// Its rack.
    pub rack: Option<String>,
}

/// A CreateTopics request for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    /// The name.
    pub name: String,
    /// The partition count, or -1 for the default (1), as Kafka's `num_partitions`.
    pub partitions: i32,
    /// The replication factor, or -1 for [`ControllerConfig::default_replication_factor`].
    pub replication_factor: i16,
    /// A manual assignment: the replicas of each partition, in partition order. When given,
    /// `partitions` and `replication_factor` must be -1.
    pub assignment: Option<Vec<Vec<NodeId>>>,
    /// Configs, in the order given.
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    incarnation: Incarnation,
    last_heartbeat: MonotonicMs,
}

/// The controller's in-memory state: broker sessions, and the brokers this node's transport finds
/// gone. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Controller {
    config: ControllerConfig,
    sessions: BTreeMap<NodeId, Session>,
    /// Brokers (by the incarnation last seen) that refuse connections: see [`Self::set_unreachable`].
    unreachable: BTreeMap<NodeId, Incarnation>,
}

impl Controller {
    /// A controller with no sessions: the state of a node that just became the quorum leader.
    ///
    /// # Panics
    ///
    /// Panics if `config` does not pass [`ControllerConfig::validate`] (the broker validates its flags
    /// first, so this is a programmer error).
    pub fn new(config: ControllerConfig) -> Self {
        if let Err(e) = config.validate() {
            panic!("controller config: {e}");
        }
        Self {
            config,
            sessions: BTreeMap::new(),
            unreachable: BTreeMap::new(),
        }
    }

    /// Says which brokers are known to be gone: their cluster address refuses connections, so no
    /// process of theirs listens there (a broker binds it before it registers and holds it until
    /// it exits). Each is named with the incarnation it last answered as; the next [`Self::tick`]
    /// fences it at once rather than after the session timeout, and its heartbeats do not unfence
    /// it while it stays here. A new incarnation (the broker restarted) is not affected.
    ///
    /// This is what makes failover after a crash (`kill -9`, an OOM kill, a panic) fast: the
    /// kernel refuses connections to a dead process's port at once. A broker that is stopped,
    /// hung, or cut off by the network still answers nothing rather than refusing, and is fenced
    /// by its session as before. Fencing early is never unsafe, only a cost in availability.
    pub fn set_unreachable(&mut self, unreachable: BTreeMap<NodeId, Incarnation>) {
        assert!(unreachable.len() <= BROKERS_MAX);
        self.unreachable = unreachable;
    }

    fn is_unreachable(&self, node: NodeId, incarnation: Incarnation) -> bool {
        self.unreachable.get(&node) == Some(&incarnation)
    }

    /// Forgets every session: call when this node stops leading, so that a later term starts with
    /// fresh grace periods instead of stale timestamps.
    pub fn reset(&mut self) {
        self.sessions.clear();
    }

    /// A broker registers (or re-registers after a restart).
    ///
    /// A new incarnation replaces the old one, as a fence would: the old one leaves every ISR (the new
    /// one may have lost what the old one had not flushed, so it rejoins through its leaders'
    /// AlterPartition once caught up) and hands its leadership to another in-sync replica. Where it
    /// was the last ISR member the partition stays leaderless, and the new incarnation leads it again
    /// when its first heartbeat unfences it.
    ///
    /// # Errors
    ///
    /// [`ControllerError::StaleBroker`] if the incarnation is not larger than the registered one,
    /// [`ControllerError::InvalidRegistration`] for a negative id or over-long host or rack.
    pub fn register_broker(
        &mut self,
        image: &MetadataImage,
        now: MonotonicMs,
        req: RegisterBroker,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let invalid = |reason: &str| {
            Err(ControllerError::InvalidRegistration {
                reason: reason.into(),
            })
        };
        if req.node.0 < 0 {
            return invalid("negative node id");
        }
        if req.client.host.len() > HOST_BYTES_MAX || req.cluster.host.len() > HOST_BYTES_MAX {
            return invalid("host too long");
        }
        if req.rack.as_ref().is_some_and(|r| r.len() > RACK_BYTES_MAX) {
            return invalid("rack too long");
        }
        if image
            .broker(req.node)
            .is_some_and(|b| b.incarnation >= req.incarnation)
        {
            return Err(ControllerError::StaleBroker {
                node: req.node,
                incarnation: req.incarnation,
            });
        }
        let mut records = remove_broker(image, req.node);
        records.push(MetadataRecord::RegisterBroker {
            node: req.node,
            incarnation: req.incarnation,
            client: req.client,
            cluster: req.cluster,
            rack: req.rack,
        });
        self.sessions.insert(
            req.node,
            Session {
                incarnation: req.incarnation,
                last_heartbeat: now,
            },
        );
        Ok(records)
    }

    /// A broker heartbeats. Kept in memory; when the broker is fenced (new, or back after a missed
    /// session) it is unfenced, and leads the leaderless partitions whose ISR kept it as last member.
    ///
    /// # Errors
    ///
    /// [`ControllerError::StaleBroker`] if the broker is not registered with this incarnation.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        now: MonotonicMs,
        node: NodeId,
        incarnation: Incarnation,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let broker = match image.broker(node) {
            Some(b) if b.incarnation == incarnation => b,
            _ => return Err(ControllerError::StaleBroker { node, incarnation }),
        };
        self.sessions.insert(
            node,
            Session {
                incarnation,
                last_heartbeat: now,
            },
        );
        // A heartbeat that was on its way when the broker's port started refusing connections
        // must not unfence it: the next tick would fence it again.
        if !broker.fenced || broker.in_controlled_shutdown || self.is_unreachable(node, incarnation)
        {
            return Ok(Vec::new());
        }
        // The unfence comes first in the batch: the image refuses a fenced leader.
        let mut records = vec![MetadataRecord::UnfenceBroker { node, incarnation }];
        records.extend(broker_joins(image, node));
        Ok(records)
    }

    /// Fences one unfenced broker whose session expired (the lowest id), taking it out of every ISR and
    /// handing its leadership to other in-sync replicas first (over several ticks when it is in more
    /// than [`FENCE_PARTITION_CHANGES_PER_BATCH_MAX`] ISRs). One per call, as Kafka's
    /// `maybeFenceOneStaleBroker`: the records for the next broker must be built on an image that shows
    /// this one fenced (the caller passes the speculative image, which does once this batch is
    /// proposed), or two fences in one batch would both claim the same next partition epoch.
    /// A broker the image shows unfenced but with no session here (this node just became leader) gets a
    /// full session from `now`, as Kafka grants after a controller failover.
    pub fn tick(&mut self, image: &MetadataImage, now: MonotonicMs) -> Vec<MetadataRecord> {
        // Sessions of brokers that left the image go too, so the map stays bounded by BROKERS_MAX.
        self.sessions
            .retain(|node, _| image.broker(*node).is_some());
        // Every live broker's session is brought up to date first, so that a broker that comes after
        // the one fenced here still gets its grace period from the first tick that saw it.
        let mut expired = None;
        for (node, broker) in image.brokers() {
            if broker.fenced {
                continue;
            }
            let session = self.sessions.entry(*node).or_insert(Session {
                incarnation: broker.incarnation,
                last_heartbeat: now,
            });
            if session.incarnation != broker.incarnation {
                *session = Session {
                    incarnation: broker.incarnation,
                    last_heartbeat: now,
                };
            }
            let timed_out = now.since_ms(session.last_heartbeat) >= self.config.session_timeout_ms
                || self.unreachable.get(node) == Some(&broker.incarnation);
            if timed_out && expired.is_none() {
                expired = Some((*node, broker.incarnation));
            }
        }
        let Some((node, incarnation)) = expired else {
            // Fencing first: a drain decided on an image about to fence a broker could pick it.
            return drain(image);
        };
        let mut records = remove_broker(image, node);
        if records.len() > FENCE_PARTITION_CHANGES_PER_BATCH_MAX {
            // Leadership moves first: a dead leader costs availability, a dead follower only ISR
            // size. The rest, and the fence, follow in the next ticks, built on the speculative image
            // that shows this batch.
            records.sort_by_key(|r| {
                !matches!(
                    r,
                    MetadataRecord::ChangePartition { leader, .. } if *leader != LeaderChange::Unchanged
                )
            });
            records.truncate(FENCE_PARTITION_CHANGES_PER_BATCH_MAX);
            return records;
        }
        records.push(MetadataRecord::FenceBroker { node, incarnation });
        records
    }

    /// A broker asks to shut down: in the same batch its leadership moves to other in-sync replicas and
    /// it leaves every ISR (but the ones it is the last member of, which go leaderless), so once the
    /// batch commits the broker leads nothing, no leader waits for it, and it may stop. It stays fenced
    /// until it registers again.
    ///
    /// # Errors
    ///
    /// [`ControllerError::StaleBroker`] if the broker is not registered with this incarnation.
    pub fn controlled_shutdown(
        &mut self,
        image: &MetadataImage,
        node: NodeId,
        incarnation: Incarnation,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let broker = match image.broker(node) {
            Some(b) if b.incarnation == incarnation => b,
            _ => return Err(ControllerError::StaleBroker { node, incarnation }),
        };
        if broker.in_controlled_shutdown {
            return Ok(Vec::new());
        }
        let mut records = remove_broker(image, node);
        records.push(MetadataRecord::ControlledShutdown { node, incarnation });
        self.sessions.remove(&node);
        Ok(records)
    }

    /// Creates a topic: one CreateTopic record, then one CreatePartition per partition.
    ///
    /// Placement is Kafka's rack-unaware assignment over the live (unfenced) brokers sorted by id: the
    /// first replicas (leaders) go round robin from a random start, so that leaders spread over brokers
    /// and over topics, and each partition's followers follow its leader at a shift that grows every
    /// round of the brokers. Every replica starts in the ISR, the first one leads, both epochs are 0.
    /// A manual assignment's ISR is its live replicas (all of them if none is live: the partition
    /// starts leaderless and the first of them to heartbeat leads it, as nothing was written yet), led
    /// by the first live one. Racks are not considered.
    ///
    /// # Errors
    ///
    /// [`ControllerError::InvalidTopicName`], [`ControllerError::TopicAlreadyExists`],
    /// [`ControllerError::InvalidPartitions`], [`ControllerError::InvalidConfig`],
    /// [`ControllerError::InvalidReplicationFactor`] (below 1, above
    /// [`ControllerConfig::replication_factor_max`], or above the live brokers),
    /// [`ControllerError::InvalidReplicaAssignment`].
    pub fn create_topic(
        &mut self,
        image: &MetadataImage,
        rng: &mut impl RandomSource,
        req: CreateTopic,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if !topic_name_is_valid(&req.name) {
            return Err(ControllerError::InvalidTopicName { name: req.name });
        }
        if image.topic_id(&req.name).is_some() {
            return Err(ControllerError::TopicAlreadyExists { name: req.name });
        }
        if let Some(existing) = image
            .topics()
            .values()
            .find(|t| crate::image::topic_names_collide(&t.name, &req.name))
        {
            return Err(ControllerError::TopicNameCollides {
                name: req.name,
                existing: existing.name.clone(),
            });
        }
        check_configs(&req.configs)?;
        let assignment = match req.assignment {
            Some(assignment) => {
                if req.partitions != -1 || req.replication_factor != -1 {
                    return Err(assignment_error(
                        "both an assignment and a partition count or replication factor",
                    ));
                }
                let factor = check_assignment(image, &assignment, 0)?;
                self.check_replication_factor(factor)?;
                assignment
            }
            None => {
                let count = partition_count(req.partitions)?;
                let factor = match req.replication_factor {
                    -1 => self.config.default_replication_factor,
                    n => n,
                };
                self.check_replication_factor(factor)?;
                place(image, rng, 0, count, factor)?
            }
        };
        let topic_id = new_topic_id(image, rng);
        let mut records = vec![MetadataRecord::CreateTopic {
            name: req.name,
            topic_id,
            configs: req.configs,
        }];
        records.extend(partition_records(image, topic_id, 0, assignment));
        Ok(records)
    }

    /// Grows a topic to `total` partitions (Kafka's CreatePartitions), with the topic's replication
    /// factor (that of its partition 0), placed as [`Controller::create_topic`] does unless an
    /// assignment for the new ones is given.
    ///
    /// # Errors
    ///
    /// [`ControllerError::UnknownTopic`], [`ControllerError::InvalidPartitions`] if `total` is not above
    /// the current count or above the limit, [`ControllerError::InvalidReplicaAssignment`] (also for an
    /// assignment whose replica count is not the topic's), [`ControllerError::InvalidReplicationFactor`]
    /// when the topic's factor is above [`ControllerConfig::replication_factor_max`] or the live brokers.
    pub fn create_partitions(
        &mut self,
        image: &MetadataImage,
        rng: &mut impl RandomSource,
        name: &str,
        total: i32,
        assignment: Option<Vec<Vec<NodeId>>>,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let topic_id = image
            .topic_id(name)
            .ok_or_else(|| ControllerError::UnknownTopic { name: name.into() })?;
        let partitions = &image.topic(topic_id).expect("indexed by name").partitions;
        let current = partitions.len();
        // The controller creates a topic and its partitions in one batch, so partition 0 exists (1 is
        // for a topic that has none); replica lists are at most REPLICAS_MAX long, which fits an i16.
        let factor = partitions.first().map_or(1, |p| p.replicas.len()) as i16;
        let total_usize = usize::try_from(total).unwrap_or(0);
        if total_usize <= current || total_usize > PARTITIONS_PER_TOPIC_MAX {
            return Err(ControllerError::InvalidPartitions {
                reason: format!("{total} is not between {current} and {PARTITIONS_PER_TOPIC_MAX}"),
            });
        }
        let assignment = match assignment {
            Some(assignment) => {
                if assignment.len() != total_usize - current {
                    return Err(assignment_error("one replica list per new partition"));
                }
                if check_assignment(image, &assignment, current)? != factor {
                    return Err(assignment_error(&format!(
                        "the topic's partitions have {factor} replicas"
                    )));
                }
                self.check_replication_factor(factor)?;
                assignment
            }
            None => {
                self.check_replication_factor(factor)?;
                place(image, rng, current, total_usize - current, factor)?
            }
        };
        Ok(partition_records(image, topic_id, current, assignment))
    }

    /// Deletes a topic.
    ///
    /// # Errors
    ///
    /// [`ControllerError::UnknownTopic`].
    pub fn delete_topic(
        &mut self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let topic_id = image
            .topic_id(name)
            .ok_or_else(|| ControllerError::UnknownTopic { name: name.into() })?;
        Ok(vec![MetadataRecord::DeleteTopic { topic_id }])
    }

    /// Sets (`Some`) or removes (`None`) one config of a topic (IncrementalAlterConfigs). Setting
    /// [`UNCLEAN_LEADER_ELECTION_CONFIG`] to true elects, in the same batch, a leader for each of the
    /// topic's leaderless partitions that has a live replica.
    ///
    /// # Errors
    ///
    /// [`ControllerError::UnknownTopic`], [`ControllerError::InvalidConfig`] for an empty or over-long
    /// key or value, or a topic already at [`CONFIGS_MAX`].
    pub fn set_topic_config(
        &mut self,
        image: &MetadataImage,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let topic_id = image
            .topic_id(name)
            .ok_or_else(|| ControllerError::UnknownTopic { name: name.into() })?;
        let pair = [(key.to_string(), value.unwrap_or_default().to_string())];
        check_configs(&pair)?;
        let configs = &image.topic(topic_id).expect("indexed by name").configs;
        if value.is_some() && !configs.contains_key(key) && configs.len() >= CONFIGS_MAX {
            return Err(ControllerError::InvalidConfig {
                reason: format!("at most {CONFIGS_MAX} configs"),
            });
        }
        let unclean_now = key == UNCLEAN_LEADER_ELECTION_CONFIG
            && value.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut records = vec![MetadataRecord::SetTopicConfig {
            topic_id,
            key: key.into(),
            value: value.map(str::to_string),
        }];
        if unclean_now {
            records.extend(unclean_elections(image, topic_id));
        }
        Ok(records)
    }

    /// Changes several configs of one topic at once (IncrementalAlterConfigs, AlterConfigs):
    /// one [`MetadataRecord::SetTopicConfig`] per change, in order, so the batch applies all or
    /// nothing. The broker decided the changes (Kafka's operations, the values' checks) on
    /// `image`; this checks what the image must hold. Turning
    /// [`UNCLEAN_LEADER_ELECTION_CONFIG`] on elects as [`Controller::set_topic_config`] does.
    ///
    /// # Errors
    ///
    /// [`ControllerError::UnknownTopic`], [`ControllerError::InvalidConfig`] for an empty or
    /// over-long key or value, a key named twice, or more than [`CONFIGS_MAX`] configs after
    /// the change.
    pub fn alter_topic_configs(
        &mut self,
        image: &MetadataImage,
        name: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let topic_id = image
            .topic_id(name)
            .ok_or_else(|| ControllerError::UnknownTopic { name: name.into() })?;
        let pairs: Vec<(String, String)> = changes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect();
        check_configs(&pairs)?;
        let configs = &image.topic(topic_id).expect("indexed by name").configs;
        let mut keys: BTreeSet<&str> = configs.keys().map(String::as_str).collect();
        for (key, value) in changes {
            match value {
                Some(_) => keys.insert(key),
                None => keys.remove(key.as_str()),
            };
        }
        if keys.len() > CONFIGS_MAX {
            return Err(ControllerError::InvalidConfig {
                reason: format!("at most {CONFIGS_MAX} configs"),
            });
        }
        let unclean_now = changes.iter().any(|(key, value)| {
            key == UNCLEAN_LEADER_ELECTION_CONFIG
                && value
                    .as_deref()
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        });
        let mut records: Vec<MetadataRecord> = changes
            .iter()
            .map(|(key, value)| MetadataRecord::SetTopicConfig {
                topic_id,
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        if unclean_now {
            records.extend(unclean_elections(image, topic_id));
        }
        Ok(records)
    }

    /// An operator starts or cancels the decommission of `node` (one
    /// [`MetadataRecord::SetBrokerDraining`], none when it is already in that state). While it
    /// drains, [`Self::tick`] moves its leaderships to other in-sync replicas, then its replicas
    /// to other brokers by reassignment (KIP-455: the new replica catches up, throttled, joins the
    /// ISR, and only then is the draining one removed), at most [`DRAIN_MOVES_IN_FLIGHT_MAX`] at
    /// once; placement and reassignment targets leave it out. Once it hosts nothing
    /// ([`decommission_status`]) it can be stopped and unregistered.
    ///
    /// # Errors
    ///
    /// [`ControllerError::BrokerNotRegistered`] for an unknown broker;
    /// [`ControllerError::InvalidReplicationFactor`] when some partition it hosts could not keep
    /// its replication factor on the brokers that would not be draining.
    pub fn decommission_broker(
        &mut self,
        image: &MetadataImage,
        node: NodeId,
        request: Decommission,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let broker = image
            .broker(node)
            .ok_or(ControllerError::BrokerNotRegistered { node })?;
        let draining = request == Decommission::Start;
        if broker.draining == draining {
            return Ok(Vec::new());
        }
        if draining {
            let staying = image
                .brokers()
                .iter()
                .filter(|(n, b)| **n != node && !b.draining)
                .count();
            let short = partitions(image).find(|(_, _, p)| {
                p.replicas.contains(&node) && p.target_replicas().len() > staying
            });
            if let Some((topic_id, index, p)) = short {
                let name = image.topic(topic_id).map_or("?", |t| t.name.as_str());
                return Err(ControllerError::InvalidReplicationFactor {
                    reason: format!(
                        "cannot decommission broker {node}: partition {name}-{} has {} replicas \
                         and only {staying} registered brokers would not be draining",
                        index.0,
                        p.target_replicas().len()
                    ),
                });
            }
        }
        Ok(vec![MetadataRecord::SetBrokerDraining { node, draining }])
    }

    /// Removes a broker from the cluster for good (decommission). It must host no partition: move or
    /// delete them first.
    ///
    /// # Errors
    ///
    /// [`ControllerError::BrokerNotRegistered`] if it is not registered (Kafka's
    /// BROKER_ID_NOT_REGISTERED), [`ControllerError::InvalidRequest`] if it still hosts
    /// partitions.
    pub fn unregister_broker(
        &mut self,
        image: &MetadataImage,
        node: NodeId,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if image.broker(node).is_none() {
            return Err(ControllerError::BrokerNotRegistered { node });
        }
        if image.hosts_any(node) {
            return Err(ControllerError::InvalidRequest {
                reason: format!(
                    "broker {node} is still a replica of some partitions: decommission it first"
                ),
            });
        }
        self.sessions.remove(&node);
        Ok(vec![MetadataRecord::UnregisterBroker { node }])
    }

    /// Hands a block of [`PRODUCER_ID_BLOCK_SIZE`] producer ids to a broker. Blocks are unique across the
    /// cluster because each starts at the image's next id and the image refuses any other start.
    ///
    /// # Errors
    ///
    /// [`ControllerError::StaleBroker`] if the broker is not registered with this incarnation.
    pub fn allocate_producer_ids(
        &mut self,
        image: &MetadataImage,
        node: NodeId,
        incarnation: Incarnation,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if image
            .broker(node)
            .is_none_or(|b| b.incarnation != incarnation)
        {
            return Err(ControllerError::StaleBroker { node, incarnation });
        }
        let first_id = image.next_producer_id();
        Ok(vec![MetadataRecord::AllocateProducerIds {
            node,
            first_id,
            count: PRODUCER_ID_BLOCK_SIZE,
        }])
    }
}

impl Controller {
    /// A partition leader asks for a new ISR (KIP-497 AlterPartition). Checked in Kafka's order: the
    /// sender's incarnation, the partition, epochs ahead of this view (NOT_CONTROLLER), an older
    /// leader epoch, a sender that does not lead, an older partition epoch, the shape of the new ISR
    /// (replicas only, no duplicates, the leader in it), and every member's eligibility (registered,
    /// unfenced, not shutting down, same incarnation the leader saw). An accepted change is one
    /// ChangePartition with the partition epoch bumped and the leader and its epoch unchanged.
    ///
    /// A request naming several partitions may be served by one call per partition on the same image,
    /// their records proposed as one batch, as long as no partition is named twice: a second change of
    /// one partition must be decided on an image that shows the first, or both claim the same epoch
    /// and the image refuses the batch.
    ///
    /// # Errors
    ///
    /// [`AlterPartitionError`], each variant documenting its Kafka error code.
    pub fn alter_partition(
        &mut self,
        image: &MetadataImage,
        req: &AlterPartition,
    ) -> Result<AlterPartitionOutcome, AlterPartitionError> {
        if image
            .broker(req.node)
            .is_none_or(|b| b.incarnation != req.incarnation)
        {
            return Err(AlterPartitionError::StaleBroker {
                node: req.node,
                incarnation: req.incarnation,
            });
        }
        let p = partition(image, req.topic_id, req.index).ok_or(
            AlterPartitionError::UnknownPartition {
                topic_id: req.topic_id,
                index: req.index,
            },
        )?;
        check_alter_epochs(p, req)?;
        let new_isr = check_new_isr(image, p, &req.new_isr)?;
        let eligibility = Eligibility::new(image, BrokerChange::None);
        let record = change_partition(
            req.topic_id,
            req.index,
            p,
            new_isr,
            Election::Online,
            &eligibility,
        );
        // The leader is in the new ISR and unfenced, so the online election keeps it, unless the
        // change completes a reassignment that removes it (Kafka's NEW_LEADER_ELECTED case).
        let partition = record
            .as_ref()
            .map_or_else(|| p.clone(), |r| p.changed_by(r));
        let reassignment_completed = p.is_reassigning() && !partition.is_reassigning();
        Ok(AlterPartitionOutcome {
            records: record.into_iter().collect(),
            partition,
            reassignment_completed,
        })
    }

    /// ElectLeaders PREFERRED: moves the leadership of each named partition to its first replica when
    /// that one is in the ISR, unfenced and not shutting down. A partition named twice gets its result
    /// twice and one record.
    ///
    /// # Errors
    ///
    /// [`ControllerError::InvalidPartitions`] for more than [`ELECTION_PARTITIONS_MAX`] partitions.
    pub fn elect_preferred_leaders(
        &mut self,
        image: &MetadataImage,
        partitions: &[(String, PartitionIndex)],
    ) -> Result<Elections, ControllerError> {
        if partitions.len() > ELECTION_PARTITIONS_MAX {
            return Err(ControllerError::InvalidPartitions {
                reason: format!(
                    "{} partitions to elect, at most {ELECTION_PARTITIONS_MAX}",
                    partitions.len()
                ),
            });
        }
        let eligibility = Eligibility::new(image, BrokerChange::None);
        let mut elected: Vec<(TopicId, PartitionIndex)> = Vec::new();
        let mut elections = Elections {
            records: Vec::new(),
            results: Vec::with_capacity(partitions.len()),
        };
        for (name, index) in partitions {
            let found = image
                .topic_id(name)
                .and_then(|id| partition(image, id, *index).map(|p| (id, p)));
            let result = match found {
                None => ElectionResult::UnknownTopicOrPartition,
                Some((id, _)) if elected.contains(&(id, *index)) => ElectionResult::Elected,
                Some((_, p)) if p.leader.is_some() && p.leader == p.replicas.first().copied() => {
                    ElectionResult::NotNeeded
                }
                Some((id, p)) => {
                    let isr = p.isr.clone();
                    match change_partition(id, *index, p, isr, Election::Preferred, &eligibility) {
                        Some(record) => {
                            elections.records.push(record);
                            elected.push((id, *index));
                            ElectionResult::Elected
                        }
                        None => ElectionResult::PreferredLeaderNotAvailable,
                    }
                }
            };
            elections.results.push(result);
        }
        Ok(elections)
    }

    /// AlterPartitionReassignments (KIP-455), Kafka's rules: for each partition, a target starts
    /// (or replaces) a reassignment, with replicas = target then the current replicas not in it
    /// (removing), adding = target - current; it completes at once when every target replica is in
    /// the ISR already (a reordering, or a shrink), else when the leader's AlterPartition grows the
    /// ISR to hold them all. `None` cancels: the adding replicas leave the replicas and the ISR and
    /// the removing ones stay; when no ISR member would be left, only a topic that allows unclean
    /// election reverts (to its first original replica), else INVALID_REPLICA_ASSIGNMENT.
    ///
    /// A target must be non-empty, name registered brokers (fenced ones are allowed, as in Kafka:
    /// the move waits for them) each once, and the replicas during the move must stay within
    /// [`ControllerConfig::replication_factor_max`]. A partition named twice in one request is
    /// refused the second time (INVALID_REQUEST): each change is decided on the same image.
    ///
    /// # Errors
    ///
    /// [`ControllerError::InvalidRequest`] for more than [`REASSIGNMENT_PARTITIONS_MAX`]
    /// partitions; refusals of single partitions are in [`Reassignments::results`].
    pub fn alter_partition_reassignments(
        &mut self,
        image: &MetadataImage,
        requests: &[Reassign],
    ) -> Result<Reassignments, ControllerError> {
        if requests.len() > REASSIGNMENT_PARTITIONS_MAX {
            return Err(ControllerError::InvalidRequest {
                reason: format!(
                    "{} partitions to reassign, at most {REASSIGNMENT_PARTITIONS_MAX}",
                    requests.len()
                ),
            });
        }
        let mut named: Vec<(TopicId, PartitionIndex)> = Vec::new();
        let mut out = Reassignments {
            records: Vec::new(),
            results: Vec::with_capacity(requests.len()),
        };
        for req in requests {
            let decided = self.reassign_one(image, req, &mut named);
            out.results.push(decided.map(|record| {
                out.records.extend(record);
            }));
        }
        Ok(out)
    }

    fn reassign_one(
        &self,
        image: &MetadataImage,
        req: &Reassign,
        named: &mut Vec<(TopicId, PartitionIndex)>,
    ) -> Result<Option<MetadataRecord>, ControllerError> {
        let topic_id = image
            .topic_id(&req.topic)
            .ok_or_else(|| ControllerError::UnknownTopic {
                name: req.topic.clone(),
            })?;
        let p = partition(image, topic_id, req.index).ok_or_else(|| {
            ControllerError::UnknownPartition {
                name: req.topic.clone(),
                index: req.index,
            }
        })?;
        if named.contains(&(topic_id, req.index)) {
            return Err(ControllerError::InvalidRequest {
                reason: "partition named twice in one request".into(),
            });
        }
        named.push((topic_id, req.index));
        let eligibility = Eligibility::new(image, BrokerChange::None);
        let election = Election::online_for(image, topic_id);
        let target = match &req.target {
            None => revert_target(p, election)?,
            Some(target) => {
                self.check_reassignment_target(image, p, target)?;
                reassignment_target(p, target)
            }
        };
        Ok(build_change(
            topic_id,
            req.index,
            p,
            target,
            election,
            &eligibility,
        ))
    }

    /// Kafka's `validateManualPartitionAssignment`, and the replica limit during the move.
    fn check_reassignment_target(
        &self,
        image: &MetadataImage,
        p: &PartitionState,
        target: &[NodeId],
    ) -> Result<(), ControllerError> {
        if target.is_empty() {
            return Err(assignment_error(
                "the manual partition assignment includes an empty replica list",
            ));
        }
        if target.len() > REPLICAS_MAX {
            return Err(assignment_error(&format!(
                "{} replicas, at most {REPLICAS_MAX}",
                target.len()
            )));
        }
        if let Some(n) = target.iter().find(|n| image.broker(**n).is_none()) {
            return Err(assignment_error(&format!(
                "the manual partition assignment includes broker {n}, but no such broker is registered"
            )));
        }
        if let Some((_, n)) = target
            .iter()
            .enumerate()
            .find(|(i, n)| target[..*i].contains(n))
        {
            return Err(assignment_error(&format!(
                "the manual partition assignment includes the broker {n} more than once"
            )));
        }
        if let Some(n) = target
            .iter()
            .find(|n| !p.replicas.contains(n) && image.broker(**n).is_some_and(|b| b.draining))
        {
            return Err(assignment_error(&format!(
                "broker {n} is being decommissioned and takes no new replicas"
            )));
        }
        // The replicas during the move, as `reassignment_target` makes them.
        let during = target.len() + p.replicas.iter().filter(|n| !target.contains(n)).count();
        let max = usize::try_from(self.config.replication_factor_max).unwrap_or(1);
        if during > max {
            return Err(assignment_error(&format!(
                "{during} replicas during the move, above this cluster's limit of {max}"
            )));
        }
        Ok(())
    }

    fn check_replication_factor(&self, factor: i16) -> Result<(), ControllerError> {
        let max = self.config.replication_factor_max;
        let reason = if factor < 1 {
            format!("replication factor {factor} is below 1")
        } else if factor <= max {
            return Ok(());
        } else if max == 1 {
            // Today's message, kept while the broker cannot replicate.
            format!("replication factor {factor}: replication is not implemented yet, only 1 is supported")
        } else {
            format!("replication factor {factor} is above this cluster's limit of {max}")
        };
        Err(ControllerError::InvalidReplicationFactor { reason })
    }
}

fn partition(
    image: &MetadataImage,
    topic_id: TopicId,
    index: PartitionIndex,
) -> Option<&PartitionState> {
    let i = usize::try_from(index.0).ok()?;
    image.topic(topic_id)?.partitions.get(i)
}

/// AlterPartition's epoch and sender checks, in Kafka's order.
fn check_alter_epochs(p: &PartitionState, req: &AlterPartition) -> Result<(), AlterPartitionError> {
    if req.leader_epoch > p.leader_epoch || req.partition_epoch > p.partition_epoch {
        return Err(AlterPartitionError::EpochsAhead {
            leader_epoch: req.leader_epoch,
            partition_epoch: req.partition_epoch,
        });
    }
    if req.leader_epoch < p.leader_epoch {
        return Err(AlterPartitionError::FencedLeaderEpoch {
            sent: req.leader_epoch,
            current: p.leader_epoch,
        });
    }
    if p.leader != Some(req.node) {
        return Err(AlterPartitionError::NotLeader {
            node: req.node,
            leader: p.leader,
        });
    }
    if req.partition_epoch < p.partition_epoch {
        return Err(AlterPartitionError::InvalidUpdateVersion {
            sent: req.partition_epoch,
            current: p.partition_epoch,
        });
    }
    Ok(())
}

/// AlterPartition's ISR checks; the ISR as node ids, in the order asked.
fn check_new_isr(
    image: &MetadataImage,
    p: &PartitionState,
    new_isr: &[IsrMember],
) -> Result<Vec<NodeId>, AlterPartitionError> {
    let invalid = |reason| Err(AlterPartitionError::InvalidIsr { reason });
    if new_isr.len() > REPLICAS_MAX {
        return invalid("too many members");
    }
    let nodes: Vec<NodeId> = new_isr.iter().map(|m| m.node).collect();
    if nodes
        .iter()
        .enumerate()
        .any(|(i, n)| nodes[..i].contains(n))
    {
        return invalid("duplicate member");
    }
    if nodes.iter().any(|n| !p.replicas.contains(n)) {
        return invalid("a member is not a replica");
    }
    if !p.leader.is_some_and(|l| nodes.contains(&l)) {
        return invalid("the leader is not in it");
    }
    for m in new_isr {
        let why = match image.broker(m.node) {
            None => Some(Ineligible::NotRegistered),
            Some(b) if b.in_controlled_shutdown => Some(Ineligible::ShuttingDown),
            Some(b) if b.fenced => Some(Ineligible::Fenced),
            Some(b) if m.incarnation.is_some_and(|i| i != b.incarnation) => {
                Some(Ineligible::StaleIncarnation)
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(AlterPartitionError::IneligibleReplica { node: m.node, why });
        }
    }
    Ok(nodes)
}

/// Where a reassignment to `target` takes `p` (Kafka's `PartitionReassignmentReplicas` from the
/// current replicas): target order first, then the current replicas it drops, which are removing;
/// adding and removing sorted. As in Kafka, the current replicas are all of `replicas`, those an
/// ongoing move adds included: a move replaced before it completed removes the replicas it was
/// adding unless the new target names them, and a target given again lists its not yet
/// completed replicas as plain ones (adding empty), completing on the same condition.
fn reassignment_target(p: &PartitionState, target: &[NodeId]) -> Target {
    let mut removing: Vec<NodeId> = p
        .replicas
        .iter()
        .copied()
        .filter(|n| !target.contains(n))
        .collect();
    removing.sort();
    let mut adding: Vec<NodeId> = target
        .iter()
        .copied()
        .filter(|n| !p.replicas.contains(n))
        .collect();
    adding.sort();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    Target {
        replicas,
        isr: p.isr.clone(),
        adding,
        removing,
        complete: true,
    }
}

/// Kafka's `PartitionReassignmentRevert`: the replicas without the adding ones, the ISR without
/// them too; when that empties the ISR, the first original replica, only if the topic allows an
/// unclean election.
fn revert_target(p: &PartitionState, election: Election) -> Result<Target, ControllerError> {
    if !p.is_reassigning() {
        return Err(ControllerError::NoReassignmentInProgress);
    }
    let replicas: Vec<NodeId> = p
        .replicas
        .iter()
        .copied()
        .filter(|n| !p.adding.contains(n))
        .collect();
    let mut isr: Vec<NodeId> = p
        .isr
        .iter()
        .copied()
        .filter(|n| !p.adding.contains(n))
        .collect();
    if isr.is_empty() {
        if election != Election::Unclean {
            return Err(assignment_error(
                "reverting the reassignment would require an unclean leader election",
            ));
        }
        isr.push(
            *replicas
                .first()
                .expect("the image keeps a replica that is not adding"),
        );
    }
    Ok(Target {
        replicas,
        isr,
        adding: Vec::new(),
        removing: Vec::new(),
        complete: true,
    })
}

/// The ongoing reassignments of `image` (ListPartitionReassignments): every one when `topics` is
/// `None`, else those of the named partitions (unknown ones left out, as Kafka does), in topic
/// name and partition order for `None`, request order otherwise.
pub fn list_partition_reassignments(
    image: &MetadataImage,
    topics: Option<&[(String, Vec<PartitionIndex>)]>,
) -> Vec<OngoingReassignment> {
    let ongoing = |name: &str, index: PartitionIndex, p: &PartitionState| {
        p.is_reassigning().then(|| OngoingReassignment {
            topic: name.to_owned(),
            index,
            replicas: p.replicas.clone(),
            adding: p.adding.clone(),
            removing: p.removing.clone(),
        })
    };
    match topics {
        None => {
            let mut all: Vec<OngoingReassignment> = image
                .topics()
                .values()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| ongoing(&t.name, PartitionIndex(i as i32), p))
                })
                .collect();
            all.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
            all
        }
        Some(topics) => topics
            .iter()
            .flat_map(|(name, indexes)| {
                indexes.iter().filter_map(move |index| {
                    let id = image.topic_id(name)?;
                    ongoing(name, *index, partition(image, id, *index)?)
                })
            })
            .collect(),
    }
}

fn assignment_error(reason: &str) -> ControllerError {
    ControllerError::InvalidReplicaAssignment {
        reason: reason.into(),
    }
}

fn partition_count(requested: i32) -> Result<usize, ControllerError> {
    let count = if requested == -1 { 1 } else { requested };
    match usize::try_from(count) {
        Ok(n) if (1..=PARTITIONS_PER_TOPIC_MAX).contains(&n) => Ok(n),
        _ => Err(ControllerError::InvalidPartitions {
            reason: format!("{requested} is not between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
        }),
    }
}

fn check_configs(configs: &[(String, String)]) -> Result<(), ControllerError> {
    let invalid = |reason: String| Err(ControllerError::InvalidConfig { reason });
    if configs.len() > CONFIGS_MAX {
        return invalid(format!("{} configs, at most {CONFIGS_MAX}", configs.len()));
    }
    for (i, (k, v)) in configs.iter().enumerate() {
        if k.is_empty() || k.len() > CONFIG_KEY_BYTES_MAX || v.len() > CONFIG_VALUE_BYTES_MAX {
            return invalid(format!("config {k:?} key or value length out of bounds"));
        }
        if configs[..i].iter().any(|(earlier, _)| earlier == k) {
            return invalid(format!("config {k:?} given twice"));
        }
    }
    Ok(())
}

/// A manual assignment: every partition the same number of distinct, registered replicas, which it
/// returns (the caller checks it against the limit).
fn check_assignment(
    image: &MetadataImage,
    assignment: &[Vec<NodeId>],
    existing: usize,
) -> Result<i16, ControllerError> {
    if assignment.is_empty() || existing + assignment.len() > PARTITIONS_PER_TOPIC_MAX {
        return Err(ControllerError::InvalidPartitions {
            reason: format!("{} partitions in the assignment", assignment.len()),
        });
    }
    for replicas in assignment {
        if replicas.is_empty() || replicas.len() > REPLICAS_MAX {
            return Err(assignment_error("a partition with no replicas or too many"));
        }
        if replicas
            .iter()
            .enumerate()
            .any(|(i, n)| replicas[..i].contains(n))
        {
            return Err(assignment_error("a broker twice in one partition"));
        }
        if replicas.len() != assignment[0].len() {
            return Err(assignment_error("partitions with different replica counts"));
        }
        if let Some(n) = replicas.iter().find(|n| image.broker(**n).is_none()) {
            return Err(assignment_error(&format!("broker {n} is not registered")));
        }
        if let Some(n) = replicas
            .iter()
            .find(|n| image.broker(**n).is_some_and(|b| b.draining))
        {
            return Err(assignment_error(&format!(
                "broker {n} is being decommissioned and takes no new replicas"
            )));
        }
    }
    // At most REPLICAS_MAX, checked above, which fits an i16.
    Ok(assignment[0].len() as i16)
}

/// Kafka's rack-unaware assignment over the live brokers, sorted by id: partition `i`'s first replica
/// is broker `(start + i) % n`; its followers come after it at `1 + (shift + j) % (n - 1)` places for
/// follower `j`, where `shift` grows by one each time the partitions go once round the brokers, so
/// that followers of consecutive rounds land on different brokers. `start` and the first `shift` are
/// drawn from the seeded rng.
fn place(
    image: &MetadataImage,
    rng: &mut impl RandomSource,
    first_index: usize,
    count: usize,
    factor: i16,
) -> Result<Vec<Vec<NodeId>>, ControllerError> {
    // A draining broker (decommission) takes no new replica.
    let live: Vec<NodeId> = image
        .brokers()
        .iter()
        .filter(|(_, b)| !b.fenced && !b.draining)
        .map(|(n, _)| *n)
        .collect();
    let n = live.len();
    let factor = usize::try_from(factor).expect("checked to be at least 1");
    if factor > n {
        return Err(ControllerError::InvalidReplicationFactor {
            reason: format!(
                "replication factor {factor} is larger than the {n} available (unfenced, not \
                 draining) brokers"
            ),
        });
    }
    let start = rng.below(n as u64) as usize;
    // Drawn even when unused (one replica), so that a seed places the same leaders whatever the factor.
    let first_shift = rng.below(n as u64) as usize;
    Ok((first_index..first_index + count)
        .map(|i| {
            let shift = first_shift + i / n;
            let first = (start + i) % n;
            let mut replicas = Vec::with_capacity(factor);
            replicas.push(live[first]);
            for j in 0..factor - 1 {
                // factor > 1 here, so n >= 2 and n - 1 is not zero.
                replicas.push(live[(first + 1 + (shift + j) % (n - 1)) % n]);
            }
            replicas
        })
        .collect())
}

/// One tick's step of the drain of decommissioned brokers (see
/// [`Controller::decommission_broker`]): the leaderships draining brokers hold where another
/// in-sync replica may lead (those alone, as long as there are any, so leadership leaves first),
/// else new moves for partitions that list a draining broker and are not being reassigned,
/// while fewer than [`DRAIN_MOVES_IN_FLIGHT_MAX`] moves off draining brokers are under way. A
/// move keeps the other replicas in their order and adds replacements after them, so the
/// preferred leader stays a replica that was in sync. Decided afresh on each tick's image, so a
/// new controller carries on where the last one stopped.
fn drain(image: &MetadataImage) -> Vec<MetadataRecord> {
    let draining: BTreeSet<NodeId> = image
        .brokers()
        .iter()
        .filter(|(_, b)| b.draining)
        .map(|(n, _)| *n)
        .collect();
    if draining.is_empty() {
        return Vec::new();
    }
    let is_draining = |n: &NodeId| draining.contains(n);
    let normal = Eligibility::new(image, BrokerChange::None);
    let avoiding = Eligibility::new(image, BrokerChange::AvoidDraining);
    let mut records = Vec::new();
    for (topic_id, index, p) in partitions(image) {
        if !p.leader.is_some_and(|l| is_draining(&l)) {
            continue;
        }
        // Only where another member may lead: the avoiding election would otherwise leave the
        // partition leaderless.
        if !p.isr.iter().any(|n| !is_draining(n) && normal.may_lead(*n)) {
            continue;
        }
        let isr = p.isr.clone();
        records.extend(change_partition(
            topic_id,
            index,
            p,
            isr,
            Election::Online,
            &avoiding,
        ));
        if records.len() == DRAIN_LEADERSHIPS_PER_TICK_MAX {
            break;
        }
    }
    if !records.is_empty() {
        return records;
    }
    let mut in_flight = partitions(image)
        .filter(|(_, _, p)| p.removing.iter().any(is_draining))
        .count();
    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (_, _, p) in partitions(image) {
        for n in &p.replicas {
            *load.entry(*n).or_default() += 1;
        }
    }
    for (topic_id, index, p) in partitions(image) {
        if in_flight >= DRAIN_MOVES_IN_FLIGHT_MAX {
            break;
        }
        if p.is_reassigning() || !p.replicas.iter().any(is_draining) {
            continue;
        }
        let kept: Vec<NodeId> = p
            .replicas
            .iter()
            .copied()
            .filter(|n| !is_draining(n))
            .collect();
        let need = p.replicas.len() - kept.len();
        // No broker to move to now (too few live ones): the next tick tries again.
        let Some(added) = replacements(image, &kept, need, &load) else {
            continue;
        };
        for n in &added {
            *load.entry(*n).or_default() += 1;
        }
        let mut target = kept;
        target.extend(added);
        let election = Election::online_for(image, topic_id);
        let change = build_change(
            topic_id,
            index,
            p,
            reassignment_target(p, &target),
            election,
            &normal,
        );
        if let Some(record) = change {
            records.push(record);
            in_flight += 1;
        }
    }
    records
}

/// `need` brokers to take a partition's draining replicas: live (unfenced, not shutting down),
/// not draining, not among `kept`; on racks `kept` does not use yet where racks are known, then
/// the least loaded (fewest replicas, counting this tick's moves), then the lowest id. `None`
/// when there are not enough.
fn replacements(
    image: &MetadataImage,
    kept: &[NodeId],
    need: usize,
    load: &BTreeMap<NodeId, usize>,
) -> Option<Vec<NodeId>> {
    let racks_known = image.brokers().values().any(|b| b.rack.is_some());
    let rack = |n: &NodeId| image.broker(*n).and_then(|b| b.rack.as_deref());
    let mut used_racks: Vec<Option<&str>> = kept.iter().map(rack).collect();
    let mut chosen: Vec<NodeId> = Vec::with_capacity(need);
    for _ in 0..need {
        let (best, b) = image
            .brokers()
            .iter()
            .filter(|(n, b)| {
                !b.fenced
                    && !b.in_controlled_shutdown
                    && !b.draining
                    && !kept.contains(n)
                    && !chosen.contains(n)
            })
            .min_by_key(|(n, b)| {
                let rack_taken = racks_known && used_racks.contains(&b.rack.as_deref());
                (rack_taken, load.get(n).copied().unwrap_or(0), **n)
            })?;
        chosen.push(*best);
        used_racks.push(b.rack.as_deref());
    }
    Some(chosen)
}

fn new_topic_id(image: &MetadataImage, rng: &mut impl RandomSource) -> TopicId {
    loop {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        // All-zero is Kafka's "no topic id"; a collision with an existing id is astronomically rare but
        // costs nothing to rule out.
        if id != [0; 16] && image.topic(TopicId(id)).is_none() {
            return TopicId(id);
        }
    }
}

fn partition_records(
    image: &MetadataImage,
    topic_id: TopicId,
    first_index: usize,
    assignment: Vec<Vec<NodeId>>,
) -> Vec<MetadataRecord> {
    assignment
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| {
            // The ISR is the live replicas, led by the first of them, as Kafka creates partitions. With
            // none live, every replica is in the ISR (the log is empty, so any of them is in sync) and
            // the partition starts offline; the first of them to heartbeat leads it.
            let live = |n: &&NodeId| image.broker(**n).is_some_and(|b| !b.fenced);
            let isr: Vec<NodeId> = replicas.iter().filter(live).copied().collect();
            let leader = isr.first().copied();
            let isr = if isr.is_empty() {
                replicas.clone()
            } else {
                isr
            };
            MetadataRecord::CreatePartition {
                topic_id,
                index: PartitionIndex((first_index + i) as i32),
                isr,
                replicas,
                leader,
                leader_epoch: LeaderEpoch(0),
                partition_epoch: PartitionEpoch(0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MetadataOffset;
    use crate::rng::SplitMix64;

    struct Harness {
        controller: Controller,
        image: MetadataImage,
        rng: SplitMix64,
        offset: u64,
    }

    impl Harness {
        fn new() -> Self {
            Self::with_config(ControllerConfig::default())
        }

        /// Replication factors up to 3, default 2; brokers 1..=`brokers` registered and unfenced.
        fn replicated(brokers: i32) -> Self {
            let mut h = Self::with_config(ControllerConfig {
                replication_factor_max: 3,
                default_replication_factor: 2,
                ..ControllerConfig::default()
            });
            for node in 1..=brokers {
                h.start_broker(node, 1, 0);
            }
            h
        }

        fn with_config(config: ControllerConfig) -> Self {
            Self {
                controller: Controller::new(config),
                image: MetadataImage::new(),
                rng: SplitMix64::new(1),
                offset: 0,
            }
        }

        fn partition(&self, id: TopicId, index: usize) -> PartitionState {
            self.image.topic(id).unwrap().partitions[index].clone()
        }

        fn fence(&mut self, node: i32) {
            // Everyone else heartbeats just before the timeout; `node` stays silent from time 0.
            let now = self.offset * SESSION_TIMEOUT_MS_DEFAULT + SESSION_TIMEOUT_MS_DEFAULT;
            for (n, b) in self.image.brokers().clone() {
                if n != NodeId(node) && !b.fenced {
                    let records = self
                        .controller
                        .heartbeat(&self.image, MonotonicMs(now - 1), n, b.incarnation)
                        .unwrap();
                    assert!(records.is_empty());
                }
            }
            let records = self.controller.tick(&self.image, MonotonicMs(now));
            assert!(matches!(
                records.last(),
                Some(MetadataRecord::FenceBroker { node: n, .. }) if *n == NodeId(node)
            ));
            self.commit(records);
        }

        fn heartbeat(&mut self, node: i32) -> usize {
            let inc = self.image.broker(NodeId(node)).unwrap().incarnation;
            let records = self
                .controller
                .heartbeat(&self.image, MonotonicMs(0), NodeId(node), inc)
                .unwrap();
            self.commit(records)
        }

        /// Applies records as the log would, asserting that the controller only makes valid ones.
        fn commit(&mut self, records: Vec<MetadataRecord>) -> usize {
            // One call's records are one batch, committed as one entry.
            let n = records.len();
            if n > 0 {
                self.offset += 1;
                self.image
                    .apply_batch(MetadataOffset(self.offset), &records)
                    .unwrap_or_else(|e| panic!("{records:?}: {e}"));
            }
            n
        }

        fn start_broker(&mut self, node: i32, incarnation: u64, now: u64) {
            let endpoint = Endpoint {
                host: format!("b{node}"),
                port: 9092,
            };
            let req = RegisterBroker {
                node: NodeId(node),
                incarnation: Incarnation(incarnation),
                client: endpoint.clone(),
                cluster: endpoint,
                rack: None,
            };
            let records = self
                .controller
                .register_broker(&self.image, MonotonicMs(now), req)
                .unwrap();
            self.commit(records);
            let records = self
                .controller
                .heartbeat(
                    &self.image,
                    MonotonicMs(now),
                    NodeId(node),
                    Incarnation(incarnation),
                )
                .unwrap();
            self.commit(records);
        }

        fn create(
            &mut self,
            name: &str,
            partitions: i32,
            rf: i16,
        ) -> Result<TopicId, ControllerError> {
            let req = CreateTopic {
                name: name.into(),
                partitions,
                replication_factor: rf,
                assignment: None,
                configs: vec![("cleanup.policy".into(), "compact".into())],
            };
            let records = self
                .controller
                .create_topic(&self.image, &mut self.rng, req)?;
            self.commit(records);
            Ok(self.image.topic_id(name).unwrap())
        }

        fn leaders(&self, id: TopicId) -> Vec<Option<NodeId>> {
            self.image
                .topic(id)
                .unwrap()
                .partitions
                .iter()
                .map(|p| p.leader)
                .collect()
        }
    }

    #[test]
    fn topics_are_placed_round_robin_over_live_brokers_from_a_random_start() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.start_broker(node, 1, 0);
        }
        let id = h.create("a", 6, -1).unwrap();
        let leaders = h.leaders(id);
        for n in 1..=3 {
            assert_eq!(
                leaders.iter().filter(|l| **l == Some(NodeId(n))).count(),
                2,
                "{leaders:?}"
            );
        }
        // Consecutive partitions go to consecutive brokers.
        let first = leaders[0].unwrap().0;
        assert_eq!(leaders[1], Some(NodeId(first % 3 + 1)));
        // Different topics start at different brokers for some seeds.
        let starts: Vec<Option<NodeId>> = (0..8)
            .map(|i| {
                let id = h.create(&format!("t{i}"), 1, 1).unwrap();
                h.leaders(id)[0]
            })
            .collect();
        assert!(starts.iter().any(|s| *s != starts[0]), "{starts:?}");
        assert_eq!(
            h.create("a", 1, 1),
            Err(ControllerError::TopicAlreadyExists { name: "a".into() })
        );
        assert!(matches!(
            h.create("b!", 1, 1),
            Err(ControllerError::InvalidTopicName { .. })
        ));
        h.create("dot.ted", 1, 1).unwrap();
        assert_eq!(
            h.create("dot_ted", 1, 1),
            Err(ControllerError::TopicNameCollides {
                name: "dot_ted".into(),
                existing: "dot.ted".into()
            })
        );
        assert!(matches!(
            h.create("b", 0, 1),
            Err(ControllerError::InvalidPartitions { .. })
        ));
    }

    #[test]
    fn a_replication_factor_above_one_is_refused_as_not_implemented() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.start_broker(node, 1, 0);
        }
        match h.create("a", 1, 3) {
            Err(ControllerError::InvalidReplicationFactor { reason }) => {
                assert!(reason.contains("not implemented"))
            }
            other => panic!("{other:?}"),
        }
        let req = CreateTopic {
            name: "m".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![vec![NodeId(1), NodeId(2)]]),
            configs: vec![],
        };
        assert!(matches!(
            h.controller.create_topic(&h.image, &mut h.rng, req),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
    }

    #[test]
    fn a_manual_assignment_is_validated_and_used() {
        let mut h = Harness::new();
        h.start_broker(1, 1, 0);
        h.start_broker(2, 1, 0);
        let req = |assignment| CreateTopic {
            name: "m".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(assignment),
            configs: vec![],
        };
        let bad = h
            .controller
            .create_topic(&h.image, &mut h.rng, req(vec![vec![NodeId(9)]]));
        assert!(matches!(
            bad,
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
        let bad =
            h.controller
                .create_topic(&h.image, &mut h.rng, req(vec![vec![NodeId(1), NodeId(1)]]));
        assert!(matches!(
            bad,
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
        let records = h.controller.create_topic(
            &h.image,
            &mut h.rng,
            req(vec![vec![NodeId(2)], vec![NodeId(2)]]),
        );
        h.commit(records.unwrap());
        let id = h.image.topic_id("m").unwrap();
        assert_eq!(h.leaders(id), vec![Some(NodeId(2)), Some(NodeId(2))]);
        let grow = h
            .controller
            .create_partitions(&h.image, &mut h.rng, "m", 4, None)
            .unwrap();
        assert_eq!(h.commit(grow), 2);
        assert_eq!(h.image.topic(id).unwrap().partitions.len(), 4);
        assert!(h
            .controller
            .create_partitions(&h.image, &mut h.rng, "m", 4, None)
            .is_err());
        let del = h.controller.delete_topic(&h.image, "m").unwrap();
        h.commit(del);
        assert!(h.image.topic_id("m").is_none());
        assert!(matches!(
            h.controller.delete_topic(&h.image, "m"),
            Err(ControllerError::UnknownTopic { .. })
        ));
    }

    #[test]
    fn a_broker_whose_port_refuses_is_fenced_at_once_and_only_its_old_incarnation() {
        let mut h = Harness::with_config(ControllerConfig {
            replication_factor_max: 3,
            ..ControllerConfig::default()
        });
        h.start_broker(1, 1, 0);
        h.start_broker(2, 1, 0);
        let id = h.create("a", 2, 2).unwrap();
        // A fresh heartbeat does not protect a broker whose port refuses connections.
        h.controller
            .heartbeat(&h.image, MonotonicMs(10), NodeId(1), Incarnation(1))
            .unwrap();
        h.controller
            .set_unreachable(BTreeMap::from([(NodeId(1), Incarnation(1))]));
        let records = h.controller.tick(&h.image, MonotonicMs(11));
        h.commit(records);
        assert!(h.image.broker(NodeId(1)).unwrap().fenced);
        assert!(!h.image.broker(NodeId(2)).unwrap().fenced);
        let parts = &h.image.topic(id).unwrap().partitions;
        assert!(parts
            .iter()
            .all(|p| p.leader == Some(NodeId(2)) && p.isr == vec![NodeId(2)]));
        // A heartbeat still on its way from the dead process does not unfence it.
        let records = h
            .controller
            .heartbeat(&h.image, MonotonicMs(12), NodeId(1), Incarnation(1))
            .unwrap();
        assert!(records.is_empty());
        // Once the port answers again (the mark is lifted), the same incarnation's heartbeat
        // unfences it.
        h.controller.set_unreachable(BTreeMap::new());
        let records = h
            .controller
            .heartbeat(&h.image, MonotonicMs(13), NodeId(1), Incarnation(1))
            .unwrap();
        assert!(!records.is_empty());
        h.commit(records);
        assert!(!h.image.broker(NodeId(1)).unwrap().fenced);
        // An old incarnation marked unreachable does not fence the new one.
        h.controller
            .set_unreachable(BTreeMap::from([(NodeId(2), Incarnation(0))]));
        assert!(h.controller.tick(&h.image, MonotonicMs(14)).is_empty());
    }

    #[test]
    fn a_silent_broker_is_fenced_its_partitions_go_offline_and_come_back_with_new_epochs() {
        let mut h = Harness::new();
        h.start_broker(1, 1, 0);
        h.start_broker(2, 1, 0);
        let id = h.create("a", 4, 1).unwrap();
        let timeout = SESSION_TIMEOUT_MS_DEFAULT;
        // Broker 2 keeps heartbeating; broker 1 goes silent.
        let records = h
            .controller
            .heartbeat(
                &h.image,
                MonotonicMs(timeout - 1),
                NodeId(2),
                Incarnation(1),
            )
            .unwrap();
        assert!(
            records.is_empty(),
            "heartbeats of a live broker are not logged"
        );
        assert!(h
            .controller
            .tick(&h.image, MonotonicMs(timeout - 1))
            .is_empty());
        let records = h.controller.tick(&h.image, MonotonicMs(timeout));
        assert_eq!(
            h.commit(records),
            3,
            "two partitions lose their leader, then the fence"
        );
        assert!(h.image.broker(NodeId(1)).unwrap().fenced);
        let parts = &h.image.topic(id).unwrap().partitions;
        let offline: Vec<_> = parts.iter().filter(|p| p.leader.is_none()).collect();
        assert_eq!(offline.len(), 2);
        assert!(offline
            .iter()
            .all(|p| p.leader_epoch == LeaderEpoch(1) && p.isr == vec![NodeId(1)]));
        // Broker 1 heartbeats again: unfenced, leads again with epoch 2.
        let records = h
            .controller
            .heartbeat(
                &h.image,
                MonotonicMs(timeout + 5),
                NodeId(1),
                Incarnation(1),
            )
            .unwrap();
        assert_eq!(h.commit(records), 3);
        let parts = &h.image.topic(id).unwrap().partitions;
        assert!(parts.iter().all(|p| p.leader.is_some()));
        assert_eq!(
            parts
                .iter()
                .filter(|p| p.leader_epoch == LeaderEpoch(2))
                .count(),
            2
        );
    }

    #[test]
    fn a_restarted_broker_replaces_its_old_incarnation_and_gets_its_partitions_back() {
        let mut h = Harness::new();
        h.start_broker(1, 1, 0);
        let id = h.create("a", 2, 1).unwrap();
        h.start_broker(1, 2, 100);
        assert_eq!(
            h.image.broker(NodeId(1)).unwrap().incarnation,
            Incarnation(2)
        );
        let parts = &h.image.topic(id).unwrap().partitions;
        assert!(parts
            .iter()
            .all(|p| p.leader == Some(NodeId(1)) && p.leader_epoch == LeaderEpoch(2)));
        let stale = h
            .controller
            .heartbeat(&h.image, MonotonicMs(200), NodeId(1), Incarnation(1));
        assert!(matches!(stale, Err(ControllerError::StaleBroker { .. })));
        let shutdown = h
            .controller
            .controlled_shutdown(&h.image, NodeId(1), Incarnation(2))
            .unwrap();
        assert_eq!(h.commit(shutdown), 3);
        assert!(h
            .image
            .topic(id)
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.leader.is_none()));
        // A heartbeat does not bring a broker in controlled shutdown back; a new registration does.
        let records = h
            .controller
            .heartbeat(&h.image, MonotonicMs(300), NodeId(1), Incarnation(2))
            .unwrap();
        assert!(records.is_empty());
    }

    #[test]
    fn several_configs_change_in_one_batch() {
        let mut h = Harness::new();
        h.start_broker(1, 1, 0);
        let id = h.create("a", 1, 1).unwrap();
        let set = h
            .controller
            .set_topic_config(&h.image, "a", "retention.ms", Some("1000"))
            .unwrap();
        h.commit(set);
        let changes = vec![
            ("retention.ms".to_owned(), None),
            ("segment.bytes".to_owned(), Some("16384".to_owned())),
            ("cleanup.policy".to_owned(), Some("compact".to_owned())),
        ];
        let records = h
            .controller
            .alter_topic_configs(&h.image, "a", &changes)
            .unwrap();
        assert_eq!(records.len(), 3);
        h.commit(records);
        let configs = &h.image.topic(id).unwrap().configs;
        assert_eq!(configs.len(), 2);
        assert_eq!(
            configs.get("segment.bytes").map(String::as_str),
            Some("16384")
        );
        assert!(!configs.contains_key("retention.ms"));
        assert!(matches!(
            h.controller.alter_topic_configs(&h.image, "nope", &changes),
            Err(ControllerError::UnknownTopic { .. })
        ));
        let twice = vec![
            ("segment.ms".to_owned(), Some("1".to_owned())),
            ("segment.ms".to_owned(), None),
        ];
        assert!(matches!(
            h.controller.alter_topic_configs(&h.image, "a", &twice),
            Err(ControllerError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn configs_are_set_and_removed_and_an_empty_broker_unregisters() {
        let mut h = Harness::new();
        h.start_broker(1, 1, 0);
        h.start_broker(2, 1, 0);
        let id = h.create("a", 1, 1).unwrap();
        let set = h
            .controller
            .set_topic_config(&h.image, "a", "retention.ms", Some("1000"))
            .unwrap();
        h.commit(set);
        assert_eq!(
            h.image
                .topic(id)
                .unwrap()
                .configs
                .get("retention.ms")
                .map(String::as_str),
            Some("1000")
        );
        let unset = h
            .controller
            .set_topic_config(&h.image, "a", "retention.ms", None)
            .unwrap();
        h.commit(unset);
        assert!(!h
            .image
            .topic(id)
            .unwrap()
            .configs
            .contains_key("retention.ms"));
        assert!(h
            .controller
            .set_topic_config(&h.image, "a", "", Some("x"))
            .is_err());
        let host = h.image.topic(id).unwrap().partitions[0].replicas[0];
        let idle = if host == NodeId(1) {
            NodeId(2)
        } else {
            NodeId(1)
        };
        assert!(h.controller.unregister_broker(&h.image, host).is_err());
        let records = h.controller.unregister_broker(&h.image, idle).unwrap();
        h.commit(records);
        assert!(h.image.broker(idle).is_none());
    }

    #[test]
    fn producer_id_blocks_are_unique_and_a_topic_with_no_live_broker_is_refused() {
        let mut h = Harness::new();
        assert!(matches!(
            h.create("a", 1, 1),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
        h.start_broker(1, 1, 0);
        h.start_broker(2, 1, 0);
        let mut firsts = Vec::new();
        for node in [1, 2, 1] {
            let records = h
                .controller
                .allocate_producer_ids(&h.image, NodeId(node), Incarnation(1))
                .unwrap();
            if let MetadataRecord::AllocateProducerIds { first_id, .. } = records[0] {
                firsts.push(first_id);
            }
            h.commit(records);
        }
        assert_eq!(firsts, vec![0, 1000, 2000]);
    }

    fn nodes(ids: &[i32]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn a_config_whose_default_factor_exceeds_the_limit_is_invalid() {
        assert!(ControllerConfig::default().validate().is_ok());
        let bad = ControllerConfig {
            default_replication_factor: 2,
            ..ControllerConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ControllerError::InvalidConfig { .. })
        ));
        let bad = ControllerConfig {
            replication_factor_max: 0,
            ..ControllerConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = ControllerConfig {
            replication_factor_max: REPLICAS_MAX as i16 + 1,
            ..ControllerConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn replicated_topics_get_distinct_replicas_leaders_round_robin_and_shifted_followers() {
        let mut h = Harness::replicated(4);
        let id = h.create("a", 8, 3).unwrap();
        let parts = h.image.topic(id).unwrap().partitions.clone();
        let index_of = |n: NodeId| (n.0 - 1) as usize;
        let first = index_of(parts[0].replicas[0]);
        let mut shifts = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.replicas.len(), 3);
            assert!(
                !p.replicas
                    .iter()
                    .enumerate()
                    .any(|(i, n)| p.replicas[..i].contains(n)),
                "{p:?}"
            );
            assert_eq!(p.isr, p.replicas, "every replica starts in sync");
            assert_eq!(p.leader, Some(p.replicas[0]));
            assert_eq!(
                (p.leader_epoch, p.partition_epoch),
                (LeaderEpoch(0), PartitionEpoch(0))
            );
            // Leaders go round robin from the start.
            assert_eq!(index_of(p.replicas[0]), (first + i) % 4);
            // Followers come at consecutive places after a shift of 1 + (shift + j) % 3.
            let lead = index_of(p.replicas[0]);
            let gap = |r: NodeId| (index_of(r) + 4 - lead) % 4;
            let (g1, g2) = (gap(p.replicas[1]), gap(p.replicas[2]));
            assert_eq!(g2, g1 % 3 + 1, "{p:?}");
            shifts.push(g1);
        }
        // The shift moves by one once the leaders went round the four brokers.
        assert_eq!(shifts[..4], [shifts[0]; 4]);
        assert_eq!(shifts[4..], [shifts[0] % 3 + 1; 4]);
        // -1 takes the configured default (2).
        let id = h.create("b", 2, -1).unwrap();
        assert!(h
            .image
            .topic(id)
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 2));
    }

    #[test]
    fn placement_is_a_function_of_the_seed() {
        let place = |seed| {
            let mut h = Harness::replicated(5);
            h.rng = SplitMix64::new(seed);
            let id = h.create("a", 6, 3).unwrap();
            h.image
                .topic(id)
                .unwrap()
                .partitions
                .iter()
                .map(|p| p.replicas.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(place(7), place(7));
        assert!((8..16).any(|seed| place(seed) != place(7)));
    }

    #[test]
    fn a_factor_above_the_live_brokers_or_the_limit_is_refused_with_a_reason() {
        let mut h = Harness::replicated(3);
        h.fence(3);
        match h.create("a", 1, 3) {
            Err(ControllerError::InvalidReplicationFactor { reason }) => {
                assert!(reason.contains("larger than the 2 available"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match h.create("a", 1, 4) {
            Err(ControllerError::InvalidReplicationFactor { reason }) => {
                assert!(
                    reason.contains("above this cluster's limit of 3"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            h.create("a", 1, 0),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
        assert!(h.create("a", 1, 2).is_ok());
    }

    #[test]
    fn a_manual_replicated_assignment_starts_with_its_live_replicas_in_sync() {
        let mut h = Harness::replicated(3);
        h.fence(2);
        let req = |name: &str, assignment: Vec<Vec<NodeId>>| CreateTopic {
            name: name.into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(assignment),
            configs: vec![],
        };
        let uneven = req("m", vec![nodes(&[1, 2]), nodes(&[1])]);
        assert!(matches!(
            h.controller.create_topic(&h.image, &mut h.rng, uneven),
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
        let records = h
            .controller
            .create_topic(
                &h.image,
                &mut h.rng,
                req("m", vec![nodes(&[2, 1, 3]), nodes(&[3, 2])]).clone(),
            )
            .err();
        assert!(records.is_some(), "different replica counts are refused");
        let ok = h
            .controller
            .create_topic(
                &h.image,
                &mut h.rng,
                req("m", vec![nodes(&[2, 1, 3]), nodes(&[2, 3, 1])]),
            )
            .unwrap();
        h.commit(ok);
        let id = h.image.topic_id("m").unwrap();
        let p = h.partition(id, 0);
        assert_eq!((p.leader, p.isr), (Some(NodeId(1)), nodes(&[1, 3])));
        // CreatePartitions keeps the topic's factor, placed or assigned.
        let grow = h.controller.create_partitions(
            &h.image,
            &mut h.rng,
            "m",
            3,
            Some(vec![nodes(&[1, 3])]),
        );
        assert!(matches!(
            grow,
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
        let grow = h
            .controller
            .create_partitions(&h.image, &mut h.rng, "m", 3, None);
        assert!(
            matches!(grow, Err(ControllerError::InvalidReplicationFactor { .. })),
            "three replicas with two live brokers"
        );
        h.heartbeat(2);
        let grow = h
            .controller
            .create_partitions(&h.image, &mut h.rng, "m", 3, None)
            .unwrap();
        h.commit(grow);
        assert_eq!(h.partition(id, 2).replicas.len(), 3);
        assert_eq!(h.partition(id, 2).isr.len(), 3);
    }

    #[test]
    fn a_fenced_leader_hands_over_to_the_next_in_sync_replica_and_followers_leave_the_isr() {
        let mut h = Harness::replicated(3);
        let id = h.create("a", 3, 3).unwrap();
        let before = h.image.topic(id).unwrap().partitions.clone();
        h.fence(1);
        for (i, old) in before.iter().enumerate() {
            let p = h.partition(id, i);
            assert!(!p.isr.contains(&NodeId(1)), "{p:?}");
            assert_eq!(p.partition_epoch, old.partition_epoch.next());
            if old.leader == Some(NodeId(1)) {
                // The first replica in replica order that is still in sync.
                let next = old.replicas.iter().copied().find(|n| *n != NodeId(1));
                assert_eq!(p.leader, next);
                assert_eq!(p.leader_epoch, old.leader_epoch.next());
            } else {
                assert_eq!((p.leader, p.leader_epoch), (old.leader, old.leader_epoch));
            }
        }
        // Two fenced: one in-sync replica left everywhere. Three: it stays, leaderless.
        h.fence(2);
        h.fence(3);
        for i in 0..3 {
            let p = h.partition(id, i);
            assert_eq!((p.leader, p.isr.clone()), (None, nodes(&[3])), "{p:?}");
        }
        // 1 comes back: out of sync, it does not lead. 3 comes back: it leads again.
        h.heartbeat(1);
        assert!(h
            .image
            .topic(id)
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.leader.is_none()));
        let epoch = h.partition(id, 0).leader_epoch;
        assert_eq!(h.heartbeat(3), 4, "unfence and three elections");
        let p = h.partition(id, 0);
        assert_eq!((p.leader, p.leader_epoch), (Some(NodeId(3)), epoch.next()));
    }

    #[test]
    fn a_topic_that_allows_unclean_election_elects_a_live_replica_outside_the_isr() {
        let mut h = Harness::replicated(3);
        let id = h.create("a", 1, 3).unwrap();
        let order = h.partition(id, 0).replicas;
        // The first two replicas go down in order: the third is the last in the ISR.
        h.fence(order[0].0);
        h.fence(order[1].0);
        // The first comes back, out of sync: a clean topic waits for the third.
        h.heartbeat(order[0].0);
        h.fence(order[2].0);
        assert_eq!(h.partition(id, 0).leader, None);
        assert_eq!(h.partition(id, 0).isr, vec![order[2]]);
        // Allowing unclean election elects the live one at once, with an ISR of just it.
        let set = h
            .controller
            .set_topic_config(&h.image, "a", UNCLEAN_LEADER_ELECTION_CONFIG, Some("TRUE"))
            .unwrap();
        assert_eq!(h.commit(set), 2);
        let p = h.partition(id, 0);
        assert_eq!((p.leader, p.isr), (Some(order[0]), vec![order[0]]));
        // Fenced again, nobody is live: leaderless, ISR kept. The second replica comes back and leads.
        h.fence(order[0].0);
        assert_eq!(h.partition(id, 0).leader, None);
        h.heartbeat(order[1].0);
        let p = h.partition(id, 0);
        assert_eq!((p.leader, p.isr), (Some(order[1]), vec![order[1]]));
    }

    #[test]
    fn a_broker_in_more_isrs_than_a_batch_holds_is_fenced_over_several_ticks_leaderships_first() {
        let mut h = Harness::replicated(2);
        let count = FENCE_PARTITION_CHANGES_PER_BATCH_MAX + 100;
        let id = h.create("a", count as i32, 2).unwrap();
        let led = h
            .image
            .topic(id)
            .unwrap()
            .partitions
            .iter()
            .filter(|p| p.leader == Some(NodeId(1)))
            .count();
        let late = MonotonicMs(SESSION_TIMEOUT_MS_DEFAULT);
        h.controller
            .heartbeat(&h.image, late, NodeId(2), Incarnation(1))
            .unwrap();
        let first = h.controller.tick(&h.image, late);
        assert_eq!(first.len(), FENCE_PARTITION_CHANGES_PER_BATCH_MAX);
        assert!(crate::records::encode_batch(&first).is_ok());
        assert!(first[..led].iter().all(|r| matches!(
            r,
            MetadataRecord::ChangePartition {
                leader: LeaderChange::To(NodeId(2)),
                ..
            }
        )));
        h.commit(first);
        assert!(
            !h.image.leads_any(NodeId(1)),
            "every leadership moved in the first batch"
        );
        assert!(!h.image.broker(NodeId(1)).unwrap().fenced);
        let second = h.controller.tick(&h.image, late);
        assert_eq!(second.len(), 101, "the other 100 ISRs, then the fence");
        h.commit(second);
        assert!(h.image.broker(NodeId(1)).unwrap().fenced);
        assert!(h
            .image
            .topic(id)
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.isr == vec![NodeId(2)]));
    }

    #[test]
    fn one_expired_broker_is_fenced_per_tick() {
        let mut h = Harness::replicated(3);
        h.create("a", 3, 3).unwrap();
        let late = MonotonicMs(SESSION_TIMEOUT_MS_DEFAULT);
        let first = h.controller.tick(&h.image, late);
        assert!(matches!(
            first.last(),
            Some(MetadataRecord::FenceBroker {
                node: NodeId(1),
                ..
            })
        ));
        h.commit(first);
        let second = h.controller.tick(&h.image, late);
        assert!(matches!(
            second.last(),
            Some(MetadataRecord::FenceBroker {
                node: NodeId(2),
                ..
            })
        ));
        h.commit(second);
        let third = h.controller.tick(&h.image, late);
        h.commit(third);
        assert!(h.image.brokers().values().all(|b| b.fenced));
        assert!(h.controller.tick(&h.image, late).is_empty());
    }

    #[test]
    fn a_controlled_shutdown_moves_leadership_and_leaves_the_isrs_in_one_batch() {
        let mut h = Harness::replicated(3);
        let id = h.create("a", 6, 2).unwrap();
        let inc = Incarnation(1);
        let records = h
            .controller
            .controlled_shutdown(&h.image, NodeId(2), inc)
            .unwrap();
        assert!(matches!(
            records.last(),
            Some(MetadataRecord::ControlledShutdown { .. })
        ));
        h.commit(records);
        assert!(!h.image.leads_any(NodeId(2)));
        for p in &h.image.topic(id).unwrap().partitions {
            assert!(!p.isr.contains(&NodeId(2)), "{p:?}");
            assert!(p.leader.is_some(), "the other replica was in sync: {p:?}");
        }
        // It may not rejoin an ISR until it registers again.
        let p = h
            .image
            .topic(id)
            .unwrap()
            .partitions
            .iter()
            .position(|p| p.replicas.contains(&NodeId(2)))
            .unwrap();
        let state = h.partition(id, p);
        let req = AlterPartition {
            node: state.leader.unwrap(),
            incarnation: inc,
            topic_id: id,
            index: PartitionIndex(p as i32),
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: state
                .replicas
                .iter()
                .map(|n| IsrMember {
                    node: *n,
                    incarnation: None,
                })
                .collect(),
        };
        assert_eq!(
            h.controller.alter_partition(&h.image, &req),
            Err(AlterPartitionError::IneligibleReplica {
                node: NodeId(2),
                why: Ineligible::ShuttingDown
            })
        );
    }

    #[test]
    fn a_new_incarnation_leaves_the_isrs_of_the_old_one() {
        let mut h = Harness::replicated(2);
        let id = h.create("a", 2, 2).unwrap();
        h.start_broker(1, 2, 10);
        for p in &h.image.topic(id).unwrap().partitions {
            assert_eq!((p.leader, &p.isr), (Some(NodeId(2)), &nodes(&[2])), "{p:?}");
        }
    }

    fn alter(h: &Harness, id: TopicId, node: i32, isr: &[i32]) -> AlterPartition {
        let p = h.partition(id, 0);
        AlterPartition {
            node: NodeId(node),
            incarnation: Incarnation(1),
            topic_id: id,
            index: PartitionIndex(0),
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr
                .iter()
                .map(|n| IsrMember {
                    node: NodeId(*n),
                    incarnation: Some(Incarnation(1)),
                })
                .collect(),
        }
    }

    #[test]
    fn alter_partition_shrinks_and_grows_the_isr_with_a_new_partition_epoch() {
        let mut h = Harness::replicated(3);
        let req = CreateTopic {
            name: "a".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![nodes(&[1, 2, 3])]),
            configs: vec![],
        };
        let records = h
            .controller
            .create_topic(&h.image, &mut h.rng, req)
            .unwrap();
        h.commit(records);
        let id = h.image.topic_id("a").unwrap();
        let shrink = h
            .controller
            .alter_partition(&h.image, &alter(&h, id, 1, &[1, 3]))
            .unwrap();
        assert_eq!(shrink.partition.isr, nodes(&[1, 3]));
        assert_eq!(shrink.partition.partition_epoch, PartitionEpoch(1));
        assert_eq!(shrink.partition.leader_epoch, LeaderEpoch(0));
        h.commit(shrink.records.clone());
        assert_eq!(
            h.partition(id, 0),
            shrink.partition,
            "the answer is the committed state"
        );
        // The same ISR again: nothing to propose, the current state in the answer.
        let same = h
            .controller
            .alter_partition(&h.image, &alter(&h, id, 1, &[1, 3]))
            .unwrap();
        assert!(same.records.is_empty());
        assert_eq!(same.partition, h.partition(id, 0));
        let grow = h
            .controller
            .alter_partition(&h.image, &alter(&h, id, 1, &[1, 3, 2]))
            .unwrap();
        h.commit(grow.records);
        assert_eq!(h.partition(id, 0).isr, nodes(&[1, 3, 2]));
        assert_eq!(h.partition(id, 0).partition_epoch, PartitionEpoch(2));
    }

    #[test]
    fn alter_partition_refusals_follow_kafkas_order_and_codes() {
        let mut h = Harness::replicated(3);
        let req = CreateTopic {
            name: "a".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![nodes(&[1, 2, 3])]),
            configs: vec![],
        };
        let records = h
            .controller
            .create_topic(&h.image, &mut h.rng, req)
            .unwrap();
        h.commit(records);
        let id = h.image.topic_id("a").unwrap();
        let shrink = h
            .controller
            .alter_partition(&h.image, &alter(&h, id, 1, &[1, 2]))
            .unwrap();
        h.commit(shrink.records);
        fn check(h: &mut Harness, req: AlterPartition, want: AlterPartitionError) {
            assert_eq!(h.controller.alter_partition(&h.image, &req), Err(want));
        }
        let base = alter(&h, id, 1, &[1, 2, 3]);
        check(
            &mut h,
            AlterPartition {
                incarnation: Incarnation(9),
                ..base.clone()
            },
            AlterPartitionError::StaleBroker {
                node: NodeId(1),
                incarnation: Incarnation(9),
            },
        );
        check(
            &mut h,
            AlterPartition {
                index: PartitionIndex(1),
                ..base.clone()
            },
            AlterPartitionError::UnknownPartition {
                topic_id: id,
                index: PartitionIndex(1),
            },
        );
        check(
            &mut h,
            AlterPartition {
                partition_epoch: PartitionEpoch(2),
                ..base.clone()
            },
            AlterPartitionError::EpochsAhead {
                leader_epoch: LeaderEpoch(0),
                partition_epoch: PartitionEpoch(2),
            },
        );
        check(
            &mut h,
            AlterPartition {
                node: NodeId(2),
                ..base.clone()
            },
            AlterPartitionError::NotLeader {
                node: NodeId(2),
                leader: Some(NodeId(1)),
            },
        );
        check(
            &mut h,
            AlterPartition {
                partition_epoch: PartitionEpoch(0),
                ..base.clone()
            },
            AlterPartitionError::InvalidUpdateVersion {
                sent: PartitionEpoch(0),
                current: PartitionEpoch(1),
            },
        );
        let req = alter(&h, id, 1, &[1, 1]);
        check(
            &mut h,
            req,
            AlterPartitionError::InvalidIsr {
                reason: "duplicate member",
            },
        );
        let req = alter(&h, id, 1, &[2, 3]);
        check(
            &mut h,
            req,
            AlterPartitionError::InvalidIsr {
                reason: "the leader is not in it",
            },
        );
        h.start_broker(4, 1, 0);
        let req = alter(&h, id, 1, &[1, 4]);
        check(
            &mut h,
            req,
            AlterPartitionError::InvalidIsr {
                reason: "a member is not a replica",
            },
        );
        // 3 restarted: the leader saw its old incarnation fetch.
        h.start_broker(3, 2, 0);
        let req = alter(&h, id, 1, &[1, 2, 3]);
        check(
            &mut h,
            req,
            AlterPartitionError::IneligibleReplica {
                node: NodeId(3),
                why: Ineligible::StaleIncarnation,
            },
        );
        // 2 is fenced: it may not join, and once 1 is fenced too, the old leader epoch is refused.
        h.fence(2);
        let req = alter(&h, id, 1, &[1, 2]);
        check(
            &mut h,
            req,
            AlterPartitionError::IneligibleReplica {
                node: NodeId(2),
                why: Ineligible::Fenced,
            },
        );
        let stale = alter(&h, id, 1, &[1]);
        h.start_broker(3, 3, 0);
        h.fence(1);
        let current = h.partition(id, 0).leader_epoch;
        check(
            &mut h,
            stale,
            AlterPartitionError::FencedLeaderEpoch {
                sent: LeaderEpoch(0),
                current,
            },
        );
    }

    #[test]
    fn a_preferred_election_moves_leadership_back_to_the_first_replica() {
        let mut h = Harness::replicated(2);
        let req = CreateTopic {
            name: "a".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![nodes(&[1, 2]), nodes(&[2, 1])]),
            configs: vec![],
        };
        let records = h
            .controller
            .create_topic(&h.image, &mut h.rng, req)
            .unwrap();
        h.commit(records);
        let id = h.image.topic_id("a").unwrap();
        let names = |list: &[(&str, i32)]| -> Vec<(String, PartitionIndex)> {
            list.iter()
                .map(|(n, i)| (n.to_string(), PartitionIndex(*i)))
                .collect()
        };
        let all = names(&[("a", 0), ("a", 1), ("b", 0), ("a", 2)]);
        let none = h
            .controller
            .elect_preferred_leaders(&h.image, &all)
            .unwrap();
        assert!(none.records.is_empty());
        assert_eq!(
            none.results,
            vec![
                ElectionResult::NotNeeded,
                ElectionResult::NotNeeded,
                ElectionResult::UnknownTopicOrPartition,
                ElectionResult::UnknownTopicOrPartition
            ]
        );
        // 1 restarts: 2 leads partition 0, and 1 is out of its ISR until its leader adds it back.
        h.start_broker(1, 2, 0);
        assert_eq!(h.partition(id, 0).leader, Some(NodeId(2)));
        let out = h
            .controller
            .elect_preferred_leaders(&h.image, &names(&[("a", 0)]))
            .unwrap();
        assert_eq!(
            out.results,
            vec![ElectionResult::PreferredLeaderNotAvailable]
        );
        let mut back = alter(&h, id, 2, &[2, 1]);
        back.new_isr[1].incarnation = Some(Incarnation(2));
        back.incarnation = Incarnation(1);
        let back = h.controller.alter_partition(&h.image, &back).unwrap();
        h.commit(back.records);
        let twice = names(&[("a", 0), ("a", 0)]);
        let moved = h
            .controller
            .elect_preferred_leaders(&h.image, &twice)
            .unwrap();
        assert_eq!(moved.results, vec![ElectionResult::Elected; 2]);
        assert_eq!(moved.records.len(), 1);
        let epoch = h.partition(id, 0).leader_epoch;
        h.commit(moved.records);
        let p = h.partition(id, 0);
        assert_eq!((p.leader, p.leader_epoch), (Some(NodeId(1)), epoch.next()));
        let too_many = vec![("a".to_string(), PartitionIndex(0)); ELECTION_PARTITIONS_MAX + 1];
        assert!(h
            .controller
            .elect_preferred_leaders(&h.image, &too_many)
            .is_err());
    }

    /// The leader and ISR invariants the simulator checks, on one image.
    fn assert_partition_invariants(image: &MetadataImage) {
        for t in image.topics().values() {
            let unclean = t
                .configs
                .get(UNCLEAN_LEADER_ELECTION_CONFIG)
                .is_some_and(|v| v == "true");
            for p in &t.partitions {
                let eligible = |n: &NodeId| {
                    image
                        .broker(*n)
                        .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
                };
                assert!(!p.isr.is_empty(), "{p:?}");
                assert!(p.isr.iter().all(|n| p.replicas.contains(n)), "{p:?}");
                assert_reassignment_consistent(p);
                match p.leader {
                    Some(l) => assert!(p.isr.contains(&l) && eligible(&l), "{p:?}"),
                    None if unclean => assert!(!p.replicas.iter().any(eligible), "{p:?}"),
                    None => assert!(!p.isr.iter().any(eligible), "{p:?}"),
                }
            }
        }
    }

    /// A reassignment's lists are sorted sets of replicas, disjoint, with some replica kept, and
    /// never completable: every change that could complete one does.
    fn assert_reassignment_consistent(p: &PartitionState) {
        let sorted = |l: &[NodeId]| l.windows(2).all(|w| w[0] < w[1]);
        assert!(sorted(&p.adding) && sorted(&p.removing), "{p:?}");
        assert!(
            p.adding
                .iter()
                .chain(&p.removing)
                .all(|n| p.replicas.contains(n)),
            "{p:?}"
        );
        assert!(!p.adding.iter().any(|n| p.removing.contains(n)), "{p:?}");
        let target = p.target_replicas();
        assert!(!target.is_empty(), "{p:?}");
        if p.is_reassigning() {
            let kept: Vec<NodeId> = p
                .isr
                .iter()
                .copied()
                .filter(|n| !p.removing.contains(n))
                .collect();
            assert!(
                kept.is_empty() || !target.iter().all(|n| kept.contains(n)),
                "a completable reassignment was left in progress: {p:?}"
            );
        }
    }

    fn reassign(
        h: &mut Harness,
        topic: &str,
        index: i32,
        target: Option<&[i32]>,
    ) -> Result<usize, ControllerError> {
        let req = Reassign {
            topic: topic.into(),
            index: PartitionIndex(index),
            target: target.map(nodes),
        };
        let mut out = h
            .controller
            .alter_partition_reassignments(&h.image, &[req])
            .unwrap();
        out.results.pop().unwrap()?;
        Ok(h.commit(out.records))
    }

    /// Brokers 1..=`brokers`, topic "r" with one partition on `replicas` (all in sync, the first
    /// leading).
    fn reassignable(brokers: i32, replicas: &[i32]) -> (Harness, TopicId) {
        let mut h = Harness::with_config(ControllerConfig {
            replication_factor_max: 4,
            ..ControllerConfig::default()
        });
        for node in 1..=brokers {
            h.start_broker(node, 1, 0);
        }
        let req = CreateTopic {
            name: "r".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![nodes(replicas)]),
            configs: vec![],
        };
        let records = h
            .controller
            .create_topic(&h.image, &mut h.rng, req)
            .unwrap();
        h.commit(records);
        let id = h.image.topic_id("r").unwrap();
        (h, id)
    }

    #[test]
    fn a_reassignment_adds_replicas_and_completes_when_the_leader_grows_the_isr_to_them() {
        let (mut h, id) = reassignable(4, &[1, 2]);
        let before = h.partition(id, 0);
        assert_eq!(reassign(&mut h, "r", 0, Some(&[3, 4])), Ok(1));
        let p = h.partition(id, 0);
        assert_eq!(
            p.replicas,
            nodes(&[3, 4, 1, 2]),
            "target first, then removing"
        );
        assert_eq!(
            (p.adding.clone(), p.removing.clone()),
            (nodes(&[3, 4]), nodes(&[1, 2]))
        );
        assert_eq!(p.isr, nodes(&[1, 2]));
        assert_eq!(p.leader, Some(NodeId(1)));
        assert_eq!(p.leader_epoch, before.leader_epoch, "no replica left yet");
        assert_eq!(p.partition_epoch, before.partition_epoch.next());
        assert_partition_invariants(&h.image);

        // One new replica in sync: not yet complete.
        let outcome = h
            .controller
            .alter_partition(&h.image, &alter(&h, id, 1, &[1, 2, 3]))
            .unwrap();
        assert!(!outcome.reassignment_completed);
        h.commit(outcome.records);
        assert!(h.partition(id, 0).is_reassigning());

        // Both: the reassignment completes in the same change, and the removed leader hands over
        // to the first target replica, with a new leader epoch.
        let p = h.partition(id, 0);
        let outcome = h
            .controller
            .alter_partition(&h.image, &alter(&h, id, 1, &[1, 2, 3, 4]))
            .unwrap();
        assert!(outcome.reassignment_completed);
        assert_eq!(outcome.partition.leader, Some(NodeId(3)));
        h.commit(outcome.records);
        let done = h.partition(id, 0);
        assert_eq!(done, outcome.partition, "the answer is the committed state");
        assert_eq!(done.replicas, nodes(&[3, 4]));
        assert_eq!(done.isr, nodes(&[3, 4]));
        assert_eq!(done.leader, Some(NodeId(3)));
        assert!(!done.is_reassigning());
        assert_eq!(done.leader_epoch, p.leader_epoch.next());
        assert_eq!(done.partition_epoch, p.partition_epoch.next());
        assert!(!h.image.hosts_any(NodeId(1)) && !h.image.hosts_any(NodeId(2)));
        assert_eq!(list_partition_reassignments(&h.image, None), vec![]);
    }

    #[test]
    fn a_reassignment_that_keeps_the_leader_bumps_its_epoch_only_when_a_replica_leaves() {
        let (mut h, id) = reassignable(3, &[1, 2, 3]);
        // A reordering completes at once and nobody leaves: the leader keeps its epoch.
        assert_eq!(reassign(&mut h, "r", 0, Some(&[3, 1, 2])), Ok(1));
        let p = h.partition(id, 0);
        assert_eq!(
            (p.replicas.clone(), p.leader),
            (nodes(&[3, 1, 2]), Some(NodeId(1)))
        );
        assert!(!p.is_reassigning());
        assert_eq!(p.leader_epoch, LeaderEpoch(0));
        // A shrink whose target is in sync completes at once; 3 leaves, so the epoch moves
        // although 1 keeps leading.
        assert_eq!(reassign(&mut h, "r", 0, Some(&[1, 2])), Ok(1));
        let q = h.partition(id, 0);
        assert_eq!(
            (q.replicas.clone(), q.isr.clone()),
            (nodes(&[1, 2]), nodes(&[1, 2]))
        );
        assert_eq!(q.leader, Some(NodeId(1)));
        assert_eq!(q.leader_epoch, LeaderEpoch(1));
        assert_eq!(q.partition_epoch, p.partition_epoch.next());
        // The same target again changes nothing.
        assert_eq!(reassign(&mut h, "r", 0, Some(&[1, 2])), Ok(0));
    }

    #[test]
    fn cancelling_a_reassignment_drops_the_adding_replicas_and_keeps_the_removing_ones() {
        let (mut h, id) = reassignable(4, &[1, 2]);
        assert_eq!(
            reassign(&mut h, "r", 0, None),
            Err(ControllerError::NoReassignmentInProgress)
        );
        assert_eq!(reassign(&mut h, "r", 0, Some(&[2, 3])), Ok(1));
        let p = h.partition(id, 0);
        assert_eq!(p.replicas, nodes(&[2, 3, 1]));
        assert_eq!(
            (p.adding.clone(), p.removing.clone()),
            (nodes(&[3]), nodes(&[1]))
        );
        let listed = list_partition_reassignments(&h.image, None);
        assert_eq!(
            listed,
            vec![OngoingReassignment {
                topic: "r".into(),
                index: PartitionIndex(0),
                replicas: nodes(&[2, 3, 1]),
                adding: nodes(&[3]),
                removing: nodes(&[1]),
            }]
        );
        let named = [("r".to_string(), vec![PartitionIndex(0), PartitionIndex(7)])];
        assert_eq!(list_partition_reassignments(&h.image, Some(&named)), listed);
        // A new target replaces the ongoing one, from every current replica (3, which the
        // first move was adding, is now removed with 1).
        assert_eq!(reassign(&mut h, "r", 0, Some(&[2, 4])), Ok(1));
        let p = h.partition(id, 0);
        assert_eq!(p.replicas, nodes(&[2, 4, 1, 3]));
        assert_eq!(
            (p.adding.clone(), p.removing.clone()),
            (nodes(&[4]), nodes(&[1, 3]))
        );
        // Cancel: the replicas without the adding ones, in the current order (Kafka's revert;
        // 3, added by the replaced move, stays).
        assert_eq!(reassign(&mut h, "r", 0, None), Ok(1));
        let q = h.partition(id, 0);
        assert_eq!(q.replicas, nodes(&[2, 1, 3]));
        assert!(!q.is_reassigning());
        assert_eq!(q.leader, Some(NodeId(1)));
        assert_eq!(q.leader_epoch, p.leader_epoch.next(), "4 left the replicas");
        assert_partition_invariants(&h.image);
    }

    #[test]
    fn a_leader_fenced_during_a_reassignment_hands_over_and_the_move_completes_later() {
        let (mut h, id) = reassignable(3, &[1, 2]);
        assert_eq!(reassign(&mut h, "r", 0, Some(&[3])), Ok(1));
        h.fence(1);
        let p = h.partition(id, 0);
        assert_eq!((p.leader, p.isr.clone()), (Some(NodeId(2)), nodes(&[2])));
        assert!(p.is_reassigning(), "3 is not in sync yet");
        let outcome = h
            .controller
            .alter_partition(&h.image, &alter(&h, id, 2, &[2, 3]))
            .unwrap();
        assert!(outcome.reassignment_completed);
        h.commit(outcome.records);
        let q = h.partition(id, 0);
        assert_eq!(
            (q.replicas.clone(), q.isr.clone(), q.leader),
            (nodes(&[3]), nodes(&[3]), Some(NodeId(3)))
        );
        assert_partition_invariants(&h.image);
    }

    #[test]
    fn a_move_replaced_mid_way_counts_every_current_replica_against_the_limit() {
        let (mut h, id) = reassignable(6, &[1, 2]);
        assert_eq!(reassign(&mut h, "r", 0, Some(&[3, 4])), Ok(1));
        // 5, 6 and the four current replicas: six during the move, above the limit of 4.
        assert!(matches!(
            reassign(&mut h, "r", 0, Some(&[5, 6])),
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
        // Given again, the same target keeps the move (3 and 4 now plain replicas).
        assert_eq!(reassign(&mut h, "r", 0, Some(&[3, 4])), Ok(1));
        let p = h.partition(id, 0);
        assert_eq!(p.replicas, nodes(&[3, 4, 1, 2]));
        assert_eq!(
            (p.adding.clone(), p.removing.clone()),
            (vec![], nodes(&[1, 2]))
        );
        assert_partition_invariants(&h.image);
    }

    #[test]
    fn reassignment_targets_are_validated_as_kafka_validates_them() {
        let (mut h, _) = reassignable(5, &[1, 2]);
        h.fence(5);
        let invalid = |r: Result<usize, ControllerError>| {
            matches!(r, Err(ControllerError::InvalidReplicaAssignment { .. }))
        };
        assert!(invalid(reassign(&mut h, "r", 0, Some(&[]))));
        assert!(invalid(reassign(&mut h, "r", 0, Some(&[1, 1]))));
        assert!(
            invalid(reassign(&mut h, "r", 0, Some(&[1, 9]))),
            "unregistered"
        );
        assert!(
            invalid(reassign(&mut h, "r", 0, Some(&[3, 4, 5]))),
            "5 replicas during the move, limit 4"
        );
        assert!(matches!(
            reassign(&mut h, "nope", 0, Some(&[1])),
            Err(ControllerError::UnknownTopic { .. })
        ));
        assert!(matches!(
            reassign(&mut h, "r", 1, Some(&[1])),
            Err(ControllerError::UnknownPartition { .. })
        ));
        // A fenced broker may be a target, as in Kafka: the move waits for it.
        assert_eq!(reassign(&mut h, "r", 0, Some(&[1, 5])), Ok(1));
        let twice = [
            Reassign {
                topic: "r".into(),
                index: PartitionIndex(0),
                target: None,
            },
            Reassign {
                topic: "r".into(),
                index: PartitionIndex(0),
                target: None,
            },
        ];
        let out = h
            .controller
            .alter_partition_reassignments(&h.image, &twice)
            .unwrap();
        assert_eq!(out.records.len(), 1);
        assert!(out.results[0].is_ok());
        assert!(matches!(
            out.results[1],
            Err(ControllerError::InvalidRequest { .. })
        ));
        let many: Vec<Reassign> = (0..=REASSIGNMENT_PARTITIONS_MAX)
            .map(|i| Reassign {
                topic: "r".into(),
                index: PartitionIndex(i as i32),
                target: None,
            })
            .collect();
        assert!(h
            .controller
            .alter_partition_reassignments(&h.image, &many)
            .is_err());
    }

    /// Every leader grows its ISR to the replicas its partition is adding (they caught up), as
    /// the leaders' AlterPartition would; the number of partitions changed.
    fn catch_up_all(h: &mut Harness) -> usize {
        let mut changed = 0;
        for (id, t) in h.image.topics().clone() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(leader) = p.leader.filter(|_| !p.adding.is_empty()) else {
                    continue;
                };
                let mut isr = p.isr.clone();
                isr.extend(p.adding.iter().filter(|n| !p.isr.contains(n)));
                let req = AlterPartition {
                    node: leader,
                    incarnation: h.image.broker(leader).unwrap().incarnation,
                    topic_id: id,
                    index: PartitionIndex(i as i32),
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr: isr
                        .iter()
                        .map(|n| IsrMember {
                            node: *n,
                            incarnation: None,
                        })
                        .collect(),
                };
                let out = h.controller.alter_partition(&h.image, &req).unwrap();
                changed += h.commit(out.records);
            }
        }
        changed
    }

    fn decommission(
        h: &mut Harness,
        node: i32,
        request: Decommission,
    ) -> Result<usize, ControllerError> {
        let records = h
            .controller
            .decommission_broker(&h.image, NodeId(node), request)?;
        Ok(h.commit(records))
    }

    #[test]
    fn a_drained_broker_hands_over_its_leaderships_first_then_its_replicas_move_and_it_unregisters()
    {
        let mut h = Harness::replicated(4);
        let id = h.create("d", 12, 3).unwrap();
        let before = decommission_status(&h.image, NodeId(1)).unwrap();
        assert!(!before.draining && before.replicas == 9 && before.leaderships == 3);
        assert_eq!(decommission(&mut h, 1, Decommission::Start), Ok(1));
        // Asking again changes nothing.
        assert_eq!(decommission(&mut h, 1, Decommission::Start), Ok(0));
        // The first tick moves leadership only, to the next in-sync replica, with a new epoch.
        let epochs: Vec<LeaderEpoch> = (0..12).map(|i| h.partition(id, i).leader_epoch).collect();
        let records = h.controller.tick(&h.image, MonotonicMs(0));
        assert_eq!(records.len(), 3);
        h.commit(records);
        for (i, epoch) in epochs.iter().enumerate() {
            let p = h.partition(id, i);
            assert_ne!(p.leader, Some(NodeId(1)));
            assert_eq!(p.replicas.len(), 3);
            assert!(!p.is_reassigning(), "replicas move after leaderships");
            if *epoch != p.leader_epoch {
                assert_eq!(p.leader_epoch, epoch.next());
                assert_eq!(
                    p.isr.len(),
                    3,
                    "the draining broker stays in sync meanwhile"
                );
            }
        }
        let status = decommission_status(&h.image, NodeId(1)).unwrap();
        assert_eq!(
            (status.leaderships, status.replicas, status.moving),
            (0, 9, 0)
        );
        // The next tick starts one move per partition on broker 1, to broker 4 each time (the
        // only one outside those replicas), kept replicas first.
        let records = h.controller.tick(&h.image, MonotonicMs(0));
        h.commit(records);
        let status = decommission_status(&h.image, NodeId(1)).unwrap();
        assert_eq!((status.replicas, status.moving), (9, 9));
        assert!(!status.is_complete());
        // Nothing more to do until the new replicas catch up.
        assert!(h.controller.tick(&h.image, MonotonicMs(0)).is_empty());
        // A new controller (failover) carries on from the image alone.
        h.controller = Controller::new(h.controller.config);
        assert!(h.controller.tick(&h.image, MonotonicMs(0)).is_empty());
        assert_eq!(catch_up_all(&mut h), 9);
        let status = decommission_status(&h.image, NodeId(1)).unwrap();
        assert_eq!((status.replicas, status.moving), (0, 0));
        assert!(status.is_complete());
        for i in 0..12 {
            let p = h.partition(id, i);
            assert_eq!(p.replicas.len(), 3);
            assert_eq!(p.isr.len(), 3);
            assert!(!p.replicas.contains(&NodeId(1)) && !p.is_reassigning());
            assert_ne!(p.leader, None);
        }
        assert_partition_invariants(&h.image);
        assert!(h.controller.tick(&h.image, MonotonicMs(0)).is_empty());
        let records = h.controller.unregister_broker(&h.image, NodeId(1)).unwrap();
        h.commit(records);
        assert!(h.image.broker(NodeId(1)).is_none());
        assert_eq!(decommission_status(&h.image, NodeId(1)), None);
    }

    #[test]
    fn a_decommission_that_would_break_a_replication_factor_or_names_no_broker_is_refused() {
        let mut h = Harness::replicated(3);
        h.create("three", 2, 3).unwrap();
        match decommission(&mut h, 2, Decommission::Start) {
            Err(ControllerError::InvalidReplicationFactor { reason }) => {
                assert!(
                    reason.contains("3 replicas") && reason.contains("only 2"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decommission(&mut h, 9, Decommission::Start),
            Err(ControllerError::BrokerNotRegistered { node: NodeId(9) })
        );
        assert_eq!(
            h.controller.unregister_broker(&h.image, NodeId(9)),
            Err(ControllerError::BrokerNotRegistered { node: NodeId(9) })
        );
        assert!(!h.image.broker(NodeId(2)).unwrap().draining);
        // With a fourth broker there is room; then draining a second one is refused again.
        h.start_broker(4, 1, 0);
        assert_eq!(decommission(&mut h, 2, Decommission::Start), Ok(1));
        assert!(matches!(
            decommission(&mut h, 3, Decommission::Start),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
        // An unregistration of a broker that still hosts replicas is refused.
        assert!(matches!(
            h.controller.unregister_broker(&h.image, NodeId(2)),
            Err(ControllerError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn a_draining_broker_takes_no_new_replicas_until_it_is_recommissioned() {
        let (mut h, _) = reassignable(3, &[1, 2]);
        assert_eq!(decommission(&mut h, 3, Decommission::Start), Ok(1));
        // Placement leaves it out, and says why a factor of 3 no longer fits.
        let id = h.create("placed", 6, 2).unwrap();
        let t = h.image.topic(id).unwrap();
        assert!(t
            .partitions
            .iter()
            .all(|p| !p.replicas.contains(&NodeId(3))));
        match h.create("wide", 1, 3) {
            Err(ControllerError::InvalidReplicationFactor { reason }) => {
                assert!(reason.contains("not draining"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A manual assignment or a reassignment may not add it either.
        let manual = CreateTopic {
            name: "manual".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![nodes(&[3, 1])]),
            configs: vec![],
        };
        assert!(matches!(
            h.controller.create_topic(&h.image, &mut h.rng, manual),
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
        match reassign(&mut h, "r", 0, Some(&[1, 3])) {
            Err(ControllerError::InvalidReplicaAssignment { reason }) => {
                assert!(reason.contains("decommissioned"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Cancelled: it is a normal broker again.
        assert_eq!(decommission(&mut h, 3, Decommission::Cancel), Ok(1));
        assert_eq!(decommission(&mut h, 3, Decommission::Cancel), Ok(0));
        assert!(!decommission_status(&h.image, NodeId(3)).unwrap().draining);
        assert_eq!(reassign(&mut h, "r", 0, Some(&[1, 3])), Ok(1));
        h.create("wide", 1, 3).unwrap();
    }

    #[test]
    fn a_drain_survives_a_restart_of_the_broker_and_waits_for_a_live_target() {
        let (mut h, id) = reassignable(3, &[1, 2]);
        assert_eq!(decommission(&mut h, 2, Decommission::Start), Ok(1));
        // Broker 3, the only place to move to, is fenced: nothing moves yet.
        h.fence(3);
        assert!(h.controller.tick(&h.image, MonotonicMs(0)).is_empty());
        // Broker 2 restarts: its new incarnation is still draining.
        h.start_broker(2, 2, 0);
        assert!(h.image.broker(NodeId(2)).unwrap().draining);
        h.start_broker(3, 2, 0);
        let records = h.controller.tick(&h.image, MonotonicMs(0));
        h.commit(records);
        let p = h.partition(id, 0);
        assert_eq!(
            (p.adding.clone(), p.removing.clone()),
            (nodes(&[3]), nodes(&[2]))
        );
        assert_eq!(p.replicas, nodes(&[1, 3, 2]));
        assert_eq!(catch_up_all(&mut h), 1);
        assert_eq!(h.partition(id, 0).replicas, nodes(&[1, 3]));
    }

    #[test]
    fn a_drain_moves_replicas_to_racks_the_partition_does_not_use_yet() {
        let mut h = Harness::replicated(0);
        for (node, rack) in [(1, "a"), (2, "b"), (3, "a"), (4, "c")] {
            let endpoint = Endpoint {
                host: format!("b{node}"),
                port: 9092,
            };
            let req = RegisterBroker {
                node: NodeId(node),
                incarnation: Incarnation(1),
                client: endpoint.clone(),
                cluster: endpoint,
                rack: Some(rack.into()),
            };
            let records = h
                .controller
                .register_broker(&h.image, MonotonicMs(0), req)
                .unwrap();
            h.commit(records);
            h.heartbeat(node);
        }
        let req = CreateTopic {
            name: "racked".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![nodes(&[1, 2])]),
            configs: vec![],
        };
        let records = h
            .controller
            .create_topic(&h.image, &mut h.rng, req)
            .unwrap();
        h.commit(records);
        let id = h.image.topic_id("racked").unwrap();
        // Broker 2 (rack b) drains: 3 is the least loaded and lowest id, but shares rack a with
        // broker 1; 4 (rack c) is chosen.
        decommission(&mut h, 2, Decommission::Start).unwrap();
        let records = h.controller.tick(&h.image, MonotonicMs(0));
        h.commit(records);
        assert_eq!(h.partition(id, 0).adding, nodes(&[4]));
    }

    proptest::proptest! {
        /// Random operations on a four-broker cluster with replicated topics, each batch committed at
        /// once: the image accepts every batch the controller builds (Harness::commit panics
        /// otherwise), and the invariants hold after each. The simulator does this through Raft with
        /// faults; this finds the same class of bug with a shrunk, readable case.
        #[test]
        fn every_controller_batch_is_valid_and_keeps_the_partition_invariants(
            ops in proptest::collection::vec((0u8..13, 1i32..=4, proptest::prelude::any::<u8>()), 1..80),
        ) {
            let mut h = Harness::replicated(4);
            let mut now = 0u64;
            let mut incarnations = [1u64; 5];
            for (op, node, x) in ops {
                let n = NodeId(node);
                let inc = Incarnation(incarnations[node as usize]);
                let records = match op {
                    0 => {
                        incarnations[node as usize] += 1;
                        let endpoint = Endpoint { host: "h".into(), port: 1 };
                        let req = RegisterBroker {
                            node: n,
                            incarnation: Incarnation(incarnations[node as usize]),
                            client: endpoint.clone(),
                            cluster: endpoint,
                            rack: None,
                        };
                        h.controller.register_broker(&h.image, MonotonicMs(now), req).unwrap_or_default()
                    }
                    1 => h.controller.heartbeat(&h.image, MonotonicMs(now), n, inc).unwrap_or_default(),
                    2 => {
                        now += SESSION_TIMEOUT_MS_DEFAULT / 2;
                        h.controller.tick(&h.image, MonotonicMs(now))
                    }
                    3 => h.controller.controlled_shutdown(&h.image, n, inc).unwrap_or_default(),
                    4 => {
                        let req = CreateTopic {
                            name: format!("t{}", x % 4),
                            partitions: 1 + i32::from(x % 3),
                            replication_factor: i16::from(x % 4) - 1,
                            assignment: None,
                            configs: vec![],
                        };
                        h.controller.create_topic(&h.image, &mut h.rng, req).unwrap_or_default()
                    }
                    5 | 6 => {
                        // The leader of some partition drops a follower or adds a replica back.
                        let all: Vec<(TopicId, usize, PartitionState)> = h.image.topics().iter()
                            .flat_map(|(id, t)| t.partitions.iter().cloned().enumerate().map(move |(i, p)| (*id, i, p)))
                            .collect();
                        match all.get(usize::from(x) % all.len().max(1)) {
                            Some((id, i, p)) if p.leader.is_some() => {
                                let leader = p.leader.unwrap();
                                let mut isr = p.isr.clone();
                                if op == 5 {
                                    isr.retain(|m| *m == leader || m.0 != node);
                                } else if p.replicas.contains(&n) && !isr.contains(&n) {
                                    isr.push(n);
                                }
                                let req = AlterPartition {
                                    node: leader,
                                    incarnation: h.image.broker(leader).unwrap().incarnation,
                                    topic_id: *id,
                                    index: PartitionIndex(*i as i32),
                                    leader_epoch: p.leader_epoch,
                                    partition_epoch: p.partition_epoch,
                                    new_isr: isr.iter().map(|m| IsrMember { node: *m, incarnation: None }).collect(),
                                };
                                h.controller.alter_partition(&h.image, &req).map(|o| o.records).unwrap_or_default()
                            }
                            _ => Vec::new(),
                        }
                    }
                    9 | 10 => {
                        // An operator moves a partition to one to three brokers from `x`'s bits,
                        // or cancels its move.
                        let all: Vec<(String, usize)> = h.image.topics().values()
                            .flat_map(|t| (0..t.partitions.len()).map(|i| (t.name.clone(), i)))
                            .collect();
                        match all.get(usize::from(x) % all.len().max(1)) {
                            Some((name, i)) => {
                                let target = (op == 9).then(|| {
                                    let mut t: Vec<NodeId> = (1..=4).filter(|b| x & (1 << b) != 0).map(NodeId).collect();
                                    if t.is_empty() { t.push(n) }
                                    t.truncate(3);
                                    if x & 1 == 1 { t.reverse() }
                                    t
                                });
                                let req = Reassign { topic: name.clone(), index: PartitionIndex(*i as i32), target };
                                h.controller.alter_partition_reassignments(&h.image, &[req]).unwrap().records
                            }
                            None => Vec::new(),
                        }
                    }
                    11 | 12 => {
                        // An operator drains a broker or cancels its drain; the ticks (op 2)
                        // move its work.
                        let request = if op == 11 { Decommission::Start } else { Decommission::Cancel };
                        h.controller.decommission_broker(&h.image, n, request).unwrap_or_default()
                    }
                    7 => {
                        let targets: Vec<(String, PartitionIndex)> = h.image.topics().values()
                            .flat_map(|t| (0..t.partitions.len()).map(|i| (t.name.clone(), PartitionIndex(i as i32))))
                            .collect();
                        h.controller.elect_preferred_leaders(&h.image, &targets).unwrap().records
                    }
                    _ => {
                        let value = if x % 2 == 0 { "true" } else { "false" };
                        let name = format!("t{}", x % 4);
                        h.controller
                            .set_topic_config(&h.image, &name, UNCLEAN_LEADER_ELECTION_CONFIG, Some(value))
                            .unwrap_or_default()
                    }
                };
                h.commit(records);
                assert_partition_invariants(&h.image);
            }
        }
    }
}
