//! The work a core does on the partitions it owns, as plain data that can cross cores.
//!
//! Handlers split a request into ops, group them by owning core (`Core::scatter`), run the
//! local group directly and send the others over the mesh, then put the results back in request
//! order. Every type here is `Send`: record data travels as `Bytes` (reference-counted, never
//! copied between cores).

use bytes::Bytes;
use spate_wire::types::{LeaderEpoch, Offset};
use spate_wire::ErrorCode;

use crate::metadata::topics::TopicMeta;

/// Append one partition's records (one or more whole batches).
#[derive(Debug)]
pub struct ProduceOp {
    pub topic: String,
    pub partition: i32,
    pub records: Bytes,
    /// Wait until the appended data is durable before answering (acks=all).
    pub durability: Durability,
    /// How long an acks=all request may wait for durability (the request's `timeout_ms`).
    pub timeout_ms: u64,
    /// Whether the producer's transaction coordinator confirmed this partition is in its
    /// transaction (KIP-890): only then are transactional batches accepted.
    pub transaction: TxnCheck,
}

/// The coordinator's confirmation for a Produce's transactional batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnCheck {
    /// Not asked, or the partition is not in the producer's open transaction.
    Unverified,
    /// The partition is in the open transaction of the batch's producer id and epoch.
    Verified,
    /// The coordinator could not say (it moved, is loading, or did not answer), or refused the
    /// producer: the batches are refused with this code, as Kafka's partition leader does
    /// (retriable coordinator errors become NOT_ENOUGH_REPLICAS, which every client retries).
    Failed(ErrorCode),
}

/// What an acknowledgement waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answer once appended (acks=0 and acks=1).
    Appended,
    /// Answer once the flush policy made it durable (acks=all).
    Flushed,
}

/// The outcome of a [`ProduceOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResult {
    pub error: ErrorCode,
    pub base_offset: Offset,
    pub log_start_offset: Offset,
    /// Why a batch was refused, for the client's log (Produce v8+ `error_message`).
    pub message: Option<String>,
    /// The indexes of the records that got the batch refused (Produce v8+ `record_errors`,
    /// KIP-467), each with `message`; empty otherwise (no allocation).
    pub record_errors: Vec<i32>,
    /// The time the batches were stamped with, on a LogAppendTime topic; -1 otherwise.
    pub log_append_time_ms: i64,
}

/// Read one partition from an offset.
#[derive(Debug, Clone)]
pub struct FetchOp {
    pub topic: String,
    pub partition: i32,
    pub offset: Offset,
    pub bytes_max: u64,
    /// The leader epoch the client believes current (Fetch v9+), checked as Kafka does.
    pub current_leader_epoch: Option<LeaderEpoch>,
    pub isolation: Isolation,
}

/// A Fetch's isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Everything below the high watermark.
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions listed so the client
    /// skips their records.
    ReadCommitted,
}

/// The outcome of a [`FetchOp`]: whole batches, loaded into memory.
#[derive(Debug, Clone)]
pub struct FetchResult {
    pub error: ErrorCode,
    pub high_watermark: Offset,
    /// read_committed: the last stable offset; read_uncommitted: the high watermark.
    pub last_stable_offset: Offset,
    /// read_committed: the aborted transactions in the range read.
    pub aborted: Vec<spate_wire::fetch::AbortedTransaction>,
    pub log_start_offset: Offset,
    pub records: Vec<Bytes>,
    pub bytes: u64,
}

impl FetchResult {
    /// A result carrying only an error.
    pub fn failed(error: ErrorCode) -> FetchResult {
        FetchResult {
            error,
            high_watermark: Offset(-1),
            last_stable_offset: Offset(-1),
            aborted: Vec::new(),
            log_start_offset: Offset(-1),
            records: Vec::new(),
            bytes: 0,
        }
    }
}

/// Look up an offset by timestamp, or the earliest/latest offset.
#[derive(Debug, Clone)]
pub struct ListOffsetsOp {
    pub topic: String,
    pub partition: i32,
    /// -1 latest, -2 earliest, otherwise a timestamp in ms.
    pub timestamp_ms: i64,
    /// The leader epoch the client believes current (ListOffsets v4+), checked as Kafka does.
    pub current_leader_epoch: Option<LeaderEpoch>,
    /// ListOffsets v2+: read_committed answers from below the last stable offset.
    pub isolation: Isolation,
}

/// The outcome of a [`ListOffsetsOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResult {
    pub error: ErrorCode,
    pub offset: Offset,
    pub timestamp_ms: i64,
    /// The owner's leader epoch of the partition (ListOffsets v4+).
    pub leader_epoch: LeaderEpoch,
}

/// Move a partition's log start (DeleteRecords).
#[derive(Debug, Clone)]
pub struct DeleteRecordsOp {
    pub topic: String,
    pub partition: i32,
    /// The new log start; -1 is the high watermark.
    pub offset: i64,
}

/// The outcome of a [`DeleteRecordsOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRecordsResult {
    pub error: ErrorCode,
    /// The log start afterwards (-1 on error).
    pub low_watermark: Offset,
}

/// A partition's size and how far this replica's log reaches (DescribeLogDirs).
#[derive(Debug, Clone)]
pub struct LogSizeOp {
    pub topic: String,
    pub partition: i32,
}

/// The outcome of a [`LogSizeOp`], read at one moment on the owning core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSizeResult {
    pub error: ErrorCode,
    /// Bytes of batches in the partition's segments.
    pub size_bytes: u64,
    /// This replica's log end (-1 on error).
    pub log_end_offset: Offset,
    /// The partition's high watermark as this broker knows it (-1 on error). A follower's
    /// trails the leader's by up to a fetch round trip, and never passes its own log end.
    pub high_watermark: Offset,
}

/// The end offset of a leader epoch (OffsetForLeaderEpoch).
#[derive(Debug, Clone)]
pub struct EpochEndOp {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    /// The leader epoch the client believes current (OffsetForLeaderEpoch v2+).
    pub current_leader_epoch: Option<LeaderEpoch>,
}

/// The outcome of an [`EpochEndOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEndResult {
    pub error: ErrorCode,
    pub leader_epoch: i32,
    pub end_offset: Offset,
}

/// A topic to create, checked by the handler: its record, and the replicas of each partition
/// when the client assigned them (CreateTopics' `assignments`; one replica each, since
/// replication is not implemented yet), else placed by the controller.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub meta: TopicMeta,
    pub assignment: Option<Vec<Vec<i32>>>,
    /// Replicas per partition; -1: the broker's default.replication.factor.
    pub replication_factor: i16,
}

/// A topic to grow to `count` partitions; `assignment` names the replica of each new
/// partition when the client assigned them, else the controller places them.
#[derive(Debug, Clone)]
pub struct GrowTopic {
    pub name: String,
    pub count: i32,
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// One topic's config change, as a client asked for it.
#[derive(Debug, Clone)]
pub struct AlterTopic {
    pub name: String,
    pub alteration: crate::metadata::alter::Alteration,
}

/// Whether a change is only checked (Kafka's `validate_only`) or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidateOnly {
    /// Check it, change nothing.
    Yes,
    /// Check and make it.
    No,
}

/// A partition's producers (DescribeProducers), read on the core leading it.
#[derive(Debug, Clone)]
pub struct ProducersOp {
    pub topic: String,
    pub partition: i32,
}

/// The outcome of a [`ProducersOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducersResult {
    pub error: ErrorCode,
    pub producers: Vec<spate_storage::producer_state::ActiveProducer>,
}

/// Work sent to another core.
#[derive(Debug)]
pub enum CoreRequest {
    Produce(Vec<ProduceOp>),
    Fetch(Vec<FetchOp>),
    ListOffsets(Vec<ListOffsetsOp>),
    EpochEnd(Vec<EpochEndOp>),
    DeleteRecords(Vec<DeleteRecordsOp>),
    LogSize(Vec<LogSizeOp>),
    Producers(Vec<ProducersOp>),
    /// Wait until one of these partitions gets new data for `reader` (a consumer's long-poll,
    /// or a follower's frame on its leader), or `wait_ms` passes.
    WaitForData {
        partitions: Vec<(String, i32, Offset)>,
        wait_ms: u64,
        reader: crate::partition::Reader,
    },
    /// To the controller core: create these topics (validated there, written durably), then
    /// tell every core.
    CreateTopics(Vec<NewTopic>),
    /// To the controller core: delete these topics.
    DeleteTopics(Vec<String>),
    /// To the controller core: grow a topic to this many partitions.
    CreatePartitions(Vec<GrowTopic>),
    /// To the controller core: change these topics' configs (checked there against the
    /// topic's current overrides, written durably), then tell every core.
    AlterConfigs(Vec<AlterTopic>, ValidateOnly),
    /// From the controller to every core, in two rounds (see [`Phase`]): this topic now exists
    /// (or changed).
    TopicUpserted(TopicMeta, Phase),
    /// From the controller to every core: this topic is gone: close and delete owned
    /// partitions.
    TopicRemoved(String),
    /// To the controller core: a new producer id (InitProducerId).
    AllocateProducerId,
    /// To the controller core (cluster mode): the metadata quorum as its leader sees it.
    DescribeQuorum,
    /// To a group's coordinating core.
    Group(Box<crate::group::GroupCall>),
    /// To a transactional id's coordinating core.
    Txn(Box<crate::txn::TxnCall>),
    /// To a partition's owner: append a transaction marker.
    WriteTxnMarker(crate::txn::MarkerOp),
    /// From the controller core to every core (cluster mode): the metadata log's committed
    /// image; apply its topics, placements and brokers.
    /// The last field: the brokers whose process core 0's transport sees gone (their
    /// cluster port refuses connections), for `ClusterView::linger_after`.
    ClusterMetadata(
        std::sync::Arc<crate::cluster::quorum::Published>,
        Phase,
        std::sync::Arc<[i32]>,
    ),
    /// To core 0 (cluster mode): send a follower's fetch frame to a leader, and answer with
    /// the leader's response.
    ReplicaSend {
        to: i32,
        request: spate_wire::cluster::ReplicaFetchRequest,
    },
    /// To core 0 (cluster mode): send a transaction call to another broker, and answer with
    /// its response.
    TxnPeer {
        to: i32,
        call: crate::txn::TxnPeerCall,
    },
    /// From core 0 to a partition's owner: a follower's fetches for partitions led here.
    ReplicaServe(crate::cluster::replication::ServeOp),
    /// To core 0 (cluster mode): a leader's ISR change for the controller.
    AlterIsr(spate_wire::cluster::IsrChange),
    /// To core 0 (cluster mode): a client's preferred-leader election (ElectLeaders).
    ElectPreferred(Vec<spate_wire::cluster::PartitionName>),
    /// To core 0 (cluster mode): a client's AlterPartitionReassignments.
    Reassign(Vec<spate_controller::controller::Reassign>),
    /// To core 0 (cluster mode): an operator starts or cancels a broker's decommission (the
    /// broker config `spate.decommission`); with `ValidateOnly::Yes`, decided but not made.
    Decommission(
        spate_controller::ids::NodeId,
        spate_controller::controller::Decommission,
        ValidateOnly,
    ),
    /// To core 0 (cluster mode): a client's UnregisterBroker.
    Unregister(spate_controller::ids::NodeId),
    /// To every core: the replication throttle rates set at runtime (the dynamic broker
    /// configs `*.replication.throttled.rate`).
    SetThrottle(crate::cluster::replication::DynamicThrottle),
    /// From the core serving the admin listener to every core: a metrics snapshot.
    Metrics,
    /// From a connection's core to the core owning its partitions: serve this connection from
    /// now on (`crate::handoff`).
    AdoptConnection(Box<crate::handoff::Handoff>),
}

/// The two rounds in which every core applies a metadata change. A core shows a topic to
/// clients (Metadata, routes) only in the second round, once every core has opened its
/// partitions in the first: otherwise a client told of the topic by one core could produce to a
/// partition whose core has not opened it yet, get a retriable error, and (without
/// idempotence) have its retry land after later batches, out of order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Open the partitions this core keeps; show nothing yet.
    Open,
    /// Show the change: topics, placements, routes, removals.
    Publish,
}

/// A core's answer.
#[derive(Debug)]
pub enum CoreReply {
    /// Another broker's answer to a transaction call, if one came.
    TxnPeer(Option<crate::txn::TxnPeerAnswer>),
    /// The leader's answer to a follower's frame, if one came.
    ReplicaFetched(Option<spate_wire::cluster::ReplicaFetchResponse>),
    /// A core's answers to a follower's fetches.
    ReplicaServed(Vec<spate_wire::cluster::FetchedPartition>),
    /// The controller's answer to an ISR change.
    IsrChanged(Result<spate_wire::cluster::IsrChangeResult, ErrorCode>),
    /// The controller's answer to a preferred-leader election, one result per partition.
    Elected(Result<Vec<spate_wire::cluster::ElectLeadersResult>, ErrorCode>),
    /// The controller's answer to AlterPartitionReassignments: per partition, the error code
    /// and message.
    Reassigned(Result<Vec<(ErrorCode, Option<String>)>, ErrorCode>),
    /// The controller's answer to a decommission: the error code and message.
    Decommissioned(ErrorCode, Option<String>),
    /// The controller's answer to UnregisterBroker: the error code and message.
    Unregistered(ErrorCode, Option<String>),
    /// A core took the new throttle rates.
    ThrottleSet,
    Produce(Vec<ProduceResult>),
    Fetch(Vec<FetchResult>),
    ListOffsets(Vec<ListOffsetsResult>),
    EpochEnd(Vec<EpochEndResult>),
    DeleteRecords(Vec<DeleteRecordsResult>),
    LogSize(Vec<LogSizeResult>),
    Producers(Vec<ProducersResult>),
    /// Per topic: the error code and message.
    Topics(Vec<(ErrorCode, Option<String>)>),
    /// A producer id, or why none could be allocated.
    ProducerId(Result<i64, String>),
    /// The quorum's description, or the error for the client.
    Quorum(Result<spate_wire::cluster::ControllerAnswer, ErrorCode>),
    Group(Box<crate::group::GroupAnswer>),
    Txn(Box<crate::txn::TxnAnswer>),
    /// Whether a transaction marker was appended (and is durable).
    Marker(Result<(), ErrorCode>),
    Metrics(Box<crate::metrics::Snapshot>),
    /// Whether a core took a connection handed to it.
    Adopted(bool),
    Done,
}
