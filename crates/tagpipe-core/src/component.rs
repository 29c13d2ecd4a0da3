//! What a component crate implements.
//!
//! Each source, processor and sink crate provides a config struct (serde, `deny_unknown_fields`,
//! every field documented) that implements one of [`SourceConfig`], [`ProcessorConfig`] or
//! [`SinkConfig`] — a pure `validate` (no I/O) and a `build` — and the matching
//! `*Component` trait that names its type for the registry (`const TYPE`).

use std::any::Any;
use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tower::util::BoxService;

use crate::ack::DestinationOutcome;
use crate::batch::BatchSettings;
use crate::event::Event;
use crate::id::ComponentId;
use crate::pipeline::Dispatcher;
use crate::processor::ProcessorLayer;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One problem found by a component's `validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The offending field as a dotted path inside the component (`batch.max_events`), or empty
    /// for the component as a whole. The config loader turns it into a line and column.
    pub field: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl ValidationError {
    /// A problem with `field` (a dotted path, or `""` for the whole component).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

/// A running source: completes when the source has stopped (input exhausted, or shutdown asked
/// for through [`SourceContext::shutdown`]).
pub type RunningSource = BoxFuture<'static, Result<(), BoxError>>;

/// What a source is built with.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The source's ID.
    pub id: ComponentId,
    /// Where the source sends its events: every pipeline that lists it.
    pub output: Dispatcher,
    /// Cancelled when tagpipe shuts down: stop accepting, finish what is in hand, return.
    pub shutdown: CancellationToken,
    /// The delivery-log stream (read by the `logs` source).
    pub logs: crate::logs::LogEmitter,
    /// The sink named by the source's [`SourceConfig::dead_letter`], for what the source gives
    /// up on (e.g. a message redelivered too often).
    pub dead_letter: Option<Dispatcher>,
}

/// A source's configuration.
pub trait SourceConfig: Debug + Send + Sync + 'static {
    /// Checks the configuration without any I/O. Empty when valid.
    fn validate(&self) -> Vec<ValidationError> {
        Vec::new()
    }

    /// Builds the source (binding sockets, opening files); the returned future runs it.
    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>>;

    /// The sink this source sends what it gives up on (see [`SourceContext::dead_letter`]).
    /// The configuration loader checks it exists.
    fn dead_letter(&self) -> Option<&str> {
        None
    }
}

/// Registers a source type: `registry.source::<MySourceConfig>()`.
pub trait SourceComponent: SourceConfig + DeserializeOwned {
    /// The type name used in component IDs (`file`, `http`).
    const TYPE: &'static str;
}

/// What a processor is built with.
#[derive(Debug, Clone)]
pub struct ProcessorContext {
    /// The processor's ID.
    pub id: ComponentId,
}

/// A processor's configuration. A processor is a `tower::Layer` over the pipeline service.
pub trait ProcessorConfig: Debug + Send + Sync + 'static {
    /// Checks the configuration without any I/O. Empty when valid.
    fn validate(&self) -> Vec<ValidationError> {
        Vec::new()
    }

    /// Builds the layer. Called once; the layer is applied in every pipeline that lists it.
    fn build(&self, cx: ProcessorContext) -> Result<ProcessorLayer, BoxError>;
}

/// Registers a processor type: `registry.processor::<MyProcessorConfig>()`.
pub trait ProcessorComponent: ProcessorConfig + DeserializeOwned {
    /// The type name used in component IDs (`consent`, `mapping`).
    const TYPE: &'static str;
}

/// A sink's service: takes a batch of events, answers one outcome per event, in order.
/// An `Err` fails the whole batch with the error's message.
pub type SinkService = BoxService<Vec<Event>, Vec<DestinationOutcome>, BoxError>;

/// What a sink's [`Prepare`] made of one event: opaque to the runtime, taken back by the sink's
/// [`PreparedService`] with [`Prepared::downcast`].
pub struct Prepared(Box<dyn Any + Send>);

impl Prepared {
    /// Wraps a sink's own per-event form.
    pub fn new<T: Any + Send>(value: T) -> Self {
        Self(Box::new(value))
    }

    /// The sink's form back, or `self` when it is another type.
    pub fn downcast<T: Any>(self) -> Result<T, Self> {
        self.0.downcast::<T>().map(|b| *b).map_err(Self)
    }

    /// The sink's form, borrowed, when it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }

    /// The sink's form, borrowed mutably, when it is a `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.0.downcast_mut::<T>()
    }
}

impl Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sink-specific content (it may hold personal data): never printed.
        f.write_str("Prepared(..)")
    }
}

/// A sink's per-event work — turning an event into what its requests carry — done as the event
/// enters the sink's memory queue, on the thread that accepted the event, rather than later in
/// the sink's driver.
///
/// Why: an event is a few dozen small allocations made where its request was parsed. Built into
/// the sink's form there, it is read while still in that core's cache and freed by the thread
/// that allocated it; the queue then carries one compact item per event instead of the event
/// (less memory while waiting, and no reads and frees across cores, which cost more than the
/// building itself). The OpenTelemetry Collector's exporters queue requests, not telemetry, for
/// the same reason.
///
/// The runtime uses it for a sink's memory queue when the sink has no dead-letter sink (dead
/// letters need the event itself); otherwise events are queued and the driver prepares them
/// just before each call. Events already queued when a reload changes the sink are sent as
/// prepared by the configuration that accepted them; a reload that replaces the sink with one
/// whose preparer is of another type (or that does not prepare) gives it a new queue, and the
/// old service delivers the old one.
///
/// A pipeline that fans out to several sinks whose preparers make the same items (two Spotify
/// ad accounts fed the same events: [`same_items_as`](Prepare::same_items_as)) prepares each
/// event once and gives the other sinks copies ([`copy`](Prepare::copy)) — the serialisation
/// is not repeated per destination.
pub trait Prepare: Any + Send + Sync {
    /// This sink's form of `event`. Must not block: it runs inside the request that carried the
    /// event.
    fn prepare(&self, event: &Event) -> Prepared;

    /// Whether `other` makes exactly the items this preparer makes, of every event: then a
    /// fan-out to both prepares each event once (see [`copy`](Prepare::copy)). Default: no.
    fn same_items_as(&self, other: &dyn Prepare) -> bool {
        let _ = other;
        false
    }

    /// A copy of `prepared` — an item this preparer or one [`same_items_as`](Prepare::same_items_as)
    /// it made — for the next sink of the group; `None` when the item is not to be shared (e.g.
    /// an outcome already reported in the preparing sink's name): the sink that prepared it
    /// keeps it, and the next sink prepares the event itself. An item once copied must be
    /// copyable again (the group's last sink takes it). The item may be changed into a form
    /// whose data its copies share rather than copy. Default: `None`.
    fn copy(&self, prepared: &mut Prepared) -> Option<Prepared> {
        let _ = prepared;
        None
    }
}

impl dyn Prepare {
    /// Which form this preparer makes (its type): a service that takes one preparer's items can
    /// send those of another preparer of the same type.
    pub fn form(&self) -> std::any::TypeId {
        (self as &dyn Any).type_id()
    }

    /// This preparer as a `T`, if it is one (for [`Prepare::same_items_as`]).
    pub fn downcast_ref<T: Prepare>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref::<T>()
    }
}

/// A preparing sink's service: a batch of prepared events in, one outcome per event out.
pub type PreparedService = BoxService<Vec<Prepared>, Vec<DestinationOutcome>, BoxError>;

/// A preparing sink's two halves (see [`Prepare`]).
pub struct PreparedSink {
    /// Makes each event's prepared form.
    pub prepare: Arc<dyn Prepare>,
    /// Sends batches of prepared events.
    pub service: PreparedService,
}

/// How the shared driver calls a sink.
pub enum SinkCalls {
    /// With batches of events.
    Events(SinkService),
    /// With batches of prepared events (see [`Prepare`]). Events queued as such — in a disk
    /// buffer, or for a sink with a dead-letter sink (which needs the events) — are prepared by
    /// the driver just before each call.
    Prepared(PreparedSink),
}

impl From<SinkService> for SinkCalls {
    fn from(service: SinkService) -> Self {
        Self::Events(service)
    }
}

impl From<PreparedSink> for SinkCalls {
    fn from(sink: PreparedSink) -> Self {
        Self::Prepared(sink)
    }
}

/// A built sink: its service and how the shared driver should feed it.
pub struct SinkParts {
    /// What the driver calls with batches: a service over events, or a preparing sink.
    pub service: SinkCalls,
    /// How events are grouped into calls.
    pub batch: BatchSettings,
    /// How many calls may be in flight at once (at least 1).
    pub concurrency: usize,
    /// Whether sources should answer their clients only once this sink has an outcome for
    /// their events (e.g. the Spotify sink with `optimistic: false`).
    pub wait_for_delivery: bool,
}

impl Debug for SinkParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkParts")
            .field("batch", &self.batch)
            .field("concurrency", &self.concurrency)
            .field("wait_for_delivery", &self.wait_for_delivery)
            .field("prepares", &matches!(self.service, SinkCalls::Prepared(_)))
            .finish_non_exhaustive()
    }
}

/// What a sink is built with.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The sink's ID.
    pub id: ComponentId,
    /// Where to publish delivery log records; `None` for sinks fed by a `logs` source (their
    /// own records would loop).
    pub logs: Option<crate::logs::LogEmitter>,
}

/// A sink's configuration.
pub trait SinkConfig: Debug + Send + Sync + 'static {
    /// Checks the configuration without any I/O. Empty when valid.
    fn validate(&self) -> Vec<ValidationError> {
        Vec::new()
    }

    /// Builds the sink (opening files, creating clients).
    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>>;

    /// Checks, at start-up, that the destination can be reached (no event is sent). The default
    /// has nothing to check. A failure is a warning, or stops start-up with `--require-healthy`.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Registers a sink type: `registry.sink::<MySinkConfig>()`.
pub trait SinkComponent: SinkConfig + DeserializeOwned {
    /// The type name used in component IDs (`console`, `spotify`).
    const TYPE: &'static str;
}
