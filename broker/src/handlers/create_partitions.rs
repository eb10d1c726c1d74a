//! CreatePartitions (key 37): grow a topic's partition count, through the controller.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use spate_wire::kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use spate_wire::ErrorCode;

use super::{call_controller, check_replicas, respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::metadata::topics::PARTITIONS_PER_TOPIC_MAX;
use crate::ops::{CoreRequest, GrowTopic};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: CreatePartitionsRequest,
) -> Option<ResponseParts> {
    let mut results = Vec::with_capacity(request.topics.len());
    let mut changes = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        match core.topic(&name) {
            None => result.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            // A group's coordinator is chosen by hashing over the partition count.
            Some(meta) if meta.name == crate::group::OFFSETS_TOPIC => {
                result.error_code = ErrorCode::InvalidRequest.code();
                result.error_message = Some(str_bytes(
                    "the partition count of __consumer_offsets cannot change: groups would move",
                ));
            }
            Some(meta)
                if topic.count <= meta.partitions || topic.count > PARTITIONS_PER_TOPIC_MAX =>
            {
                result.error_code = ErrorCode::InvalidPartitions.code();
                result.error_message = Some(str_bytes(&format!(
                    "topic has {} partitions; the new count must be larger and at most {PARTITIONS_PER_TOPIC_MAX}",
                    meta.partitions
                )));
            }
            Some(meta) => {
                let assignment = match &topic.assignments {
                    None => Ok(None),
                    Some(assignments) => {
                        let new = (topic.count - meta.partitions) as usize;
                        if assignments.len() != new {
                            Err((
                                ErrorCode::InvalidReplicaAssignment,
                                format!(
                                    "{} assignments for {new} new partitions",
                                    assignments.len()
                                ),
                            ))
                        } else {
                            assignments
                                .iter()
                                .enumerate()
                                .map(|(i, a)| {
                                    let replicas: Vec<i32> =
                                        a.broker_ids.iter().map(|b| b.0).collect();
                                    check_replicas(core, meta.partitions + i as i32, &replicas)
                                        .map(|()| replicas)
                                })
                                .collect::<Result<Vec<_>, _>>()
                                .map(Some)
                        }
                    }
                };
                match assignment {
                    Err((error, message)) => {
                        result.error_code = error.code();
                        result.error_message = Some(str_bytes(&message));
                    }
                    Ok(assignment) => {
                        if !request.validate_only {
                            changes.push((
                                results.len(),
                                GrowTopic {
                                    name,
                                    count: topic.count,
                                    assignment,
                                },
                            ));
                        }
                    }
                }
            }
        }
        results.push(result);
    }
    if !changes.is_empty() {
        let (indexes, changes): (Vec<usize>, Vec<GrowTopic>) = changes.into_iter().unzip();
        let count = changes.len();
        let outcomes = call_controller(core, CoreRequest::CreatePartitions(changes), count).await;
        for (i, (error, message)) in indexes.into_iter().zip(outcomes) {
            results[i].error_code = error.code();
            results[i].error_message = message.as_deref().map(str_bytes);
        }
    }
    let mut response = CreatePartitionsResponse::default();
    response.results = results;
    respond(header, &response)
}
