//! Cluster frames: a fixed 32-byte header, then the payload.
//!
//! Layout (big-endian, every field unaligned):
//!
//! | bytes  | field            | notes |
//! |--------|------------------|-------|
//! | 0..4   | magic            | [`MAGIC`], `"SPCL"` |
//! | 4..6   | version          | protocol version the payload is encoded in |
//! | 6      | kind             | [`FrameKind`] |
//! | 7      | flags            | none defined; must be 0 |
//! | 8..12  | payload_bytes    | bytes after the header, at most [`super::CLUSTER_PAYLOAD_BYTES_MAX`] |
//! | 12..20 | correlation_id   | chosen by a request's sender, echoed by its response |
//! | 20..24 | sender_node_id   | the sending broker's node id |
//! | 24..28 | crc              | CRC-32 (IEEE) of bytes 0..24, then the payload |
//! | 28..32 | header_crc       | CRC-32 (IEEE) of bytes 0..28 |
//!
//! Big-endian, like every other format in this crate (Kafka's protocol, record batches), so a
//! hex dump of the cluster port reads the same way as one of the client port; a byte swap costs
//! nothing next to the CRC the receiver computes over every byte anyway.
//!
//! Two CRCs, because a length must be trusted before the payload arrives: `header_crc` lets the
//! decoder refuse a header with a flipped bit at once, instead of reserving and waiting for a
//! payload whose length is garbage; `crc` covers the header's fields again (so a frame is only
//! whole with both) and every payload byte, record batches included: a batch's own CRC-32C
//! leaves its first 21 bytes (base offset, length, leader epoch) uncovered.
//!
//! The header layout is frozen for this magic: every version has the same 32 bytes, so any
//! peer can read any header and learn the version before the payload. A header change needs a
//! new magic.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use zerocopy::byteorder::big_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::cluster::{
    Body, ClusterError, CLUSTER_PAYLOAD_BYTES_MAX, HELLO_VERSION, VERSION_MAX, VERSION_MIN,
};

/// The first four bytes of every cluster frame: `"SPCL"` (Spate cluster). As a Kafka size
/// prefix it would be 1.4 GB, so a Kafka client on this port is refused at its first bytes.
pub const MAGIC: u32 = u32::from_be_bytes(*b"SPCL");
/// Bytes of the fixed frame header.
pub const FRAME_HEADER_BYTES: usize = 32;
/// Bytes at the front of the header that the frame `crc` covers (all fields before it).
const CRC_COVERED_HEADER_BYTES: usize = 24;
/// Bytes at the front of the header that `header_crc` covers (everything before it).
const HEADER_CRC_COVERED_BYTES: usize = 28;
/// Bytes of the magic, checked as soon as they arrive.
const MAGIC_BYTES: usize = 4;

const _: () = assert!(core::mem::size_of::<RawHeader>() == FRAME_HEADER_BYTES);
const _: () = assert!(core::mem::offset_of!(RawHeader, crc) == CRC_COVERED_HEADER_BYTES);
const _: () = assert!(core::mem::offset_of!(RawHeader, header_crc) == HEADER_CRC_COVERED_BYTES);

/// The header exactly as on the wire, so a `&RawHeader` can point into the read buffer.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
struct RawHeader {
    magic: U32,
    version: U16,
    kind: u8,
    flags: u8,
    payload_bytes: U32,
    correlation_id: U64,
    sender_node_id: I32,
    crc: U32,
    header_crc: U32,
}

/// What a frame carries; the header's `kind` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// The handshake, first frame each way: [`super::Hello`].
    Hello = 1,
    /// One encoded Raft message, one-way: [`super::Raft`].
    Raft = 2,
    /// A follower asks its leader for records: [`super::ReplicaFetchRequest`].
    ReplicaFetchRequest = 3,
    /// The leader's answer: [`super::ReplicaFetchResponse`].
    ReplicaFetchResponse = 4,
    /// A follower asks where an epoch ends (truncation): [`super::EpochEndOffsetRequest`].
    EpochEndOffsetRequest = 5,
    /// The leader's answer: [`super::EpochEndOffsetResponse`].
    EpochEndOffsetResponse = 6,
    /// A request failed or the peer is about to close: [`super::ErrorBody`].
    Error = 7,
    /// A broker asks the controller quorum (register, heartbeat, forwarded topic changes,
    /// producer ids): [`super::ControllerRequest`]. Added within version 1, see
    /// `docs/CLUSTER-PROTOCOL.md`.
    ControllerRequest = 8,
    /// The controller's answer: [`super::ControllerResponse`].
    ControllerResponse = 9,
    /// An observer (a broker that is not a voter) asks a voter for committed metadata
    /// records: [`super::MetadataFetchRequest`]. Added within version 1 like kind 8.
    MetadataFetchRequest = 10,
    /// The voter's answer: [`super::MetadataFetchResponse`].
    MetadataFetchResponse = 11,
    /// A transaction coordinator asks a partition leader to write markers:
    /// [`super::TxnMarkersRequest`]. Added within version 1 like kind 8.
    TxnMarkersRequest = 12,
    /// The leader's answer: [`super::TxnMarkersResponse`].
    TxnMarkersResponse = 13,
    /// A partition leader asks a transactional id's coordinator which partitions are in the
    /// producer's transaction: [`super::TxnVerifyRequest`]. Added within version 1 like kind 8.
    TxnVerifyRequest = 14,
    /// The coordinator's answer: [`super::TxnVerifyResponse`].
    TxnVerifyResponse = 15,
}

impl FrameKind {
    /// Every kind, in wire order.
    pub const ALL: [FrameKind; 15] = [
        FrameKind::Hello,
        FrameKind::Raft,
        FrameKind::ReplicaFetchRequest,
        FrameKind::ReplicaFetchResponse,
        FrameKind::EpochEndOffsetRequest,
        FrameKind::EpochEndOffsetResponse,
        FrameKind::Error,
        FrameKind::ControllerRequest,
        FrameKind::ControllerResponse,
        FrameKind::MetadataFetchRequest,
        FrameKind::MetadataFetchResponse,
        FrameKind::TxnMarkersRequest,
        FrameKind::TxnMarkersResponse,
        FrameKind::TxnVerifyRequest,
        FrameKind::TxnVerifyResponse,
    ];

    /// The byte in the header.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for FrameKind {
    type Error = ClusterError;

    fn try_from(code: u8) -> Result<FrameKind, ClusterError> {
        FrameKind::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
            .ok_or(ClusterError::UnknownKind(code))
    }
}

/// The header fields a sender chooses, besides the kind (which the body decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// Protocol version of the payload: [`HELLO_VERSION`] for Hello, else the negotiated one.
    pub version: u16,
    /// Matches a response to its request; a sender gives each request in flight its own.
    pub correlation_id: u64,
    /// The sending broker.
    pub sender_node_id: i32,
}

impl Envelope {
    /// The envelope of a Hello frame, always in [`HELLO_VERSION`].
    pub fn hello(sender_node_id: i32, correlation_id: u64) -> Envelope {
        Envelope {
            version: HELLO_VERSION,
            correlation_id,
            sender_node_id,
        }
    }
}

/// A whole frame, header checked, both CRCs verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Version, correlation id and sender.
    pub envelope: Envelope,
    /// What the payload is.
    pub kind: FrameKind,
    /// The payload: a slice of the read buffer, not a copy.
    pub payload: Bytes,
}

/// A header that passed every check but the frame CRC.
#[derive(Debug, Clone, Copy)]
struct CheckedHeader {
    payload_bytes: usize,
    crc: u32,
    kind: FrameKind,
    envelope: Envelope,
}

/// Splits whole cluster frames off a connection's read buffer.
///
/// Stateless between calls, like [`crate::frame::FrameDecoder`]: the caller reads into a
/// `BytesMut` and asks for frames. Any error means the stream can no longer be trusted; the
/// buffer is left as it was and the caller closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    payload_bytes_max: usize,
    version_min: u16,
    version_max: u16,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(CLUSTER_PAYLOAD_BYTES_MAX)
    }
}

impl FrameDecoder {
    /// A decoder accepting every version this build speaks and payloads up to
    /// `payload_bytes_max`.
    ///
    /// # Panics
    /// If `payload_bytes_max` exceeds [`CLUSTER_PAYLOAD_BYTES_MAX`].
    pub fn new(payload_bytes_max: usize) -> FrameDecoder {
        assert!(payload_bytes_max <= CLUSTER_PAYLOAD_BYTES_MAX);
        FrameDecoder {
            payload_bytes_max,
            version_min: VERSION_MIN,
            version_max: VERSION_MAX,
        }
    }

    /// The same decoder accepting only `min..=max` (after the handshake: the negotiated
    /// version). Hello frames are still accepted in [`HELLO_VERSION`].
    ///
    /// # Panics
    /// If the range is empty or outside what this build speaks.
    #[must_use]
    pub fn with_versions(self, min: u16, max: u16) -> FrameDecoder {
        assert!(VERSION_MIN <= min && min <= max && max <= VERSION_MAX);
        FrameDecoder {
            version_min: min,
            version_max: max,
            ..self
        }
    }

    /// The configured payload limit.
    pub fn payload_bytes_max(&self) -> usize {
        self.payload_bytes_max
    }

    /// Takes the next whole frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Then, once the header is in and checked,
    /// `buf` has been reserved to hold the rest of the frame: at most one frame of
    /// [`FRAME_HEADER_BYTES`] plus `payload_bytes_max`, never a size the header CRC did not vouch
    /// for.
    ///
    /// # Errors
    /// [`ClusterError::BadMagic`] as soon as four bytes are in; then, once the header is in,
    /// [`ClusterError::HeaderCrcMismatch`], [`ClusterError::UnknownKind`],
    /// [`ClusterError::UnsupportedVersion`], [`ClusterError::UnknownFlags`],
    /// [`ClusterError::FrameTooLarge`]; once the payload is in, [`ClusterError::CrcMismatch`].
    /// On error `buf` is left as it was.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, ClusterError> {
        let Some(header) = self.check_header(buf)? else {
            return Ok(None);
        };
        let frame_bytes = FRAME_HEADER_BYTES + header.payload_bytes;
        if buf.len() < frame_bytes {
            // Bounded: check_header refused payloads over payload_bytes_max.
            buf.reserve(frame_bytes - buf.len());
            return Ok(None);
        }
        let computed = frame_crc(
            &buf[..FRAME_HEADER_BYTES],
            &[&buf[FRAME_HEADER_BYTES..frame_bytes]],
        );
        if computed != header.crc {
            return Err(ClusterError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        buf.advance(FRAME_HEADER_BYTES);
        let payload = buf.split_to(header.payload_bytes).freeze();
        Ok(Some(Frame {
            envelope: header.envelope,
            kind: header.kind,
            payload,
        }))
    }

    /// How many more bytes the frame at the front of `buf` needs: 0 if it is whole, at least 1
    /// otherwise (the rest of the header if that is not in yet).
    ///
    /// # Errors
    /// As [`FrameDecoder::decode`], except the frame CRC, which is only checked by `decode`.
    pub fn bytes_missing(&self, buf: &[u8]) -> Result<usize, ClusterError> {
        match self.check_header(buf)? {
            None => Ok(FRAME_HEADER_BYTES - buf.len()),
            Some(header) => {
                Ok((FRAME_HEADER_BYTES + header.payload_bytes).saturating_sub(buf.len()))
            }
        }
    }

    /// Every check that needs only the header, in the order that reports the most useful
    /// error: magic first (is this our protocol at all), then the header CRC (can any field be
    /// believed), then the fields.
    fn check_header(&self, buf: &[u8]) -> Result<Option<CheckedHeader>, ClusterError> {
        if let Some(magic) = buf.get(..MAGIC_BYTES) {
            let found = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
            if found != MAGIC {
                return Err(ClusterError::BadMagic { found });
            }
        }
        let Some(head) = buf.get(..FRAME_HEADER_BYTES) else {
            return Ok(None);
        };
        let raw = RawHeader::ref_from_bytes(head).expect("32 bytes make an unaligned header");
        let computed = crc32fast::hash(&head[..HEADER_CRC_COVERED_BYTES]);
        if computed != raw.header_crc.get() {
            return Err(ClusterError::HeaderCrcMismatch {
                stored: raw.header_crc.get(),
                computed,
            });
        }
        let kind = FrameKind::try_from(raw.kind)?;
        let version = raw.version.get();
        let (min, max) = match kind {
            FrameKind::Hello => (HELLO_VERSION, HELLO_VERSION),
            _ => (self.version_min, self.version_max),
        };
        if !(min..=max).contains(&version) {
            return Err(ClusterError::UnsupportedVersion { version, min, max });
        }
        if raw.flags != 0 {
            return Err(ClusterError::UnknownFlags(raw.flags));
        }
        let payload_bytes = raw.payload_bytes.get() as usize;
        if payload_bytes > self.payload_bytes_max {
            return Err(ClusterError::FrameTooLarge {
                payload_bytes,
                max: self.payload_bytes_max,
            });
        }
        Ok(Some(CheckedHeader {
            payload_bytes,
            crc: raw.crc.get(),
            kind,
            envelope: Envelope {
                version,
                correlation_id: raw.correlation_id.get(),
                sender_node_id: raw.sender_node_id.get(),
            },
        }))
    }
}

/// The frame CRC: the header's fields before `crc`, then every payload part in order.
fn frame_crc(header: &[u8], payload_parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CRC_COVERED_HEADER_BYTES]);
    for part in payload_parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// An encoded frame: buffers to send in order, with one vectored write.
///
/// `parts[0]` is the header and all the framing; any further parts are the record chunks of a
/// [`super::ReplicaFetchResponse`] or the message of a [`super::Raft`] frame: the caller's own
/// `Bytes`, not copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Send these in order.
    pub parts: Vec<Bytes>,
    /// Total bytes of all parts.
    pub frame_bytes: usize,
}

impl EncodedFrame {
    /// All parts in one buffer. Copies the record data: for tests and small frames only.
    pub fn to_bytes(&self) -> Bytes {
        if let [only] = &self.parts[..] {
            return only.clone();
        }
        let mut out = BytesMut::with_capacity(self.frame_bytes);
        for part in &self.parts {
            out.put_slice(part);
        }
        out.freeze()
    }
}

/// Encodes `body` as one frame from `envelope`'s sender.
///
/// # Panics
/// If the envelope's version is not one this build speaks ([`HELLO_VERSION`] for a Hello), or the
/// body breaks one of its limits (too many partitions, records over
/// [`super::REPLICA_FETCH_RECORDS_BYTES_MAX`], a cluster id too long...): bodies are built by
/// this broker, so that is a programmer error.
pub fn encode_frame(envelope: &Envelope, body: &Body) -> EncodedFrame {
    let kind = body.kind();
    match kind {
        FrameKind::Hello => assert_eq!(envelope.version, HELLO_VERSION, "hello version"),
        _ => assert!(
            (VERSION_MIN..=VERSION_MAX).contains(&envelope.version),
            "version {} not spoken",
            envelope.version
        ),
    }
    let mut head = BytesMut::with_capacity(FRAME_HEADER_BYTES + body.framing_bytes_hint());
    head.put_bytes(0, FRAME_HEADER_BYTES);
    let mut records = Vec::new();
    body.encode_payload(envelope.version, &mut head, &mut records);
    let records_bytes: usize = records.iter().map(Bytes::len).sum();
    let payload_bytes = head.len() - FRAME_HEADER_BYTES + records_bytes;
    assert!(
        payload_bytes <= CLUSTER_PAYLOAD_BYTES_MAX,
        "{kind:?} payload of {payload_bytes} bytes over the limit"
    );

    let raw = RawHeader {
        magic: U32::new(MAGIC),
        version: U16::new(envelope.version),
        kind: kind.code(),
        flags: 0,
        payload_bytes: U32::new(payload_bytes as u32),
        correlation_id: U64::new(envelope.correlation_id),
        sender_node_id: I32::new(envelope.sender_node_id),
        crc: U32::ZERO,
        header_crc: U32::ZERO,
    };
    head[..FRAME_HEADER_BYTES].copy_from_slice(raw.as_bytes());
    let mut payload_parts: Vec<&[u8]> = Vec::with_capacity(1 + records.len());
    payload_parts.push(&head[FRAME_HEADER_BYTES..]);
    payload_parts.extend(records.iter().map(|r| &r[..]));
    let crc = frame_crc(&head, &payload_parts);
    seal_header_crc(&mut head, crc);

    let frame_bytes = head.len() + records_bytes;
    let mut parts = Vec::with_capacity(1 + records.len());
    parts.push(head.freeze());
    parts.extend(records.into_iter().filter(|r| !r.is_empty()));
    EncodedFrame { parts, frame_bytes }
}

/// Writes `crc` and then the header CRC into a header whose other fields are final.
fn seal_header_crc(header: &mut [u8], crc: u32) {
    header[CRC_COVERED_HEADER_BYTES..HEADER_CRC_COVERED_BYTES].copy_from_slice(&crc.to_be_bytes());
    let header_crc = crc32fast::hash(&header[..HEADER_CRC_COVERED_BYTES]);
    header[HEADER_CRC_COVERED_BYTES..FRAME_HEADER_BYTES].copy_from_slice(&header_crc.to_be_bytes());
}

/// Recomputes both CRCs of a whole frame in one buffer (header, then exactly its payload),
/// leaving every other byte alone.
///
/// For tests and fuzz targets that build frames with hand-picked header fields (an unknown
/// version, a bad kind) and need them to get past the CRC checks; a broker only uses
/// [`encode_frame`].
///
/// # Panics
/// If `frame` is shorter than [`FRAME_HEADER_BYTES`].
pub fn seal(frame: &mut [u8]) {
    assert!(frame.len() >= FRAME_HEADER_BYTES, "not a whole header");
    let (header, payload) = frame.split_at_mut(FRAME_HEADER_BYTES);
    let crc = frame_crc(header, &[payload]);
    seal_header_crc(header, crc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ErrorBody, Raft};
    use crate::ErrorCode;

    fn raft_frame(payload: &'static [u8]) -> Vec<u8> {
        let envelope = Envelope {
            version: VERSION_MAX,
            correlation_id: 42,
            sender_node_id: 3,
        };
        let body = Body::Raft(Raft {
            message: Bytes::from_static(payload),
        });
        encode_frame(&envelope, &body).to_bytes().to_vec()
    }

    fn decode_all(bytes: &[u8]) -> Result<Option<Frame>, ClusterError> {
        FrameDecoder::default().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn header_is_32_bytes_big_endian_in_the_documented_order() {
        let bytes = raft_frame(b"abc");
        assert_eq!(bytes.len(), FRAME_HEADER_BYTES + 3);
        assert_eq!(&bytes[0..4], b"SPCL");
        assert_eq!(&bytes[4..6], &VERSION_MAX.to_be_bytes());
        assert_eq!(bytes[6], FrameKind::Raft.code());
        assert_eq!(bytes[7], 0, "flags");
        assert_eq!(&bytes[8..12], &3u32.to_be_bytes());
        assert_eq!(&bytes[12..20], &42u64.to_be_bytes());
        assert_eq!(&bytes[20..24], &3i32.to_be_bytes());
        let mut covered = bytes[..24].to_vec();
        covered.extend_from_slice(b"abc");
        assert_eq!(&bytes[24..28], &crc32fast::hash(&covered).to_be_bytes());
        assert_eq!(&bytes[28..32], &crc32fast::hash(&bytes[..28]).to_be_bytes());
        assert_eq!(&bytes[32..], b"abc");
    }

    #[test]
    fn a_whole_frame_decodes_and_its_payload_is_a_slice_of_the_buffer() {
        let bytes = raft_frame(b"hello raft");
        let mut buf = BytesMut::from(&bytes[..]);
        buf.put_slice(b"SP"); // the start of the next frame stays
        let start = buf.as_ptr() as usize;
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.kind, FrameKind::Raft);
        assert_eq!(frame.envelope.correlation_id, 42);
        assert_eq!(frame.envelope.sender_node_id, 3);
        assert_eq!(&frame.payload[..], b"hello raft");
        assert_eq!(
            frame.payload.as_ptr() as usize,
            start + FRAME_HEADER_BYTES,
            "no copy"
        );
        assert_eq!(&buf[..], b"SP");
    }

    #[test]
    fn bad_magic_is_refused_after_four_bytes() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"SPC"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        // A Kafka ApiVersions request: size prefix 0x00000015.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0x15][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ClusterError::BadMagic { found: 0x15 })
        );
        assert_eq!(buf.len(), 4, "buffer untouched");
    }

    #[test]
    fn a_corrupt_length_is_caught_by_the_header_crc_before_any_reservation() {
        let mut bytes = raft_frame(b"x");
        bytes[8] ^= 0x40; // payload_bytes now claims 1 GiB and a bit
        let mut buf = BytesMut::from(&bytes[..]);
        let capacity = buf.capacity();
        assert!(matches!(
            FrameDecoder::default().decode(&mut buf),
            Err(ClusterError::HeaderCrcMismatch { .. })
        ));
        assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn unknown_version_kind_and_flags_are_refused_with_their_own_errors() {
        let mut bytes = raft_frame(b"x");
        bytes[4..6].copy_from_slice(&(VERSION_MAX + 1).to_be_bytes());
        seal(&mut bytes);
        assert_eq!(
            decode_all(&bytes),
            Err(ClusterError::UnsupportedVersion {
                version: VERSION_MAX + 1,
                min: VERSION_MIN,
                max: VERSION_MAX
            })
        );
        let mut bytes = raft_frame(b"x");
        bytes[6] = 0;
        seal(&mut bytes);
        assert_eq!(decode_all(&bytes), Err(ClusterError::UnknownKind(0)));
        let mut bytes = raft_frame(b"x");
        bytes[6] = 16; // one past the last kind, FrameKind::TxnVerifyResponse
        seal(&mut bytes);
        assert_eq!(decode_all(&bytes), Err(ClusterError::UnknownKind(16)));
        let mut bytes = raft_frame(b"x");
        bytes[7] = 0x80;
        seal(&mut bytes);
        assert_eq!(decode_all(&bytes), Err(ClusterError::UnknownFlags(0x80)));
    }

    #[test]
    fn hello_is_accepted_only_in_the_hello_version() {
        let mut bytes = raft_frame(b"x");
        bytes[6] = FrameKind::Hello.code();
        bytes[4..6].copy_from_slice(&0u16.to_be_bytes());
        seal(&mut bytes);
        assert_eq!(
            decode_all(&bytes),
            Err(ClusterError::UnsupportedVersion {
                version: 0,
                min: HELLO_VERSION,
                max: HELLO_VERSION
            })
        );
    }

    #[test]
    fn oversized_payload_is_refused_before_reserving() {
        let mut bytes = raft_frame(b"x");
        bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        seal(&mut bytes);
        let decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&bytes[..]);
        let capacity = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ClusterError::FrameTooLarge {
                payload_bytes: u32::MAX as usize,
                max: 1024
            })
        );
        assert_eq!(buf.capacity(), capacity);
        assert_eq!(
            decoder.bytes_missing(&buf),
            decoder.decode(&mut buf).map(|_| 0)
        );
    }

    #[test]
    fn a_payload_bit_flip_is_a_crc_mismatch_and_leaves_the_buffer() {
        let mut bytes = raft_frame(b"payload");
        bytes[FRAME_HEADER_BYTES + 2] ^= 1;
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            FrameDecoder::default().decode(&mut buf),
            Err(ClusterError::CrcMismatch { .. })
        ));
        assert_eq!(&buf[..], &bytes[..]);
    }

    #[test]
    fn partial_frame_reserves_the_rest_and_reports_what_is_missing() {
        let bytes = encode_frame(
            &Envelope {
                version: VERSION_MIN,
                correlation_id: 1,
                sender_node_id: 1,
            },
            &Body::Raft(Raft {
                message: Bytes::from(vec![9u8; 1000]),
            }),
        )
        .to_bytes();
        let decoder = FrameDecoder::new(1000);
        let mut buf = BytesMut::new();
        buf.put_slice(&bytes[..10]);
        assert_eq!(decoder.bytes_missing(&buf), Ok(22));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.put_slice(&bytes[10..40]);
        assert_eq!(decoder.bytes_missing(&buf), Ok(1032 - 40));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.capacity() >= 1032);
        buf.put_slice(&bytes[40..]);
        assert_eq!(decoder.bytes_missing(&buf), Ok(0));
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.payload.len(), 1000);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_narrowed_decoder_still_reads_hello_in_the_hello_version() {
        let decoder = FrameDecoder::default().with_versions(VERSION_MAX, VERSION_MAX);
        let hello = crate::cluster::Hello {
            cluster_id: "c".into(),
            node_id: 5,
            incarnation: 1,
            versions_min: VERSION_MIN,
            versions_max: VERSION_MAX,
        };
        let bytes = encode_frame(&Envelope::hello(5, 0), &Body::Hello(hello)).to_bytes();
        let frame = decoder
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap();
        assert_eq!(frame.kind, FrameKind::Hello);
        assert_eq!(frame.envelope.version, HELLO_VERSION);
        let error = encode_frame(
            &Envelope::hello(5, 0),
            &Body::Error(ErrorBody::new(ErrorCode::InvalidRequest, "x")),
        );
        let mut bytes = error.to_bytes().to_vec();
        bytes[4..6].copy_from_slice(&(VERSION_MAX + 1).to_be_bytes());
        seal(&mut bytes);
        assert!(matches!(
            decoder.decode(&mut BytesMut::from(&bytes[..])),
            Err(ClusterError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "hello version")]
    fn encoding_a_hello_in_another_version_is_a_programmer_error() {
        let envelope = Envelope {
            version: HELLO_VERSION + 1,
            correlation_id: 0,
            sender_node_id: 0,
        };
        let hello = crate::cluster::Hello {
            cluster_id: "c".into(),
            node_id: 0,
            incarnation: 0,
            versions_min: VERSION_MIN,
            versions_max: VERSION_MAX,
        };
        encode_frame(&envelope, &Body::Hello(hello));
    }
}
