//! The admin client: create and delete topics, list offsets, read metadata.

use spate_wire::kafka_protocol::messages::create_topics_request::CreatableTopic;
use spate_wire::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use spate_wire::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_wire::kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataResponse, TopicName,
};
use spate_wire::kafka_protocol::protocol::StrBytes;

use crate::cluster::{AutoCreate, ClientConfig, Cluster};
use crate::connection::Connection;
use crate::error::ClientError;
use crate::protocol::{CREATE_TOPICS_VERSION, DELETE_TOPICS_VERSION, LIST_OFFSETS_VERSION};

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

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Partitions (-1: the broker's default).
    pub partitions: i32,
    /// Topic configs (`retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and default configs.
    pub fn new(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.to_string(),
            partitions,
            configs: Vec::new(),
        }
    }
}

/// Admin operations over one connection.
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
                            .with_replication_factor(-1)
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
                ClientError::check(r.error_code, || format!("create topic {}", t.name))
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
        let conn = self.cluster.connection().await?;
        list_offset(conn, topic, partition, spec).await
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
}
