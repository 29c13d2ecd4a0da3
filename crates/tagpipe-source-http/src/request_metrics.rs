//! The source's per-request metrics (`tagpipe_http_requests_total`,
//! `tagpipe_http_request_duration_seconds`, `tagpipe_events_received_total`): a slot per
//! endpoint label made when the source is built, each handle made on its first use (a series
//! appears once it counts something) and then only added to.
//!
//! The duration is a [`FixedHistogram`] (two atomic additions per request, nothing kept per
//! sample) and the counters are [`StripedCounter`]s: each serving thread adds to cells of its
//! own, so no cache line moves between the cores at every request. The statuses tagpipe
//! answers with have a slot each per endpoint (reading a set handle is a plain load: no lock
//! whose count both cores write at every request); any other status is looked up in a small
//! map per endpoint. Label sets stay bounded (endpoint × status).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use http::StatusCode;
use tagpipe_core::ComponentId;
use tagpipe_core::fixed_histogram::FixedHistogram;
use tagpipe_core::striped::StripedCounter;

use crate::server::Endpoint;

/// A request's `endpoint` label: an ingestion endpoint, health, metrics or anything else
/// (bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointLabel {
    Events,
    Ga4,
    Data,
    Health,
    Metrics,
    Other,
}

impl EndpointLabel {
    /// Every label, in the order of their slots.
    const ALL: [Self; 6] = [
        Self::Events,
        Self::Ga4,
        Self::Data,
        Self::Health,
        Self::Metrics,
        Self::Other,
    ];

    /// The label's text.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Ga4 => "ga4",
            Self::Data => "data",
            Self::Health => "health",
            Self::Metrics => "metrics",
            Self::Other => "other",
        }
    }
}

impl From<Endpoint> for EndpointLabel {
    fn from(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Events => Self::Events,
            Endpoint::Ga4 => Self::Ga4,
            Endpoint::Data => Self::Data,
        }
    }
}

/// The metric handles of one HTTP source.
pub(crate) struct RequestMetrics {
    source: ComponentId,
    /// One slot per label, indexed by the label.
    endpoints: [EndpointMetrics; EndpointLabel::ALL.len()],
}

/// The handles of one endpoint label, each made on first use.
struct EndpointMetrics {
    label: EndpointLabel,
    duration: OnceLock<Arc<FixedHistogram>>,
    received: OnceLock<Arc<StripedCounter>>,
    /// `tagpipe_http_requests_total` of each status in [`COMMON_STATUSES`], by position.
    common: [OnceLock<Arc<StripedCounter>>; COMMON_STATUSES.len()],
    /// `tagpipe_http_requests_total` of any other status.
    requests: RwLock<HashMap<StatusCode, Arc<StripedCounter>>>,
}

/// The statuses tagpipe's HTTP source answers with.
const COMMON_STATUSES: [StatusCode; 13] = [
    StatusCode::OK,
    StatusCode::NO_CONTENT,
    StatusCode::BAD_REQUEST,
    StatusCode::UNAUTHORIZED,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
];

impl RequestMetrics {
    pub(crate) fn new(source: &ComponentId) -> Self {
        let endpoints = EndpointLabel::ALL.map(|label| EndpointMetrics {
            label,
            duration: OnceLock::new(),
            received: OnceLock::new(),
            common: Default::default(),
            requests: RwLock::default(),
        });
        Self {
            source: source.clone(),
            endpoints,
        }
    }

    fn endpoint(&self, label: EndpointLabel) -> &EndpointMetrics {
        &self.endpoints[label as usize]
    }

    /// One answered request: its duration and its status.
    pub(crate) fn request(&self, endpoint: EndpointLabel, status: StatusCode, took: Duration) {
        let metrics = self.endpoint(endpoint);
        metrics
            .duration
            .get_or_init(|| {
                FixedHistogram::register(
                    "tagpipe_http_request_duration_seconds",
                    "Time from a request's arrival to its answer.",
                    &[
                        ("source", self.source.as_str()),
                        ("endpoint", metrics.label.as_str()),
                    ],
                )
            })
            .record(took);
        let counter = || {
            StripedCounter::register(
                "tagpipe_http_requests_total",
                "HTTP requests answered, by status.",
                &[
                    ("source", self.source.as_str()),
                    ("endpoint", metrics.label.as_str()),
                    ("status", status.as_str()),
                ],
            )
        };
        if let Some(slot) = COMMON_STATUSES.iter().position(|&s| s == status) {
            metrics.common[slot].get_or_init(counter).increment(1);
            return;
        }
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
            .or_insert_with(counter)
            .increment(1);
    }

    /// Events accepted from one request.
    pub(crate) fn received(&self, endpoint: EndpointLabel, events: u64) {
        let metrics = self.endpoint(endpoint);
        metrics
            .received
            .get_or_init(|| tagpipe_core::telemetry::received(&self.source, metrics.label.as_str()))
            .increment(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_label_has_its_own_slot_and_series_appear_on_first_use() {
        let metrics =
            RequestMetrics::new(&ComponentId::parse("http/request-metrics-test").unwrap());
        for label in EndpointLabel::ALL {
            assert_eq!(metrics.endpoint(label).label, label);
        }
        assert_eq!(EndpointLabel::from(Endpoint::Ga4).as_str(), "ga4");
        let ga4 = EndpointLabel::Ga4;
        metrics.request(ga4, StatusCode::NO_CONTENT, Duration::from_millis(1));
        metrics.request(ga4, StatusCode::NO_CONTENT, Duration::from_millis(1));
        metrics.request(ga4, StatusCode::BAD_REQUEST, Duration::from_millis(1));
        metrics.request(ga4, StatusCode::IM_A_TEAPOT, Duration::from_millis(1));
        let slots = &metrics.endpoint(ga4).common;
        assert_eq!(slots.iter().filter(|s| s.get().is_some()).count(), 2);
        // A status outside the common ones has its handle in the map.
        assert_eq!(metrics.endpoint(ga4).requests.read().unwrap().len(), 1);
        assert!(metrics.endpoint(ga4).duration.get().is_some());
        let events = metrics.endpoint(EndpointLabel::Events);
        assert!(events.duration.get().is_none());
        assert!(events.received.get().is_none());
    }
}
