//! The `nats` source: a durable pull consumer whose messages become events, each acked only
//! once every destination has an outcome.
//!
//! | outcome at every destination | what JetStream is told |
//! |---|---|
//! | `sent` or `skipped`, or `failed` and dead-lettered by its sink | ack |
//! | some other `failed`, deliveries < `max_deliver` | nak with `nak_delay`: redelivered |
//! | some other `failed`, last delivery | the event goes to `dead_letter` (if set), then ack |
//! | the message is not a tagpipe event | terminate (never redelivered), logged and counted |
//!
//! While a message's delivery is under way, JetStream is told every half `ack_wait` that it
//! is in progress, so slow destinations do not cause redeliveries. A message whose process dies
//! before it is acked is redelivered to another process after `ack_wait`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use tagpipe_core::component::RunningSource;
use tagpipe_core::striped::StripedCounter;
use tagpipe_core::{
    BoxError, BoxFuture, ComponentId, Dispatcher, Event, EventOutcomes, Outcome, SourceComponent,
    SourceConfig, SourceContext, ValidationError,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::NatsSourceConfig;
use crate::message::decode;

/// Messages taken from the consumer in one go (more only when already there).
const GATHER: usize = 256;

impl SourceConfig for NatsSourceConfig {
    fn validate(&self) -> Vec<ValidationError> {
        self.problems()
    }

    fn dead_letter(&self) -> Option<&str> {
        self.dead_letter.as_deref()
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        Box::pin(async move {
            let client = self.connection.connect(&cx.id).await?;
            let reader = Reader {
                config: self.clone(),
                js: jetstream::new(client),
                received: tagpipe_core::telemetry::received(&cx.id, "nats"),
                id: cx.id,
                output: cx.output,
                dead_letter: cx.dead_letter,
                stop: cx.shutdown,
            };
            let running: RunningSource = Box::pin(reader.run());
            Ok(running)
        })
    }
}

impl SourceComponent for NatsSourceConfig {
    const TYPE: &'static str = "nats";
}

struct Reader {
    config: NatsSourceConfig,
    js: jetstream::Context,
    /// `tagpipe_events_received_total` of this source.
    received: Arc<StripedCounter>,
    id: ComponentId,
    output: Dispatcher,
    dead_letter: Option<Dispatcher>,
    stop: CancellationToken,
}

impl Reader {
    async fn run(self) -> Result<(), BoxError> {
        let this = Arc::new(self);
        let in_flight = Arc::new(Semaphore::new(this.config.max_in_flight));
        let mut deliveries = JoinSet::new();
        // Grows while reading keeps failing; back to the start once a batch arrives.
        let mut pause = Duration::from_millis(250);
        'connect: while let Some(consumer) = this.consumer().await {
            // Pull no more than this process may have in flight, so that idle processes sharing
            // the consumer get the rest.
            let pull = this.config.max_in_flight.min(GATHER);
            let mut messages = match consumer
                .stream()
                .max_messages_per_batch(pull)
                .messages()
                .await
            {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(source = %this.id, %error, "cannot read the consumer; retrying");
                    this.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            loop {
                let mut batch = Vec::new();
                // Wait for one message, then take what is already there.
                let first = tokio::select! {
                    () = this.stop.cancelled() => break 'connect,
                    next = messages.next() => next,
                };
                let mut next = first;
                loop {
                    match next {
                        Some(Ok(message)) => batch.push(message),
                        Some(Err(error)) => {
                            tracing::warn!(source = %this.id, %error, "reading from NATS failed; reconnecting the consumer");
                            this.pause(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(10));
                            break;
                        }
                        None => break,
                    }
                    if batch.len() >= GATHER {
                        break;
                    }
                    match tokio::time::timeout(Duration::ZERO, messages.next()).await {
                        Ok(more) => next = more,
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    continue 'connect;
                }
                pause = Duration::from_millis(250);
                let permits = tokio::select! {
                    () = this.stop.cancelled() => break 'connect,
                    permits = in_flight.clone().acquire_many_owned(u32::try_from(batch.len()).unwrap_or(u32::MAX)) => permits.expect("never closed"),
                };
                this.dispatch(batch, permits, &mut deliveries).await;
                while deliveries.try_join_next().is_some() {}
            }
        }
        // Stopping: what is being delivered is still acked (or nak'ed) when it has its outcome.
        while deliveries.join_next().await.is_some() {}
        Ok(())
    }

    /// The durable consumer, once NATS, the stream and the consumer are there (`None` when
    /// stopping first).
    async fn consumer(&self) -> Option<jetstream::consumer::Consumer<pull::Config>> {
        let stream = crate::stream::ensure_retrying(
            &self.config.stream,
            &self.js,
            &self.config.stream_subjects(),
            &self.id,
            &self.stop,
        )
        .await?;
        let config = pull::Config {
            durable_name: Some(self.config.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: i64::from(self.config.max_deliver),
            max_ack_pending: i64::try_from(self.config.max_in_flight).unwrap_or(i64::MAX),
            filter_subject: self.config.filter_subject.clone().unwrap_or_default(),
            ..pull::Config::default()
        };
        let mut pause = Duration::from_millis(250);
        loop {
            match stream
                .get_or_create_consumer(&self.config.consumer, config.clone())
                .await
            {
                Ok(consumer) => {
                    tracing::info!(source = %self.id, stream = %self.config.stream.name, consumer = %self.config.consumer, "reading from JetStream");
                    return Some(consumer);
                }
                Err(error) => {
                    tracing::warn!(source = %self.id, %error, retry_in = ?pause, "JetStream consumer not available yet");
                }
            }
            if self.stop.is_cancelled() {
                return None;
            }
            self.pause(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    async fn pause(&self, pause: Duration) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }

    /// Sends a batch of messages' events into the pipelines, and for each one starts the task
    /// that acks it once its outcomes are in.
    async fn dispatch(
        self: &Arc<Self>,
        batch: Vec<jetstream::Message>,
        mut permits: tokio::sync::OwnedSemaphorePermit,
        deliveries: &mut JoinSet<()>,
    ) {
        let mut events = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(&message.payload) {
                Ok((data, context)) => {
                    // Nothing of the event is kept here: its outcome is complete only once every
                    // copy is gone, and a kept copy of its data would make every processor that
                    // changes it copy the whole map. The rare dead letter decodes it again.
                    let (event, ack) = Event::new(data, context).with_acknowledgement();
                    waiting.push((message, ack));
                    events.push(event);
                }
                Err(error) => {
                    tracing::error!(source = %self.id, subject = %message.subject, %error, "message dropped: not a tagpipe event");
                    metrics::counter!("tagpipe_events_rejected_total", "source" => self.id.to_string())
                        .increment(1);
                    let _ = message.ack_with(AckKind::Term).await;
                }
            }
        }
        self.received.increment(events.len() as u64);
        self.output.send_all(events).await;
        for (message, ack) in waiting {
            let this = self.clone();
            // Each message frees its own place once settled (rejected ones freed theirs here).
            let permit = permits.split(1);
            deliveries.spawn(async move {
                this.settle(message, ack).await;
                drop(permit);
            });
        }
    }

    /// Waits for an event's outcomes (telling JetStream it is in progress meanwhile), then acks,
    /// naks or dead-letters its message.
    async fn settle(&self, message: jetstream::Message, ack: tagpipe_core::AckReceiver) {
        tokio::pin!(ack);
        let heartbeat = self.config.ack_wait / 2;
        let outcomes: EventOutcomes = loop {
            tokio::select! {
                outcomes = &mut ack => break outcomes,
                () = tokio::time::sleep(heartbeat) => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        let failures: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| o.outcome == Outcome::Failed && !o.dead_lettered)
            .map(|(sink, o)| format!("{sink}: {}", o.reason.as_deref().unwrap_or("failed")))
            .collect();
        let deliveries = message.info().map_or(1, |info| info.delivered);
        let result = if failures.is_empty() {
            message.ack().await
        } else if deliveries < i64::from(self.config.max_deliver) {
            tracing::warn!(source = %self.id, deliveries, failures = ?failures, retry_in = ?self.config.nak_delay, "delivery failed; JetStream will redeliver");
            metrics::counter!("tagpipe_events_retried_total", "source" => self.id.to_string())
                .increment(1);
            message
                .ack_with(AckKind::Nak(Some(self.config.nak_delay)))
                .await
        } else {
            self.give_up(&message, &failures.join("; "), deliveries)
                .await;
            message.ack_with(AckKind::Term).await
        };
        if let Err(error) = result {
            // The message will be redelivered after `ack_wait`: at least once, never lost.
            tracing::warn!(source = %self.id, %error, "could not answer JetStream for a message; it will be redelivered");
        }
    }

    /// The last delivery failed: the event goes to the dead-letter sink, if there is one.
    async fn give_up(&self, message: &jetstream::Message, reason: &str, deliveries: i64) {
        let Some(dead_letter) = &self.dead_letter else {
            tracing::error!(source = %self.id, deliveries, reason, "message given up after its last delivery (no dead_letter sink set)");
            return;
        };
        // The event as it arrived (it decoded when it was dispatched).
        let Ok((mut data, context)) = decode(&message.payload) else {
            tracing::error!(source = %self.id, deliveries, reason, "message given up; it no longer decodes for the dead-letter sink");
            return;
        };
        metrics::counter!("tagpipe_events_dead_lettered_total", "source" => self.id.to_string())
            .increment(1);
        let mut note = serde_json::Map::new();
        note.insert("source".into(), self.id.as_str().into());
        note.insert("reason".into(), reason.into());
        note.insert("deliveries".into(), deliveries.into());
        note.insert("at".into(), tagpipe_core::logs::now_ms().into());
        data.insert("dead_letter", serde_json::Value::Object(note));
        let (event, ack) = Event::new(data, context).with_acknowledgement();
        dead_letter.send(event).await;
        let kept = ack.await;
        if kept.values().any(|o| o.outcome != Outcome::Sent) {
            tracing::error!(source = %self.id, outcome = ?kept, "the dead-letter sink did not keep a given-up message");
        }
    }
}
