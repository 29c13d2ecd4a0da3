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
    install_metrics();
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
            let code = runtime.block_on(cli::run(config.as_deref(), require_healthy, watch_config));
            // A blocking read of standard input cannot be interrupted: do not wait for it.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            code
        }
    }
}

/// The Prometheus recorder behind `/metrics` (rendered on request; no listener of its own).
fn install_metrics() {
    let buckets = [
        0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        30.0,
    ];
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    let builder = match builder.set_buckets_for_metric(
        metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
        &buckets,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "metrics buckets not set");
            return;
        }
    };
    match builder.install_recorder() {
        Ok(handle) => {
            tagpipe_core::telemetry::set_renderer(move || {
                handle.run_upkeep();
                handle.render()
            });
            metrics::gauge!("tagpipe_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        }
        Err(e) => tracing::warn!(error = %e, "metrics recorder not installed"),
    }
}
