//! The receiver's HTTP server, its script and its record of requests.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;

use crate::contract::{ReceiverConfig, check};

/// What to answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200 {"message":"SUCCESS"}` — when the request is valid; a contract violation gets 400.
    Ok,
    /// This status with this body.
    Status(u16, String),
    /// `413 Payload Too Large`.
    TooLarge,
    /// `429` with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// Wait this long, then answer as the next default would.
    Stall(Duration),
    /// Close the connection without answering.
    Drop,
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it arrived.
    pub at: Instant,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, parsed (`Null` when not JSON).
    pub body: Value,
    /// Contract violations (empty when valid).
    pub violations: Vec<String>,
    /// The status answered (0 for a dropped connection).
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    recorded: Vec<Recorded>,
    /// Events of requests answered 2xx.
    accepted: Vec<Value>,
    /// Events counted in `count_only` mode.
    counted: u64,
}

/// A running receiver on 127.0.0.1, on its own thread and runtime.
#[derive(Debug, Clone)]
pub struct Receiver {
    addr: SocketAddr,
    config: Arc<ReceiverConfig>,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port. It runs until the process ends.
    pub fn spawn(config: ReceiverConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let receiver = Self {
            addr,
            config: Arc::new(config),
            state: Arc::default(),
        };
        let server = receiver.clone();
        std::thread::Builder::new()
            .name(format!("capi-receiver-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(server.serve(listener));
            })
            .expect("receiver thread");
        receiver
    }

    /// The endpoint URL to configure in the sink.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.config.path)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues replies for the next requests, in order; afterwards the default applies.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// The reply once the script is used up (initially [`Reply::Ok`]).
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = Some(reply);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().recorded.clone()
    }

    /// Every event of every request answered 2xx, in arrival order.
    pub fn accepted_events(&self) -> Vec<Value> {
        self.lock().accepted.clone()
    }

    /// Events received in `count_only` mode.
    pub fn counted_events(&self) -> u64 {
        self.lock().counted
    }

    /// Every contract violation seen, with the request's index.
    pub fn violations(&self) -> Vec<(usize, String)> {
        self.lock()
            .recorded
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.violations.iter().map(move |v| (i, v.clone())))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn serve(self, listener: std::net::TcpListener) {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { this.handle(req).await }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        if self.config.count_only {
            // Counted without building the JSON tree: the receiver shares the machine with the
            // server under test, so it should cost as little as it can.
            let events = serde_json::from_slice::<CountedBody>(&body)
                .map_or(0, |b| b.conversion_events.events.len());
            self.lock().counted += events as u64;
            return Ok(Response::new(Full::new(Bytes::from_static(
                br#"{"message":"SUCCESS"}"#,
            ))));
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let violations = check(
            &self.config,
            parts.method.as_str(),
            parts.uri.path(),
            &parts.headers,
            &body,
            now_ms,
        );
        let mut reply = {
            let mut state = self.lock();
            state
                .script
                .pop_front()
                .or_else(|| state.default.clone())
                .unwrap_or(Reply::Ok)
        };
        if let Reply::Stall(d) = reply {
            tokio::time::sleep(d).await;
            // After the stall, answer as the default would (a stalling default answers 200).
            reply = match self.lock().default.clone() {
                Some(Reply::Stall(_)) | None => Reply::Ok,
                Some(other) => other,
            };
        }
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, text, retry_after) = match &reply {
            Reply::Drop => {
                self.record(parts.headers, parsed, violations, 0);
                // An error makes hyper close the connection without an answer.
                return Err(std::io::Error::other("scripted connection drop"));
            }
            Reply::Ok if violations.is_empty() => {
                (200, r#"{"message":"SUCCESS"}"#.to_owned(), None)
            }
            Reply::Ok => (
                400,
                serde_json::json!({"error": {"code": 400, "message": violations.join("; ")}})
                    .to_string(),
                None,
            ),
            Reply::Status(code, body) => (*code, body.clone(), None),
            Reply::TooLarge => (
                413,
                r#"{"error":{"code":413,"message":"payload too large"}}"#.to_owned(),
                None,
            ),
            Reply::RateLimited(secs) => (
                429,
                r#"{"error":{"code":429,"message":"rate limited"}}"#.to_owned(),
                Some(*secs),
            ),
            Reply::Stall(_) => unreachable!("handled above"),
        };
        if (200..300).contains(&status)
            && let Some(events) = parsed
                .get("conversion_events")
                .and_then(|c| c.get("events"))
                .and_then(Value::as_array)
        {
            self.lock().accepted.extend(events.iter().cloned());
        }
        self.record(parts.headers, parsed, violations, status);
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        response.headers_mut().insert(
            "x-trace-id",
            http::HeaderValue::from_static("receiver-trace"),
        );
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", http::HeaderValue::from(secs));
        }
        Ok(response)
    }

    fn record(&self, headers: HeaderMap, body: Value, violations: Vec<String>, status: u16) {
        self.lock().recorded.push(Recorded {
            at: Instant::now(),
            headers,
            body,
            violations,
            status,
        });
    }
}

/// What `count_only` reads of a request: the number of events (each element skipped unparsed;
/// a vector of `IgnoredAny` allocates nothing).
#[derive(serde::Deserialize)]
struct CountedBody {
    conversion_events: CountedEvents,
}

#[derive(serde::Deserialize)]
struct CountedEvents {
    events: Vec<serde::de::IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::CountedBody;

    #[test]
    fn count_only_counts_the_events_of_a_body() {
        let body = br#"{"conversion_events":{"capi_connection_id":"c","events":[
            {"event_name":"a","user_data":{"hashed_emails":["x"]}},{"event_name":"b"},{}]}}"#;
        let counted: CountedBody = serde_json::from_slice(body).unwrap();
        assert_eq!(counted.conversion_events.events.len(), 3);
        assert!(serde_json::from_slice::<CountedBody>(br#"{"events":[]}"#).is_err());
    }
}
