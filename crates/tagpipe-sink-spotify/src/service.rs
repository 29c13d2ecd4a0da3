//! The sink's service: each event prepared as it is queued (its CAPI JSON, or its outcome when
//! it is not sent — [`tagpipe_core::Prepare`]), then batches of prepared events → CAPI requests
//! (split by size, retried with backoff, halved on 413, one by one after an unexplained 400) →
//! one outcome per event.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tagpipe_core::logs::{DeliveryLog, LogKind};
use tagpipe_core::{DestinationOutcome, Encoded, Event, Outcome, Prepare, Prepared};
use thread_local::ThreadLocal;

use crate::config::SpotifySinkConfig;
use crate::logs::DeliveryLogger;
use crate::payload::{Built, build};

/// Everything a request needs, shared by all calls.
pub(crate) struct Shared {
    pub config: SpotifySinkConfig,
    pub client: reqwest::Client,
    pub logger: DeliveryLogger,
    /// Fixed "now" for events without a time (tests); `None`: the real clock.
    pub clock_ms: Option<i64>,
    /// Per thread, the chunk that thread copies this sink's events' JSON into, one after
    /// another: each item holds a shared slice of it, and a chunk is freed when the last of its
    /// items is (one allocation per a few hundred GA4 hits, consecutive events' JSON in consecutive
    /// memory). The sink's own, so its queued items keep only its chunks alive, and they go
    /// with the sink.
    pub chunks: ThreadLocal<RefCell<BytesMut>>,
}

/// One event as the sink's queue holds it when it is not an [`Encoded`] event to send (nearly
/// all are: see [`Shared::prepare`]).
enum Ready {
    /// To send, its name copied (it needed escaping in the JSON).
    Send(Item),
    /// Not sent (skipped or failed when prepared): its outcome.
    Done(DestinationOutcome),
}

/// Prepares each event as it enters the sink's queue, on the thread that accepted it.
pub(crate) struct SpotifyPrepare(pub Arc<Shared>);

impl Prepare for SpotifyPrepare {
    fn prepare(&self, event: &Event) -> Prepared {
        self.0.prepare(event)
    }

    /// Another Spotify sink makes the same CAPI events when every setting that goes into them is
    /// the same (its token, connection, endpoint and delivery settings may differ).
    fn same_items_as(&self, other: &dyn Prepare) -> bool {
        other.downcast_ref::<Self>().is_some_and(|other| {
            self.0.clock_ms == other.0.clock_ms && self.0.config.same_events_as(&other.0.config)
        })
    }

    /// A CAPI event to send is shared (its JSON is not copied); an outcome found when preparing
    /// is not (its log record names the sink that prepared it).
    fn copy(&self, prepared: &mut Prepared) -> Option<Prepared> {
        if let Some(encoded) = prepared.as_encoded() {
            return Some(Prepared::encoded(encoded.clone()));
        }
        match prepared.downcast_ref::<Ready>()? {
            Ready::Send(item) => Some(Prepared::new(Ready::Send(item.clone()))),
            Ready::Done(_) => None,
        }
    }
}

/// The bytes of the CAPI JSON chunks each thread writes its events' JSON into.
const JSON_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Where this thread serialises a CAPI event: reused, so it is in the cache and not grown
    /// once it has held the longest event (up to a chunk's size).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Shared {
    /// `json` copied into this thread's chunk of the sink (see [`Shared::chunks`]).
    fn in_chunk(&self, json: &[u8]) -> Bytes {
        let mut chunk = self
            .chunks
            .get_or(|| RefCell::new(BytesMut::new()))
            .borrow_mut();
        if chunk.capacity() < json.len() {
            // A full chunk stays with its items; a new one takes the next events.
            *chunk = BytesMut::with_capacity(JSON_CHUNK.max(json.len()));
        }
        chunk.extend_from_slice(json);
        chunk.split().freeze()
    }
}

/// One event ready to send, with where its outcome goes.
#[derive(Clone)]
struct Item {
    /// Its position in the batch being sent.
    index: usize,
    /// The CAPI event as JSON, serialised once: it sizes the requests and goes into their
    /// bodies. A slice of a shared chunk (see [`Shared::chunks`]); copies for other sinks share it.
    json: Bytes,
    name: ItemName,
    trace_id: Option<String>,
    debug: bool,
}

/// An item's event name, for logs: where it is in the item's JSON (written unescaped, nearly
/// always: no copy to make and free per event), or a copy.
#[derive(Clone)]
enum ItemName {
    InJson(Range<usize>),
    Copied(String),
}

impl Item {
    /// The item to send of an encoded event, whose label is where its name is.
    fn from_encoded(index: usize, encoded: Encoded) -> Self {
        let Encoded {
            bytes,
            label,
            trace_id,
            debug,
        } = encoded;
        let name = label.start as usize..label.end as usize;
        Self {
            index,
            json: bytes,
            name: ItemName::InJson(name),
            trace_id: trace_id.map(String::from),
            debug,
        }
    }

    /// The event's name.
    fn name(&self) -> &str {
        match &self.name {
            ItemName::InJson(range) => {
                let name = self
                    .json
                    .get(range.clone())
                    .and_then(|bytes| std::str::from_utf8(bytes).ok());
                debug_assert!(name.is_some(), "the name's range is in the item's JSON");
                name.unwrap_or_default()
            }
            ItemName::Copied(name) => name,
        }
    }

    /// Its bytes in a request body: its JSON and the comma after it.
    fn len_in_request(&self) -> usize {
        self.json.len() + 1
    }

    /// The CAPI event as a JSON tree, for debug answers and dead letters.
    fn request(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// How one request ended.
enum Attempt {
    Delivered,
    TooLarge,
    BadRequest(String),
    Rejected(String),
    GaveUp(String),
}

impl Shared {
    /// The time of an event that carries none: when its request was received (kept in disk
    /// buffers too), or the tests' fixed clock.
    fn received_ms(&self, event: &Event) -> i64 {
        self.clock_ms
            .unwrap_or_else(|| i64::try_from(event.context.received_ms()).unwrap_or(i64::MAX))
    }

    /// The CAPI JSON of one event — an [`Encoded`] event, its label where its name is (a
    /// [`Ready::Send`] when the name needed escaping, so is not in the JSON as it is) — or its
    /// outcome when it is not sent (with its log message).
    fn prepare(&self, event: &Event) -> Prepared {
        let debug = event.context.debug;
        match build(
            &event.data,
            &event.context,
            &self.config,
            self.received_ms(event),
        ) {
            Built::Send(payload) => {
                let (json, name) = SCRATCH.with_borrow_mut(|scratch| {
                    scratch.clear();
                    let name = payload.write_json(scratch);
                    let json = self.in_chunk(scratch);
                    if scratch.capacity() > JSON_CHUNK {
                        // An unusually large event: its buffer is not kept.
                        scratch.shrink_to(JSON_CHUNK);
                    }
                    (json, name)
                });
                let trace_id = event.context.trace_id.clone();
                let label = name.and_then(|range| {
                    Some(u32::try_from(range.start).ok()?..u32::try_from(range.end).ok()?)
                });
                match label {
                    Some(label) => Prepared::encoded(Encoded {
                        bytes: json,
                        label,
                        trace_id: trace_id.map(String::into_boxed_str),
                        debug,
                    }),
                    None => Prepared::new(Ready::Send(Item {
                        index: 0,
                        json,
                        name: ItemName::Copied(payload.event_name.into_owned()),
                        trace_id,
                        debug,
                    })),
                }
            }
            Built::Skip(reason) => {
                self.message(event, &reason, debug);
                Prepared::new(Ready::Done(DestinationOutcome::skipped(reason)))
            }
            Built::Fail(reason) => {
                self.message(event, &reason, debug);
                Prepared::new(Ready::Done(DestinationOutcome::failed(reason)))
            }
        }
    }

    /// Sends a batch of prepared events: one outcome per event, in order.
    pub(crate) async fn deliver_prepared(&self, batch: Vec<Prepared>) -> Vec<DestinationOutcome> {
        let mut outcomes: Vec<Option<DestinationOutcome>> = vec![None; batch.len()];
        let mut items = Vec::with_capacity(batch.len());
        for (index, prepared) in batch.into_iter().enumerate() {
            let prepared = match prepared.into_encoded() {
                Ok(encoded) => {
                    items.push(Item::from_encoded(index, encoded));
                    continue;
                }
                Err(other) => other,
            };
            match prepared.downcast::<Ready>() {
                Ok(Ready::Send(mut item)) => {
                    item.index = index;
                    items.push(item);
                }
                Ok(Ready::Done(outcome)) => outcomes[index] = Some(outcome),
                Err(_) => {
                    outcomes[index] = Some(DestinationOutcome::failed(
                        "not prepared by a Spotify sink (internal error)",
                    ));
                }
            }
        }
        if self.config.dry_run {
            for item in items {
                let mut record = self.record(LogKind::Request, std::slice::from_ref(&item));
                record.request_body = Some(body_text(&self.body(std::slice::from_ref(&item))));
                record.message = Some("dry_run: not sent".into());
                self.logger.emit(&record, item.debug);
                outcomes[item.index] = Some(
                    DestinationOutcome::skipped("dry_run: not sent").with_request(item.request()),
                );
            }
        } else {
            for (item, outcome) in self.send(items).await {
                // What was sent goes into debug answers and dead letters only.
                let outcome = if item.debug || outcome.outcome == Outcome::Failed {
                    outcome.with_request(item.request())
                } else {
                    outcome
                };
                outcomes[item.index] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| DestinationOutcome::failed("no outcome (internal error)")))
            .collect()
    }

    fn message(&self, event: &Event, reason: &str, debug: bool) {
        let mut record = DeliveryLog::new(LogKind::Message, &self.logger.tag_name);
        record.trace_id.clone_from(&event.context.trace_id);
        record.event_name = event.event_name().map(str::to_owned);
        record.message = Some(format!("Event was not sent: {reason}"));
        self.logger.emit(&record, debug);
    }

    fn record(&self, kind: LogKind, items: &[Item]) -> DeliveryLog {
        let mut record = DeliveryLog::new(kind, &self.logger.tag_name);
        record.trace_id = items.iter().find_map(|i| i.trace_id.clone());
        let mut names: Vec<&str> = items.iter().map(Item::name).collect();
        names.dedup();
        record.event_name = Some(names.join(","));
        record.request_method = Some("POST".into());
        record.request_url = Some(self.config.endpoint.clone());
        record
    }

    /// The request body for `items`: their JSON, serialised once each, in the envelope.
    fn body(&self, items: &[Item]) -> Bytes {
        let mut body = Vec::with_capacity(self.request_len(items));
        body.extend_from_slice(b"{\"conversion_events\":{\"capi_connection_id\":");
        body.extend_from_slice(
            Value::from(self.config.connection_id.as_str())
                .to_string()
                .as_bytes(),
        );
        body.extend_from_slice(b",\"events\":[");
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&item.json);
        }
        body.extend_from_slice(b"]}}");
        Bytes::from(body)
    }

    /// The bytes of a request body around its events (at most).
    fn envelope_len(&self) -> usize {
        64 + self.config.connection_id.len()
    }

    /// The size of the request body for `items` (at most).
    fn request_len(&self, items: &[Item]) -> usize {
        self.envelope_len() + items.iter().map(Item::len_in_request).sum::<usize>()
    }

    /// Splits `items` into requests no bigger than `batch.max_bytes`.
    fn chunks(&self, items: Vec<Item>) -> Vec<Vec<Item>> {
        if items.is_empty() {
            return Vec::new();
        }
        if self.request_len(&items) <= self.config.max_request_bytes() {
            // The usual case, a batch that fits one request: the items stay where they are
            // rather than being moved one by one into a growing chunk.
            return vec![items];
        }
        let mut chunks = Vec::new();
        let mut current: Vec<Item> = Vec::new();
        let envelope = self.envelope_len();
        let mut size = envelope;
        for item in items {
            let item_size = item.len_in_request();
            if !current.is_empty() && size + item_size > self.config.max_request_bytes() {
                chunks.push(std::mem::take(&mut current));
                size = envelope;
            }
            size += item_size;
            current.push(item);
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    /// Sends every item, splitting and retrying as needed.
    async fn send(&self, items: Vec<Item>) -> Vec<(Item, DestinationOutcome)> {
        let mut done = Vec::with_capacity(items.len());
        let mut pending: Vec<(Vec<Item>, bool)> = self
            .chunks(items)
            .into_iter()
            .rev()
            .map(|c| (c, false))
            .collect();
        while let Some((chunk, single_retry)) = pending.pop() {
            match self.attempt(&chunk).await {
                Attempt::Delivered => {
                    done.extend(chunk.into_iter().map(|i| (i, DestinationOutcome::sent())));
                }
                Attempt::TooLarge if chunk.len() > 1 => {
                    let mut first = chunk;
                    let second = first.split_off(first.len() / 2);
                    pending.push((second, single_retry));
                    pending.push((first, single_retry));
                }
                Attempt::BadRequest(_) if chunk.len() > 1 && !single_retry => {
                    // The API did not say which event is bad: try each alone so one bad event
                    // never sinks the others.
                    for item in chunk.into_iter().rev() {
                        pending.push((vec![item], true));
                    }
                }
                Attempt::TooLarge => {
                    let reason = "rejected: HTTP 413 payload too large for a single event";
                    done.extend(
                        chunk
                            .into_iter()
                            .map(|i| (i, DestinationOutcome::failed(reason))),
                    );
                }
                Attempt::BadRequest(reason)
                | Attempt::Rejected(reason)
                | Attempt::GaveUp(reason) => {
                    done.extend(
                        chunk
                            .into_iter()
                            .map(|i| (i, DestinationOutcome::failed(reason.clone()))),
                    );
                }
            }
        }
        done
    }

    /// One request, retried on 429, 5xx, timeouts and connection errors until `max_elapsed`.
    async fn attempt(&self, chunk: &[Item]) -> Attempt {
        let body = self.body(chunk);
        let debug = chunk.iter().any(|i| i.debug);
        let mut backoff = self.config.retry.start();
        loop {
            // Records (and their copy of the body) only when someone reads them.
            if self.logger.wants(debug) {
                let mut request_record = self.record(LogKind::Request, chunk);
                request_record.request_body = Some(body_text(&body));
                self.logger.emit(&request_record, debug);
            }
            let result = self
                .client
                .post(&self.config.endpoint)
                .bearer_auth(self.config.auth_token.expose())
                .header(http::header::CONTENT_TYPE, "application/json")
                .timeout(self.config.request_timeout)
                .body(body.clone())
                .send()
                .await;
            let (reason, retry_after) = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = parse_retry_after(response.headers());
                    let headers = headers_json(response.headers());
                    let response_body = read_text(response).await;
                    if self.logger.wants(debug) {
                        let mut record = self.record(LogKind::Response, chunk);
                        record.response_status_code = Some(status);
                        record.response_headers = Some(headers);
                        record.response_body = Some(response_body.clone());
                        self.logger.emit(&record, debug);
                    }
                    match status {
                        200..=299 => return Attempt::Delivered,
                        413 => return Attempt::TooLarge,
                        400 if says_too_large(&response_body) => return Attempt::TooLarge,
                        429 | 500..=599 => (format!("HTTP {status}: {response_body}"), retry_after),
                        _ => {
                            let reason = format!("rejected: HTTP {status}: {response_body}");
                            let mut rejected = self.record(LogKind::Rejected, chunk);
                            rejected.response_status_code = Some(status);
                            rejected.response_body = Some(response_body);
                            rejected.message = Some(reason.clone());
                            self.logger.emit(&rejected, debug);
                            return if status == 400 {
                                Attempt::BadRequest(reason)
                            } else {
                                Attempt::Rejected(reason)
                            };
                        }
                    }
                }
                Err(error) => (transport_error(&error), None),
            };
            let Some(delay) = backoff.next_delay(retry_after) else {
                return Attempt::GaveUp(format!(
                    "gave up after {} attempts in {:?}: {reason}",
                    backoff.tries(),
                    backoff.elapsed()
                ));
            };
            let mut record = self.record(LogKind::Retry, chunk);
            record.message = Some(format!(
                "attempt {} failed ({reason}); retrying in {delay:?}",
                backoff.tries()
            ));
            self.logger.emit(&record, debug);
            tokio::time::sleep(delay).await;
        }
    }
}

/// `Retry-After`, when the answer has one.
fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    tagpipe_core::retry::parse_retry_after(
        headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?,
    )
}

fn says_too_large(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    lower.contains("too large") || lower.contains("too big") || lower.contains("payload size")
}

fn transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection error"
    } else {
        "transport error"
    };
    // reqwest's message names the URL, never the headers (so never the token).
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

fn headers_json(headers: &reqwest::header::HeaderMap) -> String {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(v.to_str().unwrap_or("").to_owned()),
            )
        })
        .collect();
    Value::Object(map).to_string()
}

/// A request body as text, for a log record (bodies are always JSON, so UTF-8).
fn body_text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The response body as text, at most 64 KiB.
async fn read_text(mut response: reqwest::Response) -> String {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        out.extend_from_slice(&chunk);
        if out.len() > 64 * 1024 {
            out.truncate(64 * 1024);
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
