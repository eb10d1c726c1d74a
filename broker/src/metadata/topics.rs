//! Topics: names, per-topic configuration with broker defaults, and their durable record.
//!
//! A topic is a file `<data-dir>/topics/<name>.toml` (written to a temporary file, fsynced,
//! renamed, directory fsynced), and its partitions are directories `<data-dir>/<name>-<n>/` like
//! Kafka's. The topic file is the source of truth: on startup every core reads all of them, and a
//! partition directory without a topic file is left alone (and logged) rather than guessed at.
//!
//! Topic files are written and removed through the storage [`Disk`] seam ([`save`], [`remove`]:
//! `GlommioDisk` on the controller core, so a topic change does not block its executor;
//! `MemDisk` in tests), with `spate_storage::files::write_atomically`, the checkpoint writer the
//! partition logs use. The one exception is [`save_blocking`], for `__consumer_offsets` before
//! the executors start, with the same bytes and the same order of steps. Reading them at
//! startup ([`load_all`]) still uses `std::fs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spate_storage::files::write_atomically;
use spate_storage::io::Disk;
use spate_storage::{CleanConfig, FlushPolicy, LogConfig, StorageError};

use crate::config::{FlushMode, TopicDefaults};

/// Kafka's limit on topic name length (a partition directory adds `-<n>`).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have on this broker: each partition holds a write buffer and a
/// tail cache, so this bounds a single CreateTopics request's memory.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 1024;
/// Write-behind buffer of a partition's active segment. The log holds one being filled and two
/// spares; only while the device lags does it queue up to `FULL_WRITES_QUEUED_MAX` (8) more, so
/// with the tail cache a busy partition holds ~7 MiB and at most ~15 MiB while its device lags
/// (a roll's pending seal may queue as much again for the closed segment: `storage::log`).
/// The storage defaults (4 MiB buffers, 8 MiB cache) would be several times that, too much for
/// brokers with hundreds of partitions. A per-core memory budget should replace these
/// per-partition sizes.
pub const PARTITION_WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Recent batches kept in memory per partition for tailing consumers.
pub const PARTITION_TAIL_CACHE_BYTES: usize = 4 << 20;
/// Most topics the broker keeps.
pub const TOPICS_MAX: usize = 10_000;

/// Why a topic name or config was refused; each maps to one Kafka error code.
// The shared prefix mirrors Kafka's error names (INVALID_*), which is what readers look for.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// INVALID_TOPIC_EXCEPTION.
    #[error("invalid topic name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    /// INVALID_PARTITIONS.
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    /// INVALID_REPLICATION_FACTOR.
    #[error("invalid replication factor {0}: replication is not implemented yet, every partition has one replica")]
    InvalidReplicationFactor(i16),
    /// INVALID_CONFIG.
    #[error("invalid config {key}={value:?}: {why}")]
    InvalidConfig {
        key: String,
        value: String,
        why: &'static str,
    },
}

/// Checks a topic name the way Kafka does: 1-249 bytes of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// [`TopicError::InvalidName`].
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why| {
        Err(TopicError::InvalidName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Per-topic settings. Keys are Kafka's topic config names; `flush.policy` and `flush.bytes`
/// are Spate's own (Kafka's `flush.ms` keeps its meaning: the group commit interval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: usize,
    pub flush_mode: FlushMode,
    pub flush_interval_ms: u64,
    pub flush_bytes_max: u64,
    /// `cleanup.policy` (topic files written before compaction existed say nothing: delete).
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// `min.cleanable.dirty.ratio`, in millionths (an integer keeps the config `Eq`).
    #[serde(default = "default_dirty_ratio_ppm")]
    pub min_cleanable_dirty_ratio_ppm: u32,
    /// `delete.retention.ms`.
    #[serde(default = "default_delete_retention_ms")]
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    #[serde(default)]
    pub min_compaction_lag_ms: i64,
    /// `min.insync.replicas`: an acks=all produce needs this many in-sync replicas. Every
    /// partition has one replica until replication lands, so above 1 acks=all is refused with
    /// NOT_ENOUGH_REPLICAS, as Kafka refuses it on a topic with fewer in-sync replicas.
    #[serde(default = "default_min_insync_replicas")]
    pub min_insync_replicas: u32,
    /// `message.timestamp.type`: who stamps the records.
    #[serde(default)]
    pub timestamp_type: TimestampKind,
    /// `compression.type`: the codec batches are stored in.
    #[serde(default)]
    pub compression: TopicCompression,
    /// `write.caching` (Redpanda's name): `false`, the default, counts a record toward the
    /// replicated high watermark (acks=all, consumer visibility) only once every in-sync
    /// replica has fsynced it; `true` once every in-sync replica has it in memory, fsynced or
    /// not (Kafka's rule). See docs/DURABILITY.md.
    #[serde(default)]
    pub write_caching: bool,
    /// `spate.visibility`: which records consumers may read on a partition this broker holds
    /// alone (replication factor 1): `durable` (the default) only those an fdatasync covered,
    /// `appended` every appended one (Kafka's rule on one broker). Replicated partitions read
    /// below the replicated high watermark whatever it says. See docs/DURABILITY.md.
    #[serde(default)]
    pub visibility: Visibility,
    /// `index.interval.bytes`: bytes between offset index entries.
    #[serde(default = "default_index_interval_bytes")]
    pub index_interval_bytes: u64,
    /// Kafka topic configs Spate accepts and reports but does not act on (see
    /// [`STORED_ONLY_CONFIGS`] for each one's reason), by key.
    #[serde(default)]
    pub stored: BTreeMap<String, String>,
    /// Keys the creator set explicitly (DescribeConfigs reports the rest as defaults).
    #[serde(default)]
    pub overrides: Vec<String>,
}

/// `spate.visibility`: when a record becomes readable by consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    /// Once an fdatasync covered it: a consumer never sees a record a crash can take back.
    #[default]
    Durable,
    /// Once appended (Kafka's rule): a process crash or power loss can take back a record a
    /// consumer has seen, until the group commit covers it.
    Appended,
}

impl Visibility {
    /// The config's values, as written.
    const NAMES: [(&'static str, Visibility); 2] = [
        ("durable", Visibility::Durable),
        ("appended", Visibility::Appended),
    ];
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TimestampKind {
    /// The producer's timestamps are kept (Kafka's default).
    #[default]
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// `compression.type`: `producer` keeps each batch as sent; any other value is the codec
/// batches are stored in, and the broker recompresses those that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopicCompression {
    /// Kafka's default.
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl TopicCompression {
    /// Kafka's names, in Kafka's spelling.
    const NAMES: [(&'static str, TopicCompression); 6] = [
        ("producer", TopicCompression::Producer),
        ("uncompressed", TopicCompression::Uncompressed),
        ("gzip", TopicCompression::Gzip),
        ("snappy", TopicCompression::Snappy),
        ("lz4", TopicCompression::Lz4),
        ("zstd", TopicCompression::Zstd),
    ];

    /// The codec batches must be stored in, or `None` to keep the producer's.
    pub fn codec(self) -> Option<spate_wire::batch::Compression> {
        use spate_wire::batch::Compression;
        match self {
            TopicCompression::Producer => None,
            TopicCompression::Uncompressed => Some(Compression::None),
            TopicCompression::Gzip => Some(Compression::Gzip),
            TopicCompression::Snappy => Some(Compression::Snappy),
            TopicCompression::Lz4 => Some(Compression::Lz4),
            TopicCompression::Zstd => Some(Compression::Zstd),
        }
    }
}

/// Kafka topic configs that Spate accepts, validates, stores and reports, but does not act on,
/// each with its Kafka default, the kind of value, and why it changes nothing here. Tools such
/// as Terraform and Kafka Streams set several of them; refusing them broke those tools.
pub const STORED_ONLY_CONFIGS: &[(&str, &str, ConfigKind, &str)] = &[
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigKind::Long { min: 1 },
        "the cleaner compacts by dirty ratio; a longest lag before cleaning is not enforced",
    ),
    (
        "message.timestamp.difference.max.ms",
        "9223372036854775807",
        ConfigKind::Long { min: 0 },
        "producer timestamps are not checked against the broker's clock",
    ),
    (
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigKind::Long { min: 0 },
        "producer timestamps are not checked against the broker's clock",
    ),
    (
        "message.timestamp.after.max.ms",
        "9223372036854775807",
        ConfigKind::Long { min: 0 },
        "producer timestamps are not checked against the broker's clock",
    ),
    (
        "unclean.leader.election.enable",
        "false",
        ConfigKind::Bool,
        "read by the cluster's controller; a single broker has no other replica to elect",
    ),
    (
        "segment.index.bytes",
        "10485760",
        ConfigKind::Long { min: 4 },
        "Spate's offset index grows with its segment; there is no preallocated index file",
    ),
    (
        "segment.jitter.ms",
        "0",
        ConfigKind::Long { min: 0 },
        "segments roll exactly at segment.ms",
    ),
    (
        "file.delete.delay.ms",
        "60000",
        ConfigKind::Long { min: 0 },
        "deleted segments are removed at once; no reader holds them (reads are checked copies)",
    ),
    (
        "preallocate",
        "false",
        ConfigKind::Bool,
        "segment files are preallocated by Spate's storage engine as it needs",
    ),
    (
        "flush.messages",
        "9223372036854775807",
        ConfigKind::Long { min: 1 },
        "Spate flushes by flush.policy, flush.ms and flush.bytes",
    ),
    (
        "message.downconversion.enable",
        "true",
        ConfigKind::Bool,
        "only the v2 record format exists in Spate: there is nothing to convert",
    ),
    (
        "message.format.version",
        "3.0-IV1",
        ConfigKind::Text,
        "deprecated in Kafka; Spate stores the v2 format only",
    ),
    (
        "follower.replication.throttled.replicas",
        "",
        ConfigKind::Text,
        "replication throttling is not implemented yet",
    ),
    (
        "leader.replication.throttled.replicas",
        "",
        ConfigKind::Text,
        "replication throttling is not implemented yet",
    ),
    (
        "local.retention.ms",
        "-2",
        ConfigKind::Long { min: -2 },
        "tiered storage is not implemented: all data is local",
    ),
    (
        "local.retention.bytes",
        "-2",
        ConfigKind::Long { min: -2 },
        "tiered storage is not implemented: all data is local",
    ),
    (
        "remote.storage.enable",
        "false",
        ConfigKind::Bool,
        "tiered storage is not implemented: only false is accepted",
    ),
];

/// The kind of value a stored-only config takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// An integer at least `min`.
    Long {
        /// The smallest accepted value.
        min: i64,
    },
    /// `true` or `false`.
    Bool,
    /// Any text.
    Text,
}

/// Kafka's default `index.interval.bytes`, 4096.
fn default_index_interval_bytes() -> u64 {
    4096
}

/// What happens to old segments (`cleanup.policy`, Kafka's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleanupPolicy {
    /// `delete`: retention by age and size.
    #[default]
    Delete,
    /// `compact`: the cleaner keeps the latest record per key; nothing is deleted by age.
    Compact,
    /// `compact,delete` (either order): both.
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether the cleaner compacts this topic.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// Whether retention deletes old segments.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

impl std::str::FromStr for CleanupPolicy {
    type Err = ();

    /// Kafka's list syntax: `delete`, `compact`, `compact,delete`, `delete,compact`.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (mut compact, mut delete) = (false, false);
        for item in text.split(',') {
            match item.trim() {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return Err(()),
            }
        }
        match (compact, delete) {
            (true, true) => Ok(CleanupPolicy::CompactDelete),
            (true, false) => Ok(CleanupPolicy::Compact),
            (false, true) => Ok(CleanupPolicy::Delete),
            (false, false) => Err(()),
        }
    }
}

impl std::fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        })
    }
}

/// Kafka's default `min.insync.replicas`, 1.
fn default_min_insync_replicas() -> u32 {
    1
}

/// Kafka's default `min.cleanable.dirty.ratio`, 0.5.
fn default_dirty_ratio_ppm() -> u32 {
    500_000
}

/// Kafka's default `delete.retention.ms`, one day.
fn default_delete_retention_ms() -> i64 {
    24 * 3_600_000
}

/// Every topic config key DescribeConfigs reports, in order.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "min.cleanable.dirty.ratio",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "flush.policy",
    "flush.ms",
    "flush.bytes",
    "message.timestamp.type",
    "compression.type",
    "write.caching",
    "spate.visibility",
    "index.interval.bytes",
    "max.compaction.lag.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "unclean.leader.election.enable",
    "segment.index.bytes",
    "segment.jitter.ms",
    "file.delete.delay.ms",
    "preallocate",
    "flush.messages",
    "message.downconversion.enable",
    "message.format.version",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "local.retention.ms",
    "local.retention.bytes",
    "remote.storage.enable",
];

impl TopicConfig {
    /// The broker defaults, no overrides.
    pub fn from_defaults(defaults: &TopicDefaults) -> TopicConfig {
        TopicConfig {
            retention_ms: defaults.retention_ms,
            retention_bytes: defaults.retention_bytes,
            segment_bytes: defaults.segment_bytes,
            segment_ms: defaults.segment_ms,
            max_message_bytes: defaults.max_message_bytes,
            flush_mode: defaults.flush_mode,
            flush_interval_ms: defaults.flush_interval_ms,
            flush_bytes_max: defaults.flush_bytes_max,
            cleanup_policy: CleanupPolicy::Delete,
            min_cleanable_dirty_ratio_ppm: default_dirty_ratio_ppm(),
            delete_retention_ms: default_delete_retention_ms(),
            min_compaction_lag_ms: 0,
            min_insync_replicas: default_min_insync_replicas(),
            timestamp_type: TimestampKind::CreateTime,
            compression: TopicCompression::Producer,
            write_caching: false,
            visibility: Visibility::Durable,
            index_interval_bytes: default_index_interval_bytes(),
            stored: BTreeMap::new(),
            overrides: Vec::new(),
        }
    }

    /// Sets one config from its Kafka name and text value.
    ///
    /// # Errors
    /// [`TopicError::InvalidConfig`] for unknown keys and unparsable or out-of-range values.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), TopicError> {
        let invalid = |why| TopicError::InvalidConfig {
            key: key.to_owned(),
            value: value.to_owned(),
            why,
        };
        let int = |min: i64| -> Result<i64, TopicError> {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not an integer"))?;
            if v < min {
                return Err(invalid("out of range"));
            }
            Ok(v)
        };
        match key {
            "cleanup.policy" => {
                self.cleanup_policy = value
                    .parse()
                    .map_err(|()| invalid("one of delete, compact, compact,delete"))?;
            }
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = value.trim().parse().map_err(|_| invalid("not a number"))?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(invalid("between 0 and 1"));
                }
                self.min_cleanable_dirty_ratio_ppm = (ratio * 1e6).round() as u32;
            }
            "delete.retention.ms" => self.delete_retention_ms = int(0)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(0)?,
            "min.insync.replicas" => {
                let v = int(1)?;
                if v > i64::from(u16::MAX) {
                    return Err(invalid("out of range"));
                }
                self.min_insync_replicas = v as u32;
            }
            "write.caching" => {
                self.write_caching = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("true or false")),
                }
            }
            "spate.visibility" => {
                self.visibility = Visibility::NAMES
                    .iter()
                    .find(|(name, _)| *name == value.trim())
                    .map(|&(_, v)| v)
                    .ok_or_else(|| invalid("one of durable, appended"))?;
            }
            "retention.ms" => self.retention_ms = int(-1)?,
            "retention.bytes" => self.retention_bytes = int(-1)?,
            "segment.bytes" => {
                let v = int(1 << 14)?;
                if v > i64::from(u32::MAX) {
                    return Err(invalid("at most 4294967295"));
                }
                self.segment_bytes = v as u64;
            }
            "segment.ms" => self.segment_ms = int(1)?,
            "max.message.bytes" => {
                let v = int(64)?;
                if v > spate_storage::config::RECOVERY_BATCH_BYTES_MAX as i64 {
                    return Err(invalid("larger than the largest batch Spate stores"));
                }
                self.max_message_bytes = v as usize;
            }
            "flush.policy" => {
                self.flush_mode = match value.trim() {
                    "every-append" => FlushMode::EveryAppend,
                    "group" => FlushMode::Group,
                    "never" => FlushMode::Never,
                    _ => return Err(invalid("one of every-append, group, never")),
                }
            }
            "flush.ms" => self.flush_interval_ms = int(1)? as u64,
            "flush.bytes" => self.flush_bytes_max = int(1)? as u64,
            "message.timestamp.type" => {
                self.timestamp_type = match value.trim() {
                    "CreateTime" => TimestampKind::CreateTime,
                    "LogAppendTime" => TimestampKind::LogAppendTime,
                    _ => return Err(invalid("one of CreateTime, LogAppendTime")),
                }
            }
            "compression.type" => {
                self.compression = TopicCompression::NAMES
                    .iter()
                    .find(|(name, _)| *name == value.trim())
                    .map(|&(_, c)| c)
                    .ok_or_else(|| {
                        invalid("one of producer, uncompressed, gzip, snappy, lz4, zstd")
                    })?;
            }
            "index.interval.bytes" => self.index_interval_bytes = int(1)? as u64,
            _ => {
                let Some(&(_, _, kind, _)) = STORED_ONLY_CONFIGS.iter().find(|(k, ..)| *k == key)
                else {
                    return Err(invalid("unknown topic config"));
                };
                let text = value.trim();
                match kind {
                    ConfigKind::Long { min } => {
                        int(min)?;
                    }
                    ConfigKind::Bool => {
                        if text != "true" && text != "false" {
                            return Err(invalid("true or false"));
                        }
                    }
                    ConfigKind::Text => {}
                }
                if key == "remote.storage.enable" && text == "true" {
                    return Err(invalid("tiered storage is not implemented"));
                }
                self.stored.insert(key.to_owned(), text.to_owned());
            }
        }
        if !self.overrides.iter().any(|k| k == key) {
            self.overrides.push(key.to_owned());
        }
        Ok(())
    }

    /// The current value of a key from [`TOPIC_CONFIG_KEYS`], as text.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => self.cleanup_policy.to_string(),
            "min.cleanable.dirty.ratio" => {
                (f64::from(self.min_cleanable_dirty_ratio_ppm) / 1e6).to_string()
            }
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "write.caching" => self.write_caching.to_string(),
            "spate.visibility" => Visibility::NAMES
                .iter()
                .find(|(_, v)| *v == self.visibility)
                .map_or("durable", |(name, _)| name)
                .to_owned(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "flush.policy" => match self.flush_mode {
                FlushMode::EveryAppend => "every-append",
                FlushMode::Group => "group",
                FlushMode::Never => "never",
            }
            .to_owned(),
            "flush.ms" => self.flush_interval_ms.to_string(),
            "flush.bytes" => self.flush_bytes_max.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampKind::CreateTime => "CreateTime",
                TimestampKind::LogAppendTime => "LogAppendTime",
            }
            .to_owned(),
            "compression.type" => TopicCompression::NAMES
                .iter()
                .find(|(_, c)| *c == self.compression)
                .map_or("producer", |(name, _)| name)
                .to_owned(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            _ => {
                let (_, default, ..) = STORED_ONLY_CONFIGS.iter().find(|(k, ..)| *k == key)?;
                self.stored
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| (*default).to_owned())
            }
        })
    }

    /// Whether `key` was set for this topic rather than taken from the broker defaults.
    pub fn is_override(&self, key: &str) -> bool {
        self.overrides.iter().any(|k| k == key)
    }

    /// The broker defaults with `overrides` set over them, in key order.
    ///
    /// # Errors
    /// [`TopicError::InvalidConfig`] for the first unknown key or bad value.
    pub fn from_overrides(
        defaults: &TopicDefaults,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, TopicError> {
        let mut config = TopicConfig::from_defaults(defaults);
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        Ok(config)
    }

    /// The keys set on this topic with their values, as the metadata log keeps them.
    pub fn override_map(&self) -> BTreeMap<String, String> {
        self.overrides
            .iter()
            .filter_map(|key| Some((key.clone(), self.get(key)?)))
            .collect()
    }

    /// The storage engine's settings for one partition of this topic.
    pub fn log_config(&self) -> LogConfig {
        let defaults = LogConfig::default();
        let batch_bytes_max = self
            .max_message_bytes
            .max(spate_wire::batch::BATCH_HEADER_BYTES);
        LogConfig {
            segment_bytes_max: self.segment_bytes,
            segment_ms: self.segment_ms,
            // A compact-only topic keeps everything the cleaner keeps.
            retention_ms: (self.cleanup_policy.deletes() && self.retention_ms >= 0)
                .then_some(self.retention_ms),
            retention_bytes: u64::try_from(self.retention_bytes)
                .ok()
                .filter(|_| self.cleanup_policy.deletes()),
            flush: match self.flush_mode {
                FlushMode::EveryAppend => FlushPolicy::EveryAppend,
                FlushMode::Group => FlushPolicy::GroupCommit {
                    interval_ms: self.flush_interval_ms,
                    bytes_max: self.flush_bytes_max,
                },
                FlushMode::Never => FlushPolicy::Never,
            },
            batch_bytes_max,
            index_interval_bytes: self.index_interval_bytes,
            write_buffer_bytes_max: PARTITION_WRITE_BUFFER_BYTES,
            tail_cache_bytes_max: PARTITION_TAIL_CACHE_BYTES,
            ..defaults
        }
    }

    /// The cleaner's settings, if the topic is compacted.
    pub fn clean_config(&self) -> Option<CleanConfig> {
        self.cleanup_policy.compacts().then(|| CleanConfig {
            delete_retention_ms: self.delete_retention_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            min_cleanable_dirty_ratio: f64::from(self.min_cleanable_dirty_ratio_ppm) / 1e6,
            ..CleanConfig::default()
        })
    }
}

/// A topic as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (a UUID), reported by Metadata v10+.
    pub id: [u8; 16],
    pub partitions: i32,
    pub config: TopicConfig,
    /// Cluster mode: each partition's replicas and in-sync replicas (broker ids), as the
    /// metadata log has them, for Metadata answers. Empty on a single broker (the one broker
    /// is every partition's only replica) and never written to topic files.
    #[serde(skip, default)]
    pub replica_sets: Vec<ReplicaSet>,
}

/// One partition's replicas and in-sync replicas.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaSet {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas an ongoing reassignment adds (their catch-up fetches may be throttled).
    pub adding: Vec<i32>,
}

/// Where topic files live.
pub fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("topics")
}

/// A partition's log directory.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Reads every topic file.
///
/// # Errors
/// If the directory or a file cannot be read or parsed: a broker that cannot tell which topics
/// exist must not start and invent an empty set.
pub fn load_all(data_dir: &Path) -> anyhow::Result<BTreeMap<String, TopicMeta>> {
    use anyhow::Context;
    let dir = topics_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut topics = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let meta: TopicMeta =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(topics.len() < TOPICS_MAX, "more than {TOPICS_MAX} topics");
        topics.insert(meta.name.clone(), meta);
    }
    Ok(topics)
}

/// The name of `topic`'s file in [`topics_dir`].
fn file_name(topic: &str) -> String {
    format!("{topic}.toml")
}

/// The bytes of a topic file.
fn encode(meta: &TopicMeta) -> std::io::Result<String> {
    toml::to_string(meta).map_err(std::io::Error::other)
}

/// Writes a topic file durably through `disk`: `<name>.toml.tmp` written and fdatasynced,
/// renamed over `<name>.toml`, the directory fsynced (`write_atomically`). A crash leaves the
/// old file or the new one, whole; after it returns, the file survives a crash.
///
/// # Errors
/// From the disk; the topic file is then unchanged (or, if only the directory fsync failed,
/// replaced but perhaps not durably).
pub async fn save<D: Disk>(
    disk: &D,
    data_dir: &Path,
    meta: &TopicMeta,
) -> Result<(), StorageError> {
    let dir = topics_dir(data_dir);
    let name = file_name(&meta.name);
    disk.create_dir_all(&dir)
        .await
        .map_err(|e| StorageError::from_io("creating", &dir, e))?;
    let text = encode(meta).map_err(|e| StorageError::from_io("encoding", dir.join(&name), e))?;
    write_atomically(disk, &dir, &name, text.as_bytes()).await
}

/// [`save`] with blocking `std::fs` calls, for the one topic file written before the executors
/// start (`__consumer_offsets`, by `group::ensure_offsets_topic`), where no glommio executor
/// exists to run [`save`] on and nothing else runs to be blocked. Same bytes, same order:
/// temporary file, fsync, rename, directory fsync.
///
/// # Errors
/// From the file system.
pub fn save_blocking(data_dir: &Path, meta: &TopicMeta) -> std::io::Result<()> {
    let dir = topics_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    let text = encode(meta)?;
    let tmp = dir.join(format!("{}.tmp", file_name(&meta.name)));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(file_name(&meta.name)))?;
    std::fs::File::open(&dir)?.sync_all()
}

/// Removes a topic file durably through `disk` (unlink, then fsync the directory). Partition
/// directories are removed by their owners.
///
/// # Errors
/// From the disk, including not-found.
pub async fn remove<D: Disk>(disk: &D, data_dir: &Path, name: &str) -> Result<(), StorageError> {
    let dir = topics_dir(data_dir);
    let path = dir.join(file_name(name));
    disk.remove(&path)
        .await
        .map_err(|e| StorageError::from_io("removing", &path, e))?;
    disk.sync_dir(&dir)
        .await
        .map_err(|e| StorageError::from_io("syncing", &dir, e))
}

/// A fresh random topic id.
pub fn new_topic_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // getrandom(2) never fails for 16 bytes once the pool is initialised; fall back to the
    // clock rather than return an all-zero id (Kafka's "no id").
    // SAFETY: writes at most 16 bytes into `id`.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != 16 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        id = now.to_le_bytes();
    }
    // Version 4, variant 1, as a UUID.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

#[cfg(test)]
mod tests {
    use spate_storage::block_on;
    use spate_storage::io::mem::{FaultOp, MemDisk};

    use super::*;
    use crate::config::{Config, Settings};

    fn defaults() -> TopicDefaults {
        Config::resolve(Settings::default()).unwrap().topic_defaults
    }

    #[test]
    fn kafka_topic_name_rules() {
        assert!(validate_topic_name("orders.v2_eu-1").is_ok());
        for bad in ["", ".", "..", "has space", "slash/y", "ü"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn config_set_get_round_trips_and_marks_overrides() {
        let mut config = TopicConfig::from_defaults(&defaults());
        config.set("retention.ms", "60000").unwrap();
        config.set("flush.policy", "every-append").unwrap();
        assert_eq!(config.get("retention.ms").as_deref(), Some("60000"));
        assert_eq!(config.get("flush.policy").as_deref(), Some("every-append"));
        assert!(config.is_override("retention.ms"));
        assert!(!config.is_override("segment.bytes"));
        assert!(config.set("cleanup.policy", "shred").is_err());
        assert!(config.set("cleanup.policy", "").is_err());
        assert!(config.set("retention.ms", "soon").is_err());
        assert!(config.set("no.such.key", "1").is_err());
        assert!(config.set("segment.bytes", "100").is_err());
        for key in TOPIC_CONFIG_KEYS {
            assert!(config.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn visibility_defaults_to_durable_and_takes_only_its_two_values() {
        let mut config = TopicConfig::from_defaults(&defaults());
        assert_eq!(config.visibility, Visibility::Durable);
        assert_eq!(config.get("spate.visibility").as_deref(), Some("durable"));
        assert!(!config.is_override("spate.visibility"));
        config.set("spate.visibility", "appended").unwrap();
        assert_eq!(config.visibility, Visibility::Appended);
        assert_eq!(config.get("spate.visibility").as_deref(), Some("appended"));
        assert!(config.is_override("spate.visibility"));
        // "replicated" comes with the replication issue; until then it is refused.
        for bad in ["replicated", "Durable", "", "true"] {
            assert!(config.set("spate.visibility", bad).is_err(), "{bad}");
        }
        assert_eq!(config.visibility, Visibility::Appended);
        // A topic file written before the setting existed reads as durable.
        let mut old = toml::to_string(&TopicConfig::from_defaults(&defaults())).unwrap();
        old = old
            .lines()
            .filter(|l| !l.starts_with("visibility"))
            .collect::<Vec<_>>()
            .join("\n");
        let read: TopicConfig = toml::from_str(&old).unwrap();
        assert_eq!(read.visibility, Visibility::Durable);
    }

    #[test]
    fn cleanup_policy_takes_kafkas_values_and_drives_retention_and_cleaning() {
        let mut config = TopicConfig::from_defaults(&defaults());
        assert_eq!(config.get("cleanup.policy").as_deref(), Some("delete"));
        assert!(config.clean_config().is_none());
        assert!(config.log_config().retention_ms.is_some());
        config.set("cleanup.policy", "compact").unwrap();
        assert_eq!(config.get("cleanup.policy").as_deref(), Some("compact"));
        let log = config.log_config();
        assert_eq!((log.retention_ms, log.retention_bytes), (None, None));
        config.set("retention.bytes", "1000000").unwrap();
        assert_eq!(config.log_config().retention_bytes, None);
        config.set("cleanup.policy", "delete, compact").unwrap();
        assert_eq!(
            config.get("cleanup.policy").as_deref(),
            Some("compact,delete")
        );
        assert_eq!(config.log_config().retention_bytes, Some(1_000_000));
        config.set("min.cleanable.dirty.ratio", "0.01").unwrap();
        config.set("delete.retention.ms", "1000").unwrap();
        config.set("min.compaction.lag.ms", "5").unwrap();
        assert!(config.set("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(config.set("delete.retention.ms", "-1").is_err());
        assert_eq!(
            config.get("min.cleanable.dirty.ratio").as_deref(),
            Some("0.01")
        );
        let clean = config.clean_config().expect("compacted");
        assert_eq!(clean.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(clean.delete_retention_ms, 1000);
        assert_eq!(clean.min_compaction_lag_ms, 5);
        // Topic files from before these keys existed still load, as delete.
        let old = "retention_ms = 1\nretention_bytes = -1\nsegment_bytes = 16384\nsegment_ms = 1\n\
                   max_message_bytes = 100\nflush_mode = \"group\"\nflush_interval_ms = 5\n\
                   flush_bytes_max = 1\n";
        let parsed: TopicConfig = toml::from_str(old).unwrap();
        assert_eq!(parsed.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(parsed.min_cleanable_dirty_ratio_ppm, 500_000);
        assert_eq!(parsed.delete_retention_ms, 86_400_000);
    }

    #[test]
    fn log_config_is_valid_for_any_accepted_topic_config() {
        let mut config = TopicConfig::from_defaults(&defaults());
        config.log_config().validate();
        config.set("max.message.bytes", "10000000").unwrap();
        config.set("segment.bytes", "16384").unwrap();
        config.set("retention.bytes", "-1").unwrap();
        let log = config.log_config();
        log.validate();
        assert_eq!(log.retention_bytes, None);
        assert_eq!(log.batch_bytes_max, 10_000_000);
    }

    fn meta(name: &str, partitions: i32) -> TopicMeta {
        TopicMeta {
            name: name.to_owned(),
            id: new_topic_id(),
            partitions,
            config: TopicConfig::from_defaults(&defaults()),
            replica_sets: Vec::new(),
        }
    }

    #[test]
    fn topic_files_survive_a_reload() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-tmp")
            .join(format!("topics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (t1, t2) = (meta("t1", 6), meta("t2", 3));
        save_blocking(&dir, &t1).unwrap();
        // The `Disk` path writes the same bytes as the blocking one; `load_all` reads both.
        let disk = MemDisk::new();
        let data = Path::new("/data");
        block_on(save(&disk, data, &t1)).unwrap();
        let t1_path = topics_dir(data).join("t1.toml");
        assert_eq!(
            disk.file_bytes(&t1_path).unwrap(),
            std::fs::read(topics_dir(&dir).join("t1.toml")).unwrap()
        );
        block_on(save(&disk, data, &t2)).unwrap();
        let t2_bytes = disk.file_bytes(&topics_dir(data).join("t2.toml")).unwrap();
        std::fs::write(topics_dir(&dir).join("t2.toml"), t2_bytes).unwrap();
        let loaded = load_all(&dir).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!((&loaded["t1"], &loaded["t2"]), (&t1, &t2));
        block_on(remove(&disk, data, "t1")).unwrap();
        assert!(disk.file_bytes(&t1_path).is_none());
        assert!(block_on(remove(&disk, data, "t1")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_ne!(new_topic_id(), new_topic_id());
    }

    /// What a crash leaves of `path`: `None`, or the topic it parses to (a torn or mixed file
    /// fails the test).
    fn topic_after_crash(disk: &MemDisk, path: &Path, seed: u64) -> Option<TopicMeta> {
        let bytes = disk.file_bytes(path)?;
        let text = std::str::from_utf8(&bytes).unwrap_or_else(|_| panic!("seed {seed}: torn"));
        Some(toml::from_str(text).unwrap_or_else(|e| panic!("seed {seed}: torn file: {e}")))
    }

    /// Power loss after a topic file write, removal or update that failed at any step (or did
    /// not fail): each file is whole or absent, one that was written (or removed) before the
    /// call returned stays written (or removed), and an update leaves the old or the new topic.
    #[test]
    fn a_topic_file_is_whole_or_absent_after_a_crash() {
        let faults = [
            None,
            Some(FaultOp::Open),
            Some(FaultOp::Write),
            Some(FaultOp::Truncate),
            Some(FaultOp::Sync),
            Some(FaultOp::Rename),
        ];
        let data = Path::new("/data");
        let dir = topics_dir(data);
        let (mut failed, mut written) = (0, 0);
        for seed in 0..240u64 {
            let disk = MemDisk::new();
            let old = meta("grown", 2);
            block_on(save(&disk, data, &old)).unwrap();
            block_on(save(&disk, data, &meta("gone", 1))).unwrap();
            let fault = faults[(seed % faults.len() as u64) as usize];
            let (grown, new) = (
                TopicMeta {
                    partitions: 4,
                    ..old.clone()
                },
                meta("new", 8),
            );
            // One of the two writes meets the fault, the other runs to the end unsynced by
            // anything after it.
            let (faulty, clean) = if seed % 2 == 0 {
                (&grown, &new)
            } else {
                (&new, &grown)
            };
            if let Some(op) = fault {
                disk.fail_next_on(op, &dir.join(format!("{}.toml.tmp", faulty.name)));
            }
            let faulty_saved = block_on(save(&disk, data, faulty)).is_ok();
            assert_eq!(faulty_saved, fault.is_none(), "seed {seed}");
            block_on(save(&disk, data, clean)).unwrap();
            let removal = if seed % 3 == 0 {
                disk.fail_next_on(FaultOp::Remove, &dir.join("gone.toml"));
                false
            } else {
                true
            };
            assert_eq!(block_on(remove(&disk, data, "gone")).is_ok(), removal);
            disk.crash(seed);
            let after =
                |name: &str| topic_after_crash(&disk, &dir.join(format!("{name}.toml")), seed);
            for (topic, saved) in [(faulty, faulty_saved), (clean, true)] {
                match after(&topic.name) {
                    Some(found) if found == *topic => written += 1,
                    Some(found) if topic.name == "grown" && !saved => assert_eq!(found, old),
                    None if topic.name == "new" && !saved => failed += 1,
                    other => panic!("seed {seed}: {} saved={saved} left {other:?}", topic.name),
                }
            }
            assert_eq!(after("gone").is_none(), removal, "seed {seed}");
        }
        assert!(
            failed >= 30 && written >= 240,
            "{failed} failed, {written} written"
        );
    }
}
