//! Newtypes for the integers that name things in the Kafka protocol.
//!
//! Offsets, epochs and ids are all plain integers on the wire; mixing them up is a classic source
//! of silent bugs (passing a leader epoch where an offset is expected compiles fine with `i64`s).
//! The field is public because these are pure values with no invariant beyond their range.

use core::fmt;

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<$inner> for $name {
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }

        impl From<$name> for $inner {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

newtype!(
    /// A position in a partition's log: the offset of one record.
    Offset(i64)
);
newtype!(
    /// The epoch of a partition's leadership; grows by one each time leadership changes.
    LeaderEpoch(i32)
);
newtype!(
    /// A partition's index within its topic.
    PartitionIndex(i32)
);
newtype!(
    /// A producer id, as handed out by InitProducerId; -1 means "no producer id".
    ProducerId(i64)
);
newtype!(
    /// A producer's epoch; bumped when a producer with the same transactional id restarts.
    ProducerEpoch(i16)
);

impl Offset {
    /// The offset right after this one.
    ///
    /// # Panics
    /// If the offset is `i64::MAX` (a log can never get there; reaching it is a bug).
    #[must_use]
    pub fn next(self) -> Offset {
        Offset(self.0.checked_add(1).expect("offset overflow"))
    }
}

impl LeaderEpoch {
    /// "No epoch": what producers put in `partitionLeaderEpoch` and what old requests carry.
    pub const NONE: LeaderEpoch = LeaderEpoch(-1);
}

impl ProducerId {
    /// "No producer id": the value non-idempotent producers write in batch headers.
    pub const NONE: ProducerId = ProducerId(-1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_next_increments_by_one() {
        assert_eq!(Offset(41).next(), Offset(42));
    }

    #[test]
    fn newtypes_display_as_their_number() {
        assert_eq!(Offset(7).to_string(), "7");
        assert_eq!(LeaderEpoch::NONE.to_string(), "-1");
    }
}
