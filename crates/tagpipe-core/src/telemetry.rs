//! tagpipe's own metrics, Prometheus-style (`tagpipe_…_total`, `…_seconds`), recorded with the
//! `metrics` facade; the binary installs the Prometheus recorder and sources serve `/metrics`
//! through [`render`].
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
//! whose samples the binary drains every few seconds.
//!
//! Label values are component IDs, endpoint names, status codes and reason *kinds* (the text
//! before the first `:`), never free text or secrets, so cardinality stays bounded.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::ack::{DestinationOutcome, Outcome};
use crate::id::ComponentId;

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

/// A reason's kind, for a bounded label: the text before the first `:` (or the first three
/// words), lowercased.
pub fn reason_kind(reason: Option<&str>) -> String {
    let reason = reason.unwrap_or("unknown");
    let head = reason.split(':').next().unwrap_or(reason);
    head.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Counts one outcome at a sink.
pub fn outcome(sink: &ComponentId, outcome: &DestinationOutcome) {
    let sink = sink.to_string();
    match outcome.outcome {
        Outcome::Sent => counter!("tagpipe_events_sent_total", "sink" => sink).increment(1),
        Outcome::Skipped => counter!("tagpipe_events_skipped_total", "sink" => sink,
            "reason" => reason_kind(outcome.reason.as_deref()))
        .increment(1),
        Outcome::Failed => counter!("tagpipe_events_failed_total", "sink" => sink,
            "reason" => reason_kind(outcome.reason.as_deref()))
        .increment(1),
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
