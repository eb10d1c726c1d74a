//! Spate's inter-broker protocol: the frames of the cluster listener (Raft, replication,
//! requests to the controller quorum).
//!
//! Brokers talk to each other in their own compact binary protocol, not Kafka's: every frame is
//! a fixed 32-byte header ([`frame`]) followed by a payload of at most
//! [`CLUSTER_PAYLOAD_BYTES_MAX`] bytes. The header carries a magic number, the protocol
//! version, the frame kind, the payload length, a correlation id (requests are pipelined; a
//! response echoes its request's id), the sender's node id, and two CRC-32s: one over the header
//! alone, checked before the length is trusted, and one over the header and the payload.
//! `docs/CLUSTER-PROTOCOL.md` has the byte tables and what each side does on each error.
//!
//! Like the rest of this crate, nothing here does I/O:
//! - [`FrameDecoder`] splits whole frames off a connection's read buffer; payloads are `Bytes`
//!   slices of that buffer, never copies;
//! - [`Body::decode`] turns a frame into a typed body ([`Hello`], [`Raft`],
//!   [`ReplicaFetchRequest`], [`ReplicaFetchResponse`], [`EpochEndOffsetRequest`],
//!   [`EpochEndOffsetResponse`], [`ErrorBody`], [`ControllerRequest`], [`ControllerResponse`],
//!   [`MetadataFetchRequest`], [`MetadataFetchResponse`]);
//! - [`encode_frame`] turns a body back into buffers for one vectored write: the record batches
//!   of a [`ReplicaFetchResponse`] are handed back as their own parts, never copied.
//!
//! Every decoder is bounded (a count or length is checked against its limit and against the
//! bytes left before anything is reserved), strict (an accepted body re-encodes to exactly the
//! same bytes) and never panics on any input.
//!
//! Errors are [`ClusterError`], not [`crate::WireError`]: the two listeners answer bad input
//! differently (a Kafka client gets an error code in a response, a peer broker gets an
//! [`ErrorBody`] frame and a closed connection), so a shared enum would only blur
//! `WireError::error_code`.
//!
//! ```
//! use bytes::{BufMut, BytesMut};
//! use spate_wire::cluster::{encode_frame, Body, Envelope, FrameDecoder, Hello, VERSION_MAX, VERSION_MIN};
//!
//! let hello = Body::Hello(Hello {
//!     cluster_id: "spate-test".into(),
//!     node_id: 1,
//!     incarnation: 7,
//!     versions_min: VERSION_MIN,
//!     versions_max: VERSION_MAX,
//! });
//! let envelope = Envelope::hello(1, 0);
//! let encoded = encode_frame(&envelope, &hello);
//!
//! // What the peer's read loop does with the bytes, however the socket splits them.
//! let mut read_buf = BytesMut::new();
//! for part in &encoded.parts {
//!     read_buf.put_slice(part);
//! }
//! let frame = FrameDecoder::default().decode(&mut read_buf).unwrap().expect("whole frame");
//! assert_eq!(frame.envelope, envelope);
//! assert_eq!(Body::decode(&frame).unwrap(), hello);
//! assert!(read_buf.is_empty());
//! ```

mod body;
mod control;
mod controller_rpc;
mod epoch;
mod error;
pub mod frame;
mod metadata_fetch;
mod replica_fetch;
mod txn;

pub use body::{Body, Raft};
pub use control::{
    negotiate_version, ErrorBody, Hello, CLUSTER_ID_BYTES_MAX, ERROR_MESSAGE_BYTES_MAX,
};
pub use controller_rpc::{
    AlterTopicConfigs, ConfigOp, ControllerAnswer, ControllerApi, ControllerRequest,
    ControllerResponse, CreateTopicResult, ElectLeadersResult, IsrChange, IsrChangeResult,
    IsrMember, NewPartitions, NewTopic, PartitionName, QuorumReplica, TopicResult,
    ALTER_PARTITION_PARTITIONS_MAX, CONFIGS_PER_TOPIC_MAX, CONFIG_KEY_BYTES_MAX,
    CONFIG_VALUE_BYTES_MAX, CONTROLLER_RPC_ASSIGNED_PARTITIONS_MAX,
    CONTROLLER_RPC_ASSIGNED_REPLICAS_MAX, CONTROLLER_RPC_CONFIGS_MAX, CONTROLLER_RPC_TOPICS_MAX,
    ELECT_LEADERS_PARTITIONS_MAX, HOST_BYTES_MAX, PARTITIONS_PER_ASSIGNMENT_MAX,
    QUORUM_REPLICAS_MAX, RACK_BYTES_MAX, REPLICAS_PER_PARTITION_MAX, TOPIC_NAME_BYTES_MAX,
};
pub use epoch::{
    EpochEndOffset, EpochEndOffsetQuery, EpochEndOffsetRequest, EpochEndOffsetResponse,
    EpochEndOffsetResult, EPOCH_END_OFFSET_PARTITIONS_MAX,
};
pub use error::ClusterError;
pub use frame::{
    encode_frame, EncodedFrame, Envelope, Frame, FrameDecoder, FrameKind, FRAME_HEADER_BYTES, MAGIC,
};
pub use metadata_fetch::{
    MetadataBatch, MetadataContent, MetadataFetchRequest, MetadataFetchResponse,
    METADATA_BATCH_BYTES_MAX, METADATA_FETCH_BATCHES_MAX, METADATA_FETCH_MAX_BYTES_MAX,
    METADATA_FETCH_RECORDS_BYTES_MAX, METADATA_FETCH_WAIT_MS_MAX, METADATA_SNAPSHOT_BYTES_MAX,
};
pub use replica_fetch::{
    FetchPartition, FetchedPartition, RecordChunks, ReplicaFetchRequest, ReplicaFetchResponse,
    REPLICA_FETCH_BATCH_BYTES_MAX, REPLICA_FETCH_MAX_BYTES_MAX, REPLICA_FETCH_PARTITIONS_MAX,
    REPLICA_FETCH_RECORDS_BYTES_MAX, REPLICA_FETCH_WAIT_MS_MAX,
};
pub use txn::{
    TxnMarker, TxnMarkerResult, TxnMarkersRequest, TxnMarkersResponse, TxnVerifyRequest,
    TxnVerifyResponse, TRANSACTIONAL_ID_BYTES_MAX, TXN_MARKERS_MAX, TXN_VERIFY_PARTITIONS_MAX,
};

/// Oldest protocol version this build speaks.
pub const VERSION_MIN: u16 = 1;
/// Newest protocol version this build speaks.
pub const VERSION_MAX: u16 = 1;
/// The version every [`Hello`] frame is framed in, forever: a peer must be able to read the
/// handshake before the two sides have agreed on anything.
pub const HELLO_VERSION: u16 = 1;

const _: () = assert!(VERSION_MIN >= 1 && VERSION_MIN <= VERSION_MAX);
const _: () = assert!(HELLO_VERSION <= VERSION_MAX);

/// Largest payload (bytes after the header) of any cluster frame: 32 MiB, enough for a replica
/// fetch response at its records limit plus all its partition headers.
pub const CLUSTER_PAYLOAD_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Largest whole cluster frame, header included.
pub const CLUSTER_FRAME_BYTES_MAX: usize = FRAME_HEADER_BYTES + CLUSTER_PAYLOAD_BYTES_MAX;
/// Largest encoded Raft message a [`Raft`] frame carries (the controller crate's encoding is
/// opaque here; its own limits must stay under this one).
pub const RAFT_MESSAGE_BYTES_MAX: usize = CLUSTER_PAYLOAD_BYTES_MAX;
/// Requests a sender may have unanswered on one connection. This codec does not count them; the
/// session layer does, and closes a connection whose peer goes over.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 4;
/// What one connection's in-flight responses may hold in memory at worst.
pub const CONNECTION_BUFFERED_BYTES_MAX: usize = 256 * 1024 * 1024;

// The payload length is a u32 on the wire.
const _: () = assert!(CLUSTER_FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(RAFT_MESSAGE_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () =
    assert!(REQUESTS_IN_FLIGHT_MAX * CLUSTER_FRAME_BYTES_MAX <= CONNECTION_BUFFERED_BYTES_MAX);
