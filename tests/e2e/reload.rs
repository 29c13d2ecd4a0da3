//! Configuration reloads of a running process: SIGHUP and `--watch-config`.

use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::http_client::{post_json, read_one_reply};
use crate::support::{Tagpipe, eventually};

/// A pipeline whose `mapping` stamps events with `version`, into a file.
fn pipeline(version: &str, batch: usize) -> String {
    format!(
        "sources:
  http:
    listen: 127.0.0.1:{{port}}
processors:
  mapping/stamp:
    operations:
      - set: {{path: version, value: \"{version}\"}}
sinks:
  file/out:
    path: {{dir}}/out.ndjson
    batch: {{max_events: {batch}}}
pipelines:
  p: {{sources: [http], processors: [mapping/stamp], sinks: [file/out]}}
"
    )
}

/// Writes the new pipeline file the way an editor or deployment would (a replaced file).
fn rewrite(t: &Tagpipe, yaml: &str) {
    let yaml = yaml
        .replace("{port}", &t.addr.port().to_string())
        .replace("{dir}", &t.dir.display().to_string());
    let next = t.dir.join("pipeline.yaml.next");
    std::fs::write(&next, yaml).unwrap();
    std::fs::rename(next, t.config_file()).unwrap();
}

fn reloads(t: &Tagpipe) -> usize {
    t.logs().matches("configuration reloaded").count()
}

/// Posts `{"n": i}` on one keep-alive connection; every answer must be 200.
fn post_numbered(stream: &mut TcpStream, range: std::ops::Range<usize>) {
    for i in range {
        let body = format!("{{\"n\":{i}}}");
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("the connection stays open");
        let reply = read_one_reply(stream);
        assert_eq!(reply.status, 200, "event {i}");
    }
}

#[test]
fn sighup_applies_a_changed_pipeline_without_dropping_connections_or_events() {
    let t = Tagpipe::start("reload-sighup", &pipeline("1", 1));
    let mut stream = TcpStream::connect(t.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    post_numbered(&mut stream, 0..100);
    // Both the processor and the sink change; the source does not.
    rewrite(&t, &pipeline("2", 7));
    t.signal("HUP");
    // Keep sending on the same connection while the reload happens.
    post_numbered(&mut stream, 100..200);
    eventually("the reload", Duration::from_secs(20), || reloads(&t) == 1);
    post_numbered(&mut stream, 200..300);
    let lines = t.wait_for_lines("out.ndjson", 300);
    let mut numbers: Vec<u64> = lines.iter().map(|l| l["n"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..300).collect::<Vec<u64>>(),
        "lost or repeated events"
    );
    let version = |n: u64| {
        lines
            .iter()
            .find(|l| l["n"] == n)
            .map(|l| l["version"].clone())
            .unwrap()
    };
    assert_eq!(version(0), Value::from("1"));
    assert_eq!(version(299), Value::from("2"));
    let logs = t.logs();
    assert!(logs.contains("SIGHUP received"), "{logs}");
    assert!(
        logs.contains(r#"["file/out", "mapping/stamp"]"#),
        "the reload names what it rebuilt: {logs}"
    );
    drop(stream);
    assert!(t.stop().success());
}

#[test]
fn an_invalid_file_is_reported_with_its_position_and_the_old_pipelines_keep_running() {
    let t = Tagpipe::start("reload-invalid", &pipeline("1", 1));
    rewrite(&t, &pipeline("2", 1).replace("    batch:", "    bacth:"));
    t.signal("HUP");
    eventually("the reload error", Duration::from_secs(20), || {
        t.logs().contains("the new configuration is invalid")
    });
    let logs = t.logs();
    assert!(
        logs.contains("pipeline.yaml:11:5"),
        "file:line:column: {logs}"
    );
    assert!(logs.contains("bacth"), "{logs}");
    assert_eq!(post_json(t.addr, "/v1/events", b"{\"n\":1}").status, 200);
    let lines = t.wait_for_lines("out.ndjson", 1);
    assert_eq!(lines[0]["version"], "1", "the old pipeline still runs");
    assert_eq!(reloads(&t), 0);
    assert!(t.stop().success());
}

#[test]
fn watch_config_reloads_when_the_file_changes() {
    let t = Tagpipe::start_with("reload-watch", &pipeline("1", 1), &[], &["--watch-config"]);
    assert_eq!(post_json(t.addr, "/v1/events", b"{\"n\":0}").status, 200);
    rewrite(&t, &pipeline("2", 1));
    eventually("the reload", Duration::from_secs(20), || reloads(&t) == 1);
    assert!(t.logs().contains("the configuration file changed"));
    assert_eq!(post_json(t.addr, "/v1/events", b"{\"n\":1}").status, 200);
    let lines = t.wait_for_lines("out.ndjson", 2);
    assert_eq!(lines[0]["version"], "1");
    assert_eq!(lines[1]["version"], "2");
    assert!(t.stop().success());
}

#[test]
fn a_changed_source_restarts_on_the_same_port_with_its_new_settings() {
    let t = Tagpipe::start("reload-source", &pipeline("1", 1));
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
    assert_eq!(post_json(t.addr, "/v1/events", big.as_bytes()).status, 200);
    rewrite(
        &t,
        &pipeline("1", 1).replace(
            "    listen: 127.0.0.1:{port}\n",
            "    listen: 127.0.0.1:{port}\n    max_body_bytes: 100\n",
        ),
    );
    t.signal("HUP");
    eventually("the reload", Duration::from_secs(20), || reloads(&t) == 1);
    assert!(
        t.logs().contains(r#"["http"]"#),
        "the source was rebuilt: {}",
        t.logs()
    );
    assert_eq!(post_json(t.addr, "/v1/events", big.as_bytes()).status, 413);
    assert_eq!(post_json(t.addr, "/v1/events", b"{\"n\":1}").status, 200);
    assert_eq!(t.wait_for_lines("out.ndjson", 2).len(), 2);
    assert!(t.stop().success());
}
