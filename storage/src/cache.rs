//! The tail cache: the most recent batches in memory, for tailing readers.
//!
//! Direct-I/O writes bypass the page cache, so without this every consumer read at the tail
//! would go to the disk. The cache also holds every batch still in the write-behind buffer (it
//! only evicts batches already written), which is what lets a reader never see unwritten bytes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use spate_wire::batch::BATCH_HEADER_BYTES;
use spate_wire::types::Offset;

/// A batch in memory as two pieces, so an append never copies the producer's bytes: the
/// header as the log patched it (base offset and leader epoch assigned) and the rest exactly as
/// the producer sent it. Both share their allocations with other batches (`Bytes` slices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchBytes {
    /// The first [`BATCH_HEADER_BYTES`] bytes, as stored on disk.
    pub header: Bytes,
    /// The records section, as produced.
    pub records: Bytes,
}

impl BatchBytes {
    /// Size of the batch.
    pub fn len(&self) -> usize {
        self.header.len() + self.records.len()
    }

    /// Never empty: a batch has a header. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch as one contiguous buffer. Copies: for tests and rare paths, not for serving.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.records);
        out.freeze()
    }
}

/// Bytes of patched headers carved from one allocation: headers are tiny and one allocation per
/// batch would dominate small-batch appends.
const HEADER_ARENA_BYTES: usize = 64 * BATCH_HEADER_BYTES;

/// Hands out patched batch headers as `Bytes` carved from shared chunks.
#[derive(Debug, Default)]
pub struct HeaderArena {
    chunk: BytesMut,
}

impl HeaderArena {
    /// Copies `header` into the arena and returns it as its own `Bytes`.
    pub fn carve(&mut self, header: &[u8; BATCH_HEADER_BYTES]) -> Bytes {
        if self.chunk.capacity() - self.chunk.len() < BATCH_HEADER_BYTES {
            // The old chunk lives on in the headers carved from it.
            self.chunk = BytesMut::with_capacity(HEADER_ARENA_BYTES);
        }
        self.chunk.extend_from_slice(header);
        self.chunk.split().freeze()
    }
}

/// One cached batch.
#[derive(Debug, Clone)]
pub struct CachedBatch {
    /// Its base offset.
    pub base: Offset,
    /// Its last offset.
    pub last: Offset,
    /// Base offset of the segment holding it.
    pub segment: Offset,
    /// Its position in that segment.
    pub position: u64,
    /// The batch as stored.
    pub bytes: BatchBytes,
}

/// Recent batches, oldest first, bounded by `bytes_max` plus the unwritten ones, and evicted
/// further while the core's caches together are over their budget (`crate::pool`).
#[derive(Debug)]
pub struct TailCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
    bytes_max: usize,
}

impl TailCache {
    /// An empty cache.
    pub fn new(bytes_max: usize) -> Self {
        TailCache {
            batches: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the newest batch.
    ///
    /// # Panics
    /// If it does not directly follow the previous newest batch.
    pub fn push(&mut self, batch: CachedBatch) {
        if let Some(last) = self.batches.back() {
            assert_eq!(last.last.next(), batch.base, "cached batches must be dense");
        }
        self.bytes += batch.bytes.len();
        crate::pool::cache_grew(batch.bytes.len());
        self.batches.push_back(batch);
    }

    fn shrink(&mut self, bytes: usize) {
        self.bytes -= bytes;
        crate::pool::cache_shrank(bytes);
    }

    /// Evicts the oldest batches while over budget (its own, or the core's for all caches), but
    /// only those `is_written` says are on disk.
    pub fn evict(&mut self, is_written: impl Fn(&CachedBatch) -> bool) {
        while self.bytes > self.bytes_max || (self.bytes > 0 && crate::pool::cache_over_budget()) {
            match self.batches.front() {
                Some(front) if is_written(front) => {
                    let len = front.bytes.len();
                    self.batches.pop_front();
                    self.shrink(len);
                }
                _ => break,
            }
        }
    }

    /// Index of the cached batch containing `offset`, if cached.
    pub fn find(&self, offset: Offset) -> Option<usize> {
        let front = self.batches.front()?;
        if offset < front.base {
            return None;
        }
        let i = self.batches.partition_point(|b| b.last < offset);
        (i < self.batches.len()).then_some(i)
    }

    /// The batch at index `i` (from [`TailCache::find`]).
    pub fn get(&self, i: usize) -> Option<&CachedBatch> {
        self.batches.get(i)
    }

    /// Drops batches at or after `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, offset: Offset) {
        while self.batches.back().is_some_and(|b| b.base >= offset) {
            if let Some(b) = self.batches.pop_back() {
                self.shrink(b.bytes.len());
            }
        }
    }

    /// Drops batches before `offset` (retention removed them).
    pub fn drop_before(&mut self, offset: Offset) {
        while self.batches.front().is_some_and(|b| b.base < offset) {
            if let Some(b) = self.batches.pop_front() {
                self.shrink(b.bytes.len());
            }
        }
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        crate::pool::cache_shrank(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, last: i64, len: usize) -> CachedBatch {
        CachedBatch {
            base: Offset(base),
            last: Offset(last),
            segment: Offset(0),
            position: base as u64 * 100,
            bytes: BatchBytes {
                header: Bytes::from(vec![base as u8; BATCH_HEADER_BYTES]),
                records: Bytes::from(vec![base as u8; len - BATCH_HEADER_BYTES]),
            },
        }
    }

    #[test]
    fn arena_headers_are_independent_copies() {
        let mut arena = HeaderArena::default();
        let carved: Vec<Bytes> = (0..200u8)
            .map(|i| arena.carve(&[i; BATCH_HEADER_BYTES]))
            .collect();
        for (i, header) in carved.iter().enumerate() {
            assert_eq!(header.len(), BATCH_HEADER_BYTES);
            assert!(header.iter().all(|&b| b == i as u8));
        }
    }

    #[test]
    fn cache_finds_the_containing_batch_and_evicts_only_written_ones() {
        let mut cache = TailCache::new(250);
        cache.push(batch(0, 4, 100));
        cache.push(batch(5, 9, 100));
        cache.push(batch(10, 10, 100));
        assert_eq!(cache.find(Offset(7)), Some(1));
        assert_eq!(cache.find(Offset(10)), Some(2));
        assert_eq!(cache.find(Offset(11)), None);
        cache.evict(|_| false);
        assert_eq!(cache.bytes(), 300);
        cache.evict(|b| b.base < Offset(5));
        assert_eq!(cache.bytes(), 200);
        assert_eq!(cache.find(Offset(3)), None);
        cache.truncate_from(Offset(10));
        assert_eq!(cache.bytes(), 100);
        assert_eq!(cache.find(Offset(9)), Some(0));
    }
}
