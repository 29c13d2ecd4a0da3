//! The fan-out service at the end of every pipeline: one event into every sink's queue.
//!
//! No deep copy: each sink gets the same `Arc`ed data and context plus its own
//! [`DeliveryToken`] — or, for a sink that prepares events as they are queued
//! ([`crate::component::Prepare`]), its own prepared form, made here on the accepting thread.
//! A full queue follows its sink's `when_full`: `drop_newest` fails the event
//! for that sink only, `block` waits for room (after every other sink has already got it).

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc::error::TrySendError;
use tower::Service;

use crate::ack::{DeliveryToken, DestinationOutcome};
use crate::component::BoxError;
use crate::event::Event;
use crate::processor::{Disposition, PipelineFuture};
use crate::queue::{QueueTx, QueuedEvent, SinkInput, SinkStats, WhenFull};

/// Sends each event to every sink of a pipeline.
#[derive(Debug, Clone)]
pub struct FanOut {
    sinks: Arc<[SinkInput]>,
}

impl FanOut {
    /// A fan-out to these sinks' queues.
    pub fn new(sinks: Vec<SinkInput>) -> Self {
        Self {
            sinks: sinks.into(),
        }
    }
}

impl Service<Event> for FanOut {
    type Response = Disposition;
    type Error = BoxError;
    /// Ready at once unless a `block` queue is full.
    type Future = PipelineFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut event: Event) -> Self::Future {
        let ack = event.ack.take();
        let mut waiting: Vec<(SinkInput, QueuedEvent)> = Vec::new();
        for sink in self.sinks.iter() {
            let item = |sink: &SinkInput| QueuedEvent {
                event: sink.queued(&event),
                token: DeliveryToken::new(ack.clone(), sink.id.clone()),
                seq: None,
            };
            let QueueTx::Memory(memory) = &sink.tx else {
                // A disk buffer answers once the event is on disk.
                waiting.push((sink.clone(), item(sink)));
                continue;
            };
            // Room first, then the item: a sink that prepares events does not prepare one that
            // a full queue drops.
            match memory.try_send_with(|| item(sink)) {
                Ok(()) => SinkStats::add(&sink.stats.queued, 1),
                Err(TrySendError::Full(())) => match sink.when_full {
                    WhenFull::DropNewest => {
                        SinkStats::add(&sink.stats.dropped_full, 1);
                        SinkStats::add(&sink.stats.failed, 1);
                        let outcome = DestinationOutcome::failed(
                            "queue full: event dropped (when_full: drop_newest)",
                        );
                        crate::telemetry::outcome(&sink.id, &outcome);
                        DeliveryToken::new(ack.clone(), sink.id.clone()).complete(outcome);
                    }
                    WhenFull::Block => waiting.push((sink.clone(), item(sink))),
                },
                Err(TrySendError::Closed(())) => {
                    SinkStats::add(&sink.stats.failed, 1);
                    DeliveryToken::new(ack.clone(), sink.id.clone())
                        .complete(DestinationOutcome::failed("sink has stopped"));
                }
            }
        }
        if waiting.is_empty() {
            return PipelineFuture::ready(Ok(Disposition::Forwarded));
        }
        PipelineFuture::Boxed(Box::pin(async move {
            for (sink, item) in waiting {
                match sink.send(item, sink.when_full == WhenFull::Block).await {
                    Ok(()) => SinkStats::add(&sink.stats.queued, 1),
                    Err((item, reason)) => {
                        SinkStats::add(&sink.stats.failed, 1);
                        if sink.when_full == WhenFull::DropNewest {
                            SinkStats::add(&sink.stats.dropped_full, 1);
                        }
                        let outcome = DestinationOutcome::failed(reason);
                        crate::telemetry::outcome(&sink.id, &outcome);
                        item.token.complete(outcome);
                    }
                }
            }
            Ok(Disposition::Forwarded)
        }))
    }
}
