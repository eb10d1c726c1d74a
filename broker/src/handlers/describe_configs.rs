//! DescribeConfigs (key 32): the configs of topics (type 2) and of this broker (type 4).

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use spate_wire::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::metadata::topics::{TopicConfig, TOPIC_CONFIG_KEYS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
// Config sources, as Kafka numbers them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
// Config types (v3+), as Kafka's ConfigDef declares them.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// The type Kafka declares for `name`: admin clients (and UIs built on them) parse values by it,
/// e.g. `cleanup.policy` is a comma-separated list, `segment.bytes` an int.
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy"
        | "log.dirs"
        | "follower.replication.throttled.replicas"
        | "leader.replication.throttled.replicas" => TYPE_LIST,
        "auto.create.topics.enable"
        | "unclean.leader.election.enable"
        | "preallocate"
        | "write.caching"
        | "message.downconversion.enable"
        | "remote.storage.enable" => TYPE_BOOLEAN,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        "segment.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "broker.id"
        | "num.partitions"
        | "socket.request.max.bytes"
        | "log.segment.bytes"
        | "message.max.bytes"
        | "index.interval.bytes"
        | "segment.index.bytes"
        | "default.replication.factor" => TYPE_INT,
        "delete.retention.ms"
        | "min.compaction.lag.ms"
        | "retention.ms"
        | "retention.bytes"
        | "segment.ms"
        | "flush.ms"
        | "flush.bytes"
        | "log.retention.ms"
        | "log.retention.bytes"
        | "log.roll.ms"
        | "max.compaction.lag.ms"
        | "message.timestamp.difference.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.after.max.ms"
        | "segment.jitter.ms"
        | "file.delete.delay.ms"
        | "flush.messages"
        | "local.retention.ms"
        | "local.retention.bytes" => TYPE_LONG,
        // flush.policy (Spate's own), Kafka's string configs (message.timestamp.type,
        // compression.type, message.format.version) and anything not listed.
        _ => TYPE_STRING,
    }
}

fn entry(
    name: &str,
    value: String,
    source: i8,
    read_only: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    if version >= 3 {
        e.config_type = config_type(name);
    }
    e.value = Some(str_bytes(&value));
    e.config_source = source;
    e.read_only = read_only;
    e.is_sensitive = false;
    e
}

pub fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DescribeConfigsRequest,
) -> Option<ResponseParts> {
    let mut response = DescribeConfigsResponse::default();
    for resource in &request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let wanted = |key: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
        };
        match resource.resource_type {
            RESOURCE_TOPIC => match core.topic(resource.resource_name.as_str()) {
                Some(meta) => {
                    for key in TOPIC_CONFIG_KEYS.iter().filter(|k| wanted(k)) {
                        let value = meta.config.get(key).expect("listed keys have values");
                        let source = if meta.config.is_override(key) {
                            SOURCE_TOPIC
                        } else {
                            SOURCE_DEFAULT
                        };
                        result
                            .configs
                            .push(entry(key, value, source, false, header.api_version));
                    }
                }
                None => {
                    result.error_code = ErrorCode::UnknownTopicOrPartition.code();
                    result.error_message = Some(str_bytes("unknown topic"));
                }
            },
            RESOURCE_BROKER => {
                let name = resource.resource_name.as_str();
                if !name.is_empty() && name != core.config.node_id.to_string() {
                    result.error_code = ErrorCode::InvalidRequest.code();
                    result.error_message = Some(str_bytes("unknown broker id"));
                } else {
                    let defaults = TopicConfig::from_defaults(&core.config.topic_defaults);
                    let config = &core.config;
                    let mut entries = vec![
                        ("broker.id", config.node_id.to_string()),
                        (
                            "num.partitions",
                            config.topic_defaults.num_partitions.to_string(),
                        ),
                        (
                            "default.replication.factor",
                            config.topic_defaults.replication_factor.to_string(),
                        ),
                        (
                            "auto.create.topics.enable",
                            config.auto_create_topics.to_string(),
                        ),
                        (
                            "socket.request.max.bytes",
                            config.frame_bytes_max.to_string(),
                        ),
                        ("log.dirs", config.data_dir.display().to_string()),
                        ("log.retention.ms", defaults.retention_ms.to_string()),
                        ("log.retention.bytes", defaults.retention_bytes.to_string()),
                        ("log.segment.bytes", defaults.segment_bytes.to_string()),
                        ("log.roll.ms", defaults.segment_ms.to_string()),
                        ("message.max.bytes", defaults.max_message_bytes.to_string()),
                    ];
                    entries.retain(|(k, _)| wanted(k));
                    for (key, value) in entries {
                        result.configs.push(entry(
                            key,
                            value,
                            SOURCE_STATIC_BROKER,
                            true,
                            header.api_version,
                        ));
                    }
                }
            }
            _ => {
                result.error_code = ErrorCode::InvalidRequest.code();
                result.error_message =
                    Some(str_bytes("only topic and broker configs are described"));
            }
        }
        response.results.push(result);
    }
    respond(header, &response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topics::TOPIC_CONFIG_KEYS;

    #[test]
    fn types_match_kafka_for_every_described_key() {
        assert_eq!(config_type("cleanup.policy"), TYPE_LIST);
        assert_eq!(config_type("segment.bytes"), TYPE_INT);
        assert_eq!(config_type("retention.ms"), TYPE_LONG);
        assert_eq!(config_type("auto.create.topics.enable"), TYPE_BOOLEAN);
        assert_eq!(config_type("min.cleanable.dirty.ratio"), TYPE_DOUBLE);
        // Every topic key has Kafka's type; these are strings there too (flush.policy is
        // Spate's own).
        let strings = [
            "flush.policy",
            "message.timestamp.type",
            "compression.type",
            "message.format.version",
        ];
        for key in TOPIC_CONFIG_KEYS.iter().filter(|k| !strings.contains(k)) {
            assert_ne!(config_type(key), TYPE_STRING, "{key}");
        }
    }
}
