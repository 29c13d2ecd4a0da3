//! Runtime behaviour: fan-out, per-sink queues and `when_full`, acknowledgements, processors'
//! skips, batching and shutdown — exercised through a real [`Topology`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tagpipe_core::batch::BatchSettings;
use tagpipe_core::component::{RunningSource, SinkParts};
use tagpipe_core::driver::{service_fn, service_with};
use tagpipe_core::queue::{BufferConfig, WhenFull};
use tagpipe_core::topology::{PipelineEntry, SinkEntry, Topology, TopologyConfig};
use tagpipe_core::{
    BoxError, BoxFuture, ComponentId, DestinationOutcome, Dispatcher, Disposition, Event,
    EventData, Outcome, PipelineService, Prepare, PreparedSink, ProcessorConfig, ProcessorContext,
    ProcessorLayer, RequestContext, SinkConfig, SinkContext, SourceConfig, SourceContext,
};
use tokio::sync::{Notify, oneshot};
use tower::{Service, ServiceExt};

/// A source that hands its dispatcher to the test and runs until shutdown.
#[derive(Debug)]
struct TestSource(Mutex<Option<oneshot::Sender<Dispatcher>>>);

impl SourceConfig for TestSource {
    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        let tx = self.0.lock().unwrap().take();
        Box::pin(async move {
            let tx = tx.ok_or("the test source is built only once")?;
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
    /// Lets go of the events at once (as a sink does once its request is built), notes the
    /// call with an empty batch, then waits for the gate and answers `sent`.
    ForgetThenGated,
}

/// A sink that records the batches it was called with.
#[derive(Debug, Clone)]
struct TestSink {
    behaviour: Behaviour,
    batch: BatchSettings,
    seen: Arc<Mutex<Vec<Vec<Event>>>>,
    gate: Arc<Notify>,
    dead_letter: Option<&'static str>,
    /// Set for a sink that prepares events (into their names): each one prepared, with the
    /// thread that prepared it, and then the names its prepared service was called with.
    preparing: Option<Prepared>,
    /// Prepares with [`OtherForm`] rather than [`NameOf`]: the same items, another preparer type.
    other_form: bool,
}

/// What a preparing [`TestSink`] saw.
#[derive(Debug, Clone, Default)]
struct Prepared {
    by: Arc<Mutex<Vec<(String, std::thread::ThreadId)>>>,
    sent: Arc<Mutex<Vec<String>>>,
}

/// Prepares an event into its name (`name#n` for a numbered one), noting the thread.
struct NameOf(Prepared);

impl Prepare for NameOf {
    fn prepare(&self, event: &Event) -> tagpipe_core::Prepared {
        let mut name = event.event_name().unwrap_or_default().to_owned();
        if let Some(n) = event.data.get("n") {
            name = format!("{name}#{n}");
        }
        self.0
            .by
            .lock()
            .unwrap()
            .push((name.clone(), std::thread::current().id()));
        tagpipe_core::Prepared::new(name)
    }
}

/// [`NameOf`] under another type: to the runtime, another form of prepared item.
struct OtherForm(NameOf);

impl Prepare for OtherForm {
    fn prepare(&self, event: &Event) -> tagpipe_core::Prepared {
        self.0.prepare(event)
    }
}

impl TestSink {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            batch: BatchSettings::UNBATCHED,
            seen: Arc::default(),
            gate: Arc::new(Notify::new()),
            dead_letter: None,
            preparing: None,
            other_form: false,
        }
    }
    /// A sink that prepares events as they are queued; `Accept`, `Reject` or `Gated` only.
    fn preparing(behaviour: Behaviour) -> Self {
        Self {
            preparing: Some(Prepared::default()),
            ..Self::new(behaviour)
        }
    }
    fn events(&self) -> usize {
        self.seen.lock().unwrap().iter().map(Vec::len).sum()
    }
    /// What a preparing sink's service was called with.
    fn prepared_sent(&self) -> Vec<String> {
        self.preparing
            .as_ref()
            .map(|p| p.sent.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

impl SinkConfig for TestSink {
    fn build(&self, _cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        let this = self.clone();
        if let Some(prepared) = self.preparing.clone() {
            let reject = matches!(self.behaviour, Behaviour::Reject);
            let gate = matches!(self.behaviour, Behaviour::Gated).then(|| self.gate.clone());
            let sink = PreparedSink {
                prepare: if self.other_form {
                    Arc::new(OtherForm(NameOf(prepared.clone())))
                } else {
                    Arc::new(NameOf(prepared.clone()))
                },
                service: service_with(
                    Arc::new(prepared),
                    move |seen, batch: Vec<tagpipe_core::Prepared>| {
                        let gate = gate.clone();
                        async move {
                            if let Some(gate) = gate {
                                gate.notified().await;
                            }
                            let n = batch.len();
                            for item in batch {
                                let name = item.downcast::<String>().expect("a name");
                                seen.sent.lock().unwrap().push(name);
                            }
                            let outcome = if reject {
                                DestinationOutcome::failed("rejected: HTTP 400: bad event")
                                    .with_request(json!({"sent": true}))
                            } else {
                                DestinationOutcome::sent()
                            };
                            vec![outcome; n]
                        }
                    },
                ),
            };
            return Box::pin(async move {
                Ok(SinkParts {
                    service: sink.into(),
                    batch: this.batch,
                    concurrency: 1,
                    wait_for_delivery: false,
                })
            });
        }
        Box::pin(async move {
            let service = service_fn(move |batch: Vec<Event>| {
                let this = this.clone();
                async move {
                    match this.behaviour {
                        Behaviour::Stall => std::future::pending::<()>().await,
                        Behaviour::Gated => this.gate.notified().await,
                        Behaviour::ForgetThenGated => {
                            let n = batch.len();
                            drop(batch);
                            this.seen.lock().unwrap().push(Vec::new());
                            this.gate.notified().await;
                            return Ok(vec![DestinationOutcome::sent(); n]);
                        }
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
                service: service.into(),
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
        Ok(ProcessorLayer::new(tower::layer::layer_fn(
            |inner: PipelineService| {
                PipelineService::boxing(tower::service_fn(move |mut event: Event| {
                    let mut inner = inner.clone();
                    async move {
                        if event.event_name() == Some("skip_me") {
                            return Ok(Disposition::Skipped("filter: skip_me".into()));
                        }
                        event.data_mut().insert("processed", json!(true));
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
    data.insert("event_name", json!(name));
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
    reloads: tokio::sync::mpsc::Sender<TopologyConfig>,
}

/// A topology config with the test source feeding `pipelines`. Every component's fingerprint
/// is 1 unless `fingerprints` says otherwise (a reload compares them to find changes).
fn topology_config(
    source: TestSource,
    sinks: Vec<(&str, TestSink, BufferConfig)>,
    pipelines: Vec<(&str, Vec<&str>, Vec<&str>)>,
    shutdown_timeout: Duration,
    fingerprints: &[(&str, u64)],
) -> TopologyConfig {
    let mut prints: std::collections::HashMap<ComponentId, u64> = sinks
        .iter()
        .map(|(name, _, _)| (id(name), 1))
        .chain([(id("test"), 1), (id("skip"), 1)])
        .collect();
    for (name, print) in fingerprints {
        prints.insert(id(name), *print);
    }
    TopologyConfig {
        sources: vec![(id("test"), Box::new(source))],
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
        fingerprints: prints,
    }
}

async fn start(
    sinks: Vec<(&str, TestSink, BufferConfig)>,
    pipelines: Vec<(&str, Vec<&str>, Vec<&str>)>,
    shutdown_timeout: Duration,
) -> Harness {
    let (tx, rx) = oneshot::channel();
    let source = TestSource(Mutex::new(Some(tx)));
    let config = topology_config(source, sinks, pipelines, shutdown_timeout, &[]);
    let topology = Topology::build(config).await.expect("builds");
    let shutdown = topology.shutdown_token();
    let signal = shutdown.clone();
    let (reloads, reload_rx) = tokio::sync::mpsc::channel(1);
    let run =
        tokio::spawn(topology.run_reloading(async move { signal.cancelled().await }, reload_rx));
    let dispatcher = rx.await.expect("source built");
    Harness {
        dispatcher,
        shutdown,
        run,
        reloads,
    }
}

/// One sink, fed by the test source through one pipeline, with a 5 s shutdown deadline.
async fn start_one(id: &str, sink: TestSink, buffer: BufferConfig) -> Harness {
    start(
        vec![(id, sink, buffer)],
        vec![("main", vec![], vec![id])],
        Duration::from_secs(5),
    )
    .await
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

/// One accepting sink, `batched`, with these batch settings, fed by pipeline `main`.
async fn start_batched(max_events: usize, timeout: Duration) -> (Harness, TestSink) {
    let mut sink = TestSink::new(Behaviour::Accept);
    sink.batch = BatchSettings {
        max_events,
        timeout,
    };
    let h = start(
        vec![("batched", sink.clone(), BufferConfig::default())],
        vec![("main", vec![], vec!["batched"])],
        Duration::from_secs(5),
    )
    .await;
    (h, sink)
}

/// The sizes of the batches `sink` got, in order.
fn batch_sizes(sink: &TestSink) -> Vec<usize> {
    sink.seen.lock().unwrap().iter().map(Vec::len).collect()
}

#[tokio::test]
async fn the_driver_batches_up_to_max_events() {
    let (h, sink) = start_batched(10, Duration::from_millis(50)).await;
    h.dispatcher
        .send_all((0..95).map(|_| event("x")).collect())
        .await;
    assert!(h.finish().await.undelivered.is_empty());
    let sizes = batch_sizes(&sink);
    assert_eq!(sizes.iter().sum::<usize>(), 95);
    assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    assert!(sizes.len() >= 10, "{sizes:?}");
}

/// Events that arrive while the driver lingers for the rest of a batch go out with that batch
/// at the timeout (the driver is not woken for each of them, but takes them all then).
#[tokio::test]
async fn events_arriving_while_a_batch_lingers_go_out_with_it_at_the_timeout() {
    let (h, sink) = start_batched(100, Duration::from_millis(300)).await;
    for _ in 0..5 {
        h.dispatcher.send(event("x")).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    within(async {
        while sink.seen.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(batch_sizes(&sink), [5], "one batch of all five");
    assert!(h.finish().await.undelivered.is_empty());
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

/// Counts what is added to each counter series, by its name and labels.
#[derive(Default)]
struct CountingRecorder(Mutex<Vec<(metrics::Key, Arc<std::sync::atomic::AtomicU64>)>>);

impl CountingRecorder {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(key, _)| {
                key.name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, count)| count.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut counters = self.0.lock().unwrap();
        let count = if let Some((_, count)) = counters.iter().find(|(k, _)| k == key) {
            count.clone()
        } else {
            let count = Arc::default();
            counters.push((key.clone(), Arc::clone(&count)));
            count
        };
        metrics::Counter::from_arc(count)
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Events failed at the shutdown deadline are counted in `tagpipe_events_failed_total` too,
/// not only in the sink's own figures: with batches of one and one call at a time, the stalled
/// call holds one event (dropped with its call, reported failed to its waiter), one more waits
/// in the driver's next batch and the rest in the queue.
#[tokio::test]
async fn events_failed_at_the_shutdown_deadline_are_counted_in_the_metrics() {
    let recorder = CountingRecorder::default();
    // The test runtime runs every task on this thread, where the recorder is installed. A sink
    // name of its own: the process-wide list of outcome series must not hold one registered
    // under another test's (or no) recorder.
    let _installed = metrics::set_default_local_recorder(&recorder);
    let mut sink = TestSink::new(Behaviour::Stall);
    sink.batch = BatchSettings {
        max_events: 1,
        timeout: Duration::ZERO,
    };
    let h = start(
        vec![("stuck/counted", sink, BufferConfig::default())],
        vec![("main", vec![], vec!["stuck/counted"])],
        Duration::from_millis(200),
    )
    .await;
    for _ in 0..25 {
        h.dispatcher.send(event("x")).await;
    }
    let report = h.finish().await;
    assert_eq!(report.undelivered["stuck/counted"], 25);
    let failed = recorder.value(
        "tagpipe_events_failed_total",
        &[
            ("sink", "stuck/counted"),
            ("reason", "shutdown deadline reached"),
        ],
    );
    assert_eq!(failed, 24);
}

/// Events a sink fails for good go to its dead-letter sink whole. A preparing sink's queue then
/// holds the events themselves: its driver prepares them just before the call (on a worker
/// thread, not in the fan-out on the test's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_failed_for_good_go_to_the_dead_letter_sink() {
    for preparing in [false, true] {
        let mut rejecting = if preparing {
            TestSink::preparing(Behaviour::Reject)
        } else {
            TestSink::new(Behaviour::Reject)
        };
        rejecting.dead_letter = Some("file/dlq");
        let prepared = rejecting.preparing.clone();
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
        if let Some(prepared) = prepared {
            let by = prepared.by.lock().unwrap().clone();
            assert_eq!(by.len(), 1);
            assert_ne!(
                by[0].1,
                std::thread::current().id(),
                "prepared by the driver, not in the fan-out"
            );
            assert_eq!(*prepared.sent.lock().unwrap(), ["purchase"]);
        }
        assert!(h.finish().await.undelivered.is_empty());
    }
}

/// A batch in flight does not keep its events alive once the sink has let go of them — unless
/// a dead-letter sink may still need them.
#[tokio::test]
async fn batches_in_flight_keep_their_events_only_for_a_dead_letter_sink() {
    for dead_letter in [None, Some("file/dlq")] {
        let mut sink = TestSink::new(Behaviour::ForgetThenGated);
        sink.dead_letter = dead_letter;
        let h = start(
            vec![
                ("spotify", sink.clone(), BufferConfig::default()),
                (
                    "file/dlq",
                    TestSink::new(Behaviour::Accept),
                    BufferConfig::default(),
                ),
            ],
            vec![("main", vec![], vec!["spotify"])],
            Duration::from_secs(5),
        )
        .await;
        let (e, ack) = event("purchase").with_acknowledgement();
        let data = Arc::downgrade(&e.data);
        h.dispatcher.send(e).await;
        within(async {
            while sink.seen.lock().unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(
            data.upgrade().is_some(),
            dead_letter.is_some(),
            "event data alive while in flight, with dead letter {dead_letter:?}"
        );
        sink.gate.notify_one();
        let outcomes = within(ack).await;
        assert_eq!(outcomes["spotify"].outcome, Outcome::Sent);
        assert!(h.finish().await.undelivered.is_empty());
    }
}

/// A sink that prepares its events gets each one prepared inside the fan-out — on the thread
/// that accepted it, here the test's own — and the event is freed there, before the sink's
/// driver even sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preparing_sink_prepares_events_where_they_are_accepted_and_frees_them_there() {
    let sink = TestSink::preparing(Behaviour::Accept);
    let seen = sink.preparing.clone().unwrap();
    let h = start_one("spotify", sink, BufferConfig::default()).await;
    let (e, ack) = event("purchase").with_acknowledgement();
    let data = Arc::downgrade(&e.data);
    h.dispatcher.send(e).await;
    assert!(data.upgrade().is_none(), "the event was freed once queued");
    let outcomes = within(ack).await;
    assert_eq!(outcomes["spotify"].outcome, Outcome::Sent);
    assert_eq!(
        *seen.by.lock().unwrap(),
        [("purchase".to_owned(), std::thread::current().id())]
    );
    assert_eq!(*seen.sent.lock().unwrap(), ["purchase"]);
    assert!(h.finish().await.undelivered.is_empty());
}

/// Reloads a preparing sink whose service holds its first call while the rest of 50 events wait
/// in its queue, prepared, replacing it with `new`; then releases the old service. Every event
/// must be sent; answers what the old service sent.
async fn reload_a_held_preparing_sink(new: &TestSink) -> Vec<String> {
    let old = TestSink::preparing(Behaviour::Gated);
    let h = start_one("out", old.clone(), buffer(1000, WhenFull::Block)).await;
    let mut acks = Vec::new();
    let mut send = async |range: std::ops::Range<usize>| {
        for n in range {
            let (e, ack) = numbered(n).with_acknowledgement();
            h.dispatcher.send(e).await;
            acks.push(ack);
        }
    };
    send(0..50).await;
    let reload = topology_config(
        same_source(),
        vec![("out", new.clone(), buffer(1000, WhenFull::Block))],
        vec![("main", vec![], vec!["out"])],
        Duration::from_secs(5),
        &[("out", 2)],
    );
    h.reloads.send(reload).await.unwrap();
    within(async {
        while new.events() + new.prepared_sent().len() == 0 {
            send(1000..1001).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut waiting = std::pin::pin!(futures_join_all(acks));
    let outcomes = within(async {
        loop {
            old.gate.notify_one();
            tokio::select! {
                outcomes = &mut waiting => break outcomes,
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    })
    .await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.values().all(|o| o.outcome == Outcome::Sent)),
        "{outcomes:?}"
    );
    assert!(h.finish().await.undelivered.is_empty());
    old.prepared_sent()
}

fn page_views(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("page_view#{n}")).collect()
}

/// A reload that replaces a preparing sink with one that cannot send what it prepared — a sink
/// that takes events, or one whose preparer is of another type — gives the new sink a new
/// queue: the old service delivers the old queue, in order; nothing fails or is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_form_of_sink_leaves_the_prepared_queue_to_the_old_service() {
    // The old service sends the old queue first, then whatever reached it before the switch.
    let old_sent_all = |sent: Vec<String>| {
        assert_eq!(sent[..50], page_views(0..50)[..]);
        assert!(sent[50..].iter().all(|n| n == "page_view#1000"), "{sent:?}");
    };
    let events = TestSink::new(Behaviour::Accept);
    old_sent_all(reload_a_held_preparing_sink(&events).await);
    assert!(numbers(&events).iter().all(|&n| n == 1000));

    let mut other = TestSink::preparing(Behaviour::Accept);
    other.other_form = true;
    old_sent_all(reload_a_held_preparing_sink(&other).await);
    assert!(other.prepared_sent().iter().all(|n| n == "page_view#1000"));
}

/// A reload that gives a dead-letter sink a new queue because its new preparer is of another
/// type (known only once it is built) rebuilds the unchanged sink that dead-letters to it: the
/// dead letters reach the new sink, not the old queue (which would then never close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_form_of_dead_letter_sink_rewires_the_sinks_that_use_it() {
    let mut rejecting = TestSink::new(Behaviour::Reject);
    rejecting.dead_letter = Some("file/dlq");
    let old_dlq = TestSink::preparing(Behaviour::Accept);
    let mut new_dlq = TestSink::preparing(Behaviour::Accept);
    new_dlq.other_form = true;
    let sinks = |dlq: &TestSink| {
        vec![
            ("spotify", rejecting.clone(), BufferConfig::default()),
            ("file/dlq", dlq.clone(), BufferConfig::default()),
        ]
    };
    let pipelines = || vec![("main", vec![], vec!["spotify"])];
    let h = start(sinks(&old_dlq), pipelines(), Duration::from_secs(5)).await;
    let reload = topology_config(
        same_source(),
        sinks(&new_dlq),
        pipelines(),
        Duration::from_secs(5),
        &[("file/dlq", 2)],
    );
    h.reloads.send(reload).await.unwrap();
    within(async {
        while new_dlq.prepared_sent().is_empty() {
            let (e, ack) = event("purchase").with_acknowledgement();
            h.dispatcher.send(e).await;
            let _ = ack.await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(new_dlq.prepared_sent()[0], "purchase");
    assert!(h.finish().await.undelivered.is_empty());
}

/// A reload that replaces a preparing sink with one of the same form (a changed setting) hands
/// the queue over: the new service sends what the old one had prepared and not yet sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_the_same_form_of_sink_hands_the_prepared_queue_over() {
    let same = TestSink::preparing(Behaviour::Accept);
    let mut sent = reload_a_held_preparing_sink(&same).await;
    // At most the call it held (if its driver had started it before the reload).
    assert!(sent.len() <= 1, "the old service sent {sent:?}");
    let taken_over = 50 - sent.len();
    sent.extend_from_slice(&same.prepared_sent()[..taken_over]);
    assert_eq!(sent, page_views(0..50), "each once, in order");
}

/// Waits for every future, in order.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

/// The source of a reload config: never built again while its fingerprint is unchanged.
fn same_source() -> TestSource {
    TestSource(Mutex::new(None))
}

fn numbered(n: usize) -> Event {
    let mut e = event("page_view");
    e.data_mut().insert("n", json!(n));
    e
}

/// The `n` of every event a sink saw.
fn numbers(sink: &TestSink) -> Vec<u64> {
    sink.seen
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|e| e.data["n"].as_u64().expect("numbered"))
        .collect()
}

/// Sends `total` numbered events, reloading with `reload` after `at` of them; answers once
/// every event has its outcome, which must be `sent` everywhere.
async fn send_with_a_reload_midway(h: &Harness, total: usize, at: usize, reload: TopologyConfig) {
    let mut acks = Vec::with_capacity(total);
    let mut reload = Some(reload);
    for n in 0..total {
        if n == at {
            h.reloads.send(reload.take().unwrap()).await.unwrap();
        }
        let (e, ack) = numbered(n).with_acknowledgement();
        h.dispatcher.send(e).await;
        acks.push(ack);
        if n % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for ack in acks {
        let outcomes = within(ack).await;
        assert!(
            outcomes.values().all(|o| o.outcome == Outcome::Sent),
            "{outcomes:?}"
        );
    }
}

/// Both sinks together saw every event exactly once, and each saw some.
fn assert_split_exactly_once(old: &TestSink, new: &TestSink, total: usize) {
    let mut all = numbers(old);
    all.extend(numbers(new));
    all.sort_unstable();
    let expected: Vec<u64> = (0..total as u64).collect();
    assert_eq!(all.len(), total, "events lost or repeated");
    assert_eq!(all, expected, "events lost or repeated");
    assert!(
        !numbers(old).is_empty(),
        "the old service sent the first events"
    );
    assert!(!numbers(new).is_empty(), "the new service took over");
}

fn slow_batched(behaviour: Behaviour) -> TestSink {
    let mut sink = TestSink::new(behaviour);
    sink.batch = BatchSettings {
        max_events: 20,
        timeout: Duration::from_millis(2),
    };
    sink
}

/// Sends `total` events through a sink that a reload replaces after `at` of them: the new
/// service takes over the queue, and both together see every event exactly once.
async fn handover_under_load(buffer: BufferConfig, total: usize, at: usize) {
    let old = slow_batched(Behaviour::Accept);
    let h = start(
        vec![("out", old.clone(), buffer.clone())],
        vec![("main", vec![], vec!["out"])],
        Duration::from_secs(5),
    )
    .await;
    let new = slow_batched(Behaviour::Accept);
    let reload = topology_config(
        same_source(),
        vec![("out", new.clone(), buffer)],
        vec![("main", vec![], vec!["out"])],
        Duration::from_secs(5),
        &[("out", 2)],
    );
    send_with_a_reload_midway(&h, total, at, reload).await;
    assert_split_exactly_once(&old, &new, total);
    assert!(h.finish().await.undelivered.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_hands_a_changed_sinks_memory_queue_to_its_new_service() {
    handover_under_load(buffer(64, WhenFull::Block), 3000, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_hands_a_changed_sinks_disk_buffer_to_its_new_service() {
    let dir = std::env::temp_dir().join(format!("tagpipe-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let disk = BufferConfig {
        kind: tagpipe_core::queue::BufferKind::Disk,
        path: Some(dir.join("out.redb")),
        max_events: 500,
        ..BufferConfig::default()
    };
    handover_under_load(disk, 600, 200).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reload_rewires_pipelines_under_a_running_source_and_keeps_unchanged_sinks() {
    let kept = TestSink::new(Behaviour::Accept);
    let added = TestSink::new(Behaviour::Accept);
    let h = start(
        vec![("kept", kept.clone(), BufferConfig::default())],
        vec![("main", vec![], vec!["kept"])],
        Duration::from_secs(5),
    )
    .await;
    let (e, ack) = event("before").with_acknowledgement();
    h.dispatcher.send(e).await;
    within(ack).await;
    // The new file adds a processor and a second sink to the pipeline; `kept` is unchanged.
    let reload = topology_config(
        same_source(),
        vec![
            ("kept", kept.clone(), BufferConfig::default()),
            ("added", added.clone(), BufferConfig::default()),
        ],
        vec![("main", vec!["skip"], vec!["kept", "added"])],
        Duration::from_secs(5),
        &[],
    );
    h.reloads.send(reload).await.unwrap();
    // The reload is applied by the run loop; the source's dispatcher sees it without a restart.
    within(async {
        while h.dispatcher.sinks().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (e, ack) = event("after").with_acknowledgement();
    h.dispatcher.send(e).await;
    let outcomes = within(ack).await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(kept.events(), 2);
    assert_eq!(added.events(), 1);
    let after = kept.seen.lock().unwrap()[1][0].clone();
    assert_eq!(
        after.data["processed"],
        json!(true),
        "the new processor runs"
    );
    assert!(h.finish().await.undelivered.is_empty());
}

/// A sink whose build fails (e.g. a bad credential file).
#[derive(Debug)]
struct BrokenSink;

impl SinkConfig for BrokenSink {
    fn build(&self, _cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        Box::pin(async { Err("cannot read the credentials file".into()) })
    }
}

#[tokio::test]
async fn a_reload_that_cannot_build_leaves_the_running_topology_untouched() {
    let sink = TestSink::new(Behaviour::Accept);
    let (tx, rx) = oneshot::channel();
    let mut topology = Topology::build(topology_config(
        TestSource(Mutex::new(Some(tx))),
        vec![("out", sink.clone(), BufferConfig::default())],
        vec![("main", vec![], vec!["out"])],
        Duration::from_secs(5),
        &[],
    ))
    .await
    .expect("builds");
    let mut broken = topology_config(
        same_source(),
        vec![("out", sink.clone(), BufferConfig::default())],
        vec![("main", vec![], vec!["out", "broken"])],
        Duration::from_secs(5),
        &[],
    );
    broken.sinks.push(SinkEntry {
        id: id("broken"),
        buffer: BufferConfig::default(),
        dead_letter: None,
        config: Box::new(BrokenSink),
    });
    let error = topology.apply(broken).await.expect_err("the reload fails");
    assert_eq!(error.component, id("broken"));
    assert!(error.to_string().contains("credentials"), "{error}");

    let shutdown = topology.shutdown_token();
    let signal = shutdown.clone();
    let run = tokio::spawn(topology.run(async move { signal.cancelled().await }));
    let dispatcher = rx.await.expect("source built");
    assert_eq!(dispatcher.sinks(), vec![id("out")], "old pipelines kept");
    let (e, ack) = event("page_view").with_acknowledgement();
    dispatcher.send(e).await;
    let outcomes = within(ack).await;
    assert_eq!(outcomes[&id("out").to_string()].outcome, Outcome::Sent);
    drop(dispatcher);
    shutdown.cancel();
    assert!(within(run).await.unwrap().undelivered.is_empty());
}

#[tokio::test]
async fn a_reload_refuses_to_change_an_open_disk_buffers_settings() {
    let dir = std::env::temp_dir().join(format!("tagpipe-reload-refuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let disk = BufferConfig {
        kind: tagpipe_core::queue::BufferKind::Disk,
        path: Some(dir.join("out.redb")),
        ..BufferConfig::default()
    };
    let sink = TestSink::new(Behaviour::Accept);
    let (tx, _rx) = oneshot::channel();
    let mut topology = Topology::build(topology_config(
        TestSource(Mutex::new(Some(tx))),
        vec![("out", sink.clone(), disk.clone())],
        vec![("main", vec![], vec!["out"])],
        Duration::from_secs(5),
        &[],
    ))
    .await
    .expect("builds");
    let bigger = BufferConfig {
        max_events: 50_000,
        ..disk
    };
    let error = topology
        .apply(topology_config(
            same_source(),
            vec![("out", sink, bigger)],
            vec![("main", vec![], vec!["out"])],
            Duration::from_secs(5),
            &[],
        ))
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("restart"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A source that names `dlq` as its dead-letter sink and hands out both of its dispatchers.
#[derive(Debug)]
struct DeadLetterSource(Mutex<Option<oneshot::Sender<SourceRoutes>>>);

/// A source's output and dead-letter dispatchers.
type SourceRoutes = (Dispatcher, Option<Dispatcher>);

impl SourceConfig for DeadLetterSource {
    fn dead_letter(&self) -> Option<&str> {
        Some("dlq")
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        let tx = self.0.lock().unwrap().take();
        Box::pin(async move {
            let tx = tx.ok_or("built only once")?;
            let _ = tx.send((cx.output.clone(), cx.dead_letter.clone()));
            let running: RunningSource = Box::pin(async move {
                cx.shutdown.cancelled().await;
                Ok(())
            });
            Ok(running)
        })
    }
}

#[tokio::test]
async fn a_reload_gives_an_unchanged_source_its_dead_letter_sinks_new_queue() {
    let out = TestSink::new(Behaviour::Accept);
    let old_dlq = TestSink::new(Behaviour::Accept);
    let new_dlq = TestSink::new(Behaviour::Accept);
    // The reload also adds a sink to the pipeline, which shows when it has been applied.
    let config = |dlq: &TestSink, max_events: usize, outs: Vec<&'static str>, source| {
        let mut sinks = vec![("dlq", dlq.clone(), buffer(max_events, WhenFull::Block))];
        sinks.extend(
            outs.iter()
                .map(|o| (*o, out.clone(), BufferConfig::default())),
        );
        let mut config = topology_config(
            same_source(),
            sinks,
            vec![("main", vec![], outs)],
            Duration::from_secs(5),
            &[],
        );
        let source: Box<dyn SourceConfig> = Box::new(source);
        config.sources = vec![(id("test"), source)];
        config
    };
    let (tx, rx) = oneshot::channel();
    let topology = Topology::build(config(
        &old_dlq,
        100,
        vec!["out"],
        DeadLetterSource(Mutex::new(Some(tx))),
    ))
    .await
    .expect("builds");
    let shutdown = topology.shutdown_token();
    let signal = shutdown.clone();
    let (reloads, reload_rx) = tokio::sync::mpsc::channel(1);
    let run =
        tokio::spawn(topology.run_reloading(async move { signal.cancelled().await }, reload_rx));
    let (output, dead_letter) = rx.await.expect("source built");
    let dead_letter = dead_letter.expect("the source got its dead-letter route");
    let (e, ack) = event("before").with_acknowledgement();
    dead_letter.send(e).await;
    within(ack).await;
    assert_eq!(old_dlq.events(), 1);

    // Only the dead-letter sink's buffer changes: the source itself stays as it is.
    reloads
        .send(config(
            &new_dlq,
            200,
            vec!["out", "out2"],
            DeadLetterSource(Mutex::new(None)),
        ))
        .await
        .unwrap();
    within(async {
        while output.sinks().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (e, ack) = event("after").with_acknowledgement();
    dead_letter.send(e).await;
    within(ack).await;
    assert_eq!(new_dlq.events(), 1, "the dead letter went to the new queue");
    assert_eq!(old_dlq.events(), 1, "nothing more reached the old one");
    shutdown.cancel();
    let report = within(run).await.expect("runs");
    assert!(report.undelivered.is_empty(), "{report:?}");
}
