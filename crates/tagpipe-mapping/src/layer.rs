//! [`MappingLayer`]: wraps the rest of a pipeline in a [`Mapping`] service.

use std::collections::HashMap;
use std::sync::Arc;

use tagpipe_core::ComponentId;
use tower::Layer;

use crate::config::{MappingConfig, NameMethod};
use crate::service::{Compiled, Mapping, NameLookup};

/// Applies the mapping in front of the inner service.
#[derive(Debug, Clone)]
pub struct MappingLayer {
    compiled: Arc<Compiled>,
}

impl MappingLayer {
    /// A layer for `config`.
    pub fn new(config: Arc<MappingConfig>, id: ComponentId) -> Self {
        let names = match &config.event_name {
            Some(n) if n.method == NameMethod::Inherit => n.lookup(),
            _ => HashMap::new(),
        };
        Self {
            compiled: Arc::new(Compiled {
                config,
                names: NameLookup::new(names),
                id,
            }),
        }
    }
}

impl<S> Layer<S> for MappingLayer {
    type Service = Mapping<S>;

    fn layer(&self, inner: S) -> Mapping<S> {
        Mapping {
            inner,
            compiled: self.compiled.clone(),
        }
    }
}
