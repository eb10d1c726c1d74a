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
    out
}

/// The comparison table as text.
pub fn table(a_name: &str, a: &Summary, b_name: &str, b: &Summary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>16} {:>16} {:>8}",
        "metric", a_name, b_name, "B/A"
    );
    for ((name, va), (_, vb)) in rows(a).into_iter().zip(rows(b)) {
        let ratio = if va == 0.0 {
            "-".to_string()
        } else {
            format!("{:.3}", vb / va)
        };
        let _ = writeln!(out, "{name:<16} {va:>16.1} {vb:>16.1} {ratio:>8}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(t.lines().count(), 1 + 7 + 14);
    }
}
