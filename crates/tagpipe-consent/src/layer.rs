//! [`ConsentLayer`]: [`Consent`] in front of the rest of a pipeline.

use tagpipe_core::EventLayer;

use crate::service::Consent;

/// Applies the consent check in front of the inner service: `ConsentLayer::new(Consent::new(…))`.
pub type ConsentLayer = EventLayer<Consent>;
