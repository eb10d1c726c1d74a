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
    /// Whether this view is as new as this run of the broker: always for a single broker; in a
    /// cluster once the applied image holds this run's registration. Until then the image is
    /// the one replayed from the local metadata log, which can be any age (a broker restarted
    /// after a kill would tell clients of the in-sync replicas and leaders from before it
    /// died), so answers built from it wait for it ([`ClusterView::wait_caught_up`]), as
    /// Kafka's broker serves no request before its first metadata catch-up.
    pub caught_up: bool,
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
            caught_up: config.cluster.is_none(),
        }
    }
}

/// How long an answer built from the cluster view waits for a restarted broker to catch up
/// with the metadata log before answering from what it has: its registration usually commits
/// within a heartbeat or two; without a quorum it cannot, and a client is better served by an
/// old answer than by a request that times out.
pub const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a waiting answer looks again.
const CATCH_UP_POLL: std::time::Duration = std::time::Duration::from_millis(20);

impl ClusterView {
    /// Waits, up to [`CATCH_UP_WAIT`], until the view in `cell` is caught up (see
    /// [`ClusterView::caught_up`]); returns whether it is. Only a broker that just started
    /// waits, so polling costs nothing in steady state.
    pub async fn wait_caught_up(cell: &std::cell::RefCell<ClusterView>) -> bool {
        let deadline = std::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            if cell.borrow().caught_up {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            glommio::timer::sleep(CATCH_UP_POLL).await;
        }
    }
}
