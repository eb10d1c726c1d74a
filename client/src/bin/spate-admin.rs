//! `spate-admin`: cluster and consumer group administration for a Spate (or Kafka) cluster.
//!
//! ```text
//! spate-admin [--bootstrap HOST:PORT] cluster [--topics]
//! spate-admin [--bootstrap HOST:PORT] groups list
//! spate-admin [--bootstrap HOST:PORT] groups describe GROUP
//! spate-admin [--bootstrap HOST:PORT] groups reset GROUP (--to-earliest | --to-latest |
//!             --to-timestamp MS) [--topic TOPIC]... [--execute]
//! spate-admin [--bootstrap HOST:PORT] groups delete GROUP
//! spate-admin [--bootstrap HOST:PORT] elect-leaders [--topic TOPIC]...
//! spate-admin [--bootstrap HOST:PORT] reassign --topic TOPIC --partition N (--replicas IDS | --cancel)
//! spate-admin [--bootstrap HOST:PORT] reassign --file PLAN.json [--cancel]
//! spate-admin [--bootstrap HOST:PORT] reassignments [--topic TOPIC]...
//! ```
//!
//! `cluster` prints the cluster id, the controller and every broker (id, address, whether it
//! is fenced) from DescribeCluster v2, or from Metadata when the broker does not advertise
//! DescribeCluster (then fencing is unknown, `-`); with `--topics`, every topic's partitions
//! with their leader, leader epoch, replicas and in-sync replicas.
//!
//! `elect-leaders` moves the leadership of every partition (or those of the topics named) back
//! to its preferred (first) replica, as `kafka-leader-election --election-type PREFERRED`, and
//! prints each partition's outcome; it fails (exit 1) when a partition could not be elected.
//!
//! `reassign` moves a partition to other brokers (KIP-455), as `kafka-reassign-partitions
//! --execute`: `--replicas 3,1,2` names the target replicas, preferred leader first; the new ones
//! catch up from the leader, then the ones not named are removed. `--file` takes Kafka's
//! reassignment JSON (`{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[3,1]}]}`,
//! other fields ignored). `--cancel` stops the ongoing move of the partition (or of every
//! partition in the file) and returns it to its original replicas. It prints each partition's
//! outcome and fails (exit 1) when one was refused. `reassignments` lists the moves in progress
//! (every one, or those of the topics named): replicas, and those being added and removed.
//!
//! `describe` prints each partition's committed offset, log end offset and lag, and the member
//! it is assigned to. `reset` prints the new offsets and commits them only with `--execute`
//! (like Kafka's kafka-consumer-groups), and only for a group without active members.
//!
//! It lives in the client crate, not in the `spate` binary, so the broker does not depend on a
//! client and this tool works against any broker the client speaks to.
//!
//! Exit codes: 0 done, 1 the cluster refused (a Kafka error, printed by name) or the request
//! failed otherwise, 2 bad command line, 3 the bootstrap broker could not be reached.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use spate_client::{Admin, ClientConfig, ClientError, OffsetSpec, PartitionMove};

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "\
usage: spate-admin [--bootstrap HOST:PORT] COMMAND

commands:
  cluster [--topics]          cluster id, controller, brokers (fenced or not); --topics adds
                              every partition's leader, leader epoch, replicas and ISR
  elect-leaders [--topic TOPIC]...
                              move leadership back to each partition's preferred replica
  reassign --topic TOPIC --partition N (--replicas ID,ID,... | --cancel)
  reassign --file PLAN.json [--cancel]
                              move partitions to other brokers (Kafka's reassignment JSON in
                              --file), or cancel their ongoing move
  reassignments [--topic TOPIC]...
                              moves in progress: replicas, adding, removing
  groups list                 every consumer group
  groups describe GROUP       members, committed offsets, log end and lag per partition
  groups reset GROUP (--to-earliest | --to-latest | --to-timestamp MS) [--topic TOPIC]...
                     [--execute]
                              new committed offsets (dry run unless --execute)
  groups delete GROUP         delete an empty group

--bootstrap defaults to 127.0.0.1:9092. Exit codes: 0 done, 1 refused or failed (Kafka errors
are printed by name), 2 bad command line, 3 broker unreachable.";

/// Exit code for a bad command line.
const EXIT_USAGE: i32 = 2;
/// Exit code when the request failed (a Kafka error or otherwise).
const EXIT_FAILED: i32 = 1;
/// Exit code when the bootstrap broker cannot be reached.
const EXIT_UNREACHABLE: i32 = 3;

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Cluster(Topics),
    List,
    Describe(String),
    Reset {
        group: String,
        to: OffsetSpec,
        topics: Vec<String>,
        execute: Execute,
    },
    Delete(String),
    /// Preferred-leader election for these topics' partitions (all topics when empty).
    ElectLeaders(Vec<String>),
    /// Start or cancel partition moves.
    Reassign(Vec<PartitionMove>),
    /// Moves in progress of these topics (all when empty).
    Reassignments(Vec<String>),
}

/// Whether `cluster` lists topics and their partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topics {
    Omit,
    Include,
}

/// Whether `reset` commits or only shows what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Execute {
    DryRun,
    Commit,
}

fn parse(args: &[String]) -> Result<(String, Command), String> {
    let mut bootstrap = "127.0.0.1:9092".to_owned();
    let mut rest: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--help" || args[i] == "-h" {
            return Ok((bootstrap, Command::Help));
        }
        if args[i] == "--bootstrap" {
            bootstrap = args
                .get(i + 1)
                .ok_or("--bootstrap needs HOST:PORT")?
                .clone();
            i += 2;
        } else {
            rest.push(&args[i]);
            i += 1;
        }
    }
    let command = match rest.as_slice() {
        ["help"] => Command::Help,
        ["cluster"] => Command::Cluster(Topics::Omit),
        ["cluster", "--topics"] => Command::Cluster(Topics::Include),
        ["groups", "list"] => Command::List,
        ["elect-leaders", options @ ..] => {
            let mut topics = Vec::new();
            let mut j = 0;
            while j < options.len() {
                match options[j] {
                    "--topic" => {
                        let topic = options.get(j + 1).ok_or("--topic needs TOPIC")?;
                        topics.push((*topic).to_owned());
                        j += 2;
                    }
                    other => return Err(format!("unknown elect-leaders option {other}")),
                }
            }
            Command::ElectLeaders(topics)
        }
        ["reassign", options @ ..] => Command::Reassign(parse_reassign(options)?),
        ["reassignments", options @ ..] => {
            let mut topics = Vec::new();
            let mut j = 0;
            while j < options.len() {
                match options[j] {
                    "--topic" => {
                        let topic = options.get(j + 1).ok_or("--topic needs TOPIC")?;
                        topics.push((*topic).to_owned());
                        j += 2;
                    }
                    other => return Err(format!("unknown reassignments option {other}")),
                }
            }
            Command::Reassignments(topics)
        }
        ["groups", "describe", group] => Command::Describe((*group).to_owned()),
        ["groups", "delete", group] => Command::Delete((*group).to_owned()),
        ["groups", "reset", group, options @ ..] => {
            let mut to = None;
            let mut topics = Vec::new();
            let mut execute = Execute::DryRun;
            let mut j = 0;
            while j < options.len() {
                match options[j] {
                    "--to-earliest" => to = Some(OffsetSpec::Earliest),
                    "--to-latest" => to = Some(OffsetSpec::Latest),
                    "--to-timestamp" => {
                        let ms = options.get(j + 1).ok_or("--to-timestamp needs MS")?;
                        let ms: i64 = ms.parse().map_err(|_| format!("bad timestamp {ms}"))?;
                        to = Some(OffsetSpec::Timestamp(ms));
                        j += 1;
                    }
                    "--topic" => {
                        let topic = options.get(j + 1).ok_or("--topic needs TOPIC")?;
                        topics.push((*topic).to_owned());
                        j += 1;
                    }
                    "--execute" => execute = Execute::Commit,
                    other => return Err(format!("unknown option {other}")),
                }
                j += 1;
            }
            Command::Reset {
                group: (*group).to_owned(),
                to: to.ok_or("reset needs --to-earliest, --to-latest or --to-timestamp")?,
                topics,
                execute,
            }
        }
        _ => return Err(format!("unknown command {:?}", rest.join(" "))),
    };
    Ok((bootstrap, command))
}

/// `reassign`'s options: one partition from `--topic`/`--partition`/`--replicas`, or every
/// partition of a `--file`; `--cancel` instead of replicas.
fn parse_reassign(options: &[&str]) -> Result<Vec<PartitionMove>, String> {
    let (mut topic, mut partition, mut replicas, mut file, mut cancel) =
        (None, None, None, None, false);
    let mut j = 0;
    while j < options.len() {
        let value = || {
            options
                .get(j + 1)
                .copied()
                .ok_or(format!("{} needs a value", options[j]))
        };
        match options[j] {
            "--topic" => topic = Some(value()?.to_owned()),
            "--partition" => {
                let v = value()?;
                partition = Some(v.parse::<i32>().map_err(|_| format!("bad partition {v}"))?);
            }
            "--replicas" => replicas = Some(parse_replicas(value()?)?),
            "--file" => file = Some(value()?.to_owned()),
            "--cancel" => {
                cancel = true;
                j += 1;
                continue;
            }
            other => return Err(format!("unknown reassign option {other}")),
        }
        j += 2;
    }
    if let Some(path) = file {
        if topic.is_some() || partition.is_some() || replicas.is_some() {
            return Err("--file replaces --topic, --partition and --replicas".to_owned());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        let mut moves = parse_plan(&text).map_err(|e| format!("{path}: {e}"))?;
        if cancel {
            for m in &mut moves {
                m.replicas = None;
            }
        }
        return Ok(moves);
    }
    let topic = topic.ok_or("reassign needs --topic (or --file)")?;
    let partition = partition.ok_or("reassign needs --partition")?;
    let replicas = match (replicas, cancel) {
        (Some(r), false) => Some(r),
        (None, true) => None,
        (Some(_), true) => return Err("--replicas and --cancel exclude each other".to_owned()),
        (None, false) => return Err("reassign needs --replicas or --cancel".to_owned()),
    };
    Ok(vec![PartitionMove {
        topic,
        partition,
        replicas,
    }])
}

/// `3,1,2` as broker ids.
fn parse_replicas(list: &str) -> Result<Vec<i32>, String> {
    list.split(',')
        .map(|id| {
            id.trim()
                .parse::<i32>()
                .map_err(|_| format!("bad broker id {id:?} in --replicas"))
        })
        .collect()
}

/// Kafka's reassignment JSON: `{"version":1,"partitions":[{"topic":..,"partition":..,
/// "replicas":[..]},..]}`; `log_dirs` and other fields are ignored.
fn parse_plan(text: &str) -> Result<Vec<PartitionMove>, String> {
    let plan: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let version = plan.get("version").and_then(|v| v.as_i64()).unwrap_or(1);
    if version != 1 {
        return Err(format!("unknown plan version {version}"));
    }
    let partitions = plan
        .get("partitions")
        .and_then(|p| p.as_array())
        .ok_or("no \"partitions\" array")?;
    partitions
        .iter()
        .map(|p| {
            let topic = p
                .get("topic")
                .and_then(|t| t.as_str())
                .ok_or("a partition without \"topic\"")?;
            let partition = p
                .get("partition")
                .and_then(|n| n.as_i64())
                .and_then(|n| i32::try_from(n).ok())
                .ok_or("a partition without a \"partition\" number")?;
            let replicas = p
                .get("replicas")
                .and_then(|r| r.as_array())
                .ok_or("a partition without a \"replicas\" array")?
                .iter()
                .map(|id| {
                    id.as_i64()
                        .and_then(|id| i32::try_from(id).ok())
                        .ok_or("a replica that is not a broker id")
                })
                .collect::<Result<Vec<i32>, _>>()?;
            Ok(PartitionMove {
                topic: topic.to_owned(),
                partition,
                replicas: Some(replicas),
            })
        })
        .collect()
}

fn resolve(bootstrap: &str) -> Result<SocketAddr, Error> {
    bootstrap
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("{bootstrap} resolves to no address").into())
}

async fn cluster(admin: &mut Admin, topics: Topics) -> Result<(), Error> {
    let description = admin.describe_cluster().await?;
    println!(
        "cluster id: {}",
        description.cluster_id.as_deref().unwrap_or("-")
    );
    match description.controller {
        Some(id) => println!("controller: {id}"),
        None => println!("controller: none"),
    }
    println!(
        "brokers: {} (from {:?})",
        description.brokers.len(),
        description.source
    );
    // How far each broker has the metadata log, from the quorum's leader (a single broker
    // has no quorum: the columns then show "-").
    let quorum = admin.describe_quorum().await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let replica = |id: i32| {
        quorum.as_ref().and_then(|q| {
            q.voters
                .iter()
                .map(|r| (r, "voter"))
                .chain(q.observers.iter().map(|r| (r, "observer")))
                .find(|(r, _)| r.id == id)
        })
    };
    if let Some(q) = &quorum {
        println!(
            "metadata quorum: leader {} epoch {} high watermark {}",
            q.leader, q.epoch, q.high_watermark
        );
    }
    println!(
        "{:>8} {:<30} {:<7} {:<8} {:>12} {:>9} {:>13} RACK",
        "BROKER", "HOST:PORT", "FENCED", "QUORUM", "METADATA-END", "LAG", "LAST-SEEN-MS"
    );
    for b in &description.brokers {
        let fenced = match b.fenced {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let (role, end, lag, seen) = match (replica(b.id), &quorum) {
            (Some((r, role)), Some(q)) if r.log_end >= 0 => (
                role,
                r.log_end.to_string(),
                (q.high_watermark - r.log_end).max(0).to_string(),
                if r.last_fetch_ms >= 0 {
                    (now_ms - r.last_fetch_ms).max(0).to_string()
                } else {
                    "-".to_owned()
                },
            ),
            (Some((_, role)), _) => (role, "-".to_owned(), "-".to_owned(), "-".to_owned()),
            (None, _) => ("-", "-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:>8} {:<30} {fenced:<7} {role:<8} {end:>12} {lag:>9} {seen:>13} {}",
            b.id,
            format!("{}:{}", b.host, b.port),
            b.rack.as_deref().unwrap_or("-")
        );
    }
    if topics == Topics::Omit {
        return Ok(());
    }
    let metadata = admin.metadata(None).await?;
    let mut rows = Vec::new();
    for t in &metadata.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            rows.push((
                name,
                -1,
                error_name(t.error_code),
                String::new(),
                String::new(),
                String::new(),
            ));
            continue;
        }
        for p in &t.partitions {
            let leader = if p.leader_id.0 >= 0 {
                p.leader_id.0.to_string()
            } else {
                error_name(p.error_code)
            };
            let ids = |ids: &[spate_wire::kafka_protocol::messages::BrokerId]| {
                let list: Vec<String> = ids.iter().map(|b| b.0.to_string()).collect();
                if list.is_empty() {
                    "-".to_owned()
                } else {
                    list.join(",")
                }
            };
            rows.push((
                name.clone(),
                p.partition_index,
                leader,
                p.leader_epoch.to_string(),
                ids(&p.replica_nodes),
                ids(&p.isr_nodes),
            ));
        }
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    println!();
    println!(
        "{:<30} {:>9} {:>8} {:>12} {:<16} IN-SYNC",
        "TOPIC", "PARTITION", "LEADER", "LEADER-EPOCH", "REPLICAS"
    );
    for (topic, partition, leader, epoch, replicas, isr) in rows {
        let partition = if partition < 0 {
            "-".to_owned()
        } else {
            partition.to_string()
        };
        println!("{topic:<30} {partition:>9} {leader:>8} {epoch:>12} {replicas:<16} {isr}");
    }
    Ok(())
}

/// A Kafka error code by name (`LEADER_NOT_AVAILABLE`), or `none` for 0 (no leader, no error).
fn error_name(code: i16) -> String {
    match spate_wire::ErrorCode::try_from(code) {
        _ if code == 0 => "none".to_owned(),
        Ok(c) => c.name().to_owned(),
        Err(_) => format!("error-{code}"),
    }
}

/// The exit code for a failed run: unreachable if the bootstrap broker could not be reached
/// at all, failed otherwise.
fn exit_code(error: &Error) -> i32 {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Io { .. } | ClientError::Closed { .. }) => EXIT_UNREACHABLE,
        _ => EXIT_FAILED,
    }
}

async fn list(admin: &mut Admin) -> Result<(), Error> {
    let mut groups = admin.list_groups().await?;
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
    for g in groups {
        println!("{:<40} {:<20} {}", g.group_id, g.state, g.protocol_type);
    }
    Ok(())
}

async fn describe(admin: &mut Admin, group: &str) -> Result<(), Error> {
    let description = admin.describe_group(group).await?;
    let committed = admin.committed_offsets(group).await?;
    println!(
        "group {group} state {} protocol {}/{} members {}",
        description.state,
        description.protocol_type,
        description.protocol,
        description.members.len()
    );
    // Every partition with a commit or an owner, sorted.
    let mut rows: BTreeMap<(String, i32), (Option<i64>, Option<String>)> = BTreeMap::new();
    for c in committed {
        rows.entry((c.topic, c.partition)).or_default().0 = Some(c.offset);
    }
    for m in &description.members {
        for (topic, partition) in &m.assignment {
            rows.entry((topic.clone(), *partition)).or_default().1 =
                Some(format!("{} {}", m.member_id, m.client_id));
        }
    }
    println!(
        "{:<30} {:>9} {:>12} {:>12} {:>10}  MEMBER CLIENT",
        "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
    );
    for ((topic, partition), (offset, owner)) in rows {
        let end = admin
            .list_offset(&topic, partition, OffsetSpec::Latest)
            .await?;
        let (offset_text, lag_text) = match offset {
            Some(o) => (o.to_string(), (end - o).max(0).to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{topic:<30} {partition:>9} {offset_text:>12} {end:>12} {lag_text:>10}  {}",
            owner.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

async fn reset(
    admin: &mut Admin,
    group: &str,
    to: OffsetSpec,
    topics: Vec<String>,
    execute: Execute,
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
        if t.error_code != 0 {
            return Err(format!("topic {name}: error code {}", t.error_code).into());
        }
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
    println!("{:<30} {:>9} {:>12}", "TOPIC", "PARTITION", "NEW-OFFSET");
    for (topic, partition, offset) in &plan {
        println!("{topic:<30} {partition:>9} {offset:>12}");
    }
    match execute {
        Execute::Commit => {
            admin.commit_offsets(group, &plan).await?;
            println!("committed {} offsets for group {group}", plan.len());
        }
        Execute::DryRun => println!("dry run: add --execute to commit these offsets"),
    }
    Ok(())
}

async fn run(bootstrap: SocketAddr, command: Command) -> Result<(), Error> {
    let mut admin = Admin::connect(ClientConfig::new(bootstrap)).await?;
    match command {
        Command::Help => unreachable!("help is printed before connecting"),
        Command::Cluster(topics) => cluster(&mut admin, topics).await,
        Command::List => list(&mut admin).await,
        Command::Describe(group) => describe(&mut admin, &group).await,
        Command::Reset {
            group,
            to,
            topics,
            execute,
        } => reset(&mut admin, &group, to, topics, execute).await,
        Command::Delete(group) => {
            admin.delete_group(&group).await?;
            println!("deleted group {group}");
            Ok(())
        }
        Command::ElectLeaders(topics) => elect_leaders(&mut admin, topics).await,
        Command::Reassign(moves) => reassign(&mut admin, moves).await,
        Command::Reassignments(topics) => reassignments(&mut admin, topics).await,
    }
}

async fn reassign(admin: &mut Admin, moves: Vec<PartitionMove>) -> Result<(), Error> {
    let results = admin.alter_partition_reassignments(&moves).await?;
    println!("{:<30} {:>9} RESULT", "TOPIC", "PARTITION");
    let mut failed = 0usize;
    for (r, m) in results.iter().zip(&moves) {
        let outcome = match (r.error_code, &m.replicas) {
            (0, Some(replicas)) => format!("moving to {}", join(replicas)),
            (0, None) => "cancelled".to_owned(),
            (code, _) => {
                failed += 1;
                match &r.message {
                    Some(message) => format!("{} ({message})", error_name(code)),
                    None => error_name(code),
                }
            }
        };
        println!("{:<30} {:>9} {outcome}", r.topic, r.partition);
    }
    if failed > 0 {
        return Err(format!("{failed} of {} partitions refused", results.len()).into());
    }
    Ok(())
}

async fn reassignments(admin: &mut Admin, topics: Vec<String>) -> Result<(), Error> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let named = (!names.is_empty()).then_some(names.as_slice());
    let ongoing = admin.list_partition_reassignments(named).await?;
    if ongoing.is_empty() {
        println!("no reassignment in progress");
        return Ok(());
    }
    println!(
        "{:<30} {:>9} {:<16} {:<12} REMOVING",
        "TOPIC", "PARTITION", "REPLICAS", "ADDING"
    );
    for o in &ongoing {
        println!(
            "{:<30} {:>9} {:<16} {:<12} {}",
            o.topic,
            o.partition,
            join(&o.replicas),
            join(&o.adding),
            join(&o.removing)
        );
    }
    Ok(())
}

/// `[3, 1]` as `3,1` (`-` when empty).
fn join(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// ELECTION_NOT_NEEDED: the preferred replica leads already.
const ELECTION_NOT_NEEDED: i16 = 84;

async fn elect_leaders(admin: &mut Admin, topics: Vec<String>) -> Result<(), Error> {
    let partitions = if topics.is_empty() {
        None
    } else {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let metadata = admin.metadata(Some(&names)).await?;
        let mut named = Vec::new();
        for t in &metadata.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                return Err(format!("topic {name}: {}", error_name(t.error_code)).into());
            }
            named.extend(
                t.partitions
                    .iter()
                    .map(|p| (name.clone(), p.partition_index)),
            );
        }
        Some(named)
    };
    let results = admin.elect_preferred_leaders(partitions.as_deref()).await?;
    println!("{:<30} {:>9} RESULT", "TOPIC", "PARTITION");
    let mut failed = 0usize;
    for (topic, partition, code) in &results {
        let outcome = match *code {
            0 => "elected".to_owned(),
            ELECTION_NOT_NEEDED => "ELECTION_NOT_NEEDED (the preferred replica leads)".to_owned(),
            other => {
                failed += 1;
                error_name(other)
            }
        };
        println!("{topic:<30} {partition:>9} {outcome}");
    }
    if failed > 0 {
        return Err(format!("{failed} of {} partitions not elected", results.len()).into());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bootstrap, command) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("spate-admin: {message}\n\n{USAGE}");
            std::process::exit(EXIT_USAGE);
        }
    };
    if command == Command::Help {
        println!("{USAGE}");
        return;
    }
    let result = resolve(&bootstrap).and_then(|addr| {
        glommio::LocalExecutorBuilder::default()
            // A short-lived tool: little registered memory, so it runs under any memlock limit.
            .io_memory(512 << 10)
            .make()
            .map_err(|e| format!("starting the executor: {e}"))?
            .run(run(addr, command))
    });
    if let Err(e) = result {
        eprintln!("spate-admin: {e}");
        std::process::exit(exit_code(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_are_named_and_unreachable_brokers_have_their_own_exit_code() {
        assert_eq!(error_name(5), "LEADER_NOT_AVAILABLE");
        assert_eq!(error_name(0), "none");
        let io: Error = Box::new(ClientError::Io {
            addr: "a".to_owned(),
            source: std::io::Error::other("refused"),
        });
        assert_eq!(exit_code(&io), EXIT_UNREACHABLE);
        let refused: Error = Box::new(ClientError::Broker {
            code: spate_wire::ErrorCode::NotCoordinator,
            what: "g".to_owned(),
        });
        assert_eq!(exit_code(&refused), EXIT_FAILED);
        assert!(refused.to_string().contains("NOT_COORDINATOR"));
    }

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn command_lines_parse() {
        assert_eq!(
            parse(&args("groups list")),
            Ok(("127.0.0.1:9092".to_owned(), Command::List))
        );
        assert_eq!(
            parse(&args("elect-leaders --topic a --topic b")),
            Ok((
                "127.0.0.1:9092".to_owned(),
                Command::ElectLeaders(vec!["a".to_owned(), "b".to_owned()])
            ))
        );
        assert_eq!(
            parse(&args("elect-leaders")),
            Ok(("127.0.0.1:9092".to_owned(), Command::ElectLeaders(vec![])))
        );
        assert!(parse(&args("elect-leaders --topic")).is_err());
        assert_eq!(
            parse(&args("reassign --topic t --partition 2 --replicas 3,1")),
            Ok((
                "127.0.0.1:9092".to_owned(),
                Command::Reassign(vec![PartitionMove {
                    topic: "t".to_owned(),
                    partition: 2,
                    replicas: Some(vec![3, 1]),
                }])
            ))
        );
        assert_eq!(
            parse(&args("reassign --topic t --partition 0 --cancel")),
            Ok((
                "127.0.0.1:9092".to_owned(),
                Command::Reassign(vec![PartitionMove {
                    topic: "t".to_owned(),
                    partition: 0,
                    replicas: None,
                }])
            ))
        );
        assert!(parse(&args("reassign --topic t --partition 0")).is_err());
        assert!(parse(&args(
            "reassign --topic t --partition 0 --replicas 1 --cancel"
        ))
        .is_err());
        assert!(parse(&args("reassign --topic t --partition x --replicas 1")).is_err());
        assert!(parse(&args("reassign --topic t --partition 0 --replicas 1,a")).is_err());
        assert_eq!(
            parse(&args("reassignments --topic a")),
            Ok((
                "127.0.0.1:9092".to_owned(),
                Command::Reassignments(vec!["a".to_owned()])
            ))
        );
        let plan = r#"{"version":1,"partitions":[{"topic":"t","partition":1,"replicas":[4,2],"log_dirs":["any","any"]}]}"#;
        assert_eq!(
            parse_plan(plan),
            Ok(vec![PartitionMove {
                topic: "t".to_owned(),
                partition: 1,
                replicas: Some(vec![4, 2]),
            }])
        );
        assert!(parse_plan(r#"{"version":1,"partitions":[{"topic":"t"}]}"#).is_err());
        assert!(parse_plan(r#"{"version":2,"partitions":[]}"#).is_err());
        assert!(parse(&args("elect-leaders --bogus")).is_err());
        assert_eq!(
            parse(&args(
                "--bootstrap h:1 groups reset g --to-timestamp 5 --topic t --execute"
            )),
            Ok((
                "h:1".to_owned(),
                Command::Reset {
                    group: "g".to_owned(),
                    to: OffsetSpec::Timestamp(5),
                    topics: vec!["t".to_owned()],
                    execute: Execute::Commit,
                }
            ))
        );
        assert_eq!(
            parse(&args("cluster --topics")),
            Ok((
                "127.0.0.1:9092".to_owned(),
                Command::Cluster(Topics::Include)
            ))
        );
        assert_eq!(
            parse(&args("--bootstrap h:1 cluster")),
            Ok(("h:1".to_owned(), Command::Cluster(Topics::Omit)))
        );
        assert_eq!(parse(&args("cluster --help")).unwrap().1, Command::Help);
        assert!(parse(&args("cluster --frobnicate")).is_err());
        assert!(parse(&args("groups reset g")).is_err());
        assert!(parse(&args("groups frobnicate")).is_err());
    }
}
