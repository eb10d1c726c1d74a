//! Golden responses: what spate-wire encodes for clients, pinned byte for byte.
//!
//! Each case is encoded here and compared with `tests/fixtures/responses/<name>.bin`; the
//! `.json` next to it lists the fields a client must read back. `ci/capture/check_responses.py`
//! decodes the same files with kafka-python's protocol classes (an independent decoder, the one
//! kafka-python clients use) and checks those fields, so a committed response is known to be
//! readable by a real client library.
//!
//! After a deliberate encoder change: `SPATE_BLESS=1 cargo test -p spate-wire --test
//! golden_responses`, then run `check_responses.py` before committing the new files.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use spate_wire::fetch::{
    AbortedTransaction, FetchResponseEncoder, Part, PartitionHeader, Records, FETCH_VERSION_MAX,
    FETCH_VERSION_MIN,
};
use spate_wire::frame::{finish_frame, start_frame, FrameDecoder};
use spate_wire::header::{encode_response_header, response_header_version, CorrelationId};
use spate_wire::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use spate_wire::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use spate_wire::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use spate_wire::kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsResponse, MetadataResponse, ProduceResponse, TopicName,
};
use spate_wire::kafka_protocol::protocol::Encodable;
use spate_wire::kafka_protocol::protocol::StrBytes;
use spate_wire::response::{encode_api_versions_response, encode_response};
use spate_wire::types::{LeaderEpoch, Offset, PartitionIndex, ProducerId};
use spate_wire::versions::{ApiSet, VersionTable, API_VERSIONS_VERSION_MAX, SUPPORTED};
use spate_wire::ErrorCode;

/// Kafka's UNSUPPORTED_VERSION, the KIP-511 answer to a too-new ApiVersions request.
const UNSUPPORTED_VERSION: i16 = 35;

fn responses_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/responses")
}

/// Compares `frame` with the committed file (or rewrites it under `SPATE_BLESS=1`).
fn check_golden(name: &str, frame: &[u8], manifest: &Value) {
    let bin = responses_dir().join(format!("{name}.bin"));
    let json_path = responses_dir().join(format!("{name}.json"));
    let manifest_text = serde_json::to_string_pretty(manifest).expect("json") + "\n";
    if std::env::var_os("SPATE_BLESS").is_some() {
        std::fs::create_dir_all(responses_dir()).expect("mkdir");
        std::fs::write(&bin, frame).expect("write golden");
        std::fs::write(&json_path, &manifest_text).expect("write manifest");
    }
    let want = std::fs::read(&bin).unwrap_or_else(|e| {
        panic!("{}: {e} (SPATE_BLESS=1 writes it)", bin.display());
    });
    assert_eq!(
        frame,
        &want[..],
        "{name}: encoding differs from the golden file"
    );
    let want_manifest = std::fs::read_to_string(&json_path).expect("manifest");
    assert_eq!(manifest_text, want_manifest, "{name}: manifest differs");
}

/// The answer to an ApiVersions request of `request_version`, as the broker sends it.
fn api_versions_frame(table: &VersionTable, request_version: i16, correlation: i32) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_api_versions_response(&mut out, table, request_version, CorrelationId(correlation))
        .expect("encodable");
    // The same frame, assembled by hand from the table's answer: the library adds nothing else.
    let (response, version) = table.api_versions_response(request_version);
    let mut by_hand = BytesMut::new();
    let at = start_frame(&mut by_hand);
    encode_response_header(
        &mut by_hand,
        CorrelationId(correlation),
        response_header_version(ApiKey::ApiVersions, version),
    );
    response.encode(&mut by_hand, version).expect("encodable");
    finish_frame(&mut by_hand, at, 0);
    assert_eq!(out, by_hand);
    out.to_vec()
}

fn advertised(table: &VersionTable) -> Vec<Value> {
    table
        .ranges()
        .map(|r| json!([r.api_key as i16, r.min, r.max]))
        .collect()
}

#[test]
fn api_versions_responses_match_their_golden_files() {
    let table = VersionTable::new(ApiSet::all_supported());
    let ranges = advertised(&table);
    assert_eq!(ranges.len(), SUPPORTED.len());
    for request_version in 0..=API_VERSIONS_VERSION_MAX {
        let correlation = 1000 + i32::from(request_version);
        let frame = api_versions_frame(&table, request_version, correlation);
        let manifest = json!({
            "api_key": 18,
            "api_version": request_version,
            "correlation_id": correlation,
            "error_code": 0,
            "api_keys": ranges,
        });
        check_golden(
            &format!("api_versions-v{request_version}"),
            &frame,
            &manifest,
        );
    }
}

#[test]
fn too_new_api_versions_gets_the_kip_511_answer_in_v0() {
    // A client newer than Spate sends ApiVersions v5+: the answer is v0, UNSUPPORTED_VERSION,
    // with the full list, so the client can pick a version it finds there and retry.
    let table = VersionTable::new(ApiSet::all_supported());
    let frame = api_versions_frame(&table, API_VERSIONS_VERSION_MAX + 1, 77);
    assert_eq!(
        &frame[4..8],
        &77i32.to_be_bytes(),
        "correlation id, header v0"
    );
    assert_eq!(
        i16::from_be_bytes([frame[8], frame[9]]),
        UNSUPPORTED_VERSION,
        "error code comes first in v0"
    );
    assert_eq!(ErrorCode::UnsupportedVersion.code(), UNSUPPORTED_VERSION);
    let manifest = json!({
        "api_key": 18,
        "api_version": 0,
        "request_version": API_VERSIONS_VERSION_MAX + 1,
        "correlation_id": 77,
        "error_code": UNSUPPORTED_VERSION,
        "api_keys": advertised(&table),
    });
    check_golden("api_versions-kip511", &frame, &manifest);
}

#[test]
fn api_versions_responses_are_whole_frames_with_a_v0_header() {
    let table = VersionTable::new(ApiSet::core());
    for request_version in 0..=API_VERSIONS_VERSION_MAX + 1 {
        let frame = api_versions_frame(&table, request_version, 5);
        let mut buf = BytesMut::from(&frame[..]);
        let body = FrameDecoder::new(1 << 16)
            .decode(&mut buf)
            .expect("valid frame")
            .expect("whole frame");
        assert!(buf.is_empty());
        assert_eq!(body.len(), frame.len() - 4);
        // Header v0 even for the flexible v3/v4 bodies: correlation id, then the error code
        // with no tagged-field byte between them.
        assert_eq!(&body[..4], &5i32.to_be_bytes());
        let error = i16::from_be_bytes([body[4], body[5]]);
        let expected = if request_version > API_VERSIONS_VERSION_MAX {
            UNSUPPORTED_VERSION
        } else {
            0
        };
        assert_eq!(error, expected, "request v{request_version}");
    }
}

/// A real batch: librdkafka's gzip Produce fixture (5 records), and those records as the
/// capture manifest lists them.
fn real_gzip_batch() -> (Bytes, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/librdkafka/produce-gzip");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("04-Produce-v9.json")).expect("manifest"))
            .expect("json");
    let frame = std::fs::read(dir.join("04-Produce-v9.bin")).expect("fixture");
    let at = manifest["records_at"][0][2].as_u64().expect("offset") as usize;
    let len = manifest["records_at"][0][3].as_u64().expect("length") as usize;
    let records = manifest["batches"][0]["records"].clone();
    assert_eq!(records.as_array().map(Vec::len), Some(5));
    (Bytes::copy_from_slice(&frame[at..at + len]), records)
}

#[test]
fn fetch_responses_match_their_golden_files() {
    let (batch, records) = real_gzip_batch();
    let aborted = [AbortedTransaction {
        producer_id: ProducerId(4242),
        first_offset: Offset(3),
    }];
    for version in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
        let correlation = 2000 + i32::from(version);
        let mut enc =
            FetchResponseEncoder::new(version, CorrelationId(correlation), ErrorCode::None, 0, 1)
                .expect("supported version");
        enc.topic("golden-fetch", 2);
        let mut p0 = PartitionHeader::new(PartitionIndex(0));
        p0.high_watermark = Offset(5);
        p0.last_stable_offset = Offset(5);
        p0.log_start_offset = Offset(0);
        p0.aborted_transactions = Some(&aborted);
        enc.partition(
            &p0,
            Some(Records {
                len: batch.len(),
                data: batch.clone(),
            }),
        );
        let mut p1 = PartitionHeader::new(PartitionIndex(1));
        p1.error_code = ErrorCode::NotLeaderOrFollower;
        p1.current_leader = (version >= 12).then_some((1, LeaderEpoch(3)));
        enc.partition(&p1, None);
        let encoded = enc.finish();
        let mut frame = Vec::with_capacity(encoded.frame_bytes);
        for part in &encoded.parts {
            match part {
                Part::Bytes(bytes) => frame.extend_from_slice(bytes),
                Part::Records(bytes) => {
                    // The record data is the batch itself, never a copy.
                    assert_eq!(bytes.as_ptr(), batch.as_ptr());
                    frame.extend_from_slice(bytes);
                }
            }
        }
        assert_eq!(frame.len(), encoded.frame_bytes);
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(size as usize, frame.len() - 4);
        let mut partition0 = json!({
            "partition_index": 0, "error_code": 0, "high_watermark": 5,
            "last_stable_offset": 5, "aborted_transactions": [[4242, 3]],
            "preferred_read_replica": -1, "records": records,
        });
        let mut partition1 = json!({
            "partition_index": 1, "error_code": ErrorCode::NotLeaderOrFollower.code(),
            "high_watermark": -1, "last_stable_offset": -1, "aborted_transactions": null,
            "preferred_read_replica": -1, "records": null,
        });
        if version >= 5 {
            partition0["log_start_offset"] = json!(0);
            partition1["log_start_offset"] = json!(-1);
        }
        if version >= 12 {
            partition1["current_leader"] = json!([1, 3]);
        }
        let manifest = json!({
            "api_key": 1,
            "api_version": version,
            "correlation_id": correlation,
            "error_code": 0,
            "session_id": 0,
            "topics": [{"topic": "golden-fetch", "partitions": [partition0, partition1]}],
        });
        check_golden(&format!("fetch-v{version}"), &frame, &manifest);
    }
}

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

fn frame_of<R: Encodable>(api_key: ApiKey, version: i16, correlation: i32, body: &R) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_response(&mut out, api_key, version, CorrelationId(correlation), body)
        .expect("encodable at this version");
    out.to_vec()
}

#[test]
fn produce_responses_match_their_golden_files() {
    let not_leader = ErrorCode::NotLeaderOrFollower.code();
    for version in [3i16, 5, 7, 8, 9] {
        let body = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_name(name("golden-produce"))
            .with_partition_responses(vec![
                PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(42)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(0),
                PartitionProduceResponse::default()
                    .with_index(1)
                    .with_error_code(not_leader)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1),
            ])]);
        let correlation = 3000 + i32::from(version);
        let frame = frame_of(ApiKey::Produce, version, correlation, &body);
        let mut p0 =
            json!({"index": 0, "error_code": 0, "base_offset": 42, "log_append_time_ms": -1});
        let mut p1 = json!({"index": 1, "error_code": not_leader, "base_offset": -1, "log_append_time_ms": -1});
        if version >= 5 {
            p0["log_start_offset"] = json!(0);
            p1["log_start_offset"] = json!(-1);
        }
        let manifest = json!({
            "api_key": 0, "api_version": version, "correlation_id": correlation,
            "expect": {
                "throttle_time_ms": 0,
                "responses": [{"name": "golden-produce", "partition_responses": [p0, p1]}],
            },
        });
        check_golden(&format!("produce-v{version}"), &frame, &manifest);
    }
}

#[test]
fn metadata_responses_match_their_golden_files() {
    for version in [0i16, 1, 4, 5, 7, 9, 12] {
        let body = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9092)])
            .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str("spate-golden")))
            .with_controller_id(BrokerId(0))
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(name("golden-topic")))
                .with_partitions(
                    (0..2)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(0))
                                .with_leader_epoch(0)
                                .with_replica_nodes(vec![BrokerId(0)])
                                .with_isr_nodes(vec![BrokerId(0)])
                        })
                        .collect(),
                )]);
        let correlation = 4000 + i32::from(version);
        let frame = frame_of(ApiKey::Metadata, version, correlation, &body);
        let partitions: Vec<Value> = (0..2)
            .map(|p| {
                let mut v = json!({"error_code": 0, "partition_index": p, "leader_id": 0,
                                   "replica_nodes": [0], "isr_nodes": [0]});
                if version >= 7 {
                    v["leader_epoch"] = json!(0);
                }
                v
            })
            .collect();
        let mut expect = json!({
            "brokers": [{"node_id": 0, "host": "127.0.0.1", "port": 9092}],
            "topics": [{"error_code": 0, "name": "golden-topic", "partitions": partitions}],
        });
        if version >= 1 {
            expect["controller_id"] = json!(0);
            expect["brokers"][0]["rack"] = Value::Null;
            expect["topics"][0]["is_internal"] = json!(false);
        }
        if version >= 2 {
            expect["cluster_id"] = json!("spate-golden");
        }
        let manifest = json!({
            "api_key": 3, "api_version": version, "correlation_id": correlation, "expect": expect,
        });
        check_golden(&format!("metadata-v{version}"), &frame, &manifest);
    }
}

#[test]
fn list_offsets_responses_match_their_golden_files() {
    for version in [1i16, 2, 4, 6, 7] {
        let body =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_name(name("golden-offsets"))
                .with_partitions(vec![ListOffsetsPartitionResponse::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)
                    .with_offset(5)
                    // kafka-protocol refuses a non-default field the version lacks (v4+ here).
                    .with_leader_epoch(if version >= 4 { 0 } else { -1 })])]);
        let correlation = 5000 + i32::from(version);
        let frame = frame_of(ApiKey::ListOffsets, version, correlation, &body);
        let mut partition =
            json!({"partition_index": 0, "error_code": 0, "timestamp": -1, "offset": 5});
        if version >= 4 {
            partition["leader_epoch"] = json!(0);
        }
        let mut expect = json!({"topics": [{"name": "golden-offsets", "partitions": [partition]}]});
        if version >= 2 {
            expect["throttle_time_ms"] = json!(0);
        }
        let manifest = json!({
            "api_key": 2, "api_version": version, "correlation_id": correlation, "expect": expect,
        });
        check_golden(&format!("list_offsets-v{version}"), &frame, &manifest);
    }
}

#[test]
fn transaction_admin_responses_match_their_golden_files() {
    use spate_wire::kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    use spate_wire::kafka_protocol::messages::{
        describe_transactions_response, list_transactions_response, DescribeProducersResponse,
        DescribeTransactionsResponse, ListTransactionsResponse, ProducerId as KpProducerId,
        TransactionalId,
    };
    let txn_id = |s: &'static str| TransactionalId(StrBytes::from_static_str(s));

    for version in [0i16, 1] {
        let body = ListTransactionsResponse::default()
            .with_unknown_state_filters(vec![StrBytes::from_static_str("Bogus")])
            .with_transaction_states(vec![list_transactions_response::TransactionState::default(
            )
            .with_transactional_id(txn_id("golden-txn"))
            .with_producer_id(KpProducerId(42))
            .with_transaction_state(StrBytes::from_static_str("Ongoing"))]);
        let correlation = 6600 + i32::from(version);
        let frame = frame_of(ApiKey::ListTransactions, version, correlation, &body);
        let expect = json!({
            "throttle_time_ms": 0, "error_code": 0, "unknown_state_filters": ["Bogus"],
            "transaction_states": [{
                "transactional_id": "golden-txn", "producer_id": 42, "transaction_state": "Ongoing",
            }],
        });
        let manifest = json!({
            "api_key": 66, "api_version": version, "correlation_id": correlation, "expect": expect,
        });
        check_golden(&format!("list_transactions-v{version}"), &frame, &manifest);
    }

    let body = DescribeTransactionsResponse::default().with_transaction_states(vec![
        describe_transactions_response::TransactionState::default()
            .with_transactional_id(txn_id("golden-txn"))
            .with_transaction_state(StrBytes::from_static_str("Ongoing"))
            .with_transaction_timeout_ms(60_000)
            .with_transaction_start_time_ms(1_700_000_000_000)
            .with_producer_id(KpProducerId(42))
            .with_producer_epoch(3)
            .with_topics(vec![describe_transactions_response::TopicData::default()
                .with_topic(name("golden-out"))
                .with_partitions(vec![0, 2])]),
        describe_transactions_response::TransactionState::default()
            .with_error_code(ErrorCode::TransactionalIdNotFound.code())
            .with_transactional_id(txn_id("unknown")),
    ]);
    let frame = frame_of(ApiKey::DescribeTransactions, 0, 6500, &body);
    let expect = json!({
        "throttle_time_ms": 0,
        "transaction_states": [
            {
                "error_code": 0, "transactional_id": "golden-txn", "transaction_state": "Ongoing",
                "transaction_timeout_ms": 60_000, "transaction_start_time_ms": 1_700_000_000_000i64,
                "producer_id": 42, "producer_epoch": 3,
                "topics": [{"topic": "golden-out", "partitions": [0, 2]}],
            },
            {"error_code": 105, "transactional_id": "unknown"},
        ],
    });
    let manifest = json!({
        "api_key": 65, "api_version": 0, "correlation_id": 6500, "expect": expect,
    });
    check_golden("describe_transactions-v0", &frame, &manifest);

    let body = DescribeProducersResponse::default().with_topics(vec![TopicResponse::default()
        .with_name(name("golden-out"))
        .with_partitions(vec![
            PartitionResponse::default()
                .with_partition_index(0)
                .with_active_producers(vec![ProducerState::default()
                    .with_producer_id(KpProducerId(42))
                    .with_producer_epoch(3)
                    .with_last_sequence(9)
                    .with_last_timestamp(1_700_000_000_000)
                    .with_coordinator_epoch(-1)
                    .with_current_txn_start_offset(17)]),
            PartitionResponse::default()
                .with_partition_index(7)
                .with_error_code(ErrorCode::UnknownTopicOrPartition.code()),
        ])]);
    let frame = frame_of(ApiKey::DescribeProducers, 0, 6100, &body);
    let expect = json!({
        "throttle_time_ms": 0,
        "topics": [{"name": "golden-out", "partitions": [
            {"partition_index": 0, "error_code": 0, "active_producers": [{
                "producer_id": 42, "producer_epoch": 3, "last_sequence": 9,
                "last_timestamp": 1_700_000_000_000i64, "coordinator_epoch": -1,
                "current_txn_start_offset": 17,
            }]},
            {"partition_index": 7, "error_code": 3, "active_producers": []},
        ]}],
    });
    let manifest = json!({
        "api_key": 61, "api_version": 0, "correlation_id": 6100, "expect": expect,
    });
    check_golden("describe_producers-v0", &frame, &manifest);
}
