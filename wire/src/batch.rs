//! Kafka record batch v2 (magic 2): the unit the broker stores and serves.
//!
//! The broker never re-encodes a batch: it reads the 61-byte header, checks the CRC, writes the
//! offset and leader epoch it assigns into the header, and stores the bytes as they came. Both
//! patched fields lie before the CRC-covered range (which starts at `attributes`), so the
//! producer's CRC stays valid after patching.
//!
//! Layout (big-endian):
//!
//! | bytes  | field                  |
//! |--------|------------------------|
//! | 0..8   | baseOffset             |
//! | 8..12  | batchLength (bytes after this field) |
//! | 12..16 | partitionLeaderEpoch   |
//! | 16     | magic (2)              |
//! | 17..21 | crc (CRC-32C of 21..)  |
//! | 21..23 | attributes             |
//! | 23..27 | lastOffsetDelta        |
//! | 27..35 | baseTimestamp          |
//! | 35..43 | maxTimestamp           |
//! | 43..51 | producerId             |
//! | 51..53 | producerEpoch          |
//! | 53..57 | baseSequence           |
//! | 57..61 | record count           |

use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

/// Bytes of the fixed batch header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `partitionLeaderEpoch` (`baseOffset` and `batchLength`): the part of a batch
/// that `batchLength` does not count.
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Smallest legal `batchLength`: a header with no records.
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32;
/// The only record batch format Spate stores.
pub const MAGIC_V2: i8 = 2;
/// Where the CRC-covered range starts (the `attributes` field).
const CRC_START: usize = 21;

const _: () = assert!(core::mem::size_of::<RawHeader>() == BATCH_HEADER_BYTES);

/// The header exactly as laid out on the wire; every field is an unaligned big-endian integer,
/// so a `&RawHeader` can point straight into a received frame.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    base_offset: I64,
    batch_length: I32,
    partition_leader_epoch: I32,
    magic: i8,
    crc: U32,
    attributes: I16,
    last_offset_delta: I32,
    first_timestamp_ms: I64,
    max_timestamp_ms: I64,
    producer_id: I64,
    producer_epoch: I16,
    base_sequence: I32,
    record_count: I32,
}

/// Why a byte range is not a valid record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("record batch truncated: needed {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// The magic byte is not 2 (older message formats are not accepted).
    #[error("unsupported record batch magic {0}")]
    BadMagic(i8),
    /// `batchLength` is smaller than a header or otherwise impossible.
    #[error("invalid record batch length {0}")]
    BadLength(i32),
    /// `lastOffsetDelta` or the record count is negative.
    #[error("invalid record batch offsets: last offset delta {last_offset_delta}, record count {record_count}")]
    BadOffsets {
        /// The declared last offset delta.
        last_offset_delta: i32,
        /// The declared record count.
        record_count: i32,
    },
    /// The stored CRC does not match the bytes.
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// The attributes name a compression codec Kafka does not define.
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
}

/// The compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records stored as they are.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec's number in the attributes field.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }
}

/// Which clock a batch's timestamps come from (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// A parsed batch header: a copy of the 61 header bytes as native values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the broker).
    pub base_offset: Offset,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch of the broker that appended the batch.
    pub partition_leader_epoch: LeaderEpoch,
    /// Always 2 for a parsed header.
    pub magic: i8,
    /// CRC-32C of bytes 21.. of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub first_timestamp_ms: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp_ms: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: ProducerId,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: ProducerEpoch,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header of the batch that starts at `buf[0]`.
    ///
    /// Checks the structure (magic, lengths, codec) but not the CRC: see [`verify_crc`]. `buf`
    /// may hold more than the batch, or only its header.
    ///
    /// # Errors
    /// [`BatchError`] if `buf` is shorter than a header or the header is not a valid v2 header.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let (raw, _) = RawHeader::ref_from_prefix(buf).map_err(|_| BatchError::Truncated {
            needed: BATCH_HEADER_BYTES,
            available: buf.len(),
        })?;
        if raw.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(raw.magic));
        }
        let batch_length = raw.batch_length.get();
        if batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadLength(batch_length));
        }
        let last_offset_delta = raw.last_offset_delta.get();
        let record_count = raw.record_count.get();
        if last_offset_delta < 0 || record_count < 0 {
            return Err(BatchError::BadOffsets {
                last_offset_delta,
                record_count,
            });
        }
        let attributes = raw.attributes.get();
        Compression::from_attributes(attributes)?;
        Ok(BatchHeader {
            base_offset: Offset(raw.base_offset.get()),
            batch_length,
            partition_leader_epoch: LeaderEpoch(raw.partition_leader_epoch.get()),
            magic: raw.magic,
            crc: raw.crc.get(),
            attributes,
            last_offset_delta,
            first_timestamp_ms: raw.first_timestamp_ms.get(),
            max_timestamp_ms: raw.max_timestamp_ms.get(),
            producer_id: ProducerId(raw.producer_id.get()),
            producer_epoch: ProducerEpoch(raw.producer_epoch.get()),
            base_sequence: raw.base_sequence.get(),
            record_count,
        })
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_bytes(&self) -> usize {
        // batch_length >= BATCH_LENGTH_MIN > 0 was checked by `parse`.
        self.batch_length as usize + BATCH_LOG_OVERHEAD_BYTES
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0 + i64::from(self.last_offset_delta))
    }

    /// The batch's compression codec.
    pub fn compression(&self) -> Compression {
        // `parse` rejected unknown codecs.
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    /// Which clock the timestamps come from.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch holds a control record (transaction marker) rather than user data.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// The CRC-32C that a batch's header should carry, computed over bytes 21.. of `batch`.
///
/// # Panics
/// If `batch` is shorter than a header.
pub fn compute_crc(batch: &[u8]) -> u32 {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks that `batch`, exactly one whole batch, carries the right CRC.
///
/// # Errors
/// [`BatchError::CrcMismatch`] on a mismatch, or a structural error from [`BatchHeader::parse`],
/// or [`BatchError::Truncated`]/[`BatchError::BadLength`] if `batch` is not exactly the length
/// its header declares.
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let needed = header.total_bytes();
    if batch.len() < needed {
        return Err(BatchError::Truncated {
            needed,
            available: batch.len(),
        });
    }
    if batch.len() > needed {
        return Err(BatchError::BadLength(header.batch_length));
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// One record batch whose structure, length and CRC were checked: the proof travels with the
/// bytes, so a batch is checked once between the socket and the disk (the CRC-32C over every
/// byte is the costliest step of an append) rather than by each layer it crosses.
///
/// What it does not check is the producer's business: the record count against
/// `lastOffsetDelta` (a compacted batch keeps its delta while losing records, and a follower
/// copies such batches), transactional flags, keys. Those are checks of a Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBatch {
    header: BatchHeader,
    bytes: bytes::Bytes,
}

impl CheckedBatch {
    /// Checks that `bytes` is exactly one batch (as [`verify_crc`]) and keeps its parsed header.
    ///
    /// # Errors
    /// As [`verify_crc`].
    pub fn check(bytes: bytes::Bytes) -> Result<CheckedBatch, BatchError> {
        verify_crc(&bytes)?;
        let header = BatchHeader::parse(&bytes).expect("verify_crc parsed it");
        assert_eq!(header.total_bytes(), bytes.len());
        Ok(CheckedBatch { header, bytes })
    }

    /// The header as it was checked (offset and epoch as the sender set them).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes.
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }

    /// Bytes of the whole batch.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a batch holds at least its header. Here for the `len` convention.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Header and bytes, taken apart.
    pub fn into_parts(self) -> (BatchHeader, bytes::Bytes) {
        (self.header, self.bytes)
    }
}

fn raw_mut(batch: &mut [u8]) -> &mut RawHeader {
    let available = batch.len();
    match RawHeader::mut_from_prefix(batch) {
        Ok((raw, _)) => raw,
        Err(_) => panic!("batch header needs {BATCH_HEADER_BYTES} bytes, got {available}"),
    }
}

/// Writes the broker-assigned base offset into the batch header. The CRC stays valid.
///
/// # Panics
/// If `batch` is shorter than a header.
pub fn set_base_offset(batch: &mut [u8], base: Offset) {
    raw_mut(batch).base_offset.set(base.0);
}

/// Writes the leader epoch into the batch header. The CRC stays valid.
///
/// # Panics
/// If `batch` is shorter than a header.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: LeaderEpoch) {
    raw_mut(batch).partition_leader_epoch.set(epoch.0);
}

/// Stamps a whole batch with the broker's clock, as a topic with
/// `message.timestamp.type=LogAppendTime` stores it (Kafka's in-place assignment): the
/// timestamp-type attribute and the max timestamp are set, then the CRC, which covers both, is
/// computed again. Consumers then read every record's timestamp as `now_ms`.
///
/// # Panics
/// If `batch` is shorter than a header.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let raw = raw_mut(batch);
    let attributes = raw.attributes.get() | ATTR_TIMESTAMP_TYPE;
    raw.attributes.set(attributes);
    raw.max_timestamp_ms.set(now_ms);
    let crc = compute_crc(batch);
    raw_mut(batch).crc.set(crc);
}

/// Writes `batch` (one whole, checked batch) into `out` with its records compressed by
/// `codec` instead of their own: the header is kept but for the codec bits, the length and the
/// CRC; the records' bytes are the same once decompressed. A topic with a `compression.type`
/// stores its batches so.
///
/// # Errors
/// Decompression errors (bounded by `decompressed_bytes_max`) or the compressor's.
pub fn recompress(
    batch: &[u8],
    codec: Compression,
    decompressed_bytes_max: usize,
    out: &mut bytes::BytesMut,
) -> Result<(), crate::WireError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_bytes();
    if batch.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: batch.len(),
        }
        .into());
    }
    let section = &batch[BATCH_HEADER_BYTES..total];
    let mut plain = Vec::new();
    let plain: &[u8] = match header.compression() {
        Compression::None => section,
        from => {
            crate::compression::decompress(from, section, &mut plain, decompressed_bytes_max)?;
            &plain
        }
    };
    let mut packed = Vec::new();
    let packed: &[u8] = match codec {
        Compression::None => plain,
        to => {
            crate::compression::compress(to, plain, &mut packed)?;
            &packed
        }
    };
    let length = BATCH_HEADER_BYTES - 12 + packed.len();
    let length = i32::try_from(length).map_err(|_| BatchError::BadLength(i32::MAX))?;
    out.clear();
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(packed);
    let raw = raw_mut(out);
    raw.batch_length.set(length);
    let attributes = (raw.attributes.get() & !ATTR_COMPRESSION_MASK) | codec.id();
    raw.attributes.set(attributes);
    let crc = compute_crc(out);
    raw_mut(out).crc.set(crc);
    Ok(())
}

/// Iterates over the whole batches in a records field (several batches back to back).
pub fn batches(records: &[u8]) -> Batches<'_> {
    Batches {
        rest: records,
        failed: false,
    }
}

/// Iterator returned by [`batches`]: yields each batch's header and bytes; after an error
/// (including a trailing partial batch) it yields that error once and stops.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Bytes not yet yielded.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let result = BatchHeader::parse(self.rest).and_then(|header| {
            let needed = header.total_bytes();
            if self.rest.len() < needed {
                Err(BatchError::Truncated {
                    needed,
                    available: self.rest.len(),
                })
            } else {
                Ok((header, needed))
            }
        });
        match result {
            Ok((header, needed)) => {
                let (batch, rest) = self.rest.split_at(needed);
                self.rest = rest;
                Some(Ok((header, batch)))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// What a [`BatchBuilder`] puts in the header besides the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    /// Offset written into the header (brokers overwrite it; producers send 0).
    pub base_offset: Offset,
    /// Timestamp of the first record; record timestamps are stored as deltas from it.
    pub first_timestamp_ms: i64,
    /// Idempotent producer id, or [`ProducerId::NONE`].
    pub producer_id: ProducerId,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: ProducerEpoch,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            base_offset: Offset(0),
            first_timestamp_ms: 0,
            producer_id: ProducerId::NONE,
            producer_epoch: ProducerEpoch(-1),
            base_sequence: -1,
        }
    }
}

/// A record header (key and value) as given to [`BatchBuilder::push`].
pub type RecordHeader<'a> = (&'a str, Option<&'a [u8]>);

/// Encodes an uncompressed v2 batch into a caller-owned buffer, the way a producer does.
///
/// Records are appended straight into the output buffer (no per-record allocation); `finish`
/// fills in the header and the CRC.
#[derive(Debug)]
pub struct BatchBuilder<'a> {
    out: &'a mut BytesMut,
    start: usize,
    spec: BatchSpec,
    record_count: i32,
    max_timestamp_ms: i64,
}

impl<'a> BatchBuilder<'a> {
    /// Starts a batch at the end of `out`.
    pub fn new(out: &'a mut BytesMut, spec: BatchSpec) -> BatchBuilder<'a> {
        let start = out.len();
        out.put_bytes(0, BATCH_HEADER_BYTES);
        BatchBuilder {
            out,
            start,
            spec,
            record_count: 0,
            max_timestamp_ms: spec.first_timestamp_ms,
        }
    }

    /// Appends one record.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) {
        let offset_delta = i64::from(self.record_count);
        let timestamp_delta = timestamp_ms - self.spec.first_timestamp_ms;
        put_record(self.out, offset_delta, timestamp_delta, key, value, headers);
        self.record_count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
    }

    /// Writes the header and CRC; returns the whole batch's length in bytes.
    ///
    /// # Panics
    /// If no record was pushed (Kafka batches hold at least one record).
    pub fn finish(self) -> usize {
        assert!(self.record_count > 0, "a record batch needs a record");
        let batch = &mut self.out[self.start..];
        let total = batch.len();
        let batch_length =
            i32::try_from(total - BATCH_LOG_OVERHEAD_BYTES).expect("batch over 2 GiB");
        let raw = raw_mut(batch);
        raw.base_offset.set(self.spec.base_offset.0);
        raw.batch_length.set(batch_length);
        raw.partition_leader_epoch.set(LeaderEpoch::NONE.0);
        raw.magic = MAGIC_V2;
        raw.attributes.set(0);
        raw.last_offset_delta.set(self.record_count - 1);
        raw.first_timestamp_ms.set(self.spec.first_timestamp_ms);
        raw.max_timestamp_ms.set(self.max_timestamp_ms);
        raw.producer_id.set(self.spec.producer_id.0);
        raw.producer_epoch.set(self.spec.producer_epoch.0);
        raw.base_sequence.set(self.spec.base_sequence);
        raw.record_count.set(self.record_count);
        let crc = compute_crc(batch);
        raw_mut(batch).crc.set(crc);
        total
    }
}

/// Writes one record of a v2 batch (length, attributes, timestamp and offset deltas, key,
/// value, headers) at the end of `out`, with no allocation.
pub fn put_record(
    out: &mut BytesMut,
    offset_delta: i64,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader<'_>],
) {
    let body_len = 1 // attributes
        + varint_len(timestamp_delta)
        + varint_len(offset_delta)
        + bytes_field_len(key)
        + bytes_field_len(value)
        + varint_len(headers.len() as i64)
        + headers
            .iter()
            .map(|(k, v)| bytes_field_len(Some(k.as_bytes())) + bytes_field_len(*v))
            .sum::<usize>();
    put_varint(out, body_len as i64);
    let before = out.len();
    out.put_i8(0);
    put_varint(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_bytes_field(out, key);
    put_bytes_field(out, value);
    put_varint(out, headers.len() as i64);
    for (k, v) in headers {
        put_bytes_field(out, Some(k.as_bytes()));
        put_bytes_field(out, *v);
    }
    debug_assert_eq!(out.len() - before, body_len);
}

/// Zig-zag encoding of a signed value, as Kafka's record varints use.
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: i64) -> usize {
    let mut v = zigzag(value);
    let mut len = 1;
    while v >= 0x80 {
        v >>= 7;
        len += 1;
    }
    len
}

/// Writes `value` as a zig-zag varint (the encoding of record fields inside a batch).
pub fn put_varint(out: &mut BytesMut, value: i64) {
    let mut v = zigzag(value);
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Bytes [`put_bytes_field`] writes for `field`.
pub fn bytes_field_len(field: Option<&[u8]>) -> usize {
    match field {
        None => varint_len(-1),
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

/// Writes a record's key, value or header field: varint length (-1 for null), then the bytes.
pub fn put_bytes_field(out: &mut BytesMut, field: Option<&[u8]>) {
    match field {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

/// The type of a transaction marker (Kafka's `ControlRecordType`: ABORT = 0, COMMIT = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// The producer's open transaction in this partition is aborted.
    Abort,
    /// The producer's open transaction in this partition is committed.
    Commit,
}

impl ControlType {
    /// The type id in the control record's key.
    pub fn id(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// Writes a transaction marker at the end of `out`, as a Kafka transaction coordinator has it
/// written: one control record (key `version: i16 = 0, type: i16`, value `version: i16 = 0,
/// coordinator_epoch: i32`) in an uncompressed batch flagged transactional and control, with the
/// producer's id and epoch and no sequence. Returns the batch's length.
pub fn put_txn_marker(
    out: &mut BytesMut,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    coordinator_epoch: i32,
    control: ControlType,
    timestamp_ms: i64,
) -> usize {
    let start = out.len();
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&control.id().to_be_bytes());
    let mut value = [0u8; 6];
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let mut builder = BatchBuilder::new(
        out,
        BatchSpec {
            first_timestamp_ms: timestamp_ms,
            producer_id,
            producer_epoch,
            base_sequence: -1,
            ..BatchSpec::default()
        },
    );
    builder.push(timestamp_ms, Some(&key), Some(&value), &[]);
    let len = builder.finish();
    let batch = &mut out[start..];
    raw_mut(batch)
        .attributes
        .set(ATTR_TRANSACTIONAL | ATTR_CONTROL);
    let crc = compute_crc(batch);
    raw_mut(batch).crc.set(crc);
    len
}

/// Flags a finished batch as transactional (as a transactional producer sends it) and
/// recomputes its CRC.
///
/// # Panics
/// If `batch` is shorter than a header.
pub fn set_transactional(batch: &mut [u8]) {
    let raw = raw_mut(batch);
    let attributes = raw.attributes.get();
    raw.attributes.set(attributes | ATTR_TRANSACTIONAL);
    let crc = compute_crc(batch);
    raw_mut(batch).crc.set(crc);
}

/// Reads a zig-zag varint of a record.
fn read_record_varint(cur: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = cur.split_first()?;
        *cur = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// The marker type of a control batch (the type in its first record's key), or `None` if the
/// batch is not an uncompressed control batch whose first record carries a version-0 control
/// key. Reads only the first record.
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    let header = BatchHeader::parse(batch).ok()?;
    control_type_of_records(&header, batch.get(BATCH_HEADER_BYTES..)?)
}

/// [`control_type`] of a batch given as its parsed header and the bytes after the header (at
/// least its first record).
pub fn control_type_of_records(header: &BatchHeader, records: &[u8]) -> Option<ControlType> {
    if !header.is_control() || header.compression() != Compression::None {
        return None;
    }
    let mut cur = records;
    let _length = read_record_varint(&mut cur)?;
    let (_attributes, rest) = cur.split_first()?;
    cur = rest;
    let _timestamp_delta = read_record_varint(&mut cur)?;
    let _offset_delta = read_record_varint(&mut cur)?;
    let key_len = read_record_varint(&mut cur)?;
    if key_len < 4 {
        return None;
    }
    let key = cur.get(..4)?;
    if i16::from_be_bytes([key[0], key[1]]) != 0 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(ControlType::Abort),
        1 => Some(ControlType::Commit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn txn_markers_are_control_batches_whose_type_reads_back() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let mut out = BytesMut::new();
            let len = put_txn_marker(&mut out, ProducerId(42), ProducerEpoch(3), 7, control, 1000);
            assert_eq!(len, out.len());
            verify_crc(&out).unwrap();
            let header = BatchHeader::parse(&out).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(
                (header.producer_id, header.producer_epoch),
                (ProducerId(42), ProducerEpoch(3))
            );
            assert_eq!((header.base_sequence, header.record_count), (-1, 1));
            assert_eq!(control_type(&out), Some(control));
        }
        // A data batch is not a marker.
        let data = build(&[b"x".to_vec()], 0);
        assert_eq!(control_type(&data), None);
    }

    fn build(values: &[Vec<u8>], first_timestamp_ms: i64) -> BytesMut {
        let mut out = BytesMut::new();
        let mut builder = BatchBuilder::new(
            &mut out,
            BatchSpec {
                first_timestamp_ms,
                ..BatchSpec::default()
            },
        );
        for (i, v) in values.iter().enumerate() {
            builder.push(first_timestamp_ms + i as i64, Some(b"k"), Some(v), &[]);
        }
        builder.finish();
        out
    }

    #[test]
    fn built_batch_parses_with_expected_fields() {
        let batch = build(&[b"a".to_vec(), b"bc".to_vec(), b"def".to_vec()], 1_000);
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.total_bytes(), batch.len());
        assert_eq!(header.magic, MAGIC_V2);
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.first_timestamp_ms, 1_000);
        assert_eq!(header.max_timestamp_ms, 1_002);
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(header.producer_id, ProducerId::NONE);
        assert!(!header.is_transactional() && !header.is_control());
        verify_crc(&batch).unwrap();
    }

    #[test]
    fn log_append_time_stamps_the_batch_and_keeps_its_crc_valid() {
        let mut batch = build(&[b"a".to_vec(), b"b".to_vec()], 1_000);
        set_log_append_time(&mut batch, 77_000);
        verify_crc(&batch).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp_ms, 77_000);
        assert_eq!(header.first_timestamp_ms, 1_000);
        assert_eq!(header.record_count, 2);
    }

    #[test]
    fn recompressing_keeps_the_records_and_the_header_in_every_codec() {
        let values: Vec<Vec<u8>> = (0..50).map(|i| vec![b'a' + (i % 26) as u8; 40]).collect();
        let original = build(&values, 5_000);
        let records_of = |batch: &[u8]| -> Vec<(i32, i64, Option<Vec<u8>>)> {
            let mut scratch = Vec::new();
            let (_, records) = crate::records::batch_records(batch, &mut scratch, 1 << 20).unwrap();
            records
                .map(|r| {
                    let r = r.unwrap();
                    (
                        r.offset_delta,
                        r.timestamp_delta_ms,
                        r.value.map(<[u8]>::to_vec),
                    )
                })
                .collect()
        };
        let want = records_of(&original);
        let codecs = [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
            Compression::None,
        ];
        let mut current = original.to_vec();
        for codec in codecs {
            let mut out = BytesMut::new();
            recompress(&current, codec, 1 << 20, &mut out).unwrap();
            verify_crc(&out).unwrap();
            let header = BatchHeader::parse(&out).unwrap();
            assert_eq!(header.compression(), codec);
            assert_eq!(header.record_count, 50);
            assert_eq!(header.first_timestamp_ms, 5_000);
            assert_eq!(header.total_bytes(), out.len());
            assert_eq!(records_of(&out), want, "{codec:?}");
            current = out.to_vec();
        }
        assert_eq!(
            current,
            original.to_vec(),
            "back to uncompressed: the same bytes"
        );
    }

    #[test]
    fn patching_offset_and_epoch_keeps_crc_valid() {
        let mut batch = build(&[b"x".to_vec(), b"y".to_vec()], 5);
        set_base_offset(&mut batch, Offset(1_000_000));
        set_partition_leader_epoch(&mut batch, LeaderEpoch(7));
        verify_crc(&batch).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.base_offset, Offset(1_000_000));
        assert_eq!(header.last_offset(), Offset(1_000_001));
        assert_eq!(header.partition_leader_epoch, LeaderEpoch(7));
    }

    #[test]
    fn flipped_bit_in_crc_range_is_detected() {
        let mut batch = build(&[b"payload".to_vec()], 0);
        let last = batch.len() - 1;
        batch[last] ^= 0x01;
        assert!(matches!(
            verify_crc(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn a_checked_batch_is_one_whole_batch_with_a_good_crc() {
        let batch = build(&[b"x".to_vec(), b"y".to_vec()], 5).freeze();
        let checked = CheckedBatch::check(batch.clone()).unwrap();
        assert_eq!(checked.header(), &BatchHeader::parse(&batch).unwrap());
        assert_eq!(checked.len(), batch.len());
        let mut two = BytesMut::from(&batch[..]);
        two.extend_from_slice(&batch);
        assert!(matches!(
            CheckedBatch::check(two.freeze()),
            Err(BatchError::BadLength(_))
        ));
        let mut flipped = BytesMut::from(&batch[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            CheckedBatch::check(flipped.freeze()),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert!(CheckedBatch::check(batch.slice(..batch.len() - 1)).is_err());
    }

    #[test]
    fn short_buffer_is_truncated_not_panic() {
        let batch = build(&[b"v".to_vec()], 0);
        assert_eq!(
            BatchHeader::parse(&batch[..60]),
            Err(BatchError::Truncated {
                needed: 61,
                available: 60
            })
        );
        assert!(matches!(
            verify_crc(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn wrong_magic_and_length_are_rejected() {
        let mut batch = build(&[b"v".to_vec()], 0);
        batch[16] = 1;
        assert_eq!(BatchHeader::parse(&batch), Err(BatchError::BadMagic(1)));
        let mut batch = build(&[b"v".to_vec()], 0);
        batch[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&batch), Err(BatchError::BadLength(48)));
    }

    #[test]
    fn unknown_codec_is_rejected() {
        let mut batch = build(&[b"v".to_vec()], 0);
        batch[22] = 5;
        assert_eq!(
            BatchHeader::parse(&batch),
            Err(BatchError::UnknownCompression(5))
        );
    }

    #[test]
    fn iteration_stops_with_error_on_partial_tail() {
        let mut records = build(&[b"a".to_vec()], 0);
        records.extend_from_slice(&build(&[b"b".to_vec(), b"c".to_vec()], 0));
        let whole = records.len();
        records.extend_from_slice(&build(&[b"d".to_vec()], 0)[..30]);
        let mut iter = batches(&records);
        assert_eq!(iter.next().unwrap().unwrap().0.record_count, 1);
        assert_eq!(iter.next().unwrap().unwrap().0.record_count, 2);
        assert_eq!(iter.remaining().len(), records.len() - whole);
        assert!(matches!(
            iter.next(),
            Some(Err(BatchError::Truncated { .. }))
        ));
        assert!(iter.next().is_none());
    }

    proptest! {
        #[test]
        fn build_parse_patch_round_trip(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            first_timestamp_ms in 0i64..1 << 45,
            base in 0i64..1 << 60,
            epoch in -1i32..i32::MAX,
        ) {
            let mut batch = build(&values, first_timestamp_ms);
            set_base_offset(&mut batch, Offset(base));
            set_partition_leader_epoch(&mut batch, LeaderEpoch(epoch));
            prop_assert!(verify_crc(&batch).is_ok());
            let header = BatchHeader::parse(&batch).unwrap();
            prop_assert_eq!(header.base_offset, Offset(base));
            prop_assert_eq!(header.partition_leader_epoch, LeaderEpoch(epoch));
            prop_assert_eq!(header.record_count as usize, values.len());
            prop_assert_eq!(header.last_offset(), Offset(base + values.len() as i64 - 1));
            prop_assert_eq!(header.total_bytes(), batch.len());
        }

        #[test]
        fn concatenated_batches_iterate_back(
            counts in proptest::collection::vec(1usize..5, 1..8),
        ) {
            let mut records = BytesMut::new();
            for &n in &counts {
                let values: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i]).collect();
                records.extend_from_slice(&build(&values, 0));
            }
            let got: Vec<i32> = batches(&records).map(|b| b.unwrap().0.record_count).collect();
            let want: Vec<i32> = counts.iter().map(|&n| n as i32).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = BatchHeader::parse(&bytes);
            let _ = verify_crc(&bytes);
            for (header, batch) in batches(&bytes).flatten() {
                prop_assert_eq!(header.total_bytes(), batch.len());
            }
        }

        #[test]
        fn any_single_bit_flip_after_crc_field_is_caught(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..5),
            position in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut batch = build(&values, 0);
            let i = CRC_START + position.index(batch.len() - CRC_START);
            batch[i] ^= 1 << bit;
            prop_assert!(verify_crc(&batch).is_err());
        }
    }
}
