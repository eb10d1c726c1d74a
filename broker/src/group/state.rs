//! The classic consumer group protocol as a sans-I/O state machine.
//!
//! A [`Group`] is fed requests (`join`, `sync`, `heartbeat`, `leave`) and the passage of time
//! (`tick`), each with the current time in milliseconds from a clock the caller owns. A request
//! is either answered at once ([`Reply::Now`]) or parked ([`Reply::Parked`]); parked JoinGroup
//! and SyncGroup calls are answered later through [`Output`]s, which the caller drains with
//! [`Group::take_outputs`] after every call and turns into responses. Nothing here sleeps,
//! spawns or touches a socket, so the unit tests below drive rebalances with a fake clock.
//!
//! States (Kafka's classic group coordinator):
//! - `Empty`: no members (the group may still have committed offsets).
//! - `PreparingRebalance`: collecting JoinGroup calls from every member; completes when all
//!   known members rejoined (and the initial delay passed) or the rebalance timeout expired.
//! - `CompletingRebalance`: the leader got the member list and computes the assignment; members
//!   wait in SyncGroup until the leader's SyncGroup arrives.
//! - `Stable`: assignments handed out; members heartbeat.
//! - `Dead`: deleted; every request gets COORDINATOR_NOT_AVAILABLE-like errors.
//!
//! Invariants (asserted): every member id in `static_members` is a member; at most
//! `members_per_group_max` members plus pending members; a parked join or sync exists only for a
//! member that is in the group; the generation only grows.

use std::collections::BTreeMap;

use bytes::Bytes;
use spate_wire::ErrorCode;

/// Bounds and timing a group obeys (from the broker configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Most members (joined or pending, KIP-394) in one group.
    pub members_per_group_max: usize,
    /// Most bytes of protocol metadata in one JoinGroup, and of one member's assignment.
    pub metadata_bytes_max: usize,
    /// Smallest session timeout a member may ask for (Kafka's group.min.session.timeout.ms).
    pub session_timeout_ms_min: u64,
    /// Largest session timeout a member may ask for (Kafka's group.max.session.timeout.ms).
    pub session_timeout_ms_max: u64,
    /// How long the first rebalance of an empty group waits for more members
    /// (Kafka's group.initial.rebalance.delay.ms).
    pub initial_rebalance_delay_ms: u64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            members_per_group_max: 1000,
            metadata_bytes_max: 1 << 20,
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
        }
    }
}

/// A group's state; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups v4+).
    pub fn kafka_name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One protocol a member supports (e.g. `range` with its subscription as metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// Whether a new dynamic member must first fetch its id (JoinGroup v4+, KIP-394).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberIdPolicy {
    /// Answer MEMBER_ID_REQUIRED with an id; the member joins again with it.
    Required,
    /// Older clients: accept the member straight away.
    Assigned,
}

/// A JoinGroup call.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a member that has no id yet.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// -1 (JoinGroup v0) means: same as the session timeout.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub member_id_policy: MemberIdPolicy,
    /// The id to give this member if it needs one (the caller makes it unique: sans-I/O means
    /// no random source in here).
    pub new_member_id: String,
}

/// A member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members and their metadata.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An error answer.
    pub fn error(error: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup call.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation_id: i32,
    /// SyncGroup v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// From the leader: member id → assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    /// An error answer.
    pub fn error(error: ErrorCode) -> SyncResponse {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A member leaving (LeaveGroup v3+ names members by id or by instance id).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// Answered now, or later through an [`Output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    Now(T),
    /// The call waits; it is answered by an output naming this member id.
    Parked {
        member_id: String,
    },
}

/// What the shell must do after a call: answer a parked call, or store the group's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The group reached Stable or Empty (or a static member was replaced): store this
    /// snapshot so a restarted coordinator knows the generation and members (Kafka's group
    /// metadata record). `None`: the group was deleted.
    Persist(Option<GroupSnapshot>),
    Joined {
        member_id: String,
        response: JoinResponse,
    },
    Synced {
        member_id: String,
        response: SyncResponse,
    },
}

/// A group's durable state: what a restarted coordinator resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

/// One member in a [`GroupSnapshot`]: its metadata for the chosen protocol and its assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A member of the group.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    last_heartbeat_ms: u64,
    awaiting_join: bool,
    awaiting_sync: bool,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    fn same_protocols(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }
}

/// Commit checks passed: whose commit it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// A member of the current generation.
    Member,
    /// A group that does not use the coordinator for membership (generation -1, no members):
    /// admin tools and manually assigned consumers.
    Standalone,
}

/// One consumer group's membership state; see the module doc.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    limits: GroupLimits,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → member id (KIP-345).
    static_members: BTreeMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet used, with their expiry time.
    pending_members: BTreeMap<String, u64>,
    /// PreparingRebalance: when the join phase ends regardless; CompletingRebalance: when the
    /// leader's SyncGroup is given up on.
    rebalance_deadline_ms: u64,
    /// PreparingRebalance of an empty group: the join phase does not end before this.
    initial_delay_until_ms: u64,
    outputs: Vec<Output>,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, limits: GroupLimits) -> Group {
        Group {
            id: id.to_owned(),
            limits,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: 0,
            outputs: Vec::new(),
        }
    }

    /// A group as a restarted coordinator finds it in its snapshot: Stable with those members
    /// (their sessions restart now), or Empty.
    pub fn restore(id: &str, limits: GroupLimits, snapshot: GroupSnapshot, now_ms: u64) -> Group {
        let mut group = Group::new(id, limits);
        group.generation_id = snapshot.generation_id;
        group.protocol_type = snapshot.protocol_type;
        let protocol = snapshot.protocol_name.clone().unwrap_or_default();
        for m in snapshot
            .members
            .into_iter()
            .take(limits.members_per_group_max)
        {
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![Protocol {
                        name: protocol.clone(),
                        metadata: m.metadata,
                    }],
                    assignment: m.assignment,
                    last_heartbeat_ms: now_ms,
                    awaiting_join: false,
                    awaiting_sync: false,
                },
            );
        }
        if group.members.is_empty() {
            group.protocol_name = None;
            group.leader = None;
        } else {
            group.state = GroupState::Stable;
            group.protocol_name = snapshot.protocol_name;
            group.leader = snapshot
                .leader
                .filter(|l| group.members.contains_key(l))
                .or_else(|| group.members.keys().next().cloned());
        }
        group.check_invariants();
        group
    }

    /// The durable part of the group's state.
    pub fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupSnapshot {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn persist(&mut self) {
        let snapshot = self.snapshot();
        self.outputs.push(Output::Persist(Some(snapshot)));
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Whether the group has no members and no member ids handed out.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// Answers to parked calls produced since the last call.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Marks the group deleted (DeleteGroups); only an empty group may be deleted.
    ///
    /// # Errors
    /// NON_EMPTY_GROUP if it has members.
    pub fn delete(&mut self) -> Result<(), ErrorCode> {
        if !self.is_empty() {
            return Err(ErrorCode::NonEmptyGroup);
        }
        self.state = GroupState::Dead;
        self.outputs.push(Output::Persist(None));
        Ok(())
    }

    /// A JoinGroup call at `now_ms`.
    pub fn join(&mut self, now_ms: u64, request: JoinRequest) -> Reply<JoinResponse> {
        self.supersede(&request.member_id, true);
        let reply = self.join_inner(now_ms, request);
        self.check_invariants();
        reply
    }

    fn join_inner(&mut self, now_ms: u64, request: JoinRequest) -> Reply<JoinResponse> {
        let refuse = |error| Reply::Now(JoinResponse::error(error, &request.member_id));
        if self.state == GroupState::Dead {
            return refuse(ErrorCode::CoordinatorNotAvailable);
        }
        let session_ms = u64::try_from(request.session_timeout_ms).unwrap_or(0);
        if session_ms < self.limits.session_timeout_ms_min
            || session_ms > self.limits.session_timeout_ms_max
        {
            return refuse(ErrorCode::InvalidSessionTimeout);
        }
        let metadata_bytes: usize = request
            .protocols
            .iter()
            .map(|p| p.name.len() + p.metadata.len())
            .sum();
        if metadata_bytes > self.limits.metadata_bytes_max {
            return refuse(ErrorCode::InvalidRequest);
        }
        if !self.accepts_protocols(
            &request.member_id,
            &request.protocol_type,
            &request.protocols,
        ) {
            return refuse(ErrorCode::InconsistentGroupProtocol);
        }
        if request.member_id.is_empty() {
            return self.join_unknown(now_ms, request);
        }
        if self.pending_members.remove(&request.member_id).is_some() {
            let member_id = request.member_id.clone();
            return self.add_member_and_rebalance(now_ms, member_id, request);
        }
        if let Some(instance) = &request.instance_id {
            if let Some(known) = self.static_members.get(instance) {
                if *known != request.member_id {
                    return refuse(ErrorCode::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(&request.member_id) {
            return refuse(ErrorCode::UnknownMemberId);
        }
        self.join_known(now_ms, request)
    }

    /// A member's new JoinGroup (`join`) or SyncGroup supersedes the one it still has parked
    /// (a client that gave up and asked again, usually on a new connection): the old call is
    /// answered REBALANCE_IN_PROGRESS now, and the new one is handled as if the member were not
    /// waiting, so every parked call gets exactly one answer.
    fn supersede(&mut self, member_id: &str, join: bool) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if join && member.awaiting_join {
            member.awaiting_join = false;
            self.outputs.push(Output::Joined {
                member_id: member_id.to_owned(),
                response: JoinResponse::error(ErrorCode::RebalanceInProgress, member_id),
            });
        } else if !join && member.awaiting_sync {
            member.awaiting_sync = false;
            self.outputs.push(Output::Synced {
                member_id: member_id.to_owned(),
                response: SyncResponse::error(ErrorCode::RebalanceInProgress),
            });
        }
    }

    /// Whether a member with these protocols fits the group: the same protocol type, and at
    /// least one protocol every other member supports too.
    fn accepts_protocols(
        &self,
        member_id: &str,
        protocol_type: &str,
        protocols: &[Protocol],
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| others.iter().all(|m| m.supports(&p.name)))
    }

    fn join_unknown(&mut self, now_ms: u64, request: JoinRequest) -> Reply<JoinResponse> {
        let new_id = request.new_member_id.clone();
        assert!(!new_id.is_empty(), "the caller provides a member id");
        if let Some(instance) = request.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(now_ms, old_id, new_id, request);
            }
            if self.members.len() + self.pending_members.len() >= self.limits.members_per_group_max
            {
                return Reply::Now(JoinResponse::error(ErrorCode::GroupMaxSizeReached, ""));
            }
            return self.add_member_and_rebalance(now_ms, new_id, request);
        }
        if self.members.len() + self.pending_members.len() >= self.limits.members_per_group_max {
            return Reply::Now(JoinResponse::error(ErrorCode::GroupMaxSizeReached, ""));
        }
        match request.member_id_policy {
            MemberIdPolicy::Required => {
                let session_ms = u64::try_from(request.session_timeout_ms).unwrap_or(0);
                self.pending_members
                    .insert(new_id.clone(), now_ms + session_ms);
                Reply::Now(JoinResponse::error(ErrorCode::MemberIdRequired, &new_id))
            }
            MemberIdPolicy::Assigned => self.add_member_and_rebalance(now_ms, new_id, request),
        }
    }

    fn new_member(now_ms: u64, member_id: String, request: &JoinRequest) -> Member {
        let session_ms = u64::try_from(request.session_timeout_ms).unwrap_or(0);
        let rebalance_ms = u64::try_from(request.rebalance_timeout_ms).unwrap_or(session_ms);
        Member {
            id: member_id,
            instance_id: request.instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: rebalance_ms,
            protocols: request.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: true,
            awaiting_sync: false,
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now_ms: u64,
        member_id: String,
        request: JoinRequest,
    ) -> Reply<JoinResponse> {
        let member = Group::new_member(now_ms, member_id.clone(), &request);
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        match self.state {
            GroupState::PreparingRebalance => {
                if self.initial_delay_until_ms > now_ms {
                    // Kafka's InitialDelayedJoin: each new member extends the wait, up to the
                    // rebalance timeout.
                    self.initial_delay_until_ms = (now_ms + self.limits.initial_rebalance_delay_ms)
                        .min(self.rebalance_deadline_ms);
                }
                self.try_complete_join(now_ms);
            }
            _ => self.prepare_rebalance(now_ms),
        }
        self.parked_join(member_id)
    }

    /// The join of a member just added or updated: parked unless the join phase completed
    /// already (then its answer is among the outputs, handed over as the reply instead).
    fn parked_join(&mut self, member_id: String) -> Reply<JoinResponse> {
        // The last answer for this member: an earlier one may answer a call it superseded.
        let position = self
            .outputs
            .iter()
            .rposition(|o| matches!(o, Output::Joined { member_id: id, .. } if *id == member_id));
        match position {
            Some(i) => match self.outputs.remove(i) {
                Output::Joined { response, .. } => Reply::Now(response),
                _ => unreachable!("matched a Joined output"),
            },
            None => Reply::Parked { member_id },
        }
    }

    fn replace_static_member(
        &mut self,
        now_ms: u64,
        old_id: String,
        new_id: String,
        request: JoinRequest,
    ) -> Reply<JoinResponse> {
        let mut member = self
            .members
            .remove(&old_id)
            .expect("static members are members");
        // The old incarnation's parked calls are fenced.
        if member.awaiting_join {
            self.outputs.push(Output::Joined {
                member_id: old_id.clone(),
                response: JoinResponse::error(ErrorCode::FencedInstanceId, &old_id),
            });
        }
        if member.awaiting_sync {
            self.outputs.push(Output::Synced {
                member_id: old_id.clone(),
                response: SyncResponse::error(ErrorCode::FencedInstanceId),
            });
        }
        let protocols_unchanged = member.same_protocols(&request.protocols);
        member.id = new_id.clone();
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout_ms = u64::try_from(request.session_timeout_ms).unwrap_or(0);
        member.rebalance_timeout_ms =
            u64::try_from(request.rebalance_timeout_ms).unwrap_or(member.session_timeout_ms);
        member.protocols = request.protocols.clone();
        member.last_heartbeat_ms = now_ms;
        member.awaiting_sync = false;
        member.awaiting_join = false;
        self.members.insert(new_id.clone(), member);
        let instance = request.instance_id.clone().expect("static join");
        self.static_members.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if protocols_unchanged => {
                // A restarted static member gets its old assignment back without a rebalance:
                // it answers the join now and fetches the assignment with SyncGroup.
                self.persist();
                Reply::Now(JoinResponse {
                    error: ErrorCode::None,
                    generation_id: self.generation_id,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: self.leader.clone().unwrap_or_default(),
                    member_id: new_id,
                    members: Vec::new(),
                })
            }
            GroupState::PreparingRebalance => {
                self.members
                    .get_mut(&new_id)
                    .expect("inserted above")
                    .awaiting_join = true;
                self.try_complete_join(now_ms);
                self.parked_join(new_id)
            }
            _ => {
                self.members
                    .get_mut(&new_id)
                    .expect("inserted above")
                    .awaiting_join = true;
                self.prepare_rebalance(now_ms);
                self.parked_join(new_id)
            }
        }
    }

    fn join_known(&mut self, now_ms: u64, request: JoinRequest) -> Reply<JoinResponse> {
        let member_id = request.member_id.clone();
        let member = self.members.get_mut(&member_id).expect("checked by caller");
        let unchanged = member.same_protocols(&request.protocols);
        member.last_heartbeat_ms = now_ms;
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout_ms = u64::try_from(request.session_timeout_ms).unwrap_or(0);
        member.rebalance_timeout_ms =
            u64::try_from(request.rebalance_timeout_ms).unwrap_or(member.session_timeout_ms);
        member.protocols = request.protocols;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                self.members
                    .get_mut(&member_id)
                    .expect("member")
                    .awaiting_join = true;
                self.try_complete_join(now_ms);
                self.parked_join(member_id)
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(is_leader && self.state == GroupState::Stable) =>
            {
                // A follower that lost its join answer (or rejoins with nothing new): the
                // current generation, unchanged. A Stable leader's rejoin means it wants a new
                // assignment (e.g. a metadata change), so it rebalances.
                let members = if is_leader {
                    self.joined_members()
                } else {
                    Vec::new()
                };
                Reply::Now(self.join_response(&member_id, members))
            }
            _ => {
                self.members
                    .get_mut(&member_id)
                    .expect("member")
                    .awaiting_join = true;
                self.prepare_rebalance(now_ms);
                self.parked_join(member_id)
            }
        }
    }

    fn join_response(&self, member_id: &str, members: Vec<JoinedMember>) -> JoinResponse {
        JoinResponse {
            error: ErrorCode::None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    }

    fn max_rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Starts (or restarts) the join phase.
    fn prepare_rebalance(&mut self, now_ms: u64) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for an assignment that will not come: they must rejoin.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if member.awaiting_sync {
                    member.awaiting_sync = false;
                    self.outputs.push(Output::Synced {
                        member_id: member.id.clone(),
                        response: SyncResponse::error(ErrorCode::RebalanceInProgress),
                    });
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline_ms = now_ms + self.max_rebalance_timeout_ms();
        self.initial_delay_until_ms = if was_empty {
            (now_ms + self.limits.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms)
        } else {
            now_ms
        };
        self.try_complete_join(now_ms);
    }

    /// Ends the join phase if every member rejoined and no new one is expected.
    fn try_complete_join(&mut self, now_ms: u64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join);
        if (all_joined && self.pending_members.is_empty() && now_ms >= self.initial_delay_until_ms)
            || now_ms >= self.rebalance_deadline_ms
        {
            self.complete_join(now_ms);
        }
    }

    fn complete_join(&mut self, now_ms: u64) {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        // Dynamic members that did not rejoin in time are out; static members stay (their
        // session timeout decides).
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, ErrorCode::UnknownMemberId);
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.persist();
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.get(l).is_some_and(|m| m.awaiting_join))
        {
            // Prefer a member that is here to receive the member list.
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join)
                .or_else(|| self.members.values().next())
                .map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        self.rebalance_deadline_ms = now_ms + self.max_rebalance_timeout_ms();
        let leader = self
            .leader
            .clone()
            .expect("a group with members has a leader");
        let everyone = self.joined_members();
        let joined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join)
            .map(|m| m.id.clone())
            .collect();
        for id in joined {
            let members = if id == leader {
                everyone.clone()
            } else {
                Vec::new()
            };
            let response = self.join_response(&id, members);
            let member = self.members.get_mut(&id).expect("member");
            member.awaiting_join = false;
            member.last_heartbeat_ms = now_ms;
            self.outputs.push(Output::Joined {
                member_id: id,
                response,
            });
        }
    }

    /// The protocol every member supports that most members list first (ties: the earliest
    /// in the first member's list).
    fn select_protocol(&self) -> String {
        let first = self.members.values().next().expect("members");
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        assert!(
            !candidates.is_empty(),
            "joins are checked for a common protocol"
        );
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            if let Some(i) = member
                .protocols
                .iter()
                .find_map(|p| candidates.iter().position(|c| *c == p.name))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max().unwrap_or(0);
        let i = votes.iter().position(|v| *v == best).unwrap_or(0);
        candidates[i].to_owned()
    }

    /// Removes a member; its parked calls are answered with `error`.
    fn remove_member(&mut self, member_id: &str, error: ErrorCode) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if member.awaiting_join {
            self.outputs.push(Output::Joined {
                member_id: member.id.clone(),
                response: JoinResponse::error(error, &member.id),
            });
        }
        if member.awaiting_sync {
            self.outputs.push(Output::Synced {
                member_id: member.id.clone(),
                response: SyncResponse::error(error),
            });
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// After members left or expired: the others must rebalance.
    fn after_removal(&mut self, now_ms: u64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now_ms),
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// A SyncGroup call at `now_ms`.
    pub fn sync(&mut self, now_ms: u64, request: SyncRequest) -> Reply<SyncResponse> {
        self.supersede(&request.member_id, false);
        let reply = self.sync_inner(now_ms, request);
        self.check_invariants();
        reply
    }

    fn sync_inner(&mut self, now_ms: u64, request: SyncRequest) -> Reply<SyncResponse> {
        let refuse = |error| Reply::Now(SyncResponse::error(error));
        if self.state == GroupState::Dead {
            return refuse(ErrorCode::CoordinatorNotAvailable);
        }
        if let Err(error) = self.check_member(
            &request.member_id,
            request.instance_id.as_deref(),
            request.generation_id,
        ) {
            return refuse(error);
        }
        if request
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || request
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != self.protocol_name.as_ref())
        {
            return refuse(ErrorCode::InconsistentGroupProtocol);
        }
        if request
            .assignments
            .iter()
            .any(|(_, a)| a.len() > self.limits.metadata_bytes_max)
        {
            return refuse(ErrorCode::InvalidRequest);
        }
        self.members
            .get_mut(&request.member_id)
            .expect("checked")
            .last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::Empty | GroupState::Dead => refuse(ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => refuse(ErrorCode::RebalanceInProgress),
            GroupState::Stable => Reply::Now(self.sync_response(&request.member_id)),
            GroupState::CompletingRebalance => {
                let member_id = request.member_id.clone();
                self.members
                    .get_mut(&member_id)
                    .expect("checked")
                    .awaiting_sync = true;
                if self.leader.as_deref() == Some(member_id.as_str()) {
                    self.complete_sync(request.assignments);
                }
                let position = self.outputs.iter().rposition(
                    |o| matches!(o, Output::Synced { member_id: id, .. } if *id == member_id),
                );
                match position {
                    Some(i) => match self.outputs.remove(i) {
                        Output::Synced { response, .. } => Reply::Now(response),
                        _ => unreachable!("matched a Synced output"),
                    },
                    None => Reply::Parked { member_id },
                }
            }
        }
    }

    fn sync_response(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: ErrorCode::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        for (id, assignment) in assignments {
            if let Some(member) = self.members.get_mut(&id) {
                member.assignment = assignment;
            }
        }
        self.state = GroupState::Stable;
        self.persist();
        let waiting: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_sync)
            .map(|m| m.id.clone())
            .collect();
        for id in waiting {
            let response = self.sync_response(&id);
            self.members.get_mut(&id).expect("member").awaiting_sync = false;
            self.outputs.push(Output::Synced {
                member_id: id,
                response,
            });
        }
    }

    /// Checks that a call comes from a current member of this generation.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ErrorCode> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(known) if known != member_id => return Err(ErrorCode::FencedInstanceId),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    /// A Heartbeat call at `now_ms`; the error code to answer.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> ErrorCode {
        if self.state == GroupState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if let Err(error) = self.check_member(member_id, instance_id, generation_id) {
            return error;
        }
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
        }
    }

    /// A LeaveGroup call at `now_ms`; one error code per leaving member.
    pub fn leave(&mut self, now_ms: u64, leaving: &[LeavingMember]) -> Vec<ErrorCode> {
        if self.state == GroupState::Dead {
            return vec![ErrorCode::CoordinatorNotAvailable; leaving.len()];
        }
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for leaver in leaving {
            let id = match (&leaver.instance_id, leaver.member_id.is_empty()) {
                (Some(instance), _) => match self.static_members.get(instance) {
                    Some(known) if leaver.member_id.is_empty() || *known == leaver.member_id => {
                        known.clone()
                    }
                    Some(_) => {
                        results.push(ErrorCode::FencedInstanceId);
                        continue;
                    }
                    None => {
                        results.push(ErrorCode::UnknownMemberId);
                        continue;
                    }
                },
                (None, false) => leaver.member_id.clone(),
                (None, true) => {
                    results.push(ErrorCode::UnknownMemberId);
                    continue;
                }
            };
            if self.pending_members.remove(&id).is_some() {
                results.push(ErrorCode::None);
                continue;
            }
            if !self.members.contains_key(&id) {
                results.push(ErrorCode::UnknownMemberId);
                continue;
            }
            self.remove_member(&id, ErrorCode::UnknownMemberId);
            removed = true;
            results.push(ErrorCode::None);
        }
        if removed {
            self.after_removal(now_ms);
        }
        self.check_invariants();
        results
    }

    /// Time passes: expire sessions and pending member ids, end join and sync phases whose
    /// deadline passed.
    pub fn tick(&mut self, now_ms: u64) {
        if self.state == GroupState::Dead {
            return;
        }
        self.pending_members.retain(|_, expiry| *expiry > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                !m.awaiting_join
                    && !m.awaiting_sync
                    && m.last_heartbeat_ms + m.session_timeout_ms <= now_ms
            })
            .map(|m| m.id.clone())
            .collect();
        let any_expired = !expired.is_empty();
        for id in expired {
            self.remove_member(&id, ErrorCode::UnknownMemberId);
        }
        if any_expired {
            self.after_removal(now_ms);
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::CompletingRebalance if now_ms >= self.rebalance_deadline_ms => {
                // The leader never sent its assignment: members that did not ask for theirs
                // are gone, the rest rejoin.
                let silent: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| !m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in silent {
                    self.remove_member(&id, ErrorCode::UnknownMemberId);
                }
                self.prepare_rebalance(now_ms);
            }
            _ => {}
        }
        self.check_invariants();
    }

    /// Whether an OffsetCommit from this member and generation may be applied.
    ///
    /// # Errors
    /// The error code to answer for every partition.
    pub fn validate_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<CommitKind, ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.check_member(member_id, instance_id, generation_id)?;
            if self.state == GroupState::CompletingRebalance {
                return Err(ErrorCode::RebalanceInProgress);
            }
            return Ok(CommitKind::Member);
        }
        if !self.members.is_empty() {
            // The group manages its members through the coordinator: only they commit.
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(CommitKind::Standalone)
    }

    fn check_invariants(&self) {
        for (instance, id) in &self.static_members {
            let member = self.members.get(id);
            assert!(
                member.is_some_and(|m| m.instance_id.as_deref() == Some(instance.as_str())),
                "static member {instance} maps to a member"
            );
        }
        assert!(
            self.members.len() + self.pending_members.len() <= self.limits.members_per_group_max
        );
        match self.state {
            GroupState::Empty => assert!(self.members.is_empty()),
            GroupState::Stable | GroupState::CompletingRebalance => {
                assert!(!self.members.is_empty());
                assert!(self.members.values().all(|m| !m.awaiting_join));
                assert!(self
                    .leader
                    .as_ref()
                    .is_some_and(|l| self.members.contains_key(l)));
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        if self.state != GroupState::CompletingRebalance {
            assert!(self.members.values().all(|m| !m.awaiting_sync));
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
