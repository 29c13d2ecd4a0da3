//! tagpipe's own metrics, Prometheus-style (`tagpipe_…_total`, `…_seconds`), recorded with the
//! `metrics` facade but for the per-request ones below (a fixed histogram and two striped
//! counters); the binary installs the Prometheus recorder and sources serve `/metrics` through
//! [`render`].
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `tagpipe_events_received_total` | counter | `source`, `endpoint` |
//! | `tagpipe_events_sent_total` | counter | `sink` |
//! | `tagpipe_events_skipped_total` | counter | `sink`, `reason` (the reason's kind: `consent`, `filter`, `mapping`, `dry_run`, …) |
//! | `tagpipe_events_failed_total` | counter | `sink`, `reason` (kind: `rejected`, `gave up`, `queue full`, `shutdown deadline`, …) |
//! | `tagpipe_events_dead_lettered_total` | counter | `sink`, `dead_letter` |
//! | `tagpipe_queue_depth`, `tagpipe_queue_capacity` | gauge | `sink` |
//! | `tagpipe_sink_batch_size` | histogram | `sink` |
//! | `tagpipe_sink_request_duration_seconds` | histogram | `sink` |
//! | `tagpipe_delivery_log_records_total` | counter | `sink`, `type` (`Request`, `Response`, `Retry`, `Rejected`, `Message`) |
//! | `tagpipe_http_requests_total` | counter | `source`, `endpoint`, `status` |
//! | `tagpipe_http_request_duration_seconds` | histogram | `source`, `endpoint` |
//! | `tagpipe_build_info` | gauge (1) | `version` |
//!
//! `tagpipe_http_request_duration_seconds` is a [`FixedHistogram`](crate::fixed_histogram) (fixed
//! buckets, two atomic additions per request); the other histograms go through the recorder,
//! whose samples the binary drains every few seconds. The two counters every request adds to,
//! `tagpipe_http_requests_total` and `tagpipe_events_received_total`, are
//! [`StripedCounter`]s (see [`received`]): like the fixed histograms, each serving thread
//! adds to cells of its own, and the binary renders them next to the recorder's metrics.
//!
//! Label values are component IDs, endpoint names, status codes and reason *kinds* (the text
//! before the first `:`, at most its first three words, lowercased), never free text or
//! secrets, so cardinality stays bounded.
//!
//! Handles are registered once and kept: the per-sink instruments by their driver, the HTTP
//! source's by the source, and the outcome counters of [`outcome`] in one process-wide list.
//! A handle is bound to the recorder installed when it was registered, so the recorder must be
//! installed before the first event (the binary installs it at start-up).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::ack::{DestinationOutcome, Outcome};
use crate::id::ComponentId;
use crate::striped::StripedCounter;

type Renderer = Box<dyn Fn() -> String + Send + Sync>;

static RENDERER: OnceLock<Renderer> = OnceLock::new();

/// Installs how `/metrics` is rendered (the binary does this once, at start-up).
pub fn set_renderer(render: impl Fn() -> String + Send + Sync + 'static) {
    let _ = RENDERER.set(Box::new(render));
}

/// The Prometheus text exposition of every metric (the installed renderer writes the
/// recorder's and the [`FixedHistogram`](crate::fixed_histogram::FixedHistogram)s), or `None`
/// when no recorder is installed.
pub fn render() -> Option<String> {
    RENDERER.get().map(|render| render())
}

/// The `tagpipe_events_received_total{source, endpoint}` series: events a source accepted.
/// Every source counts through this one (a [`StripedCounter`], never the recorder), so that
/// the metric's series are rendered together.
pub fn received(source: &ComponentId, endpoint: &str) -> Arc<StripedCounter> {
    StripedCounter::register(
        "tagpipe_events_received_total",
        "Events a source accepted.",
        &[("source", source.as_str()), ("endpoint", endpoint)],
    )
}

/// A reason's kind, for a bounded label: the text before the first `:` (at most its first
/// three words, single-spaced), lowercased. Borrowed from `reason` when it already has that
/// form (`consent: ad_storage not granted` → `consent`), as nearly every reason does.
pub fn reason_kind(reason: Option<&str>) -> Cow<'_, str> {
    let reason = reason.unwrap_or("unknown");
    let head = reason.split(':').next().unwrap_or(reason);
    let mut words = head.split_whitespace().take(3);
    let Some(first) = words.next() else {
        return Cow::Borrowed("");
    };
    // Offsets of the words within `head`: the kind is one slice of it when the words are
    // separated by single spaces and none has an upper-case letter.
    let start = first.as_ptr() as usize - head.as_ptr() as usize;
    let mut end = start + first.len();
    let mut canonical = !first.bytes().any(|b| b.is_ascii_uppercase());
    for word in words {
        let at = word.as_ptr() as usize - head.as_ptr() as usize;
        canonical &= &head[end..at] == " " && !word.bytes().any(|b| b.is_ascii_uppercase());
        end = at + word.len();
    }
    if canonical {
        return Cow::Borrowed(&head[start..end]);
    }
    Cow::Owned(
        head.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase(),
    )
}

/// The outcome counters handed out so far: an event skipped by a processor (consent refused, a
/// filter) or failed at a sink is counted through a handle found here, under a read lock and
/// without allocating, rather than registered with the recorder per event (a registration
/// copies the labels into new strings and hashes them: ~2,300 instructions per event, 6 % of a
/// consent-refused GA4 hit's, BENCHMARKS.md). A list searched in order: there are a few sinks
/// and a few reason kinds, and comparing short names is cheaper than hashing them. It holds
/// at most [`MAX_CACHED_OUTCOME_COUNTERS`] series (as the recorder does, it keeps those of
/// sinks a reload removed); past that, further series are registered per event, as before.
static OUTCOME_COUNTERS: RwLock<Vec<OutcomeCounter>> = RwLock::new(Vec::new());

/// How many series [`OUTCOME_COUNTERS`] keeps: the search stays short even where failure
/// reasons of many kinds come and go.
const MAX_CACHED_OUTCOME_COUNTERS: usize = 128;

/// One series of [`OUTCOME_COUNTERS`].
struct OutcomeCounter {
    sink: String,
    outcome: Outcome,
    /// The reason kind (empty for `sent`, which has none).
    kind: String,
    counter: Counter,
}

impl OutcomeCounter {
    fn is(&self, sink: &str, outcome: Outcome, kind: &str) -> bool {
        self.outcome == outcome && self.sink == sink && self.kind == kind
    }
}

/// Counts one outcome at a sink.
pub fn outcome(sink: &ComponentId, outcome: &DestinationOutcome) {
    let kind = match outcome.outcome {
        Outcome::Sent => Cow::Borrowed(""),
        Outcome::Skipped | Outcome::Failed => reason_kind(outcome.reason.as_deref()),
    };
    let found = |counters: &[OutcomeCounter]| {
        counters
            .iter()
            .find(|c| c.is(sink.as_str(), outcome.outcome, &kind))
            .map(|c| c.counter.increment(1))
            .is_some()
    };
    // A panic elsewhere while holding the lock leaves only complete entries: keep going.
    let full = {
        let counters = OUTCOME_COUNTERS
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if found(&counters) {
            return;
        }
        counters.len() >= MAX_CACHED_OUTCOME_COUNTERS
    };
    if full {
        // Past the bound: registered per event, without holding up the cached series' readers.
        register_outcome(sink, outcome.outcome, &kind).increment(1);
        return;
    }
    let mut counters = OUTCOME_COUNTERS
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    // Another thread may have registered it since the read.
    if found(&counters) {
        return;
    }
    let counter = register_outcome(sink, outcome.outcome, &kind);
    counter.increment(1);
    if counters.len() < MAX_CACHED_OUTCOME_COUNTERS {
        counters.push(OutcomeCounter {
            sink: sink.to_string(),
            outcome: outcome.outcome,
            kind: kind.into_owned(),
            counter,
        });
    }
}

/// Registers the counter of `outcome` at `sink` (and of the reason kind `kind`).
fn register_outcome(sink: &ComponentId, outcome: Outcome, kind: &str) -> Counter {
    let sink = sink.to_string();
    let kind = kind.to_owned();
    match outcome {
        Outcome::Sent => counter!("tagpipe_events_sent_total", "sink" => sink),
        Outcome::Skipped => {
            counter!("tagpipe_events_skipped_total", "sink" => sink, "reason" => kind)
        }
        Outcome::Failed => {
            counter!("tagpipe_events_failed_total", "sink" => sink, "reason" => kind)
        }
    }
}

/// The per-sink instruments a driver keeps (created once, so the hot path allocates nothing).
#[derive(Debug, Clone)]
pub struct SinkInstruments {
    /// `tagpipe_events_sent_total{sink}`.
    pub sent: Counter,
    /// `tagpipe_queue_depth{sink}`.
    pub depth: Gauge,
    /// `tagpipe_sink_batch_size{sink}`.
    pub batch_size: Histogram,
    /// `tagpipe_sink_request_duration_seconds{sink}`.
    pub duration: Histogram,
}

impl SinkInstruments {
    /// Registers the instruments of `sink`, whose queue holds `capacity` events.
    pub fn new(sink: &ComponentId, capacity: usize) -> Self {
        let label = sink.to_string();
        gauge!("tagpipe_queue_capacity", "sink" => label.clone()).set(capacity as f64);
        Self {
            sent: counter!("tagpipe_events_sent_total", "sink" => label.clone()),
            depth: gauge!("tagpipe_queue_depth", "sink" => label.clone()),
            batch_size: histogram!("tagpipe_sink_batch_size", "sink" => label.clone()),
            duration: histogram!("tagpipe_sink_request_duration_seconds", "sink" => label),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};

    use super::*;

    /// The kind as it was computed before it could be borrowed: split, joined, lowercased.
    fn joined(reason: &str) -> String {
        let head = reason.split(':').next().unwrap_or(reason);
        head.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase()
    }

    #[test]
    fn a_reason_kind_is_borrowed_when_already_in_its_form() {
        for (reason, kind, borrowed) in [
            ("consent: ad_storage not granted", "consent", true),
            (
                "queue full: event dropped (when_full: drop_newest)",
                "queue full",
                true,
            ),
            ("rejected by the destination: 400", "rejected by the", true),
            ("gave up after 5 attempts", "gave up after", true),
            ("  padded  words: x", "padded words", false),
            ("Rejected: 400", "rejected", false),
            ("tab\tseparated: x", "tab separated", false),
            ("", "", true),
            (":", "", true),
            ("émigré café: accents stay", "émigré café", true),
            (" consent : padded before and after", "consent", true),
            (
                "queue Full: a later word in upper case",
                "queue full",
                false,
            ),
            ("wide\u{3000}space: not a plain space", "wide space", false),
            (
                "one two three four: only three words",
                "one two three",
                true,
            ),
            ("ÉMIGRÉ: only ASCII is lowercased", "ÉmigrÉ", false),
        ] {
            let got = reason_kind(Some(reason));
            assert_eq!(got, kind, "{reason:?}");
            assert_eq!(got, joined(reason).as_str(), "{reason:?}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{reason:?}");
        }
        assert_eq!(reason_kind(None), "unknown");
    }

    /// Held by the tests that fill or rely on [`OUTCOME_COUNTERS`] (one list per process).
    static LIST: Mutex<()> = Mutex::new(());

    /// A recorder that counts registrations and hands out shared atomic counters by key.
    #[derive(Default)]
    struct CountingRecorder {
        registered: Mutex<Vec<Key>>,
        counters: Mutex<Vec<(Key, Arc<AtomicU64>)>>,
    }

    impl CountingRecorder {
        fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
            let counters = self.counters.lock().unwrap();
            counters
                .iter()
                .find(|(key, _)| {
                    key.name() == name
                        && labels
                            .iter()
                            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
                })
                .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
        }
    }

    impl Recorder for CountingRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.registered.lock().unwrap().push(key.clone());
            let mut counters = self.counters.lock().unwrap();
            let counter = if let Some((_, c)) = counters.iter().find(|(k, _)| k == key) {
                c.clone()
            } else {
                let c = Arc::new(AtomicU64::new(0));
                counters.push((key.clone(), c.clone()));
                c
            };
            Counter::from_arc(counter)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Each sink, outcome and reason kind is registered once and counted every time; sinks and
    /// kinds keep their own series.
    #[test]
    fn outcomes_are_counted_through_handles_registered_once() {
        let _list = LIST.lock().unwrap_or_else(PoisonError::into_inner);
        let recorder = CountingRecorder::default();
        let a = ComponentId::parse("console/telemetry-test-a").unwrap();
        let b = ComponentId::parse("console/telemetry-test-b").unwrap();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                outcome(
                    &a,
                    &DestinationOutcome::skipped("consent: ad_storage not granted"),
                );
                outcome(
                    &a,
                    &DestinationOutcome::skipped("Consent: analytics_storage"),
                );
            }
            outcome(&a, &DestinationOutcome::skipped("filter: event_name"));
            outcome(
                &a,
                &DestinationOutcome::failed("consent: a failure of that kind"),
            );
            outcome(
                &b,
                &DestinationOutcome::skipped("consent: ad_storage not granted"),
            );
            outcome(&b, &DestinationOutcome::sent());
            outcome(&b, &DestinationOutcome::sent());
        });
        let a_label = ("sink", "console/telemetry-test-a");
        let b_label = ("sink", "console/telemetry-test-b");
        let skipped = "tagpipe_events_skipped_total";
        assert_eq!(
            recorder.value(skipped, &[a_label, ("reason", "consent")]),
            6
        );
        assert_eq!(recorder.value(skipped, &[a_label, ("reason", "filter")]), 1);
        assert_eq!(
            recorder.value(
                "tagpipe_events_failed_total",
                &[a_label, ("reason", "consent")]
            ),
            1
        );
        assert_eq!(
            recorder.value(skipped, &[b_label, ("reason", "consent")]),
            1
        );
        assert_eq!(recorder.value("tagpipe_events_sent_total", &[b_label]), 2);
        // One registration per series: a, consent / filter skipped, consent failed; b, consent
        // skipped, sent (eleven outcomes: registered per event, eleven registrations).
        assert_eq!(recorder.registered.lock().unwrap().len(), 5);
    }

    /// Past the list's bound, series are still counted (registered per event); the list stops
    /// growing at the bound.
    #[test]
    fn series_past_the_bound_are_counted_without_growing_the_list() {
        const SINK: &str = "console/telemetry-test-bound";
        /// Removes this test's series however it ends: the other tests need room in the list.
        struct Cleanup;
        impl Drop for Cleanup {
            fn drop(&mut self) {
                OUTCOME_COUNTERS
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|c| c.sink != SINK);
            }
        }
        let _list = LIST.lock().unwrap_or_else(PoisonError::into_inner);
        let _cleanup = Cleanup;
        let recorder = CountingRecorder::default();
        let sink = ComponentId::parse(SINK).unwrap();
        let kinds = MAX_CACHED_OUTCOME_COUNTERS + 20;
        metrics::with_local_recorder(&recorder, || {
            for round in 0..2 {
                for kind in 0..kinds {
                    outcome(
                        &sink,
                        &DestinationOutcome::failed(format!("kind{kind}: {round}")),
                    );
                }
            }
        });
        for kind in [0, MAX_CACHED_OUTCOME_COUNTERS - 1, kinds - 1] {
            let label = format!("kind{kind}");
            let labels = [("sink", SINK), ("reason", &*label)];
            assert_eq!(
                recorder.value("tagpipe_events_failed_total", &labels),
                2,
                "{label}"
            );
        }
        let cached = OUTCOME_COUNTERS
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|c| c.sink == SINK)
            .count();
        assert_eq!(
            OUTCOME_COUNTERS
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            MAX_CACHED_OUTCOME_COUNTERS,
            "filled to the bound, no further"
        );
        // Each cached series was registered once, each other one at both of its events.
        assert!(cached > 0);
        assert_eq!(
            recorder.registered.lock().unwrap().len(),
            cached + 2 * (kinds - cached)
        );
    }
}
