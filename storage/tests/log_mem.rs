//! Log behaviour on the in-memory disk: append, read, recovery, faults, truncation, retention.

mod common;

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use common::{batch, join_all, poll_n, read_all, small_config};
use spate_storage::io::mem::{FaultOp, MemDisk};
use spate_storage::{block_on, FlushPolicy, Log, LogConfig, ReadChunk, ReadUpTo, StorageError};
use spate_wire::batch::{batches, BatchBuilder, BatchSpec};
use spate_wire::types::{LeaderEpoch, Offset};

const DIR: &str = "/data/topic-0";

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn seg(base: i64) -> PathBuf {
    dir().join(format!("{base:020}.log"))
}

fn open(disk: &MemDisk, flush: FlushPolicy) -> Log<MemDisk> {
    block_on(Log::open(disk.clone(), dir(), small_config(flush))).expect("open")
}

/// Appends `n` batches of 4 records x 100 bytes, timestamps 1000 + i.
fn fill(log: &Log<MemDisk>, n: u64) -> Vec<BytesMut> {
    let mut sent = Vec::new();
    for i in 0..n {
        let b = batch(4, 100, 1000 + i as i64, i);
        sent.push(b.clone());
        block_on(log.append(b, LeaderEpoch(1))).expect("append");
    }
    sent
}

#[test]
fn append_assigns_dense_offsets_and_reads_back_the_same_bytes() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    let mut expected_base = 0;
    for i in 0..120u64 {
        let info = block_on(log.append(batch(3, 200, 5000 + i as i64, i), LeaderEpoch(7))).unwrap();
        assert_eq!(info.base_offset, Offset(expected_base));
        assert_eq!(info.last_offset, Offset(expected_base + 2));
        expected_base += 3;
    }
    assert_eq!(log.log_end_offset(), Offset(360));
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(all.len(), 120);
    for (i, (header, bytes)) in all.iter().enumerate() {
        assert_eq!(header.base_offset, Offset(i as i64 * 3));
        assert_eq!(header.partition_leader_epoch, LeaderEpoch(7));
        // Same bytes as sent, except the two patched header fields.
        let mut sent = batch(3, 200, 5000 + i as i64, i as u64);
        spate_wire::batch::set_base_offset(&mut sent, Offset(i as i64 * 3));
        spate_wire::batch::set_partition_leader_epoch(&mut sent, LeaderEpoch(7));
        assert_eq!(&bytes[..], &sent[..]);
    }
    // Several segments were rolled (64 KiB each) and older batches came from file ranges.
    assert!(block_on(log.segment_count()) >= 2);
}

#[test]
fn read_from_the_middle_of_a_batch_returns_the_whole_batch() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 200);
    for offset in [1, 2, 401, 797] {
        let result = block_on(log.read(Offset(offset), 1, ReadUpTo::LogEnd)).unwrap();
        assert_eq!(result.chunks.len(), 1, "one batch for a 1-byte budget");
        let bytes = match &result.chunks[0] {
            ReadChunk::Memory(b) => b.to_bytes(),
            ReadChunk::File(r) => block_on(r.load()).unwrap(),
        };
        let header = spate_wire::batch::BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.base_offset, Offset(offset / 4 * 4));
        assert_eq!(result.next_offset, Offset(offset / 4 * 4 + 4));
    }
    // The oldest data is served from the file, the newest from memory.
    let old = block_on(log.read(Offset(0), 1 << 20, ReadUpTo::LogEnd)).unwrap();
    assert!(matches!(old.chunks[0], ReadChunk::File(_)));
    let new = block_on(log.read(Offset(796), 1 << 20, ReadUpTo::LogEnd)).unwrap();
    assert!(matches!(new.chunks[0], ReadChunk::Memory(_)));
}

#[test]
fn reads_outside_the_log_are_out_of_range_and_the_end_is_empty() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 3);
    let end = block_on(log.read(Offset(12), 100, ReadUpTo::LogEnd)).unwrap();
    assert!(end.chunks.is_empty());
    let err = block_on(log.read(Offset(13), 100, ReadUpTo::LogEnd)).unwrap_err();
    assert!(matches!(
        err,
        StorageError::OffsetOutOfRange {
            offset: Offset(13),
            end: Offset(12),
            ..
        }
    ));
}

#[test]
fn high_watermark_follows_durability_under_group_commit() {
    let disk = MemDisk::new();
    let policy = TIMER_ONLY;
    let log = open(&disk, policy);
    fill(&log, 5);
    assert_eq!(log.log_end_offset(), Offset(20));
    assert_eq!(log.high_watermark(), Offset(0));
    let hidden = block_on(log.read(Offset(0), 1 << 20, ReadUpTo::HighWatermark)).unwrap();
    assert!(hidden.chunks.is_empty());
    assert_eq!(block_on(log.flush()).unwrap(), Offset(20));
    assert_eq!(log.durable_offset(), Offset(20));
    assert_eq!(
        block_on(read_all(&log, Offset(0), ReadUpTo::HighWatermark))
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn concurrent_waiters_share_one_fdatasync() {
    let disk = MemDisk::new();
    let policy = TIMER_ONLY;
    let log = open(&disk, policy);
    // The first append of an epoch syncs the epoch checkpoint; keep that out of the count.
    block_on(log.append(batch(2, 50, 1, 99), LeaderEpoch(0))).unwrap();
    let syncs_before = disk.sync_count();
    let futures = (0..16u64)
        .map(|i| {
            let log = &log;
            Box::pin(async move {
                let info = log.append(batch(2, 50, 1, i), LeaderEpoch(0)).await?;
                log.wait_durable(info.last_offset.next()).await?;
                Ok::<_, StorageError>(info.last_offset)
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>
        })
        .collect();
    let results = join_all(futures);
    assert_eq!(results.len(), 16);
    assert!(results
        .iter()
        .all(|r: &Result<Offset, StorageError>| r.is_ok()));
    assert_eq!(log.durable_offset(), Offset(34));
    let syncs = disk.sync_count() - syncs_before;
    assert!((1..=2).contains(&syncs), "16 waiters needed {syncs} syncs");
}

#[test]
fn every_append_policy_makes_each_append_durable() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::EveryAppend);
    for i in 0..5 {
        let info = block_on(log.append(batch(1, 10, 1, i), LeaderEpoch(0))).unwrap();
        assert_eq!(log.durable_offset(), info.last_offset.next());
    }
    drop(log);
    disk.crash(99);
    let log = open(&disk, FlushPolicy::EveryAppend);
    assert_eq!(log.log_end_offset(), Offset(5));
}

#[test]
fn torn_tail_is_truncated_on_recovery() {
    let (mut torn, mut whole) = (0, 0);
    for seed in 0..40 {
        let disk = replay_history(seed);
        let log = open(&disk, FlushPolicy::Never);
        let end = log.log_end_offset().0;
        assert!(
            end == 12 || end == 16 || end == 20,
            "end {end} on a batch boundary"
        );
        let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
        assert_eq!(all.len() as i64, end / 4);
        if end < 20 {
            torn += 1;
        } else {
            whole += 1;
        }
        // Appends resume densely after the cut.
        let info = block_on(log.append(batch(1, 10, 5, 77), LeaderEpoch(1))).unwrap();
        assert_eq!(info.base_offset, Offset(end));
    }
    assert!(torn > 0 && whole > 0, "torn {torn}, whole {whole}");
}

/// Three synced batches, two written but unsynced, then a crash with `seed`.
fn replay_history(seed: u64) -> MemDisk {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 3);
    block_on(log.flush()).unwrap();
    fill(&log, 2);
    block_on(log.offset_for_timestamp(0, Offset(i64::MAX))).unwrap();
    drop(log);
    disk.crash(seed);
    disk
}

#[test]
fn a_torn_write_cut_mid_batch_leaves_only_whole_batches() {
    // Count seeds whose cut left bytes of a partial batch past the last whole one.
    let mut partial = 0;
    for seed in 0..100 {
        let disk = replay_history(seed);
        let before = disk.file_bytes(&seg(0)).unwrap();
        let last_nonzero = before.iter().rposition(|&b| b != 0).unwrap_or(0);
        let log = open(&disk, FlushPolicy::Never);
        let end = log.log_end_offset().0;
        let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
        assert_eq!(all.len() as i64, end / 4);
        let kept = disk.file_bytes(&seg(0)).unwrap().len();
        if last_nonzero >= kept {
            partial += 1;
        }
    }
    assert!(partial > 0, "no seed tore a batch in the middle");
}

#[test]
fn flipped_bit_in_a_closed_segment_is_reported_and_never_served() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 300);
    assert!(block_on(log.segment_count()) >= 3);
    block_on(log.close()).unwrap();
    // Flip a bit inside the records of the third batch of the first (closed) segment.
    let len = batch(4, 100, 0, 0).len() as u64;
    disk.flip_bit(&seg(0), 2 * len + 200, 3);
    // The checkpoint says the segment is whole, so open succeeds, but reading it fails.
    let log = open(&disk, FlushPolicy::Never);
    let err = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap_err();
    assert!(
        matches!(err, StorageError::CorruptBatch { ref segment, .. } if *segment == seg(0)),
        "{err}"
    );
    // A reader that takes what is intact gets the two batches before the bad one, and the
    // damage beside them; a read from the bad batch gets nothing and the damage.
    let read = block_on(log.read(Offset(0), 1 << 20, ReadUpTo::LogEnd)).unwrap();
    let ReadChunk::File(range) = &read.chunks[0] else {
        panic!("a closed segment is read from its file")
    };
    let loaded = block_on(range.load_valid()).unwrap();
    assert_eq!(loaded.bytes.len() as u64, 2 * len);
    let offsets: Vec<_> = batches(&loaded.bytes)
        .map(|b| b.unwrap().0.base_offset)
        .collect();
    assert_eq!(offsets, [Offset(0), Offset(4)]);
    assert!(
        matches!(loaded.damage, Some(StorageError::CorruptBatch { position, .. }) if position == 2 * len),
        "{:?}",
        loaded.damage
    );
    let read = block_on(log.read(Offset(8), 1 << 20, ReadUpTo::LogEnd)).unwrap();
    let ReadChunk::File(range) = &read.chunks[0] else {
        panic!("a closed segment is read from its file")
    };
    let loaded = block_on(range.load_valid()).unwrap();
    assert!(loaded.bytes.is_empty() && loaded.damage.is_some());
    drop(log);
    // Without the index checkpoint the segment is rescanned and the partition refuses to open.
    block_on(spate_storage::io::Disk::remove(
        &disk,
        &dir().join(format!("{:020}.index", 0)),
    ))
    .unwrap();
    let err = block_on(Log::open(
        disk.clone(),
        dir(),
        small_config(FlushPolicy::Never),
    ))
    .unwrap_err();
    assert!(
        matches!(err, StorageError::CorruptBatch { position, .. } if position == 2 * len),
        "{err}"
    );
}

#[test]
fn missing_or_corrupt_index_is_rebuilt() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    let sent = fill(&log, 300);
    block_on(log.close()).unwrap();
    let index0 = dir().join(format!("{:020}.index", 0));
    let before = disk.file_bytes(&index0).unwrap();
    block_on(spate_storage::io::Disk::remove(&disk, &index0)).unwrap();
    let seg1 = block_on(open_and_count(&disk));
    assert_eq!(seg1, sent.len());
    // Rebuilt identically.
    assert_eq!(disk.file_bytes(&index0).unwrap(), before);
    // A corrupt checkpoint is ignored and rebuilt too.
    disk.flip_bit(&index0, 30, 1);
    assert_eq!(block_on(open_and_count(&disk)), sent.len());
    assert_eq!(disk.file_bytes(&index0).unwrap(), before);
}

async fn open_and_count(disk: &MemDisk) -> usize {
    let log = Log::open(disk.clone(), dir(), small_config(FlushPolicy::Never))
        .await
        .unwrap();
    let n = read_all(&log, Offset(0), ReadUpTo::LogEnd)
        .await
        .unwrap()
        .len();
    log.close().await.unwrap();
    n
}

#[test]
fn preallocation_steps_double_so_a_segment_takes_few_of_them() {
    let disk = MemDisk::new();
    let config = small_config(FlushPolicy::Never);
    let (step, segment_max) = (config.preallocate_bytes, config.segment_bytes_max);
    assert_eq!(
        segment_max,
        4 * step,
        "the test expects two steps after the first"
    );
    let log = open(&disk, FlushPolicy::Never);
    let segment = disk
        .paths()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("the first segment");
    let file_len = || disk.file_bytes(&segment).expect("segment").len() as u64;
    let mut lengths = vec![file_len()];
    let mut size = 0u64;
    for i in 0..130u64 {
        let b = batch(4, 100, 1000 + i as i64, i);
        if size + b.len() as u64 > segment_max {
            break;
        }
        block_on(log.append(b.clone(), LeaderEpoch(1))).expect("append");
        size += b.len() as u64;
        if file_len() != *lengths.last().expect("a length") {
            lengths.push(file_len());
        }
        assert!(file_len() >= size);
    }
    assert!(size > 2 * step, "the appends needed the last step");
    assert_eq!(lengths, vec![step, 2 * step, 4 * step]);
    assert_eq!(block_on(log.segment_count()), 1);
}

#[test]
fn preallocation_steps_are_capped_and_a_grown_file_recovers_whole() {
    let disk = MemDisk::new();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        preallocate_bytes: 4 << 10,
        preallocate_step_bytes_max: 16 << 10,
        ..small_config(FlushPolicy::EveryAppend)
    };
    let log = block_on(Log::open(disk.clone(), dir(), config)).expect("open");
    let segment = disk
        .paths()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("the first segment");
    let file_len = || disk.file_bytes(&segment).expect("segment").len() as u64;
    assert_eq!(
        file_len(),
        4 << 10,
        "an empty partition holds one small step"
    );
    let mut lengths = vec![file_len()];
    let mut sent = Vec::new();
    for i in 0..200u64 {
        let b = batch(4, 100, 1000 + i as i64, i);
        block_on(log.append(b.clone(), LeaderEpoch(1))).expect("append");
        sent.push(b);
        if file_len() != *lengths.last().expect("a length") {
            lengths.push(file_len());
        }
    }
    let size = block_on(log.size_bytes());
    assert!(size > 64 << 10, "the appends needed several capped steps");
    // Doubling up to the cap, then one cap per step: never more than a step ahead.
    assert_eq!(lengths[..4], [4 << 10, 8 << 10, 16 << 10, 32 << 10]);
    for pair in lengths.windows(2).skip(3) {
        assert_eq!(pair[1] - pair[0], 16 << 10);
    }
    assert!(file_len() - size <= 16 << 10);
    // Crash with the grown file (zeros after the data): recovery finds every batch.
    drop(log);
    disk.crash(7);
    let log = block_on(Log::open(disk.clone(), dir(), config)).expect("reopen");
    let back = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).expect("read");
    assert_eq!(back.len(), sent.len());
    block_on(log.close()).expect("close");
}

/// A log with 4 KiB write buffers (so a few appends fill one) and one batch appended, whose
/// first write (the epoch file's, at position 0) must happen before a hold by position.
fn small_buffer_log(disk: &MemDisk) -> Log<MemDisk> {
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        write_buffer_bytes_max: 4096,
        ..small_config(FlushPolicy::Never)
    };
    let log = block_on(Log::open(disk.clone(), dir(), config)).expect("open");
    block_on(log.append(batch(4, 100, 1000, 0), LeaderEpoch(1))).expect("append");
    log
}

type PendingAppend<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = spate_storage::Result<spate_storage::AppendInfo>> + 'a>,
>;

/// Appends batches until one does not finish within 100 polls (an append that hands over a
/// buffer yields once, so one poll is not enough); returns how many finished (counting the one
/// `small_buffer_log` appended) and the blocked one. `check` runs after each append.
fn append_until_blocked<'a>(
    log: &'a Log<MemDisk>,
    appends_max: u64,
    check: impl Fn(),
) -> (u64, PendingAppend<'a>) {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    let mut appended = 1u64;
    for i in 1..appends_max {
        let mut append: PendingAppend<'a> =
            Box::pin(log.append(batch(4, 100, 1000 + i as i64, i), LeaderEpoch(1)));
        let done = (0..100).find_map(|_| match append.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        });
        check();
        match done {
            Some(result) => {
                result.expect("append");
                appended += 1;
            }
            None => return (appended, append),
        }
    }
    panic!("{appends_max} appends and none blocked");
}

#[test]
fn appends_queue_full_buffers_while_the_device_lags_but_submit_only_two_at_once() {
    let disk = MemDisk::new();
    let log = small_buffer_log(&disk);
    disk.hold_writes(true);
    let (appended, blocked) = append_until_blocked(&log, 400, || {
        assert!(disk.writes_in_flight() <= spate_storage::WRITES_IN_FLIGHT_MAX)
    });
    assert_eq!(disk.writes_in_flight(), spate_storage::WRITES_IN_FLIGHT_MAX);
    // Every queued buffer holds 4096 bytes of ~450-byte batches: the queue let appends go on
    // far past the two writes in flight.
    let bytes: u64 = appended * batch(4, 100, 0, 0).len() as u64;
    let queued_min = (spate_storage::FULL_WRITES_QUEUED_MAX as u64) * 4096;
    assert!(
        bytes >= queued_min,
        "{bytes} bytes appended before the queue filled"
    );
    disk.hold_writes(false);
    block_on(blocked).expect("the blocked append completes once writes do");
    block_on(log.flush()).expect("flush");
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(all.len() as u64, appended + 1);
}

#[test]
fn a_write_stuck_while_later_ones_complete_stops_appends_instead_of_panicking() {
    let disk = MemDisk::new();
    let log = small_buffer_log(&disk);
    // The first buffer's write hangs (the device completes writes out of order); the writes of
    // the buffers after it complete, and their ranges wait to join the written prefix. Without
    // a bound on those ranges, appends never block here (and an assertion fired).
    disk.hold_write_at(Some(0));
    let (appended, blocked) = append_until_blocked(&log, 1000, || {});
    assert!(
        appended >= 9,
        "appends went on past the stuck write ({appended})"
    );
    disk.hold_write_at(None);
    block_on(blocked).expect("the blocked append completes once the write does");
    block_on(log.flush()).expect("flush");
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(all.len() as u64, appended + 1);
}

#[test]
fn disk_full_fails_the_append_cleanly_and_appends_resume_after() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 20);
    let end = log.log_end_offset();
    disk.set_quota_bytes(Some(disk.used_bytes()));
    let mut failures = 0;
    for i in 0..100 {
        match block_on(log.append(batch(4, 100, 1, i), LeaderEpoch(1))) {
            Ok(_) => {}
            Err(StorageError::DiskFull { .. }) => {
                failures += 1;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(
        failures, 1,
        "the quota must be hit within the preallocated space"
    );
    let end_full = log.log_end_offset();
    assert!(end_full >= end);
    // The log is consistent: everything appended reads back.
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(Offset(all.len() as i64 * 4), end_full);
    disk.set_quota_bytes(None);
    let info = block_on(log.append(batch(4, 100, 1, 5), LeaderEpoch(1))).unwrap();
    assert_eq!(info.base_offset, end_full);
    block_on(log.flush()).unwrap();
    drop(log);
    disk.crash(3);
    let log = open(&disk, FlushPolicy::Never);
    assert_eq!(log.log_end_offset(), end_full.next().next().next().next());
}

#[test]
fn failed_fdatasync_fences_the_log_until_reopen() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 2);
    disk.fail_nth(FaultOp::Sync, 1);
    assert!(matches!(
        block_on(log.flush()),
        Err(StorageError::Io { .. })
    ));
    assert!(matches!(
        block_on(log.append(batch(1, 1, 1, 1), LeaderEpoch(1))),
        Err(StorageError::Fenced)
    ));
    assert_eq!(log.durable_offset(), Offset(0));
    drop(log);
    let log = open(&disk, FlushPolicy::Never);
    assert_eq!(
        log.log_end_offset(),
        Offset(8),
        "written data is recovered and re-validated"
    );
}

#[test]
fn truncate_to_cuts_before_the_containing_batch_and_appends_continue() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 300);
    let segments = block_on(log.segment_count());
    assert_eq!(block_on(log.truncate_to(Offset(402))).unwrap(), Offset(400));
    assert_eq!(log.log_end_offset(), Offset(400));
    assert!(block_on(log.segment_count()) < segments);
    let info = block_on(log.append(batch(2, 10, 1, 1), LeaderEpoch(2))).unwrap();
    assert_eq!(info.base_offset, Offset(400));
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(all.len(), 101);
    assert_eq!(all[100].0.partition_leader_epoch, LeaderEpoch(2));
    let epochs = block_on(log.epochs());
    assert_eq!(epochs.entries().len(), 2);
    assert_eq!(
        block_on(log.end_offset_for_epoch(LeaderEpoch(1))),
        Some((LeaderEpoch(1), Offset(400)))
    );
    block_on(log.truncate_to(Offset(400))).unwrap();
    assert_eq!(block_on(log.epochs()).entries().len(), 1);
    // Truncation is durable: a crash does not bring the removed batches back.
    drop(log);
    disk.crash(5);
    let log = open(&disk, FlushPolicy::Never);
    assert_eq!(log.log_end_offset(), Offset(400));
    assert_eq!(block_on(log.epochs()).entries().len(), 1);
}

#[test]
fn retention_deletes_old_closed_segments_but_readers_keep_their_ranges() {
    let disk = MemDisk::new();
    let mut config = small_config(FlushPolicy::Never);
    config.retention_bytes = Some(100 << 10);
    let log = block_on(Log::open(disk.clone(), dir(), config)).unwrap();
    fill(&log, 600);
    let held = block_on(log.read(Offset(0), 1 << 20, ReadUpTo::LogEnd)).unwrap();
    let ReadChunk::File(range) = held.chunks[0].clone() else {
        panic!("old data from file")
    };
    let outcome = block_on(log.apply_retention(0)).unwrap();
    assert!(outcome.segments_deleted >= 2);
    assert!(outcome.log_start_offset > Offset(0));
    assert_eq!(log.log_start_offset(), outcome.log_start_offset);
    assert!(disk.file_bytes(&seg(0)).is_none(), "segment file unlinked");
    // The reader that held a range into the deleted segment still reads its bytes.
    let bytes = block_on(range.load()).unwrap();
    assert_eq!(bytes.len() as u64, range.length);
    let err = block_on(log.read(Offset(0), 100, ReadUpTo::LogEnd)).unwrap_err();
    assert!(matches!(err, StorageError::OffsetOutOfRange { .. }));
    let remaining = block_on(read_all(&log, outcome.log_start_offset, ReadUpTo::LogEnd)).unwrap();
    let total: usize = remaining.iter().map(|(_, b)| b.len()).sum();
    assert!(((100 << 10)..(164 << 10)).contains(&total), "{total}");
    // Time retention: everything is older than the cutoff, but the active segment stays.
    let mut config = small_config(FlushPolicy::Never);
    config.retention_ms = Some(10);
    block_on(log.close()).unwrap();
    let log = block_on(Log::open(disk.clone(), dir(), config)).unwrap();
    block_on(log.apply_retention(1_000_000)).unwrap();
    assert_eq!(block_on(log.segment_count()), 1);
    assert_eq!(log.log_end_offset(), Offset(2400));
}

#[test]
fn offset_for_timestamp_finds_the_first_batch_at_or_after() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 300);
    assert_eq!(
        block_on(log.offset_for_timestamp(0, Offset(i64::MAX))).unwrap(),
        Some((Offset(0), 1000))
    );
    assert_eq!(
        block_on(log.offset_for_timestamp(1150, Offset(i64::MAX))).unwrap(),
        Some((Offset(600), 1150))
    );
    assert_eq!(
        block_on(log.offset_for_timestamp(1299, Offset(i64::MAX))).unwrap(),
        Some((Offset(1196), 1299))
    );
    assert_eq!(
        block_on(log.offset_for_timestamp(1300, Offset(i64::MAX))).unwrap(),
        None
    );
}

#[test]
fn segments_roll_by_age_of_their_first_batch() {
    let disk = MemDisk::new();
    let mut config = small_config(FlushPolicy::Never);
    config.segment_ms = 100;
    let log = block_on(Log::open(disk.clone(), dir(), config)).unwrap();
    for ts in [0, 50, 100, 101, 150, 202] {
        block_on(log.append(batch(1, 10, ts, 0), LeaderEpoch(0))).unwrap();
    }
    // Rolls before ts 101 (101 - 0 > 100) and before 202 (202 - 101 > 100).
    assert_eq!(block_on(log.segment_count()), 3);
    assert!(disk.file_bytes(&seg(3)).is_some());
    assert!(disk.file_bytes(&seg(5)).is_some());
}

#[test]
fn clean_close_and_reopen_keeps_everything() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 250);
    let before = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    block_on(log.close()).unwrap();
    disk.crash(1);
    let log = open(&disk, FlushPolicy::Never);
    let after = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(before.len(), 250);
    assert_eq!(
        before.iter().map(|b| &b.1).collect::<Vec<_>>(),
        after.iter().map(|b| &b.1).collect::<Vec<_>>()
    );
}

#[test]
fn invalid_batches_are_rejected_without_writing() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    let mut bad = batch(2, 10, 1, 1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        block_on(log.append(bad, LeaderEpoch(0))),
        Err(StorageError::InvalidBatch(_))
    ));
    let big = batch(20, 1000, 1, 1);
    assert!(matches!(
        block_on(log.append(big, LeaderEpoch(0))),
        Err(StorageError::BatchTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(0));
}

#[test]
fn eio_on_a_write_fences_the_log_and_reopen_recovers_the_written_prefix() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 10);
    block_on(log.flush()).unwrap();
    let durable = log.durable_offset();
    disk.fail_nth(FaultOp::Write, 1);
    // Appends until the failing write surfaces (the 32 KiB buffer fills after ~66 batches).
    let mut failed = None;
    for i in 0..200 {
        if let Err(e) = block_on(log.append(batch(4, 100, 1, i), LeaderEpoch(1))) {
            failed = Some(e);
            break;
        }
    }
    assert!(
        matches!(failed, Some(StorageError::Io { .. })),
        "{failed:?}"
    );
    assert!(matches!(block_on(log.flush()), Err(StorageError::Fenced)));
    assert!(matches!(
        block_on(log.append(batch(1, 1, 1, 1), LeaderEpoch(1))),
        Err(StorageError::Fenced)
    ));
    drop(log);
    let log = open(&disk, FlushPolicy::Never);
    assert!(log.log_end_offset() >= durable);
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(Offset(all.len() as i64 * 4), log.log_end_offset());
}

#[test]
fn disk_full_at_every_allocation_point_including_rolls_leaves_the_log_consistent() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    let (mut failures, mut failed_rolls) = (0, 0);
    for i in 0..400u64 {
        // No free space at all: any append that needs a new block or a new segment fails.
        disk.set_quota_bytes(Some(disk.used_bytes()));
        let end = log.log_end_offset();
        let segments = block_on(log.segment_count());
        match block_on(log.append(batch(4, 100, 1000 + i as i64, i), LeaderEpoch(1))) {
            Ok(info) => assert_eq!(info.base_offset, end),
            Err(StorageError::DiskFull { .. }) => {
                failures += 1;
                assert_eq!(log.log_end_offset(), end, "a failed append changes nothing");
                disk.set_quota_bytes(None);
                let info = block_on(log.append(batch(4, 100, 1000 + i as i64, i), LeaderEpoch(1)))
                    .expect("append resumes once space is free");
                assert_eq!(info.base_offset, end);
                if block_on(log.segment_count()) > segments {
                    failed_rolls += 1;
                }
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(failures >= 10, "{failures} failures");
    assert!(failed_rolls >= 1, "no roll hit the full disk");
    disk.set_quota_bytes(None);
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(all.len(), 400);
    block_on(log.close()).unwrap();
    let log = open(&disk, FlushPolicy::Never);
    assert_eq!(log.log_end_offset(), Offset(1600));
}

#[test]
fn bit_rot_in_the_durable_part_of_the_active_segment_is_reported_not_cut_off() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 60);
    // The sync covers ~30 KiB, past `active_checkpoint_bytes` (8 KiB): the active segment's
    // checkpoint now covers everything durable.
    block_on(log.flush()).unwrap();
    assert_eq!(block_on(log.segment_count()), 1);
    assert!(disk
        .file_bytes(&dir().join(format!("{:020}.index", 0)))
        .is_some());
    drop(log);
    disk.crash(11);
    let len = batch(4, 100, 0, 0).len() as u64;
    disk.flip_bit(&seg(0), 2 * len + 300, 6);
    let log = open(&disk, FlushPolicy::Never);
    // Nothing durable was cut off as a "torn tail"...
    assert_eq!(log.log_end_offset(), Offset(240));
    // ...and the rotten batch is never served.
    let err = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap_err();
    assert!(
        matches!(err, StorageError::CorruptBatch { position, .. } if position == 2 * len),
        "{err}"
    );
    let after = block_on(read_all(&log, Offset(12), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(after.len(), 57);
}

/// Polls `future` up to `polls` times (MemDisk futures only yield and wake themselves).
/// Group commit on the timer only: no byte trigger starts a sync behind the test's back.
const TIMER_ONLY: FlushPolicy = FlushPolicy::GroupCommit {
    interval_ms: 5,
    bytes_max: 1 << 30,
};

/// Crashes the disk, reopens and checks every batch in `sent` reads back byte for byte but
/// for the offset and epoch fields the log writes.
fn assert_recovers(disk: &MemDisk, sent: &[BytesMut], seed: u64) {
    disk.crash(seed);
    let log = open(disk, FlushPolicy::Never);
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(all.len(), sent.len());
    for ((_, got), want) in all.iter().zip(sent) {
        assert_eq!(got.len(), want.len());
        // Past baseOffset, batchLength and partitionLeaderEpoch: the producer's bytes.
        assert_eq!(&got[17..], &want[17..]);
    }
}

#[test]
fn appends_go_on_while_a_syncs_writes_are_pending() {
    let disk = MemDisk::new();
    let policy = TIMER_ONLY;
    let log = open(&disk, policy);
    let mut sent = fill(&log, 3);
    let syncs_before = disk.sync_count();
    disk.hold_writes(true);
    let mut flush = Box::pin(log.flush());
    assert!(poll_n(flush.as_mut(), 100).is_none());
    // The sync submitted the tail write and is waiting for it, not holding up appends.
    assert_eq!(disk.writes_in_flight(), 1);
    let b = batch(4, 100, 2000, 7);
    sent.push(b.clone());
    let info = poll_n(std::pin::pin!(log.append(b, LeaderEpoch(1))), 100)
        .expect("an append completes while the sync's write is pending")
        .unwrap();
    assert_eq!(info.base_offset, Offset(12));
    assert_eq!(log.durable_offset(), Offset(0));
    assert_eq!(
        disk.sync_count(),
        syncs_before,
        "no fdatasync before the write completed"
    );
    disk.hold_writes(false);
    assert_eq!(
        poll_n(flush.as_mut(), 1000).expect("flush done").unwrap(),
        Offset(12)
    );
    drop(flush);
    assert_eq!(disk.sync_count(), syncs_before + 1);
    assert_eq!(block_on(log.flush()).unwrap(), Offset(16));
    drop(log);
    assert_recovers(&disk, &sent, 7);
}

/// A log whose segments hold many 32 KiB write buffers (`small_config` rolls every 64 KiB).
fn open_large_segments(disk: &MemDisk, flush: FlushPolicy) -> Log<MemDisk> {
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config(flush)
    };
    block_on(Log::open(disk.clone(), dir(), config)).expect("open")
}

/// Appends batches until `done` holds, each append completing without waiting; returns them.
fn append_until(log: &Log<MemDisk>, seed: u64, done: impl Fn() -> bool) -> Vec<BytesMut> {
    let mut sent = Vec::new();
    while !done() {
        assert!(sent.len() < 1000, "condition never reached");
        let b = batch(4, 100, 2000, seed + sent.len() as u64);
        sent.push(b.clone());
        poll_n(std::pin::pin!(log.append(b, LeaderEpoch(1))), 100)
            .unwrap_or_else(|| panic!("append {} waited", sent.len()))
            .unwrap();
    }
    sent
}

#[test]
fn a_full_buffer_overlapping_a_syncs_tail_write_is_chained_behind_it_without_waiting() {
    let disk = MemDisk::new();
    let policy = TIMER_ONLY;
    let log = open_large_segments(&disk, policy);
    let mut sent = fill(&log, 3);
    disk.hold_writes(true);
    let mut flush = Box::pin(log.flush());
    assert!(poll_n(flush.as_mut(), 100).is_none());
    assert_eq!(disk.writes_in_flight(), 1, "the sync's tail write");
    // The first 32 KiB buffer to fill covers the tail write's block: it is chained, not
    // submitted (MemDisk panics on overlapping writes in flight), and the append goes on. The
    // second is disjoint and submitted at once.
    // All batches are the same size; the offsets at which the first two buffers are full.
    let per_buffer = (32 << 10) as f64 / sent[0].len() as f64;
    let full = |n: f64| Offset(4 * (n * per_buffer).ceil() as i64);
    sent.extend(append_until(&log, 100, || {
        log.log_end_offset() >= full(1.0)
    }));
    assert_eq!(
        disk.writes_in_flight(),
        1,
        "the first full buffer is chained"
    );
    sent.extend(append_until(&log, 200, || {
        log.log_end_offset() >= full(2.0)
    }));
    assert_eq!(disk.writes_in_flight(), 2, "the second is submitted");
    // A third full buffer would exceed the bound on queued writes: that append waits.
    let mut blocked = loop {
        let b = batch(4, 100, 2000, 300 + sent.len() as u64);
        sent.push(b.clone());
        let mut append = Box::pin(log.append(b, LeaderEpoch(1)));
        if poll_n(append.as_mut(), 100).is_none() {
            break append;
        }
        assert!(sent.len() < 1000, "no append waited");
    };
    assert_eq!(disk.writes_in_flight(), 2);
    assert_eq!(log.durable_offset(), Offset(0));
    disk.hold_writes(false);
    assert!(poll_n(blocked.as_mut(), 1000).expect("append done").is_ok());
    drop(blocked);
    assert_eq!(
        poll_n(flush.as_mut(), 1000).expect("flush done").unwrap(),
        Offset(12),
        "the sync covers what was appended when it started"
    );
    drop(flush);
    assert_eq!(block_on(log.flush()).unwrap(), log.log_end_offset());
    assert_eq!(disk.writes_in_flight(), 0);
    drop(log);
    // The chained buffer landed after the tail write it overlaps: every byte reads back.
    assert_recovers(&disk, &sent, 11);
}

#[test]
fn a_task_dropped_while_it_waits_for_writes_under_the_lock_loses_none() {
    let disk = MemDisk::new();
    let log = open_large_segments(&disk, FlushPolicy::Never);
    // The first append also writes the leader-epoch checkpoint, which must not be held.
    let mut sent = fill(&log, 1);
    disk.hold_writes(true);
    sent.extend(append_until(&log, 10, || disk.writes_in_flight() == 1));
    {
        // A timestamp lookup writes the tail and waits for every write under the lock; it is
        // dropped while they are held.
        let mut lookup = std::pin::pin!(log.offset_for_timestamp(0, Offset(i64::MAX)));
        assert!(poll_n(lookup.as_mut(), 100).is_none());
        assert_eq!(disk.writes_in_flight(), 2, "the full buffer and the tail");
    }
    // The writes stay queued: the next waiter completes them.
    disk.hold_writes(false);
    sent.extend(fill(&log, 5));
    assert_eq!(block_on(log.flush()).unwrap(), log.log_end_offset());
    assert_eq!(disk.writes_in_flight(), 0);
    let found = block_on(log.offset_for_timestamp(1002, Offset(i64::MAX))).unwrap();
    assert!(found.is_some());
    drop(log);
    assert_recovers(&disk, &sent, 5);
}

#[test]
fn a_dropped_sync_leaves_its_writes_to_the_next_one() {
    let disk = MemDisk::new();
    let policy = TIMER_ONLY;
    let log = open(&disk, policy);
    let mut sent = fill(&log, 3);
    disk.hold_writes(true);
    {
        let mut flush = std::pin::pin!(log.flush());
        assert!(poll_n(flush.as_mut(), 100).is_none());
        assert_eq!(disk.writes_in_flight(), 1);
    }
    // Dropped with its write pending: the write is kept (not lost, not fenced) and the next
    // sync completes it before writing the tail again.
    assert_eq!(disk.writes_in_flight(), 1);
    sent.extend(fill(&log, 2));
    disk.hold_writes(false);
    assert_eq!(block_on(log.flush()).unwrap(), Offset(20));
    assert_eq!(disk.writes_in_flight(), 0);
    drop(log);
    assert_recovers(&disk, &sent, 13);
}

#[test]
#[should_panic(expected = "overlapping writes in flight")]
fn mem_disk_rejects_overlapping_writes_in_flight() {
    use spate_storage::io::{Disk, DiskFile, OpenMode};
    let disk = MemDisk::new();
    block_on(disk.create_dir_all(dir())).unwrap();
    let file = block_on(disk.open(&seg(0), OpenMode::CreateTruncate)).unwrap();
    disk.hold_writes(true);
    let mut first = std::pin::pin!(file.write_at(file.alloc_buf(8192), 0));
    assert!(poll_n(first.as_mut(), 10).is_none());
    let mut second = std::pin::pin!(file.write_at(file.alloc_buf(4096), 4096));
    let _ = poll_n(second.as_mut(), 10);
}

#[test]
fn a_sync_spanning_a_truncation_does_not_cover_batches_appended_after_it() {
    let disk = MemDisk::new();
    let policy = FlushPolicy::GroupCommit {
        interval_ms: 1,
        bytes_max: 1,
    };
    let log = open(&disk, policy);
    // Starts a background sync (target offset 5) that is still in flight afterwards.
    block_on(log.append(batch(5, 0, 1, 1), LeaderEpoch(0))).unwrap();
    assert_eq!(block_on(log.truncate_to(Offset(0))).unwrap(), Offset(0));
    let b = batch(1, 0, 2, 2);
    block_on(log.append(b.clone(), LeaderEpoch(0))).unwrap();
    // The old sync must not count for the new batch at offset 0: a sync of it must run.
    assert_eq!(block_on(log.flush()).unwrap(), Offset(1));
    drop(log);
    assert_recovers(&disk, &[b], 0);
}

#[test]
fn a_failed_write_of_a_sync_fences_the_log_and_appends_made_meanwhile() {
    let disk = MemDisk::new();
    let policy = TIMER_ONLY;
    let log = open(&disk, policy);
    fill(&log, 3);
    disk.hold_writes(true);
    let mut flush = Box::pin(log.flush());
    assert!(poll_n(flush.as_mut(), 100).is_none());
    // The sync's tail write fails when it completes.
    disk.fail_nth(FaultOp::Write, 1);
    let info = block_on(log.append(batch(4, 100, 2000, 7), LeaderEpoch(1))).unwrap();
    assert_eq!(info.base_offset, Offset(12));
    disk.hold_writes(false);
    let err = poll_n(flush.as_mut(), 1000)
        .expect("flush done")
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Io { op: "writing", .. }),
        "{err:?}"
    );
    drop(flush);
    assert_eq!(log.durable_offset(), Offset(0));
    assert!(matches!(
        block_on(log.append(batch(1, 10, 3000, 8), LeaderEpoch(1))),
        Err(StorageError::Fenced)
    ));
    assert!(matches!(block_on(log.flush()), Err(StorageError::Fenced)));
    assert!(block_on(log.truncate_to(Offset(4))).is_err());
    drop(log);
    // Reopen re-validates: whole batches only, dense from 0.
    let log = open(&disk, policy);
    let end = log.log_end_offset().0;
    let all = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).unwrap();
    assert_eq!(all.len() as i64 * 4, end);
    assert!(end <= 16);
}

/// A batch whose records carry the given timestamps (CreateTime), in order.
fn batch_stamped(timestamps: &[i64]) -> BytesMut {
    let mut out = BytesMut::new();
    let spec = BatchSpec {
        first_timestamp_ms: timestamps[0],
        ..BatchSpec::default()
    };
    let mut builder = BatchBuilder::new(&mut out, spec);
    for &ts in timestamps {
        builder.push(ts, None, Some(b"v"), &[]);
    }
    builder.finish();
    out
}

#[test]
fn a_timestamp_lookup_answers_the_first_record_at_or_after_not_the_batch() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    // Kafka's own case: two records stamped 1234 and 999999999999 in one batch.
    block_on(log.append(batch_stamped(&[1234, 999_999_999_999]), LeaderEpoch(1))).unwrap();
    block_on(log.append(batch_stamped(&[50, 60, 2000]), LeaderEpoch(1))).unwrap();
    let end = log.log_end_offset();
    let at = |ts| block_on(log.offset_for_timestamp(ts, end)).unwrap();
    assert_eq!(at(0), Some((Offset(0), 1234)));
    assert_eq!(at(1234), Some((Offset(0), 1234)));
    assert_eq!(at(1235), Some((Offset(1), 999_999_999_999)));
    assert_eq!(at(999_999_999_999), Some((Offset(1), 999_999_999_999)));
    assert_eq!(at(1_000_000_000_000), None);
    // Below the limit only: the record at offset 1 is not visible yet.
    assert_eq!(
        block_on(log.offset_for_timestamp(1235, Offset(1))).unwrap(),
        None
    );
    // In log order, not timestamp order: 1234 at offset 0 is the first at or after 55.
    assert_eq!(at(55), Some((Offset(0), 1234)));
}

#[test]
fn the_max_timestamp_is_the_first_record_that_carries_it_below_the_limit() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    assert_eq!(
        block_on(log.offset_of_max_timestamp(Offset(0))).unwrap(),
        None
    );
    block_on(log.append(batch_stamped(&[10, 30, 20]), LeaderEpoch(1))).unwrap();
    block_on(log.append(batch_stamped(&[30, 5]), LeaderEpoch(1))).unwrap();
    block_on(log.append(batch_stamped(&[7, 90]), LeaderEpoch(1))).unwrap();
    let end = log.log_end_offset();
    assert_eq!(end, Offset(7));
    let max = |limit| block_on(log.offset_of_max_timestamp(limit)).unwrap();
    assert_eq!(max(end), Some((Offset(6), 90)));
    // 90 is not visible below offset 6: the first 30 (offset 1) is the largest before it.
    assert_eq!(max(Offset(6)), Some((Offset(1), 30)));
    assert_eq!(max(Offset(1)), Some((Offset(0), 10)));
    assert_eq!(max(Offset(0)), None);
}

#[test]
fn the_max_timestamp_is_found_across_rolled_segments() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    // Many batches over several segments; the largest stamp sits in the middle.
    let mut peak = None;
    for i in 0..2000i64 {
        let ts = if i == 700 { 1_000_000 } else { 1000 + i };
        let info =
            block_on(log.append(batch_stamped(&[ts - 1, ts, ts - 2]), LeaderEpoch(1))).unwrap();
        if i == 700 {
            peak = Some(Offset(info.base_offset.0 + 1));
        }
    }
    assert!(
        block_on(log.segment_count()) > 1,
        "the test needs several segments"
    );
    let found = block_on(log.offset_of_max_timestamp(log.log_end_offset())).unwrap();
    assert_eq!(found, Some((peak.unwrap(), 1_000_000)));
}

#[test]
fn a_live_config_change_applies_at_the_next_append_and_retention_pass() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    // 100 batches of ~450 bytes: under the 64 KiB segments, one segment.
    fill(&log, 100);
    assert_eq!(block_on(log.segment_count()), 1);
    let mut config = log.config();
    config.segment_bytes_max = 16 << 10;
    config.retention_bytes = Some(20 << 10);
    config.batch_bytes_max = 1024;
    log.set_config(config);
    assert_eq!(log.config(), config);
    // The larger batch is refused by the new limit; the next ones roll at the new size.
    let big = batch(4, 400, 5000, 1);
    assert!(matches!(
        block_on(log.append(big, LeaderEpoch(1))),
        Err(StorageError::BatchTooLarge {
            bytes_max: 1024,
            ..
        })
    ));
    fill(&log, 100);
    let segments = block_on(log.segment_count());
    assert!(segments >= 3, "{segments} segments");
    let outcome = block_on(log.apply_retention(0)).unwrap();
    assert!(outcome.segments_deleted >= 2, "{outcome:?}");
    assert!(log.log_start_offset() >= Offset(400));
}

#[test]
fn leaving_flush_never_keeps_the_high_watermark_where_it_was() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 10);
    assert_eq!(log.high_watermark(), Offset(40));
    let mut config = log.config();
    config.flush = FlushPolicy::GroupCommit {
        interval_ms: 5,
        bytes_max: 1 << 20,
    };
    log.set_config(config);
    // Nothing was synced, yet what consumers could read stays readable.
    assert_eq!(log.high_watermark(), Offset(40));
    fill(&log, 2);
    assert_eq!(
        log.high_watermark(),
        Offset(40),
        "new appends wait for a sync"
    );
    block_on(log.wait_durable(Offset(48))).unwrap();
    assert_eq!(log.high_watermark(), Offset(48));
}

/// A batch's base offset is not covered by its CRC: one flipped far past the range a read
/// covers is caught as damage too, not served as a jump in offsets.
#[test]
fn a_flipped_base_offset_is_reported_and_never_served() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 300);
    block_on(log.close()).unwrap();
    let len = batch(4, 100, 0, 0).len() as u64;
    // The high byte of the third batch's base offset.
    disk.flip_bit(&seg(0), 2 * len, 4);
    let log = open(&disk, FlushPolicy::Never);
    let read = block_on(log.read(Offset(0), 1 << 20, ReadUpTo::LogEnd)).unwrap();
    let ReadChunk::File(range) = &read.chunks[0] else {
        panic!("a closed segment is read from its file")
    };
    let loaded = block_on(range.load_valid()).unwrap();
    assert_eq!(loaded.bytes.len() as u64, 2 * len);
    assert_eq!(loaded.resume_at, Offset(8));
    assert!(loaded.damage.is_some());
}

/// A preallocation step that fails with an I/O error (not a full disk) fences the log, as a
/// failed write does: the device is failing, and a broker must notice rather than refuse every
/// append forever. (A full disk refuses the append and leaves the log open.)
#[test]
fn a_failed_preallocation_step_fences_the_log() {
    let disk = MemDisk::new();
    let log = open(&disk, FlushPolicy::Never);
    fill(&log, 2);
    disk.fail_nth(FaultOp::Allocate, 1);
    let mut failed = None;
    // Batches of ~450 bytes: the first 16 KiB step runs out within about 40 of them.
    for i in 0..200u64 {
        if let Err(e) = block_on(log.append(batch(4, 100, 2000 + i as i64, i), LeaderEpoch(1))) {
            failed = Some(e);
            break;
        }
    }
    let failed = failed.expect("a preallocation step was needed and failed");
    assert!(
        !matches!(failed, StorageError::DiskFull { .. }),
        "{failed:?}"
    );
    assert!(
        log.is_fenced(),
        "an I/O error while preallocating must fence the log"
    );
    assert!(matches!(
        block_on(log.append(batch(4, 100, 9999, 1), LeaderEpoch(1))),
        Err(StorageError::Fenced)
    ));
}

#[test]
fn group_commit_sends_each_byte_to_the_device_about_once() {
    // A sync writes the partial tail from a copy; the write buffer then starts over at the
    // last partial block, so the full-buffer write that follows does not rewrite what the
    // tail writes covered. Before, nearly every byte went to the device twice under group
    // commit (a sync every millisecond fills no buffer between two syncs).
    let disk = MemDisk::new();
    let config = LogConfig {
        segment_bytes_max: 16 << 20,
        batch_bytes_max: 64 << 10,
        write_buffer_bytes_max: 64 << 10,
        active_checkpoint_bytes: 1 << 30,
        ..small_config(TIMER_ONLY)
    };
    let log = block_on(Log::open(disk.clone(), dir(), config)).expect("open");
    let before = disk.written_bytes();
    let mut appended = 0u64;
    let rounds = 100u64;
    for round in 0..rounds {
        for i in 0..12 {
            let b = batch(4, 1000, 1000, round * 12 + i);
            appended += b.len() as u64;
            block_on(log.append(b, LeaderEpoch(1))).expect("append");
        }
        block_on(log.flush()).expect("flush");
    }
    let written = disk.written_bytes() - before;
    // Each sync may rewrite the block the previous one left partial and pads its last block.
    let per_sync_overhead = 2 * spate_storage::io::BLOCK_BYTES as u64;
    assert!(
        written <= appended + rounds * per_sync_overhead,
        "{written} bytes written for {appended} appended in {rounds} syncs"
    );
    assert_eq!(
        block_on(read_all(&log, Offset(0), ReadUpTo::HighWatermark))
            .unwrap()
            .len() as u64,
        rounds * 12
    );
}
