//! The sink's own cost per row against a null transport: event → typed row (`events` schema) →
//! `insertId` → the `insertAll` request body a batch of 500 rows becomes (JSON bytes).
//!
//! `cargo bench -p tagpipe-sink-bigquery --bench encode`

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use serde_json::json;
use tagpipe_core::{Event, RequestContext};
use tagpipe_sink_bigquery::{SchemaKind, insert_id, request_row, schema};

/// As in the `tagpipe` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let columns = schema::columns(SchemaKind::Events, &[]);
    let context = Arc::new(RequestContext::detached());
    let events: Vec<Event> = (0..500)
        .map(|i| {
            let data = json!({
                "event_name": "purchase", "event_id": format!("evt-{i}"), "client_id": "123.456",
                "timestamp": 1_748_377_016, "page_location": "https://shop.example.com/thanks",
                "ip_override": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                "value": 59.9, "currency": "EUR", "items": [{"item_id": "SKU1", "price": 59.9, "quantity": 1}]
            });
            Event::new(data.try_into().unwrap(), context.clone())
        })
        .collect();
    let mut group = c.benchmark_group("bigquery");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("encode_batch_of_500_rows", |b| {
        b.iter_batched(
            TableDataInsertAllRequest::new,
            |mut request| {
                request.skip_invalid_rows();
                let mut rows = Vec::with_capacity(events.len());
                for event in &events {
                    let row = schema::row(&columns, event).unwrap();
                    let id = insert_id(&event.data, &row);
                    rows.push((id, row));
                }
                // As the sink does: the request gets copies, the rows stay for a retry.
                let copies = rows.iter().map(|(id, row)| request_row(id, row));
                request.add_rows(copies.collect()).unwrap();
                serde_json::to_vec(&request).unwrap()
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
