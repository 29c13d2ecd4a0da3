//! The `bigquery` sink and the delivery-log stream against a real BigQuery emulator
//! (`bqemulator`, installed by `./scripts/test.sh`), started and stopped by each test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tagpipe_capi_receiver::{Receiver, ReceiverConfig};

use crate::http_client::{post_json, send};
use crate::support::{Tagpipe, eventually, free_port, scratch};

const PROJECT: &str = "test-project";

/// A running emulator, stopped (SIGTERM, then SIGKILL) when dropped.
/// One emulator at a time: several Python emulators starting at once on two cores (beside the
/// rest of the suite) made some stop answering within the tests' limits.
pub fn emulator_slot() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SLOT.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct Emulator {
    child: Option<Child>,
    pub rest_port: u16,
    grpc_port: u16,
    data_dir: Option<PathBuf>,
}

impl Emulator {
    /// Starts an ephemeral emulator on free ports and waits until it is ready.
    pub fn start() -> Self {
        Self::launch(free_port(), free_port(), None)
    }

    /// Starts an emulator keeping its data in `dir` (survives restarts).
    pub fn start_persistent(dir: PathBuf) -> Self {
        Self::launch(free_port(), free_port(), Some(dir))
    }

    fn launch(rest_port: u16, grpc_port: u16, data_dir: Option<PathBuf>) -> Self {
        let bin = std::env::var("TAGPIPE_BQ_EMULATOR").unwrap_or_else(|_| {
            panic!("TAGPIPE_BQ_EMULATOR is not set: run the suite with ./scripts/test.sh, which installs the BigQuery emulator")
        });
        let home =
            std::env::var("TAGPIPE_BQ_HOME").expect("TAGPIPE_BQ_HOME (set by ./scripts/test.sh)");
        let mut cmd = Command::new(bin);
        cmd.env("HOME", home)
            .env("BQEMU_ENABLE_FORMAT_EXTENSIONS", "false")
            .args([
                "start",
                "--rest-host",
                "127.0.0.1",
                "--grpc-host",
                "127.0.0.1",
            ])
            .args([
                "--rest-port",
                &rest_port.to_string(),
                "--grpc-port",
                &grpc_port.to_string(),
            ])
            .args(["--project", PROJECT, "--log-level", "warning"]);
        match &data_dir {
            Some(dir) => cmd.arg("--persistent").arg("--data-dir").arg(dir),
            None => cmd.arg("--ephemeral"),
        };
        let log = scratch(&format!("bqemulator-{rest_port}")).join("emulator.log");
        let log = std::fs::File::create(log).expect("emulator log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start the emulator");
        let mut emulator = Self {
            child: Some(child),
            rest_port,
            grpc_port,
            data_dir,
        };
        emulator.wait_ready();
        emulator
    }

    fn wait_ready(&mut self) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.rest_port));
        let start = Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                use std::io::Write as _;
                let _ =
                    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the emulator exited: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the emulator did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The REST base URL for the sink.
    pub fn rest(&self) -> String {
        format!("http://127.0.0.1:{}/bigquery/v2", self.rest_port)
    }

    /// The Storage Write gRPC endpoint for the sink.
    pub fn grpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Kills the emulator (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports (and data directory).
    pub fn restart(&mut self) {
        self.kill();
        let again = Self::launch(self.rest_port, self.grpc_port, self.data_dir.clone());
        *self = again;
    }

    /// Runs a standard-SQL query; returns the rows as arrays of cell values (retrying while the
    /// emulator is busy or restarting).
    pub fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.rest_port));
        let body = json!({"query": sql, "useLegacySql": false}).to_string();
        let raw = crate::http_client::build(
            "POST",
            &format!("/bigquery/v2/projects/{PROJECT}/queries"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let start = Instant::now();
        let reply = loop {
            if let Some(reply) = crate::http_client::try_send(addr, &raw) {
                break reply;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the emulator does not answer queries"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let v = reply.json();
        assert!(reply.status == 200, "query failed: {v}");
        v["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                r["f"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["v"].clone())
                    .collect()
            })
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = tagpipe_loadtest::process::terminate(child.id());
            let mut child = child;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `bigquery` sink definition writing to the emulator with `write_api`.
pub fn bigquery_sink(
    id: &str,
    emulator: &Emulator,
    dataset: &str,
    table: &str,
    write_api: &str,
    extra: &str,
) -> String {
    format!(
        "  {id}:\n    project: {PROJECT}\n    dataset: {dataset}\n    table: {table}\n    auth: {{type: none}}\n    \
         endpoint: {{rest: \"{}\", grpc: \"{}\"}}\n    write_api: {write_api}\n    create_table: true\n    \
         batch: {{max_events: 100, timeout: 200ms}}\n    \
         retry: {{initial_interval: 100ms, max_interval: 1s, max_elapsed: 2m}}\n{extra}",
        emulator.rest(),
        emulator.grpc()
    )
}

const TOKEN: &str = "capi-tok-NEVER-IN-ROWS";

#[test]
fn spotify_delivery_logs_land_in_bigquery_in_the_stape_shape() {
    let _slot = emulator_slot();
    let emulator = Emulator::start();
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\n  logs:\nsinks:\n  spotify:\n    auth_token: ${{env:CAPI_TOKEN}}\n    \
         connection_id: conn-1\n    endpoint: {}\n    log_type: no\n{}pipelines:\n  spotify: {{sources: [http], sinks: [spotify]}}\n  \
         logs: {{sources: [logs], sinks: [bigquery/logs]}}\n",
        receiver.url(),
        bigquery_sink(
            "bigquery/logs",
            &emulator,
            "tagging",
            "spotify_logs",
            // Storage Write is covered by `event_rows_and_per_row_errors_with_storage_write`;
            // here the emulator sometimes stopped answering queries while an append stream
            // was open, which is not what this test is about.
            "insert_all",
            "    schema: stape_logs
"
        )
    );
    let t = Tagpipe::start_with_env("bq-logs", &yaml, &[("CAPI_TOKEN", TOKEN)]);
    let event = json!({"event_name": "Purchase", "event_id": "e-1", "ip_override": "1.1.1.1", "timestamp": 1_748_377_016});
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("trace-id", "trace-42"),
        ],
        event.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200);
    let sql = "SELECT type, trace_id, tag_name, event_name, request_method, request_url, request_body, \
               response_status_code, response_body FROM tagging.spotify_logs ORDER BY timestamp, type";
    eventually("Request and Response rows", Duration::from_secs(60), || {
        emulator.query(sql).len() >= 2
    });
    let rows = emulator.query(sql);
    let request = rows
        .iter()
        .find(|r| r[0] == "Request")
        .expect("a Request row");
    let response = rows
        .iter()
        .find(|r| r[0] == "Response")
        .expect("a Response row");
    assert_eq!(request[1], "trace-42");
    assert_eq!(request[2], "spotify");
    assert_eq!(request[3], "Purchase");
    assert_eq!(request[4], "POST");
    assert_eq!(request[5], receiver.url());
    let sent: Value = serde_json::from_str(request[6].as_str().unwrap()).unwrap();
    assert_eq!(sent["conversion_events"]["events"][0]["event_id"], "e-1");
    assert_eq!(response[7], "200");
    assert!(response[8].as_str().unwrap().contains("SUCCESS"));
    let everything = emulator.query("SELECT TO_JSON_STRING(t) FROM tagging.spotify_logs AS t");
    let text = serde_json::to_string(&everything).unwrap();
    assert!(!text.contains(TOKEN), "the token must not reach BigQuery");
    assert!(t.stop().success());
}

#[test]
fn event_rows_and_per_row_errors_with_insert_all() {
    event_rows_and_per_row_errors("insert_all");
}

#[test]
fn event_rows_and_per_row_errors_with_storage_write() {
    event_rows_and_per_row_errors("storage_write");
}

fn event_rows_and_per_row_errors(write_api: &str) {
    let _slot = emulator_slot();
    let emulator = Emulator::start();
    let custom = "    schema: custom\n    columns:\n      - {name: event_id, type: string, path: event_id}\n      \
                  - {name: qty, type: integer, path: items.0.quantity}\n      - {name: at, type: timestamp, path: timestamp}\n";
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n{}{}pipelines:\n  p: {{sources: [http], sinks: [bigquery/events, bigquery/custom]}}\n",
        bigquery_sink(
            "bigquery/events",
            &emulator,
            "analytics",
            "events",
            write_api,
            "    schema: events
"
        ),
        bigquery_sink(
            "bigquery/custom",
            &emulator,
            "analytics",
            "custom",
            write_api,
            custom
        ),
    );
    let t = Tagpipe::start(&format!("bq-events-{write_api}"), &yaml);
    let events = json!([
        {"event_name": "purchase", "event_id": "p-1", "client_id": "1.2", "timestamp": 1_748_377_016,
         "value": 59.9, "currency": "EUR", "page_location": "https://shop.example.com/", "items": [{"quantity": 2}]},
        {"event_name": "page_view", "event_id": "p-2", "items": [{"quantity": "lots"}]},
        {"event_name": "bad_time", "event_id": "p-3", "timestamp": "not a time"}
    ]);
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("x-tagpipe-debug", "1"),
        ],
        events.to_string().as_bytes(),
    );
    let answer = reply.json();
    assert_eq!(
        answer["events"][0]["destinations"]["bigquery/events"]["outcome"], "sent",
        "{answer}"
    );
    assert_eq!(
        answer["events"][1]["destinations"]["bigquery/events"]["outcome"], "sent",
        "{answer}"
    );
    assert_eq!(
        answer["events"][0]["destinations"]["bigquery/custom"]["outcome"], "sent",
        "{answer}"
    );
    let bad = &answer["events"][1]["destinations"]["bigquery/custom"];
    assert_eq!(bad["outcome"], "failed", "{answer}");
    assert!(bad["reason"].as_str().unwrap().contains("qty"), "{bad}");
    // A value only BigQuery refuses: its per-row error becomes that event's outcome alone.
    let refused = &answer["events"][2]["destinations"]["bigquery/events"];
    assert_eq!(refused["outcome"], "failed", "{answer}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .starts_with("rejected row:"),
        "{refused}"
    );
    let rows = emulator.query(
        "SELECT event_name, event_id, client_id, value, currency, page_location, JSON_VALUE(event, '$.items[0].quantity') \
         FROM analytics.events ORDER BY event_id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0][0..6],
        [
            json!("purchase"),
            json!("p-1"),
            json!("1.2"),
            json!("59.9"),
            json!("EUR"),
            json!("https://shop.example.com/")
        ]
    );
    assert_eq!(rows[0][6], "2");
    let custom_rows = emulator.query("SELECT event_id, qty FROM analytics.custom");
    assert_eq!(custom_rows, [vec![json!("p-1"), json!("2")]]);
}

#[test]
fn a_missing_table_without_create_table_stops_start_up() {
    let _slot = emulator_slot();
    let emulator = Emulator::start();
    let yaml = format!(
        "sources:\n  stdin:\nsinks:\n  bigquery:\n    project: {PROJECT}\n    dataset: nope\n    table: absent\n    \
         auth: {{type: none}}\n    endpoint: {{rest: \"{}\"}}\npipelines:\n  p: {{sources: [stdin], sinks: [bigquery]}}\n",
        emulator.rest()
    );
    let (code, stderr) = crate::support::run_pipeline("bq-missing", &yaml, &[]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("table test-project.nope.absent does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("create_table: true"), "{stderr}");
}

#[test]
fn every_row_survives_an_emulator_crash_mid_stream() {
    let _slot = emulator_slot();
    let data = scratch("bq-crash-data");
    let mut emulator = Emulator::start_persistent(data);
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n{}pipelines:\n  p: {{sources: [http], sinks: [bigquery]}}\n",
        bigquery_sink(
            "bigquery",
            &emulator,
            "crash",
            "events",
            "insert_all",
            "    schema: events
"
        )
    );
    let t = Tagpipe::start("bq-crash", &yaml);
    let total = 300;
    for i in 0..total {
        if i == 100 {
            emulator.kill();
        }
        if i == 200 {
            emulator.restart();
        }
        let e = json!({"event_name": "purchase", "event_id": format!("id-{i}"), "timestamp": 1_748_377_016});
        let reply = post_json(t.addr, "/v1/events", e.to_string().as_bytes());
        assert_eq!(reply.status, 200);
    }
    let sql = "SELECT COUNT(DISTINCT event_id) FROM crash.events";
    eventually(
        "every accepted row in BigQuery",
        Duration::from_secs(120),
        || {
            emulator
                .query(sql)
                .first()
                .and_then(|r| r[0].as_str().map(str::to_owned))
                == Some(total.to_string())
        },
    );
}

#[test]
fn the_health_check_reads_the_table_before_start_up() {
    use tagpipe_core::SinkConfig;
    use tagpipe_sink_bigquery::BigQuerySinkConfig;

    let _slot = emulator_slot();
    let emulator = Emulator::start();
    let config = |rest: &str, create_table: bool| -> BigQuerySinkConfig {
        serde_json::from_value(json!({
            "project": PROJECT, "dataset": "health", "table": "absent",
            "auth": {"type": "none"}, "endpoint": {"rest": rest},
            "create_table": create_table
        }))
        .expect("valid config")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check = |c: BigQuerySinkConfig| runtime.block_on(async move { c.healthcheck().await });

    let missing = check(config(&emulator.rest(), false))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("table test-project.health.absent does not exist"),
        "{missing}"
    );
    // Start-up will create it: healthy, because BigQuery answered "not found".
    check(config(&emulator.rest(), true)).expect("creatable table is healthy");
    // Nothing listening: unhealthy even though the table would be created.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let unreachable = check(config(&dead, true)).unwrap_err().to_string();
    assert!(
        unreachable.contains("cannot read table test-project.health.absent"),
        "{unreachable}"
    );

    // With --require-healthy the failed check is what stops the start.
    let yaml = format!(
        "sources:\n  stdin:\nsinks:\n  bigquery:\n    project: {PROJECT}\n    dataset: health\n    \
         table: absent\n    auth: {{type: none}}\n    endpoint: {{rest: \"{}\"}}\n\
         pipelines:\n  p: {{sources: [stdin], sinks: [bigquery]}}\n",
        emulator.rest()
    );
    let (code, stderr) =
        crate::support::run_pipeline("bq-unhealthy", &yaml, &["--require-healthy"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("health check failed: table test-project.health.absent"),
        "{stderr}"
    );
}
