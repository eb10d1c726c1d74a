//! An observer (a broker that is not a controller voter) fetches the committed metadata log from
//! a voter: [`super::FrameKind::MetadataFetchRequest`] and
//! [`super::FrameKind::MetadataFetchResponse`]. Kafka's KRaft observers do the same with a
//! Fetch on the `__cluster_metadata` partition; Spate's layout is its own, like every cluster
//! body.
//!
//! Request (24 bytes):
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..4   | node_id (the observer) |
//! | 4..12  | from_offset (the first metadata offset it wants: its applied offset + 1) |
//! | 12..16 | max_wait_ms (at most [`METADATA_FETCH_WAIT_MS_MAX`]) |
//! | 16..20 | max_bytes (at most [`METADATA_FETCH_MAX_BYTES_MAX`]) |
//! | 20..24 | reserved, 0 |
//!
//! Response: a 27-byte head, then either batches or a snapshot (`content` byte).
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..2   | error_code (NONE, or why this voter cannot serve) |
//! | 2..6   | leader_id (-1: unknown) |
//! | 6..14  | leader_term |
//! | 14..22 | committed_offset (the last offset this voter has committed and applied) |
//! | 22     | content: 0 batches, 1 snapshot |
//! | 23..27 | count: batches (at most [`METADATA_FETCH_BATCHES_MAX`]), or 1 for a snapshot |
//! | 27..   | count x 12 bytes: offset (u64), bytes (u32) |
//! | then   | each batch's (or the snapshot's) bytes, in order, exactly the rest of the payload |
//!
//! A batch is the controller crate's encoded record batch for that offset, opaque here; 0 bytes
//! for an offset whose entry carries no records (Raft's empty entries). A snapshot's offset is
//! the last offset it contains; the observer continues from the next one.

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::byteorder::big_endian::{I16, I32, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::cluster::body::{over_limit, Reader};
use crate::cluster::control::decode_error_code;
use crate::cluster::{ClusterError, CLUSTER_PAYLOAD_BYTES_MAX};
use crate::ErrorCode;

/// Longest long poll a metadata fetch may ask for.
pub const METADATA_FETCH_WAIT_MS_MAX: u32 = 30_000;
/// Largest `max_bytes` an observer may ask for.
pub const METADATA_FETCH_MAX_BYTES_MAX: u32 = 8 * 1024 * 1024;
/// Largest batch a response carries: the controller crate's batch limit (2 MiB) with room.
pub const METADATA_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Batches in one response (the controller reads at most 4096 entries at a time).
pub const METADATA_FETCH_BATCHES_MAX: usize = 4096;
/// Batch bytes in one response: `max_bytes`, plus one oversized first batch.
pub const METADATA_FETCH_RECORDS_BYTES_MAX: usize =
    METADATA_FETCH_MAX_BYTES_MAX as usize + METADATA_BATCH_BYTES_MAX;
/// Largest snapshot of the metadata image a response carries; a voter whose image is larger
/// answers `MESSAGE_TOO_LARGE` (the image would need chunking, which version 1 does not have).
pub const METADATA_SNAPSHOT_BYTES_MAX: usize = 24 * 1024 * 1024;

const REQUEST_BYTES: usize = core::mem::size_of::<RawRequest>();
const HEAD_BYTES: usize = core::mem::size_of::<RawHead>();
const ENTRY_BYTES: usize = core::mem::size_of::<RawEntry>();

const _: () = assert!(REQUEST_BYTES == 24 && HEAD_BYTES == 27 && ENTRY_BYTES == 12);
const _: () = assert!(
    HEAD_BYTES + METADATA_FETCH_BATCHES_MAX * ENTRY_BYTES + METADATA_FETCH_RECORDS_BYTES_MAX
        <= CLUSTER_PAYLOAD_BYTES_MAX
);
const _: () =
    assert!(HEAD_BYTES + ENTRY_BYTES + METADATA_SNAPSHOT_BYTES_MAX <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(METADATA_BATCH_BYTES_MAX <= METADATA_FETCH_RECORDS_BYTES_MAX);

/// An observer asks a voter for committed metadata records from `from_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetadataFetchRequest {
    /// The observer.
    pub node_id: i32,
    /// The first offset wanted (the observer's applied offset + 1).
    pub from_offset: u64,
    /// How long the voter may hold the request when it has nothing from `from_offset` on.
    pub max_wait_ms: u32,
    /// Batch bytes wanted at most (the first batch is sent whole regardless).
    pub max_bytes: u32,
}

/// One committed metadata log entry: its offset and its encoded record batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetadataBatch {
    /// The entry's offset in the metadata log.
    pub offset: u64,
    /// The controller crate's encoding of its records; empty for an entry without records.
    pub records: Bytes,
}

/// What a metadata fetch answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataContent {
    /// Committed entries from the offset asked for, in offset order (possibly none: the long
    /// poll ran out).
    Batches(Vec<MetadataBatch>),
    /// The offset asked for was compacted away: the whole image as of `offset` (the
    /// controller crate's snapshot encoding), to start again from.
    Snapshot {
        /// The last offset the snapshot contains.
        offset: u64,
        /// The encoded image.
        bytes: Bytes,
    },
}

/// A voter's answer to a [`MetadataFetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataFetchResponse {
    /// NONE, or why this voter cannot serve (the observer asks another).
    pub error_code: ErrorCode,
    /// The quorum's leader as this voter knows it.
    pub leader_id: Option<i32>,
    /// This voter's Raft term.
    pub leader_term: u64,
    /// The last offset this voter has committed and applied.
    pub committed_offset: u64,
    /// Records or a snapshot.
    pub content: MetadataContent,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRequest {
    node_id: I32,
    from_offset: U64,
    max_wait_ms: U32,
    max_bytes: U32,
    reserved: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHead {
    error_code: I16,
    leader_id: I32,
    leader_term: U64,
    committed_offset: U64,
    content: u8,
    count: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawEntry {
    offset: U64,
    bytes: U32,
}

const CONTENT_BATCHES: u8 = 0;
const CONTENT_SNAPSHOT: u8 = 1;

impl MetadataFetchRequest {
    pub(crate) fn encoded_bytes(&self) -> usize {
        REQUEST_BYTES
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.max_wait_ms <= METADATA_FETCH_WAIT_MS_MAX);
        assert!(self.max_bytes <= METADATA_FETCH_MAX_BYTES_MAX);
        let raw = RawRequest {
            node_id: I32::new(self.node_id),
            from_offset: U64::new(self.from_offset),
            max_wait_ms: U32::new(self.max_wait_ms),
            max_bytes: U32::new(self.max_bytes),
            reserved: U32::new(0),
        };
        out.put_slice(raw.as_bytes());
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<MetadataFetchRequest, ClusterError> {
        let raw: &RawRequest = reader.fixed()?;
        reader.finish()?;
        over_limit(
            "metadata fetch max_wait_ms",
            raw.max_wait_ms.get() as usize,
            METADATA_FETCH_WAIT_MS_MAX as usize,
        )?;
        over_limit(
            "metadata fetch max_bytes",
            raw.max_bytes.get() as usize,
            METADATA_FETCH_MAX_BYTES_MAX as usize,
        )?;
        if raw.reserved.get() != 0 {
            return Err(ClusterError::Malformed {
                what: "metadata fetch reserved bytes",
            });
        }
        Ok(MetadataFetchRequest {
            node_id: raw.node_id.get(),
            from_offset: raw.from_offset.get(),
            max_wait_ms: raw.max_wait_ms.get(),
            max_bytes: raw.max_bytes.get(),
        })
    }
}

impl MetadataFetchResponse {
    /// An answer with nothing but an error (and what this voter knows of the leader).
    pub fn failed(error_code: ErrorCode, leader_id: Option<i32>, leader_term: u64) -> Self {
        MetadataFetchResponse {
            error_code,
            leader_id,
            leader_term,
            committed_offset: 0,
            content: MetadataContent::Batches(Vec::new()),
        }
    }

    /// Checks the limits the encoder asserts: a caller builds a response from its log and
    /// answers `MESSAGE_TOO_LARGE` instead of encoding one that is over.
    ///
    /// # Errors
    /// [`ClusterError::OverLimit`] naming the first limit exceeded.
    pub fn validate(&self) -> Result<(), ClusterError> {
        match &self.content {
            MetadataContent::Batches(batches) => {
                over_limit(
                    "metadata fetch batches",
                    batches.len(),
                    METADATA_FETCH_BATCHES_MAX,
                )?;
                for b in batches {
                    over_limit(
                        "metadata batch bytes",
                        b.records.len(),
                        METADATA_BATCH_BYTES_MAX,
                    )?;
                }
                let total: usize = batches.iter().map(|b| b.records.len()).sum();
                over_limit(
                    "metadata fetch records bytes",
                    total,
                    METADATA_FETCH_RECORDS_BYTES_MAX,
                )
            }
            MetadataContent::Snapshot { bytes, .. } => over_limit(
                "metadata snapshot bytes",
                bytes.len(),
                METADATA_SNAPSHOT_BYTES_MAX,
            ),
        }
    }

    pub(crate) fn encoded_bytes(&self) -> usize {
        let entries = match &self.content {
            MetadataContent::Batches(batches) => batches.len(),
            MetadataContent::Snapshot { .. } => 1,
        };
        HEAD_BYTES + entries * ENTRY_BYTES
    }

    /// Framing into `out`; batch and snapshot bytes pushed onto `parts`, not copied.
    pub(crate) fn encode(&self, out: &mut BytesMut, parts: &mut Vec<Bytes>) {
        assert!(
            self.validate().is_ok(),
            "metadata fetch response over its limits"
        );
        let leader_id = self.leader_id.unwrap_or(-1);
        assert!(leader_id >= -1, "a leader id is not negative");
        let (content, entries): (u8, Vec<(u64, &Bytes)>) = match &self.content {
            MetadataContent::Batches(batches) => (
                CONTENT_BATCHES,
                batches.iter().map(|b| (b.offset, &b.records)).collect(),
            ),
            MetadataContent::Snapshot { offset, bytes } => {
                (CONTENT_SNAPSHOT, vec![(*offset, bytes)])
            }
        };
        let head = RawHead {
            error_code: I16::new(self.error_code.code()),
            leader_id: I32::new(leader_id),
            leader_term: U64::new(self.leader_term),
            committed_offset: U64::new(self.committed_offset),
            content,
            count: U32::new(entries.len() as u32),
        };
        out.put_slice(head.as_bytes());
        for (offset, bytes) in &entries {
            let raw = RawEntry {
                offset: U64::new(*offset),
                bytes: U32::new(bytes.len() as u32),
            };
            out.put_slice(raw.as_bytes());
        }
        parts.extend(
            entries
                .into_iter()
                .filter(|(_, b)| !b.is_empty())
                .map(|(_, b)| b.clone()),
        );
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<MetadataFetchResponse, ClusterError> {
        let head: &RawHead = reader.fixed()?;
        let error_code = decode_error_code(head.error_code.get())?;
        let leader_id = match head.leader_id.get() {
            -1 => None,
            id if id >= 0 => Some(id),
            _ => {
                return Err(ClusterError::Malformed {
                    what: "metadata fetch leader id",
                })
            }
        };
        let count = head.count.get() as usize;
        let (content, limit, each_max, total_max) = match head.content {
            CONTENT_BATCHES => (
                CONTENT_BATCHES,
                METADATA_FETCH_BATCHES_MAX,
                METADATA_BATCH_BYTES_MAX,
                METADATA_FETCH_RECORDS_BYTES_MAX,
            ),
            CONTENT_SNAPSHOT if count == 1 => (
                CONTENT_SNAPSHOT,
                1,
                METADATA_SNAPSHOT_BYTES_MAX,
                METADATA_SNAPSHOT_BYTES_MAX,
            ),
            _ => {
                return Err(ClusterError::Malformed {
                    what: "metadata fetch content",
                })
            }
        };
        over_limit("metadata fetch batches", count, limit)?;
        let entries: &[RawEntry] = reader.entries(count)?;
        let mut total = 0usize;
        for e in entries {
            let n = e.bytes.get() as usize;
            over_limit("metadata batch bytes", n, each_max)?;
            total += n;
        }
        over_limit("metadata fetch records bytes", total, total_max)?;
        if total != reader.remaining() {
            // More bytes than the entries claim is trailing; fewer is truncated.
            if total < reader.remaining() {
                return Err(ClusterError::TrailingBytes {
                    kind: crate::cluster::FrameKind::MetadataFetchResponse,
                    extra: reader.remaining() - total,
                });
            }
            return Err(ClusterError::Truncated {
                needed: total,
                available: reader.remaining(),
            });
        }
        let mut slices = Vec::with_capacity(count);
        for e in entries {
            slices.push((e.offset.get(), reader.bytes(e.bytes.get() as usize)?));
        }
        reader.finish()?;
        let content = if content == CONTENT_SNAPSHOT {
            let (offset, bytes) = slices.pop().expect("one snapshot entry");
            MetadataContent::Snapshot { offset, bytes }
        } else {
            MetadataContent::Batches(
                slices
                    .into_iter()
                    .map(|(offset, records)| MetadataBatch { offset, records })
                    .collect(),
            )
        };
        Ok(MetadataFetchResponse {
            error_code,
            leader_id,
            leader_term: head.leader_term.get(),
            committed_offset: head.committed_offset.get(),
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{encode_frame, Body, Envelope, FrameDecoder, FrameKind, VERSION_MAX};

    fn round_trip(body: Body) -> Vec<u8> {
        let envelope = Envelope {
            version: VERSION_MAX,
            correlation_id: 5,
            sender_node_id: 1,
        };
        let bytes = encode_frame(&envelope, &body).to_bytes();
        let frame = FrameDecoder::default()
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap();
        assert_eq!(Body::decode(&frame).unwrap(), body);
        frame.payload.to_vec()
    }

    #[test]
    fn request_layout_is_as_documented() {
        let payload = round_trip(Body::MetadataFetchRequest(MetadataFetchRequest {
            node_id: 4,
            from_offset: 0x0102,
            max_wait_ms: 500,
            max_bytes: 0x10000,
        }));
        let expected: Vec<u8> = [
            &4i32.to_be_bytes()[..],
            &0x0102u64.to_be_bytes(),
            &500u32.to_be_bytes(),
            &0x10000u32.to_be_bytes(),
            &[0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(payload, expected);
    }

    #[test]
    fn response_layout_is_as_documented() {
        let payload = round_trip(Body::MetadataFetchResponse(MetadataFetchResponse {
            error_code: ErrorCode::None,
            leader_id: Some(2),
            leader_term: 7,
            committed_offset: 11,
            content: MetadataContent::Batches(vec![
                MetadataBatch {
                    offset: 10,
                    records: Bytes::from_static(b"abc"),
                },
                MetadataBatch {
                    offset: 11,
                    records: Bytes::new(),
                },
            ]),
        }));
        let expected: Vec<u8> = [
            &0i16.to_be_bytes()[..],
            &2i32.to_be_bytes(),
            &7u64.to_be_bytes(),
            &11u64.to_be_bytes(),
            &[0],
            &2u32.to_be_bytes(),
            &10u64.to_be_bytes(),
            &3u32.to_be_bytes(),
            &11u64.to_be_bytes(),
            &0u32.to_be_bytes(),
            b"abc",
        ]
        .concat();
        assert_eq!(payload, expected);
    }

    #[test]
    fn a_snapshot_round_trips_and_an_unknown_leader_is_minus_one() {
        let payload = round_trip(Body::MetadataFetchResponse(MetadataFetchResponse {
            error_code: ErrorCode::None,
            leader_id: None,
            leader_term: 3,
            committed_offset: 40,
            content: MetadataContent::Snapshot {
                offset: 40,
                bytes: Bytes::from_static(b"image"),
            },
        }));
        assert_eq!(&payload[2..6], &(-1i32).to_be_bytes());
        assert_eq!(payload[22], 1);
    }

    #[test]
    fn limits_and_bad_fields_are_refused() {
        let mut request = vec![0u8; 24];
        request[12..16].copy_from_slice(&(METADATA_FETCH_WAIT_MS_MAX + 1).to_be_bytes());
        let decode =
            |kind, bytes: Vec<u8>| Body::decode_payload(kind, VERSION_MAX, &Bytes::from(bytes));
        assert!(matches!(
            decode(FrameKind::MetadataFetchRequest, request.clone()),
            Err(ClusterError::OverLimit { .. })
        ));
        request[12..16].copy_from_slice(&0u32.to_be_bytes());
        request[23] = 1;
        assert!(matches!(
            decode(FrameKind::MetadataFetchRequest, request),
            Err(ClusterError::Malformed { .. })
        ));
        // A snapshot content with two entries, a content byte of 2, a leader id of -2.
        let mut head = vec![0u8; 27];
        head[22] = 1;
        head[23..27].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            decode(FrameKind::MetadataFetchResponse, head.clone()),
            Err(ClusterError::Malformed { .. })
        ));
        head[22] = 2;
        assert!(decode(FrameKind::MetadataFetchResponse, head.clone()).is_err());
        head[22] = 0;
        head[23..27].copy_from_slice(&0u32.to_be_bytes());
        head[2..6].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(
            decode(FrameKind::MetadataFetchResponse, head.clone()),
            Err(ClusterError::Malformed { .. })
        ));
        head[2..6].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(decode(FrameKind::MetadataFetchResponse, head.clone()).is_ok());
        head.push(0);
        assert!(matches!(
            decode(FrameKind::MetadataFetchResponse, head),
            Err(ClusterError::TrailingBytes { .. })
        ));
    }
}
