//! One event → its CAPI JSON, as the sink does it for every event it queues: the tag's field
//! rules (`payload::build`), then the hand-written `CapiEvent::write_json` into a reused buffer
//! (`ga4_purchase`, `server_purchase`; the sink then copies the bytes into its chunk, which is
//! not measured here). The `…_serde` rows serialise the same event with `serde_json` into a new
//! `String` each (byte for byte the same JSON), as a reference.
//!
//! `cargo bench -p tagpipe-sink-spotify --bench payload`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tagpipe_core::{EventData, RequestContext};
use tagpipe_sink_spotify::SpotifySinkConfig;
use tagpipe_sink_spotify::payload::{Built, build};

/// As in the `tagpipe` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The GA4 purchase hit the parsing benchmark and the load test use.
const GA4_HIT: &str = include_str!("../../../tests/fixtures/ga4-purchase-hit.query");

fn bench(c: &mut Criterion) {
    let config: SpotifySinkConfig = serde_json::from_value(
        json!({"auth_token": "t", "connection_id": "c", "action_source": "WEB"}),
    )
    .unwrap();
    let ga4 = tagpipe_source_http::ga4::parse_hits(
        GA4_HIT,
        b"",
        "203.0.113.7".parse().unwrap(),
        Some("Mozilla/5.0 (X11; Linux x86_64)"),
        1,
    )
    .unwrap()
    .remove(0);
    // The load test's server-side event, after the hashing processor.
    let server: EventData = serde_json::from_value(json!({
        "event_name": "purchase", "client_id": "1.2", "timestamp": 1_748_377_016,
        "ip_override": "203.0.113.7", "value": 59.9, "currency": "EUR",
        "page_location": "https://shop.example.com/thanks",
        "user_data": {"email_address": "2c7cc554b2e165896c7d52d910ca10169703eec7ea71e2462ceac8540981f5da"}
    }))
    .unwrap();
    let context = RequestContext::detached();
    let mut group = c.benchmark_group("spotify_payload");
    group.throughput(Throughput::Elements(1));
    for (name, data) in [("ga4_purchase", &ga4), ("server_purchase", &server)] {
        // As the sink does: one buffer per thread, cleared for each event.
        let mut json = Vec::new();
        group.bench_function(name, |b| {
            b.iter(
                || match build(std::hint::black_box(data), &context, &config, 0) {
                    Built::Send(event) => {
                        json.clear();
                        event.write_json(&mut json);
                        json.len()
                    }
                    other => panic!("not sent: {other:?}"),
                },
            );
        });
        group.bench_function(format!("{name}_serde"), |b| {
            b.iter(
                || match build(std::hint::black_box(data), &context, &config, 0) {
                    Built::Send(event) => serde_json::to_string(&event).unwrap(),
                    other => panic!("not sent: {other:?}"),
                },
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
