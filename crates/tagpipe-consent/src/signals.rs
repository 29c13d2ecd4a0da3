//! Deciding one purpose from an event's consent signals.

use serde_json::Value;
use tagpipe_core::EventData;

use crate::config::Purpose;
use crate::gcd::{self, State};

/// What the signals say about one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Granted by a signal.
    Granted,
    /// Denied by a signal.
    Denied,
    /// No signal for this purpose.
    Unknown,
}

/// Reads `consent_state`, then `x-ga-gcd`, then `x-ga-gcs`.
pub fn decide(event: &EventData, purpose: Purpose) -> Decision {
    if let Some(Value::Object(state)) = event.get("consent_state") {
        return if state.get(purpose.as_str()).is_some_and(truthy) {
            Decision::Granted
        } else {
            Decision::Denied
        };
    }
    if let Some(gcd) = event.get_str("x-ga-gcd") {
        match gcd::purpose(gcd, purpose.gcd_index()) {
            Some(State::Granted) => return Decision::Granted,
            Some(State::Denied) => return Decision::Denied,
            Some(State::NotSet) | None => {}
        }
    }
    let gcs_position = match purpose {
        Purpose::AdStorage => Some(2),
        Purpose::AnalyticsStorage => Some(3),
        Purpose::AdUserData | Purpose::AdPersonalization => None,
    };
    if let (Some(at), Some(gcs)) = (gcs_position, event.get_str("x-ga-gcs"))
        && gcs.starts_with('G')
    {
        match gcs.as_bytes().get(at) {
            Some(b'1') => return Decision::Granted,
            Some(b'0') => return Decision::Denied,
            _ => {}
        }
    }
    Decision::Unknown
}

/// JavaScript-like truthiness, as sGTM tags read `consent_state` values.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(v: Value) -> EventData {
        EventData::try_from(v).expect("test events are objects")
    }

    #[test]
    fn consent_state_decides_when_present() {
        let e = event(json!({"consent_state": {"ad_storage": true}, "x-ga-gcs": "G100"}));
        assert_eq!(decide(&e, Purpose::AdStorage), Decision::Granted);
        assert_eq!(decide(&e, Purpose::AnalyticsStorage), Decision::Denied);
        let e = event(json!({"consent_state": {"ad_storage": "false"}}));
        assert_eq!(
            decide(&e, Purpose::AdStorage),
            Decision::Granted,
            "a non-empty string is truthy"
        );
        let e = event(json!({"consent_state": {"ad_storage": 0}}));
        assert_eq!(decide(&e, Purpose::AdStorage), Decision::Denied);
    }

    #[test]
    fn gcd_before_gcs_and_gcs_as_fallback() {
        let e = event(json!({"x-ga-gcd": "13p3r3l3l5", "x-ga-gcs": "G111"}));
        assert_eq!(decide(&e, Purpose::AdStorage), Decision::Denied);
        assert_eq!(decide(&e, Purpose::AnalyticsStorage), Decision::Granted);
        assert_eq!(decide(&e, Purpose::AdUserData), Decision::Unknown);
        let e = event(json!({"x-ga-gcd": "13l3l3l3l5", "x-ga-gcs": "G110"}));
        assert_eq!(
            decide(&e, Purpose::AdStorage),
            Decision::Granted,
            "gcd not set: gcs decides"
        );
        assert_eq!(decide(&e, Purpose::AnalyticsStorage), Decision::Denied);
        let e = event(json!({"x-ga-gcs": "G101"}));
        assert_eq!(decide(&e, Purpose::AdStorage), Decision::Denied);
        assert_eq!(
            decide(&event(json!({})), Purpose::AdStorage),
            Decision::Unknown
        );
    }
}
