//! Round-trip properties of the hand-written codecs: frames, request headers, and ApiVersions
//! answers (decoded with kafka-protocol's own decoder).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;
use spate_wire::frame::FrameDecoder;
use spate_wire::header::{request_header_version, CorrelationId, RequestHeader};
use spate_wire::response::encode_api_versions_response;
use spate_wire::versions::{ApiSet, VersionTable, API_VERSIONS_VERSION_MAX, SUPPORTED};
use spate_wire::ErrorCode;

proptest! {
    /// Frames written back to back and read in arbitrary chunk sizes come out whole and in order.
    #[test]
    fn frames_survive_any_chunking(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..10),
        chunk in 1usize..64,
    ) {
        let mut wire = Vec::new();
        for body in &bodies {
            wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        let decoder = FrameDecoder::new(200);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.put_slice(piece);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                got.push(frame.to_vec());
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, bodies);
    }

    /// Any size prefix over the limit is refused, whatever follows it.
    #[test]
    fn oversized_prefixes_are_always_refused(size in 201i32..=i32::MAX, tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut buf = BytesMut::new();
        buf.put_i32(size);
        buf.put_slice(&tail);
        prop_assert!(FrameDecoder::new(200).decode(&mut buf).is_err());
        prop_assert_eq!(buf.len(), 4 + tail.len());
    }

    /// Request headers of every supported API and version round-trip, leaving the body intact.
    #[test]
    fn request_headers_round_trip(
        api in 0..SUPPORTED.len(),
        version_pick in any::<u16>(),
        correlation_id in any::<i32>(),
        client_id in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        body in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let range = SUPPORTED[api];
        let version = range.min + (version_pick % (range.max - range.min + 1) as u16) as i16;
        let header = RequestHeader {
            api_key: range.api_key,
            api_version: version,
            correlation_id: CorrelationId(correlation_id),
            client_id: client_id.map(Bytes::from),
            version: request_header_version(range.api_key, version),
        };
        let mut out = BytesMut::new();
        header.encode(&mut out);
        out.put_slice(&body);
        let mut frame = out.freeze();
        prop_assert_eq!(RequestHeader::decode(&mut frame).unwrap(), header);
        prop_assert_eq!(&frame[..], &body[..]);
    }

    /// ApiVersions answers list exactly the enabled supported APIs, in every request version,
    /// and fall back to v0 with UNSUPPORTED_VERSION for newer requests.
    #[test]
    fn api_versions_answers_list_exactly_the_enabled_apis(
        enabled_mask in any::<u64>(),
        request_version in 0i16..12,
        correlation_id in any::<i32>(),
    ) {
        let enabled = SUPPORTED
            .iter()
            .enumerate()
            .filter(|(i, _)| enabled_mask & (1u64 << i) != 0)
            .fold(ApiSet::EMPTY, |set, (_, r)| set.with(r.api_key));
        let table = VersionTable::new(enabled);
        let mut out = BytesMut::new();
        encode_api_versions_response(&mut out, &table, request_version, CorrelationId(correlation_id)).unwrap();
        let mut frame = out.freeze();
        prop_assert_eq!(frame.get_i32() as usize, frame.len());
        prop_assert_eq!(ResponseHeader::decode(&mut frame, 0).unwrap().correlation_id, correlation_id);
        let too_new = request_version > API_VERSIONS_VERSION_MAX;
        let body_version = if too_new { 0 } else { request_version };
        let body = ApiVersionsResponse::decode(&mut frame, body_version).unwrap();
        prop_assert!(!frame.has_remaining());
        let expected_error = if too_new { ErrorCode::UnsupportedVersion } else { ErrorCode::None };
        prop_assert_eq!(body.error_code, expected_error.code());
        let got: Vec<(i16, i16, i16)> = body.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        let want: Vec<(i16, i16, i16)> = SUPPORTED
            .iter()
            .filter(|r| enabled.contains(r.api_key) || r.api_key == ApiKey::ApiVersions)
            .map(|r| (r.api_key as i16, r.min, r.max))
            .collect();
        prop_assert_eq!(got, want);
    }
}

mod hostile_input {
    use proptest::prelude::*;
    use spate_wire::batch::Compression;
    use spate_wire::compression::decompress;
    use spate_wire::records::{batch_records, Records};

    proptest! {
        /// Random bytes given to any decompressor give an error or at most the limit, never a
        /// panic or a larger buffer.
        #[test]
        fn decompressors_stay_within_the_limit_on_random_input(
            codec in prop::sample::select(vec![Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]),
            xerial in any::<bool>(),
            input in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut data = if xerial { b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01".to_vec() } else { Vec::new() };
            data.extend_from_slice(&input);
            let mut out = Vec::new();
            if decompress(codec, &data, &mut out, 4096).is_ok() {
                prop_assert!(out.len() <= 4096);
            }
        }

        /// Random record sections yield at most `count` items and stop after the first error.
        #[test]
        fn record_iteration_stops_after_one_error(
            section in prop::collection::vec(any::<u8>(), 0..256),
            count in 0usize..20,
        ) {
            let items: Vec<_> = Records::new(&section, count).collect();
            prop_assert!(items.len() <= count + 1);
            if let Some(first_err) = items.iter().position(|r| r.is_err()) {
                prop_assert_eq!(first_err, items.len() - 1);
            }
        }

        /// Random bytes as a whole batch: an error or a record iterator, never a panic.
        #[test]
        fn batch_records_never_panics(batch in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut scratch = Vec::new();
            if let Ok((_, records)) = batch_records(&batch, &mut scratch, 1 << 16) {
                prop_assert!(records.count() <= batch.len());
            }
        }
    }
}
