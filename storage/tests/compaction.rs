//! Log compaction on `MemDisk`: a model-based property test (random keyed appends, cleanings,
//! reopens and crashes against the full append history), and crash tests of the segment swap.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spate_storage::compaction::OffsetMap;
use spate_storage::io::mem::{FaultOp, MemDisk};
use spate_storage::io::Disk;
use spate_storage::producer_state::AbortedTxn;
use spate_storage::AppendKind;
use spate_storage::{
    block_on, CleanConfig, CleanOutcome, CleanerState, FlushPolicy, Log, LogConfig, ReadUpTo,
    Unthrottled,
};
use spate_wire::batch::{
    compute_crc, put_txn_marker, set_transactional, BatchBuilder, BatchSpec, Compression,
    ControlType, BATCH_HEADER_BYTES,
};
use spate_wire::compression::compress;
use spate_wire::records::batch_records;
use spate_wire::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

const DELETE_RETENTION_MS: i64 = 100;

fn dir() -> &'static Path {
    Path::new("/compacted")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        index_interval_bytes: 512,
        ..common::small_config(FlushPolicy::EveryAppend)
    }
}

fn clean_config(ratio: f64) -> CleanConfig {
    CleanConfig {
        delete_retention_ms: DELETE_RETENTION_MS,
        min_compaction_lag_ms: 0,
        min_cleanable_dirty_ratio: ratio,
        ..CleanConfig::default()
    }
}

/// One record as the test knows it: key and value (`None`: tombstone).
type Rec = (u8, Option<Vec<u8>>);

fn keyed_batch(records: &[Rec], codec: Compression, timestamp_ms: i64) -> BytesMut {
    let mut plain = BytesMut::new();
    let mut b = BatchBuilder::new(
        &mut plain,
        BatchSpec {
            first_timestamp_ms: timestamp_ms,
            ..BatchSpec::default()
        },
    );
    for (key, value) in records {
        b.push(timestamp_ms, Some(&[b'k', *key]), value.as_deref(), &[]);
    }
    b.finish();
    if codec == Compression::None {
        return plain;
    }
    let mut section = Vec::new();
    compress(codec, &plain[BATCH_HEADER_BYTES..], &mut section).unwrap();
    let mut out = BytesMut::from(&plain[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&section);
    let len = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    out[21..23].copy_from_slice(&codec.id().to_be_bytes());
    let crc = compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Every record readable from the start: (offset, key, value).
async fn read_records(log: &Log<MemDisk>) -> Vec<(i64, u8, Option<Vec<u8>>)> {
    let start = log.log_start_offset();
    let batches = common::read_all(log, start, ReadUpTo::LogEnd)
        .await
        .expect("read");
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for (_, bytes) in batches {
        let bytes: Bytes = bytes;
        let (header, records) = batch_records(&bytes, &mut scratch, 1 << 24).unwrap();
        // The only empty batches are idempotent producers' latest ones, kept as headers.
        assert!(
            header.record_count > 0 || header.producer_id.0 >= 0,
            "no other empty batch is served"
        );
        for r in records {
            let r = r.unwrap();
            let key = r.key.expect("keyed");
            out.push((
                header.base_offset.0 + i64::from(r.offset_delta),
                key[1],
                r.value.map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// The append history: offset → record.
type History = BTreeMap<i64, Rec>;

/// Checks what holds whatever was cleaned: records unchanged at their offsets, in order, and
/// the latest value of every key present.
fn check_consistent(read: &[(i64, u8, Option<Vec<u8>>)], history: &History) {
    check(read, history, i64::MIN, false);
}

/// Checks a readback against the history, given that everything below `cleaned` was cleaned
/// with a map covering all of it, `tombstones_gone` saying whether tombstones below `cleaned`
/// must be gone by now.
fn check(
    read: &[(i64, u8, Option<Vec<u8>>)],
    history: &History,
    cleaned: i64,
    tombstones_gone: bool,
) {
    let mut last = -1;
    for (offset, key, value) in read {
        assert!(*offset > last, "offsets strictly increase");
        last = *offset;
        let (k, v) = history.get(offset).expect("a record the log never had");
        assert_eq!((k, v), (key, value), "record at offset {offset} changed");
    }
    let present: BTreeMap<i64, ()> = read.iter().map(|(o, _, _)| (*o, ())).collect();
    // Latest offset of each key within the cleaned prefix.
    let mut latest_clean: BTreeMap<u8, i64> = BTreeMap::new();
    let mut latest: BTreeMap<u8, i64> = BTreeMap::new();
    for (&offset, (key, _)) in history {
        if offset < cleaned {
            latest_clean.insert(*key, offset);
        }
        latest.insert(*key, offset);
    }
    for (&offset, (key, value)) in history {
        if cleaned == i64::MIN {
            break;
        }
        let is_present = present.contains_key(&offset);
        if offset >= cleaned {
            assert!(is_present, "uncleaned record {offset} missing");
            continue;
        }
        let is_latest = latest_clean[key] == offset;
        match (is_latest, value) {
            (false, _) => assert!(!is_present, "superseded record {offset} still there"),
            (true, Some(_)) => assert!(is_present, "latest record {offset} of key {key} missing"),
            (true, None) if tombstones_gone => {
                assert!(!is_present, "expired tombstone {offset} still there")
            }
            // A tombstone within its retention may or may not have been cleaned yet.
            (true, None) => {}
        }
    }
    // The latest value of every key is readable (the consumer's view after compaction).
    for (key, &offset) in &latest {
        if history[&offset].1.is_some() {
            assert!(
                present.contains_key(&offset),
                "key {key} lost its latest value"
            );
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Rec>, Compression),
    Clean,
    Reopen,
    Crash(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        0u8..12,
        prop_oneof![
            1 => Just(None),
            5 => prop::collection::vec(any::<u8>(), 1..120).prop_map(Some),
        ],
    );
    let codec = prop_oneof![
        4 => Just(Compression::None),
        1 => Just(Compression::Gzip),
        1 => Just(Compression::Lz4),
        1 => Just(Compression::Zstd),
        1 => Just(Compression::Snappy),
    ];
    prop_oneof![
        12 => (prop::collection::vec(record, 1..8), codec).prop_map(|(r, c)| Op::Append(r, c)),
        3 => Just(Op::Clean),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(Op::Crash),
    ]
}

fn run_model(ops: Vec<Op>) {
    block_on(async {
        let disk = MemDisk::new();
        let mut log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        let mut history = History::new();
        let mut map = OffsetMap::new(1 << 16);
        let mut state = CleanerState::default();
        let mut now_ms = 1_000_000;
        let mut cleaned = 0i64;
        for op in ops {
            now_ms += 37;
            match op {
                Op::Append(records, codec) => {
                    let info = log
                        .append(keyed_batch(&records, codec, now_ms), LeaderEpoch(0))
                        .await
                        .unwrap();
                    for (i, r) in records.into_iter().enumerate() {
                        history.insert(info.base_offset.0 + i as i64, r);
                    }
                }
                Op::Clean => {
                    let outcome = log
                        .clean(
                            &mut map,
                            &mut state,
                            &clean_config(0.0),
                            now_ms,
                            &mut Unthrottled,
                        )
                        .await
                        .unwrap();
                    if let Some(outcome) = outcome {
                        assert_eq!(outcome.groups_skipped, 0);
                        assert!(outcome.bytes_after <= outcome.bytes_before);
                        assert!(outcome.segments_after <= outcome.segments_before);
                        cleaned = cleaned.max(outcome.cleaned_up_to.0);
                    }
                }
                Op::Reopen => {
                    log.close().await.unwrap();
                    log = Log::open(disk.clone(), dir(), config()).await.unwrap();
                }
                Op::Crash(seed) => {
                    // EveryAppend: everything appended is durable, so a crash loses nothing.
                    drop(log);
                    disk.crash(seed);
                    log = Log::open(disk.clone(), dir(), config()).await.unwrap();
                }
            }
            check(&read_records(&log).await, &history, cleaned, false);
            assert_eq!(log.log_end_offset().0, history.len() as i64);
        }
        // Two more cleanings past every delete horizon: all tombstones below the cleaned
        // prefix go. The first sets horizons on any tombstone that has none yet.
        for _ in 0..2 {
            now_ms += DELETE_RETENTION_MS + 1;
            if let Some(o) = log
                .clean(
                    &mut map,
                    &mut state,
                    &clean_config(0.0),
                    now_ms,
                    &mut Unthrottled,
                )
                .await
                .unwrap()
            {
                cleaned = cleaned.max(o.cleaned_up_to.0);
            }
        }
        check(&read_records(&log).await, &history, cleaned, true);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]
    #[test]
    fn compaction_keeps_the_latest_value_per_key_at_its_offset(
        ops in prop::collection::vec(op(), 1..120)
    ) {
        run_model(ops);
    }
}

/// Appends `rounds` rounds of one value for each of `keys` keys, one record per batch.
async fn fill_rounds(log: &Log<MemDisk>, keys: u8, rounds: u8) -> History {
    fill_rounds_from(log, keys, rounds, 0).await
}

async fn fill_rounds_from(log: &Log<MemDisk>, keys: u8, rounds: u8, first: u8) -> History {
    let mut history = History::new();
    for round in first..first + rounds {
        for key in 0..keys {
            let rec: Rec = (key, Some(vec![round; 200]));
            let info = log
                .append(
                    keyed_batch(std::slice::from_ref(&rec), Compression::None, 1000),
                    LeaderEpoch(0),
                )
                .await
                .unwrap();
            history.insert(info.base_offset.0, rec);
        }
    }
    history
}

#[test]
fn cleaning_shrinks_the_log_and_merges_small_segments() {
    block_on(async {
        let disk = MemDisk::new();
        let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        let history = fill_rounds(&log, 4, 30).await;
        let before = log.segment_count().await;
        let mut map = OffsetMap::new(1 << 16);
        let mut state = CleanerState::default();
        let outcome = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.5),
                10_000,
                &mut Unthrottled,
            )
            .await
            .unwrap()
            .expect("due: everything is dirty");
        assert!(outcome.records_removed > 90, "{outcome:?}");
        assert!(
            outcome.bytes_after * 4 < outcome.bytes_before,
            "{outcome:?}"
        );
        // Full segments cannot merge (groups add up original sizes, like Kafka's).
        assert!(outcome.segments_before > 3, "{outcome:?}");
        assert_eq!(outcome.segments_after, outcome.segments_before);
        assert_eq!(log.segment_count().await, before);
        check(
            &read_records(&log).await,
            &history,
            outcome.cleaned_up_to.0,
            false,
        );
        // More data, and the next cleaning merges the small cleaned segments into one group.
        let mut history = history;
        for (offset, rec) in fill_rounds_from(&log, 4, 30, 50).await {
            history.insert(offset, rec);
        }
        let before = log.segment_count().await;
        let second = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.5),
                10_000,
                &mut Unthrottled,
            )
            .await
            .unwrap()
            .expect("due: the new segments are dirty");
        assert!(second.segments_after < second.segments_before, "{second:?}");
        // The first run's small segments became one.
        assert!(
            second.segments_after + outcome.segments_after - 1 <= second.segments_before,
            "{second:?}"
        );
        assert_eq!(
            log.segment_count().await,
            before - second.segments_before + second.segments_after
        );
        let read = read_records(&log).await;
        check(&read, &history, second.cleaned_up_to.0, false);
        // Nothing is dirty now: the next run is not due.
        let again = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.5),
                10_001,
                &mut Unthrottled,
            )
            .await
            .unwrap();
        assert_eq!(again, None);
        // Reads from inside a removed range start at the next surviving batch.
        let r = log
            .read(Offset(1), 1 << 20, ReadUpTo::LogEnd)
            .await
            .unwrap();
        assert!(!r.chunks.is_empty());
        log.close().await.unwrap();
        let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        assert_eq!(read_records(&log).await, read);
        // The cleaner state survives the restart: nothing is dirty, so no cleaning is due.
        let mut reloaded = log.load_cleaner_state().await.unwrap();
        assert_eq!(reloaded, state);
        assert!(reloaded.first_dirty > Offset(0));
        let again = log
            .clean(
                &mut map,
                &mut reloaded,
                &clean_config(0.5),
                10_002,
                &mut Unthrottled,
            )
            .await
            .unwrap();
        assert_eq!(again, None);
    });
}

#[test]
fn a_small_map_cleans_a_prefix_and_the_next_run_continues() {
    block_on(async {
        let disk = MemDisk::new();
        let log = Log::open(disk, dir(), config()).await.unwrap();
        // 200 distinct keys in the first segments, then overwrite them all.
        let mut history = History::new();
        for round in 0..2u8 {
            for key in 0..200u8 {
                let rec: Rec = (key, Some(vec![round; 40]));
                let info = log
                    .append(
                        keyed_batch(std::slice::from_ref(&rec), Compression::None, 1000),
                        LeaderEpoch(0),
                    )
                    .await
                    .unwrap();
                history.insert(info.base_offset.0, rec);
            }
        }
        // Room for 57 keys: each run can only map a few segments.
        let mut map = OffsetMap::new(spate_storage::compaction::OFFSET_MAP_BYTES_MIN);
        let mut state = CleanerState::default();
        let mut runs = 0;
        let mut cleaned = 0;
        while let Some(o) = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.0),
                10_000,
                &mut Unthrottled,
            )
            .await
            .unwrap()
        {
            assert!(o.cleaned_up_to.0 > cleaned, "each run progresses");
            cleaned = o.cleaned_up_to.0;
            check_consistent(&read_records(&log).await, &history);
            runs += 1;
            if runs > 100 {
                break;
            }
        }
        assert!(runs > 2, "the small map split the work ({runs} runs)");
        assert_eq!(cleaned, state.first_dirty.0);
    });
}

/// Prepares a log with duplicates across closed segments, then runs one cleaning with a fault
/// armed; returns the disk and the history.
fn clean_with_fault(op: FaultOp, nth: u64) -> (MemDisk, History) {
    block_on(async {
        let disk = MemDisk::new();
        let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        let history = fill_rounds(&log, 3, 40).await;
        let mut map = OffsetMap::new(1 << 16);
        let mut state = CleanerState::default();
        disk.fail_nth(op, nth);
        let result = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.0),
                10_000,
                &mut Unthrottled,
            )
            .await;
        assert!(result.is_err(), "the armed fault fired");
        drop(log);
        (disk, history)
    })
}

fn names(disk: &MemDisk) -> Vec<String> {
    disk.paths()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_crash_before_the_commit_point_discards_the_cleaned_file() {
    for seed in 0..20 {
        // The first rename of the cleaning is `.cleaned` -> `.swap`.
        let (disk, history) = clean_with_fault(FaultOp::Rename, 1);
        assert!(names(&disk).iter().any(|n| n.ends_with(".cleaned")));
        disk.crash(seed);
        block_on(async {
            let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
            assert!(!names(&disk).iter().any(|n| n.ends_with(".cleaned")));
            // Nothing was cleaned: every record is still there.
            let read = read_records(&log).await;
            assert_eq!(read.len(), history.len());
            check(&read, &history, 0, false);
        });
    }
}

#[test]
fn a_crash_after_the_commit_point_completes_the_swap() {
    for seed in 0..20 {
        // The second rename is `.swap` -> `.log`.
        let (disk, history) = clean_with_fault(FaultOp::Rename, 2);
        assert!(names(&disk).iter().any(|n| n.ends_with(".swap")));
        disk.crash(seed);
        block_on(async {
            let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
            let left = names(&disk);
            assert!(!left.iter().any(|n| n.ends_with(".swap")), "{left:?}");
            let read = read_records(&log).await;
            assert!(read.len() < history.len(), "the swap was completed");
            // The first group is cleaned; later groups (if any) were not reached.
            check_consistent(&read, &history);
            let keys: std::collections::BTreeSet<u8> = read.iter().map(|r| r.1).collect();
            assert_eq!(keys.len(), 3);
        });
    }
}

#[test]
fn a_crash_at_any_point_after_cleaning_leaves_a_consistent_log() {
    for seed in 0..40 {
        block_on(async {
            let disk = MemDisk::new();
            let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
            let history = fill_rounds(&log, 5, 30).await;
            let mut map = OffsetMap::new(1 << 16);
            let mut state = CleanerState::default();
            let o = log
                .clean(
                    &mut map,
                    &mut state,
                    &clean_config(0.0),
                    10_000,
                    &mut Unthrottled,
                )
                .await
                .unwrap()
                .expect("due");
            let after = read_records(&log).await;
            check(&after, &history, o.cleaned_up_to.0, false);
            drop(log);
            disk.crash(seed);
            let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
            // Every swap was committed and its directory synced before `clean` returned.
            assert_eq!(read_records(&log).await, after);
        });
    }
}

#[test]
fn a_reader_holding_a_range_of_a_replaced_segment_keeps_reading_it() {
    block_on(async {
        let disk = MemDisk::new();
        let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        let history = fill_rounds(&log, 2, 40).await;
        let held = log
            .read(Offset(0), 1 << 20, ReadUpTo::LogEnd)
            .await
            .unwrap();
        let mut map = OffsetMap::new(1 << 16);
        let mut state = CleanerState::default();
        log.clean(
            &mut map,
            &mut state,
            &clean_config(0.0),
            10_000,
            &mut Unthrottled,
        )
        .await
        .unwrap()
        .expect("due");
        // The held range still loads the old (uncompacted) bytes, CRC-checked.
        let mut offsets = Vec::new();
        for chunk in &held.chunks {
            let bytes = match chunk {
                spate_storage::ReadChunk::Memory(b) => b.to_bytes(),
                spate_storage::ReadChunk::File(r) => r.load().await.unwrap(),
            };
            for item in spate_wire::batch::batches(&bytes) {
                offsets.push(item.unwrap().0.base_offset.0);
            }
        }
        let expected: Vec<i64> = (0..history.len() as i64).collect();
        assert_eq!(offsets, expected);
        // A new read sees the compacted log.
        assert!(read_records(&log).await.len() < history.len());
    });
}

/// Kafka keeps the latest batch of each idempotent producer through compaction, as a header
/// without records if every record is superseded, so a producer state rebuilt from the log alone
/// still recognises a retry of it. Here the snapshots are deleted before the reopen, so the
/// batch headers are the only source: without the kept header, the retry would be appended a
/// second time.
#[test]
fn an_idempotent_producers_last_batch_survives_cleaning_as_an_empty_header() {
    block_on(async {
        let disk = MemDisk::new();
        let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        let producer_batch = || {
            let mut out = BytesMut::new();
            let mut b = BatchBuilder::new(
                &mut out,
                BatchSpec {
                    first_timestamp_ms: 1000,
                    producer_id: ProducerId(7),
                    producer_epoch: ProducerEpoch(0),
                    base_sequence: 0,
                    ..BatchSpec::default()
                },
            );
            b.push(1000, Some(b"k\x00"), Some(b"old"), &[]);
            b.push(1000, Some(b"k\x01"), Some(b"old"), &[]);
            b.finish();
            out
        };
        let first = log.append(producer_batch(), LeaderEpoch(0)).await.unwrap();
        assert_eq!(first.kind, AppendKind::Appended);
        // Plain writes of the same keys supersede both records and fill closed segments.
        fill_rounds(&log, 2, 40).await;
        let mut map = OffsetMap::new(1 << 16);
        let mut state = CleanerState::default();
        let outcome = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.5),
                10_000,
                &mut Unthrottled,
            )
            .await
            .unwrap()
            .expect("due: everything is dirty");
        assert!(outcome.cleaned_up_to > first.last_offset, "{outcome:?}");
        // No record of the producer's batch is readable any more.
        let read = read_records(&log).await;
        assert!(read
            .iter()
            .all(|&(offset, _, _)| offset > first.last_offset.0));
        log.close().await.unwrap();

        for name in names(&disk).iter().filter(|n| n.ends_with(".snapshot")) {
            disk.remove(&dir().join(name)).await.unwrap();
        }
        let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        let retry = log.append(producer_batch(), LeaderEpoch(0)).await.unwrap();
        assert_eq!(retry.kind, AppendKind::Duplicate, "{retry:?}");
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (first.base_offset, first.last_offset)
        );
    });
}

/// A budget that asks the cleaner to stop after `calls` calls.
struct StopAfter {
    calls: u64,
}

impl spate_storage::IoBudget for StopAfter {
    async fn spend(&mut self, _bytes: u64) {
        self.calls = self.calls.saturating_sub(1);
    }

    fn stop_requested(&self) -> bool {
        self.calls == 0
    }
}

#[test]
fn a_stop_request_abandons_the_cleaning_and_leaves_the_log_consistent() {
    block_on(async {
        // 160 batches: the key map takes more than 160 calls, the rewrite as many again.
        for calls in [1, 50, 170, 250, 300] {
            let disk = MemDisk::new();
            let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
            let history = fill_rounds(&log, 4, 40).await;
            let mut map = OffsetMap::new(1 << 16);
            let mut state = CleanerState::default();
            let stopped = log
                .clean(
                    &mut map,
                    &mut state,
                    &clean_config(0.0),
                    10_000,
                    &mut StopAfter { calls },
                )
                .await
                .unwrap();
            assert_eq!(stopped, None, "stopped after {calls} calls");
            assert_eq!(state, CleanerState::default(), "nothing recorded as clean");
            assert!(!names(&disk).iter().any(|n| n.ends_with(".cleaned")));
            check_consistent(&read_records(&log).await, &history);
            // The next cleaning does the whole job.
            let o = log
                .clean(
                    &mut map,
                    &mut state,
                    &clean_config(0.0),
                    10_000,
                    &mut Unthrottled,
                )
                .await
                .unwrap()
                .expect("due");
            check(
                &read_records(&log).await,
                &history,
                o.cleaned_up_to.0,
                false,
            );
        }
    });
}

#[test]
fn truncation_into_a_compacted_segment_keeps_its_batches_through_a_crash() {
    let disk = MemDisk::new();
    let log = block_on(Log::open(disk.clone(), dir(), config())).unwrap();
    // Even batches have keys of their own (kept), odd ones overwrite key 0 (only the last one
    // stays): cleaning leaves a gap after every kept batch.
    for i in 0..80u8 {
        let key = if i % 2 == 0 { 100u8.wrapping_add(i) } else { 0 };
        let b = keyed_batch(&[(key, Some(vec![i; 200]))], Compression::None, 1000);
        block_on(log.append(b, LeaderEpoch(1))).unwrap();
    }
    let mut map = OffsetMap::new(1 << 16);
    let mut state = CleanerState::default();
    let outcome = block_on(log.clean(
        &mut map,
        &mut state,
        &clean_config(0.0),
        2000,
        &mut Unthrottled,
    ))
    .unwrap()
    .expect("cleaned");
    assert!(outcome.records_removed > 0, "{outcome:?}");
    let before = block_on(read_records(&log));
    // Cut inside an early cleaned segment, after some of its gaps.
    let cut = Offset(before[6].0 + 1);
    let end = block_on(log.truncate_to(cut)).unwrap();
    assert!(end <= cut);
    let kept: Vec<_> = before.iter().filter(|r| r.0 < end.0).cloned().collect();
    assert!(kept.len() >= 5, "{kept:?}");
    assert_eq!(block_on(read_records(&log)), kept);
    drop(log);
    for seed in 0..4 {
        disk.crash(seed);
        let log = block_on(Log::open(disk.clone(), dir(), config())).unwrap();
        assert_eq!(log.log_end_offset(), end, "seed {seed}");
        assert_eq!(block_on(read_records(&log)), kept, "seed {seed}");
    }
}

#[test]
fn cleaning_after_delete_records_keeps_the_start_and_serves_only_records_at_or_above_it() {
    let disk = MemDisk::new();
    let log = block_on(Log::open(disk.clone(), dir(), config())).unwrap();
    // Keys 0..20 written over and over: cleaning removes all but the latest of each.
    for i in 0..200u8 {
        let b = keyed_batch(&[(i % 20, Some(vec![i; 200]))], Compression::None, 1000);
        block_on(log.append(b, LeaderEpoch(1))).unwrap();
    }
    block_on(log.flush()).unwrap();
    assert!(block_on(log.segment_count()) >= 3);
    let start = block_on(log.delete_records(Offset(150))).unwrap();
    assert_eq!(start, Offset(150));
    let mut map = OffsetMap::new(1 << 16);
    let mut state = CleanerState::default();
    let outcome = block_on(log.clean(
        &mut map,
        &mut state,
        &clean_config(0.0),
        2000,
        &mut Unthrottled,
    ))
    .unwrap()
    .expect("cleaned");
    assert!(outcome.records_removed > 0, "{outcome:?}");
    assert_eq!(log.log_start_offset(), Offset(150));
    let after = block_on(read_records(&log));
    // Nothing below the start is served; every key's latest record (offsets 180..200) is.
    let offsets: Vec<i64> = after.iter().map(|r| r.0).collect();
    assert!(offsets.iter().all(|&o| o >= 150), "{offsets:?}");
    assert!((180..200).all(|o| offsets.contains(&o)), "{offsets:?}");
    block_on(log.apply_retention(i64::MAX / 2)).unwrap();
    drop(log);
    disk.crash(5);
    let log = block_on(Log::open(disk.clone(), dir(), config())).unwrap();
    assert_eq!(log.log_start_offset(), Offset(150));
    assert_eq!(block_on(read_records(&log)), after);
}

/// A keyed batch of transactional producer `pid` (epoch 0).
fn txn_keyed(pid: i64, seq: i32, records: &[Rec]) -> BytesMut {
    let mut out = BytesMut::new();
    let mut b = BatchBuilder::new(
        &mut out,
        BatchSpec {
            producer_id: ProducerId(pid),
            producer_epoch: ProducerEpoch(0),
            base_sequence: seq,
            first_timestamp_ms: 1000,
            ..BatchSpec::default()
        },
    );
    for (key, value) in records {
        b.push(1000, Some(&[b'k', *key]), value.as_deref(), &[]);
    }
    b.finish();
    set_transactional(&mut out);
    out
}

fn txn_marker(pid: i64, control: ControlType) -> BytesMut {
    let mut out = BytesMut::new();
    put_txn_marker(
        &mut out,
        ProducerId(pid),
        ProducerEpoch(0),
        0,
        control,
        1000,
    );
    out
}

/// Appends `batches` single-record batches over keys 20-23, enough to roll segments.
async fn filler(log: &Log<MemDisk>, batches: u8) {
    for i in 0..batches {
        let rec: Rec = (20 + i % 4, Some(vec![i; 200]));
        log.append(
            keyed_batch(std::slice::from_ref(&rec), Compression::None, 1000),
            LeaderEpoch(0),
        )
        .await
        .unwrap();
    }
}

fn values_of(read: &[(i64, u8, Option<Vec<u8>>)], key: u8) -> Vec<Vec<u8>> {
    read.iter()
        .filter(|(_, k, _)| *k == key)
        .filter_map(|(_, _, v)| v.clone())
        .collect()
}

#[test]
fn aborted_records_never_supersede_and_open_transactions_are_not_cleaned() {
    block_on(async {
        let disk = MemDisk::new();
        let log = Log::open(disk, dir(), config()).await.unwrap();
        let committed: Rec = (1, Some(b"committed".to_vec()));
        log.append(
            keyed_batch(&[committed], Compression::None, 1000),
            LeaderEpoch(0),
        )
        .await
        .unwrap();
        // An aborted transaction writes key 1 again: read_committed readers skip it, so the
        // committed value must survive cleaning.
        log.append(
            txn_keyed(7, 0, &[(1, Some(b"aborted".to_vec()))]),
            LeaderEpoch(0),
        )
        .await
        .unwrap();
        log.append(txn_marker(7, ControlType::Abort), LeaderEpoch(0))
            .await
            .unwrap();
        filler(&log, 40).await;
        // A transaction left open: nothing from it on may be cleaned yet.
        let open = log
            .append(
                txn_keyed(8, 0, &[(1, Some(b"open".to_vec()))]),
                LeaderEpoch(0),
            )
            .await
            .unwrap()
            .base_offset;
        filler(&log, 40).await;
        let mut map = OffsetMap::new(1 << 16);
        let mut state = CleanerState::default();
        let outcome = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.0),
                10_000,
                &mut Unthrottled,
            )
            .await
            .unwrap()
            .expect("due");
        assert!(outcome.records_removed > 0, "{outcome:?}");
        assert!(
            outcome.cleaned_up_to <= open,
            "cleaned up to {:?}, past the open transaction at {open:?}",
            outcome.cleaned_up_to
        );
        let read = read_records(&log).await;
        assert!(
            values_of(&read, 1).contains(&b"committed".to_vec()),
            "the committed value of key 1 was cleaned away: {:?}",
            values_of(&read, 1)
        );

        // Once it commits, the cleaner goes past it, and its record supersedes the old value.
        log.append(txn_marker(8, ControlType::Commit), LeaderEpoch(0))
            .await
            .unwrap();
        filler(&log, 40).await;
        let outcome = log
            .clean(
                &mut map,
                &mut state,
                &clean_config(0.0),
                10_001,
                &mut Unthrottled,
            )
            .await
            .unwrap()
            .expect("due");
        assert!(outcome.cleaned_up_to > open, "{outcome:?}");
        let read = read_records(&log).await;
        let key1 = values_of(&read, 1);
        assert!(key1.contains(&b"open".to_vec()), "{key1:?}");
        assert!(!key1.contains(&b"committed".to_vec()), "{key1:?}");
    });
}

/// Every batch header readable from the start.
async fn headers(log: &Log<MemDisk>) -> Vec<spate_wire::batch::BatchHeader> {
    common::read_all(log, log.log_start_offset(), ReadUpTo::LogEnd)
        .await
        .expect("read")
        .iter()
        .map(|(_, bytes)| spate_wire::batch::BatchHeader::parse(bytes).unwrap())
        .collect()
}

/// Cleans everything cleanable at `now_ms` (a fresh cleaner state: the whole log is dirty).
async fn clean_all(log: &Log<MemDisk>, now_ms: i64) -> (CleanOutcome, CleanerState) {
    let mut map = OffsetMap::new(1 << 16);
    let mut state = CleanerState::default();
    let outcome = log
        .clean(
            &mut map,
            &mut state,
            &clean_config(0.0),
            now_ms,
            &mut Unthrottled,
        )
        .await
        .unwrap()
        .expect("due");
    (outcome, state)
}

fn aborted_txns(log: &Log<MemDisk>) -> Vec<AbortedTxn> {
    block_on(log.aborted_transactions(Offset(0), Offset(i64::MAX)))
}

#[test]
fn aborted_records_go_first_and_markers_after_their_data_and_horizon() {
    block_on(async {
        let disk = MemDisk::new();
        let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
        let append = |b: BytesMut| {
            let log = &log;
            async move { log.append(b, LeaderEpoch(0)).await.unwrap().base_offset }
        };
        append(keyed_batch(
            &[(1, Some(b"plain".to_vec()))],
            Compression::None,
            1000,
        ))
        .await;
        append(txn_keyed(7, 0, &[(1, Some(b"c1".to_vec()))])).await;
        append(txn_marker(7, ControlType::Commit)).await;
        // Producer 8's transaction stays open across rolls (snapshots hold it open), then
        // aborts.
        append(txn_keyed(
            8,
            0,
            &[(2, Some(b"a2".to_vec())), (1, Some(b"a1".to_vec()))],
        ))
        .await;
        filler(&log, 30).await;
        let abort = append(txn_marker(8, ControlType::Abort)).await;
        append(txn_keyed(7, 1, &[(1, Some(b"c2".to_vec()))])).await;
        let kept_commit = append(txn_marker(7, ControlType::Commit)).await;
        // Producer 8 goes on outside a transaction: its aborted batch is no longer its latest
        // (which would stay as a header, and keep its marker, for the producer state), and no
        // later marker of its own would close a transaction a stale snapshot held open (as
        // when a producer expires).
        let mut idempotent = txn_keyed(8, 2, &[(4, Some(b"p8".to_vec()))]);
        let attributes = i16::from_be_bytes([idempotent[21], idempotent[22]]) & !0x10;
        idempotent[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = compute_crc(&idempotent);
        idempotent[17..21].copy_from_slice(&crc.to_be_bytes());
        append(idempotent).await;
        filler(&log, 30).await;
        let aborted_before = aborted_txns(&log);
        assert_eq!(aborted_before.len(), 1);
        assert_eq!(aborted_before[0].last_offset, abort);

        // First cleaning: the aborted records go; every marker stays (it read their data).
        let (first, _) = clean_all(&log, 10_000).await;
        assert_eq!(first.aborted_records_removed, 2, "{first:?}");
        assert_eq!(first.markers_removed, 0, "{first:?}");
        assert_eq!(aborted_txns(&log), aborted_before);
        let read = read_records(&log).await;
        assert!(values_of(&read, 2).is_empty(), "{read:?}");
        assert_eq!(values_of(&read, 1), vec![b"c2".to_vec()]);

        // Second: producer 7's first marker and the ABORT have no data left: their horizon
        // starts.
        let (second, state) = clean_all(&log, 10_001).await;
        assert_eq!(second.markers_removed, 0, "{second:?}");
        assert_eq!(
            state.tombstone_horizon_ms,
            Some(10_001 + DELETE_RETENTION_MS)
        );
        let markers = |hs: &[spate_wire::batch::BatchHeader]| {
            hs.iter()
                .filter(|h| h.is_control())
                .map(|h| h.base_offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(markers(&headers(&log).await).len(), 3);

        // Third, at the horizon: they go, and the aborted index forgets the ABORT's entry.
        let (third, _) = clean_all(&log, 10_001 + DELETE_RETENTION_MS).await;
        assert_eq!(third.markers_removed, 2, "{third:?}");
        assert!(aborted_txns(&log).is_empty());
        let after = headers(&log).await;
        assert_eq!(markers(&after), vec![kept_commit]);
        assert!(
            after.iter().all(|h| !(h.producer_id == ProducerId(8)
                && h.is_transactional()
                && h.base_offset < abort)),
            "no batch of the aborted transaction is left"
        );
        let read = read_records(&log).await;
        assert_eq!(values_of(&read, 1), vec![b"c2".to_vec()]);
        assert_eq!(values_of(&read, 4), vec![b"p8".to_vec()]);
        let end = log.log_end_offset();
        assert_eq!(log.first_unstable_offset().await, None);
        drop(log);

        // A rebuild from any snapshot left (newest first, each round losing the newest) or from
        // the log alone agrees: no stale aborted entry, and no transaction held open by a
        // snapshot whose closing marker went.
        let snapshot_names = |disk: &MemDisk| {
            let mut names: Vec<String> = names(disk)
                .into_iter()
                .filter(|n| n.ends_with(".snapshot"))
                .collect();
            names.sort();
            names
        };
        let mut snapshots = snapshot_names(&disk);
        assert!(!snapshots.is_empty());
        loop {
            let log = Log::open(disk.clone(), dir(), config()).await.unwrap();
            assert_eq!(log.log_end_offset(), end);
            assert!(aborted_txns(&log).is_empty(), "{snapshots:?}");
            assert_eq!(log.first_unstable_offset().await, None, "{snapshots:?}");
            assert_eq!(
                values_of(&read_records(&log).await, 1),
                vec![b"c2".to_vec()]
            );
            log.close().await.unwrap();
            // Next round from the next older snapshot: drop the newest, and whatever this
            // open and close wrote.
            let Some(newest) = snapshots.pop() else {
                break;
            };
            for name in snapshot_names(&disk) {
                if name == newest || !snapshots.contains(&name) {
                    disk.remove(&dir().join(name)).await.unwrap();
                }
            }
        }
    });
}
