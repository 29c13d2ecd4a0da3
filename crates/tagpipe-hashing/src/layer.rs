//! [`HashingLayer`]: [`Hashing`] in front of the rest of a pipeline.

use tagpipe_core::EventLayer;

use crate::service::Hashing;

/// Applies hashing in front of the inner service: `HashingLayer::new(Hashing::new(…))`.
pub type HashingLayer = EventLayer<Hashing>;
