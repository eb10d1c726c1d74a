//! The group state machine driven with a fake clock: no sleeps, every answer checked.

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn limits() -> GroupLimits {
    GroupLimits {
        initial_rebalance_delay_ms: 0,
        ..GroupLimits::default()
    }
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: (*n).to_owned(),
            metadata: Bytes::from(format!("meta-{n}")),
        })
        .collect()
}

fn join_request(member_id: &str, new_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_owned(),
        protocols: protocols(&["range", "roundrobin"]),
        member_id_policy: MemberIdPolicy::Required,
        new_member_id: new_id.to_owned(),
    }
}

fn static_join(member_id: &str, new_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        instance_id: Some(instance.to_owned()),
        ..join_request(member_id, new_id)
    }
}

/// First join of a new dynamic member: MEMBER_ID_REQUIRED, then the join with that id.
fn join_new(group: &mut Group, now_ms: u64, new_id: &str) -> Reply<JoinResponse> {
    match group.join(now_ms, join_request("", new_id)) {
        Reply::Now(r) => {
            assert_eq!(r.error, ErrorCode::MemberIdRequired);
            assert_eq!(r.member_id, new_id);
        }
        other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
    }
    group.join(now_ms, join_request(new_id, "unused"))
}

fn now(reply: Reply<JoinResponse>) -> JoinResponse {
    match reply {
        Reply::Now(r) => r,
        other => panic!("expected an answer now, got {other:?}"),
    }
}

fn sync_request(member_id: &str, generation_id: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        generation_id,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).to_owned(), Bytes::from((*a).to_owned())))
            .collect(),
    }
}

fn joined(outputs: &[Output]) -> Vec<(String, JoinResponse)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Joined {
                member_id,
                response,
            } => Some((member_id.clone(), response.clone())),
            _ => None,
        })
        .collect()
}

fn synced(outputs: &[Output]) -> Vec<(String, SyncResponse)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Synced {
                member_id,
                response,
            } => Some((member_id.clone(), response.clone())),
            _ => None,
        })
        .collect()
}

/// Two members a and b, Stable at generation 1 (a leads), assignments "A" and "B".
fn stable_pair() -> Group {
    let mut group = Group::new("g", limits());
    let first = now(join_new(&mut group, 0, "a"));
    assert_eq!(first.generation_id, 1);
    assert_eq!(first.leader, "a");
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let synced_a = group.sync(1, sync_request("a", 1, &[("a", "A")]));
    assert!(matches!(synced_a, Reply::Now(ref r) if r.assignment == "A"));
    assert_eq!(group.state(), GroupState::Stable);
    // b joins: a must rejoin, b waits.
    assert!(matches!(join_new(&mut group, 2, "b"), Reply::Parked { .. }));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(3, "a", None, 1),
        ErrorCode::RebalanceInProgress
    );
    let rejoin = now(group.join(4, join_request("a", "unused")));
    assert_eq!(rejoin.generation_id, 2);
    assert_eq!(rejoin.leader, "a");
    assert_eq!(rejoin.members.len(), 2, "the leader sees both members");
    let outputs = group.take_outputs();
    let j = joined(&outputs);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].0, "b");
    assert_eq!(j[0].1.generation_id, 2);
    assert!(j[0].1.members.is_empty(), "followers get no member list");
    assert!(matches!(
        group.sync(5, sync_request("b", 2, &[])),
        Reply::Parked { .. }
    ));
    let leader = group.sync(6, sync_request("a", 2, &[("a", "A"), ("b", "B")]));
    assert!(matches!(leader, Reply::Now(ref r) if r.assignment == "A"));
    let s = synced(&group.take_outputs());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, "b");
    assert_eq!(s[0].1.assignment, "B");
    assert_eq!(group.state(), GroupState::Stable);
    group
}

#[test]
fn join_sync_and_heartbeat_reach_a_stable_group() {
    let mut group = stable_pair();
    assert_eq!(group.generation_id(), 2);
    assert_eq!(group.member_count(), 2);
    assert_eq!(group.protocol_name(), Some("range"));
    assert_eq!(group.heartbeat(100, "a", None, 2), ErrorCode::None);
    assert_eq!(
        group.heartbeat(100, "b", None, 1),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        group.heartbeat(100, "zz", None, 2),
        ErrorCode::UnknownMemberId
    );
    // Stable sync hands back the stored assignment.
    assert!(matches!(
        group.sync(101, sync_request("b", 2, &[])),
        Reply::Now(ref r) if r.assignment == "B" && r.error == ErrorCode::None
    ));
}

#[test]
fn a_member_that_stops_heartbeating_expires_and_the_rest_rebalance() {
    let mut group = stable_pair();
    let t = 10;
    // a keeps heartbeating, b goes silent.
    for step in 1..=4u64 {
        assert_eq!(
            group.heartbeat(t + step * 3_000, "a", None, 2),
            ErrorCode::None
        );
        group.tick(t + step * 3_000);
    }
    // b's last heartbeat was at 5 (its sync); its session ends at 10_005.
    assert_eq!(group.member_count(), 1, "b expired");
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(12_010, "b", None, 2),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        group.heartbeat(12_010, "a", None, 2),
        ErrorCode::RebalanceInProgress
    );
    let rejoin = now(group.join(12_020, join_request("a", "unused")));
    assert_eq!(rejoin.generation_id, 3);
    assert_eq!(rejoin.members.len(), 1);
}

#[test]
fn a_leaving_member_triggers_a_rebalance_and_the_last_one_empties_the_group() {
    let mut group = stable_pair();
    let results = group.leave(
        200,
        &[
            LeavingMember {
                member_id: "b".to_owned(),
                instance_id: None,
            },
            LeavingMember {
                member_id: "nobody".to_owned(),
                instance_id: None,
            },
        ],
    );
    assert_eq!(results, vec![ErrorCode::None, ErrorCode::UnknownMemberId]);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    let rejoin = now(group.join(201, join_request("a", "unused")));
    assert_eq!(rejoin.generation_id, 3);
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let leave = group.leave(
        202,
        &[LeavingMember {
            member_id: "a".to_owned(),
            instance_id: None,
        }],
    );
    assert_eq!(leave, vec![ErrorCode::None]);
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.generation_id(), 4);
    assert!(group.is_empty());
    assert_eq!(group.delete(), Ok(()));
    assert_eq!(group.state(), GroupState::Dead);
}

#[test]
fn rejoin_during_rebalance_fails_pending_syncs_and_restarts_the_join_phase() {
    let mut group = stable_pair();
    // b rejoins with new metadata: a rebalance starts.
    let mut request = join_request("b", "unused");
    request.protocols = protocols(&["roundrobin"]);
    assert!(matches!(group.join(300, request), Reply::Parked { .. }));
    let rejoin = now(group.join(301, join_request("a", "unused")));
    assert_eq!(rejoin.generation_id, 3);
    assert_eq!(
        rejoin.protocol_name.as_deref(),
        Some("roundrobin"),
        "the only common one"
    );
    assert_eq!(joined(&group.take_outputs()).len(), 1);
    // b syncs and waits; a new member arrives before the leader's assignment.
    assert!(matches!(
        group.sync(302, sync_request("b", 3, &[])),
        Reply::Parked { .. }
    ));
    assert!(matches!(
        join_new(&mut group, 303, "c"),
        Reply::Parked { .. }
    ));
    let s = synced(&group.take_outputs());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1.error, ErrorCode::RebalanceInProgress);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    // The leader's stale sync is refused.
    assert!(matches!(
        group.sync(304, sync_request("a", 3, &[("a", "A")])),
        Reply::Now(ref r) if r.error == ErrorCode::RebalanceInProgress
    ));
    assert!(matches!(
        group.join(305, join_request("a", "u")),
        Reply::Parked { .. }
    ));
    let mut request = join_request("b", "unused");
    request.protocols = protocols(&["roundrobin"]);
    let last = now(group.join(306, request));
    assert_eq!(last.generation_id, 4);
    let j = joined(&group.take_outputs());
    assert_eq!(j.len(), 2);
    assert!(j.iter().all(|(_, r)| r.generation_id == 4));
    let leader = j.iter().find(|(id, _)| id == "a").expect("a answered");
    assert_eq!(leader.1.members.len(), 3);
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped_at_the_rebalance_deadline() {
    let mut group = stable_pair();
    assert!(matches!(
        join_new(&mut group, 400, "c"),
        Reply::Parked { .. }
    ));
    assert!(matches!(
        group.join(401, join_request("a", "u")),
        Reply::Parked { .. }
    ));
    // b heartbeats (and hears REBALANCE_IN_PROGRESS) but never rejoins.
    let mut t = 400;
    while t < 400 + REBALANCE_MS as u64 - 3_000 {
        t += 3_000;
        assert_eq!(
            group.heartbeat(t, "b", None, 2),
            ErrorCode::RebalanceInProgress
        );
        group.tick(t);
    }
    group.tick(400 + REBALANCE_MS as u64 - 1);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    group.tick(400 + REBALANCE_MS as u64);
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let outputs = group.take_outputs();
    let j = joined(&outputs);
    // b was dropped (its parked nothing), a and c answered with generation 3.
    assert_eq!(j.len(), 2);
    assert!(j
        .iter()
        .all(|(_, r)| r.generation_id == 3 && r.error == ErrorCode::None));
    assert_eq!(group.member_count(), 2);
    assert_eq!(
        group.heartbeat(30_500, "b", None, 3),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn the_leader_that_never_syncs_is_dropped_at_the_sync_deadline() {
    let mut group = Group::new("g", limits());
    now(join_new(&mut group, 0, "a"));
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    group.tick(REBALANCE_MS as u64);
    assert_eq!(group.member_count(), 0);
    assert_eq!(group.state(), GroupState::Empty);
}

#[test]
fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let mut group = Group::new("g", limits());
    let a = now(group.join(0, static_join("", "a1", "instance-a")));
    assert_eq!(
        a.member_id, "a1",
        "static members get an id without MEMBER_ID_REQUIRED"
    );
    assert!(matches!(
        group.sync(1, SyncRequest {
            instance_id: Some("instance-a".to_owned()),
            ..sync_request("a1", 1, &[("a1", "A")])
        }),
        Reply::Now(ref r) if r.assignment == "A"
    ));
    // The process restarts: same instance id, no member id.
    let again = now(group.join(50, static_join("", "a2", "instance-a")));
    assert_eq!(again.error, ErrorCode::None);
    assert_eq!(again.member_id, "a2");
    assert_eq!(again.generation_id, 1, "no rebalance");
    assert_eq!(again.leader, "a2");
    assert_eq!(group.state(), GroupState::Stable);
    let sync = group.sync(
        51,
        SyncRequest {
            instance_id: Some("instance-a".to_owned()),
            ..sync_request("a2", 1, &[])
        },
    );
    assert!(matches!(sync, Reply::Now(ref r) if r.assignment == "A"));
    // The old incarnation is fenced.
    assert_eq!(
        group.heartbeat(52, "a1", Some("instance-a"), 1),
        ErrorCode::FencedInstanceId
    );
    assert!(matches!(
        group.join(53, static_join("a1", "x", "instance-a")),
        Reply::Now(ref r) if r.error == ErrorCode::FencedInstanceId
    ));
    assert_eq!(
        group.heartbeat(54, "a2", Some("instance-a"), 1),
        ErrorCode::None
    );
}

#[test]
fn a_static_member_replaced_during_a_join_fences_the_old_parked_join() {
    let mut group = Group::new("g", limits());
    now(group.join(0, static_join("", "a1", "ia")));
    group.sync(1, sync_request("a1", 1, &[("a1", "A")]));
    assert!(matches!(join_new(&mut group, 2, "b"), Reply::Parked { .. }));
    let a1 = now(group.join(3, static_join("a1", "x", "ia")));
    assert_eq!(a1.generation_id, 2);
    assert_eq!(joined(&group.take_outputs()).len(), 1, "b answered");
    group.sync(4, sync_request("b", 2, &[]));
    group.sync(4, sync_request("a1", 2, &[("a1", "A"), ("b", "B")]));
    group.take_outputs();
    assert_eq!(group.state(), GroupState::Stable);
    // a1 rejoins with new metadata and waits for b; meanwhile its process restarts.
    let mut changed = static_join("a1", "x", "ia");
    changed.protocols = protocols(&["range"]);
    assert!(matches!(group.join(5, changed), Reply::Parked { .. }));
    let replaced = group.join(6, static_join("", "a2", "ia"));
    assert!(matches!(replaced, Reply::Parked { ref member_id } if member_id == "a2"));
    let j = joined(&group.take_outputs());
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].0, "a1");
    assert_eq!(j[0].1.error, ErrorCode::FencedInstanceId);
    // b rejoins: the join phase ends; a2 leads in a1's place.
    let b = now(group.join(7, join_request("b", "u")));
    assert_eq!(b.generation_id, 3);
    assert_eq!(b.leader, "a2");
    let j = joined(&group.take_outputs());
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].0, "a2");
    assert_eq!(j[0].1.members.len(), 2);
    assert_eq!(
        group.heartbeat(8, "a1", Some("ia"), 3),
        ErrorCode::FencedInstanceId
    );
}

#[test]
fn pending_member_ids_expire_and_unknown_ids_are_refused() {
    let mut group = Group::new("g", limits());
    match group.join(0, join_request("", "p")) {
        Reply::Now(r) => assert_eq!(r.error, ErrorCode::MemberIdRequired),
        other => panic!("{other:?}"),
    }
    group.tick(SESSION_MS as u64);
    assert!(group.is_empty());
    assert!(matches!(
        group.join(SESSION_MS as u64 + 1, join_request("p", "q")),
        Reply::Now(ref r) if r.error == ErrorCode::UnknownMemberId
    ));
}

#[test]
fn joins_are_checked_for_timeouts_protocols_and_group_size() {
    let mut group = Group::new(
        "g",
        GroupLimits {
            members_per_group_max: 1,
            ..limits()
        },
    );
    let mut short = join_request("", "a");
    short.session_timeout_ms = 10;
    assert!(
        matches!(group.join(0, short), Reply::Now(ref r) if r.error == ErrorCode::InvalidSessionTimeout)
    );
    now(join_new(&mut group, 0, "a"));
    let mut other = join_request("", "b");
    other.protocols = protocols(&["sticky"]);
    assert!(
        matches!(group.join(1, other), Reply::Now(ref r) if r.error == ErrorCode::InconsistentGroupProtocol)
    );
    assert!(
        matches!(group.join(1, join_request("", "b")), Reply::Now(ref r) if r.error == ErrorCode::GroupMaxSizeReached)
    );
}

#[test]
fn the_initial_rebalance_waits_for_more_members() {
    let mut group = Group::new(
        "g",
        GroupLimits {
            initial_rebalance_delay_ms: 3_000,
            ..limits()
        },
    );
    assert!(matches!(join_new(&mut group, 0, "a"), Reply::Parked { .. }));
    assert!(matches!(
        join_new(&mut group, 1_000, "b"),
        Reply::Parked { .. }
    ));
    group.tick(2_999);
    assert!(group.take_outputs().is_empty());
    group.tick(4_000);
    let j = joined(&group.take_outputs());
    assert_eq!(j.len(), 2);
    assert!(j.iter().all(|(_, r)| r.generation_id == 1));
}

#[test]
fn commits_are_accepted_from_current_members_and_standalone_consumers_only() {
    let mut group = stable_pair();
    assert_eq!(group.validate_commit("a", None, 2), Ok(CommitKind::Member));
    assert_eq!(
        group.validate_commit("a", None, 1),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        group.validate_commit("x", None, 2),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(
        group.validate_commit("", None, -1),
        Err(ErrorCode::UnknownMemberId)
    );
    let empty = Group::new("h", limits());
    assert_eq!(
        empty.validate_commit("", None, -1),
        Ok(CommitKind::Standalone)
    );
    // During the join phase members may still commit what they processed.
    assert!(matches!(
        join_new(&mut group, 500, "c"),
        Reply::Parked { .. }
    ));
    assert_eq!(group.validate_commit("a", None, 2), Ok(CommitKind::Member));
}

#[test]
fn a_restored_group_keeps_its_generation_members_and_assignments() {
    let mut group = stable_pair();
    let persisted: Vec<Output> = group
        .take_outputs()
        .into_iter()
        .filter(|o| matches!(o, Output::Persist(_)))
        .collect();
    assert!(persisted.is_empty(), "stable_pair drained the outputs");
    // The snapshot a Stable group stores, restored by a restarted coordinator at time 0.
    let snapshot = group.snapshot();
    assert_eq!(snapshot.generation_id, 2);
    assert_eq!(snapshot.members.len(), 2);
    let mut restored = Group::restore("g", limits(), snapshot, 0);
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.generation_id(), 2);
    assert_eq!(restored.leader(), Some("a"));
    assert_eq!(restored.heartbeat(1, "b", None, 2), ErrorCode::None);
    assert_eq!(
        restored.validate_commit("a", None, 2),
        Ok(CommitKind::Member)
    );
    assert!(matches!(
        restored.sync(2, sync_request("b", 2, &[])),
        Reply::Now(ref r) if r.assignment == "B"
    ));
    // Sessions restart at restore time: a silent member expires one session later.
    restored.heartbeat(5_000, "a", None, 2);
    restored.tick(SESSION_MS as u64 + 3);
    assert_eq!(restored.member_count(), 1);
}

#[test]
fn stable_and_empty_transitions_ask_to_persist_the_group() {
    let mut group = Group::new("g", limits());
    now(join_new(&mut group, 0, "a"));
    assert!(!group
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::Persist(_))));
    group.sync(1, sync_request("a", 1, &[("a", "A")]));
    let outputs = group.take_outputs();
    let Some(Output::Persist(Some(snapshot))) = outputs.first() else {
        panic!("expected a snapshot, got {outputs:?}");
    };
    assert_eq!(snapshot.members[0].assignment, "A");
    group.leave(
        2,
        &[LeavingMember {
            member_id: "a".to_owned(),
            instance_id: None,
        }],
    );
    let outputs = group.take_outputs();
    assert!(matches!(
        outputs.as_slice(),
        [Output::Persist(Some(s))] if s.members.is_empty() && s.generation_id == 2
    ));
    assert_eq!(group.delete(), Ok(()));
    assert_eq!(group.take_outputs(), vec![Output::Persist(None)]);
}

/// A small deterministic generator (xorshift64*), so the random walk below needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random walks of joins, syncs, heartbeats, leaves, static restarts and time: the state
/// machine's own invariants are asserted inside every call; here, every parked call is answered
/// exactly once (an answer never arrives for a call that is not parked), and once time runs far
/// enough every parked call has been answered.
#[test]
fn random_walks_answer_every_parked_call_exactly_once() {
    use std::collections::HashSet;
    for seed in 1..=500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut group = Group::new(
            "g",
            GroupLimits {
                members_per_group_max: 6,
                initial_rebalance_delay_ms: 500,
                ..GroupLimits::default()
            },
        );
        let mut now_ms = 0u64;
        let mut fresh = 0u32;
        let mut known: Vec<String> = Vec::new();
        let mut parked: HashSet<(String, bool)> = HashSet::new(); // (member, is_join)
        let settle = |group: &mut Group, parked: &mut HashSet<(String, bool)>| {
            for output in group.take_outputs() {
                let key = match output {
                    Output::Joined { member_id, .. } => (member_id, true),
                    Output::Synced { member_id, .. } => (member_id, false),
                    Output::Persist(_) => continue,
                };
                assert!(
                    parked.remove(&key),
                    "seed {seed}: answer for a call not parked: {key:?}"
                );
            }
        };
        for _ in 0..400 {
            let pick = |rng: &mut Rng, known: &Vec<String>| -> String {
                if known.is_empty() {
                    "nobody".to_owned()
                } else {
                    known[rng.below(known.len() as u64) as usize].clone()
                }
            };
            let mut new_park: Option<(String, bool)> = None;
            match rng.below(8) {
                0 | 1 => {
                    fresh += 1;
                    let new_id = format!("m{fresh}");
                    let mut request = join_request("", &new_id);
                    if rng.below(3) == 0 {
                        request.instance_id = Some(format!("s{}", rng.below(2)));
                    }
                    if rng.below(4) == 0 {
                        request.protocols = protocols(&["roundrobin"]);
                    }
                    match group.join(now_ms, request) {
                        Reply::Now(r) => {
                            if r.error == ErrorCode::MemberIdRequired || r.error == ErrorCode::None
                            {
                                known.push(r.member_id);
                            }
                        }
                        Reply::Parked { member_id } => {
                            new_park = Some((member_id.clone(), true));
                            known.push(member_id);
                        }
                    }
                }
                2 => {
                    let member = pick(&mut rng, &known);
                    // A member's new join supersedes its parked one: the state machine answers
                    // the old one (an output) and then the new one.
                    if let Reply::Parked { member_id } =
                        group.join(now_ms, join_request(&member, "unused"))
                    {
                        new_park = Some((member_id, true));
                    }
                }
                3 => {
                    let member = pick(&mut rng, &known);
                    let generation = group.generation_id() - rng.below(2) as i32;
                    let assignments: Vec<(String, Bytes)> = group
                        .members()
                        .map(|m| (m.id.clone(), Bytes::from_static(b"x")))
                        .collect();
                    let request = SyncRequest {
                        assignments,
                        ..sync_request(&member, generation, &[])
                    };
                    if let Reply::Parked { member_id } = group.sync(now_ms, request) {
                        new_park = Some((member_id, false));
                    }
                }
                4 => {
                    let member = pick(&mut rng, &known);
                    group.heartbeat(now_ms, &member, None, group.generation_id());
                }
                5 => {
                    let member = pick(&mut rng, &known);
                    group.leave(
                        now_ms,
                        &[LeavingMember {
                            member_id: member,
                            instance_id: None,
                        }],
                    );
                }
                _ => {
                    now_ms += rng.below(8_000);
                    group.tick(now_ms);
                }
            }
            // Answers produced by the call go to calls parked before it; then it parks.
            settle(&mut group, &mut parked);
            if let Some(key) = new_park {
                assert!(
                    parked.insert(key),
                    "seed {seed}: parked twice without an answer"
                );
            }
        }
        for _ in 0..6 {
            now_ms += 10_000_000;
            group.tick(now_ms);
            settle(&mut group, &mut parked);
        }
        assert!(parked.is_empty(), "seed {seed}: never answered: {parked:?}");
        assert_eq!(
            group.member_count(),
            0,
            "seed {seed}: silent members expire"
        );
        assert_eq!(group.state(), GroupState::Empty);
    }
}
