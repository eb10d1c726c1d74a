//! The partition log: append, read, flush, recovery, truncation and retention.
//!
//! One [`Log`] per partition, owned by the executor of the core the partition is pinned to.
//! Tasks on that executor share it through `Rc<Log>`; every method takes `&self`. State that
//! changes together lives in a `Core` behind a single-threaded async mutex (held across disk
//! writes by roll, truncation and timestamp lookup); the durability state (`durable`, the sync
//! in flight) and the writes not yet completed (`writes`) live outside it, so a sync holds the
//! lock only to add its tail write, then waits for its writes and runs the fdatasync without it,
//! and appends continue meanwhile: that is what lets many appends share one sync (group commit).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use spate_wire::batch::{BatchError, BatchHeader, BATCH_HEADER_BYTES};
use spate_wire::types::{Offset, ProducerId};

use crate::cache::{BatchBytes, HeaderArena, TailCache};
use crate::config::{FlushPolicy, LogConfig};
use crate::epoch::{EpochCache, EPOCH_FILE_NAME};
use crate::error::{Result, StorageError};
use crate::files::{read_whole, write_atomically};
use crate::index::{Checkpoint, SegmentIndex};
use crate::io::{align_down, AlignedBuf, Disk, DiskFile, OpenMode};
use crate::producer_state::ProducerState;
use crate::segment::{
    file_name, parse_file_name, scan, OffsetOrder, Scan, ScanEnd, Segment, INDEX_SUFFIX,
    LOG_SUFFIX, SCAN_CHUNK_BYTES, SEALING_SUFFIX, SNAPSHOT_SUFFIX, TMP_SUFFIX,
};
use crate::sync::{AsyncMutex, Notify};
use writes::Writes;

mod append;
mod clean;
mod read;
mod retention;
mod roll;
mod sync;
mod writes;
pub use clean::{
    CleanConfig, CleanOutcome, CleanerState, IoBudget, Unthrottled, CLEANED_SUFFIX,
    CLEANER_CHECKPOINT_FILE, SWAP_SUFFIX,
};
use roll::create_segment;

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
/// replaced by a spare buffer, so batches may straddle two buffers.
#[derive(Debug)]
struct WriteBuffer<B> {
    buf: Option<B>,
    start: u64,
    filled: usize,
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
    config: LogConfig,
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
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::from_io(op, path, e)
}

impl<D: Disk> Log<D> {
    /// Opens the log in `dir` (creating it if empty) and recovers it: closed segments are
    /// checked against their index checkpoints (or rescanned when one is missing or stale), the
    /// active segment is scanned from its checkpoint with CRC checks, and a torn tail is cut off.
    ///
    /// # Errors
    /// [`StorageError::CorruptBatch`] if a closed segment holds an invalid batch (bit rot);
    /// I/O errors.
    ///
    /// # Panics
    /// If `config` is inconsistent ([`LogConfig::validate`]).
    pub async fn open(disk: D, dir: &Path, config: LogConfig) -> Result<Self> {
        config.validate();
        disk.create_dir_all(dir)
            .await
            .map_err(io_err("creating", dir))?;
        let mut names = disk
            .list_dir(dir, DIR_ENTRIES_MAX)
            .await
            .map_err(io_err("listing", dir))?;
        if clean::recover_swaps(&disk, dir, &names).await? {
            names = disk
                .list_dir(dir, DIR_ENTRIES_MAX)
                .await
                .map_err(io_err("listing", dir))?;
        }
        let mut bases = Vec::new();
        let mut snapshots = BTreeSet::new();
        let mut unsealed = BTreeSet::new();
        for name in &names {
            if let Some(offset) = parse_file_name(name, SNAPSHOT_SUFFIX) {
                snapshots.insert(offset);
            }
            if let Some(base) = parse_file_name(name, SEALING_SUFFIX) {
                unsealed.insert(base);
            }
            if name.ends_with(TMP_SUFFIX) {
                let path = dir.join(name);
                disk.remove(&path)
                    .await
                    .map_err(io_err("removing", &path))?;
            } else if let Some(base) = parse_file_name(name, LOG_SUFFIX) {
                bases.push(base);
            }
        }
        bases.sort();
        for name in &names {
            if let Some(base) = parse_file_name(name, INDEX_SUFFIX) {
                if bases.binary_search(&base).is_err() {
                    let path = dir.join(name);
                    disk.remove(&path)
                        .await
                        .map_err(io_err("removing", &path))?;
                }
            }
        }
        let mut segments = BTreeMap::new();
        let mut checkpointed = 0;
        if bases.is_empty() {
            let segment = create_segment(&disk, dir, &config, Offset(0)).await?;
            segments.insert(segment.base, segment);
        }
        for (i, &base) in bases.iter().enumerate() {
            let role = if i + 1 == bases.len() {
                Role::Active
            } else if unsealed.contains(&base) {
                Role::Unsealed
            } else {
                Role::Closed
            };
            let (segment, covered) = recover_segment(&disk, dir, &config, base, role).await?;
            checkpointed = covered;
            if let Some(prev) = segments.values_mut().next_back() {
                let prev: &mut Segment<D::File> = prev;
                // A cleaned segment may end before the next one starts (its last batches were
                // compacted away); it then covers offsets up to the next base.
                if prev.next_offset > base {
                    return Err(StorageError::CorruptBatch {
                        segment: segment.path.clone(),
                        position: 0,
                        reason: BatchError::BadOffsets {
                            last_offset_delta: (base.0 - prev.next_offset.0) as i32,
                            record_count: 0,
                        },
                    });
                }
                prev.next_offset = base;
            }
            // The crash came before a seal's fdatasync and took some of this segment's tail:
            // nothing after it was reported durable (no sync of a later segment starts before
            // the seal completed), and keeping it would leave a hole. This segment becomes the
            // active one.
            //
            // A roll does not wait for the old segment's writes, so at the crash several may
            // have been in flight or queued, and the device may complete them in any order:
            // what survived can be a hole in the middle (a later block written, an earlier one
            // not), not only a cut tail. The scan treats both alike: it stops at the first
            // position that is not a whole valid batch with the next dense offset, and the file
            // is cut there, blocks past the hole included. A never-written block reads as zeros
            // (segment files are created empty or truncated, and extended by fallocate), which
            // ends the scan where a batch starts; a batch that crosses into the hole fails its
            // CRC32C. Nothing at or past the hole was durable: the durable offset only covers
            // bytes whose writes completed before an fdatasync of the file that completed (a
            // sync waits for its writes; the seal waits for all of the segment's), and a block
            // written before a completed fdatasync survives the crash.
            let torn_seal = role == Role::Unsealed && segment.next_offset < bases[i + 1];
            if role == Role::Unsealed && !torn_seal {
                // Whole (a longer one fails the join in the next round): closed like any other,
                // with a full checkpoint from now on.
                write_index(&disk, dir, &segment).await?;
            }
            segments.insert(base, segment);
            if torn_seal {
                for &later in &bases[i + 1..] {
                    for suffix in [INDEX_SUFFIX, LOG_SUFFIX] {
                        remove_file(&disk, &dir.join(file_name(later, suffix))).await?;
                    }
                }
                break;
            }
        }
        // Every marker has served: its segment was recovered as whole or made active.
        for &base in &unsealed {
            let path = dir.join(file_name(base, SEALING_SUFFIX));
            disk.remove(&path)
                .await
                .map_err(io_err("removing", &path))?;
        }
        disk.sync_dir(dir).await.map_err(io_err("syncing", dir))?;
        let active = segments.values().next_back().expect("a log has a segment");
        let log_end = active.next_offset;
        let log_start = *segments.keys().next().expect("a log has a segment");
        let write = load_tail_block(active, config.write_buffer_bytes_max).await?;
        let writes = Rc::new(Writes::new(active.size, config.write_buffer_bytes_max));
        let epoch_path = dir.join(EPOCH_FILE_NAME);
        let mut epochs = match read_whole(&disk, &epoch_path).await? {
            Some(bytes) => EpochCache::decode(&bytes).ok_or(StorageError::BadCheckpoint {
                path: epoch_path.clone(),
                reason: "malformed leader epoch checkpoint",
            })?,
            None => EpochCache::default(),
        };
        let epochs_changed =
            epochs.truncate_from_end(log_end) | epochs.truncate_from_start(log_start);
        if epochs_changed {
            write_atomically(&disk, dir, EPOCH_FILE_NAME, &epochs.encode()).await?;
        }
        let mut producers = ProducerState::new(
            config.producers_per_partition_max,
            config.producer_id_expiration_ms,
        );
        let replayed_from = rebuild_producers(
            &disk,
            dir,
            &segments,
            &mut snapshots,
            log_start,
            &mut producers,
        )
        .await?;
        if replayed_from < log_end {
            // Recovery synced everything it kept, so a snapshot at the log end is safe, and it
            // spares the next open this replay (a crash, or a log from before snapshots).
            let name = file_name(log_end, SNAPSHOT_SUFFIX);
            write_atomically(&disk, dir, &name, &producers.encode_snapshot(log_end)).await?;
            snapshots.insert(log_end);
            let active_base = *segments.keys().next_back().expect("a log has a segment");
            prune_snapshots(&disk, dir, &mut snapshots, active_base, log_end).await?;
        }
        let core = Core {
            segments,
            write,
            checkpointed,
            cache: TailCache::new(config.tail_cache_bytes_max),
            headers: HeaderArena::default(),
            epochs,
            log_end,
            producers,
            snapshots,
        };
        Ok(Log {
            disk,
            dir: dir.to_owned(),
            config,
            core: AsyncMutex::new(core),
            writes: std::cell::RefCell::new(writes),
            checkpoint: AsyncMutex::new(()),
            checkpoint_in_flight: Cell::new(false),
            log_start: Cell::new(log_start),
            log_end: Cell::new(log_end),
            // Recovery synced the active segment, so everything it kept is durable.
            durable: Cell::new(log_end),
            fenced: Cell::new(false),
            sync_in_flight: Cell::new(false),
            seal: SealSlot::default(),
            spare: std::cell::RefCell::new(SpareState::None),
            background_sync: std::cell::RefCell::new(None),
            checkpoint_due: std::cell::RefCell::new(None),
            synced: Notify::default(),
            appended_bytes: Cell::new(0),
            synced_bytes: Cell::new(0),
            truncations: Cell::new(0),
        })
    }

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
        match self.config.flush {
            FlushPolicy::Never => self.log_end.get(),
            _ => self.durable.get(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// How often the owner should call [`Log::flush`] under group commit (`None` otherwise).
    pub fn flush_interval_ms(&self) -> Option<u64> {
        match self.config.flush {
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

    /// Writes `<log_end>.snapshot` with the producer state as of the log end.
    async fn write_producer_snapshot(&self, core: &mut Core<D::File>) -> Result<()> {
        let offset = core.log_end;
        let bytes = core.producers.encode_snapshot(offset);
        write_atomically(
            &self.disk,
            &self.dir,
            &file_name(offset, SNAPSHOT_SUFFIX),
            &bytes,
        )
        .await?;
        core.snapshots.insert(offset);
        Ok(())
    }

    /// Number of idempotent producers the partition remembers.
    pub async fn producer_count(&self) -> usize {
        self.core.lock().await.producers.len()
    }

    /// A copy of the idempotent-producer state (for log compaction, which must keep each
    /// producer's last batch, and for tests).
    pub async fn producer_state(&self) -> ProducerState {
        self.core.lock().await.producers.clone()
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

    /// Number of segments.
    pub async fn segment_count(&self) -> usize {
        self.core.lock().await.segments.len()
    }

    /// Syncs everything and writes the active segment's index checkpoint, so the next open
    /// needs no scan.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        // `flush` drives a pending seal only if the log end was not durable yet.
        self.wait_sealed().await?;
        let spare = self.spare.replace(SpareState::None);
        if !matches!(spare, SpareState::None) {
            if let SpareState::Making(making) = spare {
                // Finished first, so its file is not created after the removal below.
                drop(making.await);
            }
            // Best effort: a leftover is deleted at the next open.
            let _ = self.disk.remove(&self.dir.join(SPARE_SEGMENT_NAME)).await;
        }
        let core = self.core.into_inner();
        let active = core
            .segments
            .values()
            .next_back()
            .expect("a log has a segment");
        write_index(&self.disk, &self.dir, active).await?;
        let active_base = active.base;
        if core.snapshots.last() == Some(&core.log_end) {
            return Ok(());
        }
        let log = Log {
            core: AsyncMutex::new(core),
            ..self
        };
        let mut core = log.core.lock().await;
        log.write_producer_snapshot(&mut core).await?;
        let log_end = core.log_end;
        prune_snapshots(
            &log.disk,
            &log.dir,
            &mut core.snapshots,
            active_base,
            log_end,
        )
        .await
    }
}

/// Removes the snapshots strictly between the active segment's base and `newest`: each clean
/// close or crash recovery adds one there, and the newest supersedes them (the one at the base
/// stays, for truncation). Bounds the files to one per segment plus one.
async fn prune_snapshots<D: Disk>(
    disk: &D,
    dir: &Path,
    snapshots: &mut BTreeSet<Offset>,
    active_base: Offset,
    newest: Offset,
) -> Result<()> {
    let stale: Vec<Offset> = snapshots
        .iter()
        .copied()
        .filter(|&o| o > active_base && o < newest)
        .collect();
    for offset in stale {
        snapshots.remove(&offset);
        remove_file(disk, &dir.join(file_name(offset, SNAPSHOT_SUFFIX))).await?;
    }
    Ok(())
}

async fn write_index<D: Disk>(disk: &D, dir: &Path, segment: &Segment<D::File>) -> Result<()> {
    let checkpoint = Checkpoint {
        covered_bytes: segment.size,
        next_offset: segment.next_offset,
    };
    let name = file_name(segment.base, INDEX_SUFFIX);
    write_atomically(disk, dir, &name, &segment.index.encode(checkpoint)).await
}

/// How recovery treats a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The last segment: a torn tail is cut off.
    Active,
    /// Rolled away from, and its `.sealing` marker is still there: the crash may have come
    /// before its seal's fdatasync, so it is recovered like the active segment; the caller
    /// decides what that means for the segments after it.
    Unsealed,
    /// Sealed: any invalid batch is corruption.
    Closed,
}

/// Opens and validates one segment. A closed segment must be whole (any invalid batch is
/// corruption); the last one may end in a torn write, which is cut off.
async fn recover_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    config: &LogConfig,
    base: Offset,
    role: Role,
) -> Result<(Segment<D::File>, u64)> {
    // A segment whose seal may not have completed may end in a torn write, like the active one.
    let tolerant = role != Role::Closed;
    let path = dir.join(file_name(base, LOG_SUFFIX));
    let file = disk
        .open(&path, OpenMode::Existing)
        .await
        .map_err(io_err("opening", &path))?;
    let file_size = file.size().await.map_err(io_err("sizing", &path))?;
    let index_path = dir.join(file_name(base, INDEX_SUFFIX));
    let checkpoint = match read_whole(disk, &index_path).await? {
        Some(bytes) => SegmentIndex::decode(&bytes, base, config.index_interval_bytes),
        None => None,
    };
    // A closed segment's checkpoint must cover the whole file; the active one's a prefix.
    let usable = checkpoint.filter(|(_, cp)| {
        if tolerant {
            cp.covered_bytes <= file_size
        } else {
            cp.covered_bytes == file_size
        }
    });
    let had_checkpoint = usable.is_some();
    let (mut index, from, next) = match usable {
        Some((index, cp)) => (index, cp.covered_bytes, cp.next_offset),
        None => (
            SegmentIndex::new(base, config.index_interval_bytes),
            0,
            base,
        ),
    };
    // Only the active segment is written by appends (dense offsets); closed segments may have
    // been compacted, which leaves gaps where whole batches were removed.
    let order = if tolerant {
        OffsetOrder::Dense
    } else {
        OffsetOrder::Increasing
    };
    let scan_result: Scan = scan(&file, file_size, from, next, order, &mut index).await?;
    if let ScanEnd::Invalid { position, reason } = scan_result.end {
        if !tolerant {
            return Err(StorageError::CorruptBatch {
                segment: path,
                position,
                reason,
            });
        }
    }
    let size = scan_result.end_position;
    if size != file_size {
        // A torn tail, or zeros past the data (preallocation, or a crash during a roll):
        // cut the file to its whole batches so the next writes start from a clean end.
        file.truncate(size)
            .await
            .map_err(io_err("truncating", &path))?;
    }
    // Synced even when unchanged: what recovery read may have sat only in a volatile cache,
    // and the log reports all of it as durable.
    file.fdatasync().await.map_err(io_err("syncing", &path))?;
    let first_timestamp_ms = match scan_result.first_timestamp_ms {
        Some(ts) => Some(ts),
        None if size > 0 => {
            let bytes = file
                .read_at(0, BATCH_HEADER_BYTES)
                .await
                .map_err(io_err("reading", &path))?;
            BatchHeader::parse(&bytes).ok().map(|h| h.max_timestamp_ms)
        }
        None => None,
    };
    let segment = Segment {
        base,
        file: Rc::new(file),
        path,
        index,
        size,
        next_offset: scan_result.next_offset,
        first_timestamp_ms,
        allocated: size,
    };
    if role == Role::Closed && !had_checkpoint {
        write_index(disk, dir, &segment).await?;
    }
    Ok((segment, from))
}

/// A write buffer for the active segment holding its partial last block, read back from disk.
async fn load_tail_block<F: DiskFile>(
    segment: &Segment<F>,
    capacity: usize,
) -> Result<WriteBuffer<F::Buf>> {
    let start = align_down(segment.size);
    let filled = (segment.size - start) as usize;
    let tail = segment
        .file
        .read_at(start, filled)
        .await
        .map_err(io_err("reading", &segment.path))?;
    if tail.len() != filled {
        return Err(StorageError::from_io(
            "reading",
            &segment.path,
            std::io::Error::other("short read of the tail block"),
        ));
    }
    let mut buf = segment.file.alloc_buf(capacity);
    buf.as_mut_slice()[..filled].copy_from_slice(&tail);
    Ok(WriteBuffer {
        buf: Some(buf),
        start,
        filled,
    })
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

/// Rebuilds the producer state for the log `segments` hold: drops snapshots past the log end,
/// loads the newest valid one, and replays the batch headers after it (or from the log start
/// when there is none). All batches must be in the files (nothing buffered). Returns where the
/// replay started.
async fn rebuild_producers<D: Disk>(
    disk: &D,
    dir: &Path,
    segments: &BTreeMap<Offset, Segment<D::File>>,
    snapshots: &mut BTreeSet<Offset>,
    log_start: Offset,
    producers: &mut ProducerState,
) -> Result<Offset> {
    let log_end = segments
        .values()
        .next_back()
        .expect("a log has a segment")
        .next_offset;
    let beyond: Vec<Offset> = snapshots.range(log_end.next()..).copied().collect();
    for offset in beyond {
        snapshots.remove(&offset);
        remove_file(disk, &dir.join(file_name(offset, SNAPSHOT_SUFFIX))).await?;
    }
    producers.clear();
    let mut from = log_start;
    for &offset in snapshots.iter().rev() {
        let path = dir.join(file_name(offset, SNAPSHOT_SUFFIX));
        let Some(bytes) = read_whole(disk, &path).await? else {
            continue;
        };
        // A damaged snapshot is skipped: an older one plus a longer replay gives the same state.
        if producers.load_snapshot(&bytes) == Some(offset) {
            from = offset.max(log_start);
            break;
        }
        producers.clear();
    }
    for segment in segments.values() {
        if segment.next_offset > from {
            replay_segment(segment, from, producers).await?;
        }
    }
    Ok(from)
}

/// Feeds the headers of the batches of `segment` that end at or after `from` to `producers`,
/// reading the file in chunks.
async fn replay_segment<F: DiskFile>(
    segment: &Segment<F>,
    from: Offset,
    producers: &mut ProducerState,
) -> Result<()> {
    let mut position = if from > segment.base {
        segment.index.lookup(from).position
    } else {
        0
    };
    let mut chunk = Bytes::new();
    let mut chunk_pos = position;
    while position < segment.size {
        let in_chunk = position >= chunk_pos
            && position + BATCH_HEADER_BYTES as u64 <= chunk_pos + chunk.len() as u64;
        if !in_chunk {
            let len = (segment.size - position).min(SCAN_CHUNK_BYTES as u64) as usize;
            chunk = segment
                .file
                .read_at(position, len)
                .await
                .map_err(io_err("reading", &segment.path))?;
            chunk_pos = position;
        }
        let at = (position - chunk_pos) as usize;
        let header =
            BatchHeader::parse(&chunk[at..]).map_err(|reason| StorageError::CorruptBatch {
                segment: segment.path.clone(),
                position,
                reason,
            })?;
        if header.last_offset() >= from {
            producers.replay(&header);
        }
        position += header.total_bytes() as u64;
    }
    Ok(())
}
