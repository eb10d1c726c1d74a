//! The I/O shell around the group state machines of one core.
//!
//! A core coordinates the groups whose `__consumer_offsets` partition it owns. The shell keeps
//! their [`Group`] state machines and committed offsets, feeds them requests and the clock
//! (milliseconds since the core started), parks JoinGroup/SyncGroup calls on one-shot channels
//! until the state machine's outputs answer them, appends offset commits to the offsets
//! partition and answers once they are durable, and rebuilds the offsets from that partition at
//! startup.
//!
//! Invariants: a `RefCell` borrow is never held across an `.await`; a committed offset is in
//! memory only after its record is durable; the in-memory offset of a partition is the one of
//! the latest record in the log (commits finishing out of order do not go back).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::channel::oneshot;
use spate_storage::ReadChunk;
use spate_storage::ReadUpTo;
use spate_wire::batch::{batches, BatchBuilder, BatchSpec};
use spate_wire::records::batch_records;
use spate_wire::types::{Offset, ProducerEpoch, ProducerId};
use spate_wire::ErrorCode;
use tracing::{debug, info, warn};

use super::records::{self, OffsetKey, OffsetValue, RecordKey};
use super::state::{
    CommitKind, Group, GroupLimits, GroupSnapshot, GroupState, JoinRequest, JoinResponse,
    LeavingMember, Output, Reply, SyncRequest, SyncResponse,
};
use super::{partition_for, OFFSETS_TOPIC};
use crate::core::{now_ms, Core, Partition};

/// Largest metadata string of one committed offset (Kafka's offset.metadata.max.bytes).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Most committed partitions one group may hold.
pub const OFFSETS_PER_GROUP_MAX: usize = 100_000;
/// Bytes read at a time when rebuilding offsets at startup.
const LOAD_READ_BYTES: u64 = 1 << 20;
/// Decompression bound for batches of the offsets topic (someone may produce to it).
const LOAD_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;
/// How often the groups are ticked (session and rebalance deadlines).
pub const TICK: Duration = Duration::from_millis(100);

/// A committed offset and where its record sits in the offsets partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub value: OffsetValue,
    pub log_offset: Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Join,
    Sync,
}

#[derive(Debug)]
enum Parked {
    Join(JoinResponse),
    Sync(SyncResponse),
}

type WaiterKey = (String, String, Phase);
/// A group's committed offsets by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, i32), Committed>;

/// What one group looks like to DescribeGroups and the admin tool.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: String,
    pub error: ErrorCode,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: bytes::Bytes,
    pub assignment: bytes::Bytes,
}

/// Groups and committed offsets coordinated by one core.
pub struct Coordinator {
    limits: GroupLimits,
    groups_max: usize,
    started: Instant,
    groups: RefCell<HashMap<String, Group>>,
    offsets: RefCell<HashMap<String, GroupOffsets>>,
    waiters: RefCell<HashMap<WaiterKey, oneshot::Sender<Parked>>>,
    /// Set at shutdown: no call parks any more.
    stopping: std::cell::Cell<bool>,
    /// While loading: the latest group record of each group (`None`: deleted).
    restored: RefCell<HashMap<String, (Offset, Option<GroupSnapshot>)>>,
    /// Offsets committed in open transactions (TxnOffsetCommit), by offsets partition and
    /// producer: written to the log as the producer's transactional batches, applied when the
    /// transaction's COMMIT marker reaches that partition, dropped at its ABORT marker.
    txn_offsets: RefCell<HashMap<(i32, ProducerId), Vec<TxnOffset>>>,
}

/// A partition's answer to OffsetFetch: its committed offset (`Ok(None)`: none), or an error
/// (UNSTABLE_OFFSET_COMMIT).
pub type FetchedOffset = Result<Option<OffsetValue>, ErrorCode>;

/// Who commits offsets in a transaction (TxnOffsetCommit v3+, KIP-447; older versions send
/// generation -1 and no member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation_id: i32,
}

/// An offset committed in an open transaction: group, topic, partition, value, log offset.
type TxnOffset = (String, String, i32, OffsetValue, Offset);

/// Most offsets one producer may have pending in one offsets partition.
const TXN_OFFSETS_PER_PRODUCER_MAX: usize = 100_000;

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("groups", &self.groups.borrow().len())
            .finish()
    }
}

impl Coordinator {
    /// A coordinator with no groups.
    pub fn new(limits: GroupLimits, groups_max: usize) -> Coordinator {
        Coordinator {
            limits,
            groups_max,
            started: Instant::now(),
            groups: RefCell::new(HashMap::new()),
            offsets: RefCell::new(HashMap::new()),
            waiters: RefCell::new(HashMap::new()),
            restored: RefCell::new(HashMap::new()),
            stopping: std::cell::Cell::new(false),
            txn_offsets: RefCell::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn group_count(&self) -> usize {
        let groups = self.groups.borrow();
        let offsets = self.offsets.borrow();
        groups.len() + offsets.keys().filter(|g| !groups.contains_key(*g)).count()
    }

    /// Runs `f` on the group, creating it (Empty) if `create` and there is room.
    fn with_group<T>(
        &self,
        core: &Core,
        group_id: &str,
        create: bool,
        f: impl FnOnce(&mut Group) -> T,
    ) -> Result<T, ErrorCode> {
        if !self.groups.borrow().contains_key(group_id) {
            let has_offsets = self.offsets.borrow().contains_key(group_id);
            if !create && !has_offsets {
                return Err(ErrorCode::UnknownMemberId);
            }
            if !has_offsets && self.group_count() >= self.groups_max {
                warn!(limit = self.groups_max, "groups per core limit reached");
                return Err(ErrorCode::PolicyViolation);
            }
            self.groups
                .borrow_mut()
                .insert(group_id.to_owned(), Group::new(group_id, self.limits));
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups.get_mut(group_id).expect("inserted above");
        let result = f(group);
        let outputs = group.take_outputs();
        drop(groups);
        self.dispatch(core, group_id, outputs);
        Ok(result)
    }

    /// Hands answers to parked calls to their waiters (gone waiters are skipped: the client
    /// disconnected) and stores group snapshots.
    fn dispatch(&self, core: &Core, group_id: &str, outputs: Vec<Output>) {
        let mut waiters = self.waiters.borrow_mut();
        for output in outputs {
            let (key, parked) = match output {
                Output::Persist(snapshot) => {
                    persist_group(core, group_id, snapshot);
                    continue;
                }
                Output::Joined {
                    member_id,
                    response,
                } => (
                    (group_id.to_owned(), member_id, Phase::Join),
                    Parked::Join(response),
                ),
                Output::Synced {
                    member_id,
                    response,
                } => (
                    (group_id.to_owned(), member_id, Phase::Sync),
                    Parked::Sync(response),
                ),
            };
            if let Some(sender) = waiters.remove(&key) {
                let _ = sender.send(parked);
            }
        }
    }

    fn park(&self, group_id: &str, member_id: String, phase: Phase) -> oneshot::Receiver<Parked> {
        let (sender, receiver) = oneshot::channel();
        // The state machine answered any earlier call of this member and phase (superseded)
        // among the outputs dispatched before this, so nothing is replaced here.
        self.waiters
            .borrow_mut()
            .insert((group_id.to_owned(), member_id, phase), sender);
        receiver
    }

    /// Answers every parked call with NOT_COORDINATOR (shutdown).
    pub fn release_parked(&self) {
        self.stopping.set(true);
        let waiters: Vec<(WaiterKey, oneshot::Sender<Parked>)> =
            self.waiters.borrow_mut().drain().collect();
        for ((_, member_id, phase), sender) in waiters {
            let answer = match phase {
                Phase::Join => {
                    Parked::Join(JoinResponse::error(ErrorCode::NotCoordinator, &member_id))
                }
                Phase::Sync => Parked::Sync(SyncResponse::error(ErrorCode::NotCoordinator)),
            };
            let _ = sender.send(answer);
        }
    }

    /// JoinGroup.
    pub async fn join(&self, core: &Core, group_id: &str, request: JoinRequest) -> JoinResponse {
        let member_id = request.member_id.clone();
        if self.stopping.get() {
            return JoinResponse::error(ErrorCode::NotCoordinator, &member_id);
        }
        let now = self.now_ms();
        let reply = match self.with_group(core, group_id, true, |g| g.join(now, request)) {
            Ok(reply) => reply,
            Err(error) => return JoinResponse::error(error, &member_id),
        };
        match reply {
            Reply::Now(response) => response,
            Reply::Parked { member_id } => {
                let receiver = self.park(group_id, member_id.clone(), Phase::Join);
                match receiver.await {
                    Ok(Parked::Join(response)) => response,
                    _ => JoinResponse::error(ErrorCode::RebalanceInProgress, &member_id),
                }
            }
        }
    }

    /// SyncGroup.
    pub async fn sync(&self, core: &Core, group_id: &str, request: SyncRequest) -> SyncResponse {
        if self.stopping.get() {
            return SyncResponse::error(ErrorCode::NotCoordinator);
        }
        let now = self.now_ms();
        let reply = match self.with_group(core, group_id, false, |g| g.sync(now, request)) {
            Ok(reply) => reply,
            Err(error) => return SyncResponse::error(error),
        };
        match reply {
            Reply::Now(response) => response,
            Reply::Parked { member_id } => {
                let receiver = self.park(group_id, member_id, Phase::Sync);
                match receiver.await {
                    Ok(Parked::Sync(response)) => response,
                    _ => SyncResponse::error(ErrorCode::RebalanceInProgress),
                }
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        core: &Core,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> ErrorCode {
        let now = self.now_ms();
        self.with_group(core, group_id, false, |g| {
            g.heartbeat(now, member_id, instance_id, generation_id)
        })
        .unwrap_or_else(|e| e)
    }

    /// LeaveGroup: one error per member.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID for a group that does not exist: Kafka answers it for the whole
    /// request (`GroupMetadataManager.classicGroupLeave`), not per member.
    pub fn leave(
        &self,
        core: &Core,
        group_id: &str,
        members: &[LeavingMember],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let now = self.now_ms();
        self.with_group(core, group_id, false, |g| g.leave(now, members))
    }

    /// Expires sessions and ends rebalances whose deadline passed; forgets empty groups that
    /// have no committed offsets.
    pub fn tick(&self, core: &Core) {
        let now = self.now_ms();
        let ids: Vec<String> = self.groups.borrow().keys().cloned().collect();
        for id in ids {
            let _ = self.with_group(core, &id, false, |g| g.tick(now));
        }
        let offsets = self.offsets.borrow();
        self.groups.borrow_mut().retain(|id, g| {
            !(g.state() == GroupState::Empty && g.is_empty()) || offsets.contains_key(id)
        });
    }

    /// Every committed offset of every group this core coordinates, as (group, topic,
    /// partition, offset), for the metrics. Bounded by the group limits.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        self.offsets
            .borrow()
            .iter()
            .flat_map(|(group, offsets)| {
                offsets.iter().map(move |((topic, partition), committed)| {
                    (
                        group.clone(),
                        topic.clone(),
                        *partition,
                        committed.value.offset,
                    )
                })
            })
            .collect()
    }

    /// The committed offsets of a group: all of them (`None`) or the named partitions (absent
    /// ones as `None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<(String, i32, FetchedOffset)> {
        // KIP-447: with require_stable, a partition whose offsets an open transaction holds is
        // not answered with the offset the transaction is about to replace (a consumer taking
        // over would reprocess what the transaction already wrote): the client retries until
        // the transaction ends. Kafka's GroupMetadataManager.getOffsets.
        let pending: HashSet<(String, i32)> = if require_stable {
            self.txn_offsets
                .borrow()
                .values()
                .flatten()
                .filter(|(group, ..)| group == group_id)
                .map(|(_, topic, partition, ..)| (topic.clone(), *partition))
                .collect()
        } else {
            HashSet::new()
        };
        let answer = |topic: &str, partition: i32, value: Option<OffsetValue>| -> FetchedOffset {
            if pending.contains(&(topic.to_owned(), partition)) {
                Err(ErrorCode::UnstableOffsetCommit)
            } else {
                Ok(value)
            }
        };
        let offsets = self.offsets.borrow();
        let group = offsets.get(group_id);
        match partitions {
            None => group
                .map(|g| {
                    g.iter()
                        .map(|((t, p), c)| (t.clone(), *p, answer(t, *p, Some(c.value.clone()))))
                        .collect()
                })
                .unwrap_or_default(),
            Some(topics) => topics
                .into_iter()
                .flat_map(|(topic, indexes)| indexes.into_iter().map(move |p| (topic.clone(), p)))
                .map(|(topic, p)| {
                    let value = group
                        .and_then(|g| g.get(&(topic.clone(), p)))
                        .map(|c| c.value.clone());
                    let committed = answer(&topic, p, value);
                    (topic, p, committed)
                })
                .collect(),
        }
    }

    /// Whether this committer may commit offsets of `group_id` (`Group::validate_commit`);
    /// `standalone_allowed` lets a commit create the group's entry (no generation, no member).
    /// Without it, a group this coordinator does not know is ILLEGAL_GENERATION, as Kafka
    /// answers a commit with a generation for such a group.
    fn check_committer(
        &self,
        core: &Core,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        standalone_allowed: bool,
    ) -> Result<(), ErrorCode> {
        let checked = self.with_group(core, group_id, standalone_allowed, |g| {
            g.validate_commit(member_id, instance_id, generation_id)
        });
        match checked {
            Err(ErrorCode::UnknownMemberId) if !standalone_allowed => {
                Err(ErrorCode::IllegalGeneration)
            }
            Err(error) => Err(error),
            Ok(inner) => inner.map(|_: CommitKind| ()),
        }
    }

    /// OffsetCommit: checks the member, appends one batch with a record per partition to the
    /// group's offsets partition, waits until it is durable, then applies it. One error per
    /// partition, in order.
    pub async fn commit(
        &self,
        core: &Core,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        offsets: Vec<(String, i32, OffsetValue)>,
    ) -> Vec<ErrorCode> {
        let count = offsets.len();
        let standalone_allowed = generation_id < 0 && member_id.is_empty();
        // Members and standalone committers (admin tools) are stored alike.
        if let Err(error) = self.check_committer(
            core,
            group_id,
            member_id,
            instance_id,
            generation_id,
            standalone_allowed,
        ) {
            return vec![error; count];
        }
        let mut errors = vec![ErrorCode::None; count];
        let known = self.offsets.borrow().get(group_id).map_or(0, BTreeMap::len);
        if known + count > OFFSETS_PER_GROUP_MAX {
            return vec![ErrorCode::InvalidCommitOffsetSize; count];
        }
        let mut keep = Vec::with_capacity(count);
        for (i, (topic, partition, value)) in offsets.into_iter().enumerate() {
            if value.metadata.len() > OFFSET_METADATA_BYTES_MAX {
                errors[i] = ErrorCode::OffsetMetadataTooLarge;
            } else {
                keep.push((i, topic, partition, value));
            }
        }
        if keep.is_empty() {
            return errors;
        }
        let Some(log) = offsets_partition(core, group_id) else {
            return vec![ErrorCode::CoordinatorNotAvailable; count];
        };
        let batch = offsets_batch(
            group_id,
            BatchSpec {
                first_timestamp_ms: now_ms(),
                ..BatchSpec::default()
            },
            keep.iter()
                .map(|(_, topic, partition, value)| (topic, *partition, value)),
        );
        if batch.len() > log.settings().batch_bytes_max {
            return vec![ErrorCode::InvalidCommitOffsetSize; count];
        }
        let base = match append_durably(log, batch).await {
            Ok(base) => base,
            Err(error) => {
                for (i, ..) in &keep {
                    errors[*i] = error;
                }
                return errors;
            }
        };
        let mut all = self.offsets.borrow_mut();
        let group = all.entry(group_id.to_owned()).or_default();
        for (n, (_, topic, partition, value)) in keep.into_iter().enumerate() {
            let log_offset = Offset(base.0 + n as i64);
            apply(group, topic, partition, Some(value), log_offset);
        }
        errors
    }

    /// TxnOffsetCommit: appends the offsets as one transactional batch of `producer_id` at
    /// `epoch` (no sequence, as Kafka's coordinator writes them) to the group's offsets
    /// partition, waits until it is durable, and keeps them pending until the transaction's
    /// marker reaches that partition ([`Coordinator::complete_txn_offsets`]). The caller checked
    /// that the partition is in the producer's transaction. One error per partition, in order.
    pub async fn txn_commit(
        &self,
        core: &Core,
        group_id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        member: &CommitMember,
        offsets: Vec<(String, i32, OffsetValue)>,
    ) -> Vec<ErrorCode> {
        let count = offsets.len();
        if offsets
            .iter()
            .any(|(_, _, v)| v.metadata.len() > OFFSET_METADATA_BYTES_MAX)
        {
            return vec![ErrorCode::OffsetMetadataTooLarge; count];
        }
        // KIP-447: a consumer that names its membership must be a current member of this
        // generation (a zombie instance after a rebalance is refused), as an OffsetCommit's
        // is; without one (generation -1, no member) the commit is not checked, as Kafka's
        // validateOffsetCommit lets a transactional commit through.
        if member.generation_id >= 0 || !member.member_id.is_empty() || member.instance_id.is_some()
        {
            if let Err(error) = self.check_committer(
                core,
                group_id,
                &member.member_id,
                member.instance_id.as_deref(),
                member.generation_id,
                false,
            ) {
                return vec![error; count];
            }
        }
        let Some(log) = offsets_partition(core, group_id) else {
            return vec![ErrorCode::CoordinatorNotAvailable; count];
        };
        let partitions = core.topic(OFFSETS_TOPIC).map_or(1, |t| t.partitions);
        let index = partition_for(group_id, partitions);
        let pending = self
            .txn_offsets
            .borrow()
            .get(&(index, producer_id))
            .map_or(0, Vec::len);
        if count == 0 {
            return Vec::new();
        }
        if pending + count > TXN_OFFSETS_PER_PRODUCER_MAX {
            return vec![ErrorCode::InvalidCommitOffsetSize; count];
        }
        let mut batch = offsets_batch(
            group_id,
            BatchSpec {
                first_timestamp_ms: now_ms(),
                producer_id,
                producer_epoch: epoch,
                base_sequence: -1,
                ..BatchSpec::default()
            },
            offsets
                .iter()
                .map(|(topic, partition, value)| (topic, *partition, value)),
        );
        spate_wire::batch::set_transactional(&mut batch);
        if batch.len() > log.settings().batch_bytes_max {
            return vec![ErrorCode::InvalidCommitOffsetSize; count];
        }
        let base = match append_durably(log, batch).await {
            Ok(base) => base,
            Err(error) => return vec![error; count],
        };
        let mut all = self.txn_offsets.borrow_mut();
        let pending = all.entry((index, producer_id)).or_default();
        for (n, (topic, partition, value)) in offsets.into_iter().enumerate() {
            pending.push((
                group_id.to_owned(),
                topic,
                partition,
                value,
                Offset(base.0 + n as i64),
            ));
        }
        vec![ErrorCode::None; count]
    }

    /// A transaction marker of `producer_id` reached offsets partition `index`: its pending
    /// offsets there become committed (`commit`) or are dropped.
    pub fn complete_txn_offsets(&self, index: i32, producer_id: ProducerId, commit: bool) {
        let Some(pending) = self.txn_offsets.borrow_mut().remove(&(index, producer_id)) else {
            return;
        };
        if !commit {
            return;
        }
        let mut all = self.offsets.borrow_mut();
        for (group_id, topic, partition, value, log_offset) in pending {
            let group = all.entry(group_id).or_default();
            apply(group, topic, partition, Some(value), log_offset);
        }
    }

    /// Forgets the groups and committed offsets of offsets partition `index` (of `partitions`):
    /// another broker coordinates them now. Their parked calls are answered NOT_COORDINATOR.
    pub fn forget_partition(&self, index: i32, partitions: i32) {
        let mine = |group: &str| super::partition_for(group, partitions) == index;
        self.groups.borrow_mut().retain(|id, _| !mine(id));
        self.offsets.borrow_mut().retain(|id, _| !mine(id));
        self.restored.borrow_mut().retain(|id, _| !mine(id));
        self.txn_offsets
            .borrow_mut()
            .retain(|(i, _), _| *i != index);
        let parked: Vec<WaiterKey> = self
            .waiters
            .borrow()
            .keys()
            .filter(|(group, _, _)| mine(group))
            .cloned()
            .collect();
        for key in parked {
            if let Some(sender) = self.waiters.borrow_mut().remove(&key) {
                let answer = match key.2 {
                    Phase::Join => {
                        Parked::Join(JoinResponse::error(ErrorCode::NotCoordinator, &key.1))
                    }
                    Phase::Sync => Parked::Sync(SyncResponse::error(ErrorCode::NotCoordinator)),
                };
                let _ = sender.send(answer);
            }
        }
    }

    /// Rebuilds the groups and committed offsets of offsets partition `index` from its log:
    /// this broker has just become its leader (a coordinator moves with the partition's
    /// leadership, as in Kafka), and what it held before is stale.
    ///
    /// # Errors
    /// If the partition cannot be read.
    pub async fn reload_partition(&self, core: &Core, index: i32) -> anyhow::Result<()> {
        let Some(meta) = core.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        self.forget_partition(index, meta.partitions);
        let Some(partition) = core.partition(OFFSETS_TOPIC, index) else {
            return Ok(());
        };
        let started = Instant::now();
        let loaded = self.load_partition(&partition, index).await?;
        let now = self.now_ms();
        let restored: Vec<(String, GroupSnapshot)> = self
            .restored
            .borrow_mut()
            .drain()
            .filter_map(|(id, (_, snapshot))| snapshot.map(|s| (id, s)))
            .collect();
        let groups = restored.len();
        for (id, snapshot) in restored {
            let group = Group::restore(&id, self.limits, snapshot, now);
            self.groups.borrow_mut().insert(id, group);
        }
        // Fifty empty partitions led at once (a new cluster) are not fifty lines.
        if loaded > 0 {
            info!(
                core = core.id,
                partition = index,
                records = loaded,
                groups,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "offsets partition led here: its groups rebuilt from the log"
            );
        } else {
            debug!(
                core = core.id,
                partition = index,
                "offsets partition led here, empty"
            );
        }
        Ok(())
    }

    /// Rebuilds committed offsets from the offsets partitions this core owns.
    ///
    /// # Errors
    /// If a partition cannot be read.
    pub async fn load(&self, core: &Core) -> anyhow::Result<()> {
        let Some(meta) = core.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let started = Instant::now();
        let mut loaded = 0u64;
        for index in 0..meta.partitions {
            let Some(partition) = core.partition(OFFSETS_TOPIC, index) else {
                continue;
            };
            loaded += self.load_partition(&partition, index).await?;
        }
        let now = self.now_ms();
        let restored: Vec<(String, GroupSnapshot)> = self
            .restored
            .borrow_mut()
            .drain()
            .filter_map(|(id, (_, snapshot))| snapshot.map(|s| (id, s)))
            .collect();
        for (id, snapshot) in restored {
            let group = Group::restore(&id, self.limits, snapshot, now);
            self.groups.borrow_mut().insert(id, group);
        }
        let groups = self.offsets.borrow().len().max(self.groups.borrow().len());
        if loaded > 0 {
            info!(
                core = core.id,
                records = loaded,
                groups,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "committed offsets loaded"
            );
        }
        Ok(())
    }

    async fn load_partition(&self, partition: &Partition, index: i32) -> anyhow::Result<u64> {
        let log = &partition.log;
        let end = log.log_end_offset();
        let mut next = log.log_start_offset();
        let mut scratch = Vec::new();
        let mut count = 0u64;
        while next < end {
            let read = log.read(next, LOAD_READ_BYTES, ReadUpTo::LogEnd).await?;
            if read.chunks.is_empty() {
                break;
            }
            for chunk in read.chunks {
                let bytes = match chunk {
                    // Only at load, and the cache is empty right after recovery: a copy is fine.
                    ReadChunk::Memory(batch) => batch.to_bytes(),
                    ReadChunk::File(range) => range.load().await?,
                };
                for item in batches(&bytes) {
                    let (header, batch) = item?;
                    next = header.last_offset().next();
                    if header.is_control() {
                        // A transaction's marker: its offsets read before become committed or
                        // are dropped, as when the marker was first written.
                        let commit = spate_wire::batch::control_type(batch)
                            == Some(spate_wire::batch::ControlType::Commit);
                        self.complete_txn_offsets(index, header.producer_id, commit);
                        continue;
                    }
                    let transactional = header.is_transactional();
                    let (header, records) =
                        batch_records(batch, &mut scratch, LOAD_DECOMPRESSED_BYTES_MAX)?;
                    for record in records {
                        let record = record?;
                        let offset = Offset(header.base_offset.0 + i64::from(record.offset_delta));
                        count += 1;
                        if transactional {
                            self.load_txn_offset(
                                index,
                                header.producer_id,
                                record.key,
                                record.value,
                                offset,
                            );
                        } else {
                            let mut all = self.offsets.borrow_mut();
                            self.apply_record(&mut all, record.key, record.value, offset);
                        }
                    }
                }
            }
            next = next.max(read.next_offset);
        }
        Ok(count)
    }

    /// Loading: an offset committed in a transaction, pending until its marker is read (or
    /// written, if the transaction is still open).
    fn load_txn_offset(
        &self,
        index: i32,
        producer_id: ProducerId,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        offset: Offset,
    ) {
        let Some(Ok(Some(RecordKey::Offset(key)))) = key.map(records::decode_key) else {
            return;
        };
        let Some(Ok(value)) = value.map(records::decode_value) else {
            return;
        };
        self.txn_offsets
            .borrow_mut()
            .entry((index, producer_id))
            .or_default()
            .push((key.group, key.topic, key.partition, value, offset));
    }

    fn apply_record(
        &self,
        all: &mut HashMap<String, GroupOffsets>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        offset: Offset,
    ) {
        let Some(key) = key else { return };
        let key = match records::decode_key(key) {
            Ok(Some(RecordKey::Offset(key))) => key,
            Ok(Some(RecordKey::Group(group))) => {
                let snapshot = match value.map(records::decode_group_value).transpose() {
                    Ok(snapshot) => snapshot,
                    Err(e) => {
                        warn!(error = %e, %offset, "skipping unreadable group record");
                        return;
                    }
                };
                let mut restored = self.restored.borrow_mut();
                if restored.get(&group).is_none_or(|(at, _)| *at < offset) {
                    restored.insert(group, (offset, snapshot));
                }
                return;
            }
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, %offset, "skipping unreadable offsets record key");
                return;
            }
        };
        let value = match value.map(records::decode_value).transpose() {
            Ok(value) => value,
            Err(e) => {
                warn!(error = %e, %offset, "skipping unreadable offsets record value");
                return;
            }
        };
        let group = all.entry(key.group.clone()).or_default();
        apply(group, key.topic, key.partition, value, offset);
        if group.is_empty() {
            all.remove(&key.group);
        }
    }

    /// Every group this core coordinates: id, protocol type, state.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.groups.borrow();
        let mut out: Vec<(String, String, &'static str)> = groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type().unwrap_or("").to_owned(),
                    g.state().kafka_name(),
                )
            })
            .collect();
        for id in self.offsets.borrow().keys() {
            if !groups.contains_key(id) {
                out.push((id.clone(), String::new(), GroupState::Empty.kafka_name()));
            }
        }
        out
    }

    /// DescribeGroups for one group.
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let groups = self.groups.borrow();
        let mut description = GroupDescription {
            group: group_id.to_owned(),
            error: ErrorCode::None,
            state: GroupState::Dead.kafka_name(),
            protocol_type: String::new(),
            protocol_name: String::new(),
            members: Vec::new(),
        };
        match groups.get(group_id) {
            Some(g) => {
                description.state = g.state().kafka_name();
                description.protocol_type = g.protocol_type().unwrap_or("").to_owned();
                let protocol = g.protocol_name().unwrap_or("").to_owned();
                if g.state() == GroupState::Stable {
                    description.protocol_name = protocol.clone();
                }
                description.members = g
                    .members()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: m
                            .protocols
                            .iter()
                            .find(|p| p.name == protocol)
                            .map(|p| p.metadata.clone())
                            .unwrap_or_default(),
                        assignment: m.assignment.clone(),
                    })
                    .collect();
            }
            None if self.offsets.borrow().contains_key(group_id) => {
                description.state = GroupState::Empty.kafka_name();
            }
            None => {}
        }
        description
    }

    /// DeleteGroups for one group: only empty groups; their offsets are deleted durably
    /// (tombstones) first.
    pub async fn delete(&self, core: &Core, group_id: &str) -> ErrorCode {
        let known = self.groups.borrow().contains_key(group_id)
            || self.offsets.borrow().contains_key(group_id);
        if !known {
            return ErrorCode::GroupIdNotFound;
        }
        if let Some(group) = self.groups.borrow().get(group_id) {
            if !group.is_empty() {
                return ErrorCode::NonEmptyGroup;
            }
        }
        let partitions: Vec<(String, i32)> = self
            .offsets
            .borrow()
            .get(group_id)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        if let Err(error) = self.tombstone(core, group_id, &partitions).await {
            return error;
        }
        if self.groups.borrow().contains_key(group_id) {
            // Someone may have joined while the tombstones were written: then the group stays.
            match self.with_group(core, group_id, false, Group::delete) {
                Ok(Ok(())) => {
                    self.groups.borrow_mut().remove(group_id);
                }
                Ok(Err(error)) | Err(error) => return error,
            }
        } else {
            persist_group(core, group_id, None);
        }
        ErrorCode::None
    }

    /// OffsetDelete: removes committed offsets, except of topics a member of the group is
    /// subscribed to (GROUP_SUBSCRIBED_TO_TOPIC for those partitions, as in Kafka). One error
    /// per partition, or one for the whole request.
    pub async fn delete_offsets(
        &self,
        core: &Core,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let known = self.groups.borrow().contains_key(group_id)
            || self.offsets.borrow().contains_key(group_id);
        if !known {
            return Err(ErrorCode::GroupIdNotFound);
        }
        let subscribed: Vec<String> = match self.groups.borrow().get(group_id) {
            Some(g) if !g.is_empty() => {
                if g.protocol_type() != Some("consumer") {
                    return Err(ErrorCode::NonEmptyGroup);
                }
                let protocol = g.protocol_name().unwrap_or("");
                g.members()
                    .flat_map(|m| {
                        m.protocols
                            .iter()
                            .filter(|p| p.name == protocol)
                            .flat_map(|p| subscribed_topics(&p.metadata))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let mut errors = Vec::with_capacity(partitions.len());
        let mut delete = Vec::new();
        {
            let offsets = self.offsets.borrow();
            for key in &partitions {
                if subscribed.contains(&key.0) {
                    errors.push(ErrorCode::GroupSubscribedToTopic);
                    continue;
                }
                errors.push(ErrorCode::None);
                if offsets.get(group_id).is_some_and(|g| g.contains_key(key)) {
                    delete.push(key.clone());
                }
            }
        }
        self.tombstone(core, group_id, &delete).await?;
        Ok(errors)
    }

    /// Writes a tombstone per partition durably, then forgets those offsets.
    async fn tombstone(
        &self,
        core: &Core,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(), ErrorCode> {
        if partitions.is_empty() {
            return Ok(());
        }
        let log = offsets_partition(core, group_id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let mut batch = BytesMut::new();
        let mut key = BytesMut::new();
        let now = now_ms();
        let mut builder = BatchBuilder::new(
            &mut batch,
            BatchSpec {
                first_timestamp_ms: now,
                ..BatchSpec::default()
            },
        );
        for (topic, partition) in partitions {
            key.clear();
            records::encode_key(
                &OffsetKey {
                    group: group_id.to_owned(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                &mut key,
            );
            builder.push(now, Some(&key), None, &[]);
        }
        builder.finish();
        let base = append_durably(log, batch).await?;
        let mut all = self.offsets.borrow_mut();
        if let Some(group) = all.get_mut(group_id) {
            for (n, (topic, partition)) in partitions.iter().enumerate() {
                apply(
                    group,
                    topic.clone(),
                    *partition,
                    None,
                    Offset(base.0 + n as i64),
                );
            }
            if group.is_empty() {
                all.remove(group_id);
            }
        }
        Ok(())
    }
}

/// The topics of a consumer protocol subscription (`version: i16, topics: [string]`, the
/// same start in every version). Parsed here rather than with kafka-protocol's decoder because
/// that one sizes vectors from the count before reading: the metadata comes from clients.
fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let Some(count) = metadata.get(2..6) else {
        return topics;
    };
    let count = i32::from_be_bytes(count.try_into().expect("4 bytes"));
    let mut rest = &metadata[6..];
    for _ in 0..count.max(0) {
        let Some(len) = rest.get(..2) else { break };
        let len = i16::from_be_bytes(len.try_into().expect("2 bytes"));
        let Ok(len) = usize::try_from(len) else { break };
        let Some(name) = rest.get(2..2 + len) else {
            break;
        };
        if let Ok(name) = std::str::from_utf8(name) {
            topics.push(name.to_owned());
        }
        rest = &rest[2 + len..];
    }
    topics
}

/// Applies one offsets record unless a later record of the same key was applied already.
fn apply(
    group: &mut GroupOffsets,
    topic: String,
    partition: i32,
    value: Option<OffsetValue>,
    log_offset: Offset,
) {
    let key = (topic, partition);
    if group.get(&key).is_some_and(|c| c.log_offset > log_offset) {
        return;
    }
    match value {
        Some(value) => {
            group.insert(key, Committed { value, log_offset });
        }
        None => {
            group.remove(&key);
        }
    }
}

fn offsets_partition(core: &Core, group_id: &str) -> Option<Rc<Partition>> {
    let partitions = core.topic(OFFSETS_TOPIC)?.partitions;
    core.partition(OFFSETS_TOPIC, partition_for(group_id, partitions))
}

/// Appends one batch and waits until it is committed (durable on a single broker; in a
/// cluster, in every in-sync replica of the offsets partition, as Kafka writes offsets with
/// acks=all); the base offset.
pub(crate) async fn append_durably(
    partition: Rc<Partition>,
    batch: BytesMut,
) -> Result<Offset, ErrorCode> {
    if partition.replica.is_some() {
        return partition
            .append_internal(batch.freeze(), COMMIT_TIMEOUT_MS)
            .await
            .map_err(|e| {
                warn!(error = %e, "appending to the offsets topic");
                ErrorCode::CoordinatorNotAvailable
            });
    }
    let info = match partition.log.append(batch, partition.leader_epoch()).await {
        Ok(info) => info,
        Err(e) => {
            warn!(error = %e, "appending to the offsets topic");
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
    };
    // Its own task: the log's write-out must not be cancelled by a client hanging up.
    let waiter = partition.clone();
    let last = info.last_offset;
    let durable =
        glommio::spawn_local(async move { waiter.log.wait_durable(last.next()).await }).await;
    partition.notify_if_advanced();
    match durable {
        Ok(()) => Ok(info.base_offset),
        Err(e) => {
            warn!(error = %e, "syncing the offsets topic");
            Err(ErrorCode::CoordinatorNotAvailable)
        }
    }
}

/// How long an offsets-topic write waits for its in-sync replicas (Kafka's
/// offsets.commit.timeout.ms default).
const COMMIT_TIMEOUT_MS: u64 = 5_000;

/// Stores a group's snapshot (or its deletion) in its offsets partition, in the background:
/// answers to members do not wait for it. If it is lost in a crash, the restarted coordinator
/// resumes from an older generation and members rejoin (UNKNOWN_MEMBER_ID or
/// ILLEGAL_GENERATION), which costs a rebalance, not data.
fn persist_group(core: &Core, group_id: &str, snapshot: Option<GroupSnapshot>) {
    let Some(partition) = offsets_partition(core, group_id) else {
        return;
    };
    let mut batch = BytesMut::new();
    let mut key = BytesMut::new();
    let mut value = BytesMut::new();
    records::encode_group_key(group_id, &mut key);
    let now = now_ms();
    if let Some(snapshot) = &snapshot {
        records::encode_group_value(snapshot, now, &mut value);
    }
    let mut builder = BatchBuilder::new(
        &mut batch,
        BatchSpec {
            first_timestamp_ms: now,
            ..BatchSpec::default()
        },
    );
    builder.push(now, Some(&key), snapshot.as_ref().map(|_| &value[..]), &[]);
    builder.finish();
    if batch.len() > partition.settings().batch_bytes_max {
        warn!(
            group = group_id,
            bytes = batch.len(),
            "group snapshot too large to store"
        );
        return;
    }
    glommio::spawn_local(async move {
        let _ = append_durably(partition, batch).await;
    })
    .detach();
}

/// Ticks this core's groups until shutdown, then answers every parked call with
/// NOT_COORDINATOR so the connections waiting in JoinGroup or SyncGroup can drain (clients
/// look for the coordinator again, as after a Kafka broker stops).
pub async fn tick_loop(core: Rc<Core>, shutdown: std::sync::Arc<crate::runtime::ShutdownFlag>) {
    while !shutdown.is_triggered() {
        glommio::timer::sleep(TICK).await;
        core.groups.tick(&core);
    }
    core.groups.release_parked();
}

/// One batch with a record per committed offset of `group_id` (key and value in
/// `__consumer_offsets`' layout), under `spec`: what OffsetCommit and TxnOffsetCommit append.
fn offsets_batch<'a>(
    group_id: &str,
    spec: BatchSpec,
    offsets: impl Iterator<Item = (&'a String, i32, &'a OffsetValue)>,
) -> BytesMut {
    let mut batch = BytesMut::new();
    let mut key = BytesMut::new();
    let mut value_bytes = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut batch, spec);
    for (topic, partition, value) in offsets {
        key.clear();
        value_bytes.clear();
        records::encode_key(
            &OffsetKey {
                group: group_id.to_owned(),
                topic: topic.clone(),
                partition,
            },
            &mut key,
        );
        records::encode_value(value, &mut value_bytes);
        builder.push(
            value.commit_timestamp_ms,
            Some(&key),
            Some(&value_bytes),
            &[],
        );
    }
    builder.finish();
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_name_their_topics_and_garbage_names_none() {
        let mut meta = vec![
            0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(subscribed_topics(&meta), vec!["a", "bc"]);
        // A count far beyond the bytes stops at the bytes.
        meta[2..6].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(subscribed_topics(&meta), vec!["a", "bc"]);
        assert!(subscribed_topics(&[0, 1]).is_empty());
    }
}
