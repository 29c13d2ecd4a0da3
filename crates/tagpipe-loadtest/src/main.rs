//! `tagpipe-loadtest`: the side-by-side load-test harness of BENCHMARKS.md. In one run, with
//! the same load generator (`wrk`), connection count and duration, it measures a minimal hyper server answering 204 —
//! the HTTP ceiling of the machine — and tagpipe on three workloads (GA4 single hits, `/v1/events`
//! batches of 100, and the same batches fanned out to three sinks), each through consent →
//! mapping → hashing → Spotify sink → a local receiver. It reports requests/s, events/s, p50/p99
//! latency (and p99 at half the reached rate), server CPU per million events, peak and idle RSS,
//! start-up time, and checks that every accepted event was delivered. Two diagnostic GA4
//! scenarios, run only when named, take the GA4 row apart (`ga4-short`: a four-parameter hit;
//! `ga4-refused`: the purchase hit with consent denied, of which nothing may be delivered).
//!
//! `scripts/loadtest.sh` installs wrk, builds the release binaries and runs it; `--quick` is the
//! smoke test CI runs (short, one run, no figures judged).

mod ceiling;
mod instructions;
mod report;
mod scenarios;
mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::scenarios::{Options, Scenario};

/// The side-by-side load-test harness.
#[derive(Debug, Parser)]
#[command(name = "tagpipe-loadtest")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every scenario and print the markdown report.
    Run {
        /// The tagpipe binary to measure.
        #[arg(long)]
        tagpipe: PathBuf,
        /// Runs per scenario; the report shows medians.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds of full-speed load per run (and as many at half rate).
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Open connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Requests per second of the latency run ("p99 at ½ rate"), instead of half of each
        /// run's full speed: to compare two builds' latency at the same load.
        #[arg(long, value_name = "REQUESTS_PER_SECOND")]
        half_rate: Option<f64>,
        /// Smoke test: one run of 1 second with 4 connections per scenario.
        #[arg(long)]
        quick: bool,
        /// Only these scenarios (`ceiling`, `ga4`, `batches`, `fanout`, and the diagnostic
        /// `ga4-short` and `ga4-refused`, run only when named); default: the first four.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Where generated pipeline files, wrk scripts and server logs go.
        #[arg(long, default_value = "target/loadtest")]
        work_dir: PathBuf,
    },
    /// Count tagpipe's instructions and heap allocations per request with callgrind
    /// (deterministic, for comparing builds): an idle run and a loaded run of each scenario
    /// under valgrind.
    Instructions {
        /// The tagpipe binary to measure.
        #[arg(long)]
        tagpipe: PathBuf,
        /// Seconds of load (and of idling in the idle run).
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Only these scenarios (`ceiling` — this harness's 204 server —, `ga4`, `batches`,
        /// `fanout`, `ga4-short`, `ga4-refused`); default: `ga4` and `batches`.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Where generated pipeline files, callgrind outputs and logs go.
        #[arg(long, default_value = "target/loadtest")]
        work_dir: PathBuf,
    },
    /// Serve the HTTP ceiling: 204 to every request (started by `run`).
    Ceiling {
        /// Listen address.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Serve the harness's CAPI receiver (counting mode: it reads only how many events each
    /// request carries, and answers 200) on a free loopback port, printing its endpoint URL: for driving a tagpipe by hand with wrk and the scripts
    /// `run` leaves in its work directory.
    Receiver,
    /// Write what driving one scenario by hand takes and print its request target (a path):
    /// `<out>.lua`, its wrk script (method, headers, body), and for a tagpipe scenario
    /// `<out>.yaml`, its pipeline file listening on `--port` and delivering to `--receiver`
    /// (used by `scripts/loadtest-side.sh`).
    Request {
        /// The scenario (`ceiling`, `ga4`, `ga4-short`, `ga4-refused`, `batches`, `fanout`).
        scenario: String,
        /// The port tagpipe listens on.
        #[arg(long)]
        port: u16,
        /// The CAPI receiver's endpoint (e.g. what `receiver` prints).
        #[arg(long)]
        receiver: String,
        /// The files' path without extension.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Ceiling { listen } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(ceiling::serve(listen))
                .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Request {
            scenario,
            port,
            receiver,
            out,
        } => {
            let [scenario] = select(&[scenario])?[..] else {
                return Err("one scenario".to_owned());
            };
            let write = |extension: &str, text: String| {
                let path = out.with_extension(extension);
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
            };
            let load = scenario.load(1, Duration::from_secs(1));
            write("lua", load.lua())?;
            if let Some(pipeline) = scenario.pipeline(port, &receiver) {
                write("yaml", pipeline)?;
            }
            println!("{}", load.target);
            Ok(ExitCode::SUCCESS)
        }
        Command::Receiver => {
            println!("{}", scenarios::counting_receiver().url());
            loop {
                std::thread::park();
            }
        }
        Command::Instructions {
            tagpipe,
            duration,
            scenarios,
            work_dir,
        } => {
            let names = if scenarios.is_empty() {
                vec!["ga4".to_owned(), "batches".to_owned()]
            } else {
                scenarios
            };
            let selected = select(&names)?;
            let work_dir = scenarios::work_dir(&work_dir)?;
            println!(
                "| scenario | requests | instructions per request | per event | heap allocations per request | per event |"
            );
            println!("|---|---|---|---|---|---|");
            for scenario in selected {
                let figures = instructions::count(
                    scenario,
                    &tagpipe,
                    &work_dir,
                    Duration::from_secs(duration.max(1)),
                )
                .map_err(|e| format!("{}: {e}", scenario.slug()))?;
                let per_request = figures.per_request();
                let allocations = figures.allocations_per_request();
                let events = scenario.events_per_request() as f64;
                println!(
                    "| {} | {} | {per_request:.0} | {:.0} | {allocations:.1} | {:.1} |",
                    scenario.name(),
                    figures.requests,
                    per_request / events,
                    allocations / events,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            tagpipe,
            runs,
            duration,
            connections,
            half_rate,
            quick,
            scenarios,
            work_dir,
        } => {
            let selected = if scenarios.is_empty() {
                Scenario::ALL.to_vec()
            } else {
                select(&scenarios)?
            };
            if let Some(rate) = half_rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
                return Err(format!(
                    "--half-rate must be a positive number of requests per second, not {rate}"
                ));
            }
            let work_dir = scenarios::work_dir(&work_dir)?;
            let options = if quick {
                Options {
                    tagpipe,
                    runs: 1,
                    duration: Duration::from_secs(1),
                    connections: 4,
                    half_rate: None,
                    work_dir,
                }
            } else {
                Options {
                    tagpipe,
                    runs: runs.max(1),
                    duration: Duration::from_secs(duration.max(1)),
                    connections: connections.max(1),
                    half_rate,
                    work_dir,
                }
            };
            Ok(run(&options, &selected))
        }
    }
}

/// The scenarios named (by slug), in the report's order; an unknown name is an error.
fn select(names: &[String]) -> Result<Vec<Scenario>, String> {
    let known = || Scenario::ALL.into_iter().chain(Scenario::DIAGNOSTIC);
    if let Some(unknown) = names
        .iter()
        .find(|n| !known().any(|s| s.slug() == n.as_str()))
    {
        let slugs: Vec<&str> = known().map(Scenario::slug).collect();
        return Err(format!(
            "no such scenario: `{unknown}` ({})",
            slugs.join(", ")
        ));
    }
    Ok(known()
        .filter(|s| names.iter().any(|n| n == s.slug()))
        .collect())
}

/// Runs every scenario `options.runs` times, in rounds (one run of each scenario per round):
/// the machine's background load drifts over minutes, and rounds give every scenario — the
/// ceiling included — the same mix of it, so the ratios compare like with like.
fn run(options: &Options, scenarios: &[Scenario]) -> ExitCode {
    let mut results: Vec<(Scenario, Vec<scenarios::RunFigures>)> =
        scenarios.iter().map(|&s| (s, Vec::new())).collect();
    let mut lost = false;
    for run in 0..options.runs {
        for (scenario, runs) in &mut results {
            let scenario = *scenario;
            eprintln!("{} — run {} of {}…", scenario.name(), run + 1, options.runs);
            match scenarios::run_once(scenario, options, run) {
                Ok(figures) => {
                    if let Err(e) =
                        scenario.check_delivered(figures.accepted_events, figures.delivered_events)
                    {
                        eprintln!("error: {}: {e}", scenario.name());
                        lost = true;
                    }
                    runs.push(figures);
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", scenario.name());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let latency_rate = match options.half_rate {
        Some(rate) => format!("{rate} requests/s (`--half-rate`)"),
        None => "half that rate".to_owned(),
    };
    let header = format!(
        "Load: wrk, 1 thread, {} connections, {} s per run at full speed and {} s at \
         {latency_rate} (more connections, each waiting ~5 ms between requests; the wait set by \
         up to three short calibration runs), {} run(s) per scenario in rounds (medians); load generator, \
         server and receiver share this machine's {} cores.",
        options.connections,
        options.duration.as_secs(),
        options.duration.as_secs(),
        options.runs,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    println!("{}", report::render(&results, &header));
    if lost {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_scenarios_run_only_when_named_and_in_report_order() {
        let names = |list: &[&str]| list.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
        assert_eq!(
            select(&names(&["ga4-refused", "ga4", "ga4-short", "ceiling"])).unwrap(),
            vec![
                Scenario::Ceiling,
                Scenario::Ga4,
                Scenario::Ga4Short,
                Scenario::Ga4Refused
            ]
        );
        let error = select(&names(&["ga4-long"])).unwrap_err();
        assert!(
            error.contains("`ga4-long`") && error.contains("ga4-refused"),
            "{error}"
        );
        assert!(
            Scenario::ALL
                .iter()
                .all(|s| !Scenario::DIAGNOSTIC.contains(s))
        );
    }
}
