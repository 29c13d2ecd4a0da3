//! Processors are `tower::Layer`s over the pipeline service.
//!
//! The service at the end of a pipeline is its fan-out; each processor wraps what follows it.
//! A processor's service either passes the (possibly changed) event on to its inner service, or
//! answers without calling it: [`Disposition::Skipped`] (dropped on purpose — consent, filter)
//! or [`Disposition::Failed`]. The pipeline then records that outcome for every sink of the
//! pipeline, so a source waiting for acknowledgements learns why.

use tower::util::{BoxCloneSyncService, BoxCloneSyncServiceLayer};

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

/// A processor, as built from its configuration.
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
