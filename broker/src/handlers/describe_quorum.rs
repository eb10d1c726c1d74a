//! DescribeQuorum (key 55): the metadata quorum as its leader sees it, which
//! `kafka-metadata-quorum --bootstrap-server ... describe --status/--replication` and the
//! AdminClient's `describeMetadataQuorum` show: the leader and its epoch (Raft term), the high
//! watermark (commit index), and per voter and observer how far its copy of the log goes and
//! when it was last heard from and last caught up.
//!
//! Only the quorum's leader knows the followers' progress, so a broker that does not lead asks
//! the leader over the cluster listener, as Kafka's brokers forward this request to the active
//! controller. Advertised in cluster mode only: a single broker has no metadata quorum. The
//! metadata log is Kafka's `__cluster_metadata` partition 0; a request naming anything else, or
//! more, gets UNKNOWN_TOPIC_OR_PARTITION for every partition, as from Kafka.

use spate_wire::cluster::ControllerAnswer;
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_quorum_request::DescribeQuorumRequest;
use spate_wire::kafka_protocol::messages::describe_quorum_response::{
    DescribeQuorumResponse, Listener, Node, PartitionData, ReplicaState, TopicData,
};
use spate_wire::kafka_protocol::messages::BrokerId;
use spate_wire::ErrorCode;

use super::{respond, str_bytes, topic_name};
use crate::connection::ResponseParts;
use crate::core::{Core, CONTROLLER_CORE};
use crate::ops::{CoreReply, CoreRequest};

/// Kafka's name of the metadata log's topic; its only partition is 0.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The listener name Kafka's v2 answer gives the voters' endpoints.
const LISTENER_NAME: &str = "CLUSTER";

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DescribeQuorumRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let answer = match core
        .call(CONTROLLER_CORE, CoreRequest::DescribeQuorum)
        .await
    {
        Some(CoreReply::Quorum(answer)) => answer,
        _ => Err(ErrorCode::NotLeaderOrFollower),
    };
    // Kafka (RaftUtil.hasValidTopicPartition) describes the quorum only for a request naming
    // exactly `__cluster_metadata` partition 0; any other request gets
    // UNKNOWN_TOPIC_OR_PARTITION for every partition it names.
    let valid = request.topics.len() == 1
        && request.topics[0].topic_name.0.as_str() == METADATA_TOPIC
        && request.topics[0].partitions.len() == 1
        && request.topics[0].partitions[0].partition_index == 0;
    let mut response = DescribeQuorumResponse::default();
    for topic in request.topics {
        let mut out = TopicData::default();
        let is_metadata = valid;
        out.topic_name = topic_name(topic.topic_name.0.as_str());
        for partition in topic.partitions {
            let mut p = PartitionData::default();
            p.partition_index = partition.partition_index;
            p.leader_id = BrokerId(-1);
            p.leader_epoch = -1;
            p.high_watermark = -1;
            match (&answer, is_metadata && partition.partition_index == 0) {
                (_, false) => p.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                (Err(code), true) => p.error_code = code.code(),
                (
                    Ok(ControllerAnswer::DescribeQuorum {
                        leader,
                        term,
                        committed,
                        voters,
                        observers,
                    }),
                    true,
                ) => {
                    p.leader_id = BrokerId(*leader);
                    p.leader_epoch = i32::try_from(*term).unwrap_or(i32::MAX);
                    p.high_watermark = i64::try_from(*committed).unwrap_or(i64::MAX);
                    let state = |r: &spate_wire::cluster::QuorumReplica| {
                        let mut s = ReplicaState::default();
                        s.replica_id = BrokerId(r.node_id);
                        s.log_end_offset = r.log_end;
                        if version >= 1 {
                            s.last_fetch_timestamp = r.last_fetch_ms;
                            s.last_caught_up_timestamp = r.last_caught_up_ms;
                        }
                        s
                    };
                    p.current_voters = voters.iter().map(state).collect();
                    p.observers = observers.iter().map(state).collect();
                }
                (Ok(_), true) => p.error_code = ErrorCode::UnknownServerError.code(),
            }
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    if version >= 2 {
        response.nodes = voter_nodes(core);
    }
    respond(header, &response)
}

/// The voters' cluster endpoints (v2's `nodes`), from the configured voter list.
fn voter_nodes(core: &Core) -> Vec<Node> {
    let Some(cluster) = &core.config.cluster else {
        return Vec::new();
    };
    cluster
        .voters
        .iter()
        .map(|v| {
            let mut listener = Listener::default();
            listener.name = str_bytes(LISTENER_NAME);
            listener.host = str_bytes(&v.host);
            listener.port = v.port;
            let mut node = Node::default();
            node.node_id = BrokerId(v.node_id);
            node.listeners = vec![listener];
            node
        })
        .collect()
}
