//! How much a machine stalls a thread that wants its CPU: the floor under any latency measured
//! on it. Like jHiccup and cyclictest, and meant to be run before trusting a latency run.
//!
//! One thread per CPU, pinned, does nothing but read the monotonic clock:
//! - `spin`: back to back. A gap between two readings longer than a few microseconds is time
//!   the thread did not have its CPU: an interrupt, a kernel thread of higher or equal
//!   priority, or the hypervisor running another guest (steal). From the gaps follows the
//!   fraction of time a request arriving at a random instant would have waited longer than a
//!   given delay for this CPU ([`StallSummary::waits_over`]); if that is above 1% for 1 ms, no
//!   server on this CPU can show an ack p99 under 1 ms, however fast its code.
//! - `sleep`: sleeps `--period-us`, then records how late it woke (the wake-up latency of a
//!   mostly idle thread, which is what a broker at half load is between requests).
//!
//! The counting is in [`Stalls`], fed gap lengths and nothing else, so it is tested without a
//! clock.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::report::{self, LatencySummary};

/// The delays [`StallSummary::waits_over`] reports: around the targets a broker is held to.
pub const WAIT_DELAYS_US: [u64; 4] = [100, 500, 1_000, 5_000];
/// Smallest `--floor-us`: below it the clock's own cost (tens of ns) and cache misses dominate.
pub const FLOOR_US_MIN: u64 = 1;
/// Longest `--duration-s`: the thread spins its CPU at 100% for this long.
pub const DURATION_S_MAX: u64 = 3_600;
/// Clock readings between two checks of the deadline in spin mode (bounds the loop's overhead;
/// each reading is a gap sample anyway).
const READINGS_PER_DEADLINE_CHECK: u32 = 1_024;
/// The io_uring memory each measuring executor registers (it does no I/O; this keeps the
/// locked-memory use far under the 8 MiB RLIMIT_MEMLOCK of the test machine).
const EXECUTOR_IO_MEMORY_BYTES: usize = 64 << 10;

/// What the measuring thread does between clock readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read the clock back to back; record gaps over the floor.
    Spin,
    /// Sleep a period; record how late each wake-up was.
    Sleep,
}

/// Arguments of `spate-bench hiccup`.
#[derive(clap::Args, Debug, Clone)]
pub struct HiccupArgs {
    /// CPUs to measure, one pinned thread each, all at once (for example `0,1`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub cpu: Vec<usize>,
    /// How long to measure.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Spin (CPU taken away) or sleep (wake-up latency).
    #[arg(long, value_enum, default_value_t = Mode::Spin)]
    pub mode: Mode,
    /// Spin mode: gaps shorter than this are the loop running normally, not stalls.
    #[arg(long, default_value_t = 10)]
    pub floor_us: u64,
    /// Sleep mode: how long each sleep asks for.
    #[arg(long, default_value_t = 1_000)]
    pub period_us: u64,
    /// Write the summaries (one per CPU) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The stalls one thread saw: fed the length of each gap between consecutive clock readings.
#[derive(Debug)]
pub struct Stalls {
    floor_ns: u64,
    /// Lengths of the gaps at or above the floor (spin) or of every wake-up delay (sleep).
    lengths: Histogram<u64>,
    observed_ns: u64,
    stalled_ns: u64,
    /// Per entry of [`WAIT_DELAYS_US`]: the time during which a request arriving would have
    /// waited longer than that delay, i.e. the sum of `gap - delay` over longer gaps.
    waiting_ns: [u64; WAIT_DELAYS_US.len()],
}

impl Stalls {
    /// Counts gaps of at least `floor_ns` as stalls (0 counts every gap: sleep mode).
    pub fn new(floor_ns: u64) -> Stalls {
        Stalls {
            floor_ns,
            lengths: report::histogram(),
            observed_ns: 0,
            stalled_ns: 0,
            waiting_ns: [0; WAIT_DELAYS_US.len()],
        }
    }

    /// One gap between two clock readings (or one wake-up's delay), in nanoseconds.
    pub fn record(&mut self, gap_ns: u64) {
        self.observed_ns = self.observed_ns.saturating_add(gap_ns);
        if gap_ns < self.floor_ns {
            return;
        }
        self.stalled_ns = self.stalled_ns.saturating_add(gap_ns);
        self.lengths.saturating_record(gap_ns);
        for (waiting, delay_us) in self.waiting_ns.iter_mut().zip(WAIT_DELAYS_US) {
            *waiting = waiting.saturating_add(gap_ns.saturating_sub(delay_us * 1_000));
        }
    }

    /// Time that passed outside the recorded gaps (sleep mode: the requested sleeps).
    pub fn observe(&mut self, ns: u64) {
        self.observed_ns = self.observed_ns.saturating_add(ns);
    }

    /// The summary for CPU `cpu`; `steal_ms` as read from `/proc/stat` around the measurement.
    pub fn summary(&self, cpu: usize, mode: Mode, steal_ms: Option<u64>) -> StallSummary {
        let observed = self.observed_ns.max(1) as f64;
        StallSummary {
            cpu,
            mode,
            observed_s: self.observed_ns as f64 / 1e9,
            floor_us: self.floor_ns as f64 / 1000.0,
            stalls: self.lengths.len(),
            stalled_fraction: self.stalled_ns as f64 / observed,
            waits_over: WAIT_DELAYS_US
                .iter()
                .zip(self.waiting_ns)
                .map(|(&delay_us, waiting)| WaitOver {
                    delay_us,
                    stalls: self
                        .lengths
                        .count_between(delay_us * 1_000 + 1, report::LATENCY_NS_MAX),
                    fraction: waiting as f64 / observed,
                })
                .collect(),
            steal_ms,
            lengths: LatencySummary::of(&self.lengths),
        }
    }
}

/// The fraction of time a request would have waited longer than `delay_us` for the CPU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WaitOver {
    /// The delay.
    pub delay_us: u64,
    /// Stalls longer than it.
    pub stalls: u64,
    /// Sum over those stalls of (length - delay), divided by the time observed.
    pub fraction: f64,
}

/// What one CPU's thread saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StallSummary {
    /// The CPU.
    pub cpu: usize,
    /// How it was measured.
    pub mode: Mode,
    /// Seconds covered.
    pub observed_s: f64,
    /// Gaps under this were not stalls (0 in sleep mode).
    pub floor_us: f64,
    /// Stalls recorded (sleep mode: wake-ups).
    pub stalls: u64,
    /// Time inside stalls over time observed (spin mode).
    pub stalled_fraction: f64,
    /// Per delay in [`WAIT_DELAYS_US`].
    pub waits_over: Vec<WaitOver>,
    /// Steal time of this CPU during the measurement (`/proc/stat`), if the kernel reports it.
    pub steal_ms: Option<u64>,
    /// Stall lengths (sleep mode: wake-up delays).
    pub lengths: LatencySummary,
}

/// Measures every CPU in `args.cpu` at once and returns one summary each.
///
/// # Errors
/// If an executor cannot be pinned or started.
pub fn measure(args: &HiccupArgs) -> anyhow::Result<Vec<StallSummary>> {
    anyhow::ensure!(
        (1..=DURATION_S_MAX).contains(&args.duration_s),
        "--duration-s must be 1..={DURATION_S_MAX}"
    );
    anyhow::ensure!(
        args.floor_us >= FLOOR_US_MIN,
        "--floor-us must be at least {FLOOR_US_MIN}"
    );
    anyhow::ensure!(args.period_us >= 1, "--period-us must be at least 1");
    let mut threads = Vec::with_capacity(args.cpu.len());
    for &cpu in &args.cpu {
        let args = args.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name("spate-bench-hiccup")
            .io_memory(EXECUTOR_IO_MEMORY_BYTES)
            .spawn(move || async move { measure_cpu(cpu, &args) })
            .map_err(|e| anyhow::anyhow!("starting an executor on CPU {cpu}: {e}"))?;
        threads.push(handle);
    }
    threads
        .into_iter()
        .map(|t| {
            t.join()
                .map_err(|e| anyhow::anyhow!("hiccup thread failed: {e}"))
        })
        .collect()
}

/// Runs on the pinned thread; never yields to the executor (nothing else runs on it).
fn measure_cpu(cpu: usize, args: &HiccupArgs) -> StallSummary {
    let duration = Duration::from_secs(args.duration_s);
    let steal_before = steal_ms(cpu);
    let stalls = match args.mode {
        Mode::Spin => spin(duration, args.floor_us * 1_000),
        Mode::Sleep => sleep(duration, Duration::from_micros(args.period_us)),
    };
    let steal = match (steal_before, steal_ms(cpu)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    stalls.summary(cpu, args.mode, steal)
}

fn spin(duration: Duration, floor_ns: u64) -> Stalls {
    let mut stalls = Stalls::new(floor_ns);
    let start = Instant::now();
    let mut previous = start;
    loop {
        for _ in 0..READINGS_PER_DEADLINE_CHECK {
            let now = Instant::now();
            stalls.record(nanos(now - previous));
            previous = now;
        }
        if previous - start >= duration {
            return stalls;
        }
    }
}

fn sleep(duration: Duration, period: Duration) -> Stalls {
    let mut stalls = Stalls::new(0);
    let start = Instant::now();
    let mut previous = start;
    while previous - start < duration {
        std::thread::sleep(period);
        let now = Instant::now();
        let slept = nanos(now - previous);
        let asked = nanos(period);
        stalls.observe(asked.min(slept));
        stalls.record(slept.saturating_sub(asked));
        previous = now;
    }
    stalls
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Steal time of `cpu` from `/proc/stat`, in ms (None if unreadable or not reported).
fn steal_ms(cpu: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    // Fields after the name: user nice system idle iowait irq softirq steal, in USER_HZ ticks,
    // which Linux fixes at 100 per second for /proc.
    let steal_ticks: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some(steal_ticks * 10)
}

/// The table `spate-bench hiccup` prints.
pub fn table(summaries: &[StallSummary]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for s in summaries {
        let steal = s
            .steal_ms
            .map_or_else(|| "unknown".to_string(), |ms| format!("{ms} ms"));
        let _ = writeln!(
            out,
            "cpu {} ({:?}, {:.1} s, steal {steal}): {} {} ; p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            s.cpu,
            s.mode,
            s.observed_s,
            s.stalls,
            match s.mode {
                Mode::Spin => format!(
                    "stalls over {:.0} us, {:.3}% of the time",
                    s.floor_us,
                    s.stalled_fraction * 100.0
                ),
                Mode::Sleep => "wake-ups".to_string(),
            },
            s.lengths.p50_us,
            s.lengths.p99_us,
            s.lengths.p99_9_us,
            s.lengths.max_us,
        );
        if s.mode == Mode::Spin {
            for w in &s.waits_over {
                let _ = writeln!(
                    out,
                    "  a request would wait over {:>5} us for this CPU {:.4}% of the time ({} stalls that long)",
                    w.delay_us,
                    w.fraction * 100.0,
                    w.stalls
                );
            }
        }
    }
    out
}

/// Writes `summaries` to `path` as JSON.
///
/// # Errors
/// If the file cannot be written.
pub fn write_json(path: &PathBuf, summaries: &[StallSummary]) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(summaries)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn gaps_under_the_floor_only_count_as_time_observed() {
        let mut s = Stalls::new(10_000);
        for _ in 0..1_000 {
            s.record(30);
        }
        let summary = s.summary(0, Mode::Spin, None);
        assert_eq!(summary.stalls, 0);
        assert_eq!(summary.stalled_fraction, 0.0);
        assert!(summary.waits_over.iter().all(|w| w.fraction == 0.0));
        assert!((summary.observed_s - 30e-6).abs() < 1e-12);
    }

    #[test]
    fn a_stall_makes_arrivals_wait_for_its_length_less_the_delay() {
        // 1 s observed: 997 ms of normal running and one 3 ms stall.
        let mut s = Stalls::new(10_000);
        for _ in 0..997 {
            s.record(MS / 1000);
            s.observe(MS - MS / 1000);
        }
        s.record(3 * MS);
        let summary = s.summary(1, Mode::Spin, Some(20));
        assert_eq!(summary.stalls, 1);
        assert!((summary.stalled_fraction - 0.003).abs() < 1e-9);
        let over = |delay_us: u64| {
            summary
                .waits_over
                .iter()
                .find(|w| w.delay_us == delay_us)
                .expect("reported delay")
                .clone()
        };
        // Arrivals in the first 2 ms of the 3 ms stall wait over 1 ms: 0.2% of the second.
        assert!((over(1_000).fraction - 0.002).abs() < 1e-9);
        assert_eq!(over(1_000).stalls, 1);
        assert!((over(100).fraction - 0.0029).abs() < 1e-9);
        assert_eq!(over(5_000).fraction, 0.0);
        assert_eq!(over(5_000).stalls, 0);
        assert_eq!(summary.steal_ms, Some(20));
        assert!((summary.lengths.max_us - 3_000.0).abs() < 3.0, "3 digits");
    }

    #[test]
    fn sleep_mode_records_every_wake_up() {
        let mut s = Stalls::new(0);
        s.observe(MS);
        s.record(0);
        s.observe(MS);
        s.record(50_000);
        let summary = s.summary(0, Mode::Sleep, None);
        assert_eq!(summary.stalls, 2);
        assert!((summary.lengths.max_us - 50.0).abs() < 0.1);
    }

    #[test]
    fn huge_gaps_saturate_instead_of_overflowing() {
        let mut s = Stalls::new(1);
        s.record(u64::MAX);
        s.record(u64::MAX);
        let summary = s.summary(0, Mode::Spin, None);
        assert_eq!(summary.stalls, 2);
        assert!(summary.stalled_fraction <= 1.0);
    }

    #[test]
    fn measures_a_pinned_cpu_briefly() {
        let args = HiccupArgs {
            cpu: vec![0],
            duration_s: 1,
            mode: Mode::Spin,
            floor_us: 10,
            period_us: 1_000,
            json: None,
        };
        let summaries = measure(&args).expect("measured");
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        assert_eq!(s.cpu, 0);
        assert!(
            s.observed_s >= 1.0 && s.observed_s < 60.0,
            "{}",
            s.observed_s
        );
        assert!((0.0..=1.0).contains(&s.stalled_fraction));
        assert!(table(&summaries).contains("cpu 0 (Spin"));
    }

    #[test]
    fn sleep_mode_wakes_about_once_per_period() {
        let args = HiccupArgs {
            cpu: vec![0],
            duration_s: 1,
            mode: Mode::Sleep,
            floor_us: 10,
            period_us: 10_000,
            json: None,
        };
        let s = &measure(&args).expect("measured")[0];
        // 1 s of 10 ms sleeps: at most 100 wake-ups, fewer only if wake-ups were late.
        assert!(s.stalls >= 10 && s.stalls <= 101, "{}", s.stalls);
    }
}
