//! The listener: accepting connections (HTTP/1.1 and HTTP/2), routing, graceful shutdown.

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tagpipe_core::{BoxError, ComponentId, Dispatcher};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HttpSourceConfig;
use crate::error::HttpError;
use crate::graceful::OpenConnections;
use crate::ingest::Admitted;
use crate::request_metrics::EndpointLabel;
use crate::response::{Reply, text};

/// Shared by every connection.
pub(crate) struct Server {
    pub id: ComponentId,
    pub config: HttpSourceConfig,
    pub output: Dispatcher,
    pub ready: AtomicBool,
    pub limiter: Option<crate::rate_limit::Limiter>,
    pub metrics: crate::request_metrics::RequestMetrics,
}

/// Which endpoint a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Events,
    Ga4,
    Data,
}

impl Endpoint {
    /// Whether browsers call it (its answers carry CORS headers).
    pub(crate) fn answers_browsers(self) -> bool {
        self != Self::Events
    }
}

/// What routing decided for a request, without waiting for anything.
pub(crate) enum Routed {
    /// Answered at once: health, metrics, an unknown path or method, a CORS preflight, a
    /// rate-limited client.
    Answer(Reply),
    /// To be read, parsed and delivered by [`ingest`](crate::ingest::ingest).
    Ingest(Admitted),
}

impl Server {
    /// The `endpoint` label for a request path (bounded: unknown paths are `other`).
    fn endpoint_label(&self, path: &str) -> EndpointLabel {
        match self.route(path) {
            Some(endpoint) => endpoint.into(),
            None if path == "/healthz" || path == "/readyz" => EndpointLabel::Health,
            None if self.config.metrics && path == self.config.metrics_path => {
                EndpointLabel::Metrics
            }
            None => EndpointLabel::Other,
        }
    }

    fn route(&self, path: &str) -> Option<Endpoint> {
        let c = &self.config;
        if c.events.enabled && path == c.events.path {
            Some(Endpoint::Events)
        } else if c.ga4.enabled && path == c.ga4.path {
            Some(Endpoint::Ga4)
        } else if c.data.enabled && path == c.data.path {
            Some(Endpoint::Data)
        } else {
            None
        }
    }

    /// Routes one request, answering at once what needs no ingestion: health, metrics, an
    /// unknown path or method, a CORS preflight, a rate-limited client. Never panics on input;
    /// every refusal says why.
    pub(crate) fn route_request(&self, request: Request<Incoming>, peer: IpAddr) -> Routed {
        let path = request.uri().path();
        if self.config.metrics && path == self.config.metrics_path {
            return Routed::Answer(metrics_reply());
        }
        match path {
            "/healthz" => return Routed::Answer(text(StatusCode::OK, "ok\n")),
            "/readyz" => {
                return Routed::Answer(if self.ready.load(Ordering::Relaxed) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                });
            }
            _ => {}
        }
        let Some(endpoint) = self.route(path) else {
            return Routed::Answer(
                HttpError::new(StatusCode::NOT_FOUND, format!("no endpoint at `{path}`"))
                    .into_reply(),
            );
        };
        let allowed: &[Method] = match endpoint {
            Endpoint::Events => &[Method::POST],
            Endpoint::Ga4 | Endpoint::Data => &[Method::GET, Method::POST, Method::OPTIONS],
        };
        if !allowed.contains(request.method()) {
            let mut reply = HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on `{path}`", request.method()),
            )
            .into_reply();
            let list = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&list) {
                reply.headers_mut().insert(header::ALLOW, v);
            }
            return Routed::Answer(reply);
        }
        crate::ingest::admit(self, endpoint, request, peer)
    }
}

/// The Prometheus text of every tagpipe metric (404 when no recorder is installed).
pub(crate) fn metrics_reply() -> Reply {
    match tagpipe_core::telemetry::render() {
        Some(body) => {
            let mut reply = text(StatusCode::OK, "");
            *reply.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body));
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            reply
        }
        None => {
            HttpError::new(StatusCode::NOT_FOUND, "no metrics recorder is installed").into_reply()
        }
    }
}

/// Serves until `shutdown`, then stops accepting and lets open requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    shutdown: CancellationToken,
) -> Result<(), BoxError> {
    let open_connections = OpenConnections::default();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/1 half-close: a request read whole is processed to its end even when the client's side
    // of the connection has ended (it shut its sending side down, or left while the answer
    // waited) — not cancelled half-way, e.g. while its events wait for room in a full queue. It
    // also spares hyper's check for that end while each request is handled, a read that first
    // reserves a fresh 8 KiB buffer because the request still borrows the old one (one
    // allocation per request; BENCHMARKS.md, "The half-close session").
    builder
        .http1()
        .header_read_timeout(server.config.read_timeout)
        .half_close(true);
    server.ready.store(true, Ordering::Relaxed);
    tracing::info!(source = %server.id, listen = %server.config.listen, "http source listening");
    let mut last_cleanup = std::time::Instant::now();
    loop {
        if let Some(limiter) = &server.limiter
            && last_cleanup.elapsed() > std::time::Duration::from_secs(60)
        {
            limiter.forget_idle();
            last_cleanup = std::time::Instant::now();
        }
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, never crash.
                    tracing::warn!(source = %server.id, %error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Each request's future holds the server; it clones this connection's own handle, whose
        // count only this connection's task touches, rather than the one every connection
        // shares (an atomic add and subtract per request on a cache line both cores write).
        let connection_server = Arc::new(server.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let server = connection_server.clone();
            async move {
                let started = std::time::Instant::now();
                let endpoint = server.endpoint_label(request.uri().path());
                let measured = |reply: Reply| {
                    let status = reply.status();
                    server.metrics.request(endpoint, status, started.elapsed());
                    Ok::<_, Infallible>(reply)
                };
                // Routing's answer goes out of scope before the wait: the request's future keeps
                // no room for it beside the ingestion's.
                let admitted = match server.route_request(request, peer.ip()) {
                    Routed::Ingest(admitted) => admitted,
                    Routed::Answer(reply) => return measured(reply),
                };
                measured(crate::ingest::ingest(&server, admitted).await)
            }
        });
        // Each connection gets its own header timer: one tokio sleep per connection, not one
        // per request (see `header_timer`).
        let mut connection_builder = builder.clone();
        connection_builder
            .http1()
            .timer(crate::header_timer::ConnectionTimer::default());
        let connection = connection_builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        // Told to finish when the source stops (hyper then answers the request in flight and
        // closes an idle keep-alive connection).
        let connection = open_connections.watch(connection, |connection: Pin<&mut _>| {
            connection.graceful_shutdown();
        });
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    server.ready.store(false, Ordering::Relaxed);
    drop(listener);
    tracing::info!(source = %server.id, "http source: no longer accepting; finishing open requests");
    open_connections.finish().await;
    Ok(())
}
