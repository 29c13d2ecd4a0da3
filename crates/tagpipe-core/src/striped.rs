//! Per-request counters that the serving threads add to without sharing a cache line: one
//! cell per thread (a *stripe*), summed when read.
//!
//! An atomic counter that every serving thread adds to at every request moves its cache line
//! from core to core at nearly every addition — on a two-core machine with both workers
//! serving, a wait of the order of a hundred nanoseconds each time, for one counter. A
//! [`Striped`] value keeps [`STRIPES`] cells, each on a cache line of its own; a thread always
//! adds to the same cell (threads take the stripes in turn as they first count), so its line
//! stays in its core's cache, and a reader sums the cells. Reading costs the stripes; the
//! writers, who count at every request, pay nothing for each other.
//!
//! [`StripedCounter`] is a Prometheus counter built on it for the series every request adds to
//! (`tagpipe_http_requests_total`; `tagpipe_events_received_total`, which every source counts
//! through it): kept in a registry of its own, like the
//! [`FixedHistogram`](crate::fixed_histogram::FixedHistogram)s, and rendered by the binary next
//! to the recorder's metrics ([`counter_snapshots`]).
//!
//! Stripes are handed out in turn and never taken back: where threads come and go (tokio's
//! blocking pool), two serving threads may in time share a stripe — still exact, only slower.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::series::{Series, SeriesId, SeriesList};

/// How many cells a striped value has: more than the threads that serve requests on most
/// machines tagpipe runs on. Threads beyond it share cells (still correct, just shared).
pub const STRIPES: usize = 8;

/// A cell on a cache line of its own (128 bytes: two 64-byte lines, as adjacent-line
/// prefetchers fetch them in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One `T` per stripe; each thread uses its own ([`Striped::mine`]).
#[derive(Debug)]
pub struct Striped<T> {
    cells: [Padded<T>; STRIPES],
}

impl<T: Default> Default for Striped<T> {
    fn default() -> Self {
        Self {
            cells: std::array::from_fn(|_| Padded::default()),
        }
    }
}

impl<T> Striped<T> {
    /// This thread's cell.
    pub fn mine(&self) -> &T {
        &self.cells[stripe()].0
    }

    /// Every cell, for summing.
    pub fn cells(&self) -> impl Iterator<Item = &T> {
        self.cells.iter().map(|cell| &cell.0)
    }
}

/// The stripe of the calling thread: given in turn to each thread as it first asks (never taken
/// back when a thread ends).
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// Every counter made, in the order made (one series per name and label set).
static REGISTRY: SeriesList<StripedCounter> = SeriesList::new();

/// One series of a Prometheus counter whose additions do not contend ([`Striped`]).
#[derive(Debug)]
pub struct StripedCounter {
    id: SeriesId,
    count: Striped<AtomicU64>,
}

/// A counter series as it stands, for rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// The series' name, description and labels.
    pub id: SeriesId,
    /// The count.
    pub value: u64,
}

impl StripedCounter {
    /// The series `name{labels}`, made on first use and shared after: a component rebuilt by a
    /// reload keeps counting in the same series.
    pub fn register(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Arc<Self> {
        REGISTRY.register(name, help, labels, |id| Self {
            id,
            count: Striped::default(),
        })
    }

    /// Adds `n`.
    pub fn increment(&self, n: u64) {
        self.count.mine().fetch_add(n, Ordering::Relaxed);
    }

    /// The count: the sum of every thread's additions.
    pub fn get(&self) -> u64 {
        self.count
            .cells()
            .map(|cell| cell.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// This series as it stands.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            id: self.id.clone(),
            value: self.get(),
        }
    }
}

/// Every registered counter series as it stands, in the order made.
pub fn counter_snapshots() -> Vec<CounterSnapshot> {
    REGISTRY.read_all(StripedCounter::snapshot)
}

impl Series for StripedCounter {
    fn id(&self) -> &SeriesId {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_sit_on_lines_of_their_own() {
        let striped = Striped::<AtomicU64>::default();
        let addresses: Vec<usize> = striped
            .cells()
            .map(|cell| std::ptr::from_ref(cell) as usize)
            .collect();
        for pair in addresses.windows(2) {
            assert_eq!(pair[1] - pair[0], 128);
        }
        assert_eq!(addresses[0] % 128, 0);
    }

    #[test]
    fn additions_from_many_threads_all_count() {
        let counter = StripedCounter::register("test_striped_total", "A test.", &[("k", "many")]);
        // More threads than stripes, all alive at once: some share a cell.
        let threads: Vec<_> = (0..STRIPES + 3)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counter.increment(1);
                    }
                    counter.increment(5);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.get(), (STRIPES as u64 + 3) * 1005);
        // The additions were spread over the stripes, not all in one cell.
        let used = counter
            .count
            .cells()
            .filter(|cell| cell.load(Ordering::Relaxed) > 0)
            .count();
        assert!(used > 1, "only {used} stripe used");
    }

    #[test]
    fn one_series_per_name_and_labels() {
        let a = StripedCounter::register("test_series_total", "Series.", &[("k", "a")]);
        let again = StripedCounter::register("test_series_total", "Series.", &[("k", "a")]);
        let b = StripedCounter::register("test_series_total", "Series.", &[("k", "b")]);
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &b));
        a.increment(2);
        let ours: Vec<CounterSnapshot> = counter_snapshots()
            .into_iter()
            .filter(|s| s.id.name == "test_series_total")
            .collect();
        assert_eq!(ours.len(), 2);
        assert_eq!((ours[0].value, ours[1].value), (2, 0));
        assert_eq!(ours[0].id.labels, [("k".to_owned(), "a".to_owned())]);
    }
}
