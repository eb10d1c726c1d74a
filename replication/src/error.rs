//! Errors: the crate's one `thiserror` enum for refused inputs, and the Kafka-facing outcomes the core
//! hands back in its actions (each knows its Kafka error code, so the broker maps them in one place).

use thiserror::Error;

/// An input the core refused: bad configuration or recovered state, or a message that breaks the
/// protocol. Operating errors: the caller logs them and carries on; the core's state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplicationError {
    /// The recovered epoch history is not ordered.
    #[error("invalid epoch history")]
    InvalidEpochHistory,
    /// The configuration breaks a rule.
    #[error("invalid config: {reason}")]
    InvalidConfig {
        /// Which rule.
        reason: &'static str,
    },
    /// The recovered log positions do not fit together (durable or high watermark past the end).
    #[error("invalid log state: {reason}")]
    InvalidLogState {
        /// Which rule.
        reason: &'static str,
    },
    /// Metadata that does not describe a valid partition (leader or ISR outside the replicas...).
    #[error("invalid partition state: {reason}")]
    InvalidPartitionState {
        /// Which rule.
        reason: &'static str,
    },
    /// A fetch response whose batches do not continue the log at its end, or go back in epoch.
    #[error("fetch response does not continue the log at {log_end}: {reason}")]
    NonContiguousBatches {
        /// The follower's log end.
        log_end: i64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A leader append that moves the log end backwards or past what a leader can write.
    #[error("invalid leader append: {reason}")]
    InvalidAppend {
        /// What was wrong.
        reason: &'static str,
    },
}

/// Why a produce is refused before anything is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProduceRefusal {
    /// This replica is not the partition's leader (Kafka `NOT_LEADER_OR_FOLLOWER`, 6).
    #[error("not the leader")]
    NotLeaderOrFollower,
    /// acks=all and the ISR is smaller than `min.insync.replicas` (Kafka `NOT_ENOUGH_REPLICAS`, 19).
    #[error("not enough in-sync replicas")]
    NotEnoughReplicas,
    /// The acks=all waiters are at their limit. Kafka has no such limit (its purgatory is unbounded);
    /// answered as `REQUEST_TIMED_OUT` (7), which producers retry, and nothing was appended.
    #[error("too many acks=all waiters")]
    WaitersFull,
}

impl ProduceRefusal {
    /// The Kafka error code to answer with.
    pub fn kafka_code(self) -> i16 {
        match self {
            Self::NotLeaderOrFollower => 6,
            Self::NotEnoughReplicas => 19,
            Self::WaitersFull => 7,
        }
    }
}

/// How an acks=all waiter ended when not with success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AckError {
    /// Leadership moved before the high watermark passed the batch (`NOT_LEADER_OR_FOLLOWER`, 6).
    #[error("leadership lost")]
    NotLeaderOrFollower,
    /// The high watermark passed the batch but the ISR had shrunk below `min.insync.replicas`
    /// (`NOT_ENOUGH_REPLICAS_AFTER_APPEND`, 20), as Kafka's `checkEnoughReplicasReachOffset`.
    #[error("not enough in-sync replicas after append")]
    NotEnoughReplicasAfterAppend,
    /// The produce's timeout passed first (`REQUEST_TIMED_OUT`, 7: Kafka's `DelayedProduce` presets
    /// this error and clears it only when the acks arrive).
    #[error("request timed out")]
    RequestTimedOut,
}

impl AckError {
    /// The Kafka error code to answer with.
    pub fn kafka_code(self) -> i16 {
        match self {
            Self::NotLeaderOrFollower => 6,
            Self::NotEnoughReplicasAfterAppend => 20,
            Self::RequestTimedOut => 7,
        }
    }
}

/// A leader's refusal of a follower's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FetchError {
    /// The receiver is not the leader (`NOT_LEADER_OR_FOLLOWER`, 6).
    #[error("not the leader")]
    NotLeaderOrFollower,
    /// The fetch carries an older leader epoch than the leader's (`FENCED_LEADER_EPOCH`, 74): the
    /// follower must learn newer metadata first.
    #[error("fenced leader epoch")]
    FencedLeaderEpoch,
    /// The fetch carries a newer leader epoch than the leader's (`UNKNOWN_LEADER_EPOCH`, 75): the
    /// leader has not learned it yet; retry.
    #[error("unknown leader epoch")]
    UnknownLeaderEpoch,
    /// The fetching node is not one of the partition's replicas (`REPLICA_NOT_AVAILABLE`, 9).
    #[error("not a replica")]
    NotAReplica,
    /// The fetch offset is past the leader's log end (`OFFSET_OUT_OF_RANGE`, 1).
    #[error("offset out of range")]
    OffsetOutOfRange,
}

impl FetchError {
    /// The Kafka error code to answer with.
    pub fn kafka_code(self) -> i16 {
        match self {
            Self::NotLeaderOrFollower => 6,
            Self::FencedLeaderEpoch => 74,
            Self::UnknownLeaderEpoch => 75,
            Self::NotAReplica => 9,
            Self::OffsetOutOfRange => 1,
        }
    }
}

/// The controller's refusal of an AlterPartition (KIP-497).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AlterPartitionError {
    /// The request's partition epoch is not the current one (`INVALID_UPDATE_VERSION`, 95). The
    /// request may or may not have been applied earlier (a retry), so the leader keeps its pending
    /// state and waits for metadata, as Kafka does.
    #[error("invalid update version")]
    InvalidUpdateVersion,
    /// The request's leader epoch is stale (`FENCED_LEADER_EPOCH`, 74); new metadata is coming.
    #[error("fenced leader epoch")]
    FencedLeaderEpoch,
    /// A replica proposed into the ISR is fenced or shutting down (`INELIGIBLE_REPLICA`, 107). The
    /// controller says the epoch was current and nothing was applied, so the leader may revert.
    #[error("ineligible replica")]
    IneligibleReplica,
    /// Not applied, epoch current (`OPERATION_NOT_ATTEMPTED`, 55): revert and retry later.
    #[error("operation not attempted")]
    OperationNotAttempted,
}
