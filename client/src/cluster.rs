//! The brokers of a cluster, one lazily opened connection to each, and the cached topic
//! metadata with every partition's leader; shared by the producer, the consumer and the admin
//! client.
//!
//! The client bootstraps at one address. Its first Metadata answer lists the live brokers:
//! from then on [`Cluster`] knows each broker's id and address, and opens a connection to a
//! broker the first time a request must go there (a partition it leads, a group it
//! coordinates). The bootstrap connection is kept as the connection of the broker whose
//! advertised address it is, so a single broker costs one connection, as before.
//!
//! Routing: Produce, Fetch and ListOffsets for a partition go to [`Cluster::leader`]'s
//! connection; Metadata, CreateTopics and the like go to any idle connection
//! ([`Cluster::connection`]). A leader that moved answers NOT_LEADER_OR_FOLLOWER: callers
//! refresh metadata ([`ClientError::refreshes_metadata`]) after the backoff and retry.
//!
//! Invariants: at most one connection per broker in the latest metadata (plus the bootstrap
//! connection before the first metadata names its broker), so connections are bounded by
//! [`BROKERS_MAX`]; a refresh drops a connection with requests in flight only when its broker
//! is listed at a new address (restarted), and keeps a busy broker that left the list until
//! its connection is idle. Callers that cannot lose requests in flight (the producer) refresh
//! only when they have none.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use spate_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_wire::kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use spate_wire::kafka_protocol::protocol::StrBytes;

pub use spate_wire::kafka_protocol::messages::BrokerId;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::ClientError;
use crate::protocol::{FIND_COORDINATOR_VERSION, METADATA_VERSION};

/// Brokers the client keeps track of, at most: a bound on connections and on the broker list
/// a Metadata answer may grow (brokers past it are ignored).
pub const BROKERS_MAX: usize = 256;

/// Settings common to the producer, consumer and admin client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The broker to bootstrap from: its Metadata names the others.
    pub bootstrap: SocketAddr,
    /// Connection limits and client id (per broker connection).
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
    /// Leader node id per partition (index = partition id), -1 if none.
    pub leaders: Vec<i32>,
}

/// A broker as Metadata lists it.
#[derive(Debug)]
struct Node {
    id: BrokerId,
    /// Where it listens, `None` if its advertised host does not resolve.
    addr: Option<SocketAddr>,
    conn: Option<Connection>,
}

/// The brokers, their connections and the metadata cache.
#[derive(Debug)]
pub struct Cluster {
    config: ClientConfig,
    nodes: Vec<Node>,
    /// The connection to the bootstrap address until a Metadata answer names its broker.
    bootstrap: Option<Connection>,
    topics: HashMap<String, TopicMetadata>,
    controller: Option<BrokerId>,
}

/// Which connection a Metadata request goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Node(usize),
    Bootstrap,
}

impl Cluster {
    /// Connects to the bootstrap broker and learns the cluster's brokers from it.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the connection fails, errors of the Metadata call.
    pub async fn connect(config: ClientConfig) -> Result<Cluster, ClientError> {
        let conn = Connection::connect(config.bootstrap, config.connection.clone()).await?;
        let mut cluster = Cluster {
            config,
            nodes: Vec::new(),
            bootstrap: Some(conn),
            topics: HashMap::new(),
            controller: None,
        };
        cluster.refresh(Some(&[]), AutoCreate::Deny).await?;
        Ok(cluster)
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The ids of the brokers of the latest metadata, in its order.
    pub fn broker_ids(&self) -> impl Iterator<Item = BrokerId> + '_ {
        self.nodes.iter().map(|n| n.id)
    }

    /// Brokers known (at least 1 for the bootstrap broker before any metadata).
    pub fn broker_count(&self) -> usize {
        self.nodes.len().max(1)
    }

    /// The controller the latest metadata named.
    pub fn controller(&self) -> Option<BrokerId> {
        self.controller
    }

    /// The leader of `topic`/`partition` in the cached metadata.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<BrokerId> {
        let t = self.topics.get(topic)?;
        let leader = *t.leaders.get(usize::try_from(partition).ok()?)?;
        (leader >= 0).then_some(BrokerId(leader))
    }

    /// An idle connection to any broker (for Metadata, CreateTopics, ...), opening one if
    /// every open connection is busy.
    ///
    /// # Errors
    /// [`ClientError::Io`] if connecting fails, [`ClientError::InvalidArgument`] if every
    /// broker's connection has requests in flight.
    pub async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        match self.idle_target() {
            Some(target) => self.open(target).await,
            None => Err(ClientError::InvalidArgument(
                "no idle connection: every broker has requests in flight".to_owned(),
            )),
        }
    }

    /// The connection to broker `id`, opened if needed.
    ///
    /// # Errors
    /// [`ClientError::UnknownBroker`] if the metadata does not list it (or its host does not
    /// resolve), [`ClientError::Io`] if connecting fails.
    pub async fn broker_connection(
        &mut self,
        id: BrokerId,
    ) -> Result<&mut Connection, ClientError> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or(ClientError::UnknownBroker { broker: id.0 })?;
        self.open(Target::Node(i)).await
    }

    /// The open connection to broker `id`, if any.
    pub fn open_connection(&mut self, id: BrokerId) -> Option<&mut Connection> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .and_then(|n| n.conn.as_mut())
    }

    /// Requests in flight to broker `id` (0 without a connection).
    pub fn in_flight(&self, id: BrokerId) -> usize {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .and_then(|n| n.conn.as_ref())
            .map_or(0, Connection::in_flight)
    }

    /// Drops the connection to broker `id` after an I/O or protocol error; the next request
    /// there reconnects.
    pub fn disconnect(&mut self, id: BrokerId) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.id == id) {
            n.conn = None;
        }
    }

    /// Drops the connection to `addr`, whichever broker (or the bootstrap) it is.
    pub fn disconnect_addr(&mut self, addr: SocketAddr) {
        for n in &mut self.nodes {
            if n.conn.as_ref().is_some_and(|c| c.addr() == addr) {
                n.conn = None;
            }
        }
        if self.bootstrap.as_ref().is_some_and(|c| c.addr() == addr) {
            self.bootstrap = None;
        }
    }

    /// Waits for the next response from any broker with requests in flight, and says which
    /// broker answered. `None` if nothing is in flight. Cancel-safe as
    /// [`Connection::receive`] is.
    pub async fn receive_any(
        &mut self,
    ) -> Option<(
        BrokerId,
        Result<crate::connection::RawResponse, ClientError>,
    )> {
        type Receive<'a> = std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = (
                            BrokerId,
                            Result<crate::connection::RawResponse, ClientError>,
                        ),
                    > + 'a,
            >,
        >;
        // One boxed future per busy connection, per call: per response, not per record.
        let mut receives: Vec<Receive<'_>> = self
            .nodes
            .iter_mut()
            .filter_map(|n| {
                let id = n.id;
                let conn = n.conn.as_mut().filter(|c| c.in_flight() > 0)?;
                Some(Box::pin(async move { (id, conn.receive().await) }) as Receive<'_>)
            })
            .collect();
        if receives.is_empty() {
            return None;
        }
        Some(
            std::future::poll_fn(|cx| {
                for r in &mut receives {
                    if let std::task::Poll::Ready(out) = r.as_mut().poll(cx) {
                        return std::task::Poll::Ready(out);
                    }
                }
                std::task::Poll::Pending
            })
            .await,
        )
    }

    /// Cached metadata of `topic`.
    pub fn topic(&self, topic: &str) -> Option<&TopicMetadata> {
        self.topics.get(topic)
    }

    /// Asks a broker for the metadata of `topics` (all topics if `None`) and caches it, with
    /// the broker list and the controller. Tries each broker in turn (idle connections first)
    /// until one answers, then the bootstrap address. With [`AutoCreate::Allow`], the broker
    /// creates missing topics if it is configured to.
    ///
    /// # Errors
    /// The last connection error if no broker answers; per-topic errors are not raised here
    /// but leave the topic out of the cache (see [`Cluster::partitions`]).
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
        let mut last = None;
        for target in self.metadata_targets() {
            let conn = match self.open(target).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let addr = conn.addr();
            match conn
                .call::<_, MetadataResponse>(ApiKey::Metadata, METADATA_VERSION, &request)
                .await
            {
                Ok(response) => {
                    self.apply(&response);
                    return Ok(response);
                }
                Err(e) => {
                    self.disconnect_addr(addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::InvalidArgument("no idle connection for metadata".to_owned())
        }))
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

    /// The coordinator of consumer group `group` (FindCoordinator), retried with the backoff
    /// while the broker answers COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR (the offsets
    /// topic is created on first use) or the connection fails.
    ///
    /// # Errors
    /// The broker's error code or the connection error after `retries_max` retries.
    pub async fn coordinator(&mut self, group: &str) -> Result<BrokerId, ClientError> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_owned()))
            .with_key_type(0);
        let mut attempts = 0;
        loop {
            let result = self.find_coordinator(&request, group).await;
            match result {
                Ok(id) => return Ok(id),
                Err(e)
                    if (e.is_retriable() || e.finds_coordinator())
                        && attempts < self.config.retries_max =>
                {
                    attempts += 1;
                    self.backoff().await;
                    // The coordinator may be a broker this client has not heard of yet.
                    let _ = self.refresh(Some(&[]), AutoCreate::Deny).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn find_coordinator(
        &mut self,
        request: &FindCoordinatorRequest,
        group: &str,
    ) -> Result<BrokerId, ClientError> {
        let conn = self.connection().await?;
        let addr = conn.addr();
        let response: FindCoordinatorResponse = match conn
            .call(ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION, request)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.disconnect_addr(addr);
                return Err(e);
            }
        };
        ClientError::check(response.error_code, || {
            format!("find coordinator of group {group}")
        })?;
        let id = response.node_id;
        if !self.nodes.iter().any(|n| n.id == id) && self.nodes.len() < BROKERS_MAX {
            self.nodes.push(Node {
                id,
                addr: resolve(response.host.as_str(), response.port),
                conn: None,
            });
        }
        Ok(id)
    }

    /// Sleeps for the retry backoff.
    pub async fn backoff(&self) {
        glommio::timer::sleep(Duration::from_millis(self.config.retry_backoff_ms)).await;
    }

    /// An idle open connection, else a broker not connected yet, else the bootstrap address.
    fn idle_target(&self) -> Option<Target> {
        let idle_node = self
            .nodes
            .iter()
            .position(|n| n.conn.as_ref().is_some_and(|c| c.in_flight() == 0));
        if let Some(i) = idle_node {
            return Some(Target::Node(i));
        }
        if self.bootstrap.as_ref().is_some_and(|c| c.in_flight() == 0) {
            return Some(Target::Bootstrap);
        }
        let closed = self
            .nodes
            .iter()
            .position(|n| n.conn.is_none() && n.addr.is_some());
        if let Some(i) = closed {
            return Some(Target::Node(i));
        }
        self.bootstrap.is_none().then_some(Target::Bootstrap)
    }

    /// Where to ask for metadata, in order: idle connections, the bootstrap connection,
    /// brokers not connected, and last the bootstrap address again.
    fn metadata_targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::with_capacity(self.nodes.len() + 2);
        let idle = |n: &Node| n.conn.as_ref().is_some_and(|c| c.in_flight() == 0);
        targets.extend(
            (0..self.nodes.len())
                .filter(|&i| idle(&self.nodes[i]))
                .map(Target::Node),
        );
        if self.bootstrap.as_ref().is_some_and(|c| c.in_flight() == 0) {
            targets.push(Target::Bootstrap);
        }
        targets.extend(
            (0..self.nodes.len())
                .filter(|&i| self.nodes[i].conn.is_none() && self.nodes[i].addr.is_some())
                .map(Target::Node),
        );
        if self.bootstrap.is_none() {
            targets.push(Target::Bootstrap);
        }
        targets
    }

    /// The connection of `target`, opened if needed. The bootstrap target, when its
    /// connection is busy, is not used (callers only pick it idle or absent).
    async fn open(&mut self, target: Target) -> Result<&mut Connection, ClientError> {
        let config = self.config.connection.clone();
        match target {
            Target::Node(i) => {
                let node = &mut self.nodes[i];
                if node.conn.is_none() {
                    let addr = node
                        .addr
                        .ok_or(ClientError::UnknownBroker { broker: node.id.0 })?;
                    node.conn = Some(Connection::connect(addr, config).await?);
                }
                Ok(node.conn.as_mut().expect("connected above"))
            }
            Target::Bootstrap => {
                if self.bootstrap.is_none() {
                    let conn = Connection::connect(self.config.bootstrap, config).await?;
                    self.bootstrap = Some(conn);
                }
                Ok(self.bootstrap.as_mut().expect("connected above"))
            }
        }
    }

    /// Takes a Metadata answer's brokers, controller and topics.
    fn apply(&mut self, response: &MetadataResponse) {
        self.controller = (response.controller_id.0 >= 0).then_some(response.controller_id);
        if !response.brokers.is_empty() {
            let mut old = std::mem::take(&mut self.nodes);
            for b in response.brokers.iter().take(BROKERS_MAX) {
                let addr = resolve(b.host.as_str(), b.port);
                let conn = old
                    .iter_mut()
                    .find(|n| n.id == b.node_id && n.addr == addr)
                    .and_then(|n| n.conn.take());
                self.nodes.push(Node {
                    id: b.node_id,
                    addr,
                    conn,
                });
            }
            // A broker that left the list keeps its slot while requests are in flight to it; one
            // listed at a new address (restarted) gets a new connection, its old one is dropped.
            for n in old {
                let busy = n.conn.as_ref().is_some_and(|c| c.in_flight() > 0);
                let listed = self.nodes.iter().any(|x| x.id == n.id);
                if busy && !listed && self.nodes.len() < BROKERS_MAX {
                    self.nodes.push(n);
                }
            }
            self.adopt_bootstrap();
        }
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
    }

    /// Moves an idle bootstrap connection to the broker advertising its address (or drops
    /// it if that broker has one already or no broker advertises it: connections stay
    /// bounded by the broker count).
    fn adopt_bootstrap(&mut self) {
        let Some(conn) = self.bootstrap.take_if(|c| c.in_flight() == 0) else {
            return;
        };
        if let Some(n) = self
            .nodes
            .iter_mut()
            .find(|n| n.addr == Some(conn.addr()) && n.conn.is_none())
        {
            n.conn = Some(conn);
        }
    }
}

/// The first address `host:port` resolves to (a literal IP in the usual case).
fn resolve(host: &str, port: i32) -> Option<SocketAddr> {
    let port = u16::try_from(port).ok()?;
    (host, port).to_socket_addrs().ok()?.next()
}

/// Whether a Metadata request may create missing topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCreate {
    /// Let the broker create them (if it is configured to).
    Allow,
    /// Only report them missing.
    Deny,
}
