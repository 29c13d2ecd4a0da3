//! Configuration reloads: on SIGHUP, and with `--watch-config` whenever the pipeline file's
//! content changes. The new file is loaded and validated first; an invalid file is reported
//! (every error with file, line and column) and the running pipelines stay as they are.
//! A valid one goes to the running topology, which rebuilds only what changed.

use std::path::PathBuf;
use std::time::Duration;

use tagpipe_config::{LoadedConfig, RuntimeSettings};
use tagpipe_core::topology::TopologyConfig;
use tokio::sync::mpsc;

use crate::components::registry;

/// How often `--watch-config` reads the file. Reading its content (not its modification
/// time) also catches editors and ConfigMap updates that replace the file.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What a reload needs to know about the running process.
pub(crate) struct Reloader {
    /// The pipeline file.
    pub path: PathBuf,
    /// Also reload when the file changes.
    pub watch: bool,
    /// `--require-healthy`, which reloads apply too.
    pub require_healthy: bool,
    /// The settings the process started with (some only apply at start).
    pub runtime: RuntimeSettings,
}

impl Reloader {
    /// Watches for reload requests and sends each valid new configuration to `reloads` until
    /// the receiver goes away.
    pub(crate) async fn run(self, reloads: mpsc::Sender<TopologyConfig>) {
        let mut hangups = hangups();
        let mut last = std::fs::read(&self.path).ok();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let cause = tokio::select! {
                () = reloads.closed() => return,
                Some(()) = hangups.recv() => "SIGHUP received",
                _ = tick.tick(), if self.watch => {
                    let now = std::fs::read(&self.path).ok();
                    if now == last {
                        continue;
                    }
                    last = now;
                    "the configuration file changed"
                }
            };
            tracing::info!(config = %self.path.display(), "{cause}: reloading the configuration");
            if let Some(config) = self.load()
                && reloads.send(config).await.is_err()
            {
                return;
            }
        }
    }

    /// Loads and validates the file; `None` (with the errors logged) when it is not valid.
    fn load(&self) -> Option<TopologyConfig> {
        match tagpipe_config::load_file(&self.path, &registry()) {
            Err(errors) => {
                tracing::error!(
                    "the new configuration is invalid; the running pipelines are unchanged:\n{errors}"
                );
                None
            }
            Ok(LoadedConfig {
                mut topology,
                runtime,
                warnings,
            }) => {
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                if runtime.metrics_address != self.runtime.metrics_address
                    || runtime.metrics_path != self.runtime.metrics_path
                {
                    tracing::warn!(
                        "`runtime.metrics_address` and `runtime.metrics_path` take effect at the next start"
                    );
                }
                topology.require_healthy = self.require_healthy;
                Some(topology)
            }
        }
    }
}

/// SIGHUP signals as a channel (never fires where there are none).
fn hangups() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut signal) => {
            tokio::spawn(async move {
                while signal.recv().await.is_some() {
                    // A reload already pending covers this one too.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP: reload on signal is off"),
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}
