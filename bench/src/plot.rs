//! `spate-bench plot a.json b.json -o out.svg`: latency by percentile, x-axis 1/(1-p) on a log
//! scale (the usual HdrHistogram chart), latency axis linear or (`--log-y`) logarithmic, SVG
//! written by hand.

use crate::report::{format_us, LatencySummary};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// The x-axis ends at 99.9999%.
const NINES_MAX: f64 = 6.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// The latency axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YAxis {
    /// From 0 to a round value above the largest latency.
    Linear,
    /// Decades from the one below the smallest latency to the one above the largest: a 3 ms
    /// run and a 1.4 s run both keep their shape.
    Log,
}

/// Latencies below this are drawn at it on a log axis (a histogram's smallest value is 1 ns).
const LOG_US_MIN: f64 = 1.0;

/// The latency axis of one chart: maps microseconds to a fraction of the plot's height (0 at
/// the bottom, 1 at the top) and names its grid lines.
#[derive(Debug, Clone, Copy)]
struct Scale {
    axis: YAxis,
    /// Bottom of the axis (0 on a linear one).
    us_min: f64,
    /// Top of the axis.
    us_max: f64,
}

impl Scale {
    fn new(axis: YAxis, series: &[(String, &LatencySummary)]) -> Scale {
        let us_max = series.iter().map(|(_, l)| l.max_us).fold(0.0, f64::max);
        match axis {
            YAxis::Linear => Scale {
                axis,
                us_min: 0.0,
                us_max: nice_max(us_max),
            },
            YAxis::Log => {
                let us_min = series
                    .iter()
                    .flat_map(|(_, l)| l.distribution.iter().map(|(_, us)| *us))
                    .fold(f64::INFINITY, f64::min);
                let decade_min = us_min.max(LOG_US_MIN).log10().floor();
                let decade_max = us_max.max(LOG_US_MIN).log10().ceil().max(decade_min + 1.0);
                Scale {
                    axis,
                    us_min: 10f64.powf(decade_min),
                    us_max: 10f64.powf(decade_max),
                }
            }
        }
    }

    /// Where `us` sits, from 0 (bottom) to 1 (top).
    fn fraction(&self, us: f64) -> f64 {
        match self.axis {
            YAxis::Linear => us / self.us_max,
            YAxis::Log => {
                let (lo, hi) = (self.us_min.log10(), self.us_max.log10());
                (us.max(self.us_min).log10() - lo) / (hi - lo)
            }
        }
    }

    /// Grid lines: five equal steps on a linear axis; each decade on a log one, with 2x and
    /// 5x lines too when the axis spans fewer than four decades.
    fn ticks_us(&self) -> Vec<f64> {
        match self.axis {
            YAxis::Linear => (0..=5).map(|i| self.us_max * f64::from(i) / 5.0).collect(),
            YAxis::Log => {
                let (lo, hi) = (
                    self.us_min.log10().round() as i32,
                    self.us_max.log10().round() as i32,
                );
                let steps: &[f64] = if hi - lo < 4 {
                    &[1.0, 2.0, 5.0]
                } else {
                    &[1.0]
                };
                (lo..=hi)
                    .flat_map(|d| steps.iter().map(move |m| m * 10f64.powi(d)))
                    .filter(|us| *us <= self.us_max * 1.000_001)
                    .collect()
            }
        }
    }
}

/// The x position (in nines) of a percentile: log10(1 / (1 - p)).
pub fn nines(percentile: f64) -> f64 {
    let p = (percentile / 100.0).min(1.0 - 10f64.powf(-NINES_MAX));
    (1.0 / (1.0 - p)).log10()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round axis maximum at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// The SVG document for `series` (name, latency distribution).
pub fn svg(title: &str, series: &[(String, &LatencySummary)], y_axis: YAxis) -> String {
    use std::fmt::Write;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let scale = Scale::new(y_axis, series);
    // A linear axis labels its lines in one unit; a log axis spans several, each line has its own.
    let (unit, divisor) = if scale.us_max >= 10_000.0 {
        ("ms", 1000.0)
    } else {
        ("us", 1.0)
    };
    let tick_label = |us: f64| match y_axis {
        YAxis::Linear => format_value(us / divisor),
        YAxis::Log => format_us(us),
    };
    let axis_title = match y_axis {
        YAxis::Linear => format!("latency ({unit})"),
        YAxis::Log => "latency (log scale)".to_string(),
    };
    let x = |n: f64| LEFT + plot_w * n / NINES_MAX;
    let y = |us: f64| TOP + plot_h * (1.0 - scale.fraction(us));
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for i in 0..=NINES_MAX as u32 {
        let n = f64::from(i);
        let label = match i {
            0 => "0%".to_string(),
            _ => format!("{}%", 100.0 - 100.0 / 10f64.powi(i as i32)),
        };
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            x(n),
            TOP,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            label
        );
    }
    for us in scale.ticks_us() {
        let _ = writeln!(
            out,
            r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#ddd"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            LEFT,
            y(us),
            LEFT + plot_w,
            LEFT - 6.0,
            y(us) + 4.0,
            tick_label(us)
        );
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{axis_title}</text>"#,
        TOP + plot_h / 2.0
    );
    for (i, (name, lat)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = lat
            .distribution
            .iter()
            .map(|(p, us)| format!("{:.1},{:.1}", x(nines(*p)), y(*us)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{color}" stroke-width="3"/><text x="{3}" y="{4}">{5} (p99 {6})</text>"#,
            LEFT + 12.0,
            ly,
            LEFT + 36.0,
            LEFT + 42.0,
            ly + 4.0,
            escape(name),
            format_us(lat.p99_us)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn format_value(v: f64) -> String {
    if v >= 100.0 || v == v.floor() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_maps_percentiles_to_log_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!(
            (nines(100.0) - NINES_MAX).abs() < 1e-6,
            "100% is clamped to the axis end"
        );
    }

    #[test]
    fn svg_has_one_polyline_per_series_with_all_points() {
        let lat = LatencySummary {
            p99_us: 80.0,
            max_us: 120.0,
            distribution: vec![(0.0, 10.0), (50.0, 20.0), (99.0, 80.0), (100.0, 120.0)],
            ..Default::default()
        };
        let doc = svg(
            "t <1>",
            &[("a".into(), &lat), ("b".into(), &lat)],
            YAxis::Linear,
        );
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("t &lt;1&gt;"));
        let first = doc.lines().find(|l| l.starts_with("<polyline")).unwrap();
        assert_eq!(
            first.split("points=\"").nth(1).unwrap().split(' ').count(),
            4
        );
        assert!(doc.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn nice_max_rounds_up() {
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(1000.0), 1000.0);
        assert_eq!(nice_max(2100.0), 2500.0);
    }

    /// The y coordinates of a polyline's points.
    fn ys(doc: &str, series: usize) -> Vec<f64> {
        let line = doc
            .lines()
            .filter(|l| l.starts_with("<polyline"))
            .nth(series)
            .unwrap();
        line.split("points=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches("\"/>")
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect()
    }

    fn run_of(us: [f64; 3]) -> LatencySummary {
        LatencySummary {
            p99_us: us[1],
            max_us: us[2],
            distribution: vec![(0.0, us[0]), (99.0, us[1]), (100.0, us[2])],
            ..Default::default()
        }
    }

    #[test]
    fn a_log_axis_keeps_a_millisecond_run_readable_beside_a_second_run() {
        let fast = run_of([1000.0, 2000.0, 3000.0]);
        let slow = run_of([100_000.0, 900_000.0, 1_400_000.0]);
        let series = [("fast".to_string(), &fast), ("slow".to_string(), &slow)];
        let plot_h = HEIGHT - TOP - BOTTOM;
        let spread = |doc: &str| {
            let y = ys(doc, 0);
            (y[0] - y[2]) / plot_h
        };
        let linear = svg("t", &series, YAxis::Linear);
        let log = svg("t", &series, YAxis::Log);
        // 1 ms to 3 ms is a fifth of a percent of a 1.5 s linear axis; on decades from
        // 1 ms to 10 s it is 0.477 of one of four.
        assert!(spread(&linear) < 0.002, "{}", spread(&linear));
        assert!(
            (spread(&log) - 3f64.log10() / 4.0).abs() < 0.01,
            "{}",
            spread(&log)
        );
        for doc in [&linear, &log] {
            for y in ys(doc, 0).into_iter().chain(ys(doc, 1)) {
                assert!((TOP - 0.05..=TOP + plot_h + 0.05).contains(&y), "{y}");
            }
        }
        for label in [">1 ms<", ">10 ms<", ">100 ms<", ">1 s<", ">10 s<"] {
            assert!(log.contains(label), "{label} missing");
        }
        assert!(log.contains("latency (log scale)"));
        assert!(log.contains("slow (p99 900 ms)"));
        assert!(linear.contains("latency (ms)"));
    }

    #[test]
    fn a_log_axis_spans_whole_decades_and_adds_steps_when_they_are_few() {
        let lat = run_of([40.0, 150.0, 700.0]);
        let scale = Scale::new(YAxis::Log, &[("a".to_string(), &lat)]);
        assert_eq!((scale.us_min, scale.us_max), (10.0, 1000.0));
        assert_eq!(
            scale.ticks_us(),
            [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(scale.fraction(10.0), 0.0);
        assert!((scale.fraction(100.0) - 0.5).abs() < 1e-9);
        assert_eq!(scale.fraction(1000.0), 1.0);
        assert_eq!(
            scale.fraction(0.001),
            0.0,
            "below the axis is drawn at its bottom"
        );
        let wide = run_of([2.0, 5000.0, 2_000_000.0]);
        let scale = Scale::new(YAxis::Log, &[("a".to_string(), &wide)]);
        assert_eq!(scale.ticks_us().len(), 8, "{:?}", scale.ticks_us());
    }
}
