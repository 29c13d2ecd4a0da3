//! Building and running the whole graph: sinks (each with its queue and driver), pipelines
//! (processors over a fan-out), and the sources feeding them.
//!
//! Shutdown follows one deadline (`shutdown_timeout`): sources are asked to stop and finish what
//! they hold, which closes the sinks' queues; drivers drain them; whatever is still undelivered
//! when the deadline comes is failed, counted per sink and logged — never dropped silently.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower::util::BoxCloneSyncService;

use crate::component::SourceComponent;
use crate::component::{
    BoxError, ProcessorConfig, ProcessorContext, RunningSource, SinkConfig, SinkContext,
    SourceConfig, SourceContext,
};
use crate::driver::{self, DriverReport};
use crate::fanout::FanOut;
use crate::id::ComponentId;
use crate::logs::{LogEmitter, LogsSourceConfig};
use crate::pipeline::{Dispatcher, Pipeline};
use crate::processor::{PipelineService, ProcessorLayer};
use crate::queue::{self, BufferConfig, SinkInput, SinkStats};
use crate::telemetry::SinkInstruments;

/// Everything needed to build a topology: parsed and validated configuration.
#[derive(Debug)]
pub struct TopologyConfig {
    /// Sources by ID.
    pub sources: Vec<(ComponentId, Box<dyn SourceConfig>)>,
    /// Processors by ID.
    pub processors: Vec<(ComponentId, Box<dyn ProcessorConfig>)>,
    /// Sinks by ID, with their buffers.
    pub sinks: Vec<SinkEntry>,
    /// Pipelines by name.
    pub pipelines: Vec<PipelineEntry>,
    /// How long shutdown may take before undelivered events are given up.
    pub shutdown_timeout: Duration,
    /// Stop start-up when a sink's health check fails (otherwise it is a warning).
    pub require_healthy: bool,
}

/// A configured sink.
#[derive(Debug)]
pub struct SinkEntry {
    /// The sink's ID.
    pub id: ComponentId,
    /// Its queue.
    pub buffer: BufferConfig,
    /// Its own configuration.
    pub config: Box<dyn SinkConfig>,
    /// The sink that receives the events this one fails for good (rejected, or out of retries).
    pub dead_letter: Option<ComponentId>,
}

/// A configured pipeline.
#[derive(Debug, Clone)]
pub struct PipelineEntry {
    /// The pipeline's name.
    pub name: String,
    /// Its sources.
    pub sources: Vec<ComponentId>,
    /// Its processors, in order.
    pub processors: Vec<ComponentId>,
    /// Its sinks.
    pub sinks: Vec<ComponentId>,
}

/// A component that failed to build.
#[derive(Debug)]
pub struct BuildError {
    /// The component.
    pub component: ComponentId,
    /// Why.
    pub error: BoxError,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.component, self.error)
    }
}

impl std::error::Error for BuildError {}

/// A built topology, ready to run.
pub struct Topology {
    sources: Vec<(ComponentId, RunningSource)>,
    drivers: JoinSet<DriverReport>,
    sink_stats: BTreeMap<ComponentId, Arc<SinkStats>>,
    shutdown: CancellationToken,
    abort: CancellationToken,
    shutdown_timeout: Duration,
}

/// What shutdown left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events not delivered because the deadline came, per sink (only sinks with some).
    pub undelivered: BTreeMap<String, usize>,
    /// Events left in disk buffers by the deadline, per sink (delivered after the next start).
    pub kept_on_disk: BTreeMap<String, usize>,
    /// How many sources had not stopped by the deadline and were aborted.
    pub sources_aborted: usize,
}

impl Topology {
    /// Builds every component used by a pipeline. Components no pipeline uses are not built.
    pub async fn build(config: TopologyConfig) -> Result<Self, BuildError> {
        let TopologyConfig {
            sources,
            processors,
            sinks,
            pipelines,
            shutdown_timeout,
            require_healthy,
        } = config;
        let in_pipeline = |id: &ComponentId| {
            pipelines.iter().any(|p| {
                p.sources.contains(id) || p.processors.contains(id) || p.sinks.contains(id)
            })
        };
        // A dead-letter sink is used when a sink that is used names it.
        let dead_letter_targets: Vec<ComponentId> = sinks
            .iter()
            .filter(|s| in_pipeline(&s.id))
            .filter_map(|s| s.dead_letter.clone())
            .collect();
        let used = |id: &ComponentId| in_pipeline(id) || dead_letter_targets.contains(id);
        let shutdown = CancellationToken::new();
        let abort = CancellationToken::new();
        let logs = LogEmitter::new(16_384);
        // Sinks fed by a `logs` source publish no delivery logs themselves.
        let log_sinks: Vec<ComponentId> = pipelines
            .iter()
            .filter(|p| p.sources.iter().any(|s| s.kind() == LogsSourceConfig::TYPE))
            .flat_map(|p| p.sinks.iter().cloned())
            .collect();

        // Sinks first: each is built, gets its queue, then its driver (which may need another
        // sink's queue for dead letters).
        let mut inputs: HashMap<ComponentId, SinkInput> = HashMap::new();
        let mut waiting_sinks: Vec<ComponentId> = Vec::new();
        let mut drivers = JoinSet::new();
        let mut sink_stats = BTreeMap::new();
        let mut built = Vec::new();
        for entry in sinks.into_iter().filter(|s| used(&s.id)) {
            match entry.config.healthcheck().await {
                Ok(()) => {}
                Err(error) if require_healthy => {
                    return Err(BuildError {
                        component: entry.id.clone(),
                        error: format!("health check failed: {error}").into(),
                    });
                }
                Err(error) => {
                    tracing::warn!(sink = %entry.id, %error, "health check failed; starting anyway (use --require-healthy to stop instead)");
                }
            }
            let cx = SinkContext {
                id: entry.id.clone(),
                logs: (!log_sinks.contains(&entry.id)).then(|| logs.clone()),
            };
            let parts = entry.config.build(cx).await.map_err(|error| BuildError {
                component: entry.id.clone(),
                error,
            })?;
            if parts.wait_for_delivery {
                waiting_sinks.push(entry.id.clone());
            }
            let (input, rx, stats) =
                queue::channel(entry.id.clone(), &entry.buffer).map_err(|error| BuildError {
                    component: entry.id.clone(),
                    error: error.into(),
                })?;
            sink_stats.insert(entry.id.clone(), stats.clone());
            inputs.insert(entry.id.clone(), input);
            let instruments = SinkInstruments::new(&entry.id, entry.buffer.max_events);
            built.push((entry.id, parts, rx, stats, entry.dead_letter, instruments));
        }
        for (id, parts, rx, stats, dead_letter, instruments) in built {
            let dead_letter = dead_letter.and_then(|d| inputs.get(&d).cloned());
            drivers.spawn(driver::run(
                id,
                rx,
                parts,
                stats,
                dead_letter,
                instruments,
                abort.clone(),
            ));
        }

        let mut layers: HashMap<ComponentId, ProcessorLayer> = HashMap::new();
        for (id, processor) in processors.into_iter().filter(|(id, _)| used(id)) {
            let layer = processor
                .build(ProcessorContext { id: id.clone() })
                .map_err(|error| BuildError {
                    component: id.clone(),
                    error,
                })?;
            layers.insert(id, layer);
        }

        let mut built_pipelines = Vec::with_capacity(pipelines.len());
        for p in &pipelines {
            let sink_inputs: Vec<SinkInput> = p
                .sinks
                .iter()
                .filter_map(|id| inputs.get(id).cloned())
                .collect();
            let mut service: PipelineService = BoxCloneSyncService::new(FanOut::new(sink_inputs));
            for id in p.processors.iter().rev() {
                if let Some(layer) = layers.get(id) {
                    service = layer.layer(service);
                }
            }
            let waits = p.sinks.iter().any(|s| waiting_sinks.contains(s));
            built_pipelines.push((
                p,
                Pipeline::new(&p.name, service, p.sinks.clone()).waiting_for_delivery(waits),
            ));
        }
        drop(inputs);

        let mut running_sources = Vec::new();
        for (id, source) in sources.into_iter().filter(|(id, _)| used(id)) {
            let feeds: Vec<Pipeline> = built_pipelines
                .iter()
                .filter(|(entry, _)| entry.sources.contains(&id))
                .map(|(_, pipeline)| pipeline.clone())
                .collect();
            let cx = SourceContext {
                id: id.clone(),
                output: Dispatcher::new(feeds),
                shutdown: shutdown.child_token(),
                logs: logs.clone(),
            };
            let running = source.build(cx).await.map_err(|error| BuildError {
                component: id.clone(),
                error,
            })?;
            running_sources.push((id, running));
        }
        Ok(Self {
            sources: running_sources,
            drivers,
            sink_stats,
            shutdown,
            abort,
            shutdown_timeout,
        })
    }

    /// Cancelling this token starts a graceful shutdown (as a signal would).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Each sink's counters.
    pub fn sink_stats(&self) -> &BTreeMap<ComponentId, Arc<SinkStats>> {
        &self.sink_stats
    }

    /// Runs until every source has finished on its own, or `signal` resolves; then shuts down
    /// gracefully within `shutdown_timeout`.
    pub async fn run(self, signal: impl Future<Output = ()>) -> ShutdownReport {
        let Self {
            sources,
            mut drivers,
            shutdown,
            abort,
            shutdown_timeout,
            ..
        } = self;
        let mut source_tasks = JoinSet::new();
        for (id, running) in sources {
            source_tasks.spawn(async move {
                if let Err(error) = running.await {
                    tracing::error!(source = %id, %error, "source stopped with an error");
                }
            });
        }
        let mut signalled = false;
        tokio::select! {
            () = join_all(&mut source_tasks) => {}
            () = signal => { signalled = true; }
        }
        if signalled {
            tracing::info!(
                timeout = ?shutdown_timeout,
                "shutting down: no longer accepting events, draining queues"
            );
        } else {
            tracing::info!("every source has finished: draining queues");
        }
        shutdown.cancel();
        let deadline = tokio::time::Instant::now() + shutdown_timeout;
        let mut report = ShutdownReport::default();

        if tokio::time::timeout_at(deadline, join_all(&mut source_tasks))
            .await
            .is_err()
        {
            report.sources_aborted = source_tasks.len();
            tracing::warn!(
                sources = source_tasks.len(),
                "sources did not stop by the deadline; aborting them"
            );
            source_tasks.shutdown().await;
        }

        let drain = async {
            let mut reports = Vec::new();
            while let Some(done) = drivers.join_next().await {
                if let Ok(r) = done {
                    reports.push(r);
                }
            }
            reports
        };
        tokio::pin!(drain);
        let reports = if let Ok(reports) = tokio::time::timeout_at(deadline, &mut drain).await {
            reports
        } else {
            abort.cancel();
            drain.await
        };
        for r in reports {
            if r.undelivered > 0 && r.kept_on_disk {
                tracing::warn!(
                    sink = %r.sink,
                    kept = r.undelivered,
                    "shutdown deadline reached: events kept in the disk buffer for the next start"
                );
                report
                    .kept_on_disk
                    .insert(r.sink.to_string(), r.undelivered);
            } else if r.undelivered > 0 {
                tracing::error!(
                    sink = %r.sink,
                    undelivered = r.undelivered,
                    "shutdown deadline reached: events not delivered"
                );
                report.undelivered.insert(r.sink.to_string(), r.undelivered);
            }
        }
        if report.undelivered.is_empty() {
            tracing::info!("shutdown complete: every accepted event has an outcome");
        }
        report
    }
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}
