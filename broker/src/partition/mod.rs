//! A partition this core owns: its log, the checks a produced batch must pass, reads, and the
//! state the maintenance task keeps for it.
//!
//! A partition knows nothing of cores, connections or other partitions: the core finds it
//! (`Core::partition`) and hands it an op; everything here takes a `&Partition` and the op.
//! Replication will add the replica state (leader or follower, the followers' positions) here.
//!
//! Invariants: exactly one core opens a partition's log; every batch appended for a client was
//! checked once, by [`check_produce`], and reaches the log as a [`CheckedBatch`] (the CRC is
//! not computed a second time on the way to the disk).

mod delete;
mod produce;
mod read;
pub mod replica;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use spate_storage::io::glommio::GlommioDisk;
use spate_storage::io::Disk;
use spate_storage::sync::Notify;
use spate_storage::{CleanerState, Log};
use spate_wire::batch::CheckedBatch;
use spate_wire::types::{LeaderEpoch, Offset};
use spate_wire::ErrorCode;
use tracing::error;

pub use crate::metadata::topics::Visibility;
pub use produce::ProduceRefused;

/// The leader epoch of every partition of a single broker, which never changes leader. The
/// metadata log (cluster mode) will hand each partition its own.
pub const SINGLE_NODE_LEADER_EPOCH: LeaderEpoch = LeaderEpoch(0);

/// Who may append to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// Producers (any Kafka client).
    Clients,
    /// Only the broker's group coordinator (`__consumer_offsets`): a client's records there
    /// would be read back as offsets and group state, so Kafka refuses them and so does Spate.
    CoordinatorOnly,
}

/// How the broker changes a producer's batches before storing them: Kafka's
/// `message.timestamp.type=LogAppendTime` and `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Stamp each batch with the append time.
    pub log_append_time: bool,
    /// Store batches in this codec (recompressing those that differ), or as sent.
    pub codec: Option<spate_wire::batch::Compression>,
}

impl Rewrite {
    /// Batches are stored exactly as produced.
    pub const NONE: Rewrite = Rewrite {
        log_append_time: false,
        codec: None,
    };
}

/// Whether the topic's records must carry keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compaction {
    /// `cleanup.policy` includes `compact`: keyless records are refused, the cleaner visits.
    Compacted,
    /// Time and size retention only.
    NotCompacted,
}

/// Who reads a partition, and so how far it may read and which notify says there is more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Consumers: below the high watermark.
    Consumer,
    /// Followers fetching from this leader: below the log end.
    Follower,
}

/// A partition this core owns.
pub struct Partition<D: Disk = GlommioDisk> {
    /// The commit log.
    pub log: Log<D>,
    /// Woken when the high watermark (what consumers may read) advances, for long-polling
    /// fetches. The high watermark is the durable offset under group commit, so it moves when a
    /// flush completes, not at append.
    pub appended: Notify,
    /// The high watermark consumers were last woken for.
    pub notified_hw: Cell<Offset>,
    /// What the partition takes from its topic's configs; replaced whole when they change
    /// (`set_settings`), read by copy, so an op sees one consistent set.
    settings: Cell<Settings>,
    /// When the maintenance task or the commit task last flushed this partition (group
    /// commit timing).
    pub flushed_at: Cell<Instant>,
    /// Whether a commit task (`request_commit`) is running for this partition: at most one is.
    committing: Cell<bool>,
    /// What consumers could already read when `spate.visibility` went from `appended` to
    /// `durable`: the high watermark stays at least this, so it never goes back while the
    /// syncs catch up with what was visible.
    visible_floor: Cell<Offset>,
    /// The cleaner's memory of this partition (first dirty offset, tombstone horizon).
    pub cleaner: Cell<CleanerState>,
    /// The epoch this broker leads the partition in: written into every batch it appends and
    /// recorded in the log's epoch cache.
    leader_epoch: Cell<LeaderEpoch>,
    /// Cluster mode: the partition's replication state (leader or follower, high watermark,
    /// acks=all waits). `None` on a single broker, whose high watermark is the log's durable
    /// offset.
    pub replica: Option<replica::ReplicaSlot>,
    /// Woken at every leader append: followers' fetches long-poll on it.
    pub grew: Notify,
    /// The first offset a read found hidden by a damaged batch (a failed CRC on disk), until
    /// the replication loop repairs its segment from another replica (cluster mode).
    pub damaged: Cell<Option<Offset>>,
}

/// What a partition takes from its topic's configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Largest batch accepted (`max.message.bytes`).
    pub batch_bytes_max: usize,
    /// Whether records need keys and the cleaner visits.
    pub compaction: Compaction,
    /// Who may append.
    pub writers: Writers,
    /// `min.insync.replicas`; on a single broker the in-sync set is this broker alone.
    pub min_insync_replicas: u32,
    /// What the broker changes in produced batches.
    pub rewrite: Rewrite,
    /// `spate.visibility`: what consumers may read of a partition this broker holds alone.
    pub visibility: Visibility,
}

impl Settings {
    /// The settings of a partition of `meta`.
    pub fn of(meta: &crate::metadata::topics::TopicMeta) -> Settings {
        let config = &meta.config;
        Settings {
            batch_bytes_max: config.max_message_bytes,
            compaction: if config.cleanup_policy.compacts() {
                Compaction::Compacted
            } else {
                Compaction::NotCompacted
            },
            writers: if meta.name == crate::group::OFFSETS_TOPIC
                || meta.name == crate::txn::TXN_TOPIC
            {
                Writers::CoordinatorOnly
            } else {
                Writers::Clients
            },
            min_insync_replicas: config.min_insync_replicas,
            rewrite: Rewrite {
                log_append_time: config.timestamp_type
                    == crate::metadata::topics::TimestampKind::LogAppendTime,
                codec: config.compression.codec(),
            },
            visibility: config.visibility,
        }
    }
}

impl<D: Disk> Partition<D> {
    /// A partition around an opened log.
    pub fn new(
        log: Log<D>,
        settings: Settings,
        cleaner: CleanerState,
        leader_epoch: LeaderEpoch,
    ) -> Partition<D> {
        assert!(leader_epoch.0 >= 0);
        assert!(settings.min_insync_replicas >= 1);
        Partition {
            log,
            appended: Notify::default(),
            notified_hw: Cell::new(Offset(-1)),
            settings: Cell::new(settings),
            flushed_at: Cell::new(Instant::now()),
            committing: Cell::new(false),
            visible_floor: Cell::new(Offset(0)),
            cleaner: Cell::new(cleaner),
            leader_epoch: Cell::new(leader_epoch),
            replica: None,
            grew: Notify::default(),
            damaged: Cell::new(None),
        }
    }

    /// What the partition takes from its topic's configs now.
    pub fn settings(&self) -> Settings {
        self.settings.get()
    }

    /// Takes the settings of a changed topic config; the next op sees them (an op in flight
    /// keeps the set it read). Who may write never changes.
    ///
    /// # Panics
    /// If `settings` breaks [`Partition::new`]'s rules or changes the writers.
    pub fn set_settings(&self, settings: Settings) {
        assert!(settings.min_insync_replicas >= 1);
        let old = self.settings();
        assert_eq!(settings.writers, old.writers);
        if old.visibility == Visibility::Appended && settings.visibility == Visibility::Durable {
            // Consumers may have read up to the log end: never take that back.
            self.visible_floor
                .set(self.visible_floor.get().max(self.log.log_end_offset()));
        }
        self.settings.set(settings);
    }

    /// What consumers may read up to: the replicated high watermark in cluster mode, else, by
    /// `spate.visibility`, the log's (its durable offset under group commit) or its end.
    pub fn high_watermark(&self) -> Offset {
        match &self.replica {
            Some(slot) => slot.high_watermark().max(self.log.log_start_offset()),
            None => match self.settings().visibility {
                Visibility::Durable => self
                    .log
                    .high_watermark()
                    .max(self.visible_floor.get().min(self.log.log_end_offset())),
                Visibility::Appended => self.log.log_end_offset(),
            },
        }
    }

    /// Where `reader`'s reads end now.
    pub fn readable_end(&self, reader: Reader) -> Offset {
        match reader {
            Reader::Consumer => self.high_watermark(),
            Reader::Follower => self.log.log_end_offset(),
        }
    }

    /// Woken when [`Self::readable_end`] for `reader` moves.
    pub fn more_for(&self, reader: Reader) -> &Notify {
        match reader {
            Reader::Consumer => &self.appended,
            Reader::Follower => &self.grew,
        }
    }

    /// How far reads for consumers may go.
    pub fn consumer_limit(&self) -> spate_storage::ReadUpTo {
        spate_storage::ReadUpTo::Below(self.high_watermark())
    }

    /// The epoch this broker leads the partition in (or follows, in cluster mode).
    pub fn leader_epoch(&self) -> LeaderEpoch {
        match self.replica.as_ref().and_then(|slot| slot.epoch()) {
            Some(epoch) => epoch,
            None => self.leader_epoch.get(),
        }
    }

    /// Checks the leader epoch a client sent (Fetch v9+, ListOffsets v4+, OffsetForLeaderEpoch
    /// v2+) against this partition's, as Kafka's `Partition.checkCurrentLeaderEpoch` does: an
    /// older one is FENCED_LEADER_EPOCH (the client's metadata is stale: it refreshes), a newer
    /// one UNKNOWN_LEADER_EPOCH (this broker is behind: the client retries). `None` (the
    /// client sent -1, or an old version) is not checked.
    pub fn check_current_leader_epoch(&self, remote: Option<LeaderEpoch>) -> Result<(), ErrorCode> {
        check_leader_epoch(self.leader_epoch(), remote)
    }

    /// Takes a newer leader epoch (this broker leads the partition again, cluster mode).
    ///
    /// # Panics
    /// If `epoch` is older than the current one: epochs only grow.
    pub fn set_leader_epoch(&self, epoch: LeaderEpoch) {
        assert!(epoch >= self.leader_epoch.get(), "leader epochs only grow");
        self.leader_epoch.set(epoch);
    }

    /// Appends one checked batch in this partition's leader epoch.
    ///
    /// # Errors
    /// As [`Log::append_checked`].
    pub async fn append(
        &self,
        batch: CheckedBatch,
        admission: spate_storage::TxnAdmission,
    ) -> spate_storage::Result<spate_storage::log::AppendInfo> {
        self.log
            .append_checked(batch, self.leader_epoch(), admission)
            .await
    }

    /// Wakes long-polling fetches if the high watermark moved since they were last woken.
    pub fn notify_if_advanced(&self) {
        if let Some(slot) = &self.replica {
            slot.note_durable(&self.log);
        }
        let hw = self.high_watermark();
        if hw != self.notified_hw.get() {
            self.notified_hw.set(hw);
            self.appended.notify_all();
        }
    }

    /// Whether group commit owes this partition a flush: data is waiting, no commit task is
    /// at it, and the interval passed since the last one. With the commit task following the
    /// device this is the backstop that makes `flush.ms` an upper bound, e.g. for data a
    /// failed commit task left behind.
    pub fn flush_due(&self, now: Instant) -> bool {
        match self.log.flush_interval_ms() {
            Some(interval_ms) => {
                self.log.unflushed_bytes() > 0
                    && !self.committing.get()
                    && now.duration_since(self.flushed_at.get())
                        >= Duration::from_millis(interval_ms)
            }
            None => false,
        }
    }
}

/// [`Partition::check_current_leader_epoch`]'s rule: the client's epoch (if it sent one)
/// against this partition's.
fn check_leader_epoch(local: LeaderEpoch, remote: Option<LeaderEpoch>) -> Result<(), ErrorCode> {
    let Some(remote) = remote else {
        return Ok(());
    };
    match remote.0.cmp(&local.0) {
        std::cmp::Ordering::Less => Err(ErrorCode::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => Err(ErrorCode::UnknownLeaderEpoch),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

impl<D: Disk + 'static> Partition<D> {
    /// Group commit that follows the device: starts a commit task if appended data is waiting
    /// and none runs. The task leads an fdatasync at once and, while it is in flight, appends
    /// gather for the next one, which it starts the moment the previous completed; it ends
    /// when nothing is left to sync. So an appended record waits for at most the sync in
    /// flight plus its own, not for a timer, and consumers (who read only durable records by
    /// default) and acks=all producers see it one fdatasync after the append.
    ///
    /// One task per partition with unsynced data, none for an idle one; the syncs of a core's
    /// partitions are submitted to its io_uring together. A no-op unless the flush policy is
    /// group commit (`every-append` syncs in the append, `never` leaves syncs to rolls).
    pub fn request_commit(self: &Rc<Self>) {
        if self.committing.get() || self.log.flush_interval_ms().is_none() || !self.has_unsynced() {
            return;
        }
        self.committing.set(true);
        let partition = self.clone();
        glommio::spawn_local(async move { partition.commit_while_unsynced().await }).detach();
    }

    /// Whether records were appended that no completed sync covers. By offsets, not bytes: a
    /// flush returns once the durable offset reached the log end, so the task's loop ends.
    fn has_unsynced(&self) -> bool {
        self.log.durable_offset() < self.log.log_end_offset()
    }

    async fn commit_while_unsynced(&self) {
        // Cleared however the task ends, so the next append can start another.
        struct Committing<'a>(&'a Cell<bool>);
        impl Drop for Committing<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _committing = Committing(&self.committing);
        while self.has_unsynced() && self.log.flush_interval_ms().is_some() {
            // `flush` joins a sync in flight (an acks=all waiter's) and leads the next one for
            // everything appended meanwhile.
            let flushed = self.log.flush().await;
            self.flushed_at.set(Instant::now());
            self.notify_if_advanced();
            if let Err(e) = flushed {
                // The log is fenced: appends fail from now on, nothing more to sync.
                error!(error = %e, "group commit failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod leader_epoch_tests {
    use super::*;

    #[test]
    fn a_client_epoch_is_checked_like_kafka() {
        let local = LeaderEpoch(5);
        assert_eq!(check_leader_epoch(local, None), Ok(()));
        assert_eq!(check_leader_epoch(local, Some(LeaderEpoch(5))), Ok(()));
        assert_eq!(
            check_leader_epoch(local, Some(LeaderEpoch(4))),
            Err(ErrorCode::FencedLeaderEpoch)
        );
        assert_eq!(
            check_leader_epoch(local, Some(LeaderEpoch(6))),
            Err(ErrorCode::UnknownLeaderEpoch)
        );
    }
}
