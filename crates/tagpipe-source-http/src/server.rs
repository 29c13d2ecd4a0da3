//! The listener: accepting connections (HTTP/1.1 and HTTP/2), routing, graceful shutdown.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tagpipe_core::{BoxError, ComponentId, Dispatcher};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HttpSourceConfig;
use crate::error::HttpError;
use crate::response::{Reply, text};

/// Shared by every connection.
pub(crate) struct Server {
    pub id: ComponentId,
    pub config: HttpSourceConfig,
    pub output: Dispatcher,
    pub ready: AtomicBool,
}

/// Which endpoint a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Events,
    Ga4,
    Data,
}

impl Server {
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

    /// Answers one request. Never panics on input; every refusal says why.
    pub(crate) async fn handle(&self, request: Request<Incoming>, peer: IpAddr) -> Reply {
        let path = request.uri().path();
        match path {
            "/healthz" => return text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                return if self.ready.load(Ordering::Relaxed) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                };
            }
            _ => {}
        }
        let Some(endpoint) = self.route(path) else {
            return HttpError::new(StatusCode::NOT_FOUND, format!("no endpoint at `{path}`"))
                .into_reply();
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
            return reply;
        }
        crate::ingest::handle(self, endpoint, request, peer).await
    }
}

/// Serves until `shutdown`, then stops accepting and lets open requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    shutdown: CancellationToken,
) -> Result<(), BoxError> {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.config.read_timeout);
    server.ready.store(true, Ordering::Relaxed);
    tracing::info!(source = %server.id, listen = %server.config.listen, "http source listening");
    loop {
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
        let server = server.clone();
        let service = hyper::service::service_fn(move |request| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(request, peer.ip()).await) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    server.ready.store(false, Ordering::Relaxed);
    drop(listener);
    tracing::info!(source = %server.id, "http source: no longer accepting; finishing open requests");
    graceful.shutdown().await;
    Ok(())
}
