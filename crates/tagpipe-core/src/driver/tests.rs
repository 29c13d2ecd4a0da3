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
        token: DeliveryToken::new(carrier.ack.take(), sink()),
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
        .call(&mut batch, false, &stats)
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
            .call(&mut vec![prepared], false, &stats)
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
                token: DeliveryToken::new(None, sink()),
                seq: None,
            },
            QueuedEvent {
                event: Queued::Event(named("late")),
                token: DeliveryToken::new(None, sink()),
                seq: None,
            },
        ];
        let (tokens, call) = calls.call(&mut batch, keep_events, &stats).await.unwrap();
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

/// Events a sink fails because its service is not ready have their outcome: their records
/// leave the disk buffer, as after a call — they are not sent (and failed) again at the next
/// start.
#[tokio::test]
async fn events_failed_for_a_service_not_ready_leave_the_disk_buffer() {
    let dir = std::env::temp_dir().join(format!("tagpipe-driver-{}-not-ready", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = crate::queue::BufferConfig {
        kind: crate::queue::BufferKind::Disk,
        path: Some(dir.join("buffer.redb")),
        ..crate::queue::BufferConfig::default()
    };
    let (input, queue, stats) = crate::queue::channel(sink(), &config).unwrap();
    let disk = queue.disk().expect("a disk queue");
    let mut acks = Vec::new();
    for name in ["a", "b", "c"] {
        let (mut event, ack) = named(name).with_acknowledgement();
        let item = QueuedEvent {
            token: DeliveryToken::new(event.ack.take(), sink()),
            event: Queued::Event(event),
            seq: None,
        };
        input.send(item, true).await.map_err(|(_, e)| e).unwrap();
        acks.push(ack);
    }
    assert_eq!(disk.len(), 3);
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
        None,
        SinkInstruments::new(&sink(), 1000),
        control,
    )
    .await;
    assert_eq!(report.undelivered, 0);
    for ack in acks {
        let outcomes = ack.await;
        assert_eq!(outcomes["console"].outcome, Outcome::Failed);
        assert_eq!(
            outcomes["console"].reason.as_deref(),
            Some("destination down")
        );
    }
    assert_eq!(SinkStats::get(&stats.failed), 3);
    assert_eq!(disk.len(), 0, "the failed events left the disk buffer");
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}
