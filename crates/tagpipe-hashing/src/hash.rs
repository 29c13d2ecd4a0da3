//! Normalising and hashing values.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{FieldRule, Preset};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `s` already is a SHA-256 in hex (64 hex characters, either case).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Normalises `input` per `preset` into `out` (cleared first).
pub fn normalise(input: &str, preset: Preset, drop_plus: bool, out: &mut String) {
    out.clear();
    let trimmed = input.trim();
    match preset {
        Preset::Email | Preset::Plain => {
            if trimmed.is_ascii() {
                out.push_str(trimmed);
                out.make_ascii_lowercase();
            } else {
                out.extend(trimmed.chars().flat_map(char::to_lowercase));
            }
        }
        Preset::Phone => {
            for (i, c) in trimmed.char_indices() {
                match c {
                    ' ' | '-' | '(' | ')' => {}
                    '+' if i == 0 && drop_plus => {}
                    c => out.push(c),
                }
            }
        }
    }
}

/// SHA-256 of `input`, written as lowercase hex into `out` (cleared first).
pub fn sha256_hex(input: &[u8], out: &mut String) {
    let digest = Sha256::digest(input);
    out.clear();
    push_lower_hex(&digest, out);
}

/// Appends `bytes` as lowercase hex to `out`.
pub fn push_lower_hex(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

/// `bytes` as lowercase hex into the start of `out`, two digits per byte (as many bytes as `out`
/// has room for): for hex text kept in a fixed buffer rather than a `String`.
pub fn lower_hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
}

/// A value to remove rather than hash.
fn is_placeholder(s: &str) -> bool {
    let t = s.trim();
    t.is_empty() || t == "undefined" || t == "null"
}

/// Hashes `value` in place per `rule`. Returns `false` when the value should be removed.
pub fn hash_value(value: &mut Value, rule: &FieldRule) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => {
            if is_placeholder(s) {
                return false;
            }
            if !is_sha256_hex(s) {
                hash_string(s, rule);
            }
            true
        }
        Value::Number(_) | Value::Bool(_) => {
            let mut text = value.to_string();
            hash_string(&mut text, rule);
            *value = Value::String(text);
            true
        }
        Value::Array(items) => {
            items.retain_mut(|item| hash_value(item, rule));
            !items.is_empty()
        }
        Value::Object(map) => {
            map.retain(|_, item| hash_value(item, rule));
            !map.is_empty()
        }
    }
}

/// Replaces `s` with the hash of its normalised form, reusing its buffer for the result.
fn hash_string(s: &mut String, rule: &FieldRule) {
    let mut normalised = String::with_capacity(s.len());
    normalise(s, rule.preset, rule.drop_plus, &mut normalised);
    sha256_hex(normalised.as_bytes(), s);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(preset: Preset) -> FieldRule {
        FieldRule {
            path: "x".into(),
            preset,
            drop_plus: false,
        }
    }

    fn hashed(v: Value, preset: Preset) -> Option<Value> {
        let mut v = v;
        hash_value(&mut v, &rule(preset)).then_some(v)
    }

    #[test]
    fn the_vectors_examples() {
        assert_eq!(
            hashed(json!(" Test@Example.com "), Preset::Email),
            Some(json!(
                "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
            ))
        );
        assert_eq!(
            hashed(json!("+55 (19) 99999-9999"), Preset::Phone),
            Some(json!(
                "c698c0b85d32cbcf5033ada58f34de87d4f7415efaf5a8d1c1e9e63393dcc85e"
            ))
        );
        // The Spotify tag's phone normalisation keeps the `+`; same hash for another spelling.
        assert_eq!(
            hashed(json!("+55 19 9-9999-9999"), Preset::Phone),
            Some(json!(
                "c698c0b85d32cbcf5033ada58f34de87d4f7415efaf5a8d1c1e9e63393dcc85e"
            ))
        );
    }

    #[test]
    fn drop_plus_removes_the_leading_plus_only() {
        let mut out = String::new();
        normalise("+1 (555) 010-2+3", Preset::Phone, true, &mut out);
        assert_eq!(out, "15550102+3");
        normalise("+1 (555) 010-2", Preset::Phone, false, &mut out);
        assert_eq!(out, "+15550102");
    }

    #[test]
    fn already_hashed_placeholders_arrays_and_objects() {
        let h = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
        assert_eq!(hashed(json!(h), Preset::Email), Some(json!(h)));
        assert_eq!(
            hashed(json!(h.to_uppercase()), Preset::Email),
            Some(json!(h.to_uppercase()))
        );
        for gone in [
            json!("undefined"),
            json!("null"),
            json!(""),
            json!("  "),
            json!(null),
            json!([]),
            json!({}),
        ] {
            assert_eq!(hashed(gone.clone(), Preset::Email), None, "{gone}");
        }
        let arr = hashed(json!(["test@example.com", "undefined", h]), Preset::Email).unwrap();
        assert_eq!(arr, json!([h, h]));
        let obj = hashed(json!({"0": "TEST@example.com", "1": null}), Preset::Email).unwrap();
        assert_eq!(obj, json!({"0": h}));
        let n = hashed(json!(5_551_234), Preset::Phone).unwrap();
        assert!(is_sha256_hex(n.as_str().unwrap()));
    }

    #[test]
    fn unicode_lowercases() {
        let mut out = String::new();
        normalise("  ÉLODIE@Exemple.FR ", Preset::Email, false, &mut out);
        assert_eq!(out, "élodie@exemple.fr");
    }

    #[test]
    fn hex_into_a_buffer_is_the_hex_pushed_onto_a_string() {
        let bytes = [0x00, 0x0f, 0x10, 0x9a, 0xff];
        let mut pushed = String::new();
        push_lower_hex(&bytes, &mut pushed);
        let mut buffer = [0u8; 10];
        lower_hex_into(&bytes, &mut buffer);
        assert_eq!(std::str::from_utf8(&buffer).unwrap(), pushed);
        assert_eq!(pushed, "000f109aff");
        // Room for fewer digits than bytes: as many whole bytes as fit.
        let mut short = [b'.'; 5];
        lower_hex_into(&bytes, &mut short);
        assert_eq!(&short, b"000f.");
    }
}
