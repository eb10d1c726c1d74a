//! DeleteRecords on the in-memory disk: the log start moved by a client, its checkpoint, crashes
//! at every step of the move, a corrupt checkpoint, and retention and truncation around it.

mod common;

use std::path::Path;

use common::{batch, poll_n, read_all, small_config};
use spate_storage::io::mem::{FaultOp, MemDisk};
use spate_storage::{block_on, FlushPolicy, Log, ReadUpTo, StorageError, LOG_START_FILE};
use spate_wire::types::{LeaderEpoch, Offset};

const DIR: &str = "/data/topic-0";

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn open(disk: &MemDisk) -> Log<MemDisk> {
    block_on(Log::open(
        disk.clone(),
        dir(),
        small_config(FlushPolicy::Never),
    ))
    .expect("open")
}

/// Appends `n` batches of 4 records x 100 bytes (timestamps 1000 + i) and syncs them.
fn fill(log: &Log<MemDisk>, n: u64) {
    for i in 0..n {
        block_on(log.append(batch(4, 100, 1000 + i as i64, i), LeaderEpoch(1))).expect("append");
    }
    block_on(log.flush()).expect("flush");
}

/// Base offsets of every batch readable from the log start.
fn bases(log: &Log<MemDisk>) -> Vec<i64> {
    block_on(read_all(log, log.log_start_offset(), ReadUpTo::LogEnd))
        .expect("read")
        .iter()
        .map(|(h, _)| h.base_offset.0)
        .collect()
}

#[test]
fn delete_records_moves_the_start_and_removes_whole_segments_below_it() {
    let disk = MemDisk::new();
    let log = open(&disk);
    fill(&log, 400);
    let segments = block_on(log.segment_count());
    assert!(segments >= 4, "{segments} segments");
    // Inside a batch of a later segment: the start is exactly the offset asked for.
    let start = block_on(log.delete_records(Offset(1001))).unwrap();
    assert_eq!(start, Offset(1001));
    assert_eq!(log.log_start_offset(), Offset(1001));
    assert!(block_on(log.segment_count()) < segments);
    // Below the start: out of range; at it: the batch holding it, whole.
    assert!(matches!(
        block_on(log.read(Offset(1000), 1 << 20, ReadUpTo::LogEnd)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let kept = bases(&log);
    assert_eq!(kept.first(), Some(&1000));
    assert_eq!(kept.len(), 400 - 250);
    // Lower or equal: nothing changes, the current start is answered.
    assert_eq!(
        block_on(log.delete_records(Offset(10))).unwrap(),
        Offset(1001)
    );
    assert_eq!(
        block_on(log.delete_records(Offset(1001))).unwrap(),
        Offset(1001)
    );
    // Timestamps of deleted records are not answered.
    let found = block_on(log.offset_for_timestamp(0, log.high_watermark())).unwrap();
    assert_eq!(found.map(|(o, _)| o), Some(Offset(1001)));
}

#[test]
fn delete_records_refuses_an_offset_above_the_high_watermark() {
    let disk = MemDisk::new();
    let flush = FlushPolicy::GroupCommit {
        interval_ms: 1000,
        bytes_max: 1 << 30,
    };
    let log = block_on(Log::open(disk.clone(), dir(), small_config(flush))).unwrap();
    fill(&log, 10);
    // Appended but not synced: above the high watermark.
    block_on(log.append(batch(4, 100, 5000, 99), LeaderEpoch(1))).unwrap();
    assert_eq!(log.high_watermark(), Offset(40));
    assert!(matches!(
        block_on(log.delete_records(Offset(41))),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.log_start_offset(), Offset(0));
    // Up to the high watermark itself is fine: the log is then empty to readers.
    assert_eq!(
        block_on(log.delete_records(Offset(40))).unwrap(),
        Offset(40)
    );
    assert!(disk.file_bytes(&dir().join(LOG_START_FILE)).is_some());
}

#[test]
fn the_start_survives_a_clean_restart_and_a_crash() {
    let disk = MemDisk::new();
    let log = open(&disk);
    fill(&log, 300);
    block_on(log.delete_records(Offset(777))).unwrap();
    block_on(log.close()).unwrap();
    let log = open(&disk);
    assert_eq!(log.log_start_offset(), Offset(777));
    assert_eq!(bases(&log).first(), Some(&776));
    block_on(log.delete_records(Offset(900))).unwrap();
    drop(log);
    for seed in 0..8 {
        disk.crash(seed);
        let log = open(&disk);
        assert_eq!(log.log_start_offset(), Offset(900), "seed {seed}");
        assert_eq!(log.log_end_offset(), Offset(1200), "seed {seed}");
        assert_eq!(bases(&log).len(), 300 - 900 / 4, "seed {seed}");
    }
}

#[test]
fn a_crash_at_any_step_of_delete_records_leaves_the_old_or_the_new_start_and_every_record_above_it()
{
    let (mut old_seen, mut new_seen, mut done_seen) = (0, 0, 0);
    for steps in 0..60 {
        for seed in 0..3 {
            let disk = MemDisk::new();
            let log = open(&disk);
            fill(&log, 300);
            block_on(log.delete_records(Offset(100))).unwrap();
            let done = {
                let future = std::pin::pin!(log.delete_records(Offset(999)));
                poll_n(future, steps).is_some()
            };
            drop(log);
            disk.crash(seed);
            let log = open(&disk);
            let start = log.log_start_offset();
            assert!(
                start == Offset(100) || start == Offset(999),
                "steps {steps} seed {seed}: start {start:?}"
            );
            if done {
                assert_eq!(start, Offset(999), "acknowledged, then lost: steps {steps}");
                done_seen += 1;
            }
            if start == Offset(100) {
                old_seen += 1;
            } else {
                new_seen += 1;
            }
            assert_eq!(
                log.log_end_offset(),
                Offset(1200),
                "steps {steps} seed {seed}"
            );
            let kept = bases(&log);
            assert_eq!(
                kept.first(),
                Some(&(start.0 / 4 * 4)),
                "steps {steps} seed {seed}"
            );
            assert_eq!(kept.last(), Some(&1196), "steps {steps} seed {seed}");
            assert!(
                kept.windows(2).all(|w| w[1] == w[0] + 4),
                "no hole above the start"
            );
            // The retention pass removes what the crash left below the start.
            block_on(log.apply_retention(i64::MAX)).unwrap();
            assert_eq!(log.log_start_offset(), start);
            assert_eq!(bases(&log), kept);
        }
    }
    // Crashes fell before, during and after the move.
    assert!(
        old_seen > 0 && new_seen > done_seen && done_seen > 0,
        "{old_seen} {new_seen} {done_seen}"
    );
}

#[test]
fn a_corrupt_checkpoint_is_ignored_and_the_log_starts_at_its_first_segment() {
    for garbage in [
        &b""[..],
        b"0\n",
        b"0\n12",
        b"0\n-5\n",
        b"7\n12\n",
        b"0\n12\n13\n",
        b"\xff\xfe\n12\n",
        b"0\n99999999999999999999999\n",
    ] {
        let disk = MemDisk::new();
        let log = open(&disk);
        fill(&log, 10);
        block_on(log.close()).unwrap();
        block_on(spate_storage::files::write_atomically(
            &disk,
            dir(),
            LOG_START_FILE,
            garbage,
        ))
        .unwrap();
        let log = open(&disk);
        assert_eq!(log.log_start_offset(), Offset(0), "{garbage:?}");
        assert_eq!(bases(&log).len(), 10);
        // And a new move replaces it.
        block_on(log.delete_records(Offset(8))).unwrap();
        drop(log);
        assert_eq!(open(&disk).log_start_offset(), Offset(8));
    }
}

#[test]
fn a_checkpoint_past_the_log_end_is_clamped_to_it() {
    let disk = MemDisk::new();
    let log = open(&disk);
    fill(&log, 10);
    block_on(log.close()).unwrap();
    block_on(spate_storage::files::write_atomically(
        &disk,
        dir(),
        LOG_START_FILE,
        b"0\n5000\n",
    ))
    .unwrap();
    let log = open(&disk);
    assert_eq!(log.log_start_offset(), Offset(40));
    assert_eq!(log.log_end_offset(), Offset(40));
    // Rewritten, so records appended from here are not hidden at the next open.
    assert_eq!(
        disk.file_bytes(&dir().join(LOG_START_FILE)).as_deref(),
        Some(&b"0\n40\n"[..])
    );
}

#[test]
fn a_start_moved_over_records_a_crash_took_does_not_hide_later_records() {
    // Flush policy never: the high watermark is the log end, so the start may pass unsynced
    // records (the proptest model found this sequence).
    let disk = MemDisk::new();
    let log = open(&disk);
    block_on(log.append(batch(1, 10, 1000, 1), LeaderEpoch(1))).unwrap();
    assert_eq!(block_on(log.delete_records(Offset(1))).unwrap(), Offset(1));
    drop(log);
    disk.crash(0);
    let log = open(&disk);
    assert_eq!(
        log.log_end_offset(),
        Offset(0),
        "the unsynced record was lost"
    );
    assert_eq!(log.log_start_offset(), Offset(0));
    block_on(log.append(batch(1, 10, 2000, 2), LeaderEpoch(1))).unwrap();
    block_on(log.close()).unwrap();
    let log = open(&disk);
    assert_eq!(log.log_start_offset(), Offset(0));
    assert_eq!(bases(&log), vec![0]);
}

#[test]
fn a_failed_checkpoint_write_leaves_the_start_where_it_was() {
    let disk = MemDisk::new();
    let log = open(&disk);
    fill(&log, 300);
    disk.fail_nth(FaultOp::Sync, 1);
    assert!(block_on(log.delete_records(Offset(600))).is_err());
    assert_eq!(log.log_start_offset(), Offset(0));
    assert_eq!(bases(&log).len(), 300);
    drop(log);
    disk.crash(1);
    assert_eq!(open(&disk).log_start_offset(), Offset(0));
}

#[test]
fn retention_keeps_a_start_beyond_the_first_segment_and_truncation_brings_it_down() {
    let disk = MemDisk::new();
    let log = open(&disk);
    fill(&log, 300);
    block_on(log.delete_records(Offset(1150))).unwrap();
    let outcome = block_on(log.apply_retention(i64::MAX)).unwrap();
    assert_eq!(outcome.log_start_offset, Offset(1150));
    assert_eq!(log.log_start_offset(), Offset(1150));
    // A follower's truncation into the batch holding the start: the start follows the end.
    let end = block_on(log.truncate_to(Offset(1151))).unwrap();
    assert_eq!(end, Offset(1148));
    assert_eq!(log.log_start_offset(), Offset(1148));
    drop(log);
    disk.crash(2);
    let log = open(&disk);
    assert_eq!(log.log_start_offset(), Offset(1148));
    assert_eq!(log.log_end_offset(), Offset(1148));
    // Appends go on from there.
    block_on(log.append(batch(4, 100, 9000, 1), LeaderEpoch(1))).unwrap();
    assert_eq!(bases(&log), vec![1148]);
}

#[test]
fn size_bytes_counts_the_batches_of_every_segment() {
    let disk = MemDisk::new();
    let log = open(&disk);
    assert_eq!(block_on(log.size_bytes()), 0);
    fill(&log, 400);
    let one = batch(4, 100, 1000, 0).len() as u64;
    assert_eq!(block_on(log.size_bytes()), 400 * one);
    block_on(log.delete_records(Offset(1000))).unwrap();
    let kept = bases(&log).len() as u64;
    assert!(block_on(log.size_bytes()) < 400 * one);
    assert!(block_on(log.size_bytes()) >= kept * one);
}
