//! Every request captured from a real client (librdkafka, kafka-python, aiokafka, kcat; the
//! fixtures under `tests/fixtures/`) decodes through the guarded request path, and every record
//! batch in their Produce requests, compressed or not, yields its declared number of records.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use spate_wire::batch::{batches, Compression};
use spate_wire::compression::DECOMPRESSED_BYTES_MAX_DEFAULT;
use spate_wire::frame::FrameDecoder;
use spate_wire::records::batch_records;
use spate_wire::request::{decode_request, RequestBody, RequestLimits};

fn request_fixtures(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "responses" && n != "regressions")
            {
                request_fixtures(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "bin") {
            out.push(path);
        }
    }
}

#[test]
fn real_client_requests_decode_and_their_batches_yield_every_record() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    request_fixtures(&root, &mut files);
    files.sort();
    assert!(files.len() >= 50, "only {} fixtures found", files.len());

    let mut produce_requests = 0;
    let mut records_seen = 0;
    let mut codecs_seen = std::collections::BTreeSet::new();
    for path in &files {
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let mut buf = BytesMut::from(&std::fs::read(path).unwrap()[..]);
        let frame: Bytes = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "{path:?}: one frame per file");
        let request = decode_request(frame, &RequestLimits::default())
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(
            request.header.api_key as i64,
            manifest["api_key"].as_i64().unwrap()
        );
        assert_eq!(
            i64::from(request.header.api_version),
            manifest["api_version"].as_i64().unwrap()
        );
        assert_eq!(
            i64::from(request.header.correlation_id.0),
            manifest["correlation_id"].as_i64().unwrap(),
            "{path:?}"
        );
        if let Some(client_id) = manifest["client_id"].as_str() {
            assert_eq!(request.header.client_id_str(), Some(client_id), "{path:?}");
        }
        let RequestBody::Produce(produce) = request.body else {
            continue;
        };
        produce_requests += 1;
        for topic in &produce.topic_data {
            for partition in &topic.partition_data {
                let records = partition.records.as_ref().expect("produce carries records");
                for batch in batches(records) {
                    let (header, bytes) = batch.unwrap();
                    codecs_seen.insert(format!("{:?}", header.compression()));
                    let mut scratch = Vec::new();
                    let (_, iter) =
                        batch_records(bytes, &mut scratch, DECOMPRESSED_BYTES_MAX_DEFAULT)
                            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
                    let mut n = 0;
                    for record in iter {
                        let record = record.unwrap_or_else(|e| panic!("{path:?}: {e}"));
                        assert_eq!(record.offset_delta, n);
                        n += 1;
                    }
                    assert_eq!(n, header.record_count, "{path:?}");
                    records_seen += n;
                }
            }
        }
    }
    assert!(produce_requests >= 9, "{produce_requests} produce requests");
    assert!(records_seen >= 40, "{records_seen} records");
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        assert!(
            codecs_seen.contains(&format!("{codec:?}")),
            "no {codec:?} batch among {codecs_seen:?}"
        );
    }
}
