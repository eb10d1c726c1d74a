//! The client's one error type.

use spate_wire::kafka_protocol::messages::ApiKey;
use spate_wire::{ErrorCode, WireError};

/// Everything a client call can fail with.
///
/// Operating errors only: a broken invariant inside the client is an assertion, not a variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket failed (connect, read or write).
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        /// The broker address.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The broker closed the connection with requests still unanswered.
    #[error("connection to {addr} closed with {in_flight} requests in flight")]
    Closed {
        /// The broker address.
        addr: String,
        /// Requests that got no answer.
        in_flight: usize,
    },
    /// Framing or record-batch bytes from the broker were malformed or over a limit.
    #[error("wire error: {0}")]
    Wire(#[from] WireError),
    /// kafka-protocol could not encode a request or decode a response.
    #[error("codec error for {api_key:?} v{version}: {reason}")]
    Codec {
        /// The API.
        api_key: ApiKey,
        /// The version used.
        version: i16,
        /// kafka-protocol's message.
        reason: String,
    },
    /// A response's correlation id is not the one of the oldest request in flight.
    #[error("response correlation id {got} does not match the oldest request {expected}")]
    CorrelationMismatch {
        /// Correlation id of the oldest request.
        expected: i32,
        /// Correlation id in the response.
        got: i32,
    },
    /// The broker answered with a Kafka error code.
    #[error("broker error {code} for {what}")]
    Broker {
        /// The Kafka error.
        code: ErrorCode,
        /// Which topic, partition or request it was for.
        what: String,
    },
    /// The broker answered with an error code this client does not know.
    #[error("unknown broker error code {code} for {what}")]
    UnknownErrorCode {
        /// The raw code.
        code: i16,
        /// Which topic, partition or request it was for.
        what: String,
    },
    /// The cluster metadata has no such topic or partition, or no leader for it.
    #[error("no leader known for {topic}/{partition}")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A request had to go to a broker the cluster metadata does not list (or whose host
    /// does not resolve).
    #[error("broker {broker} is not in the cluster metadata")]
    UnknownBroker {
        /// The broker id.
        broker: i32,
    },
    /// The caller used the client outside its documented limits.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A retriable error persisted after `retries_max` attempts.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Turns a raw Kafka error code into `Ok(())` (code 0) or an error naming `what`.
    ///
    /// # Errors
    /// [`ClientError::Broker`] or [`ClientError::UnknownErrorCode`] for a non-zero code.
    pub fn check(code: i16, what: impl FnOnce() -> String) -> Result<(), ClientError> {
        if code == 0 {
            return Ok(());
        }
        Err(match ErrorCode::try_from(code) {
            Ok(code) => ClientError::Broker { code, what: what() },
            Err(_) => ClientError::UnknownErrorCode { code, what: what() },
        })
    }

    /// Whether retrying the same call after a metadata refresh may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::NoLeader { .. }
            | ClientError::UnknownBroker { .. } => true,
            ClientError::Broker { code, .. } => is_retriable_code(*code),
            _ => false,
        }
    }

    /// Whether the cached metadata is likely stale: the leader moved or is unknown, the
    /// topic is not (yet) known to the broker that answered, or the broker is gone. The
    /// caller refreshes metadata after the backoff before retrying; other retriable errors
    /// (a timeout, too few replicas) only wait.
    pub fn refreshes_metadata(&self) -> bool {
        match self {
            ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::NoLeader { .. }
            | ClientError::UnknownBroker { .. } => true,
            ClientError::Broker { code, .. } => matches!(
                code,
                ErrorCode::NotLeaderOrFollower
                    | ErrorCode::LeaderNotAvailable
                    | ErrorCode::UnknownTopicOrPartition
            ),
            _ => false,
        }
    }

    /// Whether a group request should look up the group's coordinator again and retry.
    pub fn finds_coordinator(&self) -> bool {
        matches!(
            self,
            ClientError::Broker {
                code: ErrorCode::NotCoordinator
                    | ErrorCode::CoordinatorNotAvailable
                    | ErrorCode::CoordinatorLoadInProgress,
                ..
            }
        )
    }
}

/// Kafka's retriable errors that the client recovers from by waiting (and refreshing metadata,
/// see [`ClientError::refreshes_metadata`]).
fn is_retriable_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderOrFollower
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::RequestTimedOut
            | ErrorCode::NetworkException
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::NotEnoughReplicasAfterAppend
            | ErrorCode::KafkaStorageError
            | ErrorCode::CorruptMessage
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(code: ErrorCode) -> ClientError {
        ClientError::Broker {
            code,
            what: "t/0".to_owned(),
        }
    }

    #[test]
    fn moved_leaders_and_broken_connections_refresh_metadata_and_retry() {
        let refresh = [
            broker(ErrorCode::NotLeaderOrFollower),
            broker(ErrorCode::LeaderNotAvailable),
            broker(ErrorCode::UnknownTopicOrPartition),
            ClientError::Closed {
                addr: "a".to_owned(),
                in_flight: 1,
            },
            ClientError::Io {
                addr: "a".to_owned(),
                source: std::io::Error::other("reset"),
            },
            ClientError::NoLeader {
                topic: "t".to_owned(),
                partition: 0,
            },
            ClientError::UnknownBroker { broker: 2 },
        ];
        for e in &refresh {
            assert!(e.refreshes_metadata(), "{e}");
            assert!(e.is_retriable(), "{e}");
        }
        assert_eq!(refresh.iter().filter(|e| e.refreshes_metadata()).count(), 7);
    }

    #[test]
    fn other_retriable_errors_wait_without_a_refresh_and_fatal_ones_do_neither() {
        for code in [ErrorCode::RequestTimedOut, ErrorCode::NotEnoughReplicas] {
            assert!(broker(code).is_retriable());
            assert!(!broker(code).refreshes_metadata());
        }
        for code in [
            ErrorCode::TopicAuthorizationFailed,
            ErrorCode::MessageTooLarge,
            ErrorCode::InvalidRecord,
            ErrorCode::OffsetOutOfRange,
        ] {
            assert!(!broker(code).is_retriable(), "{code:?}");
            assert!(!broker(code).refreshes_metadata(), "{code:?}");
        }
        assert!(!ClientError::InvalidArgument("x".to_owned()).refreshes_metadata());
    }

    #[test]
    fn coordinator_errors_find_the_coordinator_again() {
        assert!(broker(ErrorCode::NotCoordinator).finds_coordinator());
        assert!(broker(ErrorCode::CoordinatorNotAvailable).finds_coordinator());
        assert!(broker(ErrorCode::CoordinatorLoadInProgress).finds_coordinator());
        assert!(!broker(ErrorCode::NotLeaderOrFollower).finds_coordinator());
    }
}
