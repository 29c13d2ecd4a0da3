//! Component IDs in the OpenTelemetry Collector convention: `type` or `type/name`.

use std::fmt;
use std::sync::Arc;

/// The ID of a source, processor or sink: `type` (`console`) or `type/name` (`spotify/eu`).
/// Cloning is cheap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    full: Arc<str>,
    type_len: usize,
}

impl ComponentId {
    /// Parses an ID. The type is lowercase ASCII letters, digits and `_`, starting with a
    /// letter; the optional name is non-empty and has no whitespace or `/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, name) = match s.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (s, None),
        };
        let kind_ok = kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !kind_ok {
            return Err(format!(
                "invalid component id `{s}`: the type must be lowercase letters, digits or `_` \
                 (expected `type` or `type/name`)"
            ));
        }
        if let Some(name) = name
            && (name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace))
        {
            return Err(format!(
                "invalid component id `{s}`: the name after `/` must be non-empty, without `/` \
                 or whitespace"
            ));
        }
        Ok(Self {
            full: Arc::from(s),
            type_len: kind.len(),
        })
    }

    /// The component type (`spotify` in `spotify/eu`).
    pub fn kind(&self) -> &str {
        &self.full[..self.type_len]
    }

    /// The name after the `/`, if any (`eu` in `spotify/eu`).
    pub fn name(&self) -> Option<&str> {
        self.full.get(self.type_len + 1..)
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::ComponentId;

    #[test]
    fn parses_type_and_name() {
        let id = ComponentId::parse("spotify/eu").expect("valid");
        assert_eq!((id.kind(), id.name()), ("spotify", Some("eu")));
        let id = ComponentId::parse("console").expect("valid");
        assert_eq!((id.kind(), id.name()), ("console", None));
        assert_eq!(id.to_string(), "console");
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in [
            "",
            "Spotify",
            "spotify/",
            "a/b/c",
            "1x",
            "a b",
            "spotify/e u",
        ] {
            assert!(ComponentId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
