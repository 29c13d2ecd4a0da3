//! [`Hashing`]: hashes the configured fields of each event.

use std::sync::Arc;
use std::task::{Context, Poll};

use tagpipe_core::{BoxError, Disposition, Event, path};
use tower::Service;

use crate::config::HashingConfig;
use crate::hash::hash_value;

/// Hashes fields, then passes the event on. Never skips.
#[derive(Debug, Clone)]
pub struct Hashing<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<HashingConfig>,
}

impl<S> Hashing<S> {
    /// Hashes every configured field present in `event` (copying the event data only if it
    /// has such a field and is shared).
    pub fn apply(&self, event: &mut Event) {
        for rule in &self.config.fields {
            if path::get(&event.data, &rule.path).is_none() {
                continue;
            }
            let data = event.data_mut();
            let keep = path::get_mut(data, &rule.path).is_some_and(|v| hash_value(v, rule));
            if !keep {
                path::remove(data, &rule.path);
            }
        }
    }
}

impl<S> Service<Event> for Hashing<S>
where
    S: Service<Event, Response = Disposition, Error = BoxError>,
{
    type Response = Disposition;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut event: Event) -> Self::Future {
        self.apply(&mut event);
        self.inner.call(event)
    }
}
