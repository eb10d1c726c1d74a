//! The metadata image: what the metadata log says the cluster is, at one offset.
//!
//! [`MetadataImage::apply`] is a pure, deterministic function of the image and a record: every broker
//! replays the same committed records in the same order and so holds the same image at the same offset.
//! A record that breaks a rule (unknown topic, stale incarnation, an epoch going backwards...) is refused
//! with an [`ApplyError`] and changes nothing but [`MetadataImage::last_applied`]: the refusal is itself
//! deterministic, so every node refuses it too. Records are validated fully before anything is changed.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{
    Incarnation, LeaderEpoch, MetadataOffset, NodeId, PartitionEpoch, PartitionIndex, TopicId,
};
use crate::records::{
    read_endpoint, read_nodes, read_opt_node, read_opt_str, write_endpoint, write_nodes,
    write_opt_node, write_opt_str, Endpoint, LeaderChange, MetadataRecord, CONFIGS_MAX,
    CONFIG_KEY_BYTES_MAX, CONFIG_VALUE_BYTES_MAX, RACK_BYTES_MAX, REPLICAS_MAX,
    TOPIC_NAME_BYTES_MAX,
};

/// Registered brokers.
pub const BROKERS_MAX: usize = 4096;
/// Topics in the cluster.
pub const TOPICS_MAX: usize = 100_000;
/// Partitions of one topic.
pub const PARTITIONS_PER_TOPIC_MAX: usize = 10_000;
/// Producer ids one record may hand out.
pub const PRODUCER_ID_COUNT_MAX: i32 = 1_000_000;
/// The snapshot format version written by this build.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;
/// The oldest snapshot format this build reads: version 1 has no reassignment lists (read as
/// empty), versions 1 and 2 no draining flag (read as not draining).
pub const SNAPSHOT_FORMAT_VERSION_MIN: u8 = 1;

/// A registered broker, as the image knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// Its current run.
    pub incarnation: Incarnation,
    /// Where clients connect.
    pub client: Endpoint,
    /// Where brokers connect.
    pub cluster: Endpoint,
    /// Its rack.
    pub rack: Option<String>,
    /// Fenced brokers lead nothing: a new registration starts fenced, a missed session fences.
    pub fenced: bool,
    /// It asked to shut down; it stays fenced until it registers again.
    pub in_controlled_shutdown: bool,
    /// An operator is decommissioning it ([`MetadataRecord::SetBrokerDraining`]): the controller
    /// moves its leaderships and replicas away and places nothing new on it. Kept across its
    /// re-registrations.
    pub draining: bool,
}

/// One partition's assignment and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// The replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas, a non-empty subset of `replicas`. It keeps its last member when that one
    /// fails, so a leaderless partition's ISR names the broker to wait for.
    pub isr: Vec<NodeId>,
    /// The leader, an unfenced member of `isr`, or `None` when offline.
    pub leader: Option<NodeId>,
    /// Bumped whenever `leader` changes.
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change.
    pub partition_epoch: PartitionEpoch,
    /// Replicas an ongoing reassignment adds (KIP-455): in `replicas`, catching up, ascending.
    /// Empty when no reassignment is in progress.
    pub adding: Vec<NodeId>,
    /// Replicas an ongoing reassignment removes once every target replica is in sync: in
    /// `replicas` (after the target ones), ascending, disjoint from `adding`.
    pub removing: Vec<NodeId>,
}

impl PartitionState {
    /// Whether a reassignment is in progress (Kafka's `isReassignmentInProgress`).
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the ongoing reassignment aims for, in the order asked: `replicas` without
    /// `removing` (the same as `replicas` when none is in progress).
    pub fn target_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|n| !self.removing.contains(n))
            .collect()
    }

    /// The state after `record`, a [`MetadataRecord::ChangePartition`] of this partition that the
    /// image accepted (or would accept); any other record leaves it as is.
    pub fn changed_by(&self, record: &MetadataRecord) -> PartitionState {
        let mut p = self.clone();
        if let MetadataRecord::ChangePartition {
            leader,
            isr,
            replicas,
            leader_epoch,
            partition_epoch,
            adding,
            removing,
            ..
        } = record
        {
            match leader {
                LeaderChange::Unchanged => {}
                LeaderChange::NoLeader => p.leader = None,
                LeaderChange::To(n) => p.leader = Some(*n),
            }
            if let Some(isr) = isr {
                p.isr = isr.clone();
            }
            if let Some(replicas) = replicas {
                p.replicas = replicas.clone();
            }
            if let Some(adding) = adding {
                p.adding = adding.clone();
            }
            if let Some(removing) = removing {
                p.removing = removing.clone();
            }
            p.leader_epoch = *leader_epoch;
            p.partition_epoch = *partition_epoch;
        }
        p
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    /// Its name.
    pub name: String,
    /// Its configs; a `BTreeMap` so that iteration (and so the snapshot) is deterministic.
    pub configs: BTreeMap<String, String>,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionState>,
}

/// Why a record was refused. Every node refuses the same records for the same reasons.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    /// The record names a broker that is not registered.
    #[error("unknown broker {node}")]
    UnknownBroker {
        /// The broker.
        node: NodeId,
    },
    /// The record carries an incarnation other than the broker's current one (or, for a registration,
    /// one not larger than it).
    #[error("stale incarnation {incarnation} of broker {node}, current {current}")]
    StaleIncarnation {
        /// The broker.
        node: NodeId,
        /// The record's incarnation.
        incarnation: Incarnation,
        /// The image's.
        current: Incarnation,
    },
    /// The broker is already in the state the record asks for, or may not reach it.
    #[error("broker {node}: {reason}")]
    BrokerState {
        /// The broker.
        node: NodeId,
        /// What is wrong.
        reason: &'static str,
    },
    /// No topic with this id.
    #[error("unknown topic id {topic_id}")]
    UnknownTopic {
        /// The id.
        topic_id: TopicId,
    },
    /// A topic with this name or id exists.
    #[error("topic {name} or its id already exists")]
    TopicExists {
        /// The name.
        name: String,
    },
    /// The topic name is not a legal Kafka topic name.
    #[error("invalid topic name {name:?}")]
    InvalidTopicName {
        /// The name.
        name: String,
    },
    /// The partition index is not the topic's next (for a create) or an existing one (for a change).
    #[error("invalid partition index {index} of topic {topic_id}")]
    InvalidPartitionIndex {
        /// The topic.
        topic_id: TopicId,
        /// The index.
        index: PartitionIndex,
    },
    /// Replicas, ISR or leader break a rule (empty, duplicates, unknown broker, leader outside the ISR, fenced leader).
    #[error("invalid assignment: {reason}")]
    InvalidAssignment {
        /// Which rule.
        reason: &'static str,
    },
    /// An epoch goes backwards, or does not move when it must.
    #[error("invalid epoch: {reason}")]
    InvalidEpoch {
        /// Which rule.
        reason: &'static str,
    },
    /// A limit of the image would be passed.
    #[error("limit reached: {what}")]
    LimitReached {
        /// Which limit.
        what: &'static str,
    },
    /// The entry's bytes are not a record this build can decode.
    #[error("undecodable record: {reason}")]
    Undecodable {
        /// The decoder's error.
        reason: String,
    },
    /// A producer id block that does not start at the next id, or has a bad count.
    #[error("invalid producer id block {first_id}+{count}, next id {next_id}")]
    InvalidProducerIds {
        /// The record's first id.
        first_id: i64,
        /// The record's count.
        count: i32,
        /// The image's next id.
        next_id: i64,
    },
}

/// Why a batch was refused: the first record in it that broke a rule. The image is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("record {index} of the batch: {error}")]
pub struct BatchRefused {
    /// The record's position in the batch.
    pub index: usize,
    /// Its error.
    pub error: ApplyError,
}

/// What a batch changed, to put back if a later record of the batch is refused.
enum Undo {
    Broker(NodeId, Option<BrokerRegistration>),
    Topic(TopicId, Option<TopicImage>),
    NextProducerId(i64),
}

/// The cluster's metadata at [`MetadataImage::last_applied`]. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataImage {
    last_applied: MetadataOffset,
    brokers: BTreeMap<NodeId, BrokerRegistration>,
    topics: BTreeMap<TopicId, TopicImage>,
    topic_ids_by_name: BTreeMap<String, TopicId>,
    next_producer_id: i64,
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn topic_name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Whether two different topic names collide in metric names, where Kafka's brokers write '.'
/// as '_': Kafka refuses a topic whose name collides with an existing one's
/// (`ReplicationControlManager.createTopics`, INVALID_TOPIC_EXCEPTION).
pub fn topic_names_collide(a: &str, b: &str) -> bool {
    let same = |x: u8, y: u8| x == y || (matches!(x, b'.' | b'_') && matches!(y, b'.' | b'_'));
    a != b && a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| same(x, y))
}

/// A reassignment's lists: each a set of replicas, disjoint, and not every replica removed.
fn check_reassignment(
    replicas: &[NodeId],
    adding: &[NodeId],
    removing: &[NodeId],
) -> Result<(), ApplyError> {
    let bad = |reason| Err(ApplyError::InvalidAssignment { reason });
    if has_duplicates(adding) || has_duplicates(removing) {
        return bad("duplicate adding or removing replica");
    }
    if adding.iter().chain(removing).any(|n| !replicas.contains(n)) {
        return bad("adding or removing replica not a replica");
    }
    if adding.iter().any(|n| removing.contains(n)) {
        return bad("replica both adding and removing");
    }
    if replicas.iter().all(|n| removing.contains(n)) {
        return bad("every replica removing");
    }
    Ok(())
}

fn has_duplicates(nodes: &[NodeId]) -> bool {
    nodes
        .iter()
        .enumerate()
        .any(|(i, n)| nodes[..i].contains(n))
}

impl MetadataImage {
    /// An empty image, before the first record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The offset of the last record applied (or refused), 0 before the first.
    pub fn last_applied(&self) -> MetadataOffset {
        self.last_applied
    }

    /// The registered brokers.
    pub fn brokers(&self) -> &BTreeMap<NodeId, BrokerRegistration> {
        &self.brokers
    }

    /// One broker.
    pub fn broker(&self, node: NodeId) -> Option<&BrokerRegistration> {
        self.brokers.get(&node)
    }

    /// The topics by id.
    pub fn topics(&self) -> &BTreeMap<TopicId, TopicImage> {
        &self.topics
    }

    /// A topic's id by name.
    pub fn topic_id(&self, name: &str) -> Option<TopicId> {
        self.topic_ids_by_name.get(name).copied()
    }

    /// A topic by id.
    pub fn topic(&self, topic_id: TopicId) -> Option<&TopicImage> {
        self.topics.get(&topic_id)
    }

    /// The first producer id not yet handed out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// Moves [`MetadataImage::last_applied`] over a log entry that carries no record (Raft's empty entry
    /// at the start of each term).
    ///
    /// # Panics
    ///
    /// Panics if `offset` is not after `last_applied`: offsets only grow.
    pub fn skip(&mut self, offset: MetadataOffset) {
        assert!(
            offset > self.last_applied,
            "offset {offset} not after {}",
            self.last_applied
        );
        self.last_applied = offset;
    }

    /// Applies the record at `offset`.
    ///
    /// # Errors
    ///
    /// [`ApplyError`] when the record breaks a rule; the image is then unchanged except for
    /// `last_applied`, which moves to `offset` either way (the offset is consumed).
    ///
    /// # Panics
    ///
    /// Panics if `offset` is not after `last_applied`.
    pub fn apply(
        &mut self,
        offset: MetadataOffset,
        record: &MetadataRecord,
    ) -> Result<(), ApplyError> {
        self.apply_batch(offset, std::slice::from_ref(record))
            .map_err(|refused| refused.error)
    }

    /// Applies the batch of records at `offset` (one Raft entry), all or nothing: each record is checked
    /// against the image as the records before it left it, and if one is refused, those before it are
    /// undone.
    ///
    /// # Errors
    ///
    /// [`BatchRefused`] with the first refused record; the image is then unchanged except for
    /// `last_applied`, which moves to `offset` either way.
    ///
    /// # Panics
    ///
    /// Panics if `offset` is not after `last_applied`.
    pub fn apply_batch(
        &mut self,
        offset: MetadataOffset,
        records: &[MetadataRecord],
    ) -> Result<(), BatchRefused> {
        self.skip(offset);
        let mut undo = Vec::new();
        // Each key is saved once per batch, before its first change: a broker fenced with a thousand
        // partitions of one topic copies that topic once, not a thousand times.
        let mut saved_brokers = BTreeSet::new();
        let mut saved_topics = BTreeSet::new();
        let mut saved_producer_id = false;
        for (index, record) in records.iter().enumerate() {
            if let Err(error) = self.check(record) {
                self.roll_back(undo);
                return Err(BatchRefused { index, error });
            }
            if records.len() > 1 {
                match record {
                    MetadataRecord::RegisterBroker { node, .. }
                    | MetadataRecord::FenceBroker { node, .. }
                    | MetadataRecord::UnfenceBroker { node, .. }
                    | MetadataRecord::ControlledShutdown { node, .. }
                    | MetadataRecord::UnregisterBroker { node }
                    | MetadataRecord::SetBrokerDraining { node, .. } => {
                        if saved_brokers.insert(*node) {
                            undo.push(Undo::Broker(*node, self.brokers.get(node).cloned()));
                        }
                    }
                    MetadataRecord::CreateTopic { topic_id, .. }
                    | MetadataRecord::CreatePartition { topic_id, .. }
                    | MetadataRecord::ChangePartition { topic_id, .. }
                    | MetadataRecord::DeleteTopic { topic_id }
                    | MetadataRecord::SetTopicConfig { topic_id, .. } => {
                        if saved_topics.insert(*topic_id) {
                            undo.push(Undo::Topic(*topic_id, self.topics.get(topic_id).cloned()));
                        }
                    }
                    MetadataRecord::AllocateProducerIds { .. } => {
                        if !saved_producer_id {
                            saved_producer_id = true;
                            undo.push(Undo::NextProducerId(self.next_producer_id));
                        }
                    }
                }
            }
            self.change(record);
        }
        Ok(())
    }

    /// Puts back what a refused batch changed, newest first.
    fn roll_back(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Broker(node, Some(b)) => {
                    self.brokers.insert(node, b);
                }
                Undo::Broker(node, None) => {
                    self.brokers.remove(&node);
                }
                Undo::Topic(topic_id, before) => {
                    if let Some(now) = self.topics.remove(&topic_id) {
                        self.topic_ids_by_name.remove(&now.name);
                    }
                    if let Some(before) = before {
                        self.topic_ids_by_name.insert(before.name.clone(), topic_id);
                        self.topics.insert(topic_id, before);
                    }
                }
                Undo::NextProducerId(id) => self.next_producer_id = id,
            }
        }
    }

    fn registered(
        &self,
        node: NodeId,
        incarnation: Incarnation,
    ) -> Result<&BrokerRegistration, ApplyError> {
        let broker = self
            .brokers
            .get(&node)
            .ok_or(ApplyError::UnknownBroker { node })?;
        if broker.incarnation != incarnation {
            return Err(ApplyError::StaleIncarnation {
                node,
                incarnation,
                current: broker.incarnation,
            });
        }
        Ok(broker)
    }

    fn partition(
        &self,
        topic_id: TopicId,
        index: PartitionIndex,
    ) -> Result<&PartitionState, ApplyError> {
        let topic = self
            .topics
            .get(&topic_id)
            .ok_or(ApplyError::UnknownTopic { topic_id })?;
        usize::try_from(index.0)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .ok_or(ApplyError::InvalidPartitionIndex { topic_id, index })
    }

    fn check_assignment(
        &self,
        replicas: &[NodeId],
        isr: &[NodeId],
        leader: Option<NodeId>,
    ) -> Result<(), ApplyError> {
        let bad = |reason| Err(ApplyError::InvalidAssignment { reason });
        if replicas.is_empty() {
            return bad("no replicas");
        }
        // Kafka's KRaft rule (without eligible leader replicas): the ISR never shrinks to nothing; a
        // partition whose last in-sync replica fails keeps it in the ISR, leaderless, so that the one
        // broker known to hold every committed record is the one elected when it is back.
        if isr.is_empty() {
            return bad("empty isr");
        }
        if has_duplicates(replicas) || has_duplicates(isr) {
            return bad("duplicate broker");
        }
        if replicas.iter().any(|n| !self.brokers.contains_key(n)) {
            return bad("unregistered replica");
        }
        if isr.iter().any(|n| !replicas.contains(n)) {
            return bad("isr member not a replica");
        }
        if let Some(leader) = leader {
            if !isr.contains(&leader) {
                return bad("leader not in isr");
            }
            if self.brokers.get(&leader).is_none_or(|b| b.fenced) {
                return bad("leader fenced");
            }
        }
        Ok(())
    }

    /// Validates without changing anything.
    fn check(&self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::RegisterBroker {
                node, incarnation, ..
            } => {
                if node.0 < 0 {
                    return Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "negative id",
                    });
                }
                match self.brokers.get(node) {
                    Some(b) if b.incarnation >= *incarnation => Err(ApplyError::StaleIncarnation {
                        node: *node,
                        incarnation: *incarnation,
                        current: b.incarnation,
                    }),
                    None if self.brokers.len() >= BROKERS_MAX => {
                        Err(ApplyError::LimitReached { what: "brokers" })
                    }
                    // A new incarnation starts fenced, so the old one's leadership must have moved
                    // first, as for a fence (the simulator's stale-view bug found this missing).
                    Some(_) if self.leads_any(*node) => Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "still leads partitions",
                    }),
                    _ => Ok(()),
                }
            }
            MetadataRecord::FenceBroker { node, incarnation } => {
                if self.registered(*node, *incarnation)?.fenced {
                    return Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "already fenced",
                    });
                }
                if self.leads_any(*node) {
                    return Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "still leads partitions",
                    });
                }
                Ok(())
            }
            MetadataRecord::UnfenceBroker { node, incarnation } => {
                let b = self.registered(*node, *incarnation)?;
                if !b.fenced || b.in_controlled_shutdown {
                    return Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "not fenced or shutting down",
                    });
                }
                Ok(())
            }
            MetadataRecord::ControlledShutdown { node, incarnation } => {
                if self.registered(*node, *incarnation)?.in_controlled_shutdown {
                    return Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "already shutting down",
                    });
                }
                if self.leads_any(*node) {
                    return Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "still leads partitions",
                    });
                }
                Ok(())
            }
            MetadataRecord::UnregisterBroker { node } => {
                if !self.brokers.contains_key(node) {
                    return Err(ApplyError::UnknownBroker { node: *node });
                }
                if self.hosts_any(*node) {
                    return Err(ApplyError::BrokerState {
                        node: *node,
                        reason: "still hosts partitions",
                    });
                }
                Ok(())
            }
            MetadataRecord::SetBrokerDraining { node, .. } => {
                if !self.brokers.contains_key(node) {
                    return Err(ApplyError::UnknownBroker { node: *node });
                }
                Ok(())
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                configs,
            } => {
                if !topic_name_is_valid(name) {
                    return Err(ApplyError::InvalidTopicName { name: name.clone() });
                }
                if self.topic_ids_by_name.contains_key(name)
                    || self.topics.contains_key(topic_id)
                    || topic_id.0 == [0; 16]
                {
                    return Err(ApplyError::TopicExists { name: name.clone() });
                }
                if self.topics.len() >= TOPICS_MAX {
                    return Err(ApplyError::LimitReached { what: "topics" });
                }
                let keys: Vec<&String> = configs.iter().map(|(k, _)| k).collect();
                if keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k)) {
                    return Err(ApplyError::LimitReached {
                        what: "duplicate config key",
                    });
                }
                Ok(())
            }
            MetadataRecord::CreatePartition {
                topic_id,
                index,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                let topic = self.topics.get(topic_id).ok_or(ApplyError::UnknownTopic {
                    topic_id: *topic_id,
                })?;
                if usize::try_from(index.0).ok() != Some(topic.partitions.len()) {
                    return Err(ApplyError::InvalidPartitionIndex {
                        topic_id: *topic_id,
                        index: *index,
                    });
                }
                if topic.partitions.len() >= PARTITIONS_PER_TOPIC_MAX {
                    return Err(ApplyError::LimitReached {
                        what: "partitions per topic",
                    });
                }
                if leader_epoch.0 < 0 || partition_epoch.0 < 0 {
                    return Err(ApplyError::InvalidEpoch {
                        reason: "negative epoch",
                    });
                }
                self.check_assignment(replicas, isr, *leader)
            }
            MetadataRecord::ChangePartition {
                topic_id,
                index,
                leader,
                isr,
                replicas,
                leader_epoch,
                partition_epoch,
                adding,
                removing,
            } => {
                let p = self.partition(*topic_id, *index)?;
                let new_leader = match leader {
                    LeaderChange::Unchanged => p.leader,
                    LeaderChange::NoLeader => None,
                    LeaderChange::To(n) => Some(*n),
                };
                if *partition_epoch <= p.partition_epoch {
                    return Err(ApplyError::InvalidEpoch {
                        reason: "partition epoch does not grow",
                    });
                }
                // A record that names a leader, even the current one, starts a new leader epoch
                // (Kafka names the leader it keeps when a reassignment takes replicas away, so
                // that they are fenced); one that leaves the leader unchanged keeps the epoch.
                if *leader != LeaderChange::Unchanged && *leader_epoch <= p.leader_epoch {
                    return Err(ApplyError::InvalidEpoch {
                        reason: "leader changes but its epoch does not grow",
                    });
                }
                if *leader == LeaderChange::Unchanged && *leader_epoch != p.leader_epoch {
                    return Err(ApplyError::InvalidEpoch {
                        reason: "leader epoch moves without a leader change",
                    });
                }
                let replicas = replicas.as_deref().unwrap_or(&p.replicas);
                let isr = isr.as_deref().unwrap_or(&p.isr);
                let adding = adding.as_deref().unwrap_or(&p.adding);
                let removing = removing.as_deref().unwrap_or(&p.removing);
                self.check_assignment(replicas, isr, new_leader)?;
                check_reassignment(replicas, adding, removing)
            }
            MetadataRecord::DeleteTopic { topic_id }
            | MetadataRecord::SetTopicConfig { topic_id, .. } => {
                let topic = self.topics.get(topic_id).ok_or(ApplyError::UnknownTopic {
                    topic_id: *topic_id,
                })?;
                if let MetadataRecord::SetTopicConfig {
                    key,
                    value: Some(_),
                    ..
                } = record
                {
                    if !topic.configs.contains_key(key) && topic.configs.len() >= CONFIGS_MAX {
                        return Err(ApplyError::LimitReached { what: "configs" });
                    }
                }
                Ok(())
            }
            MetadataRecord::AllocateProducerIds {
                node,
                first_id,
                count,
            } => {
                if !self.brokers.contains_key(node) {
                    return Err(ApplyError::UnknownBroker { node: *node });
                }
                let next_id = self.next_producer_id;
                let fits = *count > 0
                    && *count <= PRODUCER_ID_COUNT_MAX
                    && first_id.checked_add(i64::from(*count)).is_some();
                if *first_id != next_id || !fits {
                    return Err(ApplyError::InvalidProducerIds {
                        first_id: *first_id,
                        count: *count,
                        next_id,
                    });
                }
                Ok(())
            }
        }
    }

    /// Changes the image; `check` has accepted the record.
    fn change(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker {
                node,
                incarnation,
                client,
                cluster,
                rack,
            } => {
                // A decommission outlives restarts: the operator asked for the broker, not a run.
                let draining = self.brokers.get(node).is_some_and(|b| b.draining);
                let registration = BrokerRegistration {
                    incarnation: *incarnation,
                    client: client.clone(),
                    cluster: cluster.clone(),
                    rack: rack.clone(),
                    fenced: true,
                    in_controlled_shutdown: false,
                    draining,
                };
                self.brokers.insert(*node, registration);
            }
            MetadataRecord::FenceBroker { node, .. } => self.broker_mut(*node).fenced = true,
            MetadataRecord::UnfenceBroker { node, .. } => self.broker_mut(*node).fenced = false,
            MetadataRecord::ControlledShutdown { node, .. } => {
                let b = self.broker_mut(*node);
                b.fenced = true;
                b.in_controlled_shutdown = true;
            }
            MetadataRecord::UnregisterBroker { node } => {
                self.brokers.remove(node);
            }
            MetadataRecord::SetBrokerDraining { node, draining } => {
                self.broker_mut(*node).draining = *draining;
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                configs,
            } => {
                let configs = configs.iter().cloned().collect();
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        configs,
                        partitions: Vec::new(),
                    },
                );
                self.topic_ids_by_name.insert(name.clone(), *topic_id);
            }
            MetadataRecord::CreatePartition {
                topic_id,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                ..
            } => {
                self.topics
                    .get_mut(topic_id)
                    .expect("checked")
                    .partitions
                    .push(PartitionState {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                        adding: Vec::new(),
                        removing: Vec::new(),
                    });
            }
            MetadataRecord::ChangePartition {
                topic_id, index, ..
            } => {
                let topic = self.topics.get_mut(topic_id).expect("checked");
                let p = &mut topic.partitions[index.0 as usize];
                *p = p.changed_by(record);
            }
            MetadataRecord::DeleteTopic { topic_id } => {
                let topic = self.topics.remove(topic_id).expect("checked");
                self.topic_ids_by_name.remove(&topic.name);
            }
            MetadataRecord::SetTopicConfig {
                topic_id,
                key,
                value,
            } => {
                let configs = &mut self.topics.get_mut(topic_id).expect("checked").configs;
                match value {
                    Some(v) => configs.insert(key.clone(), v.clone()),
                    None => configs.remove(key),
                };
            }
            MetadataRecord::AllocateProducerIds { count, .. } => {
                self.next_producer_id += i64::from(*count)
            }
        }
    }

    fn broker_mut(&mut self, node: NodeId) -> &mut BrokerRegistration {
        self.brokers.get_mut(&node).expect("checked")
    }

    fn partitions(&self) -> impl Iterator<Item = &PartitionState> {
        self.topics.values().flat_map(|t| t.partitions.iter())
    }

    /// Whether the broker leads some partition.
    pub fn leads_any(&self, node: NodeId) -> bool {
        self.partitions().any(|p| p.leader == Some(node))
    }

    /// Whether the broker is a replica of some partition.
    pub fn hosts_any(&self, node: NodeId) -> bool {
        self.partitions().any(|p| p.replicas.contains(&node))
    }

    /// Encodes the whole image. A snapshot at offset N plus the records after N rebuilds the image.
    pub fn to_snapshot(&self) -> Vec<u8> {
        self.to_snapshot_in(SNAPSHOT_FORMAT_VERSION)
    }

    /// [`Self::to_snapshot`] in format `version`; version 1 drops the reassignment lists (tests
    /// write it to check that this build still reads it).
    fn to_snapshot_in(&self, version: u8) -> Vec<u8> {
        assert!((SNAPSHOT_FORMAT_VERSION_MIN..=SNAPSHOT_FORMAT_VERSION).contains(&version));
        let mut out = Vec::with_capacity(256);
        let mut w = Writer { out: &mut out };
        w.u8(version);
        w.u64(self.last_applied.0);
        w.i64(self.next_producer_id);
        w.count32(self.brokers.len(), BROKERS_MAX);
        for (node, b) in &self.brokers {
            w.i32(node.0);
            w.u64(b.incarnation.0);
            write_endpoint(&mut w, &b.client);
            write_endpoint(&mut w, &b.cluster);
            write_opt_str(&mut w, b.rack.as_deref(), RACK_BYTES_MAX);
            w.bool(b.fenced);
            w.bool(b.in_controlled_shutdown);
            if version >= 3 {
                w.bool(b.draining);
            }
        }
        w.count32(self.topics.len(), TOPICS_MAX);
        for (topic_id, t) in &self.topics {
            w.bytes16(&topic_id.0);
            w.str(&t.name, TOPIC_NAME_BYTES_MAX);
            w.count(t.configs.len(), CONFIGS_MAX);
            for (k, v) in &t.configs {
                w.str(k, CONFIG_KEY_BYTES_MAX);
                w.str(v, CONFIG_VALUE_BYTES_MAX);
            }
            w.count32(t.partitions.len(), PARTITIONS_PER_TOPIC_MAX);
            for p in &t.partitions {
                write_nodes(&mut w, &p.replicas);
                write_nodes(&mut w, &p.isr);
                write_opt_node(&mut w, p.leader);
                w.i32(p.leader_epoch.0);
                w.i32(p.partition_epoch.0);
                if version >= 2 {
                    write_nodes(&mut w, &p.adding);
                    write_nodes(&mut w, &p.removing);
                }
            }
        }
        out
    }

    /// Decodes a snapshot written by [`MetadataImage::to_snapshot`].
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for malformed bytes, or duplicate or out-of-order keys (which `to_snapshot` never
    /// writes, so they mean corruption). Never panics.
    pub fn from_snapshot(bytes: &[u8]) -> Result<MetadataImage, DecodeError> {
        let invalid = |reason: &str| DecodeError::Invalid {
            what: "snapshot",
            reason: reason.to_string(),
        };
        let mut r = Reader::new(bytes);
        let version = r.u8("snapshot version")?;
        if !(SNAPSHOT_FORMAT_VERSION_MIN..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
            return Err(DecodeError::UnknownVersion {
                what: "snapshot",
                version,
            });
        }
        let mut image = MetadataImage {
            last_applied: MetadataOffset(r.u64("last applied")?),
            next_producer_id: r.i64("next producer id")?,
            ..MetadataImage::default()
        };
        for _ in 0..r.count32("brokers", BROKERS_MAX)? {
            let node = NodeId(r.i32("node")?);
            let mut b = BrokerRegistration {
                incarnation: Incarnation(r.u64("incarnation")?),
                client: read_endpoint(&mut r)?,
                cluster: read_endpoint(&mut r)?,
                rack: read_opt_str(&mut r, "rack", RACK_BYTES_MAX)?,
                fenced: r.bool("fenced")?,
                in_controlled_shutdown: r.bool("in controlled shutdown")?,
                draining: false,
            };
            if version >= 3 {
                b.draining = r.bool("draining")?;
            }
            if image
                .brokers
                .last_key_value()
                .is_some_and(|(last, _)| *last >= node)
            {
                return Err(invalid("brokers out of order"));
            }
            image.brokers.insert(node, b);
        }
        for _ in 0..r.count32("topics", TOPICS_MAX)? {
            let topic_id = TopicId(r.bytes16("topic id")?);
            let name = r.str("topic name", TOPIC_NAME_BYTES_MAX)?;
            let mut configs = BTreeMap::new();
            for _ in 0..r.count("configs", CONFIGS_MAX)? {
                let k = r.str("config key", CONFIG_KEY_BYTES_MAX)?;
                let v = r.str("config value", CONFIG_VALUE_BYTES_MAX)?;
                if configs
                    .last_key_value()
                    .is_some_and(|(last, _): (&String, _)| *last >= k)
                {
                    return Err(invalid("configs out of order"));
                }
                configs.insert(k, v);
            }
            let n = r.count32("partitions", PARTITIONS_PER_TOPIC_MAX)?;
            // Each partition takes at least 13 bytes, so `n` cannot make us allocate more than the input.
            let mut partitions = Vec::new();
            for _ in 0..n {
                let mut p = PartitionState {
                    replicas: read_nodes(&mut r, "replicas")?,
                    isr: read_nodes(&mut r, "isr")?,
                    leader: read_opt_node(&mut r)?,
                    leader_epoch: LeaderEpoch(r.i32("leader epoch")?),
                    partition_epoch: PartitionEpoch(r.i32("partition epoch")?),
                    adding: Vec::new(),
                    removing: Vec::new(),
                };
                if version >= 2 {
                    p.adding = read_nodes(&mut r, "adding replicas")?;
                    p.removing = read_nodes(&mut r, "removing replicas")?;
                }
                partitions.push(p);
            }
            if image
                .topics
                .last_key_value()
                .is_some_and(|(last, _)| *last >= topic_id)
            {
                return Err(invalid("topics out of order"));
            }
            if image
                .topic_ids_by_name
                .insert(name.clone(), topic_id)
                .is_some()
            {
                return Err(invalid("duplicate topic name"));
            }
            image.topics.insert(
                topic_id,
                TopicImage {
                    name,
                    configs,
                    partitions,
                },
            );
        }
        r.finish("snapshot")?;
        Ok(image)
    }
}

const _: () = assert!(REPLICAS_MAX <= u16::MAX as usize);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::strategies;
    use proptest::prelude::*;

    fn endpoint(port: u16) -> Endpoint {
        Endpoint {
            host: "localhost".into(),
            port,
        }
    }

    pub(crate) fn register(node: i32, incarnation: u64) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node: NodeId(node),
            incarnation: Incarnation(incarnation),
            client: endpoint(9092),
            cluster: endpoint(9093),
            rack: None,
        }
    }

    /// Turns three random bytes into a record that is usually valid for `image`: the generator a
    /// proptest needs to build long valid logs, since random records are mostly refused.
    pub(crate) fn plausible_record(image: &MetadataImage, op: u8, a: u8, b: u8) -> MetadataRecord {
        let node = NodeId(i32::from(a % 5));
        let incarnation = image.broker(node).map_or(Incarnation(1), |b| b.incarnation);
        let topic = image
            .topics()
            .iter()
            .nth(usize::from(b) % image.topics().len().max(1));
        let unfenced: Vec<NodeId> = image
            .brokers()
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(n, _)| *n)
            .collect();
        match (op % 10, topic) {
            (0, _) => register(node.0, incarnation.0 + 1),
            (1, _) => MetadataRecord::UnfenceBroker { node, incarnation },
            (2, _) => MetadataRecord::FenceBroker { node, incarnation },
            (3, _) => MetadataRecord::CreateTopic {
                name: format!("t{}", b % 8),
                topic_id: TopicId([b % 8 + 1; 16]),
                configs: vec![("retention.ms".into(), format!("{a}"))],
            },
            (4, Some((id, t))) if !unfenced.is_empty() => {
                let leader = unfenced[usize::from(a) % unfenced.len()];
                // One to three replicas, the leader first, followers any registered brokers.
                let mut replicas = vec![leader];
                let others = image.brokers().keys().filter(|n| **n != leader);
                replicas.extend(others.take(usize::from(b % 3)));
                MetadataRecord::CreatePartition {
                    topic_id: *id,
                    index: PartitionIndex(t.partitions.len() as i32),
                    isr: replicas.clone(),
                    replicas,
                    leader: Some(leader),
                    leader_epoch: LeaderEpoch(0),
                    partition_epoch: PartitionEpoch(0),
                }
            }
            (5, Some((id, t))) if !t.partitions.is_empty() && b % 3 == 0 => {
                // An ISR change that keeps the leader: drop the last member that does not lead, or
                // bring every replica back.
                let index = usize::from(a) % t.partitions.len();
                let p = &t.partitions[index];
                let mut isr = p.isr.clone();
                match isr.iter().rposition(|n| Some(*n) != p.leader) {
                    Some(i) if isr.len() > 1 => {
                        isr.remove(i);
                    }
                    _ => isr = p.replicas.clone(),
                }
                MetadataRecord::ChangePartition {
                    topic_id: *id,
                    index: PartitionIndex(index as i32),
                    leader: LeaderChange::Unchanged,
                    isr: Some(isr),
                    replicas: None,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch.next(),
                    adding: None,
                    removing: None,
                }
            }
            (5, Some((id, t))) if !t.partitions.is_empty() && b % 3 == 1 => {
                // A reassignment starts (a registered broker outside the replicas is added, the
                // last replica that does not lead removed), or the ongoing one is cancelled.
                let index = usize::from(a) % t.partitions.len();
                let p = &t.partitions[index];
                let (replicas, adding, removing) = if p.is_reassigning() {
                    let original: Vec<NodeId> = p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|n| !p.adding.contains(n))
                        .collect();
                    (original, vec![], vec![])
                } else {
                    let outside = image.brokers().keys().find(|n| !p.replicas.contains(n));
                    let adding: Vec<NodeId> = outside.into_iter().copied().collect();
                    let removing: Vec<NodeId> = p
                        .replicas
                        .iter()
                        .rev()
                        .find(|n| Some(**n) != p.leader && p.replicas.len() > 1)
                        .into_iter()
                        .copied()
                        .collect();
                    let mut replicas: Vec<NodeId> = p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|n| !removing.contains(n))
                        .collect();
                    replicas.extend(&adding);
                    replicas.extend(&removing);
                    (replicas, adding, removing)
                };
                let isr = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|n| replicas.contains(n))
                    .collect();
                MetadataRecord::ChangePartition {
                    topic_id: *id,
                    index: PartitionIndex(index as i32),
                    leader: LeaderChange::Unchanged,
                    isr: Some(isr),
                    replicas: Some(replicas),
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch.next(),
                    adding: Some(adding),
                    removing: Some(removing),
                }
            }
            (5, Some((id, t))) if !t.partitions.is_empty() => {
                let index = usize::from(a) % t.partitions.len();
                let p = &t.partitions[index];
                MetadataRecord::ChangePartition {
                    topic_id: *id,
                    index: PartitionIndex(index as i32),
                    leader: if p.leader.is_some() {
                        LeaderChange::NoLeader
                    } else {
                        LeaderChange::To(p.replicas[0])
                    },
                    isr: None,
                    replicas: None,
                    leader_epoch: p.leader_epoch.next(),
                    partition_epoch: p.partition_epoch.next(),
                    adding: None,
                    removing: None,
                }
            }
            (6, Some((id, _))) => MetadataRecord::DeleteTopic { topic_id: *id },
            (7, Some((id, _))) => MetadataRecord::SetTopicConfig {
                topic_id: *id,
                key: format!("k{}", a % 3),
                value: (b % 2 == 0).then(|| "v".to_string()),
            },
            (8, _) => MetadataRecord::AllocateProducerIds {
                node,
                first_id: image.next_producer_id(),
                count: 1000,
            },
            (9, _) if b % 2 == 0 => MetadataRecord::SetBrokerDraining {
                node,
                draining: b % 4 == 0,
            },
            _ => MetadataRecord::ControlledShutdown { node, incarnation },
        }
    }

    #[test]
    fn a_broker_registers_fenced_and_heartbeats_unfence_it() {
        let mut image = MetadataImage::new();
        image.apply(MetadataOffset(1), &register(1, 1)).unwrap();
        assert!(image.broker(NodeId(1)).unwrap().fenced);
        let unfence = MetadataRecord::UnfenceBroker {
            node: NodeId(1),
            incarnation: Incarnation(1),
        };
        image.apply(MetadataOffset(2), &unfence).unwrap();
        assert!(!image.broker(NodeId(1)).unwrap().fenced);
        // A stale registration is refused, and only last_applied moves.
        let before = image.clone();
        let err = image.apply(MetadataOffset(3), &register(1, 1)).unwrap_err();
        assert!(matches!(err, ApplyError::StaleIncarnation { .. }));
        assert_eq!(image.last_applied(), MetadataOffset(3));
        image.last_applied = before.last_applied;
        assert_eq!(image, before);
    }

    #[test]
    fn partition_epochs_may_not_go_backwards_and_leaders_must_be_unfenced() {
        let mut image = MetadataImage::new();
        let id = TopicId([7; 16]);
        let mut offset = 0;
        let mut apply = |image: &mut MetadataImage, r: MetadataRecord| {
            offset += 1;
            image.apply(MetadataOffset(offset), &r)
        };
        apply(&mut image, register(1, 1)).unwrap();
        apply(
            &mut image,
            MetadataRecord::CreateTopic {
                name: "a".into(),
                topic_id: id,
                configs: vec![],
            },
        )
        .unwrap();
        let create = |leader| MetadataRecord::CreatePartition {
            topic_id: id,
            index: PartitionIndex(0),
            replicas: vec![NodeId(1)],
            isr: vec![NodeId(1)],
            leader,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        };
        assert_eq!(
            apply(&mut image, create(Some(NodeId(1)))),
            Err(ApplyError::InvalidAssignment {
                reason: "leader fenced"
            })
        );
        apply(&mut image, create(None)).unwrap();
        let change = |leader, le, pe| MetadataRecord::ChangePartition {
            topic_id: id,
            index: PartitionIndex(0),
            leader,
            isr: None,
            replicas: None,
            leader_epoch: LeaderEpoch(le),
            partition_epoch: PartitionEpoch(pe),
            adding: None,
            removing: None,
        };
        assert!(matches!(
            apply(&mut image, change(LeaderChange::Unchanged, 0, 0)),
            Err(ApplyError::InvalidEpoch { .. })
        ));
        assert!(matches!(
            apply(&mut image, change(LeaderChange::Unchanged, 1, 1)),
            Err(ApplyError::InvalidEpoch { .. })
        ));
        assert!(matches!(
            apply(&mut image, change(LeaderChange::NoLeader, 0, 1)),
            Err(ApplyError::InvalidEpoch { .. })
        ));
        apply(&mut image, change(LeaderChange::Unchanged, 0, 1)).unwrap();
        // Naming the leader it keeps bumps the epoch (a reassignment that removes replicas).
        apply(&mut image, change(LeaderChange::NoLeader, 1, 2)).unwrap();
        assert_eq!(
            image.topic(id).unwrap().partitions[0].leader_epoch,
            LeaderEpoch(1)
        );
        assert_eq!(
            image.topic(id).unwrap().partitions[0].partition_epoch,
            PartitionEpoch(2)
        );
        assert_eq!(
            apply(
                &mut image,
                MetadataRecord::CreateTopic {
                    name: "a".into(),
                    topic_id: TopicId([8; 16]),
                    configs: vec![]
                }
            ),
            Err(ApplyError::TopicExists { name: "a".into() })
        );
    }

    #[test]
    fn a_new_incarnation_of_a_leader_is_refused_until_its_leadership_moved() {
        let mut image = MetadataImage::new();
        let id = TopicId([6; 16]);
        let unfence = MetadataRecord::UnfenceBroker {
            node: NodeId(1),
            incarnation: Incarnation(1),
        };
        image
            .apply_batch(MetadataOffset(1), &[register(1, 1), unfence])
            .unwrap();
        let create = [
            MetadataRecord::CreateTopic {
                name: "a".into(),
                topic_id: id,
                configs: vec![],
            },
            MetadataRecord::CreatePartition {
                topic_id: id,
                index: PartitionIndex(0),
                replicas: vec![NodeId(1)],
                isr: vec![NodeId(1)],
                leader: Some(NodeId(1)),
                leader_epoch: LeaderEpoch(0),
                partition_epoch: PartitionEpoch(0),
            },
        ];
        image.apply_batch(MetadataOffset(2), &create).unwrap();
        assert_eq!(
            image.apply(MetadataOffset(3), &register(1, 2)),
            Err(ApplyError::BrokerState {
                node: NodeId(1),
                reason: "still leads partitions"
            })
        );
        let offline = MetadataRecord::ChangePartition {
            topic_id: id,
            index: PartitionIndex(0),
            leader: LeaderChange::NoLeader,
            isr: None,
            replicas: None,
            leader_epoch: LeaderEpoch(1),
            partition_epoch: PartitionEpoch(1),
            adding: None,
            removing: None,
        };
        image
            .apply_batch(MetadataOffset(4), &[offline, register(1, 2)])
            .unwrap();
        assert!(image.broker(NodeId(1)).unwrap().fenced);
    }

    #[test]
    fn an_isr_may_not_become_empty() {
        let mut image = MetadataImage::new();
        let id = TopicId([5; 16]);
        image.apply(MetadataOffset(1), &register(1, 1)).unwrap();
        let topic = MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: id,
            configs: vec![],
        };
        let partition = |isr: Vec<NodeId>| MetadataRecord::CreatePartition {
            topic_id: id,
            index: PartitionIndex(0),
            replicas: vec![NodeId(1)],
            isr,
            leader: None,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        };
        let refused = image.apply_batch(MetadataOffset(2), &[topic.clone(), partition(vec![])]);
        assert_eq!(
            refused.unwrap_err().error,
            ApplyError::InvalidAssignment {
                reason: "empty isr"
            }
        );
        image
            .apply_batch(MetadataOffset(3), &[topic, partition(vec![NodeId(1)])])
            .unwrap();
        let shrink = MetadataRecord::ChangePartition {
            topic_id: id,
            index: PartitionIndex(0),
            leader: LeaderChange::Unchanged,
            isr: Some(vec![]),
            replicas: None,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(1),
            adding: None,
            removing: None,
        };
        assert_eq!(
            image.apply(MetadataOffset(4), &shrink),
            Err(ApplyError::InvalidAssignment {
                reason: "empty isr"
            })
        );
    }

    #[test]
    fn a_topic_and_its_partitions_commit_together_or_not_at_all() {
        let mut image = MetadataImage::new();
        image.apply(MetadataOffset(1), &register(1, 1)).unwrap();
        let id = TopicId([3; 16]);
        let create = MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: id,
            configs: vec![],
        };
        let partition = |index| MetadataRecord::CreatePartition {
            topic_id: id,
            index: PartitionIndex(index),
            replicas: vec![NodeId(1)],
            isr: vec![NodeId(1)],
            leader: None,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        };
        // The third record skips an index: the whole batch is refused, the topic too.
        let before = image.clone();
        let refused = image.apply_batch(
            MetadataOffset(2),
            &[create.clone(), partition(0), partition(2)],
        );
        assert_eq!(refused.unwrap_err().index, 2);
        assert_eq!(image.topic_id("a"), None);
        image.last_applied = before.last_applied;
        assert_eq!(image, before);
        image
            .apply_batch(MetadataOffset(3), &[create, partition(0), partition(1)])
            .unwrap();
        assert_eq!(image.topic(id).unwrap().partitions.len(), 2);
        // A delete and a re-create of the same name in one batch, refused at the end, restore the old topic.
        let again = MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: TopicId([4; 16]),
            configs: vec![],
        };
        let bad = MetadataRecord::UnregisterBroker { node: NodeId(9) };
        let before = image.clone();
        assert!(image
            .apply_batch(
                MetadataOffset(4),
                &[MetadataRecord::DeleteTopic { topic_id: id }, again, bad]
            )
            .is_err());
        image.last_applied = before.last_applied;
        assert_eq!(image, before);
        assert_eq!(image.topic_id("a"), Some(id));
    }

    #[test]
    fn producer_id_blocks_must_start_at_the_next_id() {
        let mut image = MetadataImage::new();
        image.apply(MetadataOffset(1), &register(1, 1)).unwrap();
        let alloc = |first_id| MetadataRecord::AllocateProducerIds {
            node: NodeId(1),
            first_id,
            count: 1000,
        };
        image.apply(MetadataOffset(2), &alloc(0)).unwrap();
        assert!(image.apply(MetadataOffset(3), &alloc(0)).is_err());
        image.apply(MetadataOffset(4), &alloc(1000)).unwrap();
        assert_eq!(image.next_producer_id(), 2000);
    }

    #[test]
    fn reassignment_lists_must_be_disjoint_sets_of_replicas_and_snapshots_keep_them() {
        let mut image = MetadataImage::new();
        let mut offset = 0;
        let mut apply = |image: &mut MetadataImage, records: &[MetadataRecord]| {
            offset += 1;
            image.apply_batch(MetadataOffset(offset), records)
        };
        for n in 1..=3 {
            apply(&mut image, &[register(n, 1)]).unwrap();
        }
        let id = TopicId([3; 16]);
        let topic = MetadataRecord::CreateTopic {
            name: "r".into(),
            topic_id: id,
            configs: vec![],
        };
        let partition = MetadataRecord::CreatePartition {
            topic_id: id,
            index: PartitionIndex(0),
            replicas: vec![NodeId(1)],
            isr: vec![NodeId(1)],
            leader: None,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        };
        apply(&mut image, &[topic, partition]).unwrap();
        let v1 = image.to_snapshot_in(1);
        let reassign = |adding: &[i32], removing: &[i32]| MetadataRecord::ChangePartition {
            topic_id: id,
            index: PartitionIndex(0),
            leader: LeaderChange::Unchanged,
            isr: None,
            replicas: Some(vec![NodeId(2), NodeId(1)]),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(1),
            adding: Some(adding.iter().copied().map(NodeId).collect()),
            removing: Some(removing.iter().copied().map(NodeId).collect()),
        };
        for (adding, removing, reason) in [
            (&[2, 2][..], &[][..], "duplicate adding or removing replica"),
            (&[3], &[], "adding or removing replica not a replica"),
            (&[2], &[2], "replica both adding and removing"),
            (&[], &[1, 2], "every replica removing"),
        ] {
            assert_eq!(
                apply(&mut image, &[reassign(adding, removing)]).map_err(|e| e.error),
                Err(ApplyError::InvalidAssignment { reason }),
            );
        }
        apply(&mut image, &[reassign(&[2], &[1])]).unwrap();
        let p = &image.topic(id).unwrap().partitions[0];
        assert_eq!(
            (p.adding.clone(), p.removing.clone()),
            (vec![NodeId(2)], vec![NodeId(1)])
        );
        assert_eq!(p.target_replicas(), vec![NodeId(2)]);
        assert_eq!(
            MetadataImage::from_snapshot(&image.to_snapshot()),
            Ok(image.clone())
        );
        // A version 1 snapshot (written before reassignment) still reads, with empty lists.
        let old = MetadataImage::from_snapshot(&v1).unwrap();
        assert!(!old.topic(id).unwrap().partitions[0].is_reassigning());
        assert_eq!(old.to_snapshot_in(1), v1);
    }

    #[test]
    fn a_draining_flag_outlives_re_registration_and_snapshots_and_older_snapshots_read_without_it()
    {
        let mut image = MetadataImage::new();
        image
            .apply_batch(MetadataOffset(1), &[register(1, 1)])
            .unwrap();
        let v2 = image.to_snapshot_in(2);
        let drain = |draining| MetadataRecord::SetBrokerDraining {
            node: NodeId(1),
            draining,
        };
        image
            .apply_batch(MetadataOffset(2), &[drain(true)])
            .unwrap();
        image
            .apply_batch(MetadataOffset(3), &[register(1, 2)])
            .unwrap();
        assert!(image.broker(NodeId(1)).unwrap().draining);
        assert_eq!(
            MetadataImage::from_snapshot(&image.to_snapshot()),
            Ok(image.clone())
        );
        let old = MetadataImage::from_snapshot(&v2).unwrap();
        assert!(!old.broker(NodeId(1)).unwrap().draining);
        assert_eq!(
            image
                .apply_batch(
                    MetadataOffset(4),
                    &[MetadataRecord::SetBrokerDraining {
                        node: NodeId(7),
                        draining: true
                    }]
                )
                .map_err(|e| e.error),
            Err(ApplyError::UnknownBroker { node: NodeId(7) })
        );
        image
            .apply_batch(MetadataOffset(5), &[drain(false)])
            .unwrap();
        assert!(!image.broker(NodeId(1)).unwrap().draining);
    }

    fn build(
        ops: &[(u8, u8, u8)],
        random: &[MetadataRecord],
    ) -> (Vec<MetadataRecord>, MetadataImage, usize) {
        let mut image = MetadataImage::new();
        let mut log = Vec::new();
        let mut accepted = 0;
        for (i, &(op, a, b)) in ops.iter().enumerate() {
            // Now and then a random record, most likely refused, so that refusals are in the logs too.
            let record = if op >= 250 && !random.is_empty() {
                random[i % random.len()].clone()
            } else {
                plausible_record(&image, op, a, b)
            };
            accepted += usize::from(image.apply(MetadataOffset(i as u64 + 1), &record).is_ok());
            log.push(record);
        }
        (log, image, accepted)
    }

    proptest! {
        #[test]
        fn a_snapshot_of_any_prefix_plus_the_tail_gives_the_same_image(
            ops in proptest::collection::vec(any::<(u8, u8, u8)>(), 1..120),
            random in proptest::collection::vec(strategies::record(), 0..4),
            split in any::<prop::sample::Index>(),
        ) {
            let (log, whole, _) = build(&ops, &random);
            let split = split.index(log.len() + 1);
            let mut prefix = MetadataImage::new();
            for (i, r) in log[..split].iter().enumerate() {
                let _ = prefix.apply(MetadataOffset(i as u64 + 1), r);
            }
            let mut restored = MetadataImage::from_snapshot(&prefix.to_snapshot()).unwrap();
            prop_assert_eq!(&restored, &prefix);
            for (i, r) in log.iter().enumerate().skip(split) {
                let _ = restored.apply(MetadataOffset(i as u64 + 1), r);
            }
            prop_assert_eq!(restored, whole);
        }

        #[test]
        fn a_refused_record_changes_nothing_but_last_applied(
            ops in proptest::collection::vec(any::<(u8, u8, u8)>(), 0..60),
            record in strategies::record(),
        ) {
            let (log, mut image, _) = build(&ops, &[]);
            let before = image.clone();
            if image.apply(MetadataOffset(log.len() as u64 + 1), &record).is_err() {
                image.last_applied = before.last_applied;
                prop_assert_eq!(image, before);
            }
        }

        #[test]
        fn a_batch_applies_all_or_nothing(
            ops in proptest::collection::vec(any::<(u8, u8, u8)>(), 0..60),
            batch_ops in proptest::collection::vec(any::<(u8, u8, u8)>(), 1..8),
            random in proptest::collection::vec(strategies::record(), 0..2),
        ) {
            let (log, mut image, _) = build(&ops, &[]);
            // A batch of plausible records, each built against the image the ones before it leave.
            let mut one_by_one = image.clone();
            let mut batch = Vec::new();
            let mut all_ok = true;
            for (i, &(op, a, b)) in batch_ops.iter().enumerate() {
                let r = plausible_record(&one_by_one, op, a, b);
                let offset = MetadataOffset(log.len() as u64 + 1 + i as u64);
                all_ok &= one_by_one.apply(offset, &r).is_ok();
                batch.push(r);
            }
            batch.extend(random);
            let before = image.clone();
            let offset = MetadataOffset(log.len() as u64 + 1);
            match image.apply_batch(offset, &batch) {
                Ok(()) => {
                    prop_assert!(all_ok);
                    let mut sequential = before.clone();
                    for r in &batch {
                        sequential.skip(MetadataOffset(sequential.last_applied().0 + 1));
                        sequential.check(r).unwrap();
                        sequential.change(r);
                    }
                    sequential.last_applied = offset;
                    prop_assert_eq!(image, sequential);
                }
                Err(refused) => {
                    prop_assert!(refused.index < batch.len());
                    image.last_applied = before.last_applied;
                    prop_assert_eq!(image, before);
                }
            }
        }

        #[test]
        fn arbitrary_snapshot_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = MetadataImage::from_snapshot(&bytes);
        }

        #[test]
        fn a_corrupted_snapshot_never_panics(
            ops in proptest::collection::vec(any::<(u8, u8, u8)>(), 0..60), at in any::<usize>(), xor in 1u8..=255,
        ) {
            let (_, image, _) = build(&ops, &[]);
            let mut bytes = image.to_snapshot();
            let at = at % bytes.len();
            bytes[at] ^= xor;
            let _ = MetadataImage::from_snapshot(&bytes);
        }
    }

    #[test]
    fn the_plausible_generator_builds_mostly_valid_logs() {
        // The equivalence property above is only worth something if its logs do things.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let ops: Vec<(u8, u8, u8)> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = x.to_le_bytes();
                (b[0] % 250, b[1], b[2])
            })
            .collect();
        let (log, _, accepted) = build(&ops, &[]);
        assert!(accepted > 500, "only {accepted} of 2000 accepted");
        let mut image = MetadataImage::new();
        let mut partitions_created = 0;
        for (i, r) in log.iter().enumerate() {
            let ok = image.apply(MetadataOffset(i as u64 + 1), r).is_ok();
            partitions_created +=
                usize::from(ok && matches!(r, MetadataRecord::CreatePartition { .. }));
        }
        assert!(
            partitions_created > 10,
            "only {partitions_created} partitions created"
        );
    }
}
