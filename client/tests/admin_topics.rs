//! `spate-admin topics ...` (and `spate admin`) against the real broker: create with configs,
//! list, describe with offsets, add-partitions, trim by offset and by time, delete; JSON
//! output parsed; `--help` at every level; a closed stdout pipe; Kafka error names and exit
//! codes.

mod common;

use std::process::{Command, Output, Stdio};

use common::{run, start_broker, Broker};
use spate_client::{Acks, Admin, ClientConfig, OffsetSpec, Producer, ProducerConfig};

fn admin_output(broker: &Broker, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("--bootstrap")
        .arg(broker.addr.to_string())
        .args(args)
        .output()
        .expect("running spate-admin")
}

/// Runs spate-admin, asserts it succeeded, returns its stdout.
fn admin_tool(broker: &Broker, args: &[&str]) -> String {
    let output = admin_output(broker, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "spate-admin {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs spate-admin with `--format json` and parses its output.
fn admin_json(broker: &Broker, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let stdout = admin_tool(broker, &all);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e} in:\n{stdout}"))
}

fn produce(addr: std::net::SocketAddr, topic: &'static str, partition: i32, count: usize) {
    run(async move {
        let mut config = ProducerConfig::new(ClientConfig::new(addr));
        config.acks = Acks::All;
        let mut producer = Producer::connect(
            config,
            Box::new(|d| {
                d.result.expect("delivered");
            }),
        )
        .await
        .unwrap();
        for _ in 0..count {
            producer
                .send_to(topic, partition, None, Some(b"x"), &[])
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
    });
}

fn log_start(addr: std::net::SocketAddr, topic: &'static str, partition: i32) -> i64 {
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        admin
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await
            .unwrap()
    })
}

#[test]
fn admin_tool_creates_lists_describes_grows_trims_and_deletes_topics() {
    let broker = start_broker("admin-topics");
    let addr = broker.addr;
    let created = admin_tool(
        &broker,
        &[
            "topics",
            "create",
            "t",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=60000",
        ],
    );
    assert!(
        created.contains("created topic t with 2 partitions"),
        "{created}"
    );
    admin_tool(&broker, &["topics", "create", "u"]);

    let list = admin_tool(&broker, &["topics", "list"]);
    let names: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["t", "u"], "{list}");
    let list = admin_json(&broker, &["topics", "list"]);
    let t = &list.as_array().unwrap()[0];
    assert_eq!(
        (&t["name"], &t["partitions"], &t["replication_factor"]),
        (&"t".into(), &2.into(), &1.into())
    );

    produce(addr, "t", 0, 30);
    let describe = admin_json(&broker, &["topics", "describe", "t"]);
    let partitions = describe["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    assert_eq!(partitions[0]["log_start_offset"], 0);
    assert_eq!(partitions[0]["log_end_offset"], 30);
    assert_eq!(partitions[1]["log_end_offset"], 0);
    assert_eq!(partitions[0]["replicas"].as_array().unwrap().len(), 1);
    assert_eq!(partitions[0]["isr"], partitions[0]["replicas"]);
    let retention = describe["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .expect("retention.ms listed");
    assert_eq!(
        (&retention["value"], &retention["source"]),
        (&"60000".into(), &"DYNAMIC_TOPIC_CONFIG".into())
    );
    let text = admin_tool(&broker, &["topics", "describe", "t"]);
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("0"))
        .unwrap_or_else(|| panic!("no partition 0 in:\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[row.len() - 2..], ["0", "30"], "{text}");

    admin_tool(&broker, &["topics", "add-partitions", "t", "--count", "3"]);
    let describe = admin_json(&broker, &["topics", "describe", "t"]);
    assert_eq!(describe["partitions"].as_array().unwrap().len(), 3);
    let refused = admin_output(&broker, &["topics", "add-partitions", "t", "--count", "2"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("INVALID_PARTITIONS"),
        "{refused:?}"
    );

    let trimmed = admin_json(
        &broker,
        &["topics", "trim", "t", "--partition", "0", "--offset", "10"],
    );
    assert_eq!(trimmed["log_start_offset"], 10);
    assert_eq!(log_start(addr, "t", 0), 10);
    // Every record is older than a time far ahead: all of them go.
    admin_tool(
        &broker,
        &[
            "topics",
            "trim",
            "t",
            "--partition",
            "0",
            "--before-timestamp",
            "99999999999999",
        ],
    );
    assert_eq!(log_start(addr, "t", 0), 30);
    let beyond = admin_output(
        &broker,
        &["topics", "trim", "t", "--partition", "0", "--offset", "31"],
    );
    assert_eq!(beyond.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&beyond.stderr).contains("OFFSET_OUT_OF_RANGE"),
        "{beyond:?}"
    );

    let deleted = admin_json(&broker, &["topics", "delete", "t", "u"]);
    assert_eq!(deleted.as_array().unwrap().len(), 2);
    assert!(deleted
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["deleted"] == true));
    let list = admin_json(&broker, &["topics", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
}

#[test]
fn unknown_topics_fail_with_the_kafka_error_name_and_exit_1() {
    let broker = start_broker("admin-errors");
    for args in [
        &["topics", "describe", "nosuch"][..],
        &["topics", "delete", "nosuch"],
        &["topics", "describe-config", "nosuch"],
        &["topics", "add-partitions", "nosuch", "--count", "2"],
    ] {
        let output = admin_output(&broker, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A bad command line exits 2, an unreachable broker 3.
    let usage = admin_output(&broker, &["topics", "create"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    let unreachable = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .args(["--bootstrap", "127.0.0.1:1", "topics", "list"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3), "{unreachable:?}");
}

#[test]
fn help_is_printed_at_every_level_and_exits_0() {
    for (args, expected) in [
        (&["--help"][..], "Usage: spate-admin"),
        (&["topics", "--help"], "Usage: spate-admin topics"),
        (&["topics", "create", "--help"], "--replication-factor"),
        (&["topics", "trim", "--help"], "--before-timestamp"),
        (&["groups", "--help"], "Usage: spate-admin groups"),
        (&["groups", "reset", "--help"], "--to-earliest"),
        (&["cluster", "--help"], "--topics"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(expected), "{args:?}: {stdout}");
    }
}

#[test]
fn a_closed_stdout_pipe_is_no_panic_and_spate_admin_runs_the_same_tool() {
    let broker = start_broker("admin-pipe");
    admin_tool(&broker, &["topics", "create", "p", "--partitions", "1"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .args(["--bootstrap", &broker.addr.to_string(), "topics", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the tool has its answer to write, as `| head -0` would.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // `spate admin ...` is the same command line in the broker binary.
    let spate = spate_testkit::spate_binary();
    let output = Command::new(&spate)
        .args(["admin", "--bootstrap", &broker.addr.to_string()])
        .args(["--format", "json", "topics", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list[0]["name"], "p", "{list}");
    let help = Command::new(&spate)
        .args(["admin", "topics", "create", "--help"])
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: spate admin topics create"));
}
