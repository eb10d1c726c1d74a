//! A client that sends requests but never reads the responses must cost only its own
//! connection: the core that serves it keeps answering everyone else.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use spate_wire::batch::{BatchBuilder, BatchSpec};
use spate_wire::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "slow-reader";
/// 4 MiB stored: each fetch below answers with all of it.
const BATCHES: usize = 4;
const RECORDS_PER_BATCH: usize = 256;
const VALUE_BYTES: usize = 4000;
/// Fetches the slow reader sends: 64 MiB of responses, far more than loopback socket buffers
/// hold, so the broker's sends to it must hit a full socket.
const FETCHES: i32 = 16;

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn batch(n: usize) -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    for i in 0..RECORDS_PER_BATCH {
        let value = vec![(n + i) as u8 | 1; VALUE_BYTES];
        builder.push(0, Some(format!("k{n}-{i}").as_bytes()), Some(&value), &[]);
    }
    builder.finish();
    out.freeze()
}

fn fill(broker: &Broker) {
    let mut stream = broker.connect();
    create_topic(&mut stream, TOPIC, 1);
    for n in 0..BATCHES {
        let response = produce(&mut stream, TOPIC, 0, batch(n), 1);
        assert_eq!(response.error_code, 0);
    }
}

fn fetch_everything(correlation_id: i32) -> Vec<u8> {
    let mut partition = FetchPartition::default();
    partition.fetch_offset = 0;
    partition.partition_max_bytes = 8 << 20;
    let mut t = FetchTopic::default();
    t.topic = topic();
    t.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = (-1).into();
    request.max_wait_ms = 0;
    request.max_bytes = 8 << 20;
    request.topics = vec![t];
    let body = encode_request(ApiKey::Fetch, 11, correlation_id, &request);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn a_client_that_never_reads_does_not_stall_the_other_connections_of_its_core() {
    let broker = start_broker("slow-reader", &[]);
    fill(&broker);

    let mut slow = broker.connect();
    for id in 0..FETCHES {
        slow.write_all(&fetch_everything(id)).unwrap();
    }
    // Let the broker answer until the slow reader's socket is full.
    std::thread::sleep(Duration::from_millis(500));

    let mut healthy = broker.connect();
    healthy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let response = round_trip(&mut healthy, &api_versions_request(2, 7));
    assert_eq!(&response[0..4], &7i32.to_be_bytes());
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(slow);
}
