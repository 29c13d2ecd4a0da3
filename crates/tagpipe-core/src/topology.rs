//! Building and running the whole graph: sinks (each with its queue and driver), pipelines
//! (processors over a fan-out), and the sources feeding them.
//!
//! A running topology can be changed in place ([`Topology::run_reloading`]): given a new
//! configuration it rebuilds only the components whose configuration changed, keeps the others
//! running, and swaps the pipelines under the sources that stay, so their listeners and
//! connections are not touched. A rebuilt sink takes over its predecessor's queue (memory or
//! disk), including the events the old driver had taken but not sent, while the old service
//! finishes the calls it has in flight: nothing accepted is lost or sent twice.
//!
//! Shutdown follows one deadline (`shutdown_timeout`): sources are asked to stop and finish what
//! they hold, which closes the sinks' queues; drivers drain them; whatever is still undelivered
//! when the deadline comes is failed, counted per sink and logged — never dropped silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower::Layer;

use crate::component::SourceComponent;
use crate::component::{
    BoxError, ProcessorConfig, ProcessorContext, RunningSource, SinkCalls, SinkConfig, SinkContext,
    SinkParts, SourceConfig, SourceContext,
};
use crate::driver::{self, DriverControl, DriverReport, Handover, HandoverRequest};
use crate::fanout::FanOut;
use crate::id::ComponentId;
use crate::logs::{LogEmitter, LogsSourceConfig};
use crate::pipeline::{Dispatcher, Pipeline};
use crate::processor::{PipelineService, ProcessorLayer};
use crate::queue::{self, BufferConfig, BufferKind, SinkInput, SinkStats};
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
    /// A fingerprint of each component's configuration (after variable expansion), which a
    /// reload compares to find what changed. A component without one counts as changed.
    pub fingerprints: HashMap<ComponentId, u64>,
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
    sources: BTreeMap<ComponentId, SourceSlot>,
    processors: HashMap<ComponentId, ProcessorSlot>,
    sinks: BTreeMap<ComponentId, SinkSlot>,
    /// Every driver ever started, including those of replaced or removed sinks that are still
    /// draining: shutdown waits for all of them.
    drivers: JoinSet<DriverReport>,
    sink_stats: BTreeMap<ComponentId, Arc<SinkStats>>,
    logs: LogEmitter,
    shutdown: CancellationToken,
    abort: CancellationToken,
    shutdown_timeout: Duration,
    require_healthy: bool,
    /// Serials of source tasks that finished on their own.
    finished_tx: mpsc::UnboundedSender<u64>,
    finished_rx: mpsc::UnboundedReceiver<u64>,
    next_serial: u64,
    /// Whether `run` has started: sources built from then on start at once.
    running: bool,
}

/// A source, its configuration (kept to restart it if its replacement fails to start) and the
/// dispatcher whose pipelines a reload swaps.
struct SourceSlot {
    fingerprint: Option<u64>,
    config: Box<dyn SourceConfig>,
    output: Dispatcher,
    /// Where the source sends events it gives up on, when it names a dead-letter sink; rewired
    /// like `output` when a reload gives that sink a new queue.
    dead_letter: Option<Dispatcher>,
    stop: CancellationToken,
    /// Built, waiting for `run`.
    pending: Option<RunningSource>,
    /// Running as a task; the serial names it in finish notices.
    task: Option<(u64, JoinHandle<()>)>,
}

struct ProcessorSlot {
    fingerprint: Option<u64>,
    layer: ProcessorLayer,
}

/// A running sink: its queue's input and how to ask its driver for the queue.
struct SinkSlot {
    fingerprint: Option<u64>,
    buffer: BufferConfig,
    dead_letter: Option<ComponentId>,
    /// Whether it publishes delivery logs (it does unless a `logs` source feeds it).
    publishes_logs: bool,
    /// Whether sources should wait for its outcome (`optimistic: false`).
    waits_for_delivery: bool,
    input: SinkInput,
    handover: HandoverRequest,
}

/// What happens to one sink in a reload.
enum SinkChange {
    /// Unchanged: keeps running.
    Keep,
    /// New: gets a new queue.
    Add,
    /// Changed: a new service takes over the running queue.
    Replace,
    /// Changed, including its buffer: a new queue; the old one drains on its own.
    Requeue,
}

/// What a reload did, by component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Components started that did not run before.
    pub added: Vec<String>,
    /// Components rebuilt because their configuration changed.
    pub rebuilt: Vec<String>,
    /// Components stopped because no pipeline uses them any more.
    pub removed: Vec<String>,
    /// Components left running untouched.
    pub unchanged: Vec<String>,
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
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let mut topology = Self {
            sources: BTreeMap::new(),
            processors: HashMap::new(),
            sinks: BTreeMap::new(),
            drivers: JoinSet::new(),
            sink_stats: BTreeMap::new(),
            logs: LogEmitter::new(16_384),
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
            shutdown_timeout: config.shutdown_timeout,
            require_healthy: config.require_healthy,
            finished_tx,
            finished_rx,
            next_serial: 0,
            running: false,
        };
        topology.apply(config).await?;
        Ok(topology)
    }

    /// Cancelling this token starts a graceful shutdown (as a signal would).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Each sink's counters.
    pub fn sink_stats(&self) -> &BTreeMap<ComponentId, Arc<SinkStats>> {
        &self.sink_stats
    }

    /// Moves the running topology to `config`, rebuilding only what changed (see the module
    /// docs). Everything that can fail — health checks with `require_healthy`, building sinks
    /// and processors, opening new queues — happens before anything running is touched: on
    /// such an error the old topology keeps running unchanged. A changed source is stopped
    /// before its replacement starts (it may need the same port); if the replacement cannot
    /// start, the old configuration is started again.
    #[allow(clippy::too_many_lines)]
    pub async fn apply(&mut self, config: TopologyConfig) -> Result<ReloadReport, BuildError> {
        let TopologyConfig {
            sources,
            processors,
            sinks,
            pipelines,
            shutdown_timeout,
            require_healthy,
            fingerprints,
        } = config;
        let fingerprint = |id: &ComponentId| fingerprints.get(id).copied();
        let same = |old: Option<u64>, id: &ComponentId| old.is_some() && old == fingerprint(id);
        let in_pipeline = |id: &ComponentId| {
            pipelines.iter().any(|p| {
                p.sources.contains(id) || p.processors.contains(id) || p.sinks.contains(id)
            })
        };
        // A dead-letter sink is used when a sink or source that is used names it.
        let dead_letter_targets: Vec<ComponentId> = sinks
            .iter()
            .filter(|s| in_pipeline(&s.id))
            .filter_map(|s| s.dead_letter.clone())
            .chain(
                sources
                    .iter()
                    .filter(|(id, _)| in_pipeline(id))
                    .filter_map(|(_, c)| dead_letter_id(c.as_ref())),
            )
            .collect();
        let used = |id: &ComponentId| in_pipeline(id) || dead_letter_targets.contains(id);
        // Sinks fed by a `logs` source publish no delivery logs themselves.
        let log_sinks: Vec<ComponentId> = pipelines
            .iter()
            .filter(|p| p.sources.iter().any(|s| s.kind() == LogsSourceConfig::TYPE))
            .flat_map(|p| p.sinks.iter().cloned())
            .collect();
        let mut report = ReloadReport::default();

        // 1. Decide what happens to each sink.
        let sinks: Vec<SinkEntry> = sinks.into_iter().filter(|s| used(&s.id)).collect();
        let mut changes: Vec<SinkChange> = Vec::with_capacity(sinks.len());
        for entry in &sinks {
            let publishes_logs = !log_sinks.contains(&entry.id);
            let change = match self.sinks.get(&entry.id) {
                None => SinkChange::Add,
                Some(old) if old.buffer != entry.buffer => {
                    if let Some(path) = same_disk_buffer(&old.buffer, &entry.buffer) {
                        return Err(BuildError {
                            component: entry.id.clone(),
                            error: format!(
                                "the settings of its disk buffer `{}` cannot change while it is open: restart tagpipe to apply them",
                                path.display()
                            )
                            .into(),
                        });
                    }
                    SinkChange::Requeue
                }
                Some(old)
                    if same(old.fingerprint, &entry.id)
                        && old.dead_letter == entry.dead_letter
                        && old.publishes_logs == publishes_logs =>
                {
                    SinkChange::Keep
                }
                Some(_) => SinkChange::Replace,
            };
            changes.push(change);
        }

        // 2. Build what changed: processors, then sinks (health check, service, new queues).
        let mut new_layers: HashMap<ComponentId, ProcessorSlot> = HashMap::new();
        for (id, processor) in processors.into_iter().filter(|(id, _)| used(id)) {
            if let Some(old) = self.processors.get(&id)
                && same(old.fingerprint, &id)
            {
                continue;
            }
            let layer = processor
                .build(ProcessorContext { id: id.clone() })
                .map_err(|error| BuildError {
                    component: id.clone(),
                    error,
                })?;
            new_layers.insert(
                id.clone(),
                ProcessorSlot {
                    fingerprint: fingerprint(&id),
                    layer,
                },
            );
        }
        // Sinks are built in rounds: a kept sink whose dead-letter sink gets a new queue (added,
        // requeued — also for the form of what it prepares, known once built) must send to that
        // queue, so it is rebuilt in the next round.
        let mut built: Vec<BuiltSink> = Vec::new();
        let mut pending: Vec<(SinkEntry, SinkChange)> = sinks.into_iter().zip(changes).collect();
        loop {
            let (round, kept): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|(_, change)| !matches!(change, SinkChange::Keep));
            pending = kept;
            if round.is_empty() {
                break;
            }
            for (entry, change) in round {
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
                let publishes_logs = !log_sinks.contains(&entry.id);
                let cx = SinkContext {
                    id: entry.id.clone(),
                    logs: publishes_logs.then(|| self.logs.clone()),
                };
                let parts = entry.config.build(cx).await.map_err(|error| BuildError {
                    component: entry.id.clone(),
                    error,
                })?;
                // A queue holding what the old sink prepared goes only to a sink that takes the
                // same form (its preparer is of the same type); otherwise the old service
                // delivers that queue and the new sink gets a new one.
                let new_form = match &parts.service {
                    SinkCalls::Prepared(prepared) => Some(prepared.prepare.form()),
                    SinkCalls::Events(_) => None,
                };
                let change = if matches!(change, SinkChange::Replace)
                    && self
                        .sinks
                        .get(&entry.id)
                        .and_then(|old| old.input.prepared_form())
                        .is_some_and(|old_form| Some(old_form) != new_form)
                {
                    SinkChange::Requeue
                } else {
                    change
                };
                built.push(BuiltSink {
                    fingerprint: fingerprint(&entry.id),
                    publishes_logs,
                    entry,
                    change,
                    parts,
                    queue: None,
                });
            }
            let new_queues: Vec<&ComponentId> = built
                .iter()
                .filter(|s| matches!(s.change, SinkChange::Add | SinkChange::Requeue))
                .map(|s| &s.entry.id)
                .collect();
            for (entry, change) in &mut pending {
                if entry
                    .dead_letter
                    .as_ref()
                    .is_some_and(|d| new_queues.contains(&d))
                {
                    *change = SinkChange::Replace;
                }
            }
        }
        for sink in &mut built {
            if matches!(sink.change, SinkChange::Add | SinkChange::Requeue) {
                let (input, rx, stats) = queue::channel(sink.entry.id.clone(), &sink.entry.buffer)
                    .map_err(|error| BuildError {
                        component: sink.entry.id.clone(),
                        error: error.into(),
                    })?;
                sink.queue = Some((input, Handover::new(rx), stats));
            }
        }

        // 3. Nothing can fail any more: switch over. Replaced sinks hand their queues over.
        let mut starting = Vec::new();
        for mut sink in built {
            let id = sink.entry.id.clone();
            if matches!(sink.change, SinkChange::Add) {
                report.added.push(id.to_string());
            } else {
                report.rebuilt.push(id.to_string());
            }
            let (mut input, start, stats) = if let Some(queue) = sink.queue.take() {
                queue
            } else {
                let old = self.sinks.remove(&id).map(|old| (old.input, old.handover));
                take_queue(&id, old, &sink.entry.buffer)
                    .await
                    .map_err(|error| BuildError {
                        component: id.clone(),
                        error: error.into(),
                    })?
            };
            // Events are prepared as they are queued unless dead letters may need them (the
            // driver makes the same choice).
            input.prepare_with(match &sink.parts.service {
                SinkCalls::Prepared(prepared) if sink.entry.dead_letter.is_none() => {
                    Some(prepared.prepare.clone())
                }
                _ => None,
            });
            self.sink_stats.insert(id.clone(), stats.clone());
            let (control, handover) = DriverControl::new(self.abort.clone());
            self.sinks.insert(
                id.clone(),
                SinkSlot {
                    fingerprint: sink.fingerprint,
                    buffer: sink.entry.buffer.clone(),
                    dead_letter: sink.entry.dead_letter.clone(),
                    publishes_logs: sink.publishes_logs,
                    waits_for_delivery: sink.parts.wait_for_delivery,
                    input,
                    handover,
                },
            );
            starting.push((id, start, sink.parts, stats, sink.entry, control));
        }
        // Sinks no pipeline uses any more: their queues close once the old pipelines are gone.
        let removed: Vec<ComponentId> = self.sinks.keys().filter(|id| !used(id)).cloned().collect();
        for id in removed {
            self.sinks.remove(&id);
            self.sink_stats.remove(&id);
            report.removed.push(id.to_string());
        }
        for (id, start, parts, stats, entry, control) in starting {
            let dead_letter = entry
                .dead_letter
                .as_ref()
                .and_then(|d| self.sinks.get(d))
                .map(|slot| slot.input.clone());
            let instruments = SinkInstruments::new(&id, entry.buffer.max_events);
            self.drivers.spawn(driver::run(
                id,
                start,
                parts,
                stats,
                dead_letter,
                instruments,
                control,
            ));
        }
        for id in self.sinks.keys() {
            let id = id.to_string();
            if !report.added.contains(&id) && !report.rebuilt.contains(&id) {
                report.unchanged.push(id);
            }
        }
        // Processors.
        self.processors.retain(|id, _| used(id));
        for (id, slot) in new_layers {
            if self.processors.insert(id.clone(), slot).is_some() {
                report.rebuilt.push(id.to_string());
            } else {
                report.added.push(id.to_string());
            }
        }

        // Pipelines: always reassembled (cheap), from the kept and new components.
        let mut built_pipelines = Vec::with_capacity(pipelines.len());
        for p in &pipelines {
            let sink_inputs: Vec<SinkInput> = p
                .sinks
                .iter()
                .filter_map(|id| self.sinks.get(id).map(|slot| slot.input.clone()))
                .collect();
            let mut service = PipelineService::new(FanOut::new(sink_inputs));
            for id in p.processors.iter().rev() {
                if let Some(slot) = self.processors.get(id) {
                    service = slot.layer.layer(service);
                }
            }
            let waits = p.sinks.iter().any(|s| {
                self.sinks
                    .get(s)
                    .is_some_and(|slot| slot.waits_for_delivery)
            });
            built_pipelines.push((
                p,
                Pipeline::new(&p.name, service, p.sinks.clone()).waiting_for_delivery(waits),
            ));
        }
        let feeds = |id: &ComponentId| -> Vec<Pipeline> {
            built_pipelines
                .iter()
                .filter(|(entry, _)| entry.sources.contains(id))
                .map(|(_, pipeline)| pipeline.clone())
                .collect()
        };

        // 4. Sources: unchanged ones get the new pipelines in place; removed and changed ones
        //    stop (finishing what they hold); new and changed ones start.
        self.shutdown_timeout = shutdown_timeout;
        self.require_healthy = require_healthy;
        let new_ids: BTreeSet<ComponentId> = sources
            .iter()
            .filter(|(id, _)| used(id))
            .map(|(id, _)| id.clone())
            .collect();
        let gone: Vec<ComponentId> = self
            .sources
            .keys()
            .filter(|id| !new_ids.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(slot) = self.sources.remove(&id) {
                self.stop_source(&id, slot).await;
                report.removed.push(id.to_string());
            }
        }
        for (id, source) in sources.into_iter().filter(|(id, _)| used(id)) {
            let output = feeds(&id);
            if let Some(slot) = self.sources.get(&id)
                && same(slot.fingerprint, &id)
            {
                slot.output.replace(output);
                if let Some(dispatcher) = &slot.dead_letter
                    && let Some(route) = dead_letter_id(slot.config.as_ref())
                        .and_then(|target| self.dead_letter_route(&target))
                {
                    dispatcher.replace(route);
                }
                report.unchanged.push(id.to_string());
                continue;
            }
            let previous = self.sources.remove(&id);
            let dispatcher = Dispatcher::new(output);
            let previous_config = if let Some(slot) = previous {
                report.rebuilt.push(id.to_string());
                Some(self.stop_source(&id, slot).await)
            } else {
                report.added.push(id.to_string());
                None
            };
            match self
                .start_source(&id, source, fingerprint(&id), dispatcher.clone())
                .await
            {
                Ok(()) => {}
                Err(error) if !self.running => {
                    return Err(BuildError {
                        component: id.clone(),
                        error,
                    });
                }
                Err(error) => {
                    tracing::error!(source = %id, %error, "the changed source cannot start; starting its previous configuration again");
                    if let Some(config) = previous_config
                        && let Err(error) = self.start_source(&id, config, None, dispatcher).await
                    {
                        tracing::error!(source = %id, %error, "the previous configuration cannot start either: the source is stopped");
                    }
                }
            }
        }
        for list in [
            &mut report.added,
            &mut report.rebuilt,
            &mut report.removed,
            &mut report.unchanged,
        ] {
            list.sort();
            list.dedup();
        }
        Ok(report)
    }

    /// Builds a source and, once the topology runs, starts it.
    async fn start_source(
        &mut self,
        id: &ComponentId,
        config: Box<dyn SourceConfig>,
        fingerprint: Option<u64>,
        output: Dispatcher,
    ) -> Result<(), BoxError> {
        let stop = self.shutdown.child_token();
        let dead_letter = dead_letter_id(config.as_ref())
            .and_then(|target| self.dead_letter_route(&target))
            .map(Dispatcher::new);
        let cx = SourceContext {
            id: id.clone(),
            output: output.clone(),
            shutdown: stop.clone(),
            logs: self.logs.clone(),
            dead_letter: dead_letter.clone(),
        };
        let running = config.build(cx).await?;
        let mut slot = SourceSlot {
            fingerprint,
            config,
            output,
            dead_letter,
            stop,
            pending: Some(running),
            task: None,
        };
        if self.running {
            self.spawn_source(id, &mut slot);
        }
        self.sources.insert(id.clone(), slot);
        Ok(())
    }

    /// A source's dead-letter route: one pipeline into sink `target`'s current queue.
    fn dead_letter_route(&self, target: &ComponentId) -> Option<Vec<Pipeline>> {
        let input = self.sinks.get(target)?.input.clone();
        let service = PipelineService::new(FanOut::new(vec![input]));
        Some(vec![Pipeline::new(
            "dead_letter",
            service,
            vec![target.clone()],
        )])
    }

    fn spawn_source(&mut self, id: &ComponentId, slot: &mut SourceSlot) {
        let Some(running) = slot.pending.take() else {
            return;
        };
        self.next_serial += 1;
        let serial = self.next_serial;
        let finished = self.finished_tx.clone();
        let id = id.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = running.await {
                tracing::error!(source = %id, %error, "source stopped with an error");
            }
            let _ = finished.send(serial);
        });
        slot.task = Some((serial, task));
    }

    /// Asks a source to stop and waits for it (up to the shutdown timeout, then aborts it).
    /// Returns its configuration.
    async fn stop_source(&mut self, id: &ComponentId, slot: SourceSlot) -> Box<dyn SourceConfig> {
        slot.stop.cancel();
        if let Some((_, task)) = slot.task {
            let abort = task.abort_handle();
            let timeout = self.shutdown_timeout;
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::warn!(source = %id, "source did not stop within the shutdown timeout; aborting it");
                abort.abort();
            }
        }
        slot.config
    }

    /// Runs until every source has finished on its own, or `signal` resolves; then shuts down
    /// gracefully within `shutdown_timeout`.
    pub async fn run(self, signal: impl Future<Output = ()>) -> ShutdownReport {
        let (_keep, reloads) = mpsc::channel(1);
        self.run_reloading(signal, reloads).await
    }

    /// Like [`Topology::run`], and applies each configuration received on `reloads` (see
    /// [`Topology::apply`]); a reload that fails is logged and the running topology kept.
    pub async fn run_reloading(
        mut self,
        signal: impl Future<Output = ()>,
        mut reloads: mpsc::Receiver<TopologyConfig>,
    ) -> ShutdownReport {
        self.running = true;
        let ids: Vec<ComponentId> = self.sources.keys().cloned().collect();
        for id in ids {
            if let Some(mut slot) = self.sources.remove(&id) {
                self.spawn_source(&id, &mut slot);
                self.sources.insert(id, slot);
            }
        }
        tokio::pin!(signal);
        let mut signalled = false;
        while !self.sources.is_empty() {
            tokio::select! {
                () = &mut signal => { signalled = true; break; }
                Some(serial) = self.finished_rx.recv() => {
                    self.sources.retain(|_, slot| {
                        !matches!(slot.task, Some((s, _)) if s == serial)
                    });
                }
                Some(config) = reloads.recv() => {
                    match self.apply(config).await {
                        Ok(report) => tracing::info!(
                            added = ?report.added,
                            rebuilt = ?report.rebuilt,
                            removed = ?report.removed,
                            unchanged = report.unchanged.len(),
                            "configuration reloaded"
                        ),
                        Err(error) => tracing::error!(%error, "reload failed: the running pipelines are unchanged"),
                    }
                }
            }
        }
        self.shut_down(signalled).await
    }

    async fn shut_down(mut self, signalled: bool) -> ShutdownReport {
        let shutdown_timeout = self.shutdown_timeout;
        if signalled {
            tracing::info!(
                timeout = ?shutdown_timeout,
                "shutting down: no longer accepting events, draining queues"
            );
        } else {
            tracing::info!("every source has finished: draining queues");
        }
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + shutdown_timeout;
        let mut report = ShutdownReport::default();

        let mut source_tasks = JoinSet::new();
        for (_, slot) in std::mem::take(&mut self.sources) {
            if let Some((_, task)) = slot.task {
                source_tasks.spawn(async move {
                    let _ = task.await;
                });
            }
        }
        // Let go of everything the topology itself holds: the running sources hold what they
        // still need, so each queue closes once its last source has finished, and the
        // delivery-log stream once its last sink has (a `logs` source runs until then).
        self.sinks.clear();
        self.processors.clear();
        self.logs = LogEmitter::new(1);
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

        let mut drivers = std::mem::take(&mut self.drivers);
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
            self.abort.cancel();
            drain.await
        };
        // A sink replaced by a reload may report twice (old and new driver): add them up.
        for r in reports {
            if r.undelivered > 0 && r.kept_on_disk {
                tracing::warn!(
                    sink = %r.sink,
                    kept = r.undelivered,
                    "shutdown deadline reached: events kept in the disk buffer for the next start"
                );
                *report.kept_on_disk.entry(r.sink.to_string()).or_default() += r.undelivered;
            } else if r.undelivered > 0 {
                tracing::error!(
                    sink = %r.sink,
                    undelivered = r.undelivered,
                    "shutdown deadline reached: events not delivered"
                );
                *report.undelivered.entry(r.sink.to_string()).or_default() += r.undelivered;
            }
        }
        if report.undelivered.is_empty() {
            tracing::info!("shutdown complete: every accepted event has an outcome");
        }
        report
    }
}

/// A sink built by a reload, before it starts.
struct BuiltSink {
    entry: SinkEntry,
    change: SinkChange,
    fingerprint: Option<u64>,
    publishes_logs: bool,
    parts: SinkParts,
    queue: Option<(SinkInput, Handover, Arc<SinkStats>)>,
}

/// The path of a disk buffer used by both configurations.
fn same_disk_buffer<'a>(old: &'a BufferConfig, new: &BufferConfig) -> Option<&'a std::path::Path> {
    match (old.kind, &old.path, new.kind, &new.path) {
        (BufferKind::Disk, Some(a), BufferKind::Disk, Some(b)) if a == b => Some(a),
        _ => None,
    }
}

/// Takes a running sink's queue (with its input and counters) from its driver. Should the
/// driver be gone — it never stops while its input is held, so only after a panic — a new
/// queue keeps the sink going.
async fn take_queue(
    id: &ComponentId,
    running: Option<(SinkInput, HandoverRequest)>,
    buffer: &BufferConfig,
) -> Result<(SinkInput, Handover, Arc<SinkStats>), String> {
    if let Some((input, request)) = running {
        let (reply, handed) = oneshot::channel();
        if request.send(reply).is_ok()
            && let Ok(handover) = handed.await
        {
            let stats = input.stats.clone();
            return Ok((input, handover, stats));
        }
        tracing::error!(sink = %id, "the sink's driver has stopped; starting it with a new queue");
    }
    let (input, rx, stats) = queue::channel(id.clone(), buffer)?;
    Ok((input, Handover::new(rx), stats))
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// The sink a source names as its `dead_letter` (the loader has checked that it exists).
fn dead_letter_id(config: &dyn SourceConfig) -> Option<ComponentId> {
    config
        .dead_letter()
        .and_then(|target| ComponentId::parse(target).ok())
}
