//! The auth token appears in no output of a full run: stdout, stderr (debug logs), written files
//! (events, delivery logs, dead letters), debug answers, `/metrics`, error answers.

use serde_json::json;
use tagpipe_capi_receiver::{Receiver, ReceiverConfig, Reply};

use crate::http_client::{post_json, send};
use crate::support::Tagpipe;

const TOKEN: &str = "capi-SECRET-token-5b1e";

#[test]
fn the_token_is_in_no_output_of_a_full_run() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([
        Reply::Status(500, "oops".into()),
        Reply::Status(401, "bad token".into()),
    ]);
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\n  logs:\nsinks:\n  spotify:\n    auth_token: ${{file:{{dir}}/token}}\n    \
         connection_id: c\n    endpoint: {}\n    log_type: always\n    dead_letter: file/dead\n    \
         retry: {{initial_interval: 50ms, max_interval: 100ms, max_elapsed: 5s}}\n  file/dead:\n    path: {{dir}}/dead.ndjson\n  \
         file/logs:\n    path: {{dir}}/logs.ndjson\n  file/events:\n    path: {{dir}}/events.ndjson\n  console:\n\
         pipelines:\n  p: {{sources: [http], sinks: [spotify, file/events, console]}}\n  l: {{sources: [logs], sinks: [file/logs]}}\n",
        receiver.url()
    );
    // The token comes from a file, as a mounted secret would.
    let dir = crate::support::scratch("secrets-token");
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let yaml = yaml.replace(
        "${file:{dir}/token}",
        &format!("${{file:{}}}", dir.join("token").display()),
    );
    let t = Tagpipe::start_with_env("secrets-full", &yaml, &[("RUST_LOG", "debug")]);
    let events = json!([{"event_name": "Purchase", "event_id": "s-1", "ip_override": "1.1.1.1"}]);
    let answer = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("x-tagpipe-debug", "1"),
        ],
        events.to_string().as_bytes(),
    );
    let bad = post_json(t.addr, "/v1/events", b"{oops");
    let metrics = send(t.addr, "GET", "/metrics", &[], b"");
    t.wait_for_lines("dead.ndjson", 1);
    // Request, Response (500), Retry, Request, Response (401), Rejected — written as they happen.
    crate::support::eventually(
        "the Rejected record written",
        std::time::Duration::from_secs(20),
        || {
            std::fs::read_to_string(t.dir.join("logs.ndjson"))
                .is_ok_and(|l| l.contains("\"type\":\"Rejected\""))
        },
    );
    let mut outputs = vec![
        (
            "debug answer",
            String::from_utf8_lossy(&answer.body).into_owned(),
        ),
        (
            "error answer",
            String::from_utf8_lossy(&bad.body).into_owned(),
        ),
        (
            "metrics",
            String::from_utf8_lossy(&metrics.body).into_owned(),
        ),
    ];
    for file in ["dead.ndjson", "logs.ndjson", "events.ndjson", "stderr.log"] {
        outputs.push((
            file,
            std::fs::read_to_string(t.dir.join(file)).unwrap_or_default(),
        ));
    }
    assert!(outputs[0].1.contains("HTTP 401"), "{}", outputs[0].1);
    assert!(
        outputs[4].1.contains("\"type\":\"Rejected\""),
        "delivery logs were written"
    );
    for (what, text) in &outputs {
        assert!(
            !text.is_empty() || *what == "events.ndjson",
            "{what} is empty"
        );
        assert!(
            !text.contains(TOKEN) && !text.contains("SECRET"),
            "the token leaked into {what}"
        );
    }
    assert_eq!(
        receiver.requests()[0].headers["authorization"],
        format!("Bearer {TOKEN}")
    );
    let status = t.stop();
    assert!(status.success());
}
