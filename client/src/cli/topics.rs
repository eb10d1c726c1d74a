//! `topics ...`: create, list, describe (partitions, offsets, configs), describe-config,
//! alter-config, add-partitions, trim (DeleteRecords), delete.

use clap::{ArgGroup, ArgMatches, Args, Subcommand};
use serde_json::{json, Value};

use super::{error_name, Error, Out};
use crate::{Admin, ClientError, ConfigOperation, NewTopic, OffsetSpec};

/// The `topics` commands.
#[derive(Debug, Subcommand)]
pub(super) enum TopicsCommand {
    /// Create a topic.
    Create {
        /// The topic's name.
        name: String,
        /// Partitions (default: the broker's default).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Copies of each partition (default: the broker's default).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config (repeatable), e.g. --config retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<String>,
    },
    /// Every topic with its partition count and replication factor.
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(long)]
        internal: bool,
    },
    /// A topic's partitions (leader, replicas, ISR, log start and end offsets) and configs.
    Describe {
        /// The topic.
        name: String,
    },
    /// Every config of a topic, its value and its source.
    DescribeConfig {
        /// The topic.
        topic: String,
    },
    /// Change a topic's configs live (IncrementalAlterConfigs); the operations apply in the
    /// order given, all or none.
    #[command(group(
        ArgGroup::new("ops")
            .required(true)
            .multiple(true)
            .args(["set", "delete", "append", "subtract"])
    ))]
    AlterConfig {
        /// The topic.
        topic: String,
        /// Set a config.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        set: Vec<String>,
        /// Remove a config's override (back to its default).
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
        /// Add items to a list config.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        append: Vec<String>,
        /// Remove items from a list config.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        subtract: Vec<String>,
        /// Check the changes, make none.
        #[arg(long)]
        validate_only: bool,
    },
    /// Grow a topic to COUNT partitions in all (CreatePartitions).
    AddPartitions {
        /// The topic.
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        count: i32,
    },
    /// Delete a partition's records below an offset (DeleteRecords).
    Trim(Trim),
    /// Delete topics.
    Delete {
        /// The topics.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `topics trim`: where the partition's new start is.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("to").required(true).args(["offset", "before_timestamp"])))]
pub(super) struct Trim {
    /// The topic.
    name: String,
    /// The partition.
    #[arg(long)]
    partition: i32,
    /// Delete records below this offset (-1: the high watermark, everything).
    #[arg(long, allow_negative_numbers = true)]
    offset: Option<i64>,
    /// Delete records older than this time (ms since the epoch): the new start is the first
    /// record at or after it.
    #[arg(long, value_name = "MS")]
    before_timestamp: Option<i64>,
}

/// Checks a KEY=VALUE operand.
fn key_value(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_owned()),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn split_pair(s: &str) -> (String, String) {
    let (k, v) = s.split_once('=').expect("checked by key_value");
    (k.to_owned(), v.to_owned())
}

/// The operations of `topics alter-config` in command-line order (clap keeps each option's
/// values apart; their indices give the order back). Empty for any other command.
pub(super) fn ordered_config_ops(matches: &ArgMatches) -> Vec<(String, ConfigOperation)> {
    let Some(m) = matches
        .subcommand_matches("topics")
        .and_then(|m| m.subcommand_matches("alter-config"))
    else {
        return Vec::new();
    };
    let mut ops: Vec<(usize, String, ConfigOperation)> = Vec::new();
    for id in ["set", "delete", "append", "subtract"] {
        let (Some(values), Some(indices)) = (m.get_many::<String>(id), m.indices_of(id)) else {
            continue;
        };
        for (value, index) in values.zip(indices) {
            let (key, op) = match id {
                "delete" => (value.clone(), ConfigOperation::Delete),
                "set" => {
                    let (k, v) = split_pair(value);
                    (k, ConfigOperation::Set(v))
                }
                "append" => {
                    let (k, v) = split_pair(value);
                    (k, ConfigOperation::Append(v))
                }
                _ => {
                    let (k, v) = split_pair(value);
                    (k, ConfigOperation::Subtract(v))
                }
            };
            ops.push((index, key, op));
        }
    }
    ops.sort_by_key(|(index, _, _)| *index);
    ops.into_iter().map(|(_, k, op)| (k, op)).collect()
}

pub(super) async fn run(
    admin: &mut Admin,
    command: TopicsCommand,
    alter_ops: Vec<(String, ConfigOperation)>,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    match command {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let topic = NewTopic {
                name,
                partitions,
                replication_factor,
                configs: configs.iter().map(|c| split_pair(c)).collect(),
            };
            create(admin, topic, out).await
        }
        TopicsCommand::List { internal } => list(admin, internal, out).await,
        TopicsCommand::Describe { name } => describe(admin, &name, out).await,
        TopicsCommand::DescribeConfig { topic } => describe_config(admin, &topic, out).await,
        TopicsCommand::AlterConfig {
            topic,
            validate_only,
            ..
        } => alter_config(admin, &topic, &alter_ops, validate_only, out).await,
        TopicsCommand::AddPartitions { name, count } => {
            admin.create_partitions(&name, count).await?;
            if out.json() {
                out.document(&json!({ "topic": name, "partitions": count }));
            } else {
                out.line(format!("topic {name} now has {count} partitions"));
            }
            Ok(())
        }
        TopicsCommand::Trim(trim) => trim_partition(admin, trim, out).await,
        TopicsCommand::Delete { names } => delete(admin, &names, out).await,
    }
}

async fn create(admin: &mut Admin, topic: NewTopic, out: &mut Out<'_>) -> Result<(), Error> {
    let mut results = admin.create_topics(std::slice::from_ref(&topic)).await?;
    results.pop().expect("one result per topic")?;
    // What the broker made of the defaults.
    let metadata = admin.metadata(Some(&[&topic.name])).await?;
    let (partitions, replication_factor) = metadata
        .topics
        .first()
        .map(|t| {
            let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
            (t.partitions.len(), rf)
        })
        .unwrap_or((0, 0));
    if out.json() {
        out.document(&json!({
            "topic": topic.name,
            "partitions": partitions,
            "replication_factor": replication_factor,
            "configs": topic.configs.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        }));
    } else {
        out.line(format!(
            "created topic {} with {partitions} partitions, replication factor {replication_factor}",
            topic.name
        ));
    }
    Ok(())
}

async fn list(admin: &mut Admin, internal: bool, out: &mut Out<'_>) -> Result<(), Error> {
    let metadata = admin.metadata(None).await?;
    let mut rows: Vec<(String, usize, usize, bool)> = metadata
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .map(|t| {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
            (name, t.partitions.len(), rf, t.is_internal)
        })
        .collect();
    rows.sort();
    if out.json() {
        let topics: Vec<Value> = rows
            .iter()
            .map(|(name, partitions, rf, internal)| {
                json!({
                    "name": name,
                    "partitions": partitions,
                    "replication_factor": rf,
                    "internal": internal,
                })
            })
            .collect();
        out.document(&Value::Array(topics));
        return Ok(());
    }
    out.line(format!(
        "{:<40} {:>10} {:>11}",
        "NAME", "PARTITIONS", "REPLICAS"
    ));
    for (name, partitions, rf, _) in rows {
        out.line(format!("{name:<40} {partitions:>10} {rf:>11}"));
    }
    Ok(())
}

/// One partition of `topics describe`.
struct PartitionRow {
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    error: i16,
    log_start: Option<i64>,
    log_end: Option<i64>,
}

fn ids(list: &[i32]) -> String {
    if list.is_empty() {
        return "-".to_owned();
    }
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn offset_text(offset: Option<i64>) -> String {
    offset.map_or("-".to_owned(), |o| o.to_string())
}

async fn describe(admin: &mut Admin, name: &str, out: &mut Out<'_>) -> Result<(), Error> {
    let metadata = admin.metadata(Some(&[name])).await?;
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name))
        .ok_or_else(|| format!("metadata has no topic {name}"))?;
    ClientError::check(topic.error_code, || format!("topic {name}"))?;
    let internal = topic.is_internal;
    let mut rows: Vec<PartitionRow> = topic
        .partitions
        .iter()
        .map(|p| PartitionRow {
            partition: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            error: p.error_code,
            log_start: None,
            log_end: None,
        })
        .collect();
    rows.sort_by_key(|r| r.partition);
    for row in &mut rows {
        // A partition without a leader has no offsets to ask for: shown as "-".
        if row.leader < 0 {
            continue;
        }
        row.log_start = admin
            .list_offset(name, row.partition, OffsetSpec::Earliest)
            .await
            .ok();
        row.log_end = admin
            .list_offset(name, row.partition, OffsetSpec::Latest)
            .await
            .ok();
    }
    let configs = admin.describe_topic_configs(name).await?;
    if out.json() {
        let partitions: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "partition": r.partition,
                    "leader": (r.leader >= 0).then_some(r.leader),
                    "leader_epoch": r.leader_epoch,
                    "replicas": r.replicas,
                    "isr": r.isr,
                    "error": (r.error != 0).then(|| error_name(r.error)),
                    "log_start_offset": r.log_start,
                    "log_end_offset": r.log_end,
                })
            })
            .collect();
        out.document(&json!({
            "name": name,
            "internal": internal,
            "partitions": partitions,
            "configs": configs_json(&configs),
        }));
        return Ok(());
    }
    out.line(format!(
        "topic {name} partitions {} replication factor {}{}",
        rows.len(),
        rows.first().map_or(0, |r| r.replicas.len()),
        if internal { " (internal)" } else { "" }
    ));
    out.line(format!(
        "{:>9} {:>8} {:>12} {:<16} {:<16} {:>12} {:>12}",
        "PARTITION", "LEADER", "LEADER-EPOCH", "REPLICAS", "IN-SYNC", "LOG-START", "LOG-END"
    ));
    for r in &rows {
        let leader = if r.leader >= 0 {
            r.leader.to_string()
        } else {
            error_name(r.error)
        };
        out.line(format!(
            "{:>9} {leader:>8} {:>12} {:<16} {:<16} {:>12} {:>12}",
            r.partition,
            r.leader_epoch,
            ids(&r.replicas),
            ids(&r.isr),
            offset_text(r.log_start),
            offset_text(r.log_end),
        ));
    }
    out.line("");
    configs_table(&configs, out);
    Ok(())
}

fn configs_json(configs: &[crate::TopicConfigEntry]) -> Value {
    Value::Array(
        configs
            .iter()
            .map(|c| json!({ "name": c.name, "value": c.value, "source": c.source }))
            .collect(),
    )
}

fn configs_table(configs: &[crate::TopicConfigEntry], out: &mut Out<'_>) {
    out.line(format!("{:<40} {:<24} SOURCE", "CONFIG", "VALUE"));
    for c in configs {
        let value = c.value.as_deref().unwrap_or("(sensitive)");
        out.line(format!("{:<40} {:<24} {}", c.name, value, c.source));
    }
}

async fn describe_config(admin: &mut Admin, topic: &str, out: &mut Out<'_>) -> Result<(), Error> {
    let configs = admin.describe_topic_configs(topic).await?;
    if out.json() {
        out.document(&configs_json(&configs));
    } else {
        configs_table(&configs, out);
    }
    Ok(())
}

async fn alter_config(
    admin: &mut Admin,
    topic: &str,
    ops: &[(String, ConfigOperation)],
    validate_only: bool,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    assert!(!ops.is_empty(), "clap requires at least one operation");
    admin.alter_topic_configs(topic, ops, validate_only).await?;
    if out.json() {
        let changes: Vec<Value> = ops
            .iter()
            .map(|(key, op)| {
                let (op, value) = match op {
                    ConfigOperation::Set(v) => ("set", Some(v)),
                    ConfigOperation::Delete => ("delete", None),
                    ConfigOperation::Append(v) => ("append", Some(v)),
                    ConfigOperation::Subtract(v) => ("subtract", Some(v)),
                };
                json!({ "config": key, "op": op, "value": value })
            })
            .collect();
        out.document(&json!({
            "topic": topic,
            "validate_only": validate_only,
            "changes": changes,
        }));
        return Ok(());
    }
    let done = if validate_only {
        "would change"
    } else {
        "changed"
    };
    for (key, op) in ops {
        let what = match op {
            ConfigOperation::Set(v) => format!("set to {v}"),
            ConfigOperation::Delete => "back to its default".to_owned(),
            ConfigOperation::Append(v) => format!("{v} appended"),
            ConfigOperation::Subtract(v) => format!("{v} removed"),
        };
        out.line(format!("{topic}: {done} {key}: {what}"));
    }
    Ok(())
}

async fn trim_partition(admin: &mut Admin, trim: Trim, out: &mut Out<'_>) -> Result<(), Error> {
    let Trim {
        name,
        partition,
        offset,
        before_timestamp,
    } = trim;
    let offset = match (offset, before_timestamp) {
        (Some(offset), _) => offset,
        (None, Some(ms)) => {
            // No record at or after the time: every record is older, delete them all.
            let first_kept = admin
                .list_offset(&name, partition, OffsetSpec::Timestamp(ms))
                .await?;
            if first_kept < 0 {
                -1
            } else {
                first_kept
            }
        }
        (None, None) => unreachable!("clap requires --offset or --before-timestamp"),
    };
    let log_start = admin.delete_records(&name, partition, offset).await?;
    if out.json() {
        out.document(&json!({
            "topic": name,
            "partition": partition,
            "log_start_offset": log_start,
        }));
    } else {
        out.line(format!(
            "{name}/{partition}: records below {log_start} deleted (log start offset {log_start})"
        ));
    }
    Ok(())
}

async fn delete(admin: &mut Admin, names: &[String], out: &mut Out<'_>) -> Result<(), Error> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin.delete_topics(&refs).await?;
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for (name, result) in names.iter().zip(results) {
        match result {
            Ok(()) => rows.push((name, None)),
            Err(e) => {
                let error = super::client_error_name(&e).unwrap_or_else(|| e.to_string());
                failed.push(e);
                rows.push((name, Some(error)));
            }
        }
    }
    if out.json() {
        let topics: Vec<Value> = rows
            .iter()
            .map(|(name, error)| json!({ "topic": name, "deleted": error.is_none(), "error": error }))
            .collect();
        out.document(&Value::Array(topics));
    } else {
        for (name, error) in &rows {
            match error {
                None => out.line(format!("deleted topic {name}")),
                Some(error) => out.line(format!("topic {name} not deleted: {error}")),
            }
        }
    }
    match failed.len() {
        0 => Ok(()),
        // One topic: its own error, so the message and exit code are the broker's.
        1 if names.len() == 1 => Err(Box::new(failed.pop().expect("one"))),
        n => Err(format!("{n} of {} topics not deleted", names.len()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn matches(text: &str) -> ArgMatches {
        super::super::Cli::command()
            .try_get_matches_from(std::iter::once("spate-admin").chain(text.split_whitespace()))
            .unwrap()
    }

    #[test]
    fn alter_config_operations_keep_their_command_line_order() {
        let m = matches(
            "topics alter-config t --append cleanup.policy=compact --set retention.ms=1000 \
             --delete segment.bytes --subtract cleanup.policy=delete --validate-only",
        );
        assert_eq!(
            ordered_config_ops(&m),
            vec![
                (
                    "cleanup.policy".to_owned(),
                    ConfigOperation::Append("compact".to_owned())
                ),
                (
                    "retention.ms".to_owned(),
                    ConfigOperation::Set("1000".to_owned())
                ),
                ("segment.bytes".to_owned(), ConfigOperation::Delete),
                (
                    "cleanup.policy".to_owned(),
                    ConfigOperation::Subtract("delete".to_owned())
                ),
            ]
        );
        assert!(ordered_config_ops(&matches("topics list")).is_empty());
    }

    #[test]
    fn create_and_trim_parse_their_options() {
        let cli = super::super::Cli::from_arg_matches(&matches(
            "topics create t --partitions 3 --replication-factor 1 --config a=1 --config b=x=y",
        ))
        .unwrap();
        let super::super::Command::Topics(TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        }) = cli.command
        else {
            panic!("not create");
        };
        assert_eq!((name.as_str(), partitions, replication_factor), ("t", 3, 1));
        assert_eq!(configs, ["a=1", "b=x=y"]);
        assert_eq!(split_pair(&configs[1]), ("b".to_owned(), "x=y".to_owned()));
        let cli = super::super::Cli::from_arg_matches(&matches(
            "topics trim t --partition 2 --before-timestamp 5",
        ))
        .unwrap();
        let super::super::Command::Topics(TopicsCommand::Trim(trim)) = cli.command else {
            panic!("not trim");
        };
        assert_eq!(
            (trim.partition, trim.offset, trim.before_timestamp),
            (2, None, Some(5))
        );
        assert!(key_value("=x").is_err());
    }
}
