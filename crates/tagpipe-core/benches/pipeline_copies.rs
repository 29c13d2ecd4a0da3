//! What a request pays to get a copy of a pipeline's service stack (three processor layers
//! over a boxed inner service, as a GA4 pipeline with consent, mapping and hashing has): a
//! fresh copy (one allocation per layer, dropped after) against taking an idle copy from the
//! pipeline's pool and putting it back (`Pipeline::process`).
//!
//! `cargo bench -p tagpipe-core --bench pipeline_copies`

use std::sync::Mutex;

use criterion::{Criterion, criterion_group, criterion_main};
use tagpipe_core::processor::{Disposition, EventLayer, EventProcessor, ProcessorLayer};
use tagpipe_core::{Event, PipelineService};
use tower::Layer;

/// A processor that changes nothing.
struct Nothing;

impl EventProcessor for Nothing {
    fn process(&self, _event: &mut Event) -> Result<(), String> {
        Ok(())
    }
}

fn stack() -> PipelineService {
    let inner = PipelineService::boxing(tower::service_fn(|_event: Event| {
        std::future::ready(Ok::<_, tagpipe_core::component::BoxError>(
            Disposition::Forwarded,
        ))
    }));
    (0..3).fold(inner, |service, _| {
        ProcessorLayer::new(EventLayer::new(Nothing)).layer(service)
    })
}

fn bench(c: &mut Criterion) {
    let service = stack();
    let mut group = c.benchmark_group("pipeline_copies");
    group.bench_function("fresh_copy_and_drop", |b| {
        b.iter(|| drop(std::hint::black_box(service.clone())));
    });
    let idle = Mutex::new(vec![service.clone()]);
    group.bench_function("idle_copy_taken_and_returned", |b| {
        b.iter(|| {
            let copy = idle.lock().unwrap().pop().expect("an idle copy");
            let copy = std::hint::black_box(copy);
            idle.lock().unwrap().push(copy);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
