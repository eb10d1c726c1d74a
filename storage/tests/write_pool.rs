//! The per-core write-buffer budget (`spate_storage::pool`): an opened or idle log holds no
//! buffer, logs under a budget too small for them all still write every batch (smaller
//! buffers, then waiting for their own writes, then the minimum beyond the budget), and what
//! they wrote reads back byte for byte after a reopen and after a crash.
//!
//! Each test runs on its own thread, so each has a budget of its own.

mod common;

use std::path::PathBuf;

use bytes::BytesMut;
use common::{batch, read_all, small_config};
use spate_storage::io::mem::MemDisk;
use spate_storage::{block_on, pool, FlushPolicy, Log, LogConfig, ReadUpTo};
use spate_wire::types::{LeaderEpoch, Offset};

fn dir(i: usize) -> PathBuf {
    PathBuf::from(format!("/data/topic-{i}"))
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 256 << 10,
        ..small_config(FlushPolicy::GroupCommit {
            interval_ms: 10,
            bytes_max: 1 << 20,
        })
    }
}

fn open(disk: &MemDisk, i: usize) -> Log<MemDisk> {
    block_on(Log::open(disk.clone(), &dir(i), config())).expect("open")
}

/// Every batch of `log`, as bytes, and checks it is `sent`.
fn assert_holds(log: &Log<MemDisk>, sent: &[BytesMut]) {
    let back = block_on(read_all(log, Offset(0), ReadUpTo::LogEnd)).expect("read");
    assert_eq!(back.len(), sent.len());
    for (i, ((_, bytes), want)) in back.iter().zip(sent).enumerate() {
        // The base offset and leader epoch are patched in by the log; the rest (length, CRC,
        // records) is the batch as sent.
        assert_eq!(bytes[8..12], want[8..12], "batch {i}");
        assert_eq!(bytes[16..], want[16..], "batch {i}");
    }
}

#[test]
fn an_idle_log_gives_its_write_buffers_back_and_appends_after_the_partial_block() {
    pool::set_budget_bytes(1 << 20);
    let disk = MemDisk::new();
    let log = open(&disk, 0);
    assert_eq!(pool::stats().bytes_used, 0, "an opened log holds no buffer");
    let mut sent = Vec::new();
    let mut append = |log: &Log<MemDisk>, i: u64| {
        let b = batch(3, 150, 1000 + i as i64, i);
        block_on(log.append(b.clone(), LeaderEpoch(1))).expect("append");
        sent.push(b);
    };
    // Enough for a few full 32 KiB buffers and a partial last block.
    for i in 0..100 {
        append(&log, i);
    }
    assert!(pool::stats().bytes_used > 0, "a written log holds buffers");
    // The first call only notes the appended count; the second writes the unwritten tail;
    // once that write completed, the third lets the buffers go.
    assert!(!log.release_idle_buffers());
    assert!(!log.release_idle_buffers());
    block_on(log.drive_io()).expect("drive");
    assert!(log.release_idle_buffers());
    assert_eq!(pool::stats().bytes_used, 0, "an idle log holds no buffer");
    assert!(!log.release_idle_buffers(), "nothing more to give back");
    // The next append reads the partial last block back and goes on after it.
    for i in 100..150 {
        append(&log, i);
    }
    block_on(log.flush()).expect("flush");
    assert_holds(&log, &sent);
    block_on(log.close()).expect("close");
    let log = open(&disk, 0);
    assert_holds(&log, &sent);
    block_on(log.close()).expect("close");
}

#[test]
fn logs_sharing_a_budget_too_small_for_them_all_write_every_batch() {
    // Two and a half 32 KiB buffers' worth for eight logs that each want a 32 KiB buffer and
    // spares: the third gets a halved buffer, the others the minimum beyond the budget.
    let budget = 80 << 10;
    pool::set_budget_bytes(budget);
    let disk = MemDisk::new();
    let logs: Vec<_> = (0..8).map(|i| open(&disk, i)).collect();
    let mut sent: Vec<Vec<BytesMut>> = vec![Vec::new(); logs.len()];
    for round in 0..120u64 {
        for (i, log) in logs.iter().enumerate() {
            let b = batch(4, 200, 1000 + round as i64, round * 8 + i as u64);
            block_on(log.append(b.clone(), LeaderEpoch(1))).expect("append");
            sent[i].push(b);
        }
    }
    let stats = pool::stats();
    assert!(
        stats.shrunk > 0 && stats.overdrafts > 0,
        "the budget was short, so buffers shrank: {stats:?}"
    );
    // Beyond the budget only by the minimum per log, twice while a roll's closed segment
    // still writes the one it took.
    assert!(
        stats.bytes_peak <= budget + 2 * logs.len() * pool::WRITE_BUFFER_BYTES_MIN,
        "{stats:?}"
    );
    for log in &logs {
        block_on(log.flush()).expect("flush");
    }
    for (log, sent) in logs.iter().zip(&sent) {
        assert_holds(log, sent);
    }
    // Everything flushed is on the files: a crash loses none of it.
    drop(logs);
    disk.crash(3);
    for (i, sent) in sent.iter().enumerate() {
        let log = open(&disk, i);
        assert_holds(&log, sent);
        block_on(log.close()).expect("close");
    }
    assert_eq!(pool::stats().bytes_used, 0, "closed logs hold no buffer");
}

#[test]
fn the_tail_caches_of_a_core_stay_within_their_budget() {
    let budget = 64 << 10;
    pool::set_cache_budget_bytes(budget);
    let disk = MemDisk::new();
    // Each cache alone may hold 1 MiB: only the core's budget bounds them here.
    let config = LogConfig {
        tail_cache_bytes_max: 1 << 20,
        ..config()
    };
    let logs: Vec<_> = (0..4)
        .map(|i| block_on(Log::open(disk.clone(), &dir(i), config)).expect("open"))
        .collect();
    let mut sent: Vec<Vec<BytesMut>> = vec![Vec::new(); logs.len()];
    for round in 0..100u64 {
        for (i, log) in logs.iter().enumerate() {
            let b = batch(4, 500, 1000 + round as i64, round * 4 + i as u64);
            block_on(log.append(b.clone(), LeaderEpoch(1))).expect("append");
            sent[i].push(b);
        }
    }
    let appended: usize = sent.iter().flatten().map(|b| b.len()).sum();
    assert!(appended > 10 * budget, "far more appended than the budget");
    // Written batches were evicted as the logs appended; only unwritten ones (up to a write
    // buffer and its queue per log) may be beyond the budget.
    assert!(pool::stats().cache_bytes <= budget + 4 * (9 * (32 << 10)));
    for log in &logs {
        block_on(log.flush()).expect("flush");
        // Idle: the second call lets go of what is written.
        log.release_idle_buffers();
        log.release_idle_buffers();
    }
    assert!(pool::stats().cache_bytes <= budget, "{:?}", pool::stats());
    for (log, sent) in logs.iter().zip(&sent) {
        assert_holds(log, sent);
    }
    drop(logs);
    assert_eq!(
        pool::stats().cache_bytes,
        0,
        "dropped caches give everything back"
    );
}
