//! Processors in real pipelines: the same events fanned out to a pipeline with consent, mapping
//! and hashing, and to one without — which must receive them unchanged.

use serde_json::json;

use crate::http_client::{post_json, send};
use crate::support::Tagpipe;

const PIPELINE: &str = "
sources:
  http:
    listen: 127.0.0.1:{port}
processors:
  consent/ads:
    require: [ad_storage]
  mapping/spotify:
    event_name: {method: inherit}
    operations:
      - set: {path: action_source, value: WEB}
  hashing:
    fields:
      - {path: user_data.email_address, preset: email}
      - {path: user_data.phone_number, preset: phone}
sinks:
  file/ads:
    path: {dir}/ads.ndjson
  file/raw:
    path: {dir}/raw.ndjson
pipelines:
  ads:
    sources: [http]
    processors: [consent/ads, mapping/spotify, hashing]
    sinks: [file/ads]
  raw:
    sources: [http]
    sinks: [file/raw]
";

#[test]
fn one_pipeline_transforms_and_the_other_receives_the_events_unchanged() {
    let t = Tagpipe::start("processors", PIPELINE);
    let granted = json!({"event_name": "purchase", "x-ga-gcs": "G111", "value": 10,
                         "user_data": {"email_address": " Test@Example.com ", "phone_number": "+55 (19) 99999-9999"}});
    let denied = json!({"event_name": "purchase", "x-ga-gcs": "G101",
                        "user_data": {"email_address": "other@example.com"}});
    let no_signal = json!({"event_name": "page_view", "user_data": {"email_address": "undefined"}});
    let body = json!([granted, denied, no_signal]).to_string();
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
    assert_eq!(reply.status, 200);
    let skipped = json!({"outcome": "skipped", "reason": "consent: ad_storage not granted"});
    assert_eq!(
        reply.json(),
        json!({"events": [
            {"destinations": {"file/ads": {"outcome": "sent"}, "file/raw": {"outcome": "sent"}}},
            {"destinations": {"file/ads": skipped.clone(), "file/raw": {"outcome": "sent"}}},
            {"destinations": {"file/ads": skipped, "file/raw": {"outcome": "sent"}}}
        ]})
    );
    let raw = t.wait_for_lines("raw.ndjson", 3);
    assert_eq!(
        raw,
        [granted.clone(), denied, no_signal],
        "the raw pipeline gets the events unchanged"
    );
    let ads = t.wait_for_lines("ads.ndjson", 1);
    assert_eq!(
        ads,
        [json!({
            "event_name": "Purchase", "x-ga-gcs": "G111", "value": 10, "action_source": "WEB",
            "user_data": {
                "email_address": "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
                "phone_number": "c698c0b85d32cbcf5033ada58f34de87d4f7415efaf5a8d1c1e9e63393dcc85e"
            }
        })]
    );
}

#[test]
fn a_logs_pipeline_keeps_only_failures() {
    let receiver =
        tagpipe_capi_receiver::Receiver::spawn(tagpipe_capi_receiver::ReceiverConfig::new("t"));
    receiver.script([tagpipe_capi_receiver::Reply::Status(
        403,
        "forbidden".into(),
    )]);
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\n  logs:\nprocessors:\n  mapping/failures:\n    \
         filter: {{match: {{type: [Rejected, Message]}}}}\nsinks:\n  spotify:\n    auth_token: t\n    connection_id: c\n    \
         endpoint: {}\n    log_type: no\n  file/failures:\n    path: {{dir}}/failures.ndjson\n  file/all:\n    path: {{dir}}/all.ndjson\n\
         pipelines:\n  spotify: {{sources: [http], sinks: [spotify]}}\n  \
         failures: {{sources: [logs], processors: [mapping/failures], sinks: [file/failures]}}\n  \
         all_logs: {{sources: [logs], sinks: [file/all]}}\n",
        receiver.url()
    );
    let t = Tagpipe::start("logs-failures", &yaml);
    let events = json!([
        {"event_name": "Purchase", "ip_override": "1.1.1.1"},
        {"event_name": "Purchase"}
    ]);
    let reply = post_json(t.addr, "/v1/events", events.to_string().as_bytes());
    assert_eq!(reply.status, 200);
    // Request + Response + Rejected for the first event, Message for the second.
    let all = t.wait_for_lines("all.ndjson", 4);
    let failures = t.wait_for_lines("failures.ndjson", 2);
    let kinds: Vec<&str> = failures
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"Rejected") && kinds.contains(&"Message"),
        "{failures:?}"
    );
    assert!(all.iter().any(|r| r["type"] == "Request"));
    let rejected = failures.iter().find(|r| r["type"] == "Rejected").unwrap();
    assert_eq!(rejected["response_status_code"], 403);
    assert_eq!(rejected["tag_name"], "spotify");
    assert!(!serde_json::to_string(&all).unwrap().contains("Bearer"));
}
