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
//! - Transactions ([`TxnTracker`], Kafka's `CleanedTransactionMetadata`): a pass walks the log
//!   in offset order. Every batch of an aborted transaction goes (the records of aborted
//!   transactions never enter the key map either). A COMMIT marker is discardable once the pass
//!   read no batch of its transaction before it, an ABORT marker once the pass read none of its
//!   aborted batches (an earlier pass removed them): a marker never goes while data it decides
//!   is in the log. A discardable marker gets a delete horizon like a tombstone batch (the
//!   first cleaning that finds it discardable) and goes at the first cleaning after it. Other
//!   control records are kept. The caller must then forget the aborted transaction a removed
//!   ABORT marker closed (the aborted index must never name a transaction whose marker is gone:
//!   a `read_committed` reader would skip that producer's later batches until an ABORT that
//!   never comes), and never clean past the first unstable offset (an open transaction may
//!   still abort).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use bytes::{BufMut, BytesMut};
use spate_wire::batch::{
    compute_crc, put_bytes_field, put_varint, varint_len, BatchHeader, Compression, ControlType,
    BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES,
};
use spate_wire::compression::compress;
use spate_wire::records::{header_records, Record, Records};
use spate_wire::types::{Offset, ProducerId};
use spate_wire::WireError;

use crate::producer_state::AbortedTxn;

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
    /// The delete horizon of the kept batch, if it still holds a tombstone or is a marker
    /// waiting to go: the next cleaning after this instant can drop it.
    pub tombstone_horizon_ms: Option<i64>,
    /// Whether this was a transaction marker whose records (its COMMIT or ABORT) went: the
    /// caller forgets the aborted transaction it closed (see [`crate::log::Log::clean`]).
    pub marker_removed: bool,
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

/// What a transaction makes of a batch, as [`TxnTracker::on_batch`] decides it in a cleaning's
/// pass over the log in offset order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRole {
    /// Data outside any aborted transaction: records go by key (superseded, keyless, expired
    /// tombstone).
    Data,
    /// Data of an aborted transaction: every record goes (`read_committed` readers never see
    /// them, and `read_uncommitted` readers of a compacted topic get no promise about them).
    Aborted,
    /// A control batch that must stay as it is: a marker some batch of whose transaction is
    /// still in the log (removing it first would leave that data without its decision), or a
    /// control record Spate does not interpret.
    MarkerKept,
    /// A marker no batch of whose transaction is left: it goes once its delete horizon passed,
    /// the first cleaning that finds it so starting the horizon (KIP-534, as for tombstones), so
    /// that a consumer behind by less than `delete.retention.ms` still sees the decision.
    MarkerDiscardable,
}

/// A cleaning's view of the transactions it walks through (Kafka's
/// `CleanedTransactionMetadata`): fed every batch of the cleaned range in offset order, before
/// filtering, it tells which data batches belong to aborted transactions and which markers
/// have no batch of their transaction left.
///
/// "Left" means physically present when this pass reads it: a data batch this pass empties
/// still counts, so its marker goes at the earliest in the next pass. That order matters for
/// recovery too: a batch read back without its marker would reopen a transaction forever.
#[derive(Debug, Default)]
pub struct TxnTracker {
    /// The partition's aborted transactions not yet reached, by growing first offset.
    aborted: VecDeque<AbortedTxn>,
    /// Per producer, the aborted transaction the pass is inside, and whether it read a batch of
    /// it.
    ongoing_aborted: HashMap<ProducerId, bool>,
    /// Producers inside a transaction the pass read a non-aborted batch of.
    ongoing_committed: HashSet<ProducerId>,
}

impl TxnTracker {
    /// A tracker for one pass, given the aborted transactions whose records may lie in it (at
    /// least all those with a first offset below the pass's end).
    pub fn new(mut aborted: Vec<AbortedTxn>) -> TxnTracker {
        aborted.sort_unstable_by_key(|t| (t.first_offset, t.last_offset));
        TxnTracker {
            aborted: aborted.into(),
            ongoing_aborted: HashMap::new(),
            ongoing_committed: HashSet::new(),
        }
    }

    /// The role of the next batch, given its header and, for a control batch, the control type
    /// of its first record (`None` if it has none or Spate does not know it).
    ///
    /// # Panics
    /// If batches are not fed in offset order (checked in debug builds only).
    pub fn on_batch(&mut self, header: &BatchHeader, control: Option<ControlType>) -> BatchRole {
        // Enter every aborted transaction that started at or before this batch: from here on,
        // its producer's transactional batches are aborted ones until its ABORT marker.
        while let Some(t) = self
            .aborted
            .front()
            .filter(|t| t.first_offset <= header.last_offset())
        {
            self.ongoing_aborted.entry(t.producer_id).or_insert(false);
            self.aborted.pop_front();
        }
        let producer = header.producer_id;
        if header.is_control() {
            return match control {
                Some(ControlType::Abort) => {
                    let read_aborted = self.ongoing_aborted.remove(&producer) == Some(true);
                    // Batches the index did not name as aborted (only below the log start,
                    // where retention trims its entries) still are this transaction's.
                    let read_unnamed = self.ongoing_committed.remove(&producer);
                    if read_aborted || read_unnamed {
                        BatchRole::MarkerKept
                    } else {
                        // Its data went in an earlier pass, or it never had any here.
                        BatchRole::MarkerDiscardable
                    }
                }
                Some(ControlType::Commit) => {
                    if self.ongoing_committed.remove(&producer) {
                        BatchRole::MarkerKept
                    } else {
                        BatchRole::MarkerDiscardable
                    }
                }
                // A marker an earlier cleaning emptied (kept as a header for its producer's
                // epoch) holds nothing for readers.
                None if header.record_count == 0 => BatchRole::MarkerDiscardable,
                None => BatchRole::MarkerKept,
            };
        }
        if !header.is_transactional() {
            return BatchRole::Data;
        }
        match self.ongoing_aborted.get_mut(&producer) {
            Some(seen) => {
                *seen = true;
                BatchRole::Aborted
            }
            None => {
                self.ongoing_committed.insert(producer);
                BatchRole::Data
            }
        }
    }
}

/// Decides which records of `batch` (one whole, CRC-checked batch) stay, given its `role` in
/// its transaction, and when the batch changes, appends the rewritten batch to `out`.
///
/// # Errors
/// [`WireError`] if the records cannot be decoded or decompressed (the batch passed its CRC, so
/// this is a producer's malformed batch or a decompression bound; the caller stops cleaning the
/// partition rather than drop data it cannot read).
///
/// # Panics
/// If `role` does not fit the batch: a marker role for a data batch, or the reverse.
#[allow(clippy::too_many_arguments)]
pub fn filter_batch(
    batch: ParsedBatch<'_>,
    map: &OffsetMap,
    tombstones: TombstonePolicy,
    role: BatchRole,
    empty: EmptyBatch,
    scratch: &mut FilterScratch,
    decompressed_bytes_max: usize,
    out: &mut BytesMut,
) -> Result<BatchFiltered, WireError> {
    let header = batch.header;
    let result = BatchFiltered {
        verdict: BatchVerdict::Keep,
        header,
        records_before: u32::try_from(header.record_count).unwrap_or(0),
        records_removed: 0,
        tombstones_removed: 0,
        tombstone_horizon_ms: None,
        marker_removed: false,
    };
    let is_marker_role = matches!(role, BatchRole::MarkerKept | BatchRole::MarkerDiscardable);
    assert_eq!(
        header.is_control(),
        is_marker_role,
        "a marker role is for control batches only"
    );
    match role {
        BatchRole::Data => filter_data(
            batch,
            map,
            tombstones,
            empty,
            scratch,
            decompressed_bytes_max,
            out,
            result,
        ),
        BatchRole::Aborted => Ok(drop_records(batch, empty, out, result)),
        BatchRole::MarkerKept => Ok(result),
        BatchRole::MarkerDiscardable => filter_marker(
            batch,
            tombstones,
            empty,
            scratch,
            decompressed_bytes_max,
            out,
            result,
        ),
    }
}

/// Every record of `batch` goes: the batch disappears or stays as a bare header.
fn drop_records(
    batch: ParsedBatch<'_>,
    empty: EmptyBatch,
    out: &mut BytesMut,
    mut result: BatchFiltered,
) -> BatchFiltered {
    result.records_removed = result.records_before;
    result.tombstone_horizon_ms = None;
    result.verdict = match empty {
        EmptyBatch::Remove => BatchVerdict::Remove,
        // Already a bare header: nothing to rewrite.
        EmptyBatch::KeepHeader if result.records_before == 0 => BatchVerdict::Keep,
        EmptyBatch::KeepHeader => {
            result.header = put_empty_batch(batch.bytes, &batch.header, out);
            BatchVerdict::Rewritten
        }
    };
    result
}

/// A marker with no batch of its transaction left: starts its delete horizon, keeps it until
/// then, drops it after.
fn filter_marker(
    batch: ParsedBatch<'_>,
    policy: TombstonePolicy,
    empty: EmptyBatch,
    scratch: &mut FilterScratch,
    decompressed_bytes_max: usize,
    out: &mut BytesMut,
    mut result: BatchFiltered,
) -> Result<BatchFiltered, WireError> {
    let header = batch.header;
    let horizon = delete_horizon_ms(&header);
    if result.records_before == 0 || horizon.is_some_and(|h| policy.now_ms >= h) {
        result.marker_removed = result.records_before > 0;
        return Ok(drop_records(batch, empty, out, result));
    }
    if let Some(h) = horizon {
        result.tombstone_horizon_ms = Some(h);
        return Ok(result);
    }
    // The first cleaning that finds it discardable: the horizon starts now, carried by the
    // batch itself as for tombstones.
    let h = policy.now_ms.saturating_add(policy.delete_retention_ms);
    let kept = {
        let records = header_records(
            &header,
            batch.bytes,
            &mut scratch.decompressed,
            decompressed_bytes_max,
        )?;
        let mut kept = 0u32;
        for record in records {
            record?;
            kept += 1;
        }
        kept
    };
    assert_eq!(
        kept, result.records_before,
        "the iterator yields record_count records"
    );
    result.header = put_filtered(batch, kept, |_| true, Some(h), scratch, out)?;
    result.tombstone_horizon_ms = Some(h);
    result.verdict = BatchVerdict::Rewritten;
    Ok(result)
}

/// A data batch: records go by key.
#[allow(clippy::too_many_arguments)]
fn filter_data(
    batch: ParsedBatch<'_>,
    map: &OffsetMap,
    tombstones: TombstonePolicy,
    empty: EmptyBatch,
    scratch: &mut FilterScratch,
    decompressed_bytes_max: usize,
    out: &mut BytesMut,
    mut result: BatchFiltered,
) -> Result<BatchFiltered, WireError> {
    let header = batch.header;
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
            batch.bytes,
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
        return Ok(drop_records(batch, empty, out, result));
    }
    if result.records_removed == 0 && !needs_horizon {
        return Ok(result);
    }
    let keep = |record: &Record<'_>| matches!(retain(record), Retain::Keep | Retain::KeepTombstone);
    result.header = put_filtered(batch, kept, keep, new_horizon, scratch, out)?;
    result.verdict = BatchVerdict::Rewritten;
    Ok(result)
}

/// Appends `batch` rewritten with the `kept` records `keep` accepts, from the section the
/// caller's `header_records` left (a compressed batch's is still in the scratch buffer: not
/// decompressed twice). With a `horizon`, it becomes the base timestamp and attribute bit 6 is
/// set; record timestamps are re-based so each keeps its absolute value. Returns the new
/// header.
fn put_filtered(
    batch: ParsedBatch<'_>,
    kept: u32,
    keep: impl Fn(&Record<'_>) -> bool,
    horizon: Option<i64>,
    scratch: &mut FilterScratch,
    out: &mut BytesMut,
) -> Result<BatchHeader, WireError> {
    let header = batch.header;
    let batch = batch.bytes;
    let base_timestamp_ms = horizon.unwrap_or(header.first_timestamp_ms);
    scratch.records.clear();
    {
        let section: &[u8] = match header.compression() {
            Compression::None => &batch[BATCH_HEADER_BYTES..header.total_bytes()],
            _ => &scratch.decompressed,
        };
        let records_before = u32::try_from(header.record_count).unwrap_or(0);
        let records = Records::new(section, records_before as usize);
        for record in records {
            let record = record?;
            if keep(&record) {
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
    if horizon.is_some() {
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
    let rewritten = BatchHeader {
        batch_length,
        crc,
        attributes,
        first_timestamp_ms: base_timestamp_ms,
        record_count: kept as i32,
        ..header
    };
    debug_assert_eq!(BatchHeader::parse(new), Ok(rewritten));
    Ok(rewritten)
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
            BatchRole::Data,
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
            BatchRole::Data,
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

    /// Transactions in a log, for the tracker and the pass model below.
    mod txn {
        use super::*;
        use crate::producer_state::ProducerState;
        use proptest::prelude::*;
        use spate_wire::batch::{control_type, put_txn_marker, set_transactional};
        use std::collections::BTreeMap;

        const RETENTION_MS: i64 = 500;

        fn with_base(mut b: BytesMut, base: i64) -> BytesMut {
            // baseOffset is outside the CRC.
            b[0..8].copy_from_slice(&base.to_be_bytes());
            b
        }

        /// A batch of producer `pid` (transactional or not) at `base` with `keys` (value = its
        /// offset, so every value is unique; `None` key 255 is written as a tombstone).
        fn data(base: i64, pid: i64, transactional: bool, keys: &[u8]) -> BytesMut {
            let mut out = BytesMut::new();
            let mut b = BatchBuilder::new(
                &mut out,
                BatchSpec {
                    base_offset: Offset(base),
                    first_timestamp_ms: 1000,
                    producer_id: ProducerId(pid),
                    producer_epoch: ProducerEpoch(0),
                    base_sequence: 0,
                },
            );
            for (i, k) in keys.iter().enumerate() {
                let value = (base + i as i64).to_be_bytes();
                let value = (k % 5 != 4).then_some(&value[..]);
                b.push(1000, Some(&[*k % 5]), value, &[]);
            }
            b.finish();
            if transactional {
                set_transactional(&mut out);
            }
            out
        }

        fn marker(base: i64, pid: i64, control: ControlType) -> BytesMut {
            let mut out = BytesMut::new();
            put_txn_marker(
                &mut out,
                ProducerId(pid),
                ProducerEpoch(0),
                0,
                control,
                1000,
            );
            with_base(out, base)
        }

        fn header(b: &[u8]) -> BatchHeader {
            BatchHeader::parse(b).unwrap()
        }

        fn aborted_of(log: &[BytesMut]) -> Vec<AbortedTxn> {
            let mut state = ProducerState::new(1000, i64::MAX);
            for b in log {
                state.replay(&header(b), &b[BATCH_HEADER_BYTES..]);
            }
            assert_eq!(
                state.first_unstable_offset(),
                None,
                "no transaction left open"
            );
            state.aborted_between(Offset(0), Offset(i64::MAX))
        }

        #[test]
        fn the_tracker_drops_aborted_data_and_frees_markers_with_no_data_left() {
            // Producer 1 aborts [0, 2), marker at 2; producer 2 commits [1], marker at 3;
            // producer 3 commits with no data here (marker at 4).
            let log = [
                data(0, 1, true, &[0]),
                data(1, 2, true, &[1]),
                data(2, 3, false, &[2]),
                marker(3, 1, ControlType::Abort),
                marker(4, 2, ControlType::Commit),
                marker(5, 3, ControlType::Commit),
            ];
            let aborted = aborted_of(&log);
            assert_eq!(aborted.len(), 1);
            let mut t = TxnTracker::new(aborted.clone());
            let roles: Vec<BatchRole> = log
                .iter()
                .map(|b| t.on_batch(&header(b), control_type(b)))
                .collect();
            use BatchRole::*;
            assert_eq!(
                roles,
                vec![
                    Aborted,
                    Data,
                    Data,
                    MarkerKept,
                    MarkerKept,
                    MarkerDiscardable
                ]
            );
            // The next pass, after the data went: both markers are discardable.
            let mut t = TxnTracker::new(aborted);
            let roles: Vec<BatchRole> = [&log[2], &log[3], &log[4]]
                .iter()
                .map(|b| t.on_batch(&header(b), control_type(b)))
                .collect();
            assert_eq!(roles, vec![Data, MarkerDiscardable, MarkerDiscardable]);
        }

        #[test]
        fn a_discardable_marker_gets_a_horizon_then_goes_after_it() {
            let input = marker(9, 1, ControlType::Commit);
            let map = OffsetMap::new(OFFSET_MAP_BYTES_MIN);
            let mut out = BytesMut::new();
            let filter = |input: &[u8], now_ms, role, out: &mut BytesMut| {
                out.clear();
                filter_batch(
                    ParsedBatch::parse(input).unwrap(),
                    &map,
                    policy(now_ms),
                    role,
                    EmptyBatch::Remove,
                    &mut FilterScratch::default(),
                    DECOMPRESSED_BYTES_MAX_DEFAULT,
                    out,
                )
                .unwrap()
            };
            let kept = filter(&input, 10_000, BatchRole::MarkerKept, &mut out);
            assert_eq!(kept.verdict, BatchVerdict::Keep);
            let first = filter(&input, 10_000, BatchRole::MarkerDiscardable, &mut out);
            assert_eq!(first.verdict, BatchVerdict::Rewritten);
            assert_eq!(first.tombstone_horizon_ms, Some(10_500));
            assert!(!first.marker_removed);
            let with_horizon = out.clone();
            let h = header(&with_horizon);
            assert_eq!(delete_horizon_ms(&h), Some(10_500));
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(control_type(&with_horizon), Some(ControlType::Commit));
            assert_eq!(h.max_timestamp_ms, 1000);
            let before = filter(
                &with_horizon,
                10_499,
                BatchRole::MarkerDiscardable,
                &mut out,
            );
            assert_eq!(before.verdict, BatchVerdict::Keep);
            assert_eq!(before.tombstone_horizon_ms, Some(10_500));
            let after = filter(
                &with_horizon,
                10_500,
                BatchRole::MarkerDiscardable,
                &mut out,
            );
            assert_eq!(after.verdict, BatchVerdict::Remove);
            assert!(after.marker_removed);
        }

        /// One cleaning of the whole `log` at `now_ms`, as `Log::clean` does it; returns the
        /// cleaned log and the ABORT markers removed.
        fn pass(
            log: &[BytesMut],
            aborted: &[AbortedTxn],
            now_ms: i64,
        ) -> (Vec<BytesMut>, Vec<Offset>) {
            let mut map = OffsetMap::new(1 << 16);
            let mut t = TxnTracker::new(aborted.to_vec());
            let mut scratch = Vec::new();
            for b in log {
                let h = header(b);
                if t.on_batch(&h, control_type(b)) != BatchRole::Data {
                    continue;
                }
                let (_, records) = batch_records(b, &mut scratch, 1 << 20).unwrap();
                for r in records {
                    let r = r.unwrap();
                    let offset = Offset(h.base_offset.0 + i64::from(r.offset_delta));
                    map.insert(r.key.unwrap(), offset).unwrap();
                }
            }
            // Each producer's latest data batch stays as a header at least, as `Log::clean`
            // keeps it for the producer state.
            let mut last_of_producer = HashMap::new();
            for b in log {
                let h = header(b);
                if h.producer_id.0 >= 0 && !h.is_control() {
                    last_of_producer.insert(h.producer_id, h.base_offset);
                }
            }
            let mut t = TxnTracker::new(aborted.to_vec());
            let mut cleaned = Vec::new();
            let mut removed = Vec::new();
            let mut filter_scratch = FilterScratch::default();
            for b in log {
                let h = header(b);
                let control = control_type(b);
                let role = t.on_batch(&h, control);
                let mut out = BytesMut::new();
                let f = filter_batch(
                    ParsedBatch::parse(b).unwrap(),
                    &map,
                    TombstonePolicy {
                        now_ms,
                        delete_retention_ms: RETENTION_MS,
                    },
                    role,
                    if !h.is_control()
                        && last_of_producer.get(&h.producer_id) == Some(&h.base_offset)
                    {
                        EmptyBatch::KeepHeader
                    } else {
                        EmptyBatch::Remove
                    },
                    &mut filter_scratch,
                    DECOMPRESSED_BYTES_MAX_DEFAULT,
                    &mut out,
                )
                .unwrap();
                if f.marker_removed && control == Some(ControlType::Abort) {
                    removed.push(h.base_offset);
                }
                match f.verdict {
                    BatchVerdict::Keep => cleaned.push(b.clone()),
                    BatchVerdict::Rewritten => cleaned.push(out),
                    BatchVerdict::Remove => {}
                }
            }
            (cleaned, removed)
        }

        /// What a `read_committed` consumer makes of `log` given the aborted index (Kafka's
        /// consumer algorithm), as the latest value per key.
        fn read_committed(log: &[BytesMut], aborted: &[AbortedTxn]) -> BTreeMap<u8, Vec<u8>> {
            let mut pending: Vec<AbortedTxn> = aborted.to_vec();
            pending.sort_by_key(|t| std::cmp::Reverse(t.first_offset));
            let mut aborting = HashSet::new();
            let mut view = BTreeMap::new();
            let mut scratch = Vec::new();
            for b in log {
                let h = header(b);
                while pending
                    .last()
                    .is_some_and(|t| t.first_offset <= h.last_offset())
                {
                    aborting.insert(pending.pop().unwrap().producer_id);
                }
                if h.is_control() {
                    if control_type(b) == Some(ControlType::Abort) {
                        aborting.remove(&h.producer_id);
                    }
                    continue;
                }
                if h.is_transactional() && aborting.contains(&h.producer_id) {
                    continue;
                }
                let (_, records) = batch_records(b, &mut scratch, 1 << 20).unwrap();
                for r in records {
                    let r = r.unwrap();
                    let key = r.key.unwrap()[0];
                    match r.value {
                        Some(v) => view.insert(key, v.to_vec()),
                        None => view.remove(&key),
                    };
                }
            }
            view
        }

        /// Checks the log is one a broker could serve: every transactional data batch is
        /// followed by its producer's marker, every aborted entry names a marker still there,
        /// and a replay leaves no transaction open.
        fn check_consistent(log: &[BytesMut], aborted: &[AbortedTxn]) {
            let headers: Vec<BatchHeader> = log.iter().map(|b| header(b)).collect();
            for (i, h) in headers.iter().enumerate() {
                if h.is_transactional() && !h.is_control() {
                    assert!(
                        headers[i + 1..]
                            .iter()
                            .any(|m| m.is_control() && m.producer_id == h.producer_id),
                        "batch at {:?} lost its marker",
                        h.base_offset
                    );
                }
            }
            for t in aborted {
                assert!(
                    headers
                        .iter()
                        .any(|m| m.is_control() && m.base_offset == t.last_offset),
                    "aborted entry {t:?} outlived its marker"
                );
            }
            aborted_of(log);
        }

        #[derive(Debug, Clone)]
        enum Step {
            Data(i64, Vec<u8>),
            Plain(Vec<u8>),
            End(i64, bool),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => (1i64..4, proptest::collection::vec(0u8..10, 1..4)).prop_map(|(p, k)| Step::Data(p, k)),
                1 => proptest::collection::vec(0u8..10, 1..3).prop_map(Step::Plain),
                2 => (1i64..4, any::<bool>()).prop_map(|(p, c)| Step::End(p, c)),
            ]
        }

        fn build(steps: &[Step]) -> Vec<BytesMut> {
            let mut log: Vec<BytesMut> = Vec::new();
            let mut open = std::collections::BTreeSet::new();
            let next = |log: &[BytesMut]| log.last().map_or(0, |b| header(b).last_offset().0 + 1);
            for s in steps {
                let at = next(&log);
                match s {
                    Step::Data(p, keys) => {
                        open.insert(*p);
                        log.push(data(at, *p, true, keys));
                    }
                    Step::Plain(keys) => log.push(data(at, -1, false, keys)),
                    Step::End(p, commit) => {
                        open.remove(p);
                        let c = if *commit {
                            ControlType::Commit
                        } else {
                            ControlType::Abort
                        };
                        log.push(marker(at, *p, c));
                    }
                }
            }
            // The cleaner stops at the first unstable offset: end with every transaction decided.
            for p in open {
                let at = next(&log);
                log.push(marker(at, p, ControlType::Commit));
            }
            log
        }

        proptest! {
            #[test]
            fn repeated_cleanings_keep_the_committed_view_and_drop_markers_after_their_data(
                steps in proptest::collection::vec(step(), 1..40)
            ) {
                let mut log = build(&steps);
                let mut aborted = aborted_of(&log);
                let view = read_committed(&log, &aborted);
                for i in 1..=4 {
                    let now_ms = i * (RETENTION_MS + 1);
                    let (cleaned, removed) = pass(&log, &aborted, now_ms);
                    aborted.retain(|t| !removed.contains(&t.last_offset));
                    log = cleaned;
                    check_consistent(&log, &aborted);
                    prop_assert_eq!(&read_committed(&log, &aborted), &view, "after pass {}", i);
                    // A reader that lost the index entries of gone markers reads the same.
                    prop_assert_eq!(&read_committed(&log, &aborted_of(&log)), &view);
                }
                // Converged: no record of an aborted transaction is left, and a marker stays only
                // right after a batch of its transaction (an aborted one only as the bare header
                // its producer's state needs).
                let headers: Vec<BatchHeader> = log.iter().map(|b| header(b)).collect();
                for t in &aborted {
                    prop_assert!(headers.iter().all(|h| h.is_control()
                        || h.producer_id != t.producer_id
                        || h.base_offset < t.first_offset
                        || h.base_offset > t.last_offset
                        || h.record_count == 0));
                }
                for (i, m) in headers.iter().enumerate().filter(|(_, m)| m.is_control()) {
                    let previous = headers[..i]
                        .iter()
                        .rev()
                        .find(|h| h.producer_id == m.producer_id);
                    prop_assert!(
                        previous.is_some_and(|h| !h.is_control()),
                        "marker at {:?} outlived its data", m.base_offset
                    );
                    if control_type(&log[i]) == Some(ControlType::Abort) {
                        prop_assert_eq!(previous.map(|h| h.record_count), Some(0));
                    }
                }
            }
        }
    }
}
