//! The leader epoch history of one replica's log: for each epoch that has records (and the current
//! leader's epoch, which may not have any yet), the offset of its first record. Kafka keeps the same
//! thing in `leader-epoch-checkpoint` (`LeaderEpochFileCache`); KIP-101 and KIP-279 use it to find where
//! two logs diverge without trusting the high watermark.
//!
//! The core keeps its own copy, in step with the log: it learns the history at start, then changes it
//! only through the appends and truncations it asks for or is told about, so it never has to read the
//! log.

use crate::ids::{LeaderEpoch, Offset};

/// Epochs kept before the oldest is forgotten. Each leader change adds one; forgetting the oldest only
/// makes a lookup of a forgotten epoch answer "the first known epoch's start", which truncates a
/// follower further than needed (safe) but never less.
pub const EPOCH_ENTRIES_MAX: usize = 4096;

/// `(epoch, start offset)` pairs, epochs strictly increasing, start offsets non-decreasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl EpochHistory {
    /// An empty history (an empty log).
    pub fn new() -> Self {
        Self::default()
    }

    /// The history of a log recovered from disk, as `(epoch, start offset)` pairs in log order.
    ///
    /// # Errors
    /// [`crate::ReplicationError::InvalidEpochHistory`] if the epochs do not strictly increase, a
    /// start offset goes backwards or is negative, or an epoch is negative.
    pub fn from_entries(
        entries: Vec<(LeaderEpoch, Offset)>,
    ) -> Result<Self, crate::ReplicationError> {
        let ordered = entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let in_range = entries.iter().all(|(e, o)| e.0 >= 0 && o.0 >= 0);
        if !ordered || !in_range || entries.len() > EPOCH_ENTRIES_MAX {
            return Err(crate::ReplicationError::InvalidEpochHistory);
        }
        Ok(Self { entries })
    }

    /// The pairs, oldest first.
    pub fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    /// The latest epoch, `None` for an empty log.
    pub fn latest(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// The start offset of `epoch`, if it is in the history.
    pub fn start_of(&self, epoch: LeaderEpoch) -> Option<Offset> {
        self.entries
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, o)| *o)
    }

    /// Records that `epoch` starts at `start`: a leader taking over at its log end, or a follower
    /// appending the first batch of a newer epoch. An epoch already latest is left alone. An older
    /// entry that starts at `start` had no records and is replaced (Kafka's `assign` does the same).
    ///
    /// # Panics
    /// If `epoch` is older than the latest epoch or `start` is before the latest start: the log only
    /// grows in epoch order, so that is a bug in the caller.
    pub fn assign(&mut self, epoch: LeaderEpoch, start: Offset) {
        if let Some(&(latest, latest_start)) = self.entries.last() {
            if latest == epoch {
                return;
            }
            assert!(epoch > latest, "epoch {epoch} assigned after {latest}");
            assert!(
                start >= latest_start,
                "epoch {epoch} starts at {start}, before {latest} at {latest_start}"
            );
        }
        while self.entries.last().is_some_and(|(_, s)| *s == start) {
            self.entries.pop();
        }
        self.entries.push((epoch, start));
        if self.entries.len() > EPOCH_ENTRIES_MAX {
            self.entries.remove(0);
        }
    }

    /// Forgets epochs that start at or after `end`: the log was truncated to `end`.
    pub fn truncate_to(&mut self, end: Offset) {
        while self.entries.last().is_some_and(|(_, s)| *s >= end) {
            self.entries.pop();
        }
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `epoch` and the offset where it ends (the
    /// next epoch's start, or `log_end` for the latest epoch). `None` when the answer is undefined
    /// (`epoch` is newer than every known epoch but not the latest, or the history is empty). An
    /// `epoch` older than every known epoch gives `(epoch, first start)`: nothing of it is here.
    pub fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.latest()?;
        if epoch == latest {
            return Some((epoch, log_end));
        }
        // First entry with an epoch above `epoch`.
        let higher = self.entries.iter().position(|(e, _)| *e > epoch)?;
        let end = self.entries[higher].1;
        if higher == 0 {
            return Some((epoch, end));
        }
        Some((self.entries[higher - 1].0, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(i32, i64)]) -> EpochHistory {
        EpochHistory::from_entries(
            pairs
                .iter()
                .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn end_offset_for_follows_kafkas_rules() {
        let hist = h(&[(1, 0), (3, 10), (5, 20)]);
        let end = Offset(25);
        assert_eq!(
            hist.end_offset_for(LeaderEpoch(5), end),
            Some((LeaderEpoch(5), end))
        );
        assert_eq!(
            hist.end_offset_for(LeaderEpoch(4), end),
            Some((LeaderEpoch(3), Offset(20)))
        );
        assert_eq!(
            hist.end_offset_for(LeaderEpoch(3), end),
            Some((LeaderEpoch(3), Offset(20)))
        );
        assert_eq!(
            hist.end_offset_for(LeaderEpoch(2), end),
            Some((LeaderEpoch(1), Offset(10)))
        );
        assert_eq!(
            hist.end_offset_for(LeaderEpoch(0), end),
            Some((LeaderEpoch(0), Offset(0)))
        );
        assert_eq!(hist.end_offset_for(LeaderEpoch(6), end), None);
        assert_eq!(
            EpochHistory::new().end_offset_for(LeaderEpoch(1), end),
            None
        );
    }

    #[test]
    fn an_empty_epoch_is_replaced_and_truncation_forgets_later_epochs() {
        let mut hist = h(&[(1, 0), (2, 5)]);
        hist.assign(LeaderEpoch(4), Offset(5));
        assert_eq!(hist, h(&[(1, 0), (4, 5)]));
        hist.assign(LeaderEpoch(4), Offset(9));
        assert_eq!(hist, h(&[(1, 0), (4, 5)]));
        hist.truncate_to(Offset(5));
        assert_eq!(hist, h(&[(1, 0)]));
        hist.truncate_to(Offset(0));
        assert_eq!(hist.latest(), None);
    }

    #[test]
    fn an_unordered_history_is_refused() {
        let bad = vec![(LeaderEpoch(2), Offset(0)), (LeaderEpoch(1), Offset(3))];
        assert!(EpochHistory::from_entries(bad).is_err());
    }
}
