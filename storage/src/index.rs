//! The sparse offset index and time index of one segment, and their checkpoint file.
//!
//! Both live in memory while the segment is open. The offset index maps the base offset of
//! roughly one batch per `index_interval_bytes` of log to its byte position; the time index maps
//! a growing max timestamp to the last offset of the batch that reached it. A checkpoint file
//! `<base>.index` holds both plus how many log bytes they cover, under a crc32 of our own, so a
//! closed segment opens without a scan and a torn or stale checkpoint is detected and rebuilt.

use spate_wire::batch::BatchHeader;
use spate_wire::types::Offset;

use crate::io::align_up;

const MAGIC: &[u8; 4] = b"SPIX";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 4 + 2 + 2 + 8 + 8 + 8 + 4 + 4;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

/// Most entries one segment's index may hold (a 4 GiB segment at one entry per 64 bytes).
pub const INDEX_ENTRIES_MAX: usize = 1 << 26;

/// Where one indexed batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Base offset of the batch.
    pub offset: Offset,
    /// Its byte position in the segment.
    pub position: u64,
}

/// The in-memory indexes of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    base: Offset,
    interval_bytes: u64,
    // (offset - base, position): u32 both, as segments are at most 4 GiB and 2^32 offsets.
    offsets: Vec<(u32, u32)>,
    // (max timestamp, last offset - base)
    times: Vec<(i64, u32)>,
    bytes_since_entry: u64,
    max_timestamp_ms: i64,
}

/// What a checkpoint file says besides the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log bytes covered: every batch in `[0, covered_bytes)` was indexed.
    pub covered_bytes: u64,
    /// Offset after the last covered batch.
    pub next_offset: Offset,
}

impl SegmentIndex {
    /// An empty index for the segment starting at `base`.
    pub fn new(base: Offset, interval_bytes: u64) -> Self {
        SegmentIndex {
            base,
            interval_bytes,
            offsets: Vec::new(),
            times: Vec::new(),
            bytes_since_entry: 0,
            max_timestamp_ms: i64::MIN,
        }
    }

    /// Largest max timestamp seen, `i64::MIN` if none.
    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms
    }

    /// Records the batch at `position`; adds entries when an interval's worth of bytes passed.
    ///
    /// # Panics
    /// If offsets or positions go backwards, or the segment outgrows 32-bit relative fields.
    pub fn on_batch(&mut self, header: &BatchHeader, position: u64) {
        let rel = self.relative(header.base_offset);
        let pos = u32::try_from(position).expect("segment position fits in u32");
        if let Some(&(last_rel, last_pos)) = self.offsets.last() {
            assert!(rel > last_rel && pos > last_pos, "index entries must grow");
        }
        let first = self.offsets.is_empty();
        if first || self.bytes_since_entry >= self.interval_bytes {
            assert!(self.offsets.len() < INDEX_ENTRIES_MAX);
            self.offsets.push((rel, pos));
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.total_bytes() as u64;
        if header.max_timestamp_ms > self.max_timestamp_ms {
            self.max_timestamp_ms = header.max_timestamp_ms;
            let last_rel = self.relative(header.last_offset());
            // One time entry per offset entry at most, so the time index stays as sparse.
            let due = self.times.len() < self.offsets.len();
            match self.times.last_mut() {
                Some(last) if !due => *last = (header.max_timestamp_ms, last_rel),
                _ => self.times.push((header.max_timestamp_ms, last_rel)),
            }
        }
    }

    fn relative(&self, offset: Offset) -> u32 {
        u32::try_from(offset.0 - self.base.0).expect("offset within 2^32 of the segment base")
    }

    /// The indexed batch with the largest base offset `<= offset` (the segment start if none).
    pub fn lookup(&self, offset: Offset) -> OffsetEntry {
        let rel = offset.0 - self.base.0;
        let i = self.offsets.partition_point(|&(r, _)| i64::from(r) <= rel);
        match i {
            0 => OffsetEntry {
                offset: self.base,
                position: 0,
            },
            _ => self.entry(i - 1),
        }
    }

    fn entry(&self, i: usize) -> OffsetEntry {
        let (rel, pos) = self.offsets[i];
        OffsetEntry {
            offset: Offset(self.base.0 + i64::from(rel)),
            position: u64::from(pos),
        }
    }

    /// The indexed batch with the largest position `<= position`, if any above `after`.
    pub fn entry_at_or_before(&self, position: u64, after: u64) -> Option<OffsetEntry> {
        let i = self
            .offsets
            .partition_point(|&(_, p)| u64::from(p) <= position);
        (i > 0)
            .then(|| self.entry(i - 1))
            .filter(|e| e.position > after)
    }

    /// Where to start scanning for the first batch with max timestamp `>= timestamp_ms`:
    /// the batch after the last time entry below it (the segment start if none).
    pub fn lookup_time(&self, timestamp_ms: i64) -> OffsetEntry {
        let i = self.times.partition_point(|&(ts, _)| ts < timestamp_ms);
        match i {
            0 => OffsetEntry {
                offset: self.base,
                position: 0,
            },
            _ => self.lookup(Offset(self.base.0 + i64::from(self.times[i - 1].1) + 1)),
        }
    }

    /// Serializes the entries that fall inside `checkpoint.covered_bytes` with the checkpoint
    /// header, padded to a block multiple. (The active segment is checkpointed while appends
    /// continue past the covered prefix.)
    pub fn encode(&self, checkpoint: Checkpoint) -> Vec<u8> {
        let next_rel = checkpoint.next_offset.0 - self.base.0;
        let offsets: Vec<(u32, u32)> = self
            .offsets
            .iter()
            .copied()
            .filter(|&(_, pos)| u64::from(pos) < checkpoint.covered_bytes)
            .collect();
        let times: Vec<(i64, u32)> = self
            .times
            .iter()
            .copied()
            .filter(|&(_, rel)| i64::from(rel) < next_rel)
            .collect();
        let body =
            HEADER_BYTES + offsets.len() * OFFSET_ENTRY_BYTES + times.len() * TIME_ENTRY_BYTES;
        let mut out = Vec::with_capacity(align_up(body as u64 + 4) as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&checkpoint.covered_bytes.to_le_bytes());
        out.extend_from_slice(&checkpoint.next_offset.0.to_le_bytes());
        // The max over the whole segment so far: possibly above the covered prefix's, which only
        // keeps a segment longer under retention and costs a lookup a useless scan, never a miss.
        out.extend_from_slice(&self.max_timestamp_ms.to_le_bytes());
        out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
        out.extend_from_slice(&(times.len() as u32).to_le_bytes());
        for &(rel, pos) in &offsets {
            out.extend_from_slice(&rel.to_le_bytes());
            out.extend_from_slice(&pos.to_le_bytes());
        }
        for &(ts, rel) in &times {
            out.extend_from_slice(&ts.to_le_bytes());
            out.extend_from_slice(&rel.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(align_up(out.len() as u64) as usize, 0);
        out
    }

    /// Parses a checkpoint file. `None` if it is torn, corrupt, or for another segment.
    pub fn decode(bytes: &[u8], base: Offset, interval_bytes: u64) -> Option<(Self, Checkpoint)> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC || r.u16()? != VERSION {
            return None;
        }
        r.u16()?;
        let covered_bytes = r.u64()?;
        let next_offset = Offset(r.u64()? as i64);
        let max_timestamp_ms = r.u64()? as i64;
        let offsets_len = r.u32()? as usize;
        let times_len = r.u32()? as usize;
        if offsets_len > INDEX_ENTRIES_MAX || times_len > offsets_len {
            return None;
        }
        let mut index = SegmentIndex::new(base, interval_bytes);
        index.offsets.reserve(offsets_len);
        for _ in 0..offsets_len {
            index.offsets.push((r.u32()?, r.u32()?));
        }
        for _ in 0..times_len {
            index.times.push((r.u64()? as i64, r.u32()?));
        }
        let body_end = r.pos;
        let crc = r.u32()?;
        if crc32fast::hash(&bytes[..body_end]) != crc || next_offset < base {
            return None;
        }
        let sorted = index
            .offsets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let in_range = index
            .offsets
            .last()
            .is_none_or(|&(_, pos)| u64::from(pos) < covered_bytes);
        if !sorted || !in_range {
            return None;
        }
        index.max_timestamp_ms = max_timestamp_ms;
        // Entries restart their interval count at the end of the covered range; close enough.
        index.bytes_since_entry = index.interval_bytes;
        Some((
            index,
            Checkpoint {
                covered_bytes,
                next_offset,
            },
        ))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base: i64, delta: i32, len: i32, ts: i64) -> BatchHeader {
        let mut buf = vec![0u8; 61];
        buf[0..8].copy_from_slice(&base.to_be_bytes());
        buf[8..12].copy_from_slice(&len.to_be_bytes());
        buf[16] = 2;
        buf[23..27].copy_from_slice(&delta.to_be_bytes());
        buf[35..43].copy_from_slice(&ts.to_be_bytes());
        buf[57..61].copy_from_slice(&(delta + 1).to_be_bytes());
        BatchHeader::parse(&buf).expect("valid test header")
    }

    #[test]
    fn lookup_finds_the_last_entry_at_or_before_the_offset() {
        let mut index = SegmentIndex::new(Offset(100), 4096);
        let mut pos = 0;
        for i in 0..10 {
            // 3000-byte batches of 5 records: an entry every second batch.
            index.on_batch(&header(100 + i * 5, 4, 2988, 1000 + i), pos);
            pos += 3000;
        }
        assert_eq!(index.offsets.len(), 5);
        assert_eq!(index.lookup(Offset(99)).position, 0);
        assert_eq!(index.lookup(Offset(109)).position, 0);
        assert_eq!(
            index.lookup(Offset(110)),
            OffsetEntry {
                offset: Offset(110),
                position: 6000
            }
        );
        assert_eq!(index.lookup(Offset(149)).position, 24000);
        assert_eq!(index.lookup_time(0).position, 0);
        assert_eq!(index.max_timestamp_ms(), 1009);
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_a_flipped_bit() {
        let mut index = SegmentIndex::new(Offset(7), 1);
        for i in 0..50 {
            index.on_batch(&header(7 + i, 0, 100, i), i as u64 * 112);
        }
        let cp = Checkpoint {
            covered_bytes: 50 * 112,
            next_offset: Offset(57),
        };
        let bytes = index.encode(cp);
        assert_eq!(bytes.len() % 4096, 0);
        let (back, back_cp) = SegmentIndex::decode(&bytes, Offset(7), 1).expect("decodes");
        assert_eq!(back_cp, cp);
        assert_eq!(back.offsets, index.offsets);
        assert_eq!(back.times, index.times);
        for bit in [0usize, 100, 8 * 40 + 3, 8 * 300] {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentIndex::decode(&bad, Offset(7), 1).is_none(),
                "bit {bit}"
            );
        }
        assert!(SegmentIndex::decode(&bytes[..100], Offset(7), 1).is_none());
    }
}
