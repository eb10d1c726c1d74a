//! Typed frame bodies, and the bounded reader every body decoder uses.

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use crate::cluster::{
    ClusterError, ControllerRequest, ControllerResponse, EpochEndOffsetRequest,
    EpochEndOffsetResponse, ErrorBody, Frame, FrameKind, Hello, MetadataFetchRequest,
    MetadataFetchResponse, ReplicaFetchRequest, ReplicaFetchResponse, TxnMarkersRequest,
    TxnMarkersResponse, TxnVerifyRequest, TxnVerifyResponse, RAFT_MESSAGE_BYTES_MAX,
};

/// One encoded Raft message, opaque here: the controller crate encodes and decodes it. The
/// payload is the message, nothing else (the header already says how long it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raft {
    /// The encoded message: a slice of the read buffer when decoded.
    pub message: Bytes,
}

impl Raft {
    fn decode(payload: &Bytes) -> Result<Raft, ClusterError> {
        if payload.is_empty() {
            return Err(ClusterError::Malformed {
                what: "empty raft message",
            });
        }
        // The frame decoder bounds payloads already; this holds for any caller of decode_payload.
        over_limit("raft message bytes", payload.len(), RAFT_MESSAGE_BYTES_MAX)?;
        Ok(Raft {
            message: payload.clone(),
        })
    }
}

/// The body of a frame, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// [`FrameKind::Hello`].
    Hello(Hello),
    /// [`FrameKind::Raft`].
    Raft(Raft),
    /// [`FrameKind::ReplicaFetchRequest`].
    ReplicaFetchRequest(ReplicaFetchRequest),
    /// [`FrameKind::ReplicaFetchResponse`].
    ReplicaFetchResponse(ReplicaFetchResponse),
    /// [`FrameKind::EpochEndOffsetRequest`].
    EpochEndOffsetRequest(EpochEndOffsetRequest),
    /// [`FrameKind::EpochEndOffsetResponse`].
    EpochEndOffsetResponse(EpochEndOffsetResponse),
    /// [`FrameKind::Error`].
    Error(ErrorBody),
    /// [`FrameKind::ControllerRequest`].
    ControllerRequest(ControllerRequest),
    /// [`FrameKind::ControllerResponse`].
    ControllerResponse(ControllerResponse),
    /// [`FrameKind::MetadataFetchRequest`].
    MetadataFetchRequest(MetadataFetchRequest),
    /// [`FrameKind::MetadataFetchResponse`].
    MetadataFetchResponse(MetadataFetchResponse),
    /// [`FrameKind::TxnMarkersRequest`].
    TxnMarkersRequest(TxnMarkersRequest),
    /// [`FrameKind::TxnMarkersResponse`].
    TxnMarkersResponse(TxnMarkersResponse),
    /// [`FrameKind::TxnVerifyRequest`].
    TxnVerifyRequest(TxnVerifyRequest),
    /// [`FrameKind::TxnVerifyResponse`].
    TxnVerifyResponse(TxnVerifyResponse),
}

impl Body {
    /// The frame kind that carries this body.
    pub fn kind(&self) -> FrameKind {
        match self {
            Body::Hello(_) => FrameKind::Hello,
            Body::Raft(_) => FrameKind::Raft,
            Body::ReplicaFetchRequest(_) => FrameKind::ReplicaFetchRequest,
            Body::ReplicaFetchResponse(_) => FrameKind::ReplicaFetchResponse,
            Body::EpochEndOffsetRequest(_) => FrameKind::EpochEndOffsetRequest,
            Body::EpochEndOffsetResponse(_) => FrameKind::EpochEndOffsetResponse,
            Body::Error(_) => FrameKind::Error,
            Body::ControllerRequest(_) => FrameKind::ControllerRequest,
            Body::ControllerResponse(_) => FrameKind::ControllerResponse,
            Body::MetadataFetchRequest(_) => FrameKind::MetadataFetchRequest,
            Body::MetadataFetchResponse(_) => FrameKind::MetadataFetchResponse,
            Body::TxnMarkersRequest(_) => FrameKind::TxnMarkersRequest,
            Body::TxnMarkersResponse(_) => FrameKind::TxnMarkersResponse,
            Body::TxnVerifyRequest(_) => FrameKind::TxnVerifyRequest,
            Body::TxnVerifyResponse(_) => FrameKind::TxnVerifyResponse,
        }
    }

    /// Decodes a frame's payload as the body its kind says, and checks what the body and the
    /// header both say (a Hello's node id is its sender's).
    ///
    /// # Errors
    /// As [`Body::decode_payload`]; [`ClusterError::Malformed`] if a Hello's node id is not the
    /// header's sender.
    pub fn decode(frame: &Frame) -> Result<Body, ClusterError> {
        let body = Body::decode_payload(frame.kind, frame.envelope.version, &frame.payload)?;
        if let Body::Hello(hello) = &body {
            if hello.node_id != frame.envelope.sender_node_id {
                return Err(ClusterError::Malformed {
                    what: "hello node id is not the frame's sender",
                });
            }
        }
        Ok(body)
    }

    /// Decodes `payload` as a body of `kind` in protocol `version`. Byte fields (records, Raft
    /// messages) are slices of `payload`, not copies.
    ///
    /// Strict: a body is accepted only if encoding it again gives exactly `payload`.
    ///
    /// # Errors
    /// [`ClusterError::UnsupportedVersion`] for a version this build does not speak,
    /// [`ClusterError::Truncated`], [`ClusterError::TrailingBytes`], [`ClusterError::OverLimit`],
    /// [`ClusterError::Malformed`], [`ClusterError::UnknownErrorCode`],
    /// [`ClusterError::UnknownControllerApi`].
    pub fn decode_payload(
        kind: FrameKind,
        version: u16,
        payload: &Bytes,
    ) -> Result<Body, ClusterError> {
        check_version(kind, version)?;
        // Every version so far has one layout per kind; a version 2 would branch here.
        let body = match kind {
            FrameKind::Hello => Body::Hello(Hello::decode(Reader::new(kind, payload))?),
            FrameKind::Raft => Body::Raft(Raft::decode(payload)?),
            FrameKind::ReplicaFetchRequest => {
                Body::ReplicaFetchRequest(ReplicaFetchRequest::decode(Reader::new(kind, payload))?)
            }
            FrameKind::ReplicaFetchResponse => Body::ReplicaFetchResponse(
                ReplicaFetchResponse::decode(Reader::new(kind, payload))?,
            ),
            FrameKind::EpochEndOffsetRequest => Body::EpochEndOffsetRequest(
                EpochEndOffsetRequest::decode(Reader::new(kind, payload))?,
            ),
            FrameKind::EpochEndOffsetResponse => Body::EpochEndOffsetResponse(
                EpochEndOffsetResponse::decode(Reader::new(kind, payload))?,
            ),
            FrameKind::Error => Body::Error(ErrorBody::decode(Reader::new(kind, payload))?),
            FrameKind::ControllerRequest => {
                Body::ControllerRequest(ControllerRequest::decode(Reader::new(kind, payload))?)
            }
            FrameKind::ControllerResponse => {
                Body::ControllerResponse(ControllerResponse::decode(Reader::new(kind, payload))?)
            }
            FrameKind::MetadataFetchRequest => Body::MetadataFetchRequest(
                MetadataFetchRequest::decode(Reader::new(kind, payload))?,
            ),
            FrameKind::MetadataFetchResponse => Body::MetadataFetchResponse(
                MetadataFetchResponse::decode(Reader::new(kind, payload))?,
            ),
            FrameKind::TxnMarkersRequest => {
                Body::TxnMarkersRequest(TxnMarkersRequest::decode(Reader::new(kind, payload))?)
            }
            FrameKind::TxnMarkersResponse => {
                Body::TxnMarkersResponse(TxnMarkersResponse::decode(Reader::new(kind, payload))?)
            }
            FrameKind::TxnVerifyRequest => {
                Body::TxnVerifyRequest(TxnVerifyRequest::decode(Reader::new(kind, payload))?)
            }
            FrameKind::TxnVerifyResponse => {
                Body::TxnVerifyResponse(TxnVerifyResponse::decode(Reader::new(kind, payload))?)
            }
        };
        Ok(body)
    }

    /// Writes the payload: framing into `out`, record data (not copied) pushed onto `records`,
    /// to follow `out` in that order.
    pub(crate) fn encode_payload(
        &self,
        version: u16,
        out: &mut BytesMut,
        records: &mut Vec<Bytes>,
    ) {
        assert!(check_version(self.kind(), version).is_ok());
        match self {
            Body::Hello(hello) => hello.encode(out),
            Body::Raft(raft) => {
                assert!(!raft.message.is_empty(), "empty raft message");
                assert!(raft.message.len() <= RAFT_MESSAGE_BYTES_MAX);
                // Opaque and possibly large: sent as its own part, not copied into the framing.
                records.push(raft.message.clone());
            }
            Body::ReplicaFetchRequest(request) => request.encode(out),
            Body::ReplicaFetchResponse(response) => response.encode(out, records),
            Body::EpochEndOffsetRequest(request) => request.encode(out),
            Body::EpochEndOffsetResponse(response) => response.encode(out),
            Body::Error(error) => error.encode(out),
            Body::ControllerRequest(request) => request.encode(out),
            Body::ControllerResponse(response) => response.encode(out),
            Body::MetadataFetchRequest(request) => request.encode(out),
            Body::MetadataFetchResponse(response) => response.encode(out, records),
            Body::TxnMarkersRequest(request) => request.encode(out),
            Body::TxnMarkersResponse(response) => response.encode(out),
            Body::TxnVerifyRequest(request) => request.encode(out),
            Body::TxnVerifyResponse(response) => response.encode(out),
        }
    }

    /// Framing bytes to reserve up front, so encoding allocates once.
    pub(crate) fn framing_bytes_hint(&self) -> usize {
        match self {
            Body::Hello(hello) => hello.encoded_bytes(),
            Body::Raft(_) => 0,
            Body::ReplicaFetchRequest(request) => request.encoded_bytes(),
            Body::ReplicaFetchResponse(response) => response.framing_bytes(),
            Body::EpochEndOffsetRequest(request) => request.encoded_bytes(),
            Body::EpochEndOffsetResponse(response) => response.encoded_bytes(),
            Body::Error(error) => error.encoded_bytes(),
            Body::ControllerRequest(request) => request.encoded_bytes(),
            Body::ControllerResponse(response) => response.encoded_bytes(),
            Body::MetadataFetchRequest(request) => request.encoded_bytes(),
            Body::MetadataFetchResponse(response) => response.encoded_bytes(),
            Body::TxnMarkersRequest(request) => request.encoded_bytes(),
            Body::TxnMarkersResponse(response) => response.encoded_bytes(),
            Body::TxnVerifyRequest(request) => request.encoded_bytes(),
            Body::TxnVerifyResponse(response) => response.encoded_bytes(),
        }
    }
}

fn check_version(kind: FrameKind, version: u16) -> Result<(), ClusterError> {
    use crate::cluster::{HELLO_VERSION, VERSION_MAX, VERSION_MIN};
    let (min, max) = match kind {
        FrameKind::Hello => (HELLO_VERSION, HELLO_VERSION),
        _ => (VERSION_MIN, VERSION_MAX),
    };
    if (min..=max).contains(&version) {
        Ok(())
    } else {
        Err(ClusterError::UnsupportedVersion { version, min, max })
    }
}

/// `Err(OverLimit)` if `count` is over `max`.
pub(crate) fn over_limit(what: &'static str, count: usize, max: usize) -> Result<(), ClusterError> {
    if count > max {
        return Err(ClusterError::OverLimit {
            what,
            count: count as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// A cursor over a payload that never panics and never reserves more than the bytes it has.
///
/// Fixed-size parts are read as zerocopy structs pointing into the payload; byte fields come out
/// as `Bytes` slices of it.
pub(crate) struct Reader<'a> {
    kind: FrameKind,
    payload: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(kind: FrameKind, payload: &'a Bytes) -> Reader<'a> {
        Reader {
            kind,
            payload,
            at: 0,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.payload.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ClusterError> {
        let available = self.remaining();
        if n > available {
            return Err(ClusterError::Truncated {
                needed: n,
                available,
            });
        }
        let payload: &'a [u8] = &self.payload[..];
        let bytes = &payload[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    /// A fixed-size struct, read in place.
    pub(crate) fn fixed<T>(&mut self) -> Result<&'a T, ClusterError>
    where
        T: FromBytes + KnownLayout + Immutable + Unaligned,
    {
        let bytes = self.take(core::mem::size_of::<T>())?;
        Ok(T::ref_from_bytes(bytes).expect("an unaligned struct fits its own size"))
    }

    /// `count` fixed-size entries, read in place. The caller has bounded `count` by its limit;
    /// the bytes are checked here before anything is built from them.
    pub(crate) fn entries<T>(&mut self, count: usize) -> Result<&'a [T], ClusterError>
    where
        T: FromBytes + KnownLayout + Immutable + Unaligned,
    {
        let size = core::mem::size_of::<T>();
        let bytes = count
            .checked_mul(size)
            .filter(|&n| n <= self.remaining())
            .ok_or(ClusterError::Truncated {
                needed: count.saturating_mul(size),
                available: self.remaining(),
            })?;
        let bytes = self.take(bytes)?;
        Ok(<[T]>::ref_from_bytes(bytes).expect("whole unaligned entries"))
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, ClusterError> {
        Ok(self.take(1)?[0])
    }

    /// A boolean: one byte, 0 or 1; anything else is [`ClusterError::Malformed`] (`what`), so
    /// that an accepted body encodes back to the same bytes.
    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, ClusterError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ClusterError::Malformed { what }),
        }
    }

    /// `Err(Truncated)` unless `count` entries of at least `entry_bytes_min` bytes each could
    /// fit in what is left: called before reserving for a list of variable-size entries.
    pub(crate) fn room_for(
        &self,
        count: usize,
        entry_bytes_min: usize,
    ) -> Result<(), ClusterError> {
        let needed = count.saturating_mul(entry_bytes_min);
        let available = self.remaining();
        if needed > available {
            return Err(ClusterError::Truncated { needed, available });
        }
        Ok(())
    }

    /// `n` bytes as a slice of the payload (no copy).
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, ClusterError> {
        let from = self.at;
        self.take(n)?;
        Ok(self.payload.slice(from..from + n))
    }

    /// `n` bytes of UTF-8.
    pub(crate) fn str(&mut self, n: usize, what: &'static str) -> Result<String, ClusterError> {
        let bytes = self.take(n)?;
        let s = core::str::from_utf8(bytes).map_err(|_| ClusterError::Malformed { what })?;
        Ok(s.to_owned())
    }

    /// Ends the body: every byte must have been read.
    pub(crate) fn finish(self) -> Result<(), ClusterError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(ClusterError::TrailingBytes {
                kind: self.kind,
                extra,
            }),
        }
    }
}

/// Writes a length-prefixed (u16) UTF-8 string.
pub(crate) fn put_str16(out: &mut BytesMut, s: &str) {
    let len = u16::try_from(s.len()).expect("string longer than u16::MAX");
    out.put_u16(len);
    out.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_messages_are_opaque_and_not_copied() {
        let payload = Bytes::from_static(b"\x01\x02raft");
        let Body::Raft(raft) = Body::decode_payload(FrameKind::Raft, 1, &payload).unwrap() else {
            panic!("not raft")
        };
        assert_eq!(raft.message, payload);
        assert_eq!(raft.message.as_ptr(), payload.as_ptr());
        assert_eq!(
            Body::decode_payload(FrameKind::Raft, 1, &Bytes::new()),
            Err(ClusterError::Malformed {
                what: "empty raft message"
            })
        );
    }

    #[test]
    fn a_version_this_build_does_not_speak_is_refused_by_the_body_decoder_too() {
        let payload = Bytes::from_static(b"x");
        assert!(matches!(
            Body::decode_payload(FrameKind::Raft, 0, &payload),
            Err(ClusterError::UnsupportedVersion { version: 0, .. })
        ));
    }

    #[test]
    fn reader_refuses_counts_whose_bytes_are_not_there() {
        #[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
        #[repr(C)]
        struct Pair([u8; 2]);
        let payload = Bytes::from_static(&[1, 2, 3]);
        let mut reader = Reader::new(FrameKind::Raft, &payload);
        assert_eq!(
            reader.entries::<Pair>(usize::MAX).err(),
            Some(ClusterError::Truncated {
                needed: usize::MAX,
                available: 3
            })
        );
        assert_eq!(reader.entries::<Pair>(1).unwrap()[0].0, [1, 2]);
        assert_eq!(
            reader.finish(),
            Err(ClusterError::TrailingBytes {
                kind: FrameKind::Raft,
                extra: 1
            })
        );
    }
}
