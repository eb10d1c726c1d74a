//! The client against three real brokers in cluster mode: a 6-partition topic led by all
//! three, produced to through one broker, read back through another, and `spate-admin cluster
//! --topics` run against the third; counts and contents checked exactly.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::run;
use spate_client::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetSpec, Producer,
    ProducerConfig,
};
use spate_testkit::{spate_binary, Cluster};

const BROKERS: usize = 3;
const PARTITIONS: i32 = 6;
const RECORDS_PER_PARTITION: usize = 200;

fn start_cluster(name: &str) -> Cluster {
    Cluster::start(
        &spate_binary(),
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        &format!("client-{name}"),
        BROKERS,
        &["--log-level", "warn"],
    )
}

/// Creates `topic` through the first of `addrs` and waits until every partition has a leader
/// as every broker sees it (a broker whose image lags would refuse the first batches, and a
/// retried batch may land after later ones of its partition); returns partition -> (leader,
/// leader epoch) as the first broker sees it.
async fn create_spread_topic(addrs: &[SocketAddr], topic: &str) -> BTreeMap<i32, (i32, i32)> {
    let mut admin = Admin::connect(ClientConfig::new(addrs[0])).await.unwrap();
    let created = admin
        .create_topics(&[NewTopic::new(topic, PARTITIONS)])
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    for addr in &addrs[1..] {
        let mut there = Admin::connect(ClientConfig::new(*addr)).await.unwrap();
        led_partitions(&mut there, topic).await;
    }
    led_partitions(&mut admin, topic).await
}

/// Waits until `admin`'s broker lists every partition of `topic` with a leader.
async fn led_partitions(admin: &mut Admin, topic: &str) -> BTreeMap<i32, (i32, i32)> {
    let started = Instant::now();
    loop {
        let metadata = admin.metadata(Some(&[topic])).await.unwrap();
        let leaders: BTreeMap<i32, (i32, i32)> = metadata
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader_id.0 >= 0)
            .map(|p| (p.partition_index, (p.leader_id.0, p.leader_epoch)))
            .collect();
        if leaders.len() == PARTITIONS as usize {
            return leaders;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "leaders of {topic}: {leaders:?}"
        );
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

fn value(partition: i32, i: usize) -> Vec<u8> {
    format!("p{partition}-{i}").into_bytes()
}

#[test]
fn the_client_follows_leaders_across_three_brokers() {
    let cluster = start_cluster("follows-leaders");
    let addrs: Vec<SocketAddr> = cluster.brokers.iter().map(|b| b.addr).collect();

    let leaders = run(async move {
        let leaders = create_spread_topic(&addrs, "spread").await;
        let led_by: BTreeSet<i32> = leaders.values().map(|(l, _)| *l).collect();
        assert_eq!(led_by, BTreeSet::from([1, 2, 3]), "{leaders:?}");

        // Produce to every partition through a client bootstrapped at broker 1 only.
        let delivered: Rc<RefCell<BTreeMap<i32, usize>>> = Rc::default();
        let sink = Rc::clone(&delivered);
        let mut config = ProducerConfig::new(ClientConfig::new(addrs[0]));
        config.acks = Acks::All;
        config.batch.linger_ms = 1;
        let mut producer = Producer::connect(
            config,
            Box::new(move |d| {
                d.result.expect("delivered");
                *sink.borrow_mut().entry(d.partition).or_default() += d.record_count as usize;
            }),
        )
        .await
        .unwrap();
        for i in 0..RECORDS_PER_PARTITION {
            for partition in 0..PARTITIONS {
                producer
                    .send_to("spread", partition, None, Some(&value(partition, i)), &[])
                    .await
                    .unwrap();
            }
        }
        producer.flush().await.unwrap();
        let delivered = delivered.borrow().clone();
        assert_eq!(delivered.len(), PARTITIONS as usize, "{delivered:?}");
        assert!(
            delivered.values().all(|n| *n == RECORDS_PER_PARTITION),
            "{delivered:?}"
        );

        // Read everything back through a client bootstrapped at broker 2.
        let mut consumer = Consumer::connect(ConsumerConfig::new(ClientConfig::new(addrs[1])))
            .await
            .unwrap();
        for partition in 0..PARTITIONS {
            consumer
                .assign("spread", partition, OffsetSpec::Earliest)
                .await
                .unwrap();
        }
        let want = RECORDS_PER_PARTITION * PARTITIONS as usize;
        let mut got: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
        let mut total = 0;
        let started = Instant::now();
        while total < want {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "read {total} of {want}"
            );
            let fetched = consumer.poll().await.unwrap();
            for record in fetched.records() {
                let r = record.unwrap();
                got.entry(r.partition)
                    .or_default()
                    .push((r.offset, r.value.unwrap().to_vec()));
                total += 1;
            }
        }
        assert_eq!(total, want);
        for partition in 0..PARTITIONS {
            let records = &got[&partition];
            assert_eq!(
                records.len(),
                RECORDS_PER_PARTITION,
                "partition {partition}"
            );
            for (i, (offset, v)) in records.iter().enumerate() {
                assert_eq!(*offset, i as i64, "partition {partition}");
                assert_eq!(v, &value(partition, i), "partition {partition}");
            }
            assert_eq!(
                consumer.position("spread", partition),
                Some(RECORDS_PER_PARTITION as i64)
            );
        }

        // The log end of every partition, asked at its leader through broker 3.
        let mut admin = Admin::connect(ClientConfig::new(addrs[2])).await.unwrap();
        for partition in 0..PARTITIONS {
            let end = admin
                .list_offset("spread", partition, OffsetSpec::Latest)
                .await
                .unwrap();
            assert_eq!(end, RECORDS_PER_PARTITION as i64, "partition {partition}");
        }

        // Group offsets committed through broker 3 reach the coordinator, wherever it is, and
        // read back through broker 1; every broker is asked for its groups.
        let offsets: Vec<(String, i32, i64)> = (0..PARTITIONS)
            .map(|p| {
                (
                    "spread".to_owned(),
                    p,
                    RECORDS_PER_PARTITION as i64 - 1 - i64::from(p),
                )
            })
            .collect();
        admin.commit_offsets("readers", &offsets).await.unwrap();
        let mut other = Admin::connect(ClientConfig::new(addrs[0])).await.unwrap();
        let committed: Vec<(String, i32, i64)> = other
            .committed_offsets("readers")
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.topic, c.partition, c.offset))
            .collect();
        assert_eq!(committed, offsets);
        let groups = other.list_groups().await.unwrap();
        assert_eq!(
            groups.iter().filter(|g| g.group_id == "readers").count(),
            1,
            "{groups:?}"
        );
        leaders
    });

    // `spate-admin cluster --topics` at the third broker names all three and every leader.
    let output = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("--bootstrap")
        .arg(cluster.brokers[2].addr.to_string())
        .args(["cluster", "--topics"])
        .output()
        .expect("running spate-admin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "spate-admin cluster failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("brokers: 3 (from DescribeCluster)"),
        "{stdout}"
    );
    let controller: i32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("controller: "))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no controller in:\n{stdout}"));
    assert!((1..=3).contains(&controller), "{stdout}");
    for (i, b) in cluster.brokers.iter().enumerate() {
        let row = format!("{} {}", i + 1, b.addr);
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == row)
            .unwrap_or_else(|| panic!("no row {row:?} in:\n{stdout}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[2], "no", "fenced: {line}");
        // Every broker is a voter, and each holds the metadata log (its end is known).
        assert_eq!(f[3], "voter", "quorum role: {line}");
        assert!(
            f[4].parse::<i64>().is_ok_and(|end| end > 0),
            "log end: {line}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("metadata quorum: leader {controller} epoch "))),
        "{stdout}"
    );
    let partition_rows: BTreeMap<i32, (i32, i32)> = stdout
        .lines()
        .filter(|l| l.split_whitespace().next() == Some("spread"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Replication factor 1: the leader is the one replica, and in sync.
            assert_eq!((f[4], f[5]), (f[2], f[2]), "replicas and ISR: {l}");
            (
                f[1].parse().unwrap(),
                (f[2].parse().unwrap(), f[3].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(partition_rows.len(), PARTITIONS as usize, "{stdout}");
    assert_eq!(partition_rows, leaders, "{stdout}");

    // `spate-admin elect-leaders --topic spread`: one replica per partition, so the preferred
    // replica leads every one already.
    let output = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("--bootstrap")
        .arg(cluster.brokers[1].addr.to_string())
        .args(["elect-leaders", "--topic", "spread"])
        .output()
        .expect("running spate-admin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "spate-admin elect-leaders failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.split_whitespace().next() == Some("spread"))
        .collect();
    assert_eq!(rows.len(), PARTITIONS as usize, "{stdout}");
    assert!(
        rows.iter().all(|r| r.contains("ELECTION_NOT_NEEDED")),
        "{stdout}"
    );
}

#[test]
fn admin_tool_cluster_without_a_broker_exits_unreachable() {
    // A port nothing listens on: a fresh listener's port, closed again.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("--bootstrap")
        .arg(addr.to_string())
        .arg("cluster")
        .output()
        .expect("running spate-admin");
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("--help")
        .output()
        .expect("running spate-admin");
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Cluster id, controller and brokers"));
    let bad = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("frobnicate")
        .output()
        .expect("running spate-admin");
    assert_eq!(bad.status.code(), Some(2));
}

/// Waits until Metadata at `addr` lists broker `id` at `at` and every partition of `topic` has
/// a leader.
async fn wait_for_broker_at(addr: SocketAddr, id: i32, at: SocketAddr, topic: &str) {
    let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
    let started = Instant::now();
    loop {
        let metadata = admin.metadata(Some(&[topic])).await.unwrap();
        let listed = metadata
            .brokers
            .iter()
            .any(|b| b.node_id.0 == id && b.port == i32::from(at.port()));
        let led = metadata
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader_id.0 >= 0)
            .count();
        if listed && led == PARTITIONS as usize {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "broker {id} at {at}: listed {listed}, {led} partitions led"
        );
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn producer_and_consumer_find_a_restarted_broker_at_its_new_address() {
    let mut cluster = start_cluster("restarted-broker");
    let first = cluster.brokers[0].addr;
    let all: Vec<SocketAddr> = cluster.brokers.iter().map(|b| b.addr).collect();
    const PER_ROUND: usize = 50;

    // Round one; broker 2 restarts on a new port; round two with the same clients, which
    // find their connection to broker 2 closed, refresh metadata and reconnect.
    run(async move {
        create_spread_topic(&all, "moving").await;
        let delivered: Rc<RefCell<usize>> = Rc::default();
        let sink = Rc::clone(&delivered);
        let mut producer = Producer::connect(
            ProducerConfig::new(ClientConfig::new(first)),
            Box::new(move |d| {
                d.result.expect("delivered");
                *sink.borrow_mut() += d.record_count as usize;
            }),
        )
        .await
        .unwrap();
        let mut consumer = Consumer::connect(ConsumerConfig::new(ClientConfig::new(first)))
            .await
            .unwrap();
        for partition in 0..PARTITIONS {
            consumer
                .assign("moving", partition, OffsetSpec::Earliest)
                .await
                .unwrap();
        }
        let mut read: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
        for round in 0..2 {
            if round == 1 {
                // Blocking the executor is fine here: the brokers are other processes.
                let broker = &mut cluster.brokers[1];
                assert!(broker.stop().success());
                broker.restart();
                let at = broker.addr;
                cluster.wait_ready(BROKERS);
                wait_for_broker_at(first, 2, at, "moving").await;
            }
            for i in 0..PER_ROUND {
                for partition in 0..PARTITIONS {
                    let v = value(partition, round * PER_ROUND + i);
                    producer
                        .send_to("moving", partition, None, Some(&v), &[])
                        .await
                        .unwrap();
                }
            }
            producer.flush().await.unwrap();
            let want = (round + 1) * PER_ROUND * PARTITIONS as usize;
            assert_eq!(*delivered.borrow(), want);
            let started = Instant::now();
            while read.values().map(Vec::len).sum::<usize>() < want {
                assert!(started.elapsed() < Duration::from_secs(60), "{read:?}");
                let fetched = consumer.poll().await.unwrap();
                for record in fetched.records() {
                    let r = record.unwrap();
                    read.entry(r.partition)
                        .or_default()
                        .push(r.value.unwrap().to_vec());
                }
            }
        }
        for partition in 0..PARTITIONS {
            let expected: Vec<Vec<u8>> = (0..2 * PER_ROUND).map(|i| value(partition, i)).collect();
            assert_eq!(read[&partition], expected, "partition {partition}");
        }
    });
}

/// IncrementalAlterConfigs sent to each broker in turn (two of them are not the controller and
/// forward it): each answers only once its own image holds the change, so a DescribeConfigs
/// at the same broker right after sees it; a refusal is forwarded back with its code.
#[test]
fn every_broker_takes_a_topic_config_change_and_shows_it_at_once() {
    use spate_client::ConfigOperation;
    let cluster = start_cluster("alter-configs");
    let all: Vec<SocketAddr> = cluster.brokers.iter().map(|b| b.addr).collect();
    run(async move {
        create_spread_topic(&all, "altered").await;
        for (i, addr) in all.iter().enumerate() {
            let mut admin = Admin::connect(ClientConfig::new(*addr)).await.unwrap();
            let retention = (60_000 + i).to_string();
            admin
                .alter_topic_configs(
                    "altered",
                    &[
                        (
                            "retention.ms".to_owned(),
                            ConfigOperation::Set(retention.clone()),
                        ),
                        (
                            "cleanup.policy".to_owned(),
                            ConfigOperation::Append("compact".to_owned()),
                        ),
                    ],
                    false,
                )
                .await
                .unwrap();
            let configs = admin.describe_topic_configs("altered").await.unwrap();
            let get = |key: &str| {
                configs
                    .iter()
                    .find(|c| c.name == key)
                    .map(|c| (c.value.clone().unwrap(), c.source))
                    .unwrap()
            };
            assert_eq!(get("retention.ms"), (retention, "DYNAMIC_TOPIC_CONFIG"));
            assert_eq!(
                get("cleanup.policy"),
                ("compact,delete".to_owned(), "DYNAMIC_TOPIC_CONFIG")
            );
            let refused = admin
                .alter_topic_configs(
                    "altered",
                    &[(
                        "segment.bytes".to_owned(),
                        ConfigOperation::Set("12".to_owned()),
                    )],
                    false,
                )
                .await
                .unwrap_err();
            assert!(
                refused.to_string().contains("INVALID_CONFIG"),
                "broker {}: {refused}",
                i + 1
            );
        }
    });
}

/// Runs `spate-admin --format json ARGS` at `addr`, asserts it succeeded and returns its JSON.
fn admin_json(addr: SocketAddr, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("--bootstrap")
        .arg(addr.to_string())
        .args(["--format", "json"])
        .args(args)
        .output()
        .expect("running spate-admin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "spate-admin {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The replica ids of `topic`'s partition 0 in a `cluster --topics` document.
fn replicas_in(cluster: &serde_json::Value, topic: &str) -> Option<Vec<i32>> {
    let row = cluster["partitions"]
        .as_array()?
        .iter()
        .find(|p| p["topic"] == topic && p["partition"] == 0)?;
    serde_json::from_value(row["replicas"].clone()).ok()
}

/// `spate-admin reassign` moves a replicated partition onto the broker that did not hold it:
/// `reassignments` shows the move while it runs (the broker being added, the one being
/// removed) and nothing once it is done, `cluster --topics` then lists the target replicas,
/// and every record produced before the move is still there.
#[test]
fn admin_tool_reassigns_a_replicated_partition_to_another_broker() {
    const RECORDS: i64 = 300;
    let cluster = start_cluster("reassign");
    let addr = cluster.brokers[0].addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let mut topic = NewTopic::new("moved", 1);
        topic.replication_factor = 2;
        let created = admin.create_topics(&[topic]).await.unwrap();
        assert!(created.iter().all(Result::is_ok), "{created:?}");
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
        for i in 0..RECORDS {
            producer
                .send_to("moved", 0, None, Some(&value(0, i as usize)), &[])
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        let end = admin
            .list_offset("moved", 0, OffsetSpec::Latest)
            .await
            .unwrap();
        assert_eq!(end, RECORDS);
    });

    let started = Instant::now();
    let replicas = loop {
        let document = admin_json(addr, &["cluster", "--topics"]);
        if let Some(replicas) = replicas_in(&document, "moved").filter(|r| r.len() == 2) {
            break replicas;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{document}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let outsider = (1..=BROKERS as i32)
        .find(|id| !replicas.contains(id))
        .expect("three brokers, two replicas");
    // Keep the first replica, swap the second for the broker that had none.
    let target = vec![outsider, replicas[0]];
    let removed = replicas[1];
    let target_text = format!("{},{}", target[0], target[1]);

    let moved = admin_json(
        addr,
        &[
            "reassign",
            "--topic",
            "moved",
            "--partition",
            "0",
            "--replicas",
            &target_text,
        ],
    );
    assert_eq!(moved[0]["topic"], "moved", "{moved}");
    assert_eq!(moved[0]["error"], serde_json::Value::Null, "{moved}");
    assert_eq!(moved[0]["replicas"], serde_json::json!(target), "{moved}");

    // In progress (the outsider being added, the second replica being removed) or already done
    // (no entry); never anything else, and done within the deadline.
    let mut seen_in_progress = 0;
    let started = Instant::now();
    loop {
        let ongoing = admin_json(addr, &["reassignments", "--topic", "moved"]);
        let rows = ongoing.as_array().expect("an array of moves");
        if rows.is_empty() {
            break;
        }
        assert_eq!(rows.len(), 1, "{ongoing}");
        assert_eq!(rows[0]["partition"], 0, "{ongoing}");
        assert_eq!(
            rows[0]["adding"],
            serde_json::json!([outsider]),
            "{ongoing}"
        );
        assert_eq!(
            rows[0]["removing"],
            serde_json::json!([removed]),
            "{ongoing}"
        );
        seen_in_progress += 1;
        assert!(started.elapsed() < Duration::from_secs(60), "{ongoing}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("reassignment seen in progress {seen_in_progress} times");

    let started = Instant::now();
    loop {
        let document = admin_json(addr, &["cluster", "--topics"]);
        let now: Option<BTreeSet<i32>> =
            replicas_in(&document, "moved").map(|r| r.into_iter().collect());
        if now == Some(target.iter().copied().collect()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{document}");
        std::thread::sleep(Duration::from_millis(100));
    }
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let end = admin
            .list_offset("moved", 0, OffsetSpec::Latest)
            .await
            .unwrap();
        assert_eq!(end, RECORDS, "the moved partition kept every record");
    });
}
