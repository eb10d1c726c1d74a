//! Decoding a request frame into its header and a typed body.
//!
//! Bodies are kafka-protocol's generated structs, decoded from `Bytes` so that Produce record
//! data stays a zero-copy slice of the frame. Every body passes the [allocation
//! guard](crate::guard) first, and control-plane bodies are refused above
//! [`RequestLimits::control_bytes_max`].
//!
//! ```
//! use bytes::{BufMut, Bytes, BytesMut};
//! use spate_wire::request::{decode_request, RequestBody, RequestLimits};
//!
//! // ApiVersions v0: header v1 (key 18, version 0, correlation id 7, client id "c"), empty body.
//! let mut frame = BytesMut::new();
//! frame.put_slice(&[0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b'c']);
//! let request = decode_request(frame.freeze(), &RequestLimits::default()).unwrap();
//! assert_eq!(request.header.correlation_id.0, 7);
//! assert!(matches!(request.body, RequestBody::ApiVersions(_)));
//! ```

use bytes::Bytes;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterConfigsRequest,
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest,
    DescribeProducersRequest, DescribeQuorumRequest, DescribeTransactionsRequest,
    ElectLeadersRequest, EndTxnRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest,
    ListTransactionsRequest, MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, SyncGroupRequest,
    TxnOffsetCommitRequest, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::Decodable;

use crate::error::WireError;
use crate::guard::{self, Schema};
use crate::header::RequestHeader;
use crate::versions::{self, API_VERSIONS_VERSION_MAX, PRODUCE_VERSION_DECODE_MIN};

/// Default largest body of a request other than Produce: control-plane requests are small, and
/// the limit also bounds what the generated decoders can reserve (see [`crate::guard`]).
pub const CONTROL_BYTES_MAX_DEFAULT: usize = 1024 * 1024;

/// Size limits applied while decoding request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest body of any request but Produce (whose limit is the frame limit).
    pub control_bytes_max: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            control_bytes_max: CONTROL_BYTES_MAX_DEFAULT,
        }
    }
}

/// A request body, typed by API.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // each variant is the request of the API it names
pub enum RequestBody {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Metadata(MetadataRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    SyncGroup(SyncGroupRequest),
    ApiVersions(ApiVersionsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    InitProducerId(InitProducerIdRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    DescribeConfigs(DescribeConfigsRequest),
    CreatePartitions(CreatePartitionsRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    DescribeQuorum(DescribeQuorumRequest),
    ElectLeaders(ElectLeadersRequest),
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    DescribeCluster(DescribeClusterRequest),
    UnregisterBroker(UnregisterBrokerRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    AlterConfigs(AlterConfigsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    DescribeProducers(DescribeProducersRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    ListTransactions(ListTransactionsRequest),
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The header (API, version, correlation id, client id).
    pub header: RequestHeader,
    /// The typed body.
    pub body: RequestBody,
}

/// Decodes a whole frame body (size prefix already removed, e.g. by
/// [`FrameDecoder`](crate::frame::FrameDecoder)).
///
/// # Errors
/// As [`RequestHeader::decode`] and [`RequestBody::decode`]. To answer a failed request, read its
/// correlation id with [`crate::header::peek_header_prefix`] first.
pub fn decode_request(mut frame: Bytes, limits: &RequestLimits) -> Result<Request, WireError> {
    let header = RequestHeader::decode(&mut frame)?;
    let body = RequestBody::decode(&header, frame, limits)?;
    Ok(Request { header, body })
}

impl RequestBody {
    /// Decodes the body that follows `header`.
    ///
    /// The version is checked against [`versions::SUPPORTED`] (not against what the broker has
    /// enabled: that is the broker's check). Produce v0-v2 are advertised but refused here.
    /// An ApiVersions request newer than Spate knows decodes to an empty body, as in Kafka, so
    /// the broker can send the KIP-511 answer
    /// ([`VersionTable::api_versions_response`](crate::versions::VersionTable::api_versions_response)).
    ///
    /// # Errors
    /// [`WireError::UnsupportedApi`], [`WireError::UnsupportedVersion`],
    /// [`WireError::RequestTooLarge`], [`WireError::LengthExceedsInput`] (the allocation guard),
    /// or [`WireError::Decode`] if the generated decoder refuses the bytes.
    pub fn decode(
        header: &RequestHeader,
        body: Bytes,
        limits: &RequestLimits,
    ) -> Result<RequestBody, WireError> {
        let api_key = header.api_key;
        let version = header.api_version;
        let Some(range) = versions::supported(api_key) else {
            return Err(WireError::UnsupportedApi(api_key));
        };
        if api_key == ApiKey::ApiVersions && version > API_VERSIONS_VERSION_MAX {
            return Ok(RequestBody::ApiVersions(ApiVersionsRequest::default()));
        }
        let too_old_produce = api_key == ApiKey::Produce && version < PRODUCE_VERSION_DECODE_MIN;
        if !range.contains(version) || too_old_produce {
            return Err(WireError::UnsupportedVersion { api_key, version });
        }
        if api_key != ApiKey::Produce && body.len() > limits.control_bytes_max {
            return Err(WireError::RequestTooLarge {
                api_key,
                size: body.len(),
                max: limits.control_bytes_max,
            });
        }
        let d = Decoder {
            api_key,
            version,
            body,
        };
        Ok(match api_key {
            ApiKey::Produce => RequestBody::Produce(d.run(&guard::PRODUCE)?),
            ApiKey::Fetch => RequestBody::Fetch(d.run(&guard::FETCH)?),
            ApiKey::ListOffsets => RequestBody::ListOffsets(d.run(&guard::LIST_OFFSETS)?),
            ApiKey::Metadata => RequestBody::Metadata(d.run(&guard::METADATA)?),
            ApiKey::OffsetCommit => RequestBody::OffsetCommit(d.run(&guard::OFFSET_COMMIT)?),
            ApiKey::OffsetFetch => RequestBody::OffsetFetch(d.run(&guard::OFFSET_FETCH)?),
            ApiKey::FindCoordinator => {
                RequestBody::FindCoordinator(d.run(&guard::FIND_COORDINATOR)?)
            }
            ApiKey::JoinGroup => RequestBody::JoinGroup(d.run(&guard::JOIN_GROUP)?),
            ApiKey::Heartbeat => RequestBody::Heartbeat(d.run(&guard::HEARTBEAT)?),
            ApiKey::LeaveGroup => RequestBody::LeaveGroup(d.run(&guard::LEAVE_GROUP)?),
            ApiKey::SyncGroup => RequestBody::SyncGroup(d.run(&guard::SYNC_GROUP)?),
            ApiKey::ApiVersions => RequestBody::ApiVersions(d.run(&guard::API_VERSIONS)?),
            ApiKey::CreateTopics => RequestBody::CreateTopics(d.run(&guard::CREATE_TOPICS)?),
            ApiKey::DeleteTopics => RequestBody::DeleteTopics(d.run(&guard::DELETE_TOPICS)?),
            ApiKey::InitProducerId => RequestBody::InitProducerId(d.run(&guard::INIT_PRODUCER_ID)?),
            ApiKey::OffsetForLeaderEpoch => {
                RequestBody::OffsetForLeaderEpoch(d.run(&guard::OFFSET_FOR_LEADER_EPOCH)?)
            }
            ApiKey::DescribeConfigs => {
                RequestBody::DescribeConfigs(d.run(&guard::DESCRIBE_CONFIGS)?)
            }
            ApiKey::CreatePartitions => {
                RequestBody::CreatePartitions(d.run(&guard::CREATE_PARTITIONS)?)
            }
            ApiKey::DescribeGroups => RequestBody::DescribeGroups(d.run(&guard::DESCRIBE_GROUPS)?),
            ApiKey::ListGroups => RequestBody::ListGroups(d.run(&guard::LIST_GROUPS)?),
            ApiKey::DeleteGroups => RequestBody::DeleteGroups(d.run(&guard::DELETE_GROUPS)?),
            ApiKey::OffsetDelete => RequestBody::OffsetDelete(d.run(&guard::OFFSET_DELETE)?),
            ApiKey::DescribeQuorum => RequestBody::DescribeQuorum(d.run(&guard::DESCRIBE_QUORUM)?),
            ApiKey::ElectLeaders => RequestBody::ElectLeaders(d.run(&guard::ELECT_LEADERS)?),
            ApiKey::AlterPartitionReassignments => RequestBody::AlterPartitionReassignments(
                d.run(&guard::ALTER_PARTITION_REASSIGNMENTS)?,
            ),
            ApiKey::ListPartitionReassignments => RequestBody::ListPartitionReassignments(
                d.run(&guard::LIST_PARTITION_REASSIGNMENTS)?,
            ),
            ApiKey::DeleteRecords => RequestBody::DeleteRecords(d.run(&guard::DELETE_RECORDS)?),
            ApiKey::DescribeLogDirs => {
                RequestBody::DescribeLogDirs(d.run(&guard::DESCRIBE_LOG_DIRS)?)
            }
            ApiKey::DescribeCluster => {
                RequestBody::DescribeCluster(d.run(&guard::DESCRIBE_CLUSTER)?)
            }
            ApiKey::UnregisterBroker => {
                RequestBody::UnregisterBroker(d.run(&guard::UNREGISTER_BROKER)?)
            }
            ApiKey::AlterConfigs => RequestBody::AlterConfigs(d.run(&guard::ALTER_CONFIGS)?),
            ApiKey::IncrementalAlterConfigs => {
                RequestBody::IncrementalAlterConfigs(d.run(&guard::INCREMENTAL_ALTER_CONFIGS)?)
            }
            ApiKey::AddPartitionsToTxn => {
                RequestBody::AddPartitionsToTxn(d.run(&guard::ADD_PARTITIONS_TO_TXN)?)
            }
            ApiKey::AddOffsetsToTxn => {
                RequestBody::AddOffsetsToTxn(d.run(&guard::ADD_OFFSETS_TO_TXN)?)
            }
            ApiKey::EndTxn => RequestBody::EndTxn(d.run(&guard::END_TXN)?),
            ApiKey::TxnOffsetCommit => {
                RequestBody::TxnOffsetCommit(d.run(&guard::TXN_OFFSET_COMMIT)?)
            }
            ApiKey::DescribeProducers => {
                RequestBody::DescribeProducers(d.run(&guard::DESCRIBE_PRODUCERS)?)
            }
            ApiKey::DescribeTransactions => {
                RequestBody::DescribeTransactions(d.run(&guard::DESCRIBE_TRANSACTIONS)?)
            }
            ApiKey::ListTransactions => {
                RequestBody::ListTransactions(d.run(&guard::LIST_TRANSACTIONS)?)
            }
            other => return Err(WireError::UnsupportedApi(other)),
        })
    }

    /// The API this body belongs to.
    pub fn api_key(&self) -> ApiKey {
        match self {
            RequestBody::Produce(_) => ApiKey::Produce,
            RequestBody::Fetch(_) => ApiKey::Fetch,
            RequestBody::ListOffsets(_) => ApiKey::ListOffsets,
            RequestBody::Metadata(_) => ApiKey::Metadata,
            RequestBody::OffsetCommit(_) => ApiKey::OffsetCommit,
            RequestBody::OffsetFetch(_) => ApiKey::OffsetFetch,
            RequestBody::FindCoordinator(_) => ApiKey::FindCoordinator,
            RequestBody::JoinGroup(_) => ApiKey::JoinGroup,
            RequestBody::Heartbeat(_) => ApiKey::Heartbeat,
            RequestBody::LeaveGroup(_) => ApiKey::LeaveGroup,
            RequestBody::SyncGroup(_) => ApiKey::SyncGroup,
            RequestBody::ApiVersions(_) => ApiKey::ApiVersions,
            RequestBody::CreateTopics(_) => ApiKey::CreateTopics,
            RequestBody::DeleteTopics(_) => ApiKey::DeleteTopics,
            RequestBody::InitProducerId(_) => ApiKey::InitProducerId,
            RequestBody::OffsetForLeaderEpoch(_) => ApiKey::OffsetForLeaderEpoch,
            RequestBody::DescribeConfigs(_) => ApiKey::DescribeConfigs,
            RequestBody::CreatePartitions(_) => ApiKey::CreatePartitions,
            RequestBody::DescribeGroups(_) => ApiKey::DescribeGroups,
            RequestBody::ListGroups(_) => ApiKey::ListGroups,
            RequestBody::DeleteGroups(_) => ApiKey::DeleteGroups,
            RequestBody::OffsetDelete(_) => ApiKey::OffsetDelete,
            RequestBody::DescribeQuorum(_) => ApiKey::DescribeQuorum,
            RequestBody::ElectLeaders(_) => ApiKey::ElectLeaders,
            RequestBody::AlterPartitionReassignments(_) => ApiKey::AlterPartitionReassignments,
            RequestBody::ListPartitionReassignments(_) => ApiKey::ListPartitionReassignments,
            RequestBody::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
            RequestBody::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
            RequestBody::EndTxn(_) => ApiKey::EndTxn,
            RequestBody::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
            RequestBody::DescribeProducers(_) => ApiKey::DescribeProducers,
            RequestBody::DescribeTransactions(_) => ApiKey::DescribeTransactions,
            RequestBody::ListTransactions(_) => ApiKey::ListTransactions,
            RequestBody::DescribeCluster(_) => ApiKey::DescribeCluster,
            RequestBody::UnregisterBroker(_) => ApiKey::UnregisterBroker,
            RequestBody::DeleteRecords(_) => ApiKey::DeleteRecords,
            RequestBody::DescribeLogDirs(_) => ApiKey::DescribeLogDirs,
            RequestBody::AlterConfigs(_) => ApiKey::AlterConfigs,
            RequestBody::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        }
    }
}

struct Decoder {
    api_key: ApiKey,
    version: i16,
    body: Bytes,
}

impl Decoder {
    fn run<T: Decodable>(mut self, schema: &Schema) -> Result<T, WireError> {
        guard::check(schema, self.version, &self.body)?;
        T::decode(&mut self.body, self.version).map_err(|e| WireError::Decode {
            api_key: self.api_key,
            version: self.version,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{request_header_version, CorrelationId, RequestHeader};
    use crate::versions::SUPPORTED;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{
        add_partitions_to_txn_request, alter_configs_request,
        alter_partition_reassignments_request, create_partitions_request, create_topics_request,
        delete_records_request, delete_topics_request, describe_configs_request,
        describe_log_dirs_request, describe_producers_request, describe_quorum_request,
        elect_leaders_request, fetch_request, incremental_alter_configs_request,
        join_group_request, leave_group_request, list_offsets_request,
        list_partition_reassignments_request, metadata_request, offset_commit_request,
        offset_delete_request, offset_fetch_request, offset_for_leader_epoch_request,
        produce_request, sync_group_request, txn_offset_commit_request, BrokerId, GroupId,
        ProducerId, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn s(text: &'static str) -> StrBytes {
        StrBytes::from_static_str(text)
    }

    /// Encodes `req` at `v`, checks the guard's walk consumes exactly the encoding, and that the
    /// full decode path gives the request back.
    fn round_trip<T>(api_key: ApiKey, v: i16, req: T, wrap: fn(T) -> RequestBody)
    where
        T: Encodable + Clone,
    {
        let mut body = BytesMut::new();
        req.encode(&mut body, v).unwrap();
        let schema = schema_of(api_key);
        assert_eq!(
            guard::consumed(schema, v, &body).unwrap(),
            body.len(),
            "{api_key:?} v{v}: walk disagrees with the encoding"
        );
        let header = RequestHeader {
            api_key,
            api_version: v,
            correlation_id: CorrelationId(v.into()),
            client_id: Some(Bytes::from_static(b"test")),
            version: request_header_version(api_key, v),
        };
        let mut frame = BytesMut::new();
        header.encode(&mut frame);
        frame.put_slice(&body);
        let decoded = decode_request(frame.freeze(), &RequestLimits::default()).unwrap();
        assert_eq!(decoded.header, header);
        assert_eq!(decoded.body, wrap(req), "{api_key:?} v{v}");
    }

    fn schema_of(api_key: ApiKey) -> &'static Schema {
        match api_key {
            ApiKey::Produce => &guard::PRODUCE,
            ApiKey::Fetch => &guard::FETCH,
            ApiKey::ListOffsets => &guard::LIST_OFFSETS,
            ApiKey::Metadata => &guard::METADATA,
            ApiKey::OffsetCommit => &guard::OFFSET_COMMIT,
            ApiKey::OffsetFetch => &guard::OFFSET_FETCH,
            ApiKey::FindCoordinator => &guard::FIND_COORDINATOR,
            ApiKey::JoinGroup => &guard::JOIN_GROUP,
            ApiKey::Heartbeat => &guard::HEARTBEAT,
            ApiKey::LeaveGroup => &guard::LEAVE_GROUP,
            ApiKey::SyncGroup => &guard::SYNC_GROUP,
            ApiKey::ApiVersions => &guard::API_VERSIONS,
            ApiKey::CreateTopics => &guard::CREATE_TOPICS,
            ApiKey::DeleteTopics => &guard::DELETE_TOPICS,
            ApiKey::InitProducerId => &guard::INIT_PRODUCER_ID,
            ApiKey::OffsetForLeaderEpoch => &guard::OFFSET_FOR_LEADER_EPOCH,
            ApiKey::DescribeConfigs => &guard::DESCRIBE_CONFIGS,
            ApiKey::CreatePartitions => &guard::CREATE_PARTITIONS,
            ApiKey::DescribeGroups => &guard::DESCRIBE_GROUPS,
            ApiKey::ListGroups => &guard::LIST_GROUPS,
            ApiKey::DeleteGroups => &guard::DELETE_GROUPS,
            ApiKey::OffsetDelete => &guard::OFFSET_DELETE,
            ApiKey::DescribeQuorum => &guard::DESCRIBE_QUORUM,
            ApiKey::ElectLeaders => &guard::ELECT_LEADERS,
            ApiKey::AlterPartitionReassignments => &guard::ALTER_PARTITION_REASSIGNMENTS,
            ApiKey::ListPartitionReassignments => &guard::LIST_PARTITION_REASSIGNMENTS,
            ApiKey::DescribeCluster => &guard::DESCRIBE_CLUSTER,
            ApiKey::UnregisterBroker => &guard::UNREGISTER_BROKER,
            ApiKey::DeleteRecords => &guard::DELETE_RECORDS,
            ApiKey::DescribeLogDirs => &guard::DESCRIBE_LOG_DIRS,
            ApiKey::AlterConfigs => &guard::ALTER_CONFIGS,
            ApiKey::IncrementalAlterConfigs => &guard::INCREMENTAL_ALTER_CONFIGS,
            ApiKey::AddPartitionsToTxn => &guard::ADD_PARTITIONS_TO_TXN,
            ApiKey::AddOffsetsToTxn => &guard::ADD_OFFSETS_TO_TXN,
            ApiKey::EndTxn => &guard::END_TXN,
            ApiKey::TxnOffsetCommit => &guard::TXN_OFFSET_COMMIT,
            ApiKey::DescribeProducers => &guard::DESCRIBE_PRODUCERS,
            ApiKey::DescribeTransactions => &guard::DESCRIBE_TRANSACTIONS,
            ApiKey::ListTransactions => &guard::LIST_TRANSACTIONS,
            other => panic!("no schema for {other:?}"),
        }
    }

    fn produce(_v: i16) -> ProduceRequest {
        let mut p = produce_request::PartitionProduceData::default();
        p.index = 3;
        p.records = Some(Bytes::from_static(b"not-a-batch-but-opaque"));
        let mut t = produce_request::TopicProduceData::default();
        t.name = TopicName(s("topic"));
        t.partition_data = vec![p.clone(), p];
        let mut r = ProduceRequest::default();
        r.acks = -1;
        r.timeout_ms = 30_000;
        r.transactional_id = Some(TransactionalId(s("tx")));
        r.topic_data = vec![t];
        r
    }

    fn fetch(v: i16) -> FetchRequest {
        let mut p = fetch_request::FetchPartition::default();
        p.partition = 1;
        p.fetch_offset = 42;
        p.partition_max_bytes = 1 << 20;
        let mut t = fetch_request::FetchTopic::default();
        t.topic = TopicName(s("t"));
        t.partitions = vec![p];
        let mut r = FetchRequest::default();
        r.max_wait_ms = 500;
        r.topics = vec![t];
        if v >= 7 {
            let mut f = fetch_request::ForgottenTopic::default();
            f.topic = TopicName(s("gone"));
            f.partitions = vec![1, 2, 3];
            r.forgotten_topics_data = vec![f];
        }
        if v >= 11 {
            r.rack_id = s("rack");
        }
        if v >= 12 {
            r.cluster_id = Some(s("cluster"));
        }
        r
    }

    fn list_offsets(_v: i16) -> ListOffsetsRequest {
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.partition_index = 2;
        p.timestamp = -1;
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(s("t"));
        t.partitions = vec![p];
        let mut r = ListOffsetsRequest::default();
        r.topics = vec![t];
        r
    }

    fn metadata(_v: i16) -> MetadataRequest {
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(TopicName(s("t")));
        let mut r = MetadataRequest::default();
        r.topics = Some(vec![t.clone(), t]);
        r
    }

    fn create_topics(_v: i16) -> CreateTopicsRequest {
        let mut a = create_topics_request::CreatableReplicaAssignment::default();
        a.partition_index = 0;
        a.broker_ids = vec![BrokerId(1), BrokerId(2)];
        let mut c = create_topics_request::CreatableTopicConfig::default();
        c.name = s("retention.ms");
        c.value = Some(s("1000"));
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName(s("t"));
        t.num_partitions = -1;
        t.replication_factor = -1;
        t.assignments = vec![a];
        t.configs = vec![c];
        let mut r = CreateTopicsRequest::default();
        r.topics = vec![t];
        r.timeout_ms = 5000;
        r
    }

    fn delete_topics(v: i16) -> DeleteTopicsRequest {
        let mut r = DeleteTopicsRequest::default();
        if v >= 6 {
            let mut t = delete_topics_request::DeleteTopicState::default();
            t.name = Some(TopicName(s("t")));
            r.topics = vec![t];
        } else {
            r.topic_names = vec![TopicName(s("a")), TopicName(s("b"))];
        }
        r.timeout_ms = 100;
        r
    }

    fn create_partitions(_v: i16) -> CreatePartitionsRequest {
        let mut a = create_partitions_request::CreatePartitionsAssignment::default();
        a.broker_ids = vec![BrokerId(7)];
        let mut t = create_partitions_request::CreatePartitionsTopic::default();
        t.name = TopicName(s("t"));
        t.count = 4;
        t.assignments = Some(vec![a]);
        let mut r = CreatePartitionsRequest::default();
        r.topics = vec![t];
        r
    }

    fn describe_configs(_v: i16) -> DescribeConfigsRequest {
        let mut res = describe_configs_request::DescribeConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = s("t");
        res.configuration_keys = Some(vec![s("cleanup.policy")]);
        let mut r = DescribeConfigsRequest::default();
        r.resources = vec![res];
        r
    }

    fn alter_configs(_v: i16) -> AlterConfigsRequest {
        let mut c = alter_configs_request::AlterableConfig::default();
        c.name = s("retention.ms");
        c.value = Some(s("60000"));
        let mut cleared = alter_configs_request::AlterableConfig::default();
        cleared.name = s("segment.ms");
        cleared.value = None;
        let mut res = alter_configs_request::AlterConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = s("t");
        res.configs = vec![c, cleared];
        let mut r = AlterConfigsRequest::default();
        r.resources = vec![res];
        r.validate_only = true;
        r
    }

    fn incremental_alter_configs(_v: i16) -> IncrementalAlterConfigsRequest {
        let mut set = incremental_alter_configs_request::AlterableConfig::default();
        set.name = s("cleanup.policy");
        set.config_operation = 2;
        set.value = Some(s("compact"));
        let mut delete = incremental_alter_configs_request::AlterableConfig::default();
        delete.name = s("retention.ms");
        delete.config_operation = 1;
        delete.value = None;
        let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = s("t");
        res.configs = vec![set, delete];
        let mut r = IncrementalAlterConfigsRequest::default();
        r.resources = vec![res];
        r.validate_only = true;
        r
    }

    fn offset_for_leader_epoch(_v: i16) -> OffsetForLeaderEpochRequest {
        let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
        p.partition = 0;
        p.leader_epoch = 3;
        let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
        t.topic = TopicName(s("t"));
        t.partitions = vec![p];
        let mut r = OffsetForLeaderEpochRequest::default();
        r.topics = vec![t];
        r
    }

    fn api_versions(v: i16) -> ApiVersionsRequest {
        let mut r = ApiVersionsRequest::default();
        if v >= 3 {
            r.client_software_name = s("librdkafka");
            r.client_software_version = s("2.12");
        }
        r
    }

    fn init_producer_id(_v: i16) -> InitProducerIdRequest {
        let mut r = InitProducerIdRequest::default();
        r.transactional_id = None;
        r.transaction_timeout_ms = 60_000;
        r
    }

    fn add_partitions_to_txn(_v: i16) -> AddPartitionsToTxnRequest {
        let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
        t.name = TopicName(s("t"));
        t.partitions = vec![0, 3];
        let mut r = AddPartitionsToTxnRequest::default();
        r.v3_and_below_transactional_id = TransactionalId(s("tx"));
        r.v3_and_below_producer_id = ProducerId(9);
        r.v3_and_below_producer_epoch = 2;
        r.v3_and_below_topics = vec![t];
        r
    }

    fn add_offsets_to_txn(_v: i16) -> AddOffsetsToTxnRequest {
        let mut r = AddOffsetsToTxnRequest::default();
        r.transactional_id = TransactionalId(s("tx"));
        r.producer_id = ProducerId(9);
        r.producer_epoch = 2;
        r.group_id = GroupId(s("g"));
        r
    }

    fn end_txn(_v: i16) -> EndTxnRequest {
        let mut r = EndTxnRequest::default();
        r.transactional_id = TransactionalId(s("tx"));
        r.producer_id = ProducerId(9);
        r.producer_epoch = 2;
        r.committed = true;
        r
    }

    fn txn_offset_commit(v: i16) -> TxnOffsetCommitRequest {
        let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
        p.partition_index = 1;
        p.committed_offset = 42;
        if v >= 2 {
            p.committed_leader_epoch = 3;
        }
        p.committed_metadata = Some(s("m"));
        let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
        t.name = TopicName(s("t"));
        t.partitions = vec![p];
        let mut r = TxnOffsetCommitRequest::default();
        r.transactional_id = TransactionalId(s("tx"));
        r.group_id = GroupId(s("g"));
        r.producer_id = ProducerId(9);
        r.producer_epoch = 2;
        if v >= 3 {
            r.generation_id = 4;
            r.member_id = s("m-1");
            r.group_instance_id = Some(s("i"));
        }
        r.topics = vec![t];
        r
    }

    fn describe_producers() -> DescribeProducersRequest {
        let mut t = describe_producers_request::TopicRequest::default();
        t.name = TopicName(s("t"));
        t.partition_indexes = vec![0, 2];
        DescribeProducersRequest::default().with_topics(vec![t])
    }

    fn list_transactions(v: i16) -> ListTransactionsRequest {
        let mut r = ListTransactionsRequest::default();
        r.state_filters = vec![s("Ongoing"), s("Unknown")];
        r.producer_id_filters = vec![ProducerId(7), ProducerId(1 << 40)];
        if v >= 1 {
            r.duration_filter = 60_000;
        }
        r
    }

    fn find_coordinator(v: i16) -> FindCoordinatorRequest {
        let mut r = FindCoordinatorRequest::default();
        if v >= 4 {
            r.coordinator_keys = vec![s("g1"), s("g2")];
        } else {
            r.key = s("g1");
        }
        r
    }

    fn join_group(_v: i16) -> JoinGroupRequest {
        let mut p = join_group_request::JoinGroupRequestProtocol::default();
        p.name = s("range");
        p.metadata = Bytes::from_static(b"\x00\x01meta");
        let mut r = JoinGroupRequest::default();
        r.group_id = GroupId(s("g"));
        r.session_timeout_ms = 10_000;
        r.protocol_type = s("consumer");
        r.protocols = vec![p];
        r
    }

    fn sync_group(_v: i16) -> SyncGroupRequest {
        let mut a = sync_group_request::SyncGroupRequestAssignment::default();
        a.member_id = s("m");
        a.assignment = Bytes::from_static(b"assign");
        let mut r = SyncGroupRequest::default();
        r.group_id = GroupId(s("g"));
        r.generation_id = 1;
        r.member_id = s("m");
        r.assignments = vec![a];
        r
    }

    fn heartbeat(_v: i16) -> HeartbeatRequest {
        let mut r = HeartbeatRequest::default();
        r.group_id = GroupId(s("g"));
        r.generation_id = 1;
        r.member_id = s("m");
        r
    }

    fn leave_group(v: i16) -> LeaveGroupRequest {
        let mut r = LeaveGroupRequest::default();
        r.group_id = GroupId(s("g"));
        if v >= 3 {
            let mut m = leave_group_request::MemberIdentity::default();
            m.member_id = s("m");
            r.members = vec![m];
        } else {
            r.member_id = s("m");
        }
        r
    }

    fn offset_commit(_v: i16) -> OffsetCommitRequest {
        let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
        p.partition_index = 1;
        p.committed_offset = 99;
        p.committed_metadata = Some(s("md"));
        let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = TopicName(s("t"));
        t.partitions = vec![p];
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(s("g"));
        r.member_id = s("m");
        r.topics = vec![t];
        r
    }

    fn offset_fetch(v: i16) -> OffsetFetchRequest {
        let mut r = OffsetFetchRequest::default();
        if v >= 8 {
            let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
            t.name = TopicName(s("t"));
            t.partition_indexes = vec![0, 1];
            let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s("g"));
            g.topics = Some(vec![t]);
            r.groups = vec![g];
        } else {
            let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
            t.name = TopicName(s("t"));
            t.partition_indexes = vec![0, 1];
            r.group_id = GroupId(s("g"));
            r.topics = Some(vec![t]);
        }
        r
    }

    fn describe_groups(v: i16) -> DescribeGroupsRequest {
        let mut r = DescribeGroupsRequest::default();
        r.groups = vec![GroupId(s("g1")), GroupId(s("g2"))];
        r.include_authorized_operations = v >= 3;
        r
    }

    fn list_groups(v: i16) -> ListGroupsRequest {
        let mut r = ListGroupsRequest::default();
        if v >= 4 {
            r.states_filter = vec![s("Stable"), s("Empty")];
        }
        r
    }

    fn describe_cluster(v: i16) -> DescribeClusterRequest {
        let mut r = DescribeClusterRequest::default();
        r.include_cluster_authorized_operations = true;
        if v >= 1 {
            r.endpoint_type = 1;
        }
        if v >= 2 {
            r.include_fenced_brokers = true;
        }
        r
    }

    fn delete_records(_v: i16) -> DeleteRecordsRequest {
        let mut p = delete_records_request::DeleteRecordsPartition::default();
        p.partition_index = 3;
        p.offset = 1234;
        let mut hw = delete_records_request::DeleteRecordsPartition::default();
        hw.partition_index = 0;
        hw.offset = -1;
        let mut t = delete_records_request::DeleteRecordsTopic::default();
        t.name = TopicName(s("t1"));
        t.partitions = vec![p, hw];
        let mut r = DeleteRecordsRequest::default();
        r.topics = vec![t];
        r.timeout_ms = 30000;
        r
    }

    fn describe_log_dirs(v: i16) -> DescribeLogDirsRequest {
        let mut r = DescribeLogDirsRequest::default();
        // Null (every partition) in one version, a filter in the others.
        if v != 2 {
            let mut t = describe_log_dirs_request::DescribableLogDirTopic::default();
            t.topic = TopicName(s("t1"));
            t.partitions = vec![0, 1, 2];
            r.topics = Some(vec![t]);
        }
        r
    }

    fn describe_quorum(_v: i16) -> DescribeQuorumRequest {
        let mut p = describe_quorum_request::PartitionData::default();
        p.partition_index = 0;
        let mut t = describe_quorum_request::TopicData::default();
        t.topic_name = TopicName(s("__cluster_metadata"));
        t.partitions = vec![p];
        let mut r = DescribeQuorumRequest::default();
        r.topics = vec![t];
        r
    }

    fn elect_leaders(v: i16) -> ElectLeadersRequest {
        let mut r = ElectLeadersRequest::default();
        if v >= 1 {
            r.election_type = 1;
        }
        // Null (every partition) in one version, a list in the others.
        if v != 1 {
            let mut t = elect_leaders_request::TopicPartitions::default();
            t.topic = TopicName(s("t1"));
            t.partitions = vec![0, 2];
            r.topic_partitions = Some(vec![t]);
        }
        r.timeout_ms = 30_000;
        r
    }

    fn alter_partition_reassignments(_v: i16) -> AlterPartitionReassignmentsRequest {
        let mut move_to = alter_partition_reassignments_request::ReassignablePartition::default();
        move_to.partition_index = 0;
        move_to.replicas = Some(vec![BrokerId(3), BrokerId(1)]);
        let mut cancel = alter_partition_reassignments_request::ReassignablePartition::default();
        cancel.partition_index = 2;
        cancel.replicas = None;
        let mut t = alter_partition_reassignments_request::ReassignableTopic::default();
        t.name = TopicName(s("t1"));
        t.partitions = vec![move_to, cancel];
        let mut r = AlterPartitionReassignmentsRequest::default();
        r.timeout_ms = 60_000;
        r.topics = vec![t];
        r
    }

    fn list_partition_reassignments(_v: i16) -> ListPartitionReassignmentsRequest {
        let mut t =
            list_partition_reassignments_request::ListPartitionReassignmentsTopics::default();
        t.name = TopicName(s("t1"));
        t.partition_indexes = vec![0, 1];
        let mut r = ListPartitionReassignmentsRequest::default();
        r.timeout_ms = 60_000;
        r.topics = Some(vec![t]);
        r
    }

    fn delete_groups(_v: i16) -> DeleteGroupsRequest {
        let mut r = DeleteGroupsRequest::default();
        r.groups_names = vec![GroupId(s("g1")), GroupId(s("g2"))];
        r
    }

    fn offset_delete(_v: i16) -> OffsetDeleteRequest {
        let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
        p.partition_index = 4;
        let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
        t.name = TopicName(s("t"));
        t.partitions = vec![p];
        let mut r = OffsetDeleteRequest::default();
        r.group_id = GroupId(s("g"));
        r.topics = vec![t];
        r
    }

    #[test]
    fn every_supported_version_of_every_api_round_trips_through_the_guard() {
        let mut checked = 0;
        for range in SUPPORTED {
            let min = range.min.max(match range.api_key {
                ApiKey::Produce => PRODUCE_VERSION_DECODE_MIN,
                _ => 0,
            });
            for v in min..=range.max {
                match range.api_key {
                    ApiKey::Produce => {
                        round_trip(range.api_key, v, produce(v), RequestBody::Produce)
                    }
                    ApiKey::Fetch => round_trip(range.api_key, v, fetch(v), RequestBody::Fetch),
                    ApiKey::ListOffsets => {
                        round_trip(range.api_key, v, list_offsets(v), RequestBody::ListOffsets)
                    }
                    ApiKey::Metadata => {
                        round_trip(range.api_key, v, metadata(v), RequestBody::Metadata)
                    }
                    ApiKey::OffsetCommit => round_trip(
                        range.api_key,
                        v,
                        offset_commit(v),
                        RequestBody::OffsetCommit,
                    ),
                    ApiKey::OffsetFetch => {
                        round_trip(range.api_key, v, offset_fetch(v), RequestBody::OffsetFetch)
                    }
                    ApiKey::FindCoordinator => round_trip(
                        range.api_key,
                        v,
                        find_coordinator(v),
                        RequestBody::FindCoordinator,
                    ),
                    ApiKey::JoinGroup => {
                        round_trip(range.api_key, v, join_group(v), RequestBody::JoinGroup)
                    }
                    ApiKey::Heartbeat => {
                        round_trip(range.api_key, v, heartbeat(v), RequestBody::Heartbeat)
                    }
                    ApiKey::LeaveGroup => {
                        round_trip(range.api_key, v, leave_group(v), RequestBody::LeaveGroup)
                    }
                    ApiKey::SyncGroup => {
                        round_trip(range.api_key, v, sync_group(v), RequestBody::SyncGroup)
                    }
                    ApiKey::ApiVersions => {
                        round_trip(range.api_key, v, api_versions(v), RequestBody::ApiVersions)
                    }
                    ApiKey::CreateTopics => round_trip(
                        range.api_key,
                        v,
                        create_topics(v),
                        RequestBody::CreateTopics,
                    ),
                    ApiKey::DeleteTopics => round_trip(
                        range.api_key,
                        v,
                        delete_topics(v),
                        RequestBody::DeleteTopics,
                    ),
                    ApiKey::InitProducerId => round_trip(
                        range.api_key,
                        v,
                        init_producer_id(v),
                        RequestBody::InitProducerId,
                    ),
                    ApiKey::OffsetForLeaderEpoch => round_trip(
                        range.api_key,
                        v,
                        offset_for_leader_epoch(v),
                        RequestBody::OffsetForLeaderEpoch,
                    ),
                    ApiKey::DescribeConfigs => round_trip(
                        range.api_key,
                        v,
                        describe_configs(v),
                        RequestBody::DescribeConfigs,
                    ),
                    ApiKey::CreatePartitions => round_trip(
                        range.api_key,
                        v,
                        create_partitions(v),
                        RequestBody::CreatePartitions,
                    ),
                    ApiKey::DescribeGroups => round_trip(
                        range.api_key,
                        v,
                        describe_groups(v),
                        RequestBody::DescribeGroups,
                    ),
                    ApiKey::ListGroups => {
                        round_trip(range.api_key, v, list_groups(v), RequestBody::ListGroups)
                    }
                    ApiKey::DeleteGroups => round_trip(
                        range.api_key,
                        v,
                        delete_groups(v),
                        RequestBody::DeleteGroups,
                    ),
                    ApiKey::OffsetDelete => round_trip(
                        range.api_key,
                        v,
                        offset_delete(v),
                        RequestBody::OffsetDelete,
                    ),
                    ApiKey::DescribeQuorum => round_trip(
                        range.api_key,
                        v,
                        describe_quorum(v),
                        RequestBody::DescribeQuorum,
                    ),
                    ApiKey::ElectLeaders => round_trip(
                        range.api_key,
                        v,
                        elect_leaders(v),
                        RequestBody::ElectLeaders,
                    ),
                    ApiKey::AlterPartitionReassignments => round_trip(
                        range.api_key,
                        v,
                        alter_partition_reassignments(v),
                        RequestBody::AlterPartitionReassignments,
                    ),
                    ApiKey::ListPartitionReassignments => round_trip(
                        range.api_key,
                        v,
                        list_partition_reassignments(v),
                        RequestBody::ListPartitionReassignments,
                    ),
                    ApiKey::DeleteRecords => round_trip(
                        range.api_key,
                        v,
                        delete_records(v),
                        RequestBody::DeleteRecords,
                    ),
                    ApiKey::DescribeLogDirs => round_trip(
                        range.api_key,
                        v,
                        describe_log_dirs(v),
                        RequestBody::DescribeLogDirs,
                    ),
                    ApiKey::DescribeCluster => round_trip(
                        range.api_key,
                        v,
                        describe_cluster(v),
                        RequestBody::DescribeCluster,
                    ),
                    ApiKey::UnregisterBroker => round_trip(
                        range.api_key,
                        v,
                        UnregisterBrokerRequest::default()
                            .with_broker_id(kafka_protocol::messages::BrokerId(4)),
                        RequestBody::UnregisterBroker,
                    ),
                    ApiKey::AlterConfigs => round_trip(
                        range.api_key,
                        v,
                        alter_configs(v),
                        RequestBody::AlterConfigs,
                    ),
                    ApiKey::IncrementalAlterConfigs => round_trip(
                        range.api_key,
                        v,
                        incremental_alter_configs(v),
                        RequestBody::IncrementalAlterConfigs,
                    ),
                    ApiKey::AddPartitionsToTxn => round_trip(
                        range.api_key,
                        v,
                        add_partitions_to_txn(v),
                        RequestBody::AddPartitionsToTxn,
                    ),
                    ApiKey::AddOffsetsToTxn => round_trip(
                        range.api_key,
                        v,
                        add_offsets_to_txn(v),
                        RequestBody::AddOffsetsToTxn,
                    ),
                    ApiKey::EndTxn => round_trip(range.api_key, v, end_txn(v), RequestBody::EndTxn),
                    ApiKey::TxnOffsetCommit => round_trip(
                        range.api_key,
                        v,
                        txn_offset_commit(v),
                        RequestBody::TxnOffsetCommit,
                    ),
                    ApiKey::DescribeProducers => round_trip(
                        range.api_key,
                        v,
                        describe_producers(),
                        RequestBody::DescribeProducers,
                    ),
                    ApiKey::DescribeTransactions => round_trip(
                        range.api_key,
                        v,
                        DescribeTransactionsRequest::default().with_transactional_ids(vec![
                            TransactionalId(s("app-1")),
                            TransactionalId(s("app-2")),
                        ]),
                        RequestBody::DescribeTransactions,
                    ),
                    ApiKey::ListTransactions => round_trip(
                        range.api_key,
                        v,
                        list_transactions(v),
                        RequestBody::ListTransactions,
                    ),
                    other => panic!("no sample for {other:?}"),
                }
                checked += 1;
            }
        }
        // 115 before the group admin APIs, plus DescribeGroups v0-5, ListGroups v0-4,
        // DeleteGroups v0-2, OffsetDelete v0, DescribeQuorum v0-2, DescribeCluster v0-2,
        // DeleteRecords v0-2, DescribeLogDirs v1-4, ElectLeaders v0-2, AlterConfigs v0-2,
        // IncrementalAlterConfigs v0-1, AlterPartitionReassignments v0 and
        // ListPartitionReassignments v0; then AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and
        // TxnOffsetCommit v0-3; UnregisterBroker v0; DescribeProducers v0,
        // DescribeTransactions v0 and ListTransactions v0-1.
        assert_eq!(
            checked,
            115 + 6 + 5 + 3 + 1 + 3 + 3 + 3 + 4 + 3 + 3 + 2 + 1 + 1 + 4 * 4 + 1 + 1 + 1 + 2
        );
    }
    fn frame(api_key: ApiKey, v: i16, body: &[u8]) -> Bytes {
        let header = RequestHeader {
            api_key,
            api_version: v,
            correlation_id: CorrelationId(77),
            client_id: None,
            version: request_header_version(api_key, v),
        };
        let mut out = BytesMut::new();
        header.encode(&mut out);
        out.put_slice(body);
        out.freeze()
    }

    #[test]
    fn a_tiny_frame_declaring_a_2_pow_31_array_is_refused_before_decoding() {
        // Metadata v1: topics array count i32::MAX, then four bytes. Without the guard the
        // generated decoder calls Vec::with_capacity(i32::MAX) for ~100 GiB and aborts.
        let mut body = i32::MAX.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 1, b'x', 0]);
        let err = decode_request(frame(ApiKey::Metadata, 1, &body), &RequestLimits::default());
        assert_eq!(
            err,
            Err(WireError::LengthExceedsInput {
                declared: i32::MAX as u64,
                remaining: 4
            })
        );
    }

    #[test]
    fn a_huge_producer_id_filter_count_is_refused() {
        // ListTransactions v0: no state filters, then 2^20 producer ids (8 bytes each) backed
        // by 16 bytes.
        let mut body = vec![1];
        body.extend_from_slice(&[0x81, 0x80, 0x40]);
        body.extend_from_slice(&[0; 16]);
        let err = decode_request(
            frame(ApiKey::ListTransactions, 0, &body),
            &RequestLimits::default(),
        );
        assert_eq!(
            err,
            Err(WireError::LengthExceedsInput {
                declared: 1 << 20,
                remaining: 16
            })
        );
    }

    #[test]
    fn a_huge_compact_count_is_refused() {
        // Produce v9: null transactional id, acks, timeout, then topics count 2^32 - 2.
        let mut body = vec![0, 0, 1, 0, 0, 0x75, 0x30];
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = decode_request(frame(ApiKey::Produce, 9, &body), &RequestLimits::default());
        assert!(matches!(
            err,
            Err(WireError::LengthExceedsInput { declared, remaining: 0 }) if declared == u32::MAX as u64 - 1
        ));
    }

    #[test]
    fn a_nested_huge_count_is_refused() {
        // CreateTopics v2: one topic "t" with i32::MAX replica assignments.
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&[0, 1, b't']);
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        body.extend_from_slice(&[0; 16]);
        let err = decode_request(
            frame(ApiKey::CreateTopics, 2, &body),
            &RequestLimits::default(),
        );
        assert!(
            matches!(err, Err(WireError::LengthExceedsInput { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn element_size_is_part_of_the_bound() {
        // Fetch v4 partitions need at least 16 bytes each: 2 declared with 20 bytes left is refused.
        let mut body = Vec::new();
        for x in [-1i32, 500, 1, 1 << 20] {
            body.extend_from_slice(&x.to_be_bytes());
        }
        body.push(0);
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&[0, 1, b't']);
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(&[0; 20]);
        let err = decode_request(frame(ApiKey::Fetch, 4, &body), &RequestLimits::default());
        assert_eq!(
            err,
            Err(WireError::LengthExceedsInput {
                declared: 2,
                remaining: 20
            })
        );
    }

    #[test]
    fn produce_v0_to_v2_is_refused_with_unsupported_version() {
        for v in 0..=2 {
            let err = decode_request(frame(ApiKey::Produce, v, &[]), &RequestLimits::default())
                .unwrap_err();
            assert_eq!(
                err,
                WireError::UnsupportedVersion {
                    api_key: ApiKey::Produce,
                    version: v
                }
            );
            assert_eq!(err.error_code(), crate::ErrorCode::UnsupportedVersion);
        }
    }

    #[test]
    fn versions_outside_the_table_are_refused() {
        let err = decode_request(frame(ApiKey::Fetch, 13, &[]), &RequestLimits::default());
        assert_eq!(
            err,
            Err(WireError::UnsupportedVersion {
                api_key: ApiKey::Fetch,
                version: 13
            })
        );
        let err = decode_request(
            frame(ApiKey::DescribeAcls, 1, &[]),
            &RequestLimits::default(),
        );
        assert_eq!(err, Err(WireError::UnsupportedApi(ApiKey::DescribeAcls)));
    }

    #[test]
    fn too_new_api_versions_decodes_to_an_empty_body() {
        // A v9 body Spate cannot know the layout of: ignored, as Kafka does (KIP-511).
        let request = decode_request(
            frame(ApiKey::ApiVersions, 9, &[1, 2, 3]),
            &RequestLimits::default(),
        )
        .unwrap();
        assert_eq!(request.header.api_version, 9);
        assert_eq!(request.header.correlation_id, CorrelationId(77));
        assert_eq!(
            request.body,
            RequestBody::ApiVersions(ApiVersionsRequest::default())
        );
    }

    #[test]
    fn control_requests_over_the_limit_are_refused() {
        let limits = RequestLimits {
            control_bytes_max: 8,
        };
        let err = decode_request(frame(ApiKey::Metadata, 1, &[0; 9]), &limits);
        assert_eq!(
            err,
            Err(WireError::RequestTooLarge {
                api_key: ApiKey::Metadata,
                size: 9,
                max: 8
            })
        );
    }

    #[test]
    fn produce_records_are_slices_of_the_frame() {
        let mut body = BytesMut::new();
        produce(9).encode(&mut body, 9).unwrap();
        let frame = frame(ApiKey::Produce, 9, &body);
        let range = frame.as_ptr_range();
        let request = decode_request(frame.clone(), &RequestLimits::default()).unwrap();
        let RequestBody::Produce(p) = request.body else {
            panic!("not produce")
        };
        let records = p.topic_data[0].partition_data[1].records.as_ref().unwrap();
        assert_eq!(&records[..], b"not-a-batch-but-opaque");
        assert!(range.contains(&records.as_ptr()), "records were copied");
    }
    #[test]
    fn array_elements_are_as_small_as_the_guard_bound_assumes() {
        // guard.rs bounds reservations by (bytes left) x size_of(element); its doc assumes
        // every element type is at most 120 bytes.
        use std::mem::size_of;
        let sizes = [
            size_of::<produce_request::TopicProduceData>(),
            size_of::<produce_request::PartitionProduceData>(),
            size_of::<fetch_request::FetchTopic>(),
            size_of::<fetch_request::FetchPartition>(),
            size_of::<fetch_request::ForgottenTopic>(),
            size_of::<list_offsets_request::ListOffsetsTopic>(),
            size_of::<list_offsets_request::ListOffsetsPartition>(),
            size_of::<metadata_request::MetadataRequestTopic>(),
            size_of::<create_topics_request::CreatableTopic>(),
            size_of::<create_topics_request::CreatableReplicaAssignment>(),
            size_of::<create_topics_request::CreatableTopicConfig>(),
            size_of::<delete_topics_request::DeleteTopicState>(),
            size_of::<create_partitions_request::CreatePartitionsTopic>(),
            size_of::<create_partitions_request::CreatePartitionsAssignment>(),
            size_of::<describe_configs_request::DescribeConfigsResource>(),
            size_of::<alter_configs_request::AlterConfigsResource>(),
            size_of::<alter_configs_request::AlterableConfig>(),
            size_of::<incremental_alter_configs_request::AlterConfigsResource>(),
            size_of::<incremental_alter_configs_request::AlterableConfig>(),
            size_of::<offset_for_leader_epoch_request::OffsetForLeaderTopic>(),
            size_of::<offset_for_leader_epoch_request::OffsetForLeaderPartition>(),
            size_of::<join_group_request::JoinGroupRequestProtocol>(),
            size_of::<sync_group_request::SyncGroupRequestAssignment>(),
            size_of::<leave_group_request::MemberIdentity>(),
            size_of::<offset_commit_request::OffsetCommitRequestTopic>(),
            size_of::<offset_commit_request::OffsetCommitRequestPartition>(),
            size_of::<offset_fetch_request::OffsetFetchRequestTopic>(),
            size_of::<offset_fetch_request::OffsetFetchRequestGroup>(),
            size_of::<offset_fetch_request::OffsetFetchRequestTopics>(),
            size_of::<describe_producers_request::TopicRequest>(),
            size_of::<StrBytes>(),
        ];
        let largest = sizes.into_iter().max().unwrap();
        assert!(
            largest > 0 && largest < 256,
            "largest element {largest} bytes"
        );
    }
}
