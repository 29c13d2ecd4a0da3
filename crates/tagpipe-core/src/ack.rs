//! Acknowledgements: the outcome of one event at every destination it reached.
//!
//! A source that wants to know what happened to an event (for a debug answer, or to answer the
//! client only after delivery) attaches an [`AckTracker`] with
//! [`Event::with_acknowledgement`](crate::Event::with_acknowledgement). Every copy of the event
//! shares the tracker; each sink copy carries a [`DeliveryToken`] that records that sink's
//! outcome. When the last copy and token are gone the tracker sends the collected
//! [`EventOutcomes`] to the [`AckReceiver`]. A token dropped without an outcome records
//! `failed` — an accepted event is never silently lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::id::ComponentId;

/// What happened to an event at one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Dropped on purpose (consent, filter, …); `reason` says why.
    Skipped,
    /// Delivered: the destination accepted it.
    Sent,
    /// Not delivered: rejected, out of retries, or dropped; `reason` says why.
    Failed,
}

/// The outcome at one destination, with its reason and what was sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DestinationOutcome {
    /// `sent`, `skipped` or `failed`.
    pub outcome: Outcome,
    /// Why it was skipped or failed (or a note on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was sent to the destination for this event (secrets redacted), when something was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// A failed event that its sink handed to its dead-letter sink (so it is kept: a source
    /// that redelivers on failure need not).
    #[serde(skip)]
    pub dead_lettered: bool,
}

impl DestinationOutcome {
    /// Delivered.
    pub fn sent() -> Self {
        Self {
            outcome: Outcome::Sent,
            reason: None,
            request: None,
            dead_lettered: false,
        }
    }

    /// Dropped on purpose.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Skipped,
            reason: Some(reason.into()),
            request: None,
            dead_lettered: false,
        }
    }

    /// Not delivered.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Failed,
            reason: Some(reason.into()),
            request: None,
            dead_lettered: false,
        }
    }

    /// Attaches what was sent for this event.
    pub fn with_request(mut self, request: Value) -> Self {
        self.request = Some(request);
        self
    }

    /// How strongly this outcome wins when one sink reports twice for the same event (it was fed
    /// by two pipelines): failed > sent > skipped.
    fn rank(&self) -> u8 {
        match self.outcome {
            Outcome::Skipped => 0,
            Outcome::Sent => 1,
            Outcome::Failed => 2,
        }
    }
}

/// The outcome of one event at each destination, keyed by sink id.
pub type EventOutcomes = BTreeMap<String, DestinationOutcome>;

/// Collects the outcomes of one event; reports them when the last reference is dropped.
#[derive(Debug)]
pub struct AckTracker {
    outcomes: Mutex<EventOutcomes>,
    notify: Option<oneshot::Sender<EventOutcomes>>,
}

impl AckTracker {
    pub(crate) fn new() -> (Arc<Self>, AckReceiver) {
        let (tx, rx) = oneshot::channel();
        let tracker = Arc::new(Self {
            outcomes: Mutex::new(BTreeMap::new()),
            notify: Some(tx),
        });
        (tracker, AckReceiver(rx))
    }

    /// Records `outcome` for `sink`, keeping the stronger one if the sink already reported.
    pub(crate) fn record(&self, sink: &ComponentId, outcome: DestinationOutcome) {
        let mut outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcomes.get_mut(sink.as_str()) {
            Some(existing) if existing.rank() >= outcome.rank() => {}
            Some(existing) => *existing = outcome,
            None => {
                outcomes.insert(sink.to_string(), outcome);
            }
        }
    }
}

impl Drop for AckTracker {
    fn drop(&mut self) {
        if let Some(tx) = self.notify.take() {
            let outcomes = std::mem::take(
                self.outcomes
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            // The receiver may have stopped waiting (client went away): nothing to do then.
            let _ = tx.send(outcomes);
        }
    }
}

/// Resolves to the outcomes of one event once every destination has reported.
#[derive(Debug)]
pub struct AckReceiver(oneshot::Receiver<EventOutcomes>);

impl Future for AckReceiver {
    type Output = EventOutcomes;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The tracker always sends before it goes away, so an error cannot happen; an empty map
        // is the honest answer if it ever did.
        Pin::new(&mut self.0)
            .poll(cx)
            .map(std::result::Result::unwrap_or_default)
    }
}

/// One sink's obligation to report an outcome for one event.
#[derive(Debug)]
pub struct DeliveryToken {
    /// Who waits for the outcome, and for which sink. `None` when nobody waits (an optimistic
    /// request): the sink's ID is then not kept, as cloning it would write its shared count —
    /// a cache line every thread that queues events for the sink writes — twice per event.
    tracked: Option<(Arc<AckTracker>, ComponentId)>,
}

impl DeliveryToken {
    /// A token for `sink`, reporting to `tracker` when there is one.
    pub fn new(tracker: Option<Arc<AckTracker>>, sink: &ComponentId) -> Self {
        Self {
            tracked: tracker.map(|tracker| (tracker, sink.clone())),
        }
    }

    /// Records the outcome and releases the event.
    pub fn complete(mut self, outcome: DestinationOutcome) {
        if let Some((tracker, sink)) = self.tracked.take() {
            tracker.record(&sink, outcome);
        }
    }

    /// Whether somebody waits for this outcome.
    pub fn is_tracked(&self) -> bool {
        self.tracked.is_some()
    }
}

impl Drop for DeliveryToken {
    fn drop(&mut self) {
        if let Some((tracker, sink)) = self.tracked.take() {
            tracker.record(
                &sink,
                DestinationOutcome::failed("event dropped before delivery (shutdown or abort)"),
            );
        }
    }
}

/// Records the same outcome for several sinks (a pipeline that skipped or failed an event).
pub(crate) fn record_all(
    tracker: Option<&Arc<AckTracker>>,
    sinks: &[ComponentId],
    outcome: &DestinationOutcome,
) {
    if let Some(tracker) = tracker {
        for sink in sinks {
            tracker.record(sink, outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ComponentId {
        ComponentId::parse(s).expect("valid id")
    }

    #[tokio::test]
    async fn reports_when_the_last_token_completes() {
        let (tracker, mut rx) = AckTracker::new();
        let a = DeliveryToken::new(Some(tracker.clone()), &id("console"));
        let b = DeliveryToken::new(Some(tracker.clone()), &id("file/out"));
        drop(tracker);
        a.complete(DestinationOutcome::sent());
        assert!(
            futures_poll_once(&mut rx).is_none(),
            "must wait for every destination"
        );
        b.complete(DestinationOutcome::skipped(
            "consent: ad_storage not granted",
        ));
        let outcomes = rx.await;
        assert_eq!(outcomes["console"].outcome, Outcome::Sent);
        assert_eq!(outcomes["file/out"].outcome, Outcome::Skipped);
        assert_eq!(
            outcomes["file/out"].reason.as_deref(),
            Some("consent: ad_storage not granted")
        );
    }

    #[tokio::test]
    async fn a_dropped_token_counts_as_failed() {
        let (tracker, rx) = AckTracker::new();
        let token = DeliveryToken::new(Some(tracker), &id("console"));
        drop(token);
        let outcomes = rx.await;
        assert_eq!(outcomes["console"].outcome, Outcome::Failed);
    }

    #[tokio::test]
    async fn the_stronger_outcome_wins_for_a_sink_fed_twice() {
        let (tracker, rx) = AckTracker::new();
        tracker.record(&id("s"), DestinationOutcome::skipped("filter"));
        tracker.record(&id("s"), DestinationOutcome::sent());
        tracker.record(&id("t"), DestinationOutcome::failed("400"));
        tracker.record(&id("t"), DestinationOutcome::sent());
        drop(tracker);
        let outcomes = rx.await;
        assert_eq!(outcomes["s"].outcome, Outcome::Sent);
        assert_eq!(outcomes["t"].outcome, Outcome::Failed);
    }

    #[test]
    fn serialises_as_the_debug_answer_expects() {
        let v = serde_json::to_value(
            DestinationOutcome::sent().with_request(serde_json::json!({"a": 1})),
        )
        .expect("serialisable");
        assert_eq!(
            v,
            serde_json::json!({"outcome": "sent", "request": {"a": 1}})
        );
    }

    fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(f).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}
