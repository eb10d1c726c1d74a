//! What one core serves, worked out from a committed metadata image: a pure translation, so it
//! is tested without a cluster.
//!
//! For each topic: its [`TopicMeta`] (configs parsed over the broker's defaults), each
//! partition's [`Placement`] (led on a core of this broker, by another broker, or by nobody) and
//! whether this core keeps its log (this broker is a replica and the partition falls on this
//! core). For the cluster: the [`ClusterView`] clients are told of (unfenced brokers, fenced ones
//! with the cause, the quorum's leader as the controller).

use spate_controller::ids::NodeId;
use spate_controller::image::{BrokerRegistration, MetadataImage};
use spate_wire::types::LeaderEpoch;
use tracing::warn;

use crate::config::TopicDefaults;
use crate::metadata::cluster::{BrokerEndpoint, ClusterView, FenceCause, FencedBroker};
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
    /// Each partition's replicas, leader, epochs and ISR, for its replication state.
    pub states: Vec<spate_replication::PartitionState>,
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
    let endpoint = |node: &NodeId, b: &BrokerRegistration| BrokerEndpoint {
        node_id: node.0,
        host: b.client.host.clone(),
        port: b.client.port,
        rack: b.rack.clone(),
    };
    let view = ClusterView {
        cluster_id: cluster_id.to_owned(),
        controller_id: leader.map_or(-1, |n| n.0),
        brokers: image
            .brokers()
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(node, b)| endpoint(node, b))
            .collect(),
        // Whether Metadata still lists one depends on the view before this one
        // (`ClusterView::linger_after`, on the core).
        fenced: image
            .brokers()
            .iter()
            .filter(|(_, b)| b.fenced)
            .map(|(node, b)| FencedBroker {
                endpoint: endpoint(node, b),
                cause: if b.in_controlled_shutdown {
                    FenceCause::ControlledShutdown
                } else {
                    FenceCause::Lost
                },
                listed_until: None,
            })
            .collect(),
        // Set by the core, which knows this run's incarnation.
        caught_up: false,
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
            let states = topic
                .partitions
                .iter()
                .map(super::replication::partition_state)
                .collect();
            TopicPlan {
                states,
                meta: TopicMeta {
                    name: topic.name.clone(),
                    id: id.0,
                    partitions: topic.partitions.len() as i32,
                    config,
                    replica_sets: topic
                        .partitions
                        .iter()
                        .map(|p| crate::metadata::topics::ReplicaSet {
                            replicas: p.replicas.iter().map(|n| n.0).collect(),
                            isr: p.isr.iter().map(|n| n.0).collect(),
                            adding: p.adding.iter().map(|n| n.0).collect(),
                        })
                        .collect(),
                },
                placements,
                hosted_here,
            }
        })
        .collect();
    Plan { view, topics }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_controller::ids::{
        Incarnation, LeaderEpoch as CLeaderEpoch, MetadataOffset, PartitionEpoch, PartitionIndex,
        TopicId,
    };
    use spate_controller::records::{Endpoint, MetadataRecord};

    fn image() -> MetadataImage {
        let mut image = MetadataImage::new();
        let mut records = Vec::new();
        for node in [1, 2, 3] {
            records.push(MetadataRecord::RegisterBroker {
                node: NodeId(node),
                incarnation: Incarnation(10),
                client: Endpoint {
                    host: format!("b{node}"),
                    port: 9090 + node as u16,
                },
                cluster: Endpoint {
                    host: format!("b{node}"),
                    port: 9190 + node as u16,
                },
                rack: None,
            });
            if node != 3 {
                records.push(MetadataRecord::UnfenceBroker {
                    node: NodeId(node),
                    incarnation: Incarnation(10),
                });
            }
        }
        let topic_id = TopicId([7; 16]);
        records.push(MetadataRecord::CreateTopic {
            name: "t".to_owned(),
            topic_id,
            configs: vec![("retention.ms".to_owned(), "1000".to_owned())],
        });
        for (index, leader) in [(0, Some(1)), (1, Some(2)), (2, None)] {
            let replica = NodeId(index + 1);
            records.push(MetadataRecord::CreatePartition {
                topic_id,
                index: PartitionIndex(index),
                replicas: vec![replica],
                isr: vec![replica],
                leader: leader.map(NodeId),
                leader_epoch: CLeaderEpoch(4),
                partition_epoch: PartitionEpoch(0),
            });
        }
        for (offset, record) in records.iter().enumerate() {
            image
                .apply(MetadataOffset(offset as u64 + 1), record)
                .unwrap_or_else(|e| panic!("{record:?}: {e}"));
        }
        image
    }

    fn defaults() -> TopicDefaults {
        crate::config::Config::resolve(crate::config::Settings::default())
            .unwrap()
            .topic_defaults
    }

    #[test]
    fn a_broker_in_controlled_shutdown_is_fenced_for_that_cause() {
        let mut image = image();
        // Broker 3 leads nothing, so it may shut down.
        image
            .apply(
                MetadataOffset(1000),
                &MetadataRecord::ControlledShutdown {
                    node: NodeId(3),
                    incarnation: Incarnation(10),
                },
            )
            .unwrap();
        let plan = plan(&image, Some(NodeId(2)), "c", 1, 0, 1, &defaults());
        assert_eq!(plan.view.fenced.len(), 1);
        assert_eq!(plan.view.fenced[0].endpoint.node_id, 3);
        assert_eq!(plan.view.fenced[0].cause, FenceCause::ControlledShutdown);
    }

    #[test]
    fn a_core_serves_its_own_partitions_and_routes_the_others_to_their_brokers() {
        let plan = plan(&image(), Some(NodeId(2)), "c", 1, 0, 1, &defaults());
        assert_eq!(plan.view.controller_id, 2);
        let live: Vec<i32> = plan.view.brokers.iter().map(|b| b.node_id).collect();
        assert_eq!(live, [1, 2], "the fenced broker is not listed as live");
        assert_eq!(plan.view.fenced.len(), 1);
        assert_eq!(plan.view.fenced[0].endpoint.node_id, 3);
        assert_eq!(plan.view.fenced[0].cause, FenceCause::Lost);
        assert_eq!(plan.view.fenced[0].listed_until, None);
        assert_eq!(plan.view.brokers[0].host, "b1");
        let topic = &plan.topics[0];
        assert_eq!(topic.meta.name, "t");
        assert_eq!(topic.meta.partitions, 3);
        assert_eq!(
            topic.meta.config.get("retention.ms").as_deref(),
            Some("1000")
        );
        let leaders: Vec<Leader> = topic.placements.iter().map(|p| p.leader).collect();
        assert_eq!(
            leaders,
            [
                Leader::Core(0),
                Leader::Broker(RouteNodeId(2)),
                Leader::None
            ]
        );
        assert!(topic
            .placements
            .iter()
            .all(|p| p.leader_epoch == LeaderEpoch(4)));
        assert_eq!(topic.hosted_here, [true, false, false]);
    }

    #[test]
    fn only_the_owning_core_of_a_broker_keeps_a_partition() {
        let image = image();
        let hosted: Vec<Vec<bool>> = (0..2)
            .map(|core| {
                plan(&image, None, "c", 1, core, 2, &defaults()).topics[0]
                    .hosted_here
                    .clone()
            })
            .collect();
        assert!(
            hosted[0][0] ^ hosted[1][0],
            "exactly one of the two cores keeps partition 0"
        );
        assert!(hosted.iter().all(|h| !h[1] && !h[2]));
        assert_eq!(
            plan(&image, None, "c", 1, 0, 2, &defaults())
                .view
                .controller_id,
            -1
        );
    }
}
