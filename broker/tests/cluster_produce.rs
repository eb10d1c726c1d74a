//! Three brokers in cluster mode, as real processes: a Produce sent to a broker that does not
//! lead the partition gets NOT_LEADER_OR_FOLLOWER, with the current leader and its endpoint
//! (KIP-951) from Produce v10 on.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use spate_testkit::TestDir;
use spate_wire::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreateTopicsRequest,
};
use spate_wire::kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use spate_wire::kafka_protocol::messages::metadata_request::MetadataRequest;
use spate_wire::kafka_protocol::messages::metadata_response::MetadataResponse;
use spate_wire::kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use spate_wire::kafka_protocol::messages::produce_response::ProduceResponse;
use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const TOPIC: &str = "placed";

struct Node {
    child: Child,
    addr: SocketAddr,
    _dir: TestDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start_cluster() -> Vec<Node> {
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
            let dir = TestDir::new(root, &format!("cluster-produce-{i}"));
            let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
            command
                .args(["--node-id", &(i + 1).to_string(), "--cores", "1"])
                .args(["--listen", &client[i].to_string()])
                .args(["--cluster-listen", &cluster[i].to_string()])
                .args(["--controller-voters", &voters.join(",")])
                .arg("--data-dir")
                .arg(dir.path())
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("SPATE_") {
                    command.env_remove(name);
                }
            }
            Node {
                child: command.spawn().expect("spawning spate"),
                addr: client[i],
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
    let nodes = start_cluster();
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
        // The leader itself takes the batch.
        let mut at_leader = connect(nodes[leader as usize - 1].addr);
        let ok = produce(&mut at_leader, partition.partition_index, 11);
        assert_eq!(ok.responses[0].partition_responses[0].error_code, 0);
        checked += 1;
    }
    assert_eq!(checked, 3);
}
