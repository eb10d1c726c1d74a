//! ApiVersions (key 18): what this broker speaks. Answered for any request version: a version
//! newer than supported gets a v0 answer with UNSUPPORTED_VERSION and the full list (KIP-511),
//! so the client can retry with one it finds there. The request body (client software name and
//! version) is informational and not decoded.

use spate_wire::header::RequestHeader;

use super::respond_in;
use crate::connection::ResponseParts;
use crate::core::Core;

pub fn handle(core: &Core, header: &RequestHeader) -> Option<ResponseParts> {
    let (response, version) = core.versions.api_versions_response(header.api_version);
    respond_in(header, version, &response)
}
