//! GA4 hit parsing: a typical 30-parameter gtag.js `page_view`/`purchase` hit → event data.
//!
//! `cargo bench -p tagpipe-source-http --bench ga4`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical gtag.js purchase hit's query string (shared with the load-test harness).
const QUERY: &str = include_str!("../../../tests/fixtures/ga4-purchase-hit.query");

fn bench(c: &mut Criterion) {
    let params = QUERY.split('&').count();
    assert!(params >= 30, "{params} parameters");
    let addr = "203.0.113.7".parse().unwrap();
    let mut group = c.benchmark_group("ga4");
    group.throughput(Throughput::Elements(1));
    let parse = || {
        tagpipe_source_http::ga4::parse_hits(
            std::hint::black_box(QUERY),
            b"",
            addr,
            Some("Mozilla/5.0 (X11; Linux x86_64)"),
            100,
        )
        .unwrap()
    };
    // Parsing only: freeing the event data happens outside the timing.
    group.bench_function(format!("parse_hit_{params}_params"), |b| {
        b.iter_with_large_drop(parse);
    });
    // Parsing and freeing, as a request that is dropped after dispatch would cost.
    group.bench_function(format!("parse_and_drop_hit_{params}_params"), |b| {
        b.iter(|| {
            tagpipe_source_http::ga4::parse_hits(
                std::hint::black_box(QUERY),
                b"",
                addr,
                Some("Mozilla/5.0 (X11; Linux x86_64)"),
                100,
            )
            .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
