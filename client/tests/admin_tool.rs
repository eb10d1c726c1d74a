//! `spate-admin groups ...` against the real broker: list, describe with lag, reset (dry run,
//! earliest, latest, timestamp), delete; offsets checked through the library afterwards. A
//! live member (raw JoinGroup and SyncGroup) shows its host in `groups describe`.

mod common;

use std::process::Command;

use common::{run, start_broker, Broker};
use spate_client::{Acks, Admin, ClientConfig, NewTopic, Producer, ProducerConfig};

fn admin_tool(broker: &Broker, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
        .arg("--bootstrap")
        .arg(broker.addr.to_string())
        .args(args)
        .output()
        .expect("running spate-admin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "spate-admin {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The describe row of a partition: (committed, log end, lag).
fn row(describe: &str, partition: &str) -> (String, String, String) {
    let line = describe
        .lines()
        .find(|l| l.split_whitespace().take(2).eq(["t", partition]))
        .unwrap_or_else(|| panic!("no row for t/{partition} in:\n{describe}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[2].to_owned(), f[3].to_owned(), f[4].to_owned())
}

async fn committed(admin: &mut Admin) -> Vec<(i32, i64)> {
    admin
        .committed_offsets("g")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.partition, c.offset))
        .collect()
}

#[test]
fn admin_tool_lists_describes_resets_and_deletes_a_group() {
    let broker = start_broker("admin-tool");
    let addr = broker.addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let created = admin.create_topics(&[NewTopic::new("t", 2)]).await.unwrap();
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
        for (partition, count) in [(0, 25), (1, 10)] {
            for _ in 0..count {
                producer
                    .send_to("t", partition, None, Some(b"x"), &[])
                    .await
                    .unwrap();
            }
        }
        producer.flush().await.unwrap();
        admin
            .commit_offsets("g", &[("t".to_owned(), 0, 20), ("t".to_owned(), 1, 10)])
            .await
            .unwrap();

        let list = admin_tool(&broker, &["groups", "list"]);
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().take(2).eq(["g", "Empty"])),
            "{list}"
        );
        let describe = admin_tool(&broker, &["groups", "describe", "g"]);
        assert!(describe.contains(" MEMBER HOST CLIENT"), "{describe}");
        assert_eq!(row(&describe, "0"), ("20".into(), "25".into(), "5".into()));
        let json = admin_tool(&broker, &["--format", "json", "groups", "describe", "g"]);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["partitions"][0]["committed_offset"], 20);
        assert_eq!(json["partitions"][0]["lag"], 5);
        assert_eq!(json["partitions"][0]["host"], serde_json::Value::Null);
        assert_eq!(row(&describe, "1"), ("10".into(), "10".into(), "0".into()));

        let dry = admin_tool(&broker, &["groups", "reset", "g", "--to-earliest"]);
        assert!(dry.contains("dry run"), "{dry}");
        assert_eq!(committed(&mut admin).await, vec![(0, 20), (1, 10)]);
        admin_tool(
            &broker,
            &["groups", "reset", "g", "--to-earliest", "--execute"],
        );
        assert_eq!(committed(&mut admin).await, vec![(0, 0), (1, 0)]);
        let future_ms = "99999999999999";
        admin_tool(
            &broker,
            &[
                "groups",
                "reset",
                "g",
                "--to-timestamp",
                future_ms,
                "--execute",
            ],
        );
        assert_eq!(committed(&mut admin).await, vec![(0, 25), (1, 10)]);
        admin_tool(
            &broker,
            &[
                "groups",
                "reset",
                "g",
                "--to-timestamp",
                "0",
                "--topic",
                "t",
                "--execute",
            ],
        );
        assert_eq!(committed(&mut admin).await, vec![(0, 0), (1, 0)]);
        admin_tool(
            &broker,
            &["groups", "reset", "g", "--to-latest", "--execute"],
        );
        assert_eq!(committed(&mut admin).await, vec![(0, 25), (1, 10)]);
        let describe = admin_tool(&broker, &["groups", "describe", "g"]);
        assert_eq!(row(&describe, "0"), ("25".into(), "25".into(), "0".into()));

        admin_tool(&broker, &["groups", "delete", "g"]);
        let list = admin_tool(&broker, &["groups", "list"]);
        assert!(!list.lines().any(|l| l.starts_with("g ")), "{list}");
        assert!(committed(&mut admin).await.is_empty());
    });
}

/// The `topics describe-config` row of `key`: (value, source).
fn config_row(describe: &str, key: &str) -> (String, String) {
    let line = describe
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no row for {key} in:\n{describe}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[1].to_owned(), f[2].to_owned())
}

#[test]
fn admin_tool_changes_and_describes_topic_configs() {
    let broker = start_broker("admin-tool-configs");
    let addr = broker.addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let created = admin.create_topics(&[NewTopic::new("c", 1)]).await.unwrap();
        assert!(created.iter().all(Result::is_ok), "{created:?}");
        let before = admin_tool(&broker, &["topics", "describe-config", "c"]);
        assert_eq!(
            config_row(&before, "cleanup.policy"),
            ("delete".into(), "DEFAULT_CONFIG".into())
        );
        let changed = admin_tool(
            &broker,
            &[
                "topics",
                "alter-config",
                "c",
                "--set",
                "retention.ms=60000",
                "--append",
                "cleanup.policy=compact",
            ],
        );
        assert!(changed.contains("changed retention.ms"), "{changed}");
        let after = admin_tool(&broker, &["topics", "describe-config", "c"]);
        assert_eq!(
            config_row(&after, "retention.ms"),
            ("60000".into(), "DYNAMIC_TOPIC_CONFIG".into())
        );
        assert_eq!(
            config_row(&after, "cleanup.policy"),
            ("compact,delete".into(), "DYNAMIC_TOPIC_CONFIG".into())
        );
        admin_tool(
            &broker,
            &["topics", "alter-config", "c", "--delete", "retention.ms"],
        );
        admin_tool(
            &broker,
            &[
                "topics",
                "alter-config",
                "c",
                "--set",
                "segment.ms=1",
                "--validate-only",
            ],
        );
        let last = admin_tool(&broker, &["topics", "describe-config", "c"]);
        assert_eq!(config_row(&last, "retention.ms").1, "DEFAULT_CONFIG");
        assert_eq!(config_row(&last, "segment.ms").1, "DEFAULT_CONFIG");
        // A refusal exits 1 with the Kafka error by name and the broker's reason.
        let refused = Command::new(env!("CARGO_BIN_EXE_spate-admin"))
            .args(["--bootstrap", &addr.to_string()])
            .args(["topics", "alter-config", "c", "--set", "retention.ms=soon"])
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("INVALID_CONFIG") && stderr.contains("not an integer"),
            "{stderr}"
        );
    });
}

/// A consumer group member over raw JoinGroup and SyncGroup (the Rust client has no group
/// consumer): `groups describe` shows its host, the address the coordinator saw its
/// connection come from, in the HOST column and in `--format json`, with its member id and
/// client id, for each partition assigned to it.
#[test]
fn admin_tool_describe_shows_a_live_members_host() {
    use bytes::{Bytes, BytesMut};
    use spate_client::connection::{Connection, ConnectionConfig};
    use spate_wire::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use spate_wire::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use spate_wire::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use spate_wire::kafka_protocol::messages::{
        ApiKey, ConsumerProtocolAssignment, GroupId, JoinGroupRequest, JoinGroupResponse,
        SyncGroupRequest, SyncGroupResponse, TopicName,
    };
    use spate_wire::kafka_protocol::protocol::{Encodable, StrBytes};
    use spate_wire::ErrorCode;

    // No initial rebalance delay: the one member's join is answered at once.
    let broker = Broker::start(
        &spate_testkit::spate_binary(),
        spate_testkit::TestDir::new(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "client-admin-tool-host",
        ),
        &[
            "--log-level",
            "warn",
            "--group-initial-rebalance-delay-ms",
            "0",
        ],
    );
    let addr = broker.addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let created = admin
            .create_topics(&[NewTopic::new("hosted", 2)])
            .await
            .unwrap();
        assert!(created.iter().all(Result::is_ok), "{created:?}");

        let config = ConnectionConfig {
            client_id: "host-test".to_owned(),
            ..ConnectionConfig::default()
        };
        let mut conn = Connection::connect(addr, config).await.unwrap();
        let join = |member_id: &str| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("live")))
                .with_session_timeout_ms(60_000)
                .with_rebalance_timeout_ms(60_000)
                .with_member_id(StrBytes::from_string(member_id.to_owned()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"sub"))])
        };
        // KIP-394: the first join only hands out the member id.
        let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &join("")).await.unwrap();
        assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
        let member = first.member_id.to_string();
        let joined: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 5, &join(&member))
            .await
            .unwrap();
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.leader.as_str(), member, "the only member leads");

        // The leader assigns both partitions to itself, in the consumer protocol's layout.
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("hosted")))
                .with_partitions(vec![0, 1]),
        ]);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&1i16.to_be_bytes());
        assignment.encode(&mut bytes, 1).unwrap();
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("live")))
            .with_generation_id(joined.generation_id)
            .with_member_id(StrBytes::from_string(member.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_assignment(bytes.freeze())]);
        let synced: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &sync).await.unwrap();
        assert_eq!(synced.error_code, 0);

        // The member's connection stays open (and its session runs for a minute) meanwhile.
        let describe = admin_tool(&broker, &["groups", "describe", "live"]);
        assert!(describe.contains("members 1"), "{describe}");
        let owners: Vec<Vec<&str>> = describe
            .lines()
            .filter(|l| l.split_whitespace().next() == Some("hosted"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(owners.len(), 2, "{describe}");
        for (partition, f) in owners.iter().enumerate() {
            // TOPIC PARTITION COMMITTED LOG-END LAG MEMBER HOST CLIENT; no commit yet.
            assert_eq!(
                f[1..],
                [
                    partition.to_string().as_str(),
                    "-",
                    "0",
                    "-",
                    member.as_str(),
                    "/127.0.0.1",
                    "host-test"
                ],
                "{describe}"
            );
        }

        let json = admin_tool(&broker, &["--format", "json", "groups", "describe", "live"]);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["members"][0]["host"], "/127.0.0.1", "{json}");
        assert_eq!(json["members"][0]["client_id"], "host-test", "{json}");
        assert_eq!(
            json["members"][0]["assignment"].as_array().unwrap().len(),
            2
        );
        let partitions = json["partitions"].as_array().unwrap();
        assert_eq!(partitions.len(), 2, "{json}");
        assert!(
            partitions
                .iter()
                .all(|p| p["host"] == "/127.0.0.1" && p["member_id"] == member.as_str()),
            "{json}"
        );
        drop(conn);
    });
}
