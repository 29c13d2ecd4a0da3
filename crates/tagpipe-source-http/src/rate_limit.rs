//! Per-client-address rate limiting of the browser endpoints (a token bucket per address).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::RateLimit;

/// The limiter of one listener.
pub(crate) struct Limiter {
    inner: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>,
    /// What `Retry-After` says: one period of the rate (at most a second, as `per_second ≥ 1`),
    /// rounded up to whole seconds.
    retry_after: Duration,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Option<Self> {
        let per_second = NonZeroU32::new(limit.per_second)?;
        let burst = NonZeroU32::new(limit.burst.unwrap_or(limit.per_second))?;
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Some(Self {
            inner: RateLimiter::keyed(quota),
            retry_after: Duration::from_secs(1),
        })
    }

    /// `None` when `client` may go on, else how long it should wait.
    pub(crate) fn check(&self, client: IpAddr) -> Option<Duration> {
        self.inner
            .check_key(&client)
            .err()
            .map(|_| self.retry_after)
    }

    /// Drops the state of clients that have been quiet long enough to be full again.
    pub(crate) fn forget_idle(&self) {
        self.inner.retain_recent();
    }
}
