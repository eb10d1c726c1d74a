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
            ClientError::Io { .. } | ClientError::Closed { .. } | ClientError::NoLeader { .. } => {
                true
            }
            ClientError::Broker { code, .. } => is_retriable_code(*code),
            _ => false,
        }
    }
}

/// Kafka's retriable errors that a single-broker client can recover from by waiting and
/// refreshing metadata.
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
