//! Idempotent producers through the log: duplicates answered with the original offsets, the
//! producer state rebuilt from snapshots and batch headers after crashes, truncation and
//! retention; and a property test against a model (random sends, retries, reorders, epoch
//! bumps, crashes, restarts): no batch is ever appended twice and no gap is accepted.
//! More cases: `PROPTEST_CASES=2000 cargo test -p spate-storage --test producer_log`.

mod common;

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use common::{read_all, small_config};
use proptest::prelude::*;
use spate_storage::io::mem::MemDisk;
use spate_storage::producer_state::ProducerError;
use spate_storage::{block_on, AppendKind, FlushPolicy, Log, LogConfig, ReadUpTo, StorageError};
use spate_wire::batch::{BatchBuilder, BatchSpec};
use spate_wire::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

fn dir() -> &'static Path {
    Path::new("/p")
}

fn snapshot(offset: i64) -> PathBuf {
    dir().join(format!("{offset:020}.snapshot"))
}

/// An idempotent producer's batch of `records` records of 100 bytes.
fn pbatch(pid: i64, epoch: i16, seq: i32, records: usize, timestamp_ms: i64) -> BytesMut {
    let mut out = BytesMut::new();
    let spec = BatchSpec {
        first_timestamp_ms: timestamp_ms,
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(epoch),
        base_sequence: seq,
        ..BatchSpec::default()
    };
    let mut builder = BatchBuilder::new(&mut out, spec);
    let value = [seq as u8; 100];
    for _ in 0..records {
        builder.push(timestamp_ms, None, Some(&value), &[]);
    }
    builder.finish();
    out
}

fn open_with(disk: &MemDisk, config: LogConfig) -> Log<MemDisk> {
    block_on(Log::open(disk.clone(), dir(), config)).expect("open")
}

fn open(disk: &MemDisk) -> Log<MemDisk> {
    open_with(disk, small_config(FlushPolicy::Never))
}

fn append(log: &Log<MemDisk>, b: BytesMut) -> Result<spate_storage::AppendInfo, StorageError> {
    block_on(log.append(b, LeaderEpoch(0)))
}

#[test]
fn a_retried_batch_is_not_appended_again_and_gets_its_original_offsets() {
    let disk = MemDisk::new();
    let log = open(&disk);
    append(&log, common::batch(3, 10, 0, 0)).unwrap();
    let first = append(&log, pbatch(1, 0, 0, 4, 0)).unwrap();
    assert_eq!(first.kind, AppendKind::Appended);
    assert_eq!(
        (first.base_offset, first.last_offset),
        (Offset(3), Offset(6))
    );
    append(&log, pbatch(1, 0, 4, 2, 0)).unwrap();
    let retry = append(&log, pbatch(1, 0, 0, 4, 0)).unwrap();
    assert_eq!(retry.kind, AppendKind::Duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (Offset(3), Offset(6))
    );
    assert_eq!(log.log_end_offset(), Offset(9));
    let gap = append(&log, pbatch(1, 0, 9, 1, 0)).unwrap_err();
    assert!(matches!(
        gap,
        StorageError::Producer(ProducerError::OutOfOrderSequence {
            sequence: 9,
            expected: 6,
            ..
        })
    ));
    let fenced = append(&log, pbatch(1, -1, 6, 1, 0));
    assert!(fenced.is_err());
    assert_eq!(
        log.log_end_offset(),
        Offset(9),
        "refused batches wrote nothing"
    );
}

#[test]
fn producer_state_survives_a_crash_without_any_snapshot() {
    let disk = MemDisk::new();
    let log = open(&disk);
    for i in 0..3 {
        append(&log, pbatch(5, 0, i * 2, 2, 0)).unwrap();
    }
    block_on(log.flush()).unwrap();
    drop(log);
    disk.crash(1);
    assert!(disk.file_bytes(&snapshot(6)).is_none());
    let log = open(&disk);
    // The replay's result is snapshotted at the recovered end, so the next open skips it.
    assert!(disk.file_bytes(&snapshot(6)).is_some());
    let retry = append(&log, pbatch(5, 0, 2, 2, 0)).unwrap();
    assert_eq!(retry.kind, AppendKind::Duplicate);
    assert_eq!(retry.base_offset, Offset(2));
    assert_eq!(
        append(&log, pbatch(5, 0, 6, 1, 0)).unwrap().base_offset,
        Offset(6)
    );
    // Another crash and recovery: the newer snapshot replaces the older one in the segment.
    block_on(log.flush()).unwrap();
    drop(log);
    disk.crash(2);
    let log = open(&disk);
    assert!(disk.file_bytes(&snapshot(7)).is_some());
    assert!(disk.file_bytes(&snapshot(6)).is_none());
    let state = block_on(log.producer_state());
    assert_eq!(state.get(ProducerId(5)).unwrap().batches.len(), 4);
}

#[test]
fn segment_rolls_and_clean_close_write_snapshots_used_on_reopen() {
    let disk = MemDisk::new();
    let log = open(&disk);
    // 64 KiB segments, batches of ~1.3 KiB: several rolls.
    let mut seq = 0;
    for _ in 0..120 {
        append(&log, pbatch(9, 3, seq, 12, 0)).unwrap();
        seq += 12;
    }
    let segments = block_on(log.segment_count());
    assert!(segments >= 3, "{segments} segments");
    let snapshots: Vec<PathBuf> = disk
        .paths()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    assert_eq!(snapshots.len(), segments - 1, "one per roll: {snapshots:?}");
    let end = log.log_end_offset();
    block_on(log.close()).unwrap();
    assert!(disk.file_bytes(&snapshot(end.0)).is_some());
    let log = open(&disk);
    let state = block_on(log.producer_state());
    let entry = state.get(ProducerId(9)).expect("producer known");
    assert_eq!(entry.epoch, ProducerEpoch(3));
    assert_eq!(entry.batches.len(), 5);
    assert_eq!(entry.batches.back().unwrap().last_sequence, seq - 1);
    assert_eq!(entry.batches.back().unwrap().last_offset, Offset(end.0 - 1));
    assert!(block_on(
        log.is_last_batch_of_producer(ProducerId(9), Offset(end.0 - 1))
    ));
    // A damaged newest snapshot falls back to an older one plus replay: same state.
    drop(log);
    disk.flip_bit(&snapshot(end.0), 20, 1);
    let log = open(&disk);
    assert_eq!(block_on(log.producer_state()), state);
}

#[test]
fn truncation_rebuilds_the_producer_state() {
    let disk = MemDisk::new();
    let log = open(&disk);
    let mut seq = 0;
    for _ in 0..100 {
        append(&log, pbatch(2, 0, seq, 12, 0)).unwrap();
        seq += 12;
    }
    // Cut in the middle of the last segment and in an earlier one.
    for cut in [1100, 300] {
        let end = block_on(log.truncate_to(Offset(cut))).unwrap();
        let state = block_on(log.producer_state());
        let last = state
            .get(ProducerId(2))
            .unwrap()
            .batches
            .back()
            .copied()
            .unwrap();
        assert_eq!(last.last_offset, Offset(end.0 - 1));
        assert_eq!(last.last_sequence as i64, end.0 - 1);
        // The next batch continues right after the cut, not after the removed batches.
        let next = pbatch(2, 0, end.0 as i32, 12, 0);
        assert_eq!(append(&log, next).unwrap().base_offset, end);
        assert!(disk
            .paths()
            .iter()
            .filter_map(|p| p
                .file_name()?
                .to_str()?
                .strip_suffix(".snapshot")
                .map(str::to_owned))
            .all(|o| o.parse::<i64>().unwrap() <= end.0));
        block_on(log.truncate_to(end)).unwrap();
    }
}

#[test]
fn retention_drops_old_snapshots_and_keeps_producers_deduplicated() {
    let disk = MemDisk::new();
    let mut config = small_config(FlushPolicy::Never);
    config.retention_bytes = Some(70 << 10);
    let log = open_with(&disk, config);
    let mut seq = 0;
    for _ in 0..150 {
        append(&log, pbatch(4, 0, seq, 12, 0)).unwrap();
        seq += 12;
    }
    // Another producer's only batch lands in the first segment, which retention deletes.
    let retention = block_on(log.apply_retention(0)).unwrap();
    assert!(retention.segments_deleted >= 1);
    let start = retention.log_start_offset;
    for path in disk.paths() {
        if let Some(o) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".snapshot"))
        {
            assert!(
                o.parse::<i64>().unwrap() >= start.0,
                "{path:?} below {start}"
            );
        }
    }
    assert!(disk.file_bytes(&snapshot(start.0)).is_some());
    let before = block_on(log.producer_state());
    block_on(log.flush()).unwrap();
    drop(log);
    disk.crash(5);
    let log = open_with(&disk, config);
    assert_eq!(block_on(log.producer_state()), before);
    let retry = append(&log, pbatch(4, 0, seq - 12, 12, 0)).unwrap();
    assert_eq!(retry.kind, AppendKind::Duplicate);
}

#[test]
fn idle_producers_expire_and_the_bound_refuses_new_ones() {
    let disk = MemDisk::new();
    let mut config = small_config(FlushPolicy::Never);
    config.producers_per_partition_max = 2;
    config.producer_id_expiration_ms = 1000;
    let log = open_with(&disk, config);
    append(&log, pbatch(1, 0, 0, 1, 100)).unwrap();
    append(&log, pbatch(2, 0, 0, 1, 5000)).unwrap();
    let refused = append(&log, pbatch(3, 0, 0, 1, 5000)).unwrap_err();
    assert!(matches!(
        refused,
        StorageError::Producer(ProducerError::TooManyProducers { producers_max: 2 })
    ));
    assert_eq!(block_on(log.remove_expired_producers(1100)), 1);
    assert_eq!(
        append(&log, pbatch(3, 0, 0, 1, 5000)).unwrap().base_offset,
        Offset(2)
    );
}

// ---- property test against a model ----

const PRODUCERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Send { p: usize, records: usize },
    Retry { p: usize, back: usize },
    Gap { p: usize, skip: i32 },
    BumpEpoch { p: usize },
    OldEpoch { p: usize },
    Plain,
    Flush,
    Crash { seed: u64 },
    Restart,
    Truncate { back: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..PRODUCERS, 1usize..8).prop_map(|(p, records)| Op::Send { p, records }),
        6 => (0..PRODUCERS, 0usize..8).prop_map(|(p, back)| Op::Retry { p, back }),
        2 => (0..PRODUCERS, 1i32..5).prop_map(|(p, skip)| Op::Gap { p, skip }),
        1 => (0..PRODUCERS).prop_map(|p| Op::BumpEpoch { p }),
        1 => (0..PRODUCERS).prop_map(|p| Op::OldEpoch { p }),
        2 => Just(Op::Plain),
        2 => Just(Op::Flush),
        2 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
        1 => Just(Op::Restart),
        1 => (0i64..40).prop_map(|back| Op::Truncate { back }),
    ]
}

/// A batch the log acknowledged, as the model remembers it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    epoch: i16,
    seq: i32,
    records: usize,
    first_offset: Offset,
}

#[derive(Debug, Default, Clone)]
struct Producer {
    epoch: i16,
    next_seq: i32,
    /// Acknowledged batches still in the log, oldest first.
    acked: Vec<Sent>,
}

impl Producer {
    /// What the partition should remember: the last five batches of the latest epoch.
    fn remembered(&self) -> Vec<Sent> {
        let Some(last) = self.acked.last() else {
            return Vec::new();
        };
        let same: Vec<Sent> = self
            .acked
            .iter()
            .filter(|s| s.epoch == last.epoch)
            .copied()
            .collect();
        same[same.len().saturating_sub(5)..].to_vec()
    }
}

fn model_config() -> LogConfig {
    let mut config = small_config(FlushPolicy::Never);
    config.segment_bytes_max = 8 << 10;
    config.preallocate_bytes = 4 << 10;
    config
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_batch_is_appended_twice_and_no_gap_is_accepted(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        let disk = MemDisk::new();
        let mut log = Some(open_with(&disk, model_config()));
        let mut producers = vec![Producer::default(); PRODUCERS];
        let pid = |p: usize| p as i64 + 100;
        for op in ops {
            let l = log.as_ref().unwrap();
            let end = l.log_end_offset();
            match op {
                Op::Send { p, records } => {
                    let pr = &mut producers[p];
                    let info = append(l, pbatch(pid(p), pr.epoch, pr.next_seq, records, 0)).unwrap();
                    prop_assert_eq!(info.kind, AppendKind::Appended);
                    prop_assert_eq!(info.base_offset, end);
                    pr.acked.push(Sent { epoch: pr.epoch, seq: pr.next_seq, records, first_offset: end });
                    pr.next_seq += records as i32;
                }
                Op::Retry { p, back } => {
                    let pr = &producers[p];
                    if pr.acked.is_empty() {
                        continue;
                    }
                    let s = pr.acked[pr.acked.len() - 1 - back.min(pr.acked.len() - 1)];
                    let remembered = pr.remembered();
                    let result = append(l, pbatch(pid(p), s.epoch, s.seq, s.records, 0));
                    let state_epoch = pr.acked.last().unwrap().epoch;
                    if remembered.iter().any(|r| r.seq == s.seq && r.epoch == s.epoch) {
                        let info = result.unwrap();
                        prop_assert_eq!(info.kind, AppendKind::Duplicate);
                        prop_assert_eq!(info.base_offset, s.first_offset);
                    } else if s.epoch < state_epoch {
                        let fenced = matches!(result, Err(StorageError::Producer(ProducerError::InvalidProducerEpoch { .. })));
                        prop_assert!(fenced);
                    } else {
                        let ooo = matches!(result, Err(StorageError::Producer(ProducerError::OutOfOrderSequence { .. })));
                        prop_assert!(ooo);
                    }
                    prop_assert_eq!(l.log_end_offset(), end);
                }
                Op::Gap { p, skip } => {
                    let pr = &producers[p];
                    if pr.acked.last().is_none_or(|s| s.epoch != pr.epoch) {
                        continue;
                    }
                    let result = append(l, pbatch(pid(p), pr.epoch, pr.next_seq + skip, 1, 0));
                    let ooo = matches!(result, Err(StorageError::Producer(ProducerError::OutOfOrderSequence { .. })));
                    prop_assert!(ooo);
                    prop_assert_eq!(l.log_end_offset(), end);
                }
                Op::BumpEpoch { p } => {
                    producers[p].epoch += 1;
                    producers[p].next_seq = 0;
                }
                Op::OldEpoch { p } => {
                    let pr = &producers[p];
                    let Some(last) = pr.acked.last() else { continue };
                    if last.epoch == 0 {
                        continue;
                    }
                    let result = append(l, pbatch(pid(p), last.epoch - 1, 0, 1, 0));
                    let fenced = matches!(result, Err(StorageError::Producer(ProducerError::InvalidProducerEpoch { .. })));
                    prop_assert!(fenced);
                    prop_assert_eq!(l.log_end_offset(), end);
                }
                Op::Plain => {
                    append(l, common::batch(2, 50, 0, 1)).unwrap();
                }
                Op::Flush => {
                    block_on(l.flush()).unwrap();
                }
                Op::Crash { seed } => {
                    drop(log.take());
                    disk.crash(seed);
                    let reopened = open_with(&disk, model_config());
                    let new_end = reopened.log_end_offset();
                    prop_assert!(new_end <= end);
                    for pr in &mut producers {
                        // Lost batches are what the client re-sends (with the same sequences).
                        pr.acked.retain(|s| s.first_offset < new_end);
                        pr.next_seq = match pr.acked.last() {
                            Some(s) if s.epoch == pr.epoch => s.seq + s.records as i32,
                            _ => 0,
                        };
                    }
                    log = Some(reopened);
                }
                Op::Truncate { back } => {
                    let new_end = block_on(l.truncate_to(Offset((end.0 - back).max(0)))).unwrap();
                    prop_assert!(new_end <= end);
                    for pr in &mut producers {
                        // Removed batches: what a follower-to-leader change makes the client resend.
                        pr.acked.retain(|s| s.first_offset < new_end);
                        pr.next_seq = match pr.acked.last() {
                            Some(s) if s.epoch == pr.epoch => s.seq + s.records as i32,
                            _ => 0,
                        };
                    }
                }
                Op::Restart => {
                    block_on(log.take().unwrap().close()).unwrap();
                    log = Some(open_with(&disk, model_config()));
                    prop_assert_eq!(log.as_ref().unwrap().log_end_offset(), end);
                }
            }
        }
        // The log holds exactly the acknowledged batches that survived, each once.
        let l = log.as_ref().unwrap();
        let all = block_on(read_all(l, Offset(0), ReadUpTo::LogEnd)).unwrap();
        for (p, pr) in producers.iter().enumerate() {
            let in_log: Vec<(i16, i32, Offset)> = all
                .iter()
                .filter(|(h, _)| h.producer_id == ProducerId(pid(p)))
                .map(|(h, _)| (h.producer_epoch.0, h.base_sequence, h.base_offset))
                .collect();
            let expected: Vec<(i16, i32, Offset)> =
                pr.acked.iter().map(|s| (s.epoch, s.seq, s.first_offset)).collect();
            prop_assert_eq!(in_log, expected);
        }
    }
}
