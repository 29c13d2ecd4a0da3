//! GA4 hit parsing: a typical 30-parameter gtag.js `page_view`/`purchase` hit → event data.
//!
//! `cargo bench -p tagpipe-source-http --bench ga4`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const QUERY: &str = "v=2&tid=G-ABC123XYZ&gtm=45je4bk0v9&_p=1716898000000&gcs=G111&gcd=13r3r3r3r5\
&npa=0&dma=0&cid=1234567890.1716898000&ul=en-us&sr=1920x1080&uaa=x86&uab=64\
&uafvl=Chromium%3B128.0.6613.120%7CGoogle%2520Chrome%3B128.0.6613.120&uamb=0&uam=&uap=Linux\
&uapv=6.5.0&uaw=0&_s=2&sid=1716898000&sct=3&seg=1\
&dl=https%3A%2F%2Fshop.example.com%2Fproducts%2Fshirt%3Fcolor%3Dblue\
&dr=https%3A%2F%2Fwww.google.com%2F&dt=Blue%20Shirt%20%7C%20Example%20Shop&en=purchase\
&cu=EUR&epn.value=59.90&ep.transaction_id=T-1001&_et=1520";

fn bench(c: &mut Criterion) {
    let params = QUERY.split('&').count();
    assert!(params >= 30, "{params} parameters");
    let addr = "203.0.113.7".parse().unwrap();
    let mut group = c.benchmark_group("ga4");
    group.throughput(Throughput::Elements(1));
    let parse = || {
        tagpipe_source_http::ga4::parse_hits(
            std::hint::black_box(QUERY.as_bytes()),
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
                std::hint::black_box(QUERY.as_bytes()),
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
