//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use spate_storage::io::mem::MemDisk;
use spate_storage::io::Disk;
use spate_storage::{FlushPolicy, Log, LogConfig, ReadChunk, ReadUpTo, StorageError};
use spate_wire::batch::{batches, BatchBuilder, BatchHeader, BatchSpec};
use spate_wire::types::{LeaderEpoch, Offset};

/// A valid v2 batch of `records` records with `value_bytes`-byte values; the values encode
/// `seed` so batches differ.
pub fn batch(records: usize, value_bytes: usize, timestamp_ms: i64, seed: u64) -> BytesMut {
    let mut out = BytesMut::new();
    let spec = BatchSpec {
        first_timestamp_ms: timestamp_ms,
        ..BatchSpec::default()
    };
    let mut builder = BatchBuilder::new(&mut out, spec);
    let mut value = vec![0u8; value_bytes];
    for r in 0..records {
        for (i, b) in value.iter_mut().enumerate() {
            *b = (seed as usize).wrapping_mul(31).wrapping_add(r * 7 + i) as u8;
        }
        builder.push(timestamp_ms, None, Some(&value), &[]);
    }
    builder.finish();
    out
}

/// A config with small limits so tests roll segments and evict the cache quickly.
pub fn small_config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 << 10,
        segment_ms: i64::MAX / 2,
        index_interval_bytes: 1024,
        retention_ms: None,
        retention_bytes: None,
        flush,
        tail_cache_bytes_max: 8 << 10,
        write_buffer_bytes_max: 32 << 10,
        batch_bytes_max: 16 << 10,
        preallocate_bytes: 16 << 10,
        preallocate_step_bytes_max: 32 << 10,
        active_checkpoint_bytes: 8 << 10,
        producers_per_partition_max: 1000,
        producer_id_expiration_ms: 24 * 3600 * 1000,
    }
}

/// Polls all futures to completion on this thread, round-robin (for MemDisk futures, which
/// only ever yield and wake themselves).
pub fn join_all<T>(mut futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        let mut pending = false;
        for (i, f) in futures.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(&mut cx) {
                    Poll::Ready(v) => out[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if !pending {
            return out.into_iter().map(|v| v.expect("completed")).collect();
        }
    }
    panic!("futures did not complete");
}

/// Reads every batch from `from` to the end (`up_to`), loading file ranges (CRC-checked), and
/// returns (header, bytes) per batch.
pub async fn read_all<D: Disk>(
    log: &Log<D>,
    from: Offset,
    up_to: ReadUpTo,
) -> Result<Vec<(BatchHeader, Bytes)>, StorageError> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let result = log.read(next, 20_000, up_to).await?;
        if result.chunks.is_empty() {
            return Ok(out);
        }
        assert!(result.next_offset > next, "a read makes progress");
        for chunk in &result.chunks {
            let bytes = match chunk {
                ReadChunk::Memory(b) => b.to_bytes(),
                ReadChunk::File(range) => range.load().await?,
            };
            for item in batches(&bytes) {
                let (header, raw) = item.expect("whole valid batches");
                spate_wire::batch::verify_crc(raw).expect("crc valid");
                out.push((header, bytes.slice_ref(raw)));
            }
        }
        next = result.next_offset;
    }
}

/// Proptest cases per property: 64 by default (fast in CI); `PROPTEST_CASES` overrides.
pub fn proptest_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Polls `future` up to `polls` times with a no-op waker: `Some(output)` if it finished, `None`
/// if it is still waiting (for a held write, say).
pub fn poll_n<F: Future>(mut future: Pin<&mut F>, polls: usize) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Appends one batch of 4 records (offsets advance by 4), which must complete without waiting;
/// `sent` keeps every batch appended, in order.
pub fn append_now<D: Disk>(log: &Log<D>, sent: &mut Vec<BytesMut>) -> Offset {
    let b = batch(4, 100, 1000 + sent.len() as i64, sent.len() as u64);
    sent.push(b.clone());
    poll_n(std::pin::pin!(log.append(b, LeaderEpoch(1))), 100)
        .unwrap_or_else(|| panic!("append {} waited", sent.len()))
        .expect("append")
        .base_offset
}

/// The names of the files in `disk` that end in `suffix`.
pub fn names(disk: &MemDisk, suffix: &str) -> Vec<String> {
    disk.paths()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// Polls `future` and asserts it is still waiting after 100 polls (`waiting_for` says on what),
/// runs `release`, then polls it to completion within `polls_max` polls and returns its output.
pub fn waits_until_released<F: Future>(
    future: F,
    waiting_for: &str,
    release: impl FnOnce(),
    polls_max: usize,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    assert!(poll_n(future.as_mut(), 100).is_none(), "{waiting_for}");
    release();
    poll_n(future.as_mut(), polls_max)
        .unwrap_or_else(|| panic!("not done {polls_max} polls after the release: {waiting_for}"))
}
