//! Truncation by leader epoch (KIP-101, KIP-279): a follower asks its leader where an epoch
//! ends, and truncates its log there before fetching. Kafka's OffsetForLeaderEpoch, in Spate's
//! layout. A replica fetch answers the same question inline (its diverging epoch); this request
//! is for a follower that must know before it fetches, e.g. after it restarts.
//!
//! Request:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..4  | replica_node_id |
//! | 4..8  | partition_count (at most [`EPOCH_END_OFFSET_PARTITIONS_MAX`]) |
//! | 8..   | partition_count x 28 bytes: topic_id (16), partition (4), current_leader_epoch (4), leader_epoch (4) |
//!
//! Response:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..4  | partition_count (at most [`EPOCH_END_OFFSET_PARTITIONS_MAX`]) |
//! | 4..   | partition_count x 34 bytes: topic_id (16), partition (4), error_code (2), leader_epoch (4), end_offset (8) |

use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::cluster::body::{over_limit, Reader};
use crate::cluster::control::decode_error_code;
use crate::cluster::{ClusterError, CLUSTER_PAYLOAD_BYTES_MAX};
use crate::types::{LeaderEpoch, Offset, PartitionIndex};
use crate::ErrorCode;

/// Most partitions in one epoch end offset request or response.
pub const EPOCH_END_OFFSET_PARTITIONS_MAX: usize = 4096;

const REQUEST_FIXED_BYTES: usize = core::mem::size_of::<RawRequest>();
const REQUEST_PARTITION_BYTES: usize = core::mem::size_of::<RawQuery>();
const RESPONSE_FIXED_BYTES: usize = core::mem::size_of::<RawResponse>();
const RESPONSE_PARTITION_BYTES: usize = core::mem::size_of::<RawResult>();

const _: () = assert!(REQUEST_FIXED_BYTES == 8 && REQUEST_PARTITION_BYTES == 28);
const _: () = assert!(RESPONSE_FIXED_BYTES == 4 && RESPONSE_PARTITION_BYTES == 34);
const _: () = assert!(
    REQUEST_FIXED_BYTES + EPOCH_END_OFFSET_PARTITIONS_MAX * REQUEST_PARTITION_BYTES
        <= CLUSTER_PAYLOAD_BYTES_MAX
);
const _: () = assert!(
    RESPONSE_FIXED_BYTES + EPOCH_END_OFFSET_PARTITIONS_MAX * RESPONSE_PARTITION_BYTES
        <= CLUSTER_PAYLOAD_BYTES_MAX
);

/// Where a leader epoch ends in a leader's log: the first offset after its last record (the
/// start offset of the next epoch, or the log end offset for the current one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochEndOffset {
    /// The epoch.
    pub leader_epoch: LeaderEpoch,
    /// Where it ends.
    pub end_offset: Offset,
}

/// One partition a follower asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochEndOffsetQuery {
    /// The topic's id.
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: PartitionIndex,
    /// The leader epoch the follower believes current (fencing, as in a fetch).
    pub current_leader_epoch: LeaderEpoch,
    /// The epoch whose end the follower wants: that of its last batch.
    pub leader_epoch: LeaderEpoch,
}

/// A follower asks where epochs end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEndOffsetRequest {
    /// The follower.
    pub replica_node_id: i32,
    /// One query per partition.
    pub partitions: Vec<EpochEndOffsetQuery>,
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochEndOffsetResult {
    /// The topic's id.
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: PartitionIndex,
    /// NONE, or why there is no answer (`NOT_LEADER_OR_FOLLOWER`, `FENCED_LEADER_EPOCH`...).
    pub error_code: ErrorCode,
    /// The largest epoch in the leader's log not above the one asked about, and where it ends;
    /// both -1 when the leader knows no such epoch.
    pub end: EpochEndOffset,
}

/// The leader's answer to an [`EpochEndOffsetRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEndOffsetResponse {
    /// One result per partition asked about.
    pub partitions: Vec<EpochEndOffsetResult>,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRequest {
    replica_node_id: I32,
    partition_count: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawQuery {
    topic_id: [u8; 16],
    partition: I32,
    current_leader_epoch: I32,
    leader_epoch: I32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawResponse {
    partition_count: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawResult {
    topic_id: [u8; 16],
    partition: I32,
    error_code: I16,
    leader_epoch: I32,
    end_offset: I64,
}

impl EpochEndOffsetRequest {
    pub(crate) fn encoded_bytes(&self) -> usize {
        REQUEST_FIXED_BYTES + self.partitions.len() * REQUEST_PARTITION_BYTES
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.partitions.len() <= EPOCH_END_OFFSET_PARTITIONS_MAX);
        let raw = RawRequest {
            replica_node_id: I32::new(self.replica_node_id),
            partition_count: U32::new(self.partitions.len() as u32),
        };
        out.put_slice(raw.as_bytes());
        for q in &self.partitions {
            let raw = RawQuery {
                topic_id: q.topic_id,
                partition: I32::new(q.partition.0),
                current_leader_epoch: I32::new(q.current_leader_epoch.0),
                leader_epoch: I32::new(q.leader_epoch.0),
            };
            out.put_slice(raw.as_bytes());
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<EpochEndOffsetRequest, ClusterError> {
        let raw: &RawRequest = reader.fixed()?;
        let count = raw.partition_count.get() as usize;
        over_limit(
            "epoch end offset partitions",
            count,
            EPOCH_END_OFFSET_PARTITIONS_MAX,
        )?;
        let entries: &[RawQuery] = reader.entries(count)?;
        reader.finish()?;
        let partitions = entries
            .iter()
            .map(|q| EpochEndOffsetQuery {
                topic_id: q.topic_id,
                partition: PartitionIndex(q.partition.get()),
                current_leader_epoch: LeaderEpoch(q.current_leader_epoch.get()),
                leader_epoch: LeaderEpoch(q.leader_epoch.get()),
            })
            .collect();
        Ok(EpochEndOffsetRequest {
            replica_node_id: raw.replica_node_id.get(),
            partitions,
        })
    }
}

impl EpochEndOffsetResponse {
    pub(crate) fn encoded_bytes(&self) -> usize {
        RESPONSE_FIXED_BYTES + self.partitions.len() * RESPONSE_PARTITION_BYTES
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.partitions.len() <= EPOCH_END_OFFSET_PARTITIONS_MAX);
        out.put_u32(self.partitions.len() as u32);
        for r in &self.partitions {
            let raw = RawResult {
                topic_id: r.topic_id,
                partition: I32::new(r.partition.0),
                error_code: I16::new(r.error_code.code()),
                leader_epoch: I32::new(r.end.leader_epoch.0),
                end_offset: I64::new(r.end.end_offset.0),
            };
            out.put_slice(raw.as_bytes());
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<EpochEndOffsetResponse, ClusterError> {
        let raw: &RawResponse = reader.fixed()?;
        let count = raw.partition_count.get() as usize;
        over_limit(
            "epoch end offset partitions",
            count,
            EPOCH_END_OFFSET_PARTITIONS_MAX,
        )?;
        let entries: &[RawResult] = reader.entries(count)?;
        reader.finish()?;
        let mut partitions = Vec::with_capacity(count);
        for r in entries {
            partitions.push(EpochEndOffsetResult {
                topic_id: r.topic_id,
                partition: PartitionIndex(r.partition.get()),
                error_code: decode_error_code(r.error_code.get())?,
                end: EpochEndOffset {
                    leader_epoch: LeaderEpoch(r.leader_epoch.get()),
                    end_offset: Offset(r.end_offset.get()),
                },
            });
        }
        Ok(EpochEndOffsetResponse { partitions })
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
        out.freeze()
    }

    #[test]
    fn request_layout_is_as_documented_and_round_trips() {
        let body = Body::EpochEndOffsetRequest(EpochEndOffsetRequest {
            replica_node_id: 4,
            partitions: vec![EpochEndOffsetQuery {
                topic_id: [9; 16],
                partition: PartitionIndex(1),
                current_leader_epoch: LeaderEpoch(8),
                leader_epoch: LeaderEpoch(6),
            }],
        });
        let bytes = encode(&body);
        assert_eq!(bytes.len(), 8 + 28);
        assert_eq!(&bytes[4..8], &1u32.to_be_bytes());
        assert_eq!(&bytes[32..36], &6i32.to_be_bytes());
        assert_eq!(
            Body::decode_payload(FrameKind::EpochEndOffsetRequest, 1, &bytes),
            Ok(body)
        );
    }

    #[test]
    fn response_round_trips_including_undefined_answers() {
        let result = |error_code, epoch, offset| EpochEndOffsetResult {
            topic_id: [3; 16],
            partition: PartitionIndex(0),
            error_code,
            end: EpochEndOffset {
                leader_epoch: LeaderEpoch(epoch),
                end_offset: Offset(offset),
            },
        };
        let body = Body::EpochEndOffsetResponse(EpochEndOffsetResponse {
            partitions: vec![
                result(ErrorCode::None, 6, 1234),
                result(ErrorCode::FencedLeaderEpoch, -1, -1),
            ],
        });
        let bytes = encode(&body);
        assert_eq!(bytes.len(), 4 + 2 * 34);
        assert_eq!(&bytes[4 + 26..4 + 34], &1234i64.to_be_bytes());
        assert_eq!(
            Body::decode_payload(FrameKind::EpochEndOffsetResponse, 1, &bytes),
            Ok(body)
        );
    }

    #[test]
    fn counts_over_the_limit_or_the_bytes_are_refused() {
        let mut bytes = vec![0, 0, 0, 1];
        bytes.extend_from_slice(&(EPOCH_END_OFFSET_PARTITIONS_MAX as u32 + 1).to_be_bytes());
        assert!(matches!(
            Body::decode_payload(FrameKind::EpochEndOffsetRequest, 1, &Bytes::from(bytes)),
            Err(ClusterError::OverLimit { .. })
        ));
        let bytes = Bytes::from_static(&[0, 0, 0x10, 0]);
        assert_eq!(
            Body::decode_payload(FrameKind::EpochEndOffsetResponse, 1, &bytes),
            Err(ClusterError::Truncated {
                needed: 4096 * 34,
                available: 0
            })
        );
    }
}
