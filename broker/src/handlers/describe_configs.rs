//! DescribeConfigs (key 32): the configs of topics (type 2) and of this broker (type 4).
//!
//! A topic config's source is Kafka's: DYNAMIC_TOPIC_CONFIG when set on the topic (at creation
//! or by AlterConfigs), else STATIC_BROKER_CONFIG when this broker's settings (flags, file,
//! environment) set its default, else DEFAULT_CONFIG. With `include_synonyms`, each entry lists
//! where its value could come from, highest precedence first, as Kafka's `ConfigHelper` does:
//! the topic override, then the broker setting under Kafka's broker name for it
//! (`log.retention.ms` for `retention.ms`...), then the built-in default under that name.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use spate_wire::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use spate_wire::ErrorCode;

use spate_controller::ids::NodeId;

use super::alter_configs::{DECOMMISSION_CONFIG, FOLLOWER_THROTTLE_CONFIG, LEADER_THROTTLE_CONFIG};
use super::{respond, str_bytes};
use crate::config::TopicDefaults;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::KafkaCode;
use crate::metadata::topics::{TopicConfig, TopicMeta, TOPIC_CONFIG_KEYS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
// Config sources, as Kafka numbers them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
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
        | "remote.storage.enable"
        | "spate.decommission" => TYPE_BOOLEAN,
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
        | "default.replication.factor"
        | "spate.decommission.replicas"
        | "spate.decommission.leaderships"
        | "spate.decommission.moving" => TYPE_INT,
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
        // flush.policy and spate.visibility (Spate's own), Kafka's string configs (message.timestamp.type,
        // compression.type, message.format.version) and anything not listed.
        _ => TYPE_STRING,
    }
}

/// The broker config Kafka names as a topic config's default (its first synonym in
/// `ServerTopicConfigSynonyms`), or Spate's own name for the two flush settings Kafka lacks.
/// `None`: no broker setting stands behind it.
pub fn broker_synonym(key: &str) -> Option<&'static str> {
    Some(match key {
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "segment.jitter.ms" => "log.roll.jitter.ms",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "flush.policy" => "log.flush.policy",
        "flush.bytes" => "log.flush.bytes",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "max.message.bytes" => "message.max.bytes",
        "index.interval.bytes" => "log.index.interval.bytes",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "cleanup.policy" => "log.cleanup.policy",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        "min.insync.replicas" => "min.insync.replicas",
        "compression.type" => "compression.type",
        "preallocate" => "log.preallocate",
        "message.format.version" => "log.message.format.version",
        "message.timestamp.type" => "log.message.timestamp.type",
        "message.timestamp.difference.max.ms" => "log.message.timestamp.difference.max.ms",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "message.downconversion.enable" => "log.message.downconversion.enable",
        "local.retention.ms" => "log.local.retention.ms",
        "local.retention.bytes" => "log.local.retention.bytes",
        _ => return None,
    })
}

fn synonym(name: &str, value: String, source: i8) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = str_bytes(name);
    s.value = Some(str_bytes(&value));
    s.source = source;
    s
}

/// Spate's built-in topic defaults, what a broker started with no settings has.
fn builtin_defaults() -> &'static TopicConfig {
    static BUILTIN: std::sync::OnceLock<TopicConfig> = std::sync::OnceLock::new();
    BUILTIN.get_or_init(|| {
        let config = crate::config::Config::resolve(crate::config::Settings::default())
            .expect("the built-in settings resolve");
        TopicConfig::from_defaults(&config.topic_defaults)
    })
}

/// One topic config's value, source and synonyms (highest precedence first), Kafka's way.
pub fn topic_entry_sources(
    meta: &TopicMeta,
    key: &str,
    defaults: &TopicDefaults,
) -> (String, i8, Vec<DescribeConfigsSynonym>) {
    let value = meta.config.get(key).expect("listed keys have values");
    let mut synonyms = Vec::new();
    if meta.config.is_override(key) {
        synonyms.push(synonym(key, value.clone(), SOURCE_TOPIC));
    }
    if let Some(broker_name) = broker_synonym(key) {
        if defaults.set_on_broker.contains(&key) {
            let on_broker = TopicConfig::from_defaults(defaults)
                .get(key)
                .expect("listed keys have values");
            synonyms.push(synonym(broker_name, on_broker, SOURCE_STATIC_BROKER));
        }
        let builtin = builtin_defaults()
            .get(key)
            .expect("listed keys have values");
        synonyms.push(synonym(broker_name, builtin, SOURCE_DEFAULT));
    }
    let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.source);
    (value, source, synonyms)
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

/// The decommission entries of broker `node` in a cluster (see `alter_configs.rs`): whether it
/// drains (the one writable key), and what it still hosts, leads and is having moved off it.
/// `None` outside a cluster or for a broker the image does not know.
fn decommission_entries(core: &Core, node: &str) -> Option<Vec<(&'static str, String, i8)>> {
    let published = core.published()?;
    let id = node.parse::<i32>().ok()?;
    let status = spate_controller::controller::decommission_status(&published.image, NodeId(id))?;
    let drain_source = if status.draining {
        SOURCE_DYNAMIC_BROKER
    } else {
        SOURCE_DEFAULT
    };
    Some(vec![
        (
            DECOMMISSION_CONFIG,
            status.draining.to_string(),
            drain_source,
        ),
        (
            "spate.decommission.replicas",
            status.replicas.to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "spate.decommission.leaderships",
            status.leaderships.to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "spate.decommission.moving",
            status.moving.to_string(),
            SOURCE_DEFAULT,
        ),
    ])
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
                        let (value, source, synonyms) =
                            topic_entry_sources(&meta, key, &core.config.topic_defaults);
                        let mut e = entry(key, value, source, false, header.api_version);
                        if request.include_synonyms {
                            e.synonyms = synonyms;
                        }
                        result.configs.push(e);
                    }
                }
                // As Kafka's ConfigHelper (Topic.validate first): an invalid name is
                // INVALID_TOPIC_EXCEPTION, a valid unknown one UNKNOWN_TOPIC_OR_PARTITION.
                None => match crate::metadata::topics::validate_topic_name(
                    resource.resource_name.as_str(),
                ) {
                    Err(error) => {
                        result.error_code = error.kafka_code().code();
                        result.error_message = Some(str_bytes(&error.to_string()));
                    }
                    Ok(()) => {
                        result.error_code = ErrorCode::UnknownTopicOrPartition.code();
                        result.error_message = Some(str_bytes("unknown topic"));
                    }
                },
            },
            RESOURCE_BROKER => {
                let name = resource.resource_name.as_str();
                let decommission = decommission_entries(core, name).unwrap_or_default();
                for (key, value, source) in decommission.iter().filter(|(k, ..)| wanted(k)) {
                    // Only the flag is writable; the progress is the controller's.
                    let read_only = *key != DECOMMISSION_CONFIG;
                    let e = entry(key, value.clone(), *source, read_only, header.api_version);
                    result.configs.push(e);
                }
                if !decommission.is_empty() && name != core.config.node_id.to_string() {
                    // Another broker of the cluster: only what the image says of it.
                } else if !name.is_empty() && name != core.config.node_id.to_string() {
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
                    // The replication throttle rates, writable (alter_configs.rs): set at
                    // runtime, or Kafka's default (no throttle).
                    let throttle = core.replication.dynamic_throttle.get();
                    for (key, rate) in [
                        (FOLLOWER_THROTTLE_CONFIG, throttle.follower_bytes_per_sec),
                        (LEADER_THROTTLE_CONFIG, throttle.leader_bytes_per_sec),
                    ] {
                        if !wanted(key) {
                            continue;
                        }
                        let (value, source) = match rate {
                            Some(rate) => (rate.to_string(), SOURCE_DYNAMIC_BROKER),
                            None => (i64::MAX.to_string(), SOURCE_DEFAULT),
                        };
                        result
                            .configs
                            .push(entry(key, value, source, false, header.api_version));
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

    fn meta(config: TopicConfig) -> TopicMeta {
        TopicMeta {
            name: "t".to_owned(),
            id: [1; 16],
            partitions: 1,
            config,
            replica_sets: Vec::new(),
        }
    }

    #[test]
    fn sources_and_synonyms_follow_kafkas_precedence() {
        use crate::config::{Config, Settings};
        let flags = Settings {
            retention_ms: Some(60_000),
            ..Settings::default()
        };
        let defaults = Config::resolve(flags).unwrap().topic_defaults;
        let mut config = TopicConfig::from_defaults(&defaults);
        config.set("segment.bytes", "16384").unwrap();
        config.set("retention.ms", "1000").unwrap();
        let topic = meta(config);
        let names = |synonyms: &[DescribeConfigsSynonym]| -> Vec<(String, String, i8)> {
            synonyms
                .iter()
                .map(|s| {
                    (
                        s.name.to_string(),
                        s.value.as_ref().unwrap().to_string(),
                        s.source,
                    )
                })
                .collect()
        };
        // Set on the topic, with a broker setting and a built-in default behind it.
        let (value, source, synonyms) = topic_entry_sources(&topic, "retention.ms", &defaults);
        assert_eq!((value.as_str(), source), ("1000", SOURCE_TOPIC));
        assert_eq!(
            names(&synonyms),
            vec![
                ("retention.ms".into(), "1000".into(), SOURCE_TOPIC),
                (
                    "log.retention.ms".into(),
                    "60000".into(),
                    SOURCE_STATIC_BROKER
                ),
                (
                    "log.retention.ms".into(),
                    "604800000".into(),
                    SOURCE_DEFAULT
                ),
            ]
        );
        // Set on the topic only.
        let (_, source, synonyms) = topic_entry_sources(&topic, "segment.bytes", &defaults);
        assert_eq!(source, SOURCE_TOPIC);
        assert_eq!(synonyms.len(), 2);
        assert_eq!(synonyms[1].name.as_str(), "log.segment.bytes");
        // Not set on the topic: the broker's setting wins.
        let plain = meta(TopicConfig::from_defaults(&defaults));
        let (value, source, synonyms) = topic_entry_sources(&plain, "retention.ms", &defaults);
        assert_eq!((value.as_str(), source), ("60000", SOURCE_STATIC_BROKER));
        assert_eq!(synonyms.len(), 2);
        // Neither: the default, whose synonym is the broker name.
        let (_, source, synonyms) = topic_entry_sources(&plain, "cleanup.policy", &defaults);
        assert_eq!(source, SOURCE_DEFAULT);
        assert_eq!(
            names(&synonyms),
            vec![("log.cleanup.policy".into(), "delete".into(), SOURCE_DEFAULT)]
        );
        // No broker setting behind it at all: a default with no synonym.
        let (_, source, synonyms) = topic_entry_sources(&plain, "write.caching", &defaults);
        assert_eq!((source, synonyms.len()), (SOURCE_DEFAULT, 0));
    }

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
            "spate.visibility",
            "message.timestamp.type",
            "compression.type",
            "message.format.version",
        ];
        for key in TOPIC_CONFIG_KEYS.iter().filter(|k| !strings.contains(k)) {
            assert_ne!(config_type(key), TYPE_STRING, "{key}");
        }
    }
}
