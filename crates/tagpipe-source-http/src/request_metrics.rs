//! The source's per-request metrics (`tagpipe_http_requests_total`,
//! `tagpipe_http_request_duration_seconds`, `tagpipe_events_received_total`) with their handles
//! looked up once per label set rather than in the recorder's registry on every request.
//!
//! Label sets are bounded (endpoint × status), so the cache stays small; a series appears on
//! its first use, as before.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::Duration;

use http::StatusCode;
use metrics::{Counter, Histogram};
use tagpipe_core::ComponentId;

/// The metric handles of one HTTP source.
pub(crate) struct RequestMetrics {
    source: String,
    requests: RwLock<HashMap<(&'static str, StatusCode), Counter>>,
    durations: RwLock<HashMap<&'static str, Histogram>>,
    received: RwLock<HashMap<&'static str, Counter>>,
}

impl RequestMetrics {
    pub(crate) fn new(source: &ComponentId) -> Self {
        Self {
            source: source.to_string(),
            requests: RwLock::default(),
            durations: RwLock::default(),
            received: RwLock::default(),
        }
    }

    /// One answered request: its duration and its status.
    pub(crate) fn request(&self, endpoint: &'static str, status: StatusCode, took: Duration) {
        with_handle(
            &self.durations,
            endpoint,
            || {
                metrics::histogram!("tagpipe_http_request_duration_seconds",
                    "source" => self.source.clone(), "endpoint" => endpoint)
            },
            |h| h.record(took.as_secs_f64()),
        );
        with_handle(
            &self.requests,
            (endpoint, status),
            || {
                metrics::counter!("tagpipe_http_requests_total", "source" => self.source.clone(),
                    "endpoint" => endpoint, "status" => status.as_str().to_owned())
            },
            |c| c.increment(1),
        );
    }

    /// Events accepted from one request.
    pub(crate) fn received(&self, endpoint: &'static str, events: u64) {
        with_handle(
            &self.received,
            endpoint,
            || {
                metrics::counter!("tagpipe_events_received_total",
                    "source" => self.source.clone(), "endpoint" => endpoint)
            },
            |c| c.increment(events),
        );
    }
}

/// Runs `use_it` on the cached handle for `key`, registering it with `make` on first use.
fn with_handle<K: Eq + Hash, H>(
    cache: &RwLock<HashMap<K, H>>,
    key: K,
    make: impl FnOnce() -> H,
    use_it: impl FnOnce(&H),
) {
    // A panic elsewhere while holding the lock leaves only complete handles: keep going.
    if let Some(handle) = cache
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        use_it(handle);
        return;
    }
    let mut cache = cache
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    use_it(cache.entry(key).or_insert_with(make));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_made_once_per_label_set() {
        let cache: RwLock<HashMap<&str, u32>> = RwLock::default();
        let mut made = 0;
        let mut seen = Vec::new();
        for key in ["ga4", "ga4", "events", "ga4"] {
            with_handle(
                &cache,
                key,
                || {
                    made += 1;
                    made
                },
                |h| seen.push(*h),
            );
        }
        assert_eq!(made, 2);
        assert_eq!(seen, [1, 1, 2, 1]);
    }
}
