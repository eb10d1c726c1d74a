//! A partition that goes idle right after a segment roll under flush mode `never`: nothing
//! appends, syncs or waits on it any more, so only the maintenance task's periodic
//! `Log::drive_io` can complete the old segment's seal (truncate, fdatasync, marker removal,
//! index checkpoint).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use spate_wire::batch::{BatchBuilder, BatchSpec};

const TOPIC: &str = "idle";

fn batch(n: usize) -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    for i in 0..8 {
        let value = vec![(n * 8 + i) as u8; 1000];
        builder.push(0, None, Some(&value), &[]);
    }
    builder.finish();
    out.freeze()
}

fn names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn an_idle_partitions_seal_completes_under_flush_mode_never() {
    let broker = start_broker(
        "idle",
        &["--flush-mode", "never", "--segment-bytes", "65536"],
    );
    let mut stream = broker.connect();
    create_topic(&mut stream, TOPIC, 1);
    let dir = broker.data_dir().join(format!("{TOPIC}-0"));
    let mut n = 0;
    while names(&dir, ".log").len() < 2 {
        let p = produce(&mut stream, TOPIC, 0, batch(n), 1);
        assert_eq!(p.error_code, 0);
        assert_eq!(p.base_offset, 8 * n as i64);
        n += 1;
        assert!(n < 1000, "never rolled");
    }
    // The append that rolled left the seal pending; the partition is idle from here on.
    let old_marker = format!("{:020}.sealing", 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while names(&dir, ".sealing").contains(&old_marker) {
        assert!(
            Instant::now() < deadline,
            "the idle partition's seal did not complete within 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !names(&dir, ".index").contains(&format!("{:020}.index", 0)) {
        assert!(
            Instant::now() < deadline,
            "no checkpoint of the sealed segment"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The old segment was cut to its data: a whole number of batches, no preallocated tail.
    let old = std::fs::read(dir.join(format!("{:020}.log", 0))).expect("old segment");
    let bases: Vec<i64> = spate_wire::batch::batches(&old)
        .map(|item| item.expect("whole batches").0.base_offset.0)
        .collect();
    assert!(bases.len() >= 2 && bases.len() < n);
    assert!(bases.iter().enumerate().all(|(i, &b)| b == 8 * i as i64));
}
