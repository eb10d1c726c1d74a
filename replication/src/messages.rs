//! What the core reads from and writes to the outside: the controller's view of a partition, the
//! follower fetch protocol and AlterPartition. Plain data: encoding them on the wire is `spate-wire`'s
//! job (a later change), the transport is the broker's.

use crate::ids::{CorrelationId, LeaderEpoch, NodeId, Offset, PartitionEpoch};

/// Replicas per partition at most; Kafka has no hard limit, but a replication factor above this is
/// a configuration error, and bounding it bounds every per-replica map in the core.
pub const REPLICAS_MAX: usize = 16;

/// The controller's view of one partition, as its metadata image says (Kafka's `PartitionRecord` /
/// `PartitionChangeRecord` applied). Only the controller changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// All replicas, in assignment order.
    pub replicas: Vec<NodeId>,
    /// The leader, `None` when the partition is offline (no ISR member is alive).
    pub leader: Option<NodeId>,
    /// Bumped by the controller on every leader change.
    pub leader_epoch: LeaderEpoch,
    /// Bumped by the controller on every change of this state.
    pub partition_epoch: PartitionEpoch,
    /// The in-sync replicas: the only candidates for leadership (no unclean election).
    pub isr: Vec<NodeId>,
}

impl PartitionState {
    /// Checks the rules a controller's state always meets.
    ///
    /// # Errors
    /// [`crate::ReplicationError::InvalidPartitionState`] naming the broken rule.
    pub fn validate(&self) -> Result<(), crate::ReplicationError> {
        let bad = |reason| Err(crate::ReplicationError::InvalidPartitionState { reason });
        if self.replicas.is_empty() || self.replicas.len() > REPLICAS_MAX {
            return bad("replica count out of range");
        }
        let mut sorted = self.replicas.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.replicas.len() {
            return bad("duplicate replica");
        }
        if self.isr.iter().any(|r| !self.replicas.contains(r)) {
            return bad("isr member outside the replicas");
        }
        let mut isr = self.isr.clone();
        isr.sort();
        isr.dedup();
        if isr.len() != self.isr.len() {
            return bad("duplicate isr member");
        }
        if let Some(leader) = self.leader {
            if !self.isr.contains(&leader) {
                return bad("leader outside the isr");
            }
        }
        if self.leader_epoch.0 < 0 || self.partition_epoch.0 < 0 {
            return bad("negative epoch");
        }
        Ok(())
    }
}

/// What the core needs to know of a record batch: where it sits and which leader epoch wrote it. The
/// broker implements it for its checked batch bytes; the simulator for its in-memory entries.
pub trait Batch {
    /// The offset of the batch's first record.
    fn base_offset(&self) -> Offset;
    /// The offset of the batch's last record (`base_offset` for a one-record batch).
    fn last_offset(&self) -> Offset;
    /// The epoch of the leader that first appended it (the batch header's `partitionLeaderEpoch`).
    fn epoch(&self) -> LeaderEpoch;
}

/// A follower's fetch, sent to the leader it believes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The fetching follower.
    pub replica: NodeId,
    /// Matches the response to this request.
    pub correlation: CorrelationId,
    /// The leader epoch the follower believes current (KIP-320's `currentLeaderEpoch`).
    pub current_leader_epoch: LeaderEpoch,
    /// The follower's log end: where it wants records from. It also tells the leader "I have
    /// everything below this", which is why it only counts once the divergence check passed.
    pub fetch_offset: Offset,
    /// The epoch of the follower's last batch (KIP-320's `lastFetchedEpoch`), `None` for an empty log.
    pub last_fetched_epoch: Option<LeaderEpoch>,
    /// The follower's durable end (everything below it is fsynced). Not in Kafka's protocol: Spate's
    /// leader counts it instead of `fetch_offset` under [`crate::AckDurability::ReplicatedAndFlushed`].
    pub durable_end_offset: Offset,
}

/// The leader's answer to a fetch, without the record bytes: the core never reads the log. The
/// broker reads the batches from `Records::from` onwards and sends them with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Records from `from` (the fetch offset) on; possibly none.
    Records {
        /// Where the batches start.
        from: Offset,
        /// The leader's high watermark after counting this fetch.
        high_watermark: Offset,
    },
    /// The follower's log diverges from the leader's (KIP-320): the largest leader epoch at or below
    /// the follower's last fetched epoch, and where that epoch ends on the leader.
    Diverging {
        /// The epoch.
        epoch: LeaderEpoch,
        /// The end offset of `epoch` on the leader.
        end_offset: Offset,
        /// The leader's high watermark.
        high_watermark: Offset,
    },
    /// The follower's fetch offset is below the leader's log start (retention or DeleteRecords
    /// removed those records, say while the follower was down): it empties its log and starts
    /// it at `log_start` (Kafka's OFFSET_OUT_OF_RANGE answer and `truncateFullyAndStartAt`).
    BelowLogStart {
        /// The leader's log start.
        log_start: Offset,
        /// The leader's high watermark.
        high_watermark: Offset,
    },
    /// Refused.
    Error(FetchError),
}

use crate::error::FetchError;

/// A fetch response as the follower receives it: the leader's answer and, for `Records`, the batches
/// read from its log (contiguous, starting at `from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse<B> {
    /// The leader that answered.
    pub leader: NodeId,
    /// The request this answers.
    pub correlation: CorrelationId,
    /// What the leader decided.
    pub answer: FetchAnswer,
    /// The batches, empty unless `answer` is `Records`.
    pub batches: Vec<B>,
}

/// A leader's AlterPartition request to the controller (KIP-497): replace the ISR, given the state
/// it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    /// The proposing leader.
    pub leader: NodeId,
    /// Its leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the proposal is based on; the controller refuses any other.
    pub partition_epoch: PartitionEpoch,
    /// The proposed ISR.
    pub new_isr: Vec<NodeId>,
}

/// The controller's answer: the new state, or why not.
pub type AlterPartitionResponse = Result<PartitionState, crate::error::AlterPartitionError>;
