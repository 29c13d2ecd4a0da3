//! The Spotify sink's delivery against the scriptable CAPI receiver: batching, splitting on
//! 413, isolating a bad event after a 400, retries (429 with `Retry-After`, 5xx, timeouts,
//! dropped connections), rejections, giving up, optimistic answers, dry runs — and the auth
//! token appearing nowhere but in the `Authorization` header.

use std::time::Duration;

use serde_json::{Value, json};
use tagpipe_capi_receiver::{Receiver, ReceiverConfig, Reply};

use crate::http_client::{build, post_json, send, send_raw};
use crate::support::Tagpipe;

const TOKEN: &str = "tok-SECRET-3f9a1c";

/// A pipeline: HTTP → spotify sink at `receiver`, with `extra` sink settings.
fn start(name: &str, receiver: &Receiver, extra: &str) -> Tagpipe {
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n  spotify:\n    auth_token: ${{env:CAPI_TOKEN}}\n    \
         connection_id: conn-1\n    endpoint: {}\n    action_source: WEB\n    \
         retry: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed: 20s}}\n{extra}\
         pipelines:\n  p: {{sources: [http], sinks: [spotify]}}\n",
        receiver.url()
    );
    Tagpipe::start_with_env(name, &yaml, &[("CAPI_TOKEN", TOKEN)])
}

fn events(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"event_name": "Purchase", "event_id": format!("e{i}"), "timestamp": 1_748_377_016,
                        "ip_override": "1.1.1.1", "value": i, "currency": "EUR"}))
        .collect()
}

/// POSTs events in debug mode; returns each event's outcome at the sink.
fn post_debug(t: &Tagpipe, events: &[Value]) -> Vec<Value> {
    post_debug_answer(t, events)
        .iter()
        .map(|e| e["destinations"]["spotify"].clone())
        .collect()
}

/// POSTs events in debug mode; returns the answer's `events` (each with its `destinations`).
fn post_debug_answer(t: &Tagpipe, events: &[Value]) -> Vec<Value> {
    let body = Value::Array(events.to_vec()).to_string();
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("x-tagpipe-debug", "1"),
        ],
        body.as_bytes(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["events"].as_array().unwrap().clone()
}

fn sizes(receiver: &Receiver) -> Vec<usize> {
    receiver
        .requests()
        .iter()
        .map(|r| {
            r.body["conversion_events"]["events"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect()
}

#[test]
fn events_are_batched_into_one_request() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let t = start(
        "batch",
        &receiver,
        "    batch: {max_events: 100, timeout: 300ms}\n",
    );
    let outcomes = post_debug(&t, &events(10));
    assert!(
        outcomes.iter().all(|o| o["outcome"] == "sent"),
        "{outcomes:?}"
    );
    assert_eq!(sizes(&receiver), [10]);
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );
}

#[test]
fn batching_off_sends_one_event_per_request() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let t = start("unbatched", &receiver, "    batch: {max_events: 1}\n");
    let outcomes = post_debug(&t, &events(5));
    assert!(outcomes.iter().all(|o| o["outcome"] == "sent"));
    assert_eq!(sizes(&receiver), [1, 1, 1, 1, 1]);
}

#[test]
fn a_413_splits_the_batch_in_halves() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([Reply::TooLarge, Reply::TooLarge]);
    let t = start(
        "split",
        &receiver,
        "    batch: {max_events: 100, timeout: 300ms}\n",
    );
    let outcomes = post_debug(&t, &events(8));
    assert!(
        outcomes.iter().all(|o| o["outcome"] == "sent"),
        "{outcomes:?}"
    );
    assert_eq!(sizes(&receiver), [8, 4, 2, 2, 4]);
    let delivered: Vec<Value> = receiver
        .accepted_events()
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    assert_eq!(delivered.len(), 8);
}

#[test]
fn one_bad_event_does_not_sink_the_others() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let t = start(
        "isolate",
        &receiver,
        "    batch: {max_events: 100, timeout: 300ms}\n",
    );
    let mut batch = events(5);
    batch[2]["currency"] = json!("euro"); // not ISO 4217: the receiver answers 400 for the batch
    let outcomes = post_debug(&t, &batch);
    for (i, o) in outcomes.iter().enumerate() {
        if i == 2 {
            assert_eq!(o["outcome"], "failed");
            let reason = o["reason"].as_str().unwrap();
            assert!(
                reason.contains("HTTP 400") && reason.contains("currency"),
                "{reason}"
            );
        } else {
            assert_eq!(o["outcome"], "sent", "{i}: {o}");
        }
    }
    assert_eq!(sizes(&receiver), [5, 1, 1, 1, 1, 1]);
    assert_eq!(receiver.accepted_events().len(), 4);
}

#[test]
fn retry_after_is_honoured_and_transient_errors_are_retried() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([
        Reply::RateLimited(1),
        Reply::Status(503, "busy".into()),
        Reply::Drop,
        Reply::Stall(Duration::from_secs(2)),
    ]);
    let t = start("retry", &receiver, "    request_timeout: 500ms\n");
    let outcomes = post_debug(&t, &events(1));
    assert_eq!(outcomes[0]["outcome"], "sent", "{outcomes:?}");
    // 429, 503, dropped, then a request stalled past the 500ms timeout (the client gives up and
    // closes it, so the receiver never records it), then 200.
    let requests = receiver.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 0, 200], "{statuses:?}");
    let around_timeout = requests[3].at.duration_since(requests[2].at);
    assert!(
        around_timeout >= Duration::from_millis(500),
        "a timed-out attempt lies between: {around_timeout:?}"
    );
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured ({waited:?})"
    );
    // Retries reuse the same event id: Spotify deduplicates.
    let ids: Vec<&Value> = requests
        .iter()
        .map(|r| &r.body["conversion_events"]["events"][0]["event_id"])
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]));
}

#[test]
fn other_4xx_are_rejected_without_retry_and_the_body_is_kept() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([Reply::Status(401, r#"{"error":"invalid token"}"#.into())]);
    let t = start("reject", &receiver, "");
    let outcomes = post_debug(&t, &events(1));
    assert_eq!(outcomes[0]["outcome"], "failed");
    let reason = outcomes[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 401") && reason.contains("invalid token"),
        "{reason}"
    );
    assert_eq!(receiver.requests().len(), 1);
}

#[test]
fn retries_stop_at_max_elapsed() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.set_default(Reply::Status(503, "down".into()));
    let yaml_retry = "    retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 1s}\n";
    let t = {
        let yaml = format!(
            "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n  spotify:\n    auth_token: ${{env:CAPI_TOKEN}}\n    \
             connection_id: conn-1\n    endpoint: {}\n{yaml_retry}pipelines:\n  p: {{sources: [http], sinks: [spotify]}}\n",
            receiver.url()
        );
        Tagpipe::start_with_env("giveup2", &yaml, &[("CAPI_TOKEN", TOKEN)])
    };
    let outcomes = post_debug(&t, &events(1));
    assert_eq!(outcomes[0]["outcome"], "failed");
    assert!(
        outcomes[0]["reason"].as_str().unwrap().contains("gave up"),
        "{outcomes:?}"
    );
    assert!(receiver.requests().len() >= 3);
}

#[test]
fn optimistic_false_answers_after_delivery_and_true_before() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([Reply::Stall(Duration::from_millis(400))]);
    let t = start("pessimistic", &receiver, "");
    let body = events(1)[0].to_string();
    let reply = post_json(t.addr, "/v1/events", body.as_bytes());
    assert_eq!(reply.status, 200);
    assert_eq!(
        receiver.requests().len(),
        1,
        "the answer waited for Spotify's"
    );

    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([Reply::Stall(Duration::from_secs(3))]);
    let t = start("optimistic", &receiver, "    optimistic: true\n");
    let reply = post_json(t.addr, "/v1/events", body.as_bytes());
    assert_eq!(reply.status, 200);
    assert!(receiver.requests().is_empty(), "the answer did not wait");
    crate::support::eventually("delivery after the answer", Duration::from_secs(20), || {
        receiver.accepted_events().len() == 1
    });
}

/// A client that closes its sending side once its request is out (HTTP/1 half-close) still gets
/// its answer when the answer waits for delivery: the request is processed to its end, not
/// cancelled because the connection's read side reached its end while Spotify was slow.
#[test]
fn a_half_closed_client_gets_its_answer_after_delivery() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([Reply::Stall(Duration::from_millis(400))]);
    let t = start("half-close", &receiver, "");
    let body = events(1)[0].to_string();
    let raw = build(
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let reply = send_raw(t.addr, &raw, true);
    assert_eq!(reply.status, 200);
    assert_eq!(
        receiver.accepted_events().len(),
        1,
        "answered after delivery"
    );
}

#[test]
fn dry_run_reports_payloads_and_sends_nothing() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let t = start("dry", &receiver, "    dry_run: true\n");
    let outcomes = post_debug(&t, &events(2));
    for o in &outcomes {
        assert_eq!(o["outcome"], "skipped");
        assert!(o["reason"].as_str().unwrap().contains("dry_run"));
        assert_eq!(o["request"]["event_name"], "Purchase");
    }
    assert!(receiver.requests().is_empty());
}

#[test]
fn the_token_appears_in_no_log_answer_or_outcome() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([
        Reply::Status(500, "oops".into()),
        Reply::Status(403, "no".into()),
    ]);
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n  spotify:\n    auth_token: ${{env:CAPI_TOKEN}}\n    \
         connection_id: conn-1\n    endpoint: {}\n    log_type: always\n    \
         retry: {{initial_interval: 50ms, max_interval: 100ms, max_elapsed: 5s}}\n\
         pipelines:\n  p: {{sources: [http], sinks: [spotify]}}\n",
        receiver.url()
    );
    let t = Tagpipe::start_with_env(
        "secrets",
        &yaml,
        &[("CAPI_TOKEN", TOKEN), ("RUST_LOG", "debug")],
    );
    let body = Value::Array(events(2)).to_string();
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("x-tagpipe-debug", "1"),
        ],
        body.as_bytes(),
    );
    let answer = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(answer.contains("HTTP 403"), "{answer}");
    let logs = t.logs();
    assert!(
        logs.contains("\"type\":\"Request\"") && logs.contains("\"type\":\"Response\""),
        "{logs}"
    );
    assert!(
        logs.contains("\"type\":\"Retry\"") && logs.contains("\"type\":\"Rejected\""),
        "{logs}"
    );
    for (what, text) in [("debug answer", &answer), ("logs", &logs)] {
        assert!(!text.contains(TOKEN), "the token leaked into the {what}");
        assert!(
            !text.contains("SECRET"),
            "part of the token leaked into the {what}"
        );
    }
    // The receiver did get it, in the header only.
    let r = &receiver.requests()[0];
    assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
    assert!(!r.body.to_string().contains(TOKEN));
}

#[test]
fn batch_max_bytes_splits_a_batch_into_several_requests() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let t = start(
        "max-bytes",
        &receiver,
        "    batch: {max_events: 100, timeout: 300ms, max_bytes: 2048}\n",
    );
    let outcomes = post_debug(&t, &events(20));
    assert!(
        outcomes.iter().all(|o| o["outcome"] == "sent"),
        "{outcomes:?}"
    );
    let requests = receiver.requests();
    assert!(requests.len() > 1, "one request only");
    for r in &requests {
        assert!(
            r.body.to_string().len() <= 2048,
            "a request over 2048 bytes"
        );
    }
    assert_eq!(sizes(&receiver).iter().sum::<usize>(), 20);
}

#[test]
fn an_unreachable_endpoint_is_a_warning_or_with_require_healthy_a_start_up_error() {
    let closed = crate::support::free_port();
    let yaml = format!(
        "sources:\n  stdin:\nsinks:\n  spotify:\n    auth_token: t\n    connection_id: c\n    \
         endpoint: http://127.0.0.1:{closed}/capi-direct/events/\n    request_timeout: 2s\n\
         pipelines:\n  p: {{sources: [stdin], sinks: [spotify]}}\n"
    );
    let (code, stderr) = crate::support::run_pipeline("healthcheck", &yaml, &["--require-healthy"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("spotify: health check failed: cannot connect to 127.0.0.1"),
        "{stderr}"
    );
    // Without the flag: a warning, and tagpipe runs (stdin is empty, so it finishes at once).
    let (code, stderr) = crate::support::run_pipeline("healthcheck", &yaml, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("health check failed; starting anyway"),
        "{stderr}"
    );
}

#[test]
fn two_accounts_fed_the_same_events_get_identical_events_each_with_its_own_envelope() {
    // The two sinks' event settings are equal, so they share each event's build (checked at
    // unit level: `fanout` and the Spotify service's tests); here, end to end, each still sends
    // the same events with its own token and connection and reports its own outcomes.
    let first = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let second = Receiver::spawn(ReceiverConfig::new("tok-second"));
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n  spotify/a:\n    auth_token: {TOKEN}\n    \
         connection_id: conn-a\n    endpoint: {}\n    action_source: WEB\n  spotify/b:\n    \
         auth_token: tok-second\n    connection_id: conn-b\n    endpoint: {}\n    action_source: WEB\n    \
         batch: {{max_events: 2}}\npipelines:\n  p: {{sources: [http], sinks: [spotify/a, spotify/b]}}\n",
        first.url(),
        second.url()
    );
    let t = Tagpipe::start("two-accounts", &yaml);
    let mut sent = events(3);
    sent.push(json!({"event_name": "Purchase", "event_id": "no-identifier"}));
    let answer = post_debug_answer(&t, &sent);
    for sink in ["spotify/a", "spotify/b"] {
        let outcomes: Vec<&Value> = answer
            .iter()
            .map(|e| &e["destinations"][sink]["outcome"])
            .collect();
        assert_eq!(
            outcomes,
            ["sent", "sent", "sent", "failed"],
            "{sink}: {answer:?}"
        );
    }
    let delivered = |receiver: &Receiver, connection: &str| {
        let requests = receiver.requests();
        assert!(
            receiver.violations().is_empty(),
            "{:?}",
            receiver.violations()
        );
        let mut events = Vec::new();
        for request in &requests {
            let envelope = &request.body["conversion_events"];
            assert_eq!(envelope["capi_connection_id"], connection);
            events.extend(envelope["events"].as_array().unwrap().iter().cloned());
        }
        // Batches of two may arrive in either order.
        events.sort_by_key(|e| e["event_id"].to_string());
        events
    };
    let a = delivered(&first, "conn-a");
    assert_eq!(a.len(), 3);
    assert_eq!(a, delivered(&second, "conn-b"));
}
