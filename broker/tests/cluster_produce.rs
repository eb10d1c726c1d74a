//! Three brokers in cluster mode, as real processes: a Produce sent to a broker that does not
//! lead the partition gets NOT_LEADER_OR_FOLLOWER, with the current leader and its endpoint
//! (KIP-951) from Produce v10 on, and a Fetch v12 the leader in its tagged CurrentLeader;
//! DescribeQuorum gives the same quorum from every broker (the
//! leader answers itself, the others ask it).

mod common;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use spate_testkit::TestDir;
use spate_wire::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreateTopicsRequest,
};
use spate_wire::kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use spate_wire::kafka_protocol::messages::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData, TopicData,
};
use spate_wire::kafka_protocol::messages::describe_quorum_response::DescribeQuorumResponse;
use spate_wire::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use spate_wire::kafka_protocol::messages::fetch_response::FetchResponse;
use spate_wire::kafka_protocol::messages::metadata_request::MetadataRequest;
use spate_wire::kafka_protocol::messages::metadata_response::MetadataResponse;
use spate_wire::kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use spate_wire::kafka_protocol::messages::produce_response::ProduceResponse;
use spate_wire::kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC: &str = "placed";

struct Node {
    child: Child,
    addr: SocketAddr,
    /// The broker's stderr: its tail is printed when the test fails, else it is removed.
    log: PathBuf,
    _dir: TestDir,
}

/// Lines of a broker's log shown when a test fails.
const LOG_TAIL_LINES: usize = 60;

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "--- tail of {} ---\n{}",
                self.log.display(),
                tail.join("\n")
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Three brokers; `name` keeps each test's data dirs apart (tests run in parallel).
fn start_cluster(name: &str) -> Vec<Node> {
    let client: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let cluster: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let voters: Vec<String> = cluster
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}@{a}", i + 1))
        .collect();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    (0..3)
        .map(|i| {
            let dir = TestDir::new(root, &format!("{name}-{i}"));
            let log = dir.path().with_extension("log");
            let stderr = File::create(&log).expect("creating the broker's log");
            let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
            command
                .args(["--node-id", &(i + 1).to_string(), "--cores", "1"])
                .args(["--listen", &client[i].to_string()])
                // No admin listener: its port, picked by the kernel, could be one `free_addr`
                // handed out for another broker of a test running beside this one.
                .args(["--admin-listen", "none"])
                .args(["--cluster-listen", &cluster[i].to_string()])
                .args(["--controller-voters", &voters.join(",")])
                .arg("--data-dir")
                .arg(dir.path())
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(stderr);
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("SPATE_") {
                    command.env_remove(name);
                }
            }
            Node {
                child: command.spawn().expect("spawning spate"),
                addr: client[i],
                log,
                _dir: dir,
            }
        })
        .collect()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let started = Instant::now();
    loop {
        if let Ok(stream) = TcpStream::connect(addr) {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            return stream;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{addr} never accepted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metadata(stream: &mut TcpStream) -> MetadataResponse {
    let mut request = MetadataRequest::default();
    request.topics = None;
    request.allow_auto_topic_creation = false;
    call(stream, ApiKey::Metadata, 12, &request)
}

fn produce(stream: &mut TcpStream, partition: i32, version: i16) -> ProduceResponse {
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(one_record_batch());
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 5000;
    request.topic_data = vec![topic];
    call(stream, ApiKey::Produce, version, &request)
}

#[test]
fn a_produce_to_the_wrong_broker_names_the_leader() {
    let nodes = start_cluster("cluster-produce");
    let mut first = connect(nodes[0].addr);
    let started = Instant::now();
    let mut md = metadata(&mut first);
    while md.brokers.len() < 3 || md.controller_id.0 < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no cluster of three: {} brokers, controller {}",
            md.brokers.len(),
            md.controller_id.0
        );
        std::thread::sleep(Duration::from_millis(100));
        md = metadata(&mut first);
    }
    let mut controller = connect(nodes[md.controller_id.0 as usize - 1].addr);
    let mut creatable = CreatableTopic::default();
    creatable.name = TopicName(StrBytes::from_static_str(TOPIC));
    creatable.num_partitions = 3;
    creatable.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![creatable];
    create.timeout_ms = 10_000;
    let created: CreateTopicsResponse = call(&mut controller, ApiKey::CreateTopics, 5, &create);
    assert_eq!(created.topics[0].error_code, 0);

    // Every broker learns of the topic when its own image catches up with the commit: wait
    // until each lists it, or the leader itself may still answer UNKNOWN_TOPIC_OR_PARTITION.
    for node in &nodes {
        let mut stream = connect(node.addr);
        let started = Instant::now();
        while !metadata(&mut stream)
            .topics
            .iter()
            .any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(TOPIC))
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} never listed {TOPIC}",
                node.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let md = metadata(&mut controller);
    let topic = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(TOPIC))
        .expect("the topic is listed");
    assert_eq!(topic.partitions.len(), 3);
    let mut checked = 0;
    for partition in &topic.partitions {
        let leader = partition.leader_id.0;
        assert!((1..=3).contains(&leader));
        let wrong = (leader % 3) as usize; // the next node: never the leader
        let mut stream = connect(nodes[wrong].addr);
        let answer = produce(&mut stream, partition.partition_index, 11);
        let p = &answer.responses[0].partition_responses[0];
        assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER);
        assert_eq!(p.current_leader.leader_id.0, leader);
        assert_eq!(p.current_leader.leader_epoch, partition.leader_epoch);
        let endpoint = answer
            .node_endpoints
            .iter()
            .find(|e| e.node_id.0 == leader)
            .expect("the leader's endpoint");
        assert_eq!(
            endpoint.port,
            i32::from(nodes[leader as usize - 1].addr.port())
        );
        // Before v10 the answer is the bare error.
        let old = produce(&mut stream, partition.partition_index, 9);
        assert_eq!(
            old.responses[0].partition_responses[0].error_code,
            NOT_LEADER_OR_FOLLOWER
        );
        // A Fetch v12 at the wrong broker names the leader too (tagged CurrentLeader).
        let fetched = fetch(&mut stream, partition.partition_index);
        let f = &fetched.responses[0].partitions[0];
        assert_eq!(f.error_code, NOT_LEADER_OR_FOLLOWER);
        assert_eq!(f.current_leader.leader_id.0, leader);
        assert_eq!(f.current_leader.leader_epoch, partition.leader_epoch);
        // The leader itself takes the batch.
        let mut at_leader = connect(nodes[leader as usize - 1].addr);
        let ok = produce(&mut at_leader, partition.partition_index, 11);
        assert_eq!(ok.responses[0].partition_responses[0].error_code, 0);
        checked += 1;
    }
    assert_eq!(checked, 3);
}

fn fetch(stream: &mut TcpStream, partition: i32) -> FetchResponse {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = 0;
    p.partition_max_bytes = 1 << 20;
    p.current_leader_epoch = -1;
    p.last_fetched_epoch = -1;
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partitions = vec![p];
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 0;
    request.max_bytes = 1 << 20;
    request.session_epoch = -1;
    request.topics = vec![topic];
    call(stream, ApiKey::Fetch, 12, &request)
}

fn wait_for_three(stream: &mut TcpStream) -> MetadataResponse {
    let started = Instant::now();
    let mut md = metadata(stream);
    while md.brokers.len() < 3 || md.controller_id.0 < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no cluster of three: {} brokers, controller {}",
            md.brokers.len(),
            md.controller_id.0
        );
        std::thread::sleep(Duration::from_millis(100));
        md = metadata(stream);
    }
    md
}

fn describe_quorum(stream: &mut TcpStream, topic: &str, version: i16) -> DescribeQuorumResponse {
    let mut partition = PartitionData::default();
    partition.partition_index = 0;
    let mut data = TopicData::default();
    data.topic_name = TopicName(StrBytes::from_string(topic.to_owned()));
    data.partitions = vec![partition];
    let mut request = DescribeQuorumRequest::default();
    request.topics = vec![data];
    call(stream, ApiKey::DescribeQuorum, version, &request)
}

#[test]
fn every_broker_describes_the_quorum_as_its_leader_sees_it() {
    let nodes = start_cluster("cluster-quorum");
    let mut first = connect(nodes[0].addr);
    let leader = wait_for_three(&mut first).controller_id.0;
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    for node in &nodes {
        let mut stream = connect(node.addr);
        for version in 0..=2 {
            let response = describe_quorum(&mut stream, "__cluster_metadata", version);
            assert_eq!(response.error_code, 0);
            let p = &response.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "{} v{version}", node.addr);
            assert_eq!(p.leader_id.0, leader, "{} v{version}", node.addr);
            assert!(p.leader_epoch >= 1);
            // At least the three registrations committed.
            assert!(p.high_watermark >= 3, "high watermark {}", p.high_watermark);
            let voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
            assert_eq!(voters, vec![1, 2, 3]);
            let me = &p.current_voters[leader as usize - 1];
            assert!(me.log_end_offset >= p.high_watermark);
            assert!(p.observers.is_empty(), "every broker is a voter");
            if version >= 1 {
                assert!(me.last_fetch_timestamp > before_ms);
                assert!(me.last_caught_up_timestamp > before_ms);
            }
            if version >= 2 {
                let ids: Vec<i32> = response.nodes.iter().map(|n| n.node_id.0).collect();
                assert_eq!(ids, vec![1, 2, 3]);
                assert_eq!(response.nodes[0].listeners.len(), 1);
            }
        }
        let other = describe_quorum(&mut stream, "some-topic", 2);
        assert_eq!(
            other.topics[0].partitions[0].error_code,
            UNKNOWN_TOPIC_OR_PARTITION
        );
    }
}
