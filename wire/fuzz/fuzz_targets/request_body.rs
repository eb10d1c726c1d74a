//! Every request body decoder the broker uses, with equal attention: the first two input bytes
//! pick an API from `versions::SUPPORTED` and a version in its range, the rest is the body.
//! (The `request` target reaches the same decoders, but must first guess a valid header.)
//! Same allocation limit as `request` in ci/fuzz.sh.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate_wire::header::{request_header_version, CorrelationId, RequestHeader};
use spate_wire::request::{RequestBody, RequestLimits};
use spate_wire::versions::SUPPORTED;

fuzz_target!(|data: &[u8]| {
    let [api_pick, version_pick, body @ ..] = data else {
        return;
    };
    let range = SUPPORTED[usize::from(*api_pick) % SUPPORTED.len()];
    let span = (range.max - range.min + 1) as u8;
    let api_version = range.min + i16::from(version_pick % span);
    let header = RequestHeader {
        api_key: range.api_key,
        api_version,
        correlation_id: CorrelationId(1),
        client_id: None,
        version: request_header_version(range.api_key, api_version),
    };
    let limits = RequestLimits {
        control_bytes_max: 16 * 1024,
    };
    match RequestBody::decode(&header, Bytes::copy_from_slice(body), &limits) {
        Ok(decoded) => assert_eq!(decoded.api_key(), range.api_key),
        Err(error) => {
            let _ = error.error_code();
        }
    }
});
