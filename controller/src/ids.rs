//! Newtypes for the identifiers and counters of the metadata log, so that no API takes a bare integer.

use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw value, for encoders and for Kafka wire fields.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

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

id_newtype!(
    /// A broker's id, as Kafka's `broker.id` / `node.id` (an `i32` on the wire). Controller voters are
    /// brokers too; raft-rs needs non-zero `u64` ids, see [`NodeId::to_raft_id`].
    NodeId(i32)
);
id_newtype!(
    /// One run of a broker process: a restarted broker registers with a new, larger incarnation, which
    /// fences every message of its previous life (Kafka's broker epoch / incarnation id).
    Incarnation(u64)
);
id_newtype!(
    /// A partition's leader epoch: bumped each time its leader changes (including to "no leader").
    LeaderEpoch(i32)
);
id_newtype!(
    /// A partition's epoch: bumped on every change of its leader, ISR or replicas (Kafka's partition epoch).
    PartitionEpoch(i32)
);
id_newtype!(
    /// A partition's index within its topic.
    PartitionIndex(i32)
);
id_newtype!(
    /// The position of a record in the metadata log: the Raft log index of the entry that carries it.
    /// Index 0 is "before the first entry".
    MetadataOffset(u64)
);

/// A topic's id: a 16-byte UUID, as Kafka's topic id. The controller draws it from its seeded RNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicId(pub [u8; 16]);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A reading of the caller's monotonic clock, in milliseconds. The crate never reads a clock: the caller
/// passes the time in (glommio's clock in the broker, the simulated one in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonotonicMs(pub u64);

impl MonotonicMs {
    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn since_ms(self, earlier: MonotonicMs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

id_newtype!(
    /// A Raft term of the controller quorum: at most one leader per term.
    RaftTerm(u64)
);

impl NodeId {
    /// The raft-rs peer id of this node. raft-rs reserves id 0 for "none", and Kafka allows broker id 0,
    /// so the mapping is `raft_id = node_id + 1`; negative node ids cannot be voters.
    ///
    /// # Panics
    ///
    /// Panics if the node id is negative (a programmer error: the config parser refuses those).
    pub fn to_raft_id(self) -> u64 {
        assert!(self.0 >= 0, "negative node id {} has no raft id", self.0);
        self.0 as u64 + 1
    }

    /// The node id of a raft-rs peer id, `None` for raft-rs's "none" (0) or ids out of `i32` range.
    pub fn from_raft_id(raft_id: u64) -> Option<NodeId> {
        if raft_id == 0 {
            return None;
        }
        i32::try_from(raft_id - 1).ok().map(NodeId)
    }
}

impl LeaderEpoch {
    /// The next epoch.
    ///
    /// # Panics
    ///
    /// Panics on overflow: 2^31 leader changes of one partition cannot happen in practice.
    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0.checked_add(1).expect("leader epoch overflow"))
    }
}

impl PartitionEpoch {
    /// The next epoch.
    ///
    /// # Panics
    ///
    /// Panics on overflow, as [`LeaderEpoch::next`].
    pub fn next(self) -> PartitionEpoch {
        PartitionEpoch(self.0.checked_add(1).expect("partition epoch overflow"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_node_ids_plus_one_and_back() {
        for n in [0, 1, 2, 1000, i32::MAX] {
            assert_eq!(
                NodeId::from_raft_id(NodeId(n).to_raft_id()),
                Some(NodeId(n))
            );
        }
        assert_eq!(NodeId::from_raft_id(0), None);
        assert_eq!(NodeId::from_raft_id(u64::MAX), None);
    }
}
