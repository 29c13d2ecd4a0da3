//! Running `wrk` and reading its report.
//!
//! Each run gets a Lua script that sets the method, headers and body, and — for runs at a given
//! rate — wrk's `delay()` hook, which spaces each connection's requests.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// One load: what to send, with how many connections, for how long.
#[derive(Debug, Clone)]
pub struct Load {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path and query.
    pub target: String,
    /// Request headers.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Request body (empty for `GET`).
    pub body: String,
    /// Open connections.
    pub connections: usize,
    /// How long.
    pub duration: Duration,
    /// Spread requests so that all connections together send about this many per second.
    pub rate: Option<f64>,
    /// The expected response time, taken off each connection's wait (with `rate`).
    pub latency_ms: f64,
}

/// What wrk measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Answers that were not 2xx/3xx, and socket errors.
    pub errors: u64,
    /// The command line, for the report.
    pub command: String,
}

impl Load {
    /// Runs wrk against `addr`; `script_dir` holds the generated Lua script; `shown` is the
    /// target as the report's command line shows it.
    pub fn run(
        &self,
        addr: SocketAddr,
        script_dir: &std::path::Path,
        name: &str,
        shown: &str,
    ) -> Result<Measured, String> {
        let script = script_dir.join(format!("{name}.lua"));
        std::fs::write(&script, self.lua())
            .map_err(|e| format!("write {}: {e}", script.display()))?;
        let url = format!("http://{addr}{}", self.target);
        let args = [
            "-t1".to_owned(),
            format!("-c{}", self.connections),
            format!("-d{}s", self.duration.as_secs().max(1)),
            "--latency".to_owned(),
            "-s".to_owned(),
            script.display().to_string(),
            url.clone(),
        ];
        let output = Command::new("wrk")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run wrk (install it: scripts/loadtest.sh does): {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!(
                "wrk failed: {}{}",
                text,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let mut measured = parse(&text).ok_or_else(|| format!("unexpected wrk output:\n{text}"))?;
        measured.command = format!(
            "wrk {} {name}.lua http://{addr}{shown}",
            args[..5].join(" ")
        );
        Ok(measured)
    }

    /// Each connection's wait between requests, in milliseconds, for `rate` (none without).
    fn wait_ms(&self) -> f64 {
        self.rate.map_or(0.0, |rate| {
            (self.connections as f64 * 1000.0 / rate.max(1.0) - self.latency_ms).max(0.0)
        })
    }

    /// The response time a run of this load that reached `achieved` requests per second
    /// implies: each connection's cycle (connections ÷ rate) less its wait.
    pub fn response_ms_at(&self, achieved: f64) -> f64 {
        (self.connections as f64 * 1000.0 / achieved.max(1.0) - self.wait_ms()).max(0.0)
    }

    /// The wrk script: method, body, headers, and the per-connection wait of a paced load.
    pub(crate) fn lua(&self) -> String {
        let mut lua = format!("wrk.method = \"{}\"\n", self.method);
        if !self.body.is_empty() {
            let _ = writeln!(lua, "wrk.body = [==[{}]==]", self.body);
        }
        for (name, value) in &self.headers {
            let _ = writeln!(lua, "wrk.headers[\"{name}\"] = \"{value}\"");
        }
        if self.rate.is_some() {
            // Each connection waits so that together they send `rate` requests per second.
            // wrk takes whole milliseconds: a fractional delay is rounded up or down at random
            // so that it averages right.
            let delay_ms = self.wait_ms();
            let _ = writeln!(
                lua,
                "local d = {delay_ms:.4}\nfunction delay()\n  local f = math.floor(d)\n  \
                 if math.random() < d - f then return f + 1 end\n  return f\nend"
            );
        }
        lua
    }
}

/// Reads wrk's report (with `--latency`).
pub fn parse(text: &str) -> Option<Measured> {
    let mut m = Measured::default();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => m.p50_ms = duration_ms(v)?,
            (Some("99%"), Some(v)) => m.p99_ms = duration_ms(v)?,
            (Some("Requests/sec:"), Some(v)) => m.requests_per_second = v.parse().ok()?,
            (Some(n), Some("requests")) => m.requests = n.parse().ok()?,
            _ => {}
        }
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            m.errors += rest.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            m.errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    (m.requests > 0).then_some(m)
}

/// `812.00us`, `1.20ms`, `2.00s` → milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 8 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   210.49us  101.12us   3.08ms   92.17%\n  \
            Latency Distribution\n     50%  190.00us\n     75%  230.00us\n     90%  290.00us\n     99%    1.20ms\n  \
            75467 requests in 2.00s, 5.40MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  \
            Non-2xx or 3xx responses: 4\nRequests/sec:  37733.50\nTransfer/sec:      2.70MB\n";
        let m = parse(report).expect("parsed");
        assert_eq!(m.requests, 75467);
        assert!((m.requests_per_second - 37733.5).abs() < 1e-9);
        assert!((m.p50_ms - 0.19).abs() < 1e-9);
        assert!((m.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(m.errors, 7);
    }

    #[test]
    fn a_rate_becomes_a_per_connection_delay() {
        let load = Load {
            method: "GET",
            target: "/".into(),
            headers: vec![],
            body: String::new(),
            connections: 10,
            duration: Duration::from_secs(1),
            rate: Some(5000.0),
            latency_ms: 0.0,
        };
        assert!(load.lua().contains("local d = 2.0000"), "{}", load.lua());
        // The expected response time is taken off each connection's wait.
        let load = Load {
            latency_ms: 0.5,
            ..load
        };
        assert!(load.lua().contains("local d = 1.5000"), "{}", load.lua());
        // A run of it that reached 4,000 requests/s: each connection's cycle was 2.5 ms, its
        // wait 1.5 ms, so a response took 1 ms — the latency that makes the wait right.
        assert!((load.response_ms_at(4000.0) - 1.0).abs() < 1e-9);
        let corrected = Load {
            latency_ms: load.response_ms_at(4000.0),
            ..load
        };
        assert!(
            corrected.lua().contains("local d = 1.0000"),
            "{}",
            corrected.lua()
        );
    }
}
