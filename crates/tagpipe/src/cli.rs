//! Command-line interface.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tagpipe_config::{ConfigErrors, LoadedConfig};
use tagpipe_core::topology::Topology;

use crate::components::registry;
use crate::logging::LogFormat;
use crate::reload;

/// The pipeline file used by `tagpipe run` without `-c`.
const QUICKSTART: &str = include_str!("../../../pipelines/quickstart.yaml");
const QUICKSTART_NAME: &str = "<embedded pipelines/quickstart.yaml>";

/// tagpipe: a fast, self-hosted server-side tagging pipeline.
#[derive(Debug, Parser)]
#[command(name = "tagpipe", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log format: `pretty` or `json` (logs go to standard error).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Log level filter, e.g. `info`, `debug`, `tagpipe_core=trace,info`. Overrides RUST_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the pipelines of a file until SIGINT/SIGTERM (or until every source has finished).
    Run {
        /// The pipeline file. Without it, the embedded `pipelines/quickstart.yaml`.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Stop at start-up when a sink's health check fails (otherwise a warning). Applies to
        /// reloads too: a reload whose new sinks fail their health check is not applied.
        #[arg(long)]
        require_healthy: bool,
        /// Reload the pipeline file whenever its content changes (checked every second), as
        /// SIGHUP does. Needs `-c`.
        #[arg(long, requires = "config")]
        watch_config: bool,
    },
    /// Check pipeline files without running them (no network): exit 0 when all are valid,
    /// 1 with every error listed.
    Validate {
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Convert another tool's configuration into a pipeline file (printed on stdout).
    #[command(subcommand)]
    Import(Import),
}

#[derive(Debug, Subcommand)]
pub(crate) enum Import {
    /// Stape's "Spotify Conversions API" GTM tag: a flat settings JSON object, or a GTM container
    /// export holding Spotify tags (one pipeline each). Exit 0, or 2 when some settings could
    /// not be carried over (listed on stderr; the YAML is still printed).
    StapeSpotify {
        /// The settings or container export (JSON).
        file: PathBuf,
        /// The HTTP source's listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: String,
        /// The CAPI endpoint (default: Spotify's).
        #[arg(long)]
        endpoint: Option<String>,
        /// Write auth tokens into the YAML instead of `${env:SPOTIFY_CAPI_TOKEN…}` references.
        #[arg(long)]
        inline_secrets: bool,
    },
}

pub(crate) fn import(command: &Import) -> ExitCode {
    let Import::StapeSpotify {
        file,
        listen,
        endpoint,
        inline_secrets,
    } = command;
    let input = match std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            serde_json::from_str::<serde_json::Value>(&t)
                .map_err(|e| format!("not valid JSON: {e}"))
        }) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let options = tagpipe_sink_spotify::import::ImportOptions {
        listen: listen.clone(),
        endpoint: endpoint.clone(),
        inline_secrets: *inline_secrets,
    };
    match tagpipe_sink_spotify::import::import_stape_spotify(&input, &options) {
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            ExitCode::FAILURE
        }
        Ok(imported) => {
            print!("{}", imported.yaml);
            for (var, tag) in &imported.env {
                eprintln!("note: set {var} to the CAPI token of tag \"{tag}\"");
            }
            for problem in &imported.problems {
                eprintln!("warning: {problem}");
            }
            if imported.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn load(config: Option<&Path>) -> Result<LoadedConfig, ConfigErrors> {
    match config {
        Some(path) => tagpipe_config::load_file(path, &registry()),
        None => tagpipe_config::load_str(
            QUICKSTART_NAME,
            QUICKSTART,
            &registry(),
            &std::env::vars().collect(),
        ),
    }
}

pub(crate) fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match tagpipe_config::load_file(file, &registry()) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}: valid", file.display());
            }
            Err(errors) => {
                ok = false;
                eprintln!("{errors}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(crate) async fn run(
    config: Option<&Path>,
    require_healthy: bool,
    watch_config: bool,
) -> ExitCode {
    let loaded = match load(config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let file = config.map_or_else(|| QUICKSTART_NAME.to_owned(), |p| p.display().to_string());
    // Bound before the pipelines are built, so that a taken port stops the start.
    let metrics_listener = match loaded.runtime.metrics_address {
        Some(address) => match tagpipe_source_http::bind_metrics_listener(address).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("error: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut topology_config = loaded.topology;
    topology_config.require_healthy = require_healthy;
    let topology = match Topology::build(topology_config).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %file, version = env!("CARGO_PKG_VERSION"), "tagpipe running");
    let metrics = metrics_listener.map(|listener| {
        tokio::spawn(tagpipe_source_http::serve_metrics(
            listener,
            loaded.runtime.metrics_path.clone(),
        ))
    });
    let (reloads, reload_requests) = tokio::sync::mpsc::channel(1);
    if let Some(path) = config.map(Path::to_path_buf) {
        let reloader = reload::Reloader {
            path,
            watch: watch_config,
            require_healthy,
            runtime: loaded.runtime.clone(),
        };
        tokio::spawn(reloader.run(reloads));
    } else {
        drop(reloads);
    }
    let report = topology
        .run_reloading(shutdown_signal(), reload_requests)
        .await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    if report.undelivered.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
