//! The allocation guard under random input: decoding any body never reserves more than a small
//! multiple of the body's size, whatever lengths it declares.
//!
//! A counting global allocator records the largest single allocation made while decoding. The
//! file holds one test so no other test thread allocates at the same time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use spate_wire::header::{request_header_version, CorrelationId, RequestHeader};
use spate_wire::request::{decode_request, RequestLimits};
use spate_wire::versions::SUPPORTED;

struct Largest;

static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_BYTES.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// Pieces a hostile body is made of: lengths and counts of every encoding, big and small.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i32>().prop_map(|v| v.to_be_bytes().to_vec()),
        (0i32..4).prop_map(|v| v.to_be_bytes().to_vec()),
        Just(i32::MAX.to_be_bytes().to_vec()),
        any::<i16>().prop_map(|v| v.to_be_bytes().to_vec()),
        Just(vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        Just(vec![0xff, 0xff, 0x7f]),
        (0u8..4).prop_map(|v| vec![v]),
        proptest::collection::vec(any::<u8>(), 0..16),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(token(), 0..24).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decoding_random_bodies_reserves_at_most_a_multiple_of_their_size(
        api in 0..SUPPORTED.len(),
        version_pick in any::<u16>(),
        body in body(),
    ) {
        let range = SUPPORTED[api];
        let version = range.min + (version_pick % (range.max - range.min + 1) as u16) as i16;
        let header = RequestHeader {
            api_key: range.api_key,
            api_version: version,
            correlation_id: CorrelationId(1),
            client_id: None,
            version: request_header_version(range.api_key, version),
        };
        let mut frame = BytesMut::new();
        header.encode(&mut frame);
        frame.put_slice(&body);
        let frame: Bytes = frame.freeze();
        LARGEST_BYTES.store(0, Ordering::Relaxed);
        let result = decode_request(frame, &RequestLimits::default());
        let largest = LARGEST_BYTES.load(Ordering::Relaxed);
        // Worst element ratio is 120 bytes in memory per 3 bytes on the wire (see guard.rs).
        let bound = 48 * body.len() + 4096;
        prop_assert!(
            largest <= bound,
            "{:?} v{} body {} bytes reserved {} bytes ({:?})",
            range.api_key, version, body.len(), largest, result.as_ref().err()
        );
    }
}
