//! The shared sink driver: one task per sink that turns its queue into batched service calls.
//!
//! Like Vector's driver, it owns what every sink needs and no sink should write again: batching
//! (`max_events`, linger `timeout`), bounded concurrency, completing acknowledgements from the
//! service's per-event outcomes, counting, and the shutdown deadline. A sink only supplies its
//! `tower::Service` over batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use crate::ack::{DeliveryToken, DestinationOutcome, Outcome};
use crate::batch::BatchSettings;
use crate::component::{
    BoxError, BoxFuture, Prepared, PreparedSink, SinkCalls, SinkParts, SinkService,
};
use crate::disk::DiskQueue;
use crate::event::Event;
use crate::id::ComponentId;
use crate::queue::{QueueRx, Queued, QueuedEvent, SinkInput, SinkStats};
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

/// A sink's queue as one driver hands it to the next on a reload: the receiving side, and the
/// events already taken from it but not yet sent (they go first).
#[derive(Debug)]
pub struct Handover {
    /// The queue.
    pub queue: QueueRx,
    /// Events taken from the queue that the old driver did not send.
    pub pending: Vec<QueuedEvent>,
}

impl Handover {
    /// A fresh queue, nothing pending.
    pub fn new(queue: QueueRx) -> Self {
        Self {
            queue,
            pending: Vec::new(),
        }
    }
}

/// Asks a running driver to stop taking events and hand its queue over (see [`run`]).
pub type HandoverRequest = oneshot::Sender<oneshot::Sender<Handover>>;

/// How a driver can be stopped early.
#[derive(Debug)]
pub struct DriverControl {
    /// The shutdown deadline: everything still queued or in flight is failed (or kept on disk).
    pub abort: CancellationToken,
    /// A reload replaces the sink's service: when a reply channel arrives here, the driver
    /// stops taking events, sends the queue (and what it took but did not send) back through
    /// it, and lets its calls in flight finish with the old service.
    pub handover: oneshot::Receiver<oneshot::Sender<Handover>>,
}

impl DriverControl {
    /// A control for a new driver, and the request side of its handover.
    pub fn new(abort: CancellationToken) -> (Self, HandoverRequest) {
        let (request, handover) = oneshot::channel();
        (Self { abort, handover }, request)
    }
}

/// Why the driver's loop ended.
enum Exit {
    /// The queue is closed and empty.
    Closed,
    /// The shutdown deadline.
    Aborted,
    /// A reload asked for the queue.
    HandedOver(oneshot::Sender<Handover>),
}

/// Runs one sink: reads its queue until it is closed and empty, until `abort` is cancelled
/// (the shutdown deadline), in which case everything still queued or in flight is failed and
/// counted, or until a reload asks for the queue (see [`DriverControl::handover`]).
pub async fn run(
    sink: ComponentId,
    start: Handover,
    parts: SinkParts,
    stats: Arc<SinkStats>,
    dead_letter: Option<SinkInput>,
    instruments: SinkInstruments,
    control: DriverControl,
) -> DriverReport {
    let DriverControl { abort, handover } = control;
    let Handover {
        mut queue,
        pending: mut batch,
    } = start;
    let mut driver = Driver {
        sink,
        permits: Arc::new(Semaphore::new(parts.concurrency.max(1))),
        batch_settings: parts.batch,
        calls: parts.service,
        stats,
        dead_letter,
        instruments,
        abort,
        handover: Some(handover),
        in_flight: JoinSet::new(),
        in_flight_events: Arc::new(AtomicUsize::new(0)),
    };
    let (aborted, queue) = loop {
        match driver.pump(&mut queue, &mut batch).await {
            Exit::Closed => break (false, Some(queue)),
            Exit::Aborted => break (true, Some(queue)),
            Exit::HandedOver(reply) => {
                // The next driver gets the queue and what was taken but not sent; the calls in
                // flight still finish here, with this service.
                let pending = std::mem::take(&mut batch);
                match reply.send(Handover { queue, pending }) {
                    Ok(()) => break (false, None),
                    Err(unclaimed) => {
                        // The reload gave up before taking it: carry on as before.
                        queue = unclaimed.queue;
                        batch = unclaimed.pending;
                    }
                }
            }
        }
    };
    driver.finish(aborted, queue, batch).await
}

impl SinkCalls {
    async fn ready(&mut self) -> Result<(), BoxError> {
        match self {
            Self::Events(service) => service.ready().await.map(|_| ()),
            Self::Prepared(sink) => sink.service.ready().await.map(|_| ()),
        }
    }

    /// Calls the sink with `batch` (emptied), keeping each event's token — with a copy of its
    /// event (two `Arc` clones) only when `keep_events`, for dead letters. Without a copy, an
    /// event is freed as soon as the sink lets go of it (the BigQuery sink: once its request is
    /// built; a preparing sink: once prepared) and every other sink is done with it, not when
    /// the batch's outcome comes. Events queued as such for a preparing sink (a disk buffer, a
    /// sink with a dead-letter sink, a queue taken over from a driver that queued events) are
    /// prepared here. Prepared items an events service cannot send fail at once; `None` when
    /// nothing is left to send.
    async fn call(
        &mut self,
        sink: &ComponentId,
        batch: &mut Vec<QueuedEvent>,
        keep_events: bool,
        stats: &SinkStats,
    ) -> Option<(Tokens, CallFuture)> {
        let mut tokens = Vec::with_capacity(batch.len());
        match self {
            Self::Events(service) => {
                let mut events = Vec::with_capacity(batch.len());
                let mut unsendable = Vec::new();
                for item in batch.drain(..) {
                    match item.event {
                        Queued::Event(event) => {
                            tokens.push((item.token, keep_events.then(|| event.clone())));
                            events.push(event);
                        }
                        // A reload gives a sink of another type a new queue (`Topology::apply`):
                        // a safety net, not a path events take.
                        Queued::Prepared(_) => unsendable.push(item.token),
                    }
                }
                if !unsendable.is_empty() {
                    complete_all(
                        sink,
                        unsendable,
                        &DestinationOutcome::failed(
                            "queued in a form another type of sink prepared, which this sink \
                             cannot send",
                        ),
                        stats,
                    );
                }
                (!events.is_empty()).then(|| (tokens, service.call(events)))
            }
            Self::Prepared(PreparedSink { prepare, service }) => {
                let mut prepared: Vec<Prepared> = Vec::with_capacity(batch.len());
                for item in batch.drain(..) {
                    let kept = match item.event {
                        Queued::Prepared(p) => {
                            prepared.push(p);
                            None
                        }
                        Queued::Event(event) => {
                            // Hundreds of events take a millisecond or more to prepare: let
                            // the requests waiting on this worker run in between.
                            tokio::task::coop::consume_budget().await;
                            prepared.push(prepare.prepare(&event));
                            keep_events.then_some(event)
                        }
                    };
                    tokens.push((item.token, kept));
                }
                (!prepared.is_empty()).then(|| (tokens, service.call(prepared)))
            }
        }
    }
}

/// Each event's token in a batch, with a copy of the event when it may be dead-lettered.
type Tokens = Vec<(DeliveryToken, Option<Event>)>;

/// One call of a sink's service.
type CallFuture = BoxFuture<'static, Result<Vec<DestinationOutcome>, BoxError>>;

/// One sink's driver state.
struct Driver {
    sink: ComponentId,
    calls: SinkCalls,
    batch_settings: BatchSettings,
    permits: Arc<Semaphore>,
    stats: Arc<SinkStats>,
    dead_letter: Option<SinkInput>,
    instruments: SinkInstruments,
    abort: CancellationToken,
    handover: Option<oneshot::Receiver<oneshot::Sender<Handover>>>,
    in_flight: JoinSet<()>,
    in_flight_events: Arc<AtomicUsize>,
}

impl Driver {
    /// Batches the queue into service calls until it is closed, the deadline comes or a reload
    /// asks for the queue. `batch` holds events taken from the queue and not yet sent.
    async fn pump(&mut self, queue: &mut QueueRx, batch: &mut Vec<QueuedEvent>) -> Exit {
        let BatchSettings {
            max_events,
            timeout,
        } = self.batch_settings;
        batch.reserve(max_events.saturating_sub(batch.len()));
        loop {
            // Wait for the first event of a batch (unless a handover brought some).
            if batch.is_empty() {
                let received = tokio::select! {
                    biased;
                    () = self.abort.cancelled() => return Exit::Aborted,
                    reply = requested(&mut self.handover) => return Exit::HandedOver(reply),
                    n = queue.recv_many(batch, max_events) => n,
                };
                if received == 0 {
                    return Exit::Closed;
                }
            }
            // Linger for more, up to the batch timeout. A memory queue wakes the loop once the
            // rest of the batch (at most a quarter of the queue) waits in it (`recv_batch`), not
            // at every event; the timer and the abort and handover waits are set up once per
            // batch, not again at each wake-up (a timer entry and two waiter registrations each
            // time).
            if batch.len() < max_events && !timeout.is_zero() {
                let linger = tokio::time::sleep_until(Instant::now() + timeout);
                let aborted = self.abort.cancelled();
                let handover = requested(&mut self.handover);
                tokio::pin!(linger, aborted, handover);
                while batch.len() < max_events {
                    let room = max_events - batch.len();
                    tokio::select! {
                        biased;
                        () = &mut aborted => return Exit::Aborted,
                        reply = &mut handover => return Exit::HandedOver(reply),
                        () = &mut linger => {
                            // What arrived while waiting for the rest goes with this batch.
                            queue.take_waiting(batch, room);
                            break;
                        }
                        n = queue.recv_batch(batch, room) => if n == 0 { break },
                    }
                }
            }
            let permit = tokio::select! {
                biased;
                () = self.abort.cancelled() => return Exit::Aborted,
                reply = requested(&mut self.handover) => return Exit::HandedOver(reply),
                permit = self.permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let ready = tokio::select! {
                biased;
                () = self.abort.cancelled() => return Exit::Aborted,
                reply = requested(&mut self.handover) => return Exit::HandedOver(reply),
                ready = self.calls.ready() => ready,
            };
            self.call(queue, batch, permit, ready).await;
        }
    }

    /// Sends one batch (or fails it when the service is not ready).
    async fn call(
        &mut self,
        queue: &QueueRx,
        batch: &mut Vec<QueuedEvent>,
        permit: tokio::sync::OwnedSemaphorePermit,
        ready: Result<(), crate::component::BoxError>,
    ) {
        while self.in_flight.try_join_next().is_some() {}
        self.instruments.depth.set(queue.len() as f64);
        self.instruments.batch_size.record(batch.len() as f64);
        let seqs: Vec<u64> = batch.iter().filter_map(|item| item.seq).collect();
        // Each early return below has given every event of the batch its outcome (a failed one
        // dead-lettered when the sink has a dead-letter sink): their records leave a disk buffer
        // as after a call (or a failed event would be sent again, and failed again, after every
        // restart).
        let disk = queue.disk();
        let outcomes_given = move |disk: Option<Arc<DiskQueue>>| {
            if let Some(disk) = disk {
                disk.ack(&seqs);
            }
        };
        if let Err(error) = ready {
            tracing::warn!(sink = %self.sink, %error, "sink not ready; failing batch");
            let keep_events = self.dead_letter.is_some();
            let tokens = batch
                .drain(..)
                .map(|item| match item.event {
                    Queued::Event(event) if keep_events => (item.token, Some(event)),
                    Queued::Event(_) | Queued::Prepared(_) => (item.token, None),
                })
                .collect();
            complete_batch(
                &self.sink,
                tokens,
                Err(error),
                &self.stats,
                self.dead_letter.as_ref(),
                &self.instruments,
            )
            .await;
            outcomes_given(disk);
            return;
        }
        let Some((tokens, call)) = self
            .calls
            .call(&self.sink, batch, self.dead_letter.is_some(), &self.stats)
            .await
        else {
            // Every item already has its outcome — only ever prepared items, which only come
            // from memory queues: a safety net for a disk buffer, should that change.
            outcomes_given(disk);
            return;
        };
        let count = tokens.len();
        self.in_flight_events.fetch_add(count, Ordering::Relaxed);
        let stats = self.stats.clone();
        let counter = self.in_flight_events.clone();
        let sink_id = self.sink.clone();
        let dead_letter = self.dead_letter.clone();
        let instruments = self.instruments.clone();
        self.in_flight.spawn(async move {
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
            outcomes_given(disk);
            counter.fetch_sub(count, Ordering::Relaxed);
            drop(permit);
        });
    }

    /// Lets the calls in flight finish (unless `aborted` or the deadline comes), then fails
    /// whatever is left — except what a disk buffer keeps for the next start — and says how
    /// much. `queue` is `None` when it was handed over.
    async fn finish(
        mut self,
        aborted: bool,
        queue: Option<QueueRx>,
        mut batch: Vec<QueuedEvent>,
    ) -> DriverReport {
        if !aborted {
            tokio::select! {
                biased;
                () = self.abort.cancelled() => {},
                () = async { while self.in_flight.join_next().await.is_some() {} } => {
                    return DriverReport {
                        sink: self.sink,
                        undelivered: 0,
                        kept_on_disk: false,
                    };
                }
            }
        }
        let stats = &self.stats;
        let mut undelivered = batch.len() + self.in_flight_events.load(Ordering::Relaxed);
        let kept = matches!(queue, Some(QueueRx::Disk(_)));
        let reason = if kept {
            "shutdown deadline reached: kept in the disk buffer for the next start"
        } else {
            "shutdown deadline reached before delivery"
        };
        // Taken but not sent, and still queued: failed and counted as such.
        let mut left: Vec<DeliveryToken> = batch.drain(..).map(|item| item.token).collect();
        match queue {
            Some(QueueRx::Memory(mut rx)) => {
                rx.close();
                while let Some(item) = rx.recv().await {
                    undelivered += 1;
                    left.push(item.token);
                }
            }
            Some(QueueRx::Disk(disk)) => {
                undelivered = disk.len();
                tracing::warn!(sink = %self.sink, kept = undelivered, "shutdown deadline: events kept in the disk buffer");
            }
            None => {}
        }
        complete_all(&self.sink, left, &DestinationOutcome::failed(reason), stats);
        // Aborted calls drop their tokens, which records them as failed.
        self.in_flight.shutdown().await;
        DriverReport {
            sink: self.sink,
            undelivered,
            kept_on_disk: kept,
        }
    }
}

/// Resolves when a reload asks for the queue; never, once the asking side is gone.
async fn requested(
    handover: &mut Option<oneshot::Receiver<oneshot::Sender<Handover>>>,
) -> oneshot::Sender<Handover> {
    if let Some(receiver) = handover {
        let asked = receiver.await;
        *handover = None;
        if let Ok(reply) = asked {
            return reply;
        }
    }
    std::future::pending().await
}

fn complete_all(
    sink: &ComponentId,
    tokens: Vec<DeliveryToken>,
    outcome: &DestinationOutcome,
    stats: &SinkStats,
) {
    count(stats, outcome.outcome, tokens.len());
    for _ in &tokens {
        telemetry::outcome(sink, outcome);
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
    tokens: Tokens,
    result: Result<Vec<DestinationOutcome>, BoxError>,
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
    // The sent events are counted once for the batch, before any token completes (a waiting
    // request then finds them counted): two shared counters written per batch, not per event.
    // Counted, they are completed as sent even if this task is dropped half-way (the shutdown
    // deadline aborting it at one of the waits below): the destination has them.
    let sent = outcomes
        .iter()
        .filter(|outcome| outcome.outcome == Outcome::Sent)
        .count();
    if sent > 0 {
        count(stats, Outcome::Sent, sent);
        instruments.sent.increment(sent as u64);
    }
    let mut entries = SentOnDrop(tokens.into_iter().zip(outcomes));
    for ((token, event), mut outcome) in entries.0.by_ref() {
        // Completing (and freeing) hundreds of events delays the requests waiting on this
        // worker thread: yield whenever tokio's cooperative budget is spent.
        tokio::task::coop::consume_budget().await;
        if outcome.outcome == Outcome::Failed
            && let Some(target) = dead_letter
            && let Some(event) = event
        {
            send_dead_letter(sink, target, event, &outcome).await;
            let reason = outcome.reason.take().unwrap_or_default();
            outcome.reason = Some(format!("{reason} (dead-lettered to {})", target.id));
            outcome.dead_lettered = true;
        }
        if outcome.outcome != Outcome::Sent {
            count(stats, outcome.outcome, 1);
            telemetry::outcome(sink, &outcome);
        }
        token.complete(outcome);
    }
}

/// A batch's tokens and outcomes still to complete. Dropped before the end, it completes those
/// whose event was sent (and counted so) as sent; the others drop, reporting their events as
/// failed, as a token dropped before delivery does.
struct SentOnDrop(
    std::iter::Zip<
        std::vec::IntoIter<(DeliveryToken, Option<Event>)>,
        std::vec::IntoIter<DestinationOutcome>,
    >,
);

impl Drop for SentOnDrop {
    fn drop(&mut self) {
        for ((token, _), outcome) in self.0.by_ref() {
            if outcome.outcome == Outcome::Sent {
                token.complete(outcome);
            }
        }
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
        .insert("dead_letter", serde_json::Value::Object(note));
    let item = QueuedEvent {
        event: Queued::Event(event),
        token: DeliveryToken::new(None, &target.id),
        seq: None,
    };
    if target.send(item, true).await.is_ok() {
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

/// The service of a sink whose state is shared by every call: each batch goes to
/// `deliver(state, batch)`, which answers one outcome per event (the service is always ready).
/// Most sinks are this: `service_with(Arc::new(client), |c, batch| async move { c.send(batch).await })`.
/// Batches are of events ([`SinkService`]) or, for a preparing sink, of prepared events
/// ([`PreparedService`](crate::component::PreparedService)).
pub fn service_with<R, T, F, Fut>(
    state: Arc<T>,
    deliver: F,
) -> tower::util::BoxService<Vec<R>, Vec<DestinationOutcome>, BoxError>
where
    R: Send + 'static,
    T: Send + Sync + 'static,
    F: Fn(Arc<T>, Vec<R>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<DestinationOutcome>> + Send + 'static,
{
    tower::util::BoxService::new(tower::service_fn(move |batch| {
        let outcomes = deliver(state.clone(), batch);
        async move { Ok(outcomes.await) }
    }))
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

#[cfg(test)]
mod tests;
