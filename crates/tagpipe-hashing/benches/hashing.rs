//! Hashing one email end to end: normalise + SHA-256 + hex, as the processor does it.
//!
//! `cargo bench -p tagpipe-hashing --bench hashing`

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use tagpipe_hashing::{FieldRule, Preset, hash_value};

/// As in the `tagpipe` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let rule = FieldRule {
        path: "user_data.email_address".into(),
        preset: Preset::Email,
        drop_plus: false,
    };
    // 29 bytes, as in the brief's reference figure.
    let email = " Jane.Doe.Tester@Example.com ";
    assert_eq!(email.len(), 29);
    c.bench_function("hash_email_29_bytes", |b| {
        b.iter_batched(
            || Value::String(email.to_owned()),
            |mut v| {
                hash_value(&mut v, &rule);
                v
            },
            criterion::BatchSize::SmallInput,
        );
    });
    let mut out = String::with_capacity(64);
    c.bench_function("sha256_hex_only_29_bytes", |b| {
        b.iter(|| tagpipe_hashing::sha256_hex(std::hint::black_box(email.as_bytes()), &mut out));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
