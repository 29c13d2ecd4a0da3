//! `POST /v1/events`: sGTM event data from servers, taken verbatim — a JSON object, a JSON array
//! of objects, or NDJSON. A batch with an invalid event is refused whole, naming the first bad
//! one: nothing is half-accepted.
//!
//! An array's or NDJSON body's events are checked whole before any goes on, then read one at a
//! time as they go into the pipelines ([`Batch::Checked`]).

use std::fmt;

use http::StatusCode;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use smallvec::SmallVec;
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

/// A request's events: decoded, or the JSON texts of its objects, each already checked to
/// decode, read into event data one at a time as they go into the pipelines
/// ([`Batch::events`]).
///
/// Reading a batch's events as they go, rather than all of them before the first goes, keeps
/// each event in the CPU's caches from its reading until the sink's preparation frees it, and
/// lets the allocator give the next event the memory the last one has just given back. With a
/// hundred events read first, the processors found every event's fields out of cache
/// (BENCHMARKS.md, "The cache session").
#[derive(Debug)]
pub(crate) enum Batch<'a> {
    /// Events already read (a single object, GA4 hits, `/data` events).
    Decoded(Decoded),
    /// The texts of JSON objects that the checking pass ([`Check`]) read as decoding reads
    /// them: each decodes.
    Checked(Vec<&'a str>),
}

impl<'a> Batch<'a> {
    /// How many events.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Decoded(events) => events.len(),
            Self::Checked(texts) => texts.len(),
        }
    }

    /// The events, in order; a checked one is read when taken.
    pub(crate) fn events(self) -> Events<'a> {
        match self {
            Self::Decoded(events) => Events::Decoded(events.into_iter()),
            Self::Checked(texts) => Events::Checked(texts.into_iter()),
        }
    }
}

/// Events already read: one (a single hit or object, nearly every request) is kept inline, so a
/// request's batch allocates nothing of its own.
pub type Decoded = SmallVec<[EventData; 1]>;

/// The iterator of [`Batch::events`].
pub(crate) enum Events<'a> {
    Decoded(smallvec::IntoIter<[EventData; 1]>),
    Checked(std::vec::IntoIter<&'a str>),
}

impl Iterator for Events<'_> {
    type Item = EventData;

    fn next(&mut self) -> Option<EventData> {
        match self {
            Self::Decoded(events) => events.next(),
            Self::Checked(texts) => loop {
                let text = texts.next()?;
                match serde_json::from_str::<EventData>(text) {
                    Ok(event) => return Some(event),
                    // Not reached: the checking pass reads every number, string and level of
                    // nesting with the same deserializer and rules (the tests hold it to that,
                    // serde_json's `raw_value` feature included). Were a change to make the two
                    // differ, the client would already have its answer: the loss is logged.
                    Err(error) => {
                        tracing::error!(%error, "an accepted event did not decode: dropped");
                    }
                }
            },
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::Decoded(events) => events.size_hint(),
            Self::Checked(texts) => texts.size_hint(),
        }
    }
}

/// Parses the body into events, refusing the whole request on the first problem.
///
/// A single JSON object is decoded at once. The events of an array or of NDJSON are checked
/// first — every value read as decoding reads it, nothing kept — and come back as their texts
/// ([`Batch::Checked`]).
pub(crate) fn parse(
    body: &[u8],
    framing: Framing,
    max_events: usize,
) -> Result<Batch<'_>, HttpError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        HttpError::bad_request(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let start = text.trim_start();
    if start.is_empty() {
        return Err(HttpError::bad_request(
            "empty body: expected a JSON object, an array of objects, or NDJSON",
        ));
    }
    match framing {
        Framing::Json if start.starts_with('{') => serde_json::from_str::<EventData>(text)
            .map(|event| Batch::Decoded(SmallVec::from_buf([event])))
            .map_err(|e| malformed(&e)),
        Framing::Json => match array_items(text, max_events) {
            Some(array) => {
                too_many(array.len, max_events)?;
                match array.first_other {
                    Some((i, found)) => Err(not_an_object(i, found)),
                    None => Ok(Batch::Checked(array.items)),
                }
            }
            // Not a well-formed array: a pass over the whole body says where it breaks or what
            // it is instead.
            None => Err(match serde_json::from_str::<Kind>(text) {
                Err(e) => malformed(&e),
                // Not reached: the element-wise pass reads an array as this pass does, and a
                // body starting as an object was decoded above.
                Ok(Kind::Object | Kind::Other("an array")) => {
                    HttpError::bad_request("malformed JSON: the body could not be read as events")
                }
                Ok(Kind::Other(found)) => HttpError::bad_request(format!(
                    "expected a JSON object or an array of objects, found {found}"
                )),
            }),
        },
        Framing::Ndjson => {
            let mut events = Vec::new();
            for (line_no, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let index = events.len();
                too_many(index + 1, max_events)?;
                match serde_json::from_str::<Kind>(line) {
                    Ok(Kind::Object) => events.push(line),
                    Ok(Kind::Other(found)) => {
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
            Ok(Batch::Checked(events))
        }
    }
}

/// The elements of a JSON array body, as [`array_items`] finds them.
struct ArrayItems<'a> {
    /// The elements' texts (at most `max` are kept: more are refused anyway).
    items: Vec<&'a str>,
    /// How many elements.
    len: usize,
    /// The first element that is not an object: its index, and what it is.
    first_other: Option<(usize, &'static str)>,
}

/// The elements of a body that is one JSON array, each checked on its own ([`Kind`]) as it is
/// found — one pass over the body that yields each element's text. Each element is read as
/// [`Batch::events`] decodes it, on its own, so it may nest as deep as the decoder allows
/// (127 levels, itself included). `None` for a body that is anything else or breaks anywhere:
/// a [`Kind`] pass over the whole body then finds the error to report.
fn array_items(text: &str, max: usize) -> Option<ArrayItems<'_>> {
    let mut rest = trim_json_space(text).strip_prefix('[')?;
    let mut array = ArrayItems {
        items: Vec::new(),
        len: 0,
        first_other: None,
    };
    rest = trim_json_space(rest);
    if let Some(after) = rest.strip_prefix(']') {
        return trim_json_space(after).is_empty().then_some(array);
    }
    loop {
        let mut element = serde_json::Deserializer::from_str(rest).into_iter::<Kind>();
        let kind = element.next()?.ok()?;
        let (item, after) = rest.split_at(element.byte_offset());
        if let (Kind::Other(found), None) = (kind, array.first_other) {
            array.first_other = Some((array.len, found));
        }
        if array.len < max {
            array.items.push(item);
        }
        array.len += 1;
        rest = trim_json_space(after);
        if let Some(after) = rest.strip_prefix(',') {
            rest = trim_json_space(after);
        } else {
            let after = rest.strip_prefix(']')?;
            return trim_json_space(after).is_empty().then_some(array);
        }
    }
}

/// The text after the whitespace JSON allows between values.
fn trim_json_space(text: &str) -> &str {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
}

fn not_an_object(index: usize, found: &str) -> HttpError {
    HttpError::bad_request(format!(
        "event {index} is not a JSON object (found {found})"
    ))
}

/// The refusal of a body that is not JSON, with where.
fn malformed(e: &serde_json::Error) -> HttpError {
    HttpError::bad_request(format!(
        "malformed JSON at line {} column {}: {e}",
        e.line(),
        e.column()
    ))
}

/// The events of a JSON array of values (the `/data` endpoint's bodies): 413 above `max`, 400
/// naming the first item that is not an object.
pub(crate) fn objects(items: Vec<Value>, max: usize) -> Result<Vec<EventData>, HttpError> {
    too_many(items.len(), max)?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(event) => Ok(event.into()),
            other => Err(not_an_object(i, kind(&other))),
        })
        .collect()
}

/// One checked element of an array body, or one NDJSON line (or a whole body that is no
/// well-formed array, for its error): an object, or what was found.
enum Kind {
    Object,
    Other(&'static str),
}

/// Any JSON value, read as decoding it into event data reads it — numbers converted (out of
/// range is an error), strings unescaped (a lone surrogate is an error), nesting counted
/// against the same limit — and kept nowhere.
struct Check;

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl<'de> Visitor<'de> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Kind, A::Error> {
                CheckVisitor.visit_map(map)?;
                Ok(Kind::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Kind, A::Error> {
                CheckVisitor.visit_seq(seq)?;
                Ok(Kind::Other("an array"))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Kind, E> {
                Ok(Kind::Other("null"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Other("a boolean"))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind::Other("a number"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind::Other("a number"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind::Other("a number"))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Kind, E> {
                Ok(Kind::Other("a string"))
            }
        }
        deserializer.deserialize_any(KindVisitor)
    }
}

impl<'de> Deserialize<'de> for Check {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckVisitor)
    }
}

/// Visits any value for [`Check`].
struct CheckVisitor;

impl<'de> Visitor<'de> for CheckVisitor {
    type Value = Check;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Check, E> {
        Ok(Check)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Check, E> {
        Ok(Check)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Check, E> {
        Ok(Check)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Check, E> {
        Ok(Check)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Check, E> {
        Ok(Check)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Check, E> {
        Ok(Check)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Check, A::Error> {
        while seq.next_element::<Check>()?.is_some() {}
        Ok(Check)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Check, A::Error> {
        while map.next_entry::<Check, Check>()?.is_some() {}
        Ok(Check)
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
mod tests;
