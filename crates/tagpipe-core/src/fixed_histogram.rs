//! Histograms with fixed buckets for timings taken on every request: recording is two relaxed
//! atomic additions (the bucket and the sum), with no clock read and no buffer that grows until
//! the next scrape. The binary renders their [`snapshots`] into `/metrics` next to the
//! recorder's metrics, as classic Prometheus histograms (`_bucket{le=…}`, `_sum`, `_count`).
//!
//! The `metrics` recorder keeps every recorded sample until it is drained (a clock read and a
//! push per sample); that suits per-batch timings, while a per-request timing at tens of
//! thousands of requests a second wants this.

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

/// Every histogram made, in the order made (one series per name and label set).
static REGISTRY: Mutex<Vec<Arc<FixedHistogram>>> = Mutex::new(Vec::new());

/// One series of a duration histogram with [`SECONDS_BUCKETS`].
#[derive(Debug)]
pub struct FixedHistogram {
    name: &'static str,
    help: &'static str,
    labels: Vec<(String, String)>,
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: [AtomicU64; 16],
    sum_nanos: AtomicU64,
}

/// A series as it stands, for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The metric's name.
    pub name: &'static str,
    /// Its description.
    pub help: &'static str,
    /// The series' labels, in the order given.
    pub labels: Vec<(String, String)>,
    /// Per bound of [`SECONDS_BUCKETS`], the observations at or below it (cumulative).
    pub buckets: [u64; 15],
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl FixedHistogram {
    /// The series `name{labels}`, made on first use and shared after: a component rebuilt by a
    /// reload keeps counting in the same series.
    pub fn register(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Arc<Self> {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = registry
            .iter()
            .find(|h| h.name == name && h.labels == labels)
        {
            return known.clone();
        }
        let made = Arc::new(Self {
            name,
            help,
            labels,
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

    /// This series as it stands.
    pub fn snapshot(&self) -> Snapshot {
        let mut buckets = [0; 15];
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            if let Some(bucket) = buckets.get_mut(i) {
                *bucket = cumulative;
            }
        }
        Snapshot {
            name: self.name,
            help: self.help,
            labels: self.labels.clone(),
            buckets,
            count: cumulative,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Every registered series as it stands, in the order made.
pub fn snapshots() -> Vec<Snapshot> {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|h| h.snapshot())
        .collect()
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
        let snapshot = h.snapshot();
        assert_eq!(snapshot.buckets[0], 2, "le 0.0005");
        assert_eq!(snapshot.buckets[2], 2, "le 0.0025");
        assert_eq!(snapshot.buckets[3], 3, "le 0.005");
        assert_eq!(snapshot.buckets[14], 3, "le 30");
        assert_eq!(snapshot.count, 4, "+Inf");
        assert_eq!(snapshot.sum.to_string(), "60.0037");
        assert_eq!(
            snapshot.labels,
            [
                ("source".to_owned(), "http".to_owned()),
                ("endpoint".to_owned(), "ga\"4".to_owned())
            ]
        );
    }

    #[test]
    fn one_series_per_name_and_labels() {
        let a = FixedHistogram::register("test_block_seconds", "Blocks.", &[("k", "a")]);
        let again = FixedHistogram::register("test_block_seconds", "Blocks.", &[("k", "a")]);
        let b = FixedHistogram::register("test_block_seconds", "Blocks.", &[("k", "b")]);
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &b));
        a.record(Duration::from_millis(1));
        let ours: Vec<Snapshot> = snapshots()
            .into_iter()
            .filter(|s| s.name == "test_block_seconds")
            .collect();
        assert_eq!(ours.len(), 2);
        assert_eq!((ours[0].count, ours[1].count), (1, 0));
    }
}
