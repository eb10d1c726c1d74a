//! Metadata (key 3): brokers, topics and partition leaders. This broker leads every partition.
//! Unknown topics are created on the spot when auto-creation is on and the client allows it.
//! In a cluster the brokers listed are the live ones and, for a session's length after their
//! fence, brokers fenced without a controlled shutdown (`ClusterView::linger_after` says why).

use std::time::Instant;

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::metadata_request::MetadataRequest;
use spate_wire::kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use spate_wire::kafka_protocol::messages::BrokerId;
use spate_wire::ErrorCode;
use uuid::Uuid;

use super::{
    authorized_operations, create_via_controller, new_topic, respond, str_bytes, topic_name,
};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::KafkaCode;
use crate::metadata::cluster::BrokerEndpoint;
use crate::metadata::cluster::ClusterView;
use crate::metadata::topics::TopicMeta;
use crate::routing::{Leader, Placement};

/// Topics one Metadata request may name: bounds the response size.
const TOPICS_PER_REQUEST_MAX: usize = 10_000;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: MetadataRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let node = BrokerId(core.config.node_id);
    let mut response = MetadataResponse::default();
    // A broker just restarted answers from the metadata log it replayed only once it has
    // caught up (or after a bound): leaders and in-sync replicas from before its restart would
    // send clients to the wrong brokers, and tools to wrong conclusions.
    ClusterView::wait_caught_up(&core.cluster).await;
    // A copy: the view may change while this request waits for an auto-creation below.
    let view = core.cluster.borrow().clone();
    // The live brokers, and fenced ones still lingering (`ClusterView::linger_after`).
    let mut listed: Vec<BrokerEndpoint> = view.listed(Instant::now()).cloned().collect();
    if !listed.iter().any(|b| b.node_id == node.0) {
        // A broker that has not joined its cluster yet (just started, no controller elected)
        // still lists itself: librdkafka treats an answer without brokers as a failed request.
        listed.push(BrokerEndpoint {
            node_id: node.0,
            host: core.config.advertised_host.clone(),
            port: core.config.advertised_port,
            rack: None,
        });
    }
    response.brokers = listed
        .iter()
        .map(|b| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(b.node_id);
            broker.host = str_bytes(&b.host);
            broker.port = i32::from(b.port);
            if version >= 1 {
                broker.rack = b.rack.as_deref().map(str_bytes);
            }
            broker
        })
        .collect();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&view.cluster_id));
    }
    if version >= 1 {
        response.controller_id = BrokerId(view.controller_id);
    }
    let topic_operations = authorized_operations::if_asked(
        version >= 8 && request.include_topic_authorized_operations,
        authorized_operations::TOPIC,
    );
    // v8-v10 (KIP-430; v11 moved it to DescribeCluster).
    response.cluster_authorized_operations = authorized_operations::if_asked(
        (8..=10).contains(&version) && request.include_cluster_authorized_operations,
        authorized_operations::CLUSTER,
    );

    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all = match &request.topics {
        None => true,
        Some(list) => list.is_empty() && version == 0,
    };
    let requested: Vec<(Option<String>, Uuid)> = if all {
        core.topics
            .borrow()
            .keys()
            .map(|name| (Some(name.clone()), Uuid::nil()))
            .collect()
    } else {
        request
            .topics
            .unwrap_or_default()
            .into_iter()
            .take(TOPICS_PER_REQUEST_MAX)
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    };
    // Clients older than v4 cannot say no to auto-creation.
    let client_allows = version < 4 || request.allow_auto_topic_creation;
    let auto_create = core.config.auto_create_topics && client_allows && !all;

    let mut to_create = Vec::new();
    for (name, id) in &requested {
        if let Some(name) = name {
            if core.topic(name).is_none() && auto_create {
                if let Ok(meta) = new_topic(core, name, -1, -1, std::iter::empty()) {
                    to_create.push(meta);
                }
            }
        } else if id.is_nil() {
            continue;
        }
    }
    if !to_create.is_empty() {
        // Another client may have created one meanwhile: TOPIC_ALREADY_EXISTS is fine here.
        create_via_controller(core, to_create).await;
    }

    for (name, id) in requested {
        let mut topic = MetadataResponseTopic::default();
        topic.topic_authorized_operations = topic_operations;
        let meta = core.topic_by_name_or_id(name.as_deref(), *id.as_bytes());
        match meta {
            Some(meta) => fill_topic(&mut topic, &meta, node, version, |index| {
                core.placement(&meta.name, index)
            }),
            None => {
                topic.name = name.as_deref().map(topic_name);
                if version >= 10 {
                    topic.topic_id = id;
                }
                topic.error_code = match name
                    .as_deref()
                    .map(crate::metadata::topics::validate_topic_name)
                {
                    Some(Err(e)) => e.kafka_code().code(),
                    Some(Ok(())) => ErrorCode::UnknownTopicOrPartition.code(),
                    None => ErrorCode::UnknownTopicId.code(),
                };
            }
        }
        response.topics.push(topic);
    }
    respond(header, &response)
}

/// Fills one topic's entry; `placement` gives a partition's leader and epoch from the
/// partition table (`None`: not in it yet; its epoch is then reported as -1, "unknown", which
/// clients accept). A partition without a leader gets LEADER_NOT_AVAILABLE, and clients retry.
fn fill_topic(
    topic: &mut MetadataResponseTopic,
    meta: &TopicMeta,
    node: BrokerId,
    version: i16,
    placement: impl Fn(i32) -> Option<Placement>,
) {
    topic.error_code = ErrorCode::None.code();
    topic.name = Some(topic_name(&meta.name));
    if version >= 10 {
        topic.topic_id = Uuid::from_bytes(meta.id);
    }
    // Kafka lists its offsets topic as internal (Metadata v1+); clients skip it in regex
    // subscriptions.
    topic.is_internal = version >= 1
        && (meta.name == crate::group::OFFSETS_TOPIC || meta.name == crate::txn::TXN_TOPIC);
    topic.partitions = (0..meta.partitions)
        .map(|index| {
            let mut partition = MetadataResponsePartition::default();
            let placed = placement(index);
            let leader = match placed.map(|p| p.leader) {
                Some(Leader::Core(_)) | None => Some(node),
                Some(Leader::Broker(other)) => Some(BrokerId(other.0)),
                Some(Leader::None) => None,
            };
            partition.partition_index = index;
            partition.error_code = match leader {
                Some(_) => ErrorCode::None.code(),
                None => ErrorCode::LeaderNotAvailable.code(),
            };
            partition.leader_id = leader.unwrap_or(BrokerId(-1));
            if version >= 7 {
                partition.leader_epoch = placed.map_or(-1, |p| p.leader_epoch.0);
            }
            match meta.replica_sets.get(index as usize) {
                Some(set) => {
                    partition.replica_nodes = set.replicas.iter().map(|&n| BrokerId(n)).collect();
                    partition.isr_nodes = set.isr.iter().map(|&n| BrokerId(n)).collect();
                }
                // A single broker: it is the one replica, and in sync.
                None => {
                    partition.replica_nodes = leader.into_iter().collect();
                    partition.isr_nodes = leader.into_iter().collect();
                }
            }
            partition
        })
        .collect();
}
