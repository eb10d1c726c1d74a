//! `groups ...`: list, describe (offsets, lag, members and their hosts), reset, delete.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{Error, Out};
use crate::{Admin, OffsetSpec};

/// The `groups` commands.
#[derive(Debug, Subcommand)]
pub(super) enum GroupsCommand {
    /// Every consumer group with its state.
    List,
    /// A group's members, and per partition its committed offset, log end, lag and owner.
    Describe {
        /// The group.
        group: String,
    },
    /// Set a group's committed offsets (a dry run unless --execute); the group must have no
    /// active members.
    Reset {
        /// The group.
        group: String,
        #[command(flatten)]
        to: ResetTo,
        /// Only this topic (repeatable; default: every topic the group committed).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
        /// Commit the new offsets (without it, only print them).
        #[arg(long)]
        execute: bool,
    },
    /// Delete an empty group.
    Delete {
        /// The group.
        group: String,
    },
}

/// Where `groups reset` moves the offsets: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(super) struct ResetTo {
    /// To each partition's log start.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's log end.
    #[arg(long)]
    to_latest: bool,
    /// To the first record at or after this time (ms since the epoch).
    #[arg(long, value_name = "MS")]
    to_timestamp: Option<i64>,
}

impl ResetTo {
    fn to_offset_spec(&self) -> OffsetSpec {
        match (self.to_earliest, self.to_latest, self.to_timestamp) {
            (true, _, _) => OffsetSpec::Earliest,
            (_, true, _) => OffsetSpec::Latest,
            (_, _, Some(ms)) => OffsetSpec::Timestamp(ms),
            _ => unreachable!("clap requires one of --to-earliest, --to-latest, --to-timestamp"),
        }
    }
}

pub(super) async fn run(
    admin: &mut Admin,
    command: GroupsCommand,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    match command {
        GroupsCommand::List => list(admin, out).await,
        GroupsCommand::Describe { group } => describe(admin, &group, out).await,
        GroupsCommand::Reset {
            group,
            to,
            topics,
            execute,
        } => reset(admin, &group, to.to_offset_spec(), topics, execute, out).await,
        GroupsCommand::Delete { group } => {
            admin.delete_group(&group).await?;
            if out.json() {
                out.document(&json!({ "group": group, "deleted": true }));
            } else {
                out.line(format!("deleted group {group}"));
            }
            Ok(())
        }
    }
}

async fn list(admin: &mut Admin, out: &mut Out<'_>) -> Result<(), Error> {
    let mut groups = admin.list_groups().await?;
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    if out.json() {
        let groups: Vec<Value> = groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.group_id,
                    "state": g.state,
                    "protocol_type": g.protocol_type,
                })
            })
            .collect();
        out.document(&Value::Array(groups));
        return Ok(());
    }
    out.line(format!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE"));
    for g in groups {
        out.line(format!(
            "{:<40} {:<20} {}",
            g.group_id, g.state, g.protocol_type
        ));
    }
    Ok(())
}

/// The owner of a partition in `groups describe`.
struct Owner {
    member_id: String,
    host: String,
    client_id: String,
}

async fn describe(admin: &mut Admin, group: &str, out: &mut Out<'_>) -> Result<(), Error> {
    let description = admin.describe_group(group).await?;
    let committed = admin.committed_offsets(group).await?;
    // Every partition with a commit or an owner, sorted.
    let mut rows: BTreeMap<(String, i32), (Option<i64>, Option<Owner>)> = BTreeMap::new();
    for c in committed {
        rows.entry((c.topic, c.partition)).or_default().0 = Some(c.offset);
    }
    for m in &description.members {
        for (topic, partition) in &m.assignment {
            rows.entry((topic.clone(), *partition)).or_default().1 = Some(Owner {
                member_id: m.member_id.clone(),
                host: m.client_host.clone(),
                client_id: m.client_id.clone(),
            });
        }
    }
    let mut partitions = Vec::with_capacity(rows.len());
    for ((topic, partition), (offset, owner)) in rows {
        let end = admin
            .list_offset(&topic, partition, OffsetSpec::Latest)
            .await?;
        let lag = offset.map(|o| (end - o).max(0));
        partitions.push((topic, partition, offset, end, lag, owner));
    }
    if out.json() {
        let members: Vec<Value> = description
            .members
            .iter()
            .map(|m| {
                json!({
                    "member_id": m.member_id,
                    "instance_id": m.instance_id,
                    "client_id": m.client_id,
                    "host": m.client_host,
                    "assignment": m.assignment.iter()
                        .map(|(t, p)| json!({ "topic": t, "partition": p }))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let partitions: Vec<Value> = partitions
            .iter()
            .map(|(topic, partition, offset, end, lag, owner)| {
                json!({
                    "topic": topic,
                    "partition": partition,
                    "committed_offset": offset,
                    "log_end_offset": end,
                    "lag": lag,
                    "member_id": owner.as_ref().map(|o| &o.member_id),
                    "host": owner.as_ref().map(|o| &o.host),
                    "client_id": owner.as_ref().map(|o| &o.client_id),
                })
            })
            .collect();
        out.document(&json!({
            "group": group,
            "state": description.state,
            "protocol_type": description.protocol_type,
            "protocol": description.protocol,
            "members": members,
            "partitions": partitions,
        }));
        return Ok(());
    }
    out.line(format!(
        "group {group} state {} protocol {}/{} members {}",
        description.state,
        description.protocol_type,
        description.protocol,
        description.members.len()
    ));
    out.line(format!(
        "{:<30} {:>9} {:>12} {:>12} {:>10}  MEMBER HOST CLIENT",
        "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
    ));
    for (topic, partition, offset, end, lag, owner) in partitions {
        let text = |o: Option<i64>| o.map_or("-".to_owned(), |o| o.to_string());
        let owner = owner.map_or("- - -".to_owned(), |o| {
            format!("{} {} {}", o.member_id, o.host, o.client_id)
        });
        out.line(format!(
            "{topic:<30} {partition:>9} {:>12} {end:>12} {:>10}  {owner}",
            text(offset),
            text(lag),
        ));
    }
    Ok(())
}

async fn reset(
    admin: &mut Admin,
    group: &str,
    to: OffsetSpec,
    topics: Vec<String>,
    execute: bool,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    let description = admin.describe_group(group).await?;
    if !description.members.is_empty() {
        return Err(format!(
            "group {group} has {} active members (state {}): stop them before resetting",
            description.members.len(),
            description.state
        )
        .into());
    }
    let topics = if topics.is_empty() {
        let mut named: Vec<String> = admin
            .committed_offsets(group)
            .await?
            .into_iter()
            .map(|c| c.topic)
            .collect();
        named.dedup();
        named
    } else {
        topics
    };
    if topics.is_empty() {
        return Err(
            format!("group {group} has no committed offsets; name topics with --topic").into(),
        );
    }
    let metadata = admin
        .metadata(Some(&topics.iter().map(String::as_str).collect::<Vec<_>>()))
        .await?;
    let mut plan = Vec::new();
    for t in &metadata.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        crate::ClientError::check(t.error_code, || format!("topic {name}"))?;
        for p in &t.partitions {
            let mut offset = admin.list_offset(&name, p.partition_index, to).await?;
            if offset < 0 {
                // No record at or after the timestamp: the end, as Kafka resets.
                offset = admin
                    .list_offset(&name, p.partition_index, OffsetSpec::Latest)
                    .await?;
            }
            plan.push((name.clone(), p.partition_index, offset));
        }
    }
    plan.sort();
    if execute {
        admin.commit_offsets(group, &plan).await?;
    }
    if out.json() {
        let offsets: Vec<Value> = plan
            .iter()
            .map(|(t, p, o)| json!({ "topic": t, "partition": p, "offset": o }))
            .collect();
        out.document(&json!({ "group": group, "executed": execute, "offsets": offsets }));
        return Ok(());
    }
    out.line(format!(
        "{:<30} {:>9} {:>12}",
        "TOPIC", "PARTITION", "NEW-OFFSET"
    ));
    for (topic, partition, offset) in &plan {
        out.line(format!("{topic:<30} {partition:>9} {offset:>12}"));
    }
    if execute {
        out.line(format!(
            "committed {} offsets for group {group}",
            plan.len()
        ));
    } else {
        out.line("dry run: add --execute to commit these offsets");
    }
    Ok(())
}
