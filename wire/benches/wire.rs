//! Hot-path codec costs: decoding a 1 MiB Produce request with 8 partitions, and encoding a
//! Fetch response for 8 partitions. A counting global allocator reports allocations per request
//! (printed before the timings).
//!
//! Run: `cargo bench -p spate-wire --bench wire`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use spate_wire::batch::{BatchBuilder, BatchSpec};
use spate_wire::fetch::{FetchResponseEncoder, PartitionHeader, Records};
use spate_wire::header::{request_header_version, CorrelationId, RequestHeader};
use spate_wire::request::{decode_request, RequestBody, RequestLimits};
use spate_wire::types::{Offset, PartitionIndex};
use spate_wire::ErrorCode;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PARTITIONS: usize = 8;
const PARTITION_RECORDS_BYTES: usize = 128 * 1024;
const VALUE_BYTES: usize = 1000;

fn batch_for_partition() -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    let value = vec![0x5a; VALUE_BYTES];
    let mut written = 0;
    while written + VALUE_BYTES + 80 < PARTITION_RECORDS_BYTES {
        builder.push(0, Some(b"key"), Some(&value), &[]);
        written += VALUE_BYTES + 20;
    }
    builder.finish();
    out.freeze()
}

fn produce_frame(version: i16) -> Bytes {
    let batch = batch_for_partition();
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("bench-topic"));
    topic.partition_data = (0..PARTITIONS as i32)
        .map(|i| {
            let mut p = PartitionProduceData::default();
            p.index = i;
            p.records = Some(batch.clone());
            p
        })
        .collect();
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let header = RequestHeader {
        api_key: ApiKey::Produce,
        api_version: version,
        correlation_id: CorrelationId(1),
        client_id: Some(Bytes::from_static(b"bench")),
        version: request_header_version(ApiKey::Produce, version),
    };
    let mut frame = BytesMut::new();
    header.encode(&mut frame);
    request.encode(&mut frame, version).unwrap();
    frame.freeze()
}

fn decode_produce(frame: &Bytes) -> usize {
    let request = decode_request(frame.clone(), &RequestLimits::default()).unwrap();
    let RequestBody::Produce(p) = request.body else {
        unreachable!()
    };
    p.topic_data[0].partition_data.len()
}

fn encode_fetch(version: i16, records: &[Bytes]) -> usize {
    let mut enc =
        FetchResponseEncoder::new(version, CorrelationId(1), ErrorCode::None, 0, 1).unwrap();
    enc.topic("bench-topic", records.len());
    for (i, r) in records.iter().enumerate() {
        let mut h = PartitionHeader::new(PartitionIndex(i as i32));
        h.high_watermark = Offset(1_000_000);
        h.last_stable_offset = Offset(1_000_000);
        h.log_start_offset = Offset(0);
        enc.partition(
            &h,
            Some(Records {
                len: r.len(),
                data: r.clone(),
            }),
        );
    }
    enc.finish().frame_bytes
}

fn allocations_of(f: impl FnOnce() -> usize) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    black_box(f());
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn benches(c: &mut Criterion) {
    let records: Vec<Bytes> = (0..PARTITIONS).map(|_| batch_for_partition()).collect();
    for version in [7i16, 9] {
        let frame = produce_frame(version);
        println!(
            "produce v{version}: frame {} bytes, {} partitions, allocations per decode: {}",
            frame.len(),
            PARTITIONS,
            allocations_of(|| decode_produce(&frame))
        );
        let mut group = c.benchmark_group("produce_decode");
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(format!("v{version}_1MiB_8_partitions"), |b| {
            b.iter(|| decode_produce(black_box(&frame)))
        });
        group.finish();
    }
    for version in [11i16, 12] {
        println!(
            "fetch v{version}: {} partitions, {} bytes, allocations per encode: {}",
            PARTITIONS,
            encode_fetch(version, &records),
            allocations_of(|| encode_fetch(version, &records))
        );
        c.bench_function(&format!("fetch_encode/v{version}_8_partitions"), |b| {
            b.iter(|| encode_fetch(version, black_box(&records)))
        });
    }
}

criterion_group!(wire, benches);
criterion_main!(wire);
