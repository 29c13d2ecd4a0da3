//! # tagpipe-nats
//!
//! NATS JetStream between tiers, the way Vector and the OpenTelemetry Collector use Kafka: no
//! clustering of tagpipe's own, a durable shared queue instead.
//!
//! - The `nats` **sink** publishes each event — its data and its request context (cookies,
//!   headers, trace id, client address, received time) — to a JetStream subject. An event counts
//!   as `sent` only once JetStream has acknowledged it (stored it, replicated as the stream says).
//!   Every message carries `Nats-Msg-Id` = the event's `event_id` (one is added when the event has
//!   none), so a re-publish within the stream's duplicate window is stored once.
//! - The `nats` **source** reads a durable pull consumer. A message is acked only once every
//!   destination of its pipelines has an outcome (`sent`, `skipped`, or `failed` and
//!   dead-lettered by its sink); on any other failure it is nak'ed with a delay and JetStream
//!   redelivers it; on its last delivery (`max_deliver`) it goes to the source's `dead_letter`
//!   sink. Processes sharing the consumer name share the work.
//! - Either side creates the stream at start-up when it is missing (or checks it exists), and
//!   keeps retrying — never crashing — while NATS is unreachable.
//!
//! ```yaml
//! # ingest node
//! sinks:
//!   nats:
//!     connection: { urls: [nats://nats-1:4222, nats://nats-2:4222] }
//!     subject: tagpipe.events
//!     stream: { name: TAGPIPE, replicas: 3 }
//! # delivery node
//! sources:
//!   nats:
//!     connection: { urls: [nats://nats-1:4222, nats://nats-2:4222] }
//!     stream: { name: TAGPIPE, replicas: 3 }
//!     consumer: delivery
//! ```

mod config;
mod connection;
mod message;
mod sink;
mod source;
mod stream;

pub use config::{
    ConnectionConfig, NatsSinkConfig, NatsSourceConfig, Retention, StreamSettings, TlsConfig,
};
pub use message::{decode, encode};

#[cfg(test)]
mod tests;
