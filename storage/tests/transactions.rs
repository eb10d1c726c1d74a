//! Transactions in a partition's log: transactional batches open a producer's transaction,
//! COMMIT/ABORT markers close it; the last stable offset stops at the earliest open
//! transaction; aborted transactions are listed for `read_committed` reads; all of it survives a
//! crash (replay of batch headers and markers), a clean close (snapshot v2) and segment rolls.

mod common;

use std::path::Path;

use bytes::BytesMut;
use common::small_config;
use spate_storage::io::mem::MemDisk;
use spate_storage::producer_state::{AbortedTxn, ProducerError};
use spate_storage::{block_on, FlushPolicy, Log, StorageError, TxnAdmission};
use spate_wire::batch::{put_txn_marker, set_transactional, BatchBuilder, BatchSpec, ControlType};
use spate_wire::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

fn dir() -> &'static Path {
    Path::new("/t")
}

/// A transactional batch of `records` records.
fn tbatch(pid: i64, epoch: i16, seq: i32, records: usize) -> BytesMut {
    let mut out = BytesMut::new();
    let spec = BatchSpec {
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(epoch),
        base_sequence: seq,
        ..BatchSpec::default()
    };
    let mut builder = BatchBuilder::new(&mut out, spec);
    for _ in 0..records {
        builder.push(0, None, Some(&[7u8; 100]), &[]);
    }
    builder.finish();
    set_transactional(&mut out);
    out
}

fn marker(pid: i64, epoch: i16, control: ControlType) -> BytesMut {
    let mut out = BytesMut::new();
    put_txn_marker(
        &mut out,
        ProducerId(pid),
        ProducerEpoch(epoch),
        0,
        control,
        0,
    );
    out
}

fn open(disk: &MemDisk) -> Log<MemDisk> {
    block_on(Log::open(
        disk.clone(),
        dir(),
        small_config(FlushPolicy::Never),
    ))
    .expect("open")
}

fn append(log: &Log<MemDisk>, b: BytesMut) -> Result<Offset, StorageError> {
    block_on(log.append(b, LeaderEpoch(0))).map(|i| i.base_offset)
}

fn lso(log: &Log<MemDisk>) -> Offset {
    block_on(log.last_stable_offset())
}

fn aborted(log: &Log<MemDisk>) -> Vec<AbortedTxn> {
    block_on(log.aborted_transactions(Offset(0), Offset(i64::MAX)))
}

#[test]
fn lso_stops_at_the_earliest_open_transaction_and_aborts_are_listed() {
    let disk = MemDisk::new();
    let log = open(&disk);
    append(&log, tbatch(1, 0, 0, 2)).unwrap(); // 0-1, producer 1
    append(&log, tbatch(2, 0, 0, 3)).unwrap(); // 2-4, producer 2
    assert_eq!(lso(&log), Offset(0));
    append(&log, tbatch(1, 0, 2, 1)).unwrap(); // 5
    assert_eq!(
        append(&log, marker(1, 0, ControlType::Commit)).unwrap(),
        Offset(6)
    );
    assert_eq!(
        lso(&log),
        Offset(2),
        "producer 2's transaction is still open"
    );
    assert!(aborted(&log).is_empty());
    assert_eq!(
        append(&log, marker(2, 0, ControlType::Abort)).unwrap(),
        Offset(7)
    );
    assert_eq!(lso(&log), log.log_end_offset());
    let expected = vec![AbortedTxn {
        producer_id: ProducerId(2),
        first_offset: Offset(2),
        last_offset: Offset(7),
    }];
    assert_eq!(aborted(&log), expected);
    // Kafka's range rule: marker at or after the read's start, first offset below its end.
    assert!(block_on(log.aborted_transactions(Offset(8), Offset(20))).is_empty());
    assert!(block_on(log.aborted_transactions(Offset(0), Offset(2))).is_empty());
    assert_eq!(
        block_on(log.aborted_transactions(Offset(7), Offset(8))),
        expected
    );
    // A new transaction of producer 1 opens at its first batch.
    append(&log, tbatch(1, 0, 3, 1)).unwrap(); // 8
    assert_eq!(lso(&log), Offset(8));
}

#[test]
fn a_marker_with_an_older_epoch_is_refused_and_a_newer_one_fences() {
    let disk = MemDisk::new();
    let log = open(&disk);
    append(&log, tbatch(1, 3, 0, 1)).unwrap();
    let err = append(&log, marker(1, 2, ControlType::Commit)).unwrap_err();
    assert!(matches!(
        err,
        StorageError::Producer(ProducerError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(lso(&log), Offset(0));
    // The coordinator aborts with a bumped epoch (timeout or a new producer instance).
    append(&log, marker(1, 4, ControlType::Abort)).unwrap();
    assert_eq!(lso(&log), log.log_end_offset());
    // The old epoch's data is now refused.
    assert!(append(&log, tbatch(1, 3, 1, 1)).is_err());
    // The new epoch starts at sequence 0.
    append(&log, tbatch(1, 4, 0, 1)).unwrap();
}

#[test]
fn open_and_aborted_transactions_survive_a_crash_and_a_clean_close() {
    let disk = MemDisk::new();
    let log = open(&disk);
    append(&log, tbatch(1, 0, 0, 2)).unwrap(); // 0-1
    append(&log, marker(1, 0, ControlType::Abort)).unwrap(); // 2
    append(&log, tbatch(2, 0, 0, 2)).unwrap(); // 3-4, left open
    block_on(log.flush()).unwrap();
    let before_aborted = aborted(&log);
    drop(log);
    disk.crash(1);
    // Recovery replays batch headers and markers (no snapshot was written).
    let log = open(&disk);
    assert_eq!(lso(&log), Offset(3));
    assert_eq!(aborted(&log), before_aborted);
    append(&log, marker(2, 0, ControlType::Commit)).unwrap(); // 5
    append(&log, tbatch(3, 0, 0, 1)).unwrap(); // 6, left open
    block_on(log.close()).unwrap();
    // A clean close writes a snapshot: reopening reads it, not the log.
    let log = open(&disk);
    assert_eq!(lso(&log), Offset(6));
    assert_eq!(aborted(&log), before_aborted);
}

#[test]
fn aborted_transactions_outlive_segment_rolls_through_snapshots() {
    let disk = MemDisk::new();
    let log = open(&disk);
    // 64 KiB segments: each round is ~12 KiB, so several rolls with snapshots in between.
    let mut expected = Vec::new();
    for round in 0..20i64 {
        let first = append(&log, tbatch(round, 0, 0, 100)).unwrap();
        let control = if round % 3 == 0 {
            ControlType::Abort
        } else {
            ControlType::Commit
        };
        let at = append(&log, marker(round, 0, control)).unwrap();
        if control == ControlType::Abort {
            expected.push(AbortedTxn {
                producer_id: ProducerId(round),
                first_offset: first,
                last_offset: at,
            });
        }
    }
    assert!(block_on(log.segment_count()) >= 3);
    assert_eq!(aborted(&log), expected);
    assert_eq!(expected.len(), 7);
    block_on(log.flush()).unwrap();
    drop(log);
    disk.crash(3);
    let log = open(&disk);
    assert_eq!(aborted(&log), expected);
    assert_eq!(lso(&log), log.log_end_offset());
}

#[test]
fn coordinator_written_transactional_batches_need_no_sequence_but_a_current_epoch() {
    let disk = MemDisk::new();
    let log = open(&disk);
    append(&log, tbatch(5, 2, 0, 1)).unwrap(); // 0: the producer's data, epoch 2
                                               // A group coordinator's offsets for the same producer: no sequence (-1).
    assert_eq!(append(&log, tbatch(5, 2, -1, 2)).unwrap(), Offset(1));
    assert_eq!(lso(&log), Offset(0));
    // An older epoch is refused even without a sequence.
    assert!(matches!(
        append(&log, tbatch(5, 1, -1, 1)).unwrap_err(),
        StorageError::Producer(ProducerError::InvalidProducerEpoch { .. })
    ));
    append(&log, marker(5, 2, ControlType::Commit)).unwrap();
    assert_eq!(lso(&log), log.log_end_offset());
    // The producer's sequence continues where its own data left it.
    append(&log, tbatch(5, 2, 1, 1)).unwrap();
}

/// Appends `b` admitted only if it continues its producer's open transaction.
fn append_if_ongoing(log: &Log<MemDisk>, b: BytesMut) -> Result<Offset, StorageError> {
    let batch = spate_wire::batch::CheckedBatch::check(b.freeze()).expect("a valid batch");
    block_on(log.append_checked(batch, LeaderEpoch(0), TxnAdmission::OngoingOnly))
        .map(|i| i.base_offset)
}

#[test]
fn an_unverified_transactional_batch_is_admitted_only_inside_its_open_transaction() {
    let disk = MemDisk::new();
    let log = open(&disk);
    let refused = |r: Result<Offset, StorageError>| {
        matches!(
            r,
            Err(StorageError::NoOngoingTransaction { producer_id: 1, .. })
        )
    };
    // No transaction open: nothing to continue.
    assert!(refused(append_if_ongoing(&log, tbatch(1, 0, 0, 1))));
    assert_eq!(log.log_end_offset(), Offset(0), "nothing written");
    append(&log, tbatch(1, 0, 0, 1)).unwrap();
    // Open in epoch 0: a batch of epoch 0 continues it.
    assert_eq!(
        append_if_ongoing(&log, tbatch(1, 0, 1, 2)).unwrap(),
        Offset(1)
    );
    // Another epoch of the same producer is not that transaction.
    let other_epoch = append_if_ongoing(&log, tbatch(1, 1, 0, 1));
    assert!(matches!(
        other_epoch,
        Err(StorageError::NoOngoingTransaction { epoch: 1, .. })
    ));
    // Non-transactional batches are not gated.
    assert_eq!(append_if_ongoing(&log, tbatch_plain(9)).unwrap(), Offset(3));
    // Once the marker closes the transaction, a late batch of it is refused (KIP-890: it
    // would open a transaction nobody ends).
    append(&log, marker(1, 0, ControlType::Commit)).unwrap();
    assert!(refused(append_if_ongoing(&log, tbatch(1, 0, 3, 1))));
    assert_eq!(lso(&log), log.log_end_offset(), "no transaction left open");
}

/// A plain (non-transactional, non-idempotent) batch of `records` records.
fn tbatch_plain(records: usize) -> BytesMut {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    for _ in 0..records {
        builder.push(0, None, Some(&[1u8; 10]), &[]);
    }
    builder.finish();
    out
}
