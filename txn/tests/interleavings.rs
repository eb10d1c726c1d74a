//! Property test: any interleaving of client calls, produced data, appends that succeed or
//! fail, marker writes, timeouts and coordinator restarts keeps one outcome per transaction.
//!
//! The harness plays the broker: it keeps the durable `__transaction_state` log (only records
//! whose append was reported as done, plus those a crash happened to keep), the data partitions
//! (transactional data and COMMIT/ABORT markers), and clients that remember the producer id and
//! epoch they were last given. A transaction is identified by the model as (transactional id,
//! the number of times that id's durable state entered `Ongoing`), computed from the durable log
//! alone. At the end everything in flight is drained and every open transaction times out; then
//! each data record must be decided by the first marker of its producer after it, every record of
//! one transaction must get the same outcome, and an acknowledged commit (abort) must be a commit
//! (abort). Ids idle for `ID_EXPIRATION_MS` expire (a tombstone) and come back as new ones.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use spate_txn::records::StateRecord;
use spate_txn::state::*;
use spate_wire::types::{ProducerEpoch, ProducerId};

const IDS: [&str; 2] = ["a", "b"];
const CLIENTS: usize = 4; // clients 0 and 2 use "a", 1 and 3 use "b"
const PARTITIONS: i32 = 3;
const TIMEOUT_MS: i32 = 1_000;
/// Short enough that ids expire (and come back with new producer ids) within a case.
const ID_EXPIRATION_MS: i64 = 1_200;

fn config() -> TxnConfig {
    TxnConfig {
        id_expiration_ms: ID_EXPIRATION_MS,
        ..TxnConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Init(usize),
    Add(usize, i32),
    Produce(usize, i32),
    End(usize, bool),
    Complete(usize, bool),
    Markers(usize),
    Tick(i64),
    Restart(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..CLIENTS).prop_map(Op::Init),
        4 => (0..CLIENTS, 0..PARTITIONS).prop_map(|(c, p)| Op::Add(c, p)),
        4 => (0..CLIENTS, 0..PARTITIONS).prop_map(|(c, p)| Op::Produce(c, p)),
        3 => (0..CLIENTS, any::<bool>()).prop_map(|(c, b)| Op::End(c, b)),
        6 => (0..4usize, prop::bool::weighted(0.85)).prop_map(|(i, ok)| Op::Complete(i, ok)),
        3 => (0..4usize).prop_map(Op::Markers),
        1 => (1i64..1_500).prop_map(Op::Tick),
        1 => any::<u8>().prop_map(Op::Restart),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Init(usize),
    Other(usize),
    End(usize, TxnResult),
    Internal,
}

#[derive(Debug, Clone)]
enum Entry {
    Data {
        pid: ProducerId,
        epoch: ProducerEpoch,
        txn: (usize, u32),
    },
    Marker {
        pid: ProducerId,
        epoch: ProducerEpoch,
        result: TxnResult,
    },
}

struct Harness {
    coordinator: TxnCoordinator,
    durable: Vec<StateRecord>,
    in_flight: Vec<(String, StateRecord, Waiting)>,
    markers: Vec<MarkerWrite>,
    partitions: Vec<Vec<Entry>>,
    clients: [Option<(ProducerId, ProducerEpoch)>; CLIENTS],
    next_pid: i64,
    now_ms: i64,
    acked: HashMap<(usize, u32), TxnResult>,
}

fn id_of(client: usize) -> &'static str {
    IDS[client % 2]
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

impl Harness {
    fn new() -> Harness {
        Harness {
            coordinator: TxnCoordinator::new(config()),
            durable: Vec::new(),
            in_flight: Vec::new(),
            markers: Vec::new(),
            partitions: vec![Vec::new(); PARTITIONS as usize],
            clients: [None; CLIENTS],
            next_pid: 1000,
            now_ms: 0,
            acked: HashMap::new(),
        }
    }

    /// The current transaction number of `id`: how often its durable state entered Ongoing.
    fn txn_number(&self, id: &str) -> u32 {
        let mut n = 0;
        let mut ongoing = false;
        for r in self.durable.iter().filter(|r| r.transactional_id == id) {
            let now = r
                .value
                .as_ref()
                .is_some_and(|v| v.state == TxnState::Ongoing);
            if now && !ongoing {
                n += 1;
            }
            ongoing = now;
        }
        n
    }

    fn id_index(id: &str) -> usize {
        IDS.iter().position(|i| *i == id).unwrap()
    }

    fn handle(&mut self, id: &str, step: Step, waiting: Waiting) {
        match step {
            Step::Answer(answer) => self.answer(waiting, answer),
            Step::Append(record) => {
                assert_eq!(record.transactional_id, id);
                self.in_flight.push((id.to_owned(), record, waiting));
            }
            Step::NeedProducerId => unreachable!("handled by the caller"),
        }
    }

    fn answer(&mut self, waiting: Waiting, answer: Answer) {
        match (waiting, answer) {
            (Waiting::Init(c), Answer::ProducerIdAndEpoch(pid, epoch)) => {
                self.clients[c] = Some((pid, epoch));
            }
            (Waiting::End(c, result), Answer::Done) => {
                let id = id_of(c);
                let txn = (Self::id_index(id), self.txn_number(id));
                let previous = self.acked.insert(txn, result);
                assert!(
                    previous.is_none_or(|p| p == result),
                    "{txn:?} acked both ways"
                );
            }
            (Waiting::Internal, a) => panic!("internal record answered {a:?}"),
            (Waiting::Init(_), Answer::Done) => panic!("init answered Done"),
            _ => {}
        }
    }

    fn step(&mut self, op: Op) {
        let now = self.now_ms;
        match op {
            Op::Init(c) => {
                let id = id_of(c);
                let mut step = self
                    .coordinator
                    .init_producer_id(id, TIMEOUT_MS, None, None, now);
                if step == Step::NeedProducerId {
                    self.next_pid += 1;
                    let pid = Some(ProducerId(self.next_pid));
                    step = self
                        .coordinator
                        .init_producer_id(id, TIMEOUT_MS, None, pid, now);
                }
                self.handle(id, step, Waiting::Init(c));
            }
            Op::Add(c, p) => {
                let Some((pid, epoch)) = self.clients[c] else {
                    return;
                };
                let id = id_of(c);
                let step = self
                    .coordinator
                    .add_partitions(id, pid, epoch, &[tp(p)], now);
                self.handle(id, step, Waiting::Other(c));
            }
            Op::Produce(c, p) => {
                let Some((pid, epoch)) = self.clients[c] else {
                    return;
                };
                let id = id_of(c);
                if self.coordinator.is_in_transaction(id, pid, epoch, &tp(p)) {
                    let txn = (Self::id_index(id), self.txn_number(id));
                    assert!(txn.1 > 0);
                    self.partitions[p as usize].push(Entry::Data { pid, epoch, txn });
                }
            }
            Op::End(c, commit) => {
                let Some((pid, epoch)) = self.clients[c] else {
                    return;
                };
                let id = id_of(c);
                let result = if commit {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                };
                let step = self.coordinator.end_txn(id, pid, epoch, result, now);
                self.handle(id, step, Waiting::End(c, result));
            }
            Op::Complete(i, ok) => {
                if self.in_flight.is_empty() {
                    return;
                }
                let (id, record, waiting) = self.in_flight.remove(i % self.in_flight.len());
                if ok {
                    self.durable.push(record);
                }
                let after = self.coordinator.appended(&id, ok);
                if let Some(answer) = after.answer {
                    self.answer(waiting, answer);
                } else {
                    assert_eq!(waiting, Waiting::Internal);
                }
                self.markers.extend(after.markers);
            }
            Op::Markers(i) => {
                if self.markers.is_empty() {
                    return;
                }
                let write = self.markers.remove(i % self.markers.len());
                for partition in &write.partitions {
                    self.partitions[partition.partition as usize].push(Entry::Marker {
                        pid: write.producer_id,
                        epoch: write.producer_epoch,
                        result: write.result,
                    });
                }
                if let Some(record) = self.coordinator.markers_written(&write, now) {
                    let id = write.transactional_id.clone();
                    self.in_flight.push((id, record, Waiting::Internal));
                }
            }
            Op::Tick(dt) => {
                self.now_ms += dt;
                for record in self.coordinator.tick(self.now_ms) {
                    let id = record.transactional_id.clone();
                    self.in_flight.push((id, record, Waiting::Internal));
                }
            }
            Op::Restart(keep) => {
                // A crash: each in-flight append was or was not made durable, in order.
                for (i, (_, record, _)) in self.in_flight.drain(..).enumerate() {
                    if keep & (1 << (i % 8)) != 0 {
                        self.durable.push(record);
                    }
                }
                self.markers.clear();
                self.coordinator = TxnCoordinator::new(config());
                self.markers = self.coordinator.load(self.durable.clone());
            }
        }
    }

    /// Completes everything in flight, then lets open transactions time out, until quiet.
    fn drain(&mut self) {
        for _ in 0..1000 {
            if !self.in_flight.is_empty() {
                self.step(Op::Complete(0, true));
            } else if !self.markers.is_empty() {
                self.step(Op::Markers(0));
            } else {
                self.step(Op::Tick(i64::from(TIMEOUT_MS) + 1));
                if self.in_flight.is_empty() {
                    return;
                }
            }
        }
        panic!("did not quiesce");
    }

    fn check(&self) {
        let mut outcomes: HashMap<(usize, u32), BTreeSet<(bool, usize)>> = HashMap::new();
        for (p, log) in self.partitions.iter().enumerate() {
            for (i, entry) in log.iter().enumerate() {
                let Entry::Data { pid, epoch, txn } = entry else {
                    continue;
                };
                let decided = log[i + 1..].iter().find_map(|e| match e {
                    Entry::Marker {
                        pid: mp,
                        epoch: me,
                        result,
                    } if mp == pid => {
                        assert!(me >= epoch, "marker epoch below its data's");
                        Some(*result)
                    }
                    _ => None,
                });
                let result =
                    decided.unwrap_or_else(|| panic!("{txn:?} undecided in partition {p}"));
                outcomes
                    .entry(*txn)
                    .or_default()
                    .insert((result == TxnResult::Commit, p));
                if let Some(acked) = self.acked.get(txn) {
                    assert_eq!(
                        *acked, result,
                        "{txn:?} acknowledged {acked:?}, decided {result:?}"
                    );
                }
            }
        }
        for (txn, results) in outcomes {
            let kinds: BTreeSet<bool> = results.iter().map(|(c, _)| *c).collect();
            assert_eq!(kinds.len(), 1, "{txn:?} has both outcomes: {results:?}");
        }
        // The durable log never decides one transaction both ways.
        for (idx, id) in IDS.iter().enumerate() {
            let mut n = 0;
            let mut ongoing = false;
            let mut decided: HashMap<u32, TxnState> = HashMap::new();
            for r in self.durable.iter().filter(|r| r.transactional_id == *id) {
                // A tombstone (the id expired) ends whatever was there, like a non-Ongoing state.
                let Some(state) = r.value.as_ref().map(|v| v.state) else {
                    ongoing = false;
                    continue;
                };
                if state == TxnState::Ongoing && !ongoing {
                    n += 1;
                }
                ongoing = state == TxnState::Ongoing;
                if matches!(state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    let first = *decided.entry(n).or_insert(state);
                    assert_eq!(first, state, "transaction ({idx}, {n}) decided twice");
                }
            }
        }
        assert!(self.coordinator.iter().all(|(_, m)| !matches!(
            m.state,
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
        )));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_transaction_has_one_outcome(ops in proptest::collection::vec(op(), 1..120)) {
        let mut h = Harness::new();
        for op in ops {
            h.step(op);
        }
        h.drain();
        h.check();
    }
}

/// The harness itself must see transactions decided both ways, or the property above could be
/// passing vacuously.
#[test]
fn harness_sees_commits_aborts_and_fencing() {
    let mut h = Harness::new();
    let script = [
        Op::Init(0),
        Op::Complete(0, true),
        Op::Add(0, 0),
        Op::Complete(0, true),
        Op::Produce(0, 0),
        Op::End(0, true),
        Op::Complete(0, true),
        Op::Markers(0),
        Op::Complete(0, true),
        Op::Add(0, 1),
        Op::Complete(0, true),
        Op::Produce(0, 1),
        Op::End(0, false),
        Op::Complete(0, true),
        Op::Markers(0),
        Op::Complete(0, true),
        Op::Add(0, 2),
        Op::Complete(0, true),
        Op::Produce(0, 2),
        // A second instance fences the first and aborts its transaction.
        Op::Init(2),
        Op::Complete(0, true),
        Op::Markers(0),
        Op::Complete(0, true),
        Op::Init(2),
        Op::Complete(0, true),
        Op::Produce(0, 2),
    ];
    for op in script {
        h.step(op);
    }
    h.drain();
    h.check();
    assert_eq!(h.acked.len(), 2);
    let markers: Vec<TxnResult> = h
        .partitions
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Entry::Marker { result, .. } => Some(*result),
            _ => None,
        })
        .collect();
    assert_eq!(
        markers,
        vec![TxnResult::Commit, TxnResult::Abort, TxnResult::Abort]
    );
    let data = h
        .partitions
        .iter()
        .flatten()
        .filter(|e| matches!(e, Entry::Data { .. }))
        .count();
    assert_eq!(data, 3, "the fenced producer's last write was refused");
}
