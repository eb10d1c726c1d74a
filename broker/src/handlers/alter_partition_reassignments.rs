//! AlterPartitionReassignments (key 45, v0): `kafka-reassign-partitions --execute` and the
//! AdminClient's `alterPartitionReassignments` (KIP-455). Each partition names its target
//! replicas (a move starts, or replaces the ongoing one) or null (the ongoing move is cancelled).
//! The controller decides it with Kafka's rules (`Controller::alter_partition_reassignments`):
//! the target's new replicas are added and catch up from the leader, and once the leader's ISR
//! holds them all, the replicas not in the target are removed and delete their data.
//!
//! Only the quorum's leader decides: another broker answers NOT_CONTROLLER for the whole
//! request and clients retry at the controller Metadata names (Kafka's brokers forward it).
//! Answered once the records committed and this broker shows them, with per-partition errors
//! as Kafka's controller gives them: UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT
//! (empty, duplicate or unregistered replicas, too many during the move),
//! NO_REASSIGNMENT_IN_PROGRESS (a cancel with nothing to cancel), INVALID_REQUEST (a partition
//! named twice). Advertised in cluster mode only.

use spate_controller::controller::{Reassign, REASSIGNMENT_PARTITIONS_MAX};
use spate_controller::ids::{NodeId, PartitionIndex};
use spate_controller::records::REPLICAS_MAX;
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::alter_partition_reassignments_request::AlterPartitionReassignmentsRequest;
use spate_wire::kafka_protocol::messages::alter_partition_reassignments_response::{
    AlterPartitionReassignmentsResponse, ReassignablePartitionResponse, ReassignableTopicResponse,
};
use spate_wire::ErrorCode;

use super::{respond, str_bytes, topic_name};
use crate::connection::ResponseParts;
use crate::core::{Core, CONTROLLER_CORE};
use crate::ops::{CoreReply, CoreRequest};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: AlterPartitionReassignmentsRequest,
) -> Option<ResponseParts> {
    let requests: Vec<Reassign> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassign {
                topic: t.name.0.as_str().to_owned(),
                index: PartitionIndex(p.partition_index),
                target: p
                    .replicas
                    .as_ref()
                    .map(|r| r.iter().map(|b| NodeId(b.0)).collect()),
            })
        })
        .collect();
    let mut response = AlterPartitionReassignmentsResponse::default();
    let outcomes: Vec<(ErrorCode, Option<String>)> = if requests.len() > REASSIGNMENT_PARTITIONS_MAX
    {
        let message = format!("at most {REASSIGNMENT_PARTITIONS_MAX} partitions per request");
        response.error_code = ErrorCode::InvalidRequest.code();
        response.error_message = Some(str_bytes(&message));
        vec![(ErrorCode::InvalidRequest, Some(message)); requests.len()]
    } else if let Some(long) = requests
        .iter()
        .find(|r| r.target.as_ref().is_some_and(|t| t.len() > REPLICAS_MAX))
    {
        // Refused here so that the controller never checks an unbounded list for duplicates.
        let message = format!(
            "{}-{}: more than {REPLICAS_MAX} replicas",
            long.topic, long.index.0
        );
        response.error_code = ErrorCode::InvalidReplicaAssignment.code();
        response.error_message = Some(str_bytes(&message));
        vec![(ErrorCode::InvalidReplicaAssignment, Some(message)); requests.len()]
    } else {
        let count = requests.len();
        match core
            .call(CONTROLLER_CORE, CoreRequest::Reassign(requests))
            .await
        {
            Some(CoreReply::Reassigned(Ok(results))) if results.len() == count => results,
            Some(CoreReply::Reassigned(Err(code))) => {
                response.error_code = code.code();
                vec![(code, None); count]
            }
            _ => {
                response.error_code = ErrorCode::UnknownServerError.code();
                vec![(ErrorCode::UnknownServerError, None); count]
            }
        }
    };
    let mut outcomes = outcomes.into_iter();
    for topic in &request.topics {
        let mut answer = ReassignableTopicResponse::default();
        answer.name = topic_name(topic.name.0.as_str());
        for p in &topic.partitions {
            let (code, message) = outcomes.next().expect("one outcome per partition");
            let mut r = ReassignablePartitionResponse::default();
            r.partition_index = p.partition_index;
            r.error_code = code.code();
            r.error_message = message.as_deref().map(str_bytes);
            answer.partitions.push(r);
        }
        response.responses.push(answer);
    }
    respond(header, &response)
}
