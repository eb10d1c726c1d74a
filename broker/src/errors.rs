//! Every domain error of the layers below, and of the broker's own checks, becomes a Kafka
//! error code here and nowhere else: handlers ask [`KafkaCode::kafka_code`] instead of
//! matching on another crate's errors.
//!
//! Why one place: the same storage failure reached clients as different codes depending on
//! which handler saw it, and a new error variant silently fell into whatever `_` arm each
//! handler had. A table in one file is reviewed once, and its test pins the mapping.

use spate_controller::controller::{AlterPartitionError, ControllerError, ElectionResult};
use spate_storage::producer_state::ProducerError;
use spate_storage::StorageError;
use spate_wire::batch::BatchError;
use spate_wire::ErrorCode;

use crate::cluster::rpc::IsrChangeRefused;
use crate::metadata::alter::AlterError;
use crate::metadata::producer_ids::AllocError;
use crate::metadata::topics::TopicError;
use crate::partition::ProduceRefused;

/// An error a Kafka client can be told about, by code.
pub trait KafkaCode {
    /// The code sent to the client.
    fn kafka_code(&self) -> ErrorCode;
}

impl KafkaCode for BatchError {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            // Not a v2 batch (message formats v0/v1): Kafka's ProduceRequest.validateRecords
            // answers INVALID_RECORD: the bytes are whole, in a format Produce v3+ refuses.
            BatchError::BadMagic(_) => ErrorCode::InvalidRecord,
            _ => ErrorCode::CorruptMessage,
        }
    }
}

impl KafkaCode for ProducerError {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            ProducerError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            ProducerError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
            ProducerError::InvalidSequence { .. } => ErrorCode::InvalidRecord,
            // Not retriable: a new producer waits for idle ones to expire, which takes hours.
            ProducerError::TooManyProducers { .. } => ErrorCode::PolicyViolation,
        }
    }
}

impl KafkaCode for StorageError {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            StorageError::InvalidBatch(_) => ErrorCode::CorruptMessage,
            // Bytes on this broker's disk went bad: the client's request was fine, and it
            // retries (after a metadata refresh), as for any storage error.
            StorageError::CorruptBatch { .. } | StorageError::CorruptRecords { .. } => {
                ErrorCode::KafkaStorageError
            }
            StorageError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            StorageError::Producer(error) => error.kafka_code(),
            // Kafka's answer to a transactional batch outside its producer's transaction.
            StorageError::NoOngoingTransaction { .. } => ErrorCode::InvalidTxnState,
            // Disk full, I/O errors, a fenced log: the client retries, and an operator looks.
            _ => ErrorCode::KafkaStorageError,
        }
    }
}

impl KafkaCode for TopicError {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            TopicError::InvalidName { .. } => ErrorCode::InvalidTopicException,
            TopicError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => ErrorCode::InvalidReplicationFactor,
            TopicError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        }
    }
}

impl KafkaCode for AlterError {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            AlterError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            AlterError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        }
    }
}

impl KafkaCode for AllocError {
    fn kafka_code(&self) -> ErrorCode {
        // The block file could not be read or written, or ids ran out: nothing the client
        // did wrong, and not something a retry a moment later is sure to fix.
        ErrorCode::KafkaStorageError
    }
}

impl KafkaCode for ControllerError {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            ControllerError::NotController { .. } => ErrorCode::NotController,
            ControllerError::TopicAlreadyExists { .. } => ErrorCode::TopicAlreadyExists,
            ControllerError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
            ControllerError::InvalidReplicaAssignment { .. } => ErrorCode::InvalidReplicaAssignment,
            ControllerError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
            ControllerError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
            ControllerError::InvalidTopicName { .. }
            | ControllerError::TopicNameCollides { .. } => ErrorCode::InvalidTopicException,
            ControllerError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            ControllerError::InvalidRegistration { .. } => ErrorCode::InvalidRequest,
            ControllerError::StaleBroker { .. } => ErrorCode::StaleBrokerEpoch,
            ControllerError::BrokerNotRegistered { .. } => ErrorCode::BrokerIdNotRegistered,
            ControllerError::UnknownPartition { .. } => ErrorCode::UnknownTopicOrPartition,
            ControllerError::NoReassignmentInProgress => ErrorCode::NoReassignmentInProgress,
            ControllerError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
        }
    }
}

impl KafkaCode for AlterPartitionError {
    fn kafka_code(&self) -> ErrorCode {
        // Each variant's doc names its code: the ones Kafka's controller gives a leader, which
        // the leader's replication core acts on (retry, revert, or wait for metadata).
        match self {
            AlterPartitionError::StaleBroker { .. } => ErrorCode::StaleBrokerEpoch,
            AlterPartitionError::UnknownPartition { .. } => ErrorCode::UnknownTopicOrPartition,
            AlterPartitionError::EpochsAhead { .. } => ErrorCode::NotController,
            AlterPartitionError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            AlterPartitionError::NotLeader { .. } | AlterPartitionError::InvalidIsr { .. } => {
                ErrorCode::InvalidRequest
            }
            AlterPartitionError::InvalidUpdateVersion { .. } => ErrorCode::InvalidUpdateVersion,
            AlterPartitionError::IneligibleReplica { .. } => ErrorCode::IneligibleReplica,
        }
    }
}

impl KafkaCode for spate_replication::ProduceRefusal {
    fn kafka_code(&self) -> ErrorCode {
        use spate_replication::ProduceRefusal as R;
        match self {
            R::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
            R::NotEnoughReplicas => ErrorCode::NotEnoughReplicas,
            // Too many acks=all produces wait on this partition: the client retries later.
            R::WaitersFull => ErrorCode::RequestTimedOut,
        }
    }
}

impl KafkaCode for spate_replication::AckError {
    fn kafka_code(&self) -> ErrorCode {
        use spate_replication::AckError as A;
        match self {
            A::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
            A::NotEnoughReplicasAfterAppend => ErrorCode::NotEnoughReplicasAfterAppend,
            A::RequestTimedOut => ErrorCode::RequestTimedOut,
        }
    }
}

impl KafkaCode for spate_replication::FetchError {
    fn kafka_code(&self) -> ErrorCode {
        use spate_replication::FetchError as F;
        match self {
            F::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
            F::FencedLeaderEpoch => ErrorCode::FencedLeaderEpoch,
            F::UnknownLeaderEpoch => ErrorCode::UnknownLeaderEpoch,
            F::NotAReplica => ErrorCode::ReplicaNotAvailable,
            F::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
        }
    }
}

/// A leader's fetch error as the follower's replica takes it back.
pub fn fetch_error_of(code: ErrorCode) -> spate_replication::FetchError {
    use spate_replication::FetchError as F;
    match code {
        ErrorCode::FencedLeaderEpoch => F::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch => F::UnknownLeaderEpoch,
        ErrorCode::ReplicaNotAvailable => F::NotAReplica,
        ErrorCode::OffsetOutOfRange => F::OffsetOutOfRange,
        _ => F::NotLeaderOrFollower,
    }
}

impl KafkaCode for IsrChangeRefused {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            IsrChangeRefused::UnknownTopicId => ErrorCode::UnknownTopicId,
            IsrChangeRefused::NamedTwice => ErrorCode::InvalidRequest,
            IsrChangeRefused::Controller(error) => error.kafka_code(),
        }
    }
}

impl KafkaCode for ElectionResult {
    fn kafka_code(&self) -> ErrorCode {
        // ELECTION_NOT_NEEDED, not NONE: Kafka's controller answers it for a partition named in
        // the request whose preferred replica leads already.
        match self {
            ElectionResult::Elected => ErrorCode::None,
            ElectionResult::NotNeeded => ErrorCode::ElectionNotNeeded,
            ElectionResult::PreferredLeaderNotAvailable => ErrorCode::PreferredLeaderNotAvailable,
            ElectionResult::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        }
    }
}

impl KafkaCode for spate_txn::state::TxnError {
    fn kafka_code(&self) -> ErrorCode {
        use spate_txn::state::TxnError;
        match self {
            TxnError::ConcurrentTransactions => ErrorCode::ConcurrentTransactions,
            TxnError::ProducerFenced => ErrorCode::ProducerFenced,
            TxnError::InvalidProducerIdMapping => ErrorCode::InvalidProducerIdMapping,
            TxnError::InvalidTxnState(_) => ErrorCode::InvalidTxnState,
            TxnError::InvalidTransactionTimeout(_) => ErrorCode::InvalidTransactionTimeout,
            TxnError::EmptyTransactionalId => ErrorCode::InvalidRequest,
            // Retriable: the client waits and tries again.
            TxnError::Bound(_) | TxnError::AppendFailed => ErrorCode::CoordinatorNotAvailable,
        }
    }
}

/// PRODUCER_FENCED as a request of `version` may receive it: KIP-588 added it to
/// InitProducerId v4, AddPartitionsToTxn v2, AddOffsetsToTxn v2, EndTxn v2 and TxnOffsetCommit
/// v3 (`since`); older versions get INVALID_PRODUCER_EPOCH, as Kafka answers them.
pub fn fenced_for_version(error: ErrorCode, version: i16, since: i16) -> ErrorCode {
    if error == ErrorCode::ProducerFenced && version < since {
        ErrorCode::InvalidProducerEpoch
    } else {
        error
    }
}

/// The error code of a transaction coordinator's answer (`None` on success).
pub fn txn_answer_code(answer: &crate::txn::TxnAnswer) -> ErrorCode {
    use spate_txn::state::Answer;
    match answer {
        crate::txn::TxnAnswer::Answer(Answer::Error(error)) => error.kafka_code(),
        crate::txn::TxnAnswer::Answer(_)
        | crate::txn::TxnAnswer::Verified(_)
        | crate::txn::TxnAnswer::Listed(_)
        | crate::txn::TxnAnswer::Described(_) => ErrorCode::None,
        crate::txn::TxnAnswer::Failed(error) => *error,
    }
}

impl KafkaCode for ProduceRefused {
    fn kafka_code(&self) -> ErrorCode {
        match self {
            ProduceRefused::Batch(error) => error.kafka_code(),
            ProduceRefused::BadRecords(_) => ErrorCode::CorruptMessage,
            ProduceRefused::TooLarge { .. } => ErrorCode::MessageTooLarge,
            ProduceRefused::RecordCount { .. }
            | ProduceRefused::ControlBatch
            | ProduceRefused::TransactionalWithoutSequence
            | ProduceRefused::KeylessRecords(_)
            // Kafka's ProduceRequest.validateRecords: not exactly one batch is INVALID_RECORD.
            | ProduceRefused::NoBatch
            | ProduceRefused::SeveralBatches => ErrorCode::InvalidRecord,
            ProduceRefused::InternalTopic => ErrorCode::InvalidTopicException,
            ProduceRefused::NotInTransaction => ErrorCode::InvalidTxnState,
            ProduceRefused::Unverifiable(code) => *code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_wire::types::{Offset, ProducerEpoch, ProducerId};

    #[test]
    fn storage_errors_map_to_the_codes_clients_act_on() {
        let cases: Vec<(StorageError, ErrorCode)> = vec![
            (
                StorageError::InvalidBatch(BatchError::BadMagic(1)),
                ErrorCode::CorruptMessage,
            ),
            (
                StorageError::BatchTooLarge {
                    bytes: 2,
                    bytes_max: 1,
                },
                ErrorCode::MessageTooLarge,
            ),
            (
                StorageError::OffsetOutOfRange {
                    offset: Offset(9),
                    start: Offset(0),
                    end: Offset(1),
                },
                ErrorCode::OffsetOutOfRange,
            ),
            (StorageError::Fenced, ErrorCode::KafkaStorageError),
            (
                StorageError::NoOngoingTransaction {
                    producer_id: 1,
                    epoch: 0,
                },
                ErrorCode::InvalidTxnState,
            ),
            (
                StorageError::DiskFull {
                    op: "appending",
                    path: "x".into(),
                },
                ErrorCode::KafkaStorageError,
            ),
            (
                StorageError::Producer(ProducerError::InvalidProducerEpoch {
                    producer_id: ProducerId(7),
                    epoch: ProducerEpoch(1),
                    current: ProducerEpoch(2),
                }),
                ErrorCode::InvalidProducerEpoch,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.kafka_code(), code, "{error}");
        }
    }

    #[test]
    fn alter_partition_refusals_map_to_the_codes_their_docs_name() {
        use spate_controller::controller::Ineligible;
        use spate_controller::ids::{
            Incarnation, LeaderEpoch, NodeId, PartitionEpoch, PartitionIndex, TopicId,
        };
        let cases = [
            (
                AlterPartitionError::StaleBroker {
                    node: NodeId(1),
                    incarnation: Incarnation(1),
                },
                ErrorCode::StaleBrokerEpoch,
            ),
            (
                AlterPartitionError::UnknownPartition {
                    topic_id: TopicId([1; 16]),
                    index: PartitionIndex(3),
                },
                ErrorCode::UnknownTopicOrPartition,
            ),
            (
                AlterPartitionError::EpochsAhead {
                    leader_epoch: LeaderEpoch(2),
                    partition_epoch: PartitionEpoch(2),
                },
                ErrorCode::NotController,
            ),
            (
                AlterPartitionError::FencedLeaderEpoch {
                    sent: LeaderEpoch(1),
                    current: LeaderEpoch(2),
                },
                ErrorCode::FencedLeaderEpoch,
            ),
            (
                AlterPartitionError::NotLeader {
                    node: NodeId(1),
                    leader: None,
                },
                ErrorCode::InvalidRequest,
            ),
            (
                AlterPartitionError::InvalidUpdateVersion {
                    sent: PartitionEpoch(1),
                    current: PartitionEpoch(2),
                },
                ErrorCode::InvalidUpdateVersion,
            ),
            (
                AlterPartitionError::InvalidIsr {
                    reason: "duplicate member",
                },
                ErrorCode::InvalidRequest,
            ),
            (
                AlterPartitionError::IneligibleReplica {
                    node: NodeId(2),
                    why: Ineligible::Fenced,
                },
                ErrorCode::IneligibleReplica,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.kafka_code(), code, "{error}");
            assert_eq!(IsrChangeRefused::Controller(error).kafka_code(), code);
        }
        assert_eq!(
            IsrChangeRefused::UnknownTopicId.kafka_code(),
            ErrorCode::UnknownTopicId
        );
        assert_eq!(
            IsrChangeRefused::NamedTwice.kafka_code(),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn refused_produce_batches_map_to_kafkas_codes() {
        assert_eq!(
            ProduceRefused::ControlBatch.kafka_code(),
            ErrorCode::InvalidRecord
        );
        assert_eq!(
            ProduceRefused::InternalTopic.kafka_code(),
            ErrorCode::InvalidTopicException
        );
        assert_eq!(
            ProduceRefused::TooLarge {
                bytes: 2,
                bytes_max: 1
            }
            .kafka_code(),
            ErrorCode::MessageTooLarge
        );
        // Kafka's ProduceRequest.validateRecords (v3+): exactly one v2 batch.
        assert_eq!(
            ProduceRefused::NoBatch.kafka_code(),
            ErrorCode::InvalidRecord
        );
        assert_eq!(
            ProduceRefused::SeveralBatches.kafka_code(),
            ErrorCode::InvalidRecord
        );
        assert_eq!(
            ProduceRefused::Batch(BatchError::BadMagic(1)).kafka_code(),
            ErrorCode::InvalidRecord
        );
        assert_eq!(
            ProduceRefused::Batch(BatchError::CrcMismatch {
                stored: 1,
                computed: 2
            })
            .kafka_code(),
            ErrorCode::CorruptMessage
        );
    }
}
