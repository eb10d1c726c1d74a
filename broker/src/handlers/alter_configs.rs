//! AlterConfigs (key 33): Kafka's legacy config change, which replaces a resource's whole set of
//! overrides with the configs given. Topics go to the controller (the controller core of a
//! single broker, or the metadata quorum's leader in a cluster), which decides the change on the
//! topic's current overrides (`metadata::alter`), makes it durable and has every core apply it
//! to the partitions it owns. [`change_configs`] is shared with IncrementalAlterConfigs: the
//! per-resource checks Kafka's brokers make before forwarding (`ConfigAdminManager.preprocess`)
//! and the answers for resources Spate has no dynamic configs for.
//!
//! One broker config is dynamic: [`DECOMMISSION_CONFIG`] (`spate.decommission`) on the broker
//! resource named by a broker's id. Setting it to `true` asks the controller to decommission
//! that broker (move its leaderships and replicas to the others, place nothing new on it);
//! `false` or DELETE cancels. Kafka has no API for draining a broker (its tools reassign by
//! hand, then `kafka-cluster.sh unregister`), so Spate uses the config request that every Kafka
//! tool can send (`kafka-configs --entity-type brokers --entity-name N --alter --add-config
//! spate.decommission=true`); DescribeConfigs reports the progress (`describe_configs.rs`).
//! Like reassignments it is decided on the quorum's leader only: another broker answers
//! NOT_CONTROLLER, and `spate-admin` retries at the controller Metadata names.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use spate_wire::kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use spate_wire::ErrorCode;

use super::{call_controller, respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::core::CONTROLLER_CORE;
use crate::errors::KafkaCode;
use crate::metadata::alter::{self, AlterOp, Alteration};
use crate::metadata::topics;
use crate::ops::{AlterTopic, CoreReply, CoreRequest, ValidateOnly};
use spate_controller::controller::Decommission;
use spate_controller::ids::NodeId;

/// The broker config whose change starts (`true`) or cancels (`false`, DELETE) the named
/// broker's decommission; described with the progress keys below.
pub const DECOMMISSION_CONFIG: &str = "spate.decommission";

/// Kafka's resource types.
pub(super) const RESOURCE_TOPIC: i8 = 2;
pub(super) const RESOURCE_BROKER: i8 = 4;
pub(super) const RESOURCE_BROKER_LOGGER: i8 = 8;

/// One resource of a config change request, decoded.
pub(super) struct Resource {
    pub resource_type: i8,
    pub name: String,
    /// The change, or why the request's ops for it are malformed.
    pub alteration: Result<Alteration, alter::AlterError>,
}

type Outcome = (ErrorCode, Option<String>);

fn invalid_request(message: String) -> Outcome {
    (ErrorCode::InvalidRequest, Some(message))
}

/// Kafka's answer for a broker resource: the name must be empty (cluster-wide) or this broker's
/// id, and Spate has no dynamic broker configs, so any config named is refused as Kafka refuses
/// a static one.
fn broker_resource(core: &Core, resource: &Resource, alteration: &Alteration) -> Outcome {
    if !resource.name.is_empty() {
        match resource.name.parse::<i32>() {
            Err(_) => {
                return invalid_request(format!(
                    "Node id must be an integer, but it is: {}",
                    resource.name
                ))
            }
            Ok(id) if id != core.config.node_id => {
                return invalid_request(format!(
                    "Unexpected broker id, expected {}, but received {}",
                    core.config.node_id, resource.name
                ))
            }
            Ok(_) => {}
        }
    }
    let keys: Vec<&str> = match alteration {
        Alteration::Incremental(changes) => changes.iter().map(|c| c.key.as_str()).collect(),
        Alteration::Replace(configs) => configs.iter().map(|(k, _)| k.as_str()).collect(),
    };
    if keys.is_empty() {
        return (ErrorCode::None, None);
    }
    invalid_request(format!(
        "Cannot update these configs dynamically: {}: Spate's broker settings are static (flags, \
         config file, environment) and take a restart",
        keys.join(", ")
    ))
}

/// The decommission a broker resource's alteration asks for: `None` when it does not name
/// [`DECOMMISSION_CONFIG`], else the broker and the request, or why it is malformed.
fn decommission_request(
    resource: &Resource,
    alteration: &Alteration,
) -> Option<Result<(NodeId, Decommission), Outcome>> {
    let (keys, value): (Vec<&str>, Option<Option<&str>>) = match alteration {
        Alteration::Incremental(changes) => {
            let ours = changes.iter().find(|c| c.key == DECOMMISSION_CONFIG);
            let value = ours.map(|c| match c.op {
                AlterOp::Set => c.value.as_deref(),
                AlterOp::Delete => Some("false"),
                AlterOp::Append | AlterOp::Subtract => Some("(a list operation)"),
            });
            (changes.iter().map(|c| c.key.as_str()).collect(), value)
        }
        Alteration::Replace(configs) => {
            let ours = configs.iter().find(|(k, _)| k == DECOMMISSION_CONFIG);
            (
                configs.iter().map(|(k, _)| k.as_str()).collect(),
                ours.map(|(_, v)| v.as_deref()),
            )
        }
    };
    let value = value?;
    Some((|| {
        if keys.len() != 1 {
            return Err(invalid_request(format!(
                "{DECOMMISSION_CONFIG} must be changed alone"
            )));
        }
        let node = match resource.name.parse::<i32>() {
            Ok(id) if id >= 0 => NodeId(id),
            _ => {
                return Err(invalid_request(format!(
                    "{DECOMMISSION_CONFIG} needs the id of the broker to decommission as the \
                     resource name, not {:?}",
                    resource.name
                )))
            }
        };
        let request = match value.map(str::to_ascii_lowercase).as_deref() {
            Some("true") => Decommission::Start,
            Some("false") => Decommission::Cancel,
            other => {
                return Err((
                    ErrorCode::InvalidConfig,
                    Some(format!(
                        "{DECOMMISSION_CONFIG} is true or false, not {}",
                        other.unwrap_or("null")
                    )),
                ))
            }
        };
        Ok((node, request))
    })())
}

/// Asks the controller core for a decommission (see [`DECOMMISSION_CONFIG`]).
async fn decommission(
    core: &Core,
    node: NodeId,
    request: Decommission,
    validate_only: ValidateOnly,
) -> Outcome {
    match core
        .call(
            CONTROLLER_CORE,
            CoreRequest::Decommission(node, request, validate_only),
        )
        .await
    {
        Some(CoreReply::Decommissioned(code, message)) => (code, message),
        _ => (
            ErrorCode::UnknownServerError,
            Some("controller core unreachable".to_owned()),
        ),
    }
}

/// Answers each resource in request order: local refusals first (duplicate resources, malformed
/// ops, resource types and names), then every topic left goes to the controller in one call.
pub(super) async fn change_configs(
    core: &Core,
    resources: Vec<Resource>,
    validate_only: bool,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(resources.len());
    let mut topics = Vec::new();
    let mut decommissions = Vec::new();
    for (i, resource) in resources.iter().enumerate() {
        let repeated = resources.iter().enumerate().any(|(j, other)| {
            j != i && other.resource_type == resource.resource_type && other.name == resource.name
        });
        if repeated {
            outcomes.push(Some(invalid_request(
                "Each resource must appear at most once.".to_owned(),
            )));
            continue;
        }
        let alteration = match &resource.alteration {
            Ok(alteration) => alteration,
            Err(e) => {
                outcomes.push(Some((e.kafka_code(), Some(e.to_string()))));
                continue;
            }
        };
        if let Err(e) = alter::precheck(alteration) {
            outcomes.push(Some((e.kafka_code(), Some(e.to_string()))));
            continue;
        }
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC if resource.name.is_empty() => Some(invalid_request(
                "Default topic resources are not allowed.".to_owned(),
            )),
            RESOURCE_TOPIC => match topics::validate_topic_name(&resource.name) {
                Err(e) => Some((e.kafka_code(), Some(e.to_string()))),
                Ok(()) => {
                    topics.push((
                        i,
                        AlterTopic {
                            name: resource.name.clone(),
                            alteration: alteration.clone(),
                        },
                    ));
                    None
                }
            },
            RESOURCE_BROKER => match decommission_request(resource, alteration) {
                None => Some(broker_resource(core, resource, alteration)),
                Some(Err(refused)) => Some(refused),
                Some(Ok((node, request))) => {
                    decommissions.push((i, node, request));
                    None
                }
            },
            RESOURCE_BROKER_LOGGER => Some(invalid_request(
                "Spate's log levels are set at start (RUST_LOG), not changed at runtime".to_owned(),
            )),
            other => Some(invalid_request(format!(
                "Unknown resource type {other}: Spate changes topic configs only"
            ))),
        };
        outcomes.push(outcome);
    }
    let validate_only = if validate_only {
        ValidateOnly::Yes
    } else {
        ValidateOnly::No
    };
    for (i, node, request) in decommissions {
        outcomes[i] = Some(decommission(core, node, request, validate_only).await);
    }
    if !topics.is_empty() {
        let (indexes, topics): (Vec<usize>, Vec<AlterTopic>) = topics.into_iter().unzip();
        let count = topics.len();
        let answers = call_controller(
            core,
            CoreRequest::AlterConfigs(topics, validate_only),
            count,
        )
        .await;
        for (i, answer) in indexes.into_iter().zip(answers) {
            outcomes[i] = Some(answer);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every resource answered"))
        .collect()
}

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: AlterConfigsRequest,
) -> Option<ResponseParts> {
    let resources = request
        .resources
        .iter()
        .map(|r| Resource {
            resource_type: r.resource_type,
            name: r.resource_name.to_string(),
            alteration: Ok(Alteration::Replace(
                r.configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect(),
            )),
        })
        .collect();
    let outcomes = change_configs(core, resources, request.validate_only).await;
    let mut response = AlterConfigsResponse::default();
    for (resource, (code, message)) in request.resources.iter().zip(outcomes) {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        result.error_code = code.code();
        result.error_message = message.as_deref().map(str_bytes);
        response.responses.push(result);
    }
    respond(header, &response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::alter::ConfigChange;

    fn incremental(name: &str, changes: &[(&str, AlterOp, Option<&str>)]) -> Resource {
        let changes = changes
            .iter()
            .map(|(key, op, value)| ConfigChange {
                key: (*key).to_owned(),
                op: *op,
                value: value.map(str::to_owned),
            })
            .collect();
        Resource {
            resource_type: RESOURCE_BROKER,
            name: name.to_owned(),
            alteration: Ok(Alteration::Incremental(changes)),
        }
    }

    fn decided(resource: &Resource) -> Option<Result<(NodeId, Decommission), ErrorCode>> {
        let alteration = resource.alteration.as_ref().unwrap();
        decommission_request(resource, alteration).map(|r| r.map_err(|(code, _)| code))
    }

    #[test]
    fn the_decommission_config_starts_and_cancels_a_drain_of_the_named_broker() {
        let set = |name, value| incremental(name, &[(DECOMMISSION_CONFIG, AlterOp::Set, value)]);
        assert_eq!(
            decided(&set("4", Some("true"))),
            Some(Ok((NodeId(4), Decommission::Start)))
        );
        assert_eq!(
            decided(&set("4", Some("FALSE"))),
            Some(Ok((NodeId(4), Decommission::Cancel)))
        );
        let delete = incremental("2", &[(DECOMMISSION_CONFIG, AlterOp::Delete, None)]);
        assert_eq!(
            decided(&delete),
            Some(Ok((NodeId(2), Decommission::Cancel)))
        );
        let replace = Resource {
            resource_type: RESOURCE_BROKER,
            name: "3".into(),
            alteration: Ok(Alteration::Replace(vec![(
                DECOMMISSION_CONFIG.into(),
                Some("true".into()),
            )])),
        };
        assert_eq!(
            decided(&replace),
            Some(Ok((NodeId(3), Decommission::Start)))
        );
        // Other broker configs are not a decommission.
        let other = incremental("4", &[("log.retention.ms", AlterOp::Set, Some("1"))]);
        assert_eq!(decided(&other), None);
        // Refusals: a value that is not a boolean, a list op, no broker id, other keys with it.
        assert_eq!(
            decided(&set("4", Some("yes"))),
            Some(Err(ErrorCode::InvalidConfig))
        );
        let append = incremental("4", &[(DECOMMISSION_CONFIG, AlterOp::Append, Some("true"))]);
        assert_eq!(decided(&append), Some(Err(ErrorCode::InvalidConfig)));
        for name in ["", "-1", "four"] {
            assert_eq!(
                decided(&set(name, Some("true"))),
                Some(Err(ErrorCode::InvalidRequest)),
                "{name:?}"
            );
        }
        let mixed = incremental(
            "4",
            &[
                (DECOMMISSION_CONFIG, AlterOp::Set, Some("true")),
                ("log.retention.ms", AlterOp::Set, Some("1")),
            ],
        );
        assert_eq!(decided(&mixed), Some(Err(ErrorCode::InvalidRequest)));
    }
}
