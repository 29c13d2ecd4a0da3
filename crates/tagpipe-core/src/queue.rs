//! Per-sink bounded queues. Every sink has its own queue and its own driver task, so a slow or
//! dead destination fills only its own queue; what happens then is the sink's `when_full`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::ack::DeliveryToken;
use crate::event::Event;
use crate::id::ComponentId;

/// The `buffer:` section every sink accepts.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Where queued events are kept. Only `memory` for now.
    #[serde(rename = "type", default)]
    pub kind: BufferKind,
    /// How many events the queue holds before `when_full` applies. Default: 10000.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// What a full queue does with a new event. Default: `block`.
    #[serde(default)]
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferKind::default(),
            max_events: default_max_events(),
            when_full: WhenFull::default(),
        }
    }
}

fn default_max_events() -> usize {
    10_000
}

/// Where a sink's queue keeps its events.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// In memory, bounded by `max_events`.
    #[default]
    Memory,
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
    /// The event (its acknowledgement moved into `token`).
    pub event: Event,
    /// Reports this sink's outcome for the event.
    pub token: DeliveryToken,
}

/// Counters of one sink's queue, shared between its inputs and its driver.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events put in the queue.
    pub queued: AtomicU64,
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
#[derive(Debug, Clone)]
pub struct SinkInput {
    /// The sink's ID.
    pub id: ComponentId,
    pub(crate) tx: mpsc::Sender<QueuedEvent>,
    pub(crate) when_full: WhenFull,
    /// The sink's counters.
    pub stats: Arc<SinkStats>,
}

/// Creates a sink's queue.
pub fn channel(
    id: ComponentId,
    config: &BufferConfig,
) -> (SinkInput, mpsc::Receiver<QueuedEvent>, Arc<SinkStats>) {
    let (tx, rx) = mpsc::channel(config.max_events.max(1));
    let stats = Arc::new(SinkStats::default());
    (
        SinkInput {
            id,
            tx,
            when_full: config.when_full,
            stats: stats.clone(),
        },
        rx,
        stats,
    )
}
