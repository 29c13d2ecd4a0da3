//! The `consent` processor configuration.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Deserialize;
use tagpipe_core::{
    BoxError, ProcessorComponent, ProcessorConfig, ProcessorContext, ProcessorLayer,
    ValidationError,
};

use crate::layer::ConsentLayer;
use crate::service::Consent;

/// `consent` processor settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Purposes that must all be granted (required, at least one): `ad_storage`,
    /// `analytics_storage`, `ad_user_data`, `ad_personalization`.
    pub require: Vec<Purpose>,
    /// What to do when the event carries no signal for a required purpose: `deny` (default,
    /// as the Spotify tag does) or `grant`.
    #[serde(default)]
    pub when_missing: WhenMissing,
}

/// A Google Consent Mode purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Cookies/identifiers for advertising.
    AdStorage,
    /// Cookies/identifiers for analytics.
    AnalyticsStorage,
    /// Sending user data to Google (and others) for advertising.
    AdUserData,
    /// Personalised advertising.
    AdPersonalization,
}

impl Purpose {
    /// The purpose's name as it appears in `consent_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::AdStorage => "ad_storage",
            Purpose::AnalyticsStorage => "analytics_storage",
            Purpose::AdUserData => "ad_user_data",
            Purpose::AdPersonalization => "ad_personalization",
        }
    }

    /// Its position in a `gcd` string (0–3).
    pub(crate) fn gcd_index(self) -> usize {
        match self {
            Purpose::AdStorage => 0,
            Purpose::AnalyticsStorage => 1,
            Purpose::AdUserData => 2,
            Purpose::AdPersonalization => 3,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer when an event carries no consent signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenMissing {
    /// Not granted (default).
    #[default]
    Deny,
    /// Granted.
    Grant,
}

impl ProcessorConfig for ConsentConfig {
    fn validate(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        if self.require.is_empty() {
            problems.push(ValidationError::new(
                "require",
                "list at least one purpose (e.g. [ad_storage])",
            ));
        }
        for (i, p) in self.require.iter().enumerate() {
            if self.require[..i].contains(p) {
                problems.push(ValidationError::new(
                    format!("require.{i}"),
                    format!("`{p}` is listed twice"),
                ));
            }
        }
        problems
    }

    fn build(&self, cx: ProcessorContext) -> Result<ProcessorLayer, BoxError> {
        let layer = ConsentLayer::new(Consent::new(
            self.clone(),
            cx.id,
            Arc::new(AtomicU64::new(0)),
        ));
        Ok(ProcessorLayer::new(layer))
    }
}

impl ProcessorComponent for ConsentConfig {
    const TYPE: &'static str = "consent";
}
