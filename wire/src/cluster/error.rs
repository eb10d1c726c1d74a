//! Why bytes from a peer broker could not be decoded.

use crate::cluster::FrameKind;

/// Why a cluster frame or body was refused.
///
/// The first group (magic to [`ClusterError::CrcMismatch`]) comes from [`super::FrameDecoder`]
/// and means the byte stream cannot be trusted any more: the connection is closed. The rest come
/// from [`super::Body::decode`] and mean one well-framed frame has a bad body: the receiver
/// answers with an [`super::ErrorBody`] of [`ClusterError::error_code`], then closes, because a
/// peer that sends such frames runs code this side does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The first four bytes of a frame are not [`super::MAGIC`] (a Kafka client on the cluster
    /// port, or a stream that lost its place).
    #[error("bad cluster frame magic {found:#010x}")]
    BadMagic {
        /// What was there.
        found: u32,
    },
    /// The header's own CRC does not match: no field of it can be trusted, the length least.
    #[error("cluster frame header crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over the header.
        computed: u32,
    },
    /// The header names a protocol version this side does not accept (for this frame kind).
    #[error("unsupported cluster protocol version {version} (accepted {min}..={max})")]
    UnsupportedVersion {
        /// The version in the header.
        version: u16,
        /// Lowest version accepted.
        min: u16,
        /// Highest version accepted.
        max: u16,
    },
    /// The header names a frame kind this version does not define.
    #[error("unknown cluster frame kind {0}")]
    UnknownKind(u8),
    /// The header sets flags this version does not define.
    #[error("unknown cluster frame flags {0:#04x}")]
    UnknownFlags(u8),
    /// The payload length is over the decoder's `payload_bytes_max`.
    #[error("cluster frame payload of {payload_bytes} bytes exceeds payload_bytes_max {max}")]
    FrameTooLarge {
        /// Declared payload length.
        payload_bytes: usize,
        /// The configured limit.
        max: usize,
    },
    /// The frame CRC (header and payload) does not match.
    #[error("cluster frame crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over header and payload.
        computed: u32,
    },
    /// The payload ended before a field did.
    #[error("truncated cluster body: needed {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes were left after the last field of a body.
    #[error("{extra} trailing bytes after a {kind:?} body")]
    TrailingBytes {
        /// The body.
        kind: FrameKind,
        /// How many bytes were left.
        extra: usize,
    },
    /// A count or length is over its protocol limit.
    #[error("{what} of {count} exceeds its limit of {max}")]
    OverLimit {
        /// Which count or length.
        what: &'static str,
        /// The declared value.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A field holds a value the protocol does not allow.
    #[error("malformed {what}")]
    Malformed {
        /// Which field, and what is wrong with it.
        what: &'static str,
    },
    /// An error code Kafka (as of this version) does not define.
    #[error("unknown error code {0}")]
    UnknownErrorCode(i16),
    /// A controller request or response names an api this build does not define (a peer of a
    /// newer build).
    #[error("unknown controller api {0}")]
    UnknownControllerApi(u8),
}

impl ClusterError {
    /// The error code to put in the [`super::ErrorBody`] sent before closing the connection.
    pub fn error_code(&self) -> crate::ErrorCode {
        use crate::ErrorCode;
        match self {
            ClusterError::UnsupportedVersion { .. }
            | ClusterError::UnknownKind(_)
            | ClusterError::UnknownFlags(_)
            | ClusterError::UnknownControllerApi(_) => ErrorCode::UnsupportedVersion,
            ClusterError::FrameTooLarge { .. } => ErrorCode::MessageTooLarge,
            ClusterError::HeaderCrcMismatch { .. } | ClusterError::CrcMismatch { .. } => {
                ErrorCode::CorruptMessage
            }
            _ => ErrorCode::InvalidRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn errors_map_to_the_code_sent_in_an_error_frame() {
        let version = ClusterError::UnsupportedVersion {
            version: 9,
            min: 1,
            max: 1,
        };
        assert_eq!(version.error_code(), ErrorCode::UnsupportedVersion);
        let crc = ClusterError::CrcMismatch {
            stored: 1,
            computed: 2,
        };
        assert_eq!(crc.error_code(), ErrorCode::CorruptMessage);
        assert_eq!(
            ClusterError::Malformed { what: "x" }.error_code(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            crc.to_string(),
            "cluster frame crc mismatch: stored 0x00000001, computed 0x00000002"
        );
    }
}
