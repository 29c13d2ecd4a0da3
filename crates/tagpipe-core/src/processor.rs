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
