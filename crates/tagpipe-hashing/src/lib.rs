//! # tagpipe-hashing
//!
//! The `hashing` processor: normalises, then SHA-256-hashes (lowercase hex) the configured fields,
//! as ad platforms require for user data.
//!
//! ```yaml
//! processors:
//!   hashing:
//!     fields:
//!       - { path: user_data.email_address, preset: email }
//!       - { path: user_data.phone_number, preset: phone }        # drop_plus: true for APIs without '+'
//!       - { path: user_data.address.first_name, preset: plain }
//! ```
//!
//! - Presets: `email` (trim, lowercase), `phone` (remove spaces, `-`, `(`, `)`; keep a leading
//!   `+` unless `drop_plus: true`), `plain` (trim, lowercase).
//! - Arrays and objects are hashed element by element (object keys are kept).
//! - A value that already is 64 hex characters is left as it is (already hashed).
//! - The strings `"undefined"` and `"null"`, empty strings and `null` are removed, not hashed; an
//!   array or object left empty is removed too.
//! - Numbers and booleans are hashed as their text.
//!
//! SHA-256 uses the CPU's SHA extensions where present (the `sha2` crate detects them at run
//! time); hex encoding goes through a 16-entry table into the string's own buffer.

mod config;
mod hash;
mod layer;
mod service;

pub use config::{FieldRule, HashingConfig, Preset};
pub use hash::{hash_value, is_sha256_hex, lower_hex_into, normalise, push_lower_hex, sha256_hex};
pub use layer::HashingLayer;
pub use service::Hashing;
