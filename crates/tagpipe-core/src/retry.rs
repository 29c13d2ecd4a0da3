//! Retries for sinks: exponential backoff with full jitter, `Retry-After` honoured, bounded by the
//! total time spent on one request (as the OpenTelemetry Collector does), not by a count.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::random;

/// A sink's `retry:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Give up on a request after this long. Default: `5m`.
    #[serde(
        default = "default_max_elapsed",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub max_elapsed: Duration,
    /// First backoff ceiling. Default: `500ms`.
    #[serde(
        default = "default_initial_interval",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub initial_interval: Duration,
    /// Largest backoff ceiling (a `Retry-After` may ask for more). Default: `30s`.
    #[serde(
        default = "default_max_interval",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub max_interval: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_elapsed: default_max_elapsed(),
            initial_interval: default_initial_interval(),
            max_interval: default_max_interval(),
        }
    }
}

fn default_max_elapsed() -> Duration {
    Duration::from_secs(300)
}
fn default_initial_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(30)
}

impl RetryConfig {
    /// Pure checks, for a sink's `validate` (`field` is where the section sits, e.g. `retry`).
    pub fn problems(&self, field: &str) -> Vec<crate::ValidationError> {
        if self.initial_interval.is_zero() || self.initial_interval > self.max_interval {
            vec![crate::ValidationError::new(
                format!("{field}.initial_interval"),
                "must be more than 0 and at most max_interval",
            )]
        } else {
            Vec::new()
        }
    }

    /// A backoff for one request, starting now.
    pub fn start(&self) -> Backoff<'_> {
        Backoff {
            config: self,
            started: Instant::now(),
            tries: 0,
        }
    }
}

/// The retry state of one request.
#[derive(Debug)]
pub struct Backoff<'a> {
    config: &'a RetryConfig,
    started: Instant,
    tries: u32,
}

impl Backoff<'_> {
    /// After a failed attempt: how long to wait before the next one, or `None` to give up
    /// (the wait would pass `max_elapsed`).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.tries += 1;
        let delay = full_jitter(
            self.config.initial_interval,
            self.config.max_interval,
            self.tries,
            retry_after,
        );
        (self.started.elapsed() + delay <= self.config.max_elapsed).then_some(delay)
    }

    /// Failed attempts so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Time since the first attempt.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A random wait up to `min(max, initial × 2^(tries-1))`, or what `Retry-After` asked for when
/// it asked for more.
pub fn full_jitter(
    initial: Duration,
    max: Duration,
    tries: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let ceiling = initial
        .checked_mul(1u32 << tries.saturating_sub(1).min(20))
        .unwrap_or(max)
        .min(max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    let jitter = Duration::from_nanos(if nanos == 0 { 0 } else { random::u64() % nanos });
    match retry_after {
        Some(asked) => asked.max(jitter),
        None => jitter,
    }
}

/// `Retry-After` as seconds (capped at one hour); the HTTP-date form is not used by the APIs
/// tagpipe talks to and is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded_and_retry_after_wins() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(2);
        for tries in 1..40 {
            assert!(full_jitter(i, m, tries, None) <= m);
        }
        assert!(full_jitter(i, m, 1, None) <= i);
        assert!(full_jitter(i, m, 1, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn gives_up_past_max_elapsed() {
        let config = RetryConfig {
            max_elapsed: Duration::from_millis(10),
            initial_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
        };
        let mut b = config.start();
        assert!(b.next_delay(None).is_some());
        assert!(b.next_delay(Some(Duration::from_secs(1))).is_none());
    }
}
