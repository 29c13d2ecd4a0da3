//! # tagpipe-consent
//!
//! The `consent` processor: passes an event on only when the consent purposes it requires are
//! granted. A refused event is not an error: its outcome at the pipeline's destinations is
//! `skipped` with the reason `consent: <purpose> not granted`, and it is counted.
//!
//! ```yaml
//! processors:
//!   consent/ads:
//!     require: [ad_storage]        # the Spotify tag's "required" mode
//!     when_missing: deny           # no consent signal at all: deny (default) or grant
//! ```
//!
//! Signals, per purpose, in this order — the first that has an opinion decides:
//! 1. `consent_state.<purpose>` booleans (Stape Data Client); when the event carries a
//!    `consent_state` object, it decides every purpose (a missing key is not granted);
//! 2. Google's `gcd` string (`x-ga-gcd`), decoded (see [`gcd`]);
//! 3. `gcs` (`x-ga-gcs`, `G1xy`), for `ad_storage` (x) and `analytics_storage` (y).
//!
//! Without any signal for a required purpose, `when_missing` applies.

mod config;
pub mod gcd;
mod layer;
mod service;
mod signals;

pub use config::{ConsentConfig, Purpose, WhenMissing};
pub use layer::ConsentLayer;
pub use service::Consent;
pub use signals::{Decision, decide};
