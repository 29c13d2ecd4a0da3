//! Batch settings shared by every sink: how many events one request to a destination carries and
//! how long the driver waits to fill a batch.

use std::time::Duration;

use serde::Deserialize;

/// A sink's batching as configured in YAML (`batch:`). Unset fields take the sink's defaults,
/// which each sink documents.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one request to the destination.
    pub max_events: Option<usize>,
    /// Longest time the first event of a batch waits for more events (`0s` sends at once).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Largest request body in bytes, for sinks that send requests: a bigger batch goes out as
    /// several requests. Sinks that do not send requests refuse it in `validate`.
    pub max_bytes: Option<usize>,
}

impl BatchConfig {
    /// For sinks without requests: an error when `batch.max_bytes` is set.
    pub fn refuse_max_bytes(&self) -> Vec<crate::ValidationError> {
        if self.max_bytes.is_some() {
            vec![crate::ValidationError::new(
                "batch.max_bytes",
                "this sink sends no requests: remove `max_bytes`",
            )]
        } else {
            Vec::new()
        }
    }
}

impl BatchConfig {
    /// The effective settings: configured values over the sink's `defaults`.
    pub fn resolve(&self, defaults: BatchSettings) -> BatchSettings {
        BatchSettings {
            max_events: self.max_events.unwrap_or(defaults.max_events).max(1),
            timeout: self.timeout.unwrap_or(defaults.timeout),
        }
    }
}

/// Effective batch settings, used by the sink driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most events in one call of the sink's service (at least 1).
    pub max_events: usize,
    /// How long the first event of a batch waits for more.
    pub timeout: Duration,
}

impl BatchSettings {
    /// One event per call, sent at once.
    pub const UNBATCHED: Self = Self {
        max_events: 1,
        timeout: Duration::ZERO,
    };
}
