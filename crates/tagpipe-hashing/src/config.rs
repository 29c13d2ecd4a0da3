//! The `hashing` processor configuration.

use serde::Deserialize;
use tagpipe_core::{
    BoxError, ProcessorComponent, ProcessorConfig, ProcessorContext, ProcessorLayer,
    ValidationError,
};

use crate::layer::HashingLayer;
use crate::service::Hashing;

/// `hashing` processor settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashingConfig {
    /// The fields to hash (required, at least one).
    pub fields: Vec<FieldRule>,
}

/// One field to hash.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// The field, as a dotted path (`user_data.email_address`).
    pub path: String,
    /// How to normalise before hashing: `email`, `phone` or `plain` (default).
    #[serde(default)]
    pub preset: Preset,
    /// For `phone`: also remove the leading `+`. Default: `false`.
    #[serde(default)]
    pub drop_plus: bool,
}

/// Normalisation presets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Trim, lowercase.
    Email,
    /// Remove spaces, `-`, `(`, `)`; keep a leading `+` (unless `drop_plus`).
    Phone,
    /// Trim, lowercase.
    #[default]
    Plain,
}

impl ProcessorConfig for HashingConfig {
    fn validate(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        if self.fields.is_empty() {
            problems.push(ValidationError::new("fields", "list at least one field"));
        }
        for (i, rule) in self.fields.iter().enumerate() {
            if rule.path.is_empty() || rule.path.split('.').any(str::is_empty) {
                problems.push(ValidationError::new(
                    format!("fields.{i}.path"),
                    format!("`{}` is not a dotted path", rule.path),
                ));
            }
            if rule.drop_plus && rule.preset != Preset::Phone {
                problems.push(ValidationError::new(
                    format!("fields.{i}.drop_plus"),
                    "only applies to `preset: phone`",
                ));
            }
        }
        problems
    }

    fn build(&self, _cx: ProcessorContext) -> Result<ProcessorLayer, BoxError> {
        Ok(ProcessorLayer::new(HashingLayer::new(Hashing::new(
            self.clone(),
        ))))
    }
}

impl ProcessorComponent for HashingConfig {
    const TYPE: &'static str = "hashing";
}
