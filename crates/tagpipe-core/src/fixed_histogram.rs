//! Histograms with fixed buckets for timings taken on every request: recording is two relaxed
//! atomic additions (the bucket and the sum), with no clock read and no buffer that grows until
//! the next scrape. They appear in `/metrics` ([`crate::telemetry::render`]) next to the
//! recorder's metrics as classic Prometheus histograms (`_bucket{le=…}`, `_sum`, `_count`).
//!
//! The `metrics` recorder keeps every recorded sample until it is drained (a clock read and a
//! push per sample); that suits per-batch timings, while a per-request timing at tens of
//! thousands of requests a second wants this.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The bucket bounds of every `…_seconds` histogram, in seconds (the recorder's are the same).
pub const SECONDS_BUCKETS: [f64; 15] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The bucket bounds in nanoseconds, for recording without floating point.
const BOUNDS_NANOS: [u64; 15] = {
    let mut nanos = [0; 15];
    let mut i = 0;
    while i < nanos.len() {
        // Every bound is a whole number of 0.5 ms steps, exact in nanoseconds.
        nanos[i] = (SECONDS_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

/// Every histogram made, rendered in the order made (one series per name and label set).
static REGISTRY: Mutex<Vec<Arc<FixedHistogram>>> = Mutex::new(Vec::new());

/// One series of a duration histogram with [`SECONDS_BUCKETS`].
#[derive(Debug)]
pub struct FixedHistogram {
    name: &'static str,
    help: &'static str,
    /// `key="value",…`, escaped.
    labels: String,
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: [AtomicU64; 16],
    sum_nanos: AtomicU64,
}

impl FixedHistogram {
    /// The series `name{labels}`, made on first use and shared after: a component rebuilt by a
    /// reload keeps counting in the same series.
    pub fn register(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Arc<Self> {
        let mut rendered = String::new();
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                rendered.push(',');
            }
            let _ = write!(rendered, "{key}=\"{}\"", escape(value));
        }
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = registry
            .iter()
            .find(|h| h.name == name && h.labels == rendered)
        {
            return known.clone();
        }
        let made = Arc::new(Self {
            name,
            help,
            labels: rendered,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        });
        registry.push(made.clone());
        made
    }

    /// Counts one duration.
    pub fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BOUNDS_NANOS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends this series' lines (cumulative buckets, sum, count) to `out`.
    fn render_into(&self, out: &mut String) {
        let sep = if self.labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let _ = match SECONDS_BUCKETS.get(i) {
                Some(bound) => writeln!(
                    out,
                    "{}_bucket{{{}{sep}le=\"{bound}\"}} {cumulative}",
                    self.name, self.labels
                ),
                None => writeln!(
                    out,
                    "{}_bucket{{{}{sep}le=\"+Inf\"}} {cumulative}",
                    self.name, self.labels
                ),
            };
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        // No braces at all without labels (the text format has no empty `{}`).
        let labels = if self.labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", self.labels)
        };
        let _ = writeln!(out, "{}_sum{labels} {sum}", self.name);
        let _ = writeln!(out, "{}_count{labels} {cumulative}", self.name);
    }
}

/// Appends every registered histogram to a Prometheus text exposition, one `# HELP`/`# TYPE`
/// block per name.
pub(crate) fn render_all(out: &mut String) {
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let mut names: Vec<(&'static str, &'static str)> = Vec::new();
    for h in registry.iter() {
        if !names.iter().any(|(name, _)| *name == h.name) {
            names.push((h.name, h.help));
        }
    }
    for (name, help) in names {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for h in registry.iter().filter(|h| h.name == name) {
            h.render_into(out);
        }
    }
}

/// A label value as the text format wants it (`\`, `"` and newlines escaped).
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_nanoseconds_are_exact() {
        assert_eq!(BOUNDS_NANOS[0], 500_000);
        assert_eq!(BOUNDS_NANOS[2], 2_500_000);
        assert_eq!(BOUNDS_NANOS[14], 30_000_000_000);
    }

    #[test]
    fn durations_land_in_cumulative_buckets_with_sum_and_count() {
        let h = FixedHistogram::register(
            "test_fixed_duration_seconds",
            "A test.",
            &[("source", "http"), ("endpoint", "ga\"4")],
        );
        h.record(Duration::from_micros(200)); // ≤ 0.0005
        h.record(Duration::from_micros(500)); // ≤ 0.0005: bounds are inclusive
        h.record(Duration::from_millis(3)); // ≤ 0.005
        h.record(Duration::from_secs(60)); // +Inf only
        let mut out = String::new();
        h.render_into(&mut out);
        let labels = r#"source="http",endpoint="ga\"4""#;
        for line in [
            format!(r#"test_fixed_duration_seconds_bucket{{{labels},le="0.0005"}} 2"#),
            format!(r#"test_fixed_duration_seconds_bucket{{{labels},le="0.0025"}} 2"#),
            format!(r#"test_fixed_duration_seconds_bucket{{{labels},le="0.005"}} 3"#),
            format!(r#"test_fixed_duration_seconds_bucket{{{labels},le="30"}} 3"#),
            format!(r#"test_fixed_duration_seconds_bucket{{{labels},le="+Inf"}} 4"#),
            format!("test_fixed_duration_seconds_sum{{{labels}}} 60.0037"),
            format!("test_fixed_duration_seconds_count{{{labels}}} 4"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
    }

    #[test]
    fn one_series_per_name_and_labels_and_one_block_per_name() {
        let a = FixedHistogram::register("test_block_seconds", "Blocks.", &[("k", "a")]);
        let again = FixedHistogram::register("test_block_seconds", "Blocks.", &[("k", "a")]);
        let b = FixedHistogram::register("test_block_seconds", "Blocks.", &[("k", "b")]);
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &b));
        a.record(Duration::from_millis(1));
        let mut out = String::from("# TYPE other counter\nother 1\n");
        render_all(&mut out);
        assert_eq!(
            out.matches("# TYPE test_block_seconds histogram").count(),
            1
        );
        assert!(
            out.contains("\n\n# HELP test_block_seconds Blocks.\n"),
            "{out}"
        );
        assert!(
            out.contains("test_block_seconds_count{k=\"a\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("test_block_seconds_count{k=\"b\"} 0\n"),
            "{out}"
        );
    }

    #[test]
    fn a_series_without_labels_has_no_braces_but_its_buckets_have_le() {
        let h = FixedHistogram::register("test_bare_seconds", "Bare.", &[]);
        h.record(Duration::from_millis(1));
        let mut out = String::new();
        h.render_into(&mut out);
        assert!(
            out.contains("test_bare_seconds_bucket{le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("test_bare_seconds_sum 0.001\n"), "{out}");
        assert!(out.contains("test_bare_seconds_count 1\n"), "{out}");
    }
}
