//! Data-Client requests and the exact event data they become.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tagpipe_core::RequestContext;

use super::*;

const NOW_MS: u64 = 1_748_377_016_123;

fn context(cookie: Option<&str>) -> RequestContext {
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", HeaderValue::from_static("UA/1.0"));
    headers.insert(
        "accept-language",
        HeaderValue::from_static("de-DE,de;q=0.9,en;q=0.8"),
    );
    if let Some(c) = cookie {
        headers.insert("cookie", HeaderValue::from_str(c).unwrap());
    }
    RequestContext::from_headers(headers, None)
}

/// Parses and enriches like the endpoint does; returns the events with the random parts checked
/// and replaced by `<id>`.
fn run(
    is_get: bool,
    query: &str,
    body: &str,
    media: Option<&str>,
    cookie: Option<&str>,
) -> (Vec<Value>, RequestContext) {
    let cx = context(cookie);
    let parsed = parse(is_get, query.as_bytes(), body.as_bytes(), media, true, 10).expect("valid");
    let stamp = Stamp {
        now: UNIX_EPOCH + Duration::from_millis(NOW_MS),
    };
    let events = parsed
        .events
        .into_iter()
        .map(|mut e| {
            enrich(&mut e, "198.51.100.1".parse().unwrap(), &cx, &stamp, 395);
            let id = e["unique_event_id"].as_str().unwrap().to_owned();
            let (ms, digits) = id.split_once('_').unwrap();
            assert_eq!(ms, NOW_MS.to_string());
            assert!(
                digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()),
                "{id}"
            );
            e.insert("unique_event_id", json!("<id>"));
            e.into_value()
        })
        .collect();
    (events, cx)
}

#[test]
fn json_object_sent_as_text_plain() {
    let body = r#"{"event":"purchase","value":10,"email":"a@b.c","client_id":"c-1","ip":"[2001:db8::2]:443"}"#;
    let (events, cx) = run(false, "v=1", body, Some("text/plain"), None);
    assert_eq!(
        events[0],
        json!({
            "v": "1",
            "event": "purchase",
            "event_name": "purchase",
            "value": 10,
            "email": "a@b.c",
            "user_data": {"email_address": "a@b.c"},
            "client_id": "c-1",
            "ip": "[2001:db8::2]:443",
            "ip_override": "2001:db8::2",
            "user_agent": "UA/1.0",
            "language": "de-de",
            "timestamp": NOW_MS / 1000,
            "unique_event_id": "<id>"
        })
    );
    assert!(
        cx.response.snapshot().cookies.is_empty(),
        "a payload client_id sets no cookie"
    );
}

#[test]
fn form_with_dot_paths_and_query_parameters() {
    let body = "eventName=add_to_cart&items.0.item_id=SKU1&items.0.price=9.5&items.1.item_id=SKU2&phone=%2B1%20555";
    let (events, cx) = run(
        false,
        "page_location=https%3A%2F%2Fe.com&eventName=ignored",
        body,
        Some("application/x-www-form-urlencoded"),
        Some("_dcid=dcid.1.1.42"),
    );
    assert_eq!(
        events[0],
        json!({
            "page_location": "https://e.com",
            "eventName": "add_to_cart",
            "event_name": "add_to_cart",
            "items": [{"item_id": "SKU1", "price": "9.5"}, {"item_id": "SKU2"}],
            "phone": "+1 555",
            "user_data": {"phone_number": "+1 555"},
            "client_id": "dcid.1.1.42",
            "ip_override": "198.51.100.1",
            "user_agent": "UA/1.0",
            "language": "de-de",
            "timestamp": NOW_MS / 1000,
            "unique_event_id": "<id>"
        })
    );
    let cookies = cx.response.snapshot().cookies;
    assert_eq!(cookies.len(), 1);
    assert_eq!(
        cookies[0].to_string(),
        "_dcid=dcid.1.1.42; Path=/; Max-Age=34128000; SameSite=Lax; Secure"
    );
}

#[test]
fn get_with_dtdc_and_a_new_client_id() {
    let payload = base64::engine::general_purpose::STANDARD
        .encode(r#"{"e_n":"page_view","page_title":"Hi"}"#);
    let query = format!("dtdc={}", urlencode(&payload));
    let (events, cx) = run(true, &query, "", None, None);
    let client_id = events[0]["client_id"].as_str().unwrap().to_owned();
    assert!(
        client_id.starts_with(&format!("dcid.1.{NOW_MS}.")),
        "{client_id}"
    );
    let mut expected = json!({
        "e_n": "page_view",
        "event_name": "page_view",
        "page_title": "Hi",
        "ip_override": "198.51.100.1",
        "user_agent": "UA/1.0",
        "language": "de-de",
        "timestamp": NOW_MS / 1000,
        "unique_event_id": "<id>"
    });
    expected["client_id"] = json!(client_id);
    assert_eq!(events[0], expected);
    assert_eq!(cx.response.snapshot().cookies[0].value, client_id);
}

#[test]
fn get_with_dtcd_raw_json() {
    let (events, _) = run(
        true,
        "dtcd=%7B%22event_name%22%3A%22lead%22%7D",
        "",
        None,
        Some("_dcid=x"),
    );
    assert_eq!(events[0]["event_name"], "lead");
    assert_eq!(events[0]["client_id"], "x");
}

#[test]
fn an_array_of_events_and_the_default_name() {
    let (events, _) = run(
        false,
        "",
        r#"[{"a":1},{"eventName":"b"}]"#,
        Some("application/json"),
        Some("_dcid=k"),
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_name"], "Data");
    assert_eq!(events[1]["event_name"], "b");
}

#[test]
fn refusals() {
    let e = |is_get: bool, q: &str, b: &str, m: Option<&str>, arrays: bool| {
        parse(is_get, q.as_bytes(), b.as_bytes(), m, arrays, 2)
            .err()
            .expect("refused")
    };
    assert_eq!(
        e(false, "", "[{}]", None, false).status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        e(false, "", "[{},{},{}]", None, true).status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        e(false, "", "{", None, true).status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        e(false, "", "x", Some("image/png"), true).status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(
        e(true, "dtdc=%%%", "", None, true)
            .message
            .contains("query string")
    );
    assert!(
        e(true, "dtdc=bm90IGpzb24", "", None, true)
            .message
            .contains("valid JSON")
    );
    assert!(
        e(false, "", "\"text\"", None, true)
            .message
            .contains("found a string")
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
