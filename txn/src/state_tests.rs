//! Unit tests of the coordinator's transitions.

use spate_wire::types::{ProducerEpoch, ProducerId};

use crate::records::StateRecord;
use crate::state::*;

const PID: ProducerId = ProducerId(100);

fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition::new(topic, p)
}

/// Runs a step to its answer, appending successfully.
fn run(c: &mut TxnCoordinator, id: &str, step: Step) -> AfterAppend {
    match step {
        Step::Answer(a) => AfterAppend {
            answer: Some(a),
            markers: None,
        },
        Step::Append(record) => {
            assert_eq!(record.transactional_id, id);
            c.appended(id, true)
        }
        Step::NeedProducerId => panic!("unexpected NeedProducerId"),
    }
}

fn init(c: &mut TxnCoordinator, id: &str, now: i64) -> Answer {
    let mut step = c.init_producer_id(id, 10_000, None, None, now);
    if step == Step::NeedProducerId {
        step = c.init_producer_id(id, 10_000, None, Some(PID), now);
    }
    run(c, id, step).answer.unwrap()
}

fn complete(c: &mut TxnCoordinator, markers: &MarkerWrite) {
    let record = c.markers_written(markers, 0).expect("completion record");
    let id = markers.transactional_id.clone();
    assert_eq!(record.transactional_id, id);
    let after = c.appended(&id, true);
    assert_eq!(
        after,
        AfterAppend {
            answer: None,
            markers: None
        }
    );
}

#[test]
fn first_init_allocates_a_producer_id_with_epoch_zero_then_bumps() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    assert_eq!(
        init(&mut c, "a", 0),
        Answer::ProducerIdAndEpoch(PID, ProducerEpoch(0))
    );
    assert_eq!(
        init(&mut c, "a", 1),
        Answer::ProducerIdAndEpoch(PID, ProducerEpoch(1))
    );
    assert_eq!(c.get("a").unwrap().state, TxnState::Empty);
}

#[test]
fn commit_writes_commit_markers_to_every_added_partition() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    init(&mut c, "a", 0);
    let e = ProducerEpoch(0);
    let step = c.add_partitions("a", PID, e, &[tp("x", 0), tp("y", 1)], 5);
    assert_eq!(run(&mut c, "a", step).answer, Some(Answer::Done));
    // Adding again is answered without a record.
    assert_eq!(
        c.add_partitions("a", PID, e, &[tp("x", 0)], 6),
        Step::Answer(Answer::Done)
    );
    assert!(c.is_in_transaction("a", PID, e, &tp("y", 1)));
    assert!(!c.is_in_transaction("a", PID, e, &tp("y", 0)));
    // A verification checks the producer first, with Kafka's errors.
    assert_eq!(c.verify_producer("a", PID, e), Ok(()));
    assert_eq!(
        c.verify_producer("unknown", PID, e),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        c.verify_producer("a", ProducerId(PID.0 + 1), e),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        c.verify_producer("a", PID, ProducerEpoch(1)),
        Err(TxnError::ProducerFenced)
    );
    let step = c.end_txn("a", PID, e, TxnResult::Commit, 7);
    let after = run(&mut c, "a", step);
    assert_eq!(after.answer, Some(Answer::Done));
    let markers = after.markers.unwrap();
    assert_eq!(markers.result, TxnResult::Commit);
    assert_eq!(markers.partitions, vec![tp("x", 0), tp("y", 1)]);
    assert_eq!(markers.producer_epoch, e);
    // While the markers are written, the producer waits.
    assert_eq!(
        c.verify_producer("a", PID, e),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        c.add_partitions("a", PID, e, &[tp("x", 0)], 8),
        Step::Answer(Answer::Error(TxnError::ConcurrentTransactions))
    );
    complete(&mut c, &markers);
    assert_eq!(c.get("a").unwrap().state, TxnState::CompleteCommit);
    assert!(c.get("a").unwrap().partitions.is_empty());
    // A retried EndTxn is answered Done; the opposite outcome is refused.
    assert_eq!(
        c.end_txn("a", PID, e, TxnResult::Commit, 9),
        Step::Answer(Answer::Done)
    );
    assert_eq!(
        c.end_txn("a", PID, e, TxnResult::Abort, 9),
        Step::Answer(Answer::Error(TxnError::InvalidTxnState(
            TxnState::CompleteCommit
        )))
    );
}

#[test]
fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    init(&mut c, "a", 0);
    let step = c.add_partitions("a", PID, ProducerEpoch(0), &[tp("x", 0)], 1);
    run(&mut c, "a", step);
    // The new instance's first InitProducerId aborts with a bumped epoch and asks it to retry.
    let step = c.init_producer_id("a", 10_000, None, None, 2);
    let after = run(&mut c, "a", step);
    assert_eq!(
        after.answer,
        Some(Answer::Error(TxnError::ConcurrentTransactions))
    );
    let markers = after.markers.unwrap();
    assert_eq!(markers.result, TxnResult::Abort);
    assert_eq!(markers.producer_epoch, ProducerEpoch(1));
    // Retrying before the abort completes waits too.
    assert_eq!(
        c.init_producer_id("a", 10_000, None, None, 3),
        Step::Answer(Answer::Error(TxnError::ConcurrentTransactions))
    );
    complete(&mut c, &markers);
    assert_eq!(
        init(&mut c, "a", 4),
        Answer::ProducerIdAndEpoch(PID, ProducerEpoch(2))
    );
    // The old producer is fenced everywhere.
    assert_eq!(
        c.end_txn("a", PID, ProducerEpoch(0), TxnResult::Commit, 5),
        Step::Answer(Answer::Error(TxnError::ProducerFenced))
    );
    assert_eq!(
        c.add_partitions("a", PID, ProducerEpoch(0), &[tp("x", 0)], 5),
        Step::Answer(Answer::Error(TxnError::ProducerFenced))
    );
    assert_eq!(
        c.add_partitions("a", ProducerId(5), ProducerEpoch(2), &[tp("x", 0)], 5),
        Step::Answer(Answer::Error(TxnError::InvalidProducerIdMapping))
    );
}

#[test]
fn timeout_aborts_with_a_bumped_epoch() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    init(&mut c, "a", 0);
    let step = c.add_partitions("a", PID, ProducerEpoch(0), &[tp("x", 0)], 1_000);
    run(&mut c, "a", step);
    assert!(c.tick(11_000).is_empty(), "not past the timeout yet");
    let records = c.tick(11_001);
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].value.as_ref().unwrap().state,
        TxnState::PrepareAbort
    );
    let after = c.appended("a", true);
    assert_eq!(after.answer, None);
    let markers = after.markers.unwrap();
    assert_eq!(
        (markers.result, markers.producer_epoch),
        (TxnResult::Abort, ProducerEpoch(1))
    );
    complete(&mut c, &markers);
    assert_eq!(
        c.end_txn("a", PID, ProducerEpoch(0), TxnResult::Commit, 12_000),
        Step::Answer(Answer::Error(TxnError::ProducerFenced))
    );
}

#[test]
fn failed_append_leaves_the_durable_state_unchanged() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    init(&mut c, "a", 0);
    assert_eq!(
        c.end_txn("a", PID, ProducerEpoch(0), TxnResult::Commit, 1),
        Step::Answer(Answer::Error(TxnError::InvalidTxnState(TxnState::Empty)))
    );
    let before = c.get("a").unwrap().clone();
    let Step::Append(_) = c.add_partitions("a", PID, ProducerEpoch(0), &[tp("x", 0)], 1) else {
        panic!("add opens a transaction")
    };
    assert!(c.is_pending("a"));
    let after = c.appended("a", false);
    assert_eq!(after.answer, Some(Answer::Error(TxnError::AppendFailed)));
    assert_eq!(c.get("a").unwrap(), &before);
    assert!(!c.is_pending("a"));
}

#[test]
fn kip360_retry_with_the_previous_epoch_gets_the_same_answer() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    init(&mut c, "a", 0);
    let step = c.init_producer_id("a", 10_000, Some((PID, ProducerEpoch(0))), None, 1);
    assert_eq!(
        run(&mut c, "a", step).answer,
        Some(Answer::ProducerIdAndEpoch(PID, ProducerEpoch(1)))
    );
    // The answer was lost; the producer retries with its old epoch.
    let step = c.init_producer_id("a", 10_000, Some((PID, ProducerEpoch(0))), None, 2);
    assert_eq!(
        run(&mut c, "a", step).answer,
        Some(Answer::ProducerIdAndEpoch(PID, ProducerEpoch(1)))
    );
    // Another producer id is fenced.
    let step = c.init_producer_id(
        "a",
        10_000,
        Some((ProducerId(9), ProducerEpoch(0))),
        None,
        2,
    );
    assert_eq!(step, Step::Answer(Answer::Error(TxnError::ProducerFenced)));
}

#[test]
fn exhausted_epoch_rotates_the_producer_id() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    init(&mut c, "a", 0);
    let mut records = vec![];
    // Load a state at the last usable epoch.
    let mut meta = c.get("a").unwrap().clone();
    meta.producer_epoch = ProducerEpoch(i16::MAX - 1);
    records.push(crate::records::StateRecord {
        transactional_id: "a".into(),
        value: Some(crate::records::TxnValue {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            timeout_ms: meta.timeout_ms,
            state: TxnState::CompleteCommit,
            partitions: Default::default(),
            last_update_ms: 0,
            start_ms: -1,
        }),
    });
    let mut c = TxnCoordinator::new(TxnConfig::default());
    assert!(c.load(records).is_empty());
    assert_eq!(
        c.init_producer_id("a", 10_000, None, None, 1),
        Step::NeedProducerId
    );
    let step = c.init_producer_id("a", 10_000, None, Some(ProducerId(101)), 1);
    assert_eq!(
        run(&mut c, "a", step).answer,
        Some(Answer::ProducerIdAndEpoch(
            ProducerId(101),
            ProducerEpoch(0)
        ))
    );
}

#[test]
fn timeouts_above_the_maximum_are_refused() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    assert_eq!(
        c.init_producer_id("a", 900_001, None, None, 0),
        Step::Answer(Answer::Error(TxnError::InvalidTransactionTimeout(900_001)))
    );
    assert_eq!(
        c.init_producer_id("", 1000, None, None, 0),
        Step::Answer(Answer::Error(TxnError::EmptyTransactionalId))
    );
}

#[test]
fn load_resumes_markers_of_decided_transactions() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut log = vec![];
    let mut step = c.init_producer_id("a", 10_000, None, Some(PID), 0);
    for s in 0..3 {
        let Step::Append(record) = step else {
            panic!("step {s}")
        };
        log.push(record);
        c.appended("a", true);
        step = match s {
            0 => c.add_partitions("a", PID, ProducerEpoch(0), &[tp("x", 3)], 1),
            _ => c.end_txn("a", PID, ProducerEpoch(0), TxnResult::Abort, 2),
        };
    }
    let mut restarted = TxnCoordinator::new(TxnConfig::default());
    let markers = restarted.load(log);
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].result, TxnResult::Abort);
    assert_eq!(markers[0].partitions, vec![tp("x", 3)]);
    complete(&mut restarted, &markers[0]);
    assert_eq!(restarted.get("a").unwrap().state, TxnState::CompleteAbort);
}

#[test]
fn an_idle_id_expires_with_a_tombstone_and_comes_back_as_new() {
    let config = TxnConfig {
        id_expiration_ms: 60_000,
        ..TxnConfig::default()
    };
    let mut c = TxnCoordinator::new(config);
    init(&mut c, "idle", 1_000);
    init(&mut c, "busy", 1_000);
    // "busy" has a transaction open (within its timeout): open ids never expire.
    let step = c.add_partitions("busy", PID, ProducerEpoch(0), &[tp("x", 0)], 55_000);
    run(&mut c, "busy", step);
    assert!(
        c.tick(61_000).is_empty(),
        "not idle for longer than the expiration yet"
    );

    let expired = c.tick(61_001);
    assert_eq!(expired.len(), 1);
    assert!(expired[0].value.is_none(), "a tombstone");
    assert_eq!(expired[0].transactional_id, "idle");
    assert!(c.is_pending("idle"));
    // While the tombstone is in flight the id is busy, not gone.
    assert_eq!(
        c.init_producer_id("idle", 10_000, None, None, 61_002),
        Step::Answer(Answer::Error(TxnError::ConcurrentTransactions))
    );
    let after = c.appended("idle", true);
    assert_eq!((after.answer, after.markers), (None, None));
    assert!(
        c.get("idle").is_none(),
        "forgotten once the tombstone is durable"
    );
    // The next InitProducerId starts over with a new producer id.
    assert_eq!(
        c.init_producer_id("idle", 10_000, None, None, 62_000),
        Step::NeedProducerId
    );
}

#[test]
fn a_failed_tombstone_keeps_the_id_and_the_next_tick_expires_it_again() {
    let config = TxnConfig {
        id_expiration_ms: 60_000,
        ..TxnConfig::default()
    };
    let mut c = TxnCoordinator::new(config);
    init(&mut c, "a", 0);
    let before = c.get("a").unwrap().clone();
    assert_eq!(c.tick(60_001).len(), 1);
    let after = c.appended("a", false);
    assert_eq!((after.answer, after.markers), (None, None));
    assert_eq!(c.get("a"), Some(&before));
    let again = c.tick(60_002);
    assert_eq!(again.len(), 1);
    assert!(again[0].value.is_none());
}

#[test]
fn a_tombstone_read_back_forgets_the_id() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    init(&mut c, "a", 0);
    let value = c.get("a").unwrap().to_value();
    let mut reloaded = TxnCoordinator::new(TxnConfig::default());
    reloaded.load([
        StateRecord {
            transactional_id: "a".into(),
            value: Some(value),
        },
        StateRecord {
            transactional_id: "a".into(),
            value: None,
        },
    ]);
    assert!(reloaded.get("a").is_none());
}
