//! Histograms with fixed buckets for timings taken on every request: recording is two relaxed
//! atomic additions (the bucket and the sum) to the recording thread's own cells
//! ([`Striped`]), with no clock read, no cache line shared with the other serving threads and
//! no buffer that grows until the next scrape. The binary renders their [`snapshots`] into `/metrics` next to the
//! recorder's metrics, as classic Prometheus histograms (`_bucket{le=…}`, `_sum`, `_count`).
//!
//! The `metrics` recorder keeps every recorded sample until it is drained (a clock read and a
//! push per sample); that suits per-batch timings, while a per-request timing at tens of
//! thousands of requests a second wants this.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::series::{Series, SeriesId, SeriesList};
use crate::striped::Striped;

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
static REGISTRY: SeriesList<FixedHistogram> = SeriesList::new();

/// One series of a duration histogram with [`SECONDS_BUCKETS`].
#[derive(Debug)]
pub struct FixedHistogram {
    id: SeriesId,
    /// Each thread's observations.
    cells: Striped<Cells>,
}

/// One thread's observations of a [`FixedHistogram`].
#[derive(Debug, Default)]
struct Cells {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: [AtomicU64; 16],
    sum_nanos: AtomicU64,
}

/// A series as it stands, for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The series' name, description and labels.
    pub id: SeriesId,
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
        REGISTRY.register(name, help, labels, |id| Self {
            id,
            cells: Striped::default(),
        })
    }

    /// Counts one duration.
    pub fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BOUNDS_NANOS.len());
        let mine = self.cells.mine();
        mine.counts[bucket].fetch_add(1, Ordering::Relaxed);
        mine.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// This series as it stands.
    pub fn snapshot(&self) -> Snapshot {
        let mut buckets = [0; 15];
        let mut cumulative: u64 = 0;
        let mut sum_nanos: u64 = 0;
        for i in 0..16 {
            let count = self
                .cells
                .cells()
                .map(|cells| cells.counts[i].load(Ordering::Relaxed))
                .fold(0, u64::wrapping_add);
            cumulative = cumulative.wrapping_add(count);
            if let Some(bucket) = buckets.get_mut(i) {
                *bucket = cumulative;
            }
        }
        for cells in self.cells.cells() {
            sum_nanos = sum_nanos.wrapping_add(cells.sum_nanos.load(Ordering::Relaxed));
        }
        Snapshot {
            id: self.id.clone(),
            buckets,
            count: cumulative,
            sum: sum_nanos as f64 / 1e9,
        }
    }
}

/// Every registered series as it stands, in the order made.
pub fn snapshots() -> Vec<Snapshot> {
    REGISTRY.read_all(FixedHistogram::snapshot)
}

impl Series for FixedHistogram {
    fn id(&self) -> &SeriesId {
        &self.id
    }
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
            snapshot.id.labels,
            [
                ("source".to_owned(), "http".to_owned()),
                ("endpoint".to_owned(), "ga\"4".to_owned())
            ]
        );
    }

    #[test]
    fn observations_from_many_threads_are_summed() {
        let h = FixedHistogram::register("test_threads_seconds", "Threads.", &[]);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        h.record(Duration::from_millis(i + 1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let snapshot = h.snapshot();
        assert_eq!(snapshot.count, 40);
        assert_eq!(snapshot.buckets[1], 10, "le 0.001: the 1 ms ones");
        assert_eq!(snapshot.buckets[2], 20, "le 0.0025: and the 2 ms ones");
        assert_eq!(snapshot.buckets[3], 40, "le 0.005");
        assert_eq!(snapshot.sum.to_string(), "0.1");
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
            .filter(|s| s.id.name == "test_block_seconds")
            .collect();
        assert_eq!(ours.len(), 2);
        assert_eq!((ours[0].count, ours[1].count), (1, 0));
    }
}
