//! AlterConfigs (key 33): Kafka's legacy config change, which replaces a resource's whole set of
//! overrides with the configs given. Topics go to the controller (the controller core of a
//! single broker, or the metadata quorum's leader in a cluster), which decides the change on the
//! topic's current overrides (`metadata::alter`), makes it durable and has every core apply it
//! to the partitions it owns. [`change_configs`] is shared with IncrementalAlterConfigs: the
//! per-resource checks Kafka's brokers make before forwarding (`ConfigAdminManager.preprocess`)
//! and the answers for resources Spate has no dynamic configs for.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use spate_wire::kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use spate_wire::ErrorCode;

use super::{call_controller, respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::KafkaCode;
use crate::metadata::alter::{self, Alteration};
use crate::metadata::topics;
use crate::ops::{AlterTopic, CoreRequest, ValidateOnly};

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

/// Answers each resource in request order: local refusals first (duplicate resources, malformed
/// ops, resource types and names), then every topic left goes to the controller in one call.
pub(super) async fn change_configs(
    core: &Core,
    resources: Vec<Resource>,
    validate_only: bool,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(resources.len());
    let mut topics = Vec::new();
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
            RESOURCE_BROKER => Some(broker_resource(core, resource, alteration)),
            RESOURCE_BROKER_LOGGER => Some(invalid_request(
                "Spate's log levels are set at start (RUST_LOG), not changed at runtime".to_owned(),
            )),
            other => Some(invalid_request(format!(
                "Unknown resource type {other}: Spate changes topic configs only"
            ))),
        };
        outcomes.push(outcome);
    }
    if !topics.is_empty() {
        let (indexes, topics): (Vec<usize>, Vec<AlterTopic>) = topics.into_iter().unzip();
        let count = topics.len();
        let validate_only = if validate_only {
            ValidateOnly::Yes
        } else {
            ValidateOnly::No
        };
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
