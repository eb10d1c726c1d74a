//! Consumer groups (the classic protocol) and committed offsets.
//!
//! A group is coordinated by the core that owns its partition of `__consumer_offsets`
//! ([`partition_for`], Kafka's placement), so its membership and its offsets live on one core
//! and need no locks. `state` is the sans-I/O membership state machine.

pub mod state;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The `__consumer_offsets` partition of a group: Kafka's `abs(groupId.hashCode) % partitions`,
/// with Java's `String.hashCode` over UTF-16 code units, so a group lands on the same partition
/// number as in Kafka.
///
/// # Panics
/// If `partitions` is not positive.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_on_kafkas_partitions() {
        // "test".hashCode() == 3556498 in Java.
        assert_eq!(partition_for("test", 50), 3_556_498 % 50);
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash: "my-group-é" mixes in a non-ASCII code unit.
        let p = partition_for("consumer-group-42", 50);
        assert!((0..50).contains(&p));
    }
}
