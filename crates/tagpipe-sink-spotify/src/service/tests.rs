//! Shared preparation: which Spotify sinks make the same CAPI events, and the copies they share.

use std::sync::Arc;

use serde_json::{Value, json};
use tagpipe_core::{
    ComponentId, Event, EventData, Prepare, RequestContext, SinkCalls, SinkConfig, SinkContext,
};

use super::Ready;
use crate::config::SpotifySinkConfig;

/// The preparer of a Spotify sink built from `settings` (plus a token and a connection).
async fn preparer(settings: Value) -> Arc<dyn Prepare> {
    let mut config = json!({"auth_token": "token-a", "connection_id": "conn-a"});
    config
        .as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let config: SpotifySinkConfig = serde_json::from_value(config).unwrap();
    let context = SinkContext {
        id: ComponentId::parse("spotify").unwrap(),
        logs: None,
    };
    match config.build(context).await.unwrap().service {
        SinkCalls::Prepared(sink) => sink.prepare,
        SinkCalls::Events(_) => panic!("a Spotify sink prepares its events"),
    }
}

fn event(data: Value) -> Event {
    Event::new(
        EventData::try_from(data).unwrap(),
        Arc::new(RequestContext::detached()),
    )
}

/// The CAPI JSON of a prepared item to send, as the sink keeps it (in either form).
fn json_bytes(prepared: &tagpipe_core::Prepared) -> Option<&bytes::Bytes> {
    if let Some(encoded) = prepared.as_encoded() {
        return Some(&encoded.bytes);
    }
    match prepared.downcast_ref::<Ready>()? {
        Ready::Send(item) => Some(&item.json),
        Ready::Done(_) => None,
    }
}

/// The CAPI JSON of a prepared item to send.
fn json_of(prepared: &tagpipe_core::Prepared) -> Option<Vec<u8>> {
    json_bytes(prepared).map(|json| json.to_vec())
}

#[tokio::test]
async fn sinks_that_differ_only_in_delivery_make_the_same_events() {
    let a = preparer(json!({"event_details": {"content_category": "shoes"}})).await;
    let b = preparer(json!({
        "connection_id": "conn-b",
        "auth_token": "token-b",
        "endpoint": "http://127.0.0.1:9/capi-direct/events/",
        "batch": {"max_events": 10},
        "concurrency": 2,
        "optimistic": true,
        "log_type": "always",
        "tag_name": "second account",
        "event_details": {"content_category": "shoes"},
    }))
    .await;
    assert!(a.same_items_as(&*b) && b.same_items_as(&*a));

    for other in [
        json!({"event_details": {"content_category": "boots"}}),
        json!({"event_details": {"content_category": "shoes"}, "action_source": "WEB"}),
        json!({"event_details": {"content_category": "shoes"}, "derive_event_id": false}),
        json!({"event_details": {"content_category": "shoes"}, "opt_out_targeting": true}),
        json!({"event_details": {"content_category": "shoes"},
               "server_event_data": {"event_source_url": "https://example.com/"}}),
        json!({"event_details": {"content_category": "shoes"},
               "user_data": {"device_id": "d-1"}}),
        json!({"event_details": {"content_category": "shoes"}, "device_id_field": "device"}),
    ] {
        let c = preparer(other.clone()).await;
        assert!(!a.same_items_as(&*c), "{other} makes other events");
    }
}

#[tokio::test]
async fn an_event_to_send_is_copied_and_an_outcome_is_not() {
    let a = preparer(json!({})).await;
    let mut sent = a.prepare(&event(json!({
        "event_name": "purchase",
        "client_id": "1.2",
        "ip_override": "203.0.113.7",
        "value": 10,
        "currency": "EUR",
    })));
    let copy = a.copy(&mut sent).expect("an event to send is copied");
    let json = json_of(&copy).expect("the copy is an event to send");
    assert_eq!(Some(json.clone()), json_of(&sent));
    // One JSON, shared: not copied per sink.
    let bytes = |prepared: &tagpipe_core::Prepared| json_bytes(prepared).map(|json| json.as_ptr());
    assert_eq!(
        bytes(&sent).expect("the original is sent"),
        bytes(&copy).expect("the copy is sent")
    );
    // The next event's JSON follows in the same chunk (no allocation of its own), even when
    // another sink prepared one in between: each sink has its own chunk.
    let other_sink = preparer(json!({"action_source": "WEB"})).await;
    let between = other_sink.prepare(&event(json!({
        "event_name": "purchase",
        "client_id": "9.9",
        "ip_override": "203.0.113.9",
    })));
    assert!(bytes(&between).is_some());
    let next = a.prepare(&event(json!({
        "event_name": "purchase",
        "client_id": "1.3",
        "ip_override": "203.0.113.8",
    })));
    let first = json.len();
    assert_eq!(
        bytes(&next).map(|at| at as usize),
        bytes(&sent).map(|at| at as usize + first)
    );
    let capi: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(capi["event_name"], "purchase");

    let mut failed = a.prepare(&event(json!({"event_name": "purchase"})));
    assert!(json_of(&failed).is_none(), "no user identifier: not sent");
    assert!(a.copy(&mut failed).is_none());
}

/// Where a prepared item's JSON starts, when it is to be sent.
fn json_at(prepared: &tagpipe_core::Prepared) -> Option<usize> {
    json_bytes(prepared).map(|json| json.as_ptr() as usize)
}

fn purchase(client: usize) -> Event {
    event(json!({
        "event_name": "purchase",
        "client_id": format!("1.{client}"),
        "ip_override": "203.0.113.7",
    }))
}

/// However many sinks one thread prepares for in turn, each keeps its own chunk: a sink's next
/// event follows its previous one (a chunk shared out by sink, or dropped when too many sinks
/// took turns, would give each event a fresh chunk of its own).
#[tokio::test]
async fn many_sinks_taking_turns_each_keep_their_chunk() {
    let mut sinks = Vec::new();
    for i in 0..12 {
        sinks.push(preparer(json!({"event_details": {"content_category": format!("c{i}")}})).await);
    }
    let first: Vec<_> = (0..sinks.len())
        .map(|i| sinks[i].prepare(&purchase(i)))
        .collect();
    let second: Vec<_> = (0..sinks.len())
        .map(|i| sinks[i].prepare(&purchase(i)))
        .collect();
    for (i, (first, second)) in first.iter().zip(&second).enumerate() {
        let len = json_of(first).expect("sent").len();
        assert_eq!(
            json_at(second),
            json_at(first).map(|at| at + len),
            "sink {i}"
        );
    }
}

/// An event whose JSON is larger than a chunk gets a chunk of its own size; the events after it
/// are written as usual.
#[tokio::test]
async fn an_event_larger_than_a_chunk_is_sent_whole() {
    let sink = preparer(json!({})).await;
    let url = format!(
        "https://shop.example.com/?q={}",
        "x".repeat(super::JSON_CHUNK)
    );
    let large = sink.prepare(&event(json!({
        "event_name": "purchase",
        "client_id": "1.1",
        "ip_override": "203.0.113.7",
        "page_location": url,
    })));
    let large: Value = serde_json::from_slice(&json_of(&large).expect("sent")).unwrap();
    assert_eq!(large["event_source_url"], url.as_str());
    let next = sink.prepare(&purchase(2));
    let next: Value = serde_json::from_slice(&json_of(&next).expect("sent")).unwrap();
    assert_eq!(next["event_name"], "purchase");
}

/// An event to send is an [`tagpipe_core::Encoded`] event, its label where its name is in the
/// JSON, with its trace id and debug flag — unless the name needed escaping (then it is not in
/// the JSON as it is): that event is boxed with its name copied. The driver's items read the
/// same name either way.
#[tokio::test]
async fn an_event_to_send_is_encoded_in_place_unless_its_name_is_escaped() {
    let sink = preparer(json!({})).await;
    let mut context = RequestContext::detached();
    context.trace_id = Some("trace-1".to_owned());
    context.debug = true;
    let context = Arc::new(context);
    let with_name = |name: &str| {
        Event::new(
            EventData::try_from(json!({
                "event_name": name,
                "client_id": "1.2",
                "ip_override": "203.0.113.7",
            }))
            .unwrap(),
            context.clone(),
        )
    };

    let plain = sink.prepare(&with_name("purchase"));
    let encoded = plain.as_encoded().expect("a plain name: encoded in place");
    let label = encoded.label.start as usize..encoded.label.end as usize;
    assert_eq!(&encoded.bytes[label], b"purchase");
    assert_eq!(encoded.trace_id.as_deref(), Some("trace-1"));
    assert!(encoded.debug);
    let item = super::Item::from_encoded(3, plain.into_encoded().unwrap());
    assert_eq!((item.index, item.name()), (3, "purchase"));

    let escaped = sink.prepare(&with_name("pur\"chase"));
    assert!(
        escaped.as_encoded().is_none(),
        "an escaped name is not in the JSON as it is"
    );
    match escaped.downcast_ref::<Ready>() {
        Some(Ready::Send(item)) => {
            assert_eq!(item.name(), "pur\"chase");
            assert_eq!(item.trace_id.as_deref(), Some("trace-1"));
            let capi: Value = serde_json::from_slice(&item.json).unwrap();
            assert_eq!(capi["event_name"], "pur\"chase");
        }
        _ => panic!("an escaped name: a boxed item to send"),
    }
}
