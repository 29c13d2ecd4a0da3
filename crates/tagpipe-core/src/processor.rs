//! Processors are `tower::Layer`s over the pipeline service.
//!
//! The service at the end of a pipeline is its fan-out; each processor wraps what follows it.
//! A processor's service either passes the (possibly changed) event on to its inner service, or
//! answers without calling it: [`Disposition::Skipped`] (dropped on purpose — consent, filter)
//! or [`Disposition::Failed`]. The pipeline then records that outcome for every sink of the
//! pipeline, so a source waiting for acknowledgements learns why.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use crate::component::{BoxError, BoxFuture};
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

/// The service a processor wraps: the rest of the pipeline, type-erased (as
/// `tower::util::BoxCloneSyncService` erases a service) but without boxing the futures of
/// tagpipe's own services: a processor that answers at once, or passes the event on, hands back
/// a [`PipelineFuture`] without an allocation, where a boxing service would allocate one future
/// per layer per event. Any other service is erased with [`PipelineService::boxing`].
pub struct PipelineService(Box<dyn ErasedService>);

/// What a stage of a pipeline is: a cloneable, shareable service from events to a
/// [`Disposition`] (the bounds [`PipelineService`] and [`ProcessorLayer`] ask for).
pub trait StageService:
    Service<Event, Response = Disposition, Error = BoxError> + Clone + Send + Sync + 'static
{
}

impl<S> StageService for S where
    S: Service<Event, Response = Disposition, Error = BoxError> + Clone + Send + Sync + 'static
{
}

/// A [`PipelineService`]'s service, behind the box.
trait ErasedService: Send + Sync {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    fn call(&mut self, event: Event) -> PipelineFuture;
    fn clone_box(&self) -> Box<dyn ErasedService>;
}

impl<S> ErasedService for S
where
    S: StageService,
    S::Future: Into<PipelineFuture>,
{
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::poll_ready(self, cx)
    }

    fn call(&mut self, event: Event) -> PipelineFuture {
        Service::call(self, event).into()
    }

    fn clone_box(&self) -> Box<dyn ErasedService> {
        Box::new(self.clone())
    }
}

impl PipelineService {
    /// Erases `service`, whose futures are tagpipe's own (a processor's, the fan-out's, or
    /// another `PipelineService`'s): none is boxed.
    pub fn new<S>(service: S) -> Self
    where
        S: StageService,
        S::Future: Into<PipelineFuture>,
    {
        Self(Box::new(service))
    }

    /// Erases any service, boxing each of its futures.
    pub fn boxing<S>(service: S) -> Self
    where
        S: StageService,
        S::Future: Send + 'static,
    {
        Self::new(service.map_future(|future| PipelineFuture::Boxed(Box::pin(future))))
    }
}

impl Clone for PipelineService {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl std::fmt::Debug for PipelineService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PipelineService")
    }
}

impl Service<Event> for PipelineService {
    type Response = Disposition;
    type Error = BoxError;
    type Future = PipelineFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, event: Event) -> PipelineFuture {
        self.0.call(event)
    }
}

/// The future of a [`PipelineService`]: an answer already given, or a boxed future.
pub enum PipelineFuture {
    /// Answered already (a processor's skip, an event the fan-out queued at once).
    Ready(Option<Result<Disposition, BoxError>>),
    /// Still working (a fan-out waiting for room in a queue, a boxing service).
    Boxed(BoxFuture<'static, Result<Disposition, BoxError>>),
}

impl PipelineFuture {
    /// An answer given at once.
    pub fn ready(result: Result<Disposition, BoxError>) -> Self {
        Self::Ready(Some(result))
    }
}

impl std::fmt::Debug for PipelineFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(answer) => f.debug_tuple("Ready").field(answer).finish(),
            Self::Boxed(_) => f.write_str("Boxed"),
        }
    }
}

impl Future for PipelineFuture {
    type Output = Result<Disposition, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(answer) => Poll::Ready(
                answer
                    .take()
                    .unwrap_or_else(|| Err("pipeline future polled after completion".into())),
            ),
            Self::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

/// A processor's answer, or the rest of the pipeline's future as it is: no box per layer.
impl From<ProcessorFuture<PipelineFuture>> for PipelineFuture {
    fn from(future: ProcessorFuture<PipelineFuture>) -> Self {
        match future {
            ProcessorFuture::Ready(answer) => Self::Ready(answer),
            ProcessorFuture::Inner(inner) => inner,
        }
    }
}

/// A processor, as built from its configuration: a `tower::Layer` over the rest of the
/// pipeline. The pipeline keeps copies of the service stack it makes and reuses each for request
/// after request (one at a time), dropping a copy whose `poll_ready` or call failed: state a
/// processor's service keeps lasts across requests.
#[derive(Clone)]
pub struct ProcessorLayer(Arc<dyn Fn(PipelineService) -> PipelineService + Send + Sync>);

impl ProcessorLayer {
    /// A processor whose service's futures are tagpipe's own ([`EventLayer`]'s, or a
    /// [`PipelineService`]'s): see [`PipelineService::new`].
    pub fn new<L>(layer: L) -> Self
    where
        L: Layer<PipelineService> + Send + Sync + 'static,
        L::Service: StageService,
        <L::Service as Service<Event>>::Future: Into<PipelineFuture>,
    {
        Self(Arc::new(move |inner| {
            PipelineService::new(layer.layer(inner))
        }))
    }

    /// A processor of any `tower::Layer`, its service's futures boxed.
    pub fn boxing<L>(layer: L) -> Self
    where
        L: Layer<PipelineService> + Send + Sync + 'static,
        L::Service: StageService,
        <L::Service as Service<Event>>::Future: Send + 'static,
    {
        Self(Arc::new(move |inner| {
            PipelineService::boxing(layer.layer(inner))
        }))
    }
}

impl Layer<PipelineService> for ProcessorLayer {
    type Service = PipelineService;

    fn layer(&self, inner: PipelineService) -> PipelineService {
        (self.0)(inner)
    }
}

impl std::fmt::Debug for ProcessorLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessorLayer")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RequestContext;
    use crate::fanout::FanOut;

    /// Marks events it sees; skips `skip_me`.
    struct Mark(&'static str);

    impl EventProcessor for Mark {
        fn process(&self, event: &mut Event) -> Result<(), String> {
            if event.event_name() == Some("skip_me") {
                return Err(format!("{} skips it", self.0));
            }
            event.data_mut().insert(self.0, true.into());
            Ok(())
        }
    }

    fn named(name: &str) -> Event {
        let mut data = crate::EventData::new();
        data.insert("event_name", name.into());
        Event::new(data, Arc::new(RequestContext::detached()))
    }

    fn stack(end: PipelineService) -> PipelineService {
        ["a", "b", "c"].into_iter().fold(end, |service, name| {
            ProcessorLayer::new(EventLayer::new(Mark(name))).layer(service)
        })
    }

    #[tokio::test]
    async fn event_processors_answer_through_the_stack_without_boxing_a_future() {
        let mut service = stack(PipelineService::new(FanOut::new(Vec::new())));
        for (name, answer) in [
            ("page_view", Disposition::Forwarded),
            ("skip_me", Disposition::Skipped("c skips it".into())),
        ] {
            let future = Service::call(&mut service, named(name));
            assert!(matches!(future, PipelineFuture::Ready(_)), "{future:?}");
            assert_eq!(future.await.unwrap(), answer);
        }
    }

    #[tokio::test]
    async fn any_other_service_is_boxed_and_its_answer_comes_through() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let end = {
            let seen = seen.clone();
            PipelineService::boxing(tower::service_fn(move |event: Event| {
                seen.lock().unwrap().push(event.data.contains_key("a"));
                async { Ok::<_, BoxError>(Disposition::Failed("end".into())) }
            }))
        };
        let mut service = stack(end);
        let future = Service::call(&mut service, named("page_view"));
        assert!(matches!(future, PipelineFuture::Boxed(_)));
        assert_eq!(future.await.unwrap(), Disposition::Failed("end".into()));
        assert_eq!(*seen.lock().unwrap(), [true], "the processors ran first");
    }
}
