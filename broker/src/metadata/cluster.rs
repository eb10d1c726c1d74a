//! What clients are told about the cluster itself: its id, its brokers and their client
//! endpoints, and which node is the active controller. Metadata, DescribeCluster and
//! FindCoordinator answer from one [`ClusterView`], so they never disagree.
//!
//! A single broker is a cluster of one: itself, as broker and controller. The cluster's
//! metadata image (broker registrations, fencing, the quorum's leader) will replace the view
//! on every change.

use crate::config::Config;

/// The id clients see in Metadata (v2+) and DescribeCluster. One fixed value while a broker is
/// alone; a cluster will keep a generated id in its metadata log.
pub const SINGLE_NODE_CLUSTER_ID: &str = "spate";

/// A broker as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// Its node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Its rack, if configured.
    pub rack: Option<String>,
}

/// The cluster as this broker knows it; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster id.
    pub cluster_id: String,
    /// The active controller's node id.
    pub controller_id: i32,
    /// Live (unfenced) brokers, by node id.
    pub brokers: Vec<BrokerEndpoint>,
    /// Registered brokers that are fenced (missed heartbeats, or shutting down): listed only by
    /// DescribeCluster v2 when asked (`include_fenced_brokers`).
    pub fenced: Vec<BrokerEndpoint>,
}

impl ClusterView {
    /// The view of a broker that runs alone: itself.
    pub fn single_node(config: &Config) -> ClusterView {
        ClusterView {
            cluster_id: SINGLE_NODE_CLUSTER_ID.to_owned(),
            controller_id: config.node_id,
            brokers: vec![BrokerEndpoint {
                node_id: config.node_id,
                host: config.advertised_host.clone(),
                port: config.advertised_port,
                rack: None,
            }],
            fenced: Vec::new(),
        }
    }
}
