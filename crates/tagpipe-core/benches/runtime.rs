//! The runtime's own cost per event and destination: dispatch → processors (none) → fan-out →
//! per-sink queue → driver → a sink that does nothing → outcome counted.
//!
//! `cargo bench -p tagpipe-core --bench runtime`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tagpipe_core::batch::BatchSettings;
use tagpipe_core::component::SinkParts;
use tagpipe_core::driver::{self, service_fn};
use tagpipe_core::fanout::FanOut;
use tagpipe_core::pipeline::Pipeline;
use tagpipe_core::queue::{self, BufferConfig, SinkStats};
use tagpipe_core::{
    ComponentId, DestinationOutcome, Dispatcher, Event, EventData, PipelineService, RequestContext,
};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 10_000;
const CHUNK: usize = 100;

fn setup(destinations: usize) -> (Dispatcher, Vec<Arc<SinkStats>>) {
    let mut inputs = Vec::new();
    let mut all_stats = Vec::new();
    let mut ids = Vec::new();
    for i in 0..destinations {
        let id = ComponentId::parse(&format!("null/{i}")).unwrap();
        let (input, rx, stats) = queue::channel(id.clone(), &BufferConfig::default()).unwrap();
        let parts = SinkParts {
            service: service_fn(|events: Vec<Event>| async move {
                Ok(vec![DestinationOutcome::sent(); events.len()])
            })
            .into(),
            batch: BatchSettings {
                max_events: 500,
                timeout: Duration::ZERO,
            },
            concurrency: 2,
            wait_for_delivery: false,
        };
        tokio::spawn(driver::run(
            id.clone(),
            driver::Handover::new(rx),
            parts,
            stats.clone(),
            None,
            tagpipe_core::telemetry::SinkInstruments::new(&id, 10_000),
            driver::DriverControl::new(CancellationToken::new()).0,
        ));
        inputs.push(input);
        all_stats.push(stats);
        ids.push(id);
    }
    let service = PipelineService::new(FanOut::new(inputs));
    let dispatcher = Dispatcher::new(vec![Pipeline::new("bench", service, ids)]);
    (dispatcher, all_stats)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut data = EventData::new();
    data.insert("event_name", json!("purchase"));
    data.insert("client_id", json!("123.456"));
    data.insert("value", json!(12.5));
    let context = Arc::new(RequestContext::detached());

    let mut group = c.benchmark_group("runtime");
    for destinations in [1usize, 3] {
        let (dispatcher, stats) = rt.block_on(async { setup(destinations) });
        let mut done = 0u64;
        group.throughput(Throughput::Elements((EVENTS * destinations) as u64));
        group.bench_function(format!("dispatch_to_{destinations}_sinks"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                rt.block_on(async {
                    for _ in 0..iters {
                        // Making the events is the source's work: keep it out of the timing.
                        let chunks: Vec<Vec<Event>> = (0..EVENTS / CHUNK)
                            .map(|_| {
                                (0..CHUNK)
                                    .map(|_| Event::new(data.clone(), context.clone()))
                                    .collect()
                            })
                            .collect();
                        let start = Instant::now();
                        for chunk in chunks {
                            dispatcher.send_all(chunk).await;
                        }
                        done += EVENTS as u64;
                        while stats.iter().any(|s| SinkStats::get(&s.sent) < done) {
                            tokio::task::yield_now().await;
                        }
                        elapsed += start.elapsed();
                    }
                });
                elapsed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
