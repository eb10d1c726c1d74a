//! Latency summaries, the HdrHistogram percentile-distribution text format, and the JSON
//! summary shared by `run`, `compare` and `plot`.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in nanoseconds, 3 significant digits, up to this bound.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// A new latency histogram.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid histogram bounds")
}

/// Percentiles of one latency histogram, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// 99.99th percentile.
    pub p99_99_us: f64,
    /// Largest value.
    pub max_us: f64,
    /// `(percentile, value_us)` pairs, as in the .hgrm file, for plots.
    pub distribution: Vec<(f64, f64)>,
}

impl LatencySummary {
    /// Summarizes `h` (nanoseconds).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p99_9_us: us(h.value_at_quantile(0.999)),
            p99_99_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
            distribution: h
                .iter_quantiles(5)
                .map(|v| (v.quantile_iterated_to() * 100.0, us(v.value_iterated_to())))
                .collect(),
        }
    }
}

/// Writes `h` (nanoseconds) in HdrHistogram's percentile distribution format, values in
/// milliseconds (what HdrHistogram's plotter expects).
pub fn hgrm(h: &Histogram<u64>) -> String {
    use std::fmt::Write;
    let ms = |ns: u64| ns as f64 / 1_000_000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {:>14.2}",
                ms(v.value_iterated_to()),
                q,
                total,
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10}",
                ms(v.value_iterated_to()),
                q,
                total
            );
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_bucket_count(h)
    );
    out
}

/// HdrHistogram's sub-bucket count: the power of two holding `2 * 10^sigfig` values.
fn sub_bucket_count(h: &Histogram<u64>) -> u64 {
    let largest_single_unit = 2 * 10u64.pow(u32::from(h.sigfig()));
    largest_single_unit.next_power_of_two()
}

/// What the consumers found: every produced record, once, in order per partition.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LossCheck {
    /// Whether the check ran (a consumer was attached).
    pub ran: bool,
    /// Records the producer had acknowledged (or sent, with acks=0).
    pub expected: u64,
    /// Distinct records the consumer saw.
    pub received: u64,
    /// Expected records never seen.
    pub missing: u64,
    /// Records seen more than once.
    pub duplicates: u64,
    /// Records seen after a later record of the same partition.
    pub out_of_order: u64,
    /// No loss, duplicates or reordering.
    pub ok: bool,
}

/// The JSON summary of one run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Summary {
    /// The command line the run was started with.
    pub command_line: String,
    /// Payload bytes per record.
    pub message_bytes: usize,
    /// Target rate (records/s), 0 for a closed loop.
    pub target_rate: u64,
    /// acks setting.
    pub acks: String,
    /// Seconds of sending.
    pub duration_s: f64,
    /// Records handed to the producer.
    pub sent: u64,
    /// Records acknowledged.
    pub acked: u64,
    /// Records whose batch failed.
    pub failed: u64,
    /// Records consumed.
    pub consumed: u64,
    /// Acknowledged records per second.
    pub produce_rate: f64,
    /// Acknowledged payload MB/s (10^6 bytes).
    pub produce_mb_s: f64,
    /// Consumed records per second (over the same send window plus drain time).
    pub consume_rate: f64,
    /// Consumed payload MB/s.
    pub consume_mb_s: f64,
    /// Intended send time to acknowledgement.
    pub ack_latency: LatencySummary,
    /// Intended send time to arrival at the consumer.
    pub e2e_latency: LatencySummary,
    /// Open loop: how far behind its intended send time each record was handed to the
    /// producer (a sender that fell behind: its own CPU, or a full request window). Empty in
    /// a closed loop.
    #[serde(default)]
    pub send_lag: LatencySummary,
    /// The consumer's verdict.
    pub loss_check: LossCheck,
    /// Raw disk bandwidth around the run (`--raw-disk-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_disk: Option<crate::disk::RawDisk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_hgrm_of_known_values() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{}", s.p50_us);
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{}", s.p99_us);
        assert!((s.max_us - 1000.0).abs() <= 1.0, "{}", s.max_us);
        assert_eq!(s.distribution.last().unwrap().0, 100.0);
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        let rows = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(rows - 1, s.distribution.len());
    }
}
