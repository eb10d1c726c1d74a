//! The handshake ([`Hello`]) and the [`ErrorBody`] frame.
//!
//! Hello (always framed in [`HELLO_VERSION`]; this layout never changes):
//!
//! | bytes   | field            |
//! |---------|------------------|
//! | 0..2    | versions_min     |
//! | 2..4    | versions_max     |
//! | 4..8    | node_id          |
//! | 8..16   | incarnation      |
//! | 16      | cluster_id_bytes (1..=[`CLUSTER_ID_BYTES_MAX`]) |
//! | 17..    | cluster_id, UTF-8 |
//!
//! Error:
//!
//! | bytes | field          |
//! |-------|----------------|
//! | 0..2  | error_code (a Kafka error code, never NONE) |
//! | 2..4  | message_bytes (0..=[`ERROR_MESSAGE_BYTES_MAX`]) |
//! | 4..   | message, UTF-8 |

use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::{I16, I32, U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::cluster::body::{over_limit, put_str16, Reader};
use crate::cluster::ClusterError;
#[cfg(doc)]
use crate::cluster::HELLO_VERSION;
use crate::ErrorCode;

/// Longest cluster id, in bytes (Kafka's are 22: a base64 UUID).
pub const CLUSTER_ID_BYTES_MAX: usize = 64;
/// Longest message in an [`ErrorBody`], in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

const _: () = assert!(CLUSTER_ID_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(ERROR_MESSAGE_BYTES_MAX <= u16::MAX as usize);

/// The handshake: the first frame each side sends on a new connection.
///
/// The dialing broker sends its Hello; the accepting broker checks it and answers with its own,
/// echoing the correlation id. Both then use [`negotiate_version`] for every later frame. Its
/// `node_id` must equal the header's sender ([`super::Body::decode`] checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The cluster the sender belongs to; a peer of another cluster is refused
    /// (`INCONSISTENT_CLUSTER_ID`).
    pub cluster_id: String,
    /// The sender's node id.
    pub node_id: i32,
    /// Changes every time the sender's process starts, so a peer can tell a restarted broker
    /// (whose in-memory state is gone) from a reconnecting one.
    pub incarnation: u64,
    /// Oldest protocol version the sender speaks (at least 1).
    pub versions_min: u16,
    /// Newest protocol version the sender speaks (at least `versions_min`).
    pub versions_max: u16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHello {
    versions_min: U16,
    versions_max: U16,
    node_id: I32,
    incarnation: U64,
    cluster_id_bytes: u8,
}

impl Hello {
    pub(crate) fn encoded_bytes(&self) -> usize {
        core::mem::size_of::<RawHello>() + self.cluster_id.len()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let len = self.cluster_id.len();
        assert!(
            (1..=CLUSTER_ID_BYTES_MAX).contains(&len),
            "cluster id length {len}"
        );
        assert!(1 <= self.versions_min && self.versions_min <= self.versions_max);
        let raw = RawHello {
            versions_min: U16::new(self.versions_min),
            versions_max: U16::new(self.versions_max),
            node_id: I32::new(self.node_id),
            incarnation: U64::new(self.incarnation),
            cluster_id_bytes: len as u8,
        };
        out.put_slice(raw.as_bytes());
        out.put_slice(self.cluster_id.as_bytes());
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<Hello, ClusterError> {
        let raw: &RawHello = reader.fixed()?;
        let (versions_min, versions_max) = (raw.versions_min.get(), raw.versions_max.get());
        if versions_min == 0 || versions_min > versions_max {
            return Err(ClusterError::Malformed {
                what: "hello version range",
            });
        }
        let len = usize::from(raw.cluster_id_bytes);
        if len == 0 {
            return Err(ClusterError::Malformed {
                what: "empty cluster id",
            });
        }
        over_limit("cluster id bytes", len, CLUSTER_ID_BYTES_MAX)?;
        let cluster_id = reader.str(len, "cluster id is not utf-8")?;
        let hello = Hello {
            cluster_id,
            node_id: raw.node_id.get(),
            incarnation: raw.incarnation.get(),
            versions_min,
            versions_max,
        };
        reader.finish()?;
        Ok(hello)
    }
}

/// The version both sides use after the handshake: the newest one both speak, or `None` when
/// the ranges do not meet (then the accepting side answers with an [`ErrorBody`] of
/// `UNSUPPORTED_VERSION` naming its range, and closes).
pub fn negotiate_version(ours_min: u16, ours_max: u16, theirs: &Hello) -> Option<u16> {
    let newest = ours_max.min(theirs.versions_max);
    (newest >= ours_min.max(theirs.versions_min)).then_some(newest)
}

/// Why a request failed, or why the sender is about to close the connection.
///
/// Its correlation id is the failed request's, or 0 for a connection-level error (a bad frame,
/// a failed handshake), after which the sender closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong, as a Kafka error code (never NONE).
    pub error_code: ErrorCode,
    /// For the peer's log.
    pub message: String,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawError {
    error_code: I16,
    message_bytes: U16,
}

impl ErrorBody {
    /// An error with `message` cut (at a character boundary) to [`ERROR_MESSAGE_BYTES_MAX`].
    ///
    /// # Panics
    /// If `error_code` is NONE.
    pub fn new(error_code: ErrorCode, message: &str) -> ErrorBody {
        assert_ne!(error_code, ErrorCode::None, "an error frame needs an error");
        let mut end = message.len().min(ERROR_MESSAGE_BYTES_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        ErrorBody {
            error_code,
            message: message[..end].to_owned(),
        }
    }

    pub(crate) fn encoded_bytes(&self) -> usize {
        core::mem::size_of::<RawError>() + self.message.len()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        assert_ne!(
            self.error_code,
            ErrorCode::None,
            "an error frame needs an error"
        );
        assert!(self.message.len() <= ERROR_MESSAGE_BYTES_MAX);
        out.put_i16(self.error_code.code());
        put_str16(out, &self.message);
    }

    pub(crate) fn decode(mut reader: Reader<'_>) -> Result<ErrorBody, ClusterError> {
        let raw: &RawError = reader.fixed()?;
        let error_code = decode_error_code(raw.error_code.get())?;
        if error_code == ErrorCode::None {
            return Err(ClusterError::Malformed {
                what: "error frame with error code NONE",
            });
        }
        let len = usize::from(raw.message_bytes.get());
        over_limit("error message bytes", len, ERROR_MESSAGE_BYTES_MAX)?;
        let message = reader.str(len, "error message is not utf-8")?;
        reader.finish()?;
        Ok(ErrorBody {
            error_code,
            message,
        })
    }
}

/// A Kafka error code from the wire; unknown codes are refused, not guessed at: a peer only
/// sends codes of the version both sides agreed on.
pub(crate) fn decode_error_code(code: i16) -> Result<ErrorCode, ClusterError> {
    ErrorCode::try_from(code).map_err(ClusterError::UnknownErrorCode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Body, FrameKind, VERSION_MAX, VERSION_MIN};
    use bytes::Bytes;

    fn hello() -> Hello {
        Hello {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            node_id: 2,
            incarnation: 0x0102_0304_0506_0708,
            versions_min: VERSION_MIN,
            versions_max: VERSION_MAX,
        }
    }

    fn encode(body: &Body) -> Bytes {
        let mut out = BytesMut::new();
        let mut records = Vec::new();
        body.encode_payload(1, &mut out, &mut records);
        assert!(records.is_empty());
        out.freeze()
    }

    #[test]
    fn hello_layout_is_as_documented() {
        let bytes = encode(&Body::Hello(hello()));
        assert_eq!(&bytes[0..2], &VERSION_MIN.to_be_bytes());
        assert_eq!(&bytes[2..4], &VERSION_MAX.to_be_bytes());
        assert_eq!(&bytes[4..8], &2i32.to_be_bytes());
        assert_eq!(&bytes[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[16], 22);
        assert_eq!(&bytes[17..], b"MkU3OEVBNTcwNTJENDM2Qk");
        assert_eq!(
            Body::decode_payload(FrameKind::Hello, 1, &bytes),
            Ok(Body::Hello(hello()))
        );
    }

    #[test]
    fn hello_with_a_bad_range_or_cluster_id_is_refused() {
        let good = encode(&Body::Hello(hello()));
        let with = |at: usize, byte: u8| {
            let mut bytes = good.to_vec();
            bytes[at] = byte;
            Body::decode_payload(FrameKind::Hello, 1, &Bytes::from(bytes))
        };
        // versions_min 0
        assert!(matches!(with(1, 0), Err(ClusterError::Malformed { .. })));
        // versions_min 0x0101 > versions_max
        assert!(matches!(with(0, 1), Err(ClusterError::Malformed { .. })));
        assert!(matches!(with(16, 0), Err(ClusterError::Malformed { .. })));
        assert!(matches!(
            with(16, 65),
            Err(ClusterError::OverLimit { count: 65, .. })
        ));
        assert!(matches!(with(16, 23), Err(ClusterError::Truncated { .. })));
        assert!(matches!(
            with(16, 21),
            Err(ClusterError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            with(17, 0xff),
            Err(ClusterError::Malformed { .. })
        ));
    }

    #[test]
    fn negotiation_picks_the_newest_common_version() {
        let mut theirs = hello();
        (theirs.versions_min, theirs.versions_max) = (1, 3);
        assert_eq!(negotiate_version(1, 2, &theirs), Some(2));
        assert_eq!(negotiate_version(2, 5, &theirs), Some(3));
        assert_eq!(negotiate_version(4, 5, &theirs), None);
        (theirs.versions_min, theirs.versions_max) = (3, 3);
        assert_eq!(negotiate_version(1, 2, &theirs), None);
    }

    #[test]
    fn error_body_round_trips_and_refuses_none_and_unknown_codes() {
        let error = ErrorBody::new(ErrorCode::InconsistentClusterId, "cluster id differs");
        let bytes = encode(&Body::Error(error.clone()));
        assert_eq!(&bytes[..2], &104i16.to_be_bytes());
        assert_eq!(
            Body::decode_payload(FrameKind::Error, 1, &bytes),
            Ok(Body::Error(error))
        );
        let mut bytes = bytes.to_vec();
        bytes[..2].copy_from_slice(&0i16.to_be_bytes());
        assert!(matches!(
            Body::decode_payload(FrameKind::Error, 1, &Bytes::from(bytes.clone())),
            Err(ClusterError::Malformed { .. })
        ));
        bytes[..2].copy_from_slice(&999i16.to_be_bytes());
        assert_eq!(
            Body::decode_payload(FrameKind::Error, 1, &Bytes::from(bytes)),
            Err(ClusterError::UnknownErrorCode(999))
        );
    }

    #[test]
    fn error_message_is_cut_at_a_character_boundary() {
        let long = "é".repeat(ERROR_MESSAGE_BYTES_MAX); // 2 bytes each
        let error = ErrorBody::new(ErrorCode::InvalidRequest, &long);
        assert_eq!(error.message.len(), ERROR_MESSAGE_BYTES_MAX);
        let odd = format!("x{long}");
        let error = ErrorBody::new(ErrorCode::InvalidRequest, &odd);
        assert_eq!(error.message.len(), ERROR_MESSAGE_BYTES_MAX - 1);
    }
}
