//! Processors are `tower::Layer`s over the pipeline service.
//!
//! The service at the end of a pipeline is its fan-out; each processor wraps what follows it.
//! A processor's service either passes the (possibly changed) event on to its inner service, or
//! answers without calling it: [`Disposition::Skipped`] (dropped on purpose — consent, filter)
//! or [`Disposition::Failed`]. The pipeline then records that outcome for every sink of the
//! pipeline, so a source waiting for acknowledgements learns why.

use std::sync::Arc;

use tower::util::{BoxCloneSyncService, BoxCloneSyncServiceLayer};
use tower::{Layer, Service};

use crate::component::BoxError;
use crate::event::Event;

/// What a pipeline did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handed to the pipeline's sinks (their outcomes come from the sinks).
    Forwarded,
    /// Dropped on purpose by a processor, with the reason (`consent: ad_storage not granted`).
    Skipped(String),
    /// Refused by a processor, with the reason.
    Failed(String),
}

/// The service a processor wraps: the rest of the pipeline.
pub type PipelineService = BoxCloneSyncService<Event, Disposition, BoxError>;

/// A processor, as built from its configuration. The pipeline keeps copies of the service stack
/// it makes and reuses each for request after request (one at a time), dropping a copy whose
/// `poll_ready` or call failed: state a processor's service keeps lasts across requests.
pub type ProcessorLayer = BoxCloneSyncServiceLayer<PipelineService, Event, Disposition, BoxError>;

/// The future of a processor's service: either an answer the processor gave itself (skip or
/// fail) or the inner service's future.
#[derive(Debug)]
pub enum ProcessorFuture<F> {
    /// Answered without calling the inner service.
    Ready(Option<Result<Disposition, BoxError>>),
    /// Waiting for the rest of the pipeline.
    Inner(F),
}

impl<F> ProcessorFuture<F> {
    /// An answer without the inner service.
    pub fn ready(disposition: Disposition) -> Self {
        Self::Ready(Some(Ok(disposition)))
    }
}

impl<F> std::future::Future for ProcessorFuture<F>
where
    F: std::future::Future<Output = Result<Disposition, BoxError>> + Unpin,
{
    type Output = Result<Disposition, BoxError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(answer) => std::task::Poll::Ready(
                answer
                    .take()
                    .unwrap_or_else(|| Err("processor future polled after completion".into())),
            ),
            Self::Inner(future) => std::pin::Pin::new(future).poll(cx),
        }
    }
}

/// What most processors are: work on one event at a time — change it in place, or answer why it
/// is skipped. [`EventLayer`] turns one into the `tower::Layer` a pipeline stacks, so a
/// processor crate writes only this.
pub trait EventProcessor: Send + Sync + 'static {
    /// Changes `event` in place (copy on write through [`Event::data_mut`]), or answers why it
    /// is skipped (the outcome at every sink of the pipeline).
    fn process(&self, event: &mut Event) -> Result<(), String>;
}

/// A `tower::Layer` that runs an [`EventProcessor`] in front of the rest of the pipeline.
#[derive(Debug)]
pub struct EventLayer<P> {
    processor: Arc<P>,
}

impl<P> EventLayer<P> {
    /// The layer of `processor`.
    pub fn new(processor: P) -> Self {
        Self {
            processor: Arc::new(processor),
        }
    }
}

impl<P> Clone for EventLayer<P> {
    fn clone(&self) -> Self {
        Self {
            processor: self.processor.clone(),
        }
    }
}

impl<S, P> Layer<S> for EventLayer<P> {
    type Service = EventService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        EventService {
            inner,
            processor: self.processor.clone(),
        }
    }
}

/// The service of an [`EventLayer`]: the processor, then the inner service (unless skipped).
#[derive(Debug)]
pub struct EventService<S, P> {
    inner: S,
    processor: Arc<P>,
}

impl<S: Clone, P> Clone for EventService<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            processor: self.processor.clone(),
        }
    }
}

impl<S, P> Service<Event> for EventService<S, P>
where
    S: Service<Event, Response = Disposition, Error = BoxError>,
    S::Future: Unpin,
    P: EventProcessor,
{
    type Response = Disposition;
    type Error = BoxError;
    type Future = ProcessorFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut event: Event) -> Self::Future {
        match self.processor.process(&mut event) {
            Ok(()) => ProcessorFuture::Inner(self.inner.call(event)),
            Err(reason) => ProcessorFuture::ready(Disposition::Skipped(reason)),
        }
    }
}
