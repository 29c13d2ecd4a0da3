//! The source's per-request metrics (`tagpipe_http_requests_total`,
//! `tagpipe_http_request_duration_seconds`, `tagpipe_events_received_total`): a slot per
//! endpoint label made when the source is built, each handle made on its first use (a series
//! appears once it counts something) and then only added to.
//!
//! The duration is a [`FixedHistogram`] (two atomic additions per request, nothing kept per
//! sample). Statuses are looked up in a small cache per endpoint, since which ones occur is
//! known only at run time; label sets stay bounded (endpoint × status).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use http::StatusCode;
use metrics::Counter;
use tagpipe_core::ComponentId;
use tagpipe_core::fixed_histogram::FixedHistogram;

/// Every `endpoint` label a request can have.
pub(crate) const ENDPOINT_LABELS: [&str; 6] =
    ["events", "ga4", "data", "health", "metrics", "other"];

/// The metric handles of one HTTP source.
pub(crate) struct RequestMetrics {
    source: String,
    endpoints: [EndpointMetrics; ENDPOINT_LABELS.len()],
}

/// The handles of one endpoint label, each made on first use.
struct EndpointMetrics {
    label: &'static str,
    duration: OnceLock<Arc<FixedHistogram>>,
    received: OnceLock<Counter>,
    requests: RwLock<HashMap<StatusCode, Counter>>,
}

impl RequestMetrics {
    pub(crate) fn new(source: &ComponentId) -> Self {
        let endpoints = ENDPOINT_LABELS.map(|label| EndpointMetrics {
            label,
            duration: OnceLock::new(),
            received: OnceLock::new(),
            requests: RwLock::default(),
        });
        Self {
            source: source.to_string(),
            endpoints,
        }
    }

    fn endpoint(&self, label: &'static str) -> &EndpointMetrics {
        // Labels come from `ENDPOINT_LABELS`; anything else counts as `other`.
        self.endpoints
            .iter()
            .find(|e| e.label == label)
            .unwrap_or(&self.endpoints[ENDPOINT_LABELS.len() - 1])
    }

    /// One answered request: its duration and its status.
    pub(crate) fn request(&self, endpoint: &'static str, status: StatusCode, took: Duration) {
        let metrics = self.endpoint(endpoint);
        metrics
            .duration
            .get_or_init(|| {
                FixedHistogram::register(
                    "tagpipe_http_request_duration_seconds",
                    "Time from a request's arrival to its answer.",
                    &[("source", &self.source), ("endpoint", metrics.label)],
                )
            })
            .record(took);
        // A panic elsewhere while holding the lock leaves only complete handles: keep going.
        if let Some(counter) = metrics
            .requests
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&status)
        {
            counter.increment(1);
            return;
        }
        metrics
            .requests
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(status)
            .or_insert_with(|| {
                metrics::counter!("tagpipe_http_requests_total", "source" => self.source.clone(),
                    "endpoint" => metrics.label, "status" => status.as_str().to_owned())
            })
            .increment(1);
    }

    /// Events accepted from one request.
    pub(crate) fn received(&self, endpoint: &'static str, events: u64) {
        let metrics = self.endpoint(endpoint);
        metrics
            .received
            .get_or_init(|| {
                metrics::counter!("tagpipe_events_received_total",
                    "source" => self.source.clone(), "endpoint" => metrics.label)
            })
            .increment(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_label_has_its_own_handles_and_unknown_ones_count_as_other() {
        let metrics =
            RequestMetrics::new(&ComponentId::parse("http/request-metrics-test").unwrap());
        for label in ENDPOINT_LABELS {
            assert_eq!(metrics.endpoint(label).label, label);
        }
        assert_eq!(metrics.endpoint("nonsense").label, "other");
        metrics.request("ga4", StatusCode::NO_CONTENT, Duration::from_millis(1));
        metrics.request("ga4", StatusCode::NO_CONTENT, Duration::from_millis(1));
        metrics.request("ga4", StatusCode::BAD_REQUEST, Duration::from_millis(1));
        assert_eq!(metrics.endpoint("ga4").requests.read().unwrap().len(), 2);
        // Series appear on first use only.
        assert!(metrics.endpoint("ga4").duration.get().is_some());
        assert!(metrics.endpoint("events").duration.get().is_none());
        assert!(metrics.endpoint("events").received.get().is_none());
    }
}
