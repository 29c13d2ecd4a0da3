//! Text values kept in one buffer per event: a source that reads many short strings (a GA4
//! hit's two dozen parameters) appends them to its event's buffer rather than allocating a
//! `String` for each, and readers that want text ([`ValueRef`], `get_str`) read the slice. A
//! reader that asks for a `&Value` gets one built on first read and kept (one per field).

use std::fmt;
use std::sync::OnceLock;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// The text of an event's text fields, and those fields as JSON strings once read as `Value`s.
#[derive(Default)]
pub(super) struct TextStore {
    text: String,
    /// How many spans were handed out (each has a cell).
    count: u32,
    /// A cell per span, made on the first read of any span as a `Value`.
    cells: OnceLock<Box<[OnceLock<Value>]>>,
}

/// Where a text field's value sits in its event's [`TextStore`].
#[derive(Clone, Copy, Debug)]
pub(super) struct TextSpan {
    start: u32,
    len: u32,
    /// The span's cell.
    index: u32,
}

impl TextSpan {
    /// No text (what a slot holds before it is set; never read).
    pub(super) const EMPTY: Self = Self {
        start: 0,
        len: 0,
        index: 0,
    };
}

impl TextStore {
    /// An empty store (no allocation).
    pub(super) const fn new() -> Self {
        Self {
            text: String::new(),
            count: 0,
            cells: OnceLock::new(),
        }
    }

    /// Room for `additional` more bytes of text.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.text.reserve(additional);
    }

    /// Appends what `write` writes as one value: its span, or the text itself should the store
    /// outgrow what a span can address (4 GiB).
    pub(super) fn push_with(
        &mut self,
        write: impl FnOnce(&mut String),
    ) -> Result<TextSpan, String> {
        if self.cells.get().is_some() {
            // Values were built for the spans so far: the table of cells is made again, with
            // one for the new span, on the next read.
            self.cells = OnceLock::new();
        }
        let start = self.text.len();
        write(&mut self.text);
        let end = self.text.len();
        match (u32::try_from(start), u32::try_from(end - start)) {
            (Ok(start), Ok(len)) if self.count < u32::MAX => {
                let index = self.count;
                self.count += 1;
                Ok(TextSpan { start, len, index })
            }
            _ => Err(self.text.split_off(start)),
        }
    }

    /// The text of `span`.
    #[inline]
    pub(super) fn str(&self, span: TextSpan) -> &str {
        let start = span.start as usize;
        let text = self.text.get(start..start + span.len as usize);
        // A store's spans are handed out only by it, within its text.
        debug_assert!(text.is_some(), "a span outside its store's text");
        text.unwrap_or_default()
    }

    /// `span` as a JSON string, built on first read.
    pub(super) fn value(&self, span: TextSpan) -> &Value {
        self.cell(span).map_or(&Value::Null, |cell| {
            cell.get_or_init(|| Value::String(self.str(span).to_owned()))
        })
    }

    /// The value `build` makes from the text of `span`, built on first read and kept in the
    /// span's cell (a span read this way is never read as a JSON string).
    pub(super) fn built(&self, span: TextSpan, build: fn(&str) -> Value) -> &Value {
        self.cell(span).map_or(&Value::Null, |cell| {
            cell.get_or_init(|| build(self.str(span)))
        })
    }

    /// The value `build` makes from the text of `span`, owned: the one already built (copied),
    /// else built now without keeping it (for a reader that takes the value or changes it).
    pub(super) fn built_owned(&self, span: TextSpan, build: fn(&str) -> Value) -> Value {
        let built = self
            .cells
            .get()
            .and_then(|cells| cells.get(span.index as usize))
            .and_then(OnceLock::get);
        built.cloned().unwrap_or_else(|| build(self.str(span)))
    }

    /// The cell of `span`, the cells made on first use.
    fn cell(&self, span: TextSpan) -> Option<&OnceLock<Value>> {
        let cells = self
            .cells
            .get_or_init(|| (0..self.count).map(|_| OnceLock::new()).collect());
        // A new span drops the cells (they are made again with one for it), and a store's spans
        // are handed out only by it: every span has a cell.
        let cell = cells.get(span.index as usize);
        debug_assert!(cell.is_some(), "a span without a cell");
        cell
    }

    /// Replaces the text of `span` with `value` when it has the same length (no other span's
    /// text moves); whether it did. Values built from the old text are dropped.
    pub(super) fn overwrite(&mut self, span: TextSpan, value: &str) -> bool {
        let start = span.start as usize;
        let range = start..start + span.len as usize;
        if value.len() != range.len() || self.text.get(range.clone()).is_none() {
            return false;
        }
        self.text.replace_range(range, value);
        self.cells = OnceLock::new();
        true
    }

    /// Whether any value was built from the text (tests: reading text builds none).
    #[cfg(test)]
    pub(super) fn built_any(&self) -> bool {
        self.cells.get().is_some()
    }

    /// `span` as an owned JSON string.
    pub(super) fn to_value(&self, span: TextSpan) -> Value {
        Value::String(self.str(span).to_owned())
    }
}

impl Clone for TextStore {
    /// A copy of the text; values are built again on first read.
    fn clone(&self) -> Self {
        Self {
            text: self.text.clone(),
            count: self.count,
            cells: OnceLock::new(),
        }
    }
}

/// A field's value as a reader sees it without building anything: text kept in the event's
/// buffer, or a JSON value. Compares equal to a `Value` of the same JSON (`Str("a")` equals
/// `Value(&json!("a"))`).
#[derive(Clone, Copy)]
pub enum ValueRef<'a> {
    /// A JSON string kept as text.
    Str(&'a str),
    /// Any JSON value.
    Value(&'a Value),
}

impl<'a> ValueRef<'a> {
    /// The text, when the value is a string.
    #[inline]
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Value(v) => v.as_str(),
        }
    }

    /// The JSON value, unless it is text kept as such.
    pub fn as_value(self) -> Option<&'a Value> {
        match self {
            Self::Str(_) => None,
            Self::Value(v) => Some(v),
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(value: &'a Value) -> Self {
        Self::Value(value)
    }
}

impl PartialEq for ValueRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (*self, *other) {
            (Self::Str(a), Self::Str(b)) => a == b,
            (Self::Str(s), Self::Value(v)) | (Self::Value(v), Self::Str(s)) => {
                v.as_str() == Some(s)
            }
            (Self::Value(a), Self::Value(b)) => a == b,
        }
    }
}

impl fmt::Debug for ValueRef<'_> {
    /// As the `Value` would print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write!(f, "String({s:?})"),
            Self::Value(v) => fmt::Debug::fmt(v, f),
        }
    }
}

impl Serialize for ValueRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Str(s) => serializer.serialize_str(s),
            Self::Value(v) => v.serialize(serializer),
        }
    }
}
