//! [`MappingLayer`]: [`Mapping`] in front of the rest of a pipeline.

use tagpipe_core::EventLayer;

use crate::service::Mapping;

/// Applies the mapping in front of the inner service: `MappingLayer::new(Mapping::new(…))`.
pub type MappingLayer = EventLayer<Mapping>;
