//! How a driver turns a batch into one call of its sink: events or prepared events.

use std::sync::Arc;

use super::*;
use crate::component::Prepare;
use crate::event::RequestContext;

fn sink() -> ComponentId {
    ComponentId::parse("console").unwrap()
}

/// An event queued for `console`, and the receiver of its outcomes.
fn queued(event: Queued) -> (QueuedEvent, crate::ack::AckReceiver) {
    let (mut carrier, ack) = Event::new(
        crate::EventData::new(),
        Arc::new(RequestContext::detached()),
    )
    .with_acknowledgement();
    let item = QueuedEvent {
        event,
        token: DeliveryToken::new(carrier.ack.take(), &sink()),
        seq: None,
    };
    (item, ack)
}

fn named(name: &str) -> Event {
    let mut data = crate::EventData::new();
    data.insert("event_name", name.into());
    Event::new(data, Arc::new(RequestContext::detached()))
}

fn accept_all() -> SinkService {
    service_fn(
        |events: Vec<Event>| async move { Ok(vec![DestinationOutcome::sent(); events.len()]) },
    )
}

/// Should prepared items ever reach a sink that takes events (a reload gives such a sink a new
/// queue), they fail at once, with why, and the events go on.
#[tokio::test]
async fn an_events_sink_fails_prepared_items_with_the_reason_and_sends_the_events() {
    let stats = SinkStats::default();
    let mut calls = SinkCalls::Events(accept_all());
    let (prepared, prepared_ack) = queued(Queued::Prepared(Prepared::new(7_u8)));
    let (event, event_ack) = queued(Queued::Event(named("purchase")));
    let mut batch = vec![prepared, event];
    let (tokens, call) = calls
        .call(&sink(), &mut batch, false, &stats)
        .await
        .expect("an event to send");
    assert!(batch.is_empty());
    assert_eq!(tokens.len(), 1);
    let failed = prepared_ack.await;
    assert_eq!(failed["console"].outcome, Outcome::Failed);
    assert!(
        failed["console"]
            .reason
            .as_deref()
            .unwrap()
            .contains("another type of sink prepared"),
        "{failed:?}"
    );
    assert_eq!(SinkStats::get(&stats.failed), 1);
    assert_eq!(call.await.unwrap().len(), 1);
    drop(tokens);
    drop(event_ack);
    // Nothing left to send: no call at all.
    let (prepared, _ack) = queued(Queued::Prepared(Prepared::new(7_u8)));
    assert!(
        calls
            .call(&sink(), &mut vec![prepared], false, &stats)
            .await
            .is_none()
    );
}

struct Upper;

impl Prepare for Upper {
    fn prepare(&self, event: &Event) -> Prepared {
        Prepared::new(event.event_name().unwrap_or_default().to_uppercase())
    }
}

/// A preparing sink gets one batch of prepared items: queued events are prepared by the driver
/// (and kept for dead letters when asked), prepared ones passed on as they are.
#[tokio::test]
async fn a_preparing_sink_gets_queued_events_prepared_by_the_driver() {
    let stats = SinkStats::default();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut calls = SinkCalls::Prepared(PreparedSink {
        prepare: Arc::new(Upper),
        service: service_with(seen.clone(), |seen, batch: Vec<Prepared>| async move {
            let n = batch.len();
            for item in batch {
                seen.lock()
                    .unwrap()
                    .push(item.downcast::<String>().unwrap());
            }
            vec![DestinationOutcome::sent(); n]
        }),
    });
    for keep_events in [false, true] {
        let mut batch = vec![
            QueuedEvent {
                event: Queued::Prepared(Prepared::new("EARLY".to_owned())),
                token: DeliveryToken::new(None, &sink()),
                seq: None,
            },
            QueuedEvent {
                event: Queued::Event(named("late")),
                token: DeliveryToken::new(None, &sink()),
                seq: None,
            },
        ];
        let (tokens, call) = calls
            .call(&sink(), &mut batch, keep_events, &stats)
            .await
            .unwrap();
        assert_eq!(call.await.unwrap().len(), 2);
        let kept: Vec<bool> = tokens.iter().map(|(_, event)| event.is_some()).collect();
        assert_eq!(kept, [false, keep_events]);
    }
    assert_eq!(*seen.lock().unwrap(), ["EARLY", "LATE", "EARLY", "LATE"]);
}

/// A sink whose service is never ready (its `poll_ready` fails).
struct NeverReady;

impl Service<Vec<Event>> for NeverReady {
    type Response = Vec<DestinationOutcome>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Vec<DestinationOutcome>, BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Err("destination down".into()))
    }

    fn call(&mut self, _events: Vec<Event>) -> Self::Future {
        Box::pin(async { Err("called without being ready".into()) })
    }
}

/// Three events through a disk buffer to a sink whose service is never ready, with or without
/// a dead-letter sink: their outcomes, and what the buffer keeps once reopened.
async fn never_ready_with_disk(
    name: &str,
    dead_letter: Option<SinkInput>,
) -> (Vec<crate::EventOutcomes>, usize) {
    let dir = std::env::temp_dir().join(format!("tagpipe-driver-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = crate::queue::BufferConfig {
        kind: crate::queue::BufferKind::Disk,
        path: Some(dir.join("buffer.redb")),
        ..crate::queue::BufferConfig::default()
    };
    let (input, queue, stats) = crate::queue::channel(sink(), &config).unwrap();
    let mut acks = Vec::new();
    for name in ["a", "b", "c"] {
        let (mut event, ack) = named(name).with_acknowledgement();
        let item = QueuedEvent {
            token: DeliveryToken::new(event.ack.take(), &sink()),
            event: Queued::Event(event),
            seq: None,
        };
        input.send(item, true).await.map_err(|(_, e)| e).unwrap();
        acks.push(ack);
    }
    assert_eq!(queue.len(), 3);
    drop(input);
    let parts = SinkParts {
        service: SinkCalls::Events(tower::util::BoxService::new(NeverReady)),
        batch: BatchSettings {
            max_events: 2,
            timeout: std::time::Duration::ZERO,
        },
        concurrency: 1,
        wait_for_delivery: true,
    };
    let (control, _handover) = DriverControl::new(CancellationToken::new());
    let report = run(
        sink(),
        Handover {
            queue,
            pending: Vec::new(),
        },
        parts,
        stats.clone(),
        dead_letter,
        SinkInstruments::new(&sink(), 1000),
        control,
    )
    .await;
    assert_eq!(report.undelivered, 0);
    assert_eq!(SinkStats::get(&stats.failed), 3);
    let mut outcomes = Vec::new();
    for ack in acks {
        outcomes.push(ack.await);
    }
    // The buffer's writer thread commits the removals, then lets go of the file once the last
    // handle has gone: until then redb refuses to open it again (and `DiskQueue::open` would
    // take it for damaged).
    let path = dir.join("buffer.redb");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match redb::Database::create(&path) {
            Ok(_) => break,
            Err(error) if std::time::Instant::now() > deadline => panic!("{error}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    let reopened =
        crate::disk::DiskQueue::open(sink(), &path, 1000, None, std::time::Duration::ZERO).unwrap();
    let kept = reopened.len();
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
    (outcomes, kept)
}

/// Events a sink fails because its service is not ready have their outcome: their records
/// leave the disk buffer, as after a call — they are not sent (and failed) again at the next
/// start.
#[tokio::test]
async fn events_failed_for_a_service_not_ready_leave_the_disk_buffer() {
    let (outcomes, kept) = never_ready_with_disk("not-ready", None).await;
    for outcome in &outcomes {
        assert_eq!(outcome["console"].outcome, Outcome::Failed);
        assert_eq!(
            outcome["console"].reason.as_deref(),
            Some("destination down")
        );
    }
    assert_eq!(kept, 0, "the failed events left the disk buffer");
}

/// … and go to the sink's dead-letter sink first, like events a call failed.
#[tokio::test]
async fn events_failed_for_a_service_not_ready_are_dead_lettered() {
    let dead = ComponentId::parse("file/dead").unwrap();
    let (dead_input, mut dead_queue, _) =
        crate::queue::channel(dead, &crate::queue::BufferConfig::default()).unwrap();
    let (outcomes, kept) = never_ready_with_disk("dead-letter", Some(dead_input)).await;
    for outcome in &outcomes {
        let console = &outcome["console"];
        assert_eq!(console.outcome, Outcome::Failed);
        assert!(console.dead_lettered, "{console:?}");
    }
    assert_eq!(kept, 0);
    let mut dead_letters = Vec::new();
    dead_queue.take_waiting(&mut dead_letters, 10);
    let names: Vec<Option<&str>> = dead_letters
        .iter()
        .map(|item| {
            let event = item.event.as_event().unwrap();
            assert_eq!(
                event.data.get("dead_letter").unwrap()["reason"],
                "destination down"
            );
            event
                .data
                .get("event_name")
                .and_then(serde_json::Value::as_str)
        })
        .collect();
    assert_eq!(names, [Some("a"), Some("b"), Some("c")]);
}

/// A batch's completion dropped half-way (the shutdown deadline aborts its task at a wait):
/// the events the destination accepted, already counted as sent, complete as sent; the others
/// report that they were dropped before delivery.
#[tokio::test]
async fn sent_events_of_a_completion_dropped_half_way_still_complete_as_sent() {
    let mut acks = Vec::new();
    let mut tokens: Tokens = Vec::new();
    for _ in 0..4 {
        let (item, ack) = queued(Queued::Event(named("purchase")));
        tokens.push((item.token, None));
        acks.push(ack);
    }
    let outcomes = vec![
        DestinationOutcome::sent(),
        DestinationOutcome::sent(),
        DestinationOutcome::failed("rejected"),
        DestinationOutcome::sent(),
    ];
    let mut entries = SentOnDrop(tokens.into_iter().zip(outcomes));
    // The first completes as it would in the loop; then the task is dropped.
    let ((token, _), outcome) = entries.0.next().unwrap();
    token.complete(outcome);
    drop(entries);
    let mut seen = Vec::new();
    for ack in acks {
        let outcome = ack.await["console"].clone();
        seen.push((outcome.outcome, outcome.reason));
    }
    assert_eq!(
        seen,
        [
            (Outcome::Sent, None),
            (Outcome::Sent, None),
            (
                Outcome::Failed,
                Some("event dropped before delivery (shutdown or abort)".to_owned())
            ),
            (Outcome::Sent, None),
        ]
    );
}
