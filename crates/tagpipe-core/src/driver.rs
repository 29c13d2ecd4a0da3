//! The shared sink driver: one task per sink that turns its queue into batched service calls.
//!
//! Like Vector's driver, it owns what every sink needs and no sink should write again: batching
//! (`max_events`, linger `timeout`), bounded concurrency, completing acknowledgements from the
//! service's per-event outcomes, counting, and the shutdown deadline. A sink only supplies its
//! `tower::Service` over batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use crate::ack::{DeliveryToken, DestinationOutcome, Outcome};
use crate::batch::BatchSettings;
use crate::component::{SinkParts, SinkService};
use crate::event::Event;
use crate::id::ComponentId;
use crate::queue::{QueueRx, QueuedEvent, SinkInput, SinkStats};
use crate::telemetry::{self, SinkInstruments};

/// How a sink's driver ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverReport {
    /// The sink.
    pub sink: ComponentId,
    /// Events that were still queued or in flight when the shutdown deadline came.
    pub undelivered: usize,
    /// Whether those events are kept in a disk buffer (delivered after the next start).
    pub kept_on_disk: bool,
}

/// Runs one sink: reads its queue until it is closed and empty, or until `abort` is cancelled
/// (the shutdown deadline), in which case everything still queued or in flight is failed and
/// counted.
pub async fn run(
    sink: ComponentId,
    mut queue: QueueRx,
    parts: SinkParts,
    stats: Arc<SinkStats>,
    dead_letter: Option<SinkInput>,
    instruments: SinkInstruments,
    abort: CancellationToken,
) -> DriverReport {
    let SinkParts {
        mut service,
        batch,
        concurrency,
        ..
    } = parts;
    let BatchSettings {
        max_events,
        timeout,
    } = batch;
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let in_flight_events = Arc::new(AtomicUsize::new(0));
    let mut in_flight = JoinSet::new();
    let mut batch: Vec<QueuedEvent> = Vec::with_capacity(max_events);

    let aborted = 'run: loop {
        // Wait for the first event of a batch.
        let received = tokio::select! {
            biased;
            () = abort.cancelled() => break 'run true,
            n = queue.recv_many(&mut batch, max_events) => n,
        };
        if received == 0 {
            break 'run false; // closed and empty
        }
        // Linger for more, up to the batch timeout.
        if batch.len() < max_events && !timeout.is_zero() {
            let deadline = Instant::now() + timeout;
            while batch.len() < max_events {
                let room = max_events - batch.len();
                tokio::select! {
                    biased;
                    () = abort.cancelled() => break 'run true,
                    () = tokio::time::sleep_until(deadline) => break,
                    n = queue.recv_many(&mut batch, room) => if n == 0 { break },
                }
            }
        }
        let permit = tokio::select! {
            biased;
            () = abort.cancelled() => break 'run true,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let ready = tokio::select! {
            biased;
            () = abort.cancelled() => break 'run true,
            ready = service.ready() => ready.map(|_| ()),
        };
        while in_flight.try_join_next().is_some() {}
        instruments.depth.set(queue.len() as f64);
        instruments.batch_size.record(batch.len() as f64);
        let seqs: Vec<u64> = batch.iter().filter_map(|item| item.seq).collect();
        let (events, tokens) = split(&mut batch);
        let count = tokens.len();
        if let Err(error) = ready {
            tracing::warn!(sink = %sink, %error, "sink not ready; failing batch");
            let tokens = tokens.into_iter().map(|(token, _)| token).collect();
            complete_all(
                tokens,
                &DestinationOutcome::failed(error.to_string()),
                &stats,
            );
            continue;
        }
        in_flight_events.fetch_add(count, Ordering::Relaxed);
        let call = service.call(events);
        let stats = stats.clone();
        let counter = in_flight_events.clone();
        let sink_id = sink.clone();
        let dead_letter = dead_letter.clone();
        let disk = queue.disk();
        let instruments = instruments.clone();
        in_flight.spawn(async move {
            let started = std::time::Instant::now();
            let result = call.await;
            instruments.duration.record(started.elapsed().as_secs_f64());
            complete_batch(
                &sink_id,
                tokens,
                result,
                &stats,
                dead_letter.as_ref(),
                &instruments,
            )
            .await;
            // Every event of the batch has its outcome: its record leaves the disk buffer.
            if let Some(disk) = disk {
                disk.ack(&seqs);
            }
            counter.fetch_sub(count, Ordering::Relaxed);
            drop(permit);
        });
    };

    if !aborted {
        // Queue closed: let in-flight calls finish, unless the deadline comes first.
        tokio::select! {
            biased;
            () = abort.cancelled() => {},
            () = async { while in_flight.join_next().await.is_some() {} } => {
                return DriverReport {
                    sink,
                    undelivered: 0,
                    kept_on_disk: false,
                };
            }
        }
    }

    // The shutdown deadline: fail whatever is left and say how much — except what a disk
    // buffer keeps for the next start.
    let mut undelivered = batch.len() + in_flight_events.load(Ordering::Relaxed);
    let kept = matches!(queue, QueueRx::Disk(_));
    let reason = if kept {
        "shutdown deadline reached: kept in the disk buffer for the next start"
    } else {
        "shutdown deadline reached before delivery"
    };
    for item in batch.drain(..) {
        SinkStats::add(&stats.failed, 1);
        item.token.complete(DestinationOutcome::failed(reason));
    }
    match &mut queue {
        QueueRx::Memory(rx) => {
            rx.close();
            while let Some(item) = rx.recv().await {
                undelivered += 1;
                SinkStats::add(&stats.failed, 1);
                item.token.complete(DestinationOutcome::failed(reason));
            }
        }
        QueueRx::Disk(disk) => {
            undelivered = disk.len();
            tracing::warn!(sink = %sink, kept = undelivered, "shutdown deadline: events kept in the disk buffer");
        }
    }
    // Aborted calls drop their tokens, which records them as failed.
    in_flight.shutdown().await;
    DriverReport {
        sink,
        undelivered,
        kept_on_disk: kept,
    }
}

/// The events for the service, and each token with a copy of its event (kept for dead letters;
/// a copy is two `Arc` clones).
fn split(batch: &mut Vec<QueuedEvent>) -> (Vec<Event>, Vec<(DeliveryToken, Event)>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut tokens = Vec::with_capacity(batch.len());
    for item in batch.drain(..) {
        tokens.push((item.token, item.event.clone()));
        events.push(item.event);
    }
    (events, tokens)
}

fn complete_all(tokens: Vec<DeliveryToken>, outcome: &DestinationOutcome, stats: &SinkStats) {
    count(stats, outcome.outcome, tokens.len());
    for token in &tokens {
        telemetry::outcome(token.sink(), outcome);
    }
    for token in tokens {
        token.complete(outcome.clone());
    }
}

fn count(stats: &SinkStats, outcome: Outcome, n: usize) {
    let counter = match outcome {
        Outcome::Sent => &stats.sent,
        Outcome::Skipped => &stats.skipped,
        Outcome::Failed => &stats.failed,
    };
    SinkStats::add(counter, n);
}

async fn complete_batch(
    sink: &ComponentId,
    tokens: Vec<(DeliveryToken, Event)>,
    result: Result<Vec<DestinationOutcome>, crate::component::BoxError>,
    stats: &SinkStats,
    dead_letter: Option<&SinkInput>,
    instruments: &SinkInstruments,
) {
    let n = tokens.len();
    let outcomes = match result {
        Ok(outcomes) if outcomes.len() == n => outcomes,
        Ok(outcomes) => {
            let message = format!(
                "sink {sink} answered {} outcomes for {n} events",
                outcomes.len()
            );
            tracing::error!(sink = %sink, "{message}");
            vec![DestinationOutcome::failed(message); n]
        }
        Err(error) => {
            tracing::warn!(sink = %sink, %error, events = n, "batch failed");
            vec![DestinationOutcome::failed(error.to_string()); n]
        }
    };
    for ((token, event), mut outcome) in tokens.into_iter().zip(outcomes) {
        if outcome.outcome == Outcome::Failed
            && let Some(target) = dead_letter
        {
            send_dead_letter(sink, target, event, &outcome).await;
            let reason = outcome.reason.take().unwrap_or_default();
            outcome.reason = Some(format!("{reason} (dead-lettered to {})", target.id));
        }
        count(stats, outcome.outcome, 1);
        if outcome.outcome == Outcome::Sent {
            instruments.sent.increment(1);
        } else {
            telemetry::outcome(sink, &outcome);
        }
        token.complete(outcome);
    }
}

/// Hands a failed event to the dead-letter sink, with why it failed and what was sent last:
/// its data plus `dead_letter: {sink, reason, request, at}`. Waits for room in that queue.
async fn send_dead_letter(
    sink: &ComponentId,
    target: &SinkInput,
    mut event: Event,
    outcome: &DestinationOutcome,
) {
    let mut note = serde_json::Map::new();
    note.insert("sink".into(), sink.as_str().into());
    note.insert(
        "reason".into(),
        outcome.reason.clone().unwrap_or_default().into(),
    );
    if let Some(request) = &outcome.request {
        note.insert("request".into(), request.clone());
    }
    note.insert("at".into(), crate::logs::now_ms().into());
    event
        .data_mut()
        .insert("dead_letter".into(), serde_json::Value::Object(note));
    let item = QueuedEvent {
        event,
        token: DeliveryToken::new(None, target.id.clone()),
        seq: None,
    };
    if target.send(item, true).await.is_ok() {
        SinkStats::add(&target.stats.queued, 1);
        metrics::counter!("tagpipe_events_dead_lettered_total", "sink" => sink.to_string(),
            "dead_letter" => target.id.to_string())
        .increment(1);
    } else {
        tracing::error!(
            sink = %sink,
            dead_letter = %target.id,
            "dead-letter sink has stopped: a failed event could not be kept"
        );
    }
}

/// A sink service from a closure over batches — handy for simple sinks and tests.
pub fn service_fn<F, Fut>(f: F) -> SinkService
where
    F: FnMut(Vec<Event>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<DestinationOutcome>, crate::component::BoxError>>
        + Send
        + 'static,
{
    SinkService::new(tower::service_fn(f))
}
