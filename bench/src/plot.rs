//! `spate-bench plot a.json b.json -o out.svg`: latency by percentile, x-axis 1/(1-p) on a log
//! scale (the usual HdrHistogram chart), SVG written by hand.

use crate::report::LatencySummary;

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
pub fn svg(title: &str, series: &[(String, &LatencySummary)]) -> String {
    use std::fmt::Write;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y_max_us = nice_max(series.iter().map(|(_, l)| l.max_us).fold(0.0, f64::max));
    let (unit, scale) = if y_max_us >= 10_000.0 {
        ("ms", 1000.0)
    } else {
        ("us", 1.0)
    };
    let x = |n: f64| LEFT + plot_w * n / NINES_MAX;
    let y = |us: f64| TOP + plot_h * (1.0 - us / y_max_us);
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
    for i in 0..=5 {
        let us = y_max_us * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#ddd"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            LEFT,
            y(us),
            LEFT + plot_w,
            LEFT - 6.0,
            y(us) + 4.0,
            format_value(us / scale)
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
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">latency ({unit})</text>"#,
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
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{color}" stroke-width="3"/><text x="{3}" y="{4}">{5} (p99 {6} {unit})</text>"#,
            LEFT + 12.0,
            ly,
            LEFT + 36.0,
            LEFT + 42.0,
            ly + 4.0,
            escape(name),
            format_value(lat.p99_us / scale)
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
        let doc = svg("t <1>", &[("a".into(), &lat), ("b".into(), &lat)]);
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
}
