//! What a child process costs, read from `/proc`: CPU seconds, resident and peak memory — and
//! how long it takes to answer `/readyz`; and stopping it gracefully.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Sends SIGTERM (a graceful stop) to the process.
pub fn terminate(pid: u32) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -TERM {pid} failed"))
    }
}

/// Stops a child gracefully: SIGTERM, then up to `grace` for it to exit, then SIGKILL. A server
/// stopped this way finishes what it does at exit — tagpipe drains its queues, and an
/// instrumented build (`scripts/build-pgo.sh`) writes its profile. Returns how it ended.
pub fn stop(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    if terminate(child.id()).is_ok() {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Not stopped in time, or the signal could not be sent. (A child that has exited but was
    // not reaped yet takes the kill without effect; `wait` reports how it ended.)
    let _ = child.kill();
    child.wait()
}

/// How long [`StopOnDrop`] gives a stopping child before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// A child stopped ([`stop`], with [`STOP_GRACE`]) when dropped, however the code holding it
/// ends — a run, a count, a test.
pub struct StopOnDrop(pub Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = stop(&mut self.0, STOP_GRACE);
    }
}

/// User + system CPU seconds the process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(name)`: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0);
    ticks / clock_ticks_per_second()
}

/// `sysconf(_SC_CLK_TCK)`: 100 on Linux for every supported architecture.
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// A `/proc/<pid>/status` field in MiB (`VmRSS`, `VmHWM`).
pub fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Polls `GET /readyz` every millisecond until it answers 2xx; the time it took from `since`.
pub fn wait_ready(addr: SocketAddr, since: Instant, limit: Duration) -> Result<Duration, String> {
    loop {
        if ready(addr) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            return Err(format!("{addr} not ready after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply.starts_with(b"HTTP/1.1 2")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead as _;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Stdio};

    /// The signal number of SIGKILL on Linux.
    const SIGKILL: i32 = 9;

    /// A shell that runs `on_term` at SIGTERM and otherwise sleeps until killed; returned once
    /// its trap is set (it says so on its standard output).
    fn shell(on_term: &str) -> Child {
        let mut child = Command::new("sh")
            .args([
                "-c",
                &format!("trap '{on_term}' TERM; echo ready; while :; do sleep 0.02; done"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reads the shell's output");
        assert_eq!(line.trim(), "ready");
        child
    }

    #[test]
    fn a_child_that_exits_at_sigterm_is_stopped_gracefully() {
        let marker = std::env::temp_dir().join(format!("tagpipe-stop-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let mut child = shell(&format!("touch {}; exit 0", marker.display()));
        let status = stop(&mut child, Duration::from_secs(30)).expect("stopped");
        assert!(status.success(), "exited on its own at SIGTERM: {status:?}");
        assert!(marker.exists(), "its SIGTERM handler ran");
        let _ = std::fs::remove_file(&marker);
    }

    #[test]
    fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
        let mut child = shell("");
        let status = stop(&mut child, Duration::from_millis(300)).expect("stopped");
        assert_eq!(status.signal(), Some(SIGKILL), "killed: {status:?}");
    }

    #[test]
    fn a_child_that_has_exited_is_reported_as_it_ended() {
        let mut child = Command::new("sh")
            .args(["-c", "exit 3"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        // Its output closes when it exits.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut child.stdout.take().expect("piped"), &mut rest)
            .expect("reads to the end");
        let status = stop(&mut child, Duration::from_secs(30)).expect("stopped");
        assert_eq!(status.code(), Some(3));
    }
}
