//! Pipelines and the dispatcher a source sends into.
//!
//! A [`Pipeline`] is its processors layered over a fan-out. A [`Dispatcher`] holds every pipeline
//! that lists one source; the source hands it events and, if it wants, awaits their
//! acknowledgements.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use thread_local::ThreadLocal;
use tower::{Service, ServiceExt};

use crate::ack::{DestinationOutcome, record_all};
use crate::event::Event;
use crate::id::ComponentId;
use crate::processor::{Disposition, PipelineService};

/// One named pipeline, ready to take events.
#[derive(Clone)]
pub struct Pipeline {
    name: Arc<str>,
    /// The processors over the fan-out, as built: what each request's copy is made from.
    service: Arc<PipelineService>,
    /// Copies of `service` that finished their last calls without an error, reused by later
    /// requests: a copy of a service stack costs one allocation per layer (a GA4 hit is one
    /// event per request). A layer's service is thus used for many requests, one at a time,
    /// as a tower service usually is; state it keeps per copy lasts across them. Each thread's
    /// copy of the pipeline (see [`Dispatcher`]) has a pool of its own.
    idle: Arc<Mutex<Vec<PipelineService>>>,
    sinks: Arc<[ComponentId]>,
    wait_for_delivery: bool,
}

/// At most this many idle copies are kept per pipeline and thread (about one per request in
/// flight).
const MAX_IDLE_SERVICES: usize = 64;

impl Pipeline {
    /// A pipeline whose `service` (processors over the fan-out) ends in `sinks`.
    pub fn new(name: &str, service: PipelineService, sinks: Vec<ComponentId>) -> Self {
        Self {
            name: Arc::from(name),
            service: Arc::new(service),
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
        let mut service = reused.unwrap_or_else(|| PipelineService::clone(&self.service));
        // Only a copy whose calls all ended, and ended without an error, goes back: a
        // cancelled request drops its copy, and a service that failed (in `poll_ready` or in a
        // call) may not be used again under tower's rules.
        if self.process_with(&mut service, events).await {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_SERVICES {
                idle.push(service);
            }
        }
    }

    /// [`Self::process`] with one copy of the service; whether it never failed.
    async fn process_with(
        &self,
        service: &mut PipelineService,
        events: impl Iterator<Item = Event>,
    ) -> bool {
        let mut healthy = true;
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
                    healthy = false;
                    tracing::warn!(pipeline = %self.name, %error, "processor error");
                    DestinationOutcome::failed(format!("pipeline {}: {error}", self.name))
                }
            };
            for sink in self.sinks.iter() {
                crate::telemetry::outcome(sink, &outcome);
            }
            record_all(ack.as_ref(), &self.sinks, &outcome);
        }
        healthy
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
///
/// Each thread that asks for the pipelines gets a copy of its own (the same processors and
/// sinks, its own pool of idle service copies), made at its first request after a start or a
/// reload: taking a snapshot then writes only memory that thread uses — not a lock and a
/// reference count that every serving thread writes at every request, whose cache lines would
/// move between the cores at each one (BENCHMARKS.md, the shared-lines session).
#[derive(Clone, Debug)]
pub struct Dispatcher {
    shared: Arc<DispatcherShared>,
}

struct DispatcherShared {
    /// The pipelines as configured.
    current: RwLock<Pipelines>,
    /// The generation of `current`: bumped by every reload (under its write lock), read at
    /// every request.
    generation: AtomicU64,
    /// Each thread's copy of the pipelines and the generation it was made from. A mutex only
    /// its own thread takes at every request (a reload empties them all).
    per_thread: ThreadLocal<Mutex<Option<(u64, Pipelines)>>>,
}

impl fmt::Debug for DispatcherShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherShared")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher feeding these pipelines.
    pub fn new(pipelines: Vec<Pipeline>) -> Self {
        Self {
            shared: Arc::new(DispatcherShared {
                current: RwLock::new(Pipelines(pipelines.into())),
                generation: AtomicU64::new(0),
                per_thread: ThreadLocal::new(),
            }),
        }
    }

    /// The pipelines as they are now. A request should take one snapshot and use it throughout,
    /// so that a reload in the middle does not mix old and new pipelines.
    pub fn current(&self) -> Pipelines {
        let shared = &*self.shared;
        let generation = shared.generation.load(Ordering::Acquire);
        let slot = shared.per_thread.get_or_default();
        let mut mine = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made_from, pipelines)) = &*mine
            && *made_from == generation
        {
            return pipelines.clone();
        }
        // Stored under the read lock: a reload, which empties every thread's copy after it
        // replaced the pipelines, cannot leave an older copy behind.
        let configured = self.configured();
        // Written only under the write lock: the generation of what the read lock shows.
        let made_from = shared.generation.load(Ordering::Acquire);
        let copy = configured.copy_for_one_thread();
        let stale = mine.replace((made_from, copy.clone()));
        // The stale copy (perhaps the last sender of a removed sink's queue, and its pool of
        // service copies) goes once both locks are released.
        drop(mine);
        drop(configured);
        drop(stale);
        copy
    }

    /// The pipelines as configured, read under the reload lock (for what no request does at
    /// every turn: no copy is made for the calling thread).
    fn configured(&self) -> std::sync::RwLockReadGuard<'_, Pipelines> {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the pipelines for every later [`Dispatcher::current`] (a reload). Every
    /// thread's copy of the old ones is dropped at once, so that a sink no pipeline uses any
    /// more sees its queue close when the requests in flight are done with them.
    pub fn replace(&self, pipelines: Vec<Pipeline>) {
        let shared = &*self.shared;
        {
            let mut current = shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *current = Pipelines(pipelines.into());
            shared.generation.fetch_add(1, Ordering::Release);
        }
        for slot in &shared.per_thread {
            let old = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(old);
        }
    }

    /// Sends one event into every pipeline. Returns once each pipeline's queues took it
    /// (waiting only for `when_full: block` queues that are full).
    pub async fn send(&self, event: Event) {
        self.current().send(event).await;
    }

    /// Sends events, in order, into every pipeline.
    pub async fn send_all(&self, events: Vec<Event>) {
        self.current().send_all(events).await;
    }

    /// Every sink this source's events can reach, without duplicates.
    pub fn sinks(&self) -> Vec<ComponentId> {
        self.configured().sinks()
    }

    /// Whether a sink reached by this source wants the source to answer its client only after
    /// delivery (`optimistic: false`).
    pub fn waits_for_delivery(&self) -> bool {
        self.configured().waits_for_delivery()
    }
}

/// A snapshot of the pipelines one source feeds (see [`Dispatcher::current`]).
#[derive(Clone, Debug)]
pub struct Pipelines(Arc<[Pipeline]>);

impl Pipelines {
    /// A copy for one thread's requests: the same pipelines, each with its own pool of idle
    /// service copies.
    fn copy_for_one_thread(&self) -> Self {
        Self(
            self.0
                .iter()
                .map(|pipeline| Pipeline {
                    idle: Arc::default(),
                    ..pipeline.clone()
                })
                .collect(),
        )
    }

    /// Sends one event into every pipeline (no list to allocate, as for a GA4 hit): a copy of
    /// it (its shared data) into each but the last, which takes it.
    pub async fn send(&self, event: Event) {
        let Some((last, rest)) = self.0.split_last() else {
            return;
        };
        for pipeline in rest {
            pipeline.process(std::iter::once(event.clone())).await;
        }
        last.process(std::iter::once(event)).await;
    }

    /// Sends events, in order, into every pipeline.
    pub async fn send_all(&self, events: Vec<Event>) {
        self.send_each(events.into_iter()).await;
    }

    /// Sends `events`, in order, into every pipeline. With one pipeline each event is taken
    /// from the iterator only when its turn comes, so one made as it is taken (e.g. read from a
    /// request's body) is made, processed and queued before the next is made. With more, the
    /// events are made first and each pipeline but the last gets a copy of them (their shared
    /// data), the last the events themselves.
    pub async fn send_each(&self, events: impl Iterator<Item = Event>) {
        match &*self.0 {
            [] => {}
            [only] => only.process(events).await,
            [rest @ .., last] => {
                let events: Vec<Event> = events.collect();
                for pipeline in rest {
                    pipeline.process(events.iter().cloned()).await;
                }
                last.process(events.into_iter()).await;
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use super::*;
    use crate::component::BoxError;
    use crate::event::{EventData, RequestContext};

    /// Forwards every event (or, while `stall` is set, never answers; while `fail` is set,
    /// answers with an error) and counts how often it is copied and called.
    #[derive(Default)]
    struct Counting {
        copies: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
        stall: Arc<std::sync::atomic::AtomicBool>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Clone for Counting {
        fn clone(&self) -> Self {
            self.copies.fetch_add(1, Ordering::Relaxed);
            Self {
                copies: self.copies.clone(),
                calls: self.calls.clone(),
                stall: self.stall.clone(),
                fail: self.fail.clone(),
            }
        }
    }

    impl Service<Event> for Counting {
        type Response = Disposition;
        type Error = BoxError;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Disposition, BoxError>> + Send>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Event) -> Self::Future {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.stall.load(Ordering::Relaxed) {
                Box::pin(std::future::pending())
            } else if self.fail.load(Ordering::Relaxed) {
                Box::pin(std::future::ready(Err("broken".into())))
            } else {
                Box::pin(std::future::ready(Ok(Disposition::Forwarded)))
            }
        }
    }

    /// A pipeline over a [`Counting`] service, with the counters.
    fn counting_pipeline() -> (Pipeline, Counting) {
        let counting = Counting::default();
        let service = PipelineService::boxing(Counting {
            copies: counting.copies.clone(),
            calls: counting.calls.clone(),
            stall: counting.stall.clone(),
            fail: counting.fail.clone(),
        });
        (Pipeline::new("p", service, vec![]), counting)
    }

    fn event() -> Event {
        Event::new(EventData::default(), Arc::new(RequestContext::detached()))
    }

    #[tokio::test]
    async fn requests_reuse_an_idle_copy_of_the_pipeline_service() {
        let (pipeline, counting) = counting_pipeline();
        let dispatcher = Dispatcher::new(vec![pipeline]);
        for _ in 0..5 {
            dispatcher.send(event()).await;
        }
        dispatcher.send_all(vec![event(), event()]).await;
        assert_eq!(counting.calls.load(Ordering::Relaxed), 7);
        // The first request copies the service; every later one takes that copy back.
        assert_eq!(counting.copies.load(Ordering::Relaxed), 1);
    }

    /// After one request lost its copy (none is idle): the next request makes a second copy
    /// and the one after reuses it.
    async fn assert_the_next_requests_make_one_new_copy(pipeline: &Pipeline, counting: &Counting) {
        assert!(pipeline.idle.lock().unwrap().is_empty());
        counting.stall.store(false, Ordering::Relaxed);
        counting.fail.store(false, Ordering::Relaxed);
        pipeline.process(std::iter::once(event())).await;
        pipeline.process(std::iter::once(event())).await;
        assert_eq!(counting.calls.load(Ordering::Relaxed), 3);
        assert_eq!(counting.copies.load(Ordering::Relaxed), 2);
        assert_eq!(pipeline.idle.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_cancelled_request_drops_its_copy_and_the_next_makes_another() {
        let (pipeline, counting) = counting_pipeline();
        counting.stall.store(true, Ordering::Relaxed);
        let cancelled = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            pipeline.process(std::iter::once(event())),
        )
        .await;
        assert!(cancelled.is_err(), "the stalled call should not finish");
        assert_the_next_requests_make_one_new_copy(&pipeline, &counting).await;
    }

    #[tokio::test]
    async fn a_copy_that_failed_is_not_reused() {
        let (pipeline, counting) = counting_pipeline();
        counting.fail.store(true, Ordering::Relaxed);
        pipeline.process(std::iter::once(event())).await;
        assert_the_next_requests_make_one_new_copy(&pipeline, &counting).await;
    }

    /// Runs each future on a thread of its own, in a runtime of its own; the threads are all
    /// alive until every future has finished (a thread that ended may hand its thread-local
    /// slots to the next one).
    fn on_threads_of_their_own(futures: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>) {
        let all_done = Arc::new(std::sync::Barrier::new(futures.len()));
        let threads: Vec<_> = futures
            .into_iter()
            .map(|f| {
                let all_done = all_done.clone();
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap()
                        .block_on(f);
                    all_done.wait();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[test]
    fn each_thread_has_its_own_copy_and_a_reload_drops_every_copy() {
        let (pipeline, counting) = counting_pipeline();
        let dispatcher = Dispatcher::new(vec![pipeline]);
        let sending =
            |dispatcher: Dispatcher| -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(async move {
                    for _ in 0..3 {
                        dispatcher.send(event()).await;
                    }
                })
            };
        on_threads_of_their_own(vec![
            sending(dispatcher.clone()),
            sending(dispatcher.clone()),
        ]);
        assert_eq!(counting.calls.load(Ordering::Relaxed), 6);
        // One service copy per thread, kept in that thread's pool and reused there.
        assert_eq!(counting.copies.load(Ordering::Relaxed), 2);
        // The threads have ended; their copies (and the pools' service copies) live on in the
        // dispatcher until a reload replaces the pipelines.
        assert!(Arc::strong_count(&counting.calls) > 2);
        let (other, _) = counting_pipeline();
        dispatcher.replace(vec![other]);
        assert_eq!(
            Arc::strong_count(&counting.calls),
            1,
            "every copy of the replaced pipeline is dropped"
        );
    }

    #[test]
    fn a_thread_sees_the_pipelines_of_the_latest_reload() {
        let sink = |name: &str| ComponentId::parse(name).unwrap();
        let named = |sinks: &[&str]| {
            let (pipeline, _) = counting_pipeline();
            Pipeline {
                sinks: sinks.iter().map(|s| sink(s)).collect(),
                ..pipeline
            }
        };
        let dispatcher = Dispatcher::new(vec![named(&["console/old"])]);
        assert_eq!(dispatcher.sinks(), [sink("console/old")]);
        // A snapshot taken before the reload keeps the old pipelines; the next one has the new.
        let before = dispatcher.current();
        dispatcher.replace(vec![named(&["console/new"])]);
        assert_eq!(before.sinks(), [sink("console/old")]);
        assert_eq!(dispatcher.sinks(), [sink("console/new")]);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (from_thread, thread_dispatcher) = (seen.clone(), dispatcher.clone());
        on_threads_of_their_own(vec![Box::pin(async move {
            from_thread
                .lock()
                .unwrap()
                .extend(thread_dispatcher.sinks());
        })]);
        assert_eq!(*seen.lock().unwrap(), [sink("console/new")]);
        dispatcher.replace(vec![named(&["console/a", "console/b"])]);
        assert_eq!(dispatcher.sinks(), [sink("console/a"), sink("console/b")]);
    }

    #[tokio::test]
    async fn every_pipeline_gets_each_event() {
        let (first, first_counts) = counting_pipeline();
        let (second, second_counts) = counting_pipeline();
        let dispatcher = Dispatcher::new(vec![first, second]);
        dispatcher.send(event()).await;
        dispatcher.send_all(vec![event(), event(), event()]).await;
        dispatcher.send_all(Vec::new()).await;
        assert_eq!(first_counts.calls.load(Ordering::Relaxed), 4);
        assert_eq!(second_counts.calls.load(Ordering::Relaxed), 4);
    }

    /// How many calls the pipelines' services had seen as each event was made.
    async fn calls_seen_as_events_are_made(
        pipelines: Pipelines,
        calls: &AtomicUsize,
    ) -> Vec<usize> {
        let seen = Mutex::new(Vec::new());
        let events = (0..3).map(|_| {
            seen.lock().unwrap().push(calls.load(Ordering::Relaxed));
            event()
        });
        pipelines.send_each(events).await;
        seen.into_inner().unwrap()
    }

    #[tokio::test]
    async fn one_pipeline_takes_each_event_only_when_its_turn_comes() {
        let (only, counts) = counting_pipeline();
        let pipelines = Pipelines(vec![only].into());
        assert_eq!(
            calls_seen_as_events_are_made(pipelines, &counts.calls).await,
            [0, 1, 2],
            "each event made after the one before went through"
        );
        let (first, counts) = counting_pipeline();
        let (second, _) = counting_pipeline();
        let pipelines = Pipelines(vec![first, second].into());
        assert_eq!(
            calls_seen_as_events_are_made(pipelines, &counts.calls).await,
            [0, 0, 0],
            "with two pipelines the events are made first, then shared"
        );
        assert_eq!(counts.calls.load(Ordering::Relaxed), 3);
    }
}
