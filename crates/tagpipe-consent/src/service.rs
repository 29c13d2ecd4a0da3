//! [`Consent`]: passes on or skips each event (an [`EventProcessor`], layered with
//! [`ConsentLayer`](crate::ConsentLayer)).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tagpipe_core::{ComponentId, Event, EventProcessor};

use crate::config::{ConsentConfig, WhenMissing};
use crate::signals::{Decision, decide};

/// Skips events whose required consent purposes are not granted.
#[derive(Debug)]
pub struct Consent {
    config: ConsentConfig,
    id: ComponentId,
    refused: Arc<AtomicU64>,
    /// The reason given for each required purpose when it is not granted, by position in
    /// `config.require` (written once, not formatted per refused event).
    reasons: Vec<String>,
}

impl Consent {
    /// The check for `config`, counting refusals in `refused`.
    pub fn new(config: ConsentConfig, id: ComponentId, refused: Arc<AtomicU64>) -> Self {
        let reasons = config
            .require
            .iter()
            .map(|purpose| format!("consent: {purpose} not granted"))
            .collect();
        Self {
            config,
            id,
            refused,
            reasons,
        }
    }

    /// The reason to skip `event`, if any.
    pub fn refusal(&self, event: &Event) -> Option<String> {
        for (&purpose, reason) in self.config.require.iter().zip(&self.reasons) {
            let granted = match decide(&event.data, purpose) {
                Decision::Granted => true,
                Decision::Denied => false,
                Decision::Unknown => self.config.when_missing == WhenMissing::Grant,
            };
            if !granted {
                return Some(reason.clone());
            }
        }
        None
    }

    /// How many events this processor has skipped.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl EventProcessor for Consent {
    fn process(&self, event: &mut Event) -> Result<(), String> {
        match self.refusal(event) {
            None => Ok(()),
            Some(reason) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(processor = %self.id, %reason, "event skipped");
                Err(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tagpipe_core::{BoxError, Disposition, ProcessorConfig, RequestContext};
    use tower::{Layer, Service, ServiceExt};

    use super::*;
    use crate::ConsentLayer;

    async fn run(config: serde_json::Value, event: serde_json::Value) -> (Disposition, u64) {
        let config: ConsentConfig = serde_json::from_value(config).unwrap();
        assert!(config.validate().is_empty());
        let refused = Arc::new(AtomicU64::new(0));
        let layer = ConsentLayer::new(Consent::new(
            config,
            ComponentId::parse("consent").unwrap(),
            refused.clone(),
        ));
        let inner = tower::service_fn(|_e: Event| {
            std::future::ready(Ok::<_, BoxError>(Disposition::Forwarded))
        });
        let mut svc = layer.layer(inner);
        let event = Event::new(
            event.try_into().unwrap(),
            Arc::new(RequestContext::detached()),
        );
        let d = svc.ready().await.unwrap().call(event).await.unwrap();
        (d, refused.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn the_spotify_tag_required_mode() {
        let required = json!({"require": ["ad_storage"]});
        let (d, n) = run(required.clone(), json!({"x-ga-gcs": "G101"})).await;
        assert_eq!(
            d,
            Disposition::Skipped("consent: ad_storage not granted".into())
        );
        assert_eq!(n, 1, "refusals are counted");
        let (d, _) = run(required.clone(), json!({"x-ga-gcs": "G110"})).await;
        assert_eq!(d, Disposition::Forwarded);
        let (d, _) = run(
            required.clone(),
            json!({"consent_state": {"ad_storage": true}}),
        )
        .await;
        assert_eq!(d, Disposition::Forwarded);
        let (d, _) = run(required, json!({"event_name": "no signal"})).await;
        assert_eq!(
            d,
            Disposition::Skipped("consent: ad_storage not granted".into())
        );
    }

    #[tokio::test]
    async fn several_purposes_and_when_missing_grant() {
        let cfg = json!({"require": ["ad_storage", "ad_user_data"], "when_missing": "grant"});
        let (d, _) = run(cfg.clone(), json!({"x-ga-gcd": "13r3r3p3r5"})).await;
        assert_eq!(
            d,
            Disposition::Skipped("consent: ad_user_data not granted".into())
        );
        let (d, _) = run(cfg, json!({})).await;
        assert_eq!(d, Disposition::Forwarded);
    }
}
