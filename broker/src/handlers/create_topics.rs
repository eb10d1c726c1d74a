//! CreateTopics (key 19): validated here, created durably by the controller core, which then
//! opens the partitions on their owning cores before answering.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreateTopicsRequest,
};
use spate_wire::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use spate_wire::ErrorCode;
use uuid::Uuid;

use super::describe_configs::topic_entry_sources;
use super::{check_replicas, create_assigned_via_controller, new_topic, respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::KafkaCode;
use crate::metadata::topics::TOPIC_CONFIG_KEYS;
use crate::ops::NewTopic;

/// A client's replica assignment (Kafka's `assignments`), checked: one list of replicas per
/// partition, indexes 0..n each once, one replica each (replication is not implemented yet),
/// and on a single broker that broker. `None` when the client left placement to the broker.
/// In a cluster the controller checks the brokers are registered.
fn check_assignment(
    core: &Core,
    topic: &CreatableTopic,
) -> Result<Option<Vec<Vec<i32>>>, (ErrorCode, String)> {
    if topic.assignments.is_empty() {
        return Ok(None);
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            ErrorCode::InvalidRequest,
            "both a replica assignment and a partition count or replication factor were set"
                .to_owned(),
        ));
    }
    let count = topic.assignments.len();
    if count > crate::metadata::topics::PARTITIONS_PER_TOPIC_MAX as usize {
        return Err((
            ErrorCode::InvalidPartitions,
            format!("{count} partitions in the assignment"),
        ));
    }
    let mut by_index: Vec<Option<Vec<i32>>> = vec![None; count];
    for entry in &topic.assignments {
        let index = usize::try_from(entry.partition_index)
            .ok()
            .filter(|&i| i < count && by_index[i].is_none())
            .ok_or_else(|| {
                (
                    ErrorCode::InvalidReplicaAssignment,
                    "partitions must be numbered 0 to n-1, each once".to_owned(),
                )
            })?;
        let replicas: Vec<i32> = entry.broker_ids.iter().map(|b| b.0).collect();
        check_replicas(core, index as i32, &replicas)?;
        by_index[index] = Some(replicas);
    }
    Ok(Some(
        by_index
            .into_iter()
            .map(|r| r.expect("each index once"))
            .collect(),
    ))
}

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: CreateTopicsRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let mut results = Vec::with_capacity(request.topics.len());
    let mut to_create = Vec::new();
    for topic in &request.topics {
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let configs = topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str())));
        let name = topic.name.0.as_str();
        let assignment = match check_assignment(core, topic) {
            Ok(assignment) => assignment,
            Err((error, message)) => {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(&message));
                results.push(result);
                continue;
            }
        };
        let partitions = match &assignment {
            Some(assignment) => assignment.len() as i32,
            None => topic.num_partitions,
        };
        if request
            .topics
            .iter()
            .filter(|t| t.name == topic.name)
            .count()
            > 1
        {
            result.error_code = ErrorCode::InvalidRequest.code();
            result.error_message = Some(str_bytes("topic named twice in one request"));
        } else {
            match new_topic(core, name, partitions, topic.replication_factor, configs) {
                Ok(meta) => {
                    if version >= 7 {
                        result.topic_id = Uuid::from_bytes(meta.id);
                    }
                    if version >= 5 {
                        result.num_partitions = meta.partitions;
                        result.replication_factor = match topic.replication_factor {
                            -1 => core.config.topic_defaults.replication_factor,
                            n => n,
                        };
                        // KIP-525: the new topic's configs with their sources, as
                        // DescribeConfigs would give them (clients show them after creating).
                        result.configs = Some(
                            TOPIC_CONFIG_KEYS
                                .iter()
                                .map(|key| {
                                    let (value, source, _) = topic_entry_sources(
                                        &meta,
                                        key,
                                        &core.config.topic_defaults,
                                    );
                                    let mut c = CreatableTopicConfigs::default();
                                    c.name = str_bytes(key);
                                    c.value = Some(str_bytes(&value));
                                    c.config_source = source;
                                    c.read_only = false;
                                    c.is_sensitive = false;
                                    c
                                })
                                .collect(),
                        );
                    }
                    if core.topic(name).is_some() {
                        result.configs = None;
                        result.error_code = ErrorCode::TopicAlreadyExists.code();
                        result.error_message =
                            Some(str_bytes(&format!("topic '{name}' already exists")));
                    } else if !request.validate_only {
                        to_create.push((
                            results.len(),
                            NewTopic {
                                meta,
                                assignment,
                                replication_factor: topic.replication_factor,
                            },
                        ));
                    }
                }
                Err(e) => {
                    result.error_code = e.kafka_code().code();
                    result.error_message = Some(str_bytes(&e.to_string()));
                }
            }
        }
        results.push(result);
    }
    let (indexes, topics): (Vec<usize>, Vec<_>) = to_create.into_iter().unzip();
    let outcomes = create_assigned_via_controller(core, topics).await;
    for (i, (error, message)) in indexes.into_iter().zip(outcomes) {
        if error != ErrorCode::None {
            results[i].configs = None;
        }
        results[i].error_code = error.code();
        results[i].error_message = message.as_deref().map(str_bytes);
    }
    let mut response = CreateTopicsResponse::default();
    response.topics = results;
    respond(header, &response)
}
