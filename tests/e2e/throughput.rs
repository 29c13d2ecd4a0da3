//! Throughput figures for BENCHMARKS.md (ignored by default: they measure, they assert nothing
//! about speed). Run with the release binary:
//!
//! `cargo test --release -p tagpipe --test e2e -- --ignored throughput --nocapture --test-threads 1`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use tagpipe_capi_receiver::{Receiver, ReceiverConfig};
use tagpipe_loadtest::process::cpu_seconds;

use crate::support::{Tagpipe, eventually};

/// Sends `requests` POSTs of `per_request` events on one keep-alive connection.
pub(crate) fn load(addr: std::net::SocketAddr, requests: usize, per_request: usize, seed: usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for r in 0..requests {
        let events: Vec<_> = (0..per_request)
            .map(|i| {
                json!({"event_name": "purchase", "event_id": format!("{seed}-{r}-{i}"),
                            "client_id": "123.456", "x-ga-gcs": "G111", "timestamp": 1_748_377_016,
                            "ip_override": "203.0.113.7", "value": 59.9, "currency": "EUR",
                            "page_location": "https://shop.example.com/thanks",
                            "user_data": {"email_address": "Jane.Doe@Example.com"}})
            })
            .collect();
        let body = serde_json::Value::Array(events).to_string();
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        // Read one response (small, fixed size).
        let mut got = Vec::new();
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}") {
                break;
            }
        }
    }
}

/// [`load`] on `connections` connections at once, each from its own thread; returns when all
/// requests are answered.
fn load_concurrently(
    addr: std::net::SocketAddr,
    connections: usize,
    requests: usize,
    per_request: usize,
) {
    let threads: Vec<_> = (0..connections)
        .map(|c| std::thread::spawn(move || load(addr, requests, per_request, c)))
        .collect();
    for th in threads {
        th.join().unwrap();
    }
}

fn run(name: &str, batch: &str, connections: usize, requests: usize, per_request: usize) {
    let mut config = ReceiverConfig::new("tok");
    config.count_only = true;
    let receiver = Receiver::spawn(config);
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\n    max_events_per_request: 1000\nprocessors:\n  \
         consent: {{require: [ad_storage]}}\n  mapping: {{event_name: {{method: inherit}}}}\n  \
         hashing: {{fields: [{{path: user_data.email_address, preset: email}}]}}\nsinks:\n  spotify:\n    \
         auth_token: tok\n    connection_id: c\n    endpoint: {}\n    optimistic: true\n    log_type: no\n    \
         concurrency: 8\n    batch: {batch}\n    buffer: {{max_events: 100000}}\npipelines:\n  p: \
         {{sources: [http], processors: [consent, mapping, hashing], sinks: [spotify]}}\n",
        receiver.url()
    );
    let t = Tagpipe::start(&format!("throughput-{name}"), &yaml);
    let total = (connections * requests * per_request) as u64;
    let cpu_before = cpu_seconds(t.child.id());
    let start = Instant::now();
    load_concurrently(t.addr, connections, requests, per_request);
    eventually("all events delivered", Duration::from_secs(300), || {
        receiver.counted_events() >= total
    });
    let elapsed = start.elapsed();
    let cpu = cpu_seconds(t.child.id()) - cpu_before;
    println!(
        "{name}: {total} events in {:.2} s = {:.0} events/s delivered; tagpipe CPU {:.2} s = {:.2} µs/event",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        cpu,
        cpu * 1e6 / total as f64
    );
}

#[test]
#[ignore = "measures throughput; run explicitly (see the module docs)"]
fn throughput_spotify_batching_on() {
    run(
        "batching on (500 events/request)",
        "{max_events: 500, timeout: 20ms}",
        4,
        500,
        100,
    );
}

#[test]
#[ignore = "measures throughput; run explicitly (see the module docs)"]
fn throughput_spotify_batching_off() {
    run(
        "batching off (1 event/request)",
        "{max_events: 1}",
        4,
        50,
        100,
    );
}

#[test]
#[ignore = "measures throughput; run explicitly (see the module docs)"]
fn throughput_bigquery_insert_all_into_the_emulator() {
    bigquery_throughput("insert_all");
}

fn bigquery_throughput(write_api: &str) {
    let _slot = crate::bigquery::emulator_slot();
    let emulator = crate::bigquery::Emulator::start();
    let sink = crate::bigquery::bigquery_sink(
        "bigquery",
        &emulator,
        "load",
        "events",
        write_api,
        "    schema: events\n    concurrency: 2\n    buffer: {max_events: 100000}\n",
    )
    .replace(
        "batch: {max_events: 100, timeout: 200ms}",
        "batch: {max_events: 500, timeout: 200ms}",
    );
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\n    max_events_per_request: 1000\nsinks:\n{sink}\
         pipelines:\n  p: {{sources: [http], sinks: [bigquery]}}\n"
    );
    let t = Tagpipe::start(&format!("throughput-bigquery-{write_api}"), &yaml);
    let (connections, requests, per_request) = (2, 50, 100);
    let total = connections * requests * per_request;
    let start = Instant::now();
    load_concurrently(t.addr, connections, requests, per_request);
    eventually(
        "every row in the emulator",
        Duration::from_secs(600),
        || {
            emulator
                .query("SELECT COUNT(*) FROM load.events")
                .first()
                .and_then(|r| r[0].as_str().map(str::to_owned))
                == Some(total.to_string())
        },
    );
    let elapsed = start.elapsed();
    println!(
        "bigquery {write_api} into the emulator: {total} rows in {:.2} s = {:.0} rows/s (emulator-bound)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}

/// Events/s through HTTP → ingest (`nats` sink, answering after JetStream's ack) → NATS →
/// `delivery_workers` delivery processes (`nats` source → Spotify sink) → the receiver.
fn nats_throughput(delivery_workers: usize) {
    use crate::nats::NatsServer;
    let nats = NatsServer::start(&format!("throughput-{delivery_workers}"));
    let mut config = ReceiverConfig::new("tok");
    config.count_only = true;
    let receiver = Receiver::spawn(config);
    let workers: Vec<Tagpipe> = (0..delivery_workers)
        .map(|i| {
            let yaml = format!(
                "sources:\n  nats:\n    connection: {{urls: [{}]}}\n    consumer: delivery\n    \
                 max_in_flight: 5000\nsinks:\n  spotify:\n    auth_token: tok\n    connection_id: c\n    \
                 endpoint: {}\n    log_type: no\n    concurrency: 8\n    batch: {{max_events: 500, timeout: 20ms}}\n\
                 pipelines:\n  p: {{sources: [nats], sinks: [spotify]}}\n",
                nats.url(),
                receiver.url()
            );
            Tagpipe::start_until_logged(
                &format!("throughput-nats-{delivery_workers}-{i}"),
                &yaml,
                "reading from JetStream",
            )
        })
        .collect();
    let ingest = Tagpipe::start(
        &format!("throughput-nats-ingest-{delivery_workers}"),
        &format!(
            "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\n    max_events_per_request: 1000\n\
             sinks:\n  nats:\n    connection: {{urls: [{}]}}\n    buffer: {{max_events: 100000}}\n\
             pipelines:\n  p: {{sources: [http], sinks: [nats]}}\n",
            nats.url()
        ),
    );
    let (connections, requests, per_request) = (4, 250, 100);
    let total = (connections * requests * per_request) as u64;
    let start = Instant::now();
    load_concurrently(ingest.addr, connections, requests, per_request);
    let ingested = start.elapsed();
    eventually("all events delivered", Duration::from_secs(300), || {
        receiver.counted_events() >= total
    });
    let elapsed = start.elapsed();
    println!(
        "nats, {delivery_workers} delivery worker(s): {total} events ingested in {:.2} s ({:.0} events/s, each answered after JetStream's ack), delivered in {:.2} s = {:.0} events/s end to end",
        ingested.as_secs_f64(),
        total as f64 / ingested.as_secs_f64(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
    );
    assert_eq!(receiver.counted_events(), total, "every event once");
    drop(workers);
}

#[test]
#[ignore = "measures throughput; run explicitly (see the module docs)"]
fn throughput_nats_one_delivery_worker() {
    nats_throughput(1);
}

#[test]
#[ignore = "measures throughput; run explicitly (see the module docs)"]
fn throughput_nats_two_delivery_workers() {
    nats_throughput(2);
}

/// Median time from sending one event to its line appearing in the destination file, for a
/// direct pipeline and through NATS (both unbatched): the difference is what the hop adds.
#[test]
#[ignore = "measures latency; run explicitly (see the module docs)"]
fn latency_of_the_nats_hop() {
    use crate::nats::NatsServer;
    let direct = Tagpipe::start(
        "latency-direct",
        "sources:\n  http:\n    listen: 127.0.0.1:{port}\nsinks:\n  file/out:\n    path: {dir}/out.ndjson\n    \
         batch: {max_events: 1}\npipelines:\n  p: {sources: [http], sinks: [file/out]}\n",
    );
    let nats = NatsServer::start("latency");
    let worker = Tagpipe::start_until_logged(
        "latency-delivery",
        &format!(
            "sources:\n  nats:\n    connection: {{urls: [{}]}}\n    consumer: delivery\nsinks:\n  file/out:\n    \
             path: {{dir}}/out.ndjson\n    batch: {{max_events: 1}}\npipelines:\n  p: {{sources: [nats], sinks: [file/out]}}\n",
            nats.url()
        ),
        "reading from JetStream",
    );
    let ingest = Tagpipe::start(
        "latency-ingest",
        &format!(
            "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n  nats:\n    connection: {{urls: [{}]}}\n    \
             batch: {{max_events: 1}}\npipelines:\n  p: {{sources: [http], sinks: [nats]}}\n",
            nats.url()
        ),
    );
    let measure = |entry: &Tagpipe, out: &std::path::Path| -> f64 {
        let mut times = Vec::new();
        for i in 0..200 {
            let before = std::fs::read_to_string(out).map_or(0, |t| t.lines().count());
            let started = Instant::now();
            let reply = crate::http_client::post_json(
                entry.addr,
                "/v1/events",
                format!("{{\"n\":{i}}}").as_bytes(),
            );
            assert_eq!(reply.status, 200);
            while std::fs::read_to_string(out).map_or(0, |t| t.lines().count()) <= before {
                std::thread::sleep(Duration::from_micros(100));
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let direct_ms = measure(&direct, &direct.dir.join("out.ndjson"));
    let nats_ms = measure(&ingest, &worker.dir.join("out.ndjson"));
    println!(
        "median send → written: direct {direct_ms:.2} ms, through NATS {nats_ms:.2} ms: the hop adds {:.2} ms",
        nats_ms - direct_ms
    );
}
