//! Request headers (v0, v1, v2) and response headers (v0, v1).
//!
//! Which header version a request uses depends on its API and version (flexible versions use
//! header v2 with tagged fields); [`request_header_version`] answers from kafka-protocol's
//! tables. The one exception Kafka makes is kept here: an ApiVersions *response* always uses
//! header v0, so that a client can read it before it knows which versions the broker speaks.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::codec::{put_uvarint, read_i16, read_i32, skip_tagged_fields, take};
use crate::error::WireError;

/// Correlation id a client puts in a request and gets back in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CorrelationId(pub i32);

impl core::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// Layout of a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestHeaderVersion {
    /// api key, api version, correlation id.
    V0,
    /// v0 plus a nullable client id (`int16` length).
    V1,
    /// v1 plus tagged fields (the client id keeps its `int16` length).
    V2,
}

/// Layout of a response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResponseHeaderVersion {
    /// correlation id.
    V0,
    /// correlation id plus tagged fields.
    V1,
}

/// The request header layout used by `api_key` at `version`.
pub fn request_header_version(api_key: ApiKey, version: i16) -> RequestHeaderVersion {
    match api_key.request_header_version(version) {
        0 => RequestHeaderVersion::V0,
        1 => RequestHeaderVersion::V1,
        _ => RequestHeaderVersion::V2,
    }
}

/// The response header layout used by `api_key` at `version`.
pub fn response_header_version(api_key: ApiKey, version: i16) -> ResponseHeaderVersion {
    if api_key == ApiKey::ApiVersions {
        // KIP-511: clients parse this before negotiating, so it never has tagged fields.
        return ResponseHeaderVersion::V0;
    }
    match api_key.response_header_version(version) {
        0 => ResponseHeaderVersion::V0,
        _ => ResponseHeaderVersion::V1,
    }
}

/// Fixed start of every request header: api key, api version, correlation id.
pub const REQUEST_HEADER_PREFIX_BYTES: usize = 8;

/// The fields every request header version starts with, read without knowing the API.
///
/// A broker uses this to answer (or log) a request whose API key it does not know.
///
/// # Errors
/// [`WireError::Truncated`] if the frame is shorter than 8 bytes.
pub fn peek_header_prefix(frame: &[u8]) -> Result<(i16, i16, CorrelationId), WireError> {
    let mut cur = frame;
    let api_key = read_i16(&mut cur)?;
    let api_version = read_i16(&mut cur)?;
    let correlation_id = read_i32(&mut cur)?;
    Ok((api_key, api_version, CorrelationId(correlation_id)))
}

/// A decoded request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Which API the body is.
    pub api_key: ApiKey,
    /// Version of the body.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: CorrelationId,
    /// The client's self-chosen name (raw bytes, a slice of the frame), if it sent one.
    pub client_id: Option<Bytes>,
    /// The layout the header was read with.
    pub version: RequestHeaderVersion,
}

impl RequestHeader {
    /// Reads the header off the front of `frame`, leaving the body in `frame`.
    ///
    /// Tagged fields of header v2 are skipped (Kafka defines none a broker needs). The client
    /// id is not checked to be UTF-8; see [`RequestHeader::client_id_str`].
    ///
    /// # Errors
    /// [`WireError::UnknownApiKey`] for a key Kafka does not define, [`WireError::Truncated`] or
    /// [`WireError::Malformed`] for bad bytes. Use [`peek_header_prefix`] to still get the
    /// correlation id.
    pub fn decode(frame: &mut Bytes) -> Result<RequestHeader, WireError> {
        let mut cur: &[u8] = frame;
        let raw_key = read_i16(&mut cur)?;
        let api_key = ApiKey::try_from(raw_key).map_err(|()| WireError::UnknownApiKey(raw_key))?;
        let api_version = read_i16(&mut cur)?;
        let correlation_id = CorrelationId(read_i32(&mut cur)?);
        let version = request_header_version(api_key, api_version);
        let mut client_id_range = None;
        if version >= RequestHeaderVersion::V1 {
            let len = read_i16(&mut cur)?;
            if len >= 0 {
                let start = frame.len() - cur.len();
                take(&mut cur, len as usize)?;
                client_id_range = Some(start..start + len as usize);
            } else if len != -1 {
                return Err(WireError::Malformed {
                    what: "client id length",
                });
            }
        }
        if version == RequestHeaderVersion::V2 {
            skip_tagged_fields(&mut cur)?;
        }
        let client_id = client_id_range.map(|range| frame.slice(range));
        let consumed = frame.len() - cur.len();
        frame.advance(consumed);
        Ok(RequestHeader {
            api_key,
            api_version,
            correlation_id,
            client_id,
            version,
        })
    }

    /// The client id as text, if present and valid UTF-8.
    pub fn client_id_str(&self) -> Option<&str> {
        self.client_id
            .as_deref()
            .and_then(|b| core::str::from_utf8(b).ok())
    }

    /// Writes the header in the layout `self.version` (clients and tests use this).
    ///
    /// # Panics
    /// If the client id is longer than `i16::MAX` bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_i16(self.api_key as i16);
        out.put_i16(self.api_version);
        out.put_i32(self.correlation_id.0);
        if self.version >= RequestHeaderVersion::V1 {
            match &self.client_id {
                None => out.put_i16(-1),
                Some(id) => {
                    let len = i16::try_from(id.len()).expect("client id longer than i16::MAX");
                    out.put_i16(len);
                    out.put_slice(id);
                }
            }
        }
        if self.version == RequestHeaderVersion::V2 {
            put_uvarint(out, 0);
        }
    }
}

/// Writes a response header: the correlation id, then an empty tagged-field section for v1.
pub fn encode_response_header(
    out: &mut BytesMut,
    correlation_id: CorrelationId,
    version: ResponseHeaderVersion,
) {
    out.put_i32(correlation_id.0);
    if version == ResponseHeaderVersion::V1 {
        put_uvarint(out, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        api_key: ApiKey,
        api_version: i16,
        client_id: Option<&'static [u8]>,
    ) -> RequestHeader {
        RequestHeader {
            api_key,
            api_version,
            correlation_id: CorrelationId(0x0102_0304),
            client_id: client_id.map(Bytes::from_static),
            version: request_header_version(api_key, api_version),
        }
    }

    #[test]
    fn header_versions_follow_flexible_versions() {
        assert_eq!(
            request_header_version(ApiKey::Produce, 8),
            RequestHeaderVersion::V1
        );
        assert_eq!(
            request_header_version(ApiKey::Produce, 9),
            RequestHeaderVersion::V2
        );
        assert_eq!(
            request_header_version(ApiKey::Fetch, 11),
            RequestHeaderVersion::V1
        );
        assert_eq!(
            request_header_version(ApiKey::Fetch, 12),
            RequestHeaderVersion::V2
        );
        assert_eq!(
            request_header_version(ApiKey::ApiVersions, 3),
            RequestHeaderVersion::V2
        );
        assert_eq!(
            response_header_version(ApiKey::Fetch, 12),
            ResponseHeaderVersion::V1
        );
        assert_eq!(
            response_header_version(ApiKey::Metadata, 8),
            ResponseHeaderVersion::V0
        );
        assert_eq!(
            response_header_version(ApiKey::ApiVersions, 4),
            ResponseHeaderVersion::V0
        );
    }

    #[test]
    fn v1_header_reads_client_id_and_leaves_body() {
        let mut frame = Bytes::from_static(&[0, 3, 0, 5, 0, 0, 0, 1, 0, 3, b'c', b'l', b'i', 0xBB]);
        let h = RequestHeader::decode(&mut frame).unwrap();
        assert_eq!(h.api_key, ApiKey::Metadata);
        assert_eq!(h.api_version, 5);
        assert_eq!(h.client_id_str(), Some("cli"));
        assert_eq!(h.version, RequestHeaderVersion::V1);
        assert_eq!(&frame[..], &[0xBB]);
    }

    #[test]
    fn v2_header_skips_tagged_fields() {
        // Metadata v9, null client id, one unknown tagged field (tag 5, 2 bytes).
        let mut frame =
            Bytes::from_static(&[0, 3, 0, 9, 0, 0, 0, 2, 0xff, 0xff, 1, 5, 2, 9, 9, 0xCC]);
        let h = RequestHeader::decode(&mut frame).unwrap();
        assert_eq!(h.version, RequestHeaderVersion::V2);
        assert_eq!(h.client_id, None);
        assert_eq!(&frame[..], &[0xCC]);
    }

    #[test]
    fn truncated_and_bad_headers_are_errors() {
        let mut short = Bytes::from_static(&[0, 3, 0, 9, 0, 0]);
        assert!(matches!(
            RequestHeader::decode(&mut short),
            Err(WireError::Truncated { .. })
        ));
        let mut bad_len = Bytes::from_static(&[0, 3, 0, 5, 0, 0, 0, 1, 0xff, 0xfe]);
        assert!(matches!(
            RequestHeader::decode(&mut bad_len),
            Err(WireError::Malformed { .. })
        ));
        let mut long_id = Bytes::from_static(&[0, 3, 0, 5, 0, 0, 0, 1, 0, 9, b'x']);
        assert!(matches!(
            RequestHeader::decode(&mut long_id),
            Err(WireError::Truncated { .. })
        ));
        let mut unknown = Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(
            RequestHeader::decode(&mut unknown),
            Err(WireError::UnknownApiKey(0x7f00))
        );
        assert_eq!(
            peek_header_prefix(&unknown),
            Ok((0x7f00, 0, CorrelationId(4)))
        );
    }

    #[test]
    fn encode_then_decode_gives_back_the_header() {
        for h in [
            header(ApiKey::Produce, 7, Some(b"rdkafka")),
            header(ApiKey::Produce, 9, None),
            header(ApiKey::Fetch, 12, Some(b"")),
        ] {
            let mut out = BytesMut::new();
            h.encode(&mut out);
            out.put_u8(0x5A);
            let mut frame = out.freeze();
            assert_eq!(RequestHeader::decode(&mut frame).unwrap(), h);
            assert_eq!(&frame[..], &[0x5A]);
        }
    }
}
