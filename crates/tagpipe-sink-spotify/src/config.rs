//! The `spotify` sink configuration. Every setting of Stape's Spotify tag has a place here or in
//! a processor (see the README's migration table).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tagpipe_core::batch::BatchConfig;
use tagpipe_core::retry::RetryConfig;
use tagpipe_core::{Secret, ValidationError};

/// The CAPI endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://capi.spotify.com/capi-direct/events/";

/// `spotify` sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotifySinkConfig {
    /// The CAPI token, sent as `Authorization: Bearer …` (required; a secret: use
    /// `${env:…}` or `${file:…}`; never logged).
    pub auth_token: Secret,
    /// The `capi_connection_id` (required).
    pub connection_id: String,
    /// Where to POST. Default: `https://capi.spotify.com/capi-direct/events/`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `action_source`: `WEB`, `APP` or `OFFLINE`. Unset: not sent.
    #[serde(default)]
    pub action_source: Option<ActionSource>,
    /// Send `opt_out_targeting: true` (attribution only). Default: `false`.
    #[serde(default)]
    pub opt_out_targeting: bool,
    /// Overrides of the event's own data (the tag's "server event data" rows).
    #[serde(default)]
    pub server_event_data: ServerEventData,
    /// Merged into `event_details` after `amount` ← `value` and `currency` (the tag's event
    /// details object and rows): `amount`, `currency`, `content_name`, `content_category`.
    /// A numeric `amount` is sent as a number.
    #[serde(default)]
    pub event_details: Map<String, Value>,
    /// Merged into `user_data` after what is read from the event (the tag's user data object and
    /// rows): `ip_address`, `device_id`, `hashed_emails`, `hashed_phone_number`. Emails and phone
    /// numbers are normalised and hashed unless already hashed.
    #[serde(default)]
    pub user_data: Map<String, Value>,
    /// The event field holding the device id set by the `spotify_device_id` processor.
    /// Default: `x-spotify-device_id`.
    #[serde(default = "default_device_id_field")]
    pub device_id_field: String,
    /// Derive a stable `event_id` (from client id, name, time, page, …) when the event has
    /// none, so retries and replays deduplicate at Spotify. Default: `true`.
    #[serde(default = "yes")]
    pub derive_event_id: bool,
    /// `false` (default, as the tag): the HTTP answer to the client waits for Spotify's answer
    /// (bounded by the source's `wait_timeout`). `true`: it returns once the event is queued.
    #[serde(default)]
    pub optimistic: bool,
    /// Build, log and report the payloads, but send nothing (outcome `skipped`, reason
    /// `dry_run`, with the payload as `request`). Default: `false`.
    #[serde(default)]
    pub dry_run: bool,
    /// Batching: default `max_events: 100`, `timeout: 50ms`, `max_bytes: 1048576` (a bigger
    /// batch is sent as several requests).
    #[serde(default)]
    pub batch: BatchConfig,
    /// Requests in flight at once. Default: 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of one HTTP request. Default: `10s`.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub request_timeout: Duration,
    /// Retries on 429, 5xx, timeouts and connection errors.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Console logging of requests and responses: `no`, `debug` (only for requests in debug
    /// mode, default) or `always`.
    #[serde(default)]
    pub log_type: LogType,
    /// The name in log records (`tag_name`). Default: the sink's ID.
    #[serde(default)]
    pub tag_name: Option<String>,
}

impl SpotifySinkConfig {
    /// Whether `other` builds the same CAPI event as this sink from every event: the settings
    /// that go into it are equal (those of delivery — token, connection, endpoint, batching,
    /// retries, logging — may differ).
    pub(crate) fn same_events_as(&self, other: &Self) -> bool {
        // Destructured, so that a new setting cannot be left out of the comparison unseen.
        let Self {
            auth_token: _,
            connection_id: _,
            endpoint: _,
            action_source,
            opt_out_targeting,
            server_event_data,
            event_details,
            user_data,
            device_id_field,
            derive_event_id,
            optimistic: _,
            dry_run: _,
            batch: _,
            concurrency: _,
            request_timeout: _,
            retry: _,
            log_type: _,
            tag_name: _,
        } = self;
        *action_source == other.action_source
            && *opt_out_targeting == other.opt_out_targeting
            && *server_event_data == other.server_event_data
            && *event_details == other.event_details
            && *user_data == other.user_data
            && *device_id_field == other.device_id_field
            && *derive_event_id == other.derive_event_id
    }
}

/// The tag's "server event data" overrides.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEventData {
    /// Replaces the event's `event_id`.
    #[serde(default)]
    pub event_id: Option<String>,
    /// Replaces the event's time (seconds or milliseconds, or an ISO string).
    #[serde(default)]
    pub event_time: Option<Value>,
    /// Replaces `page_location` as `event_source_url`.
    #[serde(default)]
    pub event_source_url: Option<String>,
}

/// `action_source` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ActionSource {
    /// A website.
    #[serde(rename = "WEB")]
    Web,
    /// An app.
    #[serde(rename = "APP")]
    App,
    /// Offline (store, call centre).
    #[serde(rename = "OFFLINE")]
    Offline,
}

impl ActionSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ActionSource::Web => "WEB",
            ActionSource::App => "APP",
            ActionSource::Offline => "OFFLINE",
        }
    }
}

/// Console logging of deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogType {
    /// Never.
    No,
    /// Only for requests in debug mode (`x-tagpipe-debug: 1`).
    #[default]
    Debug,
    /// Always.
    Always,
}

fn yes() -> bool {
    true
}
fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}
fn default_device_id_field() -> String {
    "x-spotify-device_id".to_owned()
}
fn default_concurrency() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
impl SpotifySinkConfig {
    /// The request size limit (`batch.max_bytes`).
    pub(crate) fn max_request_bytes(&self) -> usize {
        self.batch.max_bytes.unwrap_or(1024 * 1024)
    }

    pub(crate) fn problems(&self) -> Vec<ValidationError> {
        let mut p = Vec::new();
        if self.auth_token.is_empty() {
            p.push(ValidationError::new("auth_token", "must not be empty"));
        }
        if self.connection_id.trim().is_empty() {
            p.push(ValidationError::new("connection_id", "must not be empty"));
        }
        if !(self.endpoint.starts_with("https://") || self.endpoint.starts_with("http://")) {
            p.push(ValidationError::new(
                "endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        for key in self.event_details.keys() {
            if !["amount", "currency", "content_name", "content_category"].contains(&key.as_str()) {
                p.push(ValidationError::new(
                    format!("event_details.{key}"),
                    "unknown: use amount, currency, content_name or content_category",
                ));
            }
        }
        for key in self.user_data.keys() {
            if ![
                "ip_address",
                "device_id",
                "hashed_emails",
                "hashed_phone_number",
            ]
            .contains(&key.as_str())
            {
                p.push(ValidationError::new(
                    format!("user_data.{key}"),
                    "unknown: use ip_address, device_id, hashed_emails or hashed_phone_number",
                ));
            }
        }
        if self.batch.max_bytes.is_some_and(|b| b < 1024) {
            p.push(ValidationError::new(
                "batch.max_bytes",
                "must be at least 1024",
            ));
        }
        if self.concurrency == 0 {
            p.push(ValidationError::new("concurrency", "must be at least 1"));
        }
        if self.retry.initial_interval.is_zero()
            || self.retry.initial_interval > self.retry.max_interval
        {
            p.push(ValidationError::new(
                "retry.initial_interval",
                "must be more than 0 and at most retry.max_interval",
            ));
        }
        p
    }
}
