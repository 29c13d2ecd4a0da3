//! # tagpipe-core
//!
//! The event model and the runtime every tagpipe component plugs into.
//!
//! - [`event`]: sGTM-style *event data* (a JSON object) plus the [`RequestContext`] it arrived
//!   with, shared between destinations through `Arc` and copied only when a pipeline changes it.
//!   [`event_data`] is the sorted-vector object that holds an event's fields.
//! - [`ack`]: per-event acknowledgements — the outcome (`sent`, `skipped`, `failed`) at every
//!   destination, collected by a ref-counted tracker that reports when the last copy is done.
//! - [`component`]: the traits a source, processor or sink crate implements (pure `validate`,
//!   async `build`), and the contexts they are built with.
//! - [`processor`]: processors are `tower::Layer`s over the pipeline service.
//! - [`fanout`], [`queue`], [`driver`]: a pipeline ends in a fan-out service that pushes each event
//!   into every sink's own bounded queue; one driver task per sink batches, calls the sink's
//!   `tower::Service` with bounded concurrency and completes acknowledgements.
//! - [`topology`]: builds the whole graph from already-parsed configuration and runs it until
//!   shutdown, draining queues within a deadline.

pub mod ack;
pub mod batch;
pub mod component;
pub mod disk;
pub mod driver;
pub mod duration;
pub mod event;
pub mod event_data;
pub mod fanout;
pub mod fixed_histogram;
pub mod id;
pub mod logs;
pub mod path;
pub mod pipeline;
pub mod processor;
pub mod queue;
pub mod random;
pub mod retry;
pub mod secret;
pub mod series;
pub mod striped;
pub mod telemetry;
pub mod time;
pub mod topology;

pub use ack::{AckReceiver, DestinationOutcome, EventOutcomes, Outcome};
pub use component::{
    BoxError, BoxFuture, Encoded, Prepare, Prepared, PreparedService, PreparedSink,
    ProcessorComponent, ProcessorConfig, ProcessorContext, SinkCalls, SinkComponent, SinkConfig,
    SinkContext, SinkParts, SinkService, SourceComponent, SourceConfig, SourceContext,
    ValidationError,
};
pub use event::{Event, EventData, RequestContext, ResponseActions, SetCookie};
pub use id::ComponentId;
pub use pipeline::{Dispatcher, Pipelines};
pub use processor::{
    Disposition, EventLayer, EventProcessor, EventService, PipelineFuture, PipelineService,
    ProcessorFuture, ProcessorLayer, StageService,
};
pub use secret::Secret;
