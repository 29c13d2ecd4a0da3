//! # tagpipe-capi-receiver
//!
//! A local HTTP server standing in for the Spotify Conversions API in tests (the real one cannot
//! be reached from here). It checks every request against the documented contract
//! ([`contract::check`]) — method, path, bearer token, content type, body shape, required fields
//! and their types, `action_source` values, hex hashes, `event_source_url` scheme, event names
//! from the chosen table — and records it. What it answers can be scripted per request: 200,
//! 400 with a body, 413, 429 with `Retry-After`, 500, a stall, or a dropped connection.
//!
//! ```no_run
//! use tagpipe_capi_receiver::{Receiver, ReceiverConfig, Reply};
//! let receiver = Receiver::spawn(ReceiverConfig::new("token"));
//! receiver.script([Reply::Status(503, "busy".into()), Reply::Ok]);
//! // point the sink at receiver.url() …
//! let accepted = receiver.accepted_events();
//! ```

pub mod contract;
mod server;

pub use contract::{Names, ReceiverConfig};
pub use server::{Receiver, Recorded, Reply};
