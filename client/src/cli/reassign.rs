//! `reassign` and `reassignments`: partition moves (KIP-455), as `kafka-reassign-partitions`
//! runs them.
//!
//! `reassign --topic T --partition P --replicas 3,1,2` names the target replicas, preferred
//! leader first: the new ones catch up from the leader, then the ones not named are removed.
//! `--file` takes Kafka's reassignment JSON (`{"version":1,"partitions":[{"topic":"t",
//! "partition":0,"replicas":[3,1]}]}`, other fields ignored). `--cancel` stops the ongoing move
//! of the partition (or of every partition in the file) and returns it to its original replicas.
//! Each partition's outcome is printed; the command fails (exit 1) when one was refused.
//! `reassignments` lists the moves in progress: replicas, and those being added and removed.

use serde_json::{json, Value};

use super::{error_name, Error, Out};
use crate::{Admin, PartitionMove};

/// `reassign`'s options, as parsed by clap.
#[derive(Debug, clap::Args)]
pub(super) struct ReassignArgs {
    /// The topic of the partition to move.
    #[arg(long, conflicts_with = "file")]
    topic: Option<String>,
    /// The partition to move.
    #[arg(long, requires = "topic")]
    partition: Option<i32>,
    /// Target broker ids, preferred leader first (e.g. 3,1,2).
    #[arg(long, value_delimiter = ',', conflicts_with = "cancel")]
    replicas: Option<Vec<i32>>,
    /// A plan in Kafka's reassignment JSON format (every partition in it).
    #[arg(long, value_name = "PLAN.json")]
    file: Option<String>,
    /// Cancel the ongoing move instead.
    #[arg(long)]
    cancel: bool,
}

/// The moves `args` ask for.
fn moves(args: ReassignArgs) -> Result<Vec<PartitionMove>, Error> {
    if let Some(path) = args.file {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        let mut moves = parse_plan(&text).map_err(|e| format!("{path}: {e}"))?;
        if args.cancel {
            for m in &mut moves {
                m.replicas = None;
            }
        }
        return Ok(moves);
    }
    let topic = args.topic.ok_or("reassign needs --topic (or --file)")?;
    let partition = args.partition.ok_or("reassign needs --partition")?;
    let replicas = match (args.replicas, args.cancel) {
        (Some(r), false) => Some(r),
        (None, true) => None,
        (Some(_), true) => return Err("--replicas and --cancel exclude each other".into()),
        (None, false) => return Err("reassign needs --replicas or --cancel".into()),
    };
    Ok(vec![PartitionMove {
        topic,
        partition,
        replicas,
    }])
}

/// Kafka's reassignment JSON: `{"version":1,"partitions":[{"topic":..,"partition":..,
/// "replicas":[..]},..]}`; `log_dirs` and other fields are ignored.
fn parse_plan(text: &str) -> Result<Vec<PartitionMove>, String> {
    let plan: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let version = plan.get("version").and_then(Value::as_i64).unwrap_or(1);
    if version != 1 {
        return Err(format!("unknown plan version {version}"));
    }
    let partitions = plan
        .get("partitions")
        .and_then(Value::as_array)
        .ok_or("no \"partitions\" array")?;
    partitions
        .iter()
        .map(|p| {
            let topic = p
                .get("topic")
                .and_then(Value::as_str)
                .ok_or("a partition without \"topic\"")?;
            let partition = p
                .get("partition")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or("a partition without a \"partition\" number")?;
            let replicas = p
                .get("replicas")
                .and_then(Value::as_array)
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

pub(super) async fn reassign(
    admin: &mut Admin,
    args: ReassignArgs,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    let moves = moves(args)?;
    let results = admin.alter_partition_reassignments(&moves).await?;
    let outcome =
        |code: i16, message: &Option<String>, target: &Option<Vec<i32>>| match (code, target) {
            (0, Some(replicas)) => format!("moving to {}", join(replicas)),
            (0, None) => "cancelled".to_owned(),
            (code, _) => match message {
                Some(message) => format!("{} ({message})", error_name(code)),
                None => error_name(code),
            },
        };
    let failed = results.iter().filter(|r| r.error_code != 0).count();
    if out.json() {
        let rows: Vec<Value> = results
            .iter()
            .zip(&moves)
            .map(|(r, m)| {
                json!({
                    "topic": r.topic,
                    "partition": r.partition,
                    "replicas": m.replicas,
                    "error": (r.error_code != 0).then(|| error_name(r.error_code)),
                    "message": r.message,
                })
            })
            .collect();
        out.document(&Value::Array(rows));
    } else {
        out.line(format!("{:<30} {:>9} RESULT", "TOPIC", "PARTITION"));
        for (r, m) in results.iter().zip(&moves) {
            let result = outcome(r.error_code, &r.message, &m.replicas);
            out.line(format!("{:<30} {:>9} {result}", r.topic, r.partition));
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} partitions refused", results.len()).into());
    }
    Ok(())
}

pub(super) async fn reassignments(
    admin: &mut Admin,
    topics: Vec<String>,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let named = (!names.is_empty()).then_some(names.as_slice());
    let ongoing = admin.list_partition_reassignments(named).await?;
    if out.json() {
        let rows: Vec<Value> = ongoing
            .iter()
            .map(|o| {
                json!({
                    "topic": o.topic,
                    "partition": o.partition,
                    "replicas": o.replicas,
                    "adding": o.adding,
                    "removing": o.removing,
                })
            })
            .collect();
        out.document(&Value::Array(rows));
        return Ok(());
    }
    if ongoing.is_empty() {
        out.line("no reassignment in progress");
        return Ok(());
    }
    out.line(format!(
        "{:<30} {:>9} {:<16} {:<12} REMOVING",
        "TOPIC", "PARTITION", "REPLICAS", "ADDING"
    ));
    for o in &ongoing {
        out.line(format!(
            "{:<30} {:>9} {:<16} {:<12} {}",
            o.topic,
            o.partition,
            join(&o.replicas),
            join(&o.adding),
            join(&o.removing)
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_in_kafkas_format_names_every_partition() {
        let plan = r#"{"version":1,"partitions":[{"topic":"t","partition":2,"replicas":[3,1],"log_dirs":["any","any"]}]}"#;
        assert_eq!(
            parse_plan(plan).unwrap(),
            vec![PartitionMove {
                topic: "t".to_owned(),
                partition: 2,
                replicas: Some(vec![3, 1]),
            }]
        );
        assert!(parse_plan(r#"{"version":2,"partitions":[]}"#).is_err());
        assert!(parse_plan(r#"{"partitions":[{"topic":"t","replicas":[1]}]}"#).is_err());
        assert!(
            parse_plan(r#"{"partitions":[{"topic":"t","partition":0,"replicas":["a"]}]}"#).is_err()
        );
    }
}
