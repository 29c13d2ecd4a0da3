//! Runtime behaviour: fan-out, per-sink queues and `when_full`, acknowledgements, processors'
//! skips, batching and shutdown — exercised through a real [`Topology`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tagpipe_core::batch::BatchSettings;
use tagpipe_core::component::{RunningSource, SinkParts};
use tagpipe_core::driver::service_fn;
use tagpipe_core::queue::{BufferConfig, WhenFull};
use tagpipe_core::topology::{PipelineEntry, SinkEntry, Topology, TopologyConfig};
use tagpipe_core::{
    BoxError, BoxFuture, ComponentId, DestinationOutcome, Dispatcher, Disposition, Event,
    EventData, Outcome, PipelineService, ProcessorConfig, ProcessorContext, ProcessorLayer,
    RequestContext, SinkConfig, SinkContext, SourceConfig, SourceContext,
};
use tokio::sync::{Notify, oneshot};
use tower::util::BoxCloneSyncServiceLayer;
use tower::{Service, ServiceExt};

/// A source that hands its dispatcher to the test and runs until shutdown.
#[derive(Debug)]
struct TestSource(Mutex<Option<oneshot::Sender<Dispatcher>>>);

impl SourceConfig for TestSource {
    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        let tx = self.0.lock().unwrap().take().expect("built once");
        Box::pin(async move {
            let _ = tx.send(cx.output.clone());
            let running: RunningSource = Box::pin(async move {
                cx.shutdown.cancelled().await;
                drop(cx.output);
                Ok(())
            });
            Ok(running)
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Accept,
    /// Never answers.
    Stall,
    /// Waits for the gate before answering.
    Gated,
    /// Answers `failed` for every event.
    Reject,
}

/// A sink that records the batches it was called with.
#[derive(Debug, Clone)]
struct TestSink {
    behaviour: Behaviour,
    batch: BatchSettings,
    seen: Arc<Mutex<Vec<Vec<Event>>>>,
    gate: Arc<Notify>,
    dead_letter: Option<&'static str>,
}

impl TestSink {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            batch: BatchSettings::UNBATCHED,
            seen: Arc::default(),
            gate: Arc::new(Notify::new()),
            dead_letter: None,
        }
    }
    fn events(&self) -> usize {
        self.seen.lock().unwrap().iter().map(Vec::len).sum()
    }
}

impl SinkConfig for TestSink {
    fn build(&self, _cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        let this = self.clone();
        Box::pin(async move {
            let service = service_fn(move |batch: Vec<Event>| {
                let this = this.clone();
                async move {
                    match this.behaviour {
                        Behaviour::Stall => std::future::pending::<()>().await,
                        Behaviour::Gated => this.gate.notified().await,
                        Behaviour::Accept | Behaviour::Reject => {}
                    }
                    let n = batch.len();
                    this.seen.lock().unwrap().push(batch);
                    if matches!(this.behaviour, Behaviour::Reject) {
                        let refused = DestinationOutcome::failed("rejected: HTTP 400: bad event")
                            .with_request(json!({"sent": true}));
                        return Ok(vec![refused; n]);
                    }
                    Ok(vec![DestinationOutcome::sent(); n])
                }
            });
            Ok(SinkParts {
                service,
                batch: self.batch,
                concurrency: 1,
                wait_for_delivery: false,
            })
        })
    }
}

/// A processor that skips events whose `event_name` is `skip_me`.
#[derive(Debug)]
struct SkipProcessor;

impl ProcessorConfig for SkipProcessor {
    fn build(&self, _cx: ProcessorContext) -> Result<ProcessorLayer, BoxError> {
        Ok(BoxCloneSyncServiceLayer::new(tower::layer::layer_fn(
            |inner: PipelineService| {
                PipelineService::new(tower::service_fn(move |mut event: Event| {
                    let mut inner = inner.clone();
                    async move {
                        if event.event_name() == Some("skip_me") {
                            return Ok(Disposition::Skipped("filter: skip_me".into()));
                        }
                        event.data_mut().insert("processed".into(), json!(true));
                        inner.ready().await?.call(event).await
                    }
                }))
            },
        )))
    }
}

fn id(s: &str) -> ComponentId {
    ComponentId::parse(s).unwrap()
}

fn event(name: &str) -> Event {
    let mut data = EventData::new();
    data.insert("event_name".into(), json!(name));
    Event::new(data, Arc::new(RequestContext::detached()))
}

fn buffer(max_events: usize, when_full: WhenFull) -> BufferConfig {
    BufferConfig {
        max_events,
        when_full,
        ..BufferConfig::default()
    }
}

struct Harness {
    dispatcher: Dispatcher,
    shutdown: tokio_util::sync::CancellationToken,
    run: tokio::task::JoinHandle<tagpipe_core::topology::ShutdownReport>,
}

async fn start(
    sinks: Vec<(&str, TestSink, BufferConfig)>,
    pipelines: Vec<(&str, Vec<&str>, Vec<&str>)>,
    shutdown_timeout: Duration,
) -> Harness {
    let (tx, rx) = oneshot::channel();
    let config = TopologyConfig {
        sources: vec![(id("test"), Box::new(TestSource(Mutex::new(Some(tx)))))],
        processors: vec![(id("skip"), Box::new(SkipProcessor))],
        sinks: sinks
            .into_iter()
            .map(|(name, sink, buffer)| SinkEntry {
                id: id(name),
                buffer,
                dead_letter: sink.dead_letter.map(id),
                config: Box::new(sink),
            })
            .collect(),
        pipelines: pipelines
            .into_iter()
            .map(|(name, processors, sinks)| PipelineEntry {
                name: name.into(),
                sources: vec![id("test")],
                processors: processors.into_iter().map(id).collect(),
                sinks: sinks.into_iter().map(id).collect(),
            })
            .collect(),
        shutdown_timeout,
        require_healthy: false,
    };
    let topology = Topology::build(config).await.expect("builds");
    let shutdown = topology.shutdown_token();
    let signal = shutdown.clone();
    let run = tokio::spawn(topology.run(async move { signal.cancelled().await }));
    let dispatcher = rx.await.expect("source built");
    Harness {
        dispatcher,
        shutdown,
        run,
    }
}

impl Harness {
    /// Graceful shutdown, as a signal would do it, once the test lets go of its dispatcher.
    async fn finish(self) -> tagpipe_core::topology::ShutdownReport {
        drop(self.dispatcher);
        self.shutdown.cancel();
        within(self.run).await.expect("topology task")
    }
}

/// Guards against a hang; not a timing assertion.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("did not finish (hang)")
}

#[tokio::test]
async fn one_event_reaches_every_sink_without_a_deep_copy() {
    let a = TestSink::new(Behaviour::Accept);
    let b = TestSink::new(Behaviour::Accept);
    let h = start(
        vec![
            ("console", a.clone(), BufferConfig::default()),
            ("file/out", b.clone(), BufferConfig::default()),
        ],
        vec![("main", vec![], vec!["console", "file/out"])],
        Duration::from_secs(5),
    )
    .await;
    let (e, ack) = event("page_view").with_acknowledgement();
    h.dispatcher.send(e).await;
    let outcomes = within(ack).await;
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.values().all(|o| o.outcome == Outcome::Sent));
    let a_event = a.seen.lock().unwrap()[0][0].clone();
    let b_event = b.seen.lock().unwrap()[0][0].clone();
    assert!(
        Arc::ptr_eq(&a_event.data, &b_event.data),
        "both sinks share the same event data"
    );
    assert!(h.finish().await.undelivered.is_empty());
}

#[tokio::test]
async fn a_stalled_sink_with_drop_newest_does_not_hold_up_the_others() {
    let dead = TestSink::new(Behaviour::Stall);
    let healthy = TestSink::new(Behaviour::Accept);
    let h = start(
        vec![
            ("dead", dead.clone(), buffer(8, WhenFull::DropNewest)),
            ("healthy", healthy.clone(), buffer(8, WhenFull::Block)),
        ],
        vec![("main", vec![], vec!["dead", "healthy"])],
        Duration::from_millis(300),
    )
    .await;
    let mut acks = Vec::new();
    for _ in 0..1000 {
        let (e, ack) = event("page_view").with_acknowledgement();
        h.dispatcher.send(e).await;
        acks.push(ack);
    }
    // Every event past the dead sink's queue (8) and its one stalled call is failed there at
    // once, so those acknowledgements complete while the dead sink still holds the rest.
    let mut dropped = 0;
    for ack in acks.drain(20..) {
        let outcomes = within(ack).await;
        assert_eq!(outcomes["healthy"].outcome, Outcome::Sent);
        assert_eq!(outcomes["dead"].outcome, Outcome::Failed);
        assert!(
            outcomes["dead"]
                .reason
                .as_deref()
                .unwrap()
                .contains("queue full")
        );
        dropped += 1;
    }
    assert_eq!(dropped, 980);
    within(async {
        while healthy.events() < 1000 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report = h.finish().await;
    let stuck = report.undelivered["dead"];
    assert!((1..=10).contains(&stuck), "stuck at the dead sink: {stuck}");
    assert!(!report.undelivered.contains_key("healthy"));
}

#[tokio::test]
async fn when_full_block_applies_back_pressure_until_there_is_room() {
    let slow = TestSink::new(Behaviour::Gated);
    let h = start(
        vec![("slow", slow.clone(), buffer(2, WhenFull::Block))],
        vec![("main", vec![], vec!["slow"])],
        Duration::from_secs(5),
    )
    .await;
    let dispatcher = h.dispatcher.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..10 {
            dispatcher.send(event("x")).await;
        }
    });
    // One call in flight plus two queued: the sender must be parked on the full queue.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        !sender.is_finished(),
        "a full `block` queue must hold the sender"
    );
    assert_eq!(slow.events(), 0);
    let opener = {
        let slow = slow.clone();
        tokio::spawn(async move {
            loop {
                slow.gate.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    within(sender).await.unwrap();
    within(async {
        while slow.events() < 10 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    opener.abort();
    assert!(h.finish().await.undelivered.is_empty());
}

#[tokio::test]
async fn a_skipping_processor_reports_skipped_with_its_reason_and_other_pipelines_are_untouched() {
    let filtered = TestSink::new(Behaviour::Accept);
    let raw = TestSink::new(Behaviour::Accept);
    let h = start(
        vec![
            ("filtered", filtered.clone(), BufferConfig::default()),
            ("raw", raw.clone(), BufferConfig::default()),
        ],
        vec![
            ("with_filter", vec!["skip"], vec!["filtered"]),
            ("plain", vec![], vec!["raw"]),
        ],
        Duration::from_secs(5),
    )
    .await;
    let (skipped, skipped_ack) = event("skip_me").with_acknowledgement();
    let (kept, kept_ack) = event("purchase").with_acknowledgement();
    h.dispatcher.send_all(vec![skipped, kept]).await;
    let skipped = within(skipped_ack).await;
    assert_eq!(skipped["filtered"].outcome, Outcome::Skipped);
    assert_eq!(
        skipped["filtered"].reason.as_deref(),
        Some("filter: skip_me")
    );
    assert_eq!(skipped["raw"].outcome, Outcome::Sent);
    let kept = within(kept_ack).await;
    assert!(kept.values().all(|o| o.outcome == Outcome::Sent));
    // The processor changed its pipeline's copy only.
    assert_eq!(
        filtered.seen.lock().unwrap()[0][0].data["processed"],
        json!(true)
    );
    assert!(
        raw.seen
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .all(|e| !e.data.contains_key("processed"))
    );
    h.finish().await;
}

#[tokio::test]
async fn the_driver_batches_up_to_max_events() {
    let mut sink = TestSink::new(Behaviour::Accept);
    sink.batch = BatchSettings {
        max_events: 10,
        timeout: Duration::from_millis(50),
    };
    let h = start(
        vec![("batched", sink.clone(), BufferConfig::default())],
        vec![("main", vec![], vec!["batched"])],
        Duration::from_secs(5),
    )
    .await;
    h.dispatcher
        .send_all((0..95).map(|_| event("x")).collect())
        .await;
    assert!(h.finish().await.undelivered.is_empty());
    let sizes: Vec<usize> = sink.seen.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 95);
    assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    assert!(sizes.len() >= 10, "{sizes:?}");
}

#[tokio::test]
async fn shutdown_drains_queued_events_before_the_deadline() {
    let sink = TestSink::new(Behaviour::Accept);
    let h = start(
        vec![("s", sink.clone(), BufferConfig::default())],
        vec![("main", vec![], vec!["s"])],
        Duration::from_secs(10),
    )
    .await;
    let mut acks = Vec::new();
    for _ in 0..500 {
        let (e, ack) = event("x").with_acknowledgement();
        h.dispatcher.send(e).await;
        acks.push(ack);
    }
    let report = h.finish().await;
    assert!(report.undelivered.is_empty(), "{report:?}");
    assert_eq!(sink.events(), 500);
    for ack in acks {
        assert_eq!(within(ack).await["s"].outcome, Outcome::Sent);
    }
}

#[tokio::test]
async fn the_shutdown_deadline_fails_and_counts_what_is_left() {
    let sink = TestSink::new(Behaviour::Stall);
    let h = start(
        vec![("stuck", sink, BufferConfig::default())],
        vec![("main", vec![], vec!["stuck"])],
        Duration::from_millis(200),
    )
    .await;
    let mut acks = Vec::new();
    for _ in 0..25 {
        let (e, ack) = event("x").with_acknowledgement();
        h.dispatcher.send(e).await;
        acks.push(ack);
    }
    let report = h.finish().await;
    assert_eq!(report.undelivered["stuck"], 25);
    for ack in acks {
        let outcome = &within(ack).await["stuck"];
        assert_eq!(outcome.outcome, Outcome::Failed);
    }
}

#[tokio::test]
async fn events_failed_for_good_go_to_the_dead_letter_sink() {
    let mut rejecting = TestSink::new(Behaviour::Reject);
    rejecting.dead_letter = Some("file/dlq");
    let dlq = TestSink::new(Behaviour::Accept);
    let h = start(
        vec![
            ("spotify", rejecting, BufferConfig::default()),
            ("file/dlq", dlq.clone(), BufferConfig::default()),
        ],
        vec![("main", vec![], vec!["spotify"])],
        Duration::from_secs(5),
    )
    .await;
    let (e, ack) = event("purchase").with_acknowledgement();
    h.dispatcher.send(e).await;
    let outcomes = within(ack).await;
    assert_eq!(outcomes["spotify"].outcome, Outcome::Failed);
    assert_eq!(
        outcomes["spotify"].reason.as_deref(),
        Some("rejected: HTTP 400: bad event (dead-lettered to file/dlq)")
    );
    assert!(
        !outcomes.contains_key("file/dlq"),
        "the dead letter is a new delivery"
    );
    within(async {
        while dlq.events() < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let kept = dlq.seen.lock().unwrap()[0][0].clone();
    assert_eq!(kept.event_name(), Some("purchase"));
    assert_eq!(kept.data["dead_letter"]["sink"], json!("spotify"));
    assert_eq!(
        kept.data["dead_letter"]["reason"],
        json!("rejected: HTTP 400: bad event")
    );
    assert_eq!(kept.data["dead_letter"]["request"], json!({"sent": true}));
    assert!(h.finish().await.undelivered.is_empty());
}
