//! `POST /v1/events`: sGTM event data from servers, taken verbatim — a JSON object, a JSON array
//! of objects, or NDJSON. A batch with an invalid event is refused whole, naming the first bad
//! one: nothing is half-accepted.

use std::fmt;

use http::StatusCode;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tagpipe_core::EventData;

use crate::error::HttpError;

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One JSON document: an object or an array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl Framing {
    /// From the media type; `None` (no `Content-Type`) is read as JSON.
    pub(crate) fn from_media_type(media: Option<&str>) -> Result<Self, HttpError> {
        match media {
            None | Some("application/json" | "text/json") => Ok(Self::Json),
            Some(m) if m.ends_with("+json") => Ok(Self::Json),
            Some("application/x-ndjson" | "application/jsonl" | "application/jsonlines") => {
                Ok(Self::Ndjson)
            }
            Some(other) => Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type `{other}`: send application/json or application/x-ndjson"
                ),
            )),
        }
    }
}

/// Parses the body into events, refusing the whole request on the first problem.
pub(crate) fn parse(
    body: &[u8],
    framing: Framing,
    max_events: usize,
) -> Result<Vec<EventData>, HttpError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        HttpError::bad_request(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(HttpError::bad_request(
            "empty body: expected a JSON object, an array of objects, or NDJSON",
        ));
    }
    let events = match framing {
        Framing::Json => match serde_json::from_str::<Document>(text) {
            Err(e) => {
                return Err(HttpError::bad_request(format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                )));
            }
            Ok(Document::Event(event)) => vec![event],
            Ok(Document::Array(items)) => events_of(items, max_events)?,
            Ok(Document::Other(found)) => {
                return Err(HttpError::bad_request(format!(
                    "expected a JSON object or an array of objects, found {found}"
                )));
            }
        },
        Framing::Ndjson => {
            let mut events = Vec::new();
            for (line_no, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let index = events.len();
                too_many(index + 1, max_events)?;
                match serde_json::from_str::<Item>(line) {
                    Ok(Item::Event(event)) => events.push(event),
                    Ok(Item::Other(found)) => {
                        return Err(HttpError::bad_request(format!(
                            "event {index} (line {}) is not a JSON object (found {found})",
                            line_no + 1,
                        )));
                    }
                    Err(e) => {
                        return Err(HttpError::bad_request(format!(
                            "event {index} (line {}): malformed JSON at column {}: {e}",
                            line_no + 1,
                            e.column()
                        )));
                    }
                }
            }
            events
        }
    };
    too_many(events.len(), max_events)?;
    Ok(events)
}

/// The events of a JSON array of values (the `/data` endpoint's bodies): 413 above `max`, 400
/// naming the first item that is not an object.
pub(crate) fn objects(items: Vec<Value>, max: usize) -> Result<Vec<EventData>, HttpError> {
    let items = items
        .into_iter()
        .map(|item| match item {
            Value::Object(event) => Item::Event(event.into()),
            other => Item::Other(kind(&other)),
        })
        .collect();
    events_of(items, max)
}

/// The events of an array body: 413 above `max`, 400 naming the first item that is not an
/// object.
fn events_of(items: Vec<Item>, max: usize) -> Result<Vec<EventData>, HttpError> {
    too_many(items.len(), max)?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Item::Event(event) => Ok(event),
            Item::Other(found) => Err(HttpError::bad_request(format!(
                "event {i} is not a JSON object (found {found})"
            ))),
        })
        .collect()
}

/// The visits of JSON scalars, each naming what was found (`Other`).
macro_rules! scalar_visits {
    ($what:ident) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<$what, E> {
            Ok($what::Other("null"))
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<$what, E> {
            Ok($what::Other("a boolean"))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<$what, E> {
            Ok($what::Other("a number"))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<$what, E> {
            Ok($what::Other("a number"))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<$what, E> {
            Ok($what::Other("a number"))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<$what, E> {
            Ok($what::Other("a string"))
        }
    };
}

/// A JSON body read straight into event data (no intermediate `Value` tree for the events'
/// top level): one object, an array, or something else (named for the error).
enum Document {
    Event(EventData),
    Array(Vec<Item>),
    Other(&'static str),
}

/// One element of an array body or one NDJSON line: an event, or what was found instead.
enum Item {
    Event(EventData),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocumentVisitor;
        impl<'de> Visitor<'de> for DocumentVisitor {
            type Value = Document;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object or an array of objects")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Document, A::Error> {
                EventData::deserialize(MapAccessDeserializer::new(map)).map(Document::Event)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(item) = seq.next_element::<Item>()? {
                    items.push(item);
                }
                Ok(Document::Array(items))
            }
            scalar_visits!(Document);
        }
        deserializer.deserialize_any(DocumentVisitor)
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                EventData::deserialize(MapAccessDeserializer::new(map)).map(Item::Event)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item::Other("an array"))
            }
            scalar_visits!(Item);
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

fn too_many(n: usize, max: usize) -> Result<(), HttpError> {
    if n > max {
        Err(HttpError::too_large(format!(
            "too many events in one request: at most {max} are accepted"
        )))
    } else {
        Ok(())
    }
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_ndjson() {
        assert_eq!(parse(br#"{"a":1}"#, Framing::Json, 10).unwrap().len(), 1);
        assert_eq!(
            parse(br#"[{"a":1},{"b":2}]"#, Framing::Json, 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse(b"{\"a\":1}\n\n{\"b\":2}\n", Framing::Ndjson, 10)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn refusals_say_what_and_where() {
        let e = parse(br#"[{"a":1},"x",{"b":2}]"#, Framing::Json, 10).unwrap_err();
        assert_eq!(e.message, "event 1 is not a JSON object (found a string)");
        let e = parse(b"{\"a\":1}\n{\"b\":", Framing::Ndjson, 10).unwrap_err();
        assert!(
            e.message.starts_with("event 1 (line 2): malformed JSON"),
            "{}",
            e.message
        );
        let e = parse(b"{\"a\": tru}", Framing::Json, 10).unwrap_err();
        assert!(
            e.message.starts_with("malformed JSON at line 1 column"),
            "{}",
            e.message
        );
        let e = parse(b"{\"a\": \"\xff\"}", Framing::Json, 10).unwrap_err();
        assert_eq!(e.message, "the body is not valid UTF-8 (at byte 7)");
        let e = parse(b"[{},{},{}]", Framing::Json, 2).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = parse(b"42", Framing::Json, 2).unwrap_err();
        assert!(e.message.contains("found a number"));
        assert_eq!(
            Framing::from_media_type(Some("text/csv"))
                .unwrap_err()
                .status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
