//! Encoding a kafka-protocol response, with its response header and size prefix, into one
//! buffer ready to send.
//!
//! This path copies everything it encodes; it is for control-plane answers. Fetch responses,
//! which carry record data, go through [`crate::fetch`] instead.

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::error::WireError;
use crate::frame::{finish_frame, start_frame};
use crate::header::{encode_response_header, response_header_version, CorrelationId};
use crate::versions::VersionTable;

/// Appends one whole response frame (size prefix, header, body) for `api_key` at `version`.
///
/// `out` is left as it was on error.
///
/// # Errors
/// [`WireError::Encode`] if kafka-protocol refuses the body at this version (for example a field
/// set that the version does not have): a bug in the handler that built it.
pub fn encode_response<R: Encodable>(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: CorrelationId,
    body: &R,
) -> Result<(), WireError> {
    let at = start_frame(out);
    encode_response_header(
        out,
        correlation_id,
        response_header_version(api_key, version),
    );
    if let Err(e) = body.encode(out, version) {
        out.truncate(at);
        return Err(WireError::Encode {
            api_key,
            version,
            reason: e.to_string(),
        });
    }
    finish_frame(out, at, 0);
    Ok(())
}

/// Appends the ApiVersions answer to a request of `request_version` (KIP-511 fallback
/// included: a too-new request is answered in v0 with UNSUPPORTED_VERSION).
///
/// # Errors
/// As [`encode_response`]; cannot happen for the table's own responses.
pub fn encode_api_versions_response(
    out: &mut BytesMut,
    table: &VersionTable,
    request_version: i16,
    correlation_id: CorrelationId,
) -> Result<(), WireError> {
    let (body, version) = table.api_versions_response(request_version);
    encode_response(out, ApiKey::ApiVersions, version, correlation_id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::versions::{ApiSet, API_VERSIONS_VERSION_MAX};
    use bytes::Buf;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;

    fn split_frame(out: &BytesMut) -> bytes::Bytes {
        let mut frame = out.clone().freeze();
        let len = frame.get_i32() as usize;
        assert_eq!(len, frame.len(), "size prefix counts the rest of the frame");
        frame
    }

    #[test]
    fn api_versions_round_trips_in_every_version() {
        let table = VersionTable::new(ApiSet::all_supported());
        for v in 0..=API_VERSIONS_VERSION_MAX {
            let mut out = BytesMut::new();
            encode_api_versions_response(&mut out, &table, v, CorrelationId(v.into())).unwrap();
            let mut frame = split_frame(&out);
            let header = ResponseHeader::decode(&mut frame, 0).unwrap();
            assert_eq!(header.correlation_id, i32::from(v));
            let body = ApiVersionsResponse::decode(&mut frame, v).unwrap();
            assert!(!frame.has_remaining());
            assert_eq!(body.error_code, 0);
            assert_eq!(body.api_keys.len(), 39);
            let fetch = body.api_keys.iter().find(|k| k.api_key == 1).unwrap();
            assert_eq!((fetch.min_version, fetch.max_version), (4, 12));
        }
    }

    #[test]
    fn too_new_api_versions_is_answered_in_v0() {
        let table = VersionTable::new(ApiSet::core());
        let mut out = BytesMut::new();
        encode_api_versions_response(&mut out, &table, 7, CorrelationId(5)).unwrap();
        let mut frame = split_frame(&out);
        assert_eq!(
            ResponseHeader::decode(&mut frame, 0)
                .unwrap()
                .correlation_id,
            5
        );
        let body = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
        assert!(!frame.has_remaining(), "v0 layout exactly");
        assert_eq!(body.error_code, ErrorCode::UnsupportedVersion.code());
        assert_eq!(body.api_keys.len(), 9);
    }

    #[test]
    fn flexible_responses_get_header_v1() {
        let mut out = BytesMut::new();
        let body = MetadataResponse::default();
        encode_response(&mut out, ApiKey::Metadata, 9, CorrelationId(3), &body).unwrap();
        let mut frame = split_frame(&out);
        assert_eq!(
            ResponseHeader::decode(&mut frame, 1)
                .unwrap()
                .correlation_id,
            3
        );
        assert_eq!(MetadataResponse::decode(&mut frame, 9).unwrap(), body);
        assert!(!frame.has_remaining());
    }

    #[test]
    fn an_encode_error_leaves_the_buffer_as_it_was() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let body = MetadataResponse::default();
        // kafka-protocol knows Metadata up to v13 only.
        let err = encode_response(&mut out, ApiKey::Metadata, 99, CorrelationId(1), &body);
        assert!(matches!(err, Err(WireError::Encode { .. })), "{err:?}");
        assert_eq!(&out[..], b"keep");
    }
}
