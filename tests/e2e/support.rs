//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `tagpipe` binary under test.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tagpipe"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tagpipe-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs a command to completion, with its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("runs")
}

/// Writes `yaml` to a scratch file and runs `tagpipe run <flags> -c <file>` to completion (with
/// empty standard input): the exit code and standard error.
pub fn run_pipeline(name: &str, yaml: &str, flags: &[&str]) -> (Option<i32>, String) {
    let file = scratch(name).join("p.yaml");
    std::fs::write(&file, yaml).expect("write the pipeline file");
    let out = run(bin().arg("run").args(flags).arg("-c").arg(&file));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGTERM to a child.
pub fn terminate(child: &Child) {
    tagpipe_loadtest::process::terminate(child.id()).expect("SIGTERM sent");
}

/// Waits for a child to exit (hang guard, not a timing assertion).
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("tagpipe did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it holds (hang guard).
pub fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `tagpipe run` process with an HTTP source on a free loopback port.
pub struct Tagpipe {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub dir: PathBuf,
}

/// A free loopback port, never handed out twice in this test run (tests run in parallel and a
/// port is only bound later, by the tagpipe process).
///
/// Ports come from below the kernel's ephemeral range (32768 and up), which outgoing connections
/// and `bind(0)` draw from: a port found free there could be taken as some test's client-side port
/// before tagpipe binds it. [`Tagpipe`] also starts again (up to three times) on a new `{port}`
/// if it still finds that port in use.
pub fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap();
    let offset = next.get_or_insert_with(|| {
        u16::try_from(std::process::id() % u32::from(COUNT)).expect("below COUNT")
    });
    for _ in 0..COUNT {
        let port = FIRST + *offset;
        *offset = (*offset + 1) % COUNT;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

impl Tagpipe {
    /// Starts tagpipe on `yaml`, where `{port}` is replaced by a free port and `{dir}` by a scratch
    /// directory, and waits until `/readyz` answers 200.
    pub fn start(name: &str, yaml: &str) -> Self {
        Self::start_with_env(name, yaml, &[])
    }

    /// As [`Tagpipe::start`], with extra environment variables.
    pub fn start_with_env(name: &str, yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(name, yaml, env, &[])
    }

    /// As [`Tagpipe::start`], with extra environment variables and `run` flags.
    pub fn start_with(name: &str, yaml: &str, env: &[(&str, &str)], flags: &[&str]) -> Self {
        Self::start_until(name, yaml, env, flags, "not ready", |tagpipe| {
            // No connection, or one closed without an answer, is "not yet": the loop then
            // checks that tagpipe still runs (and shows its log if not).
            crate::http_client::try_send(
                tagpipe.addr,
                b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .is_some_and(|reply| reply.status == 200)
        })
    }

    /// Starts tagpipe (a process without an HTTP source, say) and waits until its log says
    /// `ready_when`.
    pub fn start_until_logged(name: &str, yaml: &str, ready_when: &str) -> Self {
        let what = format!("never logged {ready_when:?}");
        Self::start_until(name, yaml, &[], &[], &what, |tagpipe| {
            tagpipe.logs().contains(ready_when)
        })
    }

    /// Starts tagpipe and polls `ready` for up to 30 s; panics with `what` and the log if it
    /// stops or never gets ready. Starts again on a new `{port}` (up to three times) when that
    /// port was taken before tagpipe bound it.
    fn start_until(
        name: &str,
        yaml: &str,
        env: &[(&str, &str)],
        flags: &[&str],
        what: &str,
        mut ready: impl FnMut(&Self) -> bool,
    ) -> Self {
        let mut tagpipe = Self::spawn(name, yaml, env, flags);
        let start = Instant::now();
        let mut restarts = 0;
        while !ready(&tagpipe) {
            if restarts < 3 && tagpipe.lost_its_port() {
                restarts += 1;
                tagpipe = Self::spawn(name, yaml, env, flags);
                continue;
            }
            tagpipe.assert_running();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: {}",
                tagpipe.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        tagpipe
    }

    fn spawn(name: &str, yaml: &str, env: &[(&str, &str)], flags: &[&str]) -> Self {
        let dir = scratch(name);
        let port = free_port();
        let yaml = yaml
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.display().to_string());
        let config = dir.join("pipeline.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("log file");
        let mut cmd = bin();
        cmd.arg("run").args(flags).arg("-c").arg(&config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tagpipe");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        Self { child, addr, dir }
    }

    /// Whether the process stopped because its `{port}` was taken in the moment between
    /// [`free_port`] and its bind (by another test's connection, say). Other ports of the file
    /// stay as the test chose them, so only this one counts.
    fn lost_its_port(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
            && self.logs().contains(&format!(
                "cannot listen on {}: Address already in use",
                self.addr
            ))
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("tagpipe exited early ({status}): {}", self.logs());
        }
    }

    /// The pipeline file it runs (rewrite it and [`Tagpipe::signal`] `HUP` to reload).
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("pipeline.yaml")
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// What tagpipe logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Lines of an NDJSON file in the scratch directory, parsed.
    pub fn ndjson(&self, file: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("NDJSON line"))
            .collect()
    }

    /// Waits until the NDJSON file has `n` lines and returns them.
    pub fn wait_for_lines(&self, file: &str, n: usize) -> Vec<serde_json::Value> {
        eventually(
            &format!("{n} lines in {file}"),
            Duration::from_secs(20),
            || self.ndjson(file).len() >= n,
        );
        self.ndjson(file)
    }

    /// SIGTERM and wait for exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        wait_exit(&mut self.child, Duration::from_secs(30))
    }
}

impl Drop for Tagpipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
