//! Events as NATS messages: a JSON body holding the event data and what the delivery tier
//! needs of the request context — received time, client address, headers, cookies and trace
//! id. The request's `Authorization`, `Proxy-Authorization` and `Cookie` headers are not carried
//! (the cookies are, parsed); nor is anything that can only act on the original HTTP answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tagpipe_core::{Event, EventData, RequestContext};

#[derive(Serialize)]
struct Outgoing<'a> {
    data: &'a EventData,
    context: ContextOut<'a>,
}

#[derive(Serialize)]
struct ContextOut<'a> {
    received_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(&'a str, &'a str)>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    cookies: &'a [(String, String)],
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct Incoming {
    data: EventData,
    #[serde(default)]
    context: ContextIn,
}

#[derive(Deserialize, Default)]
struct ContextIn {
    #[serde(default)]
    received_at_ms: u64,
    #[serde(default)]
    client_addr: Option<IpAddr>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    cookies: Vec<(String, String)>,
    #[serde(default)]
    trace_id: Option<String>,
}

/// The message body for an event.
pub fn encode(event: &Event) -> Bytes {
    let context = &event.context;
    let headers = context.persisted_headers().collect();
    let outgoing = Outgoing {
        data: &event.data,
        context: ContextOut {
            received_at_ms: context.received_ms(),
            client_addr: context.client_addr,
            headers,
            cookies: &context.cookies,
            trace_id: context.trace_id.as_deref(),
        },
    };
    // Serialising a map of JSON values and strings cannot fail.
    Bytes::from(serde_json::to_vec(&outgoing).unwrap_or_default())
}

/// The event data and request context of a message body.
pub fn decode(body: &[u8]) -> Result<(EventData, Arc<RequestContext>), String> {
    let incoming: Incoming =
        serde_json::from_slice(body).map_err(|e| format!("not a tagpipe event message: {e}"))?;
    let ContextIn {
        received_at_ms,
        client_addr,
        headers,
        cookies,
        trace_id,
    } = incoming.context;
    let mut header_map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            header_map.append(name, value);
        }
    }
    let context = RequestContext {
        received_at: UNIX_EPOCH + Duration::from_millis(received_at_ms),
        client_addr,
        headers: header_map,
        cookies,
        trace_id,
        ..RequestContext::detached()
    };
    Ok((incoming.data, Arc::new(context)))
}
