//! Reading data that is no longer in the tail cache goes to the segment files through glommio's
//! DMA reads. On a fresh data dir the first DMA file glommio opens is an empty new segment, which
//! trips glommio 0.9's io-poll probe bug (every later DMA read fails with EOPNOTSUPP) unless the
//! broker primes the probe at startup. This test produces more than the tail cache holds on a
//! fresh data dir and reads everything back from offset 0, then again after a restart.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use spate_wire::batch::{BatchBuilder, BatchSpec};
use spate_wire::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use spate_wire::kafka_protocol::messages::fetch_response::FetchResponse;
use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "cold";
const BATCHES: usize = 48;
const RECORDS_PER_BATCH: usize = 64;
const VALUE_BYTES: usize = 4000;

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn batch(n: usize) -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    for i in 0..RECORDS_PER_BATCH {
        let value = vec![(n * RECORDS_PER_BATCH + i) as u8; VALUE_BYTES];
        builder.push(0, Some(format!("k{n}-{i}").as_bytes()), Some(&value), &[]);
    }
    builder.finish();
    out.freeze()
}

fn fetch_all(broker: &Broker) -> (usize, i64) {
    let mut stream = broker.connect();
    let mut offset = 0i64;
    let mut records = 0usize;
    let mut high_watermark = -1;
    for _ in 0..1000 {
        let mut partition = FetchPartition::default();
        partition.fetch_offset = offset;
        partition.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = topic();
        t.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.replica_id = (-1).into();
        request.max_wait_ms = 100;
        request.max_bytes = 4 << 20;
        request.topics = vec![t];
        let response: FetchResponse = call(&mut stream, ApiKey::Fetch, 11, &request);
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at offset {offset}");
        high_watermark = p.high_watermark;
        let data = p.records.clone().unwrap_or_default();
        if data.is_empty() {
            break;
        }
        for item in spate_wire::batch::batches(&data) {
            let (header, bytes) = item.expect("whole valid batches");
            spate_wire::batch::verify_crc(bytes).unwrap();
            assert_eq!(header.base_offset.0, offset, "dense offsets");
            records += header.record_count as usize;
            offset = header.last_offset().0 + 1;
        }
        if offset >= high_watermark {
            break;
        }
    }
    (records, high_watermark)
}

#[test]
fn data_beyond_the_tail_cache_is_read_from_segments_on_a_fresh_data_dir_and_after_restart() {
    let mut broker = start_broker("cold", &["--segment-bytes", "4194304"]);
    let mut stream = broker.connect();
    create_topic(&mut stream, TOPIC, 1);

    for n in 0..BATCHES {
        let p = produce(&mut stream, TOPIC, 0, batch(n), -1);
        assert_eq!(p.error_code, 0);
        assert_eq!(p.base_offset, (n * RECORDS_PER_BATCH) as i64);
    }
    let total = BATCHES * RECORDS_PER_BATCH;
    // ~12 MiB written: more than the 8 MiB tail cache, over several 4 MiB segments.
    assert_eq!(fetch_all(&broker), (total, total as i64));

    assert!(broker.stop().success());
    broker.restart();
    assert_eq!(fetch_all(&broker), (total, total as i64));
}
