//! Prometheus' text exposition format, version 0.0.4: a writer for metric families, samples
//! and histograms. Pure: it knows no broker state and does no I/O, so its escaping and its
//! bucket arithmetic are tested on their own.
//!
//! The format, in short: each family is introduced by one `# HELP` and one `# TYPE` line and
//! its samples follow contiguously; a sample is `name{label="value",...} number`; label values
//! escape `\`, `"` and newlines; a histogram is a family of `_bucket` samples with cumulative
//! counts and an `le` label (the last one `+Inf`, equal to `_count`), then `_sum` and `_count`.

use std::fmt::Write;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of family a `# TYPE` line announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (restarts from zero with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A histogram's data: a count per bucket (not cumulative; `counts[bounds.len()]` is the
/// count above every bound), the sum of the samples, all in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets<'a> {
    /// Inclusive upper bounds, ascending, in microseconds.
    pub bounds_us: &'a [u64],
    /// One count per bound plus one for the samples above the last.
    pub counts: &'a [u64],
    /// The sum of the samples, microseconds.
    pub sum_us: u64,
}

/// Text being written in the exposition format.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// The text written so far.
    pub fn into_string(self) -> String {
        self.out
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples must follow before the
    /// next family starts.
    ///
    /// # Panics
    /// If `name` is not a valid metric name (a programmer's error: names are constants).
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        assert!(is_valid_name(name), "invalid metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample with an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// One sample with a value in seconds given in microseconds (counters of time).
    pub fn sample_seconds(&mut self, name: &str, labels: &[(&str, &str)], value_us: u64) {
        self.series(name, labels, None);
        self.out.push(' ');
        write_seconds(value_us, &mut self.out);
        self.out.push('\n');
    }

    /// One sample with a signed value (offsets, which are -1 when unknown).
    pub fn sample_signed(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.series(name, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram's samples (the family must have been started with [`Kind::Histogram`]):
    /// cumulative `_bucket` counts with `le` in seconds, `+Inf`, then `_sum` (seconds) and
    /// `_count`.
    ///
    /// # Panics
    /// If `buckets.counts` does not have one count per bound plus one.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], buckets: Buckets<'_>) {
        assert_eq!(buckets.counts.len(), buckets.bounds_us.len() + 1);
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, &count) in buckets.counts.iter().enumerate() {
            cumulative = cumulative.saturating_add(count);
            le.clear();
            match buckets.bounds_us.get(i) {
                Some(&bound) => write_seconds(bound, &mut le),
                None => le.push_str("+Inf"),
            }
            self.series(&bucket_name, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        self.sample_seconds(&format!("{name}_sum"), labels, buckets.sum_us);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    /// `name{labels,le="..."}` without the value.
    fn series(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.out.push_str(name);
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        let le = le.map(|le| ("le", le));
        for (label, value) in labels.iter().copied().chain(le) {
            debug_assert!(is_valid_label(label), "invalid label name {label:?}");
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(label);
            self.out.push_str("=\"");
            escape_label_value(value, &mut self.out);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Microseconds as seconds in decimal, exactly (`2500` is `0.0025`), with no float rounding.
fn write_seconds(us: u64, out: &mut String) {
    let (whole, fraction) = (us / 1_000_000, us % 1_000_000);
    let _ = write!(out, "{whole}");
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// A label value as the format wants it: `\` as `\\`, `"` as `\"`, a newline as `\n`.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: `\` as `\\`, a newline as `\n` (quotes stay).
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn is_valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut e = Exposition::new();
        e.family("spate_x", "A \"quoted\" help\\with\nlines.", Kind::Gauge);
        e.sample("spate_x", &[("group", "a\\b\"c\nd"), ("topic", "t")], 7);
        assert_eq!(
            e.into_string(),
            "# HELP spate_x A \"quoted\" help\\\\with\\nlines.\n\
             # TYPE spate_x gauge\n\
             spate_x{group=\"a\\\\b\\\"c\\nd\",topic=\"t\"} 7\n"
        );
    }

    #[test]
    fn a_sample_without_labels_has_no_braces() {
        let mut e = Exposition::new();
        e.sample("spate_up", &[], 1);
        e.sample_signed("spate_offset", &[], -1);
        assert_eq!(e.into_string(), "spate_up 1\nspate_offset -1\n");
    }

    #[test]
    fn seconds_are_exact_decimals() {
        let text = |us| {
            let mut s = String::new();
            write_seconds(us, &mut s);
            s
        };
        assert_eq!(text(0), "0");
        assert_eq!(text(100), "0.0001");
        assert_eq!(text(2_500), "0.0025");
        assert_eq!(text(1_000_000), "1");
        assert_eq!(text(30_000_001), "30.000001");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_equal_to_count() {
        let mut e = Exposition::new();
        e.family("spate_d_seconds", "Time.", Kind::Histogram);
        e.histogram(
            "spate_d_seconds",
            &[("api", "Produce")],
            Buckets {
                bounds_us: &[100, 1_000],
                counts: &[3, 0, 2],
                sum_us: 1_500_000,
            },
        );
        let text = e.into_string();
        let lines: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            lines,
            [
                "spate_d_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 3",
                "spate_d_seconds_bucket{api=\"Produce\",le=\"0.001\"} 3",
                "spate_d_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 5",
                "spate_d_seconds_sum{api=\"Produce\"} 1.5",
                "spate_d_seconds_count{api=\"Produce\"} 5",
            ]
        );
    }

    #[test]
    #[should_panic(expected = "invalid metric name")]
    fn a_bad_family_name_is_a_programmers_error() {
        Exposition::new().family("spate-x", "", Kind::Counter);
    }

    #[test]
    fn names_and_labels_follow_the_data_model() {
        assert!(is_valid_name("spate_a:b_1"));
        assert!(!is_valid_name("1spate"));
        assert!(!is_valid_name(""));
        assert!(is_valid_label("topic"));
        assert!(!is_valid_label("__name__"));
        assert!(!is_valid_label("a-b"));
    }

    proptest::proptest! {
        /// Whatever a label value holds, the escaped text has no raw newline and every quote
        /// is escaped, so it cannot end the value early or break the line.
        #[test]
        fn escaped_values_stay_inside_their_quotes(value in ".*") {
            let mut out = String::new();
            escape_label_value(&value, &mut out);
            proptest::prop_assert!(!out.contains('\n'));
            let bytes = out.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => {
                        proptest::prop_assert!(matches!(bytes.get(i + 1), Some(b'\\' | b'"' | b'n')));
                        i += 2;
                    }
                    b'"' => proptest::prop_assert!(false, "unescaped quote in {out:?}"),
                    _ => i += 1,
                }
            }
        }

        /// Bucket counts never go down and the last one equals the count.
        #[test]
        fn histogram_is_cumulative(counts in proptest::collection::vec(0u64..1_000_000, 4)) {
            let mut e = Exposition::new();
            e.histogram("h", &[], Buckets { bounds_us: &[1, 2, 3], counts: &counts, sum_us: 0 });
            let text = e.into_string();
            let values: Vec<u64> = text
                .lines()
                .filter(|l| l.starts_with("h_bucket"))
                .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
                .collect();
            proptest::prop_assert_eq!(values.len(), 4);
            proptest::prop_assert!(values.windows(2).all(|w| w[0] <= w[1]));
            let total: u64 = counts.iter().sum();
            proptest::prop_assert_eq!(values[3], total);
            let count_line = format!("h_count {total}");
            proptest::prop_assert!(text.lines().any(|l| l == count_line));
        }
    }
}
