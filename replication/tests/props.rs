//! Property tests of the cores in isolation: the epoch history against a brute-force model, a follower
//! truncating a divergent log against its leader, and the leader's high watermark and acks=all waiters
//! against a model of Kafka's rules.

use proptest::prelude::*;
use spate_replication::{
    AckDurability, AckError, Acks, Action, Batch, EpochHistory, Event, FetchAnswer, FetchRequest,
    FetchResponse, LeaderEpoch, LogState, NodeId, NowMs, Offset, PartitionEpoch, PartitionState,
    Replica, ReplicaConfig, RoleKind, WaiterId,
};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    offset: Offset,
    epoch: LeaderEpoch,
    /// Which log wrote it: 0 for the common prefix, 1 the follower's suffix, 2 the leader's.
    origin: u8,
}

impl Batch for Entry {
    fn base_offset(&self) -> Offset {
        self.offset
    }
    fn last_offset(&self) -> Offset {
        self.offset
    }
    fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }
}

fn history_of(log: &[Entry]) -> EpochHistory {
    let mut h = EpochHistory::new();
    for e in log {
        h.assign(e.epoch, e.offset);
    }
    h
}

fn log_state(log: &[Entry]) -> LogState {
    LogState {
        log_end: Offset(log.len() as i64),
        durable_end: Offset(log.len() as i64),
        high_watermark: Offset(0),
        epochs: history_of(log),
    }
}

fn push_run(log: &mut Vec<Entry>, epoch: i32, count: usize, origin: u8) {
    for _ in 0..count {
        let offset = Offset(log.len() as i64);
        log.push(Entry {
            offset,
            epoch: LeaderEpoch(epoch),
            origin,
        });
    }
}

/// Two logs as the protocol can leave them: a common prefix; then the follower may hold more records
/// of the prefix's last epoch and runs of epochs the leader never saw, while the leader holds runs of
/// other epochs and leads a later epoch than all of them. Same (epoch, offset) means same record only in
/// the shared part, which is what one leader per epoch guarantees.
fn divergent_logs() -> impl Strategy<Value = (Vec<Entry>, Vec<Entry>, usize, i32)> {
    (
        prop::collection::vec(1usize..5, 0..4),
        0usize..4,
        prop::collection::vec((any::<bool>(), 1usize..5), 0..6),
    )
        .prop_map(|(prefix_runs, extension, suffix_runs)| {
            let mut common = Vec::new();
            let mut epoch = 0;
            for n in prefix_runs {
                epoch += 1;
                push_run(&mut common, epoch, n, 0);
            }
            let mut follower = common.clone();
            let mut leader = common.clone();
            let common_len = common.len();
            if epoch > 0 && extension > 0 {
                // The follower got more of the last shared epoch than the leader did.
                push_run(&mut follower, epoch, extension, 1);
            }
            for (to_follower, n) in suffix_runs {
                epoch += 1;
                if to_follower {
                    push_run(&mut follower, epoch, n, 1);
                } else {
                    push_run(&mut leader, epoch, n, 2);
                }
            }
            (follower, leader, common_len, epoch + 1)
        })
}

fn config(node: i32, durability: AckDurability) -> ReplicaConfig {
    ReplicaConfig {
        node: NodeId(node),
        ack_durability: durability,
        min_insync_replicas: 2,
        replica_lag_time_max_ms: 1_000,
        fetch_backoff_ms: 10,
        empty_fetch_backoff_ms: 10,
        fetch_timeout_ms: 100,
        alter_partition_retry_ms: 100,
        waiters_max: 256,
    }
}

fn state(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
        leader: Some(NodeId(leader)),
        leader_epoch: LeaderEpoch(epoch),
        partition_epoch: PartitionEpoch(epoch),
        isr: isr.iter().map(|n| NodeId(*n)).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `end_offset_for` equals a brute-force reading of the log: the largest epoch at or below the
    /// asked one that has records, and the offset of the first record of a later epoch.
    #[test]
    fn epoch_lookup_matches_the_log((log, _, _, _) in divergent_logs(), asked in 0i32..12) {
        let hist = history_of(&log);
        let end = Offset(log.len() as i64);
        let got = hist.end_offset_for(LeaderEpoch(asked), end);
        let at_or_below: Vec<&Entry> = log.iter().filter(|e| e.epoch.0 <= asked).collect();
        let first_above = log.iter().find(|e| e.epoch.0 > asked).map(|e| e.offset);
        let expected = match (log.last(), at_or_below.last(), first_above) {
            (None, _, _) => None,
            (Some(last), _, _) if last.epoch.0 == asked => Some((LeaderEpoch(asked), end)),
            (Some(_), _, None) => None,
            (Some(_), None, Some(above)) => Some((LeaderEpoch(asked), above)),
            (Some(_), Some(e), Some(above)) => Some((e.epoch, above)),
        };
        prop_assert_eq!(got, expected);
    }

    /// A follower fetching from a leader whose log diverges from its own ends with exactly the
    /// leader's log, and never truncates below the part the two logs share.
    #[test]
    fn a_follower_converges_on_the_leaders_log_without_cutting_the_shared_prefix(
        (mut follower_log, leader_log, common_len, leader_epoch) in divergent_logs(),
    ) {
        let mut leader: Replica<Entry> =
            Replica::new(config(1, AckDurability::Replicated), log_state(&leader_log)).unwrap();
        let mut follower: Replica<Entry> =
            Replica::new(config(2, AckDurability::Replicated), log_state(&follower_log)).unwrap();
        let st = state(1, leader_epoch, &[1, 2]);
        leader.step(Event::Metadata { state: st.clone(), now_ms: NowMs(0) }).unwrap();
        prop_assert_eq!(leader.role(), RoleKind::Leader);
        let mut pending = follower.step(Event::Metadata { state: st, now_ms: NowMs(0) }).unwrap();
        let mut now = 0;
        let mut lowest_truncation = follower_log.len();
        for _ in 0..200 {
            let mut next = Vec::new();
            for action in pending.drain(..) {
                match action {
                    Action::SendFetch { request, .. } => {
                        for a in leader.step(Event::FetchRequest { request, log_start: Offset(0), now_ms: NowMs(now) }).unwrap() {
                            if let Action::AnswerFetch { correlation, answer, .. } = a {
                                let batches = match answer {
                                    FetchAnswer::Records { from, .. } => leader_log
                                        [from.0 as usize..(from.0 as usize + 3).min(leader_log.len())]
                                        .to_vec(),
                                    _ => Vec::new(),
                                };
                                let response = FetchResponse { leader: NodeId(1), correlation, answer, batches };
                                next.extend(follower.step(Event::FetchResponse { response, now_ms: NowMs(now) }).unwrap());
                            }
                        }
                    }
                    Action::Append { batches } => {
                        for b in batches {
                            prop_assert_eq!(b.offset.0 as usize, follower_log.len());
                            follower_log.push(b);
                        }
                    }
                    Action::Truncate { to } => {
                        lowest_truncation = lowest_truncation.min(to.0 as usize);
                        follower_log.truncate(to.0 as usize);
                    }
                    _ => {}
                }
            }
            if next.is_empty() {
                now += 10;
                next = follower.step(Event::Tick { now_ms: NowMs(now) }).unwrap();
            }
            pending = next;
            // Follower HW = min(leader HW, own end): never past its log.
            prop_assert!(follower.high_watermark().0 as usize <= follower_log.len());
            if follower_log == leader_log && leader.high_watermark().0 as usize == leader_log.len() {
                break;
            }
        }
        prop_assert_eq!(&follower_log, &leader_log);
        prop_assert!(lowest_truncation >= common_len,
            "truncated to {} below the shared {}", lowest_truncation, common_len);
        prop_assert_eq!(follower.epochs(), &history_of(&follower_log));
        prop_assert_eq!(leader.high_watermark().0 as usize, leader_log.len());
    }

    /// The leader's HW is the running maximum of min(ISR members' counted ends), never past its own
    /// counted end; an acks=all waiter completes OK exactly when the HW passes its offset.
    #[test]
    fn the_leader_high_watermark_and_waiters_follow_the_model(
        flushed in any::<bool>(),
        ops in prop::collection::vec((0u8..4, 0u8..3, 0i64..20), 1..80),
    ) {
        let durability = if flushed { AckDurability::ReplicatedAndFlushed } else { AckDurability::Replicated };
        let mut leader: Replica<Entry> = Replica::new(config(1, durability), LogState::empty()).unwrap();
        leader.step(Event::Metadata { state: state(1, 1, &[1, 2, 3]), now_ms: NowMs(0) }).unwrap();
        let mut log_end = 0i64;
        let mut durable = 0i64;
        // Followers 2 and 3: (log end, durable end) as last reported.
        let mut fol: [Option<(i64, i64)>; 2] = [None, None];
        let mut model_hw = 0i64;
        let mut waiting: Vec<(u64, i64)> = Vec::new();
        let mut next_waiter = 0u64;
        let mut acked = 0;
        for (now, (kind, who, n)) in ops.into_iter().enumerate() {
            let now = NowMs(now as u64);
            let actions = match kind {
                0 => {
                    prop_assert_eq!(leader.check_produce(Acks::All), Ok(LeaderEpoch(1)));
                    log_end += 1 + n % 3;
                    let mut a = leader.step(Event::LeaderAppended { log_end: Offset(log_end), now_ms: now }).unwrap();
                    next_waiter += 1;
                    waiting.push((next_waiter, log_end - 1));
                    a.extend(leader.step(Event::AwaitAcks {
                        waiter: WaiterId(next_waiter), last_offset: Offset(log_end - 1), timeout_ms: 1_000_000, now_ms: now,
                    }).unwrap());
                    a
                }
                1 => {
                    durable = (durable + n).min(log_end);
                    leader.step(Event::Flushed { durable_end: Offset(durable), now_ms: now }).unwrap()
                }
                _ => {
                    let f = (who % 2) as usize;
                    let end = n.min(log_end);
                    let dur = (end - (n % 4)).max(0);
                    fol[f] = Some((end, dur));
                    let request = FetchRequest {
                        replica: NodeId(2 + f as i32),
                        correlation: spate_replication::CorrelationId(now.0),
                        current_leader_epoch: LeaderEpoch(1),
                        fetch_offset: Offset(end),
                        last_fetched_epoch: if end > 0 { Some(LeaderEpoch(1)) } else { None },
                        durable_end_offset: Offset(dur),
                    };
                    leader.step(Event::FetchRequest { request, log_start: Offset(0), now_ms: now }).unwrap()
                }
            };
            let own = if flushed { durable } else { log_end };
            if let [Some(a), Some(b)] = fol {
                let pick = |x: (i64, i64)| if flushed { x.1 } else { x.0 };
                model_hw = model_hw.max(own.min(pick(a)).min(pick(b)));
            }
            prop_assert_eq!(leader.high_watermark(), Offset(model_hw));
            for a in actions {
                if let Action::CompleteWaiter { waiter, result } = a {
                    let i = waiting.iter().position(|(w, _)| *w == waiter.0).expect("known waiter");
                    let (_, last) = waiting.remove(i);
                    prop_assert!(last < model_hw, "waiter for {} done at hw {}", last, model_hw);
                    prop_assert_eq!(result, Ok::<(), AckError>(()));
                    acked += 1;
                }
            }
            prop_assert!(waiting.iter().all(|(_, last)| *last >= model_hw), "a waiter below the hw still waits");
        }
        prop_assert_eq!(leader.waiters_len(), waiting.len());
        let _ = acked;
    }
}

/// The four ways a fetch is refused or redirected, one case each.
#[test]
fn a_leader_fences_old_epochs_and_reports_divergence() {
    let mut log = Vec::new();
    push_run(&mut log, 1, 3, 0);
    push_run(&mut log, 3, 2, 0);
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), log_state(&log)).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 5, &[1, 2, 3]),
            now_ms: NowMs(0),
        })
        .unwrap();
    let fetch = |epoch: i32, offset: i64, last: Option<i32>| FetchRequest {
        replica: NodeId(2),
        correlation: spate_replication::CorrelationId(1),
        current_leader_epoch: LeaderEpoch(epoch),
        fetch_offset: Offset(offset),
        last_fetched_epoch: last.map(LeaderEpoch),
        durable_end_offset: Offset(0),
    };
    let mut answer = |req| {
        let a = leader
            .step(Event::FetchRequest {
                request: req,
                log_start: Offset(0),
                now_ms: NowMs(1),
            })
            .unwrap();
        a.into_iter()
            .find_map(|a| match a {
                Action::AnswerFetch { answer, .. } => Some(answer),
                _ => None,
            })
            .unwrap()
    };
    use spate_replication::FetchError;
    assert_eq!(
        answer(fetch(4, 5, Some(3))),
        FetchAnswer::Error(FetchError::FencedLeaderEpoch)
    );
    assert_eq!(
        answer(fetch(6, 5, Some(3))),
        FetchAnswer::Error(FetchError::UnknownLeaderEpoch)
    );
    // The follower has epoch 2, which the leader never saw: diverge at the end of epoch 1 (offset 3).
    assert_eq!(
        answer(fetch(5, 4, Some(2))),
        FetchAnswer::Diverging {
            epoch: LeaderEpoch(1),
            end_offset: Offset(3),
            high_watermark: Offset(0)
        }
    );
    // The follower has more of epoch 3 than the leader: diverge at the leader's end of epoch 3.
    assert_eq!(
        answer(fetch(5, 7, Some(3))),
        FetchAnswer::Diverging {
            epoch: LeaderEpoch(3),
            end_offset: Offset(5),
            high_watermark: Offset(0)
        }
    );
    assert_eq!(
        answer(fetch(5, 4, Some(3))),
        FetchAnswer::Records {
            from: Offset(4),
            high_watermark: Offset(0)
        }
    );
}

/// A lagging ISR member is proposed out after `replica_lag_time_max_ms`, the HW counts it until the
/// controller agrees, and acks=all is refused once the ISR is below min.insync.
#[test]
fn a_lagging_follower_is_proposed_out_and_the_isr_changes_only_by_the_controller() {
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), LogState::empty()).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 1, &[1, 2]),
            now_ms: NowMs(0),
        })
        .unwrap();
    leader
        .step(Event::LeaderAppended {
            log_end: Offset(1),
            now_ms: NowMs(0),
        })
        .unwrap();
    let a = leader
        .step(Event::AwaitAcks {
            waiter: WaiterId(1),
            last_offset: Offset(0),
            timeout_ms: 5_000,
            now_ms: NowMs(0),
        })
        .unwrap();
    assert!(a.is_empty(), "follower 2 has not fetched: {a:?}");
    assert!(leader
        .step(Event::Tick {
            now_ms: NowMs(1_000)
        })
        .unwrap()
        .is_empty());
    let a = leader
        .step(Event::Tick {
            now_ms: NowMs(1_001),
        })
        .unwrap();
    let [Action::ProposeIsr { request }] = a.as_slice() else {
        panic!("expected one proposal, got {a:?}")
    };
    assert_eq!(request.new_isr, vec![NodeId(1)]);
    assert_eq!(request.partition_epoch, PartitionEpoch(1));
    // Not applied yet: the HW still waits for 2.
    assert_eq!(leader.high_watermark(), Offset(0));
    assert_eq!(leader.maximal_isr(), Some(vec![NodeId(1), NodeId(2)]));
    let mut shrunk = state(1, 1, &[1]);
    shrunk.partition_epoch = PartitionEpoch(2);
    let a = leader
        .step(Event::AlterPartitionResponse {
            request: request.clone(),
            response: Ok(shrunk),
            now_ms: NowMs(1_002),
        })
        .unwrap();
    assert_eq!(
        a,
        vec![
            Action::HighWatermark { offset: Offset(1) },
            Action::CompleteWaiter {
                waiter: WaiterId(1),
                result: Err(AckError::NotEnoughReplicasAfterAppend)
            }
        ]
    );
    assert_eq!(
        leader.check_produce(Acks::All),
        Err(spate_replication::ProduceRefusal::NotEnoughReplicas)
    );
    assert_eq!(leader.check_produce(Acks::Leader), Ok(LeaderEpoch(1)));
}

/// Losing leadership fails every waiter with NOT_LEADER_OR_FOLLOWER, and a timeout gives
/// REQUEST_TIMED_OUT.
#[test]
fn waiters_end_with_kafkas_errors_on_timeout_and_on_leadership_loss() {
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), LogState::empty()).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 1, &[1, 2]),
            now_ms: NowMs(0),
        })
        .unwrap();
    leader
        .step(Event::LeaderAppended {
            log_end: Offset(2),
            now_ms: NowMs(0),
        })
        .unwrap();
    for (w, timeout_ms) in [(1, 10), (2, 500)] {
        leader
            .step(Event::AwaitAcks {
                waiter: WaiterId(w),
                last_offset: Offset(w as i64 - 1),
                timeout_ms,
                now_ms: NowMs(0),
            })
            .unwrap();
    }
    let a = leader.step(Event::Tick { now_ms: NowMs(10) }).unwrap();
    assert_eq!(
        a,
        vec![Action::CompleteWaiter {
            waiter: WaiterId(1),
            result: Err(AckError::RequestTimedOut)
        }]
    );
    let a = leader
        .step(Event::Metadata {
            state: state(2, 2, &[1, 2]),
            now_ms: NowMs(11),
        })
        .unwrap();
    assert_eq!(
        a[0],
        Action::CompleteWaiter {
            waiter: WaiterId(2),
            result: Err(AckError::NotLeaderOrFollower)
        }
    );
    assert!(matches!(a[1], Action::SendFetch { to: NodeId(2), .. }));
    assert_eq!(leader.role(), RoleKind::Follower);
}

/// A restarted broker told to lead an epoch its log already has records of refuses: it led that epoch
/// in its previous life.
#[test]
fn a_replica_refuses_to_lead_an_epoch_its_log_already_has() {
    let mut log = Vec::new();
    push_run(&mut log, 4, 2, 0);
    let mut r: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), log_state(&log)).unwrap();
    r.step(Event::Metadata {
        state: state(1, 4, &[1, 2, 3]),
        now_ms: NowMs(0),
    })
    .unwrap();
    assert_eq!(r.role(), RoleKind::Idle);
    assert_eq!(
        r.check_produce(Acks::Leader),
        Err(spate_replication::ProduceRefusal::NotLeaderOrFollower)
    );
    let mut next = state(1, 5, &[1, 2, 3]);
    next.partition_epoch = PartitionEpoch(6);
    r.step(Event::Metadata {
        state: next,
        now_ms: NowMs(1),
    })
    .unwrap();
    assert_eq!(r.role(), RoleKind::Leader);
}

/// Kafka's ISR join rule has two halves: at or past the HW, and into the leader's current epoch. A new
/// leader's HW can lag records a deposed leader already committed below this epoch's start; a replica
/// admitted between the two could be elected without them. (The simulator rarely builds that
/// interleaving, so this case pins the rule down directly.)
#[test]
fn a_replica_joins_the_isr_only_once_it_reaches_the_leaders_epoch_start() {
    let mut log = Vec::new();
    push_run(&mut log, 1, 5, 0);
    let fetch = |offset: i64| FetchRequest {
        replica: NodeId(2),
        correlation: spate_replication::CorrelationId(offset as u64),
        current_leader_epoch: LeaderEpoch(2),
        fetch_offset: Offset(offset),
        last_fetched_epoch: (offset > 0).then_some(LeaderEpoch(1)),
        durable_end_offset: Offset(offset),
    };
    // A freshly elected leader whose HW lags (it learned it as a follower), and an ISR member (3)
    // that has not fetched yet, so the HW stays at 2.
    let mut recovered = log_state(&log);
    recovered.high_watermark = Offset(2);
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), recovered).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 2, &[1, 3]),
            now_ms: NowMs(0),
        })
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(2));
    // The broker answers OFFSET_NOT_AVAILABLE to ListOffsets while the HW is below this.
    assert_eq!(leader.leader_epoch_start(), Some(Offset(5)));
    let a = leader
        .step(Event::FetchRequest {
            request: fetch(3),
            log_start: Offset(0),
            now_ms: NowMs(1),
        })
        .unwrap();
    assert!(
        !a.iter().any(|a| matches!(a, Action::ProposeIsr { .. })),
        "proposed at 3, below the epoch start 5: {a:?}"
    );
    let a = leader
        .step(Event::FetchRequest {
            request: fetch(5),
            log_start: Offset(0),
            now_ms: NowMs(2),
        })
        .unwrap();
    let proposed: Vec<_> = a
        .iter()
        .filter_map(|a| match a {
            Action::ProposeIsr { request } => Some(request.new_isr.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(proposed, vec![vec![NodeId(1), NodeId(3), NodeId(2)]]);
    // A follower has no epoch start of its own.
    let mut follower: Replica<Entry> =
        Replica::new(config(2, AckDurability::Replicated), log_state(&log)).unwrap();
    follower
        .step(Event::Metadata {
            state: state(1, 2, &[1, 2]),
            now_ms: NowMs(0),
        })
        .unwrap();
    assert_eq!(follower.leader_epoch_start(), None);
}

/// The same broker leading a newer epoch straight after the old one keeps its acks=all waiters: its
/// log was not truncated in between, so the records they wait for are still the ones it appended.
#[test]
fn waiters_carry_over_when_the_same_broker_leads_the_next_epoch() {
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), LogState::empty()).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 1, &[1, 2]),
            now_ms: NowMs(0),
        })
        .unwrap();
    leader
        .step(Event::LeaderAppended {
            log_end: Offset(1),
            now_ms: NowMs(0),
        })
        .unwrap();
    leader
        .step(Event::AwaitAcks {
            waiter: WaiterId(9),
            last_offset: Offset(0),
            timeout_ms: 1_000,
            now_ms: NowMs(0),
        })
        .unwrap();
    let a = leader
        .step(Event::Metadata {
            state: state(1, 2, &[1, 2]),
            now_ms: NowMs(1),
        })
        .unwrap();
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(leader.waiters_len(), 1);
    assert_eq!(leader.role_epoch(), Some(LeaderEpoch(2)));
    let request = FetchRequest {
        replica: NodeId(2),
        correlation: spate_replication::CorrelationId(1),
        current_leader_epoch: LeaderEpoch(2),
        fetch_offset: Offset(1),
        last_fetched_epoch: Some(LeaderEpoch(1)),
        durable_end_offset: Offset(1),
    };
    let a = leader
        .step(Event::FetchRequest {
            request,
            log_start: Offset(0),
            now_ms: NowMs(2),
        })
        .unwrap();
    assert!(a.contains(&Action::CompleteWaiter {
        waiter: WaiterId(9),
        result: Ok(())
    }));
}

/// A follower whose log ends below the leader's log start (retention or DeleteRecords removed the
/// records it lacks, say while it was down) restarts its log, empty, at the leader's start, and
/// then fetches from there without naming an epoch; the leader accepts exactly that.
#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there() {
    let mut leader_log = Vec::new();
    push_run(&mut leader_log, 1, 6, 0);
    push_run(&mut leader_log, 2, 6, 0);
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), log_state(&leader_log)).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 3, &[1, 3]),
            now_ms: NowMs(0),
        })
        .unwrap();
    let mut follower_log = Vec::new();
    push_run(&mut follower_log, 1, 3, 0);
    let mut follower: Replica<Entry> = Replica::new(
        config(2, AckDurability::Replicated),
        log_state(&follower_log),
    )
    .unwrap();
    let sent = follower
        .step(Event::Metadata {
            state: state(1, 3, &[1, 3]),
            now_ms: NowMs(0),
        })
        .unwrap();
    let request = |actions: &[Action<Entry>]| {
        actions
            .iter()
            .find_map(|a| match a {
                Action::SendFetch { request, .. } => Some(request.clone()),
                _ => None,
            })
            .expect("a fetch")
    };
    let first = request(&sent);
    assert_eq!(first.fetch_offset, Offset(3));
    // The leader's log now starts at 8: the follower's fetch is below it, and not counted.
    let answer = |leader: &mut Replica<Entry>, req: FetchRequest, now: u64| {
        leader
            .step(Event::FetchRequest {
                request: req,
                log_start: Offset(8),
                now_ms: NowMs(now),
            })
            .unwrap()
            .into_iter()
            .find_map(|a| match a {
                Action::AnswerFetch { answer, .. } => Some(answer),
                _ => None,
            })
            .expect("an answer")
    };
    let below = answer(&mut leader, first.clone(), 1);
    assert_eq!(
        below,
        FetchAnswer::BelowLogStart {
            log_start: Offset(8),
            high_watermark: Offset(0)
        }
    );
    let actions = follower
        .step(Event::FetchResponse {
            response: FetchResponse {
                leader: NodeId(1),
                correlation: first.correlation,
                answer: below,
                batches: Vec::new(),
            },
            now_ms: NowMs(2),
        })
        .unwrap();
    assert_eq!(actions[0], Action::RestartAt { start: Offset(8) });
    let next = request(&actions);
    assert_eq!(
        (next.fetch_offset, next.last_fetched_epoch),
        (Offset(8), None)
    );
    // The leader serves an empty log at its start, epoch or not, and nothing else without one.
    assert_eq!(
        answer(&mut leader, next.clone(), 3),
        FetchAnswer::Records {
            from: Offset(8),
            high_watermark: Offset(0)
        }
    );
    let elsewhere = FetchRequest {
        fetch_offset: Offset(9),
        ..next
    };
    assert!(matches!(
        answer(&mut leader, elsewhere, 4),
        FetchAnswer::Error(_)
    ));
}

/// A refusal as stale (INVALID_UPDATE_VERSION) may come from a controller that decided on a state it
/// had not committed and then lost with its leadership: no newer metadata ever arrives, so the leader
/// must ask again rather than wait for it forever (found by the whole-cluster simulation, seed 3: the
/// ISR of a healed partition never grew back).
#[test]
fn a_proposal_refused_as_stale_is_sent_again_when_no_metadata_follows() {
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), LogState::empty()).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 1, &[1, 2, 3]),
            now_ms: NowMs(0),
        })
        .unwrap();
    // Follower 2 fetches; 3 stays silent past the lag time and is proposed out.
    let fetch = FetchRequest {
        replica: NodeId(2),
        correlation: spate_replication::CorrelationId(1),
        current_leader_epoch: LeaderEpoch(1),
        fetch_offset: Offset(0),
        last_fetched_epoch: None,
        durable_end_offset: Offset(0),
    };
    leader
        .step(Event::FetchRequest {
            request: fetch,
            log_start: Offset(0),
            now_ms: NowMs(1_000),
        })
        .unwrap();
    let a = leader
        .step(Event::Tick {
            now_ms: NowMs(1_001),
        })
        .unwrap();
    let [Action::ProposeIsr { request }] = a.as_slice() else {
        panic!("expected one proposal, got {a:?}")
    };
    assert_eq!(request.new_isr, vec![NodeId(1), NodeId(2)]);
    let a = leader
        .step(Event::AlterPartitionResponse {
            request: request.clone(),
            response: Err(spate_replication::AlterPartitionError::InvalidUpdateVersion),
            now_ms: NowMs(1_010),
        })
        .unwrap();
    assert!(a.is_empty(), "{a:?}");
    // Not before a retry interval from the refusal...
    let a = leader
        .step(Event::Tick {
            now_ms: NowMs(1_109),
        })
        .unwrap();
    assert!(a.is_empty(), "{a:?}");
    // ...but then, with no metadata in between, the same proposal again.
    let a = leader
        .step(Event::Tick {
            now_ms: NowMs(1_110),
        })
        .unwrap();
    assert_eq!(
        a,
        vec![Action::ProposeIsr {
            request: request.clone()
        }]
    );
}

/// A log restarted at the leader's start holds nothing; the leader sends whole batches, so when
/// its start fell inside a batch the first one begins before our end: the empty log restarts at
/// that batch's base and takes it. A log holding fetched records is never restarted so.
#[test]
fn an_empty_restarted_log_restarts_at_the_base_of_the_batch_holding_its_end() {
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Span(i64, i64);
    impl Batch for Span {
        fn base_offset(&self) -> Offset {
            Offset(self.0)
        }
        fn last_offset(&self) -> Offset {
            Offset(self.1)
        }
        fn epoch(&self) -> LeaderEpoch {
            LeaderEpoch(1)
        }
    }
    let restarted = LogState {
        log_end: Offset(8),
        durable_end: Offset(8),
        high_watermark: Offset(0),
        epochs: EpochHistory::new(),
    };
    let mut follower: Replica<Span> =
        Replica::new(config(2, AckDurability::Replicated), restarted).unwrap();
    let sent = follower
        .step(Event::Metadata {
            state: state(1, 3, &[1, 3]),
            now_ms: NowMs(0),
        })
        .unwrap();
    let Some(Action::SendFetch { request, .. }) = sent.into_iter().next() else {
        panic!("a fetch")
    };
    assert_eq!(
        (request.fetch_offset, request.last_fetched_epoch),
        (Offset(8), None)
    );
    let answer = |correlation| FetchResponse {
        leader: NodeId(1),
        correlation,
        answer: FetchAnswer::Records {
            from: Offset(8),
            high_watermark: Offset(12),
        },
        batches: vec![Span(6, 9), Span(10, 11)],
    };
    let actions = follower
        .step(Event::FetchResponse {
            response: answer(request.correlation),
            now_ms: NowMs(1),
        })
        .unwrap();
    assert_eq!(actions[0], Action::RestartAt { start: Offset(6) });
    assert_eq!(
        actions[1],
        Action::Append {
            batches: vec![Span(6, 9), Span(10, 11)]
        }
    );
    assert_eq!(follower.log_end(), Offset(12));
    // Now it holds records: a batch reaching back before its end is refused, not a restart.
    let Some(Action::SendFetch { request, .. }) = actions
        .into_iter()
        .find(|a| matches!(a, Action::SendFetch { .. }))
    else {
        panic!("a fetch")
    };
    let mut overlapping = answer(request.correlation);
    overlapping.answer = FetchAnswer::Records {
        from: Offset(12),
        high_watermark: Offset(12),
    };
    overlapping.batches = vec![Span(11, 13)];
    assert!(follower
        .step(Event::FetchResponse {
            response: overlapping,
            now_ms: NowMs(2),
        })
        .is_err());
}

/// A long-polling leader's empty answer is followed by the next fetch at once when
/// `empty_fetch_backoff_ms` is 0 (the broker's setting), and only after the pause otherwise. A
/// pause there made a broker's partitions fall out of step within a frame: one waited behind
/// another's 500 ms long-poll, and acks=all after a lull took up to the long-poll.
#[test]
fn an_empty_answer_is_followed_at_once_or_after_the_empty_fetch_backoff() {
    for (pause, expected_at) in [(0u64, 5u64), (10, 15)] {
        let mut cfg = config(2, AckDurability::Replicated);
        cfg.empty_fetch_backoff_ms = pause;
        let mut follower: Replica<Entry> = Replica::new(cfg, log_state(&[])).unwrap();
        let sent = follower
            .step(Event::Metadata {
                state: state(1, 1, &[1, 2]),
                now_ms: NowMs(0),
            })
            .unwrap();
        let first = sent
            .iter()
            .find_map(|a| match a {
                Action::SendFetch { request, .. } => Some(request.clone()),
                _ => None,
            })
            .expect("a fetch");
        let actions = follower
            .step(Event::FetchResponse {
                response: FetchResponse {
                    leader: NodeId(1),
                    correlation: first.correlation,
                    answer: FetchAnswer::Records {
                        from: Offset(0),
                        high_watermark: Offset(0),
                    },
                    batches: Vec::new(),
                },
                now_ms: NowMs(5),
            })
            .unwrap();
        let fetch_now = actions
            .iter()
            .any(|a| matches!(a, Action::SendFetch { .. }));
        assert_eq!(fetch_now, pause == 0, "pause {pause}");
        if pause > 0 {
            let early = follower
                .step(Event::Tick {
                    now_ms: NowMs(expected_at - 1),
                })
                .unwrap();
            assert!(!early.iter().any(|a| matches!(a, Action::SendFetch { .. })));
            let due = follower
                .step(Event::Tick {
                    now_ms: NowMs(expected_at),
                })
                .unwrap();
            assert!(due.iter().any(|a| matches!(a, Action::SendFetch { .. })));
        }
    }
}

/// The leader's follower lags are its log end less each follower's last fetch offset in this
/// epoch; a follower not heard from in the epoch is left out, and a follower has none.
#[test]
fn a_leader_reports_each_fetching_followers_lag_behind_its_log_end() {
    let mut leader: Replica<Entry> =
        Replica::new(config(1, AckDurability::Replicated), LogState::empty()).unwrap();
    leader
        .step(Event::Metadata {
            state: state(1, 1, &[1, 2, 3]),
            now_ms: NowMs(0),
        })
        .unwrap();
    assert_eq!(leader.follower_lags(), vec![]);
    let append = |leader: &mut Replica<Entry>, end: i64| {
        leader
            .step(Event::LeaderAppended {
                log_end: Offset(end),
                now_ms: NowMs(0),
            })
            .unwrap();
    };
    let fetch = |leader: &mut Replica<Entry>, replica: i32, offset: i64| {
        let request = FetchRequest {
            replica: NodeId(replica),
            correlation: spate_replication::CorrelationId(1),
            current_leader_epoch: LeaderEpoch(1),
            fetch_offset: Offset(offset),
            last_fetched_epoch: (offset > 0).then_some(LeaderEpoch(1)),
            durable_end_offset: Offset(offset),
        };
        leader
            .step(Event::FetchRequest {
                request,
                log_start: Offset(0),
                now_ms: NowMs(0),
            })
            .unwrap();
    };
    append(&mut leader, 10);
    fetch(&mut leader, 2, 4);
    assert_eq!(leader.follower_lags(), vec![(NodeId(2), 6)]);
    fetch(&mut leader, 3, 10);
    assert_eq!(leader.follower_lags(), vec![(NodeId(2), 6), (NodeId(3), 0)]);
    append(&mut leader, 12);
    assert_eq!(leader.follower_lags(), vec![(NodeId(2), 8), (NodeId(3), 2)]);
    let follower: Replica<Entry> =
        Replica::new(config(2, AckDurability::Replicated), LogState::empty()).unwrap();
    assert_eq!(follower.follower_lags(), vec![]);
}
