//! Instructions per request, counted by callgrind: a deterministic figure for comparing two
//! builds on a machine whose wall-clock results drift by ±15 % from one minute to the next.
//!
//! tagpipe runs a scenario's pipeline under `valgrind --tool=callgrind` twice: once idle and
//! once under a few seconds of wrk load (4 connections). The difference of the two totals,
//! divided by the requests wrk completed, is what one request costs — start-up, idle timers and
//! shutdown cancel out. Repeated runs of one binary agree within a fraction of a percent.
//!
//! The same difference gives the heap allocations per request: the calls callgrind recorded to
//! the allocators' entry points — mimalloc's `mi_malloc_aligned` and `mi_zalloc_aligned`, which
//! tagpipe's global allocator calls, and the C library's `malloc`, `calloc` and
//! `posix_memalign`, which the ceiling's (Rust's default) calls.
//!
//! The ceiling (`--scenario ceiling`) is this harness's own 204 server, counted the same way.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::scenarios::Scenario;
use tagpipe_loadtest::process::{StopOnDrop, free_port, stop, wait_ready};

/// What one count found.
#[derive(Debug, Clone)]
pub struct Instructions {
    /// Requests wrk completed in the loaded run, less its errors (non-2xx answers, socket errors).
    pub requests: u64,
    /// Instructions of the idle run (start, idle, shutdown).
    pub idle_total: u64,
    /// Instructions of the loaded run.
    pub loaded_total: u64,
    /// Heap allocations of the idle run.
    pub idle_allocations: u64,
    /// Heap allocations of the loaded run.
    pub loaded_allocations: u64,
}

impl Instructions {
    /// Instructions one request costs.
    pub fn per_request(&self) -> f64 {
        self.loaded_total.saturating_sub(self.idle_total) as f64 / self.requests.max(1) as f64
    }

    /// Heap allocations one request costs.
    pub fn allocations_per_request(&self) -> f64 {
        self.loaded_allocations
            .saturating_sub(self.idle_allocations) as f64
            / self.requests.max(1) as f64
    }
}

/// Counts `scenario` with `tagpipe` (the ceiling: this harness's own 204 server), `load`
/// seconds of load.
pub fn count(
    scenario: Scenario,
    tagpipe: &Path,
    work_dir: &Path,
    load: Duration,
) -> Result<Instructions, String> {
    let receiver = crate::scenarios::counting_receiver();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // The server's command line after `valgrind --tool=callgrind …`.
    let server: Vec<OsString> = match scenario.pipeline(port, &receiver.url()) {
        None => {
            let harness = std::env::current_exe().map_err(|e| e.to_string())?;
            vec![
                harness.into(),
                "ceiling".into(),
                "--listen".into(),
                addr.to_string().into(),
            ]
        }
        Some(yaml) => {
            let file = work_dir.join(format!("{}-callgrind.yaml", scenario.slug()));
            std::fs::write(&file, yaml).map_err(|e| format!("write {}: {e}", file.display()))?;
            let args = ["--log-level", "warn", "run", "-c"].map(OsString::from);
            std::iter::once(tagpipe.into())
                .chain(args)
                .chain([file.into()])
                .collect()
        }
    };
    let idle = callgrind_run(scenario, &server, addr, work_dir, load, false)?;
    let loaded = callgrind_run(scenario, &server, addr, work_dir, load, true)?;
    // tagpipe has stopped, draining its queues: every hit wrk saw answered has arrived (a few
    // more may have, answered as wrk stopped), and none of a scenario that delivers nothing.
    // Counts of runs that lost or leaked events would compare other work.
    scenario.check_delivered(
        loaded.requests * scenario.events_per_request(),
        receiver.counted_events(),
    )?;
    Ok(Instructions {
        requests: loaded.requests,
        idle_total: idle.instructions,
        loaded_total: loaded.instructions,
        idle_allocations: idle.allocations,
        loaded_allocations: loaded.allocations,
    })
}

/// What one run under callgrind counted.
struct Run {
    instructions: u64,
    allocations: u64,
    requests: u64,
}

/// One run of `server` (its command line) under callgrind.
fn callgrind_run(
    scenario: Scenario,
    server: &[OsString],
    addr: SocketAddr,
    work_dir: &Path,
    duration: Duration,
    loaded: bool,
) -> Result<Run, String> {
    let name = format!(
        "{}-callgrind-{}",
        scenario.slug(),
        if loaded { "loaded" } else { "idle" }
    );
    let log = work_dir.join(format!("{name}.log"));
    let out = work_dir.join(format!("{name}.out"));
    let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .args(server)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start valgrind (install it): {e}"))?;
    let mut child = StopOnDrop(child);
    wait_ready(addr, Instant::now(), Duration::from_secs(120))
        .map_err(|e| format!("{e}; see {}", log.display()))?;
    let requests = if loaded {
        let load = scenario.load(4, duration);
        let measured = load.run(addr, work_dir, &name, scenario.shown_target())?;
        // Answered and accepted: a non-2xx answer is neither delivered nor a request's cost.
        measured.requests - measured.errors.min(measured.requests)
    } else {
        std::thread::sleep(duration);
        0
    };
    // A graceful stop: tagpipe drains its queues, the ceiling returns from serving (and
    // valgrind writes the totals of a process a signal ends all the same). Under valgrind
    // draining is slow: a long grace.
    stop(&mut child.0, Duration::from_secs(120)).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
    let instructions =
        collected(&text).ok_or_else(|| format!("no callgrind total in {}", log.display()))?;
    let profile = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(Run {
        instructions,
        allocations: allocations(&profile),
        requests,
    })
}

/// The allocator's entry points whose calls count as allocations.
const ALLOCATORS: [&str; 5] = [
    "mi_malloc_aligned",
    "mi_zalloc_aligned",
    "malloc",
    "calloc",
    "posix_memalign",
];

/// The calls to [`ALLOCATORS`] in a callgrind profile: the `calls=N …` line after each
/// `cfn=` that names one (callgrind names a function once as `(id) name`, then by `(id)`).
fn allocations(profile: &str) -> u64 {
    let mut allocator_ids: Vec<&str> = Vec::new();
    let mut callee_is_allocator = false;
    let mut total = 0;
    for line in profile.lines() {
        if let Some(callee) = line.strip_prefix("cfn=") {
            let (id, name) = match callee.split_once(' ') {
                Some((id, name)) => (id, Some(name)),
                None => (callee, None),
            };
            if name.is_some_and(|name| ALLOCATORS.contains(&name)) {
                allocator_ids.push(id);
            }
            callee_is_allocator = allocator_ids.contains(&id);
        } else if let Some(calls) = line.strip_prefix("calls=") {
            if callee_is_allocator {
                total += calls
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            callee_is_allocator = false;
        }
    }
    total
}

/// The `Collected : N` total callgrind prints at exit.
fn collected(log: &str) -> Option<u64> {
    log.lines()
        .filter_map(|line| line.split_once("Collected :"))
        .find_map(|(_, n)| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_callgrind_total_and_divides_by_requests() {
        let log = "==12414== Events    : Ir\n==12414== Collected : 1337163660\n==12414==\n";
        assert_eq!(collected(log), Some(1_337_163_660));
        assert_eq!(collected("nothing here"), None);
        let figures = Instructions {
            requests: 1000,
            idle_total: 30_000_000,
            loaded_total: 123_000_000,
            idle_allocations: 2_000,
            loaded_allocations: 52_000,
        };
        assert!((figures.per_request() - 93_000.0).abs() < f64::EPSILON);
        assert!((figures.allocations_per_request() - 50.0).abs() < f64::EPSILON);
    }

    #[test]
    fn counts_the_calls_to_the_allocator_by_name_and_by_id() {
        let profile = "fn=(1) main\n\
            cfn=(2) mi_malloc_aligned\ncalls=3 0x10\n5 100\n\
            cfn=(3) other\ncalls=7 0x20\n5 10\n\
            fn=(4) parse\n\
            cfn=(2)\ncalls=4 0x10\n6 80\n\
            cfn=(5) mi_zalloc_aligned\ncalls=1 0x30\n7 20\n\
            cfn=(6) mi_free\ncalls=9 0x40\n8 30\n\
            cfn=(7) malloc\ncalls=2 0x50\n9 40\n\
            cfn=(8) _int_malloc\ncalls=2 0x60\n9 40\n";
        assert_eq!(allocations(profile), 10);
        assert_eq!(allocations("fn=(1) main\n"), 0);
    }
}
