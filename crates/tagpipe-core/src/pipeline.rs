//! Pipelines and the dispatcher a source sends into.
//!
//! A [`Pipeline`] is its processors layered over a fan-out. A [`Dispatcher`] holds every pipeline
//! that lists one source; the source hands it events and, if it wants, awaits their
//! acknowledgements.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tower::{Service, ServiceExt};

use crate::ack::{DestinationOutcome, record_all};
use crate::event::Event;
use crate::id::ComponentId;
use crate::processor::{Disposition, PipelineService};

/// One named pipeline, ready to take events.
#[derive(Clone)]
pub struct Pipeline {
    name: Arc<str>,
    service: PipelineService,
    /// Copies of `service` that finished their last call, reused by the next: a copy of a
    /// service stack costs one allocation per layer (a GA4 hit is one event per request).
    idle: Arc<Mutex<Vec<PipelineService>>>,
    sinks: Arc<[ComponentId]>,
    wait_for_delivery: bool,
}

/// At most this many idle copies are kept per pipeline (about one per request in flight).
const MAX_IDLE_SERVICES: usize = 64;

impl Pipeline {
    /// A pipeline whose `service` (processors over the fan-out) ends in `sinks`.
    pub fn new(name: &str, service: PipelineService, sinks: Vec<ComponentId>) -> Self {
        Self {
            name: Arc::from(name),
            service,
            idle: Arc::default(),
            sinks: sinks.into(),
            wait_for_delivery: false,
        }
    }

    /// Marks that a sink of this pipeline wants sources to wait for its outcome.
    pub fn waiting_for_delivery(mut self, wait: bool) -> Self {
        self.wait_for_delivery = wait;
        self
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sinks at the end of this pipeline.
    pub fn sinks(&self) -> &[ComponentId] {
        &self.sinks
    }

    /// Runs events through the pipeline, one after another, recording a processor's skip or
    /// failure as the outcome at every sink of the pipeline.
    async fn process(&self, events: impl Iterator<Item = Event>) {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut service = reused.unwrap_or_else(|| self.service.clone());
        self.process_with(&mut service, events).await;
        // Only a copy whose calls all ended goes back (a cancelled request drops its copy).
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_SERVICES {
            idle.push(service);
        }
    }

    async fn process_with(
        &self,
        service: &mut PipelineService,
        events: impl Iterator<Item = Event>,
    ) {
        for event in events {
            // Keep the tracker alive until a skip or failure has been recorded.
            let ack = event.ack.clone();
            let result = match service.ready().await {
                Ok(ready) => ready.call(event).await,
                Err(e) => Err(e),
            };
            let outcome = match result {
                Ok(Disposition::Forwarded) => continue,
                Ok(Disposition::Skipped(reason)) => DestinationOutcome::skipped(reason),
                Ok(Disposition::Failed(reason)) => DestinationOutcome::failed(reason),
                Err(error) => {
                    tracing::warn!(pipeline = %self.name, %error, "processor error");
                    DestinationOutcome::failed(format!("pipeline {}: {error}", self.name))
                }
            };
            for sink in self.sinks.iter() {
                crate::telemetry::outcome(sink, &outcome);
            }
            record_all(ack.as_ref(), &self.sinks, &outcome);
        }
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

/// Where a source sends its events: every pipeline that lists the source.
///
/// Clones share one set of pipelines, which a configuration reload replaces as a whole
/// ([`Dispatcher::replace`]): a running source keeps its listener and connections and its next
/// request goes through the new pipelines, while requests in flight finish with the old ones.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    pipelines: Arc<RwLock<Pipelines>>,
}

impl Dispatcher {
    /// A dispatcher feeding these pipelines.
    pub fn new(pipelines: Vec<Pipeline>) -> Self {
        Self {
            pipelines: Arc::new(RwLock::new(Pipelines(pipelines.into()))),
        }
    }

    /// The pipelines as they are now. A request should take one snapshot and use it throughout,
    /// so that a reload in the middle does not mix old and new pipelines.
    pub fn current(&self) -> Pipelines {
        self.pipelines
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the pipelines for every later [`Dispatcher::current`] (a reload).
    pub fn replace(&self, pipelines: Vec<Pipeline>) {
        *self
            .pipelines
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Pipelines(pipelines.into());
    }

    /// Sends one event into every pipeline. Returns once each pipeline's queues took it
    /// (waiting only for `when_full: block` queues that are full).
    pub async fn send(&self, event: Event) {
        self.current().send_all(vec![event]).await;
    }

    /// Sends events, in order, into every pipeline.
    pub async fn send_all(&self, events: Vec<Event>) {
        self.current().send_all(events).await;
    }

    /// Every sink this source's events can reach, without duplicates.
    pub fn sinks(&self) -> Vec<ComponentId> {
        self.current().sinks()
    }

    /// Whether a sink reached by this source wants the source to answer its client only after
    /// delivery (`optimistic: false`).
    pub fn waits_for_delivery(&self) -> bool {
        self.current().waits_for_delivery()
    }
}

/// A snapshot of the pipelines one source feeds (see [`Dispatcher::current`]).
#[derive(Clone, Debug)]
pub struct Pipelines(Arc<[Pipeline]>);

impl Pipelines {
    /// Sends events, in order, into every pipeline.
    pub async fn send_all(&self, events: Vec<Event>) {
        let Some((last, rest)) = self.0.split_last() else {
            return;
        };
        for pipeline in rest {
            pipeline.process(events.iter().cloned()).await;
        }
        last.process(events.into_iter()).await;
    }

    /// Every sink these pipelines reach, without duplicates.
    pub fn sinks(&self) -> Vec<ComponentId> {
        let mut sinks: Vec<ComponentId> = self
            .0
            .iter()
            .flat_map(|p| p.sinks.iter().cloned())
            .collect();
        sinks.sort();
        sinks.dedup();
        sinks
    }

    /// Whether a sink reached by these pipelines wants the source to answer its client only
    /// after delivery (`optimistic: false`).
    pub fn waits_for_delivery(&self) -> bool {
        self.0.iter().any(|p| p.wait_for_delivery)
    }

    /// The pipelines.
    pub fn as_slice(&self) -> &[Pipeline] {
        &self.0
    }
}
