//! The ingestion endpoints' handling: admission (CORS preflight, rate limit), then reading,
//! parsing, handing the events to the pipelines, and the answer.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tagpipe_core::{
    DestinationOutcome, Event, EventData, EventOutcomes, Pipelines, RequestContext,
};

use crate::client_ip::{client_addr, ip_override_to_normalise};
use crate::config::HttpSourceConfig;
use crate::error::HttpError;
use crate::events::Batch;
use crate::response::{Reply, apply_parts, empty, gif, json};
use crate::server::{Endpoint, Routed, Server};
use crate::{body, cors, data_client, events, ga4};

/// A request to an ingestion endpoint that passed the checks made before its body is read.
pub(crate) struct Admitted {
    endpoint: Endpoint,
    parts: http::request::Parts,
    body: Incoming,
    /// The client's address (after trusted proxies).
    client: IpAddr,
    /// The origin the answer allows, read before the headers move into the events' context.
    origin: Option<HeaderValue>,
}

/// The checks made before a body is read, all without waiting: a CORS preflight (`OPTIONS`) and
/// a rate-limited client are answered at once; any other request is admitted.
pub(crate) fn admit(
    server: &Server,
    endpoint: Endpoint,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Routed {
    let (parts, body) = request.into_parts();
    let config = &server.config;
    let origins: &[String] = match endpoint {
        Endpoint::Events => &[],
        Endpoint::Ga4 => &config.ga4.allowed_origins,
        Endpoint::Data => &config.data.allowed_origins,
    };
    let browser = endpoint.answers_browsers();
    if parts.method == Method::OPTIONS {
        let mut reply = empty(StatusCode::NO_CONTENT);
        cors::apply_preflight(&mut reply, &parts.headers, origins);
        return Routed::Answer(reply);
    }
    let client = client_addr(peer, &parts.headers, &config.trusted_proxies);
    let origin = if browser {
        cors::allowed_origin(&parts.headers, origins)
    } else {
        None
    };
    if browser && let Some(wait) = server.limiter.as_ref().and_then(|l| l.check(client)) {
        let mut reply = HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address: slow down",
        )
        .into_reply();
        reply.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        cors::apply(&mut reply, origin.as_ref());
        return Routed::Answer(reply);
    }
    Routed::Ingest(Admitted {
        endpoint,
        parts,
        body,
        client,
        origin,
    })
}

/// Reads, parses and delivers an admitted request, and answers it.
///
/// One future whose only waits are reading the body (not even set up when a request has none,
/// as a GA4 `GET`: [`body::read_if_empty`]) and the delivery; admission before it and the
/// parsing and answer between are plain calls. A request's future holds the state of every
/// future it nests, each moved into its caller's when called, so only the two waits are futures.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` would store its argument twice (see the comment in the body)"
)]
pub(crate) fn ingest(server: &Server, request: Admitted) -> impl Future<Output = Reply> + '_ {
    // An `async` block rather than an `async fn`: the block uses the request where it was
    // captured, where an `async fn` keeps its argument and a moved copy of it side by side.
    async move {
        let config = &server.config;
        let headers = &request.parts.headers;
        let mut reply = match check_before_body(request.endpoint, headers, config) {
            Err(error) => refused(server, error),
            Ok(format) => {
                let max = config.max_body_bytes;
                let read = match body::read_if_empty(&request.body, headers, max) {
                    Some(empty) => empty,
                    None => body::read(request.body, headers, max, config.read_timeout).await,
                };
                match read {
                    Err(error) => refused(server, error),
                    Ok(bytes) => match parse(server, format, request.parts, &bytes, request.client)
                    {
                        Err(error) => refused(server, error),
                        Ok(parsed) => {
                            let count = parsed.data.len();
                            let debug = deliver(
                                server,
                                parsed.data,
                                parsed.ip_override_normalised,
                                &parsed.context,
                            )
                            .await;
                            answer(debug, parsed.answer, count, &parsed.context)
                        }
                    },
                }
            }
        };
        if request.endpoint.answers_browsers() {
            cors::apply(&mut reply, request.origin.as_ref());
        }
        reply
    }
}

/// The answer to a refused request (its reason in the body), logged at debug level.
fn refused(server: &Server, error: HttpError) -> Reply {
    tracing::debug!(source = %server.id, status = %error.status, error = %error.message, "request refused");
    error.into_reply()
}

/// How a request's events are read: the endpoint, and for the events endpoint the framing its
/// content type names.
#[derive(Clone, Copy)]
enum Format {
    Events(events::Framing),
    Ga4,
    Data,
}

impl Format {
    /// The endpoint whose format it is.
    fn endpoint(self) -> Endpoint {
        match self {
            Self::Events(_) => Endpoint::Events,
            Self::Ga4 => Endpoint::Ga4,
            Self::Data => Endpoint::Data,
        }
    }
}

/// The checks that need no body. Only the events endpoint has any: its bearer key, and a
/// content type it can read (which names the framing).
fn check_before_body(
    endpoint: Endpoint,
    headers: &HeaderMap,
    config: &HttpSourceConfig,
) -> Result<Format, HttpError> {
    match endpoint {
        Endpoint::Ga4 => Ok(Format::Ga4),
        Endpoint::Data => Ok(Format::Data),
        Endpoint::Events => {
            authorise(headers, &config.events.auth_keys)?;
            let media = body::media_type(headers);
            let framing = events::Framing::from_media_type(media.as_deref())?;
            Ok(Format::Events(framing))
        }
    }
}

/// A request's events, their shared context, and the answer to give.
struct Parsed<'a> {
    data: Batch<'a>,
    /// The reader already normalised each event's `ip_override` (GA4 hits).
    ip_override_normalised: bool,
    context: Arc<RequestContext>,
    answer: Answer,
}

/// Parses a request's events (the endpoint's format) and counts them as received.
fn parse<'a>(
    server: &Server,
    format: Format,
    parts: http::request::Parts,
    bytes: &'a [u8],
    client: IpAddr,
) -> Result<Parsed<'a>, HttpError> {
    let config = &server.config;
    let debug = config.debug.enabled && is_debug(&parts.headers);
    // Read now: the headers move into the events' context.
    let media = match format {
        Format::Data => body::media_type(&parts.headers),
        Format::Events(_) | Format::Ga4 => None,
    };
    let http::request::Parts {
        method,
        uri,
        headers,
        ..
    } = parts;
    let query = uri.query().unwrap_or("");
    let mut context = RequestContext::from_headers(headers, Some(client));
    context.debug = debug;
    let context = Arc::new(context);

    let max = config.max_events_per_request;
    let (data, answer) = match format {
        Format::Events(framing) => (events::parse(bytes, framing, max)?, Answer::Accepted),
        Format::Ga4 => {
            let user_agent = context.header(header::USER_AGENT);
            let data = ga4::parse_hits(query, bytes, client, user_agent, max).map_err(|e| {
                if e.contains("are accepted") {
                    HttpError::too_large(e)
                } else {
                    HttpError::bad_request(e)
                }
            })?;
            (Batch::Decoded(data), Answer::NoContent)
        }
        Format::Data => {
            let is_get = method == Method::GET;
            let parsed = data_client::parse(
                is_get,
                query.as_bytes(),
                bytes,
                media.as_deref(),
                config.data.accept_arrays,
                max,
            )?;
            let stamp = data_client::Stamp::now();
            let mut data = parsed.events;
            for event in &mut data {
                data_client::enrich(
                    event,
                    client,
                    &context,
                    &stamp,
                    config.data.client_id_cookie_days,
                );
            }
            let receipts: Vec<Value> = data.iter().map(data_client::receipt).collect();
            let answer = if is_get {
                Answer::Gif
            } else if parsed.was_array {
                Answer::Json(Value::Array(receipts))
            } else {
                Answer::Json(receipts.into_iter().next().unwrap_or(Value::Null))
            };
            (Batch::Decoded(data.into()), answer)
        }
    };
    server
        .metrics
        .received(format.endpoint().into(), data.len() as u64);
    Ok(Parsed {
        data,
        ip_override_normalised: matches!(format, Format::Ga4),
        context,
        answer,
    })
}

/// The answer to a delivered request: the debug answer, or the endpoint's own, with the
/// cookies and headers processors and sinks asked for.
fn answer(debug: Option<Value>, answer: Answer, count: usize, context: &RequestContext) -> Reply {
    let mut reply = match (debug, answer) {
        (Some(debug), _) => json(StatusCode::OK, &debug),
        (None, Answer::Accepted) => json(StatusCode::OK, &json!({ "accepted": count })),
        (None, Answer::NoContent) => empty(StatusCode::NO_CONTENT),
        (None, Answer::Json(v)) => json(StatusCode::OK, &v),
        (None, Answer::Gif) => gif(),
    };
    apply_parts(&mut reply, &context.response.snapshot());
    reply
}

/// The answer an endpoint gives when not in debug mode.
enum Answer {
    Accepted,
    NoContent,
    Json(Value),
    Gif,
}

/// The header that asks for a debug answer; a constant, so a look-up hashes it without first
/// parsing a string into a header name.
static DEBUG_HEADER: HeaderName = HeaderName::from_static("x-tagpipe-debug");

fn is_debug(headers: &HeaderMap) -> bool {
    headers
        .get(&DEBUG_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim(), "1" | "true"))
}

fn authorise(headers: &HeaderMap, keys: &[tagpipe_core::Secret]) -> Result<(), HttpError> {
    if keys.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let ok = given.is_some_and(|given| {
        keys.iter()
            .any(|k| constant_time_eq(k.expose().as_bytes(), given.as_bytes()))
    });
    if ok {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer key (Authorization: Bearer <key>)",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `ip_override` values such as `1.2.3.4:5678` or `[::1]:80` become the bare address.
fn normalise_ip_override(event: &mut EventData) {
    // Read as text first: an address kept as text (a GA4 hit's) is not copied to be checked.
    let bare = event
        .get_str("ip_override")
        .and_then(ip_override_to_normalise);
    if let Some(bare) = bare {
        // `set`, not `insert`: the old text is dropped without being copied out first.
        event.set("ip_override", Value::String(bare.to_string()));
    }
}

/// Sends the events into the pipelines. In debug mode, or when a destination asks for it
/// (`optimistic: false`), waits for every destination's outcome, bounded by a timeout; in
/// debug mode returns the debug answer.
async fn deliver(
    server: &Server,
    batch: Batch<'_>,
    ip_override_normalised: bool,
    context: &Arc<RequestContext>,
) -> Option<Value> {
    let debug = context.debug;
    // One snapshot for the whole request, even if a reload swaps the pipelines meanwhile.
    let output = server.output.current();
    let events = batch.events().map(|mut data| {
        if !ip_override_normalised {
            normalise_ip_override(&mut data);
        }
        Event::new(data, context.clone())
    });
    if !debug && !output.waits_for_delivery() {
        // Each event is read (a checked batch), processed and queued before the next is read.
        output.send_each(events).await;
        return None;
    }
    let (events, acks): (Vec<Event>, Vec<_>) = events.map(Event::with_acknowledgement).unzip();
    output.send_all(events).await;
    let timeout = if debug {
        server.config.debug.timeout
    } else {
        server.config.wait_timeout
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answers = Vec::with_capacity(acks.len());
    for ack in acks {
        let outcomes = match tokio::time::timeout_at(deadline, ack).await {
            Ok(outcomes) => outcomes,
            Err(_) => timed_out(&output),
        };
        answers.push(json!({ "destinations": outcomes }));
    }
    debug.then(|| json!({ "events": answers }))
}

fn timed_out(output: &Pipelines) -> EventOutcomes {
    output
        .sinks()
        .into_iter()
        .map(|sink| {
            (
                sink.to_string(),
                DestinationOutcome::failed(
                    "no outcome within the debug timeout (delivery may still complete)",
                ),
            )
        })
        .collect()
}
