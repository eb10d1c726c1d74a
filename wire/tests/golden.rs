//! Golden tests: request frames captured from real Kafka clients (librdkafka through
//! confluent-kafka, kafka-python, aiokafka, kcat), decoded with spate-wire and compared with the
//! manifest written at capture time.
//!
//! Each fixture is `tests/fixtures/<client>/<scenario>/<nn>-<Api>-v<version>.bin` (one whole
//! frame including its 4-byte size prefix) plus a `.json` manifest of the fields the client
//! sent. `ci/capture/README.md` explains how they were captured and how to capture them again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use spate_wire::batch::{self, BatchError, BatchHeader, Compression};
use spate_wire::compression::DECOMPRESSED_BYTES_MAX_DEFAULT;
use spate_wire::frame::FrameDecoder;
use spate_wire::header::{
    peek_header_prefix, request_header_version, RequestHeader, RequestHeaderVersion,
};
use spate_wire::records::batch_records;
use spate_wire::request::{decode_request, RequestBody, RequestLimits};
use spate_wire::types::{LeaderEpoch, Offset};
use spate_wire::versions::supported;
use spate_wire::WireError;

/// Fewer fixtures than this means the fixture directory was lost or half-captured: fail rather
/// than pass over nothing.
const FIXTURES_MIN: usize = 60;
/// Produce requests: one per produce scenario at least (5 librdkafka codecs, 2 aiokafka,
/// kafka-python, kcat).
const PRODUCE_FIXTURES_MIN: usize = 9;
const CLIENTS: [&str; 4] = ["aiokafka", "kafka-python", "kcat", "librdkafka"];

struct Fixture {
    /// `<client>/<scenario>/<stem>` for messages.
    name: String,
    frame: Vec<u8>,
    manifest: Value,
}

impl Fixture {
    fn int(&self, field: &str) -> i64 {
        self.manifest[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: manifest field {field} is not an integer", self.name))
    }

    fn str(&self, field: &str) -> Option<&str> {
        self.manifest[field].as_str()
    }

    /// The frame body: everything after the size prefix.
    fn body(&self) -> &[u8] {
        &self.frame[4..]
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    entries
}

fn load_fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for client_dir in sorted_entries(&fixtures_dir()) {
        // `responses/` holds spate-wire's own encodings (golden_responses.rs), not captures.
        if !client_dir.is_dir() || client_dir.ends_with("responses") {
            continue;
        }
        for scenario_dir in sorted_entries(&client_dir) {
            for path in sorted_entries(&scenario_dir) {
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let manifest: Value =
                    serde_json::from_slice(&std::fs::read(&path).expect("read manifest"))
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let frame = std::fs::read(path.with_extension("bin"))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let name = path
                    .strip_prefix(fixtures_dir())
                    .expect("under fixtures")
                    .with_extension("")
                    .display()
                    .to_string();
                out.push(Fixture {
                    name,
                    frame,
                    manifest,
                });
            }
        }
    }
    assert!(
        out.len() >= FIXTURES_MIN,
        "only {} golden fixtures under {} (expected at least {FIXTURES_MIN}): re-capture with ci/capture/capture.py",
        out.len(),
        fixtures_dir().display()
    );
    out
}

fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// The records fields of a Produce fixture: `(topic, partition, bytes)`, located by the
/// manifest's `records_at` (offset in the frame file, length).
fn produce_records(fixture: &Fixture) -> Vec<(String, i64, &[u8])> {
    fixture.manifest["records_at"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no records_at", fixture.name))
        .iter()
        .map(|entry| {
            let topic = entry[0].as_str().expect("topic").to_string();
            let partition = entry[1].as_i64().expect("partition");
            let at = usize::try_from(entry[2].as_i64().expect("offset")).expect("records present");
            let len = usize::try_from(entry[3].as_i64().expect("length")).expect("length");
            (topic, partition, &fixture.frame[at..at + len])
        })
        .collect()
}

#[test]
fn every_client_and_scenario_has_fixtures() {
    let fixtures = load_fixtures();
    let clients: BTreeSet<&str> = fixtures.iter().filter_map(|f| f.str("client")).collect();
    assert_eq!(clients, CLIENTS.into_iter().collect::<BTreeSet<_>>());
    let mut per_api: BTreeMap<&str, usize> = BTreeMap::new();
    for fixture in &fixtures {
        *per_api
            .entry(fixture.str("api_name").expect("api_name"))
            .or_default() += 1;
    }
    // The APIs a produce/consume/admin round trip needs must all be represented.
    for api in [
        "ApiVersions",
        "Metadata",
        "Produce",
        "Fetch",
        "ListOffsets",
        "CreateTopics",
        "DeleteTopics",
        "DescribeConfigs",
        "InitProducerId",
        "FindCoordinator",
        "JoinGroup",
        "SyncGroup",
        "Heartbeat",
        "LeaveGroup",
        "OffsetFetch",
        "OffsetCommit",
    ] {
        assert!(
            per_api.get(api).copied().unwrap_or(0) >= 1,
            "no {api} fixture: {per_api:?}"
        );
    }
    assert!(per_api["Produce"] >= PRODUCE_FIXTURES_MIN, "{per_api:?}");
}

#[test]
fn size_prefix_of_every_captured_frame_matches_its_length() {
    for fixture in load_fixtures() {
        let frame = &fixture.frame;
        assert!(frame.len() > 4, "{}", fixture.name);
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(
            usize::try_from(size).ok(),
            Some(frame.len() - 4),
            "{}",
            fixture.name
        );
        assert_eq!(
            fixture.int("frame_bytes"),
            frame.len() as i64,
            "{}",
            fixture.name
        );
    }
}

#[test]
fn request_header_fields_match_the_manifest() {
    for fixture in load_fixtures() {
        let mut body = Bytes::copy_from_slice(fixture.body());
        let (api_key, api_version, correlation_id) =
            peek_header_prefix(&body).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        let header =
            RequestHeader::decode(&mut body).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        assert_eq!(header.api_key as i16, api_key, "{}", fixture.name);
        assert_eq!(
            i64::from(api_key),
            fixture.int("api_key"),
            "{}",
            fixture.name
        );
        assert_eq!(
            i64::from(api_version),
            fixture.int("api_version"),
            "{}",
            fixture.name
        );
        assert_eq!(header.api_version, api_version, "{}", fixture.name);
        assert_eq!(header.correlation_id, correlation_id, "{}", fixture.name);
        assert_eq!(
            i64::from(header.correlation_id.0),
            fixture.int("correlation_id"),
            "{}",
            fixture.name
        );
        assert_eq!(
            header.client_id_str(),
            fixture.str("client_id"),
            "{}",
            fixture.name
        );
        assert!(
            header
                .client_id_str()
                .is_some_and(|id| id.starts_with("golden-")),
            "{}: every capture script sets a golden-* client id",
            fixture.name
        );
        // Flexible versions use header v2; the layout must follow the API's version tables.
        assert_eq!(
            header.version,
            request_header_version(header.api_key, header.api_version),
            "{}",
            fixture.name
        );
        let flexible = header.version == RequestHeaderVersion::V2;
        assert_eq!(
            fixture.body().len() - body.len(),
            10 + header.client_id.as_ref().map_or(0, |id| id.len()) + usize::from(flexible),
            "{}: header bytes consumed",
            fixture.name
        );
    }
}

#[test]
fn every_captured_request_is_in_a_supported_version_range() {
    for fixture in load_fixtures() {
        let mut body = Bytes::copy_from_slice(fixture.body());
        let header = RequestHeader::decode(&mut body).expect("header");
        let range = supported(header.api_key)
            .unwrap_or_else(|| panic!("{}: {:?} is not supported", fixture.name, header.api_key));
        assert!(
            range.contains(header.api_version),
            "{}: {:?} v{} outside {}..={}",
            fixture.name,
            header.api_key,
            header.api_version,
            range.min,
            range.max
        );
    }
}

#[test]
fn frame_decoder_splits_each_scenario_stream_back_into_the_captured_frames() {
    let fixtures = load_fixtures();
    let mut scenarios: BTreeMap<(String, String), Vec<&Fixture>> = BTreeMap::new();
    for fixture in &fixtures {
        let key = (
            fixture.str("client").expect("client").to_string(),
            fixture.str("scenario").expect("scenario").to_string(),
        );
        scenarios.entry(key).or_default().push(fixture);
    }
    let decoder = FrameDecoder::new(64 * 1024);
    let mut frames_total = 0;
    // Feed every scenario's frames back to back, in reads of awkward sizes, as a socket would.
    for read_bytes in [1, 3, 7, 64, 4096] {
        for (key, frames) in &scenarios {
            let stream: Vec<u8> = frames
                .iter()
                .flat_map(|f| f.frame.iter().copied())
                .collect();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(read_bytes) {
                buf.extend_from_slice(chunk);
                while let Some(body) = decoder.decode(&mut buf).expect("valid frame") {
                    got.push(body);
                }
            }
            assert!(buf.is_empty(), "{key:?}: {} bytes left over", buf.len());
            assert_eq!(got.len(), frames.len(), "{key:?}");
            for (body, fixture) in got.iter().zip(frames) {
                assert_eq!(&body[..], fixture.body(), "{}", fixture.name);
            }
            frames_total += got.len();
        }
    }
    assert_eq!(frames_total, 5 * fixtures.len());
}

#[test]
fn frame_decoder_refuses_a_real_frame_over_its_limit() {
    let fixtures = load_fixtures();
    let largest = fixtures
        .iter()
        .max_by_key(|f| f.frame.len())
        .expect("fixtures");
    let body_bytes = largest.frame.len() - 4;
    let mut buf = BytesMut::from(&largest.frame[..]);
    let err = FrameDecoder::new(body_bytes - 1)
        .decode(&mut buf)
        .expect_err("over the limit");
    assert_eq!(
        err,
        WireError::FrameTooLarge {
            size: body_bytes,
            max: body_bytes - 1
        }
    );
    assert_eq!(buf.len(), largest.frame.len(), "buffer left as it was");
    let body = FrameDecoder::new(body_bytes)
        .decode(&mut buf)
        .expect("at the limit")
        .expect("whole frame");
    assert_eq!(&body[..], largest.body());
}

/// Manifest lists of `[topic, partition, number]` triples, as tuples.
fn triples(fixture: &Fixture, field: &str) -> Vec<(String, i64, i64)> {
    fixture.manifest[field]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no {field}", fixture.name))
        .iter()
        .map(|t| {
            (
                t[0].as_str().expect("topic").to_string(),
                t[1].as_i64().expect("partition"),
                t[2].as_i64().expect("number"),
            )
        })
        .collect()
}

fn names(fixture: &Fixture, field: &str) -> Option<Vec<String>> {
    fixture.manifest[field].as_array().map(|list| {
        list.iter()
            .map(|v| v.as_str().expect("name").to_string())
            .collect()
    })
}

fn text(s: &str) -> String {
    s.to_string()
}

fn json_topic(name: &str, partitions: &[i32]) -> Value {
    Value::from(vec![Value::from(name), Value::from(partitions.to_vec())])
}

/// Checks a decoded body against the manifest; returns the API's name for the tally.
fn check_body(fixture: &Fixture, frame: &Bytes, body: &RequestBody) -> &'static str {
    let name = &fixture.name;
    match body {
        RequestBody::Produce(r) => {
            assert_eq!(i64::from(r.acks), fixture.int("acks"), "{name}");
            assert_eq!(i64::from(r.timeout_ms), fixture.int("timeout_ms"), "{name}");
            assert_eq!(
                r.transactional_id.as_ref().map(|t| text(t)),
                fixture.str("transactional_id").map(text),
                "{name}"
            );
            let topics: Vec<String> = r.topic_data.iter().map(|t| text(&t.name)).collect();
            assert_eq!(Some(topics), names(fixture, "topics"), "{name}");
            let expected = fixture.manifest["records_at"]
                .as_array()
                .expect("records_at");
            let mut at = expected.iter();
            for topic in &r.topic_data {
                for partition in &topic.partition_data {
                    let want = at.next().expect("manifest lists every partition");
                    assert_eq!(want[0].as_str(), Some(&*text(&topic.name)), "{name}");
                    assert_eq!(want[1].as_i64(), Some(i64::from(partition.index)), "{name}");
                    let records = partition.records.as_ref().expect("records present");
                    let offset = want[2].as_u64().expect("offset") as usize - 4;
                    let len = want[3].as_u64().expect("length") as usize;
                    assert_eq!(&records[..], &frame[offset..offset + len], "{name}");
                    // Decoding from Bytes keeps record data a slice of the frame: no copy.
                    assert_eq!(records.as_ptr(), frame[offset..].as_ptr(), "{name}: copied");
                }
            }
            assert!(at.next().is_none(), "{name}: manifest has more partitions");
            "Produce"
        }
        RequestBody::Fetch(r) => {
            assert_eq!(
                i64::from(r.max_wait_ms),
                fixture.int("max_wait_ms"),
                "{name}"
            );
            assert_eq!(i64::from(r.min_bytes), fixture.int("min_bytes"), "{name}");
            assert_eq!(i64::from(r.max_bytes), fixture.int("max_bytes"), "{name}");
            assert_eq!(
                i64::from(r.isolation_level),
                fixture.int("isolation_level"),
                "{name}"
            );
            let got: Vec<(String, i64, i64)> = r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| (text(&t.topic), i64::from(p.partition), p.fetch_offset))
                })
                .collect();
            assert!(!got.is_empty(), "{name}: a consumer fetches something");
            assert_eq!(got, triples(fixture, "fetch_partitions"), "{name}");
            "Fetch"
        }
        RequestBody::ListOffsets(r) => {
            assert_eq!(
                i64::from(r.replica_id.0),
                fixture.int("replica_id"),
                "{name}"
            );
            assert_eq!(
                i64::from(r.isolation_level),
                fixture.int("isolation_level"),
                "{name}"
            );
            let got: Vec<(String, i64, i64)> = r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| (text(&t.name), i64::from(p.partition_index), p.timestamp))
                })
                .collect();
            assert_eq!(got, triples(fixture, "list_partitions"), "{name}");
            "ListOffsets"
        }
        RequestBody::Metadata(r) => {
            let got = r.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| text(t.name.as_ref().expect("clients ask by name")))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, names(fixture, "topics"), "{name}");
            if let Some(allow) = fixture.manifest["allow_auto_topic_creation"].as_bool() {
                assert_eq!(r.allow_auto_topic_creation, allow, "{name}");
            }
            "Metadata"
        }
        RequestBody::CreateTopics(r) => {
            let got: Vec<(String, i64, i64)> = r
                .topics
                .iter()
                .map(|t| {
                    let partitions = i64::from(t.num_partitions);
                    (text(&t.name), partitions, i64::from(t.replication_factor))
                })
                .collect();
            assert_eq!(got, triples(fixture, "create_topics"), "{name}");
            assert_eq!(i64::from(r.timeout_ms), fixture.int("timeout_ms"), "{name}");
            assert_eq!(
                Some(r.validate_only),
                fixture.manifest["validate_only"].as_bool(),
                "{name}"
            );
            "CreateTopics"
        }
        RequestBody::DeleteTopics(r) => {
            let got: Vec<String> = if fixture.int("api_version") >= 6 {
                let named = r.topics.iter().map(|t| t.name.as_ref().expect("by name"));
                named.map(|n| text(n)).collect()
            } else {
                r.topic_names.iter().map(|n| text(n)).collect()
            };
            assert_eq!(Some(got), names(fixture, "topics"), "{name}");
            assert_eq!(i64::from(r.timeout_ms), fixture.int("timeout_ms"), "{name}");
            "DeleteTopics"
        }
        RequestBody::DescribeConfigs(r) => {
            let want = fixture.manifest["resources"].as_array().expect("resources");
            assert_eq!(r.resources.len(), want.len(), "{name}");
            for (got, want) in r.resources.iter().zip(want) {
                assert_eq!(
                    Some(i64::from(got.resource_type)),
                    want[0].as_i64(),
                    "{name}"
                );
                assert_eq!(Some(&*text(&got.resource_name)), want[1].as_str(), "{name}");
                let keys = got
                    .configuration_keys
                    .as_ref()
                    .map(|keys| keys.iter().map(|k| Value::from(text(k))).collect());
                assert_eq!(keys.unwrap_or(Value::Null), want[2], "{name}");
            }
            "DescribeConfigs"
        }
        RequestBody::InitProducerId(r) => {
            assert_eq!(
                r.transactional_id.as_ref().map(|t| text(t)),
                fixture.str("transactional_id").map(text),
                "{name}"
            );
            assert_eq!(
                i64::from(r.transaction_timeout_ms),
                fixture.int("transaction_timeout_ms"),
                "{name}"
            );
            "InitProducerId"
        }
        RequestBody::FindCoordinator(r) => {
            let keys: Vec<String> = if fixture.int("api_version") >= 4 {
                r.coordinator_keys.iter().map(|k| text(k)).collect()
            } else {
                vec![text(&r.key)]
            };
            assert_eq!(Some(keys), names(fixture, "coordinator_keys"), "{name}");
            assert_eq!(i64::from(r.key_type), fixture.int("key_type"), "{name}");
            "FindCoordinator"
        }
        RequestBody::ApiVersions(r) => {
            if fixture.int("api_version") >= 3 {
                let software = fixture.str("client_software_name");
                assert_eq!(Some(&*text(&r.client_software_name)), software, "{name}");
                let version = fixture.str("client_software_version");
                assert_eq!(Some(&*text(&r.client_software_version)), version, "{name}");
                assert!(!r.client_software_name.is_empty(), "{name}");
            }
            "ApiVersions"
        }
        RequestBody::JoinGroup(r) => {
            assert_eq!(Some(&*text(&r.group_id)), fixture.str("group_id"), "{name}");
            assert_eq!(
                Some(&*text(&r.member_id)),
                fixture.str("member_id"),
                "{name}"
            );
            assert_eq!(
                Some(&*text(&r.protocol_type)),
                fixture.str("protocol_type"),
                "{name}"
            );
            assert_eq!(text(&r.protocol_type), "consumer", "{name}");
            let protocols: Vec<String> = r.protocols.iter().map(|p| text(&p.name)).collect();
            assert_eq!(Some(protocols), names(fixture, "protocols"), "{name}");
            assert!(r.protocols.iter().all(|p| !p.metadata.is_empty()), "{name}");
            assert_eq!(
                i64::from(r.session_timeout_ms),
                fixture.int("session_timeout_ms"),
                "{name}"
            );
            "JoinGroup"
        }
        RequestBody::SyncGroup(r) => {
            assert_eq!(Some(&*text(&r.group_id)), fixture.str("group_id"), "{name}");
            assert_eq!(
                i64::from(r.generation_id),
                fixture.int("generation_id"),
                "{name}"
            );
            assert_eq!(
                Some(&*text(&r.member_id)),
                fixture.str("member_id"),
                "{name}"
            );
            // The only member leads, so it sends the assignment for itself.
            assert_eq!(
                r.assignments.len() as i64,
                fixture.int("assignments"),
                "{name}"
            );
            assert_eq!(r.assignments.len(), 1, "{name}");
            assert_eq!(r.assignments[0].member_id, r.member_id, "{name}");
            "SyncGroup"
        }
        RequestBody::Heartbeat(r) => {
            assert_eq!(Some(&*text(&r.group_id)), fixture.str("group_id"), "{name}");
            assert_eq!(
                i64::from(r.generation_id),
                fixture.int("generation_id"),
                "{name}"
            );
            assert_eq!(
                Some(&*text(&r.member_id)),
                fixture.str("member_id"),
                "{name}"
            );
            "Heartbeat"
        }
        RequestBody::LeaveGroup(r) => {
            assert_eq!(Some(&*text(&r.group_id)), fixture.str("group_id"), "{name}");
            let members: Vec<String> = if fixture.int("api_version") >= 3 {
                r.members.iter().map(|m| text(&m.member_id)).collect()
            } else {
                vec![text(&r.member_id)]
            };
            assert_eq!(Some(members), names(fixture, "members"), "{name}");
            "LeaveGroup"
        }
        RequestBody::OffsetFetch(r) => {
            let groups: Vec<Value> = if fixture.int("api_version") >= 8 {
                r.groups
                    .iter()
                    .map(|g| {
                        let topics: Vec<Value> = g
                            .topics
                            .iter()
                            .flatten()
                            .map(|t| json_topic(&t.name, &t.partition_indexes))
                            .collect();
                        Value::from(vec![Value::from(text(&g.group_id)), Value::from(topics)])
                    })
                    .collect()
            } else {
                let topics: Vec<Value> = r
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| json_topic(&t.name, &t.partition_indexes))
                    .collect();
                vec![Value::from(vec![
                    Value::from(text(&r.group_id)),
                    Value::from(topics),
                ])]
            };
            assert_eq!(Value::from(groups), fixture.manifest["groups"], "{name}");
            "OffsetFetch"
        }
        RequestBody::OffsetCommit(r) => {
            assert_eq!(Some(&*text(&r.group_id)), fixture.str("group_id"), "{name}");
            assert_eq!(
                Some(&*text(&r.member_id)),
                fixture.str("member_id"),
                "{name}"
            );
            let got: Vec<(String, i64, i64)> = r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| {
                        (
                            text(&t.name),
                            i64::from(p.partition_index),
                            p.committed_offset,
                        )
                    })
                })
                .collect();
            assert_eq!(got, triples(fixture, "commits"), "{name}");
            // Both group scenarios consume all 5 seeded records and commit the next offset.
            assert_eq!(
                got.iter().map(|c| c.2).collect::<Vec<_>>(),
                vec![5],
                "{name}"
            );
            "OffsetCommit"
        }
        other => panic!("{name}: no capture scenario sends {:?}", other.api_key()),
    }
}

#[test]
fn request_bodies_decode_to_the_fields_the_client_sent() {
    let fixtures = load_fixtures();
    let mut per_api: BTreeMap<&str, usize> = BTreeMap::new();
    for fixture in &fixtures {
        let frame = Bytes::copy_from_slice(fixture.body());
        let request = decode_request(frame.clone(), &RequestLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        assert_eq!(
            i64::from(request.header.api_key as i16),
            fixture.int("api_key"),
            "{}",
            fixture.name
        );
        assert_eq!(request.body.api_key(), request.header.api_key);
        *per_api
            .entry(check_body(fixture, &frame, &request.body))
            .or_default() += 1;
    }
    assert_eq!(per_api.values().sum::<usize>(), fixtures.len());
    assert_eq!(per_api.len(), 16, "{per_api:?}");
}

#[test]
fn produce_batches_from_real_clients_parse_and_pass_crc() {
    let fixtures = load_fixtures();
    let mut batches_seen = 0;
    let mut codecs_seen = BTreeSet::new();
    let mut records_per_scenario: BTreeMap<String, i64> = BTreeMap::new();
    for fixture in fixtures.iter().filter(|f| f.int("api_key") == 0) {
        let expected = fixture.manifest["batches"].as_array().expect("batches");
        let mut expected = expected.iter();
        for (topic, partition, records) in produce_records(fixture) {
            for item in batch::batches(records) {
                let (header, bytes) = item.unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
                let want = expected
                    .next()
                    .unwrap_or_else(|| panic!("{}: more batches than the manifest", fixture.name));
                batch::verify_crc(bytes).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
                assert_eq!(
                    want["topic"].as_str(),
                    Some(topic.as_str()),
                    "{}",
                    fixture.name
                );
                assert_eq!(
                    want["partition"].as_i64(),
                    Some(partition),
                    "{}",
                    fixture.name
                );
                assert_eq!(
                    want["compression"].as_str(),
                    Some(compression_name(header.compression())),
                    "{}",
                    fixture.name
                );
                assert_eq!(header.magic, 2);
                assert_eq!(
                    want["crc"].as_u64(),
                    Some(u64::from(header.crc)),
                    "{}",
                    fixture.name
                );
                assert_eq!(want["batch_bytes"].as_u64(), Some(bytes.len() as u64));
                assert_eq!(header.total_bytes(), bytes.len(), "{}", fixture.name);
                assert_eq!(
                    want["record_count"].as_i64(),
                    Some(i64::from(header.record_count))
                );
                assert_eq!(
                    want["last_offset_delta"].as_i64(),
                    Some(i64::from(header.last_offset_delta))
                );
                // Producers number records from 0 inside a batch, so the last delta is count - 1.
                assert_eq!(header.last_offset_delta, header.record_count - 1);
                assert_eq!(want["base_offset"].as_i64(), Some(header.base_offset.0));
                assert_eq!(want["producer_id"].as_i64(), Some(header.producer_id.0));
                assert_eq!(
                    want["producer_epoch"].as_i64(),
                    Some(i64::from(header.producer_epoch.0))
                );
                assert_eq!(
                    want["base_sequence"].as_i64(),
                    Some(i64::from(header.base_sequence))
                );
                assert_eq!(
                    want["transactional"].as_bool(),
                    Some(header.is_transactional())
                );
                assert!(
                    !header.is_control(),
                    "{}: clients never send control batches",
                    fixture.name
                );
                assert!(header.first_timestamp_ms <= header.max_timestamp_ms);
                batches_seen += 1;
                codecs_seen.insert(compression_name(header.compression()));
                let scenario = format!(
                    "{}/{}",
                    fixture.str("client").expect("client"),
                    fixture.str("scenario").expect("scenario")
                );
                *records_per_scenario.entry(scenario).or_default() +=
                    i64::from(header.record_count);
            }
        }
        assert!(
            expected.next().is_none(),
            "{}: fewer batches than the manifest",
            fixture.name
        );
    }
    assert!(
        batches_seen >= PRODUCE_FIXTURES_MIN,
        "{batches_seen} batches"
    );
    assert_eq!(
        codecs_seen,
        BTreeSet::from(["gzip", "lz4", "none", "snappy", "zstd"]),
        "every codec must come from a real client"
    );
    // Every produce scenario sent exactly 5 messages (ci/capture/capture.py MESSAGES).
    assert!(
        records_per_scenario.len() >= PRODUCE_FIXTURES_MIN,
        "{records_per_scenario:?}"
    );
    for (scenario, records) in &records_per_scenario {
        assert_eq!(*records, 5, "{scenario}");
    }
}

#[test]
fn idempotent_kafka_python_batches_carry_the_producer_id_it_was_given() {
    // The fake broker answers InitProducerId with id 4242, epoch 0; kafka-python's default
    // (idempotent) producer must stamp that into every batch, with sequences counting up.
    let fixtures = load_fixtures();
    let mut next_sequence = 0;
    for fixture in fixtures
        .iter()
        .filter(|f| f.int("api_key") == 0 && f.str("client") == Some("kafka-python"))
    {
        for (_, _, records) in produce_records(fixture) {
            for item in batch::batches(records) {
                let (header, _) = item.expect("valid batch");
                assert_eq!(header.producer_id.0, 4242, "{}", fixture.name);
                assert_eq!(header.producer_epoch.0, 0, "{}", fixture.name);
                assert_eq!(header.base_sequence, next_sequence, "{}", fixture.name);
                next_sequence += header.record_count;
            }
        }
    }
    assert_eq!(next_sequence, 5, "kafka-python sent 5 records");
}

/// Every real batch, copied out of its Produce fixture.
fn real_batches() -> Vec<(String, Vec<u8>)> {
    let fixtures = load_fixtures();
    let mut out = Vec::new();
    for fixture in fixtures.iter().filter(|f| f.int("api_key") == 0) {
        for (_, _, records) in produce_records(fixture) {
            for item in batch::batches(records) {
                let (_, bytes) = item.expect("valid batch");
                out.push((fixture.name.clone(), bytes.to_vec()));
            }
        }
    }
    assert!(out.len() >= PRODUCE_FIXTURES_MIN);
    out
}

#[test]
fn assigning_offset_and_epoch_keeps_a_real_batch_crc_valid() {
    for (name, mut bytes) in real_batches() {
        batch::set_base_offset(&mut bytes, Offset(1_000_000_007));
        batch::set_partition_leader_epoch(&mut bytes, LeaderEpoch(17));
        batch::verify_crc(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let header = BatchHeader::parse(&bytes).expect("still parses");
        assert_eq!(header.base_offset, Offset(1_000_000_007), "{name}");
        assert_eq!(header.partition_leader_epoch, LeaderEpoch(17), "{name}");
        assert_eq!(
            header.last_offset(),
            Offset(1_000_000_007 + i64::from(header.last_offset_delta)),
            "{name}"
        );
    }
}

#[test]
fn flipping_any_byte_of_a_real_batch_after_the_crc_field_fails_verification() {
    for (name, bytes) in real_batches() {
        // Every byte in the CRC-covered range (21..) matters; try each one.
        for at in 21..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x01;
            match batch::verify_crc(&corrupt) {
                Err(BatchError::CrcMismatch { stored, computed }) => {
                    assert_ne!(stored, computed, "{name} byte {at}")
                }
                // Flipping a codec bit can make the header itself invalid first; also an error.
                Err(_) => {}
                Ok(()) => panic!("{name}: flipping byte {at} went unnoticed"),
            }
        }
    }
}

#[test]
fn a_real_batch_cut_short_is_reported_as_truncated() {
    for (name, bytes) in real_batches() {
        let cut = &bytes[..bytes.len() - 1];
        let results: Vec<_> = batch::batches(cut).collect();
        assert_eq!(
            results,
            vec![Err(BatchError::Truncated {
                needed: bytes.len(),
                available: bytes.len() - 1
            })],
            "{name}"
        );
    }
}

fn latin1(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| {
        Value::from(b.iter().map(|&c| char::from(c)).collect::<String>())
    })
}

#[test]
fn records_inside_real_batches_match_what_the_clients_sent() {
    // The manifest lists each record as kafka-python's reader saw it (key, value, headers), and
    // capture.py checked that against what the scenario produced: decompressing and iterating
    // with spate-wire must give the same, for every codec.
    let mut records_seen = 0;
    let mut scratch = Vec::new();
    for fixture in load_fixtures().iter().filter(|f| f.int("api_key") == 0) {
        let expected = fixture.manifest["batches"].as_array().expect("batches");
        let mut expected = expected.iter();
        for (_, _, section) in produce_records(fixture) {
            for item in batch::batches(section) {
                let (_, bytes) = item.expect("valid batch");
                let want = expected.next().expect("manifest batch")["records"]
                    .as_array()
                    .expect("records");
                let (header, records) =
                    batch_records(bytes, &mut scratch, DECOMPRESSED_BYTES_MAX_DEFAULT)
                        .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
                let mut got = Vec::new();
                for (i, record) in records.enumerate() {
                    let record = record.unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
                    assert_eq!(record.offset_delta, i as i32, "{}", fixture.name);
                    assert!(record.timestamp_delta_ms >= 0, "{}", fixture.name);
                    let headers: Vec<Value> = record
                        .headers()
                        .map(|(k, v)| Value::from(vec![latin1(Some(k)), latin1(v)]))
                        .collect();
                    assert_eq!(headers.len(), record.headers().len());
                    got.push(Value::from(vec![
                        latin1(record.key),
                        latin1(record.value),
                        Value::from(headers),
                    ]));
                }
                assert_eq!(got.len(), header.record_count as usize, "{}", fixture.name);
                assert_eq!(&got, want, "{}", fixture.name);
                records_seen += got.len();
            }
        }
    }
    // 9 produce scenarios of 5 records each (ci/capture/capture.py).
    assert_eq!(records_seen, 45);
}
