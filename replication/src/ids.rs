//! Newtypes for the integers replication talks about, so that no API takes a bare integer.
//!
//! These mirror `spate_wire::types::{Offset, LeaderEpoch}` and `spate_controller::ids::{NodeId,
//! PartitionEpoch}` field for field (a public `.0` of the same width), so the broker converts with
//! `Offset(x.0)`. They are defined here rather than imported because this crate is a leaf: depending on
//! `spate-wire` would pull the Kafka codec and the compression C libraries into every build of a crate
//! that only needs four integers.

use std::fmt;

macro_rules! newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }
    };
}

newtype!(
    /// A broker's id (Kafka's `node.id`).
    NodeId(i32)
);
newtype!(
    /// A position in a partition's log. As an *end* offset it is the offset the next record gets.
    Offset(i64)
);
newtype!(
    /// A partition's leader epoch: the controller bumps it on every leader change. At most one leader
    /// per epoch, and every batch carries the epoch of the leader that first appended it.
    LeaderEpoch(i32)
);
newtype!(
    /// A partition's epoch: the controller bumps it on every change of leader, ISR or replicas. It is the
    /// version AlterPartition requests are checked against (KIP-497's `partitionEpoch`).
    PartitionEpoch(i32)
);
newtype!(
    /// The caller's handle for one acks=all produce waiting for the high watermark.
    WaiterId(u64)
);
newtype!(
    /// Matches a follower's fetch response to the request it sent, so a late or duplicated response to
    /// an older request is recognised and dropped.
    CorrelationId(u64)
);

impl Offset {
    /// The offset right after this one.
    ///
    /// # Panics
    /// If the offset is `i64::MAX` (a log can never get there).
    #[must_use]
    pub fn next(self) -> Offset {
        Offset(self.0.checked_add(1).expect("offset overflow"))
    }
}

impl LeaderEpoch {
    /// The next epoch (what the controller gives a new leader).
    ///
    /// # Panics
    /// On overflow: 2^31 leader changes of one partition cannot happen.
    #[must_use]
    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0.checked_add(1).expect("leader epoch overflow"))
    }
}

impl PartitionEpoch {
    /// The next epoch.
    ///
    /// # Panics
    /// On overflow, as [`LeaderEpoch::next`].
    #[must_use]
    pub fn next(self) -> PartitionEpoch {
        PartitionEpoch(self.0.checked_add(1).expect("partition epoch overflow"))
    }
}

/// A reading of the caller's monotonic clock in milliseconds. The crate never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NowMs(pub u64);

impl NowMs {
    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn since_ms(self, earlier: NowMs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
