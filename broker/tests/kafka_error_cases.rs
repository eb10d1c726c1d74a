//! Kafka's broker-side error and edge cases, each with Spate's answer beside it.
//!
//! One table ([`CASES`]) read by one test function: each case names what Kafka's broker
//! answers (and the Kafka source file and function that decides it, read from apache/kafka
//! trunk at commit 1eb76443, October 2024), what Spate answers, and, where the two differ, why.
//! Every case sends its request to a real running `spate` (a single broker, or a one-broker
//! cluster for the APIs only a cluster advertises and for leader epochs above 0) and asserts
//! Spate's answer, so a change of behaviour shows up here as a diff against Kafka, not as a
//! silent drift.
//!
//! Adding a case: a row with a request built by the `run` function, which returns the error
//! code it got (or [`Answer::Closed`] when the broker closes the connection). Extra facts a
//! case depends on (an offset, a count, that a validate-only request changed nothing) are
//! asserted inside `run`.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use spate_testkit::Cluster;
use spate_wire::batch::{BatchBuilder, BatchSpec};
use spate_wire::kafka_protocol::messages::*;
use spate_wire::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use spate_wire::ErrorCode as E;
use uuid::Uuid;

/// What a broker answers to one case's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// An error code (NONE included) in the response.
    Code(E),
    /// No response: the connection is closed.
    Closed,
}

use Answer::{Closed, Code};

/// One error or edge case.
struct Case {
    /// API and situation, as a sentence.
    name: &'static str,
    /// Kafka's answer.
    kafka: Answer,
    /// Where Kafka decides it (file and function in apache/kafka).
    kafka_source: &'static str,
    /// Spate's answer, asserted.
    spate: Answer,
    /// Why Spate answers differently; empty when it answers as Kafka does.
    why: &'static str,
    /// Sends the request and returns the answer; asserts any further facts the case names.
    run: fn(&mut Ctx) -> Answer,
}

/// The broker and a connection to it, plus the fixtures every case may use:
/// topic `t` (2 partitions, 3 records in partition 0), `compacted` (cleanup.policy=compact),
/// `small` (max.message.bytes=100).
///
/// The APIs a single broker does not advertise (ElectLeaders, the reassignment APIs,
/// DescribeQuorum, UnregisterBroker) are asked of a one-broker cluster (`cluster_conn`), which
/// has its own topic `t`.
struct Ctx {
    broker: Broker,
    conn: TcpStream,
    _cluster: Cluster,
    cluster_conn: TcpStream,
    names: u32,
}

const T: &str = "t";
const T_RECORDS: i64 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn tn(v: &str) -> TopicName {
    TopicName(s(v))
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn code(raw: i16) -> Answer {
    Code(E::try_from(raw).unwrap_or_else(|_| panic!("unknown error code {raw}")))
}

/// Whether the broker closes `conn` on this request instead of answering.
fn closes_on<Req: Encodable>(mut conn: TcpStream, key: ApiKey, version: i16, r: &Req) -> Answer {
    let frame = encode_request(key, version, 5, r);
    let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&frame);
    std::io::Write::write_all(&mut conn, &framed).unwrap();
    if is_closed(&mut conn, Duration::from_secs(5)) {
        Closed
    } else {
        Code(E::None)
    }
}

/// A batch of `count` records (keys optional), timestamps `timestamp_ms`.
fn batch(count: usize, keyed: bool, timestamp_ms: i64) -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(
        &mut out,
        BatchSpec {
            first_timestamp_ms: timestamp_ms,
            ..BatchSpec::default()
        },
    );
    for i in 0..count {
        let key = format!("k{i}");
        builder.push(
            timestamp_ms,
            keyed.then_some(key.as_bytes()),
            Some(b"value"),
            &[],
        );
    }
    builder.finish();
    out.freeze()
}

/// A consumer protocol subscription (v0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
    Bytes::from(b)
}

impl Ctx {
    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        r: &Req,
    ) -> Resp {
        call(&mut self.conn, key, version, r)
    }

    /// Runs `f` against the one-broker cluster, whose `t` has a leader epoch above 0 (the
    /// single broker's epoch is always 0, so no older one exists there).
    fn on_cluster(&mut self, f: impl FnOnce(&mut Ctx) -> Answer) -> Answer {
        std::mem::swap(&mut self.conn, &mut self.cluster_conn);
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        std::mem::swap(&mut self.conn, &mut self.cluster_conn);
        answer.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// A name no other case uses.
    fn unique(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}-{}", self.names)
    }

    /// Whether the broker closes a fresh connection on this request instead of answering.
    fn closes<Req: Encodable>(&mut self, key: ApiKey, version: i16, r: &Req) -> Answer {
        closes_on(self.broker.connect(), key, version, r)
    }

    fn produce_records(
        &mut self,
        version: i16,
        topic: &str,
        partition: i32,
        records: Option<Bytes>,
        acks: i16,
    ) -> produce_response::PartitionProduceResponse {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(tn(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(records),
                ])]);
        let mut response: ProduceResponse = self.call(ApiKey::Produce, version, &request);
        response.responses.remove(0).partition_responses.remove(0)
    }

    /// Produces with acks=all, so the records are below the high watermark once answered.
    fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> Answer {
        code(
            self.produce_records(9, topic, partition, Some(records), -1)
                .error_code,
        )
    }

    fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        current_leader_epoch: i32,
    ) -> fetch_response::PartitionData {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(tn(topic))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_current_leader_epoch(current_leader_epoch)
                    .with_partition_max_bytes(1 << 20)])]);
        let mut response: FetchResponse = self.call(ApiKey::Fetch, 12, &request);
        assert_eq!(response.error_code, 0, "fetch top-level error");
        response.responses.remove(0).partitions.remove(0)
    }

    fn list_offsets(
        &mut self,
        version: i16,
        topic: &str,
        partitions: &[(i32, i64, i32)],
    ) -> Vec<list_offsets_response::ListOffsetsPartitionResponse> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(tn(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&(p, ts, epoch)| {
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(ts)
                                .with_current_leader_epoch(epoch)
                        })
                        .collect(),
                )]);
        let mut response: ListOffsetsResponse = self.call(ApiKey::ListOffsets, version, &request);
        response.topics.remove(0).partitions
    }

    fn leader_epoch(&mut self, topic: &str, partition: i32) -> i32 {
        let response = self.metadata(&[topic], false);
        let epoch = response.topics[0].partitions[partition as usize].leader_epoch;
        assert!(epoch >= 0, "{topic}-{partition} has a leader epoch");
        epoch
    }

    fn metadata(&mut self, topics: &[&str], auto_create: bool) -> MetadataResponse {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(auto_create)
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        metadata_request::MetadataRequestTopic::default().with_name(Some(tn(t)))
                    })
                    .collect(),
            ));
        self.call(ApiKey::Metadata, 12, &request)
    }

    fn topic_exists(&mut self, topic: &str) -> bool {
        self.metadata(&[topic], false).topics[0].error_code == 0
    }

    fn create(
        &mut self,
        topics: Vec<create_topics_request::CreatableTopic>,
        validate_only: bool,
    ) -> Vec<create_topics_response::CreatableTopicResult> {
        let request = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(5000)
            .with_validate_only(validate_only);
        let response: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 7, &request);
        response.topics
    }

    fn create_one(&mut self, topic: create_topics_request::CreatableTopic) -> Answer {
        code(self.create(vec![topic], false)[0].error_code)
    }

    fn delete_topics(&mut self, topics: Vec<delete_topics_request::DeleteTopicState>) -> Vec<i16> {
        let request = DeleteTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(5000);
        let response: DeleteTopicsResponse = self.call(ApiKey::DeleteTopics, 6, &request);
        response.responses.iter().map(|r| r.error_code).collect()
    }

    fn create_partitions(&mut self, topic: &str, count: i32, validate_only: bool) -> Answer {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_validate_only(validate_only)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(tn(topic))
                    .with_count(count)
                    // null: the controller places them (an empty list assigns none, and is refused)
                    .with_assignments(None),
            ]);
        let response: CreatePartitionsResponse = self.call(ApiKey::CreatePartitions, 3, &request);
        code(response.results[0].error_code)
    }

    fn partitions(&mut self, topic: &str) -> usize {
        self.metadata(&[topic], false).topics[0].partitions.len()
    }

    fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> delete_records_response::DeleteRecordsPartitionResult {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(tn(topic))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ])]);
        let mut response: DeleteRecordsResponse = self.call(ApiKey::DeleteRecords, 2, &request);
        response.topics.remove(0).partitions.remove(0)
    }

    /// A topic of its own with `records` records in partition 0.
    fn topic_with_records(&mut self, prefix: &str, records: usize) -> String {
        let name = self.unique(prefix);
        assert_eq!(self.create_one(creatable(&name, 1, 1, &[])), Code(E::None));
        if records > 0 {
            assert_eq!(
                self.produce(&name, 0, batch(records, false, 1000)),
                Code(E::None)
            );
        }
        name
    }

    fn join(
        &mut self,
        group: &str,
        member: &str,
        session_timeout_ms: i32,
        protocol_type: &str,
    ) -> JoinGroupResponse {
        let request = JoinGroupRequest::default()
            .with_group_id(gid(group))
            .with_session_timeout_ms(session_timeout_ms)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_protocol_type(s(protocol_type))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(subscription(&[T]))]);
        self.call(ApiKey::JoinGroup, 5, &request)
    }

    /// A member of a new group `group` that has joined (generation returned) but not synced:
    /// the group completes its rebalance.
    fn joined(&mut self, group: &str) -> (String, i32) {
        let first = self.join(group, "", 60_000, "consumer");
        assert_eq!(code(first.error_code), Code(E::MemberIdRequired));
        let member = first.member_id.to_string();
        let second = self.join(group, &member, 60_000, "consumer");
        assert_eq!(code(second.error_code), Code(E::None), "join of {group}");
        (member, second.generation_id)
    }

    fn sync(&mut self, group: &str, member: &str, generation: i32) -> Answer {
        let request = SyncGroupRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s(member))
                    .with_assignment(Bytes::from_static(b"assignment")),
            ]);
        let response: SyncGroupResponse = self.call(ApiKey::SyncGroup, 5, &request);
        code(response.error_code)
    }

    /// A stable group of one member, subscribed to `t`.
    fn stable(&mut self, prefix: &str) -> (String, String, i32) {
        let group = self.unique(prefix);
        let (member, generation) = self.joined(&group);
        assert_eq!(self.sync(&group, &member, generation), Code(E::None));
        (group, member, generation)
    }

    fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> Answer {
        let request = HeartbeatRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(s(member));
        let response: HeartbeatResponse = self.call(ApiKey::Heartbeat, 4, &request);
        code(response.error_code)
    }

    fn leave(&mut self, group: &str, member: &str) -> LeaveGroupResponse {
        let request = LeaveGroupRequest::default()
            .with_group_id(gid(group))
            .with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(s(member))
            ]);
        self.call(ApiKey::LeaveGroup, 4, &request)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        version: i16,
        group: &str,
        member: &str,
        generation: i32,
        topic: &str,
        partition: i32,
        metadata: &str,
    ) -> Answer {
        let request = OffsetCommitRequest::default()
            .with_group_id(gid(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(tn(topic))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(partition)
                            .with_committed_offset(1)
                            .with_committed_metadata(Some(s(metadata))),
                    ]),
            ]);
        let response: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, version, &request);
        code(response.topics[0].partitions[0].error_code)
    }

    fn offset_fetch(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> offset_fetch_response::OffsetFetchResponseGroup {
        let request = OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(gid(group))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(tn(topic))
                        .with_partition_indexes(vec![partition]),
                ])),
        ]);
        let mut response: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 8, &request);
        response.groups.remove(0)
    }

    fn offset_delete(&mut self, group: &str, topic: &str) -> OffsetDeleteResponse {
        let request = OffsetDeleteRequest::default()
            .with_group_id(gid(group))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(tn(topic))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]);
        self.call(ApiKey::OffsetDelete, 0, &request)
    }

    fn delete_group(&mut self, group: &str) -> Answer {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
        let response: DeleteGroupsResponse = self.call(ApiKey::DeleteGroups, 2, &request);
        code(response.results[0].error_code)
    }

    fn describe_configs(&mut self, resource_type: i8, name: &str) -> Answer {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configuration_keys(None),
        ]);
        let response: DescribeConfigsResponse = self.call(ApiKey::DescribeConfigs, 4, &request);
        code(response.results[0].error_code)
    }

    fn incremental_alter(
        &mut self,
        topic: &str,
        configs: &[(&str, i8, Option<&str>)],
        validate_only: bool,
    ) -> Answer {
        let request = IncrementalAlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(s(topic))
                    .with_configs(
                        configs
                            .iter()
                            .map(|&(name, op, value)| {
                                incremental_alter_configs_request::AlterableConfig::default()
                                    .with_name(s(name))
                                    .with_config_operation(op)
                                    .with_value(value.map(s))
                            })
                            .collect(),
                    ),
            ]);
        let response: IncrementalAlterConfigsResponse =
            self.call(ApiKey::IncrementalAlterConfigs, 1, &request);
        code(response.responses[0].error_code)
    }

    /// The value of `config` of `topic` as DescribeConfigs reports it.
    fn topic_config(&mut self, topic: &str, config: &str) -> String {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s(topic))
                .with_configuration_keys(Some(vec![s(config)])),
        ]);
        let response: DescribeConfigsResponse = self.call(ApiKey::DescribeConfigs, 4, &request);
        let entry = response.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == config)
            .unwrap_or_else(|| panic!("{topic} reports {config}"));
        entry
            .value
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    fn find_coordinator(&mut self, version: i16, key_type: i8, key: &str) -> Answer {
        let request = FindCoordinatorRequest::default().with_key_type(key_type);
        // v4+ batches keys; the single key field is gone.
        let request = if version >= 4 {
            request.with_coordinator_keys(vec![s(key)])
        } else {
            request.with_key(s(key))
        };
        let response: FindCoordinatorResponse =
            self.call(ApiKey::FindCoordinator, version, &request);
        if version >= 4 {
            code(response.coordinators[0].error_code)
        } else {
            code(response.error_code)
        }
    }

    fn init_producer_id(&mut self, transactional_id: Option<&str>, id: i64, epoch: i16) -> Answer {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let response: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 4, &request);
        if response.error_code == 0 {
            assert!(response.producer_id.0 >= 0, "a producer id is handed out");
            assert_eq!(response.producer_epoch, 0);
        }
        code(response.error_code)
    }

    fn epoch_end(
        &mut self,
        topic: &str,
        current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> offset_for_leader_epoch_response::EpochEndOffset {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(tn(topic))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current_leader_epoch)
                            .with_leader_epoch(leader_epoch),
                    ]),
            ]);
        let mut response: OffsetForLeaderEpochResponse =
            self.call(ApiKey::OffsetForLeaderEpoch, 4, &request);
        response.topics.remove(0).partitions.remove(0)
    }

    fn list_groups(&mut self, states: &[&str]) -> ListGroupsResponse {
        let request = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|state| s(state)).collect());
        let response: ListGroupsResponse = self.call(ApiKey::ListGroups, 4, &request);
        response
    }

    /// The state ListGroups (v4, no filter) reports for `group`; `None` when it is not listed.
    fn listed_state(&mut self, group: &str, states: &[&str]) -> Option<String> {
        let response = self.list_groups(states);
        assert_eq!(response.error_code, 0, "list groups top-level error");
        response
            .groups
            .iter()
            .find(|g| g.group_id.0.as_str() == group)
            .map(|g| g.group_state.to_string())
    }

    /// Legacy AlterConfigs (v2): `configs` replace every override of the resource.
    fn alter(
        &mut self,
        resource_type: i8,
        name: &str,
        configs: &[(&str, &str)],
        validate_only: bool,
    ) -> Answer {
        let request = AlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(
                    configs
                        .iter()
                        .map(|&(k, v)| {
                            alter_configs_request::AlterableConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                )]);
        let response: AlterConfigsResponse = self.call(ApiKey::AlterConfigs, 2, &request);
        assert_eq!(response.responses.len(), 1, "one answer per resource");
        code(response.responses[0].error_code)
    }

    /// A transactional producer of its own: a fresh transactional id, its producer id and
    /// epoch (0) from InitProducerId.
    fn txn_producer(&mut self, prefix: &str) -> (String, i64, i16) {
        let id = self.unique(prefix);
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 4, &request);
        assert_eq!(code(response.error_code), Code(E::None), "init of {id}");
        (id, response.producer_id.0, response.producer_epoch)
    }

    /// AddPartitionsToTxn (v0-v3); the error code of every partition, in request order.
    fn add_partitions(
        &mut self,
        version: i16,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(&str, i32)],
    ) -> Vec<Answer> {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(id)))
            .with_v3_and_below_producer_id(ProducerId(producer_id))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(
                partitions
                    .iter()
                    .map(|&(topic, p)| {
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(tn(topic))
                            .with_partitions(vec![p])
                    })
                    .collect(),
            );
        let response: AddPartitionsToTxnResponse =
            self.call(ApiKey::AddPartitionsToTxn, version, &request);
        let answers: Vec<(String, i32, Answer)> = response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition.iter().map(|p| {
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        code(p.partition_error_code),
                    )
                })
            })
            .collect();
        // Answers are matched by name: the order of topics in the answer is not promised.
        partitions
            .iter()
            .map(|&(topic, p)| {
                answers
                    .iter()
                    .find(|(t, i, _)| t == topic && *i == p)
                    .unwrap_or_else(|| panic!("an answer for {topic}-{p}"))
                    .2
            })
            .collect()
    }

    /// AddPartitionsToTxn (v3) of one partition.
    fn add_partition(&mut self, id: &str, producer_id: i64, epoch: i16, topic: &str) -> Answer {
        self.add_partitions(3, id, producer_id, epoch, &[(topic, 0)])[0]
    }

    fn add_offsets(
        &mut self,
        version: i16,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Answer {
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_group_id(gid(group));
        let response: AddOffsetsToTxnResponse =
            self.call(ApiKey::AddOffsetsToTxn, version, &request);
        code(response.error_code)
    }

    fn end_txn(
        &mut self,
        version: i16,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Answer {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let response: EndTxnResponse = self.call(ApiKey::EndTxn, version, &request);
        code(response.error_code)
    }

    /// EndTxn (v3), retried while the previous transaction's markers are being written
    /// (CONCURRENT_TRANSACTIONS, which Kafka answers in that window too).
    fn end_txn_settled(&mut self, id: &str, producer_id: i64, epoch: i16, commit: bool) -> Answer {
        for _ in 0..250 {
            let answer = self.end_txn(3, id, producer_id, epoch, commit);
            if answer != Code(E::ConcurrentTransactions) {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Code(E::ConcurrentTransactions)
    }

    /// TxnOffsetCommit (v3) of offset 1 for `topic`-0; the partition's error code.
    #[allow(clippy::too_many_arguments)]
    fn txn_commit(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        member: &str,
        generation: i32,
        topic: &str,
    ) -> Answer {
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_group_id(gid(group))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(tn(topic))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(s(""))),
                    ]),
            ]);
        let response: TxnOffsetCommitResponse = self.call(ApiKey::TxnOffsetCommit, 3, &request);
        code(response.topics[0].partitions[0].error_code)
    }

    /// A transactional producer whose open transaction holds `group`'s offsets partition.
    fn txn_with_offsets(&mut self, prefix: &str, group: &str) -> (String, i64, i16) {
        let (id, pid, epoch) = self.txn_producer(prefix);
        assert_eq!(self.add_offsets(3, &id, pid, epoch, group), Code(E::None));
        (id, pid, epoch)
    }
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_APPEND: i8 = 2;

fn creatable(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(tn(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        )
}

const CASES: &[Case] = &[
    // ---- Produce ----
    Case {
        name: "produce to a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala appendToLocalLog (getPartitionOrException); Produce never auto-creates",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| c.produce("no-such-topic", 0, batch(1, false, 0)),
    },
    Case {
        name: "produce to a partition past the topic's count",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala appendToLocalLog (getPartitionOrException)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| c.produce(T, 9, batch(1, false, 0)),
    },
    Case {
        name: "produce with acks=2",
        kafka: Code(E::InvalidRequiredAcks),
        kafka_source: "ReplicaManager.scala appendRecords (isValidRequiredAcks, sendInvalidRequiredAcksResponse)",
        spate: Code(E::InvalidRequiredAcks),
        why: "",
        run: |c| code(c.produce_records(9, T, 0, Some(batch(1, false, 0)), 2).error_code),
    },
    Case {
        name: "produce a batch whose CRC does not match",
        kafka: Code(E::CorruptMessage),
        kafka_source: "UnifiedLog.scala analyzeAndValidateRecords (batch.ensureValid: CorruptRecordException)",
        spate: Code(E::CorruptMessage),
        why: "",
        run: |c| {
            let mut bytes = BytesMut::from(&batch(1, false, 0)[..]);
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            c.produce(T, 0, bytes.freeze())
        },
    },
    Case {
        name: "produce a batch larger than the topic's max.message.bytes",
        kafka: Code(E::MessageTooLarge),
        kafka_source: "UnifiedLog.scala analyzeAndValidateRecords (batchSize > maxMessageSize: RecordTooLargeException)",
        spate: Code(E::MessageTooLarge),
        why: "",
        run: |c| c.produce("small", 0, batch(20, false, 0)),
    },
    Case {
        name: "produce v9 with two batches for one partition",
        kafka: Code(E::InvalidRecord),
        kafka_source: "ProduceRequest.java validateRecords (v3+: exactly one record batch per partition), called by KafkaApis.handleProduceRequest",
        spate: Code(E::InvalidRecord),
        why: "",
        run: |c| {
            let mut two = BytesMut::from(&batch(1, false, 0)[..]);
            two.extend_from_slice(&batch(1, false, 0));
            c.produce(T, 1, two.freeze())
        },
    },
    Case {
        name: "produce v9 with no batch at all (empty records)",
        kafka: Code(E::InvalidRecord),
        kafka_source: "ProduceRequest.java validateRecords (v3+: at least one record batch per partition)",
        spate: Code(E::InvalidRecord),
        why: "",
        run: |c| c.produce(T, 1, Bytes::new()),
    },
    Case {
        name: "produce v9 with a message format v1 (magic 1) message set",
        kafka: Code(E::InvalidRecord),
        kafka_source: "ProduceRequest.java validateRecords (v3+: only record batches with magic version 2)",
        spate: Code(E::InvalidRecord),
        why: "",
        run: |c| c.produce(T, 1, magic_v1_message()),
    },
    Case {
        name: "produce a keyless record to a compacted topic",
        kafka: Code(E::InvalidRecord),
        kafka_source: "LogValidator.java validateKey (compacted topic, null key: InvalidRecordException with record_errors)",
        spate: Code(E::InvalidRecord),
        why: "",
        run: |c| {
            let p = c.produce_records(9, "compacted", 0, Some(batch(2, false, 0)), 1);
            // KIP-467: both records are named, with the reason.
            let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, vec![0, 1]);
            assert!(p.error_message.is_some());
            code(p.error_code)
        },
    },
    Case {
        name: "produce a keyed record to a compacted topic",
        kafka: Code(E::None),
        kafka_source: "LogValidator.java validateKey",
        spate: Code(E::None),
        why: "",
        run: |c| c.produce("compacted", 0, batch(2, true, 0)),
    },
    Case {
        name: "produce to the internal __consumer_offsets topic",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "ReplicaManager.scala appendToLocalLog (Topic.isInternal && !internalTopicsAllowed)",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| c.produce("__consumer_offsets", 0, batch(1, true, 0)),
    },
    Case {
        name: "produce with a timestamp older than message.timestamp.difference.max.ms allows",
        kafka: Code(E::InvalidTimestamp),
        kafka_source: "LogValidator.java validateTimestamp (InvalidTimestampException)",
        spate: Code(E::None),
        why: "message.timestamp.difference/before/after.max.ms are stored-only configs in Spate (docs/TOPIC-CONFIGS.md): producer timestamps are not checked against the broker's clock",
        run: |c| {
            let name = c.unique("ts-checked");
            let configs = [("message.timestamp.difference.max.ms", "1000")];
            assert_eq!(c.create_one(creatable(&name, 1, 1, &configs)), Code(E::None));
            c.produce(&name, 0, batch(1, false, 1000))
        },
    },
    Case {
        name: "produce with acks=0 gets no response, and the records are appended",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala handleProduceRequest (produceResponseCallback: acks == 0 sends no response)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("acks0", 0);
            let request = ProduceRequest::default()
                .with_acks(0)
                .with_timeout_ms(5000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(tn(&name))
                    .with_partition_data(vec![produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(2, false, 0)))])]);
            let frame = encode_request(ApiKey::Produce, 9, 1, &request);
            let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
            framed.extend_from_slice(&frame);
            std::io::Write::write_all(&mut c.conn, &framed).unwrap();
            // The next answer on this connection is the next request's.
            let end = c.list_offsets(7, &name, &[(0, -1, -1)]);
            assert_eq!(end[0].offset, 2, "acks=0 records were appended");
            code(end[0].error_code)
        },
    },
    // ---- Fetch ----
    Case {
        name: "fetch from a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "KafkaApis.scala handleFetchRequest (metadataCache.contains: UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| code(c.fetch("no-such-topic", 0, 0, -1).error_code),
    },
    Case {
        name: "fetch from a partition past the topic's count",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala readFromLog (getPartitionOrException)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| code(c.fetch(T, 9, 0, -1).error_code),
    },
    Case {
        name: "fetch past the log end offset",
        kafka: Code(E::OffsetOutOfRange),
        kafka_source: "LocalLog.scala read (offset > end: OffsetOutOfRangeException), ReplicaManager.readFromLog",
        spate: Code(E::OffsetOutOfRange),
        why: "",
        run: |c| code(c.fetch(T, 0, T_RECORDS + 10, -1).error_code),
    },
    Case {
        name: "fetch at the log end offset waits and returns no records",
        kafka: Code(E::None),
        kafka_source: "LocalLog.scala read (startOffset == end: empty FetchDataInfo)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let p = c.fetch(T, 0, T_RECORDS, -1);
            assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
            assert_eq!(p.high_watermark, T_RECORDS);
            code(p.error_code)
        },
    },
    Case {
        name: "fetch at a negative offset",
        kafka: Code(E::OffsetOutOfRange),
        kafka_source: "LocalLog.scala read (startOffset < logStartOffset: OffsetOutOfRangeException)",
        spate: Code(E::OffsetOutOfRange),
        why: "",
        run: |c| code(c.fetch(T, 0, -5, -1).error_code),
    },
    Case {
        name: "fetch below the log start offset after DeleteRecords",
        kafka: Code(E::OffsetOutOfRange),
        kafka_source: "LocalLog.scala read / UnifiedLog.read (offset < logStartOffset)",
        spate: Code(E::OffsetOutOfRange),
        why: "",
        run: |c| {
            let name = c.topic_with_records("trimmed", 4);
            assert_eq!(c.delete_records(&name, 0, 2).error_code, 0);
            let p = c.fetch(&name, 0, 1, -1);
            assert_eq!(p.log_start_offset, 2);
            code(p.error_code)
        },
    },
    Case {
        name: "fetch with a current leader epoch older than the leader's",
        kafka: Code(E::FencedLeaderEpoch),
        kafka_source: "Partition.scala checkCurrentLeaderEpoch (remote < local: FENCED_LEADER_EPOCH), via localLogWithEpochOrThrow",
        spate: Code(E::FencedLeaderEpoch),
        why: "",
        run: |c| {
            c.on_cluster(|c| {
                let epoch = c.leader_epoch(T, 0);
                assert!(epoch > 0, "an older epoch exists");
                code(c.fetch(T, 0, 0, epoch - 1).error_code)
            })
        },
    },
    Case {
        name: "fetch with a current leader epoch newer than the leader's",
        kafka: Code(E::UnknownLeaderEpoch),
        kafka_source: "Partition.scala checkCurrentLeaderEpoch (remote > local: UNKNOWN_LEADER_EPOCH)",
        spate: Code(E::UnknownLeaderEpoch),
        why: "",
        run: |c| {
            let epoch = c.leader_epoch(T, 0);
            code(c.fetch(T, 0, 0, epoch + 1).error_code)
        },
    },
    Case {
        name: "fetch with the current leader epoch returns the records",
        kafka: Code(E::None),
        kafka_source: "Partition.scala checkCurrentLeaderEpoch (equal: NONE)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let epoch = c.leader_epoch(T, 0);
            let p = c.fetch(T, 0, 0, epoch);
            assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
            code(p.error_code)
        },
    },
    Case {
        name: "fetch v13 (topic ids), a version Spate does not advertise",
        kafka: Code(E::None),
        kafka_source: "FetchRequest.json (v13+ names topics by id), KafkaApis.handleFetchRequest",
        spate: Closed,
        why: "Spate advertises Fetch up to v12 and, as Kafka does for any version it does not support (RequestContext.parseRequest: InvalidRequestException, connection closed), closes the connection",
        run: |c| c.closes(ApiKey::Fetch, 13, &FetchRequest::default()),
    },
    // ---- ListOffsets ----
    Case {
        name: "list offsets of a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala fetchOffset -> fetchOffsetForTimestamp (getPartitionOrException)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| code(c.list_offsets(7, "no-such-topic", &[(0, -1, -1)])[0].error_code),
    },
    Case {
        name: "list offsets of a partition past the topic's count",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala fetchOffsetForTimestamp (getPartitionOrException)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| code(c.list_offsets(7, T, &[(9, -1, -1)])[0].error_code),
    },
    Case {
        name: "list offsets naming one partition twice",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ReplicaManager.scala fetchOffset (duplicatePartitions: INVALID_REQUEST for each entry)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| {
            let answers = c.list_offsets(7, T, &[(0, -1, -1), (0, -2, -1)]);
            assert_eq!(answers.len(), 2);
            assert_eq!(answers[0].error_code, answers[1].error_code);
            code(answers[0].error_code)
        },
    },
    Case {
        name: "list offsets by max timestamp (-3) in v6",
        kafka: Code(E::UnsupportedVersion),
        kafka_source: "ReplicaManager.scala fetchOffset (isListOffsetsTimestampUnsupported: MAX_TIMESTAMP needs v7)",
        spate: Code(E::UnsupportedVersion),
        why: "",
        run: |c| code(c.list_offsets(6, T, &[(0, -3, -1)])[0].error_code),
    },
    Case {
        name: "list offsets by max timestamp (-3) in v7",
        kafka: Code(E::None),
        kafka_source: "UnifiedLog.scala fetchOffsetByTimestamp (MAX_TIMESTAMP)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let p = c.list_offsets(7, T, &[(0, -3, -1)]).remove(0);
            assert!((0..T_RECORDS).contains(&p.offset), "{}", p.offset);
            code(p.error_code)
        },
    },
    Case {
        name: "list offsets by earliest local timestamp (-4) in v7",
        kafka: Code(E::UnsupportedVersion),
        kafka_source: "ReplicaManager.scala fetchOffset (isListOffsetsTimestampUnsupported: EARLIEST_LOCAL_TIMESTAMP needs v8)",
        spate: Code(E::UnsupportedVersion),
        why: "",
        run: |c| code(c.list_offsets(7, T, &[(0, -4, -1)])[0].error_code),
    },
    Case {
        name: "list offsets by a timestamp after every record",
        kafka: Code(E::None),
        kafka_source: "ReplicaManager.scala fetchOffset (OffsetResultHolder(None): NONE, offset -1)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let p = c.list_offsets(7, T, &[(0, i64::MAX / 2, -1)]).remove(0);
            assert_eq!((p.offset, p.timestamp), (-1, -1));
            code(p.error_code)
        },
    },
    Case {
        name: "list offsets with a current leader epoch older than the leader's",
        kafka: Code(E::FencedLeaderEpoch),
        kafka_source: "Partition.scala fetchOffsetForTimestamp -> localLogWithEpochOrThrow (FENCED_LEADER_EPOCH)",
        spate: Code(E::FencedLeaderEpoch),
        why: "",
        run: |c| {
            c.on_cluster(|c| {
                let epoch = c.leader_epoch(T, 0);
                assert!(epoch > 0, "an older epoch exists");
                code(c.list_offsets(7, T, &[(0, -1, epoch - 1)])[0].error_code)
            })
        },
    },
    Case {
        name: "list offsets with a current leader epoch newer than the leader's",
        kafka: Code(E::UnknownLeaderEpoch),
        kafka_source: "ReplicaManager.scala fetchOffsetForTimestamp -> Partition.fetchOffsetForTimestamp (localLogWithEpochOrThrow)",
        spate: Code(E::UnknownLeaderEpoch),
        why: "",
        run: |c| {
            let epoch = c.leader_epoch(T, 0);
            code(c.list_offsets(7, T, &[(0, -1, epoch + 1)])[0].error_code)
        },
    },
    Case {
        name: "list offsets with the current leader epoch",
        kafka: Code(E::None),
        kafka_source: "Partition.scala fetchOffsetForTimestamp",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let epoch = c.leader_epoch(T, 0);
            let p = c.list_offsets(7, T, &[(0, -1, epoch)]).remove(0);
            assert_eq!(p.offset, T_RECORDS);
            assert_eq!(p.leader_epoch, epoch);
            code(p.error_code)
        },
    },
    // ---- Metadata ----
    Case {
        name: "metadata of an unknown topic without auto-creation",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "KafkaApis.scala getTopicMetadata (nonExistingTopics, allowAutoTopicCreation false)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| {
            let answer = code(c.metadata(&["not-created"], false).topics[0].error_code);
            assert!(!c.topic_exists("not-created"));
            answer
        },
    },
    Case {
        name: "metadata of an invalid topic name",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "KafkaApis.scala getTopicMetadata (Topic.validate: InvalidTopicException)",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| code(c.metadata(&["bad/name"], true).topics[0].error_code),
    },
    Case {
        name: "metadata of an unknown topic id (v12)",
        kafka: Code(E::UnknownTopicId),
        kafka_source: "KafkaApis.scala handleTopicMetadataRequest (unknownTopicIds: UNKNOWN_TOPIC_ID)",
        spate: Code(E::UnknownTopicId),
        why: "",
        run: |c| {
            let request = MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(Uuid::from_u128(0x1234)),
            ]));
            let response: MetadataResponse = c.call(ApiKey::Metadata, 12, &request);
            code(response.topics[0].error_code)
        },
    },
    Case {
        name: "metadata of a topic by its id (v12)",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala handleTopicMetadataRequest (topic ids resolved through metadataCache.getTopicName)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let id = c.metadata(&[T], false).topics[0].topic_id;
            assert!(!id.is_nil());
            let request = MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(id),
            ]));
            let response: MetadataResponse = c.call(ApiKey::Metadata, 12, &request);
            assert_eq!(response.topics[0].name.as_ref().map(|n| n.0.as_str()), Some(T));
            code(response.topics[0].error_code)
        },
    },
    Case {
        name: "metadata auto-creates an unknown topic when the client allows it",
        kafka: Code(E::LeaderNotAvailable),
        kafka_source: "KafkaApis.scala getTopicMetadata -> AutoTopicCreationManager.createTopics (newly created: LEADER_NOT_AVAILABLE)",
        spate: Code(E::None),
        why: "Spate waits for the creation to be committed and answers with the ready topic and its leaders, saving the client a retry; clients treat both answers alike",
        run: |c| {
            let name = c.unique("auto");
            let answer = code(c.metadata(&[&name], true).topics[0].error_code);
            assert!(c.topic_exists(&name));
            answer
        },
    },
    Case {
        name: "metadata with an empty topic list (v1+) names no topic",
        kafka: Code(E::None),
        kafka_source: "MetadataRequest.java isAllTopics (only null means all)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let request = MetadataRequest::default().with_topics(Some(vec![]));
            let response: MetadataResponse = c.call(ApiKey::Metadata, 12, &request);
            assert!(response.topics.is_empty());
            assert!(!response.brokers.is_empty());
            Code(E::None)
        },
    },
    // ---- CreateTopics ----
    Case {
        name: "create a topic that exists",
        kafka: Code(E::TopicAlreadyExists),
        kafka_source: "ReplicationControlManager.java createTopics (topicsByName: TOPIC_ALREADY_EXISTS)",
        spate: Code(E::TopicAlreadyExists),
        why: "",
        run: |c| c.create_one(creatable(T, 2, 1, &[])),
    },
    Case {
        name: "create a topic whose name has an illegal character",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "ReplicationControlManager.java createTopics (Topic.validate: INVALID_TOPIC_EXCEPTION)",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| c.create_one(creatable("a/b", 1, 1, &[])),
    },
    Case {
        name: "create a topic whose name is longer than 249 characters",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "Topic.java validate (MAX_NAME_LENGTH 249)",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| c.create_one(creatable(&"x".repeat(250), 1, 1, &[])),
    },
    Case {
        name: "create a topic named \"..\"",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "Topic.java validate (\".\" and \"..\" are not allowed)",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| c.create_one(creatable("..", 1, 1, &[])),
    },
    Case {
        name: "create a topic whose name collides with an existing one ('.' vs '_')",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "ReplicationControlManager.java createTopics (topicsWithCollisionChars: collides with existing topic)",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| {
            assert_eq!(c.create_one(creatable("dot.ted", 1, 1, &[])), Code(E::None));
            c.create_one(creatable("dot_ted", 1, 1, &[]))
        },
    },
    Case {
        name: "create a topic with 0 partitions",
        kafka: Code(E::InvalidPartitions),
        kafka_source: "ReplicationControlManager.java createTopic (numPartitions <= 0 && != -1: INVALID_PARTITIONS)",
        spate: Code(E::InvalidPartitions),
        why: "",
        run: |c| c.create_one(creatable("zero-partitions", 0, 1, &[])),
    },
    Case {
        name: "create a topic with replication factor 0",
        kafka: Code(E::InvalidReplicationFactor),
        kafka_source: "ReplicationControlManager.java createTopic (replicationFactor <= 0 && != -1: INVALID_REPLICATION_FACTOR)",
        spate: Code(E::InvalidReplicationFactor),
        why: "",
        run: |c| c.create_one(creatable("zero-rf", 1, 0, &[])),
    },
    Case {
        name: "create a topic with more replicas than brokers",
        kafka: Code(E::InvalidReplicationFactor),
        kafka_source: "ReplicationControlManager.java createTopic (ClusterControlManager replica placement: not enough usable brokers)",
        spate: Code(E::InvalidReplicationFactor),
        why: "",
        run: |c| c.create_one(creatable("rf-three", 1, 3, &[])),
    },
    Case {
        name: "create a topic with an unknown config",
        kafka: Code(E::InvalidConfig),
        kafka_source: "ConfigurationControlManager.java validateAlterConfig -> LogConfig.validate (unknown topic config)",
        spate: Code(E::InvalidConfig),
        why: "",
        run: |c| c.create_one(creatable("bad-config", 1, 1, &[("no.such.config", "1")])),
    },
    Case {
        name: "create a topic with an invalid config value",
        kafka: Code(E::InvalidConfig),
        kafka_source: "LogConfig.java validate (ConfigDef parse: ConfigException -> INVALID_CONFIG)",
        spate: Code(E::InvalidConfig),
        why: "",
        run: |c| c.create_one(creatable("bad-value", 1, 1, &[("retention.ms", "soon")])),
    },
    Case {
        name: "create a topic with validate_only changes nothing",
        kafka: Code(E::None),
        kafka_source: "ControllerApis.scala createTopics -> ReplicationControlManager.createTopics (validateOnly: no records)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.unique("validate-only");
            let answer = code(c.create(vec![creatable(&name, 3, 1, &[])], true)[0].error_code);
            assert!(!c.topic_exists(&name), "validate_only created {name}");
            answer
        },
    },
    Case {
        name: "create topics naming one topic twice",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ControllerApis.scala createTopics (duplicateTopicNames: INVALID_REQUEST \"Duplicate topic name.\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| {
            let name = c.unique("twice");
            let results = c.create(vec![creatable(&name, 1, 1, &[]), creatable(&name, 1, 1, &[])], false);
            assert!(results.iter().all(|r| r.error_code == E::InvalidRequest.code()), "{results:?}");
            assert!(!c.topic_exists(&name));
            code(results[0].error_code)
        },
    },
    Case {
        name: "create a topic with both a partition count and a manual assignment",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ReplicationControlManager.java createTopic (assignments with numPartitions != -1: INVALID_REQUEST)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| {
            let mut topic = creatable("assigned-and-counted", 1, -1, &[]);
            topic.assignments = vec![create_topics_request::CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(0)])];
            c.create_one(topic)
        },
    },
    Case {
        name: "create a topic with default partitions and replication factor (-1)",
        kafka: Code(E::None),
        kafka_source: "ReplicationControlManager.java createTopic (-1: defaultNumPartitions, defaultReplicationFactor)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.unique("defaults");
            let result = c.create(vec![creatable(&name, -1, -1, &[])], false).remove(0);
            assert!(result.num_partitions >= 1, "{}", result.num_partitions);
            assert_eq!(result.replication_factor, 1);
            code(result.error_code)
        },
    },
    Case {
        name: "create a topic (v5+) answers with its configs and their sources (KIP-525)",
        kafka: Code(E::None),
        kafka_source: "ReplicationControlManager.java createTopic (CreatableTopicResult configs, when authorized to describe them)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.unique("with-configs");
            let result = c
                .create(vec![creatable(&name, 1, 1, &[("retention.ms", "4242")])], false)
                .remove(0);
            let configs = result.configs.unwrap_or_default();
            let retention = configs
                .iter()
                .find(|e| e.name.as_str() == "retention.ms")
                .expect("retention.ms in the answer");
            assert_eq!(retention.value.as_deref(), Some("4242"));
            assert_eq!(retention.config_source, 1, "DYNAMIC_TOPIC_CONFIG");
            assert!(configs.iter().any(|e| e.name.as_str() == "cleanup.policy"));
            code(result.error_code)
        },
    },
    // ---- DeleteTopics ----
    Case {
        name: "delete a topic that does not exist, by name",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicationControlManager.java findTopicIds (unknown name: UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| {
            let state = delete_topics_request::DeleteTopicState::default().with_name(Some(tn("never-was")));
            code(c.delete_topics(vec![state])[0])
        },
    },
    Case {
        name: "delete a topic that does not exist, by id",
        kafka: Code(E::UnknownTopicId),
        kafka_source: "ReplicationControlManager.java findTopicNames (unknown id: UNKNOWN_TOPIC_ID)",
        spate: Code(E::UnknownTopicId),
        why: "",
        run: |c| {
            let state = delete_topics_request::DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(Uuid::from_u128(0xdead));
            code(c.delete_topics(vec![state])[0])
        },
    },
    Case {
        name: "delete a topic named by both name and id",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ControllerApis.scala deleteTopics (\"You may not specify both topic name and topic id.\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| {
            let name = c.topic_with_records("named-twice", 0);
            let id = c.metadata(&[&name], false).topics[0].topic_id;
            let state = delete_topics_request::DeleteTopicState::default()
                .with_name(Some(tn(&name)))
                .with_topic_id(id);
            let answer = code(c.delete_topics(vec![state])[0]);
            assert!(c.topic_exists(&name));
            answer
        },
    },
    Case {
        name: "delete topics naming one topic twice",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ControllerApis.scala deleteTopics (duplicateProvidedNames: \"Duplicate topic name.\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| {
            let name = c.topic_with_records("delete-twice", 0);
            let state = delete_topics_request::DeleteTopicState::default().with_name(Some(tn(&name)));
            let errors = c.delete_topics(vec![state.clone(), state]);
            assert_eq!(errors.len(), 1, "one answer for the name");
            assert!(c.topic_exists(&name));
            code(errors[0])
        },
    },
    Case {
        name: "delete a topic by name",
        kafka: Code(E::None),
        kafka_source: "ReplicationControlManager.java deleteTopic",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("to-delete", 1);
            let state = delete_topics_request::DeleteTopicState::default().with_name(Some(tn(&name)));
            let answer = code(c.delete_topics(vec![state])[0]);
            assert!(!c.topic_exists(&name));
            answer
        },
    },
    // ---- CreatePartitions ----
    Case {
        name: "create partitions: fewer than the topic has",
        kafka: Code(E::InvalidPartitions),
        kafka_source: "ReplicationControlManager.java createPartitions (count < parts: \"would not be an increase\")",
        spate: Code(E::InvalidPartitions),
        why: "",
        run: |c| c.create_partitions(T, 1, false),
    },
    Case {
        name: "create partitions: as many as the topic has",
        kafka: Code(E::InvalidPartitions),
        kafka_source: "ReplicationControlManager.java createPartitions (\"Topic already has N partition(s).\")",
        spate: Code(E::InvalidPartitions),
        why: "",
        run: |c| c.create_partitions(T, 2, false),
    },
    Case {
        name: "create partitions of a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicationControlManager.java createPartitions (UnknownTopicOrPartitionException)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| c.create_partitions("never-was", 4, false),
    },
    Case {
        name: "create partitions with validate_only changes nothing",
        kafka: Code(E::None),
        kafka_source: "ControllerApis.scala createPartitions (validateOnly: records dropped)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("grow-validate", 0);
            let answer = c.create_partitions(&name, 3, true);
            assert_eq!(c.partitions(&name), 1);
            answer
        },
    },
    Case {
        name: "create partitions grows the topic",
        kafka: Code(E::None),
        kafka_source: "ReplicationControlManager.java createPartitions",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("grow", 0);
            let answer = c.create_partitions(&name, 3, false);
            assert_eq!(c.partitions(&name), 3);
            answer
        },
    },
    // ---- DeleteRecords ----
    Case {
        name: "delete records above the high watermark",
        kafka: Code(E::OffsetOutOfRange),
        kafka_source: "UnifiedLog.scala maybeIncrementLogStartOffset (newLogStartOffset > highWatermark: OffsetOutOfRangeException)",
        spate: Code(E::OffsetOutOfRange),
        why: "",
        run: |c| code(c.delete_records(T, 1, 1_000).error_code),
    },
    Case {
        name: "delete records of a partition past the topic's count",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala deleteRecordsOnLocalLog (getPartitionOrException)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| code(c.delete_records(T, 9, 0).error_code),
    },
    Case {
        name: "delete records at a negative offset other than -1",
        kafka: Code(E::OffsetOutOfRange),
        kafka_source: "Partition.scala deleteRecordsOnLeader (convertedOffset < 0: OffsetOutOfRangeException)",
        spate: Code(E::OffsetOutOfRange),
        why: "",
        run: |c| code(c.delete_records(T, 1, -5).error_code),
    },
    Case {
        name: "delete records up to the high watermark (-1)",
        kafka: Code(E::None),
        kafka_source: "Partition.scala deleteRecordsOnLeader (HIGH_WATERMARK: leaderLog.highWatermark)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("trim-all", 3);
            let p = c.delete_records(&name, 0, -1);
            assert_eq!(p.low_watermark, 3);
            code(p.error_code)
        },
    },
    Case {
        name: "delete records below the log start offset leaves it",
        kafka: Code(E::None),
        kafka_source: "UnifiedLog.scala maybeIncrementLogStartOffset (only moves forward; answers the current low watermark)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("trim-back", 4);
            assert_eq!(c.delete_records(&name, 0, 3).low_watermark, 3);
            let p = c.delete_records(&name, 0, 1);
            assert_eq!(p.low_watermark, 3);
            code(p.error_code)
        },
    },
    Case {
        name: "delete records of a compacted topic",
        kafka: Code(E::PolicyViolation),
        kafka_source: "Partition.scala deleteRecordsOnLeader (!config.delete: PolicyViolationException)",
        spate: Code(E::PolicyViolation),
        why: "",
        run: |c| code(c.delete_records("compacted", 0, 1).error_code),
    },
    Case {
        name: "delete records of the internal __consumer_offsets topic",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "ReplicaManager.scala deleteRecordsOnLocalLog (Topic.isInternal: \"Cannot delete records of internal topic\")",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| code(c.delete_records("__consumer_offsets", 0, 0).error_code),
    },
    // ---- FindCoordinator ----
    Case {
        name: "find the coordinator of a group (v4)",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala getCoordinator (GROUP)",
        spate: Code(E::None),
        why: "",
        run: |c| c.find_coordinator(4, 0, "some-group"),
    },
    Case {
        name: "find a coordinator of an unknown key type (v3)",
        kafka: Code(E::InvalidRequest),
        kafka_source: "FindCoordinatorRequest.java CoordinatorType.forId (\"Unknown coordinator type\": InvalidRequestException) from KafkaApis.getCoordinator",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.find_coordinator(3, 9, "key"),
    },
    Case {
        name: "find the coordinator of a transactional id (v4)",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala getCoordinator (TRANSACTION: txnCoordinator.partitionFor)",
        spate: Code(E::None),
        why: "",
        run: |c| c.find_coordinator(4, 1, "txn"),
    },
    // ---- InitProducerId ----
    Case {
        name: "init producer id without a transactional id",
        kafka: Code(E::None),
        kafka_source: "TransactionCoordinator.scala handleInitProducerId (transactionalId null: new producer id, epoch 0)",
        spate: Code(E::None),
        why: "",
        run: |c| c.init_producer_id(None, -1, -1),
    },
    Case {
        name: "init producer id with an empty transactional id",
        kafka: Code(E::InvalidRequest),
        kafka_source: "TransactionCoordinator.scala handleInitProducerId (transactionalId empty: INVALID_REQUEST)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.init_producer_id(Some(""), -1, -1),
    },
    Case {
        name: "init producer id with a producer id but no epoch",
        kafka: Code(E::InvalidRequest),
        kafka_source: "KafkaApis.scala handleInitProducerIdRequest ((_, NO_PRODUCER_EPOCH): INVALID_REQUEST)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.init_producer_id(None, 42, -1),
    },
    Case {
        name: "init producer id with a transactional id",
        kafka: Code(E::None),
        kafka_source: "TransactionCoordinator.scala handleInitProducerId",
        spate: Code(E::None),
        why: "",
        run: |c| c.init_producer_id(Some("txn"), -1, -1),
    },
    // ---- OffsetForLeaderEpoch ----
    Case {
        name: "offset for leader epoch of an unknown topic",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala lastOffsetForLeaderEpoch (getPartitionOrError)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| code(c.epoch_end("no-such-topic", -1, 0).error_code),
    },
    Case {
        name: "offset for leader epoch with a current leader epoch older than the leader's",
        kafka: Code(E::FencedLeaderEpoch),
        kafka_source: "Partition.scala lastOffsetForLeaderEpoch (localLogWithEpochOrThrow: FENCED_LEADER_EPOCH)",
        spate: Code(E::FencedLeaderEpoch),
        why: "",
        run: |c| {
            c.on_cluster(|c| {
                let epoch = c.leader_epoch(T, 0);
                assert!(epoch > 0, "an older epoch exists");
                code(c.epoch_end(T, epoch - 1, epoch - 1).error_code)
            })
        },
    },
    Case {
        name: "offset for leader epoch with a current leader epoch newer than the leader's",
        kafka: Code(E::UnknownLeaderEpoch),
        kafka_source: "Partition.scala lastOffsetForLeaderEpoch (localLogWithEpochOrThrow: UNKNOWN_LEADER_EPOCH)",
        spate: Code(E::UnknownLeaderEpoch),
        why: "",
        run: |c| {
            let epoch = c.leader_epoch(T, 0);
            code(c.epoch_end(T, epoch + 1, epoch).error_code)
        },
    },
    Case {
        name: "offset for the current leader epoch is the log end",
        kafka: Code(E::None),
        kafka_source: "UnifiedLog.scala endOffsetForEpoch (latest epoch: log end offset)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let epoch = c.leader_epoch(T, 0);
            let e = c.epoch_end(T, epoch, epoch);
            assert_eq!((e.leader_epoch, e.end_offset), (epoch, T_RECORDS));
            code(e.error_code)
        },
    },
    // ---- JoinGroup ----
    Case {
        name: "join a group (v5) without a member id",
        kafka: Code(E::MemberIdRequired),
        kafka_source: "GroupMetadataManager.java classicGroupJoinNewDynamicMember (requireKnownMemberId: MEMBER_ID_REQUIRED)",
        spate: Code(E::MemberIdRequired),
        why: "",
        run: |c| {
            let group = c.unique("g-new");
            let r = c.join(&group, "", 60_000, "consumer");
            assert!(!r.member_id.is_empty(), "the member id to rejoin with");
            code(r.error_code)
        },
    },
    Case {
        name: "join a group with an empty group id",
        kafka: Code(E::InvalidGroupId),
        kafka_source: "GroupCoordinatorService.java joinGroup (isGroupIdNotEmpty)",
        spate: Code(E::InvalidGroupId),
        why: "",
        run: |c| code(c.join("", "", 60_000, "consumer").error_code),
    },
    Case {
        name: "join a group with a session timeout below the broker's minimum",
        kafka: Code(E::InvalidSessionTimeout),
        kafka_source: "GroupCoordinatorService.java joinGroup (isSessionTimeoutValid: group.min.session.timeout.ms)",
        spate: Code(E::InvalidSessionTimeout),
        why: "",
        run: |c| {
            let group = c.unique("g-short");
            code(c.join(&group, "", 1, "consumer").error_code)
        },
    },
    Case {
        name: "join a group with a session timeout above the broker's maximum",
        kafka: Code(E::InvalidSessionTimeout),
        kafka_source: "GroupCoordinatorService.java joinGroup (isSessionTimeoutValid: group.max.session.timeout.ms)",
        spate: Code(E::InvalidSessionTimeout),
        why: "",
        run: |c| {
            let group = c.unique("g-long");
            code(c.join(&group, "", i32::MAX, "consumer").error_code)
        },
    },
    Case {
        name: "join a group that does not exist with a member id",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "GroupMetadataManager.java classicGroupJoinToClassicGroup (getOrMaybeCreateClassicGroup fails: UNKNOWN_MEMBER_ID)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let group = c.unique("g-ghost");
            code(c.join(&group, "ghost-member", 60_000, "consumer").error_code)
        },
    },
    Case {
        name: "join a group with another protocol type than its members'",
        kafka: Code(E::InconsistentGroupProtocol),
        kafka_source: "GroupMetadataManager.java classicGroupJoinNewMember (!group.supportsProtocols: INCONSISTENT_GROUP_PROTOCOL)",
        spate: Code(E::InconsistentGroupProtocol),
        why: "",
        run: |c| {
            let (group, _, _) = c.stable("g-proto");
            code(c.join(&group, "", 60_000, "connect").error_code)
        },
    },
    Case {
        name: "join a new group with an empty protocol type",
        kafka: Code(E::InconsistentGroupProtocol),
        kafka_source: "ClassicGroup.java supportsProtocols (empty group: protocol type and protocols must be non-empty)",
        spate: Code(E::InconsistentGroupProtocol),
        why: "",
        run: |c| {
            let group = c.unique("g-empty-proto");
            code(c.join(&group, "", 60_000, "").error_code)
        },
    },
    // ---- SyncGroup ----
    Case {
        name: "sync a group that does not exist",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "GroupMetadataManager.java classicGroupSync (GroupIdNotFoundException: UNKNOWN_MEMBER_ID)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let group = c.unique("g-nosync");
            c.sync(&group, "someone", 1)
        },
    },
    Case {
        name: "sync with a member id the group does not know",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "GroupMetadataManager.java validateSyncGroup (!group.hasMember: UNKNOWN_MEMBER_ID)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let group = c.unique("g-sync-stranger");
            let (_, generation) = c.joined(&group);
            c.sync(&group, "stranger", generation)
        },
    },
    Case {
        name: "sync with a wrong generation",
        kafka: Code(E::IllegalGeneration),
        kafka_source: "GroupMetadataManager.java validateSyncGroup (generationId != group.generationId: ILLEGAL_GENERATION)",
        spate: Code(E::IllegalGeneration),
        why: "",
        run: |c| {
            let group = c.unique("g-sync-gen");
            let (member, generation) = c.joined(&group);
            c.sync(&group, &member, generation + 7)
        },
    },
    Case {
        name: "sync with an empty group id",
        kafka: Code(E::InvalidGroupId),
        kafka_source: "GroupCoordinatorService.java syncGroup (isGroupIdNotEmpty)",
        spate: Code(E::InvalidGroupId),
        why: "",
        run: |c| c.sync("", "m", 1),
    },
    // ---- Heartbeat ----
    Case {
        name: "heartbeat to a group that does not exist",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "GroupMetadataManager.java classicGroupHeartbeat (GroupIdNotFoundException: UnknownMemberIdException)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let group = c.unique("g-nohb");
            c.heartbeat(&group, "someone", 1)
        },
    },
    Case {
        name: "heartbeat with a wrong generation",
        kafka: Code(E::IllegalGeneration),
        kafka_source: "GroupMetadataManager.java validateClassicGroupHeartbeat (ILLEGAL_GENERATION)",
        spate: Code(E::IllegalGeneration),
        why: "",
        run: |c| {
            let (group, member, generation) = c.stable("g-hb-gen");
            c.heartbeat(&group, &member, generation + 1)
        },
    },
    Case {
        name: "heartbeat with a member id the group does not know",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "GroupMetadataManager.java validateClassicGroupHeartbeat (validateMember: UNKNOWN_MEMBER_ID)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let (group, _, generation) = c.stable("g-hb-stranger");
            c.heartbeat(&group, "stranger", generation)
        },
    },
    Case {
        name: "heartbeat while another member's join rebalances the group",
        kafka: Code(E::RebalanceInProgress),
        kafka_source: "GroupMetadataManager.java classicGroupHeartbeatToClassicGroup (PREPARING_REBALANCE: REBALANCE_IN_PROGRESS)",
        spate: Code(E::RebalanceInProgress),
        why: "",
        run: |c| {
            let (group, member, generation) = c.stable("g-hb-rebalance");
            // A second member joins on its own connection; its join parks until the first
            // member rejoins, so its answer is never read.
            let mut other = c.broker.connect();
            let first: JoinGroupResponse = {
                let request = JoinGroupRequest::default()
                    .with_group_id(gid(&group))
                    .with_session_timeout_ms(60_000)
                    .with_rebalance_timeout_ms(30_000)
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(subscription(&[T]))]);
                call(&mut other, ApiKey::JoinGroup, 5, &request)
            };
            let request = JoinGroupRequest::default()
                .with_group_id(gid(&group))
                .with_session_timeout_ms(60_000)
                .with_rebalance_timeout_ms(30_000)
                .with_member_id(first.member_id.clone())
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(subscription(&[T]))]);
            let frame = encode_request(ApiKey::JoinGroup, 5, 9, &request);
            let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
            framed.extend_from_slice(&frame);
            std::io::Write::write_all(&mut other, &framed).unwrap();
            // The join reaches the coordinator asynchronously: poll.
            for _ in 0..50 {
                let answer = c.heartbeat(&group, &member, generation);
                if answer != Code(E::None) {
                    return answer;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Code(E::None)
        },
    },
    // ---- LeaveGroup ----
    Case {
        name: "leave (v4) a group with a member id it does not know",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "GroupMetadataManager.java classicGroupLeaveToClassicGroup (per member: UNKNOWN_MEMBER_ID; top level NONE)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let (group, _, _) = c.stable("g-leave-stranger");
            let r = c.leave(&group, "stranger");
            assert_eq!(r.error_code, 0, "top-level error");
            code(r.members[0].error_code)
        },
    },
    Case {
        name: "leave (v4) a group that does not exist",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "GroupMetadataManager.java classicGroupLeave (GroupIdNotFoundException: UnknownMemberIdException, top level)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let group = c.unique("g-noleave");
            let r = c.leave(&group, "someone");
            assert!(r.members.is_empty(), "a whole-request error lists no member");
            code(r.error_code)
        },
    },
    // ---- OffsetCommit ----
    Case {
        name: "commit an offset for a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "KafkaApis.scala handleOffsetCommitRequest (metadataCache.contains: UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| c.commit(8, "simple", "", -1, "no-such-topic", 0, ""),
    },
    Case {
        name: "commit an offset as a standalone consumer (generation -1, no member)",
        kafka: Code(E::None),
        kafka_source: "OffsetMetadataManager.java validateOffsetCommit (no group, generation < 0: simple group created)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let group = c.unique("g-simple");
            let answer = c.commit(8, &group, "", -1, T, 0, "meta");
            let fetched = c.offset_fetch(&group, T, 0);
            assert_eq!(fetched.topics[0].partitions[0].committed_offset, 1);
            answer
        },
    },
    Case {
        name: "commit with a generation to a group that does not exist (v8)",
        kafka: Code(E::IllegalGeneration),
        kafka_source: "OffsetMetadataManager.java validateOffsetCommit (no group, generation >= 0, version < 9: ILLEGAL_GENERATION)",
        spate: Code(E::IllegalGeneration),
        why: "",
        run: |c| {
            let group = c.unique("g-nocommit");
            c.commit(8, &group, "someone", 3, T, 0, "")
        },
    },
    Case {
        name: "commit with a stale generation",
        kafka: Code(E::IllegalGeneration),
        kafka_source: "ClassicGroup.java validateOffsetCommit (generationId != this.generationId: ILLEGAL_GENERATION)",
        spate: Code(E::IllegalGeneration),
        why: "",
        run: |c| {
            let (group, member, generation) = c.stable("g-commit-gen");
            c.commit(8, &group, &member, generation - 1, T, 0, "")
        },
    },
    Case {
        name: "commit with a member id the group does not know",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "ClassicGroup.java validateOffsetCommit -> validateMember (UNKNOWN_MEMBER_ID)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let (group, _, generation) = c.stable("g-commit-stranger");
            c.commit(8, &group, "stranger", generation, T, 0, "")
        },
    },
    Case {
        name: "commit without member or generation to a group with members",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "ClassicGroup.java validateOffsetCommit (no member, group not EMPTY: UNKNOWN_MEMBER_ID)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let (group, _, _) = c.stable("g-commit-anon");
            c.commit(8, &group, "", -1, T, 0, "")
        },
    },
    Case {
        name: "commit after join and before sync",
        kafka: Code(E::RebalanceInProgress),
        kafka_source: "ClassicGroup.java validateOffsetCommit (COMPLETING_REBALANCE: REBALANCE_IN_PROGRESS)",
        spate: Code(E::RebalanceInProgress),
        why: "",
        run: |c| {
            let group = c.unique("g-commit-early");
            let (member, generation) = c.joined(&group);
            c.commit(8, &group, &member, generation, T, 0, "")
        },
    },
    Case {
        name: "commit with metadata longer than offset.metadata.max.bytes (4096)",
        kafka: Code(E::OffsetMetadataTooLarge),
        kafka_source: "OffsetMetadataManager.java commitOffset (isOffsetMetadataTooLarge: OFFSET_METADATA_TOO_LARGE)",
        spate: Code(E::OffsetMetadataTooLarge),
        why: "",
        run: |c| {
            let group = c.unique("g-commit-big");
            c.commit(8, &group, "", -1, T, 0, &"m".repeat(5000))
        },
    },
    Case {
        name: "commit with an empty group id",
        kafka: Code(E::InvalidGroupId),
        kafka_source: "GroupCoordinatorService.java commitOffsets (isGroupIdNotEmpty)",
        spate: Code(E::InvalidGroupId),
        why: "",
        run: |c| c.commit(8, "", "", -1, T, 0, ""),
    },
    // ---- OffsetFetch ----
    Case {
        name: "fetch offsets (v8) of a group that does not exist",
        kafka: Code(E::None),
        kafka_source: "OffsetMetadataManager.java fetchOffsets (GroupIdNotFoundException: every partition INVALID_OFFSET, no error)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let group = c.unique("g-nofetch");
            let g = c.offset_fetch(&group, T, 0);
            let p = &g.topics[0].partitions[0];
            assert_eq!((p.committed_offset, p.error_code), (-1, 0));
            code(g.error_code)
        },
    },
    Case {
        name: "fetch offsets (v8) with an empty group id",
        kafka: Code(E::InvalidGroupId),
        kafka_source: "GroupCoordinatorService.java fetchOffsets (isGroupIdNotEmpty: INVALID_GROUP_ID)",
        spate: Code(E::InvalidGroupId),
        why: "",
        run: |c| code(c.offset_fetch("", T, 0).error_code),
    },
    // ---- DescribeGroups / DeleteGroups / OffsetDelete ----
    Case {
        name: "describe a group that does not exist",
        kafka: Code(E::None),
        kafka_source: "GroupMetadataManager.java describeGroups (GroupIdNotFoundException: state Dead, no error)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let group = c.unique("g-nodescribe");
            let request = DescribeGroupsRequest::default().with_groups(vec![gid(&group)]);
            let response: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &request);
            let g = &response.groups[0];
            assert_eq!(g.group_state.as_str(), "Dead");
            assert!(g.members.is_empty());
            code(g.error_code)
        },
    },
    Case {
        name: "delete a group that does not exist",
        kafka: Code(E::GroupIdNotFound),
        kafka_source: "GroupMetadataManager.java validateDeleteGroup / group() (GROUP_ID_NOT_FOUND)",
        spate: Code(E::GroupIdNotFound),
        why: "",
        run: |c| {
            let group = c.unique("g-nodelete");
            c.delete_group(&group)
        },
    },
    Case {
        name: "delete a group that has members",
        kafka: Code(E::NonEmptyGroup),
        kafka_source: "ClassicGroup.java validateDeleteGroup (STABLE: NON_EMPTY_GROUP)",
        spate: Code(E::NonEmptyGroup),
        why: "",
        run: |c| {
            let (group, _, _) = c.stable("g-busy");
            c.delete_group(&group)
        },
    },
    Case {
        name: "delete a group whose members left",
        kafka: Code(E::None),
        kafka_source: "ClassicGroup.java validateDeleteGroup (EMPTY)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (group, member, _) = c.stable("g-left");
            assert_eq!(c.leave(&group, &member).error_code, 0);
            c.delete_group(&group)
        },
    },
    Case {
        name: "delete offsets of a topic a stable group subscribes to",
        kafka: Code(E::GroupSubscribedToTopic),
        kafka_source: "OffsetMetadataManager.java deleteOffsets (group.isSubscribedToTopic: GROUP_SUBSCRIBED_TO_TOPIC)",
        spate: Code(E::GroupSubscribedToTopic),
        why: "",
        run: |c| {
            let (group, member, generation) = c.stable("g-subscribed");
            assert_eq!(c.commit(8, &group, &member, generation, T, 0, ""), Code(E::None));
            let r = c.offset_delete(&group, T);
            assert_eq!(r.error_code, 0, "top-level error");
            code(r.topics[0].partitions[0].error_code)
        },
    },
    Case {
        name: "delete offsets of a group that does not exist",
        kafka: Code(E::GroupIdNotFound),
        kafka_source: "OffsetMetadataManager.java deleteOffsets (group(): GROUP_ID_NOT_FOUND)",
        spate: Code(E::GroupIdNotFound),
        why: "",
        run: |c| {
            let group = c.unique("g-nooffsets");
            code(c.offset_delete(&group, T).error_code)
        },
    },
    Case {
        name: "delete offsets of a standalone (empty) group",
        kafka: Code(E::None),
        kafka_source: "OffsetMetadataManager.java deleteOffsets (EMPTY group: offsets removed)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let group = c.unique("g-standalone");
            assert_eq!(c.commit(8, &group, "", -1, T, 0, ""), Code(E::None));
            let r = c.offset_delete(&group, T);
            assert_eq!(r.error_code, 0);
            let after = c.offset_fetch(&group, T, 0);
            assert_eq!(after.topics[0].partitions[0].committed_offset, -1);
            code(r.topics[0].partitions[0].error_code)
        },
    },
    // ---- DescribeConfigs / IncrementalAlterConfigs ----
    Case {
        name: "describe the configs of a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ConfigHelper.scala handleDescribeConfigsRequest (TOPIC, !metadataCache.contains)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| c.describe_configs(RESOURCE_TOPIC, "no-such-topic"),
    },
    Case {
        name: "describe the configs of an invalid topic name",
        kafka: Code(E::InvalidTopicException),
        kafka_source: "ConfigHelper.scala handleDescribeConfigsRequest (Topic.validate)",
        spate: Code(E::InvalidTopicException),
        why: "",
        run: |c| c.describe_configs(RESOURCE_TOPIC, "bad/name"),
    },
    Case {
        name: "describe the configs of another broker id",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ConfigHelper.scala handleDescribeConfigsRequest (BROKER: \"Unexpected broker id\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.describe_configs(RESOURCE_BROKER, "4242"),
    },
    Case {
        name: "describe the configs of a resource type that does not exist",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ConfigHelper.scala handleDescribeConfigsRequest (\"Unsupported resource type\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.describe_configs(99, "x"),
    },
    Case {
        name: "incrementally alter an unknown config",
        kafka: Code(E::InvalidConfig),
        kafka_source: "ConfigurationControlManager.java incrementalAlterConfig -> validateAlterConfig (LogConfig.validate)",
        spate: Code(E::InvalidConfig),
        why: "",
        run: |c| c.incremental_alter(T, &[("no.such.config", OP_SET, Some("1"))], false),
    },
    Case {
        name: "incrementally alter a config to an invalid value",
        kafka: Code(E::InvalidConfig),
        kafka_source: "ConfigurationControlManager.java validateAlterConfig (ConfigException -> INVALID_CONFIG)",
        spate: Code(E::InvalidConfig),
        why: "",
        run: |c| c.incremental_alter(T, &[("retention.ms", OP_SET, Some("soon"))], false),
    },
    Case {
        name: "incrementally alter the configs of a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ConfigurationControlManager.java incrementalAlterConfigResource (existenceChecker: UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| c.incremental_alter("no-such-topic", &[("retention.ms", OP_SET, Some("1000"))], false),
    },
    Case {
        name: "incrementally APPEND to a config that is not a list",
        kafka: Code(E::InvalidConfig),
        kafka_source: "ConfigurationControlManager.java incrementalAlterConfigResource (APPEND on a non-list: INVALID_CONFIG)",
        spate: Code(E::InvalidConfig),
        why: "",
        run: |c| c.incremental_alter(T, &[("retention.ms", OP_APPEND, Some("1000"))], false),
    },
    Case {
        name: "incrementally alter with an unknown operation",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ConfigurationControlManager.java incrementalAlterConfigResource (OpType.forId null: INVALID_REQUEST)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.incremental_alter(T, &[("retention.ms", 9, Some("1000"))], false),
    },
    Case {
        name: "incrementally alter with validate_only changes nothing",
        kafka: Code(E::None),
        kafka_source: "ControllerApis.scala handleIncrementalAlterConfigs (validateOnly)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("alter-validate", 0);
            let before = c.topic_config(&name, "retention.ms");
            let answer = c.incremental_alter(&name, &[("retention.ms", OP_SET, Some("12345"))], true);
            assert_eq!(c.topic_config(&name, "retention.ms"), before);
            answer
        },
    },
    Case {
        name: "incrementally alter a topic's retention.ms",
        kafka: Code(E::None),
        kafka_source: "ConfigurationControlManager.java incrementalAlterConfigs",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("alter", 0);
            let answer = c.incremental_alter(&name, &[("retention.ms", OP_SET, Some("12345"))], false);
            assert_eq!(c.topic_config(&name, "retention.ms"), "12345");
            answer
        },
    },
    // ---- AlterConfigs (legacy) ----
    Case {
        name: "alter (legacy) the configs of a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ConfigurationControlManager.java legacyAlterConfigResource -> validateAlterConfig (existenceChecker: UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| c.alter(RESOURCE_TOPIC, "no-such-topic", &[("retention.ms", "1000")], false),
    },
    Case {
        name: "alter (legacy) a config to an invalid value",
        kafka: Code(E::InvalidConfig),
        kafka_source: "ConfigurationControlManager.java validateAlterConfig (LogConfig.validate: ConfigException -> INVALID_CONFIG)",
        spate: Code(E::InvalidConfig),
        why: "",
        run: |c| {
            let name = c.topic_with_records("legacy-bad-value", 0);
            let before = c.topic_config(&name, "retention.ms");
            let answer = c.alter(RESOURCE_TOPIC, &name, &[("retention.ms", "soon")], false);
            assert_eq!(c.topic_config(&name, "retention.ms"), before);
            answer
        },
    },
    Case {
        name: "alter (legacy) an unknown config",
        kafka: Code(E::InvalidConfig),
        kafka_source: "ConfigurationControlManager.java validateAlterConfig -> ControllerConfigurationValidator.validate (LogConfig.validate: unknown topic config)",
        spate: Code(E::InvalidConfig),
        why: "",
        run: |c| {
            let name = c.topic_with_records("legacy-unknown", 0);
            c.alter(RESOURCE_TOPIC, &name, &[("no.such.config", "1")], false)
        },
    },
    Case {
        name: "alter (legacy) naming one config twice",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ConfigAdminManager.scala preprocess (AlterConfigsRequestData: \"Error due to duplicate config keys\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| {
            let name = c.topic_with_records("legacy-twice", 0);
            c.alter(RESOURCE_TOPIC, &name, &[("retention.ms", "1000"), ("retention.ms", "2000")], false)
        },
    },
    Case {
        name: "alter (legacy) a resource type that does not exist",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ConfigAdminManager.scala preprocess (AlterConfigsRequestData, other type: \"Unknown resource type\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.alter(99, "x", &[("retention.ms", "1000")], false),
    },
    Case {
        name: "alter (legacy) a dynamic config of this broker",
        kafka: Code(E::None),
        kafka_source: "ConfigAdminManager.scala preprocess (BROKER: validateResourceNameIsCurrentNodeId, validateBrokerConfigChange) -> ConfigurationControlManager.legacyAlterConfigs",
        spate: Code(E::InvalidRequest),
        why: "not implemented: Spate's broker configs are static (command-line flags), so AlterConfigs of a BROKER resource is refused, as docs/KAFKA-APIS.md says",
        run: |c| {
            let id = c.metadata(&[T], false).brokers[0].node_id.0;
            c.alter(RESOURCE_BROKER, &id.to_string(), &[("log.cleaner.threads", "2")], false)
        },
    },
    Case {
        name: "alter (legacy) the configs of another broker id",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ConfigAdminManager.scala preprocess -> validateResourceNameIsCurrentNodeId (\"Unexpected broker id\")",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.alter(RESOURCE_BROKER, "4242", &[("log.cleaner.threads", "2")], false),
    },
    Case {
        name: "alter (legacy) naming one resource twice",
        kafka: Code(E::InvalidRequest),
        kafka_source: "ConfigAdminManager.scala preprocess (AlterConfigsRequestData: \"Each resource must appear at most once.\" for both)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| {
            let name = c.topic_with_records("legacy-resource-twice", 0);
            let before = c.topic_config(&name, "retention.ms");
            let resource = alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s(&name))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("12345")))]);
            let request = AlterConfigsRequest::default().with_resources(vec![resource.clone(), resource]);
            let response: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 2, &request);
            assert_eq!(response.responses.len(), 2, "{:?}", response.responses);
            assert_eq!(response.responses[0].error_code, response.responses[1].error_code);
            assert_eq!(c.topic_config(&name, "retention.ms"), before);
            code(response.responses[0].error_code)
        },
    },
    Case {
        name: "alter (legacy) with validate_only changes nothing",
        kafka: Code(E::None),
        kafka_source: "ControllerApis.scala handleLegacyAlterConfigs -> QuorumController.legacyAlterConfigs (validateOnly: records dropped)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.topic_with_records("legacy-validate", 0);
            let before = c.topic_config(&name, "retention.ms");
            let answer = c.alter(RESOURCE_TOPIC, &name, &[("retention.ms", "12345")], true);
            assert_eq!(c.topic_config(&name, "retention.ms"), before);
            answer
        },
    },
    Case {
        name: "alter (legacy) replaces every override: one left out returns to its default",
        kafka: Code(E::None),
        kafka_source: "ConfigurationControlManager.java legacyAlterConfigResource (recordsImplicitlyDeleted: overrides not named are removed)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let name = c.unique("legacy-replace");
            let configs = [("retention.ms", "4242")];
            assert_eq!(c.create_one(creatable(&name, 1, 1, &configs)), Code(E::None));
            let answer = c.alter(RESOURCE_TOPIC, &name, &[("max.message.bytes", "2000")], false);
            assert_eq!(c.topic_config(&name, "max.message.bytes"), "2000");
            assert_ne!(c.topic_config(&name, "retention.ms"), "4242", "the override left out is gone");
            answer
        },
    },
    // ---- ListGroups ----
    Case {
        name: "list groups (v4) filtered by a state that does not exist lists none",
        kafka: Code(E::None),
        kafka_source: "GroupMetadataManager.java listGroups (statesFilter: group.isInStates, no match, no error)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (_group, _, _) = c.stable("g-list-any");
            let response = c.list_groups(&["NoSuchState"]);
            assert!(response.groups.is_empty(), "{:?}", response.groups);
            code(response.error_code)
        },
    },
    Case {
        name: "list groups (v4) names a group in each state with its state",
        kafka: Code(E::None),
        kafka_source: "GroupMetadataManager.java listGroups (asListedGroup: ClassicGroupState.toString)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (stable, _, _) = c.stable("g-list-stable");
            let completing = c.unique("g-list-completing");
            c.joined(&completing);
            let empty = c.unique("g-list-empty");
            assert_eq!(c.commit(8, &empty, "", -1, T, 0, ""), Code(E::None));
            assert_eq!(c.listed_state(&stable, &[]).as_deref(), Some("Stable"));
            assert_eq!(
                c.listed_state(&completing, &[]).as_deref(),
                Some("CompletingRebalance")
            );
            assert_eq!(c.listed_state(&empty, &[]).as_deref(), Some("Empty"));
            let response = c.list_groups(&[]);
            let listed = response.groups.iter().find(|g| g.group_id.0.as_str() == stable);
            assert_eq!(listed.map(|g| g.protocol_type.as_str()), Some("consumer"));
            code(response.error_code)
        },
    },
    Case {
        name: "list groups (v4) filtered by a state lists only the groups in it",
        kafka: Code(E::None),
        kafka_source: "GroupMetadataManager.java listGroups (statesFilter)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (stable, _, _) = c.stable("g-filter-stable");
            let empty = c.unique("g-filter-empty");
            assert_eq!(c.commit(8, &empty, "", -1, T, 0, ""), Code(E::None));
            assert_eq!(c.listed_state(&empty, &["Empty"]).as_deref(), Some("Empty"));
            assert_eq!(c.listed_state(&stable, &["Empty"]), None);
            let response = c.list_groups(&["Empty"]);
            assert!(response.groups.iter().all(|g| g.group_state.as_str() == "Empty"));
            code(response.error_code)
        },
    },
    Case {
        name: "list groups (v4) filtered by a state in lower case",
        kafka: Code(E::None),
        kafka_source: "GroupMetadataManager.java listGroups (caseInsensitiveFilterSet: states compared in lower case)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (stable, _, _) = c.stable("g-filter-lower");
            let listed = c.listed_state(&stable, &["stable"]);
            assert_eq!(listed.as_deref(), Some("Stable"), "\"stable\" matches Stable");
            Code(E::None)
        },
    },
    // ---- AddPartitionsToTxn ----
    Case {
        name: "add partitions to the transaction of a transactional id never initialized",
        kafka: Code(E::InvalidProducerIdMapping),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (getTransactionState None: INVALID_PRODUCER_ID_MAPPING)",
        spate: Code(E::InvalidProducerIdMapping),
        why: "",
        run: |c| {
            let id = c.unique("txn-never");
            c.add_partition(&id, 4242, 0, T)
        },
    },
    Case {
        name: "add partitions with a producer id other than the transactional id's",
        kafka: Code(E::InvalidProducerIdMapping),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (producerId != txnMetadata.producerId)",
        spate: Code(E::InvalidProducerIdMapping),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-other-pid");
            c.add_partition(&id, pid + 1000, epoch, T)
        },
    },
    Case {
        name: "add partitions (v3) with a producer epoch other than the current one",
        kafka: Code(E::ProducerFenced),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (producerEpoch != txnMetadata.producerEpoch: PRODUCER_FENCED)",
        spate: Code(E::ProducerFenced),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-fenced-v3");
            c.add_partition(&id, pid, epoch + 1, T)
        },
    },
    Case {
        name: "add partitions (v1) with a producer epoch other than the current one",
        kafka: Code(E::InvalidProducerEpoch),
        kafka_source: "KafkaApis.scala handleAddPartitionsToTxnRequest (version < 2: PRODUCER_FENCED sent as INVALID_PRODUCER_EPOCH)",
        spate: Code(E::InvalidProducerEpoch),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-fenced-v1");
            c.add_partitions(1, &id, pid, epoch + 1, &[(T, 0)])[0]
        },
    },
    Case {
        name: "add partitions with a topic that does not exist: the others are not attempted",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "KafkaApis.scala handleAddPartitionsToTxnRequest (!metadataCache.contains: UNKNOWN_TOPIC_OR_PARTITION, the rest OPERATION_NOT_ATTEMPTED)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-unknown-topic");
            let answers = c.add_partitions(3, &id, pid, epoch, &[(T, 0), ("no-such-topic", 0)]);
            assert_eq!(answers[0], Code(E::OperationNotAttempted));
            // Nothing was added: the transaction is not open, so there is nothing to end.
            assert_eq!(c.end_txn(3, &id, pid, epoch, true), Code(E::InvalidTxnState));
            answers[1]
        },
    },
    Case {
        name: "add partitions with an empty transactional id",
        kafka: Code(E::InvalidRequest),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (transactionalId empty: INVALID_REQUEST)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.add_partition("", 4242, 0, T),
    },
    Case {
        name: "add partitions opens the transaction, and adding them again is accepted",
        kafka: Code(E::None),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (Ongoing and partitions already in it: NONE)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-add");
            let answers = c.add_partitions(3, &id, pid, epoch, &[(T, 0), (T, 1)]);
            assert_eq!(answers, vec![Code(E::None), Code(E::None)]);
            let again = c.add_partition(&id, pid, epoch, T);
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            again
        },
    },
    // ---- AddOffsetsToTxn ----
    Case {
        name: "add offsets to the transaction of a transactional id never initialized",
        kafka: Code(E::InvalidProducerIdMapping),
        kafka_source: "KafkaApis.scala handleAddOffsetsToTxnRequest -> TransactionCoordinator.handleAddPartitionsToTransaction (INVALID_PRODUCER_ID_MAPPING)",
        spate: Code(E::InvalidProducerIdMapping),
        why: "",
        run: |c| {
            let id = c.unique("txn-offsets-never");
            c.add_offsets(3, &id, 4242, 0, "g")
        },
    },
    Case {
        name: "add offsets (v3) with a producer epoch other than the current one",
        kafka: Code(E::ProducerFenced),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (PRODUCER_FENCED)",
        spate: Code(E::ProducerFenced),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-offsets-fenced-v3");
            c.add_offsets(3, &id, pid, epoch + 1, "g")
        },
    },
    Case {
        name: "add offsets (v1) with a producer epoch other than the current one",
        kafka: Code(E::InvalidProducerEpoch),
        kafka_source: "KafkaApis.scala handleAddOffsetsToTxnRequest (version < 2: PRODUCER_FENCED sent as INVALID_PRODUCER_EPOCH)",
        spate: Code(E::InvalidProducerEpoch),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-offsets-fenced-v1");
            c.add_offsets(1, &id, pid, epoch + 1, "g")
        },
    },
    Case {
        name: "add offsets with an empty transactional id",
        kafka: Code(E::InvalidRequest),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (transactionalId empty: INVALID_REQUEST)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.add_offsets(3, "", 4242, 0, "g"),
    },
    Case {
        name: "add offsets of an empty group id",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala handleAddOffsetsToTxnRequest (groupCoordinator.partitionFor(\"\"): no group id check)",
        spate: Code(E::InvalidGroupId),
        why: "Spate checks the group id first, as its group APIs (and Kafka's TxnOffsetCommit) do; Kafka's AddOffsetsToTxn makes no group id check and adds the partition that \"\" hashes to",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-offsets-empty-group");
            c.add_offsets(3, &id, pid, epoch, "")
        },
    },
    Case {
        name: "add offsets of a group opens the transaction",
        kafka: Code(E::None),
        kafka_source: "TransactionCoordinator.scala handleAddPartitionsToTransaction (__consumer_offsets partition of the group)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-offsets");
            let answer = c.add_offsets(3, &id, pid, epoch, "g-txn-offsets");
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None), "a transaction to end");
            answer
        },
    },
    // ---- EndTxn ----
    Case {
        name: "end the transaction of a transactional id never initialized",
        kafka: Code(E::InvalidProducerIdMapping),
        kafka_source: "TransactionCoordinator.scala endTransaction (getTransactionState None: INVALID_PRODUCER_ID_MAPPING)",
        spate: Code(E::InvalidProducerIdMapping),
        why: "",
        run: |c| {
            let id = c.unique("txn-end-never");
            c.end_txn(3, &id, 4242, 0, true)
        },
    },
    Case {
        name: "end a transaction when none is open",
        kafka: Code(E::InvalidTxnState),
        kafka_source: "TransactionCoordinator.scala endTransaction (state Empty: logInvalidStateTransitionAndReturnError, INVALID_TXN_STATE)",
        spate: Code(E::InvalidTxnState),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-end-none");
            c.end_txn(3, &id, pid, epoch, true)
        },
    },
    Case {
        name: "end a transaction (v3) with a producer epoch other than the current one",
        kafka: Code(E::ProducerFenced),
        kafka_source: "TransactionCoordinator.scala endTransaction (!isValidEpoch: PRODUCER_FENCED)",
        spate: Code(E::ProducerFenced),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-end-fenced-v3");
            assert_eq!(c.add_partition(&id, pid, epoch, T), Code(E::None));
            c.end_txn(3, &id, pid, epoch + 1, true)
        },
    },
    Case {
        name: "end a transaction (v1) with a producer epoch other than the current one",
        kafka: Code(E::InvalidProducerEpoch),
        kafka_source: "KafkaApis.scala handleEndTxnRequest (version < 2: PRODUCER_FENCED sent as INVALID_PRODUCER_EPOCH)",
        spate: Code(E::InvalidProducerEpoch),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-end-fenced-v1");
            assert_eq!(c.add_partition(&id, pid, epoch, T), Code(E::None));
            c.end_txn(1, &id, pid, epoch + 1, true)
        },
    },
    Case {
        name: "end a transaction with a producer id other than the transactional id's",
        kafka: Code(E::InvalidProducerIdMapping),
        kafka_source: "TransactionCoordinator.scala endTransaction (txnMetadata.producerId != producerId: INVALID_PRODUCER_ID_MAPPING)",
        spate: Code(E::InvalidProducerIdMapping),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-end-other-pid");
            assert_eq!(c.add_partition(&id, pid, epoch, T), Code(E::None));
            c.end_txn(3, &id, pid + 1000, epoch, true)
        },
    },
    Case {
        name: "end a transaction with an empty transactional id",
        kafka: Code(E::InvalidRequest),
        kafka_source: "TransactionCoordinator.scala endTransaction (transactionalId empty: INVALID_REQUEST)",
        spate: Code(E::InvalidRequest),
        why: "",
        run: |c| c.end_txn(3, "", 4242, 0, true),
    },
    Case {
        name: "commit an open transaction, then commit it again (a retry)",
        kafka: Code(E::None),
        kafka_source: "TransactionCoordinator.scala endTransaction (Ongoing: PrepareCommit; CompleteCommit and COMMIT: NONE)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-commit");
            assert_eq!(c.add_partition(&id, pid, epoch, T), Code(E::None));
            assert_eq!(c.end_txn(3, &id, pid, epoch, true), Code(E::None));
            c.end_txn_settled(&id, pid, epoch, true)
        },
    },
    Case {
        name: "abort an open transaction, then abort it again (a retry)",
        kafka: Code(E::None),
        kafka_source: "TransactionCoordinator.scala endTransaction (Ongoing: PrepareAbort; CompleteAbort and ABORT: NONE)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-abort");
            assert_eq!(c.add_partition(&id, pid, epoch, T), Code(E::None));
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            c.end_txn_settled(&id, pid, epoch, false)
        },
    },
    Case {
        name: "commit a transaction that was aborted",
        kafka: Code(E::InvalidTxnState),
        kafka_source: "TransactionCoordinator.scala endTransaction (CompleteAbort and COMMIT: INVALID_TXN_STATE)",
        spate: Code(E::InvalidTxnState),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-abort-commit");
            assert_eq!(c.add_partition(&id, pid, epoch, T), Code(E::None));
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            c.end_txn_settled(&id, pid, epoch, true)
        },
    },
    Case {
        name: "end a transaction of an unknown transactional id on a broker of a cluster",
        kafka: Code(E::InvalidProducerIdMapping),
        kafka_source: "KafkaApis.scala handleEndTxnRequest -> TransactionCoordinator.endTransaction (unknown id at its coordinator: INVALID_PRODUCER_ID_MAPPING)",
        spate: Code(E::InvalidProducerIdMapping),
        why: "",
        run: |c| {
            c.on_cluster(|c| {
                // The first call creates `__transaction_state`; until its partition is led and
                // loaded the broker answers as Kafka's coordinator does meanwhile.
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let answer = c.end_txn(3, "txn-in-cluster", 4242, 0, true);
                    let settling = answer == Code(E::CoordinatorNotAvailable)
                        || answer == Code(E::CoordinatorLoadInProgress);
                    if !settling || std::time::Instant::now() > deadline {
                        return answer;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        },
    },
    Case {
        name: "abort a transaction that was committed",
        kafka: Code(E::InvalidTxnState),
        kafka_source: "TransactionCoordinator.scala endTransaction (CompleteCommit and ABORT: INVALID_TXN_STATE)",
        spate: Code(E::InvalidTxnState),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-commit-abort");
            assert_eq!(c.add_partition(&id, pid, epoch, T), Code(E::None));
            assert_eq!(c.end_txn(3, &id, pid, epoch, true), Code(E::None));
            c.end_txn_settled(&id, pid, epoch, false)
        },
    },
    // ---- TxnOffsetCommit ----
    Case {
        name: "commit offsets in a transaction that does not hold the group's offsets partition",
        kafka: Code(E::InvalidTxnState),
        kafka_source: "CoordinatorPartitionWriter.scala maybeStartTransactionVerification -> TransactionCoordinator.handleVerifyPartitionsInTransaction (TRANSACTION_ABORTABLE), AddPartitionsToTxnManager (sent as INVALID_TXN_STATE before v4)",
        spate: Code(E::InvalidTxnState),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-commit-not-added");
            let group = c.unique("g-txn-not-added");
            c.txn_commit(&id, pid, epoch, &group, "", -1, T)
        },
    },
    Case {
        name: "commit offsets in a transaction of a transactional id never initialized",
        kafka: Code(E::InvalidProducerIdMapping),
        kafka_source: "TransactionCoordinator.scala handleVerifyPartitionsInTransaction (getTransactionState None: INVALID_PRODUCER_ID_MAPPING)",
        spate: Code(E::InvalidProducerIdMapping),
        why: "",
        run: |c| {
            let id = c.unique("txn-commit-never");
            let group = c.unique("g-txn-never");
            c.txn_commit(&id, 4242, 0, &group, "", -1, T)
        },
    },
    Case {
        name: "commit offsets (v3) in a transaction with a producer epoch other than the current one",
        kafka: Code(E::InvalidProducerEpoch),
        kafka_source: "TransactionCoordinator.scala handleVerifyPartitionsInTransaction (PRODUCER_FENCED), AddPartitionsToTxnManager (sent as INVALID_PRODUCER_EPOCH)",
        spate: Code(E::InvalidProducerEpoch),
        why: "",
        run: |c| {
            let group = c.unique("g-txn-fenced");
            let (id, pid, epoch) = c.txn_with_offsets("txn-commit-fenced", &group);
            let answer = c.txn_commit(&id, pid, epoch + 1, &group, "", -1, T);
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            answer
        },
    },
    Case {
        name: "commit offsets in a transaction for a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "KafkaApis.scala handleTxnOffsetCommitRequest (!metadataCache.contains: UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| {
            let group = c.unique("g-txn-unknown-topic");
            let (id, pid, epoch) = c.txn_with_offsets("txn-commit-unknown-topic", &group);
            let answer = c.txn_commit(&id, pid, epoch, &group, "", -1, "no-such-topic");
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            answer
        },
    },
    Case {
        name: "commit offsets in a transaction with a generation of a group that does not exist",
        kafka: Code(E::IllegalGeneration),
        kafka_source: "OffsetMetadataManager.java validateTransactionalOffsetCommit (no group, generationId >= 0: ILLEGAL_GENERATION)",
        spate: Code(E::IllegalGeneration),
        why: "",
        run: |c| {
            let group = c.unique("g-txn-ghost");
            let (id, pid, epoch) = c.txn_with_offsets("txn-commit-ghost", &group);
            let answer = c.txn_commit(&id, pid, epoch, &group, "someone", 3, T);
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            answer
        },
    },
    Case {
        name: "commit offsets in a transaction with a stale generation",
        kafka: Code(E::IllegalGeneration),
        kafka_source: "OffsetMetadataManager.java validateTransactionalOffsetCommit -> ClassicGroup.validateOffsetCommit (isTransactional, generationId != this.generationId: ILLEGAL_GENERATION)",
        spate: Code(E::IllegalGeneration),
        why: "",
        run: |c| {
            let (group, member, generation) = c.stable("g-txn-stale");
            let (id, pid, epoch) = c.txn_with_offsets("txn-commit-stale", &group);
            let answer = c.txn_commit(&id, pid, epoch, &group, &member, generation + 1, T);
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            answer
        },
    },
    Case {
        name: "commit offsets in a transaction with a member id the group does not know",
        kafka: Code(E::UnknownMemberId),
        kafka_source: "ClassicGroup.java validateOffsetCommit (generationId >= 0) -> validateMember (UNKNOWN_MEMBER_ID)",
        spate: Code(E::UnknownMemberId),
        why: "",
        run: |c| {
            let (group, _, generation) = c.stable("g-txn-stranger");
            let (id, pid, epoch) = c.txn_with_offsets("txn-commit-stranger", &group);
            let answer = c.txn_commit(&id, pid, epoch, &group, "stranger", generation, T);
            assert_eq!(c.end_txn(3, &id, pid, epoch, false), Code(E::None));
            answer
        },
    },
    Case {
        name: "commit offsets in a transaction with an empty group id",
        kafka: Code(E::InvalidGroupId),
        kafka_source: "GroupCoordinatorService.java commitTransactionalOffsets (isGroupIdNotEmpty: INVALID_GROUP_ID)",
        spate: Code(E::InvalidGroupId),
        why: "",
        run: |c| {
            let (id, pid, epoch) = c.txn_producer("txn-commit-empty-group");
            c.txn_commit(&id, pid, epoch, "", "", -1, T)
        },
    },
    Case {
        name: "commit offsets in a transaction: visible once it commits",
        kafka: Code(E::None),
        kafka_source: "OffsetMetadataManager.java commitTransactionalOffset (pending until the COMMIT marker, replayEndTransactionMarker)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let group = c.unique("g-txn-visible");
            let (id, pid, epoch) = c.txn_with_offsets("txn-commit-visible", &group);
            let answer = c.txn_commit(&id, pid, epoch, &group, "", -1, T);
            assert_eq!(c.end_txn(3, &id, pid, epoch, true), Code(E::None));
            let mut committed = -1;
            for _ in 0..250 {
                committed = c.offset_fetch(&group, T, 0).topics[0].partitions[0].committed_offset;
                if committed == 1 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(committed, 1, "the offset after the commit");
            answer
        },
    },
    // ---- Admin APIs of the cluster ----
    Case {
        name: "elect the preferred leader of a partition it already leads",
        kafka: Code(E::ElectionNotNeeded),
        kafka_source: "ReplicationControlManager.java electLeader (ELECTION_NOT_NEEDED)",
        spate: Code(E::ElectionNotNeeded),
        why: "",
        run: |c| elect(c, T),
    },
    Case {
        name: "elect the leader of a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicationControlManager.java electLeader (UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| elect(c, "no-such-topic"),
    },
    Case {
        name: "cancel a partition reassignment that is not in progress",
        kafka: Code(E::NoReassignmentInProgress),
        kafka_source: "ReplicationControlManager.java cancelPartitionReassignment (NO_REASSIGNMENT_IN_PROGRESS)",
        spate: Code(E::NoReassignmentInProgress),
        why: "",
        run: |c| reassign(c, T, None),
    },
    Case {
        name: "reassign a partition to a broker that does not exist",
        kafka: Code(E::InvalidReplicaAssignment),
        kafka_source: "ReplicationControlManager.java changePartitionReassignment -> validateManualPartitionAssignment (unregistered broker)",
        spate: Code(E::InvalidReplicaAssignment),
        why: "",
        run: |c| reassign(c, T, Some(vec![BrokerId(4242)])),
    },
    Case {
        name: "reassign a partition of a topic that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicationControlManager.java alterPartitionReassignment (UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| reassign(c, "no-such-topic", None),
    },
    Case {
        name: "describe the cluster asking for controller endpoints from a broker",
        kafka: Code(E::MismatchedEndpointType),
        kafka_source: "AuthHelper.scala computeDescribeClusterResponse (v1+, expected BROKER: MISMATCHED_ENDPOINT_TYPE)",
        spate: Code(E::MismatchedEndpointType),
        why: "",
        run: |c| describe_cluster(c, 2),
    },
    Case {
        name: "describe the cluster with an endpoint type that does not exist",
        kafka: Code(E::UnsupportedEndpointType),
        kafka_source: "AuthHelper.scala computeDescribeClusterResponse (EndpointType.UNKNOWN, v1+: UNSUPPORTED_ENDPOINT_TYPE)",
        spate: Code(E::UnsupportedEndpointType),
        why: "",
        run: |c| describe_cluster(c, 9),
    },
    Case {
        name: "describe log dirs of a topic that does not exist lists no partition",
        kafka: Code(E::None),
        kafka_source: "ReplicaManager.scala describeLogDirs (only partitions the broker hosts)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let request = DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(tn("no-such-topic"))
                    .with_partitions(vec![0]),
            ]));
            let response: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, 4, &request);
            assert!(!response.results.is_empty());
            assert!(response.results.iter().all(|d| d.topics.is_empty()));
            code(response.error_code)
        },
    },
    Case {
        name: "describe a transactional id no coordinator knows",
        kafka: Code(E::TransactionalIdNotFound),
        kafka_source: "TransactionCoordinator.scala handleDescribeTransactions (Right(None): TRANSACTIONAL_ID_NOT_FOUND)",
        spate: Code(E::TransactionalIdNotFound),
        why: "",
        run: |c| {
            let request = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s("no-such-txn"))]);
            let response: DescribeTransactionsResponse =
                c.call(ApiKey::DescribeTransactions, 0, &request);
            assert_eq!(response.transaction_states.len(), 1);
            let state = &response.transaction_states[0];
            assert_eq!(&*state.transactional_id.0, "no-such-txn");
            code(state.error_code)
        },
    },
    Case {
        name: "list transactions with a state name Kafka does not know",
        kafka: Code(E::None),
        kafka_source: "TransactionStateManager.scala listTransactionStates (unknown names in unknownStateFilters, nothing matches them)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let request = ListTransactionsRequest::default()
                .with_state_filters(vec![s("Sleeping")])
                .with_duration_filter(-1);
            let response: ListTransactionsResponse =
                c.call(ApiKey::ListTransactions, 1, &request);
            let unknown: Vec<&str> = response
                .unknown_state_filters
                .iter()
                .map(|f| &**f)
                .collect();
            assert_eq!(unknown, ["Sleeping"]);
            assert!(response.transaction_states.is_empty());
            code(response.error_code)
        },
    },
    Case {
        name: "describe the producers of a partition that does not exist",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "ReplicaManager.scala activeProducerState (getPartitionOrError: UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| {
            let request = DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(tn(T))
                    .with_partition_indexes(vec![0, 99]),
            ]);
            let response: DescribeProducersResponse =
                c.call(ApiKey::DescribeProducers, 0, &request);
            let partitions = &response.topics[0].partitions;
            assert_eq!(partitions.len(), 2);
            assert_eq!(partitions[0].error_code, 0, "partition 0 of t exists");
            assert_eq!(partitions[1].partition_index, 99);
            code(partitions[1].error_code)
        },
    },
    Case {
        name: "list partition reassignments of a topic that does not exist lists none",
        kafka: Code(E::None),
        kafka_source: "ReplicationControlManager.java listPartitionReassignments (unknown topics skipped)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let request = ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(Some(vec![
                    list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                        .with_name(tn("no-such-topic"))
                        .with_partition_indexes(vec![0]),
                ]));
            let response: ListPartitionReassignmentsResponse =
                call(&mut c.cluster_conn, ApiKey::ListPartitionReassignments, 0, &request);
            assert!(response.topics.is_empty());
            code(response.error_code)
        },
    },
    Case {
        name: "ElectLeaders on a single broker",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala handleElectLeaders (forwarded to the controller)",
        spate: Closed,
        why: "a single Spate broker has no other replica to elect, so it does not advertise ElectLeaders (nor the reassignment APIs or DescribeQuorum); a request for it closes the connection like any API not advertised",
        run: |c| c.closes(ApiKey::ElectLeaders, 2, &ElectLeadersRequest::default()),
    },
    Case {
        name: "metadata (v10) asked for authorized operations, on a broker without ACLs",
        kafka: Code(E::None),
        kafka_source: "AuthHelper.scala authorizedOperations (no authorizer: every operation of AclEntry.supportedOperations)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let request = MetadataRequest::default()
                .with_include_cluster_authorized_operations(true)
                .with_include_topic_authorized_operations(true)
                .with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(tn(T))),
                ]));
            let response: MetadataResponse = c.call(ApiKey::Metadata, 10, &request);
            // READ..ALTER_CONFIGS for a topic; CREATE, CLUSTER_ACTION, ... for the cluster.
            assert_eq!(response.topics[0].topic_authorized_operations, 3576);
            assert_eq!(response.cluster_authorized_operations, 8096);
            let unasked: MetadataResponse = c.call(ApiKey::Metadata, 10, &MetadataRequest::default().with_topics(Some(vec![])));
            assert_eq!(unasked.cluster_authorized_operations, i32::MIN, "not asked: not provided");
            code(response.topics[0].error_code)
        },
    },
    Case {
        name: "describe groups (v5) asked for authorized operations, on a broker without ACLs",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala handleDescribeGroupsRequest -> AuthHelper.authorizedOperations (GROUP)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let (group, _, _) = c.stable("g-ops");
            let request = DescribeGroupsRequest::default()
                .with_groups(vec![gid(&group)])
                .with_include_authorized_operations(true);
            let response: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &request);
            assert_eq!(response.groups[0].authorized_operations, 3400);
            assert_eq!(response.groups[0].members.len(), 1);
            code(response.groups[0].error_code)
        },
    },
    Case {
        name: "describe cluster asked for authorized operations, on a broker without ACLs",
        kafka: Code(E::None),
        kafka_source: "AuthHelper.scala computeDescribeClusterResponse (includeClusterAuthorizedOperations)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let request = DescribeClusterRequest::default()
                .with_endpoint_type(1)
                .with_include_cluster_authorized_operations(true);
            let response: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 1, &request);
            assert_eq!(response.cluster_authorized_operations, 8096);
            code(response.error_code)
        },
    },
    // ---- DescribeQuorum / UnregisterBroker (cluster only) ----
    Case {
        name: "describe the quorum of __cluster_metadata-0",
        kafka: Code(E::None),
        kafka_source: "KafkaRaftClient.java handleDescribeQuorumRequest (leader: singletonDescribeQuorumResponse)",
        spate: Code(E::None),
        why: "",
        run: |c| {
            let response = describe_quorum(c, &[("__cluster_metadata", 0)]);
            assert_eq!(response.error_code, 0, "top-level error");
            let p = &response.topics[0].partitions[0];
            let id = cluster_broker_id(c);
            assert_eq!(p.leader_id.0, id, "the one broker leads");
            assert!(p.leader_epoch >= 1 && p.high_watermark >= 0, "{p:?}");
            assert!(p.current_voters.iter().any(|v| v.replica_id.0 == id));
            code(p.error_code)
        },
    },
    Case {
        name: "describe the quorum of a partition other than __cluster_metadata-0",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "KafkaRaftClient.java handleDescribeQuorumRequest (!hasValidTopicPartition: UNKNOWN_TOPIC_OR_PARTITION per partition)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| {
            let response = describe_quorum(c, &[("__cluster_metadata", 1)]);
            assert_eq!(response.error_code, 0, "top-level error");
            code(response.topics[0].partitions[0].error_code)
        },
    },
    Case {
        name: "describe the quorum of a topic other than __cluster_metadata",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "KafkaRaftClient.java handleDescribeQuorumRequest (!hasValidTopicPartition: UNKNOWN_TOPIC_OR_PARTITION per partition)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| code(describe_quorum(c, &[(T, 0)]).topics[0].partitions[0].error_code),
    },
    Case {
        name: "describe the quorum of __cluster_metadata-0 together with another partition",
        kafka: Code(E::UnknownTopicOrPartition),
        kafka_source: "RaftUtil.java hasValidTopicPartition (exactly one topic with one partition, else every partition UNKNOWN_TOPIC_OR_PARTITION)",
        spate: Code(E::UnknownTopicOrPartition),
        why: "",
        run: |c| {
            let response = describe_quorum(c, &[("__cluster_metadata", 0), (T, 0)]);
            let codes: Vec<i16> = response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect();
            assert_eq!(codes.len(), 2, "an answer per partition");
            assert_eq!(code(codes[1]), Code(E::UnknownTopicOrPartition));
            code(codes[0])
        },
    },
    Case {
        name: "DescribeQuorum on a single broker",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala (DESCRIBE_QUORUM forwarded to the controller, forwardToController)",
        spate: Closed,
        why: "a single Spate broker has no metadata quorum, so it does not advertise DescribeQuorum; a request for it closes the connection like any API not advertised",
        run: |c| c.closes(ApiKey::DescribeQuorum, 2, &DescribeQuorumRequest::default()),
    },
    Case {
        name: "unregister a broker id that is not registered",
        kafka: Code(E::BrokerIdNotRegistered),
        kafka_source: "ReplicationControlManager.java unregisterBroker (registration == null: BrokerIdNotRegisteredException)",
        spate: Code(E::BrokerIdNotRegistered),
        why: "",
        run: |c| unregister(c, 4242),
    },
    Case {
        name: "unregister a broker that is running and hosts replicas",
        kafka: Code(E::None),
        kafka_source: "ReplicationControlManager.java unregisterBroker -> handleBrokerUnregistered (no check of liveness or replicas)",
        spate: Code(E::InvalidRequest),
        why: "Spate refuses to unregister a broker that is still a replica of some partition (its replicas would point at nobody) and asks for a decommission first, as docs/KAFKA-APIS.md says",
        run: |c| {
            let id = cluster_broker_id(c);
            let answer = unregister(c, id);
            // Still registered: the cluster still names it.
            assert_eq!(cluster_broker_id(c), id);
            answer
        },
    },
    Case {
        name: "UnregisterBroker on a single broker",
        kafka: Code(E::None),
        kafka_source: "KafkaApis.scala (UNREGISTER_BROKER forwarded to the controller, forwardToController)",
        spate: Closed,
        why: "a single Spate broker has no cluster registration, so it does not advertise UnregisterBroker; a request for it closes the connection like any API not advertised",
        run: |c| c.closes(ApiKey::UnregisterBroker, 0, &UnregisterBrokerRequest::default()),
    },
    // ---- Versions and APIs not advertised ----
    Case {
        name: "ApiVersions in a version newer than the broker knows",
        kafka: Code(E::UnsupportedVersion),
        kafka_source: "KafkaApis.scala handleApiVersionsRequest (!isApiVersionsRequestSupported: v0 answer with UNSUPPORTED_VERSION and the ranges)",
        spate: Code(E::UnsupportedVersion),
        why: "",
        run: |c| {
            let mut conn = c.broker.connect();
            let response = round_trip(&mut conn, &api_versions_request(9, 3));
            // v0 body: correlation id, error code, then the ranges.
            code(i16::from_be_bytes([response[4], response[5]]))
        },
    },
    Case {
        name: "a request of an API the broker does not advertise (ConsumerGroupHeartbeat)",
        kafka: Closed,
        kafka_source: "SocketServer.scala / RequestContext.java parseRequest (unsupported API or version: InvalidRequestException, connection closed)",
        spate: Closed,
        why: "",
        run: |c| c.closes(ApiKey::ConsumerGroupHeartbeat, 0, &ConsumerGroupHeartbeatRequest::default()),
    },
];

/// A message set in format v1 (one message): what a pre-0.11 producer sends.
fn magic_v1_message() -> Bytes {
    let mut body = Vec::new();
    body.push(1u8); // magic
    body.push(0u8); // attributes
    body.extend_from_slice(&0i64.to_be_bytes()); // timestamp
    body.extend_from_slice(&(-1i32).to_be_bytes()); // null key
    body.extend_from_slice(&1i32.to_be_bytes());
    body.push(b'v');
    let crc = crc32fast_ieee(&body);
    let mut m = Vec::new();
    m.extend_from_slice(&0i64.to_be_bytes()); // offset
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(&crc.to_be_bytes());
    m.extend_from_slice(&body);
    Bytes::from(m)
}

/// CRC-32 (IEEE), as message formats v0/v1 use.
fn crc32fast_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn elect(c: &mut Ctx, topic: &str) -> Answer {
    let conn = &mut c.cluster_conn;
    let request = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(5000)
        .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
        )
        .with_topic(tn(topic))
        .with_partitions(vec![0])]));
    let response: ElectLeadersResponse = call(conn, ApiKey::ElectLeaders, 2, &request);
    assert_eq!(response.error_code, 0, "top-level error");
    code(response.replica_election_results[0].partition_result[0].error_code)
}

fn reassign(c: &mut Ctx, topic: &str, replicas: Option<Vec<BrokerId>>) -> Answer {
    let conn = &mut c.cluster_conn;
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            alter_partition_reassignments_request::ReassignableTopic::default()
                .with_name(tn(topic))
                .with_partitions(vec![
                    alter_partition_reassignments_request::ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(replicas),
                ]),
        ]);
    let response: AlterPartitionReassignmentsResponse =
        call(conn, ApiKey::AlterPartitionReassignments, 0, &request);
    assert_eq!(response.error_code, 0, "top-level error");
    code(response.responses[0].partitions[0].error_code)
}

fn describe_cluster(c: &mut Ctx, endpoint_type: i8) -> Answer {
    let request = DescribeClusterRequest::default().with_endpoint_type(endpoint_type);
    let response: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 1, &request);
    code(response.error_code)
}

fn describe_quorum(c: &mut Ctx, partitions: &[(&str, i32)]) -> DescribeQuorumResponse {
    let request = DescribeQuorumRequest::default().with_topics(
        partitions
            .iter()
            .map(|&(topic, p)| {
                describe_quorum_request::TopicData::default()
                    .with_topic_name(tn(topic))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(p)
                    ])
            })
            .collect(),
    );
    call(&mut c.cluster_conn, ApiKey::DescribeQuorum, 2, &request)
}

fn unregister(c: &mut Ctx, broker_id: i32) -> Answer {
    let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker_id));
    let response: UnregisterBrokerResponse =
        call(&mut c.cluster_conn, ApiKey::UnregisterBroker, 0, &request);
    code(response.error_code)
}

/// The id of the one-broker cluster's broker, as its Metadata names it.
fn cluster_broker_id(c: &mut Ctx) -> i32 {
    let request = MetadataRequest::default().with_topics(Some(vec![]));
    let response: MetadataResponse = call(&mut c.cluster_conn, ApiKey::Metadata, 12, &request);
    assert_eq!(response.brokers.len(), 1, "one registered broker");
    response.brokers[0].node_id.0
}

/// Creates `topic` (2 partitions) in the cluster, retrying while its broker is not yet
/// usable for placement (INVALID_REPLICATION_FACTOR until it has registered and heartbeated).
fn create_in_cluster(conn: &mut TcpStream, topic: &str) {
    let mut last = 0;
    for _ in 0..200 {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable(topic, 2, 1, &[])])
            .with_timeout_ms(5000);
        let response: CreateTopicsResponse = call(conn, ApiKey::CreateTopics, 7, &request);
        last = response.topics[0].error_code;
        if last == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("creating {topic} in the cluster: error {last}");
}

/// Waits until every partition of `topic` has a leader (a cluster elects them after creation).
fn wait_for_leaders(conn: &mut TcpStream, topic: &str) {
    for _ in 0..200 {
        let request = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(tn(topic))),
        ]));
        let response: MetadataResponse = call(conn, ApiKey::Metadata, 12, &request);
        let t = &response.topics[0];
        if t.error_code == 0 && t.partitions.iter().all(|p| p.leader_id.0 >= 0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{topic} has no leaders after 10 s");
}

#[test]
fn kafka_error_and_edge_cases_side_by_side_with_spate() {
    let broker = start_broker(
        "kafka-error-cases",
        &["--group-initial-rebalance-delay-ms", "0"],
    );
    let conn = broker.connect();
    let cluster = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_spate")),
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "kafka-error-cases-cluster",
        1,
        &["--log-level", "warn"],
    );
    let mut cluster = cluster;
    let mut cluster_conn = cluster.brokers[0].connect();
    create_in_cluster(&mut cluster_conn, T);
    wait_for_leaders(&mut cluster_conn, T);
    // A restart takes the partitions through a new election: their leader epochs pass 0, so
    // the fencing cases have an older epoch to send.
    drop(cluster_conn);
    assert!(cluster.brokers[0].stop().success());
    cluster.brokers[0].restart();
    let mut cluster_conn = cluster.brokers[0].connect();
    wait_for_leaders(&mut cluster_conn, T);
    let mut c = Ctx {
        broker,
        conn,
        _cluster: cluster,
        cluster_conn,
        names: 0,
    };
    create_topic(&mut c.conn, T, 2);
    assert_eq!(
        c.produce(T, 0, batch(T_RECORDS as usize, false, 1000)),
        Code(E::None)
    );
    assert_eq!(
        c.create_one(creatable(
            "compacted",
            1,
            1,
            &[("cleanup.policy", "compact")]
        )),
        Code(E::None)
    );
    assert_eq!(
        c.create_one(creatable("small", 1, 1, &[("max.message.bytes", "100")])),
        Code(E::None)
    );
    // The offsets topic exists once a group has been looked up.
    assert_eq!(c.find_coordinator(3, 0, "warm-up"), Code(E::None));

    let mut failures = Vec::new();
    let mut differ = 0;
    for case in CASES {
        assert!(
            (case.kafka == case.spate) == case.why.is_empty(),
            "case {:?}: say why Spate differs from Kafka, and only then",
            case.name
        );
        assert!(
            !case.kafka_source.is_empty(),
            "case {:?}: Kafka source",
            case.name
        );
        if case.kafka != case.spate {
            differ += 1;
        }
        // A case's own assertion failing is reported with the others, on a fresh connection
        // (the old one may hold an unread answer).
        let got =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&mut c))) {
                Ok(got) => got,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|m| m.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{}: panicked: {message}", case.name));
                    c.conn = c.broker.connect();
                    continue;
                }
            };
        if got != case.spate {
            failures.push(format!(
                "{}: Spate answered {got:?}, the table says {:?} (Kafka: {:?})",
                case.name, case.spate, case.kafka
            ));
        }
    }
    println!(
        "{} cases, {} where Spate differs from Kafka on purpose",
        CASES.len(),
        differ
    );
    assert!(CASES.len() >= 190, "breadth: {} cases", CASES.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
