//! The partition log: append, read, flush, recovery, truncation and retention.
//!
//! One [`Log`] per partition, owned by the executor of the core the partition is pinned to.
//! Tasks on that executor share it through `Rc<Log>`; every method takes `&self`. State that
//! changes together lives in a `Core` behind a single-threaded async mutex (held across disk
//! writes by roll, truncation and timestamp lookup); the durability state (`durable`, the sync
//! in flight) and the writes not yet completed (`writes`) live outside it, so a sync holds the
//! lock only to add its tail write, then waits for its writes and runs the fdatasync without it,
//! and appends continue meanwhile: that is what lets many appends share one sync (group commit).
//!
//! This file holds the types, the constants and the small accessors; the methods live by
//! concern in `impl Log` blocks of the submodules: `open` (open, recovery, close), `append`,
//! `replica` (a follower's append of the leader's batches, offsets kept),
//! `sync` (wait_durable, flush, group commit, background sync, drive_io), `roll` (roll, seal,
//! spare segment file), `read` (read, timestamp lookup, epochs), `retention` (retention,
//! truncation, producer expiry), `start` (DeleteRecords' log start and its checkpoint), `clean` (compaction) and `writes` (a segment file's write queue).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use spate_wire::types::{Offset, ProducerId};

use crate::cache::{BatchBytes, HeaderArena, TailCache};
use crate::config::{FlushPolicy, LogConfig};
use crate::epoch::EpochCache;
use crate::error::{Result, StorageError};
use crate::io::{Disk, DiskFile};
use crate::producer_state::ProducerState;
use crate::segment::Segment;
use crate::sync::{AsyncMutex, Notify};
use writes::Writes;

mod append;
mod clean;
mod open;
mod read;
mod repair;
mod replica;
mod retention;
mod roll;
mod start;
mod sync;
mod writes;
pub use append::TxnAdmission;
pub use clean::{
    CleanConfig, CleanOutcome, CleanerState, IoBudget, Unthrottled, CLEANED_SUFFIX,
    CLEANER_CHECKPOINT_FILE, SWAP_SUFFIX,
};
pub use read::LoadedRange;
pub use repair::{RepairOutcome, REPAIR_FETCH_BYTES_MAX};
pub use replica::ReplicatedAppend;
pub use start::LOG_START_FILE;

/// Most files a partition directory may hold.
pub const DIR_ENTRIES_MAX: usize = 1 << 20;
/// Most chunks one read returns (each a cached batch or a file range).
pub const READ_CHUNKS_MAX: usize = 1024;
/// Most writes submitted to the device at once per segment file: two let copying and
/// checksumming overlap the device's work, which is what closes the gap to raw bandwidth; four
/// and six measured no better on the test machine's disk. While a roll's seal is pending the
/// closed segment's queue drains beside the new one's, so a log may then have twice this many
/// in flight (two files).
pub const WRITES_IN_FLIGHT_MAX: usize = 2;
/// Most full-buffer writes queued per log (submitted, or waiting for a device slot or behind a
/// sync's tail write that covers their first blocks) while appends keep filling the next
/// buffer. More than in flight so that an acks=1 append does not wait when the device stalls
/// for a while (10-90 ms was seen on the test machine's virtio disk, in about one 8 s run of
/// seven at 240 MB/s): eight 1 MiB buffers hide ~35 ms at that rate. Memory per partition is at
/// most `(1 + FULL_WRITES_QUEUED_MAX + WRITES_IN_FLIGHT_MAX) * write_buffer_bytes_max` plus the
/// tail cache: the buffer being filled, the full ones queued, the spares kept, and one tail
/// copy; the extra queued buffers exist only while the device lags.
///
/// A roll does not drain the closed segment's queue (that took 30-130 ms under the lock at
/// saturation): the queue drains while the seal is pending, beside the new segment's. So while a
/// seal is pending, up to `FULL_WRITES_QUEUED_MAX` more buffers and one more tail copy may be
/// queued (at most `(1 + 2 * FULL_WRITES_QUEUED_MAX + WRITES_IN_FLIGHT_MAX)` buffers and two
/// tail copies per partition), and the tail cache holds the closed segment's unwritten batches
/// too. Bounded: one seal at a time (the next roll waits for it), and the closed segment's queue
/// only shrinks. The cache evicts oldest first, so nothing appended after an unwritten batch of
/// the closed segment leaves it either: appends wait for the closed queue to drain once this
/// many buffers of the new segment were written (`wait_closed_segment_drained`), so the cache
/// holds at most its budget plus about `3 * FULL_WRITES_QUEUED_MAX + 2` buffers of batches (the
/// closed queue and its tail, the new segment's written buffers, its queue and the buffer being
/// filled).
pub const FULL_WRITES_QUEUED_MAX: usize = 8;
const _: () = assert!(FULL_WRITES_QUEUED_MAX >= WRITES_IN_FLIGHT_MAX && WRITES_IN_FLIGHT_MAX >= 1);

/// What a sync covers, recorded when it starts.
#[derive(Debug)]
struct SyncMeta {
    path: PathBuf,
    segment: Offset,
    position: u64,
    target: Offset,
    appended: u64,
    truncations: u64,
}

/// An fdatasync created but not yet awaited.
struct PendingSync {
    future: Pin<Box<dyn Future<Output = Result<()>>>>,
    meta: SyncMeta,
}

impl std::fmt::Debug for PendingSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSync")
            .field("meta", &self.meta)
            .finish()
    }
}

/// The seal of the segment a roll closed: wait for its writes still queued, cut its
/// preallocated tail, fdatasync it, then remove its `.sealing` marker and write its index
/// checkpoint and the producer snapshot at the new segment's base. Runs without the core lock, so
/// appends go on in the new segment meanwhile. At most one is in flight (a roll waits for the
/// previous one), and it stays in its slot until it completed, driven by whoever waits, so a
/// waiter dropped midway loses nothing.
#[derive(Debug)]
struct SealSlot<F: DiskFile> {
    // A seal is a sync of the closed segment (with its files written after the fdatasync).
    pending: std::cell::RefCell<Option<PendingSync>>,
    // A task is polling the seal in place; others wait for `synced`.
    driving: Cell<bool>,
    // The closed segment's writes (a retired queue) until its seal completed: reads take its
    // written position from them, and the tail cache keeps its batches not yet written. Kept
    // after a failed seal (the log is fenced), so reads still never serve unwritten bytes.
    writes: std::cell::RefCell<Option<ClosedWrites<F>>>,
}

impl<F: DiskFile> Default for SealSlot<F> {
    fn default() -> Self {
        SealSlot {
            pending: std::cell::RefCell::new(None),
            driving: Cell::new(false),
            writes: std::cell::RefCell::new(None),
        }
    }
}

/// The writes of the segment based at `base`, closed by a roll before they completed.
#[derive(Debug)]
struct ClosedWrites<F: DiskFile> {
    base: Offset,
    writes: Rc<Writes<F>>,
}

/// The next segment's file, created and preallocated by the last seal (its directory entry
/// fsynced) under a temporary name, so a roll only renames it.
#[derive(Debug)]
struct Spare<F> {
    file: F,
    allocated: u64,
}

/// The next segment's file: being made after a seal completed (off the append path and after
/// the durable offset advanced), or made.
enum SpareState<F> {
    None,
    Making(Pin<Box<dyn Future<Output = std::io::Result<Spare<F>>>>>),
    Ready(Spare<F>),
}

impl<F> std::fmt::Debug for SpareState<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpareState::None => "None",
            SpareState::Making(_) => "Making",
            SpareState::Ready(_) => "Ready",
        })
    }
}

/// The spare segment file's name: a `.tmp`, so `Log::open` deletes a leftover.
const SPARE_SEGMENT_NAME: &str = "next-segment.log.tmp";

/// Whether `append` wrote the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendKind {
    /// The batch was appended at the offsets given.
    Appended,
    /// The batch repeats one of its idempotent producer's last batches: nothing was written,
    /// the offsets are those the original got.
    Duplicate,
}

/// What `append` assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the batch's first record.
    pub base_offset: Offset,
    /// Offset of its last record.
    pub last_offset: Offset,
    /// Its max timestamp.
    pub max_timestamp_ms: i64,
    /// Whether it was written now or is a duplicate of a batch written before.
    pub kind: AppendKind,
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUpTo {
    /// Only data below [`Log::high_watermark`] (what consumers may see).
    HighWatermark,
    /// Everything written, durable or not (for replication to followers).
    LogEnd,
    /// Only data below this offset (or the log end, if lower): a replicated partition's high
    /// watermark, which the replication protocol keeps, not the log.
    Below(Offset),
}

/// A byte range of a segment file holding whole batches, to be sent zero-copy or loaded.
///
/// Holds the file open: retention may unlink the segment while a reader still has this range,
/// and the bytes stay readable until it is dropped.
#[derive(Debug, Clone)]
pub struct FileRange<F> {
    /// The open segment file.
    pub file: Rc<F>,
    /// Its path (for errors and for sendfile by path).
    pub path: PathBuf,
    /// Byte position of the first batch.
    pub position: u64,
    /// Length in bytes (whole batches).
    pub length: u64,
    /// Base offset of the first batch.
    pub first_offset: Offset,
    /// Every batch in the range ends below this offset (where the read goes on): a batch that
    /// claims more has a damaged header (the base offset is outside the CRC).
    pub end_offset: Offset,
}

/// One piece of a read result.
#[derive(Debug, Clone)]
pub enum ReadChunk<F> {
    /// A batch from the tail cache, in two pieces (see [`BatchBytes`]).
    Memory(BatchBytes),
    /// Whole batches still on disk.
    File(FileRange<F>),
}

/// What [`Log::read`] returns: whole batches, in order, starting with the batch that contains
/// the requested offset.
#[derive(Debug, Clone)]
pub struct ReadResult<F> {
    /// The batches, as cached slices and file ranges.
    pub chunks: Vec<ReadChunk<F>>,
    /// Offset after the last returned batch (where the next read continues).
    pub next_offset: Offset,
    /// Total bytes returned.
    pub bytes: u64,
}

/// What [`Log::apply_retention`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes of log deleted.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: Offset,
}

/// The aligned write-behind buffer of the active segment. It holds file bytes
/// `[start, start + filled)`, `start` block-aligned: possibly some bytes already written by a
/// sync (a sync writes from the last block it had not fully written, so the partial last block
/// is rewritten in place), then bytes not yet written. When it is full it is written whole and
/// the next append takes another (a spare, or one from the core's budget: `crate::pool`), so
/// batches may straddle two buffers.
///
/// Without a buffer (`buf` is `None`: a log just opened, a new segment, a full buffer just
/// handed to the device, or a log gone idle) every byte it describes is already on the file,
/// and the next append reads the partial last block back into the buffer it takes.
#[derive(Debug)]
struct WriteBuffer<B> {
    buf: Option<B>,
    // The buffer's share of the core's write-buffer budget; `Some` exactly when `buf` is.
    grant: Option<crate::pool::Grant>,
    start: u64,
    filled: usize,
}

impl<B> WriteBuffer<B> {
    /// No buffer, for a segment whose bytes below `size` are all on its file.
    fn released(size: u64) -> Self {
        let start = crate::io::align_down(size);
        WriteBuffer {
            buf: None,
            grant: None,
            start,
            filled: (size - start) as usize,
        }
    }

    /// File position after the last byte appended.
    fn end(&self) -> u64 {
        self.start + self.filled as u64
    }
}

#[derive(Debug)]
struct Core<F: DiskFile> {
    segments: BTreeMap<Offset, Segment<F>>,
    write: WriteBuffer<F::Buf>,
    // Position in the active segment its index checkpoint covers (0: none).
    checkpointed: u64,
    cache: TailCache,
    // Patched batch headers for the cache: the batch body is kept as the producer's `Bytes`.
    headers: HeaderArena,
    epochs: EpochCache,
    log_end: Offset,
    // Idempotent producers' state as of `log_end`.
    producers: ProducerState,
    // Offsets of the producer-state snapshot files on disk.
    snapshots: BTreeSet<Offset>,
}

/// A partition's commit log.
#[derive(Debug)]
pub struct Log<D: Disk> {
    disk: D,
    dir: PathBuf,
    // Replaced whole by `set_config` (live topic config changes); read by copy, so no borrow
    // is held across an await.
    config: Cell<LogConfig>,
    core: AsyncMutex<Core<D::File>>,
    // The active segment's writes not yet completed, outside the lock: syncs wait for theirs
    // without it. Added to only under the lock, and replaced by a new queue at a roll (the old
    // one moves to the seal). Read through `writes()`, so no borrow is held across an await.
    writes: std::cell::RefCell<Rc<Writes<D::File>>>,
    // Held while the active segment's index checkpoint is written outside the core lock (a few
    // fsyncs: appends must not wait for them). Taken before `core` by `truncate_to`, which
    // removes that checkpoint and must not see a stale one renamed into place afterwards.
    checkpoint: AsyncMutex<()>,
    checkpoint_in_flight: Cell<bool>,
    log_start: Cell<Offset>,
    log_end: Cell<Offset>,
    durable: Cell<Offset>,
    fenced: Cell<bool>,
    sync_in_flight: Cell<bool>,
    // The seal of the segment the last roll closed, until it completed. While it is pending no
    // sync of the new segment starts (`start_sync`), so nothing in the new segment is reported
    // durable before everything in the old one is.
    seal: SealSlot<D::File>,
    // The next segment's file, made ahead once the last seal completed.
    spare: std::cell::RefCell<SpareState<D::File>>,
    // A sync started by an append that crossed `bytes_max`, collected later.
    background_sync: std::cell::RefCell<Option<PendingSync>>,
    // A completed sync whose index checkpoint was left to the next flush (`defer_checkpoint`).
    checkpoint_due: std::cell::RefCell<Option<SyncMeta>>,
    synced: Notify,
    appended_bytes: Cell<u64>,
    synced_bytes: Cell<u64>,
    truncations: Cell<u64>,
    // What consumers could already read when the flush policy left `Never` (whose high
    // watermark is the log end): the high watermark stays at least this, so it never goes
    // back while the first syncs under the new policy catch up (`set_config`).
    hw_floor: Cell<Offset>,
    // `appended_bytes` when `release_idle_buffers` last looked: unchanged since means idle.
    idle_mark: Cell<u64>,
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::from_io(op, path, e)
}

impl<D: Disk> Log<D> {
    /// First offset still in the log.
    pub fn log_start_offset(&self) -> Offset {
        self.log_start.get()
    }

    /// Offset the next append gets: everything below was written (to the buffer or the disk).
    pub fn log_end_offset(&self) -> Offset {
        self.log_end.get()
    }

    /// Everything below this offset survives a crash ("flushed up to").
    pub fn durable_offset(&self) -> Offset {
        self.durable.get()
    }

    /// What consumers may read up to: the durable offset, or the log end under
    /// [`FlushPolicy::Never`] (where durability comes from replication, not from this log).
    pub fn high_watermark(&self) -> Offset {
        match self.config().flush {
            FlushPolicy::Never => self.log_end.get(),
            _ => self.durable.get().max(self.hw_floor.get()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> LogConfig {
        self.config.get()
    }

    /// Changes the settings a topic config change may change on an open log (a live
    /// IncrementalAlterConfigs): segment size and age, retention, the flush policy, the largest
    /// batch and the index interval. Each takes effect at its next use: the next append's roll
    /// check and size check, the next retention pass, the next flush decision, the next
    /// segment's index. Nothing already written changes, and nothing waits.
    ///
    /// Leaving [`FlushPolicy::Never`], whose high watermark is the log end, keeps the high
    /// watermark at the log end of that moment until syncs pass it, so it never goes back.
    ///
    /// # Panics
    /// If `config` fails [`LogConfig::validate`] or differs in a setting that sizes memory or
    /// files the log already holds (write buffer, tail cache, preallocation, checkpoint step,
    /// producer limits): a programmer error in the caller.
    pub fn set_config(&self, config: LogConfig) {
        config.validate();
        let old = self.config();
        let fixed = |c: &LogConfig| {
            (
                c.write_buffer_bytes_max,
                c.tail_cache_bytes_max,
                c.preallocate_bytes,
                c.preallocate_step_bytes_max,
                c.active_checkpoint_bytes,
                c.producers_per_partition_max,
                c.producer_id_expiration_ms,
            )
        };
        assert_eq!(fixed(&old), fixed(&config), "only live settings change");
        if old.flush == FlushPolicy::Never && config.flush != FlushPolicy::Never {
            self.hw_floor
                .set(self.hw_floor.get().max(self.log_end.get()));
        }
        self.config.set(config);
    }

    /// How often the owner should call [`Log::flush`] under group commit (`None` otherwise).
    pub fn flush_interval_ms(&self) -> Option<u64> {
        match self.config().flush {
            FlushPolicy::GroupCommit { interval_ms, .. } => Some(interval_ms),
            _ => None,
        }
    }

    /// Bytes appended but not yet covered by a completed fdatasync.
    pub fn unflushed_bytes(&self) -> u64 {
        self.appended_bytes.get() - self.synced_bytes.get()
    }

    /// The active segment's write queue (a clone of the `Rc`: no borrow outlives the call).
    fn writes(&self) -> Rc<Writes<D::File>> {
        Rc::clone(&self.writes.borrow())
    }

    /// The write queue of the segment the pending seal closed, if its seal has not completed.
    fn closed_writes(&self) -> Option<(Offset, Rc<Writes<D::File>>)> {
        let slot = self.seal.writes.borrow();
        slot.as_ref().map(|c| (c.base, Rc::clone(&c.writes)))
    }

    /// Position below which segment `base` (of `size` bytes) holds on its file every byte it
    /// was given: the active segment's and a closed one still being sealed's writes may not all
    /// have completed; a sealed segment is whole.
    fn written_in(&self, active_base: Offset, base: Offset, size: u64) -> u64 {
        if base == active_base {
            return self.writes().written();
        }
        match &*self.seal.writes.borrow() {
            Some(closed) if closed.base == base => closed.writes.written(),
            _ => size,
        }
    }

    /// Fails if a write of the active segment, a sync or a seal failed. A failed write of a
    /// closed segment still being sealed is reported by the seal (which fences the log), and
    /// every path that relies on that segment's bytes waits for the seal or for its writes.
    fn check_fenced(&self) -> Result<()> {
        if let Some(e) = self.writes().failure() {
            self.fenced.set(true);
            return Err(e);
        }
        if self.fenced.get() {
            return Err(StorageError::Fenced);
        }
        Ok(())
    }

    /// Whether a failed write, sync or seal fenced the log: it takes no more appends until the
    /// partition is reopened (recovery then reads the files as they are).
    pub fn is_fenced(&self) -> bool {
        self.fenced.get() || self.writes().failure().is_some()
    }

    /// Number of idempotent producers the partition remembers.
    pub async fn producer_count(&self) -> usize {
        self.core.lock().await.producers.len()
    }

    /// The producers this partition remembers, with their open transactions
    /// (DescribeProducers).
    pub async fn active_producers(&self) -> Vec<crate::producer_state::ActiveProducer> {
        self.core.lock().await.producers.active_producers()
    }

    /// A copy of the idempotent-producer state (for log compaction, which must keep each
    /// producer's last batch, and for tests).
    pub async fn producer_state(&self) -> ProducerState {
        self.core.lock().await.producers.clone()
    }

    /// The last stable offset (Kafka's LSO): the first offset of the earliest open transaction,
    /// or the high watermark if it is lower or none is open. A `read_committed` reader sees only
    /// what is below it. Takes the core lock (transaction state changes under it with each
    /// append), so it is asked once per read, not per batch.
    pub async fn last_stable_offset(&self) -> Offset {
        let unstable = self.core.lock().await.producers.first_unstable_offset();
        let hw = self.high_watermark();
        unstable.map_or(hw, |first| first.min(hw))
    }

    /// The first offset of the earliest open transaction (`None`: none is open); the last
    /// stable offset of a partition whose high watermark the log does not keep (replicated).
    pub async fn first_unstable_offset(&self) -> Option<Offset> {
        self.core.lock().await.producers.first_unstable_offset()
    }

    /// The aborted transactions a `read_committed` read of `[from, below)` must list.
    pub async fn aborted_transactions(
        &self,
        from: Offset,
        below: Offset,
    ) -> Vec<crate::producer_state::AbortedTxn> {
        self.core
            .lock()
            .await
            .producers
            .aborted_between(from, below)
    }

    /// Whether the batch ending at `last_offset` is the latest batch of `producer_id`, which a
    /// compacting rewrite must keep so a retry of it is still recognised as a duplicate.
    pub async fn is_last_batch_of_producer(
        &self,
        producer_id: ProducerId,
        last_offset: Offset,
    ) -> bool {
        self.core
            .lock()
            .await
            .producers
            .is_last_batch_of_producer(producer_id, last_offset)
    }

    /// Bytes of batches in the log's segments (what DescribeLogDirs reports as its size;
    /// preallocated space past them is not counted).
    pub async fn size_bytes(&self) -> u64 {
        let core = self.core.lock().await;
        core.segments.values().map(|s| s.size).sum()
    }

    /// How many segments the log has (the active one included).
    pub async fn segment_count(&self) -> usize {
        self.core.lock().await.segments.len()
    }
}

/// Removes a file if it exists (durable only after a directory sync).
pub(super) async fn remove_if_exists<D: Disk>(disk: &D, path: &Path) -> Result<()> {
    match disk.remove(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StorageError::from_io("removing", path, e))
        }
        _ => Ok(()),
    }
}

/// Removes a file if it exists and syncs its directory.
async fn remove_file<D: Disk>(disk: &D, path: &Path) -> Result<()> {
    remove_if_exists(disk, path).await?;
    let dir = path.parent().unwrap_or(Path::new("."));
    disk.sync_dir(dir).await.map_err(io_err("syncing", dir))
}
