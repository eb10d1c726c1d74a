//! ListPartitionReassignments (key 46, v0): `kafka-reassign-partitions --verify`/`--list` and
//! the AdminClient's `listPartitionReassignments`. Answered by any broker from the metadata
//! image it last published, which carries each partition's adding and removing replicas (Kafka's
//! brokers forward it to the controller; an image at most one publish behind the controller's
//! answers the same question without a round trip). A null topic list means every ongoing
//! reassignment; named partitions that are not being reassigned, or do not exist, are left out,
//! as Kafka leaves them out. Advertised in cluster mode only.

use spate_controller::controller::{list_partition_reassignments, OngoingReassignment};
use spate_controller::ids::PartitionIndex;
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use spate_wire::kafka_protocol::messages::list_partition_reassignments_response::{
    ListPartitionReassignmentsResponse, OngoingPartitionReassignment, OngoingTopicReassignment,
};
use spate_wire::kafka_protocol::messages::BrokerId;

use super::{respond, topic_name};
use crate::connection::ResponseParts;
use crate::core::Core;

pub fn handle(
    core: &Core,
    header: &RequestHeader,
    request: ListPartitionReassignmentsRequest,
) -> Option<ResponseParts> {
    let named: Option<Vec<(String, Vec<PartitionIndex>)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| {
                let indexes = t.partition_indexes.iter().copied().map(PartitionIndex);
                (t.name.0.as_str().to_owned(), indexes.collect())
            })
            .collect()
    });
    let ongoing = match core.published() {
        Some(published) => list_partition_reassignments(&published.image, named.as_deref()),
        None => Vec::new(),
    };
    let mut response = ListPartitionReassignmentsResponse::default();
    response.topics = by_topic(ongoing);
    respond(header, &response)
}

/// Groups the reassignments by topic, keeping their order.
fn by_topic(ongoing: Vec<OngoingReassignment>) -> Vec<OngoingTopicReassignment> {
    let brokers = |nodes: Vec<spate_controller::ids::NodeId>| -> Vec<BrokerId> {
        nodes.into_iter().map(|n| BrokerId(n.0)).collect()
    };
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for o in ongoing {
        if topics.last().is_none_or(|t| t.name.0.as_str() != o.topic) {
            let mut t = OngoingTopicReassignment::default();
            t.name = topic_name(&o.topic);
            topics.push(t);
        }
        let mut p = OngoingPartitionReassignment::default();
        p.partition_index = o.index.0;
        p.replicas = brokers(o.replicas);
        p.adding_replicas = brokers(o.adding);
        p.removing_replicas = brokers(o.removing);
        topics.last_mut().expect("pushed above").partitions.push(p);
    }
    topics
}
