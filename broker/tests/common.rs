//! Test helpers: start the real `spate` binary on a free loopback port and talk raw Kafka to it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

pub use spate_testkit::Broker;
use spate_testkit::TestDir;

/// Starts the broker built with these tests (one core) on a fresh data dir, removed when the
/// returned guard drops (kept if the test fails or `SPATE_KEEP_TEST_DATA` is set).
pub fn start_broker(name: &str, extra_args: &[&str]) -> Broker {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    Broker::start(
        Path::new(env!("CARGO_BIN_EXE_spate")),
        TestDir::new(root, &format!("broker-{name}")),
        extra_args,
    )
}

/// Sends one frame (prefix added here) and reads one response frame body.
pub fn round_trip(stream: &mut TcpStream, body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
    read_frame(stream)
}

pub fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

/// An ApiVersions request (header v1 for versions 0-2, v2 for 3+).
pub fn api_versions_request(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&18i16.to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&4i16.to_be_bytes());
    b.extend_from_slice(b"test");
    if version >= 3 {
        b.push(0); // header tagged fields
        b.push(5); // compact string "spate" length + 1
        b.extend_from_slice(b"test");
        b.push(4);
        b.extend_from_slice(b"0.1");
        b.push(0); // body tagged fields
    }
    b
}

/// Whether the peer closed the connection (read returns 0 or an error) within `limit`.
pub fn is_closed(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
        && !matches!(stream.read(&mut byte), Ok(n) if n > 0)
}

/// Encodes a request with kafka-protocol: header (in the layout the API version needs) + body.
pub fn encode_request<B: spate_wire::kafka_protocol::protocol::Encodable>(
    api_key: spate_wire::kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    body: &B,
) -> Vec<u8> {
    use spate_wire::header::{request_header_version, CorrelationId, RequestHeader};
    let mut out = bytes::BytesMut::new();
    RequestHeader {
        api_key,
        api_version: version,
        correlation_id: CorrelationId(correlation_id),
        client_id: Some(bytes::Bytes::from_static(b"spate-test")),
        version: request_header_version(api_key, version),
    }
    .encode(&mut out);
    body.encode(&mut out, version).unwrap();
    out.to_vec()
}

/// Sends a request and decodes the response body (after the response header).
pub fn call<Req, Resp>(
    stream: &mut TcpStream,
    api_key: spate_wire::kafka_protocol::messages::ApiKey,
    version: i16,
    request: &Req,
) -> Resp
where
    Req: spate_wire::kafka_protocol::protocol::Encodable,
    Resp: spate_wire::kafka_protocol::protocol::Decodable,
{
    use spate_wire::header::{response_header_version, ResponseHeaderVersion};
    let response = round_trip(stream, &encode_request(api_key, version, 77, request));
    let mut body = bytes::Bytes::from(response);
    assert_eq!(&body[..4], &77i32.to_be_bytes(), "correlation id");
    let mut skip = 4;
    if response_header_version(api_key, version) == ResponseHeaderVersion::V1 {
        skip += 1; // empty tagged fields
    }
    let _ = body.split_to(skip);
    Resp::decode(&mut body, version).unwrap()
}

/// Creates topic `name` with `partitions` partitions and checks it was created.
pub fn create_topic(stream: &mut TcpStream, name: &str, partitions: i32) {
    use spate_wire::kafka_protocol::messages::create_topics_request::{
        CreatableTopic, CreateTopicsRequest,
    };
    use spate_wire::kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
    use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
    use spate_wire::kafka_protocol::protocol::StrBytes;
    let mut creatable = CreatableTopic::default();
    creatable.name = TopicName(StrBytes::from_string(name.to_owned()));
    creatable.num_partitions = partitions;
    creatable.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![creatable];
    create.timeout_ms = 5000;
    let created: CreateTopicsResponse = call(stream, ApiKey::CreateTopics, 5, &create);
    assert_eq!(created.topics[0].error_code, 0, "creating {name}");
}

/// Produces one batch to `name`-`partition` (Produce v9) and returns the partition's response.
pub fn produce(
    stream: &mut TcpStream,
    name: &str,
    partition: i32,
    batch: bytes::Bytes,
    acks: i16,
) -> spate_wire::kafka_protocol::messages::produce_response::PartitionProduceResponse {
    use spate_wire::kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    use spate_wire::kafka_protocol::messages::produce_response::ProduceResponse;
    use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
    use spate_wire::kafka_protocol::protocol::StrBytes;
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(batch);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(name.to_owned()));
    t.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 5000;
    request.topic_data = vec![t];
    let mut response: ProduceResponse = call(stream, ApiKey::Produce, 9, &request);
    response.responses.remove(0).partition_responses.remove(0)
}

/// A batch of one keyless record, value `v`.
pub fn one_record_batch() -> bytes::Bytes {
    use spate_wire::batch::{BatchBuilder, BatchSpec};
    let mut out = bytes::BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    builder.push(0, None, Some(b"v"), &[]);
    builder.finish();
    out.freeze()
}
