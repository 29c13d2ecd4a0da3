//! `tagpipe-loadtest request` writes what driving one scenario by hand takes (the wrk script and,
//! for tagpipe, the pipeline file) and prints the request target: what
//! `scripts/loadtest-side.sh` starts its servers and wrk runs from.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `request <scenario>` with its files under `name` in this test's own directory.
fn request(scenario: &str, name: &str) -> (Output, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("request");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    for extension in ["lua", "yaml"] {
        let _ = std::fs::remove_file(out.with_extension(extension));
    }
    let output = Command::new(env!("CARGO_BIN_EXE_tagpipe-loadtest"))
        .args(["request", scenario, "--port", "18777"])
        .args(["--receiver", "http://127.0.0.1:9/capi"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    (output, out)
}

#[test]
fn a_tagpipe_scenario_gets_its_script_its_pipeline_and_its_target() {
    let (output, out) = request("ga4-refused", "refused");
    assert!(output.status.success(), "{output:?}");
    let target = String::from_utf8(output.stdout).unwrap();
    assert!(target.starts_with("/g/collect?v=2&"), "{target}");
    assert!(
        target.contains("gcs=G100"),
        "the refused hit's consent: {target}"
    );

    let lua = std::fs::read_to_string(out.with_extension("lua")).unwrap();
    assert!(lua.contains("wrk.method = \"GET\""), "{lua}");
    assert!(lua.contains("User-Agent"), "{lua}");

    let pipeline = std::fs::read_to_string(out.with_extension("yaml")).unwrap();
    assert!(pipeline.contains("listen: 127.0.0.1:18777"), "{pipeline}");
    assert!(
        pipeline.contains("endpoint: http://127.0.0.1:9/capi"),
        "{pipeline}"
    );
}

#[test]
fn the_ceiling_gets_a_script_and_no_pipeline() {
    let (output, out) = request("ceiling", "ceiling");
    assert!(output.status.success(), "{output:?}");
    assert!(out.with_extension("lua").exists());
    assert!(!out.with_extension("yaml").exists());
}

#[test]
fn an_unknown_scenario_is_refused_with_the_known_ones() {
    let (output, _) = request("ga5", "unknown");
    assert!(!output.status.success());
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.contains("no such scenario: `ga5`"), "{error}");
    assert!(error.contains("ga4-refused"), "{error}");
}
