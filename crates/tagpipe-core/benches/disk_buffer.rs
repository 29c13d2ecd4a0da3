//! The disk buffer: events pushed (durably: the push returns once the event is on disk) and
//! drained (read, then deleted), 2,000 at a time from 64 concurrent pushers so that group commit
//! works as under HTTP load.
//!
//! `cargo bench -p tagpipe-core --bench disk_buffer`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tagpipe_core::ack::DeliveryToken;
use tagpipe_core::disk::DiskQueue;
use tagpipe_core::queue::QueuedEvent;
use tagpipe_core::{ComponentId, Event, RequestContext};

const EVENTS: usize = 2_000;
const PUSHERS: usize = 64;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tagpipe-disk-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let id = ComponentId::parse("bench").unwrap();
    let queue = DiskQueue::open(
        id.clone(),
        &dir.join("b.redb"),
        1_000_000,
        None,
        Duration::ZERO,
    )
    .unwrap();
    let data: tagpipe_core::EventData = json!({"event_name": "purchase", "client_id": "123.456", "value": 59.9, "currency": "EUR",
                      "page_location": "https://shop.example.com/thanks", "ip_override": "203.0.113.7",
                      "user_data": {"email_address": "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"}})
    .try_into()
    .unwrap();
    let context = Arc::new(RequestContext::detached());
    let mut group = c.benchmark_group("disk_buffer");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function("push_durably", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for p in 0..PUSHERS {
                        let queue = queue.clone();
                        let (data, context, id) = (data.clone(), context.clone(), id.clone());
                        tasks.spawn(async move {
                            for _ in 0..EVENTS / PUSHERS + usize::from(p < EVENTS % PUSHERS) {
                                let item = QueuedEvent {
                                    event: Event::new(data.clone(), context.clone()).into(),
                                    token: DeliveryToken::new(None, &id),
                                    seq: None,
                                };
                                queue.push(item, true).await.unwrap();
                            }
                        });
                    }
                    while tasks.join_next().await.is_some() {}
                });
                total += start.elapsed();
                // Drain outside the timing.
                drain(&queue);
            }
            total
        });
    });
    group.bench_function("drain_and_delete", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    for _ in 0..EVENTS {
                        let item = QueuedEvent {
                            event: Event::new(data.clone(), context.clone()).into(),
                            token: DeliveryToken::new(None, &id),
                            seq: None,
                        };
                        queue.push(item, true).await.unwrap();
                    }
                });
                let start = Instant::now();
                drain(&queue);
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn drain(queue: &DiskQueue) {
    let mut batch = Vec::new();
    while !queue.is_empty() {
        batch.clear();
        if queue.recv_batch(&mut batch, 500) == 0 {
            break;
        }
        let seqs: Vec<u64> = batch.iter().filter_map(|e| e.seq).collect();
        queue.ack(&seqs);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
