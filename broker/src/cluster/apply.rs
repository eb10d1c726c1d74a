//! What one core serves, worked out from a committed metadata image: a pure translation, so it
//! is tested without a cluster.
//!
//! For each topic: its [`TopicMeta`] (configs parsed over the broker's defaults), each
//! partition's [`Placement`] (led on a core of this broker, by another broker, or by nobody) and
//! whether this core keeps its log (this broker is a replica and the partition falls on this
//! core). For the cluster: the [`ClusterView`] clients are told of (unfenced brokers, the quorum's
//! leader as the controller).

use spate_controller::ids::NodeId;
use spate_controller::image::MetadataImage;
use spate_wire::types::LeaderEpoch;
use tracing::warn;

use crate::config::TopicDefaults;
use crate::metadata::cluster::{BrokerEndpoint, ClusterView};
use crate::metadata::topics::{TopicConfig, TopicMeta};
use crate::routing::{owner_core, Leader, NodeId as RouteNodeId, Placement};

/// One topic as a core applies it.
#[derive(Debug, Clone)]
pub struct TopicPlan {
    /// Name, id, partition count, parsed configs.
    pub meta: TopicMeta,
    /// Where each partition is led.
    pub placements: Vec<Placement>,
    /// Which partitions this core keeps a log of.
    pub hosted_here: Vec<bool>,
}

/// Everything a core applies from one image.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What clients are told of the cluster.
    pub view: ClusterView,
    /// Every topic.
    pub topics: Vec<TopicPlan>,
}

/// Works out what core `core` of `cores` on broker `me` serves from `image`.
pub fn plan(
    image: &MetadataImage,
    leader: Option<NodeId>,
    cluster_id: &str,
    me: i32,
    core: usize,
    cores: usize,
    defaults: &TopicDefaults,
) -> Plan {
    let brokers = image
        .brokers()
        .iter()
        .filter(|(_, b)| !b.fenced)
        .map(|(node, b)| BrokerEndpoint {
            node_id: node.0,
            host: b.client.host.clone(),
            port: b.client.port,
            rack: b.rack.clone(),
        })
        .collect();
    let view = ClusterView {
        cluster_id: cluster_id.to_owned(),
        controller_id: leader.map_or(-1, |n| n.0),
        brokers,
    };
    let topics = image
        .topics()
        .iter()
        .map(|(id, topic)| {
            let mut config = TopicConfig::from_defaults(defaults);
            for (key, value) in &topic.configs {
                if let Err(e) = config.set(key, value) {
                    // Checked when the topic was created; a config this build does not know
                    // (written by a newer one) keeps the default rather than the broker down.
                    warn!(topic = %topic.name, key, value, error = %e, "ignoring a topic config from the metadata log");
                }
            }
            let placements = topic
                .partitions
                .iter()
                .enumerate()
                .map(|(index, p)| Placement {
                    leader: match p.leader {
                        Some(node) if node.0 == me => {
                            Leader::Core(owner_core(&topic.name, index as i32, cores))
                        }
                        Some(node) => Leader::Broker(RouteNodeId(node.0)),
                        None => Leader::None,
                    },
                    leader_epoch: LeaderEpoch(p.leader_epoch.0),
                })
                .collect();
            let hosted_here = topic
                .partitions
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    p.replicas.contains(&NodeId(me))
                        && owner_core(&topic.name, index as i32, cores) == core
                })
                .collect();
            TopicPlan {
                meta: TopicMeta {
                    name: topic.name.clone(),
                    id: id.0,
                    partitions: topic.partitions.len() as i32,
                    config,
                },
                placements,
                hosted_here,
            }
        })
        .collect();
    Plan { view, topics }
}
