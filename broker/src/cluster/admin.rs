//! Topic changes in cluster mode: CreateTopics, DeleteTopics and CreatePartitions become records
//! proposed by this broker's voter while it leads the quorum, answered once committed and
//! applied on every core of this broker. A broker that does not lead answers NOT_CONTROLLER;
//! Kafka's clients send these requests to the controller named in Metadata, which is the
//! quorum's leader, and retry there.

use spate_controller::controller::CreateTopic;
use spate_wire::ErrorCode;
use tracing::info;

use spate_wire::cluster::{
    ControllerAnswer, ControllerRequest, ControllerResponse, NewPartitions, NewTopic, TopicResult,
};

use super::rpc::RpcError;
use super::{assignment_nodes, topic_outcome, ClusterNode};
use crate::metadata::topics::{TopicMeta, TOPIC_CONFIG_KEYS};

/// How long a forwarded change waits for this broker's image to show it before answering.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Per topic: the error code and message.
pub type TopicResults = Vec<(ErrorCode, Option<String>)>;

/// A forwarded request's per-topic answers, or the whole request's failure for each topic.
fn forwarded(
    answer: Result<ControllerResponse, RpcError>,
    count: usize,
    results_of: impl FnOnce(ControllerAnswer) -> Option<TopicResults>,
) -> TopicResults {
    let failed = |code: ErrorCode, message: String| vec![(code, Some(message)); count];
    match answer {
        Err(e) => failed(
            ErrorCode::NotController,
            format!("the controller could not be reached: {e}"),
        ),
        Ok(response) if response.error_code != ErrorCode::None => failed(
            response.error_code,
            response
                .message
                .unwrap_or_else(|| "refused by the controller".to_owned()),
        ),
        Ok(response) => match results_of(response.answer) {
            Some(results) if results.len() == count => results,
            _ => failed(
                ErrorCode::UnknownServerError,
                "the controller answered another request".to_owned(),
            ),
        },
    }
}

fn topic_results(results: Vec<TopicResult>) -> TopicResults {
    results
        .into_iter()
        .map(|r| (r.error_code, r.message))
        .collect()
}

fn overrides(meta: &TopicMeta) -> Vec<(String, String)> {
    TOPIC_CONFIG_KEYS
        .iter()
        .filter(|key| meta.config.is_override(key))
        .filter_map(|key| Some(((*key).to_owned(), meta.config.get(key)?)))
        .collect()
}

/// Creates each topic (checked by the broker already: name, partitions, configs), on this
/// node when it leads the quorum, else forwarded to the leader.
pub async fn create_topics(node: &ClusterNode, topics: Vec<crate::ops::NewTopic>) -> TopicResults {
    if !node.membership.is_leader() {
        let count = topics.len();
        let request = ControllerRequest::CreateTopics {
            topics: topics
                .iter()
                .map(|topic| NewTopic {
                    name: topic.meta.name.clone(),
                    partitions: if topic.assignment.is_some() {
                        -1
                    } else {
                        topic.meta.partitions
                    },
                    replication_factor: if topic.assignment.is_some() {
                        -1
                    } else {
                        topic.replication_factor
                    },
                    assignment: topic.assignment.clone(),
                    configs: overrides(&topic.meta),
                })
                .collect(),
            validate_only: false,
        };
        let answer = node.membership.call_leader(&request).await;
        let results = forwarded(answer, count, |answer| match answer {
            ControllerAnswer::CreateTopics { results } => Some(
                results
                    .into_iter()
                    .map(|r| (r.error_code, r.message))
                    .collect(),
            ),
            _ => None,
        });
        let names: Vec<String> = topics.iter().map(|t| t.meta.name.clone()).collect();
        node.membership
            .wait_published(
                |image| names.iter().all(|n| image.topic_id(n).is_some()),
                SETTLE_TIMEOUT,
            )
            .await;
        return results;
    }
    let mut results = Vec::with_capacity(topics.len());
    for topic in topics {
        let meta = topic.meta;
        let configs = overrides(&meta);
        let assigned = topic.assignment.is_some();
        let request = CreateTopic {
            name: meta.name.clone(),
            // The controller takes the count from an assignment, as Kafka's does.
            partitions: if assigned { -1 } else { meta.partitions },
            replication_factor: if assigned {
                -1
            } else {
                topic.replication_factor
            },
            assignment: topic.assignment.map(assignment_nodes),
            configs,
        };
        let created = node
            .membership
            .submit(Box::new(move |controller, image, rng, _now| {
                controller.create_topic(image, rng, request)
            }))
            .await
            .map(|_| ());
        if created.is_ok() {
            info!(topic = %meta.name, partitions = meta.partitions, "topic created through the metadata log");
        }
        results.push(topic_outcome(created));
    }
    results
}

/// Deletes each topic, here or at the leader.
pub async fn delete_topics(node: &ClusterNode, names: Vec<String>) -> TopicResults {
    if !node.membership.is_leader() {
        let count = names.len();
        let answer = node
            .membership
            .call_leader(&ControllerRequest::DeleteTopics {
                names: names.clone(),
            })
            .await;
        let results = forwarded(answer, count, |answer| match answer {
            ControllerAnswer::DeleteTopics { results } => Some(topic_results(results)),
            _ => None,
        });
        node.membership
            .wait_published(
                |image| names.iter().all(|n| image.topic_id(n).is_none()),
                SETTLE_TIMEOUT,
            )
            .await;
        return results;
    }
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        let deleted = node
            .membership
            .submit(Box::new(|controller, image, _rng, _now| {
                controller.delete_topic(image, &name)
            }))
            .await
            .map(|_| ());
        results.push(topic_outcome(deleted));
    }
    results
}

/// Grows each topic to its new partition count, here or at the leader.
pub async fn create_partitions(
    node: &ClusterNode,
    changes: Vec<crate::ops::GrowTopic>,
) -> TopicResults {
    if !node.membership.is_leader() {
        let count = changes.len();
        let request = ControllerRequest::CreatePartitions {
            topics: changes
                .into_iter()
                .map(|grow| NewPartitions {
                    name: grow.name,
                    count: grow.count,
                    assignment: grow.assignment,
                })
                .collect(),
        };
        let answer = node.membership.call_leader(&request).await;
        let results = forwarded(answer, count, |answer| match answer {
            ControllerAnswer::CreatePartitions { results } => Some(topic_results(results)),
            _ => None,
        });
        return results;
    }
    let mut results = Vec::with_capacity(changes.len());
    for grow in changes {
        let assignment = grow.assignment.map(assignment_nodes);
        let grown = node
            .membership
            .submit(Box::new(|controller, image, rng, _now| {
                controller.create_partitions(image, rng, &grow.name, grow.count, assignment)
            }))
            .await
            .map(|_| ());
        results.push(topic_outcome(grown));
    }
    results
}
