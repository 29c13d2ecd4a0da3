//! The `http` source configuration.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tagpipe_core::{Secret, ValidationError};

use crate::client_ip::IpRange;

/// `http` source settings. Every endpoint can be switched off or moved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Address to listen on. Default: `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `POST /v1/events`: sGTM event data from servers, taken verbatim.
    #[serde(default)]
    pub events: EventsEndpoint,
    /// `GET|POST /g/collect`: GA4 gtag.js hits.
    #[serde(default)]
    pub ga4: Ga4Endpoint,
    /// `GET|POST /data`: Stape Data-Client JSON.
    #[serde(default)]
    pub data: DataEndpoint,
    /// Largest request body in bytes, before and after gzip decompression (413 above).
    /// Default: 1048576 (1 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most events one request may carry (413 above). Default: 1000.
    #[serde(default = "default_max_events_per_request")]
    pub max_events_per_request: usize,
    /// How long a client may take to send its headers, and then its body (408 after).
    /// Default: `10s`.
    #[serde(
        default = "default_read_timeout",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub read_timeout: Duration,
    /// Proxies (addresses or CIDR ranges, e.g. `10.0.0.0/8`, `::1`) whose `X-Forwarded-For` /
    /// `Forwarded` headers are believed. From anyone else these headers are ignored.
    /// Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<IpRange>,
    /// Debug answers for requests with `x-tagpipe-debug: 1`.
    #[serde(default)]
    pub debug: DebugSettings,
    /// Per-client-address rate limit on the browser endpoints (`/g/collect`, `/data`): over it,
    /// `429` with `Retry-After`. Unset (default): no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Serve tagpipe's Prometheus metrics at `metrics_path` on this listener. Default: `true`.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Where the metrics are served. Default: `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// When a destination asks sources to answer only after delivery (the Spotify sink with
    /// `optimistic: false`), the longest the answer waits. Default: `15s`.
    #[serde(
        default = "default_wait_timeout",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub wait_timeout: Duration,
}

/// A token bucket per client address.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second per client address (at least 1).
    pub per_second: u32,
    /// Requests a client may make at once before the rate applies. Default: `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// `POST /v1/events` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsEndpoint {
    /// Serve this endpoint. Default: `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Its path. Default: `/v1/events`.
    #[serde(default = "default_events_path")]
    pub path: String,
    /// Bearer keys accepted in `Authorization: Bearer <key>`. Empty (default): no
    /// authentication. Use `${env:…}` or `${file:…}`; keys never appear in logs.
    #[serde(default)]
    pub auth_keys: Vec<Secret>,
}

/// `GET|POST /g/collect` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Endpoint {
    /// Serve this endpoint. Default: `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Its path. Default: `/g/collect`.
    #[serde(default = "default_ga4_path")]
    pub path: String,
    /// Origins allowed by CORS (e.g. `https://www.example.com`). Empty (default): the request's
    /// `Origin` is echoed, as sGTM does. Other origins get no CORS headers.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// `GET|POST /data` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataEndpoint {
    /// Serve this endpoint. Default: `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Its path. Default: `/data`.
    #[serde(default = "default_data_path")]
    pub path: String,
    /// Accept a JSON array of events in one request. Default: `true`.
    #[serde(default = "yes")]
    pub accept_arrays: bool,
    /// Origins allowed by CORS; empty (default) echoes the request's `Origin`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Lifetime of the `_dcid` cookie set for new clients, in days. Default: 395.
    #[serde(default = "default_dcid_days")]
    pub client_id_cookie_days: u64,
}

/// Debug answers (the sGTM preview, for machines).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugSettings {
    /// Honour `x-tagpipe-debug: 1`. Default: `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Longest wait for every destination's outcome. Default: `30s`.
    #[serde(
        default = "default_debug_timeout",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_events_per_request() -> usize {
    1000
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_wait_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_debug_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_events_path() -> String {
    "/v1/events".into()
}
fn default_ga4_path() -> String {
    "/g/collect".into()
}
fn default_data_path() -> String {
    "/data".into()
}
fn default_dcid_days() -> u64 {
    395
}

impl Default for EventsEndpoint {
    fn default() -> Self {
        Self {
            enabled: true,
            path: default_events_path(),
            auth_keys: Vec::new(),
        }
    }
}

impl Default for Ga4Endpoint {
    fn default() -> Self {
        Self {
            enabled: true,
            path: default_ga4_path(),
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for DataEndpoint {
    fn default() -> Self {
        Self {
            enabled: true,
            path: default_data_path(),
            accept_arrays: true,
            allowed_origins: Vec::new(),
            client_id_cookie_days: default_dcid_days(),
        }
    }
}

impl Default for DebugSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: default_debug_timeout(),
        }
    }
}

impl HttpSourceConfig {
    /// The endpoints that are switched on: `(field, path)`.
    pub(crate) fn enabled_paths(&self) -> Vec<(&'static str, &str)> {
        let mut paths = Vec::new();
        if self.events.enabled {
            paths.push(("events.path", self.events.path.as_str()));
        }
        if self.ga4.enabled {
            paths.push(("ga4.path", self.ga4.path.as_str()));
        }
        if self.data.enabled {
            paths.push(("data.path", self.data.path.as_str()));
        }
        if self.metrics {
            paths.push(("metrics_path", self.metrics_path.as_str()));
        }
        paths
    }

    /// Pure checks.
    pub(crate) fn problems(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        let paths = self.enabled_paths();
        for (i, (field, path)) in paths.iter().enumerate() {
            if !path.starts_with('/') || path.contains(['?', '#', '*', '{', '}']) {
                problems.push(ValidationError::new(
                    *field,
                    format!("`{path}` must be an absolute path like `/v1/events`"),
                ));
            }
            if ["/healthz", "/readyz"].contains(path) {
                problems.push(ValidationError::new(
                    *field,
                    format!("`{path}` is reserved"),
                ));
            }
            if paths[..i].iter().any(|(_, p)| p == path) {
                problems.push(ValidationError::new(
                    *field,
                    format!("`{path}` is used by another endpoint"),
                ));
            }
        }
        if self.max_body_bytes == 0 {
            problems.push(ValidationError::new("max_body_bytes", "must be at least 1"));
        }
        if self.max_events_per_request == 0 {
            problems.push(ValidationError::new(
                "max_events_per_request",
                "must be at least 1",
            ));
        }
        if let Some(limit) = self.rate_limit
            && (limit.per_second == 0 || limit.burst == Some(0))
        {
            problems.push(ValidationError::new(
                "rate_limit",
                "per_second and burst must be at least 1",
            ));
        }
        if self.read_timeout.is_zero() {
            problems.push(ValidationError::new("read_timeout", "must be more than 0"));
        }
        for (field, origins) in [
            ("ga4.allowed_origins", &self.ga4.allowed_origins),
            ("data.allowed_origins", &self.data.allowed_origins),
        ] {
            for (i, origin) in origins.iter().enumerate() {
                if !(origin.starts_with("https://") || origin.starts_with("http://"))
                    || origin.ends_with('/')
                {
                    problems.push(ValidationError::new(
                        format!("{field}.{i}"),
                        format!("`{origin}` is not an origin like `https://www.example.com`"),
                    ));
                }
            }
        }
        for (i, key) in self.events.auth_keys.iter().enumerate() {
            if key.is_empty() {
                problems.push(ValidationError::new(
                    format!("events.auth_keys.{i}"),
                    "must not be empty",
                ));
            }
        }
        problems
    }
}
