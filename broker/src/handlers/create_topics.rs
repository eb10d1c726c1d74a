//! CreateTopics (key 19): validated here, created durably by the controller core, which then
//! opens the partitions on their owning cores before answering.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use spate_wire::kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use spate_wire::ErrorCode;
use uuid::Uuid;

use super::{create_via_controller, new_topic, respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::KafkaCode;

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
        if !topic.assignments.is_empty() {
            result.error_code = ErrorCode::InvalidRequest.code();
            result.error_message = Some(str_bytes("manual replica assignment is not supported"));
        } else if request
            .topics
            .iter()
            .filter(|t| t.name == topic.name)
            .count()
            > 1
        {
            result.error_code = ErrorCode::InvalidRequest.code();
            result.error_message = Some(str_bytes("topic named twice in one request"));
        } else {
            match new_topic(
                core,
                name,
                topic.num_partitions,
                topic.replication_factor,
                configs,
            ) {
                Ok(meta) => {
                    if version >= 7 {
                        result.topic_id = Uuid::from_bytes(meta.id);
                    }
                    if version >= 5 {
                        result.num_partitions = meta.partitions;
                        result.replication_factor = 1;
                    }
                    if core.topic(name).is_some() {
                        result.error_code = ErrorCode::TopicAlreadyExists.code();
                        result.error_message =
                            Some(str_bytes(&format!("topic '{name}' already exists")));
                    } else if !request.validate_only {
                        to_create.push((results.len(), meta));
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
    let (indexes, metas): (Vec<usize>, Vec<_>) = to_create.into_iter().unzip();
    let outcomes = create_via_controller(core, metas).await;
    for (i, (error, message)) in indexes.into_iter().zip(outcomes) {
        results[i].error_code = error.code();
        results[i].error_message = message.as_deref().map(str_bytes);
    }
    let mut response = CreateTopicsResponse::default();
    response.topics = results;
    respond(header, &response)
}
