//! Processors in real pipelines: the same events fanned out to a pipeline with consent, mapping
//! and hashing, and to one without — which must receive them unchanged.

use serde_json::json;

use crate::http_client::send;
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
