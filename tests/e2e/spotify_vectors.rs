//! Parity with Stape's Spotify tag, end to end: every vector of
//! `shared/reference/spotify-tag-vectors.json` has its settings turned into a pipeline by
//! `tagpipe import stape-spotify`, runs in a real `tagpipe` process, gets its event POSTed to
//! `/v1/events` (with its cookies and a `Host` header), and is checked at a contract-validating
//! CAPI receiver (method, path, bearer token, content type, connection id, the event itself), in
//! the answer's `Set-Cookie`, and in the debug answer's outcome.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};
use tagpipe_capi_receiver::{Receiver, ReceiverConfig};

use crate::http_client::send;
use crate::support::{Tagpipe, bin, repo, scratch};

fn vectors_path() -> PathBuf {
    repo().join("../shared/reference/spotify-tag-vectors.json")
}

fn load_vectors() -> Vec<Value> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the Spotify tag vectors are expected at {}: {e}",
            path.display()
        )
    });
    serde_json::from_str::<Value>(&text)
        .expect("vectors are JSON")
        .as_array()
        .expect("an array")
        .clone()
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `tagpipe import stape-spotify` for a vector's settings.
fn import(settings: &Value, endpoint: &str, name: &str) -> String {
    let dir = scratch(&format!("import-{name}"));
    let file = dir.join("settings.json");
    std::fs::write(&file, settings.to_string()).unwrap();
    let out = bin()
        .args(["import", "stape-spotify"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:{port}", "--endpoint", endpoint])
        .stdin(Stdio::null())
        .output()
        .expect("import runs");
    assert!(
        out.status.success(),
        "import failed for {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("YAML is UTF-8")
}

/// Runs one vector; returns what did not match (empty when it passes).
fn run_vector(index: usize, vector: &Value) -> Vec<String> {
    let name = vector["name"].as_str().unwrap_or("?").to_owned();
    let settings = &vector["settings"];
    let token = settings["authToken"].as_str().unwrap_or_default();
    let receiver = Receiver::spawn(ReceiverConfig::new(token));
    let yaml = import(settings, &receiver.url(), &format!("v{index}"));
    let now_ms = vector["now_ms"].as_u64().unwrap_or(0).to_string();
    let t = Tagpipe::start_with_env(
        &format!("vector-{index}"),
        &yaml,
        &[("SPOTIFY_CAPI_TOKEN", token), ("TAGPIPE_CLOCK_MS", &now_ms)],
    );
    let cookies: Vec<String> = vector["cookies"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let cookie_header = cookies.join("; ");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("x-tagpipe-debug", "1"),
    ];
    if !cookie_header.is_empty() {
        headers.push(("Cookie", &cookie_header));
    }
    let reply = send(
        t.addr,
        "POST",
        "/v1/events",
        &headers,
        vector["event"].to_string().as_bytes(),
    );
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(format!("[{index}] {name}: {what}"));
        }
    };
    check(reply.status == 200, format!("status {}", reply.status));
    let debug = reply.json();
    let expect = &vector["expect"];
    let expected_outcome = match expect["outcome"].as_str() {
        Some("failure") => "failed",
        Some(other) => other,
        None => "?",
    };
    let outcome = &debug["events"][0]["destinations"]["spotify"];
    check(
        outcome["outcome"] == expected_outcome,
        format!("outcome {outcome} (expected {expected_outcome})"),
    );

    // Set-Cookie.
    let set_cookies: Vec<&str> = reply
        .headers_named("set-cookie")
        .into_iter()
        .filter(|c| c.starts_with("__spdt=") || c.starts_with("__pdst="))
        .collect();
    let mut device_id_from_cookie = None;
    match expect["set_cookie"].as_object() {
        None => check(
            set_cookies.is_empty(),
            format!("unexpected Set-Cookie {set_cookies:?}"),
        ),
        Some(c) => {
            check(
                set_cookies.len() == 1,
                format!("expected one device-id cookie, got {set_cookies:?}"),
            );
            if let Some(got) = set_cookies.first() {
                let (pair, attrs) = got.split_once("; ").unwrap_or((got, ""));
                let (cookie_name, value) = pair.split_once('=').unwrap_or((pair, ""));
                check(
                    cookie_name == c["name"],
                    format!("cookie name {cookie_name}"),
                );
                if c["value"] == "<generated>" {
                    check(
                        is_hex32(value),
                        format!("generated id {value} is not 32 hex"),
                    );
                } else {
                    check(value == c["value"], format!("cookie value {value}"));
                }
                device_id_from_cookie = Some(value.to_owned());
                let o = &c["options"];
                let domain = if o["domain"] == "auto" {
                    "example.com"
                } else {
                    o["domain"].as_str().unwrap_or("")
                };
                let mut expected_attrs = vec![
                    format!("Domain={domain}"),
                    format!("Path={}", o["path"].as_str().unwrap_or("/")),
                    format!("Max-Age={}", o["max-age"]),
                    format!("SameSite={}", o["samesite"].as_str().unwrap_or("")),
                ];
                if o["secure"] == true {
                    expected_attrs.push("Secure".into());
                }
                if o["httpOnly"] == true {
                    expected_attrs.push("HttpOnly".into());
                }
                let got_attrs: Vec<&str> = attrs.split("; ").collect();
                for a in &expected_attrs {
                    check(
                        got_attrs.contains(&a.as_str()),
                        format!("cookie lacks {a}: {got}"),
                    );
                }
                check(
                    got_attrs.len() == expected_attrs.len(),
                    format!("cookie has other attributes: {got}"),
                );
            }
        }
    }

    // What reached Spotify.
    let requests = receiver.requests();
    if expected_outcome == "sent" {
        check(
            requests.len() == 1,
            format!("{} requests reached the receiver", requests.len()),
        );
        if let Some(request) = requests.first() {
            check(
                request.violations.is_empty(),
                format!("contract violations: {:?}", request.violations),
            );
            let ce = &request.body["conversion_events"];
            let expected_ce = &expect["body"]["conversion_events"];
            check(
                ce["capi_connection_id"] == expected_ce["capi_connection_id"],
                format!("connection id {}", ce["capi_connection_id"]),
            );
            let mut got = ce["events"][0].clone();
            let mut want = expected_ce["events"][0].clone();
            if want["user_data"]["device_id"] == "<generated>" {
                let id = got["user_data"]["device_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                check(is_hex32(&id), format!("generated device id {id}"));
                check(
                    Some(&id) == device_id_from_cookie.as_ref(),
                    "device id equals the cookie's".into(),
                );
                want["user_data"]["device_id"] = json!(id);
            }
            if want.get("event_id").is_none() {
                let derived = got["event_id"].as_str().unwrap_or_default().to_owned();
                check(is_hex32(&derived), format!("derived event_id {derived}"));
                got.as_object_mut().unwrap().remove("event_id");
            }
            check(got == want, format!("event\n   got {got}\n  want {want}"));
            check(
                outcome["request"] == ce["events"][0],
                "the debug answer's request is what was sent".into(),
            );
            let auth = request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            check(
                auth == Some(&format!("Bearer {token}")),
                "bearer token".into(),
            );
        }
    } else {
        check(
            requests.is_empty(),
            format!("{} requests reached the receiver", requests.len()),
        );
        check(outcome["reason"].is_string(), "a reason is given".into());
    }
    problems
}

#[test]
fn every_stape_tag_vector_passes_end_to_end() {
    let vectors = load_vectors();
    assert!(vectors.len() >= 10, "{} vectors", vectors.len());
    let workers = 4;
    let chunks: Vec<Vec<(usize, Value)>> = (0..workers)
        .map(|w| {
            vectors
                .iter()
                .enumerate()
                .filter(|(i, _)| i % workers == w)
                .map(|(i, v)| (i, v.clone()))
                .collect()
        })
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            std::thread::spawn(move || {
                chunk
                    .iter()
                    .flat_map(|(i, v)| run_vector(*i, v))
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let problems: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("worker"))
        .collect();
    assert!(
        problems.is_empty(),
        "{} mismatches over {} vectors:\n{}",
        problems.len(),
        vectors.len(),
        problems.join("\n")
    );
}
