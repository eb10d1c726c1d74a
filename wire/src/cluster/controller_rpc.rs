//! Requests from a broker to the controller quorum, and the quorum's answers: the frame kinds
//! [`super::FrameKind::ControllerRequest`] and [`super::FrameKind::ControllerResponse`].
//!
//! These carry what Kafka's KRaft brokers send their controller: BrokerRegistration (API 62),
//! BrokerHeartbeat (63), AllocateProducerIds (67), and the client requests a broker forwards
//! (KIP-590): CreateTopics, DeleteTopics, CreatePartitions, ElectLeaders; and a partition
//! leader's AlterPartition (API 56, KIP-497) to grow or shrink its ISR. A request may go to any voter of the
//! quorum; a voter that does not lead answers `NOT_CONTROLLER` with the leader it knows of (if
//! any) as [`ControllerResponse::leader_hint`], and the sender retries there.
//!
//! Every body starts with a one-byte [`ControllerApi`]; a response has its request's. Then, in
//! field order, big-endian: `str` is a u16 byte length and UTF-8; `bool` a byte, 0 or 1;
//! `Option<T>` a byte, 0 (absent) or 1, then `T`; `list<T>` a count, then the entries.
//!
//! Requests:
//!
//! | api | request | fields |
//! |-----|---------|--------|
//! | 1 | RegisterBroker | node_id i32, incarnation u64, client_host str, client_port u16, cluster_host str, cluster_port u16, rack Option<str> |
//! | 2 | Heartbeat | node_id i32, incarnation u64, want_shutdown bool, metadata_offset u64 |
//! | 3 | CreateTopics | validate_only bool, topics list(u32) of: name str, partitions i32, replication_factor i16, assignment Option<assignment>, configs list(u16) of (key str, value str) |
//! | 4 | DeleteTopics | names list(u32) of str |
//! | 5 | CreatePartitions | topics list(u32) of: name str, count i32, assignment Option<assignment> |
//! | 6 | AllocateProducerIds | node_id i32, incarnation u64 |
//! | 7 | DescribeQuorum | nothing |
//! | 8 | AlterPartition | node_id i32, incarnation u64, partitions list(u32) of: topic_id 16 bytes, partition i32, leader_epoch i32, partition_epoch i32, new_isr list(u16) of (node_id i32, incarnation Option<u64>) |
//! | 9 | ElectLeaders | partitions list(u32) of: topic str, partition i32 |
//! | 10 | AlterConfigs | validate_only bool, topics list(u32) of: name str, replace_all bool, ops list(u16) of (key str, op u8, value Option<str>) |
//!
//! An assignment is list(u32) of partitions, each a list(u16) of replica ids (i32).
//!
//! Responses: api u8, error_code i16, leader_hint Option<i32>, message Option<str>, then:
//!
//! | api | answer |
//! |-----|--------|
//! | 1 | nothing |
//! | 2 | fenced bool, should_shut_down bool |
//! | 3 | results list(u32) of: name str, error_code i16, message Option<str>, topic_id 16 bytes, partitions i32 |
//! | 4, 5 | results list(u32) of: name str, error_code i16, message Option<str> |
//! | 6 | first_id i64, count i32 |
//! | 7 | leader i32, term u64, committed u64, voters list(u16) of replica, observers list(u16) of replica; a replica is node_id i32, log_end i64, last_fetch_ms i64, last_caught_up_ms i64 |
//! | 8 | results list(u32) of: topic_id 16 bytes, partition i32, error_code i16, leader i32, leader_epoch i32, partition_epoch i32, isr list(u16) of i32 |
//! | 9 | results list(u32) of: topic str, partition i32, error_code i16, message Option<str> |
//! | 10 | results list(u32) of: name str, error_code i16, message Option<str>; then metadata_offset u64 |
//!
//! Limits: the per-item ones below, plus three per request ([`CONTROLLER_RPC_CONFIGS_MAX`],
//! [`CONTROLLER_RPC_ASSIGNED_PARTITIONS_MAX`], [`CONTROLLER_RPC_ASSIGNED_REPLICAS_MAX`]) so that
//! a request with every limit reached still fits a payload (checked at compile time). A sender
//! checks its request with [`ControllerRequest::validate`] before encoding it.

use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::{I16, I32, I64, U16, U32, U64};

use crate::cluster::body::{over_limit, put_str16, Reader};
use crate::cluster::control::decode_error_code;
use crate::cluster::{ClusterError, CLUSTER_PAYLOAD_BYTES_MAX, ERROR_MESSAGE_BYTES_MAX};
use crate::ErrorCode;

/// Most topics in one request, or results in one response.
pub const CONTROLLER_RPC_TOPICS_MAX: usize = 1024;
/// Longest topic name, in bytes (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Longest host name in a registration, in bytes.
pub const HOST_BYTES_MAX: usize = 255;
/// Longest rack in a registration, in bytes.
pub const RACK_BYTES_MAX: usize = 255;
/// Longest config name, in bytes.
pub const CONFIG_KEY_BYTES_MAX: usize = 255;
/// Longest config value, in bytes.
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;
/// Most configs of one new topic.
pub const CONFIGS_PER_TOPIC_MAX: usize = 256;
/// Most configs in one CreateTopics request, all topics together.
pub const CONTROLLER_RPC_CONFIGS_MAX: usize = 4096;
/// Most replicas of one partition in an assignment.
pub const REPLICAS_PER_PARTITION_MAX: usize = 256;
/// Most partitions in one topic's assignment.
pub const PARTITIONS_PER_ASSIGNMENT_MAX: usize = 10_000;
/// Most partitions in the assignments of one request, all topics together.
pub const CONTROLLER_RPC_ASSIGNED_PARTITIONS_MAX: usize = 100_000;
/// Most replica ids in the assignments of one request, all topics together.
pub const CONTROLLER_RPC_ASSIGNED_REPLICAS_MAX: usize = 1 << 20;
/// Most partitions in one AlterPartition request, or results in its answer. The controller
/// proposes one request's changes as one batch, so this bounds that batch (the broker checks
/// at compile time that this many full-ISR changes fit one).
pub const ALTER_PARTITION_PARTITIONS_MAX: usize = 1024;
/// Most partitions in one ElectLeaders request, or results in its answer: the controller's
/// own limit per election (`ELECTION_PARTITIONS_MAX`), whose records are one batch.
pub const ELECT_LEADERS_PARTITIONS_MAX: usize = 1000;

// Lengths of strings and of configs and replica lists are u16 on the wire; other counts u32.
const _: () = assert!(TOPIC_NAME_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(HOST_BYTES_MAX <= u16::MAX as usize && RACK_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CONFIG_KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CONFIG_VALUE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(ERROR_MESSAGE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CONFIGS_PER_TOPIC_MAX <= u16::MAX as usize);
const _: () = assert!(REPLICAS_PER_PARTITION_MAX <= u16::MAX as usize);
const _: () = assert!(CONTROLLER_RPC_TOPICS_MAX <= u32::MAX as usize);
const _: () = assert!(PARTITIONS_PER_ASSIGNMENT_MAX <= u32::MAX as usize);
const _: () = assert!(ALTER_PARTITION_PARTITIONS_MAX <= u32::MAX as usize);
const _: () = assert!(ELECT_LEADERS_PARTITIONS_MAX <= u32::MAX as usize);
// A per-item limit never exceeds the per-request one it counts toward.
const _: () = assert!(CONFIGS_PER_TOPIC_MAX <= CONTROLLER_RPC_CONFIGS_MAX);
const _: () = assert!(PARTITIONS_PER_ASSIGNMENT_MAX <= CONTROLLER_RPC_ASSIGNED_PARTITIONS_MAX);
const _: () = assert!(REPLICAS_PER_PARTITION_MAX <= CONTROLLER_RPC_ASSIGNED_REPLICAS_MAX);

const API_BYTES: usize = 1;
const FLAG_BYTES: usize = 1;
const LEN16_BYTES: usize = 2;
const COUNT32_BYTES: usize = 4;
const TOPIC_ID_BYTES: usize = 16;
const NAME_BYTES_MAX: usize = LEN16_BYTES + TOPIC_NAME_BYTES_MAX;
const MESSAGE_BYTES_MAX: usize = FLAG_BYTES + LEN16_BYTES + ERROR_MESSAGE_BYTES_MAX;
const CONFIG_BYTES_MAX: usize =
    LEN16_BYTES + CONFIG_KEY_BYTES_MAX + LEN16_BYTES + CONFIG_VALUE_BYTES_MAX;
/// A topic of AlterConfigs without its ops: name, replace_all, op count.
const ALTER_TOPIC_FIXED_BYTES_MAX: usize = NAME_BYTES_MAX + FLAG_BYTES + LEN16_BYTES;
/// One op of AlterConfigs: key, op, value flag and value.
const CONFIG_OP_BYTES_MAX: usize = CONFIG_BYTES_MAX + 1 + FLAG_BYTES;
/// A new topic without its assignment's partitions and its configs: name, partitions,
/// replication_factor, assignment flag and partition count, config count.
const NEW_TOPIC_FIXED_BYTES_MAX: usize = NAME_BYTES_MAX + 4 + 2 + FLAG_BYTES + COUNT32_BYTES + 2;
/// A topic of CreatePartitions without its assignment's partitions.
const NEW_PARTITIONS_FIXED_BYTES_MAX: usize = NAME_BYTES_MAX + 4 + FLAG_BYTES + COUNT32_BYTES;
/// Bytes of an assigned partition besides its replicas: the replica count.
const ASSIGNED_PARTITION_BYTES: usize = 2;
const REPLICA_ID_BYTES: usize = 4;
const ASSIGNMENTS_BYTES_MAX: usize = CONTROLLER_RPC_ASSIGNED_PARTITIONS_MAX
    * ASSIGNED_PARTITION_BYTES
    + CONTROLLER_RPC_ASSIGNED_REPLICAS_MAX * REPLICA_ID_BYTES;
/// api, error_code, leader_hint, message.
const STATUS_BYTES_MAX: usize = API_BYTES + 2 + FLAG_BYTES + 4 + MESSAGE_BYTES_MAX;
const TOPIC_RESULT_BYTES_MAX: usize = NAME_BYTES_MAX + 2 + MESSAGE_BYTES_MAX;

/// The largest body of each api, every limit reached.
const REGISTER_BROKER_BYTES_MAX: usize =
    API_BYTES + 4 + 8 + 2 * (LEN16_BYTES + HOST_BYTES_MAX + 2) + MESSAGE_BYTES_MAX;
const CREATE_TOPICS_BYTES_MAX: usize = API_BYTES
    + FLAG_BYTES
    + COUNT32_BYTES
    + CONTROLLER_RPC_TOPICS_MAX * NEW_TOPIC_FIXED_BYTES_MAX
    + ASSIGNMENTS_BYTES_MAX
    + CONTROLLER_RPC_CONFIGS_MAX * CONFIG_BYTES_MAX;
const DELETE_TOPICS_BYTES_MAX: usize =
    API_BYTES + COUNT32_BYTES + CONTROLLER_RPC_TOPICS_MAX * NAME_BYTES_MAX;
const CREATE_PARTITIONS_BYTES_MAX: usize = API_BYTES
    + COUNT32_BYTES
    + CONTROLLER_RPC_TOPICS_MAX * NEW_PARTITIONS_FIXED_BYTES_MAX
    + ASSIGNMENTS_BYTES_MAX;
const CREATE_TOPICS_RESPONSE_BYTES_MAX: usize = STATUS_BYTES_MAX
    + COUNT32_BYTES
    + CONTROLLER_RPC_TOPICS_MAX * (TOPIC_RESULT_BYTES_MAX + TOPIC_ID_BYTES + 4);
const TOPIC_RESULTS_RESPONSE_BYTES_MAX: usize =
    STATUS_BYTES_MAX + COUNT32_BYTES + CONTROLLER_RPC_TOPICS_MAX * TOPIC_RESULT_BYTES_MAX;
/// An ISR member of an AlterPartition: node id, incarnation flag and incarnation.
const ISR_MEMBER_BYTES_MAX: usize = 4 + FLAG_BYTES + 8;
/// An ISR change without its members: topic id, partition, both epochs, member count.
const ISR_CHANGE_FIXED_BYTES: usize = TOPIC_ID_BYTES + 4 + 4 + 4 + LEN16_BYTES;
/// An ISR change result without its ISR: topic id, partition, error code, leader, both epochs,
/// ISR count.
const ISR_CHANGE_RESULT_FIXED_BYTES: usize = TOPIC_ID_BYTES + 4 + 2 + 4 + 4 + 4 + LEN16_BYTES;
const ALTER_PARTITION_BYTES_MAX: usize = API_BYTES
    + 4
    + 8
    + COUNT32_BYTES
    + ALTER_PARTITION_PARTITIONS_MAX
        * (ISR_CHANGE_FIXED_BYTES + REPLICAS_PER_PARTITION_MAX * ISR_MEMBER_BYTES_MAX);
const ALTER_PARTITION_RESPONSE_BYTES_MAX: usize = STATUS_BYTES_MAX
    + COUNT32_BYTES
    + ALTER_PARTITION_PARTITIONS_MAX
        * (ISR_CHANGE_RESULT_FIXED_BYTES + REPLICAS_PER_PARTITION_MAX * REPLICA_ID_BYTES);
const ALTER_CONFIGS_BYTES_MAX: usize = API_BYTES
    + FLAG_BYTES
    + COUNT32_BYTES
    + CONTROLLER_RPC_TOPICS_MAX * ALTER_TOPIC_FIXED_BYTES_MAX
    + CONTROLLER_RPC_CONFIGS_MAX * CONFIG_OP_BYTES_MAX;
const ALTER_CONFIGS_RESPONSE_BYTES_MAX: usize = TOPIC_RESULTS_RESPONSE_BYTES_MAX + 8;
const ELECT_LEADERS_BYTES_MAX: usize =
    API_BYTES + COUNT32_BYTES + ELECT_LEADERS_PARTITIONS_MAX * (NAME_BYTES_MAX + 4);
const ELECT_LEADERS_RESPONSE_BYTES_MAX: usize = STATUS_BYTES_MAX
    + COUNT32_BYTES
    + ELECT_LEADERS_PARTITIONS_MAX * (NAME_BYTES_MAX + 4 + 2 + MESSAGE_BYTES_MAX);

// The rack's bound is the host's, counted in REGISTER_BROKER_BYTES_MAX's message-sized slot.
const _: () = assert!(FLAG_BYTES + LEN16_BYTES + RACK_BYTES_MAX <= MESSAGE_BYTES_MAX);
const _: () = assert!(REGISTER_BROKER_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(CREATE_TOPICS_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(DELETE_TOPICS_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(CREATE_PARTITIONS_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(CREATE_TOPICS_RESPONSE_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(TOPIC_RESULTS_RESPONSE_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(ALTER_PARTITION_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(ALTER_PARTITION_RESPONSE_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(ELECT_LEADERS_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(ALTER_CONFIGS_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(ALTER_CONFIGS_RESPONSE_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(ELECT_LEADERS_RESPONSE_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);

/// The largest single reservation a decoder makes, whatever the payload: one assignment's
/// partitions (`ci/fuzz.sh` reports any allocation of 1 MiB or more as a crash).
const _: () = assert!(
    PARTITIONS_PER_ASSIGNMENT_MAX * core::mem::size_of::<Vec<i32>>() < 1024 * 1024
        && CONTROLLER_RPC_TOPICS_MAX * core::mem::size_of::<NewTopic>() < 1024 * 1024
        && CONTROLLER_RPC_TOPICS_MAX * core::mem::size_of::<CreateTopicResult>() < 1024 * 1024
        && ALTER_PARTITION_PARTITIONS_MAX * core::mem::size_of::<IsrChange>() < 1024 * 1024
        && ALTER_PARTITION_PARTITIONS_MAX * core::mem::size_of::<IsrChangeResult>() < 1024 * 1024
        && REPLICAS_PER_PARTITION_MAX * core::mem::size_of::<IsrMember>() < 1024 * 1024
        && ELECT_LEADERS_PARTITIONS_MAX * core::mem::size_of::<ElectLeadersResult>() < 1024 * 1024
        && ELECT_LEADERS_PARTITIONS_MAX * core::mem::size_of::<PartitionName>() < 1024 * 1024
        && CONTROLLER_RPC_TOPICS_MAX * core::mem::size_of::<AlterTopicConfigs>() < 1024 * 1024
        && CONFIGS_PER_TOPIC_MAX * core::mem::size_of::<ConfigOp>() < 1024 * 1024
);

/// Least bytes of one entry of each list, to refuse a count the payload cannot hold before
/// reserving for it.
const NEW_TOPIC_BYTES_MIN: usize = LEN16_BYTES + 4 + 2 + FLAG_BYTES + 2;
const NEW_PARTITIONS_BYTES_MIN: usize = LEN16_BYTES + 4 + FLAG_BYTES;
const CONFIG_BYTES_MIN: usize = 2 * LEN16_BYTES;
const NAME_BYTES_MIN: usize = LEN16_BYTES;
const TOPIC_RESULT_BYTES_MIN: usize = LEN16_BYTES + 2 + FLAG_BYTES;
const CREATE_TOPIC_RESULT_BYTES_MIN: usize = TOPIC_RESULT_BYTES_MIN + TOPIC_ID_BYTES + 4;
const ISR_MEMBER_BYTES_MIN: usize = 4 + FLAG_BYTES;
const PARTITION_NAME_BYTES_MIN: usize = LEN16_BYTES + 4;
const ELECT_LEADERS_RESULT_BYTES_MIN: usize = LEN16_BYTES + 4 + 2 + FLAG_BYTES;
const ALTER_TOPIC_BYTES_MIN: usize = LEN16_BYTES + FLAG_BYTES + LEN16_BYTES;
const CONFIG_OP_BYTES_MIN: usize = LEN16_BYTES + 1 + FLAG_BYTES;

/// Which request a controller body is, and which request a response answers: the first byte
/// of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ControllerApi {
    /// [`ControllerRequest::RegisterBroker`] (Kafka's BrokerRegistration, API 62).
    RegisterBroker = 1,
    /// [`ControllerRequest::Heartbeat`] (BrokerHeartbeat, API 63).
    Heartbeat = 2,
    /// [`ControllerRequest::CreateTopics`], forwarded from a client.
    CreateTopics = 3,
    /// [`ControllerRequest::DeleteTopics`], forwarded from a client.
    DeleteTopics = 4,
    /// [`ControllerRequest::CreatePartitions`], forwarded from a client.
    CreatePartitions = 5,
    /// [`ControllerRequest::AllocateProducerIds`] (API 67).
    AllocateProducerIds = 6,
    /// [`ControllerRequest::DescribeQuorum`], a client's DescribeQuorum (API 55) forwarded.
    DescribeQuorum = 7,
    /// [`ControllerRequest::AlterPartition`] (API 56, KIP-497): a partition leader's new ISR.
    AlterPartition = 8,
    /// [`ControllerRequest::ElectLeaders`], a client's preferred-leader ElectLeaders (API 43)
    /// forwarded.
    ElectLeaders = 9,
    /// [`ControllerRequest::AlterConfigs`], a client's IncrementalAlterConfigs (API 44) or
    /// AlterConfigs (API 33) of topics, forwarded.
    AlterConfigs = 10,
}

impl ControllerApi {
    /// Every api, in wire order.
    pub const ALL: [ControllerApi; 10] = [
        ControllerApi::RegisterBroker,
        ControllerApi::Heartbeat,
        ControllerApi::CreateTopics,
        ControllerApi::DeleteTopics,
        ControllerApi::CreatePartitions,
        ControllerApi::AllocateProducerIds,
        ControllerApi::DescribeQuorum,
        ControllerApi::AlterPartition,
        ControllerApi::ElectLeaders,
        ControllerApi::AlterConfigs,
    ];

    /// The byte on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for ControllerApi {
    type Error = ClusterError;

    fn try_from(code: u8) -> Result<ControllerApi, ClusterError> {
        ControllerApi::ALL
            .into_iter()
            .find(|api| api.code() == code)
            .ok_or(ClusterError::UnknownControllerApi(code))
    }
}

/// A request from a broker to the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerRequest {
    /// A broker that has started asks to join the cluster (it starts fenced).
    RegisterBroker {
        /// The broker.
        node_id: i32,
        /// Its run: larger than any earlier run of this node id (its Hello incarnation).
        incarnation: u64,
        /// Host clients connect to, at most [`HOST_BYTES_MAX`] bytes.
        client_host: String,
        /// Port clients connect to.
        client_port: u16,
        /// Host brokers connect to, at most [`HOST_BYTES_MAX`] bytes.
        cluster_host: String,
        /// Port brokers connect to.
        cluster_port: u16,
        /// Its rack, at most [`RACK_BYTES_MAX`] bytes.
        rack: Option<String>,
    },
    /// A registered broker says it is alive.
    Heartbeat {
        /// The broker.
        node_id: i32,
        /// Its registered run.
        incarnation: u64,
        /// It wants to shut down (controlled shutdown): move leadership away first.
        want_shutdown: bool,
        /// How far this broker has applied the metadata log.
        metadata_offset: u64,
    },
    /// Create topics (a client's CreateTopics, forwarded).
    CreateTopics {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`].
        topics: Vec<NewTopic>,
        /// Only check that the topics could be created.
        validate_only: bool,
    },
    /// Delete topics by name (a client's DeleteTopics, forwarded).
    DeleteTopics {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`], each at most [`TOPIC_NAME_BYTES_MAX`] bytes.
        names: Vec<String>,
    },
    /// Add partitions to topics (a client's CreatePartitions, forwarded).
    CreatePartitions {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`].
        topics: Vec<NewPartitions>,
    },
    /// A broker asks for a block of producer ids.
    AllocateProducerIds {
        /// The broker.
        node_id: i32,
        /// Its registered run.
        incarnation: u64,
    },
    /// How far each voter and observer has the metadata log, as only the leader knows.
    DescribeQuorum,
    /// A partition leader asks for new ISRs (KIP-497), one change per partition.
    AlterPartition {
        /// The sender, which must lead every partition named.
        node_id: i32,
        /// Its registered run: a request from an older run is refused as a whole.
        incarnation: u64,
        /// At most [`ALTER_PARTITION_PARTITIONS_MAX`]; each partition at most once (a second
        /// change of one partition is refused, see the controller).
        partitions: Vec<IsrChange>,
    },
    /// Move the leadership of each partition to its preferred (first) replica (a client's
    /// ElectLeaders with election type PREFERRED, forwarded).
    ElectLeaders {
        /// At most [`ELECT_LEADERS_PARTITIONS_MAX`], in the client's order.
        partitions: Vec<PartitionName>,
    },
    /// Change topics' configs (a client's IncrementalAlterConfigs or AlterConfigs of topic
    /// resources, forwarded): the controller applies the ops to the topic's overrides as it
    /// has them, checks the result and commits the changed keys.
    AlterConfigs {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`]; ops of all topics together at most
        /// [`CONTROLLER_RPC_CONFIGS_MAX`].
        topics: Vec<AlterTopicConfigs>,
        /// Only check that the changes could be made.
        validate_only: bool,
    },
}

/// One topic's config changes in an AlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterTopicConfigs {
    /// At most [`TOPIC_NAME_BYTES_MAX`] bytes.
    pub name: String,
    /// Kafka's legacy AlterConfigs: the ops (all SET) are the topic's whole set of overrides,
    /// and every other override is removed.
    pub replace_all: bool,
    /// In the client's order, at most [`CONFIGS_PER_TOPIC_MAX`].
    pub ops: Vec<ConfigOp>,
}

/// One config operation, as IncrementalAlterConfigs has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOp {
    /// At most [`CONFIG_KEY_BYTES_MAX`] bytes.
    pub key: String,
    /// Kafka's operation: 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT (the controller refuses others).
    pub op: u8,
    /// At most [`CONFIG_VALUE_BYTES_MAX`] bytes; `None` for DELETE.
    pub value: Option<String>,
}

/// One partition's ISR change in an AlterPartition request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    /// The topic.
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: i32,
    /// The leader epoch the sender leads in.
    pub leader_epoch: i32,
    /// The partition epoch of the state the change was computed from.
    pub partition_epoch: i32,
    /// The ISR asked for, at most [`REPLICAS_PER_PARTITION_MAX`] members.
    pub new_isr: Vec<IsrMember>,
}

/// A member of a proposed ISR, with the incarnation the leader saw it fetch with (KIP-903), so
/// that a follower which restarted since is not let back in on its previous run's fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrMember {
    /// The broker.
    pub node_id: i32,
    /// The incarnation it fetched with; `None` skips that check.
    pub incarnation: Option<u64>,
}

/// A partition named by topic and index, as clients name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionName {
    /// At most [`TOPIC_NAME_BYTES_MAX`] bytes.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// At most [`TOPIC_NAME_BYTES_MAX`] bytes (the controller checks the characters).
    pub name: String,
    /// Partition count, or -1 for the controller's default.
    pub partitions: i32,
    /// Replication factor, or -1 for the controller's default.
    pub replication_factor: i16,
    /// The replicas of each partition, in partition order, when the client chose them: at most
    /// [`PARTITIONS_PER_ASSIGNMENT_MAX`] partitions of at most [`REPLICAS_PER_PARTITION_MAX`].
    pub assignment: Option<Vec<Vec<i32>>>,
    /// Configs in the order given, at most [`CONFIGS_PER_TOPIC_MAX`].
    pub configs: Vec<(String, String)>,
}

/// One topic to add partitions to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartitions {
    /// At most [`TOPIC_NAME_BYTES_MAX`] bytes.
    pub name: String,
    /// The partition count wanted (the new total, as in Kafka).
    pub count: i32,
    /// The replicas of each new partition, when the client chose them.
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// The controller's answer to a [`ControllerRequest`].
///
/// The status is common to every api, so a sender retries on `NOT_CONTROLLER` without looking
/// at the answer; when `error_code` is not NONE the answer is [`ControllerAnswer::empty`] and
/// means nothing.
///
/// ```
/// use bytes::Bytes;
/// use spate_wire::cluster::{
///     encode_frame, Body, ControllerApi, ControllerRequest, ControllerResponse, Envelope,
///     FrameKind, FRAME_HEADER_BYTES, VERSION_MAX,
/// };
/// use spate_wire::ErrorCode;
///
/// let request = ControllerRequest::Heartbeat {
///     node_id: 1,
///     incarnation: 7,
///     want_shutdown: false,
///     metadata_offset: 42,
/// };
/// // A voter that is not the leader, but knows that node 3 is, answers any request so.
/// let answer = ControllerResponse::not_controller(request.api(), Some(3));
/// let envelope = Envelope { version: VERSION_MAX, correlation_id: 9, sender_node_id: 2 };
/// let frame = encode_frame(&envelope, &Body::ControllerResponse(answer)).to_bytes();
///
/// let payload = Bytes::copy_from_slice(&frame[FRAME_HEADER_BYTES..]);
/// let Body::ControllerResponse(response) =
///     Body::decode_payload(FrameKind::ControllerResponse, VERSION_MAX, &payload).unwrap()
/// else {
///     unreachable!()
/// };
/// assert_eq!(response.api(), ControllerApi::Heartbeat);
/// if response.error_code == ErrorCode::NotController {
///     assert_eq!(response.leader_hint, Some(3)); // send the heartbeat again, to node 3
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerResponse {
    /// NONE, or why the whole request failed: `NOT_CONTROLLER` (retry at `leader_hint`),
    /// `STALE_BROKER_EPOCH`, `INVALID_REQUEST`...
    pub error_code: ErrorCode,
    /// With `NOT_CONTROLLER` only: the leader this voter knows of, if any (never negative).
    pub leader_hint: Option<i32>,
    /// For the log, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes.
    pub message: Option<String>,
    /// What the api answers; its api is the request's.
    pub answer: ControllerAnswer,
}

/// The api-specific part of a [`ControllerResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerAnswer {
    /// Registered (the status says it all).
    RegisterBroker,
    /// The broker's state as the controller sees it.
    Heartbeat {
        /// The broker leads nothing until a heartbeat unfences it.
        fenced: bool,
        /// A controlled shutdown is done: the broker may stop.
        should_shut_down: bool,
    },
    /// One result per topic asked for.
    CreateTopics {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`].
        results: Vec<CreateTopicResult>,
    },
    /// One result per name asked for.
    DeleteTopics {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`].
        results: Vec<TopicResult>,
    },
    /// One result per topic asked for.
    CreatePartitions {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`].
        results: Vec<TopicResult>,
    },
    /// A block of producer ids: `first_id..first_id + count`.
    AllocateProducerIds {
        /// The first id of the block.
        first_id: i64,
        /// How many.
        count: i32,
    },
    /// The quorum as its leader sees it.
    DescribeQuorum {
        /// The leader (never negative in a successful answer).
        leader: i32,
        /// Its Raft term (Kafka's leader epoch of the metadata partition).
        term: u64,
        /// The highest committed offset (Kafka's high watermark).
        committed: u64,
        /// At most [`QUORUM_REPLICAS_MAX`].
        voters: Vec<QuorumReplica>,
        /// Registered brokers that are not voters, at most [`QUORUM_REPLICAS_MAX`].
        observers: Vec<QuorumReplica>,
    },
    /// One result per partition asked for, in request order.
    AlterPartition {
        /// At most [`ALTER_PARTITION_PARTITIONS_MAX`].
        results: Vec<IsrChangeResult>,
    },
    /// One result per partition asked for, in request order.
    ElectLeaders {
        /// At most [`ELECT_LEADERS_PARTITIONS_MAX`].
        results: Vec<ElectLeadersResult>,
    },
    /// One result per topic asked for, in request order.
    AlterConfigs {
        /// At most [`CONTROLLER_RPC_TOPICS_MAX`].
        results: Vec<TopicResult>,
        /// The metadata log offset that holds every change made (0 if none): a forwarding
        /// broker answers its client once its own image got that far.
        metadata_offset: u64,
    },
}

/// How one partition's ISR change went: its state once the change committed, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChangeResult {
    /// The topic.
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: i32,
    /// NONE, or why not (`INVALID_UPDATE_VERSION`, `FENCED_LEADER_EPOCH`, `INELIGIBLE_REPLICA`,
    /// `UNKNOWN_TOPIC_ID`...).
    pub error_code: ErrorCode,
    /// The leader, -1 for none (and on error).
    pub leader: i32,
    /// The leader epoch (-1 on error).
    pub leader_epoch: i32,
    /// The partition epoch of the new state (-1 on error).
    pub partition_epoch: i32,
    /// The ISR, at most [`REPLICAS_PER_PARTITION_MAX`] (empty on error).
    pub isr: Vec<i32>,
}

/// How a preferred-leader election of one partition went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectLeadersResult {
    /// At most [`TOPIC_NAME_BYTES_MAX`] bytes.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// NONE (elected), `ELECTION_NOT_NEEDED`, `PREFERRED_LEADER_NOT_AVAILABLE`,
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub error_code: ErrorCode,
    /// For the client, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes.
    pub message: Option<String>,
}

/// One replica of the metadata log in a [`ControllerAnswer::DescribeQuorum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumReplica {
    /// The broker.
    pub node_id: i32,
    /// The offset after the last one it is known to hold, -1 if unknown.
    pub log_end: i64,
    /// Wall-clock ms of its last fetch (or heartbeat), -1 if unknown.
    pub last_fetch_ms: i64,
    /// Wall-clock ms when it last had everything the leader had, -1 if unknown.
    pub last_caught_up_ms: i64,
}

/// Most voters or observers in a [`ControllerAnswer::DescribeQuorum`].
pub const QUORUM_REPLICAS_MAX: usize = 1024;
/// Encoded size of a [`QuorumReplica`].
const QUORUM_REPLICA_BYTES: usize = 4 + 8 + 8 + 8;

/// How creating one topic went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicResult {
    /// The topic, at most [`TOPIC_NAME_BYTES_MAX`] bytes.
    pub name: String,
    /// NONE, or why it was not created (`TOPIC_ALREADY_EXISTS`, `INVALID_REPLICATION_FACTOR`...).
    pub error_code: ErrorCode,
    /// For the client, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes.
    pub message: Option<String>,
    /// The new topic's id (zero on error).
    pub topic_id: [u8; 16],
    /// Its partition count (-1 on error).
    pub partitions: i32,
}

/// How deleting, or adding partitions to, one topic went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    /// The topic, at most [`TOPIC_NAME_BYTES_MAX`] bytes.
    pub name: String,
    /// NONE, or why not.
    pub error_code: ErrorCode,
    /// For the client, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes.
    pub message: Option<String>,
}

/// Running totals of the per-request limits.
#[derive(Default)]
struct Totals {
    configs: usize,
    assigned_partitions: usize,
    assigned_replicas: usize,
}

fn add(total: &mut usize, n: usize, what: &'static str, max: usize) -> Result<(), ClusterError> {
    let sum = total.saturating_add(n);
    over_limit(what, sum, max)?;
    *total = sum;
    Ok(())
}

impl ControllerRequest {
    /// The api of this request.
    pub fn api(&self) -> ControllerApi {
        match self {
            ControllerRequest::RegisterBroker { .. } => ControllerApi::RegisterBroker,
            ControllerRequest::Heartbeat { .. } => ControllerApi::Heartbeat,
            ControllerRequest::CreateTopics { .. } => ControllerApi::CreateTopics,
            ControllerRequest::DeleteTopics { .. } => ControllerApi::DeleteTopics,
            ControllerRequest::CreatePartitions { .. } => ControllerApi::CreatePartitions,
            ControllerRequest::AllocateProducerIds { .. } => ControllerApi::AllocateProducerIds,
            ControllerRequest::DescribeQuorum => ControllerApi::DescribeQuorum,
            ControllerRequest::AlterPartition { .. } => ControllerApi::AlterPartition,
            ControllerRequest::ElectLeaders { .. } => ControllerApi::ElectLeaders,
            ControllerRequest::AlterConfigs { .. } => ControllerApi::AlterConfigs,
        }
    }

    /// Checks every limit, as the decoder would: a request that passes can be encoded.
    ///
    /// # Errors
    /// [`ClusterError::OverLimit`] naming the first limit broken.
    pub fn validate(&self) -> Result<(), ClusterError> {
        match self {
            ControllerRequest::RegisterBroker {
                client_host,
                cluster_host,
                rack,
                ..
            } => {
                over_limit("client host", client_host.len(), HOST_BYTES_MAX)?;
                over_limit("cluster host", cluster_host.len(), HOST_BYTES_MAX)?;
                let rack_bytes = rack.as_ref().map_or(0, String::len);
                over_limit("rack", rack_bytes, RACK_BYTES_MAX)
            }
            ControllerRequest::Heartbeat { .. }
            | ControllerRequest::AllocateProducerIds { .. }
            | ControllerRequest::DescribeQuorum => Ok(()),
            ControllerRequest::CreateTopics { topics, .. } => {
                over_limit(
                    "controller rpc topics",
                    topics.len(),
                    CONTROLLER_RPC_TOPICS_MAX,
                )?;
                let mut totals = Totals::default();
                for topic in topics {
                    check_name(&topic.name)?;
                    check_assignment(topic.assignment.as_deref(), &mut totals)?;
                    over_limit(
                        "configs per topic",
                        topic.configs.len(),
                        CONFIGS_PER_TOPIC_MAX,
                    )?;
                    add(
                        &mut totals.configs,
                        topic.configs.len(),
                        "controller rpc configs",
                        CONTROLLER_RPC_CONFIGS_MAX,
                    )?;
                    for (key, value) in &topic.configs {
                        over_limit("config key", key.len(), CONFIG_KEY_BYTES_MAX)?;
                        over_limit("config value", value.len(), CONFIG_VALUE_BYTES_MAX)?;
                    }
                }
                Ok(())
            }
            ControllerRequest::DeleteTopics { names } => {
                over_limit(
                    "controller rpc topics",
                    names.len(),
                    CONTROLLER_RPC_TOPICS_MAX,
                )?;
                names.iter().try_for_each(|name| check_name(name))
            }
            ControllerRequest::CreatePartitions { topics } => {
                over_limit(
                    "controller rpc topics",
                    topics.len(),
                    CONTROLLER_RPC_TOPICS_MAX,
                )?;
                let mut totals = Totals::default();
                for topic in topics {
                    check_name(&topic.name)?;
                    check_assignment(topic.assignment.as_deref(), &mut totals)?;
                }
                Ok(())
            }
            ControllerRequest::AlterPartition { partitions, .. } => {
                check_isr_change_count(partitions.len())?;
                partitions
                    .iter()
                    .try_for_each(|change| check_isr_len(change.new_isr.len()))
            }
            ControllerRequest::ElectLeaders { partitions } => {
                check_election_count(partitions.len())?;
                partitions.iter().try_for_each(|p| check_name(&p.topic))
            }
            ControllerRequest::AlterConfigs { topics, .. } => {
                over_limit(
                    "controller rpc topics",
                    topics.len(),
                    CONTROLLER_RPC_TOPICS_MAX,
                )?;
                let mut totals = Totals::default();
                for topic in topics {
                    check_name(&topic.name)?;
                    over_limit("configs per topic", topic.ops.len(), CONFIGS_PER_TOPIC_MAX)?;
                    add(
                        &mut totals.configs,
                        topic.ops.len(),
                        "controller rpc configs",
                        CONTROLLER_RPC_CONFIGS_MAX,
                    )?;
                    for op in &topic.ops {
                        over_limit("config key", op.key.len(), CONFIG_KEY_BYTES_MAX)?;
                        let value_bytes = op.value.as_ref().map_or(0, String::len);
                        over_limit("config value", value_bytes, CONFIG_VALUE_BYTES_MAX)?;
                    }
                }
                Ok(())
            }
        }
    }

    pub(crate) fn encoded_bytes(&self) -> usize {
        API_BYTES
            + match self {
                ControllerRequest::RegisterBroker {
                    client_host,
                    cluster_host,
                    rack,
                    ..
                } => {
                    4 + 8
                        + str_bytes(client_host)
                        + 2
                        + str_bytes(cluster_host)
                        + 2
                        + opt_str_bytes(rack)
                }
                ControllerRequest::Heartbeat { .. } => 4 + 8 + FLAG_BYTES + 8,
                ControllerRequest::CreateTopics { topics, .. } => {
                    FLAG_BYTES
                        + COUNT32_BYTES
                        + topics
                            .iter()
                            .map(|t| {
                                str_bytes(&t.name)
                                    + 4
                                    + 2
                                    + assignment_bytes(t.assignment.as_deref())
                                    + 2
                                    + t.configs
                                        .iter()
                                        .map(|(k, v)| str_bytes(k) + str_bytes(v))
                                        .sum::<usize>()
                            })
                            .sum::<usize>()
                }
                ControllerRequest::DeleteTopics { names } => {
                    COUNT32_BYTES + names.iter().map(|n| str_bytes(n)).sum::<usize>()
                }
                ControllerRequest::CreatePartitions { topics } => {
                    COUNT32_BYTES
                        + topics
                            .iter()
                            .map(|t| {
                                str_bytes(&t.name) + 4 + assignment_bytes(t.assignment.as_deref())
                            })
                            .sum::<usize>()
                }
                ControllerRequest::AllocateProducerIds { .. } => 4 + 8,
                ControllerRequest::DescribeQuorum => 0,
                ControllerRequest::AlterPartition { partitions, .. } => {
                    4 + 8
                        + COUNT32_BYTES
                        + partitions
                            .iter()
                            .map(|change| {
                                ISR_CHANGE_FIXED_BYTES
                                    + change
                                        .new_isr
                                        .iter()
                                        .map(|m| 4 + FLAG_BYTES + m.incarnation.map_or(0, |_| 8))
                                        .sum::<usize>()
                            })
                            .sum::<usize>()
                }
                ControllerRequest::ElectLeaders { partitions } => {
                    COUNT32_BYTES
                        + partitions
                            .iter()
                            .map(|p| str_bytes(&p.topic) + 4)
                            .sum::<usize>()
                }
                ControllerRequest::AlterConfigs { topics, .. } => {
                    FLAG_BYTES
                        + COUNT32_BYTES
                        + topics
                            .iter()
                            .map(|t| {
                                str_bytes(&t.name)
                                    + FLAG_BYTES
                                    + LEN16_BYTES
                                    + t.ops
                                        .iter()
                                        .map(|o| str_bytes(&o.key) + 1 + opt_str_bytes(&o.value))
                                        .sum::<usize>()
                            })
                            .sum::<usize>()
                }
            }
    }

    /// # Panics
    /// If the request breaks a limit ([`ControllerRequest::validate`]): the sender must check
    /// before building a frame. Checked in release builds too: these requests are few and
    /// small next to the CRC computed over them anyway.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        if let Err(error) = self.validate() {
            panic!("controller request breaks a limit: {error}");
        }
        self.encode_unchecked(out);
    }

    fn encode_unchecked(&self, out: &mut BytesMut) {
        out.put_u8(self.api().code());
        match self {
            ControllerRequest::RegisterBroker {
                node_id,
                incarnation,
                client_host,
                client_port,
                cluster_host,
                cluster_port,
                rack,
            } => {
                out.put_i32(*node_id);
                out.put_u64(*incarnation);
                put_str16(out, client_host);
                out.put_u16(*client_port);
                put_str16(out, cluster_host);
                out.put_u16(*cluster_port);
                put_opt_str(out, rack.as_deref());
            }
            ControllerRequest::Heartbeat {
                node_id,
                incarnation,
                want_shutdown,
                metadata_offset,
            } => {
                out.put_i32(*node_id);
                out.put_u64(*incarnation);
                out.put_u8(u8::from(*want_shutdown));
                out.put_u64(*metadata_offset);
            }
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => {
                out.put_u8(u8::from(*validate_only));
                out.put_u32(topics.len() as u32);
                for topic in topics {
                    put_str16(out, &topic.name);
                    out.put_i32(topic.partitions);
                    out.put_i16(topic.replication_factor);
                    put_assignment(out, topic.assignment.as_deref());
                    out.put_u16(topic.configs.len() as u16);
                    for (key, value) in &topic.configs {
                        put_str16(out, key);
                        put_str16(out, value);
                    }
                }
            }
            ControllerRequest::DeleteTopics { names } => {
                out.put_u32(names.len() as u32);
                for name in names {
                    put_str16(out, name);
                }
            }
            ControllerRequest::CreatePartitions { topics } => {
                out.put_u32(topics.len() as u32);
                for topic in topics {
                    put_str16(out, &topic.name);
                    out.put_i32(topic.count);
                    put_assignment(out, topic.assignment.as_deref());
                }
            }
            ControllerRequest::AllocateProducerIds {
                node_id,
                incarnation,
            } => {
                out.put_i32(*node_id);
                out.put_u64(*incarnation);
            }
            ControllerRequest::DescribeQuorum => {}
            ControllerRequest::AlterPartition {
                node_id,
                incarnation,
                partitions,
            } => {
                out.put_i32(*node_id);
                out.put_u64(*incarnation);
                out.put_u32(partitions.len() as u32);
                for change in partitions {
                    out.put_slice(&change.topic_id);
                    out.put_i32(change.partition);
                    out.put_i32(change.leader_epoch);
                    out.put_i32(change.partition_epoch);
                    out.put_u16(change.new_isr.len() as u16);
                    for member in &change.new_isr {
                        out.put_i32(member.node_id);
                        match member.incarnation {
                            None => out.put_u8(0),
                            Some(incarnation) => {
                                out.put_u8(1);
                                out.put_u64(incarnation);
                            }
                        }
                    }
                }
            }
            ControllerRequest::ElectLeaders { partitions } => {
                out.put_u32(partitions.len() as u32);
                for p in partitions {
                    put_str16(out, &p.topic);
                    out.put_i32(p.partition);
                }
            }
            ControllerRequest::AlterConfigs {
                topics,
                validate_only,
            } => {
                out.put_u8(u8::from(*validate_only));
                out.put_u32(topics.len() as u32);
                for topic in topics {
                    put_str16(out, &topic.name);
                    out.put_u8(u8::from(topic.replace_all));
                    out.put_u16(topic.ops.len() as u16);
                    for op in &topic.ops {
                        put_str16(out, &op.key);
                        out.put_u8(op.op);
                        put_opt_str(out, op.value.as_deref());
                    }
                }
            }
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<ControllerRequest, ClusterError> {
        let r = &mut reader;
        let api = ControllerApi::try_from(r.u8()?)?;
        let request = match api {
            ControllerApi::RegisterBroker => ControllerRequest::RegisterBroker {
                node_id: r.fixed::<I32>()?.get(),
                incarnation: r.fixed::<U64>()?.get(),
                client_host: read_str(r, HOST_BYTES_MAX, "client host")?,
                client_port: r.fixed::<U16>()?.get(),
                cluster_host: read_str(r, HOST_BYTES_MAX, "cluster host")?,
                cluster_port: r.fixed::<U16>()?.get(),
                rack: read_opt_str(r, RACK_BYTES_MAX, "rack")?,
            },
            ControllerApi::Heartbeat => ControllerRequest::Heartbeat {
                node_id: r.fixed::<I32>()?.get(),
                incarnation: r.fixed::<U64>()?.get(),
                want_shutdown: r.flag("want_shutdown flag")?,
                metadata_offset: r.fixed::<U64>()?.get(),
            },
            ControllerApi::CreateTopics => {
                let validate_only = r.flag("validate_only flag")?;
                let count = read_topic_count(r, NEW_TOPIC_BYTES_MIN)?;
                let mut totals = Totals::default();
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(read_new_topic(r, &mut totals)?);
                }
                ControllerRequest::CreateTopics {
                    topics,
                    validate_only,
                }
            }
            ControllerApi::DeleteTopics => {
                let count = read_topic_count(r, NAME_BYTES_MIN)?;
                let mut names = Vec::with_capacity(count);
                for _ in 0..count {
                    names.push(read_name(r)?);
                }
                ControllerRequest::DeleteTopics { names }
            }
            ControllerApi::CreatePartitions => {
                let count = read_topic_count(r, NEW_PARTITIONS_BYTES_MIN)?;
                let mut totals = Totals::default();
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(NewPartitions {
                        name: read_name(r)?,
                        count: r.fixed::<I32>()?.get(),
                        assignment: read_assignment(r, &mut totals)?,
                    });
                }
                ControllerRequest::CreatePartitions { topics }
            }
            ControllerApi::AllocateProducerIds => ControllerRequest::AllocateProducerIds {
                node_id: r.fixed::<I32>()?.get(),
                incarnation: r.fixed::<U64>()?.get(),
            },
            ControllerApi::DescribeQuorum => ControllerRequest::DescribeQuorum,
            ControllerApi::AlterPartition => ControllerRequest::AlterPartition {
                node_id: r.fixed::<I32>()?.get(),
                incarnation: r.fixed::<U64>()?.get(),
                partitions: read_isr_changes(r)?,
            },
            ControllerApi::ElectLeaders => {
                let count = r.fixed::<U32>()?.get() as usize;
                check_election_count(count)?;
                r.room_for(count, PARTITION_NAME_BYTES_MIN)?;
                let mut partitions = Vec::with_capacity(count);
                for _ in 0..count {
                    partitions.push(PartitionName {
                        topic: read_name(r)?,
                        partition: r.fixed::<I32>()?.get(),
                    });
                }
                ControllerRequest::ElectLeaders { partitions }
            }
            ControllerApi::AlterConfigs => {
                let validate_only = r.flag("validate_only flag")?;
                let count = read_topic_count(r, ALTER_TOPIC_BYTES_MIN)?;
                let mut totals = Totals::default();
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(read_alter_topic(r, &mut totals)?);
                }
                ControllerRequest::AlterConfigs {
                    topics,
                    validate_only,
                }
            }
        };
        reader.finish()?;
        Ok(request)
    }
}

impl ControllerAnswer {
    /// The api this answers.
    pub fn api(&self) -> ControllerApi {
        match self {
            ControllerAnswer::RegisterBroker => ControllerApi::RegisterBroker,
            ControllerAnswer::Heartbeat { .. } => ControllerApi::Heartbeat,
            ControllerAnswer::CreateTopics { .. } => ControllerApi::CreateTopics,
            ControllerAnswer::DeleteTopics { .. } => ControllerApi::DeleteTopics,
            ControllerAnswer::CreatePartitions { .. } => ControllerApi::CreatePartitions,
            ControllerAnswer::AllocateProducerIds { .. } => ControllerApi::AllocateProducerIds,
            ControllerAnswer::DescribeQuorum { .. } => ControllerApi::DescribeQuorum,
            ControllerAnswer::AlterPartition { .. } => ControllerApi::AlterPartition,
            ControllerAnswer::ElectLeaders { .. } => ControllerApi::ElectLeaders,
            ControllerAnswer::AlterConfigs { .. } => ControllerApi::AlterConfigs,
        }
    }

    /// The answer that goes with a failed request: flags false, no results, no ids
    /// (`first_id` -1, `count` 0).
    pub fn empty(api: ControllerApi) -> ControllerAnswer {
        match api {
            ControllerApi::RegisterBroker => ControllerAnswer::RegisterBroker,
            ControllerApi::Heartbeat => ControllerAnswer::Heartbeat {
                fenced: false,
                should_shut_down: false,
            },
            ControllerApi::CreateTopics => ControllerAnswer::CreateTopics {
                results: Vec::new(),
            },
            ControllerApi::DeleteTopics => ControllerAnswer::DeleteTopics {
                results: Vec::new(),
            },
            ControllerApi::CreatePartitions => ControllerAnswer::CreatePartitions {
                results: Vec::new(),
            },
            ControllerApi::AllocateProducerIds => ControllerAnswer::AllocateProducerIds {
                first_id: -1,
                count: 0,
            },
            ControllerApi::DescribeQuorum => ControllerAnswer::DescribeQuorum {
                leader: -1,
                term: 0,
                committed: 0,
                voters: Vec::new(),
                observers: Vec::new(),
            },
            ControllerApi::AlterPartition => ControllerAnswer::AlterPartition {
                results: Vec::new(),
            },
            ControllerApi::ElectLeaders => ControllerAnswer::ElectLeaders {
                results: Vec::new(),
            },
            ControllerApi::AlterConfigs => ControllerAnswer::AlterConfigs {
                results: Vec::new(),
                metadata_offset: 0,
            },
        }
    }
}

impl ControllerResponse {
    /// A successful response.
    pub fn ok(answer: ControllerAnswer) -> ControllerResponse {
        ControllerResponse {
            error_code: ErrorCode::None,
            leader_hint: None,
            message: None,
            answer,
        }
    }

    /// What a voter that does not lead answers to any request of `api`.
    ///
    /// # Panics
    /// If `leader_hint` is negative.
    pub fn not_controller(api: ControllerApi, leader_hint: Option<i32>) -> ControllerResponse {
        assert!(leader_hint.is_none_or(|id| id >= 0), "negative leader hint");
        ControllerResponse {
            error_code: ErrorCode::NotController,
            leader_hint,
            message: None,
            answer: ControllerAnswer::empty(api),
        }
    }

    /// A whole request of `api` failed with `error_code`; `message` is cut (at a character
    /// boundary) to [`ERROR_MESSAGE_BYTES_MAX`].
    ///
    /// # Panics
    /// If `error_code` is NONE.
    pub fn failed(api: ControllerApi, error_code: ErrorCode, message: &str) -> ControllerResponse {
        assert_ne!(
            error_code,
            ErrorCode::None,
            "a failed response needs an error"
        );
        ControllerResponse {
            error_code,
            leader_hint: None,
            message: Some(cut(message, ERROR_MESSAGE_BYTES_MAX).to_owned()),
            answer: ControllerAnswer::empty(api),
        }
    }

    /// The api this answers.
    pub fn api(&self) -> ControllerApi {
        self.answer.api()
    }

    /// Checks every limit and rule, as the decoder would: a response that passes can be
    /// encoded.
    ///
    /// # Errors
    /// [`ClusterError::OverLimit`] for a count or length over its limit,
    /// [`ClusterError::Malformed`] for a leader hint without `NOT_CONTROLLER` or a negative one.
    pub fn validate(&self) -> Result<(), ClusterError> {
        check_leader_hint(self.error_code, self.leader_hint)?;
        check_message(self.message.as_deref())?;
        match &self.answer {
            ControllerAnswer::RegisterBroker
            | ControllerAnswer::Heartbeat { .. }
            | ControllerAnswer::AllocateProducerIds { .. } => Ok(()),
            ControllerAnswer::DescribeQuorum {
                voters, observers, ..
            } => {
                over_limit("quorum voters", voters.len(), QUORUM_REPLICAS_MAX)?;
                over_limit("quorum observers", observers.len(), QUORUM_REPLICAS_MAX)
            }
            ControllerAnswer::CreateTopics { results } => {
                over_limit(
                    "controller rpc topics",
                    results.len(),
                    CONTROLLER_RPC_TOPICS_MAX,
                )?;
                results.iter().try_for_each(|result| {
                    check_name(&result.name)?;
                    check_message(result.message.as_deref())
                })
            }
            ControllerAnswer::DeleteTopics { results }
            | ControllerAnswer::CreatePartitions { results }
            | ControllerAnswer::AlterConfigs { results, .. } => {
                over_limit(
                    "controller rpc topics",
                    results.len(),
                    CONTROLLER_RPC_TOPICS_MAX,
                )?;
                results.iter().try_for_each(|result| {
                    check_name(&result.name)?;
                    check_message(result.message.as_deref())
                })
            }
            ControllerAnswer::AlterPartition { results } => {
                check_isr_change_count(results.len())?;
                results
                    .iter()
                    .try_for_each(|result| check_isr_len(result.isr.len()))
            }
            ControllerAnswer::ElectLeaders { results } => {
                check_election_count(results.len())?;
                results.iter().try_for_each(|result| {
                    check_name(&result.topic)?;
                    check_message(result.message.as_deref())
                })
            }
        }
    }

    pub(crate) fn encoded_bytes(&self) -> usize {
        let status = API_BYTES
            + 2
            + FLAG_BYTES
            + self.leader_hint.map_or(0, |_| 4)
            + opt_str_bytes(&self.message);
        status
            + match &self.answer {
                ControllerAnswer::RegisterBroker => 0,
                ControllerAnswer::Heartbeat { .. } => 2 * FLAG_BYTES,
                ControllerAnswer::CreateTopics { results } => {
                    COUNT32_BYTES
                        + results
                            .iter()
                            .map(|r| {
                                str_bytes(&r.name)
                                    + 2
                                    + opt_str_bytes(&r.message)
                                    + TOPIC_ID_BYTES
                                    + 4
                            })
                            .sum::<usize>()
                }
                ControllerAnswer::DeleteTopics { results }
                | ControllerAnswer::CreatePartitions { results } => {
                    COUNT32_BYTES
                        + results
                            .iter()
                            .map(|r| str_bytes(&r.name) + 2 + opt_str_bytes(&r.message))
                            .sum::<usize>()
                }
                ControllerAnswer::AlterConfigs { results, .. } => {
                    COUNT32_BYTES
                        + results
                            .iter()
                            .map(|r| str_bytes(&r.name) + 2 + opt_str_bytes(&r.message))
                            .sum::<usize>()
                        + 8
                }
                ControllerAnswer::AllocateProducerIds { .. } => 8 + 4,
                ControllerAnswer::DescribeQuorum {
                    voters, observers, ..
                } => 4 + 8 + 8 + 2 * 2 + (voters.len() + observers.len()) * QUORUM_REPLICA_BYTES,
                ControllerAnswer::AlterPartition { results } => {
                    COUNT32_BYTES
                        + results
                            .iter()
                            .map(|r| ISR_CHANGE_RESULT_FIXED_BYTES + r.isr.len() * REPLICA_ID_BYTES)
                            .sum::<usize>()
                }
                ControllerAnswer::ElectLeaders { results } => {
                    COUNT32_BYTES
                        + results
                            .iter()
                            .map(|r| str_bytes(&r.topic) + 4 + 2 + opt_str_bytes(&r.message))
                            .sum::<usize>()
                }
            }
    }

    /// # Panics
    /// If the response breaks a limit or rule ([`ControllerResponse::validate`]).
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        if let Err(error) = self.validate() {
            panic!("controller response breaks a limit: {error}");
        }
        self.encode_unchecked(out);
    }

    fn encode_unchecked(&self, out: &mut BytesMut) {
        out.put_u8(self.api().code());
        out.put_i16(self.error_code.code());
        match self.leader_hint {
            None => out.put_u8(0),
            Some(id) => {
                out.put_u8(1);
                out.put_i32(id);
            }
        }
        put_opt_str(out, self.message.as_deref());
        match &self.answer {
            ControllerAnswer::RegisterBroker => {}
            ControllerAnswer::Heartbeat {
                fenced,
                should_shut_down,
            } => {
                out.put_u8(u8::from(*fenced));
                out.put_u8(u8::from(*should_shut_down));
            }
            ControllerAnswer::CreateTopics { results } => {
                out.put_u32(results.len() as u32);
                for result in results {
                    put_str16(out, &result.name);
                    out.put_i16(result.error_code.code());
                    put_opt_str(out, result.message.as_deref());
                    out.put_slice(&result.topic_id);
                    out.put_i32(result.partitions);
                }
            }
            ControllerAnswer::DeleteTopics { results }
            | ControllerAnswer::CreatePartitions { results } => {
                put_topic_results(out, results);
            }
            ControllerAnswer::AlterConfigs {
                results,
                metadata_offset,
            } => {
                put_topic_results(out, results);
                out.put_u64(*metadata_offset);
            }
            ControllerAnswer::AllocateProducerIds { first_id, count } => {
                out.put_i64(*first_id);
                out.put_i32(*count);
            }
            ControllerAnswer::DescribeQuorum {
                leader,
                term,
                committed,
                voters,
                observers,
            } => {
                out.put_i32(*leader);
                out.put_u64(*term);
                out.put_u64(*committed);
                for replicas in [voters, observers] {
                    out.put_u16(replicas.len() as u16);
                    for replica in replicas {
                        out.put_i32(replica.node_id);
                        out.put_i64(replica.log_end);
                        out.put_i64(replica.last_fetch_ms);
                        out.put_i64(replica.last_caught_up_ms);
                    }
                }
            }
            ControllerAnswer::AlterPartition { results } => {
                out.put_u32(results.len() as u32);
                for result in results {
                    out.put_slice(&result.topic_id);
                    out.put_i32(result.partition);
                    out.put_i16(result.error_code.code());
                    out.put_i32(result.leader);
                    out.put_i32(result.leader_epoch);
                    out.put_i32(result.partition_epoch);
                    out.put_u16(result.isr.len() as u16);
                    for id in &result.isr {
                        out.put_i32(*id);
                    }
                }
            }
            ControllerAnswer::ElectLeaders { results } => {
                out.put_u32(results.len() as u32);
                for result in results {
                    put_str16(out, &result.topic);
                    out.put_i32(result.partition);
                    out.put_i16(result.error_code.code());
                    put_opt_str(out, result.message.as_deref());
                }
            }
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<ControllerResponse, ClusterError> {
        let r = &mut reader;
        let api = ControllerApi::try_from(r.u8()?)?;
        let error_code = decode_error_code(r.fixed::<I16>()?.get())?;
        let leader_hint = match r.flag("leader hint flag")? {
            false => None,
            true => Some(r.fixed::<I32>()?.get()),
        };
        check_leader_hint(error_code, leader_hint)?;
        let message = read_opt_str(r, ERROR_MESSAGE_BYTES_MAX, "message")?;
        let answer = match api {
            ControllerApi::RegisterBroker => ControllerAnswer::RegisterBroker,
            ControllerApi::Heartbeat => ControllerAnswer::Heartbeat {
                fenced: r.flag("fenced flag")?,
                should_shut_down: r.flag("should_shut_down flag")?,
            },
            ControllerApi::CreateTopics => {
                let count = read_topic_count(r, CREATE_TOPIC_RESULT_BYTES_MIN)?;
                let mut results = Vec::with_capacity(count);
                for _ in 0..count {
                    results.push(CreateTopicResult {
                        name: read_name(r)?,
                        error_code: decode_error_code(r.fixed::<I16>()?.get())?,
                        message: read_opt_str(r, ERROR_MESSAGE_BYTES_MAX, "message")?,
                        topic_id: *r.fixed::<[u8; 16]>()?,
                        partitions: r.fixed::<I32>()?.get(),
                    });
                }
                ControllerAnswer::CreateTopics { results }
            }
            ControllerApi::DeleteTopics => ControllerAnswer::DeleteTopics {
                results: read_topic_results(r)?,
            },
            ControllerApi::CreatePartitions => ControllerAnswer::CreatePartitions {
                results: read_topic_results(r)?,
            },
            ControllerApi::AllocateProducerIds => ControllerAnswer::AllocateProducerIds {
                first_id: r.fixed::<I64>()?.get(),
                count: r.fixed::<I32>()?.get(),
            },
            ControllerApi::DescribeQuorum => ControllerAnswer::DescribeQuorum {
                leader: r.fixed::<I32>()?.get(),
                term: r.fixed::<U64>()?.get(),
                committed: r.fixed::<U64>()?.get(),
                voters: read_quorum_replicas(r, "quorum voters")?,
                observers: read_quorum_replicas(r, "quorum observers")?,
            },
            ControllerApi::AlterPartition => ControllerAnswer::AlterPartition {
                results: read_isr_change_results(r)?,
            },
            ControllerApi::ElectLeaders => ControllerAnswer::ElectLeaders {
                results: read_elect_leaders_results(r)?,
            },
            ControllerApi::AlterConfigs => ControllerAnswer::AlterConfigs {
                results: read_topic_results(r)?,
                metadata_offset: r.fixed::<U64>()?.get(),
            },
        };
        reader.finish()?;
        Ok(ControllerResponse {
            error_code,
            leader_hint,
            message,
            answer,
        })
    }
}

fn check_name(name: &str) -> Result<(), ClusterError> {
    over_limit("topic name", name.len(), TOPIC_NAME_BYTES_MAX)
}

fn check_message(message: Option<&str>) -> Result<(), ClusterError> {
    over_limit(
        "message",
        message.map_or(0, str::len),
        ERROR_MESSAGE_BYTES_MAX,
    )
}

fn check_leader_hint(error_code: ErrorCode, leader_hint: Option<i32>) -> Result<(), ClusterError> {
    match leader_hint {
        Some(_) if error_code != ErrorCode::NotController => Err(ClusterError::Malformed {
            what: "leader hint without NOT_CONTROLLER",
        }),
        Some(id) if id < 0 => Err(ClusterError::Malformed {
            what: "negative leader hint",
        }),
        _ => Ok(()),
    }
}

fn check_assignment(
    assignment: Option<&[Vec<i32>]>,
    totals: &mut Totals,
) -> Result<(), ClusterError> {
    let Some(partitions) = assignment else {
        return Ok(());
    };
    check_assignment_partitions(partitions.len(), totals)?;
    partitions
        .iter()
        .try_for_each(|replicas| check_assignment_replicas(replicas.len(), totals))
}

fn check_assignment_partitions(count: usize, totals: &mut Totals) -> Result<(), ClusterError> {
    over_limit(
        "assignment partitions",
        count,
        PARTITIONS_PER_ASSIGNMENT_MAX,
    )?;
    add(
        &mut totals.assigned_partitions,
        count,
        "controller rpc assigned partitions",
        CONTROLLER_RPC_ASSIGNED_PARTITIONS_MAX,
    )
}

fn check_assignment_replicas(count: usize, totals: &mut Totals) -> Result<(), ClusterError> {
    over_limit("replicas per partition", count, REPLICAS_PER_PARTITION_MAX)?;
    add(
        &mut totals.assigned_replicas,
        count,
        "controller rpc assigned replicas",
        CONTROLLER_RPC_ASSIGNED_REPLICAS_MAX,
    )
}

fn check_isr_change_count(count: usize) -> Result<(), ClusterError> {
    over_limit(
        "alter partition partitions",
        count,
        ALTER_PARTITION_PARTITIONS_MAX,
    )
}

fn check_isr_len(count: usize) -> Result<(), ClusterError> {
    over_limit("isr members", count, REPLICAS_PER_PARTITION_MAX)
}

fn check_election_count(count: usize) -> Result<(), ClusterError> {
    over_limit(
        "elect leaders partitions",
        count,
        ELECT_LEADERS_PARTITIONS_MAX,
    )
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn str_bytes(s: &str) -> usize {
    LEN16_BYTES + s.len()
}

fn opt_str_bytes(s: &Option<String>) -> usize {
    FLAG_BYTES + s.as_deref().map_or(0, str_bytes)
}

fn assignment_bytes(assignment: Option<&[Vec<i32>]>) -> usize {
    FLAG_BYTES
        + assignment.map_or(0, |partitions| {
            COUNT32_BYTES
                + partitions
                    .iter()
                    .map(|replicas| ASSIGNED_PARTITION_BYTES + replicas.len() * REPLICA_ID_BYTES)
                    .sum::<usize>()
        })
}

fn put_opt_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_u8(0),
        Some(s) => {
            out.put_u8(1);
            put_str16(out, s);
        }
    }
}

fn put_assignment(out: &mut BytesMut, assignment: Option<&[Vec<i32>]>) {
    let Some(partitions) = assignment else {
        out.put_u8(0);
        return;
    };
    out.put_u8(1);
    out.put_u32(partitions.len() as u32);
    for replicas in partitions {
        out.put_u16(replicas.len() as u16);
        for id in replicas {
            out.put_i32(*id);
        }
    }
}

/// A u16-length string of at most `max` bytes.
fn read_str(r: &mut Reader<'_>, max: usize, what: &'static str) -> Result<String, ClusterError> {
    let len = usize::from(r.fixed::<U16>()?.get());
    over_limit(what, len, max)?;
    r.str(len, what)
}

fn read_opt_str(
    r: &mut Reader<'_>,
    max: usize,
    what: &'static str,
) -> Result<Option<String>, ClusterError> {
    match r.flag(what)? {
        false => Ok(None),
        true => read_str(r, max, what).map(Some),
    }
}

fn read_name(r: &mut Reader<'_>) -> Result<String, ClusterError> {
    read_str(r, TOPIC_NAME_BYTES_MAX, "topic name")
}

/// A u32 count of topics (or results) whose entries take at least `entry_bytes_min` each.
fn read_quorum_replicas(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Vec<QuorumReplica>, ClusterError> {
    let count = usize::from(r.fixed::<U16>()?.get());
    over_limit(what, count, QUORUM_REPLICAS_MAX)?;
    r.room_for(count, QUORUM_REPLICA_BYTES)?;
    let mut replicas = Vec::with_capacity(count);
    for _ in 0..count {
        replicas.push(QuorumReplica {
            node_id: r.fixed::<I32>()?.get(),
            log_end: r.fixed::<I64>()?.get(),
            last_fetch_ms: r.fixed::<I64>()?.get(),
            last_caught_up_ms: r.fixed::<I64>()?.get(),
        });
    }
    Ok(replicas)
}

fn read_topic_count(r: &mut Reader<'_>, entry_bytes_min: usize) -> Result<usize, ClusterError> {
    let count = r.fixed::<U32>()?.get() as usize;
    over_limit("controller rpc topics", count, CONTROLLER_RPC_TOPICS_MAX)?;
    r.room_for(count, entry_bytes_min)?;
    Ok(count)
}

fn read_new_topic(r: &mut Reader<'_>, totals: &mut Totals) -> Result<NewTopic, ClusterError> {
    let name = read_name(r)?;
    let partitions = r.fixed::<I32>()?.get();
    let replication_factor = r.fixed::<I16>()?.get();
    let assignment = read_assignment(r, totals)?;
    let count = usize::from(r.fixed::<U16>()?.get());
    over_limit("configs per topic", count, CONFIGS_PER_TOPIC_MAX)?;
    add(
        &mut totals.configs,
        count,
        "controller rpc configs",
        CONTROLLER_RPC_CONFIGS_MAX,
    )?;
    r.room_for(count, CONFIG_BYTES_MIN)?;
    let mut configs = Vec::with_capacity(count);
    for _ in 0..count {
        let key = read_str(r, CONFIG_KEY_BYTES_MAX, "config key")?;
        let value = read_str(r, CONFIG_VALUE_BYTES_MAX, "config value")?;
        configs.push((key, value));
    }
    Ok(NewTopic {
        name,
        partitions,
        replication_factor,
        assignment,
        configs,
    })
}

fn read_assignment(
    r: &mut Reader<'_>,
    totals: &mut Totals,
) -> Result<Option<Vec<Vec<i32>>>, ClusterError> {
    if !r.flag("assignment flag")? {
        return Ok(None);
    }
    let count = r.fixed::<U32>()?.get() as usize;
    check_assignment_partitions(count, totals)?;
    r.room_for(count, ASSIGNED_PARTITION_BYTES)?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        let replicas = usize::from(r.fixed::<U16>()?.get());
        check_assignment_replicas(replicas, totals)?;
        let ids: &[I32] = r.entries(replicas)?;
        partitions.push(ids.iter().map(|id| id.get()).collect());
    }
    Ok(Some(partitions))
}

fn put_topic_results(out: &mut BytesMut, results: &[TopicResult]) {
    out.put_u32(results.len() as u32);
    for result in results {
        put_str16(out, &result.name);
        out.put_i16(result.error_code.code());
        put_opt_str(out, result.message.as_deref());
    }
}

fn read_alter_topic(
    r: &mut Reader<'_>,
    totals: &mut Totals,
) -> Result<AlterTopicConfigs, ClusterError> {
    let name = read_name(r)?;
    let replace_all = r.flag("replace_all flag")?;
    let count = usize::from(r.fixed::<U16>()?.get());
    over_limit("configs per topic", count, CONFIGS_PER_TOPIC_MAX)?;
    add(
        &mut totals.configs,
        count,
        "controller rpc configs",
        CONTROLLER_RPC_CONFIGS_MAX,
    )?;
    r.room_for(count, CONFIG_OP_BYTES_MIN)?;
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        ops.push(ConfigOp {
            key: read_str(r, CONFIG_KEY_BYTES_MAX, "config key")?,
            op: r.u8()?,
            value: read_opt_str(r, CONFIG_VALUE_BYTES_MAX, "config value")?,
        });
    }
    Ok(AlterTopicConfigs {
        name,
        replace_all,
        ops,
    })
}

fn read_topic_results(r: &mut Reader<'_>) -> Result<Vec<TopicResult>, ClusterError> {
    let count = read_topic_count(r, TOPIC_RESULT_BYTES_MIN)?;
    let mut results = Vec::with_capacity(count);
    for _ in 0..count {
        results.push(TopicResult {
            name: read_name(r)?,
            error_code: decode_error_code(r.fixed::<I16>()?.get())?,
            message: read_opt_str(r, ERROR_MESSAGE_BYTES_MAX, "message")?,
        });
    }
    Ok(results)
}

fn read_isr_changes(r: &mut Reader<'_>) -> Result<Vec<IsrChange>, ClusterError> {
    let count = r.fixed::<U32>()?.get() as usize;
    check_isr_change_count(count)?;
    r.room_for(count, ISR_CHANGE_FIXED_BYTES)?;
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_id = *r.fixed::<[u8; 16]>()?;
        let partition = r.fixed::<I32>()?.get();
        let leader_epoch = r.fixed::<I32>()?.get();
        let partition_epoch = r.fixed::<I32>()?.get();
        let members = usize::from(r.fixed::<U16>()?.get());
        check_isr_len(members)?;
        r.room_for(members, ISR_MEMBER_BYTES_MIN)?;
        let mut new_isr = Vec::with_capacity(members);
        for _ in 0..members {
            new_isr.push(IsrMember {
                node_id: r.fixed::<I32>()?.get(),
                incarnation: match r.flag("isr member incarnation flag")? {
                    false => None,
                    true => Some(r.fixed::<U64>()?.get()),
                },
            });
        }
        changes.push(IsrChange {
            topic_id,
            partition,
            leader_epoch,
            partition_epoch,
            new_isr,
        });
    }
    Ok(changes)
}

fn read_isr_change_results(r: &mut Reader<'_>) -> Result<Vec<IsrChangeResult>, ClusterError> {
    let count = r.fixed::<U32>()?.get() as usize;
    check_isr_change_count(count)?;
    r.room_for(count, ISR_CHANGE_RESULT_FIXED_BYTES)?;
    let mut results = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_id = *r.fixed::<[u8; 16]>()?;
        let partition = r.fixed::<I32>()?.get();
        let error_code = decode_error_code(r.fixed::<I16>()?.get())?;
        let leader = r.fixed::<I32>()?.get();
        let leader_epoch = r.fixed::<I32>()?.get();
        let partition_epoch = r.fixed::<I32>()?.get();
        let members = usize::from(r.fixed::<U16>()?.get());
        check_isr_len(members)?;
        let ids: &[I32] = r.entries(members)?;
        results.push(IsrChangeResult {
            topic_id,
            partition,
            error_code,
            leader,
            leader_epoch,
            partition_epoch,
            isr: ids.iter().map(|id| id.get()).collect(),
        });
    }
    Ok(results)
}

fn read_elect_leaders_results(r: &mut Reader<'_>) -> Result<Vec<ElectLeadersResult>, ClusterError> {
    let count = r.fixed::<U32>()?.get() as usize;
    check_election_count(count)?;
    r.room_for(count, ELECT_LEADERS_RESULT_BYTES_MIN)?;
    let mut results = Vec::with_capacity(count);
    for _ in 0..count {
        results.push(ElectLeadersResult {
            topic: read_name(r)?,
            partition: r.fixed::<I32>()?.get(),
            error_code: decode_error_code(r.fixed::<I16>()?.get())?,
            message: read_opt_str(r, ERROR_MESSAGE_BYTES_MAX, "message")?,
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Body, FrameKind};
    use bytes::Bytes;

    fn register() -> ControllerRequest {
        ControllerRequest::RegisterBroker {
            node_id: 3,
            incarnation: 0x0102_0304_0506_0708,
            client_host: "kafka-3".into(),
            client_port: 9092,
            cluster_host: "10.0.0.3".into(),
            cluster_port: 9093,
            rack: Some("r1".into()),
        }
    }

    fn new_topic() -> NewTopic {
        NewTopic {
            name: "orders".into(),
            partitions: -1,
            replication_factor: -1,
            assignment: Some(vec![vec![1, 2], vec![2, 3]]),
            configs: vec![("cleanup.policy".into(), "compact".into())],
        }
    }

    fn create_topics() -> ControllerRequest {
        ControllerRequest::CreateTopics {
            topics: vec![
                new_topic(),
                NewTopic {
                    name: "logs".into(),
                    partitions: 6,
                    replication_factor: 1,
                    assignment: None,
                    configs: Vec::new(),
                },
            ],
            validate_only: true,
        }
    }

    fn requests() -> Vec<ControllerRequest> {
        vec![
            register(),
            ControllerRequest::Heartbeat {
                node_id: 3,
                incarnation: 9,
                want_shutdown: true,
                metadata_offset: 1234,
            },
            create_topics(),
            ControllerRequest::DeleteTopics {
                names: vec!["a".into(), "é".into()],
            },
            ControllerRequest::CreatePartitions {
                topics: vec![
                    NewPartitions {
                        name: "a".into(),
                        count: 4,
                        assignment: Some(vec![vec![1], vec![]]),
                    },
                    NewPartitions {
                        name: "b".into(),
                        count: 2,
                        assignment: None,
                    },
                ],
            },
            ControllerRequest::AllocateProducerIds {
                node_id: 3,
                incarnation: 9,
            },
            ControllerRequest::DescribeQuorum,
            alter_partition(),
            ControllerRequest::ElectLeaders {
                partitions: vec![
                    PartitionName {
                        topic: "orders".into(),
                        partition: 0,
                    },
                    PartitionName {
                        topic: "é".into(),
                        partition: -1,
                    },
                ],
            },
            ControllerRequest::AlterConfigs {
                topics: vec![
                    AlterTopicConfigs {
                        name: "orders".into(),
                        replace_all: false,
                        ops: vec![
                            ConfigOp {
                                key: "retention.ms".into(),
                                op: 0,
                                value: Some("60000".into()),
                            },
                            ConfigOp {
                                key: "segment.bytes".into(),
                                op: 1,
                                value: None,
                            },
                        ],
                    },
                    AlterTopicConfigs {
                        name: "é".into(),
                        replace_all: true,
                        ops: Vec::new(),
                    },
                ],
                validate_only: true,
            },
        ]
    }

    fn alter_partition() -> ControllerRequest {
        ControllerRequest::AlterPartition {
            node_id: 2,
            incarnation: 0x0102_0304_0506_0708,
            partitions: vec![
                IsrChange {
                    topic_id: [7; 16],
                    partition: 1,
                    leader_epoch: 3,
                    partition_epoch: 5,
                    new_isr: vec![
                        IsrMember {
                            node_id: 2,
                            incarnation: None,
                        },
                        IsrMember {
                            node_id: 3,
                            incarnation: Some(9),
                        },
                    ],
                },
                IsrChange {
                    topic_id: [8; 16],
                    partition: 0,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    new_isr: Vec::new(),
                },
            ],
        }
    }

    fn isr_change_result() -> IsrChangeResult {
        IsrChangeResult {
            topic_id: [7; 16],
            partition: 1,
            error_code: ErrorCode::None,
            leader: 2,
            leader_epoch: 3,
            partition_epoch: 6,
            isr: vec![2, 3],
        }
    }

    fn responses() -> Vec<ControllerResponse> {
        let result = |name: &str, error_code, message: Option<&str>| TopicResult {
            name: name.into(),
            error_code,
            message: message.map(str::to_owned),
        };
        vec![
            ControllerResponse::ok(ControllerAnswer::RegisterBroker),
            ControllerResponse::ok(ControllerAnswer::Heartbeat {
                fenced: true,
                should_shut_down: false,
            }),
            ControllerResponse::ok(ControllerAnswer::CreateTopics {
                results: vec![
                    CreateTopicResult {
                        name: "orders".into(),
                        error_code: ErrorCode::None,
                        message: None,
                        topic_id: [7; 16],
                        partitions: 2,
                    },
                    CreateTopicResult {
                        name: "logs".into(),
                        error_code: ErrorCode::TopicAlreadyExists,
                        message: Some("exists".into()),
                        topic_id: [0; 16],
                        partitions: -1,
                    },
                ],
            }),
            ControllerResponse::ok(ControllerAnswer::DeleteTopics {
                results: vec![
                    result("a", ErrorCode::None, None),
                    result(
                        "b",
                        ErrorCode::UnknownTopicOrPartition,
                        Some("no such topic"),
                    ),
                ],
            }),
            ControllerResponse::ok(ControllerAnswer::CreatePartitions {
                results: vec![result("a", ErrorCode::InvalidPartitions, Some("fewer"))],
            }),
            ControllerResponse::ok(ControllerAnswer::AllocateProducerIds {
                first_id: 5000,
                count: 1000,
            }),
            ControllerResponse::ok(ControllerAnswer::DescribeQuorum {
                leader: 2,
                term: 7,
                committed: 1234,
                voters: vec![
                    QuorumReplica {
                        node_id: 1,
                        log_end: 1230,
                        last_fetch_ms: 1_700_000_000_000,
                        last_caught_up_ms: 1_699_999_999_000,
                    },
                    QuorumReplica {
                        node_id: 2,
                        log_end: 1235,
                        last_fetch_ms: 1_700_000_000_001,
                        last_caught_up_ms: 1_700_000_000_001,
                    },
                ],
                observers: vec![QuorumReplica {
                    node_id: 4,
                    log_end: 1234,
                    last_fetch_ms: -1,
                    last_caught_up_ms: -1,
                }],
            }),
            ControllerResponse::ok(ControllerAnswer::AlterPartition {
                results: vec![
                    isr_change_result(),
                    IsrChangeResult {
                        topic_id: [8; 16],
                        partition: 0,
                        error_code: ErrorCode::InvalidUpdateVersion,
                        leader: -1,
                        leader_epoch: -1,
                        partition_epoch: -1,
                        isr: Vec::new(),
                    },
                ],
            }),
            ControllerResponse::ok(ControllerAnswer::ElectLeaders {
                results: vec![
                    ElectLeadersResult {
                        topic: "orders".into(),
                        partition: 0,
                        error_code: ErrorCode::None,
                        message: None,
                    },
                    ElectLeadersResult {
                        topic: "é".into(),
                        partition: -1,
                        error_code: ErrorCode::UnknownTopicOrPartition,
                        message: Some("no such partition".into()),
                    },
                ],
            }),
            ControllerResponse::ok(ControllerAnswer::AlterConfigs {
                results: vec![TopicResult {
                    name: "orders".into(),
                    error_code: ErrorCode::InvalidConfig,
                    message: Some("unknown topic config".into()),
                }],
                metadata_offset: 77,
            }),
            ControllerResponse::not_controller(ControllerApi::DescribeQuorum, Some(1)),
            ControllerResponse::not_controller(ControllerApi::Heartbeat, Some(2)),
            ControllerResponse::not_controller(ControllerApi::CreateTopics, None),
            ControllerResponse::failed(
                ControllerApi::RegisterBroker,
                ErrorCode::StaleBrokerEpoch,
                "old incarnation",
            ),
        ]
    }

    fn encode(body: &Body) -> Bytes {
        let mut out = BytesMut::new();
        let mut records = Vec::new();
        body.encode_payload(1, &mut out, &mut records);
        assert!(records.is_empty());
        out.freeze()
    }

    fn decode_request(bytes: &[u8]) -> Result<Body, ClusterError> {
        Body::decode_payload(
            FrameKind::ControllerRequest,
            1,
            &Bytes::copy_from_slice(bytes),
        )
    }

    fn decode_response(bytes: &[u8]) -> Result<Body, ClusterError> {
        Body::decode_payload(
            FrameKind::ControllerResponse,
            1,
            &Bytes::copy_from_slice(bytes),
        )
    }

    /// Bytes of a request as written, limits unchecked: what a buggy or hostile peer could send.
    fn unchecked(request: &ControllerRequest) -> Vec<u8> {
        let mut out = BytesMut::new();
        request.encode_unchecked(&mut out);
        out.to_vec()
    }

    fn unchecked_response(response: &ControllerResponse) -> Vec<u8> {
        let mut out = BytesMut::new();
        response.encode_unchecked(&mut out);
        out.to_vec()
    }

    #[test]
    fn every_request_and_response_round_trips_with_its_api_first() {
        assert_eq!(requests().len(), ControllerApi::ALL.len());
        for (request, api) in requests().into_iter().zip(ControllerApi::ALL) {
            assert_eq!(request.api(), api);
            let body = Body::ControllerRequest(request);
            let bytes = encode(&body);
            assert_eq!(bytes.len(), body.framing_bytes_hint(), "{api:?}");
            assert_eq!(bytes[0], api.code());
            assert_eq!(decode_request(&bytes), Ok(body));
        }
        let responses = responses();
        assert_eq!(responses.len(), ControllerApi::ALL.len() + 4);
        for response in responses {
            let api = response.api();
            let body = Body::ControllerResponse(response);
            let bytes = encode(&body);
            assert_eq!(bytes.len(), body.framing_bytes_hint(), "{api:?}");
            assert_eq!(bytes[0], api.code());
            assert_eq!(decode_response(&bytes), Ok(body));
        }
    }

    #[test]
    fn register_broker_layout_is_as_documented() {
        let bytes = encode(&Body::ControllerRequest(register()));
        let mut expected = vec![1u8];
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[0, 7]);
        expected.extend_from_slice(b"kafka-3");
        expected.extend_from_slice(&9092u16.to_be_bytes());
        expected.extend_from_slice(&[0, 8]);
        expected.extend_from_slice(b"10.0.0.3");
        expected.extend_from_slice(&9093u16.to_be_bytes());
        expected.extend_from_slice(&[1, 0, 2]);
        expected.extend_from_slice(b"r1");
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn create_topics_layout_is_as_documented() {
        let request = ControllerRequest::CreateTopics {
            topics: vec![new_topic()],
            validate_only: false,
        };
        let bytes = encode(&Body::ControllerRequest(request));
        let mut expected = vec![3u8, 0, 0, 0, 0, 1, 0, 6];
        expected.extend_from_slice(b"orders");
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&(-1i16).to_be_bytes());
        expected.extend_from_slice(&[1, 0, 0, 0, 2]); // assignment present, 2 partitions
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
        expected.extend_from_slice(&[0, 1, 0, 14]); // one config, key of 14 bytes
        expected.extend_from_slice(b"cleanup.policy");
        expected.extend_from_slice(&[0, 7]);
        expected.extend_from_slice(b"compact");
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn response_status_layout_is_as_documented() {
        let response = ControllerResponse::not_controller(ControllerApi::Heartbeat, Some(2));
        let bytes = encode(&Body::ControllerResponse(response));
        // api, NOT_CONTROLLER (41), hint present, 2, no message, fenced 0, should_shut_down 0.
        assert_eq!(&bytes[..], &[2, 0, 41, 1, 0, 0, 0, 2, 0, 0, 0]);
        let response = ControllerResponse::ok(ControllerAnswer::AllocateProducerIds {
            first_id: 5000,
            count: 1000,
        });
        let bytes = encode(&Body::ControllerResponse(response));
        let mut expected = vec![6u8, 0, 0, 0, 0];
        expected.extend_from_slice(&5000i64.to_be_bytes());
        expected.extend_from_slice(&1000i32.to_be_bytes());
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn alter_partition_layout_is_as_documented() {
        let bytes = encode(&Body::ControllerRequest(alter_partition()));
        let mut expected = vec![8u8, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 2];
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 5]); // partition, epochs
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 2, 0]); // two members: 2, no incarnation
        expected.extend_from_slice(&[0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 9]); // 3, incarnation 9
        expected.extend_from_slice(&[8; 16]);
        expected.extend_from_slice(&[0; 14]); // partition 0, epochs 0, no members
        assert_eq!(&bytes[..], &expected[..]);

        let response = ControllerResponse::ok(ControllerAnswer::AlterPartition {
            results: vec![isr_change_result()],
        });
        let bytes = encode(&Body::ControllerResponse(response));
        // api, NONE, no hint, no message, one result.
        let mut expected = vec![8u8, 0, 0, 0, 0, 0, 0, 0, 1];
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0]); // partition 1, NONE
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 6]); // leader, epochs
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 2, 0, 0, 0, 3]); // isr [2, 3]
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn elect_leaders_layout_is_as_documented() {
        let request = ControllerRequest::ElectLeaders {
            partitions: vec![PartitionName {
                topic: "ab".into(),
                partition: 3,
            }],
        };
        let bytes = encode(&Body::ControllerRequest(request));
        assert_eq!(&bytes[..], &[9, 0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 3]);
        let response = ControllerResponse::ok(ControllerAnswer::ElectLeaders {
            results: vec![ElectLeadersResult {
                topic: "ab".into(),
                partition: 3,
                error_code: ErrorCode::ElectionNotNeeded,
                message: Some("x".into()),
            }],
        });
        let bytes = encode(&Body::ControllerResponse(response));
        let expected = [
            9, 0, 0, 0, 0, // api, NONE, no hint, no message
            0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 3, // one result: "ab", 3
            0, 84, 1, 0, 1, b'x', // ELECTION_NOT_NEEDED, message "x"
        ];
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn isr_changes_and_elections_over_their_limits_are_refused_on_both_sides() {
        let member = IsrMember {
            node_id: 1,
            incarnation: Some(1),
        };
        let change = |members: usize| IsrChange {
            topic_id: [1; 16],
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![member; members],
        };
        let alter = |partitions: Vec<IsrChange>| ControllerRequest::AlterPartition {
            node_id: 1,
            incarnation: 1,
            partitions,
        };
        let name = |topic: String| PartitionName {
            topic,
            partition: 0,
        };
        let over = [
            (
                alter(vec![change(0); ALTER_PARTITION_PARTITIONS_MAX + 1]),
                "alter partition partitions",
            ),
            (
                alter(vec![change(REPLICAS_PER_PARTITION_MAX + 1)]),
                "isr members",
            ),
            (
                ControllerRequest::ElectLeaders {
                    partitions: vec![name(String::new()); ELECT_LEADERS_PARTITIONS_MAX + 1],
                },
                "elect leaders partitions",
            ),
            (
                ControllerRequest::ElectLeaders {
                    partitions: vec![name("x".repeat(TOPIC_NAME_BYTES_MAX + 1))],
                },
                "topic name",
            ),
        ];
        for (request, what) in over {
            let refused = |error: Option<ClusterError>| matches!(error, Some(ClusterError::OverLimit { what: w, .. }) if w == what);
            assert!(refused(request.validate().err()), "{what}");
            assert!(
                refused(decode_request(&unchecked(&request)).err()),
                "{what}"
            );
        }
        // Just at the limits is fine.
        let at = alter(vec![
            change(REPLICAS_PER_PARTITION_MAX);
            ALTER_PARTITION_PARTITIONS_MAX
        ]);
        let body = Body::ControllerRequest(at);
        assert_eq!(decode_request(&encode(&body)), Ok(body));

        let result = |isr: usize| IsrChangeResult {
            isr: vec![1; isr],
            ..isr_change_result()
        };
        let elected = |topic: String, message: Option<String>| ElectLeadersResult {
            topic,
            partition: 0,
            error_code: ErrorCode::None,
            message,
        };
        let over = [
            (
                ControllerAnswer::AlterPartition {
                    results: vec![result(0); ALTER_PARTITION_PARTITIONS_MAX + 1],
                },
                "alter partition partitions",
            ),
            (
                ControllerAnswer::AlterPartition {
                    results: vec![result(REPLICAS_PER_PARTITION_MAX + 1)],
                },
                "isr members",
            ),
            (
                ControllerAnswer::ElectLeaders {
                    results: vec![elected(String::new(), None); ELECT_LEADERS_PARTITIONS_MAX + 1],
                },
                "elect leaders partitions",
            ),
            (
                ControllerAnswer::ElectLeaders {
                    results: vec![elected("x".repeat(TOPIC_NAME_BYTES_MAX + 1), None)],
                },
                "topic name",
            ),
            (
                ControllerAnswer::ElectLeaders {
                    results: vec![elected(
                        String::new(),
                        Some("x".repeat(ERROR_MESSAGE_BYTES_MAX + 1)),
                    )],
                },
                "message",
            ),
        ];
        for (answer, what) in over {
            let response = ControllerResponse::ok(answer);
            let refused = |error: Option<ClusterError>| matches!(error, Some(ClusterError::OverLimit { what: w, .. }) if w == what);
            assert!(refused(response.validate().err()), "{what}");
            assert!(
                refused(decode_response(&unchecked_response(&response)).err()),
                "{what}"
            );
        }
        let at = ControllerResponse::ok(ControllerAnswer::ElectLeaders {
            results: vec![
                elected("x".repeat(TOPIC_NAME_BYTES_MAX), None);
                ELECT_LEADERS_PARTITIONS_MAX
            ],
        });
        let body = Body::ControllerResponse(at);
        assert_eq!(decode_response(&encode(&body)), Ok(body));
    }

    #[test]
    fn isr_counts_the_bytes_cannot_hold_are_refused_before_reserving() {
        // AlterPartition claiming the most partitions, with nothing after.
        let mut bytes = vec![8u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&(ALTER_PARTITION_PARTITIONS_MAX as u32).to_be_bytes());
        assert_eq!(
            decode_request(&bytes),
            Err(ClusterError::Truncated {
                needed: ALTER_PARTITION_PARTITIONS_MAX * ISR_CHANGE_FIXED_BYTES,
                available: 0
            })
        );
        // One change claiming the most members.
        let mut bytes = vec![8u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        bytes.extend_from_slice(&[0; 28]);
        bytes.extend_from_slice(&(REPLICAS_PER_PARTITION_MAX as u16).to_be_bytes());
        assert_eq!(
            decode_request(&bytes),
            Err(ClusterError::Truncated {
                needed: REPLICAS_PER_PARTITION_MAX * ISR_MEMBER_BYTES_MIN,
                available: 0
            })
        );
        // Election results claiming the most partitions.
        let mut bytes = vec![9u8, 0, 0, 0, 0];
        bytes.extend_from_slice(&(ELECT_LEADERS_PARTITIONS_MAX as u32).to_be_bytes());
        assert_eq!(
            decode_response(&bytes),
            Err(ClusterError::Truncated {
                needed: ELECT_LEADERS_PARTITIONS_MAX * ELECT_LEADERS_RESULT_BYTES_MIN,
                available: 0
            })
        );
        // An incarnation flag other than 0 or 1.
        let mut bad = unchecked(&alter_partition());
        // api, node, incarnation, count, topic id, partition, epochs, member count, node 2.
        let at = 1 + 4 + 8 + 4 + 16 + 12 + 2 + 4;
        assert_eq!(bad[at], 0);
        bad[at] = 2;
        assert_eq!(
            decode_request(&bad),
            Err(ClusterError::Malformed {
                what: "isr member incarnation flag"
            })
        );
    }

    #[test]
    fn unknown_apis_are_refused_in_both_directions() {
        for code in [0u8, 11, 0xff] {
            assert_eq!(
                decode_request(&[code]),
                Err(ClusterError::UnknownControllerApi(code))
            );
            assert_eq!(
                decode_response(&[code, 0, 0, 0, 0]),
                Err(ClusterError::UnknownControllerApi(code))
            );
        }
        assert_eq!(
            ClusterError::UnknownControllerApi(7).error_code(),
            ErrorCode::UnsupportedVersion
        );
        assert!(matches!(
            decode_request(&[]),
            Err(ClusterError::Truncated { needed: 1, .. })
        ));
    }

    #[test]
    fn every_prefix_is_truncated_and_any_extra_byte_is_trailing() {
        let requests = requests().into_iter().map(Body::ControllerRequest);
        let responses = responses().into_iter().map(Body::ControllerResponse);
        let mut checked = 0;
        for body in requests.chain(responses) {
            let kind = body.kind();
            let bytes = encode(&body);
            for len in 0..bytes.len() {
                let result = Body::decode_payload(kind, 1, &Bytes::copy_from_slice(&bytes[..len]));
                assert!(
                    matches!(result, Err(ClusterError::Truncated { .. })),
                    "{kind:?} cut to {len}: {result:?}"
                );
                checked += 1;
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(
                Body::decode_payload(kind, 1, &Bytes::from(longer)),
                Err(ClusterError::TrailingBytes { kind, extra: 1 })
            );
        }
        assert!(checked > 300, "{checked}");
    }

    #[test]
    fn booleans_other_than_0_and_1_are_refused() {
        // (bytes, offset of a flag) for each flag of each body.
        let heartbeat = encode(&Body::ControllerRequest(requests()[1].clone()));
        let register = encode(&Body::ControllerRequest(register()));
        let create = encode(&Body::ControllerRequest(create_topics()));
        let request_flags = [
            (&heartbeat, 13, "want_shutdown flag"),
            (&register, register.len() - 5, "rack"),
            (&create, 1, "validate_only flag"),
            (&create, 1 + 1 + 4 + 2 + 6 + 4 + 2, "assignment flag"),
        ];
        for (bytes, at, what) in request_flags {
            let mut bad = bytes.to_vec();
            assert!(bad[at] <= 1, "{what} at {at}");
            bad[at] = 2;
            assert_eq!(decode_request(&bad), Err(ClusterError::Malformed { what }));
        }
        let heartbeat = encode(&Body::ControllerResponse(ControllerResponse::ok(
            ControllerAnswer::Heartbeat {
                fenced: true,
                should_shut_down: true,
            },
        )));
        let response_flags = [
            (3, "leader hint flag"),
            (4, "message"),
            (5, "fenced flag"),
            (6, "should_shut_down flag"),
        ];
        for (at, what) in response_flags {
            let mut bad = heartbeat.to_vec();
            bad[at] = 0xff;
            assert_eq!(decode_response(&bad), Err(ClusterError::Malformed { what }));
        }
    }

    #[test]
    fn strings_over_their_limits_or_not_utf8_are_refused_on_both_sides() {
        let long = |n: usize| "x".repeat(n);
        let over = [
            (
                ControllerRequest::RegisterBroker {
                    node_id: 1,
                    incarnation: 1,
                    client_host: long(HOST_BYTES_MAX + 1),
                    client_port: 1,
                    cluster_host: String::new(),
                    cluster_port: 1,
                    rack: None,
                },
                "client host",
            ),
            (
                ControllerRequest::RegisterBroker {
                    node_id: 1,
                    incarnation: 1,
                    client_host: String::new(),
                    client_port: 1,
                    cluster_host: long(HOST_BYTES_MAX + 1),
                    cluster_port: 1,
                    rack: None,
                },
                "cluster host",
            ),
            (
                ControllerRequest::RegisterBroker {
                    node_id: 1,
                    incarnation: 1,
                    client_host: String::new(),
                    client_port: 1,
                    cluster_host: String::new(),
                    cluster_port: 1,
                    rack: Some(long(RACK_BYTES_MAX + 1)),
                },
                "rack",
            ),
            (
                ControllerRequest::DeleteTopics {
                    names: vec![long(TOPIC_NAME_BYTES_MAX + 1)],
                },
                "topic name",
            ),
            (
                ControllerRequest::CreateTopics {
                    topics: vec![NewTopic {
                        configs: vec![(long(CONFIG_KEY_BYTES_MAX + 1), String::new())],
                        ..new_topic()
                    }],
                    validate_only: false,
                },
                "config key",
            ),
            (
                ControllerRequest::CreateTopics {
                    topics: vec![NewTopic {
                        configs: vec![(String::new(), long(CONFIG_VALUE_BYTES_MAX + 1))],
                        ..new_topic()
                    }],
                    validate_only: false,
                },
                "config value",
            ),
        ];
        for (request, what) in over {
            let refused = |error: Option<ClusterError>| matches!(error, Some(ClusterError::OverLimit { what: w, .. }) if w == what);
            assert!(refused(request.validate().err()), "{what}");
            assert!(
                refused(decode_request(&unchecked(&request)).err()),
                "{what}"
            );
        }
        // Just at the limits is fine.
        let at = ControllerRequest::RegisterBroker {
            node_id: 1,
            incarnation: 1,
            client_host: long(HOST_BYTES_MAX),
            client_port: 1,
            cluster_host: long(HOST_BYTES_MAX),
            cluster_port: 1,
            rack: Some(long(RACK_BYTES_MAX)),
        };
        let body = Body::ControllerRequest(at);
        assert_eq!(decode_request(&encode(&body)), Ok(body));

        let mut bad = unchecked(&ControllerRequest::DeleteTopics {
            names: vec!["ab".into()],
        });
        *bad.last_mut().unwrap() = 0xff;
        assert_eq!(
            decode_request(&bad),
            Err(ClusterError::Malformed { what: "topic name" })
        );

        let response = ControllerResponse {
            message: Some(long(ERROR_MESSAGE_BYTES_MAX + 1)),
            ..ControllerResponse::ok(ControllerAnswer::RegisterBroker)
        };
        assert!(matches!(
            response.validate(),
            Err(ClusterError::OverLimit {
                what: "message",
                ..
            })
        ));
        assert!(matches!(
            decode_response(&unchecked_response(&response)),
            Err(ClusterError::OverLimit {
                what: "message",
                ..
            })
        ));
        let response = ControllerResponse::ok(ControllerAnswer::DeleteTopics {
            results: vec![TopicResult {
                name: long(TOPIC_NAME_BYTES_MAX + 1),
                error_code: ErrorCode::None,
                message: None,
            }],
        });
        assert!(response.validate().is_err());
        assert!(matches!(
            decode_response(&unchecked_response(&response)),
            Err(ClusterError::OverLimit {
                what: "topic name",
                ..
            })
        ));
    }

    #[test]
    fn counts_over_their_limits_are_refused_on_both_sides() {
        let topics = |n: usize| {
            (0..n)
                .map(|i| NewTopic {
                    name: format!("t{i}"),
                    partitions: 1,
                    replication_factor: 1,
                    assignment: None,
                    configs: Vec::new(),
                })
                .collect::<Vec<_>>()
        };
        let with_configs = |topics: usize, configs: usize| {
            (0..topics)
                .map(|_| NewTopic {
                    configs: vec![(String::new(), String::new()); configs],
                    ..new_topic()
                })
                .collect::<Vec<_>>()
        };
        let assigned = |topics: usize, partitions: usize, replicas: usize| {
            (0..topics)
                .map(|_| NewPartitions {
                    name: "p".into(),
                    count: 1,
                    assignment: Some(vec![vec![0; replicas]; partitions]),
                })
                .collect::<Vec<_>>()
        };
        let over = [
            (
                ControllerRequest::CreateTopics {
                    topics: topics(CONTROLLER_RPC_TOPICS_MAX + 1),
                    validate_only: false,
                },
                "controller rpc topics",
            ),
            (
                ControllerRequest::DeleteTopics {
                    names: vec![String::new(); CONTROLLER_RPC_TOPICS_MAX + 1],
                },
                "controller rpc topics",
            ),
            (
                ControllerRequest::CreatePartitions {
                    topics: assigned(CONTROLLER_RPC_TOPICS_MAX + 1, 0, 0),
                },
                "controller rpc topics",
            ),
            (
                ControllerRequest::CreateTopics {
                    topics: with_configs(1, CONFIGS_PER_TOPIC_MAX + 1),
                    validate_only: false,
                },
                "configs per topic",
            ),
            (
                ControllerRequest::CreateTopics {
                    topics: with_configs(
                        CONTROLLER_RPC_CONFIGS_MAX / CONFIGS_PER_TOPIC_MAX + 1,
                        CONFIGS_PER_TOPIC_MAX,
                    ),
                    validate_only: false,
                },
                "controller rpc configs",
            ),
            (
                ControllerRequest::CreatePartitions {
                    topics: assigned(1, PARTITIONS_PER_ASSIGNMENT_MAX + 1, 0),
                },
                "assignment partitions",
            ),
            (
                ControllerRequest::CreatePartitions {
                    topics: assigned(
                        CONTROLLER_RPC_ASSIGNED_PARTITIONS_MAX / PARTITIONS_PER_ASSIGNMENT_MAX + 1,
                        PARTITIONS_PER_ASSIGNMENT_MAX,
                        0,
                    ),
                },
                "controller rpc assigned partitions",
            ),
            (
                ControllerRequest::CreatePartitions {
                    topics: assigned(1, 1, REPLICAS_PER_PARTITION_MAX + 1),
                },
                "replicas per partition",
            ),
            (
                ControllerRequest::CreatePartitions {
                    topics: assigned(
                        1,
                        CONTROLLER_RPC_ASSIGNED_REPLICAS_MAX / REPLICAS_PER_PARTITION_MAX + 1,
                        REPLICAS_PER_PARTITION_MAX,
                    ),
                },
                "controller rpc assigned replicas",
            ),
        ];
        for (request, what) in over {
            let refused = |error: Option<ClusterError>| matches!(error, Some(ClusterError::OverLimit { what: w, .. }) if w == what);
            assert!(refused(request.validate().err()), "{what}");
            assert!(
                refused(decode_request(&unchecked(&request)).err()),
                "{what}"
            );
        }
        let results = ControllerResponse::ok(ControllerAnswer::CreatePartitions {
            results: vec![
                TopicResult {
                    name: String::new(),
                    error_code: ErrorCode::None,
                    message: None,
                };
                CONTROLLER_RPC_TOPICS_MAX + 1
            ],
        });
        assert!(results.validate().is_err());
        assert!(matches!(
            decode_response(&unchecked_response(&results)),
            Err(ClusterError::OverLimit {
                what: "controller rpc topics",
                ..
            })
        ));
    }

    #[test]
    fn requests_at_the_per_request_limits_are_accepted() {
        let request = ControllerRequest::CreateTopics {
            topics: (0..CONTROLLER_RPC_CONFIGS_MAX / CONFIGS_PER_TOPIC_MAX)
                .map(|_| NewTopic {
                    configs: vec![(String::new(), String::new()); CONFIGS_PER_TOPIC_MAX],
                    ..new_topic()
                })
                .collect(),
            validate_only: false,
        };
        let body = Body::ControllerRequest(request);
        assert_eq!(decode_request(&encode(&body)), Ok(body));
    }

    #[test]
    fn counts_the_bytes_cannot_hold_are_refused_before_reserving() {
        // CreateTopics claiming the most topics, with nothing after.
        let mut bytes = vec![3u8, 0];
        bytes.extend_from_slice(&(CONTROLLER_RPC_TOPICS_MAX as u32).to_be_bytes());
        assert_eq!(
            decode_request(&bytes),
            Err(ClusterError::Truncated {
                needed: CONTROLLER_RPC_TOPICS_MAX * NEW_TOPIC_BYTES_MIN,
                available: 0
            })
        );
        // An assignment claiming the most partitions.
        let mut bytes = vec![5u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&(PARTITIONS_PER_ASSIGNMENT_MAX as u32).to_be_bytes());
        assert_eq!(
            decode_request(&bytes),
            Err(ClusterError::Truncated {
                needed: PARTITIONS_PER_ASSIGNMENT_MAX * 2,
                available: 0
            })
        );
        // A topic claiming the most configs.
        let mut bytes = vec![3u8, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&(CONFIGS_PER_TOPIC_MAX as u16).to_be_bytes());
        assert_eq!(
            decode_request(&bytes),
            Err(ClusterError::Truncated {
                needed: CONFIGS_PER_TOPIC_MAX * 4,
                available: 0
            })
        );
        // Results claiming the most topics.
        let mut bytes = vec![4u8, 0, 0, 0, 0];
        bytes.extend_from_slice(&(CONTROLLER_RPC_TOPICS_MAX as u32).to_be_bytes());
        assert_eq!(
            decode_response(&bytes),
            Err(ClusterError::Truncated {
                needed: CONTROLLER_RPC_TOPICS_MAX * TOPIC_RESULT_BYTES_MIN,
                available: 0
            })
        );
    }

    #[test]
    fn leader_hints_go_with_not_controller_only_and_are_never_negative() {
        let hinted = |error_code, hint| ControllerResponse {
            error_code,
            leader_hint: Some(hint),
            message: None,
            answer: ControllerAnswer::RegisterBroker,
        };
        for (response, what) in [
            (
                hinted(ErrorCode::None, 1),
                "leader hint without NOT_CONTROLLER",
            ),
            (hinted(ErrorCode::NotController, -1), "negative leader hint"),
        ] {
            assert_eq!(response.validate(), Err(ClusterError::Malformed { what }));
            assert_eq!(
                decode_response(&unchecked_response(&response)),
                Err(ClusterError::Malformed { what })
            );
        }
        let body = Body::ControllerResponse(hinted(ErrorCode::NotController, 0));
        assert_eq!(decode_response(&encode(&body)), Ok(body));
    }

    #[test]
    fn unknown_error_codes_are_refused_at_the_top_and_per_topic() {
        let bytes = unchecked_response(&ControllerResponse::ok(ControllerAnswer::RegisterBroker));
        let mut bad = bytes.clone();
        bad[1..3].copy_from_slice(&999i16.to_be_bytes());
        assert_eq!(
            decode_response(&bad),
            Err(ClusterError::UnknownErrorCode(999))
        );
        let bytes = unchecked_response(&ControllerResponse::ok(ControllerAnswer::DeleteTopics {
            results: vec![TopicResult {
                name: "a".into(),
                error_code: ErrorCode::None,
                message: None,
            }],
        }));
        let mut bad = bytes.clone();
        // api, status (2 + 1 + 1), count (4), name (2 + 1), then the code.
        bad[12..14].copy_from_slice(&(-2i16).to_be_bytes());
        assert_eq!(
            decode_response(&bad),
            Err(ClusterError::UnknownErrorCode(-2))
        );
    }

    #[test]
    #[should_panic(expected = "controller request breaks a limit")]
    fn encoding_a_request_over_a_limit_is_a_programmer_error() {
        let request = ControllerRequest::DeleteTopics {
            names: vec!["x".repeat(TOPIC_NAME_BYTES_MAX + 1)],
        };
        encode(&Body::ControllerRequest(request));
    }

    #[test]
    #[should_panic(expected = "controller response breaks a limit")]
    fn encoding_a_hint_without_not_controller_is_a_programmer_error() {
        let response = ControllerResponse {
            leader_hint: Some(1),
            ..ControllerResponse::ok(ControllerAnswer::RegisterBroker)
        };
        encode(&Body::ControllerResponse(response));
    }

    #[test]
    #[should_panic(expected = "a failed response needs an error")]
    fn a_failed_response_with_error_code_none_is_a_programmer_error() {
        ControllerResponse::failed(ControllerApi::DeleteTopics, ErrorCode::None, "");
    }

    #[test]
    fn refusals_carry_the_request_api_and_an_empty_answer() {
        for api in ControllerApi::ALL {
            let response = ControllerResponse::not_controller(api, Some(1));
            assert_eq!(response.api(), api);
            assert_eq!(response.answer, ControllerAnswer::empty(api));
            assert_eq!(response.validate(), Ok(()));
            assert_eq!(ControllerApi::try_from(api.code()), Ok(api));
        }
        let long = "é".repeat(ERROR_MESSAGE_BYTES_MAX);
        let response =
            ControllerResponse::failed(ControllerApi::Heartbeat, ErrorCode::InvalidRequest, &long);
        assert_eq!(
            response.message.as_deref().map(str::len),
            Some(ERROR_MESSAGE_BYTES_MAX)
        );
        assert_eq!(response.validate(), Ok(()));
    }
}
