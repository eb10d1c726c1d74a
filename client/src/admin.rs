//! The admin client: create and delete topics, list offsets, read metadata.

use spate_wire::kafka_protocol::messages::create_topics_request::CreatableTopic;
use spate_wire::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use spate_wire::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_wire::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeQuorumRequest, DescribeQuorumResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataResponse, TopicName,
};
use spate_wire::kafka_protocol::protocol::StrBytes;

use crate::cluster::{AutoCreate, ClientConfig, Cluster};
use crate::connection::Connection;
use crate::error::ClientError;
use crate::protocol::{
    ALTER_PARTITION_REASSIGNMENTS_VERSION, API_VERSIONS_VERSION, CREATE_PARTITIONS_VERSION,
    CREATE_TOPICS_VERSION, DELETE_RECORDS_VERSION, DELETE_TOPICS_VERSION, DESCRIBE_CLUSTER_VERSION,
    DESCRIBE_CONFIGS_VERSION, DESCRIBE_LOG_DIRS_VERSION, DESCRIBE_QUORUM_VERSION,
    ELECT_LEADERS_VERSION, INCREMENTAL_ALTER_CONFIGS_VERSION, LIST_OFFSETS_VERSION,
    LIST_PARTITION_REASSIGNMENTS_VERSION, UNREGISTER_BROKER_VERSION,
};

/// One operation of [`Admin::alter_topic_configs`], Kafka's IncrementalAlterConfigs ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOperation {
    /// Set the config to this value.
    Set(String),
    /// Remove the topic's override (back to the broker's default).
    Delete,
    /// Add these comma-separated items to a list config.
    Append(String),
    /// Remove these comma-separated items from a list config.
    Subtract(String),
}

/// One config of a topic as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfigEntry {
    /// The config's name.
    pub name: String,
    /// Its value (`None` for sensitive configs).
    pub value: Option<String>,
    /// Where it comes from: Kafka's source name (`DYNAMIC_TOPIC_CONFIG`, `STATIC_BROKER_CONFIG`,
    /// `DEFAULT_CONFIG`...).
    pub source: &'static str,
}

/// Kafka's config source names, by number.
fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        _ => "UNKNOWN",
    }
}

/// One broker of a [`ClusterDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// The broker id.
    pub id: i32,
    /// The host it advertises.
    pub host: String,
    /// The port it advertises.
    pub port: i32,
    /// Its rack, if configured.
    pub rack: Option<String>,
    /// Whether the controller fenced it (missed heartbeats); `None` when the answer came from
    /// Metadata, which lists live brokers only and does not say.
    pub fenced: Option<bool>,
}

/// The cluster as DescribeCluster (or, from a broker without it, Metadata) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: Option<String>,
    /// The active controller's id, if there is one.
    pub controller: Option<i32>,
    /// The brokers, by id.
    pub brokers: Vec<BrokerDescription>,
    /// Which API answered.
    pub source: ApiKey,
}

/// One copy of the metadata log in a [`QuorumDescription`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumReplica {
    /// The broker.
    pub id: i32,
    /// The offset after the last record it holds (-1: unknown).
    pub log_end: i64,
    /// Wall-clock ms the leader last heard from it (-1: unknown).
    pub last_fetch_ms: i64,
    /// Wall-clock ms it last had all the leader had (-1: unknown).
    pub last_caught_up_ms: i64,
}

/// One partition replica a broker holds, as its DescribeLogDirs answer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLogDir {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Bytes of its log's segments.
    pub size_bytes: i64,
    /// Kafka's offset lag: the partition's high watermark as this broker knows it less the
    /// replica's log end, at least 0 (so 0 on a follower however far behind it is).
    pub offset_lag: i64,
    /// The replica's log end, from Spate's tag (`None` from a broker that does not send it).
    pub log_end_offset: Option<i64>,
}

/// The metadata quorum as its leader sees it (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The quorum's leader (the active controller).
    pub leader: i32,
    /// Its epoch (Raft term).
    pub epoch: i32,
    /// The committed end of the metadata log.
    pub high_watermark: i64,
    /// The voters, by id.
    pub voters: Vec<QuorumReplica>,
    /// Brokers that follow the log without voting, by id.
    pub observers: Vec<QuorumReplica>,
}

/// One partition's move for [`Admin::alter_partition_reassignments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMove {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The replicas to move to, preferred leader first; `None` cancels the ongoing move.
    pub replicas: Option<Vec<i32>>,
}

/// One partition's answer to [`Admin::alter_partition_reassignments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveResult {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// 0 when the move started (or was cancelled), else the Kafka error code.
    pub error_code: i16,
    /// The controller's explanation of an error.
    pub message: Option<String>,
}

/// An ongoing reassignment, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingMove {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Every replica during the move: the target ones first, then those being removed.
    pub replicas: Vec<i32>,
    /// Replicas being added (catching up).
    pub adding: Vec<i32>,
    /// Replicas removed once every target replica is in sync.
    pub removing: Vec<i32>,
}

/// How many times a request that only the controller serves is sent again after
/// NOT_CONTROLLER (the controller moved between the Metadata answer and the request).
const CONTROLLER_ATTEMPTS_MAX: usize = 5;

/// Where to start reading a partition, or which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// This exact offset.
    Offset(i64),
    /// The log start offset.
    Earliest,
    /// The log end offset (the next offset to be written).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The ListOffsets `timestamp` field for this spec (`None` for an exact offset).
    pub fn to_list_offsets_timestamp(self) -> Option<i64> {
        match self {
            OffsetSpec::Offset(_) => None,
            OffsetSpec::Earliest => Some(-2),
            OffsetSpec::Latest => Some(-1),
            OffsetSpec::Timestamp(t) => Some(t),
        }
    }
}

/// The version of `api` to use with the broker on `conn`: the highest both it (in its
/// ApiVersions answer) and this client (`ours`) speak, or `None` if it does not advertise one.
///
/// # Errors
/// Connection or codec errors, the broker's error code.
async fn negotiated_version(
    conn: &mut Connection,
    api: ApiKey,
    ours: i16,
) -> Result<Option<i16>, ClientError> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("spate-client"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let versions: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, API_VERSIONS_VERSION, &request)
        .await?;
    ClientError::check(versions.error_code, || "api versions".to_owned())?;
    Ok(versions
        .api_keys
        .iter()
        .find(|k| k.api_key == api as i16)
        .filter(|k| k.max_version >= 0 && k.min_version <= ours)
        .map(|k| k.max_version.min(ours)))
}

/// Resolves `spec` for one partition with a ListOffsets call on `conn`.
///
/// # Errors
/// Connection errors, the partition's error code, [`ClientError::InvalidArgument`] if the
/// response lacks the partition. A timestamp past the last record resolves to -1, as in Kafka.
pub async fn list_offset(
    conn: &mut Connection,
    topic: &str,
    partition: i32,
    spec: OffsetSpec,
) -> Result<i64, ClientError> {
    let Some(timestamp) = spec.to_list_offsets_timestamp() else {
        if let OffsetSpec::Offset(o) = spec {
            return Ok(o);
        }
        unreachable!("only Offset has no timestamp");
    };
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse = conn
        .call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &request)
        .await?;
    let p = response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            ClientError::InvalidArgument(format!("list offsets response lacks {topic}/{partition}"))
        })?;
    ClientError::check(p.error_code, || format!("list offsets {topic}/{partition}"))?;
    Ok(p.offset)
}

/// Resolves `spec` for one partition with a ListOffsets call on its leader's connection,
/// refreshing metadata and retrying (after the backoff, up to `retries_max` times) while the
/// leader is unknown or moved or its connection fails. The leader's connection must be idle.
///
/// # Errors
/// As [`list_offset`], and [`ClientError::RetriesExhausted`] when retries run out.
pub async fn list_offset_at_leader(
    cluster: &mut Cluster,
    topic: &str,
    partition: i32,
    spec: OffsetSpec,
) -> Result<i64, ClientError> {
    if let OffsetSpec::Offset(o) = spec {
        return Ok(o);
    }
    let mut attempts = 0;
    loop {
        let error = match cluster.leader(topic, partition) {
            None => ClientError::NoLeader {
                topic: topic.to_owned(),
                partition,
            },
            Some(leader) => {
                let result = match cluster.broker_connection(leader).await {
                    Ok(conn) => list_offset(conn, topic, partition, spec).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(offset) => return Ok(offset),
                    Err(e) => {
                        if matches!(e, ClientError::Io { .. } | ClientError::Closed { .. }) {
                            cluster.disconnect(leader);
                        }
                        e
                    }
                }
            }
        };
        if !error.is_retriable() {
            return Err(error);
        }
        if attempts >= cluster.config().retries_max {
            return Err(ClientError::RetriesExhausted {
                attempts: attempts + 1,
                last: Box::new(error),
            });
        }
        attempts += 1;
        if attempts > 1 || cluster.topic(topic).is_some() {
            cluster.backoff().await;
        }
        let _ = cluster.refresh(Some(&[topic]), AutoCreate::Deny).await;
    }
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Partitions (-1: the broker's default).
    pub partitions: i32,
    /// Copies of each partition (-1: the broker's default).
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and default configs.
    pub fn new(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }
}

/// Admin operations: topic changes and metadata over any broker's connection, ListOffsets at
/// each partition's leader, group calls at the group's coordinator.
#[derive(Debug)]
pub struct Admin {
    pub(crate) cluster: Cluster,
    timeout_ms: i32,
}

impl Admin {
    /// Connects.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the broker cannot be reached.
    pub async fn connect(config: ClientConfig) -> Result<Admin, ClientError> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
            timeout_ms: 30_000,
        })
    }

    /// Creates topics; one result per topic, in order.
    ///
    /// # Errors
    /// Connection or codec errors for the whole call; per-topic errors (e.g.
    /// `TopicAlreadyExists`) are in the returned list.
    pub async fn create_topics(
        &mut self,
        topics: &[NewTopic],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        use spate_wire::kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let conn = self.cluster.connection().await?;
        let response: CreateTopicsResponse = conn
            .call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &request)
            .await?;
        Ok(topics
            .iter()
            .map(|t| {
                let r = response
                    .topics
                    .iter()
                    .find(|r| r.name.0.as_str() == t.name)
                    .ok_or_else(|| {
                        ClientError::InvalidArgument(format!("no result for topic {}", t.name))
                    })?;
                ClientError::check(r.error_code, || {
                    with_message(format!("create topic {}", t.name), &r.error_message)
                })
            })
            .collect())
    }

    /// Deletes topics by name; one result per topic, in order.
    ///
    /// # Errors
    /// As [`Admin::create_topics`].
    pub async fn delete_topics(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms)
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        DeleteTopicState::default()
                            .with_name(Some(TopicName(StrBytes::from_string((*n).to_string()))))
                    })
                    .collect(),
            );
        let conn = self.cluster.connection().await?;
        let response: DeleteTopicsResponse = conn
            .call(ApiKey::DeleteTopics, DELETE_TOPICS_VERSION, &request)
            .await?;
        Ok(names
            .iter()
            .map(|n| {
                let r = response
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().map(|x| x.0.as_str()) == Some(*n))
                    .ok_or_else(|| {
                        ClientError::InvalidArgument(format!("no result for topic {n}"))
                    })?;
                ClientError::check(r.error_code, || format!("delete topic {n}"))
            })
            .collect())
    }

    /// Resolves an offset of one partition (earliest, latest, by timestamp).
    ///
    /// # Errors
    /// See [`list_offset`].
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64, ClientError> {
        list_offset_at_leader(&mut self.cluster, topic, partition, spec).await
    }

    /// The cluster id, the controller and every broker: DescribeCluster (v2, fenced brokers
    /// included) if the broker advertises it in ApiVersions, else Metadata.
    ///
    /// # Errors
    /// Connection or codec errors, the broker's error code.
    pub async fn describe_cluster(&mut self) -> Result<ClusterDescription, ClientError> {
        let conn = self.cluster.connection().await?;
        let advertised =
            negotiated_version(conn, ApiKey::DescribeCluster, DESCRIBE_CLUSTER_VERSION).await?;
        let mut description = match advertised {
            Some(version) => {
                let request =
                    DescribeClusterRequest::default().with_include_fenced_brokers(version >= 2);
                let response: DescribeClusterResponse = conn
                    .call(ApiKey::DescribeCluster, version, &request)
                    .await?;
                ClientError::check(response.error_code, || "describe cluster".to_owned())?;
                ClusterDescription {
                    cluster_id: Some(response.cluster_id.to_string()),
                    controller: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
                    brokers: response
                        .brokers
                        .iter()
                        .map(|b| BrokerDescription {
                            id: b.broker_id.0,
                            host: b.host.to_string(),
                            port: b.port,
                            rack: b.rack.as_ref().map(|r| r.to_string()),
                            fenced: (version >= 2).then_some(b.is_fenced),
                        })
                        .collect(),
                    source: ApiKey::DescribeCluster,
                }
            }
            None => {
                let response = self.cluster.refresh(Some(&[]), AutoCreate::Deny).await?;
                ClusterDescription {
                    cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
                    controller: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
                    brokers: response
                        .brokers
                        .iter()
                        .map(|b| BrokerDescription {
                            id: b.node_id.0,
                            host: b.host.to_string(),
                            port: b.port,
                            rack: b.rack.as_ref().map(|r| r.to_string()),
                            fenced: None,
                        })
                        .collect(),
                    source: ApiKey::Metadata,
                }
            }
        };
        description.brokers.sort_by_key(|b| b.id);
        Ok(description)
    }

    /// The metadata quorum (DescribeQuorum), or `None` from a broker that does not advertise
    /// it (a single broker, which has no quorum).
    ///
    /// # Errors
    /// Connection or codec errors, the broker's error code.
    pub async fn describe_quorum(&mut self) -> Result<Option<QuorumDescription>, ClientError> {
        let conn = self.cluster.connection().await?;
        let Some(version) =
            negotiated_version(conn, ApiKey::DescribeQuorum, DESCRIBE_QUORUM_VERSION).await?
        else {
            return Ok(None);
        };
        use spate_wire::kafka_protocol::messages::describe_quorum_request::{
            PartitionData, TopicData,
        };
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let response: DescribeQuorumResponse =
            conn.call(ApiKey::DescribeQuorum, version, &request).await?;
        ClientError::check(response.error_code, || "describe quorum".to_owned())?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| {
                ClientError::InvalidArgument("describe quorum: no metadata partition".to_owned())
            })?;
        ClientError::check(p.error_code, || "describe quorum".to_owned())?;
        let replicas = |list: &[spate_wire::kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
            let mut out: Vec<QuorumReplica> = list
                .iter()
                .map(|r| QuorumReplica {
                    id: r.replica_id.0,
                    log_end: r.log_end_offset,
                    last_fetch_ms: if version >= 1 { r.last_fetch_timestamp } else { -1 },
                    last_caught_up_ms: if version >= 1 {
                        r.last_caught_up_timestamp
                    } else {
                        -1
                    },
                })
                .collect();
            out.sort_by_key(|r| r.id);
            out
        };
        Ok(Some(QuorumDescription {
            leader: p.leader_id.0,
            epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: replicas(&p.current_voters),
            observers: replicas(&p.observers),
        }))
    }

    /// The cluster's metadata for `topics` (all topics if `None`), without auto-creation.
    ///
    /// # Errors
    /// Connection or codec errors.
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
    ) -> Result<MetadataResponse, ClientError> {
        self.cluster.refresh(topics, AutoCreate::Deny).await
    }

    /// Starts, replaces or cancels partition reassignments (AlterPartitionReassignments,
    /// KIP-455), as `kafka-reassign-partitions --execute` (or `--cancel`) does. Sent to the
    /// controller the latest Metadata names, again after a refresh when it answers
    /// NOT_CONTROLLER. One result per partition, in the order given.
    ///
    /// # Errors
    /// Connection or codec errors, a request-level error code, or a cluster that does not offer
    /// the API (a single broker).
    pub async fn alter_partition_reassignments(
        &mut self,
        moves: &[PartitionMove],
    ) -> Result<Vec<MoveResult>, ClientError> {
        use spate_wire::kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        use spate_wire::kafka_protocol::messages::{
            AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
        };
        // One entry per topic, in first-seen order, so the answer maps back to `moves`.
        let mut topics: Vec<ReassignableTopic> = Vec::new();
        for m in moves {
            let partition = ReassignablePartition::default()
                .with_partition_index(m.partition)
                .with_replicas(
                    m.replicas
                        .as_ref()
                        .map(|r| r.iter().copied().map(BrokerId).collect()),
                );
            match topics.iter_mut().find(|t| t.name.0.as_str() == m.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(m.topic.clone())))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(60_000)
            .with_topics(topics);
        let mut attempt = 0;
        let response: AlterPartitionReassignmentsResponse = loop {
            attempt += 1;
            let conn = self.controller_connection().await?;
            let Some(version) = negotiated_version(
                conn,
                ApiKey::AlterPartitionReassignments,
                ALTER_PARTITION_REASSIGNMENTS_VERSION,
            )
            .await?
            else {
                return Err(ClientError::InvalidArgument(
                    "the broker does not offer AlterPartitionReassignments (a single broker has no other broker to move to)"
                        .to_owned(),
                ));
            };
            let response: AlterPartitionReassignmentsResponse = conn
                .call(ApiKey::AlterPartitionReassignments, version, &request)
                .await?;
            let not_controller = spate_wire::ErrorCode::NotController.code();
            if response.error_code == not_controller && attempt < CONTROLLER_ATTEMPTS_MAX {
                self.cluster.backoff().await;
                continue;
            }
            break response;
        };
        ClientError::check(response.error_code, || {
            let message = response.error_message.as_ref().map(|m| m.to_string());
            format!(
                "alter partition reassignments: {}",
                message.unwrap_or_default()
            )
        })?;
        Ok(response
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| MoveResult {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    error_code: p.error_code,
                    message: p.error_message.as_ref().map(|m| m.to_string()),
                })
            })
            .collect())
    }

    /// The ongoing reassignments (ListPartitionReassignments): every one when `topics` is
    /// `None`, else those of the named topics' partitions (all their partitions, read from
    /// Metadata), sorted by topic and partition.
    ///
    /// # Errors
    /// Connection or codec errors, a request-level error code, or a cluster that does not offer
    /// the API.
    pub async fn list_partition_reassignments(
        &mut self,
        topics: Option<&[&str]>,
    ) -> Result<Vec<OngoingMove>, ClientError> {
        use spate_wire::kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
        use spate_wire::kafka_protocol::messages::{
            ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
        };
        let named = match topics {
            None => None,
            Some(names) => {
                let metadata = self.metadata(Some(names)).await?;
                Some(
                    metadata
                        .topics
                        .iter()
                        .filter(|t| t.error_code == 0)
                        .map(|t| {
                            ListPartitionReassignmentsTopics::default()
                                .with_name(t.name.clone().unwrap_or_default())
                                .with_partition_indexes(
                                    t.partitions.iter().map(|p| p.partition_index).collect(),
                                )
                        })
                        .collect(),
                )
            }
        };
        let conn = self.cluster.connection().await?;
        let Some(version) = negotiated_version(
            conn,
            ApiKey::ListPartitionReassignments,
            LIST_PARTITION_REASSIGNMENTS_VERSION,
        )
        .await?
        else {
            return Err(ClientError::InvalidArgument(
                "the broker does not offer ListPartitionReassignments (a single broker)".to_owned(),
            ));
        };
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(60_000)
            .with_topics(named);
        let response: ListPartitionReassignmentsResponse = conn
            .call(ApiKey::ListPartitionReassignments, version, &request)
            .await?;
        ClientError::check(response.error_code, || {
            "list partition reassignments".to_owned()
        })?;
        let ids = |b: &[spate_wire::kafka_protocol::messages::BrokerId]| -> Vec<i32> {
            b.iter().map(|b| b.0).collect()
        };
        let mut out: Vec<OngoingMove> = response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| OngoingMove {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Every partition replica broker `node` holds (DescribeLogDirs for all topics, sent to
    /// that broker), sorted by topic and partition. A connection that failed is dropped, so a
    /// later call reconnects.
    ///
    /// # Errors
    /// [`ClientError::UnknownBroker`] if the latest metadata does not list `node` (a stopped
    /// broker, once fenced), connection or codec errors (a broker that is down), the broker's
    /// error code, a broker that does not offer DescribeLogDirs.
    pub async fn describe_log_dirs(
        &mut self,
        node: i32,
    ) -> Result<Vec<ReplicaLogDir>, ClientError> {
        let id = crate::cluster::BrokerId(node);
        let answer = self.describe_log_dirs_at(id).await;
        if matches!(
            answer,
            Err(ClientError::Io { .. } | ClientError::Closed { .. })
        ) {
            self.cluster.disconnect(id);
        }
        answer
    }

    async fn describe_log_dirs_at(
        &mut self,
        id: crate::cluster::BrokerId,
    ) -> Result<Vec<ReplicaLogDir>, ClientError> {
        use spate_wire::kafka_protocol::messages::{
            DescribeLogDirsRequest, DescribeLogDirsResponse,
        };
        let conn = self.cluster.broker_connection(id).await?;
        let Some(version) =
            negotiated_version(conn, ApiKey::DescribeLogDirs, DESCRIBE_LOG_DIRS_VERSION).await?
        else {
            return Err(ClientError::InvalidArgument(format!(
                "broker {} does not offer DescribeLogDirs",
                id.0
            )));
        };
        // No topics named: every partition the broker holds.
        let request = DescribeLogDirsRequest::default().with_topics(None);
        let response: DescribeLogDirsResponse = conn
            .call(ApiKey::DescribeLogDirs, version, &request)
            .await?;
        ClientError::check(response.error_code, || format!("broker {}", id.0))?;
        let mut out = Vec::new();
        for dir in &response.results {
            ClientError::check(dir.error_code, || {
                format!("broker {} log dir {}", id.0, dir.log_dir)
            })?;
            for t in &dir.topics {
                for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                    out.push(ReplicaLogDir {
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                        size_bytes: p.partition_size,
                        offset_lag: p.offset_lag,
                        log_end_offset: spate_wire::tags::log_end_offset(&p.unknown_tagged_fields)
                            .map(|o| o.0),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// A connection to the controller, as a fresh Metadata answer names it (any broker when it
    /// names none).
    async fn controller_connection(&mut self) -> Result<&mut Connection, ClientError> {
        self.cluster.refresh(Some(&[]), AutoCreate::Deny).await?;
        match self.cluster.controller() {
            Some(id) => self.cluster.broker_connection(id).await,
            None => self.cluster.connection().await,
        }
    }

    /// Preferred-leader election (ElectLeaders, type PREFERRED): moves each partition's
    /// leadership back to its first replica, as `kafka-leader-election --election-type
    /// PREFERRED` does. `None`: every partition. One (topic, partition, error code) per
    /// partition, sorted: 0 when elected, ELECTION_NOT_NEEDED (84) when the preferred replica
    /// leads already.
    ///
    /// # Errors
    /// Connection or codec errors, a request-level error code, or a broker that does not
    /// offer ElectLeaders (a single broker).
    pub async fn elect_preferred_leaders(
        &mut self,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<(String, i32, i16)>, ClientError> {
        use spate_wire::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let conn = self.cluster.connection().await?;
        let Some(version) =
            negotiated_version(conn, ApiKey::ElectLeaders, ELECT_LEADERS_VERSION).await?
        else {
            return Err(ClientError::InvalidArgument(
                "the broker does not offer ElectLeaders (a single broker has no other replica)"
                    .to_owned(),
            ));
        };
        let topics = partitions.map(|partitions| {
            let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
            for (topic, partition) in partitions {
                by_topic.entry(topic).or_default().push(*partition);
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                        .with_partitions(partitions)
                })
                .collect()
        });
        let request = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(topics)
            .with_timeout_ms(30_000);
        let response: ElectLeadersResponse =
            conn.call(ApiKey::ElectLeaders, version, &request).await?;
        ClientError::check(response.error_code, || "elect leaders".to_owned())?;
        let mut out: Vec<(String, i32, i16)> = response
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result
                    .iter()
                    .map(|p| (t.topic.0.to_string(), p.partition_id, p.error_code))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Changes one topic's configs with IncrementalAlterConfigs (`validate_only`: check, change
    /// nothing). The operations apply in order, all or none.
    ///
    /// # Errors
    /// Connection or codec errors; the topic's error code with the broker's message
    /// ([`ClientError::Broker`], e.g. INVALID_CONFIG); a broker without IncrementalAlterConfigs.
    pub async fn alter_topic_configs(
        &mut self,
        topic: &str,
        ops: &[(String, ConfigOperation)],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        use spate_wire::kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use spate_wire::kafka_protocol::messages::{
            IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
        };
        let conn = self.cluster.connection().await?;
        let Some(version) = negotiated_version(
            conn,
            ApiKey::IncrementalAlterConfigs,
            INCREMENTAL_ALTER_CONFIGS_VERSION,
        )
        .await?
        else {
            return Err(ClientError::InvalidArgument(
                "the broker does not offer IncrementalAlterConfigs".to_owned(),
            ));
        };
        let configs = ops
            .iter()
            .map(|(key, op)| {
                let (code, value) = match op {
                    ConfigOperation::Set(v) => (0, Some(v.as_str())),
                    ConfigOperation::Delete => (1, None),
                    ConfigOperation::Append(v) => (2, Some(v.as_str())),
                    ConfigOperation::Subtract(v) => (3, Some(v.as_str())),
                };
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(key.clone()))
                    .with_config_operation(code)
                    .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(configs)])
            .with_validate_only(validate_only);
        let response: IncrementalAlterConfigsResponse = conn
            .call(ApiKey::IncrementalAlterConfigs, version, &request)
            .await?;
        let Some(result) = response.responses.first() else {
            return Err(ClientError::InvalidArgument(
                "IncrementalAlterConfigs answered no resource".to_owned(),
            ));
        };
        ClientError::check(result.error_code, || {
            let message = result.error_message.as_deref().unwrap_or("");
            format!("topic {topic}: {message}")
        })
    }

    /// Grows `topic` to `count` partitions in all (CreatePartitions), the broker placing the
    /// new ones, as `kafka-topics --alter --partitions`.
    ///
    /// # Errors
    /// Connection or codec errors; the topic's error code with the broker's message
    /// (INVALID_PARTITIONS when `count` is not above the current count,
    /// UNKNOWN_TOPIC_OR_PARTITION); a broker without CreatePartitions.
    pub async fn create_partitions(&mut self, topic: &str, count: i32) -> Result<(), ClientError> {
        use spate_wire::kafka_protocol::messages::CreatePartitionsResponse;
        let conn = self.cluster.connection().await?;
        let Some(version) =
            negotiated_version(conn, ApiKey::CreatePartitions, CREATE_PARTITIONS_VERSION).await?
        else {
            return Err(ClientError::InvalidArgument(
                "the broker does not offer CreatePartitions".to_owned(),
            ));
        };
        let request = create_partitions_request(topic, count, self.timeout_ms);
        let response: CreatePartitionsResponse = conn
            .call(ApiKey::CreatePartitions, version, &request)
            .await?;
        let result = response
            .results
            .iter()
            .find(|r| r.name.0.as_str() == topic)
            .ok_or_else(|| ClientError::InvalidArgument(format!("no result for topic {topic}")))?;
        ClientError::check(result.error_code, || {
            with_message(format!("add partitions to {topic}"), &result.error_message)
        })
    }

    /// Deletes the records of one partition below `offset` (DeleteRecords at the partition's
    /// leader, as `kafka-delete-records`); -1 means the high watermark (everything). Returns
    /// the partition's new log start offset (low watermark). Retries, after a metadata
    /// refresh, while the leader is unknown or moved.
    ///
    /// # Errors
    /// Connection or codec errors; the partition's error code (OFFSET_OUT_OF_RANGE above the
    /// high watermark, UNKNOWN_TOPIC_OR_PARTITION); [`ClientError::RetriesExhausted`].
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, ClientError> {
        let mut attempts = 0;
        loop {
            let error = match self.delete_records_once(topic, partition, offset).await {
                Ok(low_watermark) => return Ok(low_watermark),
                Err(e) => e,
            };
            if !error.is_retriable() || attempts >= self.cluster.config().retries_max {
                return Err(error);
            }
            attempts += 1;
            self.cluster.backoff().await;
            let _ = self.cluster.refresh(Some(&[topic]), AutoCreate::Deny).await;
        }
    }

    async fn delete_records_once(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, ClientError> {
        use spate_wire::kafka_protocol::messages::DeleteRecordsResponse;
        if self.cluster.topic(topic).is_none() {
            self.cluster
                .refresh(Some(&[topic]), AutoCreate::Deny)
                .await?;
        }
        let leader =
            self.cluster
                .leader(topic, partition)
                .ok_or_else(|| ClientError::NoLeader {
                    topic: topic.to_owned(),
                    partition,
                })?;
        let request = delete_records_request(topic, partition, offset, self.timeout_ms);
        let result = match self.cluster.broker_connection(leader).await {
            Ok(conn) => {
                conn.call(ApiKey::DeleteRecords, DELETE_RECORDS_VERSION, &request)
                    .await
            }
            Err(e) => Err(e),
        };
        let response: DeleteRecordsResponse = match result {
            Ok(response) => response,
            Err(e) => {
                if matches!(e, ClientError::Io { .. } | ClientError::Closed { .. }) {
                    self.cluster.disconnect(leader);
                }
                return Err(e);
            }
        };
        delete_records_low_watermark(&response, topic, partition)
    }

    /// Every config of one topic with its value and source (DescribeConfigs).
    ///
    /// # Errors
    /// Connection or codec errors, the topic's error code (UNKNOWN_TOPIC_OR_PARTITION).
    pub async fn describe_topic_configs(
        &mut self,
        topic: &str,
    ) -> Result<Vec<TopicConfigEntry>, ClientError> {
        use spate_wire::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use spate_wire::kafka_protocol::messages::{
            DescribeConfigsRequest, DescribeConfigsResponse,
        };
        let conn = self.cluster.connection().await?;
        let Some(version) =
            negotiated_version(conn, ApiKey::DescribeConfigs, DESCRIBE_CONFIGS_VERSION).await?
        else {
            return Err(ClientError::InvalidArgument(
                "the broker does not offer DescribeConfigs".to_owned(),
            ));
        };
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configuration_keys(None),
        ]);
        let response: DescribeConfigsResponse = conn
            .call(ApiKey::DescribeConfigs, version, &request)
            .await?;
        let Some(result) = response.results.first() else {
            return Err(ClientError::InvalidArgument(
                "DescribeConfigs answered no resource".to_owned(),
            ));
        };
        ClientError::check(result.error_code, || format!("topic {topic}"))?;
        Ok(result
            .configs
            .iter()
            .map(|c| TopicConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: config_source_name(c.config_source),
            })
            .collect())
    }

    /// Starts (`Decommission::Start`) or cancels the decommission of broker `node`: the
    /// controller moves its leaderships, then its replicas, to the other brokers and places
    /// nothing new on it. Spate's broker config `spate.decommission` set with
    /// IncrementalAlterConfigs, sent to the controller the latest Metadata names (again after
    /// NOT_CONTROLLER).
    ///
    /// # Errors
    /// Connection or codec errors; the broker's refusal ([`ClientError::Broker`]):
    /// BROKER_ID_NOT_REGISTERED, INVALID_REPLICATION_FACTOR when the brokers left could not
    /// hold some partition's replicas, INVALID_REQUEST on a single broker.
    pub async fn decommission_broker(
        &mut self,
        node: i32,
        request: Decommission,
    ) -> Result<(), ClientError> {
        use spate_wire::kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use spate_wire::kafka_protocol::messages::{
            IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
        };
        let value = match request {
            Decommission::Start => "true",
            Decommission::Cancel => "false",
        };
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(BROKER_RESOURCE)
                .with_resource_name(StrBytes::from_string(node.to_string()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(DECOMMISSION_CONFIG))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str(value)))]),
        ]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.controller_connection().await?;
            let Some(version) = negotiated_version(
                conn,
                ApiKey::IncrementalAlterConfigs,
                INCREMENTAL_ALTER_CONFIGS_VERSION,
            )
            .await?
            else {
                return Err(ClientError::InvalidArgument(
                    "the broker does not offer IncrementalAlterConfigs".to_owned(),
                ));
            };
            let response: IncrementalAlterConfigsResponse = conn
                .call(ApiKey::IncrementalAlterConfigs, version, &request)
                .await?;
            let Some(result) = response.responses.first() else {
                return Err(ClientError::InvalidArgument(
                    "IncrementalAlterConfigs answered no resource".to_owned(),
                ));
            };
            let not_controller = spate_wire::ErrorCode::NotController.code();
            if result.error_code == not_controller && attempt < CONTROLLER_ATTEMPTS_MAX {
                self.cluster.backoff().await;
                continue;
            }
            return ClientError::check(result.error_code, || {
                with_message(format!("broker {node}"), &result.error_message)
            });
        }
    }

    /// Removes broker `node`'s registration for good (UnregisterBroker, as `kafka-cluster.sh
    /// unregister`): the last step of a decommission, once it holds no replica and is stopped.
    /// Sent to the controller the latest Metadata names (again after NOT_CONTROLLER).
    ///
    /// # Errors
    /// Connection or codec errors; the broker's refusal ([`ClientError::Broker`]):
    /// BROKER_ID_NOT_REGISTERED, INVALID_REQUEST while it is still a replica; a broker that
    /// does not offer the API (a single broker).
    pub async fn unregister_broker(&mut self, node: i32) -> Result<(), ClientError> {
        use spate_wire::kafka_protocol::messages::{
            BrokerId, UnregisterBrokerRequest, UnregisterBrokerResponse,
        };
        let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(node));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.controller_connection().await?;
            let Some(version) =
                negotiated_version(conn, ApiKey::UnregisterBroker, UNREGISTER_BROKER_VERSION)
                    .await?
            else {
                return Err(ClientError::InvalidArgument(
                    "the broker does not offer UnregisterBroker (a single broker has no other broker)"
                        .to_owned(),
                ));
            };
            let response: UnregisterBrokerResponse = conn
                .call(ApiKey::UnregisterBroker, version, &request)
                .await?;
            let not_controller = spate_wire::ErrorCode::NotController.code();
            if response.error_code == not_controller && attempt < CONTROLLER_ATTEMPTS_MAX {
                self.cluster.backoff().await;
                continue;
            }
            return ClientError::check(response.error_code, || {
                with_message(format!("broker {node}"), &response.error_message)
            });
        }
    }

    /// How far the decommission of broker `node` is, from the `spate.decommission*` entries
    /// DescribeConfigs gives for it (any broker of the cluster answers from its image; this
    /// asks the controller).
    ///
    /// # Errors
    /// Connection or codec errors; INVALID_REQUEST from a single broker or for an unknown id
    /// (no such entries), or entries that do not parse.
    pub async fn decommission_status(
        &mut self,
        node: i32,
    ) -> Result<DecommissionStatus, ClientError> {
        use spate_wire::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use spate_wire::kafka_protocol::messages::{
            DescribeConfigsRequest, DescribeConfigsResponse,
        };
        // The controller's image is the first to show a decommission it just accepted.
        let conn = self.controller_connection().await?;
        let Some(version) =
            negotiated_version(conn, ApiKey::DescribeConfigs, DESCRIBE_CONFIGS_VERSION).await?
        else {
            return Err(ClientError::InvalidArgument(
                "the broker does not offer DescribeConfigs".to_owned(),
            ));
        };
        let keys = [
            DECOMMISSION_CONFIG,
            "spate.decommission.replicas",
            "spate.decommission.leaderships",
            "spate.decommission.moving",
        ];
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(BROKER_RESOURCE)
                .with_resource_name(StrBytes::from_string(node.to_string()))
                .with_configuration_keys(Some(
                    keys.iter().map(|k| StrBytes::from_static_str(k)).collect(),
                )),
        ]);
        let response: DescribeConfigsResponse = conn
            .call(ApiKey::DescribeConfigs, version, &request)
            .await?;
        let Some(result) = response.results.first() else {
            return Err(ClientError::InvalidArgument(
                "DescribeConfigs answered no resource".to_owned(),
            ));
        };
        ClientError::check(result.error_code, || {
            with_message(format!("broker {node}"), &result.error_message)
        })?;
        let value = |key: &str| -> Result<String, ClientError> {
            result
                .configs
                .iter()
                .find(|c| c.name.as_str() == key)
                .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
                .ok_or_else(|| {
                    ClientError::InvalidArgument(format!(
                        "broker {node}: no {key} (not a broker of a cluster?)"
                    ))
                })
        };
        let count = |key: &str| -> Result<usize, ClientError> {
            value(key)?
                .parse()
                .map_err(|_| ClientError::InvalidArgument(format!("{key} is not a count")))
        };
        Ok(DecommissionStatus {
            node,
            draining: value(DECOMMISSION_CONFIG)? == "true",
            replicas: count("spate.decommission.replicas")?,
            leaderships: count("spate.decommission.leaderships")?,
            moving: count("spate.decommission.moving")?,
        })
    }
}

/// Start or cancel a decommission ([`Admin::decommission_broker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decommission {
    /// Start draining the broker.
    Start,
    /// Stop draining it (recommission).
    Cancel,
}

/// A broker's decommission progress ([`Admin::decommission_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecommissionStatus {
    /// The broker.
    pub node: i32,
    /// Whether it is draining.
    pub draining: bool,
    /// Partitions it is still a replica of.
    pub replicas: usize,
    /// Partitions it still leads.
    pub leaderships: usize,
    /// Partitions being moved off it now.
    pub moving: usize,
}

impl DecommissionStatus {
    /// Draining and holding no replica: it may be stopped and unregistered.
    pub fn is_complete(&self) -> bool {
        self.draining && self.replicas == 0
    }
}

/// The broker config that starts or cancels a decommission.
pub const DECOMMISSION_CONFIG: &str = "spate.decommission";

/// `what`, followed by the broker's error message when it sent one.
fn with_message(what: String, message: &Option<StrBytes>) -> String {
    match message.as_deref() {
        Some(m) if !m.is_empty() => format!("{what}: {m}"),
        _ => what,
    }
}

/// A CreatePartitions request growing `topic` to `count` partitions, placement left to the
/// broker.
fn create_partitions_request(
    topic: &str,
    count: i32,
    timeout_ms: i32,
) -> spate_wire::kafka_protocol::messages::CreatePartitionsRequest {
    use spate_wire::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    spate_wire::kafka_protocol::messages::CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_count(count)
            .with_assignments(None)])
        .with_timeout_ms(timeout_ms)
        .with_validate_only(false)
}

/// A DeleteRecords request for one partition: delete below `offset`.
fn delete_records_request(
    topic: &str,
    partition: i32,
    offset: i64,
    timeout_ms: i32,
) -> spate_wire::kafka_protocol::messages::DeleteRecordsRequest {
    use spate_wire::kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    spate_wire::kafka_protocol::messages::DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])])
        .with_timeout_ms(timeout_ms)
}

/// The new log start of `topic`/`partition` in a DeleteRecords answer.
///
/// # Errors
/// The partition's error code; [`ClientError::InvalidArgument`] if the answer lacks it.
fn delete_records_low_watermark(
    response: &spate_wire::kafka_protocol::messages::DeleteRecordsResponse,
    topic: &str,
    partition: i32,
) -> Result<i64, ClientError> {
    let p = response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "delete records response lacks {topic}/{partition}"
            ))
        })?;
    ClientError::check(p.error_code, || {
        format!("delete records {topic}/{partition}")
    })?;
    Ok(p.low_watermark)
}

/// Kafka's resource type of a topic in config requests.
const TOPIC_RESOURCE: i8 = 2;
/// Kafka's resource type of a broker's configs.
const BROKER_RESOURCE: i8 = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use spate_wire::kafka_protocol::messages::delete_records_response::{
        DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
    };
    use spate_wire::kafka_protocol::messages::DeleteRecordsResponse;
    use spate_wire::ErrorCode;

    #[test]
    fn create_partitions_asks_for_the_total_count_and_leaves_placement_to_the_broker() {
        let request = create_partitions_request("t", 5, 1000);
        assert_eq!(request.topics.len(), 1);
        assert_eq!(request.topics[0].name.0.as_str(), "t");
        assert_eq!(request.topics[0].count, 5);
        assert_eq!(request.topics[0].assignments, None);
        assert!(!request.validate_only);
        assert_eq!(request.timeout_ms, 1000);
    }

    fn delete_answer(partition: i32, low_watermark: i64, error_code: i16) -> DeleteRecordsResponse {
        DeleteRecordsResponse::default().with_topics(vec![DeleteRecordsTopicResult::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![DeleteRecordsPartitionResult::default()
                .with_partition_index(partition)
                .with_low_watermark(low_watermark)
                .with_error_code(error_code)])])
    }

    #[test]
    fn delete_records_names_one_partition_and_reads_back_its_new_log_start() {
        let request = delete_records_request("t", 2, 40, 1000);
        assert_eq!(request.topics.len(), 1);
        let p = &request.topics[0].partitions;
        assert_eq!((p.len(), p[0].partition_index, p[0].offset), (1, 2, 40));
        assert_eq!(
            delete_records_low_watermark(&delete_answer(2, 40, 0), "t", 2).unwrap(),
            40
        );
        let refused = delete_records_low_watermark(&delete_answer(2, -1, 1), "t", 2).unwrap_err();
        assert!(
            matches!(
                refused,
                ClientError::Broker {
                    code: ErrorCode::OffsetOutOfRange,
                    ..
                }
            ),
            "{refused}"
        );
        assert!(matches!(
            delete_records_low_watermark(&delete_answer(3, 0, 0), "t", 2),
            Err(ClientError::InvalidArgument(_))
        ));
    }

    #[test]
    fn broker_messages_follow_what_failed() {
        let message = Some(StrBytes::from_static_str("count must grow"));
        assert_eq!(
            with_message("add partitions to t".to_owned(), &message),
            "add partitions to t: count must grow"
        );
        assert_eq!(with_message("x".to_owned(), &None), "x");
        assert_eq!(
            with_message("x".to_owned(), &Some(StrBytes::from_static_str(""))),
            "x"
        );
    }
}
