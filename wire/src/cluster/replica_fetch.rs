//! Replication: a follower fetches records from its leader (Kafka's replica Fetch, in Spate's
//! own layout).
//!
//! The follower asks, per partition, from its log end offset with the leader epoch it believes
//! current and the epoch of its last fetched batch; the leader answers with its high watermark,
//! its log start offset, and the record batches exactly as stored, or with a diverging epoch
//! (KIP-320) when the follower's log has gone past where the leader's log for that epoch ends,
//! and the follower must truncate first. Requests are pipelined (correlation ids) and
//! long-polled (`max_wait_ms`, `min_bytes`).
//!
//! Request:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..4   | replica_node_id |
//! | 4..12  | replica_incarnation |
//! | 12..16 | max_wait_ms (at most [`REPLICA_FETCH_WAIT_MS_MAX`]) |
//! | 16..20 | min_bytes (at most max_bytes) |
//! | 20..24 | max_bytes (at most [`REPLICA_FETCH_MAX_BYTES_MAX`]) |
//! | 24..28 | partition_count (at most [`REPLICA_FETCH_PARTITIONS_MAX`]) |
//! | 28..   | partition_count x 36 bytes: topic_id (16), partition (4), fetch_offset (8), current_leader_epoch (4), last_fetched_epoch (4) |
//!
//! Response: all partition headers first, then all record data, partition after partition. The
//! framing is thus one contiguous buffer, followed by the stored batches as they are: one
//! vectored write of 1 + (partitions with records) buffers, and the decoder knows every length
//! before it reads any record byte.
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..2  | error_code (whole request: e.g. `STALE_BROKER_EPOCH` for an old incarnation) |
//! | 2..6  | partition_count (at most [`REPLICA_FETCH_PARTITIONS_MAX`]) |
//! | 6..   | partition_count x 58 bytes: topic_id (16), partition (4), error_code (2), high_watermark (8), log_start_offset (8), leader_epoch (4), diverging_epoch (4, -1 = none), diverging_end_offset (8, -1 = none), records_bytes (4) |
//! | then  | the records of each partition, in order, `records_bytes` each (in total at most [`REPLICA_FETCH_RECORDS_BYTES_MAX`]) |

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::byteorder::big_endian::{I16, I32, I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::cluster::body::{over_limit, Reader};
use crate::cluster::control::decode_error_code;
use crate::cluster::{ClusterError, EpochEndOffset, CLUSTER_PAYLOAD_BYTES_MAX};
use crate::types::{LeaderEpoch, Offset, PartitionIndex};
use crate::ErrorCode;

/// Most partitions in one replica fetch request or response.
pub const REPLICA_FETCH_PARTITIONS_MAX: usize = 4096;
/// Largest `max_bytes` a follower may ask for.
pub const REPLICA_FETCH_MAX_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Largest record batch a leader sends. A leader returns the first batch whole even when it is
/// bigger than `max_bytes` (else a follower could never get past it), so the broker's batch
/// size limit (`message.max.bytes`) must not exceed this.
pub const REPLICA_FETCH_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most record bytes in one response, all partitions together.
pub const REPLICA_FETCH_RECORDS_BYTES_MAX: usize = 24 * 1024 * 1024;
/// Longest a leader may hold a fetch before answering it (a follower that waits longer than
/// this would look out of sync anyway).
pub const REPLICA_FETCH_WAIT_MS_MAX: u32 = 30_000;

const REQUEST_FIXED_BYTES: usize = core::mem::size_of::<RawFetchRequest>();
const REQUEST_PARTITION_BYTES: usize = core::mem::size_of::<RawFetchPartition>();
const RESPONSE_FIXED_BYTES: usize = core::mem::size_of::<RawFetchResponse>();
const RESPONSE_PARTITION_BYTES: usize = core::mem::size_of::<RawFetchedPartition>();

const _: () = assert!(REQUEST_FIXED_BYTES == 28 && REQUEST_PARTITION_BYTES == 44);
const _: () = assert!(RESPONSE_FIXED_BYTES == 6 && RESPONSE_PARTITION_BYTES == 58);
const _: () = assert!(
    REQUEST_FIXED_BYTES + REPLICA_FETCH_PARTITIONS_MAX * REQUEST_PARTITION_BYTES
        <= CLUSTER_PAYLOAD_BYTES_MAX
);
const _: () = assert!(
    REPLICA_FETCH_MAX_BYTES_MAX as usize + REPLICA_FETCH_BATCH_BYTES_MAX
        <= REPLICA_FETCH_RECORDS_BYTES_MAX
);
const _: () = assert!(
    RESPONSE_FIXED_BYTES
        + REPLICA_FETCH_PARTITIONS_MAX * RESPONSE_PARTITION_BYTES
        + REPLICA_FETCH_RECORDS_BYTES_MAX
        <= CLUSTER_PAYLOAD_BYTES_MAX
);
// records_bytes is a u32 on the wire.
const _: () = assert!(REPLICA_FETCH_RECORDS_BYTES_MAX <= u32::MAX as usize);

/// One partition a follower fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchPartition {
    /// The topic's id.
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: PartitionIndex,
    /// The follower's log end offset: where it wants records from.
    pub fetch_offset: Offset,
    /// The leader epoch the follower believes current; the leader answers `FENCED_LEADER_EPOCH`
    /// if it is older than its own, `UNKNOWN_LEADER_EPOCH` if newer.
    pub current_leader_epoch: LeaderEpoch,
    /// The epoch of the last batch in the follower's log ([`LeaderEpoch::NONE`] if empty), for
    /// the leader's divergence check.
    pub last_fetched_epoch: LeaderEpoch,
    /// Everything below this is fsynced on the follower: the leader counts it, not
    /// `fetch_offset`, toward the high watermark of a topic whose acknowledgements wait for
    /// fsyncs (`ack.durability=replicated-and-flushed`). At most `fetch_offset`.
    pub durable_end_offset: Offset,
}

/// A follower's fetch: long-polled until `min_bytes` are there or `max_wait_ms` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchRequest {
    /// The follower.
    pub replica_node_id: i32,
    /// The follower's incarnation (from its Hello), so a leader does not count a fetch from
    /// a broker's previous life toward the ISR.
    pub replica_incarnation: u64,
    /// Longest the leader may hold the request.
    pub max_wait_ms: u32,
    /// Answer as soon as this many record bytes are there.
    pub min_bytes: u32,
    /// Record bytes to return at most, over all partitions (but see
    /// [`REPLICA_FETCH_BATCH_BYTES_MAX`]).
    pub max_bytes: u32,
    /// What to fetch.
    pub partitions: Vec<FetchPartition>,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawFetchRequest {
    replica_node_id: I32,
    replica_incarnation: U64,
    max_wait_ms: U32,
    min_bytes: U32,
    max_bytes: U32,
    partition_count: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawFetchPartition {
    topic_id: [u8; 16],
    partition: I32,
    fetch_offset: I64,
    current_leader_epoch: I32,
    last_fetched_epoch: I32,
    durable_end_offset: I64,
}

impl ReplicaFetchRequest {
    pub(crate) fn encoded_bytes(&self) -> usize {
        REQUEST_FIXED_BYTES + self.partitions.len() * REQUEST_PARTITION_BYTES
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert!(self.partitions.len() <= REPLICA_FETCH_PARTITIONS_MAX);
        assert!(self.max_wait_ms <= REPLICA_FETCH_WAIT_MS_MAX);
        assert!(self.min_bytes <= self.max_bytes && self.max_bytes <= REPLICA_FETCH_MAX_BYTES_MAX);
        let raw = RawFetchRequest {
            replica_node_id: I32::new(self.replica_node_id),
            replica_incarnation: U64::new(self.replica_incarnation),
            max_wait_ms: U32::new(self.max_wait_ms),
            min_bytes: U32::new(self.min_bytes),
            max_bytes: U32::new(self.max_bytes),
            partition_count: U32::new(self.partitions.len() as u32),
        };
        out.put_slice(raw.as_bytes());
        for p in &self.partitions {
            let raw = RawFetchPartition {
                topic_id: p.topic_id,
                partition: I32::new(p.partition.0),
                fetch_offset: I64::new(p.fetch_offset.0),
                current_leader_epoch: I32::new(p.current_leader_epoch.0),
                last_fetched_epoch: I32::new(p.last_fetched_epoch.0),
                durable_end_offset: I64::new(p.durable_end_offset.0),
            };
            out.put_slice(raw.as_bytes());
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<ReplicaFetchRequest, ClusterError> {
        let raw: &RawFetchRequest = reader.fixed()?;
        let (max_wait_ms, min_bytes, max_bytes) = (
            raw.max_wait_ms.get(),
            raw.min_bytes.get(),
            raw.max_bytes.get(),
        );
        over_limit(
            "max_wait_ms",
            max_wait_ms as usize,
            REPLICA_FETCH_WAIT_MS_MAX as usize,
        )?;
        over_limit(
            "max_bytes",
            max_bytes as usize,
            REPLICA_FETCH_MAX_BYTES_MAX as usize,
        )?;
        if min_bytes > max_bytes {
            return Err(ClusterError::Malformed {
                what: "min_bytes over max_bytes",
            });
        }
        let count = raw.partition_count.get() as usize;
        over_limit(
            "replica fetch partitions",
            count,
            REPLICA_FETCH_PARTITIONS_MAX,
        )?;
        let entries: &[RawFetchPartition] = reader.entries(count)?;
        reader.finish()?;
        let partitions = entries
            .iter()
            .map(|p| FetchPartition {
                topic_id: p.topic_id,
                partition: PartitionIndex(p.partition.get()),
                fetch_offset: Offset(p.fetch_offset.get()),
                current_leader_epoch: LeaderEpoch(p.current_leader_epoch.get()),
                last_fetched_epoch: LeaderEpoch(p.last_fetched_epoch.get()),
                durable_end_offset: Offset(p.durable_end_offset.get()),
            })
            .collect();
        Ok(ReplicaFetchRequest {
            replica_node_id: raw.replica_node_id.get(),
            replica_incarnation: raw.replica_incarnation.get(),
            max_wait_ms,
            min_bytes,
            max_bytes,
            partitions,
        })
    }
}

/// Record batches as the log hands them out, sent as they are: one or more `Bytes` chunks (a
/// cached batch is two: its patched header and its records section). Decoded, they are one
/// chunk, a slice of the frame. Equality compares content, not how it is chunked.
#[derive(Debug, Clone, Default)]
pub struct RecordChunks {
    chunks: Vec<Bytes>,
    len: usize,
}

impl RecordChunks {
    /// No records.
    pub fn new() -> RecordChunks {
        RecordChunks::default()
    }

    /// Appends a chunk (an empty one is dropped: it would be an empty write).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// Bytes over all chunks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No records at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order, none empty.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// All records in one buffer: free for one chunk (always the case when decoded), a copy
    /// otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match &self.chunks[..] {
            [] => Bytes::new(),
            [only] => only.clone(),
            chunks => {
                let mut out = BytesMut::with_capacity(self.len);
                chunks.iter().for_each(|c| out.put_slice(c));
                out.freeze()
            }
        }
    }
}

impl From<Bytes> for RecordChunks {
    fn from(chunk: Bytes) -> RecordChunks {
        let mut records = RecordChunks::new();
        records.push(chunk);
        records
    }
}

impl FromIterator<Bytes> for RecordChunks {
    fn from_iter<I: IntoIterator<Item = Bytes>>(chunks: I) -> RecordChunks {
        let mut records = RecordChunks::new();
        chunks.into_iter().for_each(|c| records.push(c));
        records
    }
}

impl PartialEq for RecordChunks {
    /// Content, whatever the chunking: records sent as two chunks decode as one.
    fn eq(&self, other: &RecordChunks) -> bool {
        fn bytes(r: &RecordChunks) -> impl Iterator<Item = &u8> {
            r.chunks.iter().flat_map(|c| c.iter())
        }
        self.len == other.len && bytes(self).eq(bytes(other))
    }
}

impl Eq for RecordChunks {}

/// The leader's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// The topic's id.
    pub topic_id: [u8; 16],
    /// The partition.
    pub partition: PartitionIndex,
    /// NONE, or why there are no records (`NOT_LEADER_OR_FOLLOWER`, `FENCED_LEADER_EPOCH`,
    /// `OFFSET_OUT_OF_RANGE`...).
    pub error_code: ErrorCode,
    /// The leader's high watermark.
    pub high_watermark: Offset,
    /// The leader's log start offset (the follower deletes below it).
    pub log_start_offset: Offset,
    /// The leader's current epoch.
    pub leader_epoch: LeaderEpoch,
    /// Set when the follower's log diverged: truncate to `end_offset` of `leader_epoch` (or
    /// below) and fetch again. Its epoch is never [`LeaderEpoch::NONE`], which means "none" on
    /// the wire.
    pub diverging_epoch: Option<EpochEndOffset>,
    /// Record batches exactly as the leader stores them; when decoded, a slice of the frame.
    pub records: RecordChunks,
}

/// The leader's answer to a [`ReplicaFetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchResponse {
    /// NONE, or why the whole request was refused.
    pub error_code: ErrorCode,
    /// One entry per partition answered.
    pub partitions: Vec<FetchedPartition>,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawFetchResponse {
    error_code: I16,
    partition_count: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawFetchedPartition {
    topic_id: [u8; 16],
    partition: I32,
    error_code: I16,
    high_watermark: I64,
    log_start_offset: I64,
    leader_epoch: I32,
    diverging_epoch: I32,
    diverging_end_offset: I64,
    records_bytes: U32,
}

impl ReplicaFetchResponse {
    /// Bytes of the framing (everything but the records).
    pub(crate) fn framing_bytes(&self) -> usize {
        RESPONSE_FIXED_BYTES + self.partitions.len() * RESPONSE_PARTITION_BYTES
    }

    /// Record bytes over all partitions.
    pub fn records_bytes(&self) -> usize {
        self.partitions.iter().map(|p| p.records.len()).sum()
    }

    /// Writes the framing into `out` and pushes each partition's records onto `records`, in
    /// order: the records are not copied.
    pub(crate) fn encode(&self, out: &mut BytesMut, records: &mut Vec<Bytes>) {
        assert!(self.partitions.len() <= REPLICA_FETCH_PARTITIONS_MAX);
        assert!(self.records_bytes() <= REPLICA_FETCH_RECORDS_BYTES_MAX);
        let raw = RawFetchResponse {
            error_code: I16::new(self.error_code.code()),
            partition_count: U32::new(self.partitions.len() as u32),
        };
        out.put_slice(raw.as_bytes());
        for p in &self.partitions {
            let (diverging_epoch, diverging_end_offset) = match p.diverging_epoch {
                None => (LeaderEpoch::NONE, Offset(-1)),
                Some(d) => {
                    assert_ne!(d.leader_epoch, LeaderEpoch::NONE, "diverging epoch -1");
                    (d.leader_epoch, d.end_offset)
                }
            };
            let raw = RawFetchedPartition {
                topic_id: p.topic_id,
                partition: I32::new(p.partition.0),
                error_code: I16::new(p.error_code.code()),
                high_watermark: I64::new(p.high_watermark.0),
                log_start_offset: I64::new(p.log_start_offset.0),
                leader_epoch: I32::new(p.leader_epoch.0),
                diverging_epoch: I32::new(diverging_epoch.0),
                diverging_end_offset: I64::new(diverging_end_offset.0),
                records_bytes: U32::new(u32::try_from(p.records.len()).expect("records over u32")),
            };
            out.put_slice(raw.as_bytes());
        }
        for p in &self.partitions {
            records.extend(p.records.chunks().iter().cloned());
        }
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<ReplicaFetchResponse, ClusterError> {
        let raw: &RawFetchResponse = reader.fixed()?;
        let error_code = decode_error_code(raw.error_code.get())?;
        let count = raw.partition_count.get() as usize;
        over_limit(
            "replica fetch partitions",
            count,
            REPLICA_FETCH_PARTITIONS_MAX,
        )?;
        let entries: &[RawFetchedPartition] = reader.entries(count)?;
        // Every length is known before any record byte is read: check they add up first. At
        // most 4096 u32s, so the sum cannot overflow a u64.
        let records_total: u64 = entries
            .iter()
            .map(|p| u64::from(p.records_bytes.get()))
            .sum();
        over_limit(
            "replica fetch records bytes",
            records_total as usize,
            REPLICA_FETCH_RECORDS_BYTES_MAX,
        )?;
        if records_total as usize != reader.remaining() {
            return Err(ClusterError::Malformed {
                what: "records lengths do not add up to the payload",
            });
        }
        let mut partitions = Vec::with_capacity(count);
        for p in entries {
            partitions.push(FetchedPartition {
                topic_id: p.topic_id,
                partition: PartitionIndex(p.partition.get()),
                error_code: decode_error_code(p.error_code.get())?,
                high_watermark: Offset(p.high_watermark.get()),
                log_start_offset: Offset(p.log_start_offset.get()),
                leader_epoch: LeaderEpoch(p.leader_epoch.get()),
                diverging_epoch: decode_diverging(p)?,
                records: RecordChunks::from(reader.bytes(p.records_bytes.get() as usize)?),
            });
        }
        reader.finish()?;
        Ok(ReplicaFetchResponse {
            error_code,
            partitions,
        })
    }
}

fn decode_diverging(p: &RawFetchedPartition) -> Result<Option<EpochEndOffset>, ClusterError> {
    let epoch = LeaderEpoch(p.diverging_epoch.get());
    let end_offset = Offset(p.diverging_end_offset.get());
    match (epoch, end_offset) {
        (LeaderEpoch::NONE, Offset(-1)) => Ok(None),
        (LeaderEpoch::NONE, _) => Err(ClusterError::Malformed {
            what: "diverging end offset without an epoch",
        }),
        (leader_epoch, end_offset) => Ok(Some(EpochEndOffset {
            leader_epoch,
            end_offset,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{
        encode_frame, Body, Envelope, FrameDecoder, FrameKind, FRAME_HEADER_BYTES,
    };

    fn request() -> ReplicaFetchRequest {
        ReplicaFetchRequest {
            replica_node_id: 2,
            replica_incarnation: 99,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic_id: [7; 16],
                partition: PartitionIndex(3),
                fetch_offset: Offset(1000),
                current_leader_epoch: LeaderEpoch(5),
                last_fetched_epoch: LeaderEpoch(4),
                durable_end_offset: Offset(990),
            }],
        }
    }

    fn partition(records: impl Into<RecordChunks>) -> FetchedPartition {
        FetchedPartition {
            topic_id: [1; 16],
            partition: PartitionIndex(0),
            error_code: ErrorCode::None,
            high_watermark: Offset(10),
            log_start_offset: Offset(0),
            leader_epoch: LeaderEpoch(5),
            diverging_epoch: None,
            records: records.into(),
        }
    }

    fn payload(body: &Body) -> Bytes {
        let encoded = encode_frame(&Envelope::hello(1, 1), body).to_bytes();
        encoded.slice(FRAME_HEADER_BYTES..)
    }

    #[test]
    fn request_layout_is_as_documented_and_round_trips() {
        let body = Body::ReplicaFetchRequest(request());
        let bytes = payload(&body);
        assert_eq!(bytes.len(), 28 + 44);
        assert_eq!(&bytes[0..4], &2i32.to_be_bytes());
        assert_eq!(&bytes[24..28], &1u32.to_be_bytes());
        assert_eq!(&bytes[28..44], &[7; 16]);
        assert_eq!(&bytes[48..56], &1000i64.to_be_bytes());
        assert_eq!(&bytes[64..72], &990i64.to_be_bytes());
        assert_eq!(
            Body::decode_payload(FrameKind::ReplicaFetchRequest, 1, &bytes),
            Ok(body)
        );
    }

    #[test]
    fn request_limits_are_enforced_on_decode() {
        let bytes = payload(&Body::ReplicaFetchRequest(request())).to_vec();
        let with = |at: usize, value: [u8; 4]| {
            let mut bytes = bytes.clone();
            bytes[at..at + 4].copy_from_slice(&value);
            Body::decode_payload(FrameKind::ReplicaFetchRequest, 1, &Bytes::from(bytes))
        };
        assert!(matches!(
            with(12, (REPLICA_FETCH_WAIT_MS_MAX + 1).to_be_bytes()),
            Err(ClusterError::OverLimit {
                what: "max_wait_ms",
                ..
            })
        ));
        assert!(matches!(
            with(20, (REPLICA_FETCH_MAX_BYTES_MAX + 1).to_be_bytes()),
            Err(ClusterError::OverLimit {
                what: "max_bytes",
                ..
            })
        ));
        assert!(matches!(
            with(16, (2u32 << 20).to_be_bytes()),
            Err(ClusterError::Malformed { .. })
        ));
        assert!(matches!(
            with(24, u32::MAX.to_be_bytes()),
            Err(ClusterError::OverLimit { .. })
        ));
        assert!(matches!(
            with(24, 2u32.to_be_bytes()),
            Err(ClusterError::Truncated {
                needed: 88,
                available: 44
            })
        ));
        assert!(matches!(
            with(24, 0u32.to_be_bytes()),
            Err(ClusterError::TrailingBytes { extra: 44, .. })
        ));
    }

    #[test]
    fn response_records_are_separate_parts_and_not_copied() {
        let a = Bytes::from(vec![0xaa; 5000]);
        let b_header = Bytes::from(vec![0xbb; 61]);
        let b = Bytes::from(vec![0xbb; 239]);
        let mut diverged = partition(Bytes::new());
        diverged.error_code = ErrorCode::None;
        diverged.diverging_epoch = Some(EpochEndOffset {
            leader_epoch: LeaderEpoch(3),
            end_offset: Offset(77),
        });
        let response = ReplicaFetchResponse {
            error_code: ErrorCode::None,
            partitions: vec![
                partition(a.clone()),
                diverged,
                partition(RecordChunks::from_iter([
                    b_header.clone(),
                    Bytes::new(),
                    b.clone(),
                ])),
            ],
        };
        let body = Body::ReplicaFetchResponse(response);
        let encoded = encode_frame(&Envelope::hello(1, 1), &body);
        // Framing, a, then b's two chunks; empty records and chunks are not parts.
        assert_eq!(encoded.parts.len(), 4);
        assert_eq!(encoded.parts[0].len(), FRAME_HEADER_BYTES + 6 + 3 * 58);
        assert_eq!(encoded.parts[1].as_ptr(), a.as_ptr());
        assert_eq!(encoded.parts[2].as_ptr(), b_header.as_ptr());
        assert_eq!(encoded.parts[3].as_ptr(), b.as_ptr());
        assert_eq!(encoded.frame_bytes, encoded.parts[0].len() + 5300);

        let mut buf = BytesMut::from(&encoded.to_bytes()[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        let decoded = Body::decode(&frame).unwrap();
        assert_eq!(decoded, body);
        let Body::ReplicaFetchResponse(decoded) = decoded else {
            panic!("kind")
        };
        let start = frame.payload.as_ptr() as usize;
        let records = &decoded.partitions[0].records;
        assert_eq!(records.chunks().len(), 1);
        let a_at = records.chunks()[0].as_ptr() as usize;
        assert_eq!(
            a_at,
            start + 6 + 3 * 58,
            "records are a slice of the payload"
        );
        assert_eq!(decoded.partitions[2].records.to_bytes().len(), 300);
    }

    #[test]
    fn record_chunks_compare_by_content_and_drop_empty_chunks() {
        let one = RecordChunks::from(Bytes::from_static(b"abcdef"));
        let two: RecordChunks = [&b"abc"[..], b"", b"def"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        assert_eq!(two.chunks().len(), 2);
        assert_eq!(two.len(), 6);
        assert_eq!(one, two);
        assert_eq!(two.to_bytes(), Bytes::from_static(b"abcdef"));
        let other: RecordChunks = [&b"abc"[..], b"deX"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        assert_ne!(one, other);
        assert!(RecordChunks::from(Bytes::new()).is_empty());
        assert_eq!(RecordChunks::new().chunks().len(), 0);
    }

    #[test]
    fn response_lengths_must_add_up_to_the_payload() {
        let response = ReplicaFetchResponse {
            error_code: ErrorCode::None,
            partitions: vec![partition(Bytes::from_static(b"0123456789"))],
        };
        let bytes = payload(&Body::ReplicaFetchResponse(response)).to_vec();
        let decode = |bytes: Vec<u8>| {
            Body::decode_payload(FrameKind::ReplicaFetchResponse, 1, &Bytes::from(bytes))
        };
        let mut short = bytes.clone();
        short.pop();
        assert!(matches!(decode(short), Err(ClusterError::Malformed { .. })));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode(long), Err(ClusterError::Malformed { .. })));
        let mut huge = bytes.clone();
        let at = 6 + 58 - 4;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(huge), Err(ClusterError::OverLimit { .. })));
    }

    #[test]
    fn diverging_epoch_none_is_minus_one_twice_and_nothing_else() {
        let response = ReplicaFetchResponse {
            error_code: ErrorCode::FencedLeaderEpoch,
            partitions: vec![partition(Bytes::new())],
        };
        let mut bytes = payload(&Body::ReplicaFetchResponse(response)).to_vec();
        let epoch_at = 6 + 16 + 4 + 2 + 8 + 8 + 4;
        assert_eq!(&bytes[epoch_at..epoch_at + 12], &[0xff; 12]);
        bytes[epoch_at + 11] = 0; // end offset -256 with no epoch
        assert!(matches!(
            Body::decode_payload(FrameKind::ReplicaFetchResponse, 1, &Bytes::from(bytes)),
            Err(ClusterError::Malformed { .. })
        ));
    }
}
