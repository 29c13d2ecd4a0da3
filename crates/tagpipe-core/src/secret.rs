//! Secret values: never shown by `Debug`, `Display` or `Serialize`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text every redacted secret is replaced with.
pub const REDACTED: &str = "**REDACTED**";

/// A configuration value that must not leak: auth tokens, keys. Read it with
/// [`Secret::expose`] only where it is sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_value() {
        let s = Secret::new("tok-123");
        assert_eq!(format!("{s:?} {s}"), format!("{REDACTED} {REDACTED}"));
        assert_eq!(
            serde_json::to_string(&s).expect("serialisable"),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(s.expose(), "tok-123");
    }
}
