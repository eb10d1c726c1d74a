//! `cluster` (brokers, quorum, optionally every partition), its decommission actions, and
//! `elect-leaders`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{json, Value};

use super::{error_name, Error, Out};
use crate::{
    Admin, Decommission, DecommissionStatus, QuorumDescription, QuorumReplica, ReplicaLogDir,
};

/// How often `decommission-status --wait-secs` asks again.
const DECOMMISSION_POLL: Duration = Duration::from_millis(500);

/// `cluster`'s actions on one broker.
#[derive(Debug, Subcommand)]
pub(super) enum ClusterAction {
    /// Take a broker out: the controller moves its leaderships, then its replicas (throttled
    /// as reassignments are), to the other brokers, and places nothing new on it.
    Decommission {
        /// The broker's id.
        id: i32,
    },
    /// How far a decommission is: replicas, leaderships and moves left on the broker.
    DecommissionStatus {
        /// The broker's id.
        id: i32,
        /// Wait up to this long for the broker to hold no replica (exit 1 if it still does).
        #[arg(long, value_name = "SECONDS")]
        wait_secs: Option<u64>,
    },
    /// Cancel a decommission: the broker takes new replicas again (what moved stays moved).
    Recommission {
        /// The broker's id.
        id: i32,
    },
    /// Remove a stopped broker that holds no replica from the cluster (UnregisterBroker).
    Unregister {
        /// The broker's id.
        id: i32,
    },
}

pub(super) async fn action(
    admin: &mut Admin,
    action: ClusterAction,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    match action {
        ClusterAction::Decommission { id } => {
            admin.decommission_broker(id, Decommission::Start).await?;
            let status = admin.decommission_status(id).await?;
            print_status(&status, out);
            Ok(())
        }
        ClusterAction::Unregister { id } => {
            admin.unregister_broker(id).await?;
            if out.json() {
                out.document(&json!({ "broker": id, "unregistered": true }));
            } else {
                out.line(format!("broker {id} unregistered"));
            }
            Ok(())
        }
        ClusterAction::Recommission { id } => {
            admin.decommission_broker(id, Decommission::Cancel).await?;
            let status = admin.decommission_status(id).await?;
            print_status(&status, out);
            Ok(())
        }
        ClusterAction::DecommissionStatus { id, wait_secs } => {
            let deadline = wait_secs.map(|s| Instant::now() + Duration::from_secs(s));
            loop {
                let status = admin.decommission_status(id).await?;
                let waiting = status.draining && !status.is_complete();
                match deadline {
                    Some(deadline) if waiting && Instant::now() < deadline => {
                        glommio::timer::sleep(DECOMMISSION_POLL).await;
                    }
                    Some(_) if waiting => {
                        print_status(&status, out);
                        return Err(format!(
                            "broker {id} still holds {} replicas",
                            status.replicas
                        )
                        .into());
                    }
                    _ => {
                        print_status(&status, out);
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn print_status(status: &DecommissionStatus, out: &mut Out<'_>) {
    let state = match (status.draining, status.is_complete()) {
        (false, _) => "active",
        (true, false) => "draining",
        (true, true) => "decommissioned",
    };
    if out.json() {
        out.document(&json!({
            "broker": status.node,
            "state": state,
            "draining": status.draining,
            "complete": status.is_complete(),
            "replicas": status.replicas,
            "leaderships": status.leaderships,
            "moving": status.moving,
        }));
    } else {
        out.line(format!(
            "{:>6} {:<14} {:>8} {:>11} {:>6}",
            "BROKER", "STATE", "REPLICAS", "LEADERSHIPS", "MOVING"
        ));
        out.line(format!(
            "{:>6} {:<14} {:>8} {:>11} {:>6}",
            status.node, state, status.replicas, status.leaderships, status.moving
        ));
        if status.is_complete() {
            out.line(format!(
                "broker {} holds no replica: it can be stopped and unregistered",
                status.node
            ));
        }
    }
}

/// ELECTION_NOT_NEEDED: the preferred replica leads already.
const ELECTION_NOT_NEEDED: i16 = 84;

/// One broker's row: its role in the metadata quorum and how far it has the metadata log.
struct QuorumColumns {
    role: Option<&'static str>,
    log_end: Option<i64>,
    lag: Option<i64>,
    last_seen_ms: Option<i64>,
}

fn quorum_columns(quorum: Option<&QuorumDescription>, id: i32, now_ms: i64) -> QuorumColumns {
    let found = quorum.and_then(|q| {
        q.voters
            .iter()
            .map(|r| (r, "voter"))
            .chain(q.observers.iter().map(|r| (r, "observer")))
            .find(|(r, _)| r.id == id)
            .map(|(r, role)| (q, r, role))
    });
    match found {
        Some((q, r, role)) if r.log_end >= 0 => QuorumColumns {
            role: Some(role),
            log_end: Some(r.log_end),
            lag: Some((q.high_watermark - r.log_end).max(0)),
            last_seen_ms: (r.last_fetch_ms >= 0).then(|| (now_ms - r.last_fetch_ms).max(0)),
        },
        Some((_, _, role)) => QuorumColumns {
            role: Some(role),
            log_end: None,
            lag: None,
            last_seen_ms: None,
        },
        None => QuorumColumns {
            role: None,
            log_end: None,
            lag: None,
            last_seen_ms: None,
        },
    }
}

fn text<T: ToString>(value: Option<T>) -> String {
    value.map_or("-".to_owned(), |v| v.to_string())
}

fn replica_json(r: &QuorumReplica) -> Value {
    json!({
        "id": r.id,
        "log_end_offset": r.log_end,
        "last_fetch_ms": r.last_fetch_ms,
        "last_caught_up_ms": r.last_caught_up_ms,
    })
}

/// One partition of `cluster --topics`.
struct PartitionRow {
    topic: String,
    partition: Option<i32>,
    leader: Option<i32>,
    leader_epoch: Option<i32>,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// Each replica's lag, in the order of `replicas`.
    lags: Vec<ReplicaLag>,
    error: Option<String>,
}

/// How far one replica's log end is behind its leader's, in records; `None` when its broker
/// did not answer (it is down) or does not list the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReplicaLag {
    broker: i32,
    lag: Option<i64>,
}

/// The DescribeLogDirs answers of the brokers that answered: broker, then (topic, partition).
type LogDirs = BTreeMap<i32, BTreeMap<(String, i32), ReplicaLogDir>>;

/// Each replica's lag. Where both the leader's and the replica's log ends are known (Spate's
/// tag), the difference, at least 0: the answers are taken one broker after the other, so a
/// follower read after the leader may be ahead of it by what was appended in between. Else
/// Kafka's offset lag from the replica's own broker (0 on a live follower, as in Kafka).
fn replica_lags(
    topic: &str,
    partition: i32,
    replicas: &[i32],
    leader: Option<i32>,
    dirs: &LogDirs,
) -> Vec<ReplicaLag> {
    let key = (topic.to_owned(), partition);
    let held = |broker: i32| dirs.get(&broker).and_then(|d| d.get(&key));
    let leader_end = leader.and_then(held).and_then(|r| r.log_end_offset);
    replicas
        .iter()
        .map(|&broker| ReplicaLag {
            broker,
            lag: held(broker).map(|r| match (leader_end, r.log_end_offset) {
                (Some(leader_end), Some(end)) => (leader_end - end).max(0),
                _ => r.offset_lag,
            }),
        })
        .collect()
}

/// The LAG column: `broker:lag` per replica, `-` for an unknown lag (`1:0 2:0 3:-`).
fn lag_text(lags: &[ReplicaLag]) -> String {
    if lags.is_empty() {
        return "-".to_owned();
    }
    lags.iter()
        .map(|l| format!("{}:{}", l.broker, text(l.lag)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `lag` object of `--format json`: broker id (as a string, JSON's keys are) to lag, null
/// when unknown.
fn lag_json(lags: &[ReplicaLag]) -> Value {
    Value::Object(
        lags.iter()
            .map(|l| (l.broker.to_string(), json!(l.lag)))
            .collect(),
    )
}

pub(super) async fn cluster(
    admin: &mut Admin,
    topics: bool,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    let description = admin.describe_cluster().await?;
    // How far each broker has the metadata log, from the quorum's leader (a single broker
    // has no quorum: the columns then show "-"). A retriable refusal means the quorum has no
    // leader for the moment (the old one stopped, a new one is being elected): shown as
    // unknown rather than failing the command, which is most wanted while a broker is down.
    let (quorum, quorum_error) = match admin.describe_quorum().await {
        Ok(quorum) => (quorum, None),
        Err(e) if e.is_retriable() => (None, Some(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let partitions = if topics {
        Some(partition_rows(admin).await?)
    } else {
        None
    };
    if out.json() {
        let brokers: Vec<Value> = description
            .brokers
            .iter()
            .map(|b| {
                let q = quorum_columns(quorum.as_ref(), b.id, now_ms);
                json!({
                    "id": b.id,
                    "host": b.host,
                    "port": b.port,
                    "rack": b.rack,
                    "fenced": b.fenced,
                    "quorum_role": q.role,
                    "metadata_end_offset": q.log_end,
                    "metadata_lag": q.lag,
                    "last_seen_ms": q.last_seen_ms,
                })
            })
            .collect();
        let quorum = quorum.as_ref().map(|q| {
            json!({
                "leader": q.leader,
                "epoch": q.epoch,
                "high_watermark": q.high_watermark,
                "voters": q.voters.iter().map(replica_json).collect::<Vec<_>>(),
                "observers": q.observers.iter().map(replica_json).collect::<Vec<_>>(),
            })
        });
        let mut document = json!({
            "cluster_id": description.cluster_id,
            "controller": description.controller,
            "source": format!("{:?}", description.source),
            "brokers": brokers,
            "metadata_quorum": quorum,
            "metadata_quorum_error": quorum_error,
        });
        if let Some(rows) = &partitions {
            document["partitions"] = rows
                .iter()
                .map(|r| {
                    json!({
                        "topic": r.topic,
                        "partition": r.partition,
                        "leader": r.leader,
                        "leader_epoch": r.leader_epoch,
                        "replicas": r.replicas,
                        "isr": r.isr,
                        "lag": lag_json(&r.lags),
                        "error": r.error,
                    })
                })
                .collect();
        }
        out.document(&document);
        return Ok(());
    }
    out.line(format!(
        "cluster id: {}",
        description.cluster_id.as_deref().unwrap_or("-")
    ));
    match description.controller {
        Some(id) => out.line(format!("controller: {id}")),
        None => out.line("controller: none"),
    }
    out.line(format!(
        "brokers: {} (from {:?})",
        description.brokers.len(),
        description.source
    ));
    if let Some(q) = &quorum {
        out.line(format!(
            "metadata quorum: leader {} epoch {} high watermark {}",
            q.leader, q.epoch, q.high_watermark
        ));
    }
    if let Some(error) = &quorum_error {
        out.line(format!("metadata quorum: unknown for now ({error})"));
    }
    out.line(format!(
        "{:>8} {:<30} {:<7} {:<8} {:>12} {:>9} {:>13} RACK",
        "BROKER", "HOST:PORT", "FENCED", "QUORUM", "METADATA-END", "LAG", "LAST-SEEN-MS"
    ));
    for b in &description.brokers {
        let fenced = match b.fenced {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let q = quorum_columns(quorum.as_ref(), b.id, now_ms);
        out.line(format!(
            "{:>8} {:<30} {fenced:<7} {:<8} {:>12} {:>9} {:>13} {}",
            b.id,
            format!("{}:{}", b.host, b.port),
            q.role.unwrap_or("-"),
            text(q.log_end),
            text(q.lag),
            text(q.last_seen_ms),
            b.rack.as_deref().unwrap_or("-")
        ));
    }
    let Some(rows) = partitions else {
        return Ok(());
    };
    out.line("");
    out.line(format!(
        "{:<30} {:>9} {:>8} {:>12} {:<16} {:<16} LAG",
        "TOPIC", "PARTITION", "LEADER", "LEADER-EPOCH", "REPLICAS", "IN-SYNC"
    ));
    for r in rows {
        let ids = |ids: &[i32]| {
            if ids.is_empty() {
                "-".to_owned()
            } else {
                ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let leader = match (&r.leader, &r.error) {
            (Some(id), _) => id.to_string(),
            (None, Some(error)) => error.clone(),
            (None, None) => "none".to_owned(),
        };
        out.line(format!(
            "{:<30} {:>9} {leader:>8} {:>12} {:<16} {:<16} {}",
            r.topic,
            text(r.partition),
            text(r.leader_epoch),
            ids(&r.replicas),
            ids(&r.isr),
            lag_text(&r.lags)
        ));
    }
    Ok(())
}

/// Asks every broker that holds a replica for its log dirs. A broker that fails to answer (it
/// is down, or fenced and so no longer listed) is left out: its replicas' lags show as
/// unknown, and the command goes on.
async fn log_dirs(admin: &mut Admin, brokers: impl IntoIterator<Item = i32>) -> LogDirs {
    let mut dirs = LogDirs::new();
    for broker in brokers {
        if let Ok(replicas) = admin.describe_log_dirs(broker).await {
            let held = replicas
                .into_iter()
                .map(|r| ((r.topic.clone(), r.partition), r))
                .collect();
            dirs.insert(broker, held);
        }
    }
    dirs
}

async fn partition_rows(admin: &mut Admin) -> Result<Vec<PartitionRow>, Error> {
    let metadata = admin.metadata(None).await?;
    let brokers: std::collections::BTreeSet<i32> = metadata
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .flat_map(|p| p.replica_nodes.iter().map(|b| b.0))
        .collect();
    let dirs = log_dirs(admin, brokers).await;
    let mut rows = Vec::new();
    for t in &metadata.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            rows.push(PartitionRow {
                topic: name,
                partition: None,
                leader: None,
                leader_epoch: None,
                replicas: Vec::new(),
                isr: Vec::new(),
                lags: Vec::new(),
                error: Some(error_name(t.error_code)),
            });
            continue;
        }
        for p in &t.partitions {
            let leader = (p.leader_id.0 >= 0).then_some(p.leader_id.0);
            let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            rows.push(PartitionRow {
                topic: name.clone(),
                partition: Some(p.partition_index),
                leader,
                leader_epoch: Some(p.leader_epoch),
                lags: replica_lags(&name, p.partition_index, &replicas, leader, &dirs),
                replicas,
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                error: (p.error_code != 0).then(|| error_name(p.error_code)),
            });
        }
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(rows)
}

pub(super) async fn elect_leaders(
    admin: &mut Admin,
    topics: Vec<String>,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    let partitions = if topics.is_empty() {
        None
    } else {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let metadata = admin.metadata(Some(&names)).await?;
        let mut named = Vec::new();
        for t in &metadata.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            crate::ClientError::check(t.error_code, || format!("topic {name}"))?;
            named.extend(
                t.partitions
                    .iter()
                    .map(|p| (name.clone(), p.partition_index)),
            );
        }
        Some(named)
    };
    let results = admin.elect_preferred_leaders(partitions.as_deref()).await?;
    let failed = results
        .iter()
        .filter(|(_, _, code)| *code != 0 && *code != ELECTION_NOT_NEEDED)
        .count();
    if out.json() {
        let rows: Vec<Value> = results
            .iter()
            .map(|(topic, partition, code)| {
                let result = match *code {
                    0 => "elected".to_owned(),
                    other => error_name(other),
                };
                json!({ "topic": topic, "partition": partition, "result": result })
            })
            .collect();
        out.document(&Value::Array(rows));
    } else {
        out.line(format!("{:<30} {:>9} RESULT", "TOPIC", "PARTITION"));
        for (topic, partition, code) in &results {
            let outcome = match *code {
                0 => "elected".to_owned(),
                ELECTION_NOT_NEEDED => {
                    "ELECTION_NOT_NEEDED (the preferred replica leads)".to_owned()
                }
                other => error_name(other),
            };
            out.line(format!("{topic:<30} {partition:>9} {outcome}"));
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} partitions not elected", results.len()).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(topic: &str, partition: i32, offset_lag: i64, end: Option<i64>) -> ReplicaLogDir {
        ReplicaLogDir {
            topic: topic.to_owned(),
            partition,
            size_bytes: 0,
            offset_lag,
            log_end_offset: end,
        }
    }

    fn dirs(answers: &[(i32, ReplicaLogDir)]) -> LogDirs {
        let mut dirs = LogDirs::new();
        for (broker, r) in answers {
            dirs.entry(*broker)
                .or_default()
                .insert((r.topic.clone(), r.partition), r.clone());
        }
        dirs
    }

    fn lag(broker: i32, lag: Option<i64>) -> ReplicaLag {
        ReplicaLag { broker, lag }
    }

    #[test]
    fn a_replica_lags_by_the_leaders_log_end_less_its_own() {
        let dirs = dirs(&[
            (1, held("t", 0, 0, Some(2000))),
            (2, held("t", 0, 0, Some(2000))),
            (3, held("t", 0, 0, Some(480))),
            // Read after the leader, a follower may be ahead of what the leader reported.
            (2, held("t", 1, 0, Some(12))),
            (1, held("t", 1, 0, Some(10))),
        ]);
        let lags = replica_lags("t", 0, &[1, 2, 3], Some(1), &dirs);
        assert_eq!(lags, [lag(1, Some(0)), lag(2, Some(0)), lag(3, Some(1520))]);
        assert_eq!(lag_text(&lags), "1:0 2:0 3:1520");
        let lags = replica_lags("t", 1, &[1, 2], Some(1), &dirs);
        assert_eq!(lags, [lag(1, Some(0)), lag(2, Some(0))]);
    }

    #[test]
    fn a_broker_that_did_not_answer_leaves_its_replicas_unknown() {
        // Broker 3 is down: no answer; broker 2 answered without the partition.
        let dirs = dirs(&[
            (1, held("t", 0, 0, Some(50))),
            (2, held("u", 0, 0, Some(9))),
        ]);
        let lags = replica_lags("t", 0, &[1, 2, 3], Some(1), &dirs);
        assert_eq!(lags, [lag(1, Some(0)), lag(2, None), lag(3, None)]);
        assert_eq!(lag_text(&lags), "1:0 2:- 3:-");
        assert_eq!(lag_json(&lags), json!({"1": 0, "2": null, "3": null}));
        assert_eq!(lag_text(&[]), "-");
        assert_eq!(lag_json(&[]), json!({}));
    }

    #[test]
    fn without_log_ends_the_lag_is_kafkas_offset_lag() {
        // A broker that does not send Spate's tag (Kafka, or DescribeLogDirs v1), or a leader
        // that did not answer: each replica's own offset lag.
        let dirs = dirs(&[(1, held("t", 0, 0, None)), (2, held("t", 0, 7, Some(5)))]);
        let lags = replica_lags("t", 0, &[1, 2], Some(1), &dirs);
        assert_eq!(lags, [lag(1, Some(0)), lag(2, Some(7))]);
        let lags = replica_lags("t", 0, &[1, 2], None, &dirs);
        assert_eq!(lags, [lag(1, Some(0)), lag(2, Some(7))]);
    }
}
