//! `spate-bench compare A.json B.json`: the two summaries side by side with B/A ratios.

use crate::report::{LatencySummary, Summary};

fn rows(s: &Summary) -> Vec<(&'static str, f64)> {
    let lat = |prefix: &'static [&'static str; 7], l: &LatencySummary| {
        prefix
            .iter()
            .zip([
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p99_9_us,
                l.p99_99_us,
                l.max_us,
                l.mean_us,
            ])
            .map(|(n, v)| (*n, v))
            .collect::<Vec<_>>()
    };
    let mut out = vec![
        ("produce msg/s", s.produce_rate),
        ("produce MB/s", s.produce_mb_s),
        ("consume msg/s", s.consume_rate),
        ("consume MB/s", s.consume_mb_s),
        ("acked", s.acked as f64),
        ("failed", s.failed as f64),
        ("lost (missing)", s.loss_check.missing as f64),
    ];
    out.extend(lat(
        &[
            "ack p50 us",
            "ack p90 us",
            "ack p99 us",
            "ack p99.9 us",
            "ack p99.99 us",
            "ack max us",
            "ack mean us",
        ],
        &s.ack_latency,
    ));
    out.extend(lat(
        &[
            "e2e p50 us",
            "e2e p90 us",
            "e2e p99 us",
            "e2e p99.9 us",
            "e2e p99.99 us",
            "e2e max us",
            "e2e mean us",
        ],
        &s.e2e_latency,
    ));
    out.extend(lat(
        &[
            "send lag p50 us",
            "send lag p90 us",
            "send lag p99 us",
            "send lag p99.9 us",
            "send lag p99.99 us",
            "send lag max us",
            "send lag mean us",
        ],
        &s.send_lag,
    ));
    // Present only when the run measured the disk: rows must line up between two summaries.
    if let Some(raw) = &s.raw_disk {
        out.push(("raw disk MB/s", (raw.before_mb_s + raw.after_mb_s) / 2.0));
        out.push(("produce/raw", raw.produce_ratio));
    }
    out
}

/// The comparison table as text.
pub fn table(a_name: &str, a: &Summary, b_name: &str, b: &Summary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let wa = a_name.len().max(16);
    let wb = b_name.len().max(16);
    let _ = writeln!(
        out,
        "{:<16} {a_name:>wa$} {b_name:>wb$} {:>8}",
        "metric", "B/A"
    );
    // zip stops at the shorter list: disk rows show only if both runs measured the disk.
    for ((name, va), (_, vb)) in rows(a).into_iter().zip(rows(b)) {
        let ratio = if va == 0.0 {
            "-".to_string()
        } else {
            format!("{:.3}", vb / va)
        };
        let _ = writeln!(out, "{name:<16} {va:>wa$.1} {vb:>wb$.1} {ratio:>8}");
    }
    out
}

/// Allowed p99 ratios of the CI latency gate, candidate over baseline.
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// For the produce-ack p99.
    pub ack_p99_factor_max: f64,
    /// For the end-to-end (produce to consume) p99.
    pub e2e_p99_factor_max: f64,
}

/// The CI latency gate: the candidate fails if it lost records (or its loss check did not run),
/// its ack p99 is above `ack_p99_factor_max` times the baseline's, or, when the baseline
/// consumed, its end-to-end p99 is above `e2e_p99_factor_max` times the baseline's (a candidate
/// that consumed nothing then fails too). Returns the reasons.
pub fn gate(baseline: &Summary, candidate: &Summary, limits: GateLimits) -> Vec<String> {
    let mut failures = Vec::new();
    if !candidate.loss_check.ran || !candidate.loss_check.ok {
        failures.push(format!("loss check: {:?}", candidate.loss_check));
    }
    let checks = [
        (
            "ack",
            &baseline.ack_latency,
            &candidate.ack_latency,
            limits.ack_p99_factor_max,
        ),
        (
            "e2e",
            &baseline.e2e_latency,
            &candidate.e2e_latency,
            limits.e2e_p99_factor_max,
        ),
    ];
    for (what, base, cand, factor) in checks {
        if base.count == 0 {
            // Nothing to compare with (an ack-only baseline has no end-to-end latencies).
            continue;
        }
        if cand.count == 0 {
            failures.push(format!("no {what} latencies measured"));
            continue;
        }
        let limit = base.p99_us * factor;
        if cand.p99_us > limit {
            failures.push(format!(
                "{what} p99 {:.1} us is above {factor} x baseline {:.1} us",
                cand.p99_us, base.p99_us
            ));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LossCheck;

    #[test]
    fn gate_fails_on_loss_or_slow_ack_or_e2e_p99_only() {
        let latency = |p99_us: f64| LatencySummary {
            count: 1000,
            p99_us,
            ..Default::default()
        };
        let with = |ack_p99_us: f64, e2e_p99_us: f64, ok: bool| Summary {
            ack_latency: latency(ack_p99_us),
            e2e_latency: latency(e2e_p99_us),
            loss_check: LossCheck {
                ran: true,
                ok,
                ..Default::default()
            },
            ..Default::default()
        };
        let limits = GateLimits {
            ack_p99_factor_max: 3.0,
            e2e_p99_factor_max: 2.0,
        };
        let base = with(100.0, 1000.0, true);
        assert!(gate(&base, &with(299.0, 1999.0, true), limits).is_empty());
        assert_eq!(gate(&base, &with(301.0, 1000.0, true), limits).len(), 1);
        let slow_e2e = gate(&base, &with(100.0, 2001.0, true), limits);
        assert_eq!(slow_e2e.len(), 1);
        assert!(slow_e2e[0].starts_with("e2e p99"), "{slow_e2e:?}");
        assert_eq!(gate(&base, &with(50.0, 500.0, false), limits).len(), 1);
        assert_eq!(gate(&base, &with(400.0, 3000.0, false), limits).len(), 3);
        // A candidate that consumed nothing cannot pass the end-to-end check.
        let mut unconsumed = with(100.0, 0.0, true);
        unconsumed.e2e_latency.count = 0;
        assert_eq!(gate(&base, &unconsumed, limits).len(), 1);
        // A baseline without end-to-end latencies gates on the ack p99 only.
        let mut ack_only = with(100.0, 0.0, true);
        ack_only.e2e_latency.count = 0;
        assert!(gate(&ack_only, &with(299.0, 99_999.0, true), limits).is_empty());
    }

    #[test]
    fn table_shows_ratios_and_dashes_for_zero() {
        let a = Summary {
            produce_rate: 100.0,
            ack_latency: LatencySummary {
                p99_us: 50.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let b = Summary {
            produce_rate: 250.0,
            ack_latency: LatencySummary {
                p99_us: 25.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let t = table("a.json", &a, "b.json", &b);
        let line = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        assert!(line("produce msg/s").ends_with("2.500"), "{t}");
        assert!(line("ack p99 us ").ends_with("0.500"), "{t}");
        assert!(line("consume msg/s").ends_with('-'), "{t}");
        assert_eq!(t.lines().count(), 1 + 7 + 21); // header, counts, ack, e2e and send-lag latencies
    }
}
