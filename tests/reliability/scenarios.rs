//! Fault scenarios with counted events (issue: reliability). Each records events accepted (2xx),
//! delivered, lost and duplicated (same `event_id` more than once), prints them for
//! RELIABILITY.md, and asserts that nothing accepted was lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tagpipe_capi_receiver::{Receiver, ReceiverConfig, Reply};

use crate::http_client::{send, try_send};
use crate::support::{Tagpipe, eventually};

const TOKEN: &str = "reliability-token";

fn spotify_pipeline(receiver: &Receiver, extra: &str) -> String {
    format!(
        "sources:\n  http:\n    listen: 127.0.0.1:{{port}}\nsinks:\n  spotify:\n    auth_token: {TOKEN}\n    \
         connection_id: c\n    endpoint: {}\n    optimistic: true\n    log_type: no\n    \
         batch: {{max_events: 50, timeout: 20ms}}\n{extra}pipelines:\n  p: {{sources: [http], sinks: [spotify]}}\n",
        receiver.url()
    )
}

fn event(i: usize) -> Value {
    json!({"event_name": "Purchase", "event_id": format!("ev-{i}"), "ip_override": "1.1.1.1", "timestamp": 1_748_377_016})
}

/// Counts of one scenario.
#[derive(Debug)]
struct Tally {
    accepted: usize,
    delivered: usize,
    lost: usize,
    duplicated: usize,
}

fn tally(accepted_ids: &[String], receiver: &Receiver) -> Tally {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in receiver.accepted_events() {
        *seen
            .entry(e["event_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let lost = accepted_ids
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .count();
    let result = Tally {
        accepted: accepted_ids.len(),
        delivered: accepted_ids.len() - lost,
        lost,
        duplicated: seen.values().map(|n| n.saturating_sub(1)).sum(),
    };
    assert_eq!(result.delivered + result.lost, result.accepted);
    // Duplicates are allowed only as re-sends of the same event id (which Spotify de-duplicates);
    // any delivered id must be one that was accepted.
    assert!(
        seen.keys().all(|id| accepted_ids.contains(id)),
        "delivered an event that was never accepted"
    );
    assert!(result.duplicated <= result.accepted, "{result:?}");
    result
}

/// Sends `n` events one per request, spread over `over`; returns the ids answered 2xx.
fn send_spread(t: &Tagpipe, n: usize, over: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let e = event(i);
        let reply = send(
            t.addr,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            e.to_string().as_bytes(),
        );
        if (200..300).contains(&reply.status) {
            ids.push(e["event_id"].as_str().unwrap().to_owned());
        }
        std::thread::sleep(over / u32::try_from(n).unwrap());
    }
    ids
}

#[test]
fn scenario_1_a_30_second_outage_loses_nothing() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.set_default(Reply::Status(503, "maintenance".into()));
    let t = Tagpipe::start(
        "rel-outage",
        &spotify_pipeline(
            &receiver,
            "    retry: {initial_interval: 200ms, max_interval: 2s}\n",
        ),
    );
    let recover = {
        let receiver = receiver.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            receiver.set_default(Reply::Ok);
        })
    };
    let ids = send_spread(&t, 300, Duration::from_secs(10));
    recover.join().unwrap();
    eventually(
        "every accepted event delivered",
        Duration::from_secs(60),
        || tally(&ids, &receiver).lost == 0,
    );
    let result = tally(&ids, &receiver);
    println!("scenario 1 (503 for 30 s): {result:?}");
    assert_eq!(result.accepted, 300);
    assert_eq!(result.lost, 0);
}

#[test]
fn scenario_4_retry_after_is_waited_for() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([Reply::RateLimited(2)]);
    let t = Tagpipe::start("rel-429", &spotify_pipeline(&receiver, ""));
    let ids = send_spread(&t, 20, Duration::from_millis(200));
    eventually("delivered", Duration::from_secs(30), || {
        tally(&ids, &receiver).lost == 0
    });
    let requests = receiver.requests();
    // The throttled request's events, sent again (other batches may go out in between).
    let first_id = |r: &tagpipe_capi_receiver::Recorded| {
        r.body["conversion_events"]["events"][0]["event_id"].clone()
    };
    let again = requests[1..]
        .iter()
        .find(|r| first_id(r) == first_id(&requests[0]))
        .expect("the throttled events were sent again");
    let gap = again.at.duration_since(requests[0].at);
    let result = tally(&ids, &receiver);
    println!("scenario 4 (429, Retry-After: 2): {result:?}; next attempt after {gap:?}");
    assert!(gap >= Duration::from_secs(2), "{gap:?}");
    assert_eq!(result.lost, 0);
}

#[test]
fn scenario_5_a_receiver_taking_10_seconds_per_request() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.set_default(Reply::Stall(Duration::from_secs(10)));
    let t = Tagpipe::start(
        "rel-slow",
        &spotify_pipeline(
            &receiver,
            "    request_timeout: 2s\n    retry: {initial_interval: 200ms, max_interval: 1s}\n",
        ),
    );
    let slow_until = Instant::now() + Duration::from_secs(12);
    let ids = send_spread(&t, 100, Duration::from_secs(3));
    std::thread::sleep(slow_until.saturating_duration_since(Instant::now()));
    receiver.set_default(Reply::Ok);
    eventually(
        "delivered after the slow period",
        Duration::from_secs(60),
        || tally(&ids, &receiver).lost == 0,
    );
    let result = tally(&ids, &receiver);
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", t.child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!("scenario 5 (10 s per request, 2 s timeout): {result:?}; peak RSS {rss_kib} KiB");
    assert_eq!(result.lost, 0);
    assert!(rss_kib < 200 * 1024, "memory stayed bounded: {rss_kib} KiB");
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed & 0xff) as u8
        })
        .collect()
}

#[test]
fn scenario_8_ten_thousand_malformed_requests_among_valid_ones() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    let t = Tagpipe::start("rel-malformed", &spotify_pipeline(&receiver, ""));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let templates: Vec<Vec<u8>> = vec![
        br#"{"event_name": "Purchase", "ip_override": "1.1.1.1""#.to_vec(),
        br#"{"value": 1e400}"#.to_vec(),
        deep.into_bytes(),
        b"{\"event_name\": \"\xff\xfe\"}".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"\"just a string\"".to_vec(),
        b"{\"a\": }".to_vec(),
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let (mut bad, mut bad_refused, mut ids) = (0, 0, Vec::new());
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for i in 0..11_000 {
        let (body, valid) = if i % 11 == 0 {
            (event(i).to_string().into_bytes(), true)
        } else {
            let body = match i % 3 {
                0 => noise(&mut seed, 1 + (i % 300)),
                _ => templates[i % templates.len()].clone(),
            };
            (body, false)
        };
        let raw = crate::http_client::build(
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            &body,
        );
        let Some(reply) = try_send(t.addr, &raw) else {
            panic!("request {i}: no answer (a crash?)");
        };
        *statuses.entry(reply.status).or_default() += 1;
        if valid {
            assert_eq!(reply.status, 200, "a valid request was refused");
            ids.push(format!("ev-{i}"));
        } else {
            bad += 1;
            if (400..500).contains(&reply.status) {
                bad_refused += 1;
            }
        }
    }
    eventually("valid events delivered", Duration::from_secs(60), || {
        tally(&ids, &receiver).lost == 0
    });
    let result = tally(&ids, &receiver);
    println!(
        "scenario 8: {bad} malformed, {bad_refused} answered 4xx; valid {result:?}; statuses {statuses:?}"
    );
    assert!(bad >= 10_000);
    assert_eq!(bad_refused, bad, "every malformed request gets a 4xx");
    assert_eq!(result.lost, 0);
    assert!(!t.logs().contains("panicked"));
}

#[test]
fn events_rejected_for_good_go_to_the_dead_letter_file() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.script([Reply::Status(
        403,
        r#"{"error":"connection disabled"}"#.into(),
    )]);
    let yaml = spotify_pipeline(
        &receiver,
        "    dead_letter: file/dlq\n  file/dlq:\n    path: {dir}/dead.ndjson\n",
    );
    let t = Tagpipe::start("rel-dlq", &yaml);
    let ids = send_spread(&t, 1, Duration::from_millis(1));
    let dead = t.wait_for_lines("dead.ndjson", 1);
    assert_eq!(dead[0]["event_id"], ids[0].as_str());
    assert_eq!(dead[0]["dead_letter"]["sink"], "spotify");
    let reason = dead[0]["dead_letter"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 403") && reason.contains("connection disabled"),
        "{reason}"
    );
    assert_eq!(
        dead[0]["dead_letter"]["request"]["event_id"],
        ids[0].as_str()
    );
    assert!(
        !std::fs::read_to_string(t.dir.join("dead.ndjson"))
            .unwrap()
            .contains(TOKEN)
    );
}

/// The Spotify pipeline with a disk buffer at `{dir}/buffer/spotify.redb`.
fn disk_pipeline(receiver: &Receiver, dir: &std::path::Path) -> String {
    spotify_pipeline(
        receiver,
        &format!(
            "    retry: {{initial_interval: 100ms, max_interval: 500ms}}\n    buffer: {{type: disk, path: {}, max_events: 100000}}\n",
            dir.join("buffer/spotify.redb").display()
        ),
    )
    .replace("pipelines:", "runtime:\n  shutdown_timeout: 1s\npipelines:")
}

/// Starts tagpipe on a fixed file in `dir` (so a restart reuses the same buffer).
fn start_in(dir: &std::path::Path, yaml: &str) -> Tagpipe {
    std::fs::create_dir_all(dir).unwrap();
    let port = crate::support::free_port();
    let config = dir.join("pipeline.yaml");
    std::fs::write(&config, yaml.replace("{port}", &port.to_string())).unwrap();
    let child = crate::support::bin()
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("stderr-{port}.log"))).unwrap())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually("ready", Duration::from_secs(30), || {
        try_send(
            addr,
            b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .is_some_and(|r| r.status == 200)
    });
    Tagpipe {
        child,
        addr,
        dir: dir.to_owned(),
    }
}

#[test]
fn events_left_at_the_shutdown_deadline_are_kept_on_disk_and_delivered_after_restart() {
    let dir = crate::support::scratch("rel-disk-deadline");
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.set_default(Reply::Status(503, "down".into()));
    let yaml = disk_pipeline(&receiver, &dir);
    let t = start_in(&dir, &yaml);
    let ids = send_spread(&t, 50, Duration::from_millis(200));
    assert_eq!(ids.len(), 50);
    let stopped = t.stop();
    assert!(
        stopped.success(),
        "{stopped:?}: events kept on disk are not a failure"
    );
    let logs = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("stderr-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(logs.contains("kept in the disk buffer"), "{logs}");
    receiver.set_default(Reply::Ok);
    let _again = start_in(&dir, &yaml);
    eventually(
        "delivered after the restart",
        Duration::from_secs(30),
        || tally(&ids, &receiver).lost == 0,
    );
    let result = tally(&ids, &receiver);
    println!("disk buffer across a graceful restart: {result:?}");
    assert_eq!(result.lost, 0);
}

#[test]
fn scenario_2_sigkill_under_load_with_a_disk_buffer_loses_nothing_accepted() {
    let dir = crate::support::scratch("rel-disk-kill");
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    // Slow delivery, so that a backlog is on disk when the process dies.
    receiver.set_default(Reply::Stall(Duration::from_millis(300)));
    let yaml = disk_pipeline(&receiver, &dir);
    let mut t = start_in(&dir, &yaml);
    let mut ids = Vec::new();
    for i in 0..400 {
        if i == 250 {
            t.child.kill().unwrap();
            t.child.wait().unwrap();
        }
        let e = event(i);
        let raw = crate::http_client::build(
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            e.to_string().as_bytes(),
        );
        if let Some(reply) = try_send(t.addr, &raw)
            && (200..300).contains(&reply.status)
        {
            ids.push(e["event_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        ids.len(),
        250,
        "the first 250 were accepted, the rest found no server"
    );
    receiver.set_default(Reply::Ok);
    let _again = start_in(&dir, &yaml);
    eventually(
        "every accepted event delivered",
        Duration::from_secs(60),
        || tally(&ids, &receiver).lost == 0,
    );
    let result = tally(&ids, &receiver);
    println!("scenario 2 (SIGKILL under load, disk buffer): {result:?}");
    assert_eq!(result.lost, 0);
}

#[test]
fn scenario_7_a_corrupted_record_is_skipped_and_the_rest_delivered() {
    let dir = crate::support::scratch("rel-disk-corrupt");
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.set_default(Reply::Status(503, "down".into()));
    let yaml = disk_pipeline(&receiver, &dir);
    let t = start_in(&dir, &yaml);
    let ids = send_spread(&t, 30, Duration::from_millis(100));
    assert!(t.stop().success());
    // Flip one byte inside the stored JSON of event `ev-7` (the record's own CRC-32 no longer
    // matches; the database file itself stays readable).
    let file = dir.join("buffer/spotify.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let needle = br#""event_id":"ev-7""#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the record is stored as written");
    bytes[at + needle.len() - 2] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    receiver.set_default(Reply::Ok);
    let again = start_in(&dir, &yaml);
    let expected: Vec<String> = ids.iter().filter(|id| *id != "ev-7").cloned().collect();
    eventually(
        "the intact records delivered",
        Duration::from_secs(30),
        || tally(&expected, &receiver).lost == 0,
    );
    let result = tally(&expected, &receiver);
    let logs: String = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("stderr-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    println!("scenario 7 (one record corrupted on disk): {result:?}");
    assert!(
        logs.contains("corrupt records skipped"),
        "the skip is reported: {logs}"
    );
    assert_eq!(result.accepted, 29);
    assert_eq!(result.lost, 0);
    assert!(!logs.contains("panicked"), "{logs}");
    drop(again);
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// POSTs `requests` batches of `per_request` events from `connections` threads; returns the
/// accepted ids.
fn burst(t: &Tagpipe, connections: usize, requests: usize, per_request: usize) -> Vec<String> {
    let handles: Vec<_> = (0..connections)
        .map(|c| {
            let addr = t.addr;
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for r in 0..requests {
                    let batch: Vec<Value> = (0..per_request)
                        .map(|i| {
                            let mut e = event(0);
                            e["event_id"] = json!(format!("b-{c}-{r}-{i}"));
                            e
                        })
                        .collect();
                    let body = Value::Array(batch.clone()).to_string();
                    let raw = crate::http_client::build(
                        "POST",
                        "/v1/events",
                        &[("Content-Type", "application/json")],
                        body.as_bytes(),
                    );
                    if try_send(addr, &raw).is_some_and(|reply| reply.status == 200) {
                        ids.extend(
                            batch
                                .iter()
                                .map(|e| e["event_id"].as_str().unwrap().to_owned()),
                        );
                    }
                }
                ids
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn scenario_6_overload_at_twice_capacity_is_back_pressured_with_bounded_memory() {
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    // Capacity: ~50 ms per request of ≤ 50 events, 2 at a time ≈ 2,000 events/s.
    receiver.set_default(Reply::Stall(Duration::from_millis(50)));
    let yaml = spotify_pipeline(
        &receiver,
        "    concurrency: 2\n    buffer: {max_events: 2000, when_full: block}\n",
    );
    let t = Tagpipe::start("rel-overload", &yaml);
    let started = Instant::now();
    // Offered: 4 connections × 40 requests × 100 events = 16,000 events, as fast as accepted.
    let ids = burst(&t, 4, 40, 100);
    let offered_for = started.elapsed();
    eventually(
        "everything accepted delivered",
        Duration::from_secs(120),
        || tally(&ids, &receiver).lost == 0,
    );
    let result = tally(&ids, &receiver);
    let rss = peak_rss_kib(t.child.id());
    println!(
        "scenario 6 (overload, block): {result:?}; clients held back for {offered_for:?}; peak RSS {rss} KiB"
    );
    assert_eq!(
        result.accepted, 16_000,
        "back-pressure slows clients down, it refuses nothing"
    );
    assert_eq!(result.lost, 0);
    assert!(rss < 200 * 1024, "memory bounded by the queue: {rss} KiB");
}

#[test]
#[ignore = "measures throughput; run explicitly: cargo test --release -p tagpipe --test reliability -- --ignored scenario_3 --nocapture"]
fn scenario_3_a_dead_sink_does_not_slow_a_healthy_one() {
    let measure = |with_dead: bool| -> f64 {
        let healthy = Receiver::spawn(ReceiverConfig::new(TOKEN));
        let dead = Receiver::spawn(ReceiverConfig::new(TOKEN));
        dead.set_default(Reply::Stall(Duration::from_secs(600)));
        let mut yaml = spotify_pipeline(&healthy, "    buffer: {max_events: 100000}\n");
        if with_dead {
            yaml = yaml
                .replace(
                    "pipelines:",
                    &format!(
                        "  spotify/dead:\n    auth_token: {TOKEN}\n    connection_id: c\n    endpoint: {}\n    optimistic: true\n    \
                         log_type: no\n    request_timeout: 600s\n    buffer: {{max_events: 1000, when_full: drop_newest}}\npipelines:",
                        dead.url()
                    ),
                )
                .replace("sinks: [spotify]", "sinks: [spotify, spotify/dead]");
        }
        let t = Tagpipe::start(
            if with_dead {
                "rel-dead-sibling"
            } else {
                "rel-solo"
            },
            &yaml,
        );
        let start = Instant::now();
        let ids = burst(&t, 4, 100, 100);
        eventually("healthy delivered", Duration::from_secs(120), || {
            healthy.accepted_events().len() >= ids.len()
        });
        ids.len() as f64 / start.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..3).map(|_| measure(true) / measure(false)).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "scenario 3: healthy throughput with a dead sibling / solo, 3 runs: {ratios:.2?} (median {:.2})",
        ratios[1]
    );
}

/// Mounts a tiny tmpfs (root only; CI runs as root) and unmounts it when dropped.
struct TinyDisk(std::path::PathBuf);

impl TinyDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test needs to mount a small tmpfs (run as root)"
        );
        Self(dir.to_owned())
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_behaves_as_when_full_and_nothing_stored_is_lost() {
    let dir = crate::support::scratch("rel-full-disk");
    let disk = TinyDisk::mount(&dir.join("buffer"), "1m");
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.set_default(Reply::Status(503, "down".into()));
    let yaml = spotify_pipeline(
        &receiver,
        &format!(
            "    retry: {{initial_interval: 100ms, max_interval: 500ms}}\n    buffer: {{type: disk, path: {}, max_events: 1000000, when_full: drop_newest}}\n",
            dir.join("buffer/spotify.redb").display()
        ),
    );
    let t = start_in(&dir, &yaml);
    // ~600 bytes per event and 1 MiB of disk: the disk fills long before 6,000 events.
    let mut accepted = 0;
    for r in 0..60 {
        let batch: Vec<Value> = (0..100)
            .map(|i| {
                let mut e = event(r * 100 + i);
                e["padding"] = json!("x".repeat(400));
                e
            })
            .collect();
        let body = Value::Array(batch).to_string();
        let raw = crate::http_client::build(
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let reply = try_send(t.addr, &raw).expect("tagpipe answers while its disk is full");
        assert_eq!(reply.status, 200);
        accepted += 100;
    }
    let metrics = try_send(
        t.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let dropped: u64 = text
        .lines()
        .filter(|l| l.starts_with("tagpipe_events_failed_total") && l.contains("disk buffer full"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    assert!(dropped > 0, "the disk filled up: {text}");
    let stored = accepted - usize::try_from(dropped).unwrap();
    receiver.set_default(Reply::Ok);
    eventually(
        "everything stored delivered",
        Duration::from_secs(60),
        || receiver.accepted_events().len() >= stored,
    );
    println!(
        "full disk (1 MiB tmpfs, drop_newest): {accepted} accepted, {dropped} dropped with the reason, {stored} stored and delivered"
    );
    assert_eq!(
        receiver.accepted_events().len(),
        stored,
        "nothing stored was lost or duplicated"
    );
    drop(t);
    drop(disk);
}

#[test]
fn a_large_disk_backlog_drains_with_bounded_memory() {
    let dir = crate::support::scratch("rel-disk-backlog");
    let receiver = Receiver::spawn(ReceiverConfig::new(TOKEN));
    receiver.set_default(Reply::Status(503, "down".into()));
    let yaml = disk_pipeline(&receiver, &dir);
    let t = start_in(&dir, &yaml);
    let ids = burst(&t, 4, 50, 100);
    assert_eq!(ids.len(), 20_000);
    assert!(t.stop().success());
    let size = std::fs::metadata(dir.join("buffer/spotify.redb"))
        .unwrap()
        .len();
    receiver.set_default(Reply::Ok);
    let again = start_in(&dir, &yaml);
    eventually("the backlog delivered", Duration::from_secs(120), || {
        receiver.accepted_events().len() >= ids.len()
    });
    let rss = peak_rss_kib(again.child.id());
    let result = tally(&ids, &receiver);
    println!(
        "disk backlog of 20,000 events ({} KiB on disk): {result:?}; peak RSS while draining {rss} KiB",
        size / 1024
    );
    assert_eq!(result.lost, 0);
    assert!(
        rss < 200 * 1024,
        "draining does not load the backlog into memory: {rss} KiB"
    );
}
