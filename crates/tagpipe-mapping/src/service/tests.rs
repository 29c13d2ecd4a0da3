//! The mapping processor on real events, through its tower layer.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tagpipe_core::{ComponentId, Disposition, Event, EventData, ProcessorConfig, RequestContext};
use tower::{Layer, Service, ServiceExt};

use crate::{Mapping, MappingConfig, MappingLayer};

fn config(yaml_like: Value) -> MappingConfig {
    serde_json::from_value(yaml_like).expect("valid config")
}

/// Runs `event` through a mapping built from `cfg`; returns the disposition and what reached the
/// inner service.
async fn run(cfg: Value, event: Value) -> (Disposition, Option<Value>) {
    run_data(cfg, EventData::try_from(event).unwrap()).await
}

/// [`run`] with event data as it is given.
async fn run_data(cfg: Value, data: EventData) -> (Disposition, Option<Value>) {
    let cfg = config(cfg);
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let seen = Arc::new(Mutex::new(None));
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |e: Event| {
            *seen.lock().unwrap() = Some(e.data.to_value());
            std::future::ready(Ok::<_, tagpipe_core::BoxError>(Disposition::Forwarded))
        })
    };
    let layer = MappingLayer::new(Mapping::new(
        Arc::new(cfg),
        ComponentId::parse("mapping").unwrap(),
    ));
    let mut svc = layer.layer(inner);
    let event = Event::new(data, Arc::new(RequestContext::detached()));
    let d = svc.ready().await.unwrap().call(event).await.unwrap();
    let seen = seen.lock().unwrap().take();
    (d, seen)
}

#[tokio::test]
async fn inherit_uses_the_spotify_tag_table_and_passes_unmapped_names() {
    let cfg = json!({"event_name": {"method": "inherit"}});
    let (_, out) = run(cfg.clone(), json!({"event_name": "add_to_cart"})).await;
    assert_eq!(out.unwrap()["event_name"], "Add_Cart");
    let (_, out) = run(cfg.clone(), json!({"event_name": "gtm.dom"})).await;
    assert_eq!(out.unwrap()["event_name"], "Page_View");
    let (_, out) = run(cfg, json!({"event_name": "my_event"})).await;
    assert_eq!(out.unwrap()["event_name"], "my_event");
}

#[tokio::test]
async fn the_api_table_custom_entries_and_dropping_unmapped_names() {
    let cfg = json!({"event_name": {"method": "inherit", "table": "spotify_api",
                     "names": {"newsletter": "SIGN_UP", "purchase": "CUSTOM_EVENT_1"}, "unmapped": "drop"}});
    let (_, out) = run(cfg.clone(), json!({"event_name": "begin_checkout"})).await;
    assert_eq!(out.unwrap()["event_name"], "CHECK_OUT");
    let (_, out) = run(cfg.clone(), json!({"event_name": "newsletter"})).await;
    assert_eq!(out.unwrap()["event_name"], "SIGN_UP");
    let (_, out) = run(cfg.clone(), json!({"event_name": "purchase"})).await;
    assert_eq!(
        out.unwrap()["event_name"],
        "CUSTOM_EVENT_1",
        "names override the table"
    );
    let (d, out) = run(cfg, json!({"event_name": "scroll"})).await;
    assert_eq!(
        d,
        Disposition::Skipped("mapping: event `scroll` has no mapped name".into())
    );
    assert!(out.is_none());
}

#[tokio::test]
async fn standard_and_custom_set_a_fixed_name() {
    let (_, out) = run(
        json!({"event_name": {"method": "standard", "name": "Lead"}}),
        json!({"event_name": "x"}),
    )
    .await;
    assert_eq!(out.unwrap()["event_name"], "Lead");
    let (_, out) = run(
        json!({"event_name": {"method": "custom", "name": "Custom_Event_3"}}),
        json!({}),
    )
    .await;
    assert_eq!(out.unwrap()["event_name"], "Custom_Event_3");
}

#[tokio::test]
async fn operations_apply_in_order_on_dotted_paths() {
    let cfg = json!({"operations": [
        {"set": {"path": "action_source", "value": "WEB"}},
        {"set": {"path": "user_data.ip_address", "from": "ip_override"}},
        {"set": {"path": "explicit_null", "value": null}},
        {"copy": {"from": "items.0.price", "to": "first_price"}},
        {"rename": {"from": "transaction_id", "to": "event_id"}},
        {"delete": "x-ga-mp2-user_properties"},
        {"set": {"path": "missing_source", "from": "does.not.exist"}},
        {"rename": {"from": "absent", "to": "still_absent"}}
    ]});
    let (_, out) = run(
        cfg,
        json!({"event_name": "purchase", "ip_override": "1.2.3.4", "transaction_id": "T1",
               "items": [{"price": 9.5}], "x-ga-mp2-user_properties": {"a": 1}}),
    )
    .await;
    assert_eq!(
        out.unwrap(),
        json!({"event_name": "purchase", "ip_override": "1.2.3.4", "event_id": "T1",
               "items": [{"price": 9.5}], "action_source": "WEB",
               "user_data": {"ip_address": "1.2.3.4"}, "explicit_null": null, "first_price": 9.5})
    );
}

#[tokio::test]
async fn filters_skip_with_a_reason() {
    let cases = [
        (
            json!({"filter": {"allow_events": ["purchase"]}}),
            json!({"event_name": "page_view"}),
            "filter: event `page_view` is not in allow_events",
        ),
        (
            json!({"filter": {"deny_events": ["scroll"]}}),
            json!({"event_name": "scroll"}),
            "filter: event `scroll` is in deny_events",
        ),
        (
            json!({"filter": {"require_fields": ["user_data.email_address"]}}),
            json!({"event_name": "x", "user_data": {"email_address": ""}}),
            "filter: required field `user_data.email_address` is missing",
        ),
        (
            json!({"filter": {"absent_fields": ["x-ga-mp2-seg"]}}),
            json!({"x-ga-mp2-seg": "1"}),
            "filter: field `x-ga-mp2-seg` must be absent",
        ),
    ];
    for (cfg, event, reason) in cases {
        let (d, out) = run(cfg, event).await;
        assert_eq!(d, Disposition::Skipped(reason.into()));
        assert!(out.is_none());
    }
    let (d, out) = run(
        json!({"filter": {"allow_events": ["purchase"], "require_fields": ["value"]}}),
        json!({"event_name": "purchase", "value": 0}),
    )
    .await;
    assert_eq!(d, Disposition::Forwarded);
    assert!(out.is_some());
}

#[tokio::test]
async fn an_unchanged_event_is_not_copied() {
    let cfg = config(
        json!({"event_name": {"method": "inherit"}, "operations": [{"set": {"path": "a", "value": 1}}]}),
    );
    let layer = MappingLayer::new(Mapping::new(
        Arc::new(cfg),
        ComponentId::parse("mapping").unwrap(),
    ));
    let original =
        Arc::new(EventData::try_from(json!({"event_name": "Page_View", "a": 1})).unwrap());
    let seen = Arc::new(Mutex::new(None));
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |e: Event| {
            *seen.lock().unwrap() = Some(e.data.clone());
            std::future::ready(Ok::<_, tagpipe_core::BoxError>(Disposition::Forwarded))
        })
    };
    let mut svc = layer.layer(inner);
    let mut event = Event::new(EventData::new(), Arc::new(RequestContext::detached()));
    event.data = original.clone();
    svc.ready().await.unwrap().call(event).await.unwrap();
    let reached = seen.lock().unwrap().take().unwrap();
    assert!(Arc::ptr_eq(&reached, &original));
}

#[test]
fn validation_names_the_field() {
    let problems = config(json!({"event_name": {"method": "standard"},
        "operations": [{"set": {"path": "a"}}, {"copy": {"from": "a..b", "to": "c"}}]}))
    .validate();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["event_name.name", "operations.0", "operations.1.from"]
    );
}

/// Filters and operations read a field kept as text (a GA4 hit's strings) as they read the same
/// string held as a JSON value.
#[tokio::test]
async fn text_fields_filter_and_change_as_json_strings_do() {
    let names = ["currency", "empty", "event_name", "page_location"];
    let strings = ["EUR", "", "purchase", "https://e.com/"];
    let text = || {
        let mut slots = tagpipe_core::event_data::SlotBuilder::new(&names);
        slots.reserve_text(64);
        for (slot, s) in strings.iter().enumerate() {
            slots.set_text(slot, s);
        }
        slots.finish([])
    };
    let json = || {
        names
            .iter()
            .zip(strings)
            .map(|(n, s)| (*n, json!(s)))
            .collect::<EventData>()
    };
    let cases = [
        json!({"filter": {"require_fields": ["currency"]}}),
        json!({"filter": {"require_fields": ["empty"]}}),
        json!({"filter": {"require_fields": ["currency.x"]}}),
        json!({"filter": {"match": {"currency": ["EUR"]}}}),
        json!({"filter": {"match": {"currency": ["USD"]}}}),
        json!({"filter": {"absent_fields": ["page_location"]}}),
        json!({"operations": [{"set": {"path": "currency", "value": "EUR"}}]}),
        json!({"operations": [{"set": {"path": "currency", "value": "USD"}}]}),
        json!({"operations": [{"rename": {"from": "currency", "to": "cur"}}]}),
        json!({"operations": [{"delete": "page_location"}]}),
        json!({"operations": [{"copy": {"from": "currency", "to": "c2"}}]}),
    ];
    for cfg in cases {
        assert_eq!(
            run_data(cfg.clone(), text()).await,
            run_data(cfg.clone(), json()).await,
            "{cfg}"
        );
    }
}
