//! The CLI: `--version`, `--help`, `validate`, and `run` with file/stdin sources, the console and
//! file sinks, and graceful shutdown on SIGTERM.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{bin, eventually, repo, run, scratch, terminate, wait_exit};

#[test]
fn version_and_help() {
    let out = run(bin().arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tagpipe {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(bin().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "validate", "--log-format", "--log-level"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn every_pipeline_in_the_repository_validates() {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .expect("pipelines/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let out = run(bin()
        .arg("validate")
        .args(&files)
        .env("SPOTIFY_CAPI_TOKEN", "t")
        .env("SPOTIFY_CONNECTION_ID", "c")
        .env("SPOTIFY_TOKEN_EU", "t")
        .env("SPOTIFY_TOKEN_US", "t"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(": valid").count(), files.len(), "{stdout}");
}

#[test]
fn validate_lists_every_error_with_file_line_and_column() {
    let dir = scratch("validate");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "sources:\n  stdin:\n    max_line_byte: 5\nsinks:\n  consol:\npipelines:\n  p:\n    sources: [stdin]\n    sinks: [console]\n",
    )
    .unwrap();
    let good = repo().join("pipelines/quickstart.yaml");
    let out = run(bin().arg("validate").arg(&good).arg(&file));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = file.display().to_string();
    assert!(
        stderr.contains(&format!("{name}:3:5: unknown field `max_line_byte`")),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `max_line_bytes`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:5:3: unknown sink type `consol`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:9:13: pipeline `p` uses sink `console`")),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("quickstart.yaml: valid"));
}

#[test]
fn validate_does_not_build_anything() {
    // A file source pointing at a file that does not exist is valid: opening it is `build`'s job.
    let dir = scratch("validate-pure");
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        "sources:\n  file:\n    path: /nonexistent/events.ndjson\nsinks:\n  console:\npipelines:\n  p: {sources: [file], sinks: [console]}\n",
    )
    .unwrap();
    let out = run(bin().arg("validate").arg(&file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // …and `run` fails fast at start-up with a clear error.
    let out = run(bin().arg("run").arg("-c").arg(&file));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open /nonexistent/events.ndjson"),
        "{stderr}"
    );
}

#[test]
fn stdin_pipeline_writes_json_lines() {
    let mut child = bin()
        .args(["run", "--log-format", "json", "-c"])
        .arg(repo().join("pipelines/stdin-to-console.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, r#"{{"event_name":"page_view","client_id":"1.2"}}"#).unwrap();
        writeln!(stdin, "not json").unwrap();
        writeln!(stdin, r#"{{"event_name":"purchase","value":12.5}}"#).unwrap();
    }
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout carries only JSON events"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event_name"], "page_view");
    assert_eq!(lines[1]["value"], 12.5);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("--log-format json gives JSON logs"))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["message"] == "invalid JSON: skipped" && l["line"] == 2)
    );
}

#[test]
fn file_source_fans_out_to_file_and_console() {
    let dir = scratch("fanout");
    let input = dir.join("in.ndjson");
    let output = dir.join("out.ndjson");
    let events = (0..1000).fold(String::new(), |mut s, i| {
        writeln!(s, "{{\"event_name\":\"e{i}\"}}").unwrap();
        s
    });
    std::fs::write(&input, events).unwrap();
    let config = dir.join("p.yaml");
    std::fs::write(
        &config,
        format!(
            "sources:\n  file/in:\n    path: {}\nsinks:\n  file/out:\n    path: {}\n  console:\npipelines:\n  p:\n    sources: [file/in]\n    sinks: [file/out, console]\n",
            input.display(),
            output.display()
        ),
    )
    .unwrap();
    let out = run(bin().arg("run").arg("-c").arg(&config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&output).unwrap();
    assert_eq!(written.lines().count(), 1000);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1000);
    assert!(written.lines().last().unwrap().contains("e999"));
}

#[test]
fn sigterm_drains_what_was_accepted() {
    let dir = scratch("sigterm");
    let output = dir.join("out.ndjson");
    let config = dir.join("p.yaml");
    std::fs::write(
        &config,
        format!(
            "sources:\n  stdin:\nsinks:\n  file:\n    path: {}\npipelines:\n  p: {{sources: [stdin], sinks: [file]}}\nruntime:\n  shutdown_timeout: 10s\n",
            output.display()
        ),
    )
    .unwrap();
    let mut child = bin()
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    for i in 0..200 {
        writeln!(stdin, "{{\"n\":{i}}}").unwrap();
    }
    stdin.flush().unwrap();
    eventually("events written", Duration::from_secs(20), || {
        std::fs::read_to_string(&output).is_ok_and(|s| s.lines().count() == 200)
    });
    // stdin stays open: only the signal can stop tagpipe.
    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    drop(stdin);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(
        stderr.contains("every accepted event has an outcome"),
        "{stderr}"
    );
}

#[test]
fn the_embedded_quickstart_serves_http_and_prints_events() {
    let port = crate::support::free_port();
    let mut child = bin()
        .arg("run")
        .env("TAGPIPE_LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually("quickstart listening", Duration::from_secs(20), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let reply = crate::http_client::send(
        addr,
        "GET",
        "/g/collect?v=2&tid=G-T&cid=1.2&en=page_view",
        &[],
        b"",
    );
    assert_eq!(reply.status, 204);
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let event: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("one line")).unwrap();
    assert_eq!(event["event_name"], "page_view");
    assert_eq!(event["ip_override"], "127.0.0.1");
}
