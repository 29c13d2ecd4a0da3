//! [`ConsentLayer`]: wraps the rest of a pipeline in a [`Consent`] service.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tagpipe_core::ComponentId;
use tower::Layer;

use crate::config::ConsentConfig;
use crate::service::Consent;

/// Applies the consent check in front of the inner service.
#[derive(Debug, Clone)]
pub struct ConsentLayer {
    config: Arc<ConsentConfig>,
    id: ComponentId,
    refused: Arc<AtomicU64>,
}

impl ConsentLayer {
    /// A layer for `config`, counting refusals in `refused`.
    pub fn new(config: ConsentConfig, id: ComponentId, refused: Arc<AtomicU64>) -> Self {
        Self {
            config: Arc::new(config),
            id,
            refused,
        }
    }
}

impl<S> Layer<S> for ConsentLayer {
    type Service = Consent<S>;

    fn layer(&self, inner: S) -> Consent<S> {
        Consent {
            inner,
            config: self.config.clone(),
            id: self.id.clone(),
            refused: self.refused.clone(),
        }
    }
}
