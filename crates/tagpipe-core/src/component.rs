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
/// [`PreparedService`] — an [`Encoded`] event with [`Prepared::into_encoded`], any other form
/// with [`Prepared::downcast`].
pub struct Prepared(Form);

/// How a [`Prepared`] holds its content.
enum Form {
    /// The common form, held in place: no allocation of its own per event (queued, it sits in
    /// the queue's slot), so the driver's thread frees nothing of it but its share of the bytes
    /// (and its trace id, when its request had one).
    Encoded(Encoded),
    /// Any other form a sink makes, boxed.
    Other(Box<dyn Any + Send>),
}

/// An event encoded in its destination's format, with what its sink's logs and debug answers
/// need of it: what a sink that serialises each event once makes of it (see [`Prepare`]).
///
/// A [`Prepared`] holds it without a box of its own ([`Prepared::encoded`]). Per event that is
/// one allocation fewer on the thread that accepted the event and one free fewer on the
/// driver's — a free of memory another core allocated, which the allocator hands back to that
/// core, whose next allocation then reads what the other core wrote last (BENCHMARKS.md, "The
/// encoded-item session").
#[derive(Clone)]
pub struct Encoded {
    /// The encoded event: typically a slice of a buffer its sink writes several events into.
    pub bytes: bytes::Bytes,
    /// A stretch of `bytes` the sink reads back (the Spotify sink: where the event's name is, for
    /// its logs); empty when it reads none. `u32` offsets, like the boxed trace id below, keep
    /// the queue's slot smaller.
    pub label: std::ops::Range<u32>,
    /// The trace id of the event's request, for the sink's logs (boxed text rather than a
    /// `String`: the queue's slot it sits in stays smaller).
    pub trace_id: Option<Box<str>>,
    /// Whether the event's request asked for a debug answer.
    pub debug: bool,
}

impl Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The event's content (it may hold personal data): never printed, only its size.
        f.debug_struct("Encoded")
            .field("bytes", &self.bytes.len())
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Wraps a sink's own per-event form (boxed; an encoded event is better given to
    /// [`Prepared::encoded`]).
    pub fn new<T: Any + Send>(value: T) -> Self {
        Self(Form::Other(Box::new(value)))
    }

    /// An encoded event, held without a box of its own.
    pub fn encoded(encoded: Encoded) -> Self {
        Self(Form::Encoded(encoded))
    }

    /// The encoded event back, or `self` when it holds another form.
    pub fn into_encoded(self) -> Result<Encoded, Self> {
        match self.0 {
            Form::Encoded(encoded) => Ok(encoded),
            other @ Form::Other(_) => Err(Self(other)),
        }
    }

    /// The encoded event, borrowed, when it holds one.
    pub fn as_encoded(&self) -> Option<&Encoded> {
        match &self.0 {
            Form::Encoded(encoded) => Some(encoded),
            Form::Other(_) => None,
        }
    }

    /// The sink's form back when it was made with [`Prepared::new`] from a `T`, or `self`
    /// (always for an encoded event: see [`Prepared::into_encoded`]).
    pub fn downcast<T: Any>(self) -> Result<T, Self> {
        match self.0 {
            Form::Other(boxed) => boxed
                .downcast::<T>()
                .map(|b| *b)
                .map_err(|boxed| Self(Form::Other(boxed))),
            encoded @ Form::Encoded(_) => Err(Self(encoded)),
        }
    }

    /// The sink's form, borrowed, when it was made with [`Prepared::new`] from a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match &self.0 {
            Form::Other(boxed) => boxed.downcast_ref::<T>(),
            Form::Encoded(_) => None,
        }
    }

    /// The sink's form, borrowed mutably, when it was made with [`Prepared::new`] from a `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        match &mut self.0 {
            Form::Other(boxed) => boxed.downcast_mut::<T>(),
            Form::Encoded(_) => None,
        }
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
/// the same reason. A sink that serialises each event once returns it as an [`Encoded`] event
/// ([`Prepared::encoded`]): the queue then holds it in its slot, without a box per event.
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{Encoded, Prepared};

    fn encoded() -> Encoded {
        Encoded {
            bytes: Bytes::from_static(br#"{"event_name":"purchase","email":"a@example.com"}"#),
            label: 15..23,
            trace_id: Some("t-1".into()),
            debug: true,
        }
    }

    /// An encoded event comes back only as one (a downcast to any type refuses it, leaving it
    /// whole); a boxed form comes back only through a downcast to its type.
    #[test]
    fn each_form_comes_back_the_way_it_went_in() {
        let mut prepared = Prepared::encoded(encoded());
        assert_eq!(
            prepared.as_encoded().map(|e| &e.bytes[15..23]),
            Some(&b"purchase"[..])
        );
        assert!(prepared.downcast_ref::<Encoded>().is_none());
        assert!(prepared.downcast_mut::<Encoded>().is_none());
        let prepared = prepared.downcast::<Encoded>().expect_err("not boxed");
        let back = prepared.into_encoded().expect("encoded");
        assert_eq!(back.label, 15..23);
        assert_eq!(back.trace_id.as_deref(), Some("t-1"));
        assert!(back.debug);

        let mut boxed = Prepared::new(7_u8);
        assert!(boxed.as_encoded().is_none());
        *boxed.downcast_mut::<u8>().expect("a u8") += 1;
        let boxed = boxed.into_encoded().expect_err("boxed");
        let boxed = boxed.downcast::<String>().expect_err("not a String");
        assert_eq!(boxed.downcast::<u8>().ok(), Some(8));
    }

    /// The event's content never reaches logs through `Debug`: neither form prints it.
    #[test]
    fn debug_output_shows_no_content() {
        let shown = format!("{:?} {:?}", encoded(), Prepared::encoded(encoded()));
        assert!(
            !shown.contains("example.com") && !shown.contains("purchase"),
            "{shown}"
        );
        assert!(
            shown.contains("Encoded") && shown.contains("Prepared"),
            "{shown}"
        );
    }
}
