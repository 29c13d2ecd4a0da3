//! The `mapping` processor configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tagpipe_core::{
    BoxError, ProcessorComponent, ProcessorConfig, ProcessorContext, ProcessorLayer,
    ValidationError,
};

use crate::layer::MappingLayer;
use crate::service::Mapping;
use crate::tables::{SPOTIFY_API, SPOTIFY_TAG};

/// `mapping` processor settings. Every part is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Which events to keep (applied first, to the incoming event).
    #[serde(default)]
    pub filter: FilterConfig,
    /// How `event_name` is set. Unset: left as it is.
    #[serde(default)]
    pub event_name: Option<EventNameConfig>,
    /// Field operations, applied in order after the event name.
    #[serde(default)]
    pub operations: Vec<Operation>,
}

/// Keep or drop events. An event must pass every configured test.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Keep only these event names (empty: all).
    #[serde(default)]
    pub allow_events: Vec<String>,
    /// Drop these event names.
    #[serde(default)]
    pub deny_events: Vec<String>,
    /// Drop events missing any of these fields (dotted paths; null and `""` count as missing).
    #[serde(default)]
    pub require_fields: Vec<String>,
    /// Drop events that have any of these fields.
    #[serde(default)]
    pub absent_fields: Vec<String>,
    /// Keep only events whose fields have one of the listed values (field → values; every
    /// listed field must match), e.g. `{type: [Rejected, Message]}` on the `logs` source.
    /// Values compare as text (`200` matches `"200"`).
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, Vec<Value>>,
}

impl FilterConfig {
    /// Whether it filters nothing (the default).
    pub fn is_empty(&self) -> bool {
        self.allow_events.is_empty()
            && self.deny_events.is_empty()
            && self.require_fields.is_empty()
            && self.absent_fields.is_empty()
            && self.matches.is_empty()
    }
}

/// How the event name is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventNameConfig {
    /// `standard` (fixed `name`), `inherit` (looked up from the incoming name) or `custom`
    /// (fixed custom `name`).
    pub method: NameMethod,
    /// The fixed name, for `standard` and `custom`.
    #[serde(default)]
    pub name: Option<String>,
    /// For `inherit`: the base table — `spotify_tag` (default), `spotify_api` or `none`.
    #[serde(default)]
    pub table: NameTable,
    /// For `inherit`: entries added to (or overriding) the table, incoming name → name.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// For `inherit`: what happens to a name the table lacks — `pass` (unchanged, default, as
    /// the Spotify tag) or `drop` (skipped with a reason).
    #[serde(default)]
    pub unmapped: Unmapped,
}

/// Event-name methods, as in the Spotify tag's "event type".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameMethod {
    /// A fixed standard name.
    Standard,
    /// Mapped from the incoming event name.
    Inherit,
    /// A fixed custom name.
    Custom,
}

/// A shipped event-name table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameTable {
    /// The Stape Spotify tag's names (`Page_View`, `Add_Cart`, …).
    #[default]
    SpotifyTag,
    /// Spotify's API reference names (`VIEW`, `ADD_TO_CART`, …).
    SpotifyApi,
    /// No base table: only `names`.
    None,
}

/// What `inherit` does with a name missing from the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Keep the incoming name.
    #[default]
    Pass,
    /// Skip the event.
    Drop,
}

/// One field operation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// `set: {path, value}` or `set: {path, from}`: a literal, or another field's value (when
    /// that field is missing, nothing is set).
    Set {
        /// Where to write.
        path: String,
        /// The literal value (any YAML value, including `null`).
        #[serde(default, deserialize_with = "present")]
        value: Option<Value>,
        /// The field to read instead of a literal.
        #[serde(default)]
        from: Option<String>,
    },
    /// `copy: {from, to}`: copy a field (nothing when it is missing).
    Copy {
        /// Source field.
        from: String,
        /// Target field.
        to: String,
    },
    /// `rename: {from, to}`: move a field (nothing when it is missing).
    Rename {
        /// Source field.
        from: String,
        /// Target field.
        to: String,
    },
    /// `delete: path`: remove a field.
    Delete(String),
}

/// A present key is `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl EventNameConfig {
    /// The lookup table for `inherit`.
    pub(crate) fn lookup(&self) -> HashMap<String, String> {
        let base: &[(&str, &str)] = match self.table {
            NameTable::SpotifyTag => SPOTIFY_TAG,
            NameTable::SpotifyApi => SPOTIFY_API,
            NameTable::None => &[],
        };
        base.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain(self.names.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }
}

fn check_path(problems: &mut Vec<ValidationError>, field: String, path: &str) {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        problems.push(ValidationError::new(
            field,
            format!("`{path}` is not a dotted path like `user_data.email_address`"),
        ));
    }
}

impl ProcessorConfig for MappingConfig {
    fn validate(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        if let Some(name) = &self.event_name {
            let fixed = matches!(name.method, NameMethod::Standard | NameMethod::Custom);
            let has_name = name.name.as_deref().is_some_and(|n| !n.trim().is_empty());
            if fixed && !has_name {
                problems.push(ValidationError::new(
                    "event_name.name",
                    "`standard` and `custom` need a `name`",
                ));
            }
            if !fixed && name.name.is_some() {
                problems.push(ValidationError::new(
                    "event_name.name",
                    "`inherit` takes its names from `table` and `names`, not `name`",
                ));
            }
        }
        for (i, op) in self.operations.iter().enumerate() {
            let at = |f: &str| format!("operations.{i}.{f}");
            match op {
                Operation::Set { path, value, from } => {
                    check_path(&mut problems, at("path"), path);
                    match (value, from) {
                        (Some(_), Some(_)) | (None, None) => problems.push(ValidationError::new(
                            format!("operations.{i}"),
                            "`set` takes exactly one of `value` or `from`",
                        )),
                        (None, Some(from)) => check_path(&mut problems, at("from"), from),
                        (Some(_), None) => {}
                    }
                }
                Operation::Copy { from, to } | Operation::Rename { from, to } => {
                    check_path(&mut problems, at("from"), from);
                    check_path(&mut problems, at("to"), to);
                }
                Operation::Delete(path) => {
                    check_path(&mut problems, format!("operations.{i}"), path);
                }
            }
        }
        for (path, values) in &self.filter.matches {
            check_path(&mut problems, format!("filter.match.{path}"), path);
            if values.is_empty() {
                problems.push(ValidationError::new(
                    format!("filter.match.{path}"),
                    "list at least one value",
                ));
            }
        }
        for (field, paths) in [
            ("filter.require_fields", &self.filter.require_fields),
            ("filter.absent_fields", &self.filter.absent_fields),
        ] {
            for (i, p) in paths.iter().enumerate() {
                check_path(&mut problems, format!("{field}.{i}"), p);
            }
        }
        problems
    }

    fn build(&self, cx: ProcessorContext) -> Result<ProcessorLayer, BoxError> {
        Ok(ProcessorLayer::new(MappingLayer::new(Mapping::new(
            Arc::new(self.clone()),
            cx.id,
        ))))
    }
}

impl ProcessorComponent for MappingConfig {
    const TYPE: &'static str = "mapping";
}
