//! The `tagpipe` command: `run` (with reloads), `validate`, `import`.

mod cli;
mod components;
mod logging;
mod reload;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: event data is many small strings and maps; it cut GA4 hit parsing by ~15–20%
/// against the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, cli.log_level.as_deref());
    let metrics = install_metrics();
    match cli.command {
        cli::Command::Validate { files } => cli::validate(&files),
        cli::Command::Import(command) => cli::import(&command),
        cli::Command::Run {
            config,
            require_healthy,
            watch_config,
        } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(handle) = metrics {
                // The recorder keeps a histogram's samples until they are drained: drain them
                // every few seconds, or memory grows for as long as nobody scrapes `/metrics`.
                runtime.spawn(async move {
                    loop {
                        tokio::time::sleep(METRICS_UPKEEP_INTERVAL).await;
                        handle.run_upkeep();
                    }
                });
            }
            let code = runtime.block_on(cli::run(config.as_deref(), require_healthy, watch_config));
            // A blocking read of standard input cannot be interrupted: do not wait for it.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            code
        }
    }
}

/// How often the recorder's histogram samples are drained when nobody scrapes `/metrics`.
const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The Prometheus recorder behind `/metrics` (rendered on request; no listener of its own).
/// Returns its handle for the periodic upkeep.
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    let builder = match builder.set_buckets_for_metric(
        metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
        &tagpipe_core::fixed_histogram::SECONDS_BUCKETS,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "metrics buckets not set");
            return None;
        }
    };
    match builder.install_recorder() {
        Ok(handle) => {
            let rendering = handle.clone();
            tagpipe_core::telemetry::set_renderer(move || {
                rendering.run_upkeep();
                rendering.render()
            });
            metrics::gauge!("tagpipe_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}
