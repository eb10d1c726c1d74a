//! Append throughput of the log against raw O_DIRECT write bandwidth, in the same run and the
//! same directory.
//!
//! `cargo bench -p spate-storage --bench append` (env: `SPATE_BENCH_MIB`, data per measurement,
//! default 512; `SPATE_BENCH_RUNS`, default 3, the median is printed; `SPATE_BENCH_DIR`,
//! default under the target directory, must be on a real disk, not tmpfs).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use glommio::io::DmaFile;
use glommio::{LocalExecutorBuilder, Placement};
use spate_storage::io::bandwidth::{sequential_write, WriteSpec};
use spate_storage::io::glommio::{prime_io_poll_probe, GlommioDisk};
use spate_storage::{FlushPolicy, Log, LogConfig};
use spate_wire::batch::{BatchBuilder, BatchSpec};
use spate_wire::types::LeaderEpoch;

const RECORD_BYTES: usize = 1024;
const WRITE_BYTES: usize = 4 << 20;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Appends one batch of `records` 1 KiB records to `out`.
fn put_batch(out: &mut BytesMut, records: usize, seed: u64) {
    let mut builder = BatchBuilder::new(out, BatchSpec::default());
    let mut value = vec![0u8; RECORD_BYTES];
    for r in 0..records {
        value
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (seed as usize + r + i) as u8);
        builder.push(0, None, Some(&value), &[]);
    }
    builder.finish();
}

/// `count` batches carved out of one arena, the way a broker decodes them out of a receive
/// buffer (zero-copy `split_to`), plus the arena's rest, which keeps the memory alive: freeing
/// a megabyte per batch inside the timed loop would measure the allocator, not the log.
fn make_batches(records: usize, count: u64) -> (Vec<BytesMut>, BytesMut) {
    let mut probe = BytesMut::new();
    put_batch(&mut probe, records, 0);
    let mut arena = BytesMut::with_capacity(probe.len() * count as usize + 1);
    for i in 0..count {
        put_batch(&mut arena, records, i);
    }
    let len = probe.len();
    let batches = (0..count).map(|_| arena.split_to(len)).collect();
    (batches, arena)
}

/// Raw bandwidth in bytes/s: sequential `WRITE_BYTES` direct writes with up to `depth` in
/// flight and one fdatasync at the end: the write size the log's buffer uses, and with `depth`
/// 2 the same queue depth as the log's pipelined writes.
async fn raw(dir: &Path, total: u64, depth: usize) -> f64 {
    let spec = WriteSpec {
        total_bytes: total,
        write_bytes: WRITE_BYTES,
        writes_in_flight: depth,
    };
    sequential_write(&GlommioDisk, &dir.join("raw.bin"), spec)
        .await
        .expect("raw write")
        .bytes_per_second()
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Appends do not wait; group commit syncs every `bytes_max`, one final flush.
    GroupCommit,
    /// `producers` tasks each append then wait for durability (acks=all), sharing syncs.
    GroupCommitAcksAll { producers: usize },
    /// fdatasync on every append.
    SyncEveryAppend,
}

async fn log_append(dir: &Path, total: u64, records: usize, mode: Mode) -> f64 {
    let log_dir = dir.join("log");
    let _ = std::fs::remove_dir_all(&log_dir);
    let flush = match mode {
        Mode::SyncEveryAppend => FlushPolicy::EveryAppend,
        _ => FlushPolicy::GroupCommit {
            interval_ms: 10,
            bytes_max: env_or("SPATE_BENCH_FLUSH_MIB", 32) << 20,
        },
    };
    let config = LogConfig {
        flush,
        write_buffer_bytes_max: WRITE_BYTES,
        tail_cache_bytes_max: 8 << 20,
        batch_bytes_max: 2 << 20,
        retention_ms: None,
        preallocate_bytes: env_or("SPATE_BENCH_PREALLOC_MIB", 64) << 20,
        preallocate_step_bytes_max: env_or("SPATE_BENCH_PREALLOC_MIB", 64) << 20,
        ..LogConfig::default()
    };
    let log = Rc::new(
        Log::open(GlommioDisk, &log_dir, config)
            .await
            .expect("open log"),
    );
    let batch_len = {
        let mut probe = BytesMut::new();
        put_batch(&mut probe, records, 0);
        probe.len() as u64
    };
    let count = total.div_ceil(batch_len);
    // Batches are built before timing: the broker receives them from the network.
    let (batches, arena_rest) = make_batches(records, count);
    let start = Instant::now();
    match mode {
        Mode::GroupCommitAcksAll { producers } => {
            let mut queues: Vec<Vec<BytesMut>> = (0..producers).map(|_| Vec::new()).collect();
            for (i, b) in batches.into_iter().enumerate() {
                queues[i % producers].push(b);
            }
            let tasks: Vec<_> = queues
                .into_iter()
                .map(|queue| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        for b in queue {
                            let info = log.append(b, LeaderEpoch(0)).await.expect("append");
                            log.wait_durable(info.last_offset.next())
                                .await
                                .expect("durable");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
        }
        _ => {
            for b in batches {
                log.append(b, LeaderEpoch(0)).await.expect("append");
            }
            log.flush().await.expect("flush");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(arena_rest);
    assert_eq!(log.durable_offset(), log.log_end_offset());
    drop(log);
    let _ = std::fs::remove_dir_all(&log_dir);
    (count * batch_len) as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let dir: PathBuf = std::env::var("SPATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage-bench"));
    let total = env_or("SPATE_BENCH_MIB", 512) << 20;
    let runs = env_or("SPATE_BENCH_RUNS", 3) as usize;
    // cargo bench passes `--bench`; nothing else to parse.
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            prime_io_poll_probe(&dir).await.expect("probe");
            let _ = DmaFile::open(dir.join(".spate-io-probe")).await;
            let mib = |bps: f64| bps / (1 << 20) as f64;
            println!(
                "storage append bench: {} MiB per run, median of {runs} runs, dir {}",
                total >> 20,
                dir.display()
            );
            let cases: [(&str, usize, Mode); 6] = [
                ("16 KiB batches, group commit", 16, Mode::GroupCommit),
                ("1 MiB batches, group commit", 1024, Mode::GroupCommit),
                (
                    "16 KiB batches, group commit, 8 acks=all producers",
                    16,
                    Mode::GroupCommitAcksAll { producers: 8 },
                ),
                (
                    "1 MiB batches, group commit, 8 acks=all producers",
                    1024,
                    Mode::GroupCommitAcksAll { producers: 8 },
                ),
                (
                    "16 KiB batches, fsync per append",
                    16,
                    Mode::SyncEveryAppend,
                ),
                (
                    "1 MiB batches, fsync per append",
                    1024,
                    Mode::SyncEveryAppend,
                ),
            ];
            // `SPATE_BENCH_ONLY=<substring>` runs only the matching log cases.
            let only = std::env::var("SPATE_BENCH_ONLY").unwrap_or_default();
            // (raw QD1, raw QD2, log) per run and case. The device's speed drifts a lot between
            // seconds (a virtual disk), so every log run is paired with raw runs just before it
            // and the ratio is taken per pair, against the better of the two raw depths.
            let mut results: Vec<Vec<(f64, f64, f64)>> = cases.iter().map(|_| Vec::new()).collect();
            for _ in 0..runs {
                for (i, (name, records, mode)) in cases.iter().enumerate() {
                    if !name.contains(only.as_str()) {
                        continue;
                    }
                    // fsync per append with 16 KiB batches is slow: a smaller volume suffices.
                    let volume = if matches!(mode, Mode::SyncEveryAppend) && *records == 16 {
                        total / 16
                    } else {
                        total
                    };
                    // The order rotates so that no side always runs first after a pause.
                    let (raw1, raw2, log) = if results[i].len() % 2 == 0 {
                        let log = log_append(&dir, volume, *records, *mode).await;
                        (raw(&dir, volume, 1).await, raw(&dir, volume, 2).await, log)
                    } else {
                        let raw1 = raw(&dir, volume, 1).await;
                        let raw2 = raw(&dir, volume, 2).await;
                        (raw1, raw2, log_append(&dir, volume, *records, *mode).await)
                    };
                    results[i].push((raw1, raw2, log));
                }
            }
            println!(
                "{:<52} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "case (medians over runs, MiB/s)",
                "raw QD1",
                "raw QD2",
                "log",
                "log/QD1",
                "log/best"
            );
            for ((name, _, _), r) in cases.iter().zip(results) {
                if r.is_empty() {
                    continue;
                }
                let ratio_qd1 = median(r.iter().map(|(a, _, l)| l / a).collect());
                let ratio_best = median(r.iter().map(|(a, b, l)| l / a.max(*b)).collect());
                println!(
                    "{name:<52} {:>8.1} {:>8.1} {:>8.1} {:>8.3} {:>8.3}",
                    mib(median(r.iter().map(|x| x.0).collect())),
                    mib(median(r.iter().map(|x| x.1).collect())),
                    mib(median(r.iter().map(|x| x.2).collect())),
                    ratio_qd1,
                    ratio_best
                );
                let runs: Vec<String> = r
                    .iter()
                    .map(|(a, b, l)| format!("{:.0}/{:.0}/{:.0}", mib(*a), mib(*b), mib(*l)))
                    .collect();
                println!("    runs raw1/raw2/log MiB/s: {}", runs.join("  "));
            }
        })
        .expect("executor")
        .join()
        .expect("bench ran");
}
