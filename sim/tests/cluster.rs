//! The deterministic whole-cluster simulation (issue #18): the real controller quorum, the real
//! partition replicas and the real logs on the in-memory faulty disk, in one thread, from a seed.
//!
//! # What is simulated
//!
//! Each seed builds 3 to 5 brokers. Brokers 1-3 are the controller voters (raft-rs through
//! `ControllerNode`, the real `Controller` on whichever leads); brokers 4 and 5, when there, are
//! observers that fetch committed metadata from a voter. Every broker registers, heartbeats, is
//! fenced when silent for a session and re-registers with a new incarnation after a restart; the
//! controller creates one topic of 3 partitions, replication factor 3, `min.insync.replicas` 2, and
//! elects and re-elects its leaders. Each broker hosts the real `Replica` of its partitions over a
//! real `Log` on its own `MemDisk`, and steps each partition's state only from the image it applied
//! from the committed metadata log, once that image holds its current registration. Leaders' ISR
//! changes go to the controller as AlterPartition with the incarnations the leader saw (KIP-903)
//! and are answered once their records commit. Producers send acks=all batches of unique values to
//! whoever their (possibly stale) metadata names leader; a consumer reads below the leader's high
//! watermark.
//!
//! Faults, from the seed, for 600 steps of 10 simulated ms: messages dropped (up to 10%), delayed
//! and so reordered (one seed in four up to 200 ms, longer than an election); links cut both ways,
//! one way, or all of one broker's (a leader cut off from everyone); process crashes (the disk keeps
//! what the log handed it, the write-behind buffer is lost) and power losses (unsynced bytes lost or
//! torn), of one broker or of the whole cluster; restarts after 50-650 ms with a new incarnation;
//! EIO on a log write or fsync, on which the broker stops (the log fences itself) and restarts.
//! Raft's own writes complete in order after a random delay, and a crash keeps a random prefix of
//! those in flight.
//!
//! # What is checked
//!
//! After every event:
//! - **One value per offset.** Every record any replica holds below its high watermark equals the
//!   committed sequence of its partition (everything ever below a leader's high watermark, which
//!   only grows): in-sync logs agree below the high watermark, and nothing committed is replaced.
//! - **No acknowledged record lost.** An acknowledged record is committed at its offset when
//!   acknowledged; after the heal every replica holds it there.
//! - **The high watermark never goes back**, in the scope Kafka guarantees it: a leader's high
//!   watermark never decreases within its leader epoch (checked on the leader and on what the
//!   consumer sees), and across epochs the committed prefix never shrinks: every new leader holds
//!   every record committed in earlier epochs, and a consumer's position never has to move back
//!   (whatever it read stays committed at its offset). A new leader's high watermark may start
//!   below its predecessor's (it learns it from its followers' fetches), as in Kafka; the
//!   consumer then reads nothing new until it passes its position again. The run counts those
//!   (`hw_behind_after_leader_change`: 378 times in seeds 0-2999), so the scope is visible, not hidden.
//! - **Storage tells the truth.** Every leader read and consumer read returns what the checker
//!   mirrored into that log; a log reopened after a crash or a storage failure is a prefix of what
//!   it held, at least as long as its durable offset then; after the run every log reads back
//!   equal to its mirror.
//! - **Metadata.** At most one raft leader per term; every voter applies one committed sequence;
//!   a partition's leader is in its ISR and each leader epoch names one leader; at most one
//!   replica leads a partition's epoch.
//! - **Liveness.** After the faults stop and the network heals, every partition acknowledges a new
//!   produce and all replicas converge (full ISR, equal logs, high watermark at the log end)
//!   within 2000 steps.
//!
//! The safe world is `write.caching=false` (acks=all counts fsynced records) with every crash kind.
//! Two tests run unsafe worlds (`write.caching=true` with power losses, and unclean election) and
//! assert the checker catches lost records, so it is not vacuous.
//!
//! # Running and replaying
//!
//! The default run is 2000 seeds, about 70 s on the 2-core test machine: the workspace builds this
//! crate with `opt-level = 2` under `cargo test` (`[profile.test.package.spate-sim]`), which halves
//! the time the generic `Log<MemDisk>` and `Replica` code instantiated here takes in debug.
//! `SPATE_CLUSTER_SEEDS=<n>` sets how many seeds the default run covers (from
//! `SPATE_CLUSTER_SEED_FIRST`, 0 by default); `SPATE_CLUSTER_SEED=<n>` runs exactly that seed. A
//! failure prints the seed and the replay command; `SPATE_CLUSTER_TRACE=1` prints the replayed
//! seed's history step by step (crashes, leaderships, produces, truncations, recoveries, faults).

use spate_sim::{run_seed, Mode, Stats};

/// Seeds in the default run; `SPATE_CLUSTER_SEEDS` overrides.
const SEEDS_DEFAULT: u64 = 2000;
/// Seeds each unsafe world runs (a third to a fifth of them lose data).
const UNSAFE_SEEDS: u64 = 60;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

thread_local! {
    /// Set while a test runs seeds that are meant to fail, so their panics do not flood the output.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
}

fn failures_in(seeds: std::ops::Range<u64>, mode: Mode) -> Vec<String> {
    install_quiet_hook();
    QUIET.with(|q| q.set(true));
    let failures = seeds
        .filter_map(|seed| run_seed(seed, mode).err())
        .collect();
    QUIET.with(|q| q.set(false));
    failures
}

#[test]
fn acknowledged_records_survive_a_faulty_cluster_and_it_recovers() {
    let seeds: Vec<u64> = match env_u64("SPATE_CLUSTER_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("SPATE_CLUSTER_SEED_FIRST").unwrap_or(0);
            (first..first + env_u64("SPATE_CLUSTER_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect()
        }
    };
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for &seed in &seeds {
        match run_seed(seed, Mode::Safe) {
            Ok(s) => total.add(&s),
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "{} seeds in {:.1} s: {total:?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    // A simulator that does nothing passes everything: insist that it did things (over many
    // seeds; one replayed seed may be quiet).
    let n = seeds.len() as u64;
    if n < 10 {
        return;
    }
    assert!(total.acked >= 20 * n, "{total:?}");
    assert!(total.committed >= 40 * n, "{total:?}");
    assert!(total.consumed >= 10 * n, "{total:?}");
    assert!(total.leader_changes >= 3 * n, "{total:?}");
    assert!(total.crashes >= 2 * n, "{total:?}");
    assert!(total.power_losses >= n, "{total:?}");
    assert!(total.cluster_power_losses >= n / 4, "{total:?}");
    assert!(total.truncations >= n / 10, "{total:?}");
    assert!(total.storage_failures >= n / 10, "{total:?}");
    assert!(total.recoveries_checked >= 2 * n, "{total:?}");
    assert!(total.isr_changes >= n && total.fences >= n, "{total:?}");
    assert!(total.raft_leaders >= n, "{total:?}");
    assert!(
        total.ack_errors > 0 && total.produce_refused > 0,
        "{total:?}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17] {
        let a = run_seed(seed, Mode::Safe).unwrap();
        let b = run_seed(seed, Mode::Safe).unwrap();
        assert_eq!(a, b);
        assert!(a.acked > 0);
    }
}

/// Whether a failure is one of the checks of lost or replaced committed data (and not, say, a
/// liveness failure or a storage error, which would mean the unsafe world broke something else).
fn is_data_loss(failure: &str) -> bool {
    [
        "without committed offset",
        "was committed there",
        "lost acknowledged",
        "acknowledged at",
        "consumer read",
    ]
    .iter()
    .any(|what| failure.contains(what))
}

fn assert_unsafe_world_is_caught(mode: Mode) {
    let failures = failures_in(0..UNSAFE_SEEDS, mode);
    eprintln!(
        "{mode:?}: {} of {UNSAFE_SEEDS} seeds lost committed data; first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        failures.len() as u64 >= UNSAFE_SEEDS / 10,
        "{mode:?} went unnoticed: {} of {UNSAFE_SEEDS} seeds failed",
        failures.len()
    );
    assert!(
        failures
            .iter()
            .all(|f| f.contains("SPATE_CLUSTER_SEED=") && is_data_loss(f)),
        "{failures:#?}"
    );
}

#[test]
fn the_checker_catches_losses_when_unflushed_acks_meet_power_loss() {
    assert_unsafe_world_is_caught(Mode::UnflushedAcksWithPowerLoss);
}

#[test]
fn the_checker_catches_losses_from_unclean_election() {
    assert_unsafe_world_is_caught(Mode::UncleanElection);
}
