//! [`Mapping`]: filters, names and reshapes each event (an [`EventProcessor`], layered with
//! [`MappingLayer`](crate::MappingLayer)).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use tagpipe_core::event_data::ValueRef;
use tagpipe_core::{ComponentId, Event, EventProcessor, path};

use crate::config::{MappingConfig, NameMethod, Operation, Unmapped};

/// Filters, renames and reshapes events before the rest of the pipeline: the configuration
/// with its name table built once.
#[derive(Debug)]
pub struct Mapping {
    config: Arc<MappingConfig>,
    names: NameLookup,
    id: ComponentId,
}

/// An event-name table: a short list is scanned (faster than hashing a handful of names),
/// a long one hashed.
#[derive(Debug)]
enum NameLookup {
    Short(Vec<(String, String)>),
    Long(HashMap<String, String>),
}

impl NameLookup {
    fn new(table: HashMap<String, String>) -> Self {
        if table.len() <= 24 {
            Self::Short(table.into_iter().collect())
        } else {
            Self::Long(table)
        }
    }

    fn get(&self, name: &str) -> Option<&String> {
        match self {
            Self::Short(entries) => entries.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            Self::Long(map) => map.get(name),
        }
    }
}

/// A scalar as text, for value filters (`200` and `"200"` compare equal).
/// A value as the `match` filter compares it: a string's text, any other value's JSON.
fn as_text(v: ValueRef<'_>) -> Cow<'_, str> {
    match (v.as_str(), v.as_value()) {
        (Some(s), _) => Cow::Borrowed(s),
        (None, Some(other)) => Cow::Owned(other.to_string()),
        (None, None) => Cow::Borrowed(""),
    }
}

/// Whether a field counts as present: not null, not an empty string.
fn present(v: Option<ValueRef<'_>>) -> bool {
    v.is_some_and(|v| v.as_value().is_none_or(|v| !v.is_null()) && v.as_str() != Some(""))
}

impl Mapping {
    /// The mapping of `config`.
    pub fn new(config: Arc<MappingConfig>, id: ComponentId) -> Self {
        let names = match &config.event_name {
            Some(n) if n.method == NameMethod::Inherit => n.lookup(),
            _ => HashMap::new(),
        };
        Self {
            config,
            names: NameLookup::new(names),
            id,
        }
    }

    /// Why the event is dropped, if it is.
    fn filter(&self, event: &Event) -> Option<String> {
        let f = &self.config.filter;
        if f.is_empty() {
            return None;
        }
        let name = event.event_name().unwrap_or("");
        if !f.allow_events.is_empty() && !f.allow_events.iter().any(|n| n == name) {
            return Some(format!("filter: event `{name}` is not in allow_events"));
        }
        if f.deny_events.iter().any(|n| n == name) {
            return Some(format!("filter: event `{name}` is in deny_events"));
        }
        if let Some(missing) = f
            .require_fields
            .iter()
            .find(|p| !present(path::get_ref(&event.data, p)))
        {
            return Some(format!("filter: required field `{missing}` is missing"));
        }
        for (field, values) in &f.matches {
            let actual = path::get_ref(&event.data, field).map(as_text);
            if !values.iter().any(|v| Some(as_text(v.into())) == actual) {
                return Some(format!("filter: field `{field}` does not match"));
            }
        }
        if let Some(found) = f
            .absent_fields
            .iter()
            .find(|p| path::get_ref(&event.data, p).is_some())
        {
            return Some(format!("filter: field `{found}` must be absent"));
        }
        None
    }

    /// Applies the name and the operations. `Err` is a reason to skip.
    pub fn apply(&self, event: &mut Event) -> Result<(), String> {
        if let Some(reason) = self.filter(event) {
            return Err(reason);
        }
        if let Some(naming) = &self.config.event_name {
            let current = event.event_name().unwrap_or("");
            let new_name: Option<&str> = match naming.method {
                NameMethod::Standard | NameMethod::Custom => naming.name.as_deref(),
                NameMethod::Inherit => match self.names.get(current) {
                    Some(mapped) => Some(mapped.as_str()),
                    None if naming.unmapped == Unmapped::Drop => {
                        return Err(format!("mapping: event `{current}` has no mapped name"));
                    }
                    None => None,
                },
            };
            if let Some(new_name) = new_name.filter(|n| *n != current) {
                // Replace the text in place: no new key, usually no new allocation.
                event.data_mut().set_str("event_name", new_name);
            }
        }
        for op in &self.config.operations {
            apply_operation(event, op).map_err(|e| format!("mapping: {e}"))?;
        }
        Ok(())
    }
}

fn apply_operation(event: &mut Event, op: &Operation) -> Result<(), String> {
    match op {
        Operation::Set {
            path: to,
            value: Some(value),
            ..
        } => {
            // A shared event is copied only when the value changes.
            let owned = Arc::get_mut(&mut event.data).is_some();
            if owned || path::get_ref(&event.data, to) != Some(value.into()) {
                path::set(event.data_mut(), to, value.clone())?;
            }
        }
        Operation::Set {
            path: to,
            from: Some(from),
            ..
        }
        | Operation::Copy { from, to } => {
            if let Some(value) = path::get(&event.data, from).cloned() {
                path::set(event.data_mut(), to, value)?;
            }
        }
        Operation::Set { .. } => {}
        Operation::Rename { from, to } => {
            // An event this pipeline owns alone is changed in place at once; a shared one is
            // copied only when there is something to rename.
            let owned = Arc::get_mut(&mut event.data).is_some();
            if !owned && path::get_ref(&event.data, from).is_none() {
                return Ok(());
            }
            path::rename(event.data_mut(), from, to)?;
        }
        Operation::Delete(p) => {
            if path::get_ref(&event.data, p).is_some() {
                path::remove(event.data_mut(), p);
            }
        }
    }
    Ok(())
}

impl EventProcessor for Mapping {
    fn process(&self, event: &mut Event) -> Result<(), String> {
        self.apply(event).inspect_err(|reason| {
            tracing::debug!(processor = %self.id, %reason, "event skipped");
        })
    }
}

#[cfg(test)]
mod tests;
