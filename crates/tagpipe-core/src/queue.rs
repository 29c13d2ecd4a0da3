//! Per-sink bounded queues. Every sink has its own queue and its own driver task, so a slow or
//! dead destination fills only its own queue; what happens then is the sink's `when_full`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

use crate::ack::DeliveryToken;
use crate::component::{Prepare, Prepared};
use crate::disk::DiskQueue;
use crate::event::Event;
use crate::id::ComponentId;

/// The `buffer:` section every sink accepts.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Where queued events are kept: `memory` (default) or `disk` (durable: survives crashes
    /// and restarts; needs `path`).
    #[serde(rename = "type", default)]
    pub kind: BufferKind,
    /// How many events the queue holds before `when_full` applies. Default: 1000 (about 1–2 MB
    /// of typical web events, a few seconds of a busy site): memory stays bounded when a
    /// destination is slower than the traffic. Raise it, or use `disk`, to ride out longer
    /// outages in `block` mode without back-pressure reaching the source.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// What a full queue does with a new event. Default: `block`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// For `disk`: the most bytes of events it holds before `when_full` applies (in addition to
    /// `max_events`). Default: no byte bound.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// For `disk`: the buffer file (its directory is created). Required for `disk`.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// For `disk`: how long the writer may gather more events into one commit (one fsync).
    /// `0ms` (default): commit what is pending at once — every accepted event is on disk
    /// before its source answers either way.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub fsync_interval: Option<std::time::Duration>,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferKind::default(),
            max_events: default_max_events(),
            when_full: WhenFull::default(),
            max_bytes: None,
            path: None,
            fsync_interval: None,
        }
    }
}

fn default_max_events() -> usize {
    1_000
}

/// Where a sink's queue keeps its events.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// In memory, bounded by `max_events`.
    #[default]
    Memory,
    /// On disk (redb), bounded by `max_events`.
    Disk,
}

impl BufferConfig {
    /// Pure checks (`field` is where the section sits, e.g. `buffer`).
    pub fn problems(&self, field: &str) -> Vec<crate::ValidationError> {
        let mut p = Vec::new();
        if self.max_events == 0 {
            p.push(crate::ValidationError::new(
                format!("{field}.max_events"),
                "must be at least 1",
            ));
        }
        match (self.kind, &self.path) {
            (BufferKind::Disk, None) => p.push(crate::ValidationError::new(
                format!("{field}.type"),
                "a disk buffer needs `path`",
            )),
            (BufferKind::Memory, Some(_)) => p.push(crate::ValidationError::new(
                format!("{field}.path"),
                "only for `type: disk`",
            )),
            _ => {}
        }
        if self.kind == BufferKind::Memory && self.max_bytes.is_some() {
            p.push(crate::ValidationError::new(
                format!("{field}.max_bytes"),
                "only for `type: disk` (a memory queue is bounded by max_events)",
            ));
        }
        p
    }
}

/// What a full queue does with a new event.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: back-pressure reaches the pipeline and its source (and so every other
    /// sink of that pipeline once this queue is full).
    #[default]
    Block,
    /// Drop the new event for this sink only; its outcome there is `failed` with the reason.
    DropNewest,
}

/// An event waiting in a sink's queue, with the obligation to report its outcome.
#[derive(Debug)]
pub struct QueuedEvent {
    /// The event (its acknowledgement moved into `token`), or what the sink made of it.
    pub event: Queued,
    /// Reports this sink's outcome for the event.
    pub token: DeliveryToken,
    /// Its record in a disk buffer, removed once the event has an outcome.
    pub seq: Option<u64>,
}

/// What waits in a sink's queue for one event.
#[derive(Debug)]
pub enum Queued {
    /// The event itself.
    Event(Event),
    /// The sink's prepared form of it (see [`Prepare`]): the event was freed when queued.
    Prepared(Prepared),
}

impl Queued {
    /// The event, unless it was prepared.
    pub fn as_event(&self) -> Option<&Event> {
        match self {
            Self::Event(event) => Some(event),
            Self::Prepared(_) => None,
        }
    }
}

impl From<Event> for Queued {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

/// Counters of one sink's queue, shared between its inputs and its driver.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events dropped because the queue was full (`when_full: drop_newest`).
    pub dropped_full: AtomicU64,
    /// Events the destination accepted.
    pub sent: AtomicU64,
    /// Events the sink skipped on purpose.
    pub skipped: AtomicU64,
    /// Events that failed at the destination or were never delivered.
    pub failed: AtomicU64,
}

impl SinkStats {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The sending side of one sink's queue.
#[derive(Clone)]
pub struct SinkInput {
    /// The sink's ID.
    pub id: ComponentId,
    pub(crate) tx: QueueTx,
    pub(crate) when_full: WhenFull,
    /// The sink's counters.
    pub stats: Arc<SinkStats>,
    /// Set for a memory queue whose sink prepares events as they are queued (see [`Prepare`]).
    pub(crate) prepare: Option<Arc<dyn Prepare>>,
}

impl std::fmt::Debug for SinkInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkInput")
            .field("id", &self.id)
            .field("tx", &self.tx)
            .field("when_full", &self.when_full)
            .field("prepares", &self.prepare.is_some())
            .finish_non_exhaustive()
    }
}

impl SinkInput {
    /// Lets the sink prepare events as they enter its queue — a memory queue only (a disk
    /// buffer stores events); `None` queues events.
    pub fn prepare_with(&mut self, prepare: Option<Arc<dyn Prepare>>) {
        self.prepare = prepare.filter(|_| matches!(self.tx, QueueTx::Memory(_)));
    }

    /// The form events take as they enter this queue ([`Prepare::form`]), when they are
    /// prepared.
    pub(crate) fn prepared_form(&self) -> Option<std::any::TypeId> {
        self.prepare.as_deref().map(<dyn Prepare>::form)
    }

    /// What goes into the queue for `event`: the sink's prepared form, or the event.
    pub(crate) fn queued(&self, event: &Event) -> Queued {
        match &self.prepare {
            Some(prepare) => Queued::Prepared(prepare.prepare(event)),
            None => Queued::Event(event.clone()),
        }
    }

    /// Puts an event in the queue, waiting for room when `block` (a disk buffer answers once the
    /// event is on disk). On refusal the event comes back with the reason.
    pub(crate) async fn send(
        &self,
        item: QueuedEvent,
        block: bool,
    ) -> Result<(), (QueuedEvent, &'static str)> {
        match &self.tx {
            QueueTx::Memory(memory) if block => memory
                .send(item)
                .await
                .map_err(|closed| (closed.0, "sink has stopped")),
            QueueTx::Memory(memory) => memory.try_send(item).map_err(|e| match e {
                mpsc::error::TrySendError::Full(item) => {
                    (item, "queue full: event dropped (when_full: drop_newest)")
                }
                mpsc::error::TrySendError::Closed(item) => (item, "sink has stopped"),
            }),
            QueueTx::Disk(queue) => queue
                .push(item, block)
                .await
                .map_err(|(_, item)| (item, "disk buffer full or unwritable: event dropped")),
        }
    }
}

/// Where a sink's events go: a memory channel or a disk buffer.
#[derive(Debug)]
pub(crate) enum QueueTx {
    Memory(MemoryTx),
    Disk(Arc<DiskQueue>),
}

/// Wakes a memory queue's driver once as many events wait as the batch it lingers over still
/// has room for — or a quarter of the queue, if less — rather than at every event: each wake-up
/// is a poll of the driver on a thread that serves requests (sometimes a parked worker woken to
/// run it), and fewer of them serve more requests per second (BENCHMARKS.md, "The wake-up
/// session").
#[derive(Debug, Default)]
struct BatchWaker {
    /// Events the driver waits for; 0 while it waits for none (a send then wakes no one).
    wanted: AtomicUsize,
    notify: Notify,
}

impl BatchWaker {
    /// After a send: wakes the driver if `waiting` events are what it waits for. Only one
    /// sender wakes it for one wait.
    fn sent(&self, waiting: usize) {
        let wanted = self.wanted.load(Ordering::SeqCst);
        if wanted != 0
            && waiting >= wanted
            && self
                .wanted
                .compare_exchange(wanted, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            self.notify.notify_one();
        }
    }
}

/// Wakes the driver when a sender goes, so it notices a closed queue without waiting out its
/// batch timeout.
#[derive(Debug, Clone)]
struct WakeOnDrop(Arc<BatchWaker>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.notify.notify_one();
    }
}

/// The sending side of a memory queue: each way of putting an event in tells the
/// [`BatchWaker`].
#[derive(Debug, Clone)]
pub(crate) struct MemoryTx {
    /// Declared first, so it is dropped before `waker` wakes the driver.
    tx: mpsc::Sender<QueuedEvent>,
    waker: WakeOnDrop,
}

impl MemoryTx {
    /// Puts `item` in, waiting for room.
    async fn send(&self, item: QueuedEvent) -> Result<(), mpsc::error::SendError<QueuedEvent>> {
        self.tx.send(item).await?;
        self.sent();
        Ok(())
    }

    /// Puts `item` in if there is room now.
    fn try_send(&self, item: QueuedEvent) -> Result<(), mpsc::error::TrySendError<QueuedEvent>> {
        self.tx.try_send(item)?;
        self.sent();
        Ok(())
    }

    /// Puts the item `make` gives in if there is room now; `make` runs only then.
    pub(crate) fn try_send_with(
        &self,
        make: impl FnOnce() -> QueuedEvent,
    ) -> Result<(), mpsc::error::TrySendError<()>> {
        self.tx.try_reserve()?.send(make());
        self.sent();
        Ok(())
    }

    fn sent(&self) {
        let waiting = self.tx.max_capacity() - self.tx.capacity();
        self.waker.0.sent(waiting);
    }
}

/// The receiving side of a memory queue.
#[derive(Debug)]
pub struct MemoryRx {
    rx: mpsc::Receiver<QueuedEvent>,
    waker: Arc<BatchWaker>,
}

impl MemoryRx {
    /// Closes the queue: senders fail from now on; what waits can still be received.
    pub fn close(&mut self) {
        self.rx.close();
    }

    /// The next event; `None` once closed and empty.
    pub async fn recv(&mut self) -> Option<QueuedEvent> {
        self.rx.recv().await
    }

    /// See [`QueueRx::recv_batch`].
    async fn recv_batch(&mut self, out: &mut Vec<QueuedEvent>, limit: usize) -> usize {
        // The rest of the batch, but never more than a quarter of the queue: senders keep at
        // least three quarters of its room while the driver lingers.
        let wanted = limit.min(self.rx.max_capacity() / 4).max(1);
        let ready = |rx: &mpsc::Receiver<QueuedEvent>| rx.len() >= wanted || rx.is_closed();
        while !ready(&self.rx) {
            self.waker.wanted.store(wanted, Ordering::SeqCst);
            // Checked again once announced: a send just before the announcement saw none. The
            // fence keeps the queue's length (read with acquire ordering inside the channel)
            // from being read before the announcement is visible. A wake-up missed all the same
            // would only delay the batch to its timeout, where what waits is taken.
            std::sync::atomic::fence(Ordering::SeqCst);
            if ready(&self.rx) {
                break;
            }
            self.waker.notify.notified().await;
        }
        self.waker.wanted.store(0, Ordering::SeqCst);
        self.rx.recv_many(out, limit).await
    }
}

impl Clone for QueueTx {
    fn clone(&self) -> Self {
        match self {
            Self::Memory(tx) => Self::Memory(tx.clone()),
            Self::Disk(q) => {
                q.input_opened();
                Self::Disk(q.clone())
            }
        }
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        if let Self::Disk(q) = self {
            q.input_closed();
        }
    }
}

/// The receiving side of one sink's queue, for its driver.
#[derive(Debug)]
pub enum QueueRx {
    /// A memory channel.
    Memory(MemoryRx),
    /// A disk buffer.
    Disk(Arc<DiskQueue>),
}

impl QueueRx {
    /// Events waiting.
    pub fn len(&self) -> usize {
        match self {
            Self::Memory(memory) => memory.rx.len(),
            Self::Disk(q) => q.len(),
        }
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The disk buffer, for a disk queue.
    pub fn disk(&self) -> Option<Arc<DiskQueue>> {
        match self {
            Self::Disk(q) => Some(q.clone()),
            Self::Memory(_) => None,
        }
    }

    /// Waits for at least one event and takes up to `limit`; 0 once closed and empty.
    pub async fn recv_many(&mut self, out: &mut Vec<QueuedEvent>, limit: usize) -> usize {
        match self {
            Self::Memory(memory) => memory.rx.recv_many(out, limit).await,
            Self::Disk(q) => q.recv_many(out, limit).await,
        }
    }

    /// Takes up to `limit` events that wait now, without waiting for any. (A disk queue's
    /// driver has taken them as they came: see [`recv_batch`](Self::recv_batch).)
    pub fn take_waiting(&mut self, out: &mut Vec<QueuedEvent>, limit: usize) {
        if let Self::Memory(memory) = self {
            for _ in 0..limit {
                let Ok(item) = memory.rx.try_recv() else {
                    break;
                };
                out.push(item);
            }
        }
    }

    /// Waits until `limit` events wait — or a quarter of the queue, if less — or the queue
    /// closes, then takes up to `limit`; 0 once closed and empty. For a driver lingering over a
    /// batch: one wake-up for the rest of the batch (or per quarter of the queue) rather than one
    /// per event. A disk queue takes what there is, as [`recv_many`](Self::recv_many).
    pub async fn recv_batch(&mut self, out: &mut Vec<QueuedEvent>, limit: usize) -> usize {
        match self {
            Self::Memory(memory) => memory.recv_batch(out, limit).await,
            Self::Disk(q) => q.recv_many(out, limit.max(1)).await,
        }
    }
}

/// Creates a sink's queue (opening its disk buffer, for `type: disk`).
pub fn channel(
    id: ComponentId,
    config: &BufferConfig,
) -> Result<(SinkInput, QueueRx, Arc<SinkStats>), String> {
    let stats = Arc::new(SinkStats::default());
    let (tx, rx) = match (config.kind, &config.path) {
        (BufferKind::Disk, Some(path)) => {
            let queue = DiskQueue::open(
                id.clone(),
                path,
                config.max_events,
                config.max_bytes,
                config.fsync_interval.unwrap_or_default(),
            )?;
            queue.input_opened();
            (QueueTx::Disk(queue.clone()), QueueRx::Disk(queue))
        }
        (BufferKind::Disk, None) => return Err("a disk buffer needs `path`".into()),
        (BufferKind::Memory, _) => {
            let (tx, rx) = mpsc::channel(config.max_events.max(1));
            let waker = Arc::new(BatchWaker::default());
            (
                QueueTx::Memory(MemoryTx {
                    tx,
                    waker: WakeOnDrop(waker.clone()),
                }),
                QueueRx::Memory(MemoryRx { rx, waker }),
            )
        }
    };
    Ok((
        SinkInput {
            id,
            tx,
            when_full: config.when_full,
            stats: stats.clone(),
            prepare: None,
        },
        rx,
        stats,
    ))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    use super::*;
    use crate::event::RequestContext;

    type MemoryQueue = (SinkInput, QueueRx);

    fn memory_queue(max_events: usize) -> MemoryQueue {
        let config = BufferConfig {
            max_events,
            ..BufferConfig::default()
        };
        let (input, rx, _) = channel(ComponentId::parse("console").unwrap(), &config).unwrap();
        (input, rx)
    }

    async fn send_one(input: &SinkInput) {
        let event = Event::new(
            crate::EventData::new(),
            Arc::new(RequestContext::detached()),
        );
        let item = QueuedEvent {
            event: Queued::Event(event),
            token: DeliveryToken::new(None, &input.id),
            seq: None,
        };
        input.send(item, true).await.map_err(|(_, e)| e).unwrap();
    }

    /// Still waiting a while later (a slow machine only makes this more certain).
    async fn still_waiting<F: Future>(wait: std::pin::Pin<&mut F>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), wait)
            .await
            .is_err()
    }

    /// Counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_waiting_driver_is_woken_once_for_the_wanted_events_not_at_each_send() {
        let (input, mut rx) = memory_queue(100);
        let mut out = Vec::new();
        let counter = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let wakes = || counter.0.load(Ordering::SeqCst);
        {
            let wait = rx.recv_batch(&mut out, 3);
            tokio::pin!(wait);
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            send_one(&input).await;
            send_one(&input).await;
            assert_eq!(wakes(), 0, "two of three sends: no wake-up");
            assert!(wait.as_mut().poll(&mut cx).is_pending(), "2 of 3 wanted");
            send_one(&input).await;
            assert_eq!(wakes(), 1, "the third send wakes it");
            assert!(matches!(
                wait.as_mut().poll(&mut cx),
                std::task::Poll::Ready(3)
            ));
        }
        assert_eq!(out.len(), 3);
    }

    /// A wait for up to `limit` events in a queue of `capacity` still waits after `wanted - 1`
    /// sends and ends at the `wanted`th, taking them all.
    async fn a_wait_ends_at_send(capacity: usize, limit: usize, wanted: usize) -> MemoryQueue {
        let (input, mut rx) = memory_queue(capacity);
        let mut out = Vec::new();
        {
            let wait = rx.recv_batch(&mut out, limit);
            tokio::pin!(wait);
            for _ in 1..wanted {
                send_one(&input).await;
            }
            assert!(
                still_waiting(wait.as_mut()).await,
                "{} of {wanted}",
                wanted - 1
            );
            send_one(&input).await;
            assert_eq!(wait.await, wanted);
        }
        (input, rx)
    }

    #[tokio::test]
    async fn a_batch_wait_ends_once_the_rest_of_the_batch_waits() {
        a_wait_ends_at_send(1000, 200, 200).await;
    }

    #[tokio::test]
    async fn a_batch_wait_for_a_batch_bigger_than_a_quarter_of_the_queue_ends_at_the_quarter() {
        a_wait_ends_at_send(1000, 500, 250).await;
    }

    #[tokio::test]
    async fn a_batch_wait_ends_once_a_quarter_of_the_queue_waits() {
        let (input, mut rx) = a_wait_ends_at_send(8, 10, 2).await;
        let mut out = Vec::new();
        // What waits beyond the quarter is taken too, up to the limit.
        for _ in 0..5 {
            send_one(&input).await;
        }
        assert_eq!(rx.recv_batch(&mut out, 4).await, 4);
        assert_eq!(rx.len(), 1);
    }

    #[tokio::test]
    async fn a_batch_wait_ends_when_the_last_sender_goes_and_what_waits_is_taken_at_once() {
        let (input, mut rx) = memory_queue(100);
        let second = input.clone();
        let mut out = Vec::new();
        {
            let wait = rx.recv_batch(&mut out, 10);
            tokio::pin!(wait);
            send_one(&input).await;
            drop(input);
            assert!(still_waiting(wait.as_mut()).await, "a sender is left");
            send_one(&second).await;
            drop(second);
            assert_eq!(wait.await, 2);
        }
        assert_eq!(rx.recv_batch(&mut out, 10).await, 0, "closed and empty");

        let (input, mut rx) = memory_queue(100);
        send_one(&input).await;
        send_one(&input).await;
        let mut out = Vec::new();
        rx.take_waiting(&mut out, 1);
        assert_eq!(out.len(), 1, "at most the limit");
        rx.take_waiting(&mut out, 10);
        rx.take_waiting(&mut out, 10);
        assert_eq!(out.len(), 2, "what waits, without waiting for more");
    }
}
