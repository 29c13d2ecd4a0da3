//! The HTTP source over real HTTP: every endpoint, every bad-input class, CORS, proxies, cookies
//! and debug answers.

use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::http_client::{build, post_json, read_one_reply, read_reply, send, send_raw};
use crate::support::Tagpipe;

const PIPELINE: &str = "
sources:
  http:
    listen: 127.0.0.1:{port}
    max_body_bytes: 4096
    max_events_per_request: 5
    read_timeout: 1s
    trusted_proxies: [10.0.0.0/8, 127.0.0.1]
  http/strict:
    listen: 127.0.0.1:{port2}
    trusted_proxies: []
    events:
      path: /ingest
      auth_keys: ['key-123']
    ga4:
      allowed_origins: ['https://shop.example.com']
    data:
      enabled: false
    debug:
      enabled: false
sinks:
  file/out:
    path: {dir}/out.ndjson
  file/strict:
    path: {dir}/strict.ndjson
pipelines:
  main:
    sources: [http]
    sinks: [file/out]
  strict:
    sources: [http/strict]
    sinks: [file/strict]
";

/// Starts the shared test pipeline. The second listener's port is free at start time too.
fn start(name: &str) -> (Tagpipe, std::net::SocketAddr) {
    let port2 = crate::support::free_port();
    let t = Tagpipe::start(name, &PIPELINE.replace("{port2}", &port2.to_string()));
    let strict = std::net::SocketAddr::from(([127, 0, 0, 1], port2));
    (t, strict)
}

const UA: &str = "Mozilla/5.0 (test)";

#[test]
fn ga4_hits_become_the_expected_event_data() {
    let (t, _) = start("ga4");
    let reply = send(
        t.addr,
        "GET",
        "/g/collect?v=2&tid=G-1&cid=1.2&en=page_view&gcs=G111&dl=https%3A%2F%2Fshop.example.com%2F",
        &[("User-Agent", UA)],
        b"",
    );
    assert_eq!(
        reply.status,
        204,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = send(
        t.addr,
        "POST",
        "/g/collect?v=2&tid=G-1&cid=1.2",
        &[("User-Agent", UA), ("Content-Type", "text/plain;charset=UTF-8")],
        b"en=scroll&epn.percent_scrolled=90\nen=purchase&cu=EUR&epn.value=9.5&pr1=idA~pr9.5~qt1\nen=user_engagement&_et=100",
    );
    assert_eq!(reply.status, 204);
    let events = t.wait_for_lines("out.ndjson", 4);
    assert_eq!(
        events[0],
        json!({"event_name": "page_view", "x-ga-protocol_version": "2", "x-ga-measurement_id": "G-1",
               "client_id": "1.2", "x-ga-gcs": "G111", "page_location": "https://shop.example.com/",
               "ip_override": "127.0.0.1", "user_agent": UA})
    );
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["page_view", "scroll", "purchase", "user_engagement"]
    );
    assert_eq!(
        events[2]["items"],
        json!([{"item_id": "A", "price": 9.5, "quantity": 1}])
    );
    assert_eq!(events[2]["value"], json!(9.5));
}

#[test]
fn event_data_is_taken_verbatim_in_every_framing() {
    let (t, _) = start("events");
    let one = json!({"event_name": "purchase", "client_id": "c1", "ip_override": "1.2.3.4:5678",
                     "user_data": {"email_address": "a@b.c"}, "value": 10});
    let reply = post_json(t.addr, "/v1/events", one.to_string().as_bytes());
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"accepted": 1}));
    let array = json!([{"event_name": "a"}, {"event_name": "b", "ip_override": "[::1]:80"}]);
    let reply = post_json(t.addr, "/v1/events", array.to_string().as_bytes());
    assert_eq!(reply.json(), json!({"accepted": 2}));
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        b"{\"event_name\":\"c\"}\n\n{\"event_name\":\"d\"}\n",
    );
    assert_eq!(reply.json(), json!({"accepted": 2}));
    let events = t.wait_for_lines("out.ndjson", 5);
    let mut expected_first = one.clone();
    expected_first["ip_override"] = json!("1.2.3.4");
    assert_eq!(
        events[0], expected_first,
        "nothing added, the port removed from ip_override"
    );
    assert_eq!(events[1], json!({"event_name": "a"}));
    assert_eq!(events[2], json!({"event_name": "b", "ip_override": "::1"}));
    assert_eq!(events[4], json!({"event_name": "d"}));
}

#[test]
fn gzip_bodies_are_accepted_and_bombs_refused() {
    let (t, _) = start("gzip");
    let body = json!([{"event_name": "zipped"}]).to_string();
    let mut enc = gzip(body.as_bytes());
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &enc,
    );
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(t.wait_for_lines("out.ndjson", 1)[0]["event_name"], "zipped");
    // 1 MB of spaces inside a JSON array compresses to ~1 KB: over the 4 KiB limit once inflated.
    let mut bomb = b"[".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 1_000_000));
    bomb.extend_from_slice(b"{}]");
    enc = gzip(&bomb);
    assert!(enc.len() < 4096);
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &enc,
    );
    assert_eq!(reply.status, 413);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("decompressed")
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn every_bad_input_class_gets_a_clear_4xx() {
    let (t, _) = start("bad");
    let json_ct = [("Content-Type", "application/json")];
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "too large body",
            vec![b' '; 5000],
            413,
            "larger than 4096 bytes",
        ),
        (
            "too many events",
            b"[{},{},{},{},{},{}]".to_vec(),
            413,
            "at most 5",
        ),
        (
            "malformed JSON",
            b"{\"a\": tru}".to_vec(),
            400,
            "malformed JSON at line 1",
        ),
        (
            "invalid UTF-8",
            b"{\"a\": \"\xff\xfe\"}".to_vec(),
            400,
            "not valid UTF-8",
        ),
        (
            "non-object event",
            b"[{\"a\":1}, 7]".to_vec(),
            400,
            "event 1 is not a JSON object",
        ),
        ("empty body", b"".to_vec(), 400, "empty body"),
    ];
    for (what, body, status, message) in cases {
        let reply = send(t.addr, "POST", "/v1/events", &json_ct, &body);
        assert_eq!(reply.status, status, "{what}");
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(message), "{what}: {error}");
    }
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[("Content-Type", "text/csv")],
        b"a,b",
    );
    assert_eq!(reply.status, 415);
    let reply = send(t.addr, "GET", "/v1/events", &[], b"");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    let reply = send(t.addr, "PUT", "/g/collect", &[], b"");
    assert_eq!(reply.status, 405);
    let reply = send(t.addr, "GET", "/nope", &[], b"");
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"].as_str().unwrap().contains("/nope"));
    let reply = send(t.addr, "GET", "/g/collect?v=2&en=%zz", &[], b"");
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("bad percent-encoding")
    );
    let reply = send(t.addr, "GET", "/g/collect?v=2&en=%C3%28", &[], b"");
    assert_eq!(reply.status, 400);
    let reply = send(t.addr, "GET", "/g/collect?v=2&tid=G-1", &[], b"");
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("`en`"));
    // A body cut short: Content-Length promises 100 bytes, 10 arrive, the client stops sending.
    let mut raw = build("POST", "/v1/events", &json_ct, b"");
    let cut = String::from_utf8(raw.clone())
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 100");
    raw = cut.into_bytes();
    raw.extend_from_slice(b"[{\"a\":1},");
    let reply = send_raw(t.addr, &raw, true);
    assert_eq!(
        reply.status,
        400,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    // Nothing of the refused requests was accepted.
    assert!(t.ndjson("out.ndjson").is_empty());
    assert!(t.logs().find("panicked").is_none());
}

#[test]
fn a_slow_client_is_cut_off() {
    let (t, _) = start("slow");
    let mut stream = TcpStream::connect(t.addr).unwrap();
    stream
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n[{\"a\"")
        .unwrap();
    // read_timeout is 1s; the body never completes.
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 408);
}

/// Headers that never complete — on a fresh connection, and on a keep-alive connection after a
/// request was answered — are cut off after `read_timeout` (1s here): the connection is closed
/// rather than held open.
#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use std::io::Read as _;
    let (t, _) = start("slow-headers");
    let hit = "GET /g/collect?v=2&tid=G-1&cid=1.2&en=page_view HTTP/1.1\r\nHost: x\r\n\r\n";
    for answered_first in [false, true] {
        let mut stream = TcpStream::connect(t.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        if answered_first {
            stream.write_all(hit.as_bytes()).unwrap();
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 204");
        }
        stream
            .write_all(b"GET /g/collect?v=2 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        // Ends (EOF or reset) once the server gives up; a 20 s read timeout guards a hang.
        let ended = stream.read_to_end(&mut rest);
        let waited = started.elapsed();
        assert!(
            ended.is_ok() || waited < Duration::from_secs(19),
            "the server never cut the connection off (answered first: {answered_first})"
        );
        assert!(
            waited >= Duration::from_millis(900),
            "cut off before read_timeout: {waited:?}"
        );
    }
}

#[test]
fn cors_preflight_and_credentials() {
    let (t, strict) = start("cors");
    let preflight = [
        ("Origin", "https://shop.example.com"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let reply = send(t.addr, "OPTIONS", "/g/collect", &preflight, b"");
    assert!((200..300).contains(&reply.status));
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("content-type")
    );
    let reply = send(
        t.addr,
        "GET",
        "/g/collect?v=2&en=x",
        &[("Origin", "https://any.example")],
        b"",
    );
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://any.example")
    );
    // The allow-list on the strict listener.
    let reply = send(
        strict,
        "GET",
        "/g/collect?v=2&en=x",
        &[("Origin", "https://shop.example.com")],
        b"",
    );
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    let reply = send(
        strict,
        "GET",
        "/g/collect?v=2&en=x",
        &[("Origin", "https://evil.example")],
        b"",
    );
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    let reply = send(
        strict,
        "OPTIONS",
        "/g/collect",
        &[("Origin", "https://evil.example")],
        b"",
    );
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[test]
fn proxy_headers_only_from_trusted_proxies() {
    let (t, strict) = start("proxy");
    let xff = [("X-Forwarded-For", "203.0.113.50, 10.1.1.1")];
    assert_eq!(
        send(t.addr, "GET", "/g/collect?v=2&en=trusted", &xff, b"").status,
        204
    );
    let fwd = [("Forwarded", "for=\"[2001:db8::9]:1234\"")];
    assert_eq!(
        send(t.addr, "GET", "/g/collect?v=2&en=forwarded", &fwd, b"").status,
        204
    );
    assert_eq!(
        send(strict, "GET", "/g/collect?v=2&en=untrusted", &xff, b"").status,
        204
    );
    let trusted = t.wait_for_lines("out.ndjson", 2);
    assert_eq!(trusted[0]["ip_override"], "203.0.113.50");
    assert_eq!(trusted[1]["ip_override"], "2001:db8::9");
    let untrusted = t.wait_for_lines("strict.ndjson", 1);
    assert_eq!(untrusted[0]["ip_override"], "127.0.0.1");
}

#[test]
fn data_client_answers_receipts_gifs_and_cookies() {
    let (t, _) = start("data");
    let reply = send(
        t.addr,
        "POST",
        "/data",
        &[
            ("Content-Type", "text/plain"),
            ("Cookie", "_dcid=dcid.1.5.7; other=1"),
        ],
        br#"{"event":"sign_up","email":"a@b.c"}"#,
    );
    assert_eq!(reply.status, 200);
    let receipt = reply.json();
    assert!(receipt["timestamp"].is_u64(), "{receipt}");
    assert!(receipt["unique_event_id"].as_str().unwrap().contains('_'));
    assert_eq!(
        reply.headers_named("set-cookie"),
        ["_dcid=dcid.1.5.7; Path=/; Max-Age=34128000; SameSite=Lax; Secure"]
    );
    let reply = post_json(t.addr, "/data", br#"[{"a":1},{"b":2}]"#);
    assert_eq!(reply.json().as_array().unwrap().len(), 2);
    // Two events with no client id: one new id, one cookie.
    assert_eq!(reply.headers_named("set-cookie").len(), 1);
    let reply = send(
        t.addr,
        "GET",
        "/data?dtcd=%7B%22event_name%22%3A%22pv%22%7D",
        &[],
        b"",
    );
    assert_eq!(reply.header("content-type"), Some("image/gif"));
    assert!(reply.body.starts_with(b"GIF89a"));
    let events = t.wait_for_lines("out.ndjson", 4);
    assert_eq!(events[0]["event_name"], "sign_up");
    assert_eq!(events[0]["client_id"], "dcid.1.5.7");
    assert_eq!(events[0]["user_data"], json!({"email_address": "a@b.c"}));
    assert_eq!(events[3]["event_name"], "pv");
}

#[test]
fn debug_answers_have_the_contract_shape() {
    let (t, strict) = start("debug");
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("x-tagpipe-debug", "1"),
        ],
        br#"[{"event_name":"a"},{"event_name":"b"}]"#,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"events": [
            {"destinations": {"file/out": {"outcome": "sent"}}},
            {"destinations": {"file/out": {"outcome": "sent"}}}
        ]})
    );
    let reply = send(
        t.addr,
        "GET",
        "/g/collect?v=2&en=x",
        &[("x-tagpipe-debug", "1")],
        b"",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["events"][0]["destinations"]["file/out"]["outcome"],
        "sent"
    );
    // Debug answers switched off: the normal answer.
    let reply = send(
        strict,
        "POST",
        "/ingest",
        &[
            ("Content-Type", "application/json"),
            ("x-tagpipe-debug", "1"),
            ("Authorization", "Bearer key-123"),
        ],
        br#"{"event_name":"a"}"#,
    );
    assert_eq!(reply.json(), json!({"accepted": 1}));
}

#[test]
fn bearer_keys_protect_the_events_endpoint() {
    let (_t, strict) = start("auth");
    let ct = ("Content-Type", "application/json");
    let reply = send(strict, "POST", "/ingest", &[ct], br#"{"a":1}"#);
    assert_eq!(reply.status, 401);
    let reply = send(
        strict,
        "POST",
        "/ingest",
        &[ct, ("Authorization", "Bearer wrong")],
        br#"{"a":1}"#,
    );
    assert_eq!(reply.status, 401);
    let reply = send(
        strict,
        "POST",
        "/ingest",
        &[ct, ("Authorization", "Bearer key-123")],
        br#"{"a":1}"#,
    );
    assert_eq!(reply.status, 200);
    // The default path is gone on this listener.
    assert_eq!(send(strict, "POST", "/v1/events", &[ct], b"{}").status, 404);
    assert_eq!(send(strict, "POST", "/data", &[ct], b"{}").status, 404);
}

#[test]
fn health_and_readiness() {
    let (t, _) = start("health");
    assert_eq!(send(t.addr, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(send(t.addr, "GET", "/readyz", &[], b"").status, 200);
    let status = t.stop();
    assert!(status.success());
}

#[test]
fn many_requests_on_one_keep_alive_connection() {
    let (t, _) = start("keepalive");
    let mut stream = TcpStream::connect(t.addr).unwrap();
    for i in 0..20 {
        let body = format!("{{\"n\":{i}}}");
        let req = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).unwrap();
    }
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 21, "{text}");
    let events: Vec<Value> = t.wait_for_lines("out.ndjson", 20);
    assert_eq!(events[19], json!({"n": 19}));
}

#[test]
fn browser_endpoints_can_be_rate_limited_per_client() {
    let t = Tagpipe::start(
        "rate-limit",
        "sources:\n  http:\n    listen: 127.0.0.1:{port}\n    rate_limit: {per_second: 1, burst: 2}\nsinks:\n  \
         file/out:\n    path: {dir}/out.ndjson\npipelines:\n  p: {sources: [http], sinks: [file/out]}\n",
    );
    let hit = "/g/collect?v=2&tid=G-1&en=page_view";
    let origin = [("Origin", "https://shop.example.com")];
    assert_eq!(send(t.addr, "GET", hit, &origin, b"").status, 204);
    assert_eq!(send(t.addr, "GET", hit, &origin, b"").status, 204);
    let limited = send(t.addr, "GET", hit, &origin, b"");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(
        limited.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    // Server-to-server ingestion is not limited.
    let reply = post_json(t.addr, "/v1/events", b"{\"a\":1}");
    assert_eq!(reply.status, 200);
    assert_eq!(t.wait_for_lines("out.ndjson", 3).len(), 3);
}

/// SIGTERM while one keep-alive connection waits idle after its request and another is half-way
/// through sending one (its head read, its body not sent): the half-sent request is still read
/// and answered, the idle connection is closed rather than waited for, and tagpipe exits long
/// before its shutdown deadline.
#[test]
fn sigterm_finishes_the_request_in_flight_and_closes_idle_connections() {
    let mut t = Tagpipe::start(
        "graceful-http",
        // The header read timeout, which would close the idle connection in the end anyway,
        // is longer than the client waits below.
        "sources:\n  http:\n    listen: 127.0.0.1:{port}\n    read_timeout: 120s\nsinks:\n  \
         file/out:\n    path: {dir}/out.ndjson\npipelines:\n  p: {sources: [http], sinks: \
         [file/out]}\nruntime:\n  shutdown_timeout: 120s\n",
    );
    let connect = || {
        let stream = TcpStream::connect(t.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    };
    let request = |n: u32, expect_continue: bool| {
        let body = format!("{{\"n\":{n}}}");
        let expect = if expect_continue {
            "Expect: 100-continue\r\n"
        } else {
            ""
        };
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             {expect}Content-Length: {}\r\n\r\n",
            body.len()
        );
        (head.into_bytes(), body.into_bytes())
    };
    // A keep-alive connection that has had its answer and now waits for its next request.
    let mut idle = connect();
    let (head, body) = request(1, false);
    idle.write_all(&[head, body].concat()).unwrap();
    assert_eq!(read_one_reply(&mut idle).status, 200);
    // A request whose head is in, its body not yet: hyper's `100 Continue`, sent as the source
    // starts reading the body, shows that tagpipe has the request in hand.
    let mut in_flight = connect();
    let (head, body) = request(2, true);
    in_flight.write_all(&head).unwrap();
    assert_eq!(read_one_reply(&mut in_flight).status, 100);
    t.wait_for_lines("out.ndjson", 1);
    t.signal("TERM");
    crate::support::eventually(
        "the source stops accepting",
        Duration::from_secs(20),
        || t.logs().contains("no longer accepting"),
    );
    in_flight.write_all(&body).unwrap();
    let reply = read_one_reply(&mut in_flight);
    assert_eq!(reply.status, 200, "{}", t.logs());
    // Both connections are closed by tagpipe: a read finds their end (not the client's 30 s
    // read timeout).
    for stream in [&mut idle, &mut in_flight] {
        let mut rest = Vec::new();
        std::io::Read::read_to_end(stream, &mut rest).expect("the connection ends");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    // Long before the 120 s deadline: nothing waited for the idle connection.
    let status = crate::support::wait_exit(&mut t.child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {}", t.logs());
    let events: Vec<Value> = t.ndjson("out.ndjson");
    assert_eq!(events, [json!({"n": 1}), json!({"n": 2})]);
}
