//! Choosing a partition for a record, the way Kafka's Java producer does.
//!
//! Keyed records go to `toPositive(murmur2(key)) % partitions`, so a key lands on the same
//! partition as with the Java client and librdkafka's `murmur2_random` partitioner. Records
//! without a key stick to one partition until the producer closes a batch for it, then move on
//! (KIP-480 sticky partitioning): batches fill up instead of being spread one record each.

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), as a signed 32-bit value.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h: u32 = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`.
///
/// # Panics
/// If `partitions` is not positive.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    // Java's `toPositive` masks the sign bit rather than taking the absolute value.
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Sticky partition choice for records without a key.
///
/// Deterministic (a counter, not a random number) so tests and benchmarks are repeatable;
/// the Java client picks randomly, which matters only for spreading many producers.
#[derive(Debug, Clone, Default)]
pub struct StickyPartitioner {
    current: Option<i32>,
    next: u32,
}

impl StickyPartitioner {
    /// The partition for the next keyless record.
    ///
    /// # Panics
    /// If `partitions` is not positive.
    pub fn partition(&mut self, partitions: i32) -> i32 {
        assert!(partitions > 0, "a topic has at least one partition");
        match self.current {
            Some(p) if p < partitions => p,
            _ => self.advance(partitions),
        }
    }

    /// Moves to the next partition; the producer calls this when it closes the current one's
    /// batch.
    pub fn advance(&mut self, partitions: i32) -> i32 {
        assert!(partitions > 0, "a topic has at least one partition");
        let p = (self.next % partitions as u32) as i32;
        self.next = self.next.wrapping_add(1);
        self.current = Some(p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        // Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_for_key_masks_the_sign_bit() {
        // -790332482 & 0x7fffffff = 1357151166; % 50 = 16 (as the Java client computes).
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        assert_eq!(partition_for_key(b"foobar", 1), 0);
        for p in 1..20 {
            assert!((0..p).contains(&partition_for_key(b"21", p)));
        }
    }

    #[test]
    fn sticky_partitioner_stays_until_advanced() {
        let mut s = StickyPartitioner::default();
        let first = s.partition(3);
        assert_eq!(s.partition(3), first);
        assert_eq!(s.partition(3), first);
        let second = s.advance(3);
        assert_ne!(second, first);
        assert_eq!(s.partition(3), second);
        // Fewer partitions than the sticky choice: re-pick within range.
        let mut s = StickyPartitioner::default();
        s.advance(8);
        s.advance(8);
        s.advance(8);
        assert!(s.partition(2) < 2);
    }
}
