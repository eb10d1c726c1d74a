//! Whole request decoding (header, version check, allocation guard, kafka-protocol body) on
//! arbitrary frame bodies of any API key and version. No panic, and no allocation out of
//! proportion to the input: kafka-protocol's decoders reserve `Vec::with_capacity(n)` with `n`
//! from the wire, so an unguarded 10-byte body can ask for gigabytes. ci/fuzz.sh runs this with
//! a -malloc_limit_mb that such a request would exceed, turning it into a crash.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate_wire::header::peek_header_prefix;
use spate_wire::request::{decode_request, RequestLimits};

fuzz_target!(|data: &[u8]| {
    let limits = RequestLimits {
        // Small, so the RequestTooLarge path is reachable with fuzz-sized inputs too.
        control_bytes_max: 16 * 1024,
    };
    match decode_request(Bytes::copy_from_slice(data), &limits) {
        Ok(request) => {
            let (api_key, api_version, correlation_id) =
                peek_header_prefix(data).expect("decoded, so the prefix is there");
            assert_eq!(request.header.api_key as i16, api_key);
            assert_eq!(request.header.api_version, api_version);
            assert_eq!(request.header.correlation_id, correlation_id);
            assert_eq!(request.body.api_key(), request.header.api_key);
        }
        Err(error) => {
            // Every refusal maps to a Kafka error code the broker can answer with.
            let _ = error.error_code();
        }
    }
});
