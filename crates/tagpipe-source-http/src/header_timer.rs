//! The timer behind hyper's header read timeout (`read_timeout`): one tokio timer per
//! connection rather than one per request.
//!
//! hyper arms its header timeout for every request on a keep-alive connection, through the
//! `hyper::rt::Timer` it is given: with `TokioTimer`, a boxed tokio sleep that is registered in
//! the runtime's timer wheel and removed from it again per request — 5–8 % of the CPU of a GA4
//! hit (BENCHMARKS.md). A [`ConnectionTimer`] belongs to one connection and keeps one tokio
//! sleep for it: each request's deadline is a plain `Instant`, and the shared sleep, armed for
//! the earliest deadline it was asked for, is re-armed only when it fires before the current
//! one — at most once per timeout period and connection; the clock is read only when the sleep
//! has fired, to tell whose deadline it was. The timeout still fires on time: the sleep that
//! guards a deadline is never later than it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A `hyper::rt::Timer` for one connection (give each connection its own).
#[derive(Clone, Default)]
pub(crate) struct ConnectionTimer {
    /// The connection's tokio sleep, created on first use.
    sleep: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline {
            deadline,
            sleep: self.sleep.clone(),
        })
    }
}

/// One deadline on a connection's shared sleep.
struct Deadline {
    deadline: Instant,
    sleep: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        // No clock read before the sleep is looked at: hyper polls a request's deadline once
        // as the connection waits for it, and the sleep below, armed no later than the
        // deadline, fires for it anyway (at once, for a deadline already past). The clock is
        // read only when the sleep has fired, to tell whose deadline it was.
        let mut slot = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if sleep.deadline() > deadline.into() {
            // Armed for a later deadline (never by hyper's header timeout, whose deadlines only
            // move on): this one must not wait for it.
            sleep.as_mut().reset(deadline.into());
        }
        // Fired for an earlier deadline (a previous request's): re-arm for this one.
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(deadline.into());
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use hyper::rt::Timer;

    use super::ConnectionTimer;

    /// Each deadline resolves, never before its time, whether the connection's shared sleep was
    /// armed for an earlier deadline (and has fired), for a later one, or for none yet.
    #[tokio::test]
    async fn every_deadline_fires_and_never_early() {
        let timer = ConnectionTimer::default();
        let start = Instant::now();
        for offset_ms in [40, 10, 80, 80, 5, 120] {
            let deadline = start + Duration::from_millis(offset_ms);
            let sleep = timer.sleep_until(deadline);
            tokio::time::timeout(Duration::from_secs(20), sleep)
                .await
                .expect("the deadline fired");
            assert!(Instant::now() >= deadline, "fired before {offset_ms} ms");
        }
        // A deadline already past resolves at once; `sleep` counts from now.
        let before = Instant::now();
        timer.sleep(Duration::ZERO).await;
        timer.sleep(Duration::from_millis(15)).await;
        assert!(before.elapsed() >= Duration::from_millis(15));
    }

    /// Deadlines that are dropped before they fire (hyper drops its header timeout once the
    /// headers are in) leave the connection's sleep usable for the next one.
    #[tokio::test]
    async fn a_dropped_deadline_leaves_the_next_one_working() {
        let timer = ConnectionTimer::default();
        for _ in 0..3 {
            let long = timer.sleep(Duration::from_secs(3600));
            let waited = tokio::time::timeout(Duration::from_millis(5), long).await;
            assert!(waited.is_err(), "an hour-long deadline did not fire");
        }
        let deadline = Instant::now() + Duration::from_millis(20);
        tokio::time::timeout(Duration::from_secs(20), timer.sleep_until(deadline))
            .await
            .expect("the deadline fired");
        assert!(Instant::now() >= deadline);
    }
}
