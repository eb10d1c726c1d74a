//! Kafka error codes and the crate's error type.
//!
//! [`ErrorCode`] is what goes back to a client inside a response; [`WireError`] is what a
//! decoder in this crate returns when input bytes are not acceptable. Each `WireError` maps to
//! the one `ErrorCode` a broker should answer with ([`WireError::error_code`]), so handlers do
//! not each invent their own mapping.

use kafka_protocol::messages::ApiKey;

use crate::batch::BatchError;

/// A Kafka protocol error code, with the number Kafka gives it on the wire.
///
/// Handlers return these instead of raw `i16`s so a typo cannot send a wrong number; the
/// numbers are checked against Kafka's list in the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i16)]
pub enum ErrorCode {
    /// Kafka `UNKNOWN_SERVER_ERROR` (-1).
    UnknownServerError = -1,
    /// Kafka `NONE` (0).
    None = 0,
    /// Kafka `OFFSET_OUT_OF_RANGE` (1).
    OffsetOutOfRange = 1,
    /// Kafka `CORRUPT_MESSAGE` (2).
    CorruptMessage = 2,
    /// Kafka `UNKNOWN_TOPIC_OR_PARTITION` (3).
    UnknownTopicOrPartition = 3,
    /// Kafka `INVALID_FETCH_SIZE` (4).
    InvalidFetchSize = 4,
    /// Kafka `LEADER_NOT_AVAILABLE` (5).
    LeaderNotAvailable = 5,
    /// Kafka `NOT_LEADER_OR_FOLLOWER` (6).
    NotLeaderOrFollower = 6,
    /// Kafka `REQUEST_TIMED_OUT` (7).
    RequestTimedOut = 7,
    /// Kafka `BROKER_NOT_AVAILABLE` (8).
    BrokerNotAvailable = 8,
    /// Kafka `REPLICA_NOT_AVAILABLE` (9).
    ReplicaNotAvailable = 9,
    /// Kafka `MESSAGE_TOO_LARGE` (10).
    MessageTooLarge = 10,
    /// Kafka `STALE_CONTROLLER_EPOCH` (11).
    StaleControllerEpoch = 11,
    /// Kafka `OFFSET_METADATA_TOO_LARGE` (12).
    OffsetMetadataTooLarge = 12,
    /// Kafka `NETWORK_EXCEPTION` (13).
    NetworkException = 13,
    /// Kafka `COORDINATOR_LOAD_IN_PROGRESS` (14).
    CoordinatorLoadInProgress = 14,
    /// Kafka `COORDINATOR_NOT_AVAILABLE` (15).
    CoordinatorNotAvailable = 15,
    /// Kafka `NOT_COORDINATOR` (16).
    NotCoordinator = 16,
    /// Kafka `INVALID_TOPIC_EXCEPTION` (17).
    InvalidTopicException = 17,
    /// Kafka `RECORD_LIST_TOO_LARGE` (18).
    RecordListTooLarge = 18,
    /// Kafka `NOT_ENOUGH_REPLICAS` (19).
    NotEnoughReplicas = 19,
    /// Kafka `NOT_ENOUGH_REPLICAS_AFTER_APPEND` (20).
    NotEnoughReplicasAfterAppend = 20,
    /// Kafka `INVALID_REQUIRED_ACKS` (21).
    InvalidRequiredAcks = 21,
    /// Kafka `ILLEGAL_GENERATION` (22).
    IllegalGeneration = 22,
    /// Kafka `INCONSISTENT_GROUP_PROTOCOL` (23).
    InconsistentGroupProtocol = 23,
    /// Kafka `INVALID_GROUP_ID` (24).
    InvalidGroupId = 24,
    /// Kafka `UNKNOWN_MEMBER_ID` (25).
    UnknownMemberId = 25,
    /// Kafka `INVALID_SESSION_TIMEOUT` (26).
    InvalidSessionTimeout = 26,
    /// Kafka `REBALANCE_IN_PROGRESS` (27).
    RebalanceInProgress = 27,
    /// Kafka `INVALID_COMMIT_OFFSET_SIZE` (28).
    InvalidCommitOffsetSize = 28,
    /// Kafka `TOPIC_AUTHORIZATION_FAILED` (29).
    TopicAuthorizationFailed = 29,
    /// Kafka `GROUP_AUTHORIZATION_FAILED` (30).
    GroupAuthorizationFailed = 30,
    /// Kafka `CLUSTER_AUTHORIZATION_FAILED` (31).
    ClusterAuthorizationFailed = 31,
    /// Kafka `INVALID_TIMESTAMP` (32).
    InvalidTimestamp = 32,
    /// Kafka `UNSUPPORTED_SASL_MECHANISM` (33).
    UnsupportedSaslMechanism = 33,
    /// Kafka `ILLEGAL_SASL_STATE` (34).
    IllegalSaslState = 34,
    /// Kafka `UNSUPPORTED_VERSION` (35).
    UnsupportedVersion = 35,
    /// Kafka `TOPIC_ALREADY_EXISTS` (36).
    TopicAlreadyExists = 36,
    /// Kafka `INVALID_PARTITIONS` (37).
    InvalidPartitions = 37,
    /// Kafka `INVALID_REPLICATION_FACTOR` (38).
    InvalidReplicationFactor = 38,
    /// Kafka `INVALID_REPLICA_ASSIGNMENT` (39).
    InvalidReplicaAssignment = 39,
    /// Kafka `INVALID_CONFIG` (40).
    InvalidConfig = 40,
    /// Kafka `NOT_CONTROLLER` (41).
    NotController = 41,
    /// Kafka `INVALID_REQUEST` (42).
    InvalidRequest = 42,
    /// Kafka `UNSUPPORTED_FOR_MESSAGE_FORMAT` (43).
    UnsupportedForMessageFormat = 43,
    /// Kafka `POLICY_VIOLATION` (44).
    PolicyViolation = 44,
    /// Kafka `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    OutOfOrderSequenceNumber = 45,
    /// Kafka `DUPLICATE_SEQUENCE_NUMBER` (46).
    DuplicateSequenceNumber = 46,
    /// Kafka `INVALID_PRODUCER_EPOCH` (47).
    InvalidProducerEpoch = 47,
    /// Kafka `INVALID_TXN_STATE` (48).
    InvalidTxnState = 48,
    /// Kafka `INVALID_PRODUCER_ID_MAPPING` (49).
    InvalidProducerIdMapping = 49,
    /// Kafka `INVALID_TRANSACTION_TIMEOUT` (50).
    InvalidTransactionTimeout = 50,
    /// Kafka `CONCURRENT_TRANSACTIONS` (51).
    ConcurrentTransactions = 51,
    /// Kafka `TRANSACTION_COORDINATOR_FENCED` (52).
    TransactionCoordinatorFenced = 52,
    /// Kafka `TRANSACTIONAL_ID_AUTHORIZATION_FAILED` (53).
    TransactionalIdAuthorizationFailed = 53,
    /// Kafka `SECURITY_DISABLED` (54).
    SecurityDisabled = 54,
    /// Kafka `OPERATION_NOT_ATTEMPTED` (55).
    OperationNotAttempted = 55,
    /// Kafka `KAFKA_STORAGE_ERROR` (56).
    KafkaStorageError = 56,
    /// Kafka `LOG_DIR_NOT_FOUND` (57).
    LogDirNotFound = 57,
    /// Kafka `SASL_AUTHENTICATION_FAILED` (58).
    SaslAuthenticationFailed = 58,
    /// Kafka `UNKNOWN_PRODUCER_ID` (59).
    UnknownProducerId = 59,
    /// Kafka `REASSIGNMENT_IN_PROGRESS` (60).
    ReassignmentInProgress = 60,
    /// Kafka `DELEGATION_TOKEN_AUTH_DISABLED` (61).
    DelegationTokenAuthDisabled = 61,
    /// Kafka `DELEGATION_TOKEN_NOT_FOUND` (62).
    DelegationTokenNotFound = 62,
    /// Kafka `DELEGATION_TOKEN_OWNER_MISMATCH` (63).
    DelegationTokenOwnerMismatch = 63,
    /// Kafka `DELEGATION_TOKEN_REQUEST_NOT_ALLOWED` (64).
    DelegationTokenRequestNotAllowed = 64,
    /// Kafka `DELEGATION_TOKEN_AUTHORIZATION_FAILED` (65).
    DelegationTokenAuthorizationFailed = 65,
    /// Kafka `DELEGATION_TOKEN_EXPIRED` (66).
    DelegationTokenExpired = 66,
    /// Kafka `INVALID_PRINCIPAL_TYPE` (67).
    InvalidPrincipalType = 67,
    /// Kafka `NON_EMPTY_GROUP` (68).
    NonEmptyGroup = 68,
    /// Kafka `GROUP_ID_NOT_FOUND` (69).
    GroupIdNotFound = 69,
    /// Kafka `FETCH_SESSION_ID_NOT_FOUND` (70).
    FetchSessionIdNotFound = 70,
    /// Kafka `INVALID_FETCH_SESSION_EPOCH` (71).
    InvalidFetchSessionEpoch = 71,
    /// Kafka `LISTENER_NOT_FOUND` (72).
    ListenerNotFound = 72,
    /// Kafka `TOPIC_DELETION_DISABLED` (73).
    TopicDeletionDisabled = 73,
    /// Kafka `FENCED_LEADER_EPOCH` (74).
    FencedLeaderEpoch = 74,
    /// Kafka `UNKNOWN_LEADER_EPOCH` (75).
    UnknownLeaderEpoch = 75,
    /// Kafka `UNSUPPORTED_COMPRESSION_TYPE` (76).
    UnsupportedCompressionType = 76,
    /// Kafka `STALE_BROKER_EPOCH` (77).
    StaleBrokerEpoch = 77,
    /// Kafka `OFFSET_NOT_AVAILABLE` (78).
    OffsetNotAvailable = 78,
    /// Kafka `MEMBER_ID_REQUIRED` (79).
    MemberIdRequired = 79,
    /// Kafka `PREFERRED_LEADER_NOT_AVAILABLE` (80).
    PreferredLeaderNotAvailable = 80,
    /// Kafka `GROUP_MAX_SIZE_REACHED` (81).
    GroupMaxSizeReached = 81,
    /// Kafka `FENCED_INSTANCE_ID` (82).
    FencedInstanceId = 82,
    /// Kafka `ELIGIBLE_LEADERS_NOT_AVAILABLE` (83).
    EligibleLeadersNotAvailable = 83,
    /// Kafka `ELECTION_NOT_NEEDED` (84).
    ElectionNotNeeded = 84,
    /// Kafka `NO_REASSIGNMENT_IN_PROGRESS` (85).
    NoReassignmentInProgress = 85,
    /// Kafka `GROUP_SUBSCRIBED_TO_TOPIC` (86).
    GroupSubscribedToTopic = 86,
    /// Kafka `INVALID_RECORD` (87).
    InvalidRecord = 87,
    /// Kafka `UNSTABLE_OFFSET_COMMIT` (88).
    UnstableOffsetCommit = 88,
    /// Kafka `THROTTLING_QUOTA_EXCEEDED` (89).
    ThrottlingQuotaExceeded = 89,
    /// Kafka `PRODUCER_FENCED` (90).
    ProducerFenced = 90,
    /// Kafka `RESOURCE_NOT_FOUND` (91).
    ResourceNotFound = 91,
    /// Kafka `DUPLICATE_RESOURCE` (92).
    DuplicateResource = 92,
    /// Kafka `UNACCEPTABLE_CREDENTIAL` (93).
    UnacceptableCredential = 93,
    /// Kafka `INCONSISTENT_VOTER_SET` (94).
    InconsistentVoterSet = 94,
    /// Kafka `INVALID_UPDATE_VERSION` (95).
    InvalidUpdateVersion = 95,
    /// Kafka `FEATURE_UPDATE_FAILED` (96).
    FeatureUpdateFailed = 96,
    /// Kafka `PRINCIPAL_DESERIALIZATION_FAILURE` (97).
    PrincipalDeserializationFailure = 97,
    /// Kafka `SNAPSHOT_NOT_FOUND` (98).
    SnapshotNotFound = 98,
    /// Kafka `POSITION_OUT_OF_RANGE` (99).
    PositionOutOfRange = 99,
    /// Kafka `UNKNOWN_TOPIC_ID` (100).
    UnknownTopicId = 100,
    /// Kafka `DUPLICATE_BROKER_REGISTRATION` (101).
    DuplicateBrokerRegistration = 101,
    /// Kafka `BROKER_ID_NOT_REGISTERED` (102).
    BrokerIdNotRegistered = 102,
    /// Kafka `INCONSISTENT_TOPIC_ID` (103).
    InconsistentTopicId = 103,
    /// Kafka `INCONSISTENT_CLUSTER_ID` (104).
    InconsistentClusterId = 104,
    /// Kafka `TRANSACTIONAL_ID_NOT_FOUND` (105).
    TransactionalIdNotFound = 105,
    /// Kafka `FETCH_SESSION_TOPIC_ID_ERROR` (106).
    FetchSessionTopicIdError = 106,
    /// Kafka `INELIGIBLE_REPLICA` (107).
    IneligibleReplica = 107,
    /// Kafka `NEW_LEADER_ELECTED` (108).
    NewLeaderElected = 108,
    /// Kafka `OFFSET_MOVED_TO_TIERED_STORAGE` (109).
    OffsetMovedToTieredStorage = 109,
    /// Kafka `FENCED_MEMBER_EPOCH` (110).
    FencedMemberEpoch = 110,
    /// Kafka `UNRELEASED_INSTANCE_ID` (111).
    UnreleasedInstanceId = 111,
    /// Kafka `UNSUPPORTED_ASSIGNOR` (112).
    UnsupportedAssignor = 112,
    /// Kafka `STALE_MEMBER_EPOCH` (113).
    StaleMemberEpoch = 113,
    /// Kafka `MISMATCHED_ENDPOINT_TYPE` (114).
    MismatchedEndpointType = 114,
    /// Kafka `UNSUPPORTED_ENDPOINT_TYPE` (115).
    UnsupportedEndpointType = 115,
    /// Kafka `UNKNOWN_CONTROLLER_ID` (116).
    UnknownControllerId = 116,
    /// Kafka `UNKNOWN_SUBSCRIPTION_ID` (117).
    UnknownSubscriptionId = 117,
    /// Kafka `TELEMETRY_TOO_LARGE` (118).
    TelemetryTooLarge = 118,
    /// Kafka `INVALID_REGISTRATION` (119).
    InvalidRegistration = 119,
    /// Kafka `TRANSACTION_ABORTABLE` (120).
    TransactionAbortable = 120,
}

impl ErrorCode {
    /// Every code this enum knows, in numeric order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::UnknownServerError,
        ErrorCode::None,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::InvalidFetchSize,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::RequestTimedOut,
        ErrorCode::BrokerNotAvailable,
        ErrorCode::ReplicaNotAvailable,
        ErrorCode::MessageTooLarge,
        ErrorCode::StaleControllerEpoch,
        ErrorCode::OffsetMetadataTooLarge,
        ErrorCode::NetworkException,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::InvalidTopicException,
        ErrorCode::RecordListTooLarge,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend,
        ErrorCode::InvalidRequiredAcks,
        ErrorCode::IllegalGeneration,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidGroupId,
        ErrorCode::UnknownMemberId,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::RebalanceInProgress,
        ErrorCode::InvalidCommitOffsetSize,
        ErrorCode::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::ClusterAuthorizationFailed,
        ErrorCode::InvalidTimestamp,
        ErrorCode::UnsupportedSaslMechanism,
        ErrorCode::IllegalSaslState,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidReplicaAssignment,
        ErrorCode::InvalidConfig,
        ErrorCode::NotController,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedForMessageFormat,
        ErrorCode::PolicyViolation,
        ErrorCode::OutOfOrderSequenceNumber,
        ErrorCode::DuplicateSequenceNumber,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::InvalidTxnState,
        ErrorCode::InvalidProducerIdMapping,
        ErrorCode::InvalidTransactionTimeout,
        ErrorCode::ConcurrentTransactions,
        ErrorCode::TransactionCoordinatorFenced,
        ErrorCode::TransactionalIdAuthorizationFailed,
        ErrorCode::SecurityDisabled,
        ErrorCode::OperationNotAttempted,
        ErrorCode::KafkaStorageError,
        ErrorCode::LogDirNotFound,
        ErrorCode::SaslAuthenticationFailed,
        ErrorCode::UnknownProducerId,
        ErrorCode::ReassignmentInProgress,
        ErrorCode::DelegationTokenAuthDisabled,
        ErrorCode::DelegationTokenNotFound,
        ErrorCode::DelegationTokenOwnerMismatch,
        ErrorCode::DelegationTokenRequestNotAllowed,
        ErrorCode::DelegationTokenAuthorizationFailed,
        ErrorCode::DelegationTokenExpired,
        ErrorCode::InvalidPrincipalType,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupIdNotFound,
        ErrorCode::FetchSessionIdNotFound,
        ErrorCode::InvalidFetchSessionEpoch,
        ErrorCode::ListenerNotFound,
        ErrorCode::TopicDeletionDisabled,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::UnsupportedCompressionType,
        ErrorCode::StaleBrokerEpoch,
        ErrorCode::OffsetNotAvailable,
        ErrorCode::MemberIdRequired,
        ErrorCode::PreferredLeaderNotAvailable,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::FencedInstanceId,
        ErrorCode::EligibleLeadersNotAvailable,
        ErrorCode::ElectionNotNeeded,
        ErrorCode::NoReassignmentInProgress,
        ErrorCode::GroupSubscribedToTopic,
        ErrorCode::InvalidRecord,
        ErrorCode::UnstableOffsetCommit,
        ErrorCode::ThrottlingQuotaExceeded,
        ErrorCode::ProducerFenced,
        ErrorCode::ResourceNotFound,
        ErrorCode::DuplicateResource,
        ErrorCode::UnacceptableCredential,
        ErrorCode::InconsistentVoterSet,
        ErrorCode::InvalidUpdateVersion,
        ErrorCode::FeatureUpdateFailed,
        ErrorCode::PrincipalDeserializationFailure,
        ErrorCode::SnapshotNotFound,
        ErrorCode::PositionOutOfRange,
        ErrorCode::UnknownTopicId,
        ErrorCode::DuplicateBrokerRegistration,
        ErrorCode::BrokerIdNotRegistered,
        ErrorCode::InconsistentTopicId,
        ErrorCode::InconsistentClusterId,
        ErrorCode::TransactionalIdNotFound,
        ErrorCode::FetchSessionTopicIdError,
        ErrorCode::IneligibleReplica,
        ErrorCode::NewLeaderElected,
        ErrorCode::OffsetMovedToTieredStorage,
        ErrorCode::FencedMemberEpoch,
        ErrorCode::UnreleasedInstanceId,
        ErrorCode::UnsupportedAssignor,
        ErrorCode::StaleMemberEpoch,
        ErrorCode::MismatchedEndpointType,
        ErrorCode::UnsupportedEndpointType,
        ErrorCode::UnknownControllerId,
        ErrorCode::UnknownSubscriptionId,
        ErrorCode::TelemetryTooLarge,
        ErrorCode::InvalidRegistration,
        ErrorCode::TransactionAbortable,
    ];

    /// The number sent on the wire.
    pub const fn code(self) -> i16 {
        self as i16
    }

    /// Kafka's upper-case name, e.g. `UNSUPPORTED_VERSION`.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ErrorCode::None => "NONE",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::CorruptMessage => "CORRUPT_MESSAGE",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::InvalidFetchSize => "INVALID_FETCH_SIZE",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::BrokerNotAvailable => "BROKER_NOT_AVAILABLE",
            ErrorCode::ReplicaNotAvailable => "REPLICA_NOT_AVAILABLE",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::StaleControllerEpoch => "STALE_CONTROLLER_EPOCH",
            ErrorCode::OffsetMetadataTooLarge => "OFFSET_METADATA_TOO_LARGE",
            ErrorCode::NetworkException => "NETWORK_EXCEPTION",
            ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
            ErrorCode::RecordListTooLarge => "RECORD_LIST_TOO_LARGE",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ErrorCode::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            ErrorCode::InvalidGroupId => "INVALID_GROUP_ID",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::InvalidCommitOffsetSize => "INVALID_COMMIT_OFFSET_SIZE",
            ErrorCode::TopicAuthorizationFailed => "TOPIC_AUTHORIZATION_FAILED",
            ErrorCode::GroupAuthorizationFailed => "GROUP_AUTHORIZATION_FAILED",
            ErrorCode::ClusterAuthorizationFailed => "CLUSTER_AUTHORIZATION_FAILED",
            ErrorCode::InvalidTimestamp => "INVALID_TIMESTAMP",
            ErrorCode::UnsupportedSaslMechanism => "UNSUPPORTED_SASL_MECHANISM",
            ErrorCode::IllegalSaslState => "ILLEGAL_SASL_STATE",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::NotController => "NOT_CONTROLLER",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::UnsupportedForMessageFormat => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
            ErrorCode::PolicyViolation => "POLICY_VIOLATION",
            ErrorCode::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ErrorCode::DuplicateSequenceNumber => "DUPLICATE_SEQUENCE_NUMBER",
            ErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ErrorCode::InvalidTxnState => "INVALID_TXN_STATE",
            ErrorCode::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            ErrorCode::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            ErrorCode::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            ErrorCode::TransactionCoordinatorFenced => "TRANSACTION_COORDINATOR_FENCED",
            ErrorCode::TransactionalIdAuthorizationFailed => {
                "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
            }
            ErrorCode::SecurityDisabled => "SECURITY_DISABLED",
            ErrorCode::OperationNotAttempted => "OPERATION_NOT_ATTEMPTED",
            ErrorCode::KafkaStorageError => "KAFKA_STORAGE_ERROR",
            ErrorCode::LogDirNotFound => "LOG_DIR_NOT_FOUND",
            ErrorCode::SaslAuthenticationFailed => "SASL_AUTHENTICATION_FAILED",
            ErrorCode::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
            ErrorCode::ReassignmentInProgress => "REASSIGNMENT_IN_PROGRESS",
            ErrorCode::DelegationTokenAuthDisabled => "DELEGATION_TOKEN_AUTH_DISABLED",
            ErrorCode::DelegationTokenNotFound => "DELEGATION_TOKEN_NOT_FOUND",
            ErrorCode::DelegationTokenOwnerMismatch => "DELEGATION_TOKEN_OWNER_MISMATCH",
            ErrorCode::DelegationTokenRequestNotAllowed => "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
            ErrorCode::DelegationTokenAuthorizationFailed => {
                "DELEGATION_TOKEN_AUTHORIZATION_FAILED"
            }
            ErrorCode::DelegationTokenExpired => "DELEGATION_TOKEN_EXPIRED",
            ErrorCode::InvalidPrincipalType => "INVALID_PRINCIPAL_TYPE",
            ErrorCode::NonEmptyGroup => "NON_EMPTY_GROUP",
            ErrorCode::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            ErrorCode::FetchSessionIdNotFound => "FETCH_SESSION_ID_NOT_FOUND",
            ErrorCode::InvalidFetchSessionEpoch => "INVALID_FETCH_SESSION_EPOCH",
            ErrorCode::ListenerNotFound => "LISTENER_NOT_FOUND",
            ErrorCode::TopicDeletionDisabled => "TOPIC_DELETION_DISABLED",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            ErrorCode::UnsupportedCompressionType => "UNSUPPORTED_COMPRESSION_TYPE",
            ErrorCode::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            ErrorCode::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
            ErrorCode::MemberIdRequired => "MEMBER_ID_REQUIRED",
            ErrorCode::PreferredLeaderNotAvailable => "PREFERRED_LEADER_NOT_AVAILABLE",
            ErrorCode::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            ErrorCode::FencedInstanceId => "FENCED_INSTANCE_ID",
            ErrorCode::EligibleLeadersNotAvailable => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            ErrorCode::ElectionNotNeeded => "ELECTION_NOT_NEEDED",
            ErrorCode::NoReassignmentInProgress => "NO_REASSIGNMENT_IN_PROGRESS",
            ErrorCode::GroupSubscribedToTopic => "GROUP_SUBSCRIBED_TO_TOPIC",
            ErrorCode::InvalidRecord => "INVALID_RECORD",
            ErrorCode::UnstableOffsetCommit => "UNSTABLE_OFFSET_COMMIT",
            ErrorCode::ThrottlingQuotaExceeded => "THROTTLING_QUOTA_EXCEEDED",
            ErrorCode::ProducerFenced => "PRODUCER_FENCED",
            ErrorCode::ResourceNotFound => "RESOURCE_NOT_FOUND",
            ErrorCode::DuplicateResource => "DUPLICATE_RESOURCE",
            ErrorCode::UnacceptableCredential => "UNACCEPTABLE_CREDENTIAL",
            ErrorCode::InconsistentVoterSet => "INCONSISTENT_VOTER_SET",
            ErrorCode::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            ErrorCode::FeatureUpdateFailed => "FEATURE_UPDATE_FAILED",
            ErrorCode::PrincipalDeserializationFailure => "PRINCIPAL_DESERIALIZATION_FAILURE",
            ErrorCode::SnapshotNotFound => "SNAPSHOT_NOT_FOUND",
            ErrorCode::PositionOutOfRange => "POSITION_OUT_OF_RANGE",
            ErrorCode::UnknownTopicId => "UNKNOWN_TOPIC_ID",
            ErrorCode::DuplicateBrokerRegistration => "DUPLICATE_BROKER_REGISTRATION",
            ErrorCode::BrokerIdNotRegistered => "BROKER_ID_NOT_REGISTERED",
            ErrorCode::InconsistentTopicId => "INCONSISTENT_TOPIC_ID",
            ErrorCode::InconsistentClusterId => "INCONSISTENT_CLUSTER_ID",
            ErrorCode::TransactionalIdNotFound => "TRANSACTIONAL_ID_NOT_FOUND",
            ErrorCode::FetchSessionTopicIdError => "FETCH_SESSION_TOPIC_ID_ERROR",
            ErrorCode::IneligibleReplica => "INELIGIBLE_REPLICA",
            ErrorCode::NewLeaderElected => "NEW_LEADER_ELECTED",
            ErrorCode::OffsetMovedToTieredStorage => "OFFSET_MOVED_TO_TIERED_STORAGE",
            ErrorCode::FencedMemberEpoch => "FENCED_MEMBER_EPOCH",
            ErrorCode::UnreleasedInstanceId => "UNRELEASED_INSTANCE_ID",
            ErrorCode::UnsupportedAssignor => "UNSUPPORTED_ASSIGNOR",
            ErrorCode::StaleMemberEpoch => "STALE_MEMBER_EPOCH",
            ErrorCode::MismatchedEndpointType => "MISMATCHED_ENDPOINT_TYPE",
            ErrorCode::UnsupportedEndpointType => "UNSUPPORTED_ENDPOINT_TYPE",
            ErrorCode::UnknownControllerId => "UNKNOWN_CONTROLLER_ID",
            ErrorCode::UnknownSubscriptionId => "UNKNOWN_SUBSCRIPTION_ID",
            ErrorCode::TelemetryTooLarge => "TELEMETRY_TOO_LARGE",
            ErrorCode::InvalidRegistration => "INVALID_REGISTRATION",
            ErrorCode::TransactionAbortable => "TRANSACTION_ABORTABLE",
        }
    }
}

impl TryFrom<i16> for ErrorCode {
    type Error = i16;

    /// Maps a wire number back to a code; unknown numbers are handed back as the error.
    fn try_from(code: i16) -> Result<ErrorCode, i16> {
        match code {
            -1 => Ok(ErrorCode::UnknownServerError),
            0 => Ok(ErrorCode::None),
            1 => Ok(ErrorCode::OffsetOutOfRange),
            2 => Ok(ErrorCode::CorruptMessage),
            3 => Ok(ErrorCode::UnknownTopicOrPartition),
            4 => Ok(ErrorCode::InvalidFetchSize),
            5 => Ok(ErrorCode::LeaderNotAvailable),
            6 => Ok(ErrorCode::NotLeaderOrFollower),
            7 => Ok(ErrorCode::RequestTimedOut),
            8 => Ok(ErrorCode::BrokerNotAvailable),
            9 => Ok(ErrorCode::ReplicaNotAvailable),
            10 => Ok(ErrorCode::MessageTooLarge),
            11 => Ok(ErrorCode::StaleControllerEpoch),
            12 => Ok(ErrorCode::OffsetMetadataTooLarge),
            13 => Ok(ErrorCode::NetworkException),
            14 => Ok(ErrorCode::CoordinatorLoadInProgress),
            15 => Ok(ErrorCode::CoordinatorNotAvailable),
            16 => Ok(ErrorCode::NotCoordinator),
            17 => Ok(ErrorCode::InvalidTopicException),
            18 => Ok(ErrorCode::RecordListTooLarge),
            19 => Ok(ErrorCode::NotEnoughReplicas),
            20 => Ok(ErrorCode::NotEnoughReplicasAfterAppend),
            21 => Ok(ErrorCode::InvalidRequiredAcks),
            22 => Ok(ErrorCode::IllegalGeneration),
            23 => Ok(ErrorCode::InconsistentGroupProtocol),
            24 => Ok(ErrorCode::InvalidGroupId),
            25 => Ok(ErrorCode::UnknownMemberId),
            26 => Ok(ErrorCode::InvalidSessionTimeout),
            27 => Ok(ErrorCode::RebalanceInProgress),
            28 => Ok(ErrorCode::InvalidCommitOffsetSize),
            29 => Ok(ErrorCode::TopicAuthorizationFailed),
            30 => Ok(ErrorCode::GroupAuthorizationFailed),
            31 => Ok(ErrorCode::ClusterAuthorizationFailed),
            32 => Ok(ErrorCode::InvalidTimestamp),
            33 => Ok(ErrorCode::UnsupportedSaslMechanism),
            34 => Ok(ErrorCode::IllegalSaslState),
            35 => Ok(ErrorCode::UnsupportedVersion),
            36 => Ok(ErrorCode::TopicAlreadyExists),
            37 => Ok(ErrorCode::InvalidPartitions),
            38 => Ok(ErrorCode::InvalidReplicationFactor),
            39 => Ok(ErrorCode::InvalidReplicaAssignment),
            40 => Ok(ErrorCode::InvalidConfig),
            41 => Ok(ErrorCode::NotController),
            42 => Ok(ErrorCode::InvalidRequest),
            43 => Ok(ErrorCode::UnsupportedForMessageFormat),
            44 => Ok(ErrorCode::PolicyViolation),
            45 => Ok(ErrorCode::OutOfOrderSequenceNumber),
            46 => Ok(ErrorCode::DuplicateSequenceNumber),
            47 => Ok(ErrorCode::InvalidProducerEpoch),
            48 => Ok(ErrorCode::InvalidTxnState),
            49 => Ok(ErrorCode::InvalidProducerIdMapping),
            50 => Ok(ErrorCode::InvalidTransactionTimeout),
            51 => Ok(ErrorCode::ConcurrentTransactions),
            52 => Ok(ErrorCode::TransactionCoordinatorFenced),
            53 => Ok(ErrorCode::TransactionalIdAuthorizationFailed),
            54 => Ok(ErrorCode::SecurityDisabled),
            55 => Ok(ErrorCode::OperationNotAttempted),
            56 => Ok(ErrorCode::KafkaStorageError),
            57 => Ok(ErrorCode::LogDirNotFound),
            58 => Ok(ErrorCode::SaslAuthenticationFailed),
            59 => Ok(ErrorCode::UnknownProducerId),
            60 => Ok(ErrorCode::ReassignmentInProgress),
            61 => Ok(ErrorCode::DelegationTokenAuthDisabled),
            62 => Ok(ErrorCode::DelegationTokenNotFound),
            63 => Ok(ErrorCode::DelegationTokenOwnerMismatch),
            64 => Ok(ErrorCode::DelegationTokenRequestNotAllowed),
            65 => Ok(ErrorCode::DelegationTokenAuthorizationFailed),
            66 => Ok(ErrorCode::DelegationTokenExpired),
            67 => Ok(ErrorCode::InvalidPrincipalType),
            68 => Ok(ErrorCode::NonEmptyGroup),
            69 => Ok(ErrorCode::GroupIdNotFound),
            70 => Ok(ErrorCode::FetchSessionIdNotFound),
            71 => Ok(ErrorCode::InvalidFetchSessionEpoch),
            72 => Ok(ErrorCode::ListenerNotFound),
            73 => Ok(ErrorCode::TopicDeletionDisabled),
            74 => Ok(ErrorCode::FencedLeaderEpoch),
            75 => Ok(ErrorCode::UnknownLeaderEpoch),
            76 => Ok(ErrorCode::UnsupportedCompressionType),
            77 => Ok(ErrorCode::StaleBrokerEpoch),
            78 => Ok(ErrorCode::OffsetNotAvailable),
            79 => Ok(ErrorCode::MemberIdRequired),
            80 => Ok(ErrorCode::PreferredLeaderNotAvailable),
            81 => Ok(ErrorCode::GroupMaxSizeReached),
            82 => Ok(ErrorCode::FencedInstanceId),
            83 => Ok(ErrorCode::EligibleLeadersNotAvailable),
            84 => Ok(ErrorCode::ElectionNotNeeded),
            85 => Ok(ErrorCode::NoReassignmentInProgress),
            86 => Ok(ErrorCode::GroupSubscribedToTopic),
            87 => Ok(ErrorCode::InvalidRecord),
            88 => Ok(ErrorCode::UnstableOffsetCommit),
            89 => Ok(ErrorCode::ThrottlingQuotaExceeded),
            90 => Ok(ErrorCode::ProducerFenced),
            91 => Ok(ErrorCode::ResourceNotFound),
            92 => Ok(ErrorCode::DuplicateResource),
            93 => Ok(ErrorCode::UnacceptableCredential),
            94 => Ok(ErrorCode::InconsistentVoterSet),
            95 => Ok(ErrorCode::InvalidUpdateVersion),
            96 => Ok(ErrorCode::FeatureUpdateFailed),
            97 => Ok(ErrorCode::PrincipalDeserializationFailure),
            98 => Ok(ErrorCode::SnapshotNotFound),
            99 => Ok(ErrorCode::PositionOutOfRange),
            100 => Ok(ErrorCode::UnknownTopicId),
            101 => Ok(ErrorCode::DuplicateBrokerRegistration),
            102 => Ok(ErrorCode::BrokerIdNotRegistered),
            103 => Ok(ErrorCode::InconsistentTopicId),
            104 => Ok(ErrorCode::InconsistentClusterId),
            105 => Ok(ErrorCode::TransactionalIdNotFound),
            106 => Ok(ErrorCode::FetchSessionTopicIdError),
            107 => Ok(ErrorCode::IneligibleReplica),
            108 => Ok(ErrorCode::NewLeaderElected),
            109 => Ok(ErrorCode::OffsetMovedToTieredStorage),
            110 => Ok(ErrorCode::FencedMemberEpoch),
            111 => Ok(ErrorCode::UnreleasedInstanceId),
            112 => Ok(ErrorCode::UnsupportedAssignor),
            113 => Ok(ErrorCode::StaleMemberEpoch),
            114 => Ok(ErrorCode::MismatchedEndpointType),
            115 => Ok(ErrorCode::UnsupportedEndpointType),
            116 => Ok(ErrorCode::UnknownControllerId),
            117 => Ok(ErrorCode::UnknownSubscriptionId),
            118 => Ok(ErrorCode::TelemetryTooLarge),
            119 => Ok(ErrorCode::InvalidRegistration),
            120 => Ok(ErrorCode::TransactionAbortable),
            other => Err(other),
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Why bytes from the network (or a stored batch) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame's size prefix is larger than the configured `frame_bytes_max`.
    #[error("frame of {size} bytes exceeds frame_bytes_max {max}")]
    FrameTooLarge {
        /// Declared size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A frame's size prefix is negative.
    #[error("negative frame size {0}")]
    NegativeFrameSize(i32),
    /// The input ended before a field did.
    #[error("truncated input: needed {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// The request header names an API key Kafka does not define.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// The API exists but Spate does not accept this version of it.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// The version the client sent.
        version: i16,
    },
    /// The API exists in Kafka but Spate does not decode it.
    #[error("api {0:?} is not implemented")]
    UnsupportedApi(ApiKey),
    /// A request body is bigger than the per-API limit (control-plane requests are small).
    #[error("{api_key:?} request of {size} bytes exceeds its limit of {max}")]
    RequestTooLarge {
        /// The API.
        api_key: ApiKey,
        /// Body size.
        size: usize,
        /// The limit for this API.
        max: usize,
    },
    /// A length or count field claims more than the bytes left could hold; refused before any
    /// decoder sizes a buffer from it.
    #[error("declared length {declared} exceeds the {remaining} bytes left")]
    LengthExceedsInput {
        /// The declared length or element count.
        declared: u64,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A field holds a value the protocol does not allow (negative length, overlong varint...).
    #[error("malformed {what}")]
    Malformed {
        /// Which field or structure.
        what: &'static str,
    },
    /// The generated decoder rejected the body (its message is kept for logs).
    #[error("cannot decode {api_key:?} v{version}: {reason}")]
    Decode {
        /// The API.
        api_key: ApiKey,
        /// Its version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
    /// kafka-protocol refused to encode a response (a field set that the version lacks).
    #[error("cannot encode {api_key:?} v{version}: {reason}")]
    Encode {
        /// The API.
        api_key: ApiKey,
        /// Its version.
        version: i16,
        /// What the encoder said.
        reason: String,
    },
    /// A record batch is malformed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A compressed batch's payload could not be decompressed.
    #[error("cannot decompress {codec} payload: {reason}")]
    Decompress {
        /// Codec name.
        codec: &'static str,
        /// What the decompressor said.
        reason: String,
    },
    /// A compressed batch inflates past `decompressed_bytes_max`.
    #[error("decompressed payload exceeds decompressed_bytes_max {max}")]
    DecompressedTooLarge {
        /// The limit.
        max: usize,
    },
}

impl WireError {
    /// The error code a broker answers with when a request fails this way.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            WireError::UnsupportedVersion { .. } | WireError::UnsupportedApi(_) => {
                ErrorCode::UnsupportedVersion
            }
            WireError::FrameTooLarge { .. } | WireError::RequestTooLarge { .. } => {
                ErrorCode::MessageTooLarge
            }
            WireError::Batch(_) | WireError::Decompress { .. } => ErrorCode::CorruptMessage,
            WireError::DecompressedTooLarge { .. } => ErrorCode::RecordListTooLarge,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::error::ResponseError;

    #[test]
    fn codes_match_kafka_numbers_and_names() {
        assert_eq!(ErrorCode::ALL.len(), 122);
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.code(), i as i16 - 1, "codes are dense from -1");
            assert_eq!(ErrorCode::try_from(code.code()), Ok(*code));
            if *code == ErrorCode::None {
                assert_eq!(ResponseError::try_from_code(0), None);
                continue;
            }
            let theirs = ResponseError::try_from_code(code.code()).unwrap();
            assert_eq!(
                format!("{theirs:?}"),
                format!("{code:?}"),
                "code {}",
                code.code()
            );
        }
        assert_eq!(ErrorCode::UnsupportedVersion.code(), 35);
        assert_eq!(ErrorCode::UnsupportedVersion.name(), "UNSUPPORTED_VERSION");
        assert_eq!(ErrorCode::try_from(999), Err(999));
    }

    #[test]
    fn wire_errors_map_to_the_code_a_broker_answers_with() {
        let unsupported = WireError::UnsupportedVersion {
            api_key: ApiKey::Produce,
            version: 2,
        };
        assert_eq!(unsupported.error_code(), ErrorCode::UnsupportedVersion);
        assert_eq!(
            WireError::FrameTooLarge { size: 10, max: 1 }.error_code(),
            ErrorCode::MessageTooLarge
        );
        assert_eq!(
            WireError::Batch(BatchError::BadMagic(1)).error_code(),
            ErrorCode::CorruptMessage
        );
        assert_eq!(
            WireError::Malformed { what: "x" }.error_code(),
            ErrorCode::InvalidRequest
        );
    }
}
