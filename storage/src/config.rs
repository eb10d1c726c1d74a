//! Configuration of a partition log.

use crate::io::BLOCK_BYTES;

/// When the log calls fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append is written and synced before `append` returns.
    EveryAppend,
    /// Appends return once buffered; a sync covering many appends runs when a caller waits for
    /// durability ([`crate::Log::wait_durable`]), when `bytes_max` unsynced bytes accumulate,
    /// or when the owner calls [`crate::Log::flush`] every [`crate::Log::flush_interval_ms`].
    GroupCommit {
        /// Longest time appended data stays unsynced while nobody waits for it.
        interval_ms: u64,
        /// Most unsynced bytes before an append syncs inline.
        bytes_max: u64,
    },
    /// Never sync on the log's own initiative (durability comes from replication); syncs still
    /// happen when a segment is closed and when a caller asks for one.
    Never,
}

/// Settings of one partition log. [`LogConfig::default`] gives Kafka-like defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is rolled before it would grow past this size.
    pub segment_bytes_max: u64,
    /// A segment is rolled once a batch's max timestamp is this much newer than its first batch.
    pub segment_ms: i64,
    /// Bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// Closed segments whose newest timestamp is older than this are deleted (`None`: keep).
    pub retention_ms: Option<i64>,
    /// Oldest closed segments are deleted while the log is larger than this (`None`: keep).
    pub retention_bytes: Option<u64>,
    /// When to fdatasync.
    pub flush: FlushPolicy,
    /// Memory for the most recent batches, served to tailing readers without disk reads.
    pub tail_cache_bytes_max: usize,
    /// The aligned write-behind buffer of the active segment, and the size of each full write.
    pub write_buffer_bytes_max: usize,
    /// Largest batch `append` accepts.
    pub batch_bytes_max: usize,
    /// Segment files grow by fallocate, not per write: a new segment gets this many bytes, and
    /// each later step doubles the allocation (by at most `preallocate_step_bytes_max`, up to
    /// `segment_bytes_max`), so a busy segment takes few steps and an idle one holds little
    /// unused space. Small by default: a partition nobody writes to costs kilobytes of disk.
    pub preallocate_bytes: u64,
    /// Largest preallocation step, and the most a segment rolled by a busy partition gets at
    /// once (its successor starts at the closed segment's size, up to this): bounds the unused
    /// space a segment holds to one step, like Redpanda's 32 MiB fallocation steps.
    pub preallocate_step_bytes_max: u64,
    /// The active segment's index checkpoint is rewritten once this many more bytes are durable,
    /// so recovery after a crash rescans only the tail after it (and bytes before it are
    /// treated like a closed segment's: trusted at open, CRC-checked when read).
    pub active_checkpoint_bytes: u64,
    /// Most idempotent producers remembered per partition; a new producer beyond it is refused
    /// until idle ones expire.
    pub producers_per_partition_max: usize,
    /// A producer whose latest batch's max timestamp is this much older than now is forgotten
    /// (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
}

/// A new segment's first allocation: four blocks, so 10,000 partitions nobody writes to take
/// 160 MiB of disk (the old 64 MiB took 640 GiB). A partition that is written grows it by
/// doubling (a 1 MiB write buffer needs about seven steps), and its next segment starts larger
/// (`preallocate_step_bytes_max`).
pub const PREALLOCATE_BYTES_DEFAULT: u64 = 16 << 10;
/// The largest preallocation step by default (Redpanda's fallocation step).
pub const PREALLOCATE_STEP_BYTES_MAX_DEFAULT: u64 = 32 << 20;

/// Largest batch recovery will consider plausible; a longer length field is corruption.
pub const RECOVERY_BATCH_BYTES_MAX: usize = 64 << 20;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            flush: FlushPolicy::GroupCommit {
                interval_ms: 10,
                bytes_max: 16 << 20,
            },
            tail_cache_bytes_max: 8 << 20,
            write_buffer_bytes_max: 4 << 20,
            batch_bytes_max: 1 << 20 | 1 << 16,
            preallocate_bytes: PREALLOCATE_BYTES_DEFAULT,
            preallocate_step_bytes_max: PREALLOCATE_STEP_BYTES_MAX_DEFAULT,
            active_checkpoint_bytes: 64 << 20,
            producers_per_partition_max: crate::producer_state::PRODUCERS_PER_PARTITION_MAX_DEFAULT,
            producer_id_expiration_ms: crate::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Checks the relations between the limits.
    ///
    /// # Panics
    /// If a limit is zero or the limits contradict each other (a programmer error in the caller).
    pub fn validate(&self) {
        let block = BLOCK_BYTES as u64;
        assert!(self.segment_bytes_max >= block && self.segment_bytes_max <= u64::from(u32::MAX));
        assert!(self.segment_ms > 0);
        assert!(self.index_interval_bytes > 0);
        assert!(self.batch_bytes_max >= spate_wire::batch::BATCH_HEADER_BYTES);
        assert!(self.batch_bytes_max <= RECOVERY_BATCH_BYTES_MAX);
        // Batches may straddle two write buffers, so the buffer need not hold a whole batch.
        assert!(self.write_buffer_bytes_max >= BLOCK_BYTES);
        assert!(self.write_buffer_bytes_max % BLOCK_BYTES == 0);
        assert!(self.preallocate_bytes % block == 0 && self.preallocate_bytes > 0);
        assert!(self.preallocate_step_bytes_max % block == 0);
        assert!(self.preallocate_step_bytes_max >= self.preallocate_bytes);
        assert!(self.tail_cache_bytes_max > 0);
        assert!(self.active_checkpoint_bytes > 0);
        assert!(self.producers_per_partition_max > 0);
        assert!(self.producer_id_expiration_ms > 0);
        if let FlushPolicy::GroupCommit { bytes_max, .. } = self.flush {
            assert!(bytes_max > 0);
        }
    }
}
