//! [`HashingLayer`]: wraps the rest of a pipeline in a [`Hashing`] service.

use std::sync::Arc;

use tower::Layer;

use crate::config::HashingConfig;
use crate::service::Hashing;

/// Applies hashing in front of the inner service.
#[derive(Debug, Clone)]
pub struct HashingLayer {
    config: Arc<HashingConfig>,
}

impl HashingLayer {
    /// A layer for `config`.
    pub fn new(config: Arc<HashingConfig>) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for HashingLayer {
    type Service = Hashing<S>;

    fn layer(&self, inner: S) -> Hashing<S> {
        Hashing {
            inner,
            config: self.config.clone(),
        }
    }
}
