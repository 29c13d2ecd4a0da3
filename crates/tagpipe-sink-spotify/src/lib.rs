//! # tagpipe-sink-spotify
//!
//! The `spotify` sink sends events to the Spotify Conversions API, building each event exactly
//! as Stape's Spotify tag does (field precedence, time rules, email/phone extraction,
//! normalisation and hashing, the `gtm-msr.appspot.com` skip, the required-field check) — minus
//! the tag's defects: email-only events are sent, times are correct RFC 3339 at midnight, a
//! numeric `amount` is a number, and an `event_id` is derived when the event has none. Then it
//! does what the tag cannot: batches, retries with backoff (honouring `Retry-After`), splits a
//! batch the API finds too large, isolates a bad event, and reports every event's outcome.
//!
//! Each event becomes its CAPI JSON as it enters the sink's memory queue, on the thread that
//! accepted it ([`tagpipe_core::Prepare`]): the queue holds each event's JSON, and batches are
//! assembled from it without touching the events again. A thread writes a sink's events' JSON
//! one after another into shared 64 KiB chunks of that sink (one allocation per a few hundred
//! GA4 hits); a chunk is freed when the last of its events has been delivered. Each queued event
//! is a [`tagpipe_core::Encoded`] event — its slice of a chunk, where its name is in it, its
//! trace id — held in the queue's slot with no box of its own (an event whose name needed
//! escaping, so is not in its JSON as it is, is boxed with a copy of its name). With a disk
//! buffer or a dead-letter sink the queue holds the events, and each is built just before it is
//! sent.
//!
//! ```yaml
//! sinks:
//!   spotify:
//!     auth_token: ${env:SPOTIFY_CAPI_TOKEN}
//!     connection_id: 4f1c…
//!     action_source: WEB
//! processors:
//!   spotify_device_id:            # the tag's device-id cookie, at request time
//!     cookie_domain: auto
//! ```
//!
//! The crate also registers the `spotify_device_id` processor ([`device_id`]) and provides the
//! `tagpipe import stape-spotify` conversion ([`import`]).

mod config;
pub mod device_id;
pub mod import;
mod logs;
pub mod payload;
mod service;
pub mod time;

use std::sync::Arc;

use tagpipe_core::batch::BatchSettings;
use tagpipe_core::component::{PreparedSink, SinkParts};
use tagpipe_core::driver::service_with;
use tagpipe_core::{BoxError, BoxFuture, SinkComponent, SinkConfig, SinkContext, ValidationError};
use thread_local::ThreadLocal;

pub use config::{ActionSource, DEFAULT_ENDPOINT, LogType, ServerEventData, SpotifySinkConfig};
pub use device_id::SpotifyDeviceIdConfig;

/// The environment variable that fixes "now" for events without a time (tests and replays of
/// recorded traffic): milliseconds since the Unix epoch.
pub const CLOCK_ENV: &str = "TAGPIPE_CLOCK_MS";

const DEFAULT_BATCH: BatchSettings = BatchSettings {
    max_events: 100,
    timeout: std::time::Duration::from_millis(50),
};

impl SinkConfig for SpotifySinkConfig {
    fn validate(&self) -> Vec<ValidationError> {
        self.problems()
    }

    /// The CAPI has no health endpoint: check that its host resolves and accepts a TCP
    /// connection (nothing is sent), within the request timeout. Skipped in `dry_run`.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            if self.dry_run {
                return Ok(());
            }
            let (host, port) = self
                .endpoint_address()
                .ok_or_else(|| format!("cannot read host and port from `{}`", self.endpoint))?;
            let connect = tokio::net::TcpStream::connect((host.as_str(), port));
            match tokio::time::timeout(self.request_timeout, connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}").into()),
                Err(_) => Err(format!(
                    "no connection to {host}:{port} within {:?}",
                    self.request_timeout
                )
                .into()),
            }
        })
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        Box::pin(async move {
            // ring as the TLS crypto provider (no C toolchain beyond what ring needs); installing
            // twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .tls_backend_rustls()
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .tcp_keepalive(std::time::Duration::from_secs(60))
                .connect_timeout(self.request_timeout)
                .user_agent(concat!("tagpipe/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
            let clock_ms = std::env::var(CLOCK_ENV).ok().and_then(|v| v.parse().ok());
            let shared = service::Shared {
                config: self.clone(),
                client,
                logger: logs::DeliveryLogger {
                    tag_name: self.tag_name.clone().unwrap_or_else(|| cx.id.to_string()),
                    log_type: self.log_type,
                    stream: cx.logs.clone(),
                },
                clock_ms,
                chunks: ThreadLocal::new(),
            };
            let shared = Arc::new(shared);
            // Each event becomes its CAPI JSON as it is queued (see `tagpipe_core::Prepare`):
            // the queue holds one buffer per event, and the event is freed where it was made.
            let prepared = PreparedSink {
                prepare: Arc::new(service::SpotifyPrepare(shared.clone())),
                service: service_with(shared, |shared, batch| async move {
                    shared.deliver_prepared(batch).await
                }),
            };
            Ok(SinkParts {
                service: prepared.into(),
                batch: self.batch.resolve(DEFAULT_BATCH),
                concurrency: self.concurrency,
                wait_for_delivery: !self.optimistic,
            })
        })
    }
}

impl SpotifySinkConfig {
    /// The endpoint's host and port.
    fn endpoint_address(&self) -> Option<(String, u16)> {
        let url = reqwest::Url::parse(&self.endpoint).ok()?;
        Some((
            url.host_str()?.trim_matches(['[', ']']).to_owned(),
            url.port_or_known_default()?,
        ))
    }
}

impl SinkComponent for SpotifySinkConfig {
    const TYPE: &'static str = "spotify";
}
