//! Consent + mapping per event: a GA4 `purchase` through `consent` (require ad_storage, decided
//! from `gcd`) and `mapping` (inherit name, two field operations) — the tower layers as a
//! pipeline stacks them, in front of a service that only answers `Forwarded`.
//!
//! `cargo bench -p tagpipe-mapping --bench consent_mapping`

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;
use tagpipe_consent::{Consent, ConsentConfig, ConsentLayer};
use tagpipe_core::{BoxError, ComponentId, Disposition, Event, EventData, RequestContext};
use tagpipe_mapping::{Mapping, MappingConfig, MappingLayer};
use tower::{Layer, Service};

/// As in the `tagpipe` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let consent: ConsentConfig =
        serde_json::from_value(json!({"require": ["ad_storage"]})).unwrap();
    let mapping: MappingConfig = serde_json::from_value(json!({
        "event_name": {"method": "inherit"},
        "operations": [
            {"set": {"path": "action_source", "value": "WEB"}},
            {"rename": {"from": "transaction_id", "to": "event_id"}}
        ]
    }))
    .unwrap();
    // The end of the pipeline keeps the event so that freeing it happens outside the timing.
    let slot: Arc<Mutex<Option<Event>>> = Arc::default();
    let end = {
        let slot = slot.clone();
        tower::service_fn(move |e: Event| {
            *slot.lock().unwrap() = Some(e);
            std::future::ready(Ok::<_, BoxError>(Disposition::Forwarded))
        })
    };
    let mut end_alone = end.clone();
    let stack = ConsentLayer::new(Consent::new(
        consent,
        ComponentId::parse("consent").unwrap(),
        Arc::new(AtomicU64::new(0)),
    ))
    .layer(
        MappingLayer::new(Mapping::new(
            Arc::new(mapping),
            ComponentId::parse("mapping").unwrap(),
        ))
        .layer(end),
    );
    let data: EventData = json!({
        "event_name": "purchase", "x-ga-gcd": "13r3r3r3r5", "x-ga-gcs": "G111", "client_id": "1.2",
        "transaction_id": "T-1", "value": 59.9, "currency": "EUR",
        "page_location": "https://shop.example.com/thanks", "ip_override": "203.0.113.7",
        "user_agent": "Mozilla/5.0", "items": [{"item_id": "SKU1", "price": 59.9, "quantity": 1}]
    })
    .try_into()
    .unwrap();
    let context = Arc::new(RequestContext::detached());
    let waker = std::task::Waker::noop();
    c.bench_function("consent_and_mapping_per_event", |b| {
        let mut svc = stack.clone();
        b.iter_batched(
            // The event arrives owned by this pipeline (not shared), as after a single fan-out.
            || Event::new(data.clone(), context.clone()),
            |event| {
                // Every layer answers at once: one poll completes the call.
                let mut future = svc.call(event);
                let done = Pin::new(&mut future).poll(&mut Context::from_waker(waker));
                assert!(matches!(done, Poll::Ready(Ok(Disposition::Forwarded))));
                slot.lock().unwrap().take()
            },
            BatchSize::PerIteration,
        );
    });
    // What the harness itself costs per iteration (timer reads, the terminal service that keeps
    // the event, moving it out): subtract it.
    c.bench_function("harness_baseline_per_event", |b| {
        b.iter_batched(
            || Event::new(data.clone(), context.clone()),
            |event| {
                let mut future = end_alone.call(event);
                let done = Pin::new(&mut future).poll(&mut Context::from_waker(waker));
                assert!(matches!(done, Poll::Ready(Ok(Disposition::Forwarded))));
                slot.lock().unwrap().take()
            },
            BatchSize::PerIteration,
        );
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
