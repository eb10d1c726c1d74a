//! Property test: random sequences of append, read, flush, crash, reopen, truncate and
//! retention against a simple model. Invariants: everything reported durable survives a crash
//! byte for byte; offsets are dense and increasing; nothing corrupt is ever returned.
//! More cases: `PROPTEST_CASES=2000 cargo test -p spate-storage --test log_model`.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::{batch, read_all};
use proptest::prelude::*;
use spate_storage::io::mem::MemDisk;
use spate_storage::{block_on, FlushPolicy, Log, LogConfig, ReadChunk, ReadUpTo};
use spate_wire::batch::{set_base_offset, set_partition_leader_epoch, BatchHeader};
use spate_wire::types::{LeaderEpoch, Offset};

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, value_bytes: usize },
    Read { at: usize, bytes_max: u64 },
    Flush,
    Crash { seed: u64 },
    Reopen,
    Truncate { at: usize },
    Retention { keep_newest: usize },
    NewEpoch,
    TimestampLookup { back: i64 },
    DeleteRecords { at: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (1usize..6, 0usize..400).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        3 => (any::<usize>(), 1u64..6000).prop_map(|(at, bytes_max)| Op::Read { at, bytes_max }),
        2 => Just(Op::Flush),
        2 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
        1 => Just(Op::Reopen),
        1 => any::<usize>().prop_map(|at| Op::Truncate { at }),
        1 => (0usize..30).prop_map(|keep_newest| Op::Retention { keep_newest }),
        1 => Just(Op::NewEpoch),
        1 => (-2i64..40).prop_map(|back| Op::TimestampLookup { back }),
        1 => any::<u64>().prop_map(|at| Op::DeleteRecords { at }),
    ]
}

fn policy() -> impl Strategy<Value = FlushPolicy> {
    prop_oneof![
        Just(FlushPolicy::Never),
        Just(FlushPolicy::EveryAppend),
        (1u64..8000).prop_map(|bytes_max| FlushPolicy::GroupCommit {
            interval_ms: 1,
            bytes_max
        }),
    ]
}

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes_max: 8 << 10,
        segment_ms: i64::MAX / 2,
        index_interval_bytes: 512,
        retention_ms: Some(0),
        retention_bytes: None,
        flush,
        tail_cache_bytes_max: 2 << 10,
        write_buffer_bytes_max: 8 << 10,
        batch_bytes_max: 4 << 10,
        // One-block steps: segment files grow while the model appends, crashes and recovers.
        preallocate_bytes: 4 << 10,
        preallocate_step_bytes_max: 4 << 10,
        active_checkpoint_bytes: 1 << 10,
        ..LogConfig::default()
    }
}

/// One batch as the model knows it: the exact bytes the log must return.
#[derive(Debug, Clone)]
struct Stored {
    base: Offset,
    last: Offset,
    timestamp_ms: i64,
    bytes: Bytes,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<Stored>,
    // Batches below this index were reported durable by the log.
    durable: usize,
    start: Offset,
}

impl Model {
    fn end(&self) -> Offset {
        self.batches.last().map_or(self.start, |b| b.last.next())
    }
    fn durable_offset(&self) -> Offset {
        match self.durable {
            0 => self.start,
            n => self.batches[n - 1].last.next(),
        }
    }
    fn note_durable(&mut self, offset: Offset) {
        self.durable = self.batches.partition_point(|b| b.last < offset);
    }
}

const DIR: &str = "/model/p0";

fn check_all(log: &Log<MemDisk>, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), model.end());
    prop_assert_eq!(log.log_start_offset(), model.start);
    let got = block_on(read_all(log, model.start, ReadUpTo::LogEnd)).expect("no corrupt data");
    prop_assert_eq!(got.len(), model.batches.len());
    for ((header, bytes), want) in got.iter().zip(&model.batches) {
        prop_assert_eq!(header.base_offset, want.base);
        prop_assert_eq!(bytes, &want.bytes);
    }
    Ok(())
}

fn run(flush: FlushPolicy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let disk = MemDisk::new();
    let dir = Path::new(DIR);
    let mut log = block_on(Log::open(disk.clone(), dir, config(flush))).expect("open");
    let mut model = Model::default();
    let mut clock_ms = 0i64;
    let mut epoch = LeaderEpoch(0);
    let mut appends = 0u64;
    for op in ops {
        match op {
            Op::Append {
                records,
                value_bytes,
            } => {
                clock_ms += 1;
                appends += 1;
                let sent = batch(records, value_bytes, clock_ms, appends);
                let info = block_on(log.append(sent.clone(), epoch)).expect("append");
                prop_assert_eq!(info.base_offset, model.end());
                prop_assert_eq!(info.last_offset.0, model.end().0 + records as i64 - 1);
                let mut expected = sent;
                set_base_offset(&mut expected, info.base_offset);
                set_partition_leader_epoch(&mut expected, epoch);
                model.batches.push(Stored {
                    base: info.base_offset,
                    last: info.last_offset,
                    timestamp_ms: clock_ms,
                    bytes: expected.freeze(),
                });
                if flush == FlushPolicy::EveryAppend {
                    prop_assert_eq!(log.durable_offset(), model.end());
                }
            }
            Op::Read { at, bytes_max } => {
                if model.batches.is_empty() {
                    continue;
                }
                let first = &model.batches[at % model.batches.len()];
                let span = first.last.0 - first.base.0 + 1;
                let offset = Offset(first.base.0 + ((at / 7) % span as usize) as i64);
                // The first batch may hold the start (DeleteRecords): nothing below is read.
                let offset = offset.max(model.start);
                let result = block_on(log.read(offset, bytes_max, ReadUpTo::LogEnd)).expect("read");
                prop_assert!(!result.chunks.is_empty());
                let mut i = model
                    .batches
                    .iter()
                    .position(|b| b.base == first.base)
                    .expect("batch");
                let mut total = 0u64;
                for chunk in &result.chunks {
                    let bytes = match chunk {
                        ReadChunk::Memory(b) => b.to_bytes(),
                        ReadChunk::File(r) => block_on(r.load()).expect("valid range"),
                    };
                    total += bytes.len() as u64;
                    let mut at = 0;
                    while at < bytes.len() {
                        let header = BatchHeader::parse(&bytes[at..]).expect("header");
                        let len = header.total_bytes();
                        prop_assert_eq!(&bytes[at..at + len], &model.batches[i].bytes[..]);
                        at += len;
                        i += 1;
                    }
                }
                prop_assert_eq!(total, result.bytes);
                prop_assert_eq!(result.next_offset, model.batches[i - 1].last.next());
            }
            Op::Flush => {
                let durable = block_on(log.flush()).expect("flush");
                prop_assert_eq!(durable, model.end());
            }
            Op::Crash { seed } => {
                model.note_durable(log.durable_offset());
                // Under flush policy never a start moved by DeleteRecords may lie past the
                // durable data (the high watermark is the log end there).
                let durable = model
                    .durable_offset()
                    .min(log.durable_offset().max(model.start));
                let durable = if model.durable == 0 {
                    durable.min(log.durable_offset())
                } else {
                    durable
                };
                drop(log);
                disk.crash(seed);
                log = block_on(Log::open(disk.clone(), dir, config(flush))).expect("reopen");
                let end = log.log_end_offset();
                prop_assert!(
                    end >= durable,
                    "lost durable data: end {} < durable {}",
                    end,
                    durable
                );
                let kept = model.batches.partition_point(|b| b.last < end);
                // A start moved inside a batch that the crash took (flush policy never) is
                // brought down to the recovered end.
                model.start = model.start.min(end);
                prop_assert_eq!(
                    kept == 0 && end == model.start
                        || model.batches[..kept]
                            .last()
                            .is_some_and(|b| b.last.next() == end),
                    true,
                    "recovered end {} not on a batch boundary",
                    end
                );
                model.batches.truncate(kept);
                model.note_durable(end);
                // The epoch may have been appended only in lost batches: keep using ours.
            }
            Op::Reopen => {
                block_on(log.close()).expect("close");
                log = block_on(Log::open(disk.clone(), dir, config(flush))).expect("reopen");
                model.note_durable(model.end());
            }
            Op::Truncate { at } => {
                let span = (model.end().0 - model.start.0) as usize;
                let offset = Offset(model.start.0 + (at % (span + 1)) as i64);
                let end = block_on(log.truncate_to(offset)).expect("truncate");
                let kept = model.batches.partition_point(|b| b.last < offset);
                model.batches.truncate(kept);
                // A cut inside the batch holding the start brings the start down with it.
                model.start = model.start.min(end);
                prop_assert_eq!(end, model.end());
                model.note_durable(log.durable_offset().min(end));
            }
            Op::Retention { keep_newest } => {
                // Everything older than the newest `keep_newest` appends is past retention.
                let now = clock_ms - keep_newest as i64;
                let outcome = block_on(log.apply_retention(now)).expect("retention");
                let start = outcome.log_start_offset;
                prop_assert!(start <= model.end());
                prop_assert!(start >= model.start);
                let dropped = model.batches.partition_point(|b| b.last < start);
                // Only batches past retention were deleted, and only whole batches (the start
                // may lie inside a batch only where DeleteRecords put it).
                for b in &model.batches[..dropped] {
                    prop_assert!(b.timestamp_ms < now);
                }
                prop_assert!(
                    dropped == model.batches.len()
                        || model.batches[dropped].base == start
                        || start == model.start
                );
                model.batches.drain(..dropped);
                model.durable = model.durable.saturating_sub(dropped);
                model.start = start;
            }
            Op::NewEpoch => epoch = LeaderEpoch(epoch.0 + 1),
            Op::TimestampLookup { back } => {
                let ts = clock_ms - back;
                let found =
                    block_on(log.offset_for_timestamp(ts, Offset(i64::MAX))).expect("lookup");
                let want = model
                    .batches
                    .iter()
                    .find(|b| b.timestamp_ms >= ts)
                    .map(|b| (b.base.max(model.start), b.timestamp_ms));
                prop_assert_eq!(found, want);
            }
            Op::DeleteRecords { at } => {
                let visible = log.high_watermark();
                let span = (visible.0 - model.start.0) as u64;
                let offset = Offset(model.start.0 + (at % (span + 1)) as i64);
                let start = block_on(log.delete_records(offset)).expect("delete records");
                prop_assert_eq!(start, offset.max(model.start));
                let dropped = model.batches.partition_point(|b| b.last < start);
                model.batches.drain(..dropped);
                model.durable = model.durable.saturating_sub(dropped);
                model.start = start;
                // Above the high watermark: refused, nothing moves.
                // (Read again: the call may have completed a pending seal, which moves it.)
                let above = Offset(log.high_watermark().0 + 1);
                prop_assert!(block_on(log.delete_records(above)).is_err());
                prop_assert_eq!(log.log_start_offset(), start);
            }
        }
        prop_assert!(log.durable_offset() <= log.log_end_offset());
        check_all(&log, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::proptest_cases(), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model_through_crashes(flush in policy(), ops in prop::collection::vec(op(), 1..60)) {
        run(flush, ops)?;
    }
}
