//! ApiVersions (key 18): what this broker speaks. Answered for any request version: a version
//! newer than supported gets a v0 answer with UNSUPPORTED_VERSION and the full list (KIP-511),
//! so the client can retry with one it finds there. The request body (client software name and
//! version) is informational and not decoded.

use bytes::BytesMut;
use spate_wire::header::RequestHeader;

use crate::connection::ResponseParts;
use crate::core::Core;

pub fn handle(core: &Core, header: &RequestHeader) -> Option<ResponseParts> {
    let mut out = BytesMut::with_capacity(512);
    // The codec's entry point (KIP-511 fallback included), as the golden tests exercise it.
    if let Err(error) = spate_wire::response::encode_api_versions_response(
        &mut out,
        &core.versions,
        header.api_version,
        header.correlation_id,
    ) {
        tracing::error!(%error, "cannot encode the ApiVersions response; closing connection");
        debug_assert!(false, "{error}");
        return None;
    }
    Some(vec![out.freeze()])
}
