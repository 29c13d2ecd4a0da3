//! Scale-out through NATS JetStream: ingest processes (HTTP → `nats` sink) and delivery
//! processes (`nats` source → destination) around real `nats-server` processes on loopback.
//! The README's test command installs `nats-server`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_client::post_json;
use crate::support::{Tagpipe, eventually, free_port, scratch};

/// A `nats-server` with JetStream, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
}

impl NatsServer {
    /// A single server on a free port.
    pub fn start(name: &str) -> Self {
        Self::start_on(free_port(), name)
    }

    /// A single server on `port` (storage in a scratch directory named after `name`).
    pub fn start_on(port: u16, name: &str) -> Self {
        Self::launch(port, Self::single(port, name))
    }

    /// A single server speaking TLS only, with `cert`/`key`, on a free port.
    pub fn start_tls(name: &str, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let port = free_port();
        let mut args = Self::single(port, name);
        args.extend([
            "--tls".into(),
            "--tlscert".into(),
            cert.display().to_string(),
        ]);
        args.extend(["--tlskey".into(), key.display().to_string()]);
        Self::launch(port, args)
    }

    /// The arguments of a single JetStream server on loopback.
    fn single(port: u16, name: &str) -> Vec<String> {
        let dir = scratch(&format!("nats-{name}"));
        vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            dir.display().to_string(),
            "--server_name".into(),
            name.into(),
        ]
    }

    /// Node `i` of a three-node cluster whose route ports are `routes`.
    fn cluster_node(i: usize, ports: [u16; 3], routes: [u16; 3], dir: &std::path::Path) -> Self {
        let others: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
            .collect();
        let config = format!(
            "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
             cluster {{ name: tagpipe-test\n  listen: 127.0.0.1:{}\n  routes: [{}] }}\n",
            ports[i],
            dir.join(format!("n{i}")).display(),
            routes[i],
            others.join(", ")
        );
        let file = dir.join(format!("n{i}.conf"));
        std::fs::write(&file, config).unwrap();
        Self::launch(ports[i], vec!["-c".into(), file.display().to_string()])
    }

    fn launch(port: u16, args: Vec<String>) -> Self {
        let mut server = Self {
            child: None,
            port,
            args,
        };
        server.restart();
        server
    }

    /// Starts the server (again), and waits until it accepts clients.
    pub fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (the README's test command installs it)");
        self.child = Some(child);
        eventually(
            "nats-server accepting clients",
            Duration::from_secs(20),
            || TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        );
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An ingest node: HTTP → `nats` sink.
fn ingest(name: &str, urls: &[String], extra: &str) -> Tagpipe {
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\n    wait_timeout: 30s\nsinks:\n  nats:\n    \
         connection: {{urls: [{}]}}\n    stream: {{name: EVENTS, replicas: {}}}\n{extra}pipelines:\n  \
         p: {{sources: [http], sinks: [nats]}}\n",
        urls.join(", "),
        if urls.len() == 3 { 3 } else { 1 },
    );
    Tagpipe::start(name, &yaml)
}

/// A delivery node: `nats` source → file (the destination stand-in), `{dir}/out.ndjson`.
fn delivery(name: &str, urls: &[String], wait_for_log: &str) -> Tagpipe {
    let yaml = format!(
        "sources:\n  nats:\n    connection: {{urls: [{}]}}\n    stream: {{name: EVENTS, replicas: {}}}\n    \
         consumer: delivery\n    ack_wait: 3s\n    nak_delay: 200ms\n    max_in_flight: 50\n\
         sinks:\n  file/out:\n    path: {{dir}}/out.ndjson\n    batch: {{max_events: 20, timeout: 100ms}}\n\
         pipelines:\n  p: {{sources: [nats], sinks: [file/out]}}\n",
        urls.join(", "),
        if urls.len() == 3 { 3 } else { 1 },
    );
    Tagpipe::start_until_logged(name, &yaml, wait_for_log)
}

/// Posts events `{"n": from..to}` in requests of `per_request`; every answer must be 200.
fn post_events(t: &Tagpipe, range: std::ops::Range<usize>, per_request: usize) {
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(per_request) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"event_name": "purchase", "n": n}))
            .collect();
        let reply = post_json(
            t.addr,
            "/v1/events",
            Value::Array(events).to_string().as_bytes(),
        );
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}

/// Every delivered line, from every delivery node.
fn delivered(nodes: &[&Tagpipe]) -> Vec<Vec<Value>> {
    nodes.iter().map(|t| t.ndjson("out.ndjson")).collect()
}

/// Waits for `n` distinct events, then checks nothing is lost and any duplicate is the same
/// event (same `event_id`); answers how many lines each node wrote.
fn assert_all_delivered(nodes: &[&Tagpipe], n: usize) -> Vec<usize> {
    let distinct = |lines: &[Vec<Value>]| -> BTreeSet<u64> {
        lines
            .iter()
            .flatten()
            .filter_map(|l| l["n"].as_u64())
            .collect()
    };
    eventually(
        &format!("{n} distinct events delivered"),
        Duration::from_secs(90),
        || distinct(&delivered(nodes)).len() >= n,
    );
    std::thread::sleep(Duration::from_millis(500));
    let lines = delivered(nodes);
    assert_eq!(distinct(&lines), (0..n as u64).collect::<BTreeSet<u64>>());
    let mut ids: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for line in lines.iter().flatten() {
        let id = line["event_id"]
            .as_str()
            .expect("every event has an event_id")
            .to_owned();
        ids.entry(line["n"].as_u64().unwrap())
            .or_default()
            .insert(id);
    }
    let all_ids: BTreeSet<&String> = ids.values().flatten().collect();
    assert_eq!(all_ids.len(), n, "exactly {n} distinct event_ids");
    assert!(
        ids.values().all(|i| i.len() == 1),
        "a duplicate always has the same event_id"
    );
    lines.iter().map(Vec::len).collect()
}

#[test]
fn two_ingest_and_three_delivery_processes_deliver_every_event_once() {
    use tagpipe_capi_receiver::{Receiver, ReceiverConfig};
    let nats = NatsServer::start("fleet");
    let receiver = Receiver::spawn(ReceiverConfig::new("tok"));
    // Three delivery workers → the Spotify sink → the CAPI stand-in; each worker sends with its
    // own connection id, so the receiver tells who delivered what.
    let workers: Vec<Tagpipe> = (0..3)
        .map(|i| {
            let yaml = format!(
                "sources:\n  nats:\n    connection: {{urls: [{}]}}\n    stream: {{name: EVENTS}}\n    \
                 consumer: delivery\n    max_in_flight: 50\nsinks:\n  spotify:\n    auth_token: tok\n    \
                 connection_id: worker-{i}\n    endpoint: {}\n    log_type: no\n    \
                 batch: {{max_events: 20, timeout: 50ms}}\npipelines:\n  p: {{sources: [nats], sinks: [spotify]}}\n",
                nats.url(),
                receiver.url()
            );
            Tagpipe::start_until_logged(&format!("nats-delivery-{i}"), &yaml, "reading from JetStream")
        })
        .collect();
    let urls = [nats.url()];
    let a = ingest("nats-ingest-a", &urls, "");
    let b = ingest("nats-ingest-b", &urls, "");
    // Rounds with pauses, as traffic comes: idle workers pull the next messages.
    for round in 0..30 {
        let base = round * 20;
        let node = if round % 2 == 0 { &a } else { &b };
        let events: Vec<Value> = (base..base + 20)
            .map(|n| json!({"event_name": "purchase", "n": n, "ip_override": "198.51.100.7"}))
            .collect();
        for chunk in events.chunks(5) {
            let reply = post_json(
                node.addr,
                "/v1/events",
                Value::Array(chunk.to_vec()).to_string().as_bytes(),
            );
            assert_eq!(reply.status, 200);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    eventually(
        "600 events at the receiver",
        Duration::from_secs(90),
        || receiver.accepted_events().len() >= 600,
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for request in receiver.requests() {
        assert!(request.violations.is_empty(), "{:?}", request.violations);
        let batch = &request.body["conversion_events"];
        let events = batch["events"].as_array().expect("events");
        *per_worker
            .entry(batch["capi_connection_id"].as_str().unwrap().to_owned())
            .or_default() += events.len();
        for event in events {
            ids.insert(event["event_id"].as_str().expect("an event_id").to_owned());
        }
    }
    assert_eq!(ids.len(), 600, "exactly 600 distinct event_ids");
    assert_eq!(
        per_worker.values().sum::<usize>(),
        600,
        "each once: {per_worker:?}"
    );
    assert_eq!(
        per_worker.len(),
        3,
        "every worker took a share: {per_worker:?}"
    );
    for t in [a, b] {
        assert!(t.stop().success());
    }
    for t in workers {
        assert!(t.stop().success());
    }
}

#[test]
fn a_delivery_worker_killed_mid_stream_loses_nothing() {
    let nats = NatsServer::start("kill");
    let urls = [nats.url()];
    let mut doomed = delivery("nats-kill-doomed", &urls, "reading from JetStream");
    let survivor = delivery("nats-kill-survivor", &urls, "reading from JetStream");
    let ingest = ingest("nats-kill-ingest", &urls, "");
    post_events(&ingest, 0..300, 10);
    // Kill one worker while it holds messages it has not acked yet.
    eventually(
        "the doomed worker delivering",
        Duration::from_secs(30),
        || !doomed.ndjson("out.ndjson").is_empty(),
    );
    doomed.child.kill().unwrap();
    let _ = doomed.child.wait();
    post_events(&ingest, 300..400, 10);
    let per_node = assert_all_delivered(&[&doomed, &survivor], 400);
    assert!(per_node[1] > 0, "{per_node:?}");
    assert!(ingest.stop().success());
    assert!(survivor.stop().success());
}

#[test]
fn a_three_node_cluster_losing_a_node_under_load_loses_nothing() {
    let dir = scratch("nats-cluster");
    let ports = [free_port(), free_port(), free_port()];
    let routes = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<NatsServer> = (0..3)
        .map(|i| NatsServer::cluster_node(i, ports, routes, &dir))
        .collect();
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    // The stream is R3: JetStream needs the cluster formed (a meta leader) to create it.
    let worker = delivery("nats-cluster-delivery", &urls, "reading from JetStream");
    let ingest = ingest("nats-cluster-ingest", &urls, "");
    post_events(&ingest, 0..200, 10);
    nodes[1].kill();
    post_events(&ingest, 200..400, 10);
    let per_node = assert_all_delivered(&[&worker], 400);
    assert!(per_node[0] >= 400);
    assert!(ingest.stop().success());
    assert!(worker.stop().success());
    drop(nodes);
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}

#[test]
fn nats_down_at_start_is_waited_for_and_reported() {
    let port = free_port();
    let urls = [format!("nats://127.0.0.1:{port}")];
    let worker = delivery(
        "nats-late-delivery",
        &urls,
        "JetStream stream not available yet",
    );
    // Optimistic: the client is answered while NATS is still away; the sink keeps retrying.
    let ingest = ingest("nats-late-ingest", &urls, "    optimistic: true\n");
    post_events(&ingest, 0..50, 10);
    std::thread::sleep(Duration::from_millis(500));
    assert!(worker.ndjson("out.ndjson").is_empty());
    let started = Instant::now();
    let _nats = NatsServer::start_on(port, "late");
    assert_all_delivered(&[&worker], 50);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(ingest.logs().contains("retrying"), "{}", ingest.logs());
    // The start-up health check connected once and let go: no client of its own kept
    // reconnecting in the background.
    assert!(
        !ingest.logs().contains("nats/healthcheck"),
        "{}",
        ingest.logs()
    );
    assert!(
        worker.logs().contains("connected to NATS"),
        "{}",
        worker.logs()
    );
    assert!(ingest.stop().success());
    assert!(worker.stop().success());
}

#[test]
fn a_required_health_check_with_nats_down_fails_at_once() {
    // `--require-healthy` stops the start with the reason instead of waiting for NATS.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let yaml = format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{}\nsinks:\n  nats:\n    connection: {{urls: [{url}], connect_timeout: 1s}}\n\
         pipelines:\n  p: {{sources: [http], sinks: [nats]}}\n",
        free_port()
    );
    let started = Instant::now();
    let (code, stderr) =
        crate::support::run_pipeline("nats-health-down", &yaml, &["--require-healthy"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("nats"), "{stderr}");
    assert!(stderr.contains("health"), "{stderr}");
    // Hang guard, not a timing assertion: a retrying client would never give up.
    assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
}

#[test]
fn a_failing_destination_gets_redeliveries_then_the_dead_letter_sink() {
    use tagpipe_capi_receiver::{Receiver, ReceiverConfig, Reply};
    let nats = NatsServer::start("dead");
    let receiver = Receiver::spawn(ReceiverConfig::new("tok"));
    receiver.set_default(Reply::Status(400, "{\"error\":\"invalid event\"}".into()));
    let worker_yaml = format!(
        "sources:\n  nats:\n    connection: {{urls: [{}]}}\n    stream: {{name: EVENTS}}\n    \
         consumer: delivery\n    max_deliver: 3\n    nak_delay: 100ms\n    dead_letter: file/dead\n\
         sinks:\n  spotify:\n    auth_token: tok\n    connection_id: c\n    endpoint: {}\n    log_type: no\n  \
         file/dead:\n    path: {{dir}}/dead.ndjson\npipelines:\n  p: {{sources: [nats], sinks: [spotify]}}\n",
        nats.url(),
        receiver.url()
    );
    let worker =
        Tagpipe::start_until_logged("nats-dead-delivery", &worker_yaml, "reading from JetStream");
    let ingest = ingest("nats-dead-ingest", &[nats.url()], "");
    let event = json!({"event_name": "purchase", "event_id": "e-7", "ip_override": "198.51.100.4"});
    assert_eq!(
        post_json(ingest.addr, "/v1/events", event.to_string().as_bytes()).status,
        200
    );
    let dead = worker.wait_for_lines("dead.ndjson", 1);
    assert_eq!(dead[0]["event_id"], "e-7");
    assert_eq!(dead[0]["dead_letter"]["source"], "nats");
    assert_eq!(dead[0]["dead_letter"]["deliveries"], 3);
    assert!(
        dead[0]["dead_letter"]["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 400"),
        "{}",
        dead[0]
    );
    // Delivered (and refused) once per delivery: the first and two redeliveries.
    assert_eq!(receiver.requests().len(), 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        worker.ndjson("dead.ndjson").len(),
        1,
        "acked after dead-lettering"
    );
    assert!(ingest.stop().success());
    assert!(worker.stop().success());
}

#[test]
fn a_source_dead_letter_must_name_a_sink() {
    let dir = scratch("nats-validate");
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        "sources:\n  nats:\n    consumer: delivery\n    dead_letter: file/dead_leters\nsinks:\n  console:\n  \
         file/dead_letters:\n    path: /tmp/x.ndjson\npipelines:\n  p: {sources: [nats], sinks: [console]}\n",
    )
    .unwrap();
    let out = crate::support::run(crate::support::bin().arg("validate").arg(&file));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("p.yaml:4:5"), "{stderr}");
    assert!(
        stderr.contains("dead_letter `file/dead_leters` is not a sink")
            && stderr.contains("file/dead_letters"),
        "{stderr}"
    );
    // Named correctly, the dead-letter sink counts as used (no warning).
    let fixed = std::fs::read_to_string(&file)
        .unwrap()
        .replace("dead_leters", "dead_letters");
    std::fs::write(&file, fixed).unwrap();
    let out = crate::support::run(crate::support::bin().arg("validate").arg(&file));
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no pipeline uses"));
}

/// A throw-away CA and a server certificate for 127.0.0.1 (openssl): `(ca.pem, cert, key)`.
fn test_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=tagpipe test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn both_tiers_speak_tls_to_nats() {
    let dir = scratch("nats-tls-certs");
    let (ca, cert, key) = test_certificates(&dir);
    let nats = NatsServer::start_tls("tls", &cert, &key);
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let tls = format!("      tls: {{required: true, ca_file: {}}}\n", ca.display());
    let worker = Tagpipe::start_until_logged(
        "nats-tls-delivery",
        &format!(
            "sources:\n  nats:\n    connection:\n      urls: [{url}]\n{tls}    consumer: delivery\n\
             sinks:\n  file/out:\n    path: {{dir}}/out.ndjson\npipelines:\n  p: {{sources: [nats], sinks: [file/out]}}\n"
        ),
        "reading from JetStream",
    );
    let ingest = Tagpipe::start(
        "nats-tls-ingest",
        &format!(
            "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n  nats:\n    connection:\n      \
             urls: [{url}]\n{tls}pipelines:\n  p: {{sources: [http], sinks: [nats]}}\n"
        ),
    );
    post_events(&ingest, 0..20, 5);
    assert_all_delivered(&[&worker], 20);
    // Without the CA the server's certificate is refused: nothing connects.
    let refused = Tagpipe::start_until_logged(
        "nats-tls-untrusted",
        &format!(
            "sources:\n  nats:\n    connection: {{urls: [{url}]}}\n    consumer: other\nsinks:\n  console:\n\
             pipelines:\n  p: {{sources: [nats], sinks: [console]}}\n"
        ),
        "JetStream stream not available yet",
    );
    assert!(
        !refused.logs().contains("connected to NATS"),
        "{}",
        refused.logs()
    );
    assert!(ingest.stop().success());
    assert!(worker.stop().success());
    assert!(refused.stop().success());
}
