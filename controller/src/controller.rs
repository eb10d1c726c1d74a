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
//! Replication is not implemented yet: every partition has one replica, so when that replica is fenced
//! the partition has no leader (its leader epoch is bumped), and when its broker is back it leads again
//! with a new epoch.
//!
//! [`ControllerNode::speculative_image`]: crate::node::ControllerNode::speculative_image
//! [`ControllerNode::propose`]: crate::node::ControllerNode::propose

use std::collections::BTreeMap;

use thiserror::Error;

use crate::ids::{
    Incarnation, LeaderEpoch, MonotonicMs, NodeId, PartitionEpoch, PartitionIndex, TopicId,
};
use crate::image::{topic_name_is_valid, MetadataImage, PARTITIONS_PER_TOPIC_MAX};
use crate::records::{
    Endpoint, LeaderChange, MetadataRecord, CONFIGS_MAX, CONFIG_KEY_BYTES_MAX,
    CONFIG_VALUE_BYTES_MAX, HOST_BYTES_MAX, RACK_BYTES_MAX, REPLICAS_MAX,
};
use crate::rng::RandomSource;

/// Kafka's default `broker.session.timeout.ms`.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 9000;
/// Producer ids handed out per request, as Kafka's `ProducerIdManager` block.
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;
/// The only replication factor Spate supports until replication exists.
pub const REPLICATION_FACTOR_SUPPORTED: i16 = 1;

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
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: SESSION_TIMEOUT_MS_DEFAULT,
        }
    }
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
    /// The replication factor, or -1 for the default (1).
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

/// The controller's in-memory state: broker sessions. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Controller {
    config: ControllerConfig,
    sessions: BTreeMap<NodeId, Session>,
}

impl Controller {
    /// A controller with no sessions: the state of a node that just became the quorum leader.
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            sessions: BTreeMap::new(),
        }
    }

    /// Forgets every session: call when this node stops leading, so that a later term starts with
    /// fresh grace periods instead of stale timestamps.
    pub fn reset(&mut self) {
        self.sessions.clear();
    }

    /// A broker registers (or re-registers after a restart).
    ///
    /// A new incarnation replaces the old one: whatever the old one led loses its leader now, and the new
    /// one gets it back when its first heartbeat unfences it.
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
        let mut records = leaderless_records(image, req.node);
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
    /// session) it is unfenced and leads again the partitions whose leader it was.
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
        if !broker.fenced || broker.in_controlled_shutdown {
            return Ok(Vec::new());
        }
        let mut records = vec![MetadataRecord::UnfenceBroker { node, incarnation }];
        for (topic_id, index, p) in partitions(image) {
            // With one replica the ISR keeps the broker while it is away, so "leaderless with it in the ISR"
            // is exactly "it led this partition before".
            if p.leader.is_none() && p.isr.contains(&node) {
                records.push(MetadataRecord::ChangePartition {
                    topic_id,
                    index,
                    leader: LeaderChange::To(node),
                    isr: None,
                    replicas: None,
                    leader_epoch: p.leader_epoch.next(),
                    partition_epoch: p.partition_epoch.next(),
                });
            }
        }
        Ok(records)
    }

    /// Fences every unfenced broker whose session expired, taking its partitions' leadership away first.
    /// A broker the image shows unfenced but with no session here (this node just became leader) gets a
    /// full session from `now`, as Kafka grants after a controller failover.
    pub fn tick(&mut self, image: &MetadataImage, now: MonotonicMs) -> Vec<MetadataRecord> {
        // Sessions of brokers that left the image go too, so the map stays bounded by BROKERS_MAX.
        self.sessions
            .retain(|node, _| image.broker(*node).is_some());
        let mut records = Vec::new();
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
            if now.since_ms(session.last_heartbeat) >= self.config.session_timeout_ms {
                records.extend(leaderless_records(image, *node));
                records.push(MetadataRecord::FenceBroker {
                    node: *node,
                    incarnation: broker.incarnation,
                });
            }
        }
        records
    }

    /// A broker asks to shut down: it gives up leadership and stays fenced until it registers again.
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
        let mut records = leaderless_records(image, node);
        records.push(MetadataRecord::ControlledShutdown { node, incarnation });
        self.sessions.remove(&node);
        Ok(records)
    }

    /// Creates a topic: one CreateTopic record, then one CreatePartition per partition.
    ///
    /// Placement is Kafka's rack-unaware round robin over the live (unfenced) brokers sorted by id,
    /// starting at a random index, so that leaders spread over brokers and over topics.
    ///
    /// # Errors
    ///
    /// [`ControllerError::InvalidTopicName`], [`ControllerError::TopicAlreadyExists`],
    /// [`ControllerError::InvalidPartitions`], [`ControllerError::InvalidConfig`],
    /// [`ControllerError::InvalidReplicationFactor`] (above 1: replication is not implemented yet; or
    /// more than the live brokers), [`ControllerError::InvalidReplicaAssignment`].
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
        check_configs(&req.configs)?;
        let assignment = match req.assignment {
            Some(assignment) => {
                if req.partitions != -1 || req.replication_factor != -1 {
                    return Err(assignment_error(
                        "both an assignment and a partition count or replication factor",
                    ));
                }
                check_assignment(image, &assignment, 0)?;
                assignment
            }
            None => {
                let count = partition_count(req.partitions)?;
                check_replication_factor(req.replication_factor)?;
                place(image, rng, 0, count)?
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

    /// Grows a topic to `total` partitions (Kafka's CreatePartitions), placed as
    /// [`Controller::create_topic`] does unless an assignment for the new ones is given.
    ///
    /// # Errors
    ///
    /// [`ControllerError::UnknownTopic`], [`ControllerError::InvalidPartitions`] if `total` is not above
    /// the current count or above the limit, [`ControllerError::InvalidReplicaAssignment`].
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
        let current = image
            .topic(topic_id)
            .expect("indexed by name")
            .partitions
            .len();
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
                check_assignment(image, &assignment, current)?;
                assignment
            }
            None => place(image, rng, current, total_usize - current)?,
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

    /// Sets (`Some`) or removes (`None`) one config of a topic (IncrementalAlterConfigs).
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
        let value = value.map(str::to_string);
        Ok(vec![MetadataRecord::SetTopicConfig {
            topic_id,
            key: key.into(),
            value,
        }])
    }

    /// Removes a broker from the cluster for good (decommission). It must host no partition: move or
    /// delete them first.
    ///
    /// # Errors
    ///
    /// [`ControllerError::StaleBroker`] if it is not registered, [`ControllerError::InvalidReplicaAssignment`]
    /// if it still hosts partitions.
    pub fn unregister_broker(
        &mut self,
        image: &MetadataImage,
        node: NodeId,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if image.broker(node).is_none() {
            return Err(ControllerError::StaleBroker {
                node,
                incarnation: Incarnation(0),
            });
        }
        if image.hosts_any(node) {
            return Err(assignment_error(&format!(
                "broker {node} still hosts partitions"
            )));
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

fn assignment_error(reason: &str) -> ControllerError {
    ControllerError::InvalidReplicaAssignment {
        reason: reason.into(),
    }
}

fn partitions(
    image: &MetadataImage,
) -> impl Iterator<Item = (TopicId, PartitionIndex, &crate::image::PartitionState)> {
    image.topics().iter().flat_map(|(id, t)| {
        t.partitions
            .iter()
            .enumerate()
            .map(move |(i, p)| (*id, PartitionIndex(i as i32), p))
    })
}

/// The records that take leadership away from `node`: with one replica, the partition goes offline.
fn leaderless_records(image: &MetadataImage, node: NodeId) -> Vec<MetadataRecord> {
    partitions(image)
        .filter(|(_, _, p)| p.leader == Some(node))
        .map(|(topic_id, index, p)| MetadataRecord::ChangePartition {
            topic_id,
            index,
            leader: LeaderChange::NoLeader,
            isr: None,
            replicas: None,
            leader_epoch: p.leader_epoch.next(),
            partition_epoch: p.partition_epoch.next(),
        })
        .collect()
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

fn check_replication_factor(requested: i16) -> Result<(), ControllerError> {
    match requested {
        -1 | REPLICATION_FACTOR_SUPPORTED => Ok(()),
        n if n < 1 => Err(ControllerError::InvalidReplicationFactor {
            reason: format!("replication factor {n} is below 1"),
        }),
        n => Err(ControllerError::InvalidReplicationFactor {
            reason: format!(
                "replication factor {n}: replication is not implemented yet, only 1 is supported"
            ),
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

/// A manual assignment: each partition one replica (replication is not implemented), registered brokers.
fn check_assignment(
    image: &MetadataImage,
    assignment: &[Vec<NodeId>],
    existing: usize,
) -> Result<(), ControllerError> {
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
    }
    check_replication_factor(assignment[0].len() as i16)
}

/// Kafka's round robin with a random start over the live brokers (rack-unaware, one replica).
fn place(
    image: &MetadataImage,
    rng: &mut impl RandomSource,
    first_index: usize,
    count: usize,
) -> Result<Vec<Vec<NodeId>>, ControllerError> {
    let live: Vec<NodeId> = image
        .brokers()
        .iter()
        .filter(|(_, b)| !b.fenced)
        .map(|(n, _)| *n)
        .collect();
    if live.is_empty() {
        return Err(ControllerError::InvalidReplicationFactor {
            reason: "replication factor 1 is larger than the 0 available brokers".into(),
        });
    }
    let start = rng.below(live.len() as u64) as usize;
    Ok((first_index..first_index + count)
        .map(|i| vec![live[(start + i) % live.len()]])
        .collect())
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
            // The preferred (first) replica leads if it is live; otherwise the partition starts offline
            // and leads when that broker heartbeats.
            let leader = Some(replicas[0]).filter(|n| image.broker(*n).is_some_and(|b| !b.fenced));
            MetadataRecord::CreatePartition {
                topic_id,
                index: PartitionIndex((first_index + i) as i32),
                isr: replicas.clone(),
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
            Self {
                controller: Controller::new(ControllerConfig::default()),
                image: MetadataImage::new(),
                rng: SplitMix64::new(1),
                offset: 0,
            }
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
}
