//! `GET|POST /data`: the Stape Data Client protocol.
//!
//! Accepted: a JSON object (the Data Tag sends it as `text/plain`) or array, form-urlencoded
//! with dot paths (`items.0.item_id=…`), or `GET` with `dtdc` (base64 JSON) or `dtcd` (raw
//! JSON). Query parameters become event keys too; the body's win. Each event is then completed
//! as the Data Client does: `event_name` from `eventName`/`event`/`e_n` (default `Data`),
//! `ip_override` from `ip`/`ipOverride` or the client address, `user_agent` from the header,
//! `language` from `Accept-Language`, flat `email`/`phone` into `user_data`, `timestamp` (Unix
//! seconds), `unique_event_id` (`<ms>_<9 digits>`), and `client_id` from the payload, else the
//! `_dcid` cookie, else a new `dcid.1.<ms>.<random>` that is set as the `_dcid` cookie.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::StatusCode;
use serde_json::{Map, Value};
use tagpipe_core::{EventData, RequestContext, SetCookie, path, random};

use crate::client_ip::normalise_ip;
use crate::error::HttpError;
use crate::events::kind;
use crate::urlencoded;

/// What a `/data` request carried.
pub(crate) struct Parsed {
    pub events: Vec<EventData>,
    /// The payload was a JSON array: answer with an array.
    pub was_array: bool,
}

/// Parses a `/data` request.
pub(crate) fn parse(
    is_get: bool,
    query: &[u8],
    body: &[u8],
    media: Option<&str>,
    accept_arrays: bool,
    max_events: usize,
) -> Result<Parsed, HttpError> {
    let query = urlencoded::parse(query)
        .map_err(|e| HttpError::bad_request(format!("query string: {e}")))?;
    let mut from_query = EventData::new();
    let mut whole: Option<Value> = None;
    for (name, value) in &query {
        match name.as_ref() {
            "dtdc" if is_get => whole = Some(decode_dtdc(value)?),
            "dtcd" if is_get => {
                whole = Some(serde_json::from_str(value.as_ref()).map_err(|e| {
                    HttpError::bad_request(format!("`dtcd` is not valid JSON: {e}"))
                })?);
            }
            _ => set_dotted(&mut from_query, name, value)?,
        }
    }
    let payload = if is_get {
        Payload::Json(whole.unwrap_or(Value::Object(Map::new())))
    } else {
        parse_body(body, media)?
    };
    let (items, was_array) = match payload {
        Payload::Form(event) => (vec![event], false),
        Payload::Json(Value::Object(o)) => (vec![EventData::from(o)], false),
        Payload::Json(Value::Array(a)) if !accept_arrays => {
            let _ = a;
            return Err(HttpError::bad_request(
                "a JSON array of events is not accepted here (data.accept_arrays: false)",
            ));
        }
        Payload::Json(Value::Array(a)) => (crate::events::objects(a, max_events)?, true),
        Payload::Json(other) => {
            return Err(HttpError::bad_request(format!(
                "expected a JSON object or an array of objects, found {}",
                kind(&other)
            )));
        }
    };
    let events = items
        .into_iter()
        .map(|own| {
            let mut event = from_query.clone();
            event.extend(own);
            event
        })
        .collect();
    Ok(Parsed { events, was_array })
}

/// A request's payload: a form body is one event already; JSON is an object or an array.
enum Payload {
    Form(EventData),
    Json(Value),
}

fn parse_body(body: &[u8], media: Option<&str>) -> Result<Payload, HttpError> {
    match media {
        Some("application/x-www-form-urlencoded") => {
            let pairs = urlencoded::parse(body).map_err(HttpError::bad_request)?;
            let mut event = EventData::new();
            for (name, value) in &pairs {
                set_dotted(&mut event, name, value)?;
            }
            Ok(Payload::Form(event))
        }
        None | Some("application/json" | "text/plain") => {
            let text = std::str::from_utf8(body).map_err(|e| {
                HttpError::bad_request(format!(
                    "the body is not valid UTF-8 (at byte {})",
                    e.valid_up_to()
                ))
            })?;
            if text.trim().is_empty() {
                return Ok(Payload::Form(EventData::new()));
            }
            serde_json::from_str(text).map(Payload::Json).map_err(|e| {
                HttpError::bad_request(format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ))
            })
        }
        Some(other) => Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type `{other}`: send JSON (text/plain or application/json) \
                 or application/x-www-form-urlencoded"
            ),
        )),
    }
}

fn decode_dtdc(value: &str) -> Result<Value, HttpError> {
    let value = value.trim();
    let bytes = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ]
    .iter()
    .find_map(|engine| engine.decode(value).ok())
    .ok_or_else(|| HttpError::bad_request("`dtdc` is not valid base64"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::bad_request(format!("`dtdc` does not hold valid JSON: {e}")))
}

fn set_dotted(event: &mut EventData, name: &str, value: &str) -> Result<(), HttpError> {
    path::set(event, name, Value::String(value.to_owned()))
        .map_err(|e| HttpError::bad_request(format!("parameter {e}")))
}

/// The clock and randomness the enrichment uses (injectable for tests).
pub(crate) struct Stamp {
    pub now: SystemTime,
}

impl Stamp {
    pub(crate) fn now() -> Self {
        Self {
            now: SystemTime::now(),
        }
    }

    fn millis(&self) -> u128 {
        self.now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    }
}

/// Nine random decimal digits.
fn nine_digits() -> String {
    format!("{:09}", random::u64() % 1_000_000_000)
}

/// Completes one event as the Data Client does; asks for the `_dcid` cookie when it gave the
/// client its id (new or from the cookie, to renew it).
pub(crate) fn enrich(
    event: &mut EventData,
    client_addr: IpAddr,
    context: &RequestContext,
    stamp: &Stamp,
    cookie_days: u64,
) {
    if !has_text(event, "event_name") {
        let name = ["eventName", "event", "e_n"]
            .iter()
            .find_map(|k| {
                event
                    .get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or("Data")
            .to_owned();
        event.insert("event_name", Value::String(name));
    }
    let ip = ["ip_override", "ip", "ipOverride"]
        .iter()
        .find_map(|k| {
            event
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map_or_else(
            || client_addr.to_string(),
            |s| normalise_ip(s).map_or_else(|| s.to_owned(), |ip| ip.to_string()),
        );
    event.insert("ip_override", Value::String(ip));
    if !has_text(event, "user_agent")
        && let Some(ua) = context.header("user-agent")
    {
        event.insert("user_agent", Value::String(ua.to_owned()));
    }
    if !has_text(event, "language")
        && let Some(lang) = context
            .header("accept-language")
            .and_then(|v| v.split([',', ';']).next())
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*")
    {
        event.insert("language", Value::String(lang.to_ascii_lowercase()));
    }
    for (flat, nested) in [("email", "email_address"), ("phone", "phone_number")] {
        if let Some(v) = event.get(flat).cloned()
            && path::get(event, &format!("user_data.{nested}")).is_none()
        {
            let user_data = event.get_or_insert_with("user_data", || Value::Object(Map::new()));
            if let Value::Object(user_data) = user_data {
                user_data.insert(nested.to_owned(), v);
            }
        }
    }
    let ms = stamp.millis();
    event.get_or_insert_with("timestamp", || Value::from((ms / 1000) as u64));
    event.get_or_insert_with("unique_event_id", || {
        Value::String(format!("{ms}_{}", nine_digits()))
    });
    if !has_text(event, "client_id") {
        let id = context
            .cookie("_dcid")
            .filter(|v| !v.is_empty())
            .map_or_else(|| format!("dcid.1.{ms}.{}", nine_digits()), str::to_owned);
        context.response.set_cookie(SetCookie {
            path: Some("/".into()),
            max_age: Some(cookie_days * 86_400),
            same_site: Some(tagpipe_core::event::SameSite::Lax),
            secure: true,
            ..SetCookie::new("_dcid", id.clone())
        });
        event.insert("client_id", Value::String(id));
    }
}

fn has_text(event: &EventData, key: &str) -> bool {
    event
        .get(key)
        .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
}

/// The JSON answer for one event.
pub(crate) fn receipt(event: &EventData) -> Value {
    serde_json::json!({
        "timestamp": event.get("timestamp").cloned().unwrap_or(Value::Null),
        "unique_event_id": event.get("unique_event_id").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests;
