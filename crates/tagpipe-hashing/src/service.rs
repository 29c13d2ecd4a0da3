//! [`Hashing`]: hashes the configured fields of each event (an [`EventProcessor`], layered with
//! [`HashingLayer`](crate::HashingLayer)).

use tagpipe_core::{Event, EventProcessor, path};

use crate::config::HashingConfig;
use crate::hash::hash_value;

/// Hashes fields, then passes the event on. Never skips.
#[derive(Debug)]
pub struct Hashing {
    config: HashingConfig,
}

impl Hashing {
    /// The hashing of `config`.
    pub fn new(config: HashingConfig) -> Self {
        Self { config }
    }

    /// Hashes every configured field present in `event` (copying the event data only if it
    /// has such a field and is shared).
    pub fn apply(&self, event: &mut Event) {
        for rule in &self.config.fields {
            if path::get_ref(&event.data, &rule.path).is_none() {
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

impl EventProcessor for Hashing {
    fn process(&self, event: &mut Event) -> Result<(), String> {
        self.apply(event);
        Ok(())
    }
}
