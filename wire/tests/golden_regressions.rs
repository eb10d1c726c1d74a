//! Hostile variants of real client requests, and inputs the fuzzers found, kept as plain tests.
//!
//! Each case starts from a captured frame (tests/fixtures) and changes one count or length to
//! a value a decoder must not trust. The request must be refused with an error, never decoded
//! by sizing a buffer from the wire (kafka-protocol's generated decoders call
//! `Vec::with_capacity(count)`; unguarded, these inputs abort the process).

use std::path::Path;

use bytes::Bytes;
use spate_wire::batch::{self, BatchError};
use spate_wire::request::{decode_request, RequestLimits};
use spate_wire::WireError;

fn fixture_body(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    let frame = std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    frame[4..].to_vec()
}

/// Offset of the body in a request with header v1 (no tagged fields): 10 bytes + client id.
fn header_v1_len(body: &[u8]) -> usize {
    10 + usize::from(u16::from_be_bytes([body[8], body[9]]))
}

fn decode(body: Vec<u8>) -> Result<(), WireError> {
    decode_request(Bytes::from(body), &RequestLimits::default()).map(|_| ())
}

#[test]
fn the_unmodified_fixtures_decode() {
    // The hostile cases below differ from these in one field only.
    assert_eq!(
        decode(fixture_body("kcat/metadata/02-Metadata-v4.bin")),
        Ok(())
    );
    assert_eq!(
        decode(fixture_body("aiokafka/produce-none/05-Produce-v7.bin")),
        Ok(())
    );
}

#[test]
fn metadata_request_claiming_two_billion_topics_is_refused() {
    let mut body = fixture_body("kcat/metadata/02-Metadata-v4.bin");
    let at = header_v1_len(&body);
    // Metadata v4 body: topics array count (i32), then allow_auto_topic_creation.
    assert_eq!(
        &body[at..at + 4],
        &[0, 0, 0, 0],
        "kcat asks for no topic list"
    );
    body[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    let remaining = body.len() - at - 4;
    assert_eq!(
        decode(body),
        Err(WireError::LengthExceedsInput {
            declared: i32::MAX as u64,
            remaining
        })
    );
}

#[test]
fn produce_request_claiming_two_billion_topics_is_refused() {
    let mut body = fixture_body("aiokafka/produce-none/05-Produce-v7.bin");
    let at = header_v1_len(&body);
    // Produce v7 body: transactional id (-1), acks (-1), timeout, then the topic count.
    assert_eq!(&body[at..at + 4], &[0xff, 0xff, 0xff, 0xff]);
    let count_at = at + 8;
    assert_eq!(&body[count_at..count_at + 4], &[0, 0, 0, 1]);
    body[count_at..count_at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    let result = decode(body);
    assert!(
        matches!(result, Err(WireError::LengthExceedsInput { declared, .. }) if declared == i32::MAX as u64),
        "{result:?}"
    );
}

/// `(offset in the body, length)` of the first records field of a Produce fixture, from its
/// manifest.
fn records_at(path: &str) -> (usize, usize) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
        .with_extension("json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(full).expect("manifest")).expect("json");
    let first = &manifest["records_at"][0];
    let at = first[2].as_u64().expect("offset") as usize;
    (at - 4, first[3].as_u64().expect("length") as usize)
}

#[test]
fn produce_request_whose_records_length_overruns_the_frame_is_refused() {
    let path = "aiokafka/produce-none/05-Produce-v7.bin";
    let mut body = fixture_body(path);
    let (at, len) = records_at(path);
    // Non-flexible Produce: the records field is an i32 length, then the bytes.
    let len_at = at - 4;
    assert_eq!(&body[len_at..at], &(len as i32).to_be_bytes());
    body[len_at..at].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    let remaining = body.len() - at;
    assert_eq!(
        decode(body),
        Err(WireError::LengthExceedsInput {
            declared: (i32::MAX - 1) as u64,
            remaining
        })
    );
}

#[test]
fn batch_claiming_a_huge_length_in_a_real_header_is_truncated_not_read() {
    let path = "librdkafka/produce-zstd/04-Produce-v9.bin";
    let body = fixture_body(path);
    let (at, len) = records_at(path);
    let mut real = body[at..at + len].to_vec();
    assert_eq!(batch::batches(&real).count(), 1);
    real[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    let results: Vec<_> = batch::batches(&real).collect();
    assert_eq!(
        results,
        vec![Err(BatchError::Truncated {
            needed: i32::MAX as usize + 12,
            available: real.len()
        })]
    );
}

/// Found by the `records` fuzz target: a 94-byte batch whose payload is a zstd frame header
/// declaring an 84 MB window. zstd (C code, outside Rust's allocator, so this test cannot see
/// it) allocated that window before decoding a byte, whatever `decompressed_bytes_max` said;
/// since 2871e4a the window is capped (`ZSTD_WINDOW_LOG_MAX`) and the frame is refused. The
/// allocation side is checked by `ci/fuzz.sh records` (-malloc_limit_mb=16), e.g.
/// `cargo +nightly fuzz run --fuzz-dir wire/fuzz records
/// wire/fuzz/regressions/records-zstd-window-84mb-fitted.bin -- -malloc_limit_mb=16` (the
/// fitted file is the input with its batch length set to its size, as this test does).
#[test]
fn zstd_batch_declaring_a_huge_window_is_an_error() {
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/records-zstd-window-84mb.bin"),
    )
    .expect("regression input");
    assert_eq!(input.len(), 94);
    let header = batch::BatchHeader::parse(&input).expect("header is valid");
    assert_eq!(header.compression(), batch::Compression::Zstd);
    // As found, the batch length (178) overran the input and batch_records decompressed the
    // part that was there; it now refuses that as Truncated, so fit the length to the bytes to
    // still hand zstd the hostile frame header.
    assert_eq!(
        batch::batches(&input).next(),
        Some(Err(BatchError::Truncated {
            needed: 190,
            available: 94
        }))
    );
    let mut input = input;
    input[8..12].copy_from_slice(&(94i32 - 12).to_be_bytes());
    let mut scratch = Vec::new();
    let outcome = spate_wire::records::batch_records(&input, &mut scratch, 1024 * 1024);
    // Refused by the window cap, as corrupt zstd, before any record is read.
    match outcome {
        Err(WireError::Decompress { codec, reason }) => {
            assert_eq!(codec, "zstd");
            assert!(reason.contains("memory"), "{reason}");
        }
        other => panic!("{:?}", other.map(|(header, _)| header)),
    }
    assert!(scratch.len() <= 1024 * 1024);
}
