//! The endpoints' handlers: parse, hand the events to the pipelines, answer.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tagpipe_core::{
    DestinationOutcome, Event, EventData, EventOutcomes, Pipelines, RequestContext,
};

use crate::client_ip::{client_addr, normalise_ip};
use crate::error::HttpError;
use crate::response::{Reply, apply_parts, empty, gif, json};
use crate::server::{Endpoint, Server};
use crate::{body, cors, data_client, events, ga4};

/// Handles a request to one of the ingestion endpoints.
pub(crate) async fn handle(
    server: &Server,
    endpoint: Endpoint,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Reply {
    let (parts, body) = request.into_parts();
    let config = &server.config;
    let origins: &[String] = match endpoint {
        Endpoint::Events => &[],
        Endpoint::Ga4 => &config.ga4.allowed_origins,
        Endpoint::Data => &config.data.allowed_origins,
    };
    let browser = endpoint != Endpoint::Events;
    if parts.method == Method::OPTIONS {
        let mut reply = empty(StatusCode::NO_CONTENT);
        cors::apply_preflight(&mut reply, &parts.headers, origins);
        return reply;
    }
    let client = client_addr(peer, &parts.headers, &config.trusted_proxies);
    // Read now: the headers move into the events' context.
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
            http::HeaderValue::from(wait.as_secs().max(1)),
        );
        cors::apply(&mut reply, origin.as_ref());
        return reply;
    }
    let mut reply = match ingest(server, endpoint, parts, body, client).await {
        Ok(reply) => reply,
        Err(error) => {
            tracing::debug!(source = %server.id, status = %error.status, error = %error.message, "request refused");
            error.into_reply()
        }
    };
    if browser {
        cors::apply(&mut reply, origin.as_ref());
    }
    reply
}

async fn ingest(
    server: &Server,
    endpoint: Endpoint,
    parts: http::request::Parts,
    body: Incoming,
    client: IpAddr,
) -> Result<Reply, HttpError> {
    let config = &server.config;
    if endpoint == Endpoint::Events {
        authorise(&parts.headers, &config.events.auth_keys)?;
    }
    let media = body::media_type(&parts.headers);
    let events_framing = if endpoint == Endpoint::Events {
        Some(events::Framing::from_media_type(media.as_deref())?)
    } else {
        None
    };
    let bytes = body::read(
        body,
        &parts.headers,
        config.max_body_bytes,
        config.read_timeout,
    )
    .await?;
    let debug = config.debug.enabled && is_debug(&parts.headers);
    let http::request::Parts {
        method,
        uri,
        headers,
        ..
    } = parts;
    let query = uri.query().unwrap_or("").as_bytes();
    let mut context = RequestContext::from_headers(headers, Some(client));
    context.debug = debug;
    let context = Arc::new(context);

    let max = config.max_events_per_request;
    let (mut data, answer) = match endpoint {
        Endpoint::Events => {
            let framing = events_framing.unwrap_or(events::Framing::Json);
            (events::parse(&bytes, framing, max)?, Answer::Accepted)
        }
        Endpoint::Ga4 => {
            let user_agent = context.header(header::USER_AGENT);
            let data = ga4::parse_hits(query, &bytes, client, user_agent, max).map_err(|e| {
                if e.contains("are accepted") {
                    HttpError::too_large(e)
                } else {
                    HttpError::bad_request(e)
                }
            })?;
            (data, Answer::NoContent)
        }
        Endpoint::Data => {
            let is_get = method == Method::GET;
            let parsed = data_client::parse(
                is_get,
                query,
                &bytes,
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
            (data, answer)
        }
    };
    for event in &mut data {
        normalise_ip_override(event);
    }
    let count = data.len();
    server.metrics.received(endpoint.into(), count as u64);
    let debug = deliver(server, data, &context).await;
    let mut reply = match (debug, answer) {
        (Some(debug), _) => json(StatusCode::OK, &debug),
        (None, Answer::Accepted) => json(StatusCode::OK, &json!({ "accepted": count })),
        (None, Answer::NoContent) => empty(StatusCode::NO_CONTENT),
        (None, Answer::Json(v)) => json(StatusCode::OK, &v),
        (None, Answer::Gif) => gif(),
    };
    apply_parts(&mut reply, &context.response.snapshot());
    Ok(reply)
}

/// The answer an endpoint gives when not in debug mode.
enum Answer {
    Accepted,
    NoContent,
    Json(Value),
    Gif,
}

fn is_debug(headers: &HeaderMap) -> bool {
    headers
        .get("x-tagpipe-debug")
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
    if let Some(Value::String(ip)) = event.get_mut("ip_override")
        && ip.parse::<IpAddr>().is_err()
        && let Some(bare) = normalise_ip(ip)
    {
        *ip = bare.to_string();
    }
}

/// Sends the events into the pipelines. In debug mode, or when a destination asks for it
/// (`optimistic: false`), waits for every destination's outcome, bounded by a timeout; in
/// debug mode returns the debug answer.
async fn deliver(
    server: &Server,
    data: Vec<EventData>,
    context: &Arc<RequestContext>,
) -> Option<Value> {
    let debug = context.debug;
    // One snapshot for the whole request, even if a reload swaps the pipelines meanwhile.
    let output = server.output.current();
    if !debug && !output.waits_for_delivery() {
        let mut data = data;
        if data.len() == 1
            && let Some(only) = data.pop()
        {
            output.send(Event::new(only, context.clone())).await;
            return None;
        }
        let events = data
            .into_iter()
            .map(|d| Event::new(d, context.clone()))
            .collect();
        output.send_all(events).await;
        return None;
    }
    let (events, acks): (Vec<Event>, Vec<_>) = data
        .into_iter()
        .map(|d| Event::new(d, context.clone()).with_acknowledgement())
        .unzip();
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
