//! Segment rolls on the in-memory disk: the old segment's seal (truncate, fdatasync, index and
//! snapshot writes) runs off the append path, and a crash, a failure or a sync in flight around
//! it never costs a durable offset or leaves a hole.

mod common;

use std::path::Path;

use bytes::BytesMut;
use common::{append_now, batch, names, poll_n, read_all, small_config, waits_until_released};
use spate_storage::io::mem::{FaultOp, MemDisk};
use spate_storage::{block_on, FlushPolicy, Log, ReadChunk, ReadUpTo, StorageError};
use spate_wire::types::{LeaderEpoch, Offset};

const DIR: &str = "/data/topic-0";

/// Group commit on the timer only: no byte trigger starts a sync behind the test's back.
const TIMER_ONLY: FlushPolicy = FlushPolicy::GroupCommit {
    interval_ms: 5,
    bytes_max: 1 << 30,
};

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn open(disk: &MemDisk) -> Log<MemDisk> {
    block_on(Log::open(disk.clone(), dir(), small_config(TIMER_ONLY))).expect("open")
}

/// Appends until the log has `segments` segments; returns the base of the newest.
fn append_until_segments(log: &Log<MemDisk>, sent: &mut Vec<BytesMut>, segments: usize) -> Offset {
    loop {
        let base = append_now(log, sent);
        if block_on(log.segment_count()) == segments {
            return base;
        }
        assert!(sent.len() < 10_000, "never rolled");
    }
}

/// Reopens after a crash and checks the log is `sent[..n]` for some `n`, dense from offset 0
/// (no hole), byte for byte, and holds at least everything below `durable`. Returns the end.
fn assert_recovers_a_prefix(disk: &MemDisk, sent: &[BytesMut], durable: Offset) -> Offset {
    let log = open(disk);
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).expect("read");
    assert!(all.len() <= sent.len());
    for (i, ((header, got), want)) in all.iter().zip(sent).enumerate() {
        assert_eq!(
            header.base_offset,
            Offset(4 * i as i64),
            "dense offsets, no hole"
        );
        // Past baseOffset, batchLength and partitionLeaderEpoch: the producer's bytes.
        assert_eq!(&got[17..], &want[17..]);
    }
    let end = log.log_end_offset();
    assert_eq!(end, Offset(4 * all.len() as i64));
    assert!(
        end >= durable,
        "durable offset {durable:?} lost: end {end:?}"
    );
    end
}

#[test]
fn appends_go_on_in_the_new_segment_while_the_old_segments_seal_is_held() {
    let disk = MemDisk::new();
    let log = open(&disk);
    let mut sent = Vec::new();
    // The first append writes the leader-epoch checkpoint (an fdatasync): before the hold.
    append_now(&log, &mut sent);
    disk.hold_syncs(true);
    let syncs_before = disk.sync_count();
    let new_base = append_until_segments(&log, &mut sent, 2);
    // The roll did not wait for the old segment's fdatasync, and neither do later appends.
    for _ in 0..20 {
        append_now(&log, &mut sent);
    }
    assert_eq!(log.log_end_offset(), Offset(4 * sent.len() as i64));
    assert_eq!(
        disk.sync_count(),
        syncs_before,
        "the seal's fdatasync is held"
    );
    assert_eq!(log.durable_offset(), Offset(0));
    assert_eq!(names(&disk, ".sealing"), [format!("{:020}.sealing", 0)]);
    // A waiter waits for the seal before any sync of the new segment.
    let mut flush = Box::pin(log.flush());
    assert!(poll_n(flush.as_mut(), 100).is_none());
    assert_eq!(log.durable_offset(), Offset(0));
    // A second roll waits for the first seal: at most one is in flight.
    let blocked = loop {
        let b = batch(4, 100, 5000, sent.len() as u64);
        sent.push(b.clone());
        let mut append = Box::pin(log.append(b, LeaderEpoch(1)));
        if poll_n(append.as_mut(), 100).is_none() {
            break append;
        }
        assert!(sent.len() < 10_000, "no append waited");
    };
    // (The blocked append holds the core lock, so only the lock-free accessors are usable.)
    assert_eq!(log.log_end_offset(), Offset(4 * (sent.len() as i64 - 1)));
    disk.hold_syncs(false);
    // The flush drives the seal (the blocked append waits for it to finish), then syncs the
    // new segment once the append released the lock: poll both in turn, as an executor would.
    let mut blocked = blocked;
    let (mut appended, mut flushed) = (None, None);
    for _ in 0..1000 {
        if appended.is_none() {
            appended = poll_n(blocked.as_mut(), 1);
        }
        if flushed.is_none() {
            flushed = poll_n(flush.as_mut(), 1);
        }
    }
    let info = appended
        .expect("the second roll goes on once the seal completed")
        .expect("append");
    assert_eq!(info.base_offset, Offset(4 * (sent.len() as i64 - 1)));
    assert!(flushed.expect("flush done").unwrap() >= new_base);
    drop((blocked, flush));
    assert_eq!(block_on(log.segment_count()), 3);
    assert_eq!(block_on(log.flush()).unwrap(), log.log_end_offset());
    // Both seals completed: no marker, each closed segment has its checkpoint and the
    // snapshots at the new bases exist.
    assert!(names(&disk, ".sealing").is_empty());
    assert_eq!(names(&disk, ".index").len(), 2);
    assert!(names(&disk, ".snapshot").contains(&format!("{:020}.snapshot", new_base.0)));
    // The next roll's file is made once the seal completed, moved on by the appends that
    // follow (none yet); close removes it.
    assert!(names(&disk, ".tmp").is_empty());
    append_now(&log, &mut sent);
    assert_eq!(names(&disk, ".tmp"), ["next-segment.log.tmp"]);
    block_on(log.close()).expect("close");
    assert!(names(&disk, ".tmp").is_empty());
    let end = assert_recovers_a_prefix(&disk, &sent, Offset(4 * sent.len() as i64));
    assert_eq!(end, Offset(4 * sent.len() as i64));
}

#[test]
fn a_crash_during_the_seal_keeps_every_durable_offset_and_leaves_no_hole() {
    let (mut old_cut, mut new_kept) = (0, 0);
    for seed in 0..64u64 {
        let disk = MemDisk::new();
        let log = open(&disk);
        let mut sent = Vec::new();
        // A first roll whose seal completes and leaves the spare file the second roll renames.
        append_until_segments(&log, &mut sent, 2);
        for _ in 0..40 {
            append_now(&log, &mut sent);
        }
        let durable = block_on(log.flush()).expect("flush");
        assert_eq!(durable, Offset(4 * sent.len() as i64));
        assert_eq!(names(&disk, ".tmp"), ["next-segment.log.tmp"]);
        disk.hold_syncs(true);
        let new_base = append_until_segments(&log, &mut sent, 3);
        for _ in 0..(seed % 30) {
            append_now(&log, &mut sent);
        }
        if seed % 2 == 0 {
            // Puts the new segment's buffered batches in its file (a timestamp lookup writes
            // everything out), so the crash may keep some of them.
            block_on(log.offset_for_timestamp(i64::MAX, Offset(i64::MAX))).expect("lookup");
        }
        assert_eq!(log.durable_offset(), durable, "nothing new is durable");
        drop(log);
        disk.crash(seed);
        disk.hold_syncs(false);
        let end = assert_recovers_a_prefix(&disk, &sent, durable);
        if end < new_base {
            old_cut += 1;
        }
        if end > new_base {
            new_kept += 1;
        }
        // The marker served its purpose and is gone, as is any spare file.
        assert!(names(&disk, ".sealing").is_empty());
        assert!(names(&disk, ".tmp").is_empty());
    }
    // Both ways a crash can end are exercised: the old segment lost its tail (and the new
    // segment, had it kept anything, was dropped), or it was whole and the new one kept data.
    assert!(old_cut >= 5, "{old_cut} crashes cut the old segment");
    assert!(new_kept >= 5, "{new_kept} crashes kept new-segment data");
}

#[test]
fn a_failed_seal_fences_the_log() {
    let disk = MemDisk::new();
    let log = open(&disk);
    let mut sent = Vec::new();
    let new_base = append_until_segments(&log, &mut sent, 2);
    disk.fail_nth(FaultOp::Sync, 1);
    assert!(matches!(
        block_on(log.flush()),
        Err(StorageError::Io { .. })
    ));
    assert!(log.durable_offset() < new_base);
    assert!(matches!(
        block_on(log.append(batch(1, 1, 1, 1), LeaderEpoch(1))),
        Err(StorageError::Fenced)
    ));
    assert!(matches!(block_on(log.flush()), Err(StorageError::Fenced)));
    drop(log);
    // Without a crash every written byte is still there (the old segment was written out
    // whole; the batch in the new segment's buffer never reached its file); reopening
    // re-validates it.
    let end = assert_recovers_a_prefix(&disk, &sent, Offset(0));
    assert_eq!(end, new_base);
}

#[test]
fn a_roll_while_a_group_commit_sync_is_in_flight_orders_both() {
    let disk = MemDisk::new();
    let log = open(&disk);
    let mut sent = Vec::new();
    for _ in 0..10 {
        append_now(&log, &mut sent);
    }
    disk.hold_syncs(true);
    // A sync of the old segment, waiting for its fdatasync.
    let mut first = Box::pin(log.flush());
    assert!(poll_n(first.as_mut(), 100).is_none());
    let new_base = append_until_segments(&log, &mut sent, 2);
    for _ in 0..10 {
        append_now(&log, &mut sent);
    }
    assert_eq!(log.durable_offset(), Offset(0));
    disk.hold_syncs(false);
    // The first sync covers only what it was started for, in the old segment.
    let first_end = poll_n(first.as_mut(), 1000).expect("sync done").unwrap();
    assert!(first_end >= Offset(40) && first_end <= new_base);
    drop(first);
    // The next flush collects the seal before syncing the new segment.
    let end = log.log_end_offset();
    assert_eq!(block_on(log.flush()).unwrap(), end);
    assert!(names(&disk, ".sealing").is_empty());
    drop(log);
    disk.crash(3);
    assert_eq!(assert_recovers_a_prefix(&disk, &sent, end), end);
}

#[test]
fn truncation_into_a_segment_being_sealed_waits_for_the_seal_and_leaves_no_stale_checkpoint() {
    let disk = MemDisk::new();
    let log = open(&disk);
    let mut sent = Vec::new();
    append_now(&log, &mut sent);
    disk.hold_syncs(true);
    let new_base = append_until_segments(&log, &mut sent, 2);
    for _ in 0..5 {
        append_now(&log, &mut sent);
    }
    let cut = Offset(new_base.0 / 8 * 4);
    let end = waits_until_released(
        log.truncate_to(cut),
        "the truncation waits for the seal of the segment it cuts",
        || disk.hold_syncs(false),
        1000,
    )
    .expect("truncate");
    assert_eq!(end, cut);
    assert_eq!(block_on(log.segment_count()), 1);
    // The seal's checkpoint of the cut segment was written before the truncation replaced it
    // by one of exactly the kept batches, not after; the marker is gone.
    assert_eq!(names(&disk, ".index"), vec![format!("{:020}.index", 0)]);
    let index = disk
        .file_bytes(&dir().join(format!("{:020}.index", 0)))
        .unwrap();
    let (_, checkpoint) = spate_storage::index::SegmentIndex::decode(
        &index,
        Offset(0),
        small_config(TIMER_ONLY).index_interval_bytes,
    )
    .expect("a valid checkpoint");
    assert_eq!(checkpoint.next_offset, cut);
    assert_eq!(
        checkpoint.covered_bytes,
        disk.file_bytes(&seg(Offset(0))).unwrap().len() as u64
    );
    assert!(names(&disk, ".sealing").is_empty());
    sent.truncate((cut.0 / 4) as usize);
    assert_eq!(append_now(&log, &mut sent), cut);
    assert_eq!(
        block_on(log.flush()).unwrap(),
        cut.next().next().next().next()
    );
    drop(log);
    disk.crash(11);
    let end = assert_recovers_a_prefix(&disk, &sent, Offset(4 * sent.len() as i64));
    assert_eq!(end, Offset(4 * sent.len() as i64));
}

#[test]
fn retention_of_a_segment_being_sealed_waits_for_the_seal_and_leaves_no_stale_checkpoint() {
    let disk = MemDisk::new();
    let config = spate_storage::LogConfig {
        retention_bytes: Some(1),
        ..small_config(TIMER_ONLY)
    };
    let log = block_on(Log::open(disk.clone(), dir(), config)).expect("open");
    let mut sent = Vec::new();
    append_now(&log, &mut sent);
    disk.hold_syncs(true);
    let new_base = append_until_segments(&log, &mut sent, 2);
    let outcome = waits_until_released(
        log.apply_retention(0),
        "waits for the seal",
        || disk.hold_syncs(false),
        1000,
    )
    .expect("retention");
    assert_eq!(outcome.segments_deleted, 1);
    assert_eq!(outcome.log_start_offset, new_base);
    assert!(
        names(&disk, ".index").is_empty(),
        "no checkpoint of the deleted segment"
    );
    assert!(names(&disk, ".sealing").is_empty());
    assert_eq!(
        names(&disk, ".log"),
        [format!("{:020}.log", new_base.0)],
        "only the active segment is left"
    );
}

/// The position of the old segment's write that the tests below hold: the 13th of its 4 KiB
/// buffers, so the roll finds it pending and the writes after it completed (a device completing
/// writes out of order). The new segment's appends in these tests stay below it (a hold applies
/// to every file).
const HELD_AT: u64 = 48 << 10;

/// 4 KiB write buffers: a 64 KiB segment takes sixteen writes, so a roll finds several of the old
/// segment's writes still queued while the device lags.
fn open_small_buffers(disk: &MemDisk) -> Log<MemDisk> {
    let config = spate_storage::LogConfig {
        write_buffer_bytes_max: 4096,
        ..small_config(TIMER_ONLY)
    };
    block_on(Log::open(disk.clone(), dir(), config)).expect("open")
}

fn seg(base: Offset) -> std::path::PathBuf {
    dir().join(format!("{:020}.log", base.0))
}

/// Reads everything and checks it is `sent`, byte for byte (past the fields the log patches).
fn assert_reads_back(log: &Log<MemDisk>, sent: &[BytesMut]) {
    let all = block_on(read_all(log, Offset(0), ReadUpTo::LogEnd)).expect("read");
    assert_eq!(all.len(), sent.len());
    for (i, ((header, got), want)) in all.iter().zip(sent).enumerate() {
        assert_eq!(header.base_offset, Offset(4 * i as i64));
        assert_eq!(&got[17..], &want[17..]);
    }
}

/// The offset of the batch that holds byte `position` of the first segment (all batches
/// `append_now` makes are the same size).
fn offset_at(sent: &[BytesMut], position: u64) -> Offset {
    Offset(4 * (position / sent[0].len() as u64) as i64)
}

/// A log with small buffers rolled to its second segment while the old segment's write at
/// `HELD_AT` is held. One batch is appended and flushed first: it writes the leader-epoch
/// checkpoint (a write at 0) before the hold. Every append, the one that rolls included,
/// completes without waiting (`append_now` panics otherwise): a roll that drained the old
/// segment's writes would wait forever. Returns the log, the batches sent, the durable offset
/// before the hold and the new segment's base.
fn rolled_with_old_write_held(disk: &MemDisk) -> (Log<MemDisk>, Vec<BytesMut>, Offset, Offset) {
    let log = open_small_buffers(disk);
    let mut sent = Vec::new();
    append_now(&log, &mut sent);
    let durable = block_on(log.flush()).expect("flush");
    disk.hold_write_at(Some(HELD_AT));
    let new_base = append_until_segments(&log, &mut sent, 2);
    (log, sent, durable, new_base)
}

#[test]
fn a_roll_does_not_wait_for_the_old_segments_writes_and_reads_serve_them_meanwhile() {
    let disk = MemDisk::new();
    let (log, mut sent, durable, new_base) = rolled_with_old_write_held(&disk);
    for _ in 0..20 {
        append_now(&log, &mut sent);
    }
    assert_eq!(log.log_end_offset(), Offset(4 * sent.len() as i64));
    // The held write is still pending: its block of the old file is zeros, while writes after
    // it (the next buffer) landed.
    let old = disk.file_bytes(&seg(Offset(0))).expect("old segment");
    let held = HELD_AT as usize;
    assert!(old[held..held + 4096].iter().all(|&b| b == 0), "held");
    assert!(
        old[held + 4096..held + 8192].iter().any(|&b| b != 0),
        "a later write of the old segment completed"
    );
    assert!(disk.writes_in_flight() >= 1);
    assert_eq!(log.durable_offset(), durable, "nothing new is durable");
    assert_eq!(names(&disk, ".sealing"), [format!("{:020}.sealing", 0)]);
    // Reads see every batch, the old segment's unwritten ones from the cache: the batch over
    // the held block, and the file range before it ends below it.
    assert_reads_back(&log, &sent);
    let over_held = offset_at(&sent, HELD_AT);
    let read = block_on(log.read(over_held, 1, ReadUpTo::LogEnd)).expect("read");
    assert!(matches!(read.chunks[0], ReadChunk::Memory(_)));
    let read = block_on(log.read(Offset(0), 1 << 20, ReadUpTo::LogEnd)).expect("read");
    let ReadChunk::File(range) = &read.chunks[0] else {
        panic!("the oldest batches come from the file");
    };
    assert!(range.position + range.length <= HELD_AT);
    assert!(read
        .chunks
        .iter()
        .any(|c| matches!(c, ReadChunk::Memory(_))));
    // Released: the seal completes, and once appends evicted them from the cache the old
    // segment's batches come from the file.
    disk.hold_write_at(None);
    assert_eq!(block_on(log.flush()).unwrap(), log.log_end_offset());
    assert!(log.durable_offset() > new_base);
    assert!(names(&disk, ".sealing").is_empty());
    for _ in 0..30 {
        append_now(&log, &mut sent);
    }
    let read = block_on(log.read(over_held, 1, ReadUpTo::LogEnd)).expect("read");
    assert!(matches!(read.chunks[0], ReadChunk::File(_)));
    assert_reads_back(&log, &sent);
    block_on(log.close()).expect("close");
    let end = assert_recovers_a_prefix(&disk, &sent, Offset(4 * sent.len() as i64));
    assert_eq!(end, Offset(4 * sent.len() as i64));
}

#[test]
fn a_timestamp_lookup_waits_for_the_old_segments_writes_not_for_its_seal() {
    let disk = MemDisk::new();
    let (log, sent, ..) = rolled_with_old_write_held(&disk);
    disk.hold_syncs(true);
    // The batch over the held block has timestamp 1000 + its index (`append_now`).
    let over_held = offset_at(&sent, HELD_AT);
    let timestamp_ms = 1000 + over_held.0 / 4;
    // Done once the writes completed, with the seal's fdatasync still held.
    let found = waits_until_released(
        log.offset_for_timestamp(timestamp_ms, Offset(i64::MAX)),
        "the lookup reads the old file: it waits for the held write",
        || disk.hold_write_at(None),
        1000,
    )
    .expect("lookup");
    assert_eq!(found, Some((over_held, timestamp_ms)));
    assert!(!names(&disk, ".sealing").is_empty(), "the seal is pending");
    disk.hold_syncs(false);
    assert_eq!(block_on(log.flush()).unwrap(), log.log_end_offset());
}

#[test]
fn a_crash_while_the_old_segments_writes_are_pending_keeps_every_durable_offset_and_leaves_no_hole()
{
    let (mut holes, mut old_cut, mut new_kept) = (0, 0, 0);
    for seed in 0..64u64 {
        let disk = MemDisk::new();
        let log = open_small_buffers(&disk);
        let mut sent = Vec::new();
        for _ in 0..(20 + seed % 40) {
            append_now(&log, &mut sent);
        }
        let durable = block_on(log.flush()).expect("flush");
        disk.hold_write_at(Some(HELD_AT));
        let new_base = append_until_segments(&log, &mut sent, 2);
        for _ in 0..(seed % 25) {
            append_now(&log, &mut sent);
        }
        if seed % 2 == 1 {
            // The held write completes last, after the writes behind it and some of the new
            // segment's; the seal's fdatasync is held, so nothing new is durable.
            disk.hold_syncs(true);
            disk.hold_write_at(None);
            for _ in 0..10 {
                append_now(&log, &mut sent);
            }
        }
        assert_eq!(log.durable_offset(), durable, "nothing new is durable");
        drop(log);
        disk.crash(seed);
        disk.hold_write_at(None);
        disk.hold_syncs(false);
        let old = disk.file_bytes(&seg(Offset(0))).expect("old segment");
        let held = HELD_AT as usize;
        let zeros_at_held =
            old.len() < held + 4096 || old[held..held + 4096].iter().all(|&b| b == 0);
        if zeros_at_held && old.len() > held + 4096 && old[held + 4096..].iter().any(|&b| b != 0) {
            // A later write survived and the held one did not: a hole in the middle.
            holes += 1;
        }
        let end = assert_recovers_a_prefix(&disk, &sent, durable);
        if end < new_base {
            old_cut += 1;
            // The torn old segment became the active one; the new segment is gone.
            assert_eq!(names(&disk, ".log"), [format!("{:020}.log", 0)]);
        }
        if end > new_base {
            new_kept += 1;
        }
        assert!(names(&disk, ".sealing").is_empty());
    }
    assert!(holes >= 5, "{holes} crashes left a hole in the old segment");
    assert!(old_cut >= 10, "{old_cut} crashes cut the old segment");
    assert!(new_kept >= 3, "{new_kept} crashes kept new-segment data");
}

#[test]
fn a_failed_write_of_the_old_segment_fails_its_seal_and_fences_the_log() {
    let disk = MemDisk::new();
    let (log, mut sent, durable, new_base) = rolled_with_old_write_held(&disk);
    // A waiter drives the seal, which waits for the old segment's writes: all but the held
    // one complete.
    let mut flush = Box::pin(log.flush());
    assert!(poll_n(flush.as_mut(), 100).is_none());
    assert_eq!(disk.writes_in_flight(), 1, "only the held write is left");
    // Appends go on meanwhile (less than a buffer: no write of the new segment).
    for _ in 0..3 {
        append_now(&log, &mut sent);
    }
    disk.fail_nth(FaultOp::Write, 1);
    disk.hold_write_at(None);
    let err = poll_n(flush.as_mut(), 1000)
        .expect("flush done")
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Io { op: "writing", .. }),
        "the seal reports the write's error: {err:?}"
    );
    drop(flush);
    assert_eq!(
        log.durable_offset(),
        durable,
        "nothing past the failure is durable"
    );
    assert!(matches!(
        block_on(log.append(batch(1, 1, 1, 1), LeaderEpoch(1))),
        Err(StorageError::Fenced)
    ));
    assert!(matches!(block_on(log.flush()), Err(StorageError::Fenced)));
    assert!(matches!(
        block_on(log.offset_for_timestamp(0, Offset(i64::MAX))),
        Err(StorageError::Fenced)
    ));
    drop(log);
    // The failed block never reached the file: reopening cuts the old segment there and removes
    // the new one, keeping everything durable.
    let end = assert_recovers_a_prefix(&disk, &sent, durable);
    assert!(end < new_base && end <= offset_at(&sent, HELD_AT));
    assert_eq!(names(&disk, ".log"), [format!("{:020}.log", 0)]);
}

#[test]
fn the_cleaner_waits_for_the_old_segments_writes_before_reading_its_file() {
    use spate_storage::compaction::OffsetMap;
    use spate_storage::{CleanConfig, CleanerState, Unthrottled};
    let disk = MemDisk::new();
    let (log, _, _, new_base) = rolled_with_old_write_held(&disk);
    let (mut map, mut state) = (OffsetMap::new(1 << 16), CleanerState::default());
    let (config, mut budget) = (CleanConfig::default(), Unthrottled);
    // Reading the old file now would meet the held block's zeros (a corrupt batch).
    let outcome = waits_until_released(
        log.clean(&mut map, &mut state, &config, 10_000, &mut budget),
        "waits for the held write",
        || disk.hold_write_at(None),
        10_000,
    )
    .expect("clean")
    .expect("due: the closed segment is all dirty");
    // `batch` records have no key: a compacted log drops them all.
    assert_eq!(outcome.segments_before, 1);
    assert_eq!(outcome.records_removed, new_base.0 as u64);
    assert_eq!(outcome.cleaned_up_to, new_base);
}

#[test]
fn a_stuck_write_of_the_old_segment_stops_appends_once_eight_buffers_of_the_new_one_are_written() {
    let disk = MemDisk::new();
    let (log, mut sent, _, new_base) = rolled_with_old_write_held(&disk);
    // The tail cache cannot evict past the old segment's unwritten batch, so all appended since
    // stays in memory: appends go on in the new segment (its writes complete) only until eight
    // of its buffers are written, not until the segment is full.
    let mut blocked = loop {
        let b = batch(4, 100, 5000, sent.len() as u64);
        sent.push(b.clone());
        let mut append = Box::pin(log.append(b, LeaderEpoch(1)));
        if poll_n(append.as_mut(), 100).is_none() {
            break append;
        }
        assert!(sent.len() < 10_000, "no append waited");
    };
    let new_bytes = (log.log_end_offset().0 - new_base.0) as usize / 4 * sent[0].len();
    let buffers = spate_storage::FULL_WRITES_QUEUED_MAX * 4096;
    assert!(
        (buffers..buffers + 2 * 4096).contains(&new_bytes),
        "{new_bytes} bytes appended to the new segment"
    );
    assert!(
        HELD_AT as usize > new_bytes,
        "the new segment's writes are not held"
    );
    disk.hold_write_at(None);
    poll_n(blocked.as_mut(), 1000)
        .expect("the append completes once the old segment's writes did")
        .expect("append");
    drop(blocked);
    assert_eq!(block_on(log.flush()).unwrap(), log.log_end_offset());
    assert_reads_back(&log, &sent);
    block_on(log.close()).expect("close");
    let end = assert_recovers_a_prefix(&disk, &sent, Offset(4 * sent.len() as i64));
    assert_eq!(end, Offset(4 * sent.len() as i64));
}

/// A failure of one of the seal's steps on the closed segment (armed by `arm` with the log's
/// directory paths): the append that collects the failed seal reports the I/O error `op`, every
/// later call `Fenced`; nothing past what was durable before the roll is reported durable; and a
/// crash then reopen recovers a dense prefix holding every durable offset, the marked segment
/// scanned as one whose seal may not have completed. Returns how many of the crashes cut the
/// closed segment short of the new segment's base (possible only where its fdatasync failed).
fn seal_step_failure_fences_the_log_and_recovers(op: &str, arm: impl Fn(&MemDisk)) -> usize {
    let mut old_cut = 0;
    for seed in 0..32u64 {
        let disk = MemDisk::new();
        let log = open(&disk);
        let mut sent = Vec::new();
        for _ in 0..(10 + seed % 20) {
            append_now(&log, &mut sent);
        }
        let durable = block_on(log.flush()).expect("flush");
        assert_eq!(durable, Offset(4 * sent.len() as i64));
        arm(&disk);
        let new_base = append_until_segments(&log, &mut sent, 2);
        // Appends poll the seal; the one that collects its failure reports the error and
        // appends nothing.
        let err = loop {
            let b = batch(4, 100, 1000 + sent.len() as i64, sent.len() as u64);
            let appended = poll_n(std::pin::pin!(log.append(b.clone(), LeaderEpoch(1))), 100)
                .expect("an append never waits for the seal");
            match appended {
                Ok(_) => sent.push(b),
                Err(e) => break e,
            }
            assert!(sent.len() < 10_000, "the seal never failed");
        };
        assert!(
            matches!(&err, StorageError::Io { op: got, .. } if *got == op),
            "the seal's {op} error first: {err:?}"
        );
        assert!(matches!(
            block_on(log.append(batch(1, 1, 1, 1), LeaderEpoch(1))),
            Err(StorageError::Fenced)
        ));
        assert!(matches!(block_on(log.flush()), Err(StorageError::Fenced)));
        assert!(matches!(block_on(log.drive_io()), Ok(())), "reported once");
        assert_eq!(
            log.durable_offset(),
            durable,
            "nothing past the failure is durable"
        );
        assert!(durable < new_base);
        drop(log);
        disk.crash(seed);
        // The marker outlived the failed seal: recovery treats the closed segment as one whose
        // seal may not have completed (a torn tail is cut, not reported as corruption).
        assert_eq!(names(&disk, ".sealing"), [format!("{:020}.sealing", 0)]);
        let end = assert_recovers_a_prefix(&disk, &sent, durable);
        if end < new_base {
            old_cut += 1;
            assert_eq!(names(&disk, ".log"), [format!("{:020}.log", 0)]);
        }
        assert!(names(&disk, ".sealing").is_empty());
    }
    old_cut
}

#[test]
fn a_failed_truncate_of_the_closed_segment_fences_the_log_and_recovery_keeps_every_durable_offset()
{
    let old_cut = seal_step_failure_fences_the_log_and_recovers("truncating", |disk| {
        disk.fail_next_on(FaultOp::Truncate, &seg(Offset(0)))
    });
    // Nothing of the closed segment after the flush was synced: crashes cut it.
    assert!(old_cut >= 5, "{old_cut} crashes cut the closed segment");
}

#[test]
fn a_failed_fdatasync_of_the_closed_segment_fences_the_log_and_recovery_keeps_every_durable_offset()
{
    let old_cut = seal_step_failure_fences_the_log_and_recovers("syncing", |disk| {
        disk.fail_next_on(FaultOp::Sync, &seg(Offset(0)))
    });
    assert!(old_cut >= 5, "{old_cut} crashes cut the closed segment");
}

#[test]
fn a_failed_removal_of_the_seal_marker_fences_the_log_and_recovery_keeps_the_synced_segment() {
    let marker = dir().join(format!("{:020}.sealing", 0));
    let old_cut = seal_step_failure_fences_the_log_and_recovers("removing", |disk| {
        disk.fail_next_on(FaultOp::Remove, &marker)
    });
    // The closed segment was cut and synced before the removal failed: every crash keeps it.
    assert_eq!(old_cut, 0);
}
