//! The partition table: where each topic-partition is served from, as one core sees it.
//!
//! Every core keeps its own copy (nothing is shared between cores) and changes it only when
//! the controller core tells it of a topic change, so all copies pass through the same
//! revisions in the same order. A lookup answers one of four things: the partition is led on
//! this core, on another core of this broker, by another broker, or is not known here. The
//! first two come from today's placement of partitions on cores (a hash, [`owner_core`]); the
//! third arrives with the cluster's metadata log, which will fill the table from its image
//! instead of the topic files. Each entry also carries the partition's leader epoch, which
//! Metadata and ListOffsets answers report on any core.
//!
//! Invariants: the revision grows by one with every change; a partition's route changes only
//! through [`PartitionTable::set_topic`] or [`PartitionTable::remove_topic`].

use std::collections::HashMap;

use spate_wire::types::LeaderEpoch;

/// A Kafka broker id (`node.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub i32);

/// The table's version: how many changes it has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Revision(pub u64);

/// Who leads a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// This broker, on that core.
    Core(usize),
    /// Another broker.
    // Constructed once the metadata log fills the table (cluster mode); routed already.
    #[allow(dead_code)]
    Broker(NodeId),
    /// Nobody at the moment (its only replica is down, say).
    #[allow(dead_code)]
    None,
}

/// What the table knows of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Who leads it.
    pub leader: Leader,
    /// The epoch of that leadership.
    pub leader_epoch: LeaderEpoch,
}

/// The answer to "where do I send work for this partition?", from one core's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This core leads it.
    ThisCore,
    /// Another core of this broker leads it.
    OtherCore(usize),
    /// Another broker leads it: the client gets NOT_LEADER_OR_FOLLOWER and the leader's id.
    OtherBroker(NodeId),
    /// The partition exists but nobody leads it now (its broker is fenced, or this broker's
    /// image has not caught up yet): the client gets the retriable NOT_LEADER_OR_FOLLOWER.
    NoLeader,
    /// No such topic or partition.
    NotHere,
}

/// Which core of a broker owns a partition: stable across restarts for a given core count
/// (FNV-1a of the topic name, plus the partition index so a topic's partitions spread over
/// consecutive cores).
pub fn owner_core(topic: &str, partition: i32, cores: usize) -> usize {
    assert!(cores > 0);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash.wrapping_add(partition as u64) % cores as u64) as usize
}

/// One core's table; see the module docs.
#[derive(Debug)]
pub struct PartitionTable {
    core: usize,
    revision: Revision,
    // By topic, then by partition index: a lookup by `&str` needs no allocation.
    topics: HashMap<String, Vec<Placement>>,
}

impl PartitionTable {
    /// An empty table for core `core`.
    pub fn new(core: usize) -> PartitionTable {
        PartitionTable {
            core,
            revision: Revision::default(),
            topics: HashMap::new(),
        }
    }

    /// How many changes the table has seen.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Where work for `topic`-`partition` goes.
    pub fn route(&self, topic: &str, partition: i32) -> Route {
        match self.placement(topic, partition).map(|p| p.leader) {
            Some(Leader::Core(core)) if core == self.core => Route::ThisCore,
            Some(Leader::Core(core)) => Route::OtherCore(core),
            Some(Leader::Broker(node)) => Route::OtherBroker(node),
            Some(Leader::None) => Route::NoLeader,
            None => Route::NotHere,
        }
    }

    /// What the table knows of `topic`-`partition`.
    pub fn placement(&self, topic: &str, partition: i32) -> Option<Placement> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.get(index).copied()
    }

    /// Sets every partition of `topic` (index = position in `placements`), replacing what was
    /// known of it: a new topic, a grown one, or new leaders.
    pub fn set_topic(&mut self, topic: &str, placements: Vec<Placement>) {
        assert!(!placements.is_empty(), "a topic has at least one partition");
        self.topics.insert(topic.to_owned(), placements);
        self.revision.0 += 1;
    }

    /// Forgets `topic`.
    pub fn remove_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
        self.revision.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_core(core: usize) -> Placement {
        Placement {
            leader: Leader::Core(core),
            leader_epoch: LeaderEpoch(3),
        }
    }

    #[test]
    fn routes_say_this_core_another_core_another_broker_or_not_here() {
        let mut table = PartitionTable::new(1);
        table.set_topic(
            "t",
            vec![
                on_core(1),
                on_core(0),
                Placement {
                    leader: Leader::Broker(NodeId(7)),
                    leader_epoch: LeaderEpoch(2),
                },
                Placement {
                    leader: Leader::None,
                    leader_epoch: LeaderEpoch(4),
                },
            ],
        );
        assert_eq!(table.route("t", 0), Route::ThisCore);
        assert_eq!(table.route("t", 1), Route::OtherCore(0));
        assert_eq!(table.route("t", 2), Route::OtherBroker(NodeId(7)));
        assert_eq!(table.route("t", 3), Route::NoLeader);
        assert_eq!(table.route("t", 4), Route::NotHere);
        assert_eq!(table.route("t", -1), Route::NotHere);
        assert_eq!(table.route("u", 0), Route::NotHere);
        assert_eq!(
            table.placement("t", 2).map(|p| p.leader_epoch),
            Some(LeaderEpoch(2))
        );
    }

    #[test]
    fn every_change_moves_the_revision() {
        let mut table = PartitionTable::new(0);
        assert_eq!(table.revision(), Revision(0));
        table.set_topic("t", vec![on_core(0)]);
        table.set_topic("t", vec![on_core(0), on_core(0)]);
        assert_eq!(table.route("t", 1), Route::ThisCore);
        table.remove_topic("t");
        assert_eq!(table.revision(), Revision(3));
        assert_eq!(table.route("t", 0), Route::NotHere);
    }

    #[test]
    fn ownership_is_stable_and_spreads_partitions() {
        assert_eq!(owner_core("orders", 0, 1), 0);
        let owners: Vec<usize> = (0..8).map(|p| owner_core("orders", p, 2)).collect();
        assert_eq!(owners.iter().filter(|&&c| c == 0).count(), 4);
        for p in 0..8 {
            assert_eq!(owner_core("orders", p, 4), owner_core("orders", p, 4));
            assert!(owner_core("orders", p, 3) < 3);
        }
    }
}
