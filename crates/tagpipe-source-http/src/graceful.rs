//! Graceful shutdown of the source's open connections: when the source stops, each connection
//! is told to finish (the request in flight is answered, an idle keep-alive connection closes),
//! and [`OpenConnections::finish`] waits until every one has.
//!
//! What hyper-util's `GracefulShutdown` does, without its cost per request: its watcher polls a
//! `tokio::sync::watch` change future at every poll of the connection, and a waiting
//! `Notified` takes its `Notify`'s lock (one of eight that all connections share) to refresh
//! its waker each time — a lock both serving cores write at every request. Here a connection
//! reads one flag that changes only at shutdown (its cache line stays in every core's cache),
//! and hands its task's waker over only when it changes (a task keeps its waker), under a lock
//! taken once per connection otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// The connections one source has open.
#[derive(Clone, Default)]
pub(crate) struct OpenConnections {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Set once, when the source stops.
    stopping: AtomicBool,
    /// Each open connection's waker, by its number (`None` until first polled).
    open: Mutex<Open>,
    /// Told when the last connection closes during the stop.
    all_closed: Notify,
}

#[derive(Default)]
struct Open {
    next: u64,
    wakers: HashMap<u64, Option<Waker>>,
}

impl Shared {
    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        // A panic elsewhere while holding the lock leaves a usable map: keep going.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl OpenConnections {
    /// `connection`, told to finish through `finish` (hyper's `graceful_shutdown`) when the
    /// source stops, and counted as open until it ends or is dropped.
    pub(crate) fn watch<C, F>(&self, connection: C, finish: F) -> Watched<C, F>
    where
        C: Future,
        F: FnMut(Pin<&mut C>),
    {
        let mut open = self.shared.open();
        let number = open.next;
        open.next += 1;
        open.wakers.insert(number, None);
        drop(open);
        Watched {
            connection: Box::pin(connection),
            finish,
            shared: self.shared.clone(),
            number,
            told: false,
            waker: None,
        }
    }

    /// How many connections are open.
    pub(crate) fn count(&self) -> usize {
        self.shared.open().wakers.len()
    }

    /// Tells every open connection, and every one watched from now on, to finish, and waits
    /// until all have ended.
    pub(crate) async fn finish(&self) {
        let wakers: Vec<Waker> = {
            let mut open = self.shared.open();
            self.shared.stopping.store(true, Ordering::Release);
            open.wakers.values_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
        loop {
            let all_closed = self.shared.all_closed.notified();
            tokio::pin!(all_closed);
            // Registered before the count is read: a close in between still wakes it.
            all_closed.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            all_closed.await;
        }
    }
}

/// A connection counted by [`OpenConnections`] (see [`OpenConnections::watch`]).
pub(crate) struct Watched<C, F> {
    connection: Pin<Box<C>>,
    finish: F,
    shared: Arc<Shared>,
    number: u64,
    /// Whether `finish` was called.
    told: bool,
    /// The waker last handed to `shared`.
    waker: Option<Waker>,
}

impl<C, F> Watched<C, F>
where
    C: Future,
    F: FnMut(Pin<&mut C>),
{
    /// Calls `finish` once the source stops; until then keeps the waker that a stop wakes.
    fn check_stop(&mut self, cx: &Context<'_>) {
        if self.told {
            return;
        }
        if !self.shared.stopping.load(Ordering::Acquire) {
            if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return;
            }
            let waker = cx.waker().clone();
            if let Some(slot) = self.shared.open().wakers.get_mut(&self.number) {
                *slot = Some(waker.clone());
            }
            self.waker = Some(waker);
            // Read again once handed over: a stop in between took the old waker, or none.
            if !self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
        }
        self.told = true;
        (self.finish)(self.connection.as_mut());
    }
}

impl<C, F> Future for Watched<C, F>
where
    C: Future,
    F: FnMut(Pin<&mut C>) + Unpin,
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        this.check_stop(cx);
        this.connection.as_mut().poll(cx)
    }
}

impl<C, F> Drop for Watched<C, F> {
    fn drop(&mut self) {
        let mut open = self.shared.open();
        open.wakers.remove(&self.number);
        let last = open.wakers.is_empty();
        drop(open);
        if last && self.shared.stopping.load(Ordering::Acquire) {
            self.shared.all_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A connection that ends only once told to finish, and counts how often it was told.
    struct Connection {
        told: Arc<AtomicUsize>,
        finishing: bool,
    }

    impl Future for Connection {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.finishing {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    fn connection(told: &Arc<AtomicUsize>) -> Connection {
        Connection {
            told: told.clone(),
            finishing: false,
        }
    }

    fn finish(mut connection: Pin<&mut Connection>) {
        connection.told.fetch_add(1, Ordering::Relaxed);
        connection.finishing = true;
    }

    #[tokio::test]
    async fn a_stop_tells_every_open_connection_once_and_waits_for_them() {
        let open = OpenConnections::default();
        let told = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..3)
            .map(|_| tokio::spawn(open.watch(connection(&told), finish)))
            .collect();
        // Let every connection be polled (and hand over its waker) before the stop.
        tokio::task::yield_now().await;
        assert_eq!(open.count(), 3);
        tokio::time::timeout(Duration::from_secs(20), open.finish())
            .await
            .expect("every connection finished");
        assert_eq!(open.count(), 0);
        assert_eq!(told.load(Ordering::Relaxed), 3);
        for task in tasks {
            task.await.expect("the connection's task ended");
        }
    }

    #[tokio::test]
    async fn a_connection_never_polled_or_opened_after_the_stop_is_told_at_its_first_poll() {
        let open = OpenConnections::default();
        let told = Arc::new(AtomicUsize::new(0));
        // Watched but not yet polled when the stop comes: it has no waker to wake.
        let early = open.watch(connection(&told), finish);
        let stopping = {
            let open = open.clone();
            tokio::spawn(async move { open.finish().await })
        };
        tokio::task::yield_now().await;
        assert!(!stopping.is_finished(), "waits for the unpolled connection");
        early.await;
        let late = open.watch(connection(&told), finish);
        late.await;
        tokio::time::timeout(Duration::from_secs(20), stopping)
            .await
            .expect("the stop ended")
            .unwrap();
        assert_eq!(told.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_connection_that_ends_on_its_own_is_no_longer_counted() {
        let open = OpenConnections::default();
        let ended = open.watch(std::future::ready(()), |_: Pin<&mut _>| {});
        assert_eq!(open.count(), 1);
        ended.await;
        assert_eq!(open.count(), 0);
        // Nothing open: the stop returns at once.
        tokio::time::timeout(Duration::from_secs(20), open.finish())
            .await
            .expect("nothing to wait for");
    }
}
