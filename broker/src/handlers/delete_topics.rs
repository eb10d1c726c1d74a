//! DeleteTopics (key 20): by name (all versions) or by topic id (v6+), through the controller.

use std::collections::{HashMap, HashSet};

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use spate_wire::kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use spate_wire::ErrorCode;
use uuid::Uuid;

use super::{call_controller, respond, str_bytes, topic_name};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::ops::CoreRequest;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DeleteTopicsRequest,
) -> Option<ResponseParts> {
    // v0-5 name topics in `topic_names`, v6+ in `topics` (by name or id).
    let mut wanted: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    wanted.extend(
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );

    let version = header.api_version;
    // As Kafka's ControllerApis.deleteTopics: a topic named twice (by name or by id) is not
    // deleted and gets one INVALID_REQUEST answer; so is an entry naming both name and id.
    // Named by name, or (without a name) by id.
    let key = |w: &(Option<String>, Uuid)| match &w.0 {
        Some(name) => (Some(name.clone()), Uuid::nil()),
        None => (None, w.1),
    };
    let mut counts: HashMap<(Option<String>, Uuid), usize> = HashMap::new();
    for w in &wanted {
        *counts.entry(key(w)).or_default() += 1;
    }
    let repeated: Vec<bool> = wanted.iter().map(|w| counts[&key(w)] > 1).collect();
    let mut answered_repeats: HashSet<(Option<String>, Uuid)> = HashSet::new();
    let mut results = Vec::with_capacity(wanted.len());
    let mut names = Vec::new();
    for ((name, id), repeated) in wanted.into_iter().zip(repeated) {
        let mut result = DeletableTopicResult::default();
        result.name = name.as_deref().map(topic_name);
        if version >= 6 {
            result.topic_id = id;
        }
        let refusal = if name.is_some() && !id.is_nil() {
            Some("You may not specify both topic name and topic id.")
        } else if repeated {
            if !answered_repeats.insert((name.clone(), id)) {
                continue;
            }
            Some(if name.is_some() {
                "Duplicate topic name."
            } else {
                "Duplicate topic id."
            })
        } else {
            None
        };
        if let Some(message) = refusal {
            result.error_code = ErrorCode::InvalidRequest.code();
            if version >= 5 {
                result.error_message = Some(str_bytes(message));
            }
            results.push(result);
            continue;
        }
        let meta = core.topic_by_name_or_id(name.as_deref(), *id.as_bytes());
        match meta {
            // Kafka refuses to delete its internal topics too: every group's offsets live there.
            Some(meta) if meta.name == crate::group::OFFSETS_TOPIC => {
                result.name = Some(topic_name(&meta.name));
                result.error_code = ErrorCode::InvalidRequest.code();
                if version >= 5 {
                    result.error_message = Some(str_bytes(
                        "the internal topic __consumer_offsets cannot be deleted",
                    ));
                }
            }
            Some(meta) => {
                result.name = Some(topic_name(&meta.name));
                if version >= 6 {
                    result.topic_id = Uuid::from_bytes(meta.id);
                }
                names.push((results.len(), meta.name.clone()));
            }
            None => {
                result.error_code = if name.is_some() {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::UnknownTopicId
                }
                .code();
            }
        }
        results.push(result);
    }
    if !names.is_empty() {
        let (indexes, names): (Vec<usize>, Vec<String>) = names.into_iter().unzip();
        let count = names.len();
        let outcomes = call_controller(core, CoreRequest::DeleteTopics(names), count).await;
        for (i, (error, message)) in indexes.into_iter().zip(outcomes) {
            results[i].error_code = error.code();
            if version >= 5 {
                results[i].error_message = message.as_deref().map(str_bytes);
            }
        }
    }
    let mut response = DeleteTopicsResponse::default();
    response.responses = results;
    respond(header, &response)
}
