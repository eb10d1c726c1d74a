//! The leader-epoch checkpoint: for each leader epoch, the first offset written in it.
//!
//! Replication will use it for leader-epoch based truncation (KIP-101): a follower asks the
//! leader where its epoch ends and truncates there. The file format is Kafka's
//! `leader-epoch-checkpoint` text format: a version line `0`, a count line, then
//! `epoch start_offset` lines.

use spate_wire::types::{LeaderEpoch, Offset};

/// Name of the checkpoint file in the partition directory.
pub const EPOCH_FILE_NAME: &str = "leader-epoch-checkpoint";

/// Most epochs remembered; leadership changes far less often than this over a log's retention.
pub const EPOCH_ENTRIES_MAX: usize = 1 << 16;

/// An epoch and the first offset of the log written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: LeaderEpoch,
    /// First offset appended in that epoch.
    pub start_offset: Offset,
}

/// The epoch entries of one partition, epochs and start offsets both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `start_offset` is the first offset of `epoch`. Returns whether anything
    /// changed (the caller then rewrites the checkpoint).
    ///
    /// # Panics
    /// If `epoch` is older than the latest (leadership epochs only grow).
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        if epoch.0 < 0 {
            return false;
        }
        if let Some(last) = self.entries.last() {
            if last.epoch == epoch {
                return false;
            }
            assert!(
                epoch > last.epoch,
                "leader epoch went backwards: {epoch} < {}",
                last.epoch
            );
        }
        // An older epoch that starts at the same offset never got a record of its own (its
        // records were truncated or retention moved its start up): the new epoch replaces it,
        // as in Kafka's epoch cache.
        while self
            .entries
            .last()
            .is_some_and(|last| last.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        if self.entries.len() == EPOCH_ENTRIES_MAX {
            self.entries.remove(0);
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops entries for offsets `>= end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Forgets offsets below `start_offset` (retention): the last entry starting before it now
    /// starts at it, older ones go.
    pub fn truncate_from_start(&mut self, start_offset: Offset) -> bool {
        let below = self
            .entries
            .partition_point(|e| e.start_offset < start_offset);
        if below == 0 {
            return false;
        }
        let keep_last = self
            .entries
            .get(below)
            .is_none_or(|e| e.start_offset > start_offset);
        if keep_last {
            self.entries[below - 1].start_offset = start_offset;
            self.entries.drain(..below - 1);
        } else {
            self.entries.drain(..below);
        }
        true
    }

    /// For OffsetsForLeaderEpoch: the largest epoch `<= epoch` and the offset where it ends
    /// (the next epoch's start, or `log_end` for the latest). `None` if `epoch` precedes all.
    pub fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1].epoch;
        let end = self
            .entries
            .get(i)
            .map_or(log_end, |next| next.start_offset);
        Some((found, end))
    }

    /// The checkpoint file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch.0, e.start_offset.0));
        }
        out.into_bytes()
    }

    /// Parses a checkpoint file; `None` if malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "0" {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        if count > EPOCH_ENTRIES_MAX {
            return None;
        }
        let mut cache = EpochCache::default();
        for _ in 0..count {
            let mut parts = lines.next()?.split(' ');
            let epoch = LeaderEpoch(parts.next()?.parse().ok()?);
            let start_offset = Offset(parts.next()?.parse().ok()?);
            if let Some(last) = cache.entries.last() {
                if epoch <= last.epoch || start_offset <= last.start_offset {
                    return None;
                }
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        Some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(e, o) in pairs {
            assert!(c.assign(LeaderEpoch(e), Offset(o)));
        }
        c
    }

    #[test]
    fn epochs_round_trip_in_kafkas_text_format() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(c.encode(), b"0\n3\n1 0\n3 10\n4 25\n".to_vec());
        assert_eq!(EpochCache::decode(&c.encode()), Some(c));
        assert_eq!(EpochCache::decode(b"0\n2\n1 0\n"), None);
        assert_eq!(EpochCache::decode(b"0\n2\n3 5\n1 9\n"), None);
    }

    #[test]
    fn end_offset_for_epoch_is_the_next_epochs_start() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(c.end_offset_for(LeaderEpoch(0), Offset(30)), None);
        assert_eq!(
            c.end_offset_for(LeaderEpoch(1), Offset(30)),
            Some((LeaderEpoch(1), Offset(10)))
        );
        assert_eq!(
            c.end_offset_for(LeaderEpoch(2), Offset(30)),
            Some((LeaderEpoch(1), Offset(10)))
        );
        assert_eq!(
            c.end_offset_for(LeaderEpoch(4), Offset(30)),
            Some((LeaderEpoch(4), Offset(30)))
        );
    }

    #[test]
    fn truncation_drops_and_clamps_entries() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_end(Offset(25)));
        assert_eq!(
            c.latest(),
            Some(EpochEntry {
                epoch: LeaderEpoch(3),
                start_offset: Offset(10)
            })
        );
        assert!(c.truncate_from_start(Offset(12)));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: LeaderEpoch(3),
                start_offset: Offset(12)
            }]
        );
        assert!(!c.truncate_from_start(Offset(12)));
        assert!(!c.assign(LeaderEpoch(3), Offset(40)));
    }
}
