//! Every API and version a broker advertises is answered: an API or version is advertised only
//! if it works (issue 19).
//!
//! The test asks a real broker for ApiVersions, then sends, for every advertised API and every
//! version from its minimum to its maximum, a small valid request of that version (fixtures made
//! beforehand where one is needed) on a fresh connection, and checks that:
//! - the answer arrives, carries the request's correlation id, and decodes at that version with
//!   no byte left over (headers are encoded and decoded with kafka-protocol's own tables, not
//!   Spate's, so a wrong header version in the broker shows up here);
//! - no error code anywhere in the answer is UNSUPPORTED_VERSION (35);
//! - the connection stays open: a following ApiVersions on it is answered;
//! - where it is cheap, the answer is the one the request calls for (a produced record is
//!   fetched back, a new member gets MEMBER_ID_REQUIRED from JoinGroup v4+, ...). An API may
//!   rightly answer an error to a minimal request, so there is no general "success" check.
//!
//! Versions advertised on purpose and refused when sent are listed in [`REFUSED`] with the
//! reason; the test fails if one of them is answered (the exception is no longer needed) and if
//! any other advertised version is refused.
//!
//! It runs against a single broker and against a three-broker cluster, whose advertised table
//! adds the quorum, election, reassignment and unregistration APIs. In the cluster, each
//! request goes where a client would send it: partition requests to the partition's leader,
//! group and transaction requests to the coordinator FindCoordinator names, reassignments and
//! unregistration to the controller Metadata names.

mod common;

use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use spate_testkit::Cluster;
use spate_wire::kafka_protocol::messages::*;
use spate_wire::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use spate_wire::ErrorCode as E;

/// A version advertised on purpose but refused when a request of it arrives (the broker closes
/// the connection).
struct Refused {
    api_key: ApiKey,
    versions: std::ops::RangeInclusive<i16>,
    why: &'static str,
}

/// Every advertised-but-refused version, with the reason.
const REFUSED: &[Refused] = &[Refused {
    api_key: ApiKey::Produce,
    versions: 0..=2,
    why: "message formats v0/v1 only, which Spate does not store; advertised because librdkafka \
          before 2.11.1 turns compression off when a broker's minimum Produce version is above 0 \
          (wire/src/versions.rs PRODUCE_VERSION_DECODE_MIN, PLATFORM-NOTES.md)",
}];

/// How long a probe waits for an answer or for the connection to close.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// UNSUPPORTED_VERSION: never an acceptable answer to an advertised version.
const UNSUPPORTED_VERSION: i16 = 35;

/// Partitions of the probe topic; partition 0 holds [`PROBE_RECORDS`] records.
const PROBE_TOPIC: &str = "probe";
const PROBE_RECORDS: i64 = 1;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn tn(v: &str) -> TopicName {
    TopicName(s(v))
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn tid(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

/// `Ok` if `got` is one of `want`.
fn expect(what: &str, got: i16, want: &[E]) -> Result<(), String> {
    if want.iter().any(|w| w.code() == got) {
        Ok(())
    } else {
        Err(format!("{what}: error {got}, expected one of {want:?}"))
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Every `error_code` field in a decoded response, read from its `Debug` form (kafka-protocol
/// names every error field `error_code`, `*_error_code`), so no API's nested errors are missed.
fn error_codes(debug: &str) -> Vec<i16> {
    debug
        .match_indices("error_code: ")
        .filter_map(|(at, m)| {
            let rest = &debug[at + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect()
}

/// What came back for one request.
enum Reply<R> {
    Answer(R),
    /// The broker closed the connection instead of answering.
    Closed,
}

/// Request header + body, framed, with kafka-protocol's header tables.
fn frame<B: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &B) -> Vec<u8> {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("spate-version-probe")))
        .encode(&mut out, key.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version)
        .unwrap_or_else(|e| panic!("encoding {key:?} v{version}: {e}"));
    let mut framed = (out.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&out);
    framed
}

/// Reads one frame; `None` if the peer closed the connection first.
fn read_frame_or_closed(stream: &mut TcpStream) -> Result<Option<Bytes>, String> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(format!("no answer: {e}")),
    }
    let len = i32::from_be_bytes(len);
    ensure((0..=64 << 20).contains(&len), || {
        format!("frame of {len} bytes")
    })?;
    let mut body = vec![0u8; len as usize];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("truncated answer: {e}"))?;
    Ok(Some(Bytes::from(body)))
}

/// Sends `body` on `stream` and decodes the answer at `version`, checking the correlation id
/// and that the whole frame is consumed.
fn exchange<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &Req,
) -> Result<Reply<Resp>, String> {
    stream
        .write_all(&frame(key, version, correlation_id, body))
        .map_err(|e| format!("send: {e}"))?;
    let Some(mut answer) = read_frame_or_closed(stream)? else {
        return Ok(Reply::Closed);
    };
    let header = ResponseHeader::decode(&mut answer, key.response_header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    ensure(header.correlation_id == correlation_id, || {
        format!(
            "correlation id {} for request {correlation_id}",
            header.correlation_id
        )
    })?;
    let response = Resp::decode(&mut answer, version)
        .map_err(|e| format!("decoding the answer at v{version}: {e}"))?;
    ensure(answer.is_empty(), || {
        format!(
            "{} bytes left after decoding the answer at v{version}",
            answer.len()
        )
    })?;
    Ok(Reply::Answer(response))
}

/// Where the probes go and the fixtures they use.
struct Sweep {
    /// Any broker (the first).
    bootstrap: SocketAddr,
    /// The leader of `probe`-0.
    leader: SocketAddr,
    brokers: usize,
    correlation_id: i32,
    names: u32,
}

impl Sweep {
    fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id += 1;
        self.correlation_id
    }

    fn unique(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}-{}", self.names)
    }

    fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Ok(stream)
    }

    /// A request on a fresh connection to `addr` whose answer the caller needs (fixtures).
    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        addr: SocketAddr,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, String> {
        let mut stream = Self::connect(addr)?;
        let id = self.next_correlation_id();
        match exchange(&mut stream, key, version, id, body)? {
            Reply::Answer(r) => Ok(r),
            Reply::Closed => Err(format!(
                "{key:?} v{version} (a fixture) closed the connection"
            )),
        }
    }

    /// The probe proper: sends `body` as `key` v`version` on a fresh connection to `addr`,
    /// checks the answer (no UNSUPPORTED_VERSION, `check`) and that the connection still
    /// answers an ApiVersions.
    fn probe<Req: Encodable, Resp: Decodable + Debug>(
        &mut self,
        addr: SocketAddr,
        key: ApiKey,
        version: i16,
        body: &Req,
        check: impl FnOnce(&Resp) -> Result<(), String>,
    ) -> Result<Reply<()>, String> {
        let mut stream = Self::connect(addr)?;
        let id = self.next_correlation_id();
        let response: Resp = match exchange(&mut stream, key, version, id, body)? {
            Reply::Answer(r) => r,
            Reply::Closed => return Ok(Reply::Closed),
        };
        let debug = format!("{response:?}");
        ensure(!error_codes(&debug).contains(&UNSUPPORTED_VERSION), || {
            format!("UNSUPPORTED_VERSION in the answer: {debug}")
        })?;
        check(&response).map_err(|e| format!("{e}; answer: {debug}"))?;
        let id = self.next_correlation_id();
        let again = ApiVersionsRequest::default();
        match exchange::<_, ApiVersionsResponse>(&mut stream, ApiKey::ApiVersions, 0, id, &again) {
            Ok(Reply::Answer(r)) if r.error_code == 0 => Ok(Reply::Answer(())),
            Ok(Reply::Answer(r)) => Err(format!("follow-up ApiVersions: error {}", r.error_code)),
            Ok(Reply::Closed) => Err("the connection was closed after the answer".into()),
            Err(e) => Err(format!("follow-up ApiVersions: {e}")),
        }
    }

    /// The coordinator FindCoordinator names for `key` (0 group, 1 transactional id), waiting
    /// while there is none yet.
    fn coordinator(&mut self, key_type: i8, key: &str) -> Result<SocketAddr, String> {
        let started = Instant::now();
        loop {
            let request = FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_key(s(key));
            let r: FindCoordinatorResponse =
                self.call(self.bootstrap, ApiKey::FindCoordinator, 3, &request)?;
            if r.error_code == 0 {
                return resolve(r.host.as_str(), r.port);
            }
            ensure(started.elapsed() < Duration::from_secs(30), || {
                format!("no coordinator for {key:?}: error {}", r.error_code)
            })?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn group_coordinator(&mut self, group: &str) -> Result<SocketAddr, String> {
        self.coordinator(0, group)
    }

    /// A transactional producer (InitProducerId v4) on its coordinator: (coordinator, id,
    /// producer id, epoch).
    fn txn_producer(&mut self) -> Result<(SocketAddr, String, i64, i16), String> {
        let id = self.unique("probe-txn");
        let coordinator = self.coordinator(1, &id)?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(tid(&id)))
            .with_transaction_timeout_ms(60_000);
        let r: InitProducerIdResponse =
            self.call(coordinator, ApiKey::InitProducerId, 4, &request)?;
        expect(
            "InitProducerId of a transactional id",
            r.error_code,
            &[E::None],
        )?;
        Ok((coordinator, id, r.producer_id.0, r.producer_epoch))
    }

    /// A standalone offset commit (generation -1) of offset 1 for `probe`-0 by `group`.
    fn commit(&mut self, group: &str) -> Result<SocketAddr, String> {
        let coordinator = self.group_coordinator(group)?;
        let r: OffsetCommitResponse =
            self.call(coordinator, ApiKey::OffsetCommit, 8, &commit_request(group))?;
        expect(
            "OffsetCommit",
            r.topics[0].partitions[0].error_code,
            &[E::None],
        )?;
        Ok(coordinator)
    }

    /// A member of new group `group` that has joined (JoinGroup v5, twice) but not synced.
    fn joined(&mut self, group: &str) -> Result<(SocketAddr, String, i32), String> {
        let coordinator = self.group_coordinator(group)?;
        let first: JoinGroupResponse = self.call(
            coordinator,
            ApiKey::JoinGroup,
            5,
            &join_request(5, group, ""),
        )?;
        expect("first join", first.error_code, &[E::MemberIdRequired])?;
        let member = first.member_id.to_string();
        let second: JoinGroupResponse = self.call(
            coordinator,
            ApiKey::JoinGroup,
            5,
            &join_request(5, group, &member),
        )?;
        expect("second join", second.error_code, &[E::None])?;
        Ok((coordinator, member, second.generation_id))
    }

    /// A stable group of one member.
    fn stable(&mut self, group: &str) -> Result<(SocketAddr, String, i32), String> {
        let (coordinator, member, generation) = self.joined(group)?;
        let r: SyncGroupResponse = self.call(
            coordinator,
            ApiKey::SyncGroup,
            5,
            &sync_request(5, group, &member, generation),
        )?;
        expect("sync", r.error_code, &[E::None])?;
        Ok((coordinator, member, generation))
    }

    /// Creates `name` (one partition, `replication_factor` replicas), retrying while the
    /// cluster is not ready for it.
    fn create(&mut self, name: &str, replication_factor: i16) -> Result<(), String> {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable(name, replication_factor)])
            .with_timeout_ms(5000);
        let started = Instant::now();
        loop {
            let r: CreateTopicsResponse =
                self.call(self.bootstrap, ApiKey::CreateTopics, 7, &request)?;
            let code = r.topics[0].error_code;
            if code == 0 || code == E::TopicAlreadyExists.code() {
                return Ok(());
            }
            ensure(started.elapsed() < Duration::from_secs(30), || {
                format!("creating {name}: error {code}")
            })?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader of `topic`-0, once it has one.
    fn leader_of(&mut self, topic: &str) -> Result<SocketAddr, String> {
        let started = Instant::now();
        loop {
            let r: MetadataResponse = self.call(
                self.bootstrap,
                ApiKey::Metadata,
                12,
                &metadata_request(topic),
            )?;
            let leader = r.topics[0].partitions.first().map(|p| p.leader_id.0);
            if let Some(id) = leader.filter(|id| *id >= 0) {
                let b = r
                    .brokers
                    .iter()
                    .find(|b| b.node_id.0 == id)
                    .ok_or_else(|| format!("leader {id} is not among the brokers"))?;
                return resolve(b.host.as_str(), b.port);
            }
            ensure(started.elapsed() < Duration::from_secs(30), || {
                format!("{topic} has no leader")
            })?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The controller Metadata names: where clients send the requests only the quorum's leader
    /// decides (reassignments, unregistration), which other brokers answer NOT_CONTROLLER.
    fn controller(&mut self) -> Result<SocketAddr, String> {
        let r: MetadataResponse = self.call(
            self.bootstrap,
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![])),
        )?;
        let b = r
            .brokers
            .iter()
            .find(|b| b.node_id == r.controller_id)
            .ok_or_else(|| format!("controller {} is not among the brokers", r.controller_id.0))?;
        resolve(b.host.as_str(), b.port)
    }

    /// Sends one request of `key` at `version`, built for that version.
    fn run(&mut self, key: ApiKey, v: i16) -> Result<Reply<()>, String> {
        let (boot, leader) = (self.bootstrap, self.leader);
        match key {
            ApiKey::Produce if v < 3 => {
                // kafka-protocol 0.18 follows Kafka 4, which dropped Produce v0-v2: encoded here.
                let request = OldProduce {
                    records: one_record_batch(),
                };
                self.probe(leader, key, v, &request, |_: &ProduceResponse| Ok(()))
            }
            ApiKey::Produce => {
                let request = ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(5000)
                    .with_topic_data(vec![produce_request::TopicProduceData::default()
                        .with_name(tn(PROBE_TOPIC))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(one_record_batch())),
                        ])]);
                self.probe(leader, key, v, &request, |r: &ProduceResponse| {
                    let p = &r.responses[0].partition_responses[0];
                    expect("partition", p.error_code, &[E::None])?;
                    ensure(p.base_offset >= PROBE_RECORDS, || {
                        format!("base offset {}", p.base_offset)
                    })
                })
            }
            ApiKey::Fetch => {
                let request = FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_min_bytes(1)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![fetch_request::FetchTopic::default()
                        .with_topic(tn(PROBE_TOPIC))
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)])]);
                self.probe(leader, key, v, &request, |r: &FetchResponse| {
                    expect("top level", r.error_code, &[E::None])?;
                    let p = &r.responses[0].partitions[0];
                    expect("partition", p.error_code, &[E::None])?;
                    ensure(p.high_watermark >= PROBE_RECORDS, || {
                        format!("high watermark {}", p.high_watermark)
                    })?;
                    ensure(p.records.as_ref().is_some_and(|b| !b.is_empty()), || {
                        "no records fetched from offset 0".into()
                    })
                })
            }
            ApiKey::ListOffsets => {
                let request = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                        .with_name(tn(PROBE_TOPIC))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1),
                        ])]);
                self.probe(leader, key, v, &request, |r: &ListOffsetsResponse| {
                    let p = &r.topics[0].partitions[0];
                    expect("partition", p.error_code, &[E::None])?;
                    ensure(p.offset >= PROBE_RECORDS, || format!("latest {}", p.offset))
                })
            }
            ApiKey::Metadata => {
                let brokers = self.brokers;
                self.probe(
                    boot,
                    key,
                    v,
                    &metadata_request(PROBE_TOPIC),
                    |r: &MetadataResponse| {
                        ensure(r.brokers.len() == brokers, || "every broker".into())?;
                        let t = &r.topics[0];
                        expect("topic", t.error_code, &[E::None])?;
                        ensure(t.partitions.len() == 1, || "one partition".into())
                    },
                )
            }
            ApiKey::OffsetCommit => {
                let group = self.unique("probe-commit");
                let coordinator = self.group_coordinator(&group)?;
                self.probe(
                    coordinator,
                    key,
                    v,
                    &commit_request(&group),
                    |r: &OffsetCommitResponse| {
                        expect(
                            "partition",
                            r.topics[0].partitions[0].error_code,
                            &[E::None],
                        )
                    },
                )
            }
            ApiKey::OffsetFetch => {
                let group = self.unique("probe-fetch");
                let coordinator = self.commit(&group)?;
                let topics = Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(tn(PROBE_TOPIC))
                        .with_partition_indexes(vec![0]),
                ]);
                let request = if v >= 8 {
                    OffsetFetchRequest::default().with_groups(vec![
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(gid(&group))
                            .with_topics(Some(vec![
                                offset_fetch_request::OffsetFetchRequestTopics::default()
                                    .with_name(tn(PROBE_TOPIC))
                                    .with_partition_indexes(vec![0]),
                            ])),
                    ])
                } else {
                    OffsetFetchRequest::default()
                        .with_group_id(gid(&group))
                        .with_topics(topics)
                };
                self.probe(coordinator, key, v, &request, |r: &OffsetFetchResponse| {
                    let (code, offset) = if v >= 8 {
                        let p = &r.groups[0].topics[0].partitions[0];
                        (p.error_code, p.committed_offset)
                    } else {
                        let p = &r.topics[0].partitions[0];
                        (p.error_code, p.committed_offset)
                    };
                    expect("partition", code, &[E::None])?;
                    ensure(offset == 1, || format!("committed offset {offset}, not 1"))
                })
            }
            ApiKey::FindCoordinator => {
                let group = self.unique("probe-find");
                let request = if v >= 4 {
                    FindCoordinatorRequest::default().with_coordinator_keys(vec![s(&group)])
                } else {
                    FindCoordinatorRequest::default().with_key(s(&group))
                };
                self.probe(boot, key, v, &request, |r: &FindCoordinatorResponse| {
                    let (code, port) = if v >= 4 {
                        (r.coordinators[0].error_code, r.coordinators[0].port)
                    } else {
                        (r.error_code, r.port)
                    };
                    expect("coordinator", code, &[E::None])?;
                    ensure(port > 0, || format!("port {port}"))
                })
            }
            ApiKey::JoinGroup => {
                let group = self.unique("probe-join");
                let coordinator = self.group_coordinator(&group)?;
                let request = join_request(v, &group, "");
                self.probe(coordinator, key, v, &request, |r: &JoinGroupResponse| {
                    if v >= 4 {
                        // KIP-394: a new member is handed its id first.
                        expect("join", r.error_code, &[E::MemberIdRequired])?;
                    } else {
                        expect("join", r.error_code, &[E::None])?;
                        ensure(r.generation_id >= 1, || "a generation".into())?;
                    }
                    ensure(!r.member_id.is_empty(), || "a member id".into())
                })
            }
            ApiKey::Heartbeat => {
                let group = self.unique("probe-heartbeat");
                let (coordinator, member, generation) = self.stable(&group)?;
                let request = HeartbeatRequest::default()
                    .with_group_id(gid(&group))
                    .with_generation_id(generation)
                    .with_member_id(s(&member));
                self.probe(coordinator, key, v, &request, |r: &HeartbeatResponse| {
                    expect("heartbeat", r.error_code, &[E::None])
                })
            }
            ApiKey::LeaveGroup => {
                let group = self.unique("probe-leave");
                let (coordinator, member, _) = self.stable(&group)?;
                let request = if v >= 3 {
                    LeaveGroupRequest::default()
                        .with_group_id(gid(&group))
                        .with_members(vec![leave_group_request::MemberIdentity::default()
                            .with_member_id(s(&member))])
                } else {
                    LeaveGroupRequest::default()
                        .with_group_id(gid(&group))
                        .with_member_id(s(&member))
                };
                self.probe(coordinator, key, v, &request, |r: &LeaveGroupResponse| {
                    expect("leave", r.error_code, &[E::None])
                })
            }
            ApiKey::SyncGroup => {
                let group = self.unique("probe-sync");
                let (coordinator, member, generation) = self.joined(&group)?;
                let request = sync_request(v, &group, &member, generation);
                self.probe(coordinator, key, v, &request, |r: &SyncGroupResponse| {
                    expect("sync", r.error_code, &[E::None])?;
                    ensure(&r.assignment[..] == b"assignment", || {
                        "own assignment".into()
                    })
                })
            }
            ApiKey::DescribeGroups => {
                let group = self.unique("probe-describe");
                let coordinator = self.commit(&group)?;
                let request = DescribeGroupsRequest::default().with_groups(vec![gid(&group)]);
                self.probe(
                    coordinator,
                    key,
                    v,
                    &request,
                    |r: &DescribeGroupsResponse| {
                        let g = &r.groups[0];
                        expect("group", g.error_code, &[E::None])?;
                        ensure(g.group_state.as_str() == "Empty", || "state Empty".into())
                    },
                )
            }
            ApiKey::ListGroups => self.probe(
                boot,
                key,
                v,
                &ListGroupsRequest::default(),
                |r: &ListGroupsResponse| expect("list", r.error_code, &[E::None]),
            ),
            ApiKey::ApiVersions => {
                let request = ApiVersionsRequest::default()
                    .with_client_software_name(s("spate-version-probe"))
                    .with_client_software_version(s("1.0"));
                self.probe(boot, key, v, &request, |r: &ApiVersionsResponse| {
                    expect("api versions", r.error_code, &[E::None])?;
                    ensure(r.api_keys.len() > 1, || "a table".into())
                })
            }
            ApiKey::CreateTopics => {
                let name = self.unique("probe-create");
                let request = CreateTopicsRequest::default()
                    .with_topics(vec![creatable(&name, 1)])
                    .with_timeout_ms(5000);
                self.probe(boot, key, v, &request, |r: &CreateTopicsResponse| {
                    expect("topic", r.topics[0].error_code, &[E::None])
                })
            }
            ApiKey::DeleteTopics => {
                let name = self.unique("probe-delete");
                self.create(&name, 1)?;
                let request = if v >= 6 {
                    DeleteTopicsRequest::default()
                        .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                            .with_name(Some(tn(&name)))])
                } else {
                    DeleteTopicsRequest::default().with_topic_names(vec![tn(&name)])
                }
                .with_timeout_ms(5000);
                self.probe(boot, key, v, &request, |r: &DeleteTopicsResponse| {
                    expect("topic", r.responses[0].error_code, &[E::None])
                })
            }
            ApiKey::DeleteRecords => {
                let request = DeleteRecordsRequest::default()
                    .with_timeout_ms(5000)
                    .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                        .with_name(tn(PROBE_TOPIC))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(0),
                        ])]);
                self.probe(leader, key, v, &request, |r: &DeleteRecordsResponse| {
                    let p = &r.topics[0].partitions[0];
                    expect("partition", p.error_code, &[E::None])?;
                    ensure(p.low_watermark == 0, || "low watermark 0".into())
                })
            }
            ApiKey::InitProducerId => {
                let request = InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000);
                self.probe(boot, key, v, &request, |r: &InitProducerIdResponse| {
                    expect("init", r.error_code, &[E::None])?;
                    ensure(r.producer_id.0 >= 0, || "a producer id".into())
                })
            }
            ApiKey::OffsetForLeaderEpoch => {
                let request = OffsetForLeaderEpochRequest::default()
                    .with_replica_id(BrokerId(if v >= 3 { -1 } else { -2 }))
                    .with_topics(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(tn(PROBE_TOPIC))
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                )
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                            ]),
                    ]);
                self.probe(
                    leader,
                    key,
                    v,
                    &request,
                    |r: &OffsetForLeaderEpochResponse| {
                        expect(
                            "partition",
                            r.topics[0].partitions[0].error_code,
                            &[E::None],
                        )
                    },
                )
            }
            ApiKey::AddPartitionsToTxn => {
                let (coordinator, id, pid, epoch) = self.txn_producer()?;
                let request = add_partitions_request(&id, pid, epoch);
                self.probe(
                    coordinator,
                    key,
                    v,
                    &request,
                    |r: &AddPartitionsToTxnResponse| {
                        let p = &r.results_by_topic_v3_and_below[0].results_by_partition[0];
                        expect("partition", p.partition_error_code, &[E::None])
                    },
                )
            }
            ApiKey::AddOffsetsToTxn => {
                let (coordinator, id, pid, epoch) = self.txn_producer()?;
                let group = self.unique("probe-txn-group");
                let request = add_offsets_request(&id, pid, epoch, &group);
                self.probe(
                    coordinator,
                    key,
                    v,
                    &request,
                    |r: &AddOffsetsToTxnResponse| expect("add offsets", r.error_code, &[E::None]),
                )
            }
            ApiKey::EndTxn => {
                let (coordinator, id, pid, epoch) = self.txn_producer()?;
                let added: AddPartitionsToTxnResponse = self.call(
                    coordinator,
                    ApiKey::AddPartitionsToTxn,
                    3,
                    &add_partitions_request(&id, pid, epoch),
                )?;
                let p = &added.results_by_topic_v3_and_below[0].results_by_partition[0];
                expect("AddPartitionsToTxn", p.partition_error_code, &[E::None])?;
                let request = EndTxnRequest::default()
                    .with_transactional_id(tid(&id))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_committed(false);
                self.probe(coordinator, key, v, &request, |r: &EndTxnResponse| {
                    expect("end", r.error_code, &[E::None])
                })
            }
            ApiKey::TxnOffsetCommit => {
                let (coordinator, id, pid, epoch) = self.txn_producer()?;
                let group = self.unique("probe-txn-commit");
                let added: AddOffsetsToTxnResponse = self.call(
                    coordinator,
                    ApiKey::AddOffsetsToTxn,
                    3,
                    &add_offsets_request(&id, pid, epoch, &group),
                )?;
                expect("AddOffsetsToTxn", added.error_code, &[E::None])?;
                // Sent to the group's coordinator, as clients do.
                let group_coordinator = self.group_coordinator(&group)?;
                let request = TxnOffsetCommitRequest::default()
                    .with_transactional_id(tid(&id))
                    .with_group_id(gid(&group))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_topics(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                            .with_name(tn(PROBE_TOPIC))
                            .with_partitions(vec![
                                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(1),
                            ]),
                    ]);
                self.probe(
                    group_coordinator,
                    key,
                    v,
                    &request,
                    |r: &TxnOffsetCommitResponse| {
                        expect(
                            "partition",
                            r.topics[0].partitions[0].error_code,
                            &[E::None],
                        )
                    },
                )
            }
            ApiKey::DescribeConfigs => {
                let request = DescribeConfigsRequest::default().with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(s(PROBE_TOPIC))
                        .with_configuration_keys(None),
                ]);
                self.probe(boot, key, v, &request, |r: &DescribeConfigsResponse| {
                    let res = &r.results[0];
                    expect("resource", res.error_code, &[E::None])?;
                    ensure(!res.configs.is_empty(), || "configs".into())
                })
            }
            ApiKey::AlterConfigs => {
                // validate_only: the probe topic keeps its (empty) overrides.
                let request = AlterConfigsRequest::default()
                    .with_validate_only(true)
                    .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(s(PROBE_TOPIC))]);
                self.probe(boot, key, v, &request, |r: &AlterConfigsResponse| {
                    expect("resource", r.responses[0].error_code, &[E::None])
                })
            }
            ApiKey::DescribeLogDirs => {
                let request = DescribeLogDirsRequest::default().with_topics(None);
                self.probe(leader, key, v, &request, |r: &DescribeLogDirsResponse| {
                    expect("top level", r.error_code, &[E::None])?;
                    ensure(r.results.len() == 1, || "one log dir".into())?;
                    expect("log dir", r.results[0].error_code, &[E::None])
                })
            }
            ApiKey::CreatePartitions => {
                let request = CreatePartitionsRequest::default()
                    .with_timeout_ms(5000)
                    .with_validate_only(true)
                    .with_topics(vec![
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(tn(PROBE_TOPIC))
                            .with_count(2)
                            .with_assignments(None),
                    ]);
                self.probe(boot, key, v, &request, |r: &CreatePartitionsResponse| {
                    expect("topic", r.results[0].error_code, &[E::None])
                })
            }
            ApiKey::DeleteGroups => {
                let group = self.unique("probe-delete-group");
                let coordinator = self.commit(&group)?;
                let request = DeleteGroupsRequest::default().with_groups_names(vec![gid(&group)]);
                self.probe(coordinator, key, v, &request, |r: &DeleteGroupsResponse| {
                    expect("group", r.results[0].error_code, &[E::None])
                })
            }
            ApiKey::ElectLeaders => {
                let request = ElectLeadersRequest::default()
                    .with_timeout_ms(5000)
                    .with_topic_partitions(Some(vec![
                        elect_leaders_request::TopicPartitions::default()
                            .with_topic(tn(PROBE_TOPIC))
                            .with_partitions(vec![0]),
                    ]));
                self.probe(boot, key, v, &request, |r: &ElectLeadersResponse| {
                    expect("top level", r.error_code, &[E::None])?;
                    let p = &r.replica_election_results[0].partition_result[0];
                    // The preferred replica leads already.
                    expect("partition", p.error_code, &[E::None, E::ElectionNotNeeded])
                })
            }
            ApiKey::IncrementalAlterConfigs => {
                let request = IncrementalAlterConfigsRequest::default()
                    .with_validate_only(true)
                    .with_resources(vec![
                        incremental_alter_configs_request::AlterConfigsResource::default()
                            .with_resource_type(RESOURCE_TOPIC)
                            .with_resource_name(s(PROBE_TOPIC))
                            .with_configs(vec![
                                incremental_alter_configs_request::AlterableConfig::default()
                                    .with_name(s("retention.ms"))
                                    .with_config_operation(0)
                                    .with_value(Some(s("604800000"))),
                            ]),
                    ]);
                self.probe(
                    boot,
                    key,
                    v,
                    &request,
                    |r: &IncrementalAlterConfigsResponse| {
                        expect("resource", r.responses[0].error_code, &[E::None])
                    },
                )
            }
            ApiKey::AlterPartitionReassignments => {
                // Cancels a reassignment of `probe`-0, of which there is none.
                let request = AlterPartitionReassignmentsRequest::default()
                    .with_timeout_ms(5000)
                    .with_topics(vec![
                        alter_partition_reassignments_request::ReassignableTopic::default()
                            .with_name(tn(PROBE_TOPIC))
                            .with_partitions(vec![
                                alter_partition_reassignments_request::ReassignablePartition::default()
                                    .with_partition_index(0)
                                    .with_replicas(None),
                            ]),
                    ]);
                let controller = self.controller()?;
                self.probe(
                    controller,
                    key,
                    v,
                    &request,
                    |r: &AlterPartitionReassignmentsResponse| {
                        expect("top level", r.error_code, &[E::None])?;
                        expect(
                            "partition",
                            r.responses[0].partitions[0].error_code,
                            &[E::NoReassignmentInProgress],
                        )
                    },
                )
            }
            ApiKey::ListPartitionReassignments => {
                let request = ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(5000)
                    .with_topics(None);
                self.probe(
                    boot,
                    key,
                    v,
                    &request,
                    |r: &ListPartitionReassignmentsResponse| {
                        expect("top level", r.error_code, &[E::None])
                    },
                )
            }
            ApiKey::OffsetDelete => {
                let group = self.unique("probe-offset-delete");
                let coordinator = self.commit(&group)?;
                let request = OffsetDeleteRequest::default()
                    .with_group_id(gid(&group))
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(tn(PROBE_TOPIC))
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default()
                                    .with_partition_index(0),
                            ]),
                    ]);
                self.probe(coordinator, key, v, &request, |r: &OffsetDeleteResponse| {
                    expect("top level", r.error_code, &[E::None])?;
                    expect(
                        "partition",
                        r.topics[0].partitions[0].error_code,
                        &[E::None],
                    )
                })
            }
            ApiKey::DescribeQuorum => {
                let request = DescribeQuorumRequest::default().with_topics(vec![
                    describe_quorum_request::TopicData::default()
                        .with_topic_name(tn("__cluster_metadata"))
                        .with_partitions(vec![describe_quorum_request::PartitionData::default()
                            .with_partition_index(0)]),
                ]);
                let brokers = self.brokers;
                self.probe(boot, key, v, &request, |r: &DescribeQuorumResponse| {
                    expect("top level", r.error_code, &[E::None])?;
                    let p = &r.topics[0].partitions[0];
                    expect("partition", p.error_code, &[E::None])?;
                    ensure(p.current_voters.len() == brokers, || "every voter".into())
                })
            }
            ApiKey::DescribeCluster => {
                let brokers = self.brokers;
                self.probe(
                    boot,
                    key,
                    v,
                    &DescribeClusterRequest::default(),
                    |r: &DescribeClusterResponse| {
                        expect("describe", r.error_code, &[E::None])?;
                        ensure(r.brokers.len() == brokers, || "every broker".into())
                    },
                )
            }
            ApiKey::DescribeProducers => {
                let request = DescribeProducersRequest::default().with_topics(vec![
                    describe_producers_request::TopicRequest::default()
                        .with_name(tn(PROBE_TOPIC))
                        .with_partition_indexes(vec![0]),
                ]);
                self.probe(leader, key, v, &request, |r: &DescribeProducersResponse| {
                    expect(
                        "partition",
                        r.topics[0].partitions[0].error_code,
                        &[E::None],
                    )
                })
            }
            ApiKey::UnregisterBroker => {
                // An id no broker has.
                let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(99));
                let controller = self.controller()?;
                self.probe(
                    controller,
                    key,
                    v,
                    &request,
                    |r: &UnregisterBrokerResponse| {
                        expect("unregister", r.error_code, &[E::BrokerIdNotRegistered])
                    },
                )
            }
            ApiKey::DescribeTransactions => {
                let (coordinator, id, pid, _) = self.txn_producer()?;
                let request =
                    DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(&id)]);
                self.probe(
                    coordinator,
                    key,
                    v,
                    &request,
                    |r: &DescribeTransactionsResponse| {
                        let t = &r.transaction_states[0];
                        expect("transaction", t.error_code, &[E::None])?;
                        ensure(t.producer_id.0 == pid, || "its producer id".into())
                    },
                )
            }
            ApiKey::ListTransactions => self.probe(
                boot,
                key,
                v,
                &ListTransactionsRequest::default(),
                |r: &ListTransactionsResponse| expect("list", r.error_code, &[E::None]),
            ),
            other => Err(format!(
                "{other:?} is advertised but this test has no request for it: add one"
            )),
        }
    }
}

const RESOURCE_TOPIC: i8 = 2;

/// A Produce v0-v2 request body (acks, timeout, then the topics; no transactional id) of one
/// batch to `probe`-0, which kafka-protocol no longer encodes. The broker refuses the version
/// before it looks at the records, so they are a v2 batch, not the v0/v1 message set a client
/// of that version would send.
struct OldProduce {
    records: Bytes,
}

impl Encodable for OldProduce {
    fn encode<B: spate_wire::kafka_protocol::protocol::buf::ByteBufMut>(
        &self,
        buf: &mut B,
        version: i16,
    ) -> anyhow::Result<()> {
        assert!((0..3).contains(&version), "Produce v{version}");
        buf.put_i16(-1); // acks
        buf.put_i32(5000); // timeout
        buf.put_i32(1); // topics
        buf.put_i16(PROBE_TOPIC.len() as i16);
        buf.put_slice(PROBE_TOPIC.as_bytes());
        buf.put_i32(1); // partitions
        buf.put_i32(0); // index
        buf.put_i32(self.records.len() as i32);
        buf.put_slice(&self.records);
        Ok(())
    }

    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        Ok(2 + 4 + 4 + 2 + PROBE_TOPIC.len() + 4 + 4 + 4 + self.records.len())
    }
}

fn resolve(host: &str, port: i32) -> Result<SocketAddr, String> {
    (host, port as u16)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to nothing"))
}

fn creatable(name: &str, replication_factor: i16) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(tn(name))
        .with_num_partitions(1)
        .with_replication_factor(replication_factor)
}

fn metadata_request(topic: &str) -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(tn(topic))),
    ]))
}

fn commit_request(group: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(tn(PROBE_TOPIC))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ])
}

/// A consumer protocol subscription (v0) to the probe topic.
fn subscription() -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(PROBE_TOPIC.len() as i16).to_be_bytes());
    b.extend_from_slice(PROBE_TOPIC.as_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
    Bytes::from(b)
}

fn join_request(version: i16, group: &str, member: &str) -> JoinGroupRequest {
    let request = JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(subscription())]);
    if version >= 1 {
        request.with_rebalance_timeout_ms(10_000)
    } else {
        request
    }
}

fn sync_request(version: i16, group: &str, member: &str, generation: i32) -> SyncGroupRequest {
    let request = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(member))
                .with_assignment(Bytes::from_static(b"assignment")),
        ]);
    if version >= 5 {
        request
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
    } else {
        request
    }
}

fn add_partitions_request(id: &str, pid: i64, epoch: i16) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tid(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(tn(PROBE_TOPIC))
                .with_partitions(vec![0]),
        ])
}

fn add_offsets_request(id: &str, pid: i64, epoch: i16, group: &str) -> AddOffsetsToTxnRequest {
    AddOffsetsToTxnRequest::default()
        .with_transactional_id(tid(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(gid(group))
}

/// The table the broker at `addr` advertises: (key, min, max) sorted by key.
fn advertised(addr: SocketAddr) -> Vec<(i16, i16, i16)> {
    let mut stream = Sweep::connect(addr).unwrap();
    let request = ApiVersionsRequest::default()
        .with_client_software_name(s("spate-version-probe"))
        .with_client_software_version(s("1.0"));
    let Reply::Answer(r) =
        exchange::<_, ApiVersionsResponse>(&mut stream, ApiKey::ApiVersions, 3, 1, &request)
            .unwrap()
    else {
        panic!("ApiVersions closed the connection")
    };
    assert_eq!(r.error_code, 0);
    let mut table: Vec<_> = r
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    table.sort_unstable();
    table
}

/// Probes every advertised version of every API at `addrs[0]`; returns the number of
/// (API, version) pairs answered.
fn sweep(addrs: &[SocketAddr], mode: &str) -> usize {
    let table = advertised(addrs[0]);
    for other in &addrs[1..] {
        assert_eq!(
            advertised(*other),
            table,
            "every broker advertises the same"
        );
    }
    let mut s = Sweep {
        bootstrap: addrs[0],
        leader: addrs[0],
        brokers: addrs.len(),
        correlation_id: 1000,
        names: 0,
    };
    // The probe topic, replicated on every broker, with one record in it.
    s.create(PROBE_TOPIC, addrs.len() as i16).unwrap();
    // The leader Metadata names may not have applied the new topic's image yet (it answers
    // UNKNOWN_TOPIC_OR_PARTITION or NOT_LEADER_OR_FOLLOWER for a moment): asked again, as a
    // client would.
    let started = Instant::now();
    loop {
        s.leader = s.leader_of(PROBE_TOPIC).unwrap();
        let mut conn = Sweep::connect(s.leader).unwrap();
        let produced = produce(&mut conn, PROBE_TOPIC, 0, one_record_batch(), -1);
        // 3 UNKNOWN_TOPIC_OR_PARTITION, 5 LEADER_NOT_AVAILABLE, 6 NOT_LEADER_OR_FOLLOWER.
        if produced.error_code == 0 {
            break;
        }
        assert!(
            [3, 5, 6].contains(&produced.error_code) && started.elapsed() < Duration::from_secs(30),
            "fixture record: error {}",
            produced.error_code
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    for refused in REFUSED {
        let range = table.iter().find(|(k, _, _)| *k == refused.api_key as i16);
        assert!(
            range
                .is_some_and(|&(_, min, max)| min <= *refused.versions.start()
                    && *refused.versions.end() <= max),
            "{mode}: REFUSED lists {:?} v{:?}, which is not advertised: remove it",
            refused.api_key,
            refused.versions
        );
    }

    let mut failures = Vec::new();
    let (mut answered, mut refused_count) = (0, 0);
    for &(raw_key, min, max) in &table {
        let Ok(key) = ApiKey::try_from(raw_key) else {
            failures.push(format!(
                "API key {raw_key} advertised, unknown to kafka-protocol"
            ));
            continue;
        };
        for v in min..=max {
            let exception = REFUSED
                .iter()
                .find(|r| r.api_key == key && r.versions.contains(&v));
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run(key, v)))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|m| m.to_string()))
                        .unwrap_or_default();
                    Err(format!("panicked: {message}"))
                });
            match (got, exception) {
                (Ok(Reply::Answer(())), None) => answered += 1,
                (Ok(Reply::Closed), Some(_)) => refused_count += 1,
                (Ok(Reply::Closed), None) => failures.push(format!(
                    "{key:?} v{v}: advertised, but the broker closed the connection"
                )),
                (Ok(Reply::Answer(())), Some(e)) => failures.push(format!(
                    "{key:?} v{v}: answered, so its REFUSED entry ({}) is no longer needed",
                    e.why
                )),
                (Err(e), _) => failures.push(format!("{key:?} v{v}: {e}")),
            }
        }
    }
    let expected_refused: usize = REFUSED.iter().map(|r| r.versions.clone().count()).sum();
    println!(
        "{mode}: {} APIs, {answered} versions answered, {refused_count} refused as listed",
        table.len()
    );
    assert!(
        failures.is_empty(),
        "{mode}: {} advertised versions do not work:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(refused_count, expected_refused, "{mode}");
    answered
}

#[test]
fn error_codes_are_read_from_every_level_of_an_answer() {
    let debug = "R { error_code: 0, topics: [T { partition_error_code: 35, x: 1 }], \
                 top_level_error_code: -1 }";
    assert_eq!(error_codes(debug), vec![0, 35, -1]);
    let answer = ProduceResponse::default().with_responses(vec![
        produce_response::TopicProduceResponse::default().with_partition_responses(vec![
            produce_response::PartitionProduceResponse::default().with_error_code(35),
        ]),
    ]);
    assert_eq!(error_codes(&format!("{answer:?}")), vec![35]);
}

#[test]
fn every_version_a_single_broker_advertises_is_answered() {
    let broker = start_broker(
        "every-advertised-version",
        &["--group-initial-rebalance-delay-ms", "0"],
    );
    let answered = sweep(&[broker.addr], "single broker");
    // Every API of the single broker's table, each version (Produce v0-2 aside).
    assert!(answered >= 150, "breadth: {answered} versions answered");
}

#[test]
fn every_version_a_cluster_advertises_is_answered() {
    let cluster = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_spate")),
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "every-advertised-version-cluster",
        3,
        &[
            "--group-initial-rebalance-delay-ms",
            "0",
            "--log-level",
            "warn",
        ],
    );
    let addrs: Vec<SocketAddr> = cluster.brokers.iter().map(|b| b.addr).collect();
    let answered = sweep(&addrs, "cluster");
    assert!(answered >= 150, "breadth: {answered} versions answered");
}
