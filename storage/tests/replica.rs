//! A follower's log: `append_replicated` keeps the leader's offsets, epochs and bytes, refuses
//! gaps, overlaps, older epochs and damaged batches without writing anything, records producers
//! without judging them; `truncate_to` then restores everything a follower relies on.

mod common;

use std::path::Path;

use bytes::{Bytes, BytesMut};
use common::{read_all, small_config};
use spate_storage::io::mem::MemDisk;
use spate_storage::producer_state::ProducerState;
use spate_storage::{
    block_on, AppendKind, FlushPolicy, Log, LogConfig, ReadChunk, ReadUpTo, StorageError,
};
use spate_wire::batch::{
    set_partition_leader_epoch, BatchBuilder, BatchHeader, BatchSpec, BATCH_HEADER_BYTES,
};
use spate_wire::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

fn leader_dir() -> &'static Path {
    Path::new("/leader/p0")
}

fn follower_dir() -> &'static Path {
    Path::new("/follower/p0")
}

fn open(disk: &MemDisk, dir: &Path, config: LogConfig) -> Log<MemDisk> {
    block_on(Log::open(disk.clone(), dir, config)).expect("open")
}

/// A batch as a leader stores it: offsets from `base`, `records` records of `value_bytes`,
/// the given leader epoch, and an idempotent producer `(id, sequence)` if given.
fn stored(
    base: i64,
    records: usize,
    value_bytes: usize,
    epoch: i32,
    producer: Option<(i64, i32)>,
) -> BytesMut {
    let mut out = BytesMut::new();
    let (producer_id, producer_epoch, base_sequence) = match producer {
        Some((id, seq)) => (ProducerId(id), ProducerEpoch(0), seq),
        None => (ProducerId::NONE, ProducerEpoch(-1), -1),
    };
    let spec = BatchSpec {
        base_offset: Offset(base),
        first_timestamp_ms: 1000 + base,
        producer_id,
        producer_epoch,
        base_sequence,
    };
    let mut builder = BatchBuilder::new(&mut out, spec);
    let value = vec![(base % 251) as u8; value_bytes];
    for _ in 0..records {
        builder.push(1000 + base, None, Some(&value), &[]);
    }
    builder.finish();
    set_partition_leader_epoch(&mut out, LeaderEpoch(epoch));
    out
}

/// Everything the log holds, each batch's bytes, read through `read` (file ranges checked).
fn contents(log: &Log<MemDisk>) -> Vec<Bytes> {
    block_on(read_all(log, log.log_start_offset(), ReadUpTo::LogEnd))
        .expect("read")
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect()
}

fn concat(batches: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for b in batches {
        out.extend_from_slice(b);
    }
    out.freeze()
}

/// A leader log of `n` batches (3 records each), epochs 1, 1, 2, 2, ... (two batches per
/// epoch), every third batch from idempotent producer 7; returns it and its batches as stored.
fn leader(disk: &MemDisk, n: usize) -> (Log<MemDisk>, Vec<Bytes>) {
    let log = open(disk, leader_dir(), small_config(FlushPolicy::Never));
    let mut seq = 0;
    for i in 0..n {
        let producer = (i % 3 == 0).then_some((7, seq));
        if producer.is_some() {
            seq += 3;
        }
        // The leader's append patches the base offset and the epoch in.
        let b = stored(3 * i as i64, 3, 300, -1, producer);
        let epoch = LeaderEpoch(1 + (i / 2) as i32);
        let info = block_on(log.append(b, epoch)).expect("leader append");
        assert_eq!(info.kind, AppendKind::Appended);
    }
    let batches = contents(&log);
    assert_eq!(batches.len(), n);
    (log, batches)
}

#[test]
fn replicated_batches_keep_the_leaders_offsets_epochs_bytes_and_producer_state() {
    let (leader_disk, disk) = (MemDisk::new(), MemDisk::new());
    let (leader, batches) = leader(&leader_disk, 120);
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    let mut at = 0;
    let mut calls = 0;
    while at < batches.len() {
        let n = (1 + calls % 7).min(batches.len() - at);
        let out = block_on(follower.append_replicated(concat(&batches[at..at + n]))).unwrap();
        at += n;
        calls += 1;
        let last = BatchHeader::parse(&batches[at - 1]).unwrap();
        assert_eq!(out.batches, n);
        assert_eq!(out.log_end, last.last_offset().next());
        assert_eq!(out.last_epoch, Some(last.partition_leader_epoch));
        assert_eq!(follower.log_end_offset(), out.log_end);
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(contents(&follower), batches);
    assert!(block_on(follower.segment_count()) >= 2, "segments rolled");
    assert_eq!(block_on(follower.epochs()), block_on(leader.epochs()));
    assert_eq!(block_on(follower.epochs()).entries().len(), 60);
    assert_eq!(
        block_on(follower.producer_state()),
        block_on(leader.producer_state())
    );
    for epoch in [0, 1, 17, 60, 99] {
        assert_eq!(
            block_on(follower.end_offset_for_epoch(LeaderEpoch(epoch))),
            block_on(leader.end_offset_for_epoch(LeaderEpoch(epoch)))
        );
    }
    // The same after a clean close and a reopen (recovery reads the same bytes back).
    drop(leader);
    block_on(follower.close()).unwrap();
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    assert_eq!(contents(&follower), batches);
    assert_eq!(block_on(follower.epochs()).entries().len(), 60);
}

#[test]
fn an_empty_call_appends_nothing() {
    let disk = MemDisk::new();
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    let out = block_on(follower.append_replicated(Bytes::new())).unwrap();
    assert_eq!(out.batches, 0);
    assert_eq!(out.log_end, Offset(0));
    assert_eq!(out.last_epoch, None);
}

#[test]
fn a_gap_or_an_overlap_is_refused_and_nothing_of_the_call_is_written() {
    let disk = MemDisk::new();
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    let first = stored(0, 4, 10, 1, None);
    block_on(follower.append_replicated(first.clone())).unwrap();
    let before = contents(&follower);
    // A gap at the start, an overlap at the start, and a gap inside the call after a good batch.
    let cases: [(Vec<BytesMut>, Offset, Offset); 3] = [
        (vec![stored(5, 1, 10, 1, None)], Offset(5), Offset(4)),
        (vec![stored(2, 4, 10, 1, None)], Offset(2), Offset(4)),
        (
            vec![stored(4, 2, 10, 1, None), stored(7, 1, 10, 1, None)],
            Offset(7),
            Offset(6),
        ),
    ];
    for (call, got, want) in cases {
        let bytes: Vec<Bytes> = call.into_iter().map(BytesMut::freeze).collect();
        let err = block_on(follower.append_replicated(concat(&bytes))).unwrap_err();
        match err {
            StorageError::NonContiguousBatch {
                base_offset,
                expected,
            } => assert_eq!((base_offset, expected), (got, want)),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(follower.log_end_offset(), Offset(4));
        assert_eq!(contents(&follower), before);
    }
    // The leader's next batch still goes on.
    let next = stored(4, 2, 10, 1, None);
    assert_eq!(
        block_on(follower.append_replicated(next)).unwrap().log_end,
        Offset(6)
    );
}

#[test]
fn an_epoch_below_the_latest_is_refused_and_an_unset_epoch_is_not_recorded() {
    let disk = MemDisk::new();
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    block_on(follower.append_replicated(stored(0, 1, 10, 5, None))).unwrap();
    let call = concat(&[
        stored(1, 1, 10, 5, None).freeze(),
        stored(2, 1, 10, 4, None).freeze(),
    ]);
    let err = block_on(follower.append_replicated(call)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::EpochRegression {
                base_offset: Offset(2),
                epoch: LeaderEpoch(4),
                latest: LeaderEpoch(5)
            }
        ),
        "{err}"
    );
    // Within one call too: 7 then 6.
    let call = concat(&[
        stored(1, 1, 10, 7, None).freeze(),
        stored(2, 1, 10, 6, None).freeze(),
    ]);
    assert!(matches!(
        block_on(follower.append_replicated(call)),
        Err(StorageError::EpochRegression {
            latest: LeaderEpoch(7),
            ..
        })
    ));
    assert_eq!(follower.log_end_offset(), Offset(1));
    assert_eq!(block_on(follower.epochs()).entries().len(), 1);
    // -1 (no epoch) is stored but not recorded; equal and higher epochs go on.
    let call = concat(&[
        stored(1, 1, 10, -1, None).freeze(),
        stored(2, 1, 10, 5, None).freeze(),
        stored(3, 1, 10, 9, None).freeze(),
    ]);
    let out = block_on(follower.append_replicated(call)).unwrap();
    assert_eq!(out.last_epoch, Some(LeaderEpoch(9)));
    let epochs: Vec<(i32, i64)> = block_on(follower.epochs())
        .entries()
        .iter()
        .map(|e| (e.epoch.0, e.start_offset.0))
        .collect();
    assert_eq!(epochs, vec![(5, 0), (9, 3)]);
}

#[test]
fn damaged_batches_are_refused_and_nothing_of_the_call_is_written() {
    let disk = MemDisk::new();
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    let good = stored(0, 2, 50, 1, None).freeze();
    let second = stored(2, 2, 50, 1, None).freeze();
    let mut bad_crc = BytesMut::from(&second[..]);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let mut bad_magic = BytesMut::from(&second[..]);
    bad_magic[16] = 1;
    let cases: Vec<Bytes> = vec![
        concat(&[good.clone(), bad_crc.freeze()]),
        concat(&[good.clone(), bad_magic.freeze()]),
        // A trailing partial batch, and a lone partial header.
        concat(&[good.clone(), second.slice(..second.len() - 1)]),
        good.slice(..BATCH_HEADER_BYTES - 1),
    ];
    for call in cases {
        let err = block_on(follower.append_replicated(call)).unwrap_err();
        assert!(matches!(err, StorageError::InvalidBatch(_)), "{err}");
        assert_eq!(follower.log_end_offset(), Offset(0));
        assert!(contents(&follower).is_empty());
        assert!(block_on(follower.epochs()).entries().is_empty());
    }
    let mut config = small_config(FlushPolicy::Never);
    config.batch_bytes_max = 100;
    let small = open(&MemDisk::new(), follower_dir(), config);
    let err = block_on(small.append_replicated(good.clone())).unwrap_err();
    assert!(matches!(err, StorageError::BatchTooLarge { .. }), "{err}");
    assert_eq!(
        block_on(follower.append_replicated(concat(&[good, second])))
            .unwrap()
            .batches,
        2
    );
}

#[test]
fn the_follower_records_producers_without_judging_them_and_dedupes_once_leader() {
    let disk = MemDisk::new();
    let mut config = small_config(FlushPolicy::Never);
    config.producers_per_partition_max = 2;
    let follower = open(&disk, follower_dir(), config);
    // Out of order for producer 1 (0, then 9), a third producer over the bound: the leader
    // decided, so the follower takes them all.
    let call = concat(&[
        stored(0, 3, 10, 1, Some((1, 0))).freeze(),
        stored(3, 2, 10, 1, Some((1, 9))).freeze(),
        stored(5, 1, 10, 1, Some((2, 0))).freeze(),
        stored(6, 1, 10, 1, Some((3, 4))).freeze(),
    ]);
    assert_eq!(
        block_on(follower.append_replicated(call)).unwrap().batches,
        4
    );
    assert_eq!(block_on(follower.producer_count()), 3);
    let state = block_on(follower.producer_state());
    let one = state.get(ProducerId(1)).unwrap();
    assert_eq!(one.batches.len(), 2);
    assert_eq!(one.batches[1].first_sequence, 9);
    assert_eq!(one.batches[1].first_offset, Offset(3));
    // Promoted to leader: a producer's retry of its last batch is a duplicate with the
    // original offsets, and its next batch continues the sequence.
    let mut retry = stored(0, 2, 10, -1, Some((1, 9)));
    set_partition_leader_epoch(&mut retry, LeaderEpoch::NONE);
    let info = block_on(follower.append(retry, LeaderEpoch(2))).unwrap();
    assert_eq!(info.kind, AppendKind::Duplicate);
    assert_eq!((info.base_offset, info.last_offset), (Offset(3), Offset(4)));
    let next = stored(0, 1, 10, -1, Some((1, 11)));
    let info = block_on(follower.append(next, LeaderEpoch(2))).unwrap();
    assert_eq!(info.kind, AppendKind::Appended);
    assert_eq!(info.base_offset, Offset(7));
}

#[test]
fn the_flush_policy_applies_once_per_call() {
    let disk = MemDisk::new();
    let follower = open(
        &disk,
        follower_dir(),
        small_config(FlushPolicy::EveryAppend),
    );
    block_on(follower.append_replicated(stored(0, 3, 10, 1, None))).unwrap();
    assert_eq!(follower.durable_offset(), Offset(3));
    let call = concat(&[
        stored(3, 3, 10, 1, None).freeze(),
        stored(6, 3, 10, 1, None).freeze(),
        stored(9, 3, 10, 1, None).freeze(),
    ]);
    let syncs = disk.sync_count();
    block_on(follower.append_replicated(call)).unwrap();
    assert_eq!(follower.durable_offset(), Offset(12));
    assert_eq!(
        disk.sync_count() - syncs,
        1,
        "one fdatasync for three batches"
    );
    drop(follower);
    disk.crash(1);
    let follower = open(
        &disk,
        follower_dir(),
        small_config(FlushPolicy::EveryAppend),
    );
    assert_eq!(follower.log_end_offset(), Offset(12));
}

/// The state a follower must have after a truncation to `end`: what the leader's first batches
/// up to `end` give.
fn producers_of(batches: &[Bytes], end: Offset, config: &LogConfig) -> ProducerState {
    let mut state = ProducerState::new(
        config.producers_per_partition_max,
        config.producer_id_expiration_ms,
    );
    for b in batches {
        let header = BatchHeader::parse(b).unwrap();
        if header.base_offset < end {
            state.replay(&header, &b[spate_wire::batch::BATCH_HEADER_BYTES..]);
        }
    }
    state
}

#[test]
fn truncation_restores_log_end_epochs_producers_indexes_cache_and_durability() {
    let (leader_disk, disk) = (MemDisk::new(), MemDisk::new());
    let (leader, batches) = leader(&leader_disk, 150);
    let config = small_config(FlushPolicy::GroupCommit {
        interval_ms: 1,
        bytes_max: 1 << 30,
    });
    let follower = open(&disk, follower_dir(), config);
    block_on(follower.append_replicated(concat(&batches[..100]))).unwrap();
    block_on(follower.flush()).unwrap();
    block_on(follower.append_replicated(concat(&batches[100..]))).unwrap();
    assert_eq!(follower.log_end_offset(), Offset(450));
    assert!(follower.durable_offset() < Offset(450));
    // A divergent suffix: batches of the same epoch the leader never had.
    let diverged = concat(&[
        stored(450, 2, 30, 75, Some((7, 999))).freeze(),
        stored(452, 2, 30, 80, Some((9, 0))).freeze(),
    ]);
    block_on(follower.append_replicated(diverged)).unwrap();
    assert!(block_on(follower.producer_state())
        .get(ProducerId(9))
        .is_some());
    // Cut in the active segment, in the middle of a batch (the log end falls back to its
    // base), then deep into an older segment; each time check everything, then re-replicate.
    for cut in [451, 404, 130, 0] {
        eprintln!(
            "before cut {cut}: end {} segments {} contents {}",
            follower.log_end_offset(),
            block_on(follower.segment_count()),
            contents(&follower).len()
        );
        let end = block_on(follower.truncate_to(Offset(cut))).unwrap();
        let kept = batches
            .iter()
            .take_while(|b| BatchHeader::parse(b).unwrap().last_offset() < Offset(cut))
            .count();
        let want_end = Offset(3 * kept as i64);
        assert_eq!(end, want_end, "cut at {cut}");
        assert_eq!(follower.log_end_offset(), want_end);
        // The durability offsets: everything kept is durable, nothing is owed a sync.
        assert_eq!(follower.durable_offset(), want_end);
        assert_eq!(follower.high_watermark(), want_end);
        assert_eq!(follower.unflushed_bytes(), 0);
        // The epoch cache: entries at or past the cut are gone, the rest as the leader's.
        let mut epochs = block_on(leader.epochs());
        epochs.truncate_from_end(want_end);
        assert_eq!(block_on(follower.epochs()), epochs);
        // The producer state: the truncated batches' sequences no longer count.
        assert_eq!(
            block_on(follower.producer_state()),
            producers_of(&batches, want_end, &config)
        );
        // Reads through the indexes and the tail cache: every offset's batch.
        assert_eq!(contents(&follower), batches[..kept]);
        for offset in (0..want_end.0).step_by(7) {
            let r = block_on(follower.read(Offset(offset), 1, ReadUpTo::LogEnd)).unwrap();
            let bytes = match &r.chunks[0] {
                ReadChunk::Memory(b) => b.to_bytes(),
                ReadChunk::File(range) => block_on(range.load()).unwrap(),
            };
            assert_eq!(bytes, batches[offset as usize / 3]);
        }
        assert!(matches!(
            block_on(follower.read(want_end.next(), 1, ReadUpTo::LogEnd)),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        if let Some(last) = kept.checked_sub(1) {
            let header = BatchHeader::parse(&batches[last]).unwrap();
            assert_eq!(
                block_on(follower.offset_for_timestamp(header.max_timestamp_ms, Offset(i64::MAX)))
                    .unwrap(),
                Some((header.base_offset, header.max_timestamp_ms))
            );
        }
        // Re-replicated from the cut, the follower equals the leader again.
        block_on(follower.append_replicated(concat(&batches[kept..]))).unwrap();
        assert_eq!(contents(&follower), batches);
        assert_eq!(block_on(follower.epochs()), block_on(leader.epochs()));
        assert_eq!(
            block_on(follower.producer_state()),
            block_on(leader.producer_state())
        );
        block_on(follower.truncate_to(want_end)).unwrap();
    }
}

/// After a crash and a reopen: the follower holds the first batches of the leader's, byte for
/// byte, with the epochs and producers those give; returns how many.
fn assert_prefix_of_leader(
    follower: &Log<MemDisk>,
    batches: &[Bytes],
    leader_epochs: &spate_storage::epoch::EpochCache,
    config: &LogConfig,
) -> usize {
    let got = contents(follower);
    assert!(got.len() <= batches.len());
    let differs = got.iter().zip(batches).position(|(a, b)| a != b);
    assert_eq!(differs, None, "a prefix of the leader's log, byte for byte");
    let end = follower.log_end_offset();
    assert_eq!(end, Offset(3 * got.len() as i64));
    let mut epochs = leader_epochs.clone();
    epochs.truncate_from_end(end);
    assert_eq!(block_on(follower.epochs()), epochs);
    assert_eq!(
        block_on(follower.producer_state()),
        producers_of(batches, end, config)
    );
    got.len()
}

#[test]
fn a_truncation_that_fails_part_way_fences_the_log_and_recovers_a_prefix_never_a_hole() {
    use spate_storage::io::mem::FaultOp;
    let (leader_disk, _) = (MemDisk::new(), ());
    let (leader, batches) = leader(&leader_disk, 300);
    let leader_epochs = block_on(leader.epochs());
    let config = small_config(FlushPolicy::Never);
    let faults = (1..=8)
        .map(|n| (FaultOp::Remove, n))
        .chain([(FaultOp::Truncate, 1), (FaultOp::Sync, 1)]);
    let mut longer = 0;
    for (op, nth) in faults {
        for seed in 0..4 {
            let disk = MemDisk::new();
            let follower = open(&disk, follower_dir(), config);
            block_on(follower.append_replicated(concat(&batches))).unwrap();
            block_on(follower.flush()).unwrap();
            assert!(block_on(follower.segment_count()) >= 4);
            disk.fail_nth(op, nth);
            let err = block_on(follower.truncate_to(Offset(30))).unwrap_err();
            assert!(!matches!(err, StorageError::Fenced), "{err}");
            assert!(matches!(
                block_on(follower.append_replicated(concat(&batches[..1]))),
                Err(StorageError::Fenced)
            ));
            drop(follower);
            disk.crash(seed);
            let follower = open(&disk, follower_dir(), config);
            let kept = assert_prefix_of_leader(&follower, &batches, &leader_epochs, &config);
            assert!(kept >= 10, "{op:?} {nth}: at least what was asked is kept");
            if kept > 10 {
                longer += 1;
            }
            // Truncating again finishes the job, and replication resumes from there.
            assert_eq!(
                block_on(follower.truncate_to(Offset(30))).unwrap(),
                Offset(30)
            );
            block_on(follower.append_replicated(concat(&batches[10..]))).unwrap();
            assert_eq!(contents(&follower), batches);
        }
    }
    assert!(longer > 0, "some failures left more than asked");
}

#[test]
fn a_call_dropped_while_its_batches_are_copied_fences_the_log_and_reopen_recovers_a_prefix() {
    let disk = MemDisk::new();
    // One epoch throughout, so the call's only waits are for the device's write slots.
    let batches: Vec<Bytes> = (0..100)
        .map(|i| stored(3 * i, 3, 300, 1, None).freeze())
        .collect();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        write_buffer_bytes_max: 4096,
        ..small_config(FlushPolicy::Never)
    };
    let follower = open(&disk, follower_dir(), config);
    block_on(follower.append_replicated(concat(&batches[..5]))).unwrap();
    block_on(follower.flush()).unwrap();
    // The device stalls: the call fills every queued buffer, then waits for a write slot with
    // a batch half copied, and the fetcher's task is dropped there.
    disk.hold_writes(true);
    {
        let call = follower.append_replicated(concat(&batches[5..]));
        assert!(
            common::poll_n(std::pin::pin!(call), 100).is_none(),
            "the call waits for the device"
        );
    }
    disk.hold_writes(false);
    let counted = follower.log_end_offset();
    assert!(counted > Offset(60), "many batches were counted: {counted}");
    let again = block_on(follower.append_replicated(concat(&batches[(counted.0 / 3) as usize..])));
    assert!(matches!(again, Err(StorageError::Fenced)), "{again:?}");
    drop(follower);
    // Each round crashes what the previous one left (its re-replication unsynced).
    for seed in 0..3 {
        disk.crash(seed);
        let follower = open(&disk, follower_dir(), config);
        let got = contents(&follower);
        let kept = got.len();
        assert!(kept >= 5);
        assert_eq!(got, batches[..kept], "a prefix, byte for byte");
        assert_eq!(follower.log_end_offset(), Offset(3 * kept as i64));
        assert_eq!(block_on(follower.epochs()).entries().len(), 1);
        block_on(follower.append_replicated(concat(&batches[kept..]))).unwrap();
        assert_eq!(contents(&follower), batches);
    }
}

#[test]
fn a_call_dropped_while_it_writes_the_epoch_checkpoint_leaves_no_epoch_behind() {
    let disk = MemDisk::new();
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    block_on(follower.append_replicated(stored(0, 2, 10, 1, None))).unwrap();
    let before = block_on(follower.epochs());
    disk.hold_writes(true);
    {
        // Epoch 2 is new: its checkpoint is written before the batch is buffered.
        let call = follower.append_replicated(stored(2, 2, 10, 2, None));
        assert!(common::poll_n(std::pin::pin!(call), 100).is_none());
    }
    disk.hold_writes(false);
    assert_eq!(follower.log_end_offset(), Offset(2));
    assert_eq!(block_on(follower.epochs()), before);
    // Nothing was counted, so nothing is fenced: the leader's batch of epoch 1 still goes on
    // (an entry of epoch 2 left behind would refuse it as a regression), then epoch 2.
    let call = concat(&[
        stored(2, 2, 10, 1, None).freeze(),
        stored(4, 2, 10, 2, None).freeze(),
    ]);
    let out = block_on(follower.append_replicated(call)).unwrap();
    assert_eq!(out.log_end, Offset(6));
    let epochs: Vec<(i32, i64)> = block_on(follower.epochs())
        .entries()
        .iter()
        .map(|e| (e.epoch.0, e.start_offset.0))
        .collect();
    assert_eq!(epochs, vec![(1, 0), (2, 4)]);
}

/// A follower whose leader's log now starts past the follower's end empties its log and starts
/// it there: reads below refuse, the leader's batches from there append, and all of it holds
/// after a reopen and after a power loss at any point of the reset (the log reopens either as
/// it was or as reset, never as a mix that would count the old records as below the new start
/// or the gap as data).
#[test]
fn a_follower_behind_its_leaders_start_restarts_empty_at_that_start() {
    let disk = MemDisk::new();
    let (_leader, batches) = leader(&disk, 12);
    // The follower has the first four batches (offsets 0..12), synced.
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    block_on(follower.append_replicated(concat(&batches[..4]))).unwrap();
    block_on(follower.flush()).unwrap();
    // Not past the end: refused, nothing changed.
    for start in [Offset(0), Offset(12)] {
        assert!(matches!(
            block_on(follower.truncate_fully_and_start_at(start)),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }
    assert_eq!(follower.log_end_offset(), Offset(12));
    // The leader deleted everything below offset 24 (batch 8).
    block_on(follower.truncate_fully_and_start_at(Offset(24))).unwrap();
    assert_eq!(follower.log_start_offset(), Offset(24));
    assert_eq!(follower.log_end_offset(), Offset(24));
    assert!(contents(&follower).is_empty());
    assert!(matches!(
        block_on(follower.read(Offset(3), 1 << 20, ReadUpTo::LogEnd)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(block_on(follower.epochs()).latest(), None);
    // An empty log may restart anywhere but at its end (the leader's start fell inside a batch:
    // the follower restarts at the batch's base).
    assert!(block_on(follower.truncate_fully_and_start_at(Offset(24))).is_err());
    block_on(follower.truncate_fully_and_start_at(Offset(21))).unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (Offset(21), Offset(21))
    );
    block_on(follower.truncate_fully_and_start_at(Offset(24))).unwrap();
    // The leader's batches from there append, with their epochs.
    let out = block_on(follower.append_replicated(concat(&batches[8..]))).unwrap();
    assert_eq!(out.log_end, Offset(36));
    assert_eq!(contents(&follower), batches[8..].to_vec());
    assert_eq!(
        block_on(follower.epochs()).latest().map(|e| e.epoch),
        Some(LeaderEpoch(6))
    );
    block_on(follower.flush()).unwrap();
    drop(follower);
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    assert_eq!(follower.log_start_offset(), Offset(24));
    assert_eq!(contents(&follower), batches[8..].to_vec());
    drop(follower);

    // A power loss during the reset, at every point: reopened, the log is the old one (or the
    // old one emptied at its end) or the empty one at 24, each whole.
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let disk = MemDisk::new();
        let (_leader, batches) = leader(&disk, 12);
        let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
        block_on(follower.append_replicated(concat(&batches[..4]))).unwrap();
        block_on(follower.flush()).unwrap();
        // Stop the reset part way: its `seed % 8`-th operation fails, or none does.
        let fault = seed % 8;
        if fault < 4 {
            let op = [
                spate_storage::io::mem::FaultOp::Rename,
                spate_storage::io::mem::FaultOp::Allocate,
                spate_storage::io::mem::FaultOp::Remove,
                spate_storage::io::mem::FaultOp::Sync,
            ][fault as usize];
            disk.fail_nth(op, 1);
        }
        let result = block_on(follower.truncate_fully_and_start_at(Offset(24)));
        if result.is_err() {
            // A failure part way fences the log: nothing more is appended to it.
            assert!(matches!(
                block_on(follower.append_replicated(concat(&batches[8..9]))),
                Err(StorageError::Fenced)
            ));
        }
        drop(follower);
        disk.crash(seed);
        let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
        let state = (
            follower.log_start_offset(),
            follower.log_end_offset(),
            contents(&follower),
        );
        if state.1 == Offset(12) {
            // The old log; its start may have moved to its end (the new start was durable,
            // the new segment not: a start past the end is clamped to it), hiding records
            // the leader no longer has either.
            match state.0 {
                Offset(0) => assert_eq!(state.2, batches[..4].to_vec()),
                Offset(12) => assert!(state.2.is_empty()),
                other => panic!("seed {seed}: start {other:?}"),
            }
        } else {
            assert_eq!((state.0, state.1), (Offset(24), Offset(24)), "seed {seed}");
            assert!(state.2.is_empty());
            // The reset log takes the leader's batches from its start.
            block_on(follower.append_replicated(concat(&batches[8..]))).unwrap();
        }
        outcomes.insert(state.1);
    }
    assert_eq!(
        outcomes.len(),
        2,
        "some runs kept the old log, some the reset one"
    );
}

/// Bit rot in a closed segment of a replica: reads stop before the bad batch, and the segment is
/// rebuilt from this log's intact batches and another replica's from the damage on; afterwards
/// every batch reads back as the other replica has it, also after a reopen. The active segment
/// and a source whose batches do not fit are refused, changing nothing.
#[test]
fn a_damaged_closed_segment_is_repaired_from_another_replica() {
    let disk = MemDisk::new();
    let (leader, batches) = leader(&disk, 150);
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    block_on(follower.append_replicated(concat(&batches))).unwrap();
    block_on(follower.flush()).unwrap();
    assert!(block_on(follower.segment_count()) >= 3);
    drop(follower);
    // Rot inside the 11th batch of the first segment.
    let len = batches[0].len() as u64;
    let seg0 = follower_dir().join(format!("{:020}.log", 0));
    disk.flip_bit(&seg0, 10 * len + 100, 2);
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    let read = block_on(follower.read(Offset(0), 1 << 20, ReadUpTo::LogEnd)).unwrap();
    let ReadChunk::File(range) = &read.chunks[0] else {
        panic!("a closed segment is read from its file")
    };
    let loaded = block_on(range.load_valid()).unwrap();
    assert_eq!(loaded.bytes.len() as u64, 10 * len);
    assert!(loaded.damage.is_some());
    let damaged = Offset(30);

    // The leader's batches from an offset, as a replica's read answers them.
    let from_leader = |from: Offset| {
        let leader = &leader;
        async move {
            let read = leader
                .read(
                    from,
                    spate_storage::REPAIR_FETCH_BYTES_MAX as u64,
                    ReadUpTo::LogEnd,
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut out = BytesMut::new();
            for chunk in &read.chunks {
                match chunk {
                    ReadChunk::Memory(b) => out.extend_from_slice(&b.to_bytes()),
                    ReadChunk::File(r) => out.extend_from_slice(&r.load().await.unwrap()),
                }
            }
            Ok(out.freeze())
        }
    };
    // Not a closed segment: refused.
    let last = follower.log_end_offset();
    assert!(matches!(
        block_on(follower.repair_segment(Offset(last.0 - 1), from_leader)),
        Err(StorageError::NotRepairable { .. })
    ));
    // A source whose batch boundaries differ: refused, nothing swapped.
    let ninth = batches[9].clone();
    let shifted = |_from: Offset| {
        let ninth = ninth.clone();
        async move { Ok(ninth) }
    };
    assert!(matches!(
        block_on(follower.repair_segment(damaged, shifted)),
        Err(StorageError::NotRepairable { .. })
    ));
    assert!(block_on(read_all(&follower, Offset(0), ReadUpTo::LogEnd)).is_err());

    let outcome = block_on(follower.repair_segment(damaged, from_leader)).unwrap();
    assert_eq!(outcome.segment, Offset(0));
    assert_eq!(outcome.batches_kept, 10);
    assert!(outcome.batches_fetched > 0 && !outcome.superseded);
    assert_eq!(contents(&follower), batches);
    drop(follower);
    let follower = open(&disk, follower_dir(), small_config(FlushPolicy::Never));
    assert_eq!(contents(&follower), batches);
    // No leftover files from the swap.
    let names = block_on(spate_storage::io::Disk::list_dir(
        &disk,
        follower_dir(),
        1000,
    ))
    .unwrap();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".cleaned") && !n.ends_with(".swap")),
        "{names:?}"
    );
}
