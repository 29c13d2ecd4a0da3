//! `/metrics`: Prometheus text on the HTTP source's listener; after traffic the counters add up
//! (received = sent + skipped + failed, nothing left queued).

use serde_json::json;

use crate::http_client::{post_json, send};
use crate::support::Tagpipe;

const PIPELINE: &str = "
sources:
  http:
    listen: 127.0.0.1:{port}
processors:
  consent:
    require: [ad_storage]
sinks:
  file/out:
    path: {dir}/out.ndjson
pipelines:
  p: {sources: [http], processors: [consent], sinks: [file/out]}
";

/// The sum of the (whole-number) samples whose name and labels contain every `part`.
fn sample(text: &str, name: &str, parts: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v.round() as u64)
        .sum()
}

#[test]
fn metrics_count_every_event_and_add_up() {
    let t = Tagpipe::start("metrics", PIPELINE);
    let events: Vec<_> = (0..10)
        .map(|i| json!({"event_name": "purchase", "x-ga-gcs": if i < 6 { "G111" } else { "G101" }}))
        .collect();
    let body = serde_json::Value::Array(events).to_string();
    assert_eq!(post_json(t.addr, "/v1/events", body.as_bytes()).status, 200);
    assert_eq!(post_json(t.addr, "/v1/events", b"{oops").status, 400);
    t.wait_for_lines("out.ndjson", 6);
    let reply = send(t.addr, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let sink = r#"sink="file/out""#;
    let received = sample(
        &text,
        "tagpipe_events_received_total",
        &[r#"source="http""#, r#"endpoint="events""#],
    );
    let sent = sample(&text, "tagpipe_events_sent_total", &[sink]);
    let skipped = sample(
        &text,
        "tagpipe_events_skipped_total",
        &[sink, r#"reason="consent""#],
    );
    let failed = sample(&text, "tagpipe_events_failed_total", &[sink]);
    assert_eq!((received, sent, skipped, failed), (10, 6, 4, 0), "{text}");
    assert_eq!(
        received,
        sent + skipped + failed + sample(&text, "tagpipe_queue_depth", &[sink])
    );
    assert_eq!(sample(&text, "tagpipe_queue_capacity", &[sink]), 1_000);
    assert_eq!(
        sample(
            &text,
            "tagpipe_http_requests_total",
            &[r#"endpoint="events""#, r#"status="400""#]
        ),
        1
    );
    assert!(
        sample(
            &text,
            "tagpipe_http_request_duration_seconds_count",
            &[r#"endpoint="events""#]
        ) >= 2
    );
    assert!(sample(&text, "tagpipe_sink_batch_size_count", &[sink]) >= 1);
    assert_eq!(sample(&text, "tagpipe_build_info", &[]), 1);
}

#[test]
fn metrics_can_have_a_listener_of_their_own() {
    let metrics_port = crate::support::free_port();
    let yaml = PIPELINE.replace(
        "listen: 127.0.0.1:{port}",
        "listen: 127.0.0.1:{port}\n    metrics: false",
    ) + &format!(
        "runtime:\n  metrics_address: 127.0.0.1:{metrics_port}\n  metrics_path: /prom\n"
    );
    let t = Tagpipe::start("metrics-listener", &yaml);
    let body = json!({"event_name": "purchase", "x-ga-gcs": "G111"}).to_string();
    let headers = [("Content-Type", "application/json")];
    assert_eq!(
        send(t.addr, "POST", "/v1/events", &headers, body.as_bytes()).status,
        200
    );
    t.wait_for_lines("out.ndjson", 1);
    // The event port no longer serves metrics …
    assert_eq!(send(t.addr, "GET", "/metrics", &[], b"").status, 404);
    // … the metrics port does, at its own path, and serves nothing else.
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let reply = send(metrics_addr, "GET", "/prom", &[], b"");
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(
        sample(&text, "tagpipe_events_sent_total", &[r#"sink="file/out""#]),
        1,
        "{text}"
    );
    assert_eq!(send(metrics_addr, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(
        send(metrics_addr, "GET", "/v1/events", &[], b"").status,
        404
    );
    assert_eq!(send(metrics_addr, "POST", "/prom", &[], b"").status, 405);
}

#[test]
fn a_taken_metrics_port_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = format!(
        "sources:\n  stdin:\nsinks:\n  console:\npipelines:\n  p: {{sources: [stdin], sinks: [console]}}\n\
         runtime:\n  metrics_address: 127.0.0.1:{port}\n"
    );
    let (code, stderr) = crate::support::run_pipeline("metrics-taken", &yaml, &[]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("cannot listen for metrics on 127.0.0.1:{port}")),
        "{stderr}"
    );
}
