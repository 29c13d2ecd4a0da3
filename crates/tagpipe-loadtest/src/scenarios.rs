//! The four side-by-side scenarios and how one run of each is measured.
//!
//! 1. `ceiling`: the hyper 204 server — what this machine's HTTP stack can do at all;
//! 2. `ga4`: GA4 `/g/collect` single hits → consent → mapping → hashing → Spotify sink
//!    (batching, optimistic) → a local receiver;
//! 3. `batches`: `/v1/events` with 100 events per request, same pipeline;
//! 4. `fanout`: the same batches fanned out to three Spotify sinks.
//!
//! Two more, run only when named (`--scenario`), take the GA4 row apart: `ga4-short` sends a
//! four-parameter hit (`v`, `tid`, `en`, `gcs`) through the same pipeline — what the framework
//! and the sink cost without the long hit's parsing —, and `ga4-refused` sends the purchase hit
//! with consent denied (`gcs=G100`, `gcd=13q3q3q3q5`), which the consent processor skips — the
//! parsing without the sink.
//!
//! Every run: start the server and time it to ready, read its idle memory, drive it with wrk at
//! full speed (requests/s, latency, CPU and peak memory), check every accepted event reached the
//! receiver, then drive it again at half the rate it reached for the latency there.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tagpipe_capi_receiver::{Receiver, ReceiverConfig};

use crate::wrk::Load;
use tagpipe_loadtest::process::{StopOnDrop, cpu_seconds, free_port, memory_mib, wait_ready};

/// What a harness run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `tagpipe` binary.
    pub tagpipe: PathBuf,
    /// Runs per scenario (the report shows medians).
    pub runs: usize,
    /// Length of each full-speed load.
    pub duration: Duration,
    /// wrk connections.
    pub connections: usize,
    /// The latency run's rate, instead of half of each run's full speed: two builds compared at
    /// the same load.
    pub half_rate: Option<f64>,
    /// Where pipeline files, scripts and logs go.
    pub work_dir: PathBuf,
}

/// The scenarios, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The hyper 204 ceiling.
    Ceiling,
    /// GA4 single hits.
    Ga4,
    /// `/v1/events`, 100 events per request.
    Batches,
    /// Batches to three sinks.
    Fanout,
    /// GA4 single hits of four parameters (diagnostic: run only when named).
    Ga4Short,
    /// GA4 single hits whose consent is denied, skipped by the consent processor (diagnostic).
    Ga4Refused,
}

impl Scenario {
    /// All of them.
    pub const ALL: [Scenario; 4] = [Self::Ceiling, Self::Ga4, Self::Batches, Self::Fanout];

    /// The diagnostic scenarios, run only when named.
    pub const DIAGNOSTIC: [Scenario; 2] = [Self::Ga4Short, Self::Ga4Refused];

    /// The report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ceiling => "hyper 204 ceiling",
            Self::Ga4 => "GA4 /g/collect single hits",
            Self::Batches => "/v1/events, 100 events/request",
            Self::Fanout => "/v1/events, 100 events/request, 3 sinks",
            Self::Ga4Short => "GA4 single hits of 4 parameters",
            Self::Ga4Refused => "GA4 single hits, consent denied (skipped)",
        }
    }

    /// The short name (`--scenario`).
    pub fn slug(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling",
            Self::Ga4 => "ga4",
            Self::Batches => "batches",
            Self::Fanout => "fanout",
            Self::Ga4Short => "ga4-short",
            Self::Ga4Refused => "ga4-refused",
        }
    }

    pub(crate) fn events_per_request(self) -> u64 {
        match self {
            Self::Ceiling | Self::Ga4 | Self::Ga4Short | Self::Ga4Refused => 1,
            Self::Batches | Self::Fanout => 100,
        }
    }

    /// How many sinks each event is delivered to.
    pub fn sinks(self) -> u64 {
        match self {
            Self::Ceiling | Self::Ga4Refused => 0,
            Self::Ga4 | Self::Ga4Short | Self::Batches => 1,
            Self::Fanout => 3,
        }
    }

    /// Whether the receiver's count `counted` is what `accepted_events` accepted events of this
    /// scenario should have delivered: at least one per event and sink (wrk does not count
    /// requests cut off at the end of a run that tagpipe had already accepted, so the receiver
    /// may count a few more), and none at all for a scenario that delivers nothing.
    pub(crate) fn check_delivered(self, accepted_events: u64, counted: u64) -> Result<(), String> {
        let expected = accepted_events * self.sinks();
        if self.sinks() == 0 && counted > 0 {
            // `ga4-refused`: consent let hits through that it should have skipped.
            return Err(format!(
                "the receiver counted {counted} events; none should arrive"
            ));
        }
        if counted < expected {
            return Err(format!(
                "{expected} events accepted for delivery, the receiver counted {counted}"
            ));
        }
        Ok(())
    }

    /// The request target as the report shows it.
    pub(crate) fn shown_target(self) -> &'static str {
        match self {
            Self::Ceiling | Self::Ga4 => "/g/collect?<tests/fixtures/ga4-purchase-hit.query>",
            Self::Ga4Short => GA4_SHORT_HIT,
            Self::Ga4Refused => {
                "/g/collect?<tests/fixtures/ga4-purchase-hit.query, gcs=G100&gcd=13q3q3q3q5>"
            }
            Self::Batches | Self::Fanout => "/v1/events",
        }
    }

    pub(crate) fn load(self, connections: usize, duration: Duration) -> Load {
        let (method, target, headers, body) = match self {
            Self::Ceiling | Self::Ga4 => (
                "GET",
                format!("/g/collect?{GA4_HIT}"),
                vec![],
                String::new(),
            ),
            Self::Ga4Short => ("GET", GA4_SHORT_HIT.to_owned(), vec![], String::new()),
            Self::Ga4Refused => (
                "GET",
                format!("/g/collect?{}", refused_hit()),
                vec![],
                String::new(),
            ),
            Self::Batches | Self::Fanout => (
                "POST",
                "/v1/events".to_owned(),
                vec![("Content-Type", "application/json")],
                batch_body(100),
            ),
        };
        let mut headers = headers;
        headers.push(("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) loadtest"));
        Load {
            method,
            target,
            headers,
            body,
            connections,
            duration,
            rate: None,
            latency_ms: 0.0,
        }
    }

    /// The pipeline file tagpipe runs (`None` for the ceiling).
    pub(crate) fn pipeline(self, port: u16, receiver: &str) -> Option<String> {
        let sinks = match self {
            Self::Ceiling => return None,
            Self::Ga4 | Self::Ga4Short | Self::Ga4Refused | Self::Batches => vec!["spotify"],
            Self::Fanout => vec!["spotify/a", "spotify/b", "spotify/c"],
        };
        let mut yaml = format!(
            "# Generated by tagpipe-loadtest ({}).\nsources:\n  http:\n    listen: 127.0.0.1:{port}\n    \
             max_events_per_request: 1000\nprocessors:\n  consent: {{require: [ad_storage]}}\n  \
             mapping: {{event_name: {{method: inherit}}}}\n  \
             hashing: {{fields: [{{path: user_data.email_address, preset: email}}]}}\nsinks:\n",
            self.name()
        );
        for (i, sink) in sinks.iter().enumerate() {
            let _ = write!(
                yaml,
                "  {sink}:\n    auth_token: loadtest\n    connection_id: c{i}\n    endpoint: {receiver}\n    \
                 optimistic: true\n    log_type: no\n    concurrency: 8\n    \
                 batch: {{max_events: 500, timeout: 20ms}}\n"
            );
        }
        let _ = write!(
            yaml,
            "pipelines:\n  p:\n    sources: [http]\n    processors: [consent, mapping, hashing]\n    sinks: [{}]\n",
            sinks.join(", ")
        );
        Some(yaml)
    }
}

/// A typical gtag.js purchase hit: 31 parameters, consent granted (`gcs=G111`); the same hit
/// the GA4 parsing benchmark uses.
const GA4_HIT: &str = include_str!("../../../tests/fixtures/ga4-purchase-hit.query");

/// The `ga4-short` request: the fewest parameters a hit that reaches the sink carries.
const GA4_SHORT_HIT: &str = "/g/collect?v=2&tid=G-ABC123XYZ&en=purchase&gcs=G111";

/// The purchase hit with every consent purpose denied (`gcs` and, as the consent processor
/// reads it first, `gcd`).
fn refused_hit() -> String {
    GA4_HIT
        .trim_end()
        .replace("gcs=G111", "gcs=G100")
        .replace("gcd=13r3r3r3r5", "gcd=13q3q3q3q5")
}

/// A JSON array of `n` server-side purchase events with an email to hash.
fn batch_body(n: usize) -> String {
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{\"event_name\":\"purchase\",\"client_id\":\"123.{i}\",\"x-ga-gcs\":\"G111\",\
                 \"timestamp\":1748377016,\"ip_override\":\"203.0.113.7\",\"value\":59.9,\"currency\":\"EUR\",\
                 \"page_location\":\"https://shop.example.com/thanks\",\
                 \"user_data\":{{\"email_address\":\"Jane.Doe{i}@Example.com\"}}}}"
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

/// How long a scenario that delivers nothing waits before the receiver's count is read: well
/// past the sink's batch timeout.
pub(crate) const SETTLE: Duration = Duration::from_millis(500);

/// How long each connection waits between requests in the half-rate run.
const HALF_RATE_WAIT_S: f64 = 0.005;

/// The short run that finds the half-rate run's response time (see [`run_once`]).
const CALIBRATION: Duration = Duration::from_secs(2);

/// At most this many calibration runs; they stop once one reaches the rate within
/// [`CALIBRATION_TOLERANCE`].
const CALIBRATION_RUNS: usize = 3;

/// How far from the asked rate a calibration run may land (a fraction of it).
const CALIBRATION_TOLERANCE: f64 = 0.05;

/// One run's figures.
#[derive(Debug, Clone, Default)]
pub struct RunFigures {
    /// Requests per second at full speed.
    pub requests_per_second: f64,
    /// Events per second at full speed (accepted).
    pub events_per_second: f64,
    /// Latency at full speed.
    pub p50_ms: f64,
    /// Latency at full speed.
    pub p99_ms: f64,
    /// 99th percentile latency at half the full-speed rate.
    pub half_rate_p99_ms: f64,
    /// The rate that half-rate run reached.
    pub half_rate_rps: f64,
    /// Server CPU seconds per million events (per million requests for the ceiling).
    pub cpu_seconds_per_million: f64,
    /// Peak resident memory.
    pub peak_rss_mib: f64,
    /// Resident memory once ready, before any load.
    pub idle_rss_mib: f64,
    /// Process start to `/readyz` answering.
    pub startup_ms: f64,
    /// Events accepted in the full-speed run (each to be delivered to every sink).
    pub accepted_events: u64,
    /// Events the receiver counted.
    pub delivered_events: u64,
    /// Failed requests (non-2xx, socket errors).
    pub errors: u64,
    /// The commands behind the figures.
    pub commands: Vec<String>,
}

/// The receiver every tagpipe scenario delivers to: on a free loopback port, counting events
/// (it reads only how many each request carries) and answering 200.
pub fn counting_receiver() -> Receiver {
    let mut config = ReceiverConfig::new("loadtest");
    config.count_only = true;
    Receiver::spawn(config)
}

/// Runs one scenario once.
pub fn run_once(scenario: Scenario, options: &Options, run: usize) -> Result<RunFigures, String> {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let receiver = (scenario != Scenario::Ceiling).then(counting_receiver);
    let log = options
        .work_dir
        .join(format!("{}-{run}.log", scenario.slug()));
    let (mut command, shown) = match scenario.pipeline(
        port,
        &receiver.as_ref().map(Receiver::url).unwrap_or_default(),
    ) {
        None => {
            let mut c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
            c.args(["ceiling", "--listen", &addr.to_string()]);
            (c, format!("tagpipe-loadtest ceiling --listen {addr}"))
        }
        Some(yaml) => {
            let file = options.work_dir.join(format!("{}.yaml", scenario.slug()));
            std::fs::write(&file, yaml).map_err(|e| e.to_string())?;
            let mut c = Command::new(&options.tagpipe);
            c.args(["--log-level", "warn", "run", "-c"]).arg(&file);
            (
                c,
                format!("tagpipe --log-level warn run -c {}", file.display()),
            )
        }
    };
    let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let child = StopOnDrop(child);
    let pid = child.0.id();
    let startup = wait_ready(addr, started, Duration::from_secs(30))
        .map_err(|e| format!("{e}; see {}", log.display()))?;
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = memory_mib(pid, "VmRSS");

    let mut load = scenario.load(options.connections, options.duration);
    // One wrk run of `load`, its script and report named `name`.
    let run =
        |load: &Load, name: &str| load.run(addr, &options.work_dir, name, scenario.shown_target());
    let cpu_before = cpu_seconds(pid);
    let full = run(&load, scenario.slug())?;
    let cpu = cpu_seconds(pid) - cpu_before;
    let accepted = (full.requests - full.errors.min(full.requests)) * scenario.events_per_request();

    // Every accepted event reaches the receiver (optimistic mode answers before delivery).
    let delivered = match &receiver {
        None => 0,
        // `ga4-refused`: nothing may arrive; read once all its runs are over (below).
        Some(_) if scenario.sinks() == 0 => 0,
        Some(r) => {
            let expected = accepted * scenario.sinks();
            let deadline = Instant::now() + Duration::from_secs(60);
            while r.counted_events() < expected && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            r.counted_events()
        }
    };
    let peak_rss = memory_mib(pid, "VmHWM");

    // Half the rate reached, spread over enough connections that each waits ~5 ms between
    // requests: wrk's `delay()` counts whole milliseconds, so shorter waits miss the rate.
    let rate = options.half_rate.unwrap_or(full.requests_per_second / 2.0);
    load.rate = Some(rate);
    load.latency_ms = full.p50_ms;
    load.connections = load
        .connections
        .max((rate * HALF_RATE_WAIT_S).ceil() as usize);
    // Each connection's cycle is its wait plus the response time at *that* load, which the
    // full-speed run's median overstates (by far where requests queue: ~15 ms for the fan-out,
    // whose "half-rate" runs then ran at ~80 % of the maximum). A short run at the first guess
    // shows the cycle; the wait is corrected with the response time it implies — again, until
    // a run lands near the rate (wrk's waits are whole milliseconds and its timer adds to them,
    // so one correction can overshoot: the ceiling's latency runs reached 46–57 % of its
    // maximum with one).
    load.duration = options.duration.min(CALIBRATION);
    for _ in 0..CALIBRATION_RUNS {
        let probe = run(&load, &format!("{}-calibration", scenario.slug()))?;
        if (probe.requests_per_second / rate - 1.0).abs() <= CALIBRATION_TOLERANCE {
            break;
        }
        load.latency_ms = load.response_ms_at(probe.requests_per_second);
    }
    load.duration = options.duration;
    let half = run(&load, &format!("{}-half", scenario.slug()))?;
    // For a scenario that delivers nothing, the calibration and half-rate runs count too, and
    // waiting out the sink's batch timeout (20 ms) lets a wrongly delivered batch show.
    let delivered = match &receiver {
        Some(r) if scenario.sinks() == 0 => {
            std::thread::sleep(SETTLE);
            r.counted_events()
        }
        _ => delivered,
    };
    drop(child);

    let events = full.requests as f64 * scenario.events_per_request() as f64;
    Ok(RunFigures {
        requests_per_second: full.requests_per_second,
        events_per_second: full.requests_per_second * scenario.events_per_request() as f64,
        p50_ms: full.p50_ms,
        p99_ms: full.p99_ms,
        half_rate_p99_ms: half.p99_ms,
        half_rate_rps: half.requests_per_second,
        cpu_seconds_per_million: cpu / events.max(1.0) * 1e6,
        peak_rss_mib: peak_rss,
        idle_rss_mib: idle_rss,
        startup_ms: startup.as_secs_f64() * 1000.0,
        accepted_events: accepted,
        delivered_events: delivered,
        errors: full.errors + half.errors,
        commands: vec![shown, full.command, half.command],
    })
}

/// The work directory, created.
pub fn work_dir(path: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_refused_when_events_were_lost_or_leaked() {
        assert!(Scenario::Ga4.check_delivered(100, 100).is_ok());
        assert!(Scenario::Ga4.check_delivered(100, 103).is_ok());
        let lost = Scenario::Ga4.check_delivered(100, 99).unwrap_err();
        assert!(
            lost.contains("100 events") && lost.contains("counted 99"),
            "{lost}"
        );
        assert!(Scenario::Batches.check_delivered(1_000, 1_000).is_ok());
        assert!(Scenario::Batches.check_delivered(1_000, 999).is_err());
        assert!(Scenario::Fanout.check_delivered(1_000, 2_999).is_err());
        assert!(Scenario::Ga4Refused.check_delivered(100, 0).is_ok());
        let leaked = Scenario::Ga4Refused.check_delivered(100, 1).unwrap_err();
        assert!(leaked.contains("none should arrive"), "{leaked}");
        assert!(Scenario::Ceiling.check_delivered(100, 0).is_ok());
    }

    /// The refused hit is the purchase hit with consent denied in both of its signals (the
    /// consent processor reads `gcd` first): were the fixture's consent to change, this fails
    /// rather than the scenario silently measuring delivered hits.
    #[test]
    fn the_refused_hit_differs_from_the_purchase_hit_only_in_its_consent() {
        let refused = refused_hit();
        let params = |query: &str| query.split('&').map(str::to_owned).collect::<Vec<_>>();
        let (hit, refused) = (params(GA4_HIT.trim_end()), params(&refused));
        assert_eq!(hit.len(), refused.len());
        let changed: Vec<(&String, &String)> =
            hit.iter().zip(&refused).filter(|(a, b)| a != b).collect();
        assert_eq!(
            changed,
            [
                (&"gcs=G111".to_owned(), &"gcs=G100".to_owned()),
                (&"gcd=13r3r3r3r5".to_owned(), &"gcd=13q3q3q3q5".to_owned())
            ]
        );
        let load = Scenario::Ga4Refused.load(4, Duration::from_secs(1));
        assert!(load.target.ends_with(&refused.join("&")));
        assert_eq!(Scenario::Ga4Refused.sinks(), 0);
        assert_eq!(
            Scenario::Ga4Short.load(4, Duration::from_secs(1)).target,
            Scenario::Ga4Short.shown_target()
        );
    }
}
