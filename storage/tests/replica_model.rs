//! Property tests of a follower's log against its leader's.
//!
//! A random leader log (random batch sizes, leader epochs that grow now and then, some batches
//! from idempotent producers) is copied to a follower by `append_replicated` calls of random
//! size, interleaved with truncations to random offsets, divergent suffixes cut away again
//! (KIP-101), reads, flushes, crashes at random points of the I/O history and clean reopens.
//! After every step the follower holds a prefix of the leader's log, byte for byte, read
//! through `read`, with the epoch cache and producer state that prefix gives; after a crash, no
//! less than what it reported durable. And garbage handed to `append_replicated` is refused
//! without a panic and without changing the log.
//! More cases: `PROPTEST_CASES=2000 cargo test -p spate-storage --test replica_model`.

mod common;

use std::path::Path;

use bytes::{Bytes, BytesMut};
use common::read_all;
use proptest::prelude::*;
use spate_storage::epoch::EpochCache;
use spate_storage::io::mem::MemDisk;
use spate_storage::producer_state::ProducerState;
use spate_storage::{block_on, FlushPolicy, Log, LogConfig, ReadChunk, ReadUpTo, StorageError};
use spate_wire::batch::{
    set_base_offset, set_partition_leader_epoch, BatchBuilder, BatchHeader, BatchSpec,
};
use spate_wire::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

/// One batch the leader appends: records, value size, whether the leader epoch grows first,
/// and its idempotent producer, if any.
#[derive(Debug, Clone)]
struct Spec {
    records: usize,
    value_bytes: usize,
    new_epoch: bool,
    producer: Option<i64>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1usize..6,
        0usize..400,
        prop::bool::weighted(0.15),
        prop::option::weighted(0.4, 0i64..3),
    )
        .prop_map(|(records, value_bytes, new_epoch, producer)| Spec {
            records,
            value_bytes,
            new_epoch,
            producer,
        })
}

#[derive(Debug, Clone)]
enum Op {
    /// Copy the next `batches` batches of the leader in one call.
    Replicate {
        batches: usize,
    },
    /// Truncate to an offset picked by `at` in `[start, end]`.
    Truncate {
        at: usize,
    },
    /// Append `batches` batches the leader never had, then cut back to an offset picked by `at`
    /// at or below where they start.
    Diverge {
        batches: usize,
        at: usize,
    },
    Read {
        at: usize,
        bytes_max: u64,
    },
    Flush,
    Crash {
        seed: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (1usize..9).prop_map(|batches| Op::Replicate { batches }),
        2 => any::<usize>().prop_map(|at| Op::Truncate { at }),
        2 => (1usize..4, any::<usize>()).prop_map(|(batches, at)| Op::Diverge { batches, at }),
        3 => (any::<usize>(), 1u64..6000).prop_map(|(at, bytes_max)| Op::Read { at, bytes_max }),
        1 => Just(Op::Flush),
        2 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
        1 => Just(Op::Reopen),
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

/// Small limits, so segments roll, the tail cache evicts and write buffers fill often.
fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes_max: 8 << 10,
        segment_ms: i64::MAX / 2,
        index_interval_bytes: 512,
        retention_ms: None,
        retention_bytes: None,
        flush,
        tail_cache_bytes_max: 2 << 10,
        write_buffer_bytes_max: 8 << 10,
        batch_bytes_max: 4 << 10,
        preallocate_bytes: 4 << 10,
        active_checkpoint_bytes: 1 << 10,
        ..LogConfig::default()
    }
}

fn batch(spec: BatchSpec, records: usize, value_bytes: usize, fill: u8) -> BytesMut {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, spec);
    let value = vec![fill; value_bytes];
    for r in 0..records {
        builder.push(spec.first_timestamp_ms + r as i64, None, Some(&value), &[]);
    }
    builder.finish();
    out
}

/// The leader: its log's batches as stored (read back through `read`), and its epoch cache.
struct Leader {
    batches: Vec<Bytes>,
    headers: Vec<BatchHeader>,
    epochs: EpochCache,
}

fn leader(specs: &[Spec]) -> Leader {
    let log = block_on(Log::open(
        MemDisk::new(),
        Path::new("/leader"),
        config(FlushPolicy::Never),
    ))
    .expect("open leader");
    let mut epoch = 0;
    let mut sequences = [0i32; 3];
    for (i, s) in specs.iter().enumerate() {
        epoch += i32::from(s.new_epoch);
        let (producer_id, producer_epoch, base_sequence) = match s.producer {
            Some(p) => {
                let seq = sequences[p as usize];
                sequences[p as usize] += s.records as i32;
                (ProducerId(p), ProducerEpoch(0), seq)
            }
            None => (ProducerId::NONE, ProducerEpoch(-1), -1),
        };
        let spec = BatchSpec {
            first_timestamp_ms: 1000 + i as i64,
            producer_id,
            producer_epoch,
            base_sequence,
            ..BatchSpec::default()
        };
        let b = batch(spec, s.records, s.value_bytes, i as u8);
        block_on(log.append(b, LeaderEpoch(epoch))).expect("leader append");
    }
    let read = block_on(read_all(&log, Offset(0), ReadUpTo::LogEnd)).expect("leader read");
    assert_eq!(read.len(), specs.len());
    Leader {
        headers: read.iter().map(|(h, _)| *h).collect(),
        batches: read.into_iter().map(|(_, b)| b).collect(),
        epochs: block_on(log.epochs()),
    }
}

impl Leader {
    /// End offset of the first `n` batches.
    fn end(&self, n: usize) -> Offset {
        n.checked_sub(1)
            .map_or(Offset(0), |i| self.headers[i].last_offset().next())
    }

    /// How many batches end below `offset`.
    fn batches_below(&self, offset: Offset) -> usize {
        self.headers.partition_point(|h| h.last_offset() < offset)
    }

    fn concat(&self, from: usize, to: usize) -> Bytes {
        let mut out = BytesMut::new();
        for b in &self.batches[from..to] {
            out.extend_from_slice(b);
        }
        out.freeze()
    }

    /// The producer state the first `n` batches give.
    fn producers(&self, n: usize, config: &LogConfig) -> ProducerState {
        let mut state = ProducerState::new(
            config.producers_per_partition_max,
            config.producer_id_expiration_ms,
        );
        for h in &self.headers[..n] {
            state.replay(h, &[]);
        }
        state
    }
}

const DIR: &str = "/follower";

fn open(disk: &MemDisk, flush: FlushPolicy) -> Log<MemDisk> {
    block_on(Log::open(disk.clone(), Path::new(DIR), config(flush))).expect("open follower")
}

/// The follower holds exactly the leader's first `n` batches, and the state they give.
fn check_prefix(
    follower: &Log<MemDisk>,
    leader: &Leader,
    n: usize,
    flush: FlushPolicy,
) -> Result<(), TestCaseError> {
    let end = leader.end(n);
    prop_assert_eq!(follower.log_end_offset(), end);
    prop_assert!(follower.durable_offset() <= end);
    let got = block_on(read_all(follower, Offset(0), ReadUpTo::LogEnd)).expect("follower read");
    prop_assert_eq!(got.len(), n);
    for (i, (_, bytes)) in got.iter().enumerate() {
        prop_assert!(bytes == &leader.batches[i], "batch {} differs", i);
    }
    let mut epochs = leader.epochs.clone();
    epochs.truncate_from_end(end);
    prop_assert_eq!(block_on(follower.epochs()), epochs);
    prop_assert_eq!(
        block_on(follower.producer_state()),
        leader.producers(n, &config(flush))
    );
    Ok(())
}

fn run(flush: FlushPolicy, specs: Vec<Spec>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let leader = leader(&specs);
    let disk = MemDisk::new();
    let mut follower = open(&disk, flush);
    // The follower holds the leader's first `n` batches.
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::Replicate { batches } => {
                let to = (n + batches).min(leader.batches.len());
                let out =
                    block_on(follower.append_replicated(leader.concat(n, to))).expect("replicate");
                prop_assert_eq!(out.batches, to - n);
                prop_assert_eq!(out.log_end, leader.end(to));
                let last_epoch = (to > n).then(|| leader.headers[to - 1].partition_leader_epoch);
                prop_assert_eq!(out.last_epoch, last_epoch);
                if flush == FlushPolicy::EveryAppend {
                    prop_assert_eq!(follower.durable_offset(), out.log_end);
                }
                n = to;
            }
            Op::Truncate { at } => {
                let end = leader.end(n);
                let offset = Offset((at % (end.0 as usize + 1)) as i64);
                let new_end = block_on(follower.truncate_to(offset)).expect("truncate");
                n = leader.batches_below(offset);
                prop_assert_eq!(new_end, leader.end(n));
                if offset < end {
                    // A cut is durable, and so is everything it kept.
                    prop_assert_eq!(follower.durable_offset(), new_end);
                }
            }
            Op::Diverge { batches, at } => {
                let base = leader.end(n);
                let epoch = block_on(follower.epochs())
                    .latest()
                    .map_or(0, |e| e.epoch.0);
                let mut next = base;
                let mut bytes = BytesMut::new();
                for k in 0..batches {
                    // Producer 9 never writes to the leader: its state must go with the cut.
                    let spec = BatchSpec {
                        first_timestamp_ms: 5000,
                        producer_id: ProducerId(9),
                        producer_epoch: ProducerEpoch(0),
                        base_sequence: k as i32 * 2,
                        ..BatchSpec::default()
                    };
                    let mut b = batch(spec, 2, 30, 0xee);
                    set_base_offset(&mut b, next);
                    set_partition_leader_epoch(&mut b, LeaderEpoch(epoch + k as i32));
                    next = Offset(next.0 + 2);
                    bytes.extend_from_slice(&b);
                }
                let out = block_on(follower.append_replicated(bytes)).expect("diverge");
                prop_assert_eq!(out.log_end, next);
                prop_assert!(block_on(follower.producer_state())
                    .get(ProducerId(9))
                    .is_some());
                // KIP-101: the follower cuts back to where it and the leader agree (or below).
                let offset = Offset((at % (base.0 as usize + 1)) as i64);
                let new_end = block_on(follower.truncate_to(offset)).expect("truncate");
                n = leader.batches_below(offset);
                prop_assert_eq!(new_end, leader.end(n));
            }
            Op::Read { at, bytes_max } => {
                if n == 0 {
                    continue;
                }
                let first = at % n;
                let header = &leader.headers[first];
                let span = header.last_offset().0 - header.base_offset.0 + 1;
                let offset = Offset(header.base_offset.0 + ((at / 7) as i64 % span));
                let result =
                    block_on(follower.read(offset, bytes_max, ReadUpTo::LogEnd)).expect("read");
                prop_assert!(!result.chunks.is_empty());
                let mut i = first;
                let mut total = 0u64;
                for chunk in &result.chunks {
                    let bytes = match chunk {
                        ReadChunk::Memory(b) => b.to_bytes(),
                        ReadChunk::File(r) => block_on(r.load()).expect("valid range"),
                    };
                    total += bytes.len() as u64;
                    let mut pos = 0;
                    while pos < bytes.len() {
                        let len = BatchHeader::parse(&bytes[pos..])
                            .expect("header")
                            .total_bytes();
                        prop_assert!(bytes[pos..pos + len] == leader.batches[i][..]);
                        pos += len;
                        i += 1;
                    }
                }
                prop_assert_eq!(total, result.bytes);
                prop_assert_eq!(result.next_offset, leader.end(i));
            }
            Op::Flush => {
                let durable = block_on(follower.flush()).expect("flush");
                prop_assert_eq!(durable, leader.end(n));
            }
            Op::Crash { seed } => {
                let durable = follower.durable_offset();
                drop(follower);
                disk.crash(seed);
                follower = open(&disk, flush);
                let end = follower.log_end_offset();
                prop_assert!(end >= durable, "lost durable data: {} < {}", end, durable);
                prop_assert!(end <= leader.end(n));
                n = leader.batches_below(end);
                prop_assert_eq!(leader.end(n), end, "recovered end on a batch boundary");
            }
            Op::Reopen => {
                block_on(follower.close()).expect("close");
                follower = open(&disk, flush);
            }
        }
        check_prefix(&follower, &leader, n, flush)?;
    }
    // Whatever happened, replication completes the copy.
    let out = block_on(follower.append_replicated(leader.concat(n, leader.batches.len())))
        .expect("final replicate");
    prop_assert_eq!(out.log_end, leader.end(leader.batches.len()));
    check_prefix(&follower, &leader, leader.batches.len(), flush)?;
    Ok(())
}

/// Ways to spoil the next batches a follower is to append.
#[derive(Debug, Clone)]
enum Garbage {
    /// Random bytes.
    Random(Vec<u8>),
    /// The right batches with one byte flipped (`at` picks which, outside the epoch field,
    /// which the CRC does not cover and the leader sets).
    Flip { at: usize, bit: u8 },
    /// The right batches cut short (`at` picks where).
    Cut { at: usize },
    /// The right batch at another base offset.
    Moved { base: i64 },
    /// The right batches followed by random bytes.
    Tail(Vec<u8>),
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..300).prop_map(Garbage::Random),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Garbage::Flip { at, bit }),
        any::<usize>().prop_map(|at| Garbage::Cut { at }),
        any::<i64>().prop_map(|base| Garbage::Moved { base }),
        prop::collection::vec(any::<u8>(), 1..100).prop_map(Garbage::Tail),
    ]
}

fn run_garbage(
    specs: Vec<Spec>,
    prefix: usize,
    spoiled: Vec<Garbage>,
) -> Result<(), TestCaseError> {
    let leader = leader(&specs);
    let n = prefix % (leader.batches.len() + 1);
    let disk = MemDisk::new();
    let follower = open(&disk, FlushPolicy::Never);
    block_on(follower.append_replicated(leader.concat(0, n))).expect("prefix");
    let next = leader.concat(n, (n + 2).min(leader.batches.len()));
    for g in spoiled {
        let bad: Bytes = match g {
            Garbage::Random(bytes) => bytes.into(),
            Garbage::Flip { at, bit } => {
                if next.is_empty() {
                    continue;
                }
                let mut bytes = BytesMut::from(&next[..]);
                let mut at = at % bytes.len();
                // The epoch field of whichever batch `at` falls in: not CRC-covered, and any
                // epoch at or above the latest is valid. Move off it.
                let first_len = leader.batches[n].len();
                let batch_start = if at < first_len { 0 } else { first_len };
                if (batch_start + 12..batch_start + 16).contains(&at) {
                    at = batch_start + 16;
                }
                bytes[at] ^= 1 << bit;
                bytes.freeze()
            }
            Garbage::Cut { at } => {
                if next.is_empty() {
                    continue;
                }
                let at = at % next.len();
                if at == leader.batches[n].len() {
                    // A cut between two batches leaves a whole batch: valid.
                    continue;
                }
                next.slice(..at)
            }
            Garbage::Moved { base } => {
                if next.is_empty() || base == leader.end(n).0 {
                    continue;
                }
                let mut bytes = BytesMut::from(&leader.batches[n][..]);
                set_base_offset(&mut bytes, Offset(base));
                bytes.freeze()
            }
            Garbage::Tail(tail) => {
                let mut bytes = BytesMut::from(&next[..]);
                bytes.extend_from_slice(&tail);
                bytes.freeze()
            }
        };
        if bad.is_empty() {
            continue;
        }
        let result = block_on(follower.append_replicated(bad.clone()));
        prop_assert!(
            matches!(
                result,
                Err(StorageError::InvalidBatch(_)
                    | StorageError::NonContiguousBatch { .. }
                    | StorageError::EpochRegression { .. }
                    | StorageError::BatchTooLarge { .. })
            ),
            "{:?} for {} bytes",
            result,
            bad.len()
        );
        check_prefix(&follower, &leader, n, FlushPolicy::Never)?;
    }
    // The log still takes the right batches.
    block_on(follower.append_replicated(next)).expect("the right batches");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_follower_copying_in_chunks_through_truncations_and_crashes_matches_the_leader(
        flush in policy(),
        specs in prop::collection::vec(spec(), 1..60),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(flush, specs, ops)?;
    }

    #[test]
    fn garbage_is_refused_without_a_panic_and_changes_nothing(
        specs in prop::collection::vec(spec(), 1..12),
        prefix in any::<usize>(),
        spoiled in prop::collection::vec(garbage(), 1..12),
    ) {
        run_garbage(specs, prefix, spoiled)?;
    }
}
