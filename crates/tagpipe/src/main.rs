//! The `tagpipe` command: `run` (with reloads), `validate`, `import`.

mod cli;
mod components;
mod logging;
mod prometheus;
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
    let metrics = prometheus::install();
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
                        tokio::time::sleep(prometheus::UPKEEP_INTERVAL).await;
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
