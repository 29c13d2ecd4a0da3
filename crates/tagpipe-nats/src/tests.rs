//! Unit tests: the message format and the configuration checks. The sink and source against a
//! real NATS server are tested end to end (`tests/e2e/nats.rs`).

use std::sync::Arc;

use serde_json::json;
use tagpipe_core::{Event, RequestContext, SinkConfig, SourceConfig};

use crate::{NatsSinkConfig, NatsSourceConfig, decode, encode};

fn context() -> RequestContext {
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", "Mozilla/5.0".parse().unwrap());
    headers.insert("authorization", "Bearer secret-key".parse().unwrap());
    headers.insert("cookie", "_dcid=abc; x=1".parse().unwrap());
    headers.insert("trace-id", "t-1".parse().unwrap());
    RequestContext::from_headers(headers, Some("203.0.113.7".parse().unwrap()))
}

#[test]
fn an_event_and_its_request_context_survive_the_trip() {
    let data = json!({"event_name": "purchase", "event_id": "e-1", "value": 59.9,
        "user_data": {"email_address": "jane@example.com"}});
    let data = tagpipe_core::EventData::try_from(data).unwrap();
    let event = Event::new(data.clone(), Arc::new(context()));
    let body = encode(&event);
    let (decoded, context) = decode(&body).expect("decodes");
    assert_eq!(decoded, data);
    assert_eq!(context.client_addr, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(context.cookie("_dcid"), Some("abc"));
    assert_eq!(context.trace_id.as_deref(), Some("t-1"));
    assert_eq!(context.header("user-agent"), Some("Mozilla/5.0"));
    let received = |c: &RequestContext| {
        c.received_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(received(&context), received(&event.context));
}

#[test]
fn credentials_of_the_original_request_are_not_carried() {
    let event = Event::new(tagpipe_core::EventData::new(), Arc::new(context()));
    let body = String::from_utf8(encode(&event).to_vec()).unwrap();
    assert!(!body.contains("secret-key"), "{body}");
    assert!(!body.contains("authorization"), "{body}");
}

#[test]
fn a_body_that_is_not_an_event_message_is_refused_with_the_reason() {
    let error = decode(b"{\"event_name\": \"x\"}").unwrap_err();
    assert!(error.contains("not a tagpipe event message"), "{error}");
}

fn sink(yaml: &str) -> NatsSinkConfig {
    serde_saphyr::from_str(yaml).expect("parses")
}

fn source(yaml: &str) -> NatsSourceConfig {
    serde_saphyr::from_str(yaml).expect("parses")
}

#[test]
fn defaults_need_no_settings() {
    assert!(sink("{}").validate().is_empty());
    let s = source("{}");
    assert!(s.validate().is_empty());
    assert_eq!(s.consumer, "tagpipe");
    assert_eq!(s.max_deliver, 5);
    assert_eq!(s.stream.name, "TAGPIPE");
}

#[test]
fn bad_settings_are_named() {
    let problems = sink("subject: 'a.*'\nconnection: {urls: ['not a url'], user: u}\nstream: {replicas: 2, name: 'a.b'}\nconcurrency: 0").validate();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for field in [
        "subject",
        "connection.urls.0",
        "connection.user",
        "stream.name",
        "concurrency",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    let problems = source("consumer: 'a.b'\nmax_deliver: 0\nack_wait: 10ms").validate();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["consumer", "max_deliver", "ack_wait"]);
}

#[test]
fn one_urls_entry_may_list_several_servers() {
    let s = sink("connection: {urls: ['nats://a:4222, nats://b:4222']}");
    assert!(s.validate().is_empty(), "{:?}", s.validate());
    let bad = sink("connection: {urls: ['nats://a:4222,not a url']}");
    assert_eq!(bad.validate()[0].field, "connection.urls.0");
}

#[test]
fn the_dead_letter_sink_is_declared_to_the_loader() {
    assert_eq!(
        source("dead_letter: file/dead").dead_letter(),
        Some("file/dead")
    );
    assert_eq!(source("{}").dead_letter(), None);
}
