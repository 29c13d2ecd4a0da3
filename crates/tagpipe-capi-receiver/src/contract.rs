//! The Conversions API contract, as documented: what a valid request looks like.

use http::HeaderMap;
use serde_json::Value;

/// Which event names are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// The Stape tag's names and Spotify's API reference names.
    Any,
    /// Only the Stape tag's names (`Page_View`, …, `Custom_Event_1…5`).
    SpotifyTag,
    /// Only Spotify's API reference names (`VIEW`, …, `CUSTOM_EVENT_1…5`).
    SpotifyApi,
}

const TAG_NAMES: &[&str] = &[
    "Page_View",
    "Sign_Up",
    "Lead",
    "View_Product",
    "Add_Cart",
    "Start_Checkout",
    "Purchase",
    "Alias",
    "Custom_Event_1",
    "Custom_Event_2",
    "Custom_Event_3",
    "Custom_Event_4",
    "Custom_Event_5",
];

const API_NAMES: &[&str] = &[
    "VIEW",
    "PRODUCT",
    "CHECK_OUT",
    "ADD_TO_CART",
    "PURCHASE",
    "LEAD",
    "SIGN_UP",
    "CUSTOM_EVENT_1",
    "CUSTOM_EVENT_2",
    "CUSTOM_EVENT_3",
    "CUSTOM_EVENT_4",
    "CUSTOM_EVENT_5",
];

/// What the receiver expects.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The CAPI token expected in `Authorization: Bearer …`.
    pub token: String,
    /// The path (default `/capi-direct/events/`).
    pub path: String,
    /// Accepted event names.
    pub names: Names,
    /// Require `event_id` on every event (the API reference does). Default: `true`.
    pub require_event_id: bool,
    /// Require `event_time` to be in the past. Default: `false` (vectors use fixed clocks).
    pub require_past_event_time: bool,
    /// Load tests: only count the events of each request (no validation, nothing stored),
    /// answering 200. Default: `false`.
    pub count_only: bool,
}

impl ReceiverConfig {
    /// Expects `token`, the default path, any known event name, and `event_id` on every event.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            path: "/capi-direct/events/".to_owned(),
            names: Names::Any,
            require_event_id: true,
            require_past_event_time: false,
            count_only: false,
        }
    }
}

fn is_hex64(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `2025-05-27T20:16:56.000Z`-style UTC timestamps (RFC 3339 with `Z`).
fn is_utc_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || *b.last().unwrap_or(&0) != b'Z' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| -> u32 { s[r].parse().unwrap_or(99) };
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) <= 23
        && num(14..16) <= 59
        && num(17..19) <= 60
        && (b.len() == 20 || (b[19] == b'.' && b[20..b.len() - 1].iter().all(u8::is_ascii_digit)))
}

/// Every way `method path headers body` breaks the contract (empty when valid).
pub fn check(
    config: &ReceiverConfig,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
) -> Vec<String> {
    let mut v = Vec::new();
    if method != "POST" {
        v.push(format!("method must be POST, got {method}"));
    }
    if path != config.path {
        v.push(format!("path must be {}, got {path}", config.path));
    }
    let auth = headers.get("authorization").and_then(|h| h.to_str().ok());
    if auth != Some(format!("Bearer {}", config.token).as_str()) {
        v.push("Authorization must be `Bearer <CAPI token>`".to_owned());
    }
    let ct = headers
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        v.push(format!("Content-Type must be application/json, got `{ct}`"));
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            v.push(format!("body is not JSON: {e}"));
            return v;
        }
    };
    let Some(ce) = body.get("conversion_events").and_then(Value::as_object) else {
        v.push("body must be {\"conversion_events\": {…}}".to_owned());
        return v;
    };
    if ce
        .get("capi_connection_id")
        .is_none_or(|c| c.as_str().is_none_or(str::is_empty))
    {
        v.push("conversion_events.capi_connection_id must be a non-empty string".to_owned());
    }
    let Some(events) = ce
        .get("events")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    else {
        v.push("conversion_events.events must be a non-empty array".to_owned());
        return v;
    };
    for (i, e) in events.iter().enumerate() {
        check_event(config, i, e, now_ms, &mut v);
    }
    v
}

#[allow(clippy::many_single_char_names)]
fn check_event(config: &ReceiverConfig, i: usize, e: &Value, now_ms: u64, v: &mut Vec<String>) {
    let p = |field: &str| format!("events[{i}].{field}");
    let Some(e) = e.as_object() else {
        v.push(format!("events[{i}] must be an object"));
        return;
    };
    let known = [
        "event_name",
        "event_id",
        "event_time",
        "user_data",
        "event_details",
        "event_source_url",
        "action_source",
        "opt_out_targeting",
    ];
    for key in e.keys() {
        if !known.contains(&key.as_str()) {
            v.push(format!("{}: unknown field", p(key)));
        }
    }
    match e.get("event_name").and_then(Value::as_str) {
        None | Some("") => v.push(format!("{} is required", p("event_name"))),
        Some(name) => {
            let ok = match config.names {
                Names::Any => TAG_NAMES.contains(&name) || API_NAMES.contains(&name),
                Names::SpotifyTag => TAG_NAMES.contains(&name),
                Names::SpotifyApi => API_NAMES.contains(&name),
            };
            // The Stape tag passes unmapped names through; accept them under `Any` only when
            // they look like identifiers, so typos in tables still show up.
            let passthrough = config.names == Names::Any
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !ok && !passthrough {
                v.push(format!(
                    "{} `{name}` is not an accepted event name",
                    p("event_name")
                ));
            }
        }
    }
    match e.get("event_id") {
        Some(Value::String(s)) if !s.is_empty() => {}
        None if !config.require_event_id => {}
        _ => v.push(format!("{} must be a non-empty string", p("event_id"))),
    }
    match e.get("event_time").and_then(Value::as_str) {
        Some(t) if is_utc_iso8601(t) => {
            if config.require_past_event_time && t > format_now(now_ms).as_str() {
                v.push(format!("{} must be in the past", p("event_time")));
            }
        }
        _ => v.push(format!("{} must be an ISO-8601 UTC time", p("event_time"))),
    }
    match e.get("user_data").and_then(Value::as_object) {
        None => v.push(format!("{} is required", p("user_data"))),
        Some(u) => {
            let ids = [
                "ip_address",
                "device_id",
                "hashed_emails",
                "hashed_phone_number",
            ];
            if !ids.iter().any(|k| u.contains_key(*k)) {
                v.push(format!(
                    "{} needs one of {}",
                    p("user_data"),
                    ids.join(", ")
                ));
            }
            for (k, val) in u {
                match k.as_str() {
                    "ip_address" | "device_id" => {
                        if val.as_str().is_none_or(str::is_empty) {
                            v.push(format!(
                                "{} must be a non-empty string",
                                p(&format!("user_data.{k}"))
                            ));
                        }
                    }
                    "hashed_emails" => {
                        if !val
                            .as_array()
                            .is_some_and(|a| !a.is_empty() && a.iter().all(is_hex64))
                        {
                            v.push(format!(
                                "{} must be an array of SHA-256 hex",
                                p("user_data.hashed_emails")
                            ));
                        }
                    }
                    "hashed_phone_number" => {
                        if !is_hex64(val) {
                            v.push(format!(
                                "{} must be SHA-256 hex",
                                p("user_data.hashed_phone_number")
                            ));
                        }
                    }
                    other => v.push(format!(
                        "{}: unknown field",
                        p(&format!("user_data.{other}"))
                    )),
                }
            }
        }
    }
    if let Some(d) = e.get("event_details") {
        match d.as_object() {
            None => v.push(format!("{} must be an object", p("event_details"))),
            Some(d) => {
                for (k, val) in d {
                    let ok = match k.as_str() {
                        "amount" => val.is_number(),
                        "currency" => val.as_str().is_some_and(|c| {
                            c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
                        }),
                        "content_name" | "content_category" => val.is_string(),
                        _ => false,
                    };
                    if !ok {
                        v.push(format!(
                            "{} has a wrong type or is unknown",
                            p(&format!("event_details.{k}"))
                        ));
                    }
                }
            }
        }
    }
    if let Some(u) = e.get("event_source_url")
        && !u
            .as_str()
            .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
    {
        v.push(format!(
            "{} must start with http:// or https://",
            p("event_source_url")
        ));
    }
    if let Some(a) = e.get("action_source")
        && !matches!(a.as_str(), Some("WEB" | "APP" | "OFFLINE"))
    {
        v.push(format!(
            "{} must be WEB, APP or OFFLINE",
            p("action_source")
        ));
    }
    if let Some(o) = e.get("opt_out_targeting")
        && !o.is_boolean()
    {
        v.push(format!("{} must be a boolean", p("opt_out_targeting")));
    }
}

/// `now_ms` as an ISO-8601 UTC string, for comparisons.
fn format_now(now_ms: u64) -> String {
    tagpipe_core::time::rfc3339(
        i64::try_from(now_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000),
        3,
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h
    }

    #[test]
    fn a_valid_request_passes_and_every_violation_is_named() {
        let cfg = ReceiverConfig::new("t");
        let good = json!({"conversion_events": {"capi_connection_id": "c", "events": [{
            "event_name": "Purchase", "event_id": "e1", "event_time": "2025-05-27T20:16:56.000Z",
            "action_source": "WEB", "event_source_url": "https://e.com",
            "event_details": {"amount": 1.5, "currency": "EUR"},
            "user_data": {"hashed_emails": ["973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"], "ip_address": "1.1.1.1"}
        }]}});
        let body = serde_json::to_vec(&good).unwrap();
        assert!(
            check(
                &cfg,
                "POST",
                "/capi-direct/events/",
                &headers("t"),
                &body,
                0
            )
            .is_empty()
        );
        let bad = json!({"conversion_events": {"capi_connection_id": "", "events": [{
            "event_name": "Bad Name!", "event_time": "2025-05-26T24:00:00.000Z",
            "action_source": "TV", "event_source_url": "ftp://x",
            "event_details": {"amount": "123"},
            "user_data": {"hashed_emails": ["not-hex"]}
        }]}});
        let v = check(
            &cfg,
            "GET",
            "/x",
            &headers("wrong"),
            &serde_json::to_vec(&bad).unwrap(),
            0,
        );
        for needle in [
            "method",
            "path",
            "Authorization",
            "capi_connection_id",
            "event_name",
            "event_id",
            "event_time",
            "hashed_emails",
            "event_source_url",
            "action_source",
            "amount",
        ] {
            assert!(
                v.iter().any(|m| m.contains(needle)),
                "{needle} missing in {v:?}"
            );
        }
    }

    #[test]
    fn clock_formatting() {
        assert_eq!(format_now(1_748_304_000_000), "2025-05-27T00:00:00.000Z");
        assert!(is_utc_iso8601("2025-05-27T00:00:00.000Z"));
        assert!(!is_utc_iso8601("2025-05-26T24:00:00.000Z"));
        assert!(!is_utc_iso8601("2025-05-00T10:00:00.000Z"));
    }
}
