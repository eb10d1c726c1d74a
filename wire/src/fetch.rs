//! The Fetch response encoder of the hot path: record data is never copied.
//!
//! A Fetch response is mostly record batches. This encoder writes everything *around* the
//! batches (size prefix, header, topic and partition fields) into one small buffer, and hands the
//! record data back untouched as its own [`Part`], in order. The broker then sends the parts with
//! one vectored write (or sendfile/splice for a file range): `R` is whatever the broker's record
//! source is (cached `Bytes`, a segment file range...), and the encoder only needs its length.
//!
//! Versions 4 to 12 are supported (13+ name topics by id).
//!
//! ```
//! use bytes::Bytes;
//! use spate_wire::fetch::{FetchResponseEncoder, PartitionHeader, Part, Records};
//! use spate_wire::header::CorrelationId;
//! use spate_wire::types::{Offset, PartitionIndex};
//! use spate_wire::ErrorCode;
//!
//! let batch = Bytes::from_static(b"...one or more record batches...");
//! let mut enc = FetchResponseEncoder::new(12, CorrelationId(1), ErrorCode::None, 0, 1).unwrap();
//! enc.topic("orders", 1);
//! let mut p = PartitionHeader::new(PartitionIndex(0));
//! p.high_watermark = Offset(10);
//! enc.partition(&p, Some(Records { len: batch.len(), data: batch.clone() }));
//! let response = enc.finish();
//! assert_eq!(response.parts.len(), 3); // framing, records, trailing tagged fields
//! assert!(matches!(&response.parts[1], Part::Records(r) if r == &batch));
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::put_uvarint;
use crate::error::{ErrorCode, WireError};
use crate::frame::{finish_frame, start_frame, FRAME_PREFIX_BYTES};
use crate::header::{encode_response_header, CorrelationId, ResponseHeaderVersion};
use crate::types::{LeaderEpoch, Offset, PartitionIndex, ProducerId};
use kafka_protocol::messages::ApiKey;

/// Lowest Fetch version this encoder writes (record batch v2 needs 4+).
pub const FETCH_VERSION_MIN: i16 = 4;
/// Highest Fetch version this encoder writes (13+ uses topic ids).
pub const FETCH_VERSION_MAX: i16 = 12;
/// First flexible Fetch version (compact lengths, tagged fields, response header v1).
pub const FETCH_VERSION_FLEXIBLE_MIN: i16 = 12;

/// Framing bytes reserved per partition (fixed fields; aborted transactions may need more).
const PARTITION_FRAMING_BYTES: usize = 64;
/// Framing bytes reserved per topic besides its partitions (name up to 32 bytes, counts, tags).
const TOPIC_FRAMING_BYTES: usize = 48;
/// Prefix, header and top-level fields.
const RESPONSE_FRAMING_BYTES: usize = 32;

/// Record data for one partition: `len` bytes that the caller sends from `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records<R> {
    /// Exact byte length of `data` on the wire.
    pub len: usize,
    /// The caller's handle on the bytes (e.g. `Bytes` or a file range).
    pub data: R,
}

/// One piece of an encoded response, to be sent in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<R> {
    /// Framing written by the encoder.
    Bytes(Bytes),
    /// A partition's record data, as handed to [`FetchResponseEncoder::partition`].
    Records(R),
}

/// An aborted transaction, for read_committed consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer whose transaction aborted.
    pub producer_id: ProducerId,
    /// First offset of the aborted transaction.
    pub first_offset: Offset,
}

/// The per-partition fields of a Fetch response, besides the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHeader<'a> {
    /// The partition.
    pub partition_index: PartitionIndex,
    /// NONE, or why the partition has no data.
    pub error_code: ErrorCode,
    /// Offset after the last committed record.
    pub high_watermark: Offset,
    /// Offset after the last stable (decided) record.
    pub last_stable_offset: Offset,
    /// First offset still in the log (v5+).
    pub log_start_offset: Offset,
    /// Aborted transactions in the returned range, or `None` (read_uncommitted).
    pub aborted_transactions: Option<&'a [AbortedTransaction]>,
    /// Replica the consumer should fetch from instead (v11+), or -1.
    pub preferred_read_replica: i32,
    /// v12+: the consumer's log diverged from the leader's (KIP-320): the largest epoch not
    /// above the consumer's `last_fetched_epoch`, and where it ends. Not sent before v12.
    pub diverging_epoch: Option<(LeaderEpoch, Offset)>,
    /// v12+: the current leader (broker id) and its epoch, for NOT_LEADER_OR_FOLLOWER and
    /// FENCED_LEADER_EPOCH answers. Not sent before v12.
    pub current_leader: Option<(i32, LeaderEpoch)>,
}

impl PartitionHeader<'_> {
    /// A header with no error, offsets -1 and no preferred replica.
    pub fn new(partition_index: PartitionIndex) -> PartitionHeader<'static> {
        PartitionHeader {
            partition_index,
            error_code: ErrorCode::None,
            high_watermark: Offset(-1),
            last_stable_offset: Offset(-1),
            log_start_offset: Offset(-1),
            aborted_transactions: None,
            preferred_read_replica: -1,
            diverging_epoch: None,
            current_leader: None,
        }
    }
}

/// An encoded Fetch response: its parts in send order and its total size on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFetchResponse<R> {
    /// Send these in order; `Bytes` parts are slices of one buffer.
    pub parts: Vec<Part<R>>,
    /// Total bytes of all parts, size prefix included.
    pub frame_bytes: usize,
}

/// Writes one Fetch response, topic by topic, partition by partition.
///
/// Counts are declared up front (`topic_count` in [`FetchResponseEncoder::new`],
/// `partition_count` in [`FetchResponseEncoder::topic`]) because the wire format prefixes
/// arrays with their length; writing a different number is a programmer error and panics.
#[derive(Debug)]
pub struct FetchResponseEncoder<R> {
    version: i16,
    buf: BytesMut,
    frame_at: usize,
    /// Where in `buf` each partition's records go, and the records.
    cuts: Vec<(usize, R)>,
    records_bytes: usize,
    topics_left: usize,
    partitions_left: usize,
}

impl<R> FetchResponseEncoder<R> {
    /// Starts a response of `version` with `topic_count` topics.
    ///
    /// # Errors
    /// [`WireError::UnsupportedVersion`] outside 4..=12.
    pub fn new(
        version: i16,
        correlation_id: CorrelationId,
        error_code: ErrorCode,
        session_id: i32,
        topic_count: usize,
    ) -> Result<FetchResponseEncoder<R>, WireError> {
        if !(FETCH_VERSION_MIN..=FETCH_VERSION_MAX).contains(&version) {
            return Err(WireError::UnsupportedVersion {
                api_key: ApiKey::Fetch,
                version,
            });
        }
        let mut enc = FetchResponseEncoder {
            version,
            buf: BytesMut::with_capacity(
                RESPONSE_FRAMING_BYTES + topic_count * TOPIC_FRAMING_BYTES,
            ),
            frame_at: 0,
            cuts: Vec::new(),
            records_bytes: 0,
            topics_left: topic_count,
            partitions_left: 0,
        };
        enc.frame_at = start_frame(&mut enc.buf);
        let header_version = if enc.flexible() {
            ResponseHeaderVersion::V1
        } else {
            ResponseHeaderVersion::V0
        };
        encode_response_header(&mut enc.buf, correlation_id, header_version);
        enc.buf.put_i32(0); // throttle_time_ms: Spate does not throttle.
        if version >= 7 {
            enc.buf.put_i16(error_code.code());
            enc.buf.put_i32(session_id);
        }
        enc.put_len(topic_count);
        Ok(enc)
    }

    fn flexible(&self) -> bool {
        self.version >= FETCH_VERSION_FLEXIBLE_MIN
    }

    /// An array length (compact in flexible versions).
    fn put_len(&mut self, len: usize) {
        let len = i32::try_from(len).expect("array longer than i32::MAX");
        if self.flexible() {
            put_uvarint(&mut self.buf, len as u32 + 1);
        } else {
            self.buf.put_i32(len);
        }
    }

    fn put_empty_tagged_fields(&mut self) {
        if self.flexible() {
            put_uvarint(&mut self.buf, 0);
        }
    }

    /// Starts the next topic, which will have `partition_count` partitions.
    ///
    /// # Panics
    /// If the previous topic is missing partitions, all declared topics were written, or the
    /// name is longer than `i16::MAX` bytes.
    pub fn topic(&mut self, name: &str, partition_count: usize) {
        assert_eq!(
            self.partitions_left, 0,
            "previous topic is missing partitions"
        );
        assert!(self.topics_left > 0, "more topics than declared");
        self.topics_left -= 1;
        let len = i16::try_from(name.len()).expect("topic name longer than i16::MAX");
        if self.flexible() {
            put_uvarint(&mut self.buf, len as u32 + 1);
        } else {
            self.buf.put_i16(len);
        }
        self.buf.put_slice(name.as_bytes());
        self.put_len(partition_count);
        // One reservation per topic, not one per partition.
        self.buf
            .reserve(partition_count * PARTITION_FRAMING_BYTES + TOPIC_FRAMING_BYTES);
        self.cuts.reserve(partition_count);
        self.partitions_left = partition_count;
        if partition_count == 0 {
            self.put_empty_tagged_fields();
        }
    }

    /// Writes the next partition of the current topic; `records` are not copied.
    ///
    /// # Panics
    /// If the current topic already has all its partitions, or records are over `i32::MAX` bytes.
    pub fn partition(&mut self, header: &PartitionHeader<'_>, records: Option<Records<R>>) {
        assert!(self.partitions_left > 0, "more partitions than declared");
        self.partitions_left -= 1;
        self.buf.put_i32(header.partition_index.0);
        self.buf.put_i16(header.error_code.code());
        self.buf.put_i64(header.high_watermark.0);
        self.buf.put_i64(header.last_stable_offset.0);
        if self.version >= 5 {
            self.buf.put_i64(header.log_start_offset.0);
        }
        match header.aborted_transactions {
            None if self.flexible() => put_uvarint(&mut self.buf, 0),
            None => self.buf.put_i32(-1),
            Some(aborted) => {
                self.put_len(aborted.len());
                for txn in aborted {
                    self.buf.put_i64(txn.producer_id.0);
                    self.buf.put_i64(txn.first_offset.0);
                    self.put_empty_tagged_fields();
                }
            }
        }
        if self.version >= 11 {
            self.buf.put_i32(header.preferred_read_replica);
        }
        match records {
            None if self.flexible() => put_uvarint(&mut self.buf, 0),
            None => self.buf.put_i32(-1),
            Some(records) => {
                let len = i32::try_from(records.len).expect("records longer than i32::MAX");
                if self.flexible() {
                    put_uvarint(&mut self.buf, len as u32 + 1);
                } else {
                    self.buf.put_i32(len);
                }
                if records.len > 0 {
                    self.cuts.push((self.buf.len(), records.data));
                    self.records_bytes += records.len;
                }
            }
        }
        if self.flexible() {
            self.put_partition_tagged_fields(header);
        }
        if self.partitions_left == 0 {
            self.put_empty_tagged_fields(); // topic
        }
    }

    /// Tagged fields of a partition, in tag order: 0 DivergingEpoch, 1 CurrentLeader.
    fn put_partition_tagged_fields(&mut self, header: &PartitionHeader<'_>) {
        let count = u32::from(header.diverging_epoch.is_some())
            + u32::from(header.current_leader.is_some());
        put_uvarint(&mut self.buf, count);
        if let Some((epoch, end_offset)) = header.diverging_epoch {
            put_uvarint(&mut self.buf, 0);
            put_uvarint(&mut self.buf, 4 + 8 + 1);
            self.buf.put_i32(epoch.0);
            self.buf.put_i64(end_offset.0);
            put_uvarint(&mut self.buf, 0);
        }
        if let Some((leader_id, epoch)) = header.current_leader {
            put_uvarint(&mut self.buf, 1);
            put_uvarint(&mut self.buf, 4 + 4 + 1);
            self.buf.put_i32(leader_id);
            self.buf.put_i32(epoch.0);
            put_uvarint(&mut self.buf, 0);
        }
    }

    /// Closes the response and returns its parts in send order.
    ///
    /// # Panics
    /// If fewer topics or partitions were written than declared, or the response is over
    /// `i32::MAX` bytes.
    pub fn finish(mut self) -> EncodedFetchResponse<R> {
        assert_eq!(self.topics_left, 0, "fewer topics than declared");
        assert_eq!(self.partitions_left, 0, "last topic is missing partitions");
        self.put_empty_tagged_fields(); // response
        finish_frame(&mut self.buf, self.frame_at, self.records_bytes);
        let frame_bytes = self.buf.len() + self.records_bytes;
        assert!(frame_bytes >= FRAME_PREFIX_BYTES);
        let buf = self.buf.freeze();
        let mut parts = Vec::with_capacity(self.cuts.len() * 2 + 1);
        let mut from = 0;
        for (at, data) in self.cuts {
            if at > from {
                parts.push(Part::Bytes(buf.slice(from..at)));
            }
            parts.push(Part::Records(data));
            from = at;
        }
        if buf.len() > from {
            parts.push(Part::Bytes(buf.slice(from..)));
        }
        EncodedFetchResponse { parts, frame_bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;

    fn flatten(parts: &[Part<Bytes>]) -> Bytes {
        let mut out = BytesMut::new();
        for part in parts {
            match part {
                Part::Bytes(b) | Part::Records(b) => out.put_slice(b),
            }
        }
        out.freeze()
    }

    #[test]
    fn records_are_handed_back_not_copied() {
        let records = Bytes::from(vec![7u8; 10_000]);
        let mut enc =
            FetchResponseEncoder::new(11, CorrelationId(9), ErrorCode::None, 0, 1).unwrap();
        enc.topic("t", 2);
        let p = PartitionHeader::new(PartitionIndex(0));
        enc.partition(
            &p,
            Some(Records {
                len: records.len(),
                data: records.clone(),
            }),
        );
        enc.partition(&PartitionHeader::new(PartitionIndex(1)), None);
        let response = enc.finish();
        let framing: usize = response
            .parts
            .iter()
            .map(|p| match p {
                Part::Bytes(b) => b.len(),
                Part::Records(_) => 0,
            })
            .sum();
        assert!(framing < 200, "framing {framing} bytes");
        assert_eq!(framing + records.len(), response.frame_bytes);
        let Part::Records(sent) = &response.parts[1] else {
            panic!("records not second")
        };
        assert_eq!(sent.as_ptr(), records.as_ptr(), "same buffer, not a copy");
    }

    #[test]
    fn v12_response_decodes_with_kafka_protocol() {
        let records = Bytes::from_static(b"batch-bytes");
        let aborted = [AbortedTransaction {
            producer_id: ProducerId(5),
            first_offset: Offset(3),
        }];
        let mut enc =
            FetchResponseEncoder::new(12, CorrelationId(77), ErrorCode::None, 12, 2).unwrap();
        enc.topic("a", 1);
        let mut p = PartitionHeader::new(PartitionIndex(4));
        p.high_watermark = Offset(100);
        p.last_stable_offset = Offset(90);
        p.log_start_offset = Offset(1);
        p.aborted_transactions = Some(&aborted);
        p.diverging_epoch = Some((LeaderEpoch(3), Offset(57)));
        p.current_leader = Some((1, LeaderEpoch(4)));
        enc.partition(
            &p,
            Some(Records {
                len: records.len(),
                data: records.clone(),
            }),
        );
        enc.topic("b", 0);
        let response = enc.finish();
        let mut frame = flatten(&response.parts);
        assert_eq!(frame.len(), response.frame_bytes);
        assert_eq!(frame.get_i32() as usize, frame.len());
        assert_eq!(
            ResponseHeader::decode(&mut frame, 1)
                .unwrap()
                .correlation_id,
            77
        );
        let decoded = FetchResponse::decode(&mut frame, 12).unwrap();
        assert!(!frame.has_remaining());
        assert_eq!(decoded.session_id, 12);
        assert_eq!(decoded.responses.len(), 2);
        let a = &decoded.responses[0];
        assert_eq!(a.topic.0.as_str(), "a");
        let part = &a.partitions[0];
        assert_eq!(part.partition_index, 4);
        assert_eq!(part.high_watermark, 100);
        assert_eq!(part.last_stable_offset, 90);
        assert_eq!(part.log_start_offset, 1);
        let txns = part.aborted_transactions.as_ref().unwrap();
        assert_eq!((txns[0].producer_id.0, txns[0].first_offset), (5, 3));
        assert_eq!(part.records.as_ref().unwrap(), &records);
        assert_eq!(
            (part.diverging_epoch.epoch, part.diverging_epoch.end_offset),
            (3, 57)
        );
        assert_eq!(
            (
                part.current_leader.leader_id.0,
                part.current_leader.leader_epoch
            ),
            (1, 4)
        );
        assert!(decoded.responses[1].partitions.is_empty());
    }

    #[test]
    fn versions_outside_4_to_12_are_refused() {
        for v in [3, 13] {
            let err =
                FetchResponseEncoder::<Bytes>::new(v, CorrelationId(0), ErrorCode::None, 0, 0)
                    .unwrap_err();
            assert_eq!(
                err,
                WireError::UnsupportedVersion {
                    api_key: ApiKey::Fetch,
                    version: v
                }
            );
        }
    }

    #[test]
    #[should_panic(expected = "more partitions than declared")]
    fn writing_more_partitions_than_declared_panics() {
        let mut enc =
            FetchResponseEncoder::<Bytes>::new(4, CorrelationId(0), ErrorCode::None, 0, 1).unwrap();
        enc.topic("t", 0);
        enc.partition(&PartitionHeader::new(PartitionIndex(0)), None);
    }
}
