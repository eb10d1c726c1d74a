//! The connection to the bootstrap broker and the cached topic metadata, shared by the
//! producer, the consumer and the admin client.
//!
//! Spate is a single-node broker (its cores are internal), so every partition's leader is the
//! broker the client bootstrapped from: the client keeps one connection and does not follow
//! leaders to other nodes. Multi-broker clusters are not supported yet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use spate_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_wire::kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::ClientError;
use crate::protocol::METADATA_VERSION;

/// Settings common to the producer, consumer and admin client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The broker to talk to.
    pub bootstrap: SocketAddr,
    /// Connection limits and client id.
    pub connection: ConnectionConfig,
    /// Attempts after the first one for a call that failed with a retriable error.
    pub retries_max: u32,
    /// Pause before a retry (after refreshing metadata).
    pub retry_backoff_ms: u64,
}

impl ClientConfig {
    /// Defaults for talking to `bootstrap`.
    pub fn new(bootstrap: SocketAddr) -> ClientConfig {
        ClientConfig {
            bootstrap,
            connection: ConnectionConfig::default(),
            retries_max: 5,
            retry_backoff_ms: 100,
        }
    }
}

/// What the client knows about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Leader node id per partition (index = partition id).
    pub leaders: Vec<i32>,
}

/// One connection plus the metadata cache.
#[derive(Debug)]
pub struct Cluster {
    config: ClientConfig,
    conn: Option<Connection>,
    topics: HashMap<String, TopicMetadata>,
}

impl Cluster {
    /// Connects to the bootstrap broker.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the connection fails.
    pub async fn connect(config: ClientConfig) -> Result<Cluster, ClientError> {
        let conn = Connection::connect(config.bootstrap, config.connection.clone()).await?;
        Ok(Cluster {
            config,
            conn: Some(conn),
            topics: HashMap::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The connection, reconnecting if the last one failed.
    ///
    /// # Errors
    /// [`ClientError::Io`] if reconnecting fails.
    pub async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        if self.conn.is_none() {
            let conn =
                Connection::connect(self.config.bootstrap, self.config.connection.clone()).await?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Drops the connection after an I/O or protocol error; the next call reconnects.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Cached metadata of `topic`.
    pub fn topic(&self, topic: &str) -> Option<&TopicMetadata> {
        self.topics.get(topic)
    }

    /// Asks the broker for the metadata of `topics` (all topics if `None`) and caches it.
    /// With [`AutoCreate::Allow`], the broker creates missing topics if it is configured to.
    ///
    /// # Errors
    /// Connection errors; per-topic errors are not raised here but leave the topic out of the
    /// cache (see [`Cluster::partitions`]).
    pub async fn refresh(
        &mut self,
        topics: Option<&[&str]>,
        auto_create: AutoCreate,
    ) -> Result<MetadataResponse, ClientError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string((*n).to_string()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create == AutoCreate::Allow);
        let conn = self.connection().await?;
        let response: MetadataResponse = match conn
            .call(ApiKey::Metadata, METADATA_VERSION, &request)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.disconnect();
                return Err(e);
            }
        };
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            if topic.error_code != 0 {
                self.topics.remove(name.as_str());
                continue;
            }
            let mut leaders = vec![-1; topic.partitions.len()];
            for p in &topic.partitions {
                if let Some(slot) = usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| leaders.get_mut(i))
                {
                    *slot = p.leader_id.0;
                }
            }
            self.topics.insert(
                name.to_string(),
                TopicMetadata {
                    name: name.to_string(),
                    partitions: topic.partitions.len() as i32,
                    leaders,
                },
            );
        }
        Ok(response)
    }

    /// The partition count of `topic`, asking the broker (and letting it auto-create) if not
    /// cached.
    ///
    /// # Errors
    /// [`ClientError::Broker`] with the topic's error code if the broker does not know it,
    /// connection errors.
    pub async fn partitions(&mut self, topic: &str) -> Result<i32, ClientError> {
        if let Some(t) = self.topics.get(topic) {
            return Ok(t.partitions);
        }
        let response = self.refresh(Some(&[topic]), AutoCreate::Allow).await?;
        if let Some(t) = self.topics.get(topic) {
            if t.partitions > 0 {
                return Ok(t.partitions);
            }
        }
        let code = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|x| x.0.as_str()) == Some(topic))
            .map_or(3, |t| t.error_code);
        ClientError::check(code, || format!("metadata of topic {topic}"))?;
        Err(ClientError::NoLeader {
            topic: topic.to_string(),
            partition: 0,
        })
    }

    /// Sleeps for the retry backoff.
    pub async fn backoff(&self) {
        glommio::timer::sleep(Duration::from_millis(self.config.retry_backoff_ms)).await;
    }
}

/// Whether a Metadata request may create missing topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCreate {
    /// Let the broker create them (if it is configured to).
    Allow,
    /// Only report them missing.
    Deny,
}
