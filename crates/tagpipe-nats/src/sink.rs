//! The `nats` sink: publishes each event to JetStream and reports it `sent` once JetStream has
//! acknowledged storing it.
//!
//! A batch is published at once (every message pipelined on the connection) and the acks are
//! awaited together; the messages without one (NATS unreachable, stream full, timeout) are
//! published again with backoff, carrying the same `Nats-Msg-Id`, so JetStream stores each
//! event once even when an ack was lost rather than the message.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tagpipe_core::batch::BatchSettings;
use tagpipe_core::component::SinkParts;
use tagpipe_core::driver::service_with;
use tagpipe_core::{
    BoxError, BoxFuture, ComponentId, DestinationOutcome, Event, SinkComponent, SinkConfig,
    SinkContext, ValidationError,
};
use tokio::sync::OnceCell;

use crate::config::NatsSinkConfig;
use crate::message::encode;

const DEFAULT_BATCH: BatchSettings = BatchSettings {
    max_events: 500,
    timeout: Duration::from_millis(5),
};

impl SinkConfig for NatsSinkConfig {
    fn validate(&self) -> Vec<ValidationError> {
        self.problems()
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        Box::pin(async move {
            let client = self.connection.connect(&cx.id).await?;
            let mut js = jetstream::new(client);
            js.set_timeout(self.ack_timeout);
            let shared = Arc::new(Publisher {
                id: cx.id,
                config: self.clone(),
                js,
                stream_ready: OnceCell::new(),
            });
            Ok(SinkParts {
                service: service_with(shared, |publisher, events| async move {
                    publisher.publish_all(events).await
                })
                .into(),
                batch: self.batch.resolve(DEFAULT_BATCH),
                concurrency: self.concurrency.max(1),
                wait_for_delivery: !self.optimistic,
            })
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let id = ComponentId::parse("nats/healthcheck").map_err(BoxError::from)?;
            let client = self.connection.connect_once(&id).await?;
            let js = jetstream::new(client);
            let checked = tokio::time::timeout(
                self.connection.connect_timeout,
                self.stream.ensure(&js, &self.stream_subjects()),
            )
            .await;
            match checked {
                Ok(result) => result.map(|_| ()),
                Err(_) => Err(format!(
                    "no answer from NATS at {} within {:?}",
                    self.connection.urls.join(", "),
                    self.connection.connect_timeout
                )
                .into()),
            }
        })
    }
}

impl SinkComponent for NatsSinkConfig {
    const TYPE: &'static str = "nats";
}

/// What every batch of one sink shares.
struct Publisher {
    id: ComponentId,
    config: NatsSinkConfig,
    js: jetstream::Context,
    /// Set once the stream is known to exist.
    stream_ready: OnceCell<()>,
}

/// One event ready to publish.
struct Message {
    index: usize,
    id: String,
    body: bytes::Bytes,
}

impl Publisher {
    async fn publish_all(&self, events: Vec<Event>) -> Vec<DestinationOutcome> {
        let mut outcomes: Vec<Option<DestinationOutcome>> = vec![None; events.len()];
        let mut pending: Vec<Message> = Vec::with_capacity(events.len());
        for (index, mut event) in events.into_iter().enumerate() {
            // Let requests waiting on this worker thread run between events of a large batch.
            tokio::task::coop::consume_budget().await;
            let id = event_id(&mut event);
            pending.push(Message {
                index,
                id,
                body: encode(&event),
            });
        }
        let mut backoff = self.config.retry.start();
        loop {
            let error = match self.ready_stream().await {
                Ok(()) => {
                    let failures = self.publish_round(&mut pending, &mut outcomes).await;
                    if pending.is_empty() {
                        break;
                    }
                    failures
                }
                Err(error) => error.to_string(),
            };
            let Some(pause) = backoff.next_delay(None) else {
                let reason = format!(
                    "not stored by JetStream after {} tries: {error}",
                    backoff.tries()
                );
                for message in pending.drain(..) {
                    outcomes[message.index] = Some(DestinationOutcome::failed(reason.clone()));
                }
                break;
            };
            tracing::warn!(sink = %self.id, events = pending.len(), %error, retry_in = ?pause, "publish to JetStream failed; retrying");
            metrics::counter!("tagpipe_events_retried_total", "sink" => self.id.to_string())
                .increment(pending.len() as u64);
            tokio::time::sleep(pause).await;
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| DestinationOutcome::failed("no outcome (internal error)")))
            .collect()
    }

    /// Makes sure the stream exists (once per sink).
    async fn ready_stream(&self) -> Result<(), BoxError> {
        self.stream_ready
            .get_or_try_init(|| async {
                self.config
                    .stream
                    .ensure(&self.js, &self.config.stream_subjects())
                    .await
                    .map(|_| ())
            })
            .await
            .copied()
    }

    /// Publishes every pending message and waits for the acks; the acked ones leave `pending`
    /// with a `sent` outcome. Answers the first error seen, if any.
    async fn publish_round(
        &self,
        pending: &mut Vec<Message>,
        outcomes: &mut [Option<DestinationOutcome>],
    ) -> String {
        let mut acks = Vec::with_capacity(pending.len());
        for message in pending.iter() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
            let sent = self
                .js
                .publish_with_headers(self.config.subject.clone(), headers, message.body.clone())
                .await;
            acks.push(sent);
        }
        let mut first_error = String::new();
        let mut still = Vec::new();
        for (message, sent) in pending.drain(..).zip(acks) {
            let acked = match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match acked {
                Ok(()) => outcomes[message.index] = Some(DestinationOutcome::sent()),
                Err(error) => {
                    if first_error.is_empty() {
                        first_error = error;
                    }
                    still.push(message);
                }
            }
        }
        *pending = still;
        first_error
    }
}

/// The event's `event_id`, added (random) when it has none: the same id goes with every
/// re-publish and on to the delivery tier, where destinations deduplicate on it.
fn event_id(event: &mut Event) -> String {
    if let Some(serde_json::Value::String(id)) = event.data.get("event_id")
        && !id.is_empty()
    {
        return id.clone();
    }
    let id = tagpipe_core::random::hex32();
    event
        .data_mut()
        .insert("event_id", serde_json::Value::String(id.clone()));
    id
}
