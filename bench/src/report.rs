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
    /// The run's name (`--label`), which `plot` and `compare` show; summaries written before
    /// it existed have none and are named by their file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
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

/// A latency in microseconds with a unit that keeps three significant digits readable:
/// `850 us`, `1.23 ms`, `1.40 s`.
pub fn format_us(us: f64) -> String {
    let (value, unit) = if us >= 1_000_000.0 {
        (us / 1_000_000.0, "s")
    } else if us >= 1000.0 {
        (us / 1000.0, "ms")
    } else {
        (us, "us")
    };
    if value >= 100.0 || value == value.floor() {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// The name each summary is shown by: its `label`, else its file name, else (when two
/// unlabelled inputs share a file name) the path as given.
pub fn names(inputs: &[std::path::PathBuf], summaries: &[Summary]) -> Vec<String> {
    assert_eq!(inputs.len(), summaries.len());
    let file_name = |p: &std::path::Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    inputs
        .iter()
        .zip(summaries)
        .map(|(path, summary)| match &summary.label {
            Some(label) => label.clone(),
            None => {
                let name = file_name(path);
                let shared = inputs.iter().filter(|p| file_name(p) == name).count() > 1;
                if shared {
                    path.display().to_string()
                } else {
                    name
                }
            }
        })
        .collect()
}

impl LatencySummary {
    fn percentiles(&self) -> String {
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}",
            format_us(self.p50_us),
            format_us(self.p99_us),
            format_us(self.p99_9_us),
            format_us(self.max_us)
        )
    }
}

/// The human summary `run` prints: rate asked and achieved, records and bytes, latencies,
/// errors.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |records: u64| records as f64 * self.message_bytes as f64 / 1e6;
        let label = self
            .label
            .as_deref()
            .map_or_else(String::new, |l| format!(" {l}"));
        writeln!(
            f,
            "run{label}: {:.2} s of sending, acks={}, {} B records",
            self.duration_s, self.acks, self.message_bytes
        )?;
        if self.target_rate > 0 {
            writeln!(
                f,
                "rate:         asked {}/s, achieved {:.0}/s acknowledged ({:.1}% of asked), {:.1} MB/s",
                self.target_rate,
                self.produce_rate,
                100.0 * self.produce_rate / self.target_rate as f64,
                self.produce_mb_s
            )?;
        } else {
            writeln!(
                f,
                "rate:         closed loop (as fast as possible), achieved {:.0}/s acknowledged, {:.1} MB/s",
                self.produce_rate, self.produce_mb_s
            )?;
        }
        writeln!(
            f,
            "records:      sent {}, acknowledged {} ({:.1} MB), failed {}, consumed {} ({:.1} MB)",
            self.sent,
            self.acked,
            mb(self.acked),
            self.failed,
            self.consumed,
            mb(self.consumed)
        )?;
        writeln!(
            f,
            "ack latency:  {} ({} acknowledged)",
            self.ack_latency.percentiles(),
            self.ack_latency.count
        )?;
        if self.e2e_latency.count > 0 {
            writeln!(
                f,
                "e2e latency:  {} ({} consumed)",
                self.e2e_latency.percentiles(),
                self.e2e_latency.count
            )?;
        } else {
            writeln!(f, "e2e latency:  not measured (no records consumed)")?;
        }
        if self.send_lag.count > 0 {
            writeln!(
                f,
                "send lag:     {} (how late records were handed to the producer)",
                self.send_lag.percentiles()
            )?;
        }
        if let Some(raw) = &self.raw_disk {
            writeln!(
                f,
                "raw disk:     {:.0} MB/s before, {:.0} MB/s after; produce at {:.3} of it",
                raw.before_mb_s, raw.after_mb_s, raw.produce_ratio
            )?;
        }
        let check = &self.loss_check;
        let verdict = if !check.ran {
            "loss check not run (--consumers 0)".to_string()
        } else if check.ok {
            "every record consumed once, in order".to_string()
        } else {
            format!(
                "LOSS CHECK FAILED: missing {}, duplicates {}, out of order {}",
                check.missing, check.duplicates, check.out_of_order
            )
        };
        writeln!(f, "errors:       {} failed records; {verdict}", self.failed)
    }
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

    fn open_loop_summary() -> Summary {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        Summary {
            command_line: "spate-bench run --rate 2000".into(),
            label: Some("half-rate".into()),
            message_bytes: 100,
            target_rate: 2000,
            acks: "1".into(),
            duration_s: 2.0,
            sent: 4000,
            acked: 3990,
            failed: 10,
            consumed: 3990,
            produce_rate: 1995.0,
            produce_mb_s: 0.1995,
            ack_latency: LatencySummary::of(&h),
            loss_check: LossCheck {
                ran: true,
                expected: 3990,
                received: 3990,
                ok: false,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_human_summary_shows_rate_records_bytes_latency_and_errors() {
        let text = open_loop_summary().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "run half-rate: 2.00 s of sending, acks=1, 100 B records"
        );
        assert!(
            lines[1].contains("asked 2000/s, achieved 1995/s acknowledged (99.8% of asked)"),
            "{text}"
        );
        assert!(
            lines[2].contains("sent 4000, acknowledged 3990 (0.4 MB), failed 10"),
            "{text}"
        );
        assert_eq!(
            lines[3],
            "ack latency:  p50 500 us  p99 990 us  p99.9 999 us  max 1.00 ms (1000 acknowledged)"
        );
        assert_eq!(lines[4], "e2e latency:  not measured (no records consumed)");
        assert!(
            lines[5].starts_with("errors:       10 failed records; LOSS CHECK FAILED: missing 0"),
            "{text}"
        );
        assert_eq!(lines.len(), 6, "{text}");
    }

    #[test]
    fn a_closed_loop_summary_says_so_instead_of_a_percentage() {
        let summary = Summary {
            target_rate: 0,
            label: None,
            ..open_loop_summary()
        };
        let text = summary.to_string();
        assert!(text.starts_with("run: 2.00 s"), "{text}");
        assert!(
            text.contains("closed loop (as fast as possible), achieved 1995/s"),
            "{text}"
        );
        assert!(!text.contains("% of asked"), "{text}");
    }

    #[test]
    fn latencies_are_formatted_with_a_unit_that_fits() {
        assert_eq!(format_us(850.0), "850 us");
        assert_eq!(format_us(12.5), "12.5 us");
        assert_eq!(format_us(1234.0), "1.23 ms");
        assert_eq!(format_us(3000.0), "3 ms");
        assert_eq!(format_us(1_400_000.0), "1.40 s");
    }

    #[test]
    fn runs_are_named_by_label_else_file_name_else_path() {
        let labelled = Summary {
            label: Some("fsync".into()),
            ..Default::default()
        };
        let old = Summary::default();
        let inputs: Vec<std::path::PathBuf> =
            ["a/run.json", "b/run.json", "c/x.json", "d/base.json"]
                .iter()
                .map(Into::into)
                .collect();
        let summaries = [old.clone(), old.clone(), labelled, old];
        assert_eq!(
            names(&inputs, &summaries),
            ["a/run.json", "b/run.json", "fsync", "base.json"]
        );
    }

    #[test]
    fn a_summary_without_a_label_still_parses_and_is_written_without_one() {
        let old = r#"{"command_line":"x","message_bytes":100,"target_rate":0,"acks":"1",
            "duration_s":1.0,"sent":1,"acked":1,"failed":0,"consumed":0,"produce_rate":1.0,
            "produce_mb_s":0.0,"consume_rate":0.0,"consume_mb_s":0.0,
            "ack_latency":{"count":0,"mean_us":0.0,"p50_us":0.0,"p90_us":0.0,"p99_us":0.0,
            "p99_9_us":0.0,"p99_99_us":0.0,"max_us":0.0,"distribution":[]},
            "e2e_latency":{"count":0,"mean_us":0.0,"p50_us":0.0,"p90_us":0.0,"p99_us":0.0,
            "p99_9_us":0.0,"p99_99_us":0.0,"max_us":0.0,"distribution":[]},
            "loss_check":{"ran":false,"expected":1,"received":0,"missing":0,"duplicates":0,
            "out_of_order":0,"ok":false}}"#;
        let summary: Summary = serde_json::from_str(old).unwrap();
        assert_eq!(summary.label, None);
        assert!(!serde_json::to_string(&summary).unwrap().contains("label"));
        let labelled = Summary {
            label: Some("l".into()),
            ..summary
        };
        let back: Summary =
            serde_json::from_str(&serde_json::to_string(&labelled).unwrap()).unwrap();
        assert_eq!(back.label.as_deref(), Some("l"));
    }
}
