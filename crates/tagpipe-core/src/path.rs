//! Dotted paths into event data: `user_data.email_address`, `items.0.price`.
//!
//! A segment that is a number indexes an array. Reading never fails (a missing path is `None`);
//! writing creates the objects and arrays on the way (`set`), and refuses only when an existing
//! scalar is in the way.

use serde_json::{Map, Value};

use crate::event::EventData;
use crate::event_data::ValueRef;

/// The value at `path`, if any.
pub fn get<'a>(data: &'a EventData, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        // The common case, a top-level field.
        None => data.get(path),
        Some((first, rest)) => descend(data.get(first)?, rest),
    }
}

/// The value at `path`, if any, as a reader of text sees it ([`EventData::get_ref`]): a field
/// kept as text (a GA4 hit's strings) is read without building a JSON string for it, as
/// [`get`] does. For checks and comparisons that need no `&Value`.
pub fn get_ref<'a>(data: &'a EventData, path: &str) -> Option<ValueRef<'a>> {
    let Some((first, rest)) = path.split_once('.') else {
        return data.get_ref(path);
    };
    // Text has no fields: only a value can hold the rest of the path.
    descend(data.get_ref(first)?.as_value()?, rest).map(ValueRef::Value)
}

/// The value at the dotted `rest` of a path inside `current`.
fn descend<'a>(mut current: &'a Value, rest: &str) -> Option<&'a Value> {
    for segment in rest.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Removes and returns the value at `path`.
pub fn remove(data: &mut EventData, path: &str) -> Option<Value> {
    match path.rsplit_once('.') {
        None => data.remove(path),
        Some((parent, last)) => match get_mut(data, parent)? {
            Value::Object(map) => map.remove(last),
            Value::Array(items) => {
                let i = last.parse::<usize>().ok()?;
                (i < items.len()).then(|| items.remove(i))
            }
            _ => None,
        },
    }
}

/// Moves the value at `from` to `to`, as [`remove`] then [`set`] would; whether there was one.
/// Between two top-level names it is one move within the event data ([`EventData::rename`]).
pub fn rename(data: &mut EventData, from: &str, to: &str) -> Result<bool, String> {
    if !from.contains('.') && !to.contains('.') && !to.is_empty() {
        return Ok(data.rename(from, to));
    }
    match remove(data, from) {
        Some(value) => set(data, to, value).map(|()| true),
        None => Ok(false),
    }
}

/// Mutable access to the value at `path`, if any.
pub fn get_mut<'a>(data: &'a mut EventData, path: &str) -> Option<&'a mut Value> {
    let mut segments = path.split('.');
    let mut current = data.get_mut(segments.next()?)?;
    for segment in segments {
        current = match current {
            Value::Object(map) => map.get_mut(segment)?,
            Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Sets the value at `path`, creating objects (or arrays, for numeric segments) on the way.
/// An array index may be at most the array's length (appending). Fails when a scalar is in the
/// way or an index would leave a gap.
pub fn set(data: &mut EventData, path: &str, value: Value) -> Result<(), String> {
    if !path.contains('.') {
        if path.is_empty() {
            return Err("an empty path".into());
        }
        // The common case: a top-level field, found with one search.
        data.set(path, value);
        return Ok(());
    }
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("`{path}` is not a valid path"));
    }
    let (first, rest) = segments
        .split_first()
        .expect("split yields at least one segment");
    if rest.is_empty() {
        data.insert((*first).to_owned(), value);
        return Ok(());
    }
    let slot = data.get_or_insert_with((*first).to_owned(), || container_for(rest[0]));
    set_in(slot, rest, value, path)
}

fn container_for(next: &str) -> Value {
    if next.parse::<usize>().is_ok() {
        Value::Array(Vec::new())
    } else {
        Value::Object(Map::new())
    }
}

fn set_in(slot: &mut Value, segments: &[&str], value: Value, path: &str) -> Result<(), String> {
    let (segment, rest) = segments.split_first().expect("called with a segment");
    let child = match slot {
        Value::Object(map) => {
            if rest.is_empty() {
                map.insert((*segment).to_owned(), value);
                return Ok(());
            }
            map.entry((*segment).to_owned())
                .or_insert_with(|| container_for(rest[0]))
        }
        Value::Array(items) => {
            let i: usize = segment
                .parse()
                .map_err(|_| format!("`{path}`: `{segment}` indexes an array"))?;
            if i > items.len() {
                return Err(format!("`{path}`: index {i} leaves a gap in the array"));
            }
            if rest.is_empty() {
                if i == items.len() {
                    items.push(value);
                } else {
                    items[i] = value;
                }
                return Ok(());
            }
            if i == items.len() {
                items.push(container_for(rest[0]));
            }
            &mut items[i]
        }
        _ => {
            return Err(format!(
                "`{path}`: a value that is not an object is in the way"
            ));
        }
    };
    set_in(child, rest, value, path)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(v: Value) -> EventData {
        EventData::try_from(v).expect("test data is an object")
    }

    #[test]
    fn get_set_remove() {
        let mut d = data(json!({"user_data": {"email_address": "a@b.c"}, "items": [{"price": 1}]}));
        assert_eq!(get(&d, "user_data.email_address"), Some(&json!("a@b.c")));
        assert_eq!(get(&d, "items.0.price"), Some(&json!(1)));
        assert_eq!(get(&d, "items.1.price"), None);
        set(&mut d, "items.1.price", json!(2)).unwrap();
        set(&mut d, "a.b.c", json!(true)).unwrap();
        set(&mut d, "list.0.x", json!("y")).unwrap();
        assert_eq!(d["items"], json!([{"price": 1}, {"price": 2}]));
        assert_eq!(d["a"], json!({"b": {"c": true}}));
        assert_eq!(d["list"], json!([{"x": "y"}]));
        assert!(set(&mut d, "items.5.price", json!(3)).is_err());
        assert!(set(&mut d, "user_data.email_address.x", json!(3)).is_err());
        assert_eq!(
            remove(&mut d, "user_data.email_address"),
            Some(json!("a@b.c"))
        );
        assert_eq!(remove(&mut d, "items.0"), Some(json!({"price": 1})));
        assert_eq!(d["items"], json!([{"price": 2}]));
    }

    #[test]
    fn rename_moves_top_level_and_nested_values() {
        let mut d = data(json!({"transaction_id": "T-1", "user_data": {"em": "x"}, "a": 1}));
        assert_eq!(rename(&mut d, "transaction_id", "event_id"), Ok(true));
        assert_eq!(rename(&mut d, "user_data.em", "email"), Ok(true));
        assert_eq!(rename(&mut d, "a", "user_data.a"), Ok(true));
        assert_eq!(rename(&mut d, "missing", "b"), Ok(false));
        assert_eq!(
            d.to_value(),
            json!({"event_id": "T-1", "email": "x", "user_data": {"a": 1}})
        );
        assert!(
            rename(&mut d, "event_id", "email.x").is_err(),
            "a scalar in the way"
        );
    }
}
