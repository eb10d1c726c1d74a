//! AlterConfigs (key 33): Kafka's legacy config change, which replaces a resource's whole set of
//! overrides with the configs given. Topics go to the controller (the controller core of a
//! single broker, or the metadata quorum's leader in a cluster), which decides the change on the
//! topic's current overrides (`metadata::alter`), makes it durable and has every core apply it
//! to the partitions it owns. [`change_configs`] is shared with IncrementalAlterConfigs: the
//! per-resource checks Kafka's brokers make before forwarding (`ConfigAdminManager.preprocess`)
//! and the answers for resources Spate has no dynamic configs for.
//!
//! Three broker configs are dynamic. Kafka's replication throttle rates,
//! [`FOLLOWER_THROTTLE_CONFIG`] and [`LEADER_THROTTLE_CONFIG`], which
//! `kafka-reassign-partitions --throttle` sets on each broker by id and removes at `--verify`:
//! applied at once on every core, in memory (a restart goes back to
//! `--reassignment-throttle-bytes-per-sec`). And [`DECOMMISSION_CONFIG`] (`spate.decommission`) on the broker
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
use crate::cluster::replication::DynamicThrottle;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::core::CONTROLLER_CORE;
use crate::errors::KafkaCode;
use crate::metadata::alter::{self, AlterOp, Alteration};
use crate::metadata::topics;
use crate::ops::{AlterTopic, CoreReply, CoreRequest, ValidateOnly};
use spate_controller::controller::Decommission;
use spate_controller::ids::NodeId;
use tracing::info;

/// The broker config whose change starts (`true`) or cancels (`false`, DELETE) the named
/// broker's decommission; described with the progress keys below.
pub const DECOMMISSION_CONFIG: &str = "spate.decommission";
/// Kafka's dynamic broker config for the rate of a follower's replication of throttled
/// replicas (bytes per second); here the rate of this broker's catch-up fetches for replicas a
/// reassignment is adding ([`DynamicThrottle`]).
pub const FOLLOWER_THROTTLE_CONFIG: &str = "follower.replication.throttled.rate";
/// Kafka's leader-side twin of [`FOLLOWER_THROTTLE_CONFIG`]; Spate applies the smaller of
/// the two on the follower's side.
pub const LEADER_THROTTLE_CONFIG: &str = "leader.replication.throttled.rate";

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
    if let Err(refused) = check_broker_name(core, resource) {
        return refused;
    }
    let keys = alteration.keys();
    if keys.is_empty() {
        return (ErrorCode::None, None);
    }
    invalid_request(format!(
        "Cannot update these configs dynamically: {}: Spate's broker settings are static (flags, \
         config file, environment) and take a restart",
        keys.join(", ")
    ))
}

/// Kafka's check of a broker resource's name: empty (cluster-wide) or this broker's id.
fn check_broker_name(core: &Core, resource: &Resource) -> Result<(), Outcome> {
    if resource.name.is_empty() {
        return Ok(());
    }
    match resource.name.parse::<i32>() {
        Err(_) => Err(invalid_request(format!(
            "Node id must be an integer, but it is: {}",
            resource.name
        ))),
        Ok(id) if id != core.config.node_id => Err(invalid_request(format!(
            "Unexpected broker id, expected {}, but received {}",
            core.config.node_id, resource.name
        ))),
        Ok(_) => Ok(()),
    }
}

/// The throttle rates a broker resource's alteration asks for: `None` unless every key it
/// names is [`FOLLOWER_THROTTLE_CONFIG`] or [`LEADER_THROTTLE_CONFIG`], else the rates this
/// broker would have after it (an incremental change starts from the current ones, a legacy
/// AlterConfigs from none), or why it is refused.
fn throttle_request(
    core: &Core,
    resource: &Resource,
    alteration: &Alteration,
) -> Option<Result<DynamicThrottle, Outcome>> {
    let keys = alteration.keys();
    if keys.is_empty()
        || !keys
            .iter()
            .all(|k| *k == FOLLOWER_THROTTLE_CONFIG || *k == LEADER_THROTTLE_CONFIG)
    {
        return None;
    }
    Some((|| {
        check_broker_name(core, resource)?;
        if resource.name.is_empty() {
            return Err(invalid_request(format!(
                "{} are set per broker here: name the broker's id (as \
                 kafka-reassign-partitions --throttle does); a cluster-wide default is not kept",
                keys.join(", ")
            )));
        }
        let mut throttle = match alteration {
            Alteration::Incremental(_) => core.replication.dynamic_throttle.get(),
            Alteration::Replace(_) => DynamicThrottle::default(),
        };
        match alteration {
            Alteration::Incremental(changes) => {
                for change in changes {
                    let value = match change.op {
                        AlterOp::Set => throttle_rate(&change.key, change.value.as_deref())?,
                        AlterOp::Delete => None,
                        AlterOp::Append | AlterOp::Subtract => {
                            return Err((
                                ErrorCode::InvalidConfig,
                                Some(format!("{} is not a list", change.key)),
                            ))
                        }
                    };
                    set_rate(&mut throttle, &change.key, value);
                }
            }
            Alteration::Replace(configs) => {
                for (key, value) in configs {
                    let value = throttle_rate(key, value.as_deref())?;
                    set_rate(&mut throttle, key, value);
                }
            }
        }
        Ok(throttle)
    })())
}

fn set_rate(throttle: &mut DynamicThrottle, key: &str, value: Option<u64>) {
    if key == FOLLOWER_THROTTLE_CONFIG {
        throttle.follower_bytes_per_sec = value;
    } else {
        throttle.leader_bytes_per_sec = value;
    }
}

/// A throttle rate's value: bytes per second, at least 1; Kafka's default (`i64::MAX`) means
/// no throttle.
fn throttle_rate(key: &str, value: Option<&str>) -> Result<Option<u64>, Outcome> {
    match value.map(str::trim).map(str::parse::<i64>) {
        Some(Ok(i64::MAX)) => Ok(None),
        Some(Ok(rate)) if rate >= 1 => Ok(Some(rate as u64)),
        _ => Err((
            ErrorCode::InvalidConfig,
            Some(format!(
                "{key} is a rate in bytes per second, at least 1, not {}",
                value.unwrap_or("null")
            )),
        )),
    }
}

/// Gives every core the new throttle rates, unless only validating.
async fn set_throttle(
    core: &Core,
    throttle: DynamicThrottle,
    validate_only: ValidateOnly,
) -> Outcome {
    if validate_only == ValidateOnly::Yes {
        return (ErrorCode::None, None);
    }
    let replies = core.broadcast(|| CoreRequest::SetThrottle(throttle)).await;
    if replies
        .iter()
        .all(|r| matches!(r, Some(CoreReply::ThrottleSet)))
    {
        info!(
            follower_bytes_per_sec = throttle.follower_bytes_per_sec,
            leader_bytes_per_sec = throttle.leader_bytes_per_sec,
            "replication throttle changed"
        );
        (ErrorCode::None, None)
    } else {
        (
            ErrorCode::UnknownServerError,
            Some("not every core took the throttle".to_owned()),
        )
    }
}

/// The decommission a broker resource's alteration asks for: `None` when it does not name
/// [`DECOMMISSION_CONFIG`], else the broker and the request, or why it is malformed.
fn decommission_request(
    resource: &Resource,
    alteration: &Alteration,
) -> Option<Result<(NodeId, Decommission), Outcome>> {
    let keys = alteration.keys();
    let value: Option<Option<&str>> = match alteration {
        Alteration::Incremental(changes) => {
            let ours = changes.iter().find(|c| c.key == DECOMMISSION_CONFIG);
            ours.map(|c| match c.op {
                AlterOp::Set => c.value.as_deref(),
                AlterOp::Delete => Some("false"),
                AlterOp::Append | AlterOp::Subtract => Some("(a list operation)"),
            })
        }
        Alteration::Replace(configs) => {
            let ours = configs.iter().find(|(k, _)| k == DECOMMISSION_CONFIG);
            ours.map(|(_, v)| v.as_deref())
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
    let mut throttles = Vec::new();
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
                None => match throttle_request(core, resource, alteration) {
                    None => Some(broker_resource(core, resource, alteration)),
                    Some(Err(refused)) => Some(refused),
                    Some(Ok(throttle)) => {
                        throttles.push((i, throttle));
                        None
                    }
                },
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
    for (i, throttle) in throttles {
        outcomes[i] = Some(set_throttle(core, throttle, validate_only).await);
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

    #[test]
    fn throttle_rates_are_whole_bytes_per_second_and_kafkas_default_means_none() {
        assert_eq!(
            throttle_rate(FOLLOWER_THROTTLE_CONFIG, Some("150000")),
            Ok(Some(150_000))
        );
        assert_eq!(
            throttle_rate(FOLLOWER_THROTTLE_CONFIG, Some(" 1 ")),
            Ok(Some(1))
        );
        assert_eq!(
            throttle_rate(LEADER_THROTTLE_CONFIG, Some("9223372036854775807")),
            Ok(None)
        );
        for bad in [Some("0"), Some("-5"), Some("fast"), Some("1.5"), None] {
            let refused = throttle_rate(LEADER_THROTTLE_CONFIG, bad).unwrap_err();
            assert_eq!(refused.0, ErrorCode::InvalidConfig, "{bad:?}");
        }
        let both = DynamicThrottle {
            follower_bytes_per_sec: Some(300),
            leader_bytes_per_sec: Some(200),
        };
        assert_eq!(both.rate(), Some(200));
        assert_eq!(DynamicThrottle::default().rate(), None);
        let mut one = DynamicThrottle::default();
        set_rate(&mut one, LEADER_THROTTLE_CONFIG, Some(7));
        assert_eq!((one.follower_bytes_per_sec, one.rate()), (None, Some(7)));
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
