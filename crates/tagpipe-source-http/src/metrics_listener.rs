//! A listener of its own for Prometheus metrics (`runtime.metrics_address`), for setups where
//! the scraper must not reach the event endpoints, or the event port is public.
//!
//! It answers `GET <path>` with the same text as the HTTP source's `/metrics`, `GET /healthz`
//! with `ok`, and everything else with a 404 or 405 that says why.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tagpipe_core::BoxError;
use tokio::net::TcpListener;

use crate::error::HttpError;
use crate::response::{Reply, text};
use crate::server::metrics_reply;

/// Binds the metrics listener (at start-up, so that a taken port stops the start).
///
/// # Errors
/// When `address` cannot be bound.
pub async fn bind_metrics_listener(address: SocketAddr) -> Result<TcpListener, BoxError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen for metrics on {address}: {e}").into())
}

/// Serves metrics on `listener` at `path` until the returned future is dropped.
pub async fn serve_metrics(listener: TcpListener, path: String) {
    let path: Arc<str> = path.into();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(listen = %address, path = %path, "metrics listening");
    }
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let path = path.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            std::future::ready(Ok::<_, Infallible>(answer(&request, &path)))
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

fn answer(request: &Request<Incoming>, path: &str) -> Reply {
    let at = request.uri().path();
    if at != path && at != "/healthz" {
        return HttpError::new(StatusCode::NOT_FOUND, format!("no endpoint at `{at}`"))
            .into_reply();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return HttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("`{at}` answers GET only"),
        )
        .into_reply();
    }
    if at == path {
        metrics_reply()
    } else {
        text(StatusCode::OK, "ok\n")
    }
}
