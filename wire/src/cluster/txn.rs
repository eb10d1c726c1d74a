//! Transactions across brokers: a transaction coordinator asks partition leaders on other
//! brokers to write its markers (Kafka's WriteTxnMarkers, in Spate's layout), and a partition
//! leader asks a transactional id's coordinator on another broker which partitions are in the
//! producer's transaction (KIP-890's verification, which Kafka sends as AddPartitionsToTxn v4
//! with `verify_only`).
//!
//! Markers request:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..4  | coordinator_partition: the `__transaction_state` partition of the transaction |
//! | 4..8  | coordinator_epoch: the coordinator's leader epoch of that partition |
//! | 8..12 | marker_count (at most [`TXN_MARKERS_MAX`]) |
//! | 12..  | marker_count x 31 bytes: topic_id (16), partition (4), producer_id (8), producer_epoch (2), commit (1: 0 or 1) |
//!
//! A leader whose metadata shows a newer leader epoch of the coordinator's partition refuses
//! the markers (TRANSACTION_COORDINATOR_FENCED): a deposed coordinator's late marker must not
//! end a later transaction of the same producer epoch (Kafka's coordinator epoch).
//!
//! Markers response:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..4  | marker_count (at most [`TXN_MARKERS_MAX`]) |
//! | 4..   | marker_count x 22 bytes: topic_id (16), partition (4), error_code (2) |
//!
//! Verify request:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..8  | producer_id |
//! | 8..10 | producer_epoch |
//! | 10..12 | id_len (at most [`TRANSACTIONAL_ID_BYTES_MAX`]) |
//! | 12..  | transactional id, UTF-8 |
//! | +4    | partition_count (at most [`TXN_VERIFY_PARTITIONS_MAX`]) |
//! | ..    | partition_count x (name_len u16 (at most [`TOPIC_NAME_BYTES_MAX`]), name UTF-8, partition i32) |
//!
//! Verify response:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..2  | error_code (NONE, or why nothing was verified) |
//! | 2..6  | partition_count (at most [`TXN_VERIFY_PARTITIONS_MAX`]; 0 unless NONE) |
//! | 6..   | partition_count x 1 byte: in the transaction (0 or 1), in the request's order |

use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::cluster::body::{over_limit, put_str16, Reader};
use crate::cluster::control::decode_error_code;
use crate::cluster::{ClusterError, CLUSTER_PAYLOAD_BYTES_MAX, TOPIC_NAME_BYTES_MAX};
use crate::types::{LeaderEpoch, PartitionIndex, ProducerEpoch, ProducerId};
use crate::ErrorCode;

/// Most markers in one request: a transaction's partitions on one broker (Kafka does not bound
/// a transaction's partitions; a coordinator splits a larger set over several requests).
pub const TXN_MARKERS_MAX: usize = 4096;
/// Most partitions one verification names (a Produce request's partitions for one leader).
pub const TXN_VERIFY_PARTITIONS_MAX: usize = 4096;
/// Longest transactional id (Kafka bounds it by its string encoding: a u16 length).
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = u16::MAX as usize;

const MARKER_BYTES: usize = core::mem::size_of::<RawMarker>();
const MARKER_RESULT_BYTES: usize = core::mem::size_of::<RawMarkerResult>();
const VERIFY_FIXED_BYTES: usize = core::mem::size_of::<RawVerify>();
/// The smallest verify entry: an empty name and a partition.
const VERIFY_ENTRY_BYTES_MIN: usize = 2 + 4;

const _: () = assert!(MARKER_BYTES == 31 && MARKER_RESULT_BYTES == 22);
const _: () = assert!(VERIFY_FIXED_BYTES == 12);
const _: () = assert!(12 + TXN_MARKERS_MAX * MARKER_BYTES <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(
    VERIFY_FIXED_BYTES
        + TRANSACTIONAL_ID_BYTES_MAX
        + 4
        + TXN_VERIFY_PARTITIONS_MAX * (2 + TOPIC_NAME_BYTES_MAX + 4)
        <= CLUSTER_PAYLOAD_BYTES_MAX
);

/// One marker to write: the control batch ending a producer's transaction on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnMarker {
    /// The partition's topic, by id (a topic deleted and created again is another topic).
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: PartitionIndex,
    /// The producer whose transaction ends.
    pub producer_id: ProducerId,
    /// Its epoch, which the marker is written with.
    pub producer_epoch: ProducerEpoch,
    /// COMMIT, or ABORT.
    pub commit: bool,
}

/// A coordinator asks a partition leader to write markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMarkersRequest {
    /// The `__transaction_state` partition whose leader coordinates the transaction.
    pub coordinator_partition: PartitionIndex,
    /// The coordinator's leader epoch of that partition.
    pub coordinator_epoch: LeaderEpoch,
    /// The markers, on partitions the receiver leads.
    pub markers: Vec<TxnMarker>,
}

/// How one marker went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnMarkerResult {
    /// The partition's topic id.
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: PartitionIndex,
    /// NONE once the marker is durable (as the partition's acks=all write is); otherwise why
    /// not (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS...), and the coordinator retries.
    pub error_code: ErrorCode,
}

/// The answer to a [`TxnMarkersRequest`]: one result per marker, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMarkersResponse {
    /// The results.
    pub markers: Vec<TxnMarkerResult>,
}

/// A partition leader asks a transactional id's coordinator which partitions are in the
/// producer's open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnVerifyRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer of the batches.
    pub producer_id: ProducerId,
    /// Its epoch.
    pub producer_epoch: ProducerEpoch,
    /// The partitions, by topic name (the coordinator's transactions name them so).
    pub partitions: Vec<(String, PartitionIndex)>,
}

/// The coordinator's answer to a [`TxnVerifyRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnVerifyResponse {
    /// NONE, or why nothing was verified (NOT_COORDINATOR, PRODUCER_FENCED...).
    pub error_code: ErrorCode,
    /// Whether each partition asked about is in the transaction; empty unless NONE.
    pub verified: Vec<bool>,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawMarker {
    topic_id: [u8; 16],
    partition: I32,
    producer_id: I64,
    producer_epoch: I16,
    commit: u8,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawMarkerResult {
    topic_id: [u8; 16],
    partition: I32,
    error_code: I16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawVerify {
    producer_id: I64,
    producer_epoch: I16,
    id_len: zerocopy::byteorder::big_endian::U16,
}

impl TxnMarkersRequest {
    pub(crate) fn encoded_bytes(&self) -> usize {
        12 + self.markers.len() * MARKER_BYTES
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.markers.len() <= TXN_MARKERS_MAX);
        out.put_i32(self.coordinator_partition.0);
        out.put_i32(self.coordinator_epoch.0);
        out.put_u32(self.markers.len() as u32);
        for m in &self.markers {
            let raw = RawMarker {
                topic_id: m.topic_id,
                partition: I32::new(m.partition.0),
                producer_id: I64::new(m.producer_id.0),
                producer_epoch: I16::new(m.producer_epoch.0),
                commit: u8::from(m.commit),
            };
            out.put_slice(raw.as_bytes());
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<TxnMarkersRequest, ClusterError> {
        let coordinator_partition = PartitionIndex(reader.fixed::<I32>()?.get());
        let coordinator_epoch = LeaderEpoch(reader.fixed::<I32>()?.get());
        let count = reader.fixed::<U32>()?.get() as usize;
        over_limit("transaction markers", count, TXN_MARKERS_MAX)?;
        let entries: &[RawMarker] = reader.entries(count)?;
        reader.finish()?;
        let mut markers = Vec::with_capacity(count);
        for m in entries {
            let commit = match m.commit {
                0 => false,
                1 => true,
                _ => {
                    return Err(ClusterError::Malformed {
                        what: "transaction marker type",
                    })
                }
            };
            markers.push(TxnMarker {
                topic_id: m.topic_id,
                partition: PartitionIndex(m.partition.get()),
                producer_id: ProducerId(m.producer_id.get()),
                producer_epoch: ProducerEpoch(m.producer_epoch.get()),
                commit,
            });
        }
        Ok(TxnMarkersRequest {
            coordinator_partition,
            coordinator_epoch,
            markers,
        })
    }
}

impl TxnMarkersResponse {
    pub(crate) fn encoded_bytes(&self) -> usize {
        4 + self.markers.len() * MARKER_RESULT_BYTES
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.markers.len() <= TXN_MARKERS_MAX);
        out.put_u32(self.markers.len() as u32);
        for r in &self.markers {
            let raw = RawMarkerResult {
                topic_id: r.topic_id,
                partition: I32::new(r.partition.0),
                error_code: I16::new(r.error_code.code()),
            };
            out.put_slice(raw.as_bytes());
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<TxnMarkersResponse, ClusterError> {
        let count = reader.fixed::<U32>()?.get() as usize;
        over_limit("transaction markers", count, TXN_MARKERS_MAX)?;
        let entries: &[RawMarkerResult] = reader.entries(count)?;
        reader.finish()?;
        let mut markers = Vec::with_capacity(count);
        for r in entries {
            markers.push(TxnMarkerResult {
                topic_id: r.topic_id,
                partition: PartitionIndex(r.partition.get()),
                error_code: decode_error_code(r.error_code.get())?,
            });
        }
        Ok(TxnMarkersResponse { markers })
    }
}

impl TxnVerifyRequest {
    pub(crate) fn encoded_bytes(&self) -> usize {
        VERIFY_FIXED_BYTES
            + self.transactional_id.len()
            + 4
            + self
                .partitions
                .iter()
                .map(|(name, _)| 2 + name.len() + 4)
                .sum::<usize>()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.transactional_id.len() <= TRANSACTIONAL_ID_BYTES_MAX);
        assert!(self.partitions.len() <= TXN_VERIFY_PARTITIONS_MAX);
        out.put_i64(self.producer_id.0);
        out.put_i16(self.producer_epoch.0);
        put_str16(out, &self.transactional_id);
        out.put_u32(self.partitions.len() as u32);
        for (name, partition) in &self.partitions {
            assert!(name.len() <= TOPIC_NAME_BYTES_MAX);
            put_str16(out, name);
            out.put_i32(partition.0);
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<TxnVerifyRequest, ClusterError> {
        let raw: &RawVerify = reader.fixed()?;
        let id_len = usize::from(raw.id_len.get());
        let transactional_id = reader.str(id_len, "transactional id is not UTF-8")?;
        let count = reader.fixed::<U32>()?.get() as usize;
        over_limit(
            "transaction verify partitions",
            count,
            TXN_VERIFY_PARTITIONS_MAX,
        )?;
        reader.room_for(count, VERIFY_ENTRY_BYTES_MIN)?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(
                reader
                    .fixed::<zerocopy::byteorder::big_endian::U16>()?
                    .get(),
            );
            over_limit("topic name bytes", len, TOPIC_NAME_BYTES_MAX)?;
            let name = reader.str(len, "topic name is not UTF-8")?;
            let partition = reader.fixed::<I32>()?.get();
            partitions.push((name, PartitionIndex(partition)));
        }
        reader.finish()?;
        Ok(TxnVerifyRequest {
            transactional_id,
            producer_id: ProducerId(raw.producer_id.get()),
            producer_epoch: ProducerEpoch(raw.producer_epoch.get()),
            partitions,
        })
    }
}

impl TxnVerifyResponse {
    pub(crate) fn encoded_bytes(&self) -> usize {
        2 + 4 + self.verified.len()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.verified.len() <= TXN_VERIFY_PARTITIONS_MAX);
        assert!(self.error_code == ErrorCode::None || self.verified.is_empty());
        out.put_i16(self.error_code.code());
        out.put_u32(self.verified.len() as u32);
        for &v in &self.verified {
            out.put_u8(u8::from(v));
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<TxnVerifyResponse, ClusterError> {
        let error_code = decode_error_code(reader.fixed::<I16>()?.get())?;
        let count = reader.fixed::<U32>()?.get() as usize;
        over_limit(
            "transaction verify partitions",
            count,
            TXN_VERIFY_PARTITIONS_MAX,
        )?;
        if error_code != ErrorCode::None && count > 0 {
            return Err(ClusterError::Malformed {
                what: "verification results with an error",
            });
        }
        reader.room_for(count, 1)?;
        let mut verified = Vec::with_capacity(count);
        for _ in 0..count {
            verified.push(reader.flag("verification result")?);
        }
        reader.finish()?;
        Ok(TxnVerifyResponse {
            error_code,
            verified,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Body, FrameKind};
    use bytes::Bytes;

    fn encode(body: &Body) -> Bytes {
        let mut out = BytesMut::new();
        let mut records = Vec::new();
        body.encode_payload(1, &mut out, &mut records);
        assert!(records.is_empty());
        assert_eq!(out.len(), body.framing_bytes_hint());
        out.freeze()
    }

    #[test]
    fn markers_layout_is_as_documented_and_round_trips() {
        let body = Body::TxnMarkersRequest(TxnMarkersRequest {
            coordinator_partition: PartitionIndex(17),
            coordinator_epoch: LeaderEpoch(4),
            markers: vec![TxnMarker {
                topic_id: [7; 16],
                partition: PartitionIndex(2),
                producer_id: ProducerId(1000),
                producer_epoch: ProducerEpoch(3),
                commit: true,
            }],
        });
        let bytes = encode(&body);
        assert_eq!(bytes.len(), 12 + 31);
        assert_eq!(&bytes[4..8], &4i32.to_be_bytes());
        assert_eq!(&bytes[32..40], &1000i64.to_be_bytes());
        assert_eq!(bytes[42], 1);
        assert_eq!(
            Body::decode_payload(FrameKind::TxnMarkersRequest, 1, &bytes),
            Ok(body)
        );
        let response = Body::TxnMarkersResponse(TxnMarkersResponse {
            markers: vec![TxnMarkerResult {
                topic_id: [7; 16],
                partition: PartitionIndex(2),
                error_code: ErrorCode::NotLeaderOrFollower,
            }],
        });
        let bytes = encode(&response);
        assert_eq!(bytes.len(), 4 + 22);
        assert_eq!(
            Body::decode_payload(FrameKind::TxnMarkersResponse, 1, &bytes),
            Ok(response)
        );
    }

    #[test]
    fn a_marker_type_other_than_0_or_1_is_refused() {
        let mut bytes = vec![0; 8];
        bytes.extend_from_slice(&[0, 0, 0, 1]);
        bytes.extend_from_slice(&[0; 30]);
        bytes.push(2);
        assert_eq!(
            Body::decode_payload(FrameKind::TxnMarkersRequest, 1, &Bytes::from(bytes)),
            Err(ClusterError::Malformed {
                what: "transaction marker type"
            })
        );
    }

    #[test]
    fn verify_round_trips_and_refuses_results_with_an_error() {
        let body = Body::TxnVerifyRequest(TxnVerifyRequest {
            transactional_id: "app-1".to_owned(),
            producer_id: ProducerId(5),
            producer_epoch: ProducerEpoch(0),
            partitions: vec![
                ("out".to_owned(), PartitionIndex(0)),
                (String::new(), PartitionIndex(9)),
            ],
        });
        let bytes = encode(&body);
        assert_eq!(bytes.len(), 12 + 5 + 4 + (2 + 3 + 4) + (2 + 4));
        assert_eq!(
            Body::decode_payload(FrameKind::TxnVerifyRequest, 1, &bytes),
            Ok(body)
        );
        let response = Body::TxnVerifyResponse(TxnVerifyResponse {
            error_code: ErrorCode::None,
            verified: vec![true, false],
        });
        let bytes = encode(&response);
        assert_eq!(&bytes[..], &[0, 0, 0, 0, 0, 2, 1, 0]);
        assert_eq!(
            Body::decode_payload(FrameKind::TxnVerifyResponse, 1, &bytes),
            Ok(response)
        );
        let fenced = ErrorCode::ProducerFenced.code().to_be_bytes();
        let bytes = Bytes::from(vec![fenced[0], fenced[1], 0, 0, 0, 1, 1]);
        assert_eq!(
            Body::decode_payload(FrameKind::TxnVerifyResponse, 1, &bytes),
            Err(ClusterError::Malformed {
                what: "verification results with an error"
            })
        );
    }

    #[test]
    fn counts_over_the_limit_or_the_bytes_are_refused() {
        let mut bytes = vec![0; 8];
        bytes.extend_from_slice(&(TXN_MARKERS_MAX as u32 + 1).to_be_bytes());
        assert!(matches!(
            Body::decode_payload(FrameKind::TxnMarkersRequest, 1, &Bytes::from(bytes)),
            Err(ClusterError::OverLimit { .. })
        ));
        // A verification claiming 4096 partitions in 0 bytes reserves nothing.
        let mut bytes = vec![0; 10];
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&4096u32.to_be_bytes());
        assert!(matches!(
            Body::decode_payload(FrameKind::TxnVerifyRequest, 1, &Bytes::from(bytes)),
            Err(ClusterError::Truncated { .. })
        ));
    }
}
