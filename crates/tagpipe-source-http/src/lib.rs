//! # tagpipe-source-http
//!
//! The `http` source, tagpipe's front door. One listener serves:
//!
//! - `POST /v1/events` — sGTM event data from servers, taken verbatim: a JSON object, an array of
//!   objects, or NDJSON (`application/x-ndjson`). The `Cookie` header becomes the events'
//!   cookies, `trace-id` their trace id. Optional bearer-key authentication. Answer:
//!   `200 {"accepted": N}`.
//! - `GET|POST /g/collect` — GA4 gtag.js hits, mapped as the sGTM GA4 client does (see
//!   [`ga4`] for the parameter table). Answer: `204`, with CORS for the site's origin.
//! - `GET|POST /data` — the Stape Data-Client protocol. Answer: `{"timestamp",
//!   "unique_event_id"}` (an array for an array), or a 1×1 GIF for `GET`.
//! - `GET /healthz` (alive) and `GET /readyz` (serving; 503 while shutting down).
//! - `GET /metrics` (Prometheus text; see `metrics`/`metrics_path`). [`serve_metrics`] serves
//!   the same text on a listener of its own (`runtime.metrics_address`).
//!
//! A request with `x-tagpipe-debug: 1` waits for every destination's outcome and answers
//! `{"events": [{"destinations": {"<sink>": {"outcome", "reason", "request"}}}]}`.
//!
//! Bad input never panics and always gets a reason: 413 (body or event count over the limit,
//! also after gzip), 400 (malformed JSON, bad percent-encoding, invalid UTF-8, a non-object
//! event, a cut-short body), 415 (content type or encoding), 405, 404, 408 (slow client),
//! 401 (bearer key). Every answer carries the `Set-Cookie` headers processors and sinks asked for.

mod body;
mod client_ip;
mod config;
mod cors;
mod data_client;
mod error;
mod events;
#[cfg(test)]
mod fuzz;
pub mod ga4;
mod graceful;
mod header_timer;
mod ingest;
mod metrics_listener;
mod rate_limit;
mod request_metrics;
mod response;
mod server;
mod urlencoded;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tagpipe_core::component::RunningSource;
use tagpipe_core::{
    BoxError, BoxFuture, SourceComponent, SourceConfig, SourceContext, ValidationError,
};

pub use client_ip::IpRange;
pub use config::{
    DataEndpoint, DebugSettings, EventsEndpoint, Ga4Endpoint, HttpSourceConfig, RateLimit,
};
pub use metrics_listener::{bind_metrics_listener, serve_metrics};

impl SourceConfig for HttpSourceConfig {
    fn validate(&self) -> Vec<ValidationError> {
        self.problems()
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", self.listen))?;
            let server = Arc::new(server::Server {
                id: cx.id.clone(),
                config: self.clone(),
                output: cx.output,
                ready: AtomicBool::new(false),
                limiter: self.rate_limit.and_then(rate_limit::Limiter::new),
                metrics: request_metrics::RequestMetrics::new(&cx.id),
            });
            let running: RunningSource = Box::pin(server::serve(listener, server, cx.shutdown));
            Ok(running)
        })
    }
}

impl SourceComponent for HttpSourceConfig {
    const TYPE: &'static str = "http";
}
