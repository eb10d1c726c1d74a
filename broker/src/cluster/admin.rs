//! Topic changes in cluster mode: CreateTopics, DeleteTopics, CreatePartitions and topic config
//! changes (IncrementalAlterConfigs, AlterConfigs) become records
//! proposed by this broker's voter while it leads the quorum, answered once committed and
//! applied on every core of this broker. A broker that does not lead answers NOT_CONTROLLER;
//! Kafka's clients send these requests to the controller named in Metadata, which is the
//! quorum's leader, and retry there.

use spate_controller::controller::CreateTopic;
use spate_wire::ErrorCode;
use tracing::info;

use spate_wire::cluster::{
    AlterTopicConfigs, ConfigOp, ControllerAnswer, ControllerRequest, ControllerResponse,
    NewPartitions, NewTopic, TopicResult,
};

use std::cell::{Cell, RefCell};

use spate_controller::controller::ControllerError;

use super::quorum::Quorum;
use super::rpc::RpcError;
use super::{assignment_nodes, topic_outcome, ClusterNode};
use crate::errors::KafkaCode;
use crate::metadata::alter::{self, AlterError, AlterOp, Alteration, ConfigChange};
use crate::metadata::topics::{TopicMeta, TOPIC_CONFIG_KEYS};
use crate::ops::{AlterTopic, ValidateOnly};

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

/// A client's topic config change as the controller RPC carries it.
pub fn alter_to_wire(topic: &AlterTopic) -> AlterTopicConfigs {
    let (replace_all, ops) = match &topic.alteration {
        Alteration::Incremental(changes) => (
            false,
            changes
                .iter()
                .map(|c| ConfigOp {
                    key: c.key.clone(),
                    op: c.op.code() as u8,
                    value: c.value.clone(),
                })
                .collect(),
        ),
        Alteration::Replace(configs) => (
            true,
            configs
                .iter()
                .map(|(key, value)| ConfigOp {
                    key: key.clone(),
                    op: AlterOp::Set.code() as u8,
                    value: value.clone(),
                })
                .collect(),
        ),
    };
    AlterTopicConfigs {
        name: topic.name.clone(),
        replace_all,
        ops,
    }
}

/// A forwarded topic config change back as the broker's.
///
/// # Errors
/// [`AlterError::InvalidRequest`] for an operation Kafka does not define.
pub fn alter_from_wire(topic: AlterTopicConfigs) -> Result<AlterTopic, AlterError> {
    let alteration = if topic.replace_all {
        Alteration::Replace(topic.ops.into_iter().map(|op| (op.key, op.value)).collect())
    } else {
        let changes = topic
            .ops
            .into_iter()
            .map(|op| {
                Ok(ConfigChange {
                    key: op.key,
                    op: AlterOp::try_from(op.op as i8)?,
                    value: op.value,
                })
            })
            .collect::<Result<Vec<_>, AlterError>>()?;
        Alteration::Incremental(changes)
    };
    Ok(AlterTopic {
        name: topic.name,
        alteration,
    })
}

/// Changes topics' configs: decided and committed here when this broker leads the quorum,
/// else forwarded to the leader; a forwarded change is answered once this broker's image holds
/// it, so a DescribeConfigs here right after sees it.
pub async fn alter_configs(
    node: &ClusterNode,
    topics: Vec<AlterTopic>,
    validate_only: ValidateOnly,
) -> TopicResults {
    if let Some(quorum) = node.membership.quorum().filter(|q| q.is_leader()) {
        return match alter_on_leader(quorum, topics.clone(), validate_only).await {
            Some((results, _)) => topic_results(results),
            None => vec![
                (
                    ErrorCode::NotController,
                    Some("the controller moved; retry".to_owned())
                );
                topics.len()
            ],
        };
    }
    let count = topics.len();
    let request = ControllerRequest::AlterConfigs {
        topics: topics.iter().map(alter_to_wire).collect(),
        validate_only: validate_only == ValidateOnly::Yes,
    };
    let answer = node.membership.call_leader(&request).await;
    let mut offset = 0;
    let results = forwarded(answer, count, |answer| match answer {
        ControllerAnswer::AlterConfigs {
            results,
            metadata_offset,
        } => {
            offset = metadata_offset;
            Some(topic_results(results))
        }
        _ => None,
    });
    if offset > 0 {
        node.membership
            .wait_published(|image| image.last_applied().0 >= offset, SETTLE_TIMEOUT)
            .await;
    }
    results
}

/// The leader's side of a topic config change, one submit per topic: the alteration is decided
/// on the overrides in the image the records are proposed against (so two changes in flight
/// see each other), checked over this broker's topic defaults, and committed as one batch of
/// `SetTopicConfig` records. Returns one result per topic and the metadata offset that holds
/// every change made (0 if none), or `None` if this node stopped leading midway.
pub async fn alter_on_leader(
    quorum: &Quorum,
    topics: Vec<AlterTopic>,
    validate_only: ValidateOnly,
) -> Option<(Vec<TopicResult>, u64)> {
    let defaults = quorum.topic_defaults().clone();
    let mut results = Vec::with_capacity(topics.len());
    let mut offset_max = 0u64;
    for topic in topics {
        let refused: RefCell<Option<AlterError>> = RefCell::new(None);
        let proposed = Cell::new(false);
        let (name, alteration) = (topic.name.clone(), topic.alteration);
        let outcome = quorum
            .submit(Box::new(|controller, image, _rng, _now| {
                let current = image
                    .topic_id(&name)
                    .and_then(|id| image.topic(id))
                    .map(|t| t.configs.clone())
                    .unwrap_or_default();
                let altered = alter::alter(&current, &alteration, &defaults).map_err(|e| {
                    let reason = e.to_string();
                    *refused.borrow_mut() = Some(e);
                    ControllerError::InvalidConfig { reason }
                })?;
                if image.topic_id(&name).is_none() {
                    return Err(ControllerError::UnknownTopic { name: name.clone() });
                }
                if validate_only == ValidateOnly::Yes || altered.changed.is_empty() {
                    return Ok(Vec::new());
                }
                proposed.set(true);
                controller.alter_topic_configs(image, &name, &altered.changed)
            }))
            .await;
        let (error_code, message) = match (outcome, refused.into_inner()) {
            (Err(ControllerError::NotController { .. }), _) => return None,
            (_, Some(e)) => (e.kafka_code(), Some(e.to_string())),
            (Ok(offset), None) => {
                if proposed.get() {
                    info!(topic = %topic.name, "topic configs altered through the metadata log");
                    offset_max = offset_max.max(offset.0);
                }
                (ErrorCode::None, None)
            }
            (Err(e), None) => topic_outcome(Err(e)),
        };
        results.push(TopicResult {
            name: topic.name,
            error_code,
            message,
        });
    }
    Some((results, offset_max))
}
