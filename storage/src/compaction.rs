//! Log compaction, the pure part: the bounded key → latest-offset map and the per-batch filter
//! that keeps, for each key, only its latest record (Kafka's `cleanup.policy=compact`).
//!
//! The I/O part (which segments to clean, writing the cleaned segment, the crash-safe swap) is
//! [`crate::log::Log::clean`]. Here nothing touches a file or a clock: callers pass `now_ms`.
//!
//! Rules, as Kafka's cleaner applies them:
//! - Records are never reordered or renumbered. A rewritten batch keeps its `baseOffset` and
//!   its `lastOffsetDelta` (so an idempotent producer's last sequence stays right), its producer
//!   id, epoch and base sequence, its leader epoch; only the records it drops disappear, so
//!   offsets inside the log may have gaps after cleaning.
//! - A record is dropped when the map holds a later offset for its key, when it has no key
//!   (compacted topics refuse keyless records; any left from before the topic was compacted are
//!   invalid for compaction, as Kafka treats them), or when it is a tombstone (null value) whose
//!   batch's delete horizon has passed.
//! - Delete horizon (KIP-534): the first time a batch holding a retained tombstone is cleaned,
//!   it gets attribute bit 6 and its `baseTimestamp` becomes `now + delete.retention.ms`
//!   (record timestamp deltas are re-based, so every record keeps its absolute timestamp).
//!   A later cleaning after that instant drops the tombstones. The horizon travels with the
//!   batch, so no per-segment state is needed.
//! - Compressed batches are decompressed (bounded), filtered and recompressed with their codec.
//! - Control batches are kept as they are (transaction markers; see the hook in
//!   [`filter_batch`]).

use std::hash::{Hash, Hasher};

use bytes::{BufMut, BytesMut};
use spate_wire::batch::{
    compute_crc, put_bytes_field, put_varint, varint_len, BatchHeader, Compression,
    BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES,
};
use spate_wire::compression::compress;
use spate_wire::records::{header_records, Record, Records};
use spate_wire::types::Offset;
use spate_wire::WireError;

/// Attribute bit 6: the batch's `baseTimestamp` is its delete horizon (Kafka's
/// `DELETE_HORIZON_FLAG_MASK`).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;
/// Batch attribute bits naming the compression codec.
const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Bytes one entry of the [`OffsetMap`] takes (a 128-bit key hash and an offset).
pub const OFFSET_MAP_SLOT_BYTES: usize = 24;
/// Smallest map the cleaner accepts; smaller budgets could not make progress.
pub const OFFSET_MAP_BYTES_MIN: usize = 64 * OFFSET_MAP_SLOT_BYTES;
/// The map counts as full at this fill (percent): open addressing slows down past it.
pub const OFFSET_MAP_FILL_PERCENT_MAX: usize = 90;

/// A 128-bit hash of a record key. Two keys with the same hash are treated as one key, as in
/// Kafka's `SkimpyOffsetMap` (which uses MD5); at 128 bits a collision is not a practical risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u64; 2]);

impl KeyHash {
    /// Hashes `key`.
    pub fn of(key: &[u8]) -> KeyHash {
        let half = |seed: u64| {
            // SipHash with fixed keys: stable within a process, which is all the map needs
            // (it is rebuilt for every cleaning and never stored).
            #[allow(deprecated)]
            let mut h = std::hash::SipHasher::new_with_keys(seed, !seed);
            key.hash(&mut h);
            h.finish()
        };
        let mut hash = [half(0x5370_6174_6531), half(0x436c_6561_6e65)];
        // All-zero marks an empty slot.
        if hash == [0, 0] {
            hash[0] = 1;
        }
        KeyHash(hash)
    }
}

/// The map is at its fill limit; the caller cleans the prefix it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapFull;

/// Key hash → latest offset seen, in a fixed memory budget (open addressing, linear probing).
///
/// Allocated once per cleaner and reused. The memory comes zeroed from the allocator (pages
/// are only touched as keys land on them), and clearing it for the next cleaning can be done
/// in steps ([`OffsetMap::clear_step`]) so a cleaner on a shared executor never zeroes
/// megabytes in one go.
#[derive(Debug)]
pub struct OffsetMap {
    // Three words a slot: the key hash (two words, all-zero = empty) and the offset.
    words: Vec<u64>,
    used: usize,
    used_max: usize,
    // Slots below this are clear; the map is usable only when it reaches the end.
    cleared: usize,
}

/// Slots [`OffsetMap::clear_step`] zeroes at a time by default (192 KiB).
pub const OFFSET_MAP_CLEAR_STEP_SLOTS: usize = 8192;

impl OffsetMap {
    /// A map using about `bytes_max` bytes.
    ///
    /// # Panics
    /// If `bytes_max` is below [`OFFSET_MAP_BYTES_MIN`].
    pub fn new(bytes_max: usize) -> OffsetMap {
        assert!(bytes_max >= OFFSET_MAP_BYTES_MIN, "offset map too small");
        let slots = bytes_max / OFFSET_MAP_SLOT_BYTES;
        OffsetMap {
            words: vec![0; slots * 3],
            used: 0,
            used_max: slots * OFFSET_MAP_FILL_PERCENT_MAX / 100,
            cleared: slots,
        }
    }

    fn slots(&self) -> usize {
        self.words.len() / 3
    }

    /// Forgets every entry, keeping the memory.
    pub fn clear(&mut self) {
        self.start_clear();
        while !self.clear_step(usize::MAX) {}
    }

    /// Begins forgetting every entry; call [`OffsetMap::clear_step`] until it returns `true`
    /// before using the map again.
    pub fn start_clear(&mut self) {
        self.used = 0;
        self.cleared = 0;
    }

    /// Zeroes up to `slots_max` more slots; returns whether the map is clear.
    pub fn clear_step(&mut self, slots_max: usize) -> bool {
        let end = self.cleared.saturating_add(slots_max).min(self.slots());
        self.words[self.cleared * 3..end * 3].fill(0);
        self.cleared = end;
        self.cleared == self.slots()
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Most keys the map holds before it is full.
    pub fn keys_max(&self) -> usize {
        self.used_max
    }

    fn hash_at(&self, i: usize) -> [u64; 2] {
        [self.words[i * 3], self.words[i * 3 + 1]]
    }

    fn slot_of(&self, hash: KeyHash) -> usize {
        assert_eq!(self.cleared, self.slots(), "the map is being cleared");
        let n = self.slots();
        let mut i = (hash.0[0] % n as u64) as usize;
        loop {
            let h = self.hash_at(i);
            if h == hash.0 || h == [0, 0] {
                return i;
            }
            i = (i + 1) % n;
        }
    }

    /// Records `offset` as the latest offset of `key` (offsets must be fed in increasing order).
    ///
    /// # Errors
    /// [`MapFull`] if the key is new and the map is at its fill limit (nothing changed).
    ///
    /// # Panics
    /// If a [`OffsetMap::start_clear`] has not been finished.
    pub fn insert(&mut self, key: &[u8], offset: Offset) -> Result<(), MapFull> {
        let hash = KeyHash::of(key);
        let i = self.slot_of(hash);
        if self.hash_at(i) == [0, 0] {
            if self.used >= self.used_max {
                return Err(MapFull);
            }
            self.used += 1;
            self.words[i * 3] = hash.0[0];
            self.words[i * 3 + 1] = hash.0[1];
        }
        debug_assert!(
            self.words[i * 3 + 2] as i64 <= offset.0,
            "offsets fed in order"
        );
        self.words[i * 3 + 2] = offset.0 as u64;
        Ok(())
    }

    /// The latest offset recorded for `key`.
    ///
    /// # Panics
    /// If a [`OffsetMap::start_clear`] has not been finished.
    pub fn get(&self, key: &[u8]) -> Option<Offset> {
        let hash = KeyHash::of(key);
        let i = self.slot_of(hash);
        (self.hash_at(i) == hash.0).then_some(Offset(self.words[i * 3 + 2] as i64))
    }
}

/// When tombstones may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstonePolicy {
    /// The cleaner's clock.
    pub now_ms: i64,
    /// Kafka's `delete.retention.ms`: how long after its batch was first cleaned a tombstone
    /// stays readable (so a consumer that is behind still sees the delete).
    pub delete_retention_ms: i64,
}

/// Buffers reused across batches, so filtering allocates nothing per record once warm.
#[derive(Debug, Default)]
pub struct FilterScratch {
    decompressed: Vec<u8>,
    records: BytesMut,
    compressed: Vec<u8>,
}

/// What happens to a batch none of whose records stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBatch {
    /// It disappears.
    Remove,
    /// It stays as a header without records: the latest batch of an idempotent producer, from
    /// which the producer state (epoch, last sequence) is rebuilt after a restart. Kafka keeps
    /// it for the same reason; without it a retry of that batch would no longer be recognised.
    KeepHeader,
}

/// What [`filter_batch`] decided for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchVerdict {
    /// Every record stays and the header needs no change: copy the original bytes.
    Keep,
    /// Some records were dropped, or the delete horizon was set: the new batch was written to
    /// the output buffer.
    Rewritten,
    /// No record stays: the batch disappears.
    Remove,
}

/// What [`filter_batch`] found in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFiltered {
    /// The decision.
    pub verdict: BatchVerdict,
    /// The header of the batch to write: the rewritten one's if the verdict is
    /// [`BatchVerdict::Rewritten`], otherwise the input's. Handed back so that the caller need
    /// not parse the batch it writes again.
    pub header: BatchHeader,
    /// Records in the batch before filtering.
    pub records_before: u32,
    /// Records dropped.
    pub records_removed: u32,
    /// Tombstones dropped because their horizon passed.
    pub tombstones_removed: u32,
    /// The delete horizon of the kept batch, if it still holds a tombstone: the next cleaning
    /// after this instant can drop it.
    pub tombstone_horizon_ms: Option<i64>,
}

/// One whole batch and its parsed header, parsed once by whoever read the batch and passed
/// along from there.
#[derive(Debug, Clone, Copy)]
pub struct ParsedBatch<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> ParsedBatch<'a> {
    /// Pairs `bytes` with its already parsed `header`.
    ///
    /// # Panics
    /// If `bytes` is not `header.total_bytes()` long (the header belongs to another batch).
    pub fn new(header: BatchHeader, bytes: &'a [u8]) -> Self {
        assert_eq!(bytes.len(), header.total_bytes(), "header of another batch");
        debug_assert_eq!(BatchHeader::parse(bytes), Ok(header));
        ParsedBatch { header, bytes }
    }

    /// Parses the header of `bytes`, one whole batch.
    ///
    /// # Errors
    /// If the header is invalid or `bytes` is not exactly the batch it describes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let header = BatchHeader::parse(bytes)?;
        if bytes.len() != header.total_bytes() {
            return Err(WireError::Malformed {
                what: "record batch length",
            });
        }
        Ok(ParsedBatch { header, bytes })
    }

    /// The header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// The delete horizon of a batch, if set.
pub fn delete_horizon_ms(header: &BatchHeader) -> Option<i64> {
    (header.attributes & ATTR_DELETE_HORIZON != 0).then_some(header.first_timestamp_ms)
}

/// Decides which records of `batch` (one whole, CRC-checked batch) stay, and when the batch
/// changes, appends the rewritten batch to `out`.
///
/// # Errors
/// [`WireError`] if the records cannot be decoded or decompressed (the batch passed its CRC, so
/// this is a producer's malformed batch or a decompression bound; the caller stops cleaning the
/// partition rather than drop data it cannot read).
pub fn filter_batch(
    batch: ParsedBatch<'_>,
    map: &OffsetMap,
    tombstones: TombstonePolicy,
    empty: EmptyBatch,
    scratch: &mut FilterScratch,
    decompressed_bytes_max: usize,
    out: &mut BytesMut,
) -> Result<BatchFiltered, WireError> {
    let header = batch.header;
    let batch = batch.bytes;
    let mut result = BatchFiltered {
        verdict: BatchVerdict::Keep,
        header,
        records_before: u32::try_from(header.record_count).unwrap_or(0),
        records_removed: 0,
        tombstones_removed: 0,
        tombstone_horizon_ms: None,
    };
    if header.is_control() {
        // TODO(transactions): Kafka drops a transaction marker once no record of its
        // transaction is left and its delete horizon passed. Until transactions exist, markers
        // (which nothing writes yet) are kept as they are.
        return Ok(result);
    }
    let horizon = delete_horizon_ms(&header);
    let expired = horizon.is_some_and(|h| tombstones.now_ms >= h);
    let retain = |record: &Record<'_>| -> Retain {
        let Some(key) = record.key else {
            return Retain::Drop;
        };
        let offset = Offset(header.base_offset.0 + i64::from(record.offset_delta));
        if map.get(key).is_some_and(|latest| offset < latest) {
            return Retain::Drop;
        }
        match record.value {
            Some(_) => Retain::Keep,
            None if expired => Retain::DropTombstone,
            None => Retain::KeepTombstone,
        }
    };
    let (kept, tombstones_kept) = {
        let records = header_records(
            &header,
            batch,
            &mut scratch.decompressed,
            decompressed_bytes_max,
        )?;
        let mut kept = 0u32;
        let mut tombstones_kept = 0u32;
        for record in records {
            match retain(&record?) {
                Retain::Keep => kept += 1,
                Retain::KeepTombstone => {
                    kept += 1;
                    tombstones_kept += 1;
                }
                Retain::DropTombstone => result.tombstones_removed += 1,
                Retain::Drop => {}
            }
        }
        (kept, tombstones_kept)
    };
    assert!(
        kept <= result.records_before,
        "the iterator yields record_count records"
    );
    result.records_removed = result.records_before - kept;
    let needs_horizon = tombstones_kept > 0 && horizon.is_none();
    let new_horizon = match horizon {
        Some(h) => Some(h),
        None if needs_horizon => Some(
            tombstones
                .now_ms
                .saturating_add(tombstones.delete_retention_ms),
        ),
        None => None,
    };
    if tombstones_kept > 0 {
        result.tombstone_horizon_ms = new_horizon;
    }
    if kept == 0 {
        result.verdict = match empty {
            EmptyBatch::Remove => BatchVerdict::Remove,
            EmptyBatch::KeepHeader => {
                result.header = put_empty_batch(batch, &header, out);
                // Nothing of the records is left, tombstones included: no horizon to keep.
                result.tombstone_horizon_ms = None;
                BatchVerdict::Rewritten
            }
        };
        return Ok(result);
    }
    if result.records_removed == 0 && !needs_horizon {
        return Ok(result);
    }
    let base_timestamp_ms = match new_horizon {
        Some(h) => h,
        None => header.first_timestamp_ms,
    };
    // Second pass: re-encode the kept records, timestamps re-based on the new base, from the
    // section the first pass read (a compressed batch's is still in the scratch buffer: not
    // decompressed twice).
    scratch.records.clear();
    {
        let section: &[u8] = match header.compression() {
            Compression::None => &batch[BATCH_HEADER_BYTES..header.total_bytes()],
            _ => &scratch.decompressed,
        };
        let records = Records::new(section, result.records_before as usize);
        for record in records {
            let record = record?;
            if matches!(retain(&record), Retain::Keep | Retain::KeepTombstone) {
                let timestamp_ms = header.first_timestamp_ms + record.timestamp_delta_ms;
                put_record_rebased(
                    &mut scratch.records,
                    &record,
                    timestamp_ms - base_timestamp_ms,
                );
            }
        }
    }
    let codec = header.compression();
    let section: &[u8] = match codec {
        Compression::None => &scratch.records,
        codec => {
            compress(codec, &scratch.records, &mut scratch.compressed)?;
            &scratch.compressed
        }
    };
    let start = out.len();
    out.put_slice(&batch[..BATCH_HEADER_BYTES]);
    out.put_slice(section);
    let new = &mut out[start..];
    let batch_length = i32::try_from(new.len() - BATCH_LOG_OVERHEAD_BYTES)
        .map_err(|_| WireError::Malformed { what: "batch size" })?;
    let mut attributes = header.attributes;
    if new_horizon.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    // v2 header layout: baseOffset 0, batchLength 8, partitionLeaderEpoch 12, magic 16, crc 17,
    // attributes 21, lastOffsetDelta 23, baseTimestamp 27, maxTimestamp 35, producerId 43,
    // producerEpoch 51, baseSequence 53, recordCount 57.
    new[8..12].copy_from_slice(&batch_length.to_be_bytes());
    new[21..23].copy_from_slice(&attributes.to_be_bytes());
    new[27..35].copy_from_slice(&base_timestamp_ms.to_be_bytes());
    new[57..61].copy_from_slice(&(kept as i32).to_be_bytes());
    let crc = compute_crc(new);
    new[17..21].copy_from_slice(&crc.to_be_bytes());
    result.header = BatchHeader {
        batch_length,
        crc,
        attributes,
        first_timestamp_ms: base_timestamp_ms,
        record_count: kept as i32,
        ..header
    };
    debug_assert_eq!(BatchHeader::parse(new), Ok(result.header));
    result.verdict = BatchVerdict::Rewritten;
    Ok(result)
}

/// Appends `batch` as a header without records: same offsets (`baseOffset`,
/// `lastOffsetDelta`), producer id, epoch and base sequence; no compression; both timestamps
/// the batch's max timestamp (as Kafka writes an empty batch). Returns the new header.
fn put_empty_batch(batch: &[u8], header: &BatchHeader, out: &mut BytesMut) -> BatchHeader {
    let start = out.len();
    out.put_slice(&batch[..BATCH_HEADER_BYTES]);
    let new = &mut out[start..];
    let batch_length = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32;
    // Keep the timestamp type, transactional and control bits; drop the codec (no records to
    // compress) and the delete horizon (no tombstone left).
    let attributes = header.attributes & !ATTR_COMPRESSION_MASK & !ATTR_DELETE_HORIZON;
    new[8..12].copy_from_slice(&batch_length.to_be_bytes());
    new[21..23].copy_from_slice(&attributes.to_be_bytes());
    new[27..35].copy_from_slice(&header.max_timestamp_ms.to_be_bytes());
    new[57..61].copy_from_slice(&0i32.to_be_bytes());
    let crc = compute_crc(new);
    new[17..21].copy_from_slice(&crc.to_be_bytes());
    let empty = BatchHeader {
        batch_length,
        crc,
        attributes,
        first_timestamp_ms: header.max_timestamp_ms,
        record_count: 0,
        ..*header
    };
    debug_assert_eq!(BatchHeader::parse(new), Ok(empty));
    empty
}

enum Retain {
    Keep,
    KeepTombstone,
    DropTombstone,
    Drop,
}

/// Writes `record` with a new timestamp delta (everything else as it was, offset delta
/// included, so the record keeps its offset).
fn put_record_rebased(out: &mut BytesMut, record: &Record<'_>, timestamp_delta_ms: i64) {
    let headers = record.headers();
    let body_len = 1
        + varint_len(timestamp_delta_ms)
        + varint_len(i64::from(record.offset_delta))
        + field_len(record.key)
        + field_len(record.value)
        + varint_len(headers.len() as i64)
        + headers
            .map(|(k, v)| field_len(Some(k)) + field_len(v))
            .sum::<usize>();
    put_varint(out, body_len as i64);
    let before = out.len();
    out.put_i8(record.attributes);
    put_varint(out, timestamp_delta_ms);
    put_varint(out, i64::from(record.offset_delta));
    put_bytes_field(out, record.key);
    put_bytes_field(out, record.value);
    put_varint(out, record.headers().len() as i64);
    for (k, v) in record.headers() {
        put_bytes_field(out, Some(k));
        put_bytes_field(out, v);
    }
    debug_assert_eq!(out.len() - before, body_len);
}

fn field_len(field: Option<&[u8]>) -> usize {
    spate_wire::batch::bytes_field_len(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_wire::batch::{BatchBuilder, BatchSpec};
    use spate_wire::compression::DECOMPRESSED_BYTES_MAX_DEFAULT;
    use spate_wire::records::batch_records;
    use spate_wire::types::{ProducerEpoch, ProducerId};

    type Rec<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    fn batch(base: i64, records: &[Rec<'_>]) -> BytesMut {
        let mut out = BytesMut::new();
        let mut b = BatchBuilder::new(
            &mut out,
            BatchSpec {
                base_offset: Offset(base),
                first_timestamp_ms: 1000,
                ..BatchSpec::default()
            },
        );
        for (i, (k, v)) in records.iter().enumerate() {
            b.push(1000 + i as i64, *k, *v, &[("h", Some(b"x"))]);
        }
        b.finish();
        out
    }

    fn compressed(codec: Compression, plain: &[u8]) -> BytesMut {
        let mut section = Vec::new();
        compress(codec, &plain[BATCH_HEADER_BYTES..], &mut section).unwrap();
        let mut out = BytesMut::from(&plain[..BATCH_HEADER_BYTES]);
        out.extend_from_slice(&section);
        let len = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        out[21..23].copy_from_slice(&codec.id().to_be_bytes());
        let crc = compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Offset, timestamp, key, value.
    type Decoded = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

    fn decode(batch: &[u8]) -> Vec<Decoded> {
        let mut scratch = Vec::new();
        let (h, records) = batch_records(batch, &mut scratch, 1 << 20).unwrap();
        records
            .map(|r| {
                let r = r.unwrap();
                assert_eq!(
                    r.headers().collect::<Vec<_>>(),
                    vec![(&b"h"[..], Some(&b"x"[..]))]
                );
                (
                    h.base_offset.0 + i64::from(r.offset_delta),
                    h.first_timestamp_ms + r.timestamp_delta_ms,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                )
            })
            .collect()
    }

    fn policy(now_ms: i64) -> TombstonePolicy {
        TombstonePolicy {
            now_ms,
            delete_retention_ms: 500,
        }
    }

    fn run(input: &[u8], map: &OffsetMap, now_ms: i64) -> (BatchFiltered, BytesMut) {
        let mut out = BytesMut::new();
        let filtered = filter_batch(
            ParsedBatch::parse(input).unwrap(),
            map,
            policy(now_ms),
            EmptyBatch::Remove,
            &mut FilterScratch::default(),
            DECOMPRESSED_BYTES_MAX_DEFAULT,
            &mut out,
        )
        .unwrap();
        (filtered, out)
    }

    #[test]
    fn offset_map_keeps_the_latest_offset_and_reports_full() {
        let mut map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
        let keys_max = map.keys_max();
        assert_eq!(keys_max, 64 * 90 / 100);
        for i in 0..keys_max {
            map.insert(format!("k{i}").as_bytes(), Offset(i as i64))
                .unwrap();
        }
        assert_eq!(map.insert(b"new", Offset(1000)), Err(MapFull));
        // Known keys still update when full.
        map.insert(b"k3", Offset(2000)).unwrap();
        assert_eq!(map.get(b"k3"), Some(Offset(2000)));
        assert_eq!(map.get(b"k4"), Some(Offset(4)));
        assert_eq!(map.get(b"new"), None);
        assert_eq!(map.len(), keys_max);
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.get(b"k3"), None);
        // Cleared in steps: usable again only once every slot is zero.
        map.insert(b"a", Offset(1)).unwrap();
        map.start_clear();
        let mut steps = 1;
        while !map.clear_step(10) {
            steps += 1;
        }
        assert_eq!(steps, 64usize.div_ceil(10));
        assert!(map.is_empty());
        assert_eq!(map.get(b"a"), None);
    }

    #[test]
    #[should_panic(expected = "being cleared")]
    fn a_map_being_cleared_cannot_be_used() {
        let mut map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
        map.start_clear();
        map.clear_step(1);
        let _ = map.get(b"a");
    }

    #[test]
    fn a_producers_last_batch_stays_as_an_empty_header_when_every_record_goes() {
        let mut input = BytesMut::new();
        let mut b = BatchBuilder::new(
            &mut input,
            BatchSpec {
                base_offset: Offset(200),
                first_timestamp_ms: 1000,
                producer_id: ProducerId(7),
                producer_epoch: ProducerEpoch(2),
                base_sequence: 40,
            },
        );
        b.push(1000, Some(b"a"), Some(b"1"), &[]);
        b.push(1005, Some(b"b"), Some(b"2"), &[]);
        b.finish();
        let plain = input.clone();
        let input = compressed(Compression::Lz4, &plain);
        let mut map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
        map.insert(b"a", Offset(300)).unwrap();
        map.insert(b"b", Offset(301)).unwrap();

        let (removed, out) = run(&input, &map, 0);
        assert_eq!(removed.verdict, BatchVerdict::Remove);
        assert!(out.is_empty());

        let mut out = BytesMut::new();
        let kept = filter_batch(
            ParsedBatch::parse(&input).unwrap(),
            &map,
            policy(0),
            EmptyBatch::KeepHeader,
            &mut FilterScratch::default(),
            DECOMPRESSED_BYTES_MAX_DEFAULT,
            &mut out,
        )
        .unwrap();
        assert_eq!(kept.verdict, BatchVerdict::Rewritten);
        assert_eq!(kept.records_removed, 2);
        assert_eq!(out.len(), BATCH_HEADER_BYTES, "a header and no records");
        spate_wire::batch::verify_crc(&out).unwrap();
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(h.base_offset, Offset(200));
        assert_eq!(
            h.last_offset(),
            Offset(201),
            "the offsets it covered stay covered"
        );
        assert_eq!(h.record_count, 0);
        assert_eq!(h.producer_id, ProducerId(7));
        assert_eq!(h.producer_epoch, ProducerEpoch(2));
        assert_eq!(h.base_sequence, 40);
        assert_eq!(h.compression(), Compression::None);
        assert_eq!((h.first_timestamp_ms, h.max_timestamp_ms), (1005, 1005));
        assert!(decode(&out).is_empty());
    }

    #[test]
    fn superseded_records_go_and_offsets_stay() {
        let input = batch(
            100,
            &[
                (Some(b"a"), Some(b"1")),
                (Some(b"b"), Some(b"2")),
                (Some(b"a"), Some(b"3")),
                (None, Some(b"keyless")),
            ],
        );
        let mut map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
        map.insert(b"a", Offset(102)).unwrap();
        map.insert(b"b", Offset(101)).unwrap();
        let (filtered, out) = run(&input, &map, 0);
        assert_eq!(filtered.verdict, BatchVerdict::Rewritten);
        assert_eq!(filtered.records_removed, 2);
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(h.base_offset, Offset(100));
        assert_eq!(h.last_offset(), Offset(103), "lastOffsetDelta is kept");
        assert_eq!(h.record_count, 2);
        assert_eq!(h.max_timestamp_ms, 1003);
        spate_wire::batch::verify_crc(&out).unwrap();
        assert_eq!(
            decode(&out),
            vec![
                (101, 1001, Some(b"b".to_vec()), Some(b"2".to_vec())),
                (102, 1002, Some(b"a".to_vec()), Some(b"3".to_vec())),
            ]
        );
    }

    #[test]
    fn an_untouched_batch_is_kept_and_a_fully_superseded_one_removed() {
        let input = batch(0, &[(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"2"))]);
        let mut map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
        map.insert(b"a", Offset(0)).unwrap();
        let (filtered, out) = run(&input, &map, 0);
        assert_eq!(filtered.verdict, BatchVerdict::Keep);
        assert!(out.is_empty());
        map.insert(b"a", Offset(10)).unwrap();
        map.insert(b"b", Offset(11)).unwrap();
        let (filtered, out) = run(&input, &map, 0);
        assert_eq!(filtered.verdict, BatchVerdict::Remove);
        assert_eq!(filtered.records_removed, 2);
        assert!(out.is_empty());
    }

    #[test]
    fn tombstones_get_a_horizon_then_go_after_it() {
        let input = batch(7, &[(Some(b"a"), None), (Some(b"b"), Some(b"2"))]);
        let map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
        let (first, out) = run(&input, &map, 10_000);
        assert_eq!(first.verdict, BatchVerdict::Rewritten);
        assert_eq!(first.records_removed, 0);
        assert_eq!(first.tombstone_horizon_ms, Some(10_500));
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(delete_horizon_ms(&h), Some(10_500));
        // Absolute record timestamps survive the re-basing.
        assert_eq!(
            decode(&out),
            vec![
                (7, 1000, Some(b"a".to_vec()), None),
                (8, 1001, Some(b"b".to_vec()), Some(b"2".to_vec())),
            ]
        );
        // Before the horizon: nothing to do.
        let (second, out2) = run(&out, &map, 10_499);
        assert_eq!(second.verdict, BatchVerdict::Keep);
        assert_eq!(second.tombstone_horizon_ms, Some(10_500));
        assert!(out2.is_empty());
        // At the horizon the tombstone goes.
        let (third, out3) = run(&out, &map, 10_500);
        assert_eq!(third.verdict, BatchVerdict::Rewritten);
        assert_eq!(third.tombstones_removed, 1);
        assert_eq!(third.tombstone_horizon_ms, None);
        assert_eq!(
            decode(&out3),
            vec![(8, 1001, Some(b"b".to_vec()), Some(b"2".to_vec()))]
        );
    }

    #[test]
    fn compressed_batches_are_recompressed_with_their_codec() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let plain = batch(
                50,
                &[
                    (Some(b"a"), Some(b"old")),
                    (Some(b"b"), Some(b"keep")),
                    (Some(b"a"), Some(b"new")),
                ],
            );
            let input = compressed(codec, &plain);
            let mut map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
            map.insert(b"a", Offset(52)).unwrap();
            let (filtered, out) = run(&input, &map, 0);
            assert_eq!(filtered.verdict, BatchVerdict::Rewritten, "{codec:?}");
            let h = BatchHeader::parse(&out).unwrap();
            assert_eq!(h.compression(), codec);
            assert_eq!(h.last_offset(), Offset(52));
            assert_eq!(
                decode(&out),
                vec![
                    (51, 1001, Some(b"b".to_vec()), Some(b"keep".to_vec())),
                    (52, 1002, Some(b"a".to_vec()), Some(b"new".to_vec())),
                ],
                "{codec:?}"
            );
        }
    }
}
