//! `cluster` (brokers, quorum, optionally every partition), its decommission actions, and
//! `elect-leaders`.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{json, Value};

use super::{error_name, Error, Out};
use crate::{Admin, Decommission, DecommissionStatus, QuorumDescription, QuorumReplica};

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
    error: Option<String>,
}

pub(super) async fn cluster(
    admin: &mut Admin,
    topics: bool,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    let description = admin.describe_cluster().await?;
    // How far each broker has the metadata log, from the quorum's leader (a single broker
    // has no quorum: the columns then show "-").
    let quorum = admin.describe_quorum().await?;
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
        "{:<30} {:>9} {:>8} {:>12} {:<16} IN-SYNC",
        "TOPIC", "PARTITION", "LEADER", "LEADER-EPOCH", "REPLICAS"
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
            "{:<30} {:>9} {leader:>8} {:>12} {:<16} {}",
            r.topic,
            text(r.partition),
            text(r.leader_epoch),
            ids(&r.replicas),
            ids(&r.isr)
        ));
    }
    Ok(())
}

async fn partition_rows(admin: &mut Admin) -> Result<Vec<PartitionRow>, Error> {
    let metadata = admin.metadata(None).await?;
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
                error: Some(error_name(t.error_code)),
            });
            continue;
        }
        for p in &t.partitions {
            rows.push(PartitionRow {
                topic: name.clone(),
                partition: Some(p.partition_index),
                leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                leader_epoch: Some(p.leader_epoch),
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
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
