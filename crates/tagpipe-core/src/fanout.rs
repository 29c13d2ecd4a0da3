//! The fan-out service at the end of every pipeline: one event into every sink's queue.
//!
//! No deep copy: each sink gets the same `Arc`ed data and context plus its own
//! [`DeliveryToken`] — or, for a sink that prepares events as they are queued
//! ([`crate::component::Prepare`]), its own prepared form, made here on the accepting thread.
//! Sinks whose preparers make the same items ([`Prepare::same_items_as`]) share one
//! preparation per event: the first of them to take the event prepares it, each but the last
//! takes a copy ([`Prepare::copy`]) and the last the item itself.
//! A full queue follows its sink's `when_full`: `drop_newest` fails the event
//! for that sink only, `block` waits for room (after every other sink has already got it).

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc::error::TrySendError;
use tower::Service;

use crate::ack::{DeliveryToken, DestinationOutcome};
use crate::component::{BoxError, Prepare, Prepared};
use crate::event::Event;
use crate::processor::{Disposition, PipelineFuture};
use crate::queue::{QueueTx, Queued, QueuedEvent, SinkInput, SinkStats, WhenFull};

/// Sends each event to every sink of a pipeline.
#[derive(Debug, Clone)]
pub struct FanOut {
    sinks: Arc<[SinkInput]>,
    /// Per sink (same order): whether it shares its preparation with other sinks.
    sharing: Arc<[Sharing]>,
    /// How many groups of sinks share a preparation.
    groups: usize,
}

/// Whether a sink prepares each event for itself or shares one preparation with other sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// It prepares its own (or does not prepare at all).
    Alone,
    /// One of a group whose preparers make the same items.
    Shared {
        /// The group's index among this fan-out's groups.
        group: usize,
        /// Whether a later sink of the group follows: this one then takes a copy and leaves
        /// the prepared item for the next; the last takes the item itself.
        more: bool,
    },
}

impl FanOut {
    /// A fan-out to these sinks' queues.
    pub fn new(sinks: Vec<SinkInput>) -> Self {
        let (sharing, groups) = sharing_plan(&sinks);
        Self {
            sinks: sinks.into(),
            sharing: sharing.into(),
            groups,
        }
    }
}

/// Which sinks share a preparation: those whose preparers make the same items, grouped with the
/// first of them; a sink with no such partner is alone. Also the number of groups.
fn sharing_plan(sinks: &[SinkInput]) -> (Vec<Sharing>, usize) {
    let preparer = |i: usize| sinks[i].prepare.as_deref();
    // Only preparers of one type can share: a group's items go into every member's queue.
    let same = |a: &dyn Prepare, b: &dyn Prepare| a.form() == b.form() && a.same_items_as(b);
    // Each preparing sink's leader: the first sink (itself, if none before it) making its items.
    let leader: Vec<Option<usize>> = (0..sinks.len())
        .map(|i| {
            let mine = preparer(i)?;
            (0..i)
                .find(|&j| preparer(j).is_some_and(|theirs| same(theirs, mine)))
                .or(Some(i))
        })
        .collect();
    let members = |l: usize| leader.iter().filter(|&&x| x == Some(l)).count();
    let mut group_of_leader = vec![0; sinks.len()];
    let mut groups = 0;
    let plan = (0..sinks.len())
        .map(|i| match leader[i] {
            Some(l) if members(l) > 1 => {
                if l == i {
                    group_of_leader[i] = groups;
                    groups += 1;
                }
                Sharing::Shared {
                    group: group_of_leader[l],
                    more: leader[i + 1..].contains(&Some(l)),
                }
            }
            _ => Sharing::Alone,
        })
        .collect();
    (plan, groups)
}

/// The prepared items a fan-out's groups of sharing sinks pass on while one event goes out.
struct Shelf(Vec<Option<Prepared>>);

impl Shelf {
    fn new(groups: usize) -> Self {
        Self((0..groups).map(|_| None).collect())
    }

    /// What goes into `sink`'s queue for `event`: its own preparation, or its group's — taken
    /// from the shelf, or made and, when more of the group follow, copied for them.
    fn queued(&mut self, sink: &SinkInput, sharing: Sharing, event: &Event) -> Queued {
        let (Sharing::Shared { group, more }, Some(prepare)) = (sharing, &sink.prepare) else {
            return sink.queued(event);
        };
        let mut prepared = self.0[group]
            .take()
            .unwrap_or_else(|| prepare.prepare(event));
        if more && let Some(copy) = prepare.copy(&mut prepared) {
            self.0[group] = Some(prepared);
            return Queued::Prepared(copy);
        }
        Queued::Prepared(prepared)
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
        let mut shelf = Shelf::new(self.groups);
        for (sink, &sharing) in self.sinks.iter().zip(self.sharing.iter()) {
            let mut item = |sink: &SinkInput| QueuedEvent {
                event: shelf.queued(sink, sharing, &event),
                token: DeliveryToken::new(ack.clone(), &sink.id),
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
                Ok(()) => {}
                Err(TrySendError::Full(())) => match sink.when_full {
                    WhenFull::DropNewest => {
                        SinkStats::add(&sink.stats.dropped_full, 1);
                        SinkStats::add(&sink.stats.failed, 1);
                        let outcome = DestinationOutcome::failed(
                            "queue full: event dropped (when_full: drop_newest)",
                        );
                        crate::telemetry::outcome(&sink.id, &outcome);
                        DeliveryToken::new(ack.clone(), &sink.id).complete(outcome);
                    }
                    WhenFull::Block => waiting.push((sink.clone(), item(sink))),
                },
                Err(TrySendError::Closed(())) => {
                    SinkStats::add(&sink.stats.failed, 1);
                    let outcome = DestinationOutcome::failed("sink has stopped");
                    crate::telemetry::outcome(&sink.id, &outcome);
                    DeliveryToken::new(ack.clone(), &sink.id).complete(outcome);
                }
            }
        }
        if waiting.is_empty() {
            return PipelineFuture::ready(Ok(Disposition::Forwarded));
        }
        PipelineFuture::Boxed(Box::pin(async move {
            for (sink, item) in waiting {
                match sink.send(item, sink.when_full == WhenFull::Block).await {
                    Ok(()) => {}
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

#[cfg(test)]
mod tests;
