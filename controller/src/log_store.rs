//! The Raft log as raft-rs reads it, and as the caller's disk must keep it.
//!
//! [`RaftLogStore`] is both: the node keeps one in memory (raft-rs's [`Storage`] reads it; the node
//! updates it the moment a ready is produced, as raft-rs requires before `advance_append_async`), and
//! the caller keeps the durable one by applying each [`PersistBatch`] in order once it is on disk. After a
//! crash, the durable one is what [`ControllerNode::new`](crate::node::ControllerNode::new) restarts from.
//! Keeping one type for both means the durable semantics (truncation on conflict, snapshot replacing the
//! log, compaction dropping a prefix) are written once and tested by the simulator.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::ids::NodeId;

/// Identifies one [`PersistBatch`]; acknowledged with
/// [`ControllerNode::on_persisted`](crate::node::ControllerNode::on_persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistToken(pub u64);

/// What the caller must make durable, in order, before acknowledging `token`. Apply it to the durable
/// [`RaftLogStore`] with [`RaftLogStore::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersistBatch {
    /// Acknowledge with this once durable.
    pub token: Option<PersistToken>,
    /// A snapshot received from the leader: it replaces the whole log.
    pub snapshot: Option<Snapshot>,
    /// Entries to append; any stored entry at or after the first one's index is replaced.
    pub entries: Vec<Entry>,
    /// The new term, vote and commit index.
    pub hard_state: Option<HardState>,
    /// This node's own snapshot of its image: keep it, and drop the entries it covers.
    pub compaction: Option<Snapshot>,
}

/// A Raft log: hard state, the latest snapshot and the entries after it. See the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftLogStore {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// `entries[i]` has index `snapshot index + 1 + i`.
    entries: Vec<Entry>,
}

impl RaftLogStore {
    /// The log of a node that never ran: empty, with the fixed voter set. Every voter starts from the
    /// same empty log, so no bootstrap entry is needed.
    pub fn new(voters: &[NodeId]) -> Self {
        let mut conf_state = ConfState::default();
        conf_state.set_voters(voters.iter().map(|v| v.to_raft_id()).collect());
        Self {
            conf_state,
            ..Self::default()
        }
    }

    /// The snapshot's index (0 if none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// The snapshot (empty if none).
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The voters' raft ids, as this log records them.
    pub fn voters(&self) -> Vec<u64> {
        self.conf_state.voters.clone()
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The entries after the snapshot.
    pub fn entries_ref(&self) -> &[Entry] {
        &self.entries
    }

    fn last(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// Applies one batch, in the order the fields are listed on [`PersistBatch`].
    ///
    /// # Panics
    ///
    /// Panics if entries leave a gap after the log or start inside the snapshot: raft-rs never asks for
    /// either, so it means the batches were applied out of order.
    pub fn apply(&mut self, batch: &PersistBatch) {
        if let Some(snapshot) = &batch.snapshot {
            self.install_snapshot(snapshot.clone());
        }
        self.append(&batch.entries);
        if let Some(hs) = &batch.hard_state {
            self.set_hard_state(hs.clone());
        }
        if let Some(snapshot) = &batch.compaction {
            self.compact(snapshot.clone());
        }
    }

    /// Whether [`RaftLogStore::apply`] accepts `batch` rather than panicking: for a caller that
    /// replays batches read back from a disk, where a gap means a damaged file, not a bug.
    pub fn can_apply(&self, batch: &PersistBatch) -> bool {
        let (mut snapshot_index, mut last) = (self.snapshot_index(), self.last());
        if let Some(snapshot) = &batch.snapshot {
            let index = snapshot.get_metadata().index;
            if index < snapshot_index {
                return false;
            }
            snapshot_index = index;
            last = index;
        }
        if let Some(first) = batch.entries.first() {
            let consecutive = batch
                .entries
                .windows(2)
                .all(|pair| pair[1].index == pair[0].index + 1);
            if first.index <= snapshot_index || first.index > last + 1 || !consecutive {
                return false;
            }
            last = first.index - 1 + batch.entries.len() as u64;
        }
        if let Some(compaction) = &batch.compaction {
            let index = compaction.get_metadata().index;
            if index > snapshot_index && index > last {
                return false;
            }
        }
        true
    }

    pub(crate) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        assert!(
            meta.index >= self.snapshot_index(),
            "snapshot {} older than {}",
            meta.index,
            self.snapshot_index()
        );
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.entries.clear();
        self.snapshot = snapshot;
    }

    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.snapshot_index(),
            "entry {} inside snapshot {}",
            first.index,
            self.snapshot_index()
        );
        assert!(
            first.index <= self.last() + 1,
            "gap: entry {} after last {}",
            first.index,
            self.last()
        );
        self.entries
            .truncate((first.index - self.snapshot_index() - 1) as usize);
        self.entries.extend_from_slice(entries);
    }

    pub(crate) fn set_hard_state(&mut self, hs: HardState) {
        // A compaction may have persisted before this (older) commit index: never go below the snapshot.
        let commit = hs.commit.max(self.snapshot_index());
        self.hard_state = hs;
        self.hard_state.commit = commit;
    }

    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        if index <= self.snapshot_index() {
            return;
        }
        assert!(
            index <= self.last(),
            "compaction {index} beyond last entry {}",
            self.last()
        );
        let drop = (index - self.snapshot_index()) as usize;
        self.entries.drain(..drop);
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.snapshot = snapshot;
    }
}

impl Storage for RaftLogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last() + 1,
            "entries up to {high} beyond last {}",
            self.last()
        );
        let base = self.snapshot_index() + 1;
        let slice = &self.entries[(low - base) as usize..(high - base) as usize];
        // raft-rs's contract: at least one entry, then as many as fit in max_size.
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut size = 0u64;
        let mut out = Vec::new();
        for e in slice {
            size += protobuf::Message::compute_size(e) as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snapshot_index();
        if idx == snap {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < snap {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - snap - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() == 0 || self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s
    }

    #[test]
    fn appends_truncate_conflicts_and_compaction_drops_a_prefix() {
        let mut store = RaftLogStore::new(&[NodeId(1)]);
        store.apply(&PersistBatch {
            entries: (1..=5).map(|i| entry(i, 1)).collect(),
            ..Default::default()
        });
        store.apply(&PersistBatch {
            entries: vec![entry(4, 2)],
            ..Default::default()
        });
        assert_eq!(store.last_index().unwrap(), 4);
        assert_eq!(store.term(4).unwrap(), 2);
        store.apply(&PersistBatch {
            compaction: Some(snapshot(2, 1)),
            ..Default::default()
        });
        assert_eq!(store.first_index().unwrap(), 3);
        assert_eq!(store.term(2).unwrap(), 1);
        assert_eq!(
            store.term(1),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(store.hard_state().commit, 2);
        let got = store
            .entries(3, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![3, 4]);
        store.apply(&PersistBatch {
            snapshot: Some(snapshot(10, 3)),
            ..Default::default()
        });
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (11, 10)
        );
        assert_eq!(store.hard_state().term, 3);
    }
}
