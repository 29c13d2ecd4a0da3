//! [`EventData`]: the top-level object of an event, as a sorted vector of fields.
//!
//! sGTM event data is one JSON object of a few dozen fields (`event_name`, `client_id`,
//! `user_data`, …). It used to be a `serde_json::Map` — a `BTreeMap` of owned `String` keys — and
//! building, searching and freeing that tree of nodes, plus one key allocation per field, was the
//! largest cost of ingesting a GA4 hit. Here the fields sit in one vector sorted by key:
//!
//! - keys are [`Key`]s, `Cow<'static, str>`: the names a source knows in advance (the GA4
//!   parameter table's) and well-known names read from JSON (`event_name`, `client_id`, …) are
//!   `'static` and cost no allocation; other names are owned;
//! - each field also keeps the first eight bytes of its name as an integer, so a look-up is a
//!   binary search of integer compares with one full name compare at the end (sinks and
//!   processors look up a few dozen fields per event), and sorting a batch of fields (collecting
//!   an iterator of `(name, value)`) rarely compares names at all;
//! - freeing is one pass over one allocation;
//! - iteration and serialisation are in key order, exactly as with `serde_json::Map`, so every
//!   output (sink requests, BigQuery rows, console lines, buffers) is byte-for-byte what it was.
//!
//! A source whose names mostly come from a table known in advance (the GA4 parameter mapping)
//! builds its events with a [`SlotBuilder`]: one field per table name, set by position in any
//! order, the unset ones dropped at the end — no search, no sort, no field copied per name.
//!
//! Nested objects stay `serde_json::Value`s: only the top level is hot.
//!
//! A field that is costly to build and seldom read can be [`Deferred`]: its source keeps the
//! text it would be built from, and the value is built the first time anything reads it.
//! A source that builds its event with a [`SlotBuilder`] can keep that text in the event's own
//! text buffer instead ([`SlotBuilder::set_built_text`]: no box and no string of its own — GA4's
//! `client_hints`, two dozen allocations per hit that a Spotify-only pipeline never reads, and
//! `x-ga-system_properties`). Either way every reader — look-ups, iteration, serialisation,
//! comparison — sees the built value ("deferred" below means both); only
//! [`EventData::fields`] lets a pass over the fields read names without building values.
//!
//! A source that reads many short strings keeps them as text in one buffer per event (see
//! `text`): [`SlotBuilder::set_text`] appends a value to the buffer instead of allocating a
//! `String` for it. Readers that want text — [`EventData::get_str`], [`EventData::get_ref`],
//! [`FieldRef::view`] — read the slice; one that asks for a `&Value` gets a JSON string built on
//! its first read; serialisation writes the text. A GA4 hit's two dozen string parameters cost
//! one allocation rather than two dozen.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

pub use self::text::ValueRef;
use self::text::{TextSpan, TextStore};

/// A field name: `'static` for names known in advance (and well-known names read from JSON),
/// owned for any other name read from a request.
pub type Key = Cow<'static, str>;

/// sGTM *event data*: a JSON object's fields, kept sorted by name (see the module docs).
///
/// The API follows `serde_json::Map`'s (`get`, `get_mut`, `insert`, `remove`, `iter`, …) with
/// these differences: `insert` takes any `Into<Key>` (a `&'static str` or a `String`), there is
/// `get_or_insert_with` instead of `entry`, `iter` yields `(&str, &Value)`, and indexing a missing
/// field gives `null` rather than panicking. Iteration is in key order.
#[derive(Default)]
pub struct EventData {
    /// Sorted by name (byte order, as `str`'s `Ord`), names unique.
    fields: Vec<Field>,
    /// The text of the fields whose values are [`FieldValue::Text`] or [`FieldValue::Built`].
    text: TextStore,
}

/// Room for this many more fields in event data read from JSON or copied: a pipeline's
/// mapping that sets a field or two (`action_source`, `event_id`) then moves no fields to a
/// larger vector. 128 bytes per event.
const ROOM_TO_GROW: usize = 2;

impl Clone for EventData {
    /// A copy with room for two more fields (`ROOM_TO_GROW`; a derived clone would be exactly
    /// full).
    fn clone(&self) -> Self {
        let mut fields = Vec::with_capacity(self.fields.len() + ROOM_TO_GROW);
        fields.extend(self.fields.iter().cloned());
        Self {
            fields,
            text: self.text.clone(),
        }
    }
}

impl PartialEq for EventData {
    /// The same names with equal values (a text value equals the same JSON string).
    fn eq(&self, other: &Self) -> bool {
        self.fields.len() == other.fields.len()
            && self.fields.iter().zip(&other.fields).all(|(a, b)| {
                a.name == b.name && a.value.view(&self.text) == b.value.view(&other.text)
            })
    }
}

/// One field: its name, the name's first eight bytes as an integer, and its value.
#[derive(Clone)]
struct Field {
    /// [`name_prefix`] of `name`: orders fields as their names do, unless equal.
    prefix: u64,
    name: Key,
    value: FieldValue,
}

/// A field's value: built, built on first read, text in the event's [`TextStore`], or a value
/// built on first read from text in it. As small as a `Value` (the other variants fit in
/// `Value`'s unused tags).
#[derive(Clone)]
enum FieldValue {
    Ready(Value),
    Deferred(Box<Deferred>),
    Text(TextSpan),
    Built(BuiltText),
}

/// A value built on first read from text kept in the event's [`TextStore`] (a [`Deferred`]
/// without the box and string of its own): the store keeps the value, once built, in the
/// span's cell.
#[derive(Clone, Copy)]
struct BuiltText {
    span: TextSpan,
    build: fn(&str) -> Value,
}

const _: () = assert!(size_of::<FieldValue>() == size_of::<Value>());

impl FieldValue {
    /// The value, built now if deferred (or text not read as a `Value` before).
    #[inline]
    fn get<'a>(&'a self, text: &'a TextStore) -> &'a Value {
        match self {
            Self::Ready(value) => value,
            Self::Deferred(deferred) => deferred.get(),
            Self::Text(span) => text.value(*span),
            Self::Built(built) => text.built(built.span, built.build),
        }
    }

    /// The value as a reader of text sees it: text stays text.
    #[inline]
    fn view<'a>(&'a self, text: &'a TextStore) -> ValueRef<'a> {
        match self {
            Self::Text(span) => ValueRef::Str(text.str(*span)),
            other => ValueRef::Value(other.get(text)),
        }
    }

    /// Mutable access: a deferred value is built, and text copied, into an ordinary value.
    fn get_mut(&mut self, text: &TextStore) -> &mut Value {
        match self {
            Self::Ready(_) => {}
            Self::Deferred(deferred) => *self = Self::Ready(deferred.take_value()),
            Self::Text(span) => *self = Self::Ready(text.to_value(*span)),
            Self::Built(built) => *self = Self::Ready(text.built_owned(built.span, built.build)),
        }
        match self {
            Self::Ready(value) => value,
            Self::Deferred(_) | Self::Text(_) | Self::Built(_) => {
                unreachable!("a deferred, text or built value was just replaced")
            }
        }
    }

    fn into_value(self, text: &TextStore) -> Value {
        match self {
            Self::Ready(value) => value,
            Self::Deferred(deferred) => deferred.into_value(),
            Self::Text(span) => text.to_value(span),
            Self::Built(built) => text.built_owned(built.span, built.build),
        }
    }
}

/// A field value built the first time it is read, from text its source kept (in whatever form
/// the source chose; `build` reads it back). For fields that are costly to build — many small
/// allocations — and that few pipelines read: an event that nobody asks for the field costs the
/// text and this box, not the value's tree. Reading it is safe from any thread; it is built once.
#[derive(Clone)]
pub struct Deferred {
    text: String,
    build: fn(&str) -> Value,
    value: OnceLock<Value>,
}

impl Deferred {
    /// A value `build(&text)` will give on first read.
    pub fn new(text: String, build: fn(&str) -> Value) -> Self {
        Self {
            text,
            build,
            value: OnceLock::new(),
        }
    }

    /// The value, built now if no one read it yet.
    pub fn get(&self) -> &Value {
        self.value.get_or_init(|| (self.build)(&self.text))
    }

    /// The value, owned.
    pub fn into_value(mut self) -> Value {
        self.take_value()
    }

    fn take_value(&mut self) -> Value {
        self.value
            .take()
            .unwrap_or_else(|| (self.build)(&self.text))
    }
}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.get(), f)
    }
}

impl Field {
    fn new(name: Key, value: Value) -> Self {
        Self::with(name, FieldValue::Ready(value))
    }

    fn with(name: Key, value: FieldValue) -> Self {
        Self {
            prefix: name_prefix(&name),
            name,
            value,
        }
    }

    /// Orders this field's name against a name and its prefix.
    fn cmp_name(&self, prefix: u64, name: &str) -> std::cmp::Ordering {
        self.prefix.cmp(&prefix).then_with(|| {
            let (mine, theirs) = (self.name.as_bytes(), name.as_bytes());
            if mine.len() <= 8 && theirs.len() <= 8 {
                // Equal prefixes hold both names whole: any bytes one has beyond the other are
                // the other's zero padding, so the shorter comes first (as `str` orders them).
                // Most look-ups end here: no `memcmp` call for a short name.
                mine.len().cmp(&theirs.len())
            } else {
                mine.cmp(theirs)
            }
        })
    }
}

impl EventData {
    /// Empty event data.
    pub const fn new() -> Self {
        Self {
            fields: Vec::new(),
            text: TextStore::new(),
        }
    }

    /// Empty event data with room for `capacity` fields.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            fields: Vec::with_capacity(capacity),
            text: TextStore::new(),
        }
    }

    fn from_unsorted(fields: Vec<Field>) -> Self {
        Self::from_unsorted_with(fields, TextStore::new())
    }

    /// Event data from fields in any order whose text values are in `text`.
    fn from_unsorted_with(mut fields: Vec<Field>, text: TextStore) -> Self {
        let in_order = |a: &Field, b: &Field| a.cmp_name(b.prefix, &b.name).is_lt();
        if !fields.is_sorted_by(in_order) {
            // Stable: repeated names end up next to each other in their original order. Nearly
            // every comparison is one of prefixes.
            fields.sort_by(|a, b| a.cmp_name(b.prefix, &b.name));
            // The earliest slot of a repeated name takes the last value and the others go.
            fields.dedup_by(|later, earlier| {
                let same = later.prefix == earlier.prefix && later.name == earlier.name;
                if same {
                    std::mem::swap(&mut later.value, &mut earlier.value);
                }
                same
            });
        }
        Self { fields, text }
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.position_with(name_prefix(key), key)
    }

    /// [`Self::position`] of a name whose prefix is known.
    fn position_with(&self, prefix: u64, key: &str) -> Result<usize, usize> {
        self.fields.binary_search_by(|f| f.cmp_name(prefix, key))
    }

    /// The value of field `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key)
            .ok()
            .map(|i| self.fields[i].value.get(&self.text))
    }

    /// The value of field `key` as a reader of text sees it: text kept as text is not made a
    /// `Value` (see the module docs). For readers on an event's hot path.
    #[inline]
    pub fn get_ref(&self, key: &str) -> Option<ValueRef<'_>> {
        self.position(key)
            .ok()
            .map(|i| self.fields[i].value.view(&self.text))
    }

    /// The text of field `key`, when it is a string (no `Value` built for text kept as text).
    #[inline]
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get_ref(key).and_then(ValueRef::as_str)
    }

    /// Mutable access to the value of field `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key)
            .ok()
            .map(|i| self.fields[i].value.get_mut(&self.text))
    }

    /// Whether field `key` exists.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets field `key`, returning its previous value.
    ///
    /// Inserting in key order (as a source that knows its names' order does) appends without
    /// a search.
    pub fn insert(&mut self, key: impl Into<Key>, value: Value) -> Option<Value> {
        let field = Field::new(key.into(), value);
        if self
            .fields
            .last()
            .is_none_or(|last| last.cmp_name(field.prefix, &field.name).is_lt())
        {
            self.fields.push(field);
            return None;
        }
        match self.position_with(field.prefix, &field.name) {
            Ok(i) => Some(
                std::mem::replace(&mut self.fields[i].value, field.value).into_value(&self.text),
            ),
            Err(i) => {
                self.fields.insert(i, field);
                None
            }
        }
    }

    /// Sets field `key` to `value`, dropping any previous value (a deferred one unbuilt): the
    /// field is found with one search, and its name, borrowed, is copied only when the field
    /// is new — not even then for a well-known name, which is `'static`. For a processor that
    /// writes a configured name (mapping's `set`, `copy` and `rename`).
    pub fn set(&mut self, key: &str, value: Value) {
        let prefix = name_prefix(key);
        match self.position_with(prefix, key) {
            Ok(i) => self.fields[i].value = FieldValue::Ready(value),
            Err(i) => {
                let name = key_of(key);
                let value = FieldValue::Ready(value);
                self.fields.insert(
                    i,
                    Field {
                        prefix,
                        name,
                        value,
                    },
                );
            }
        }
    }

    /// Sets field `key` to the string `value`, reusing what holds the old text where it can: a
    /// JSON string is overwritten in place, and so is text kept as text when the new value has
    /// its length (an event name mapped to another of the same length, `purchase` →
    /// `PURCHASE`); otherwise the value is a new string. For a processor that rewrites a
    /// string field (mapping's event name).
    pub fn set_str(&mut self, key: &str, value: &str) {
        let Ok(i) = self.position(key) else {
            self.set(key, Value::String(value.to_owned()));
            return;
        };
        let text = &mut self.text;
        match &mut self.fields[i].value {
            FieldValue::Ready(Value::String(s)) => {
                s.clear();
                s.push_str(value);
            }
            FieldValue::Text(span) if text.overwrite(*span, value) => {}
            other => *other = FieldValue::Ready(Value::String(value.to_owned())),
        }
    }

    /// Renames field `from` to `to`, replacing any field `to`; its value moves as it is (a
    /// deferred one unbuilt), the fields between the two places shift by one, and the new name
    /// is copied as in [`set`](Self::set). Whether there was a field `from`.
    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        let Ok(i) = self.position(from) else {
            return false;
        };
        if from == to {
            return true;
        }
        let prefix = name_prefix(to);
        match self.position_with(prefix, to) {
            Ok(j) => {
                let moved = self.fields.remove(i);
                self.fields[if j > i { j - 1 } else { j }].value = moved.value;
            }
            Err(j) => {
                let field = &mut self.fields[i];
                field.prefix = prefix;
                field.name = key_of(to);
                // `j` is where `to` goes while `from` still sits at `i`.
                if j > i {
                    self.fields[i..j].rotate_left(1);
                } else {
                    self.fields[j..=i].rotate_right(1);
                }
            }
        }
        true
    }

    /// The value of field `key`, inserted with `make` first when missing.
    pub fn get_or_insert_with(
        &mut self,
        key: impl Into<Key>,
        make: impl FnOnce() -> Value,
    ) -> &mut Value {
        let key = key.into();
        let i = match self.position(&key) {
            Ok(i) => i,
            Err(i) => {
                self.fields.insert(i, Field::new(key, make()));
                i
            }
        };
        self.fields[i].value.get_mut(&self.text)
    }

    /// Removes field `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.position(key)
            .ok()
            .map(|i| self.fields.remove(i).value.into_value(&self.text))
    }

    /// Keeps only the fields for which `keep` returns `true`.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        let text = &self.text;
        self.fields
            .retain_mut(|f| keep(&f.name, f.value.get_mut(text)));
    }

    /// The fields in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.fields.iter(), &self.text)
    }

    /// The fields in key order, each value built only when asked for (see [`Deferred`]): for a
    /// pass that reads the values of a few names only.
    pub fn fields(&self) -> impl Iterator<Item = FieldRef<'_>> {
        self.fields.iter().map(|field| FieldRef(field, &self.text))
    }

    /// The field names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_ref())
    }

    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.fields.iter().map(|f| f.value.get(&self.text))
    }

    /// Mutable access to the values, in key order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        let text = &self.text;
        self.fields.iter_mut().map(|f| f.value.get_mut(text))
    }

    /// The fields as a `serde_json::Map` (for a JSON `Value` of the whole object).
    pub fn into_map(self) -> Map<String, Value> {
        let Self { fields, text } = self;
        fields
            .into_iter()
            .map(|f| (f.name.into_owned(), f.value.into_value(&text)))
            .collect()
    }

    /// The whole object as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.into_map())
    }

    /// A JSON value of a copy of the whole object.
    pub fn to_value(&self) -> Value {
        self.clone().into_value()
    }
}

/// The first eight bytes of a name as a big-endian integer (zero-padded): comparing two of these
/// orders names as comparing the names does, except that equal prefixes need the full compare.
const fn name_prefix(name: &str) -> u64 {
    let bytes = name.as_bytes();
    if let Some(head) = bytes.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    // Shorter names: byte by byte (a copy of variable length would call `memcpy`).
    let mut prefix = 0u64;
    let mut i = 0;
    while i < bytes.len() {
        prefix |= (bytes[i] as u64) << (56 - 8 * i);
        i += 1;
    }
    prefix
}

/// The names of a [`SlotBuilder`]'s slots with their name prefixes (`name_prefix`), worked out
/// when the program is compiled (a `const`): a builder made from it computes nothing per name.
pub struct SlotTable<const N: usize> {
    slots: [(&'static str, u64); N],
    /// Whether the names are in strictly increasing byte order (then the set slots, in slot
    /// order, are already event data's sorted, unique fields).
    sorted: bool,
}

impl<const N: usize> SlotTable<N> {
    /// The table of `names` (see [`SlotBuilder::new`] for what they must be).
    pub const fn new(names: [&'static str; N]) -> Self {
        let mut slots = [("", 0); N];
        let mut sorted = true;
        let mut i = 0;
        while i < N {
            slots[i] = (names[i], name_prefix(names[i]));
            if i > 0 && !str_less(names[i - 1], names[i]) {
                sorted = false;
            }
            i += 1;
        }
        Self { slots, sorted }
    }

    /// Whether the names are strictly in byte order: a builder from this table then finishes
    /// without checking the order of its fields.
    pub const fn is_sorted(&self) -> bool {
        self.sorted
    }
}

/// `a < b` in byte order, usable in a `const`.
const fn str_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

/// Builds event data whose names mostly come from a table known in advance (a source's parameter
/// mapping, sorted by name): each table name has a slot, set by position in any order — no
/// search, no sort, no field moved until the end —, and the few fields with other names are
/// inserted when finishing. Slots left unset are not fields. At most 64 names.
pub struct SlotBuilder {
    /// One field per table name (an empty text span until set), in the table's order.
    fields: Vec<Field>,
    /// Bit `i`: slot `i` was set.
    filled: u64,
    /// The text of slots set with [`Self::set_text`] and [`Self::set_built_text`].
    text: TextStore,
    /// The table's names are sorted ([`SlotTable`]): finishing needs no order check.
    sorted: bool,
}

/// What an unset slot holds: an empty text span. A `const`, so that it is copied in from
/// read-only data (built on the spot, the enum went through the stack in small stores read back
/// in larger loads — a stall per slot).
const UNSET: FieldValue = FieldValue::Text(TextSpan::EMPTY);

impl SlotBuilder {
    /// A builder for the names of `table`, which must be unique and should be sorted by name
    /// (byte order); an unsorted table still gives sorted event data, only slower. Works out the
    /// names' prefixes each time: a source that builds many events keeps a `const`
    /// [`SlotTable`] and uses [`Self::from_table`].
    pub fn new<const N: usize>(table: &[&'static str; N]) -> Self {
        Self::from_table(&SlotTable::new(*table))
    }

    /// [`SlotBuilder::new`] from a table whose prefixes were worked out in advance (as a
    /// `const`): the per-event path.
    pub fn from_table<const N: usize>(table: &SlotTable<N>) -> Self {
        const { assert!(N <= 64, "a slot table has at most 64 names") };
        Self {
            fields: table
                .slots
                .iter()
                .map(|&(name, prefix)| Field {
                    prefix,
                    name: Key::Borrowed(name),
                    value: UNSET,
                })
                .collect(),
            filled: 0,
            text: TextStore::new(),
            sorted: table.sorted,
        }
    }

    /// Room for `bytes` of text values ([`Self::set_text`]) without growing.
    pub fn reserve_text(&mut self, bytes: usize) {
        self.text.reserve(bytes);
    }

    /// Sets slot `slot` (a position in the table), replacing what it had. Positions past the
    /// table are ignored.
    pub fn set(&mut self, slot: usize, value: Value) {
        self.set_field(slot, FieldValue::Ready(value));
    }

    /// Sets slot `slot` to the string `value`, kept as text in the event's buffer (see the
    /// module docs): no allocation once the buffer has room. Inlined: a GA4 hit sets about
    /// twenty, and the call's own register saves cost as much as the rest of it.
    #[inline]
    pub fn set_text(&mut self, slot: usize, value: &str) {
        self.set_text_with(slot, |text| text.push_str(value));
    }

    /// Sets slot `slot` to the string that `write` appends to the event's text buffer (for
    /// text made on the spot, such as an address).
    pub fn set_text_with(&mut self, slot: usize, write: impl FnOnce(&mut String)) {
        match self.text.push_with(write) {
            Ok(span) => self.set_span(slot, span),
            Err(text) => self.set(slot, Value::String(text)),
        }
    }

    /// Sets slot `slot` to text of the buffer.
    fn set_span(&mut self, slot: usize, span: TextSpan) {
        if let Some(field) = self.fields.get_mut(slot) {
            match &mut field.value {
                // An unset slot holds an empty span (one set to text before, another span):
                // only the span's numbers are written, in place. A whole value made first and
                // then copied in was written to the stack in small stores and read back in
                // 16-byte loads, which stalls (most of this function's time in the GA4 parse
                // bench, under `perf annotate`).
                FieldValue::Text(old) => *old = span,
                other => *other = FieldValue::Text(span),
            }
            self.filled |= 1 << slot;
        }
    }

    /// Sets slot `slot` to a value that `build` makes, on first read, from the text `write`
    /// appends to the event's text buffer: a [`Deferred`] value without its box and string (no
    /// allocation once the buffer has room). `build` reads back what `write` wrote.
    pub fn set_built_text(
        &mut self,
        slot: usize,
        write: impl FnOnce(&mut String),
        build: fn(&str) -> Value,
    ) {
        match self.text.push_with(write) {
            Ok(span) => self.set_field(slot, FieldValue::Built(BuiltText { span, build })),
            Err(text) => self.set_deferred(slot, Deferred::new(text, build)),
        }
    }

    /// Sets slot `slot` to a value built on first read (see [`Deferred`]).
    pub fn set_deferred(&mut self, slot: usize, value: Deferred) {
        self.set_field(slot, FieldValue::Deferred(Box::new(value)));
    }

    fn set_field(&mut self, slot: usize, value: FieldValue) {
        if let Some(field) = self.fields.get_mut(slot) {
            let bit = 1 << slot;
            if self.filled & bit == 0 {
                // An unset slot holds an empty text span: nothing to drop. Not calling the drop
                // lets the new value go from registers straight into the slot (around a call it
                // is spilled to the stack in 8-byte halves and read back in 16-byte ones, which
                // stalls).
                debug_assert!(matches!(field.value, FieldValue::Text(_)));
                std::mem::forget(std::mem::replace(&mut field.value, value));
            } else {
                field.value = value;
            }
            self.filled |= bit;
        }
    }

    /// The value of slot `slot`, if set.
    pub fn get(&self, slot: usize) -> Option<&Value> {
        let field = self.fields.get(slot)?;
        (self.filled & (1 << slot) != 0).then(|| field.value.get(&self.text))
    }

    /// The value of slot `slot`, if set, as a reader of text sees it (see
    /// [`EventData::get_ref`]).
    pub fn get_ref(&self, slot: usize) -> Option<ValueRef<'_>> {
        let field = self.fields.get(slot)?;
        (self.filled & (1 << slot) != 0).then(|| field.value.view(&self.text))
    }

    /// The event data: the slots that were set, then `others` inserted in order (of repeated
    /// names the last wins; a name equal to a set slot's replaces its value).
    pub fn finish(self, others: impl IntoIterator<Item = (Key, Value)>) -> EventData {
        let Self {
            mut fields,
            filled,
            text,
            sorted,
        } = self;
        let mut slot = 0;
        fields.retain(|_| {
            let keep = filled & (1 << slot) != 0;
            slot += 1;
            keep
        });
        let mut data = if sorted {
            // A sorted table's names are unique and in order, and so are the slots kept.
            EventData { fields, text }
        } else {
            EventData::from_unsorted_with(fields, text)
        };
        for (name, value) in others {
            data.insert(name, value);
        }
        data
    }
}

/// One field of [`EventData`] (from [`EventData::fields`]): its name, and its value built on
/// request.
#[derive(Clone, Copy)]
pub struct FieldRef<'a>(&'a Field, &'a TextStore);

impl<'a> FieldRef<'a> {
    /// The field's name.
    pub fn name(self) -> &'a str {
        &self.0.name
    }

    /// The field's value (built now, if it was deferred and no one read it yet).
    #[inline]
    pub fn value(self) -> &'a Value {
        self.0.value.get(self.1)
    }

    /// The field's value as a reader of text sees it: text kept as text is not made a
    /// `Value` (see the module docs).
    #[inline]
    pub fn view(self) -> ValueRef<'a> {
        self.0.value.view(self.1)
    }
}

/// The fields of [`EventData`] in key order, as `(name, value)`.
pub struct Iter<'a>(std::slice::Iter<'a, Field>, &'a TextStore);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.1;
        self.0.next().map(|f| (f.name.as_ref(), f.value.get(text)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a EventData {
    type Item = (&'a str, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for EventData {
    type Item = (Key, Value);
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter(self.fields.into_iter(), self.text)
    }
}

/// The fields of [`EventData`] in key order, owned.
pub struct IntoIter(std::vec::IntoIter<Field>, TextStore);

impl Iterator for IntoIter {
    type Item = (Key, Value);

    fn next(&mut self) -> Option<Self::Item> {
        let text = &self.1;
        self.0.next().map(|f| (f.name, f.value.into_value(text)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for IntoIter {}

/// Event data from fields in any order; of repeated names the last one wins (as with inserting
/// them one by one). One sort, where single inserts would shift the vector each time.
impl<K: Into<Key>> FromIterator<(K, Value)> for EventData {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Self::from_unsorted(
            iter.into_iter()
                .map(|(k, v)| Field::new(k.into(), v))
                .collect(),
        )
    }
}

impl<K: Into<Key>> Extend<(K, Value)> for EventData {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl From<Map<String, Value>> for EventData {
    /// In key order already unless serde_json's `preserve_order` is on somewhere in the build:
    /// checked, not assumed (one pass when sorted).
    fn from(map: Map<String, Value>) -> Self {
        Self::from_unsorted(
            map.into_iter()
                .map(|(k, v)| Field::new(Key::Owned(k), v))
                .collect(),
        )
    }
}

impl TryFrom<Value> for EventData {
    /// The value back, when it is not an object.
    type Error = Value;

    fn try_from(value: Value) -> Result<Self, Value> {
        match value {
            Value::Object(map) => Ok(map.into()),
            other => Err(other),
        }
    }
}

impl From<EventData> for Value {
    fn from(data: EventData) -> Self {
        data.into_value()
    }
}

impl std::ops::Index<&str> for EventData {
    type Output = Value;

    /// The value of field `key`, or `null` when missing (as indexing a JSON `Value` does).
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl fmt::Debug for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields().map(|field| (field.name(), field.view())))
            .finish()
    }
}

impl Serialize for EventData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for f in &self.fields {
            map.serialize_entry(f.name.as_ref(), &f.value.view(&self.text))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventDataVisitor)
    }
}

/// Reads a JSON object into [`EventData`]: fields collected in document order, sorted once.
struct EventDataVisitor;

impl<'de> Visitor<'de> for EventDataVisitor {
    type Value = EventData;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<EventData, A::Error> {
        let hint = access.size_hint().unwrap_or(16).min(256);
        let mut fields = Vec::with_capacity(hint + ROOM_TO_GROW);
        while let Some((FieldName(key), value)) = access.next_entry::<FieldName, Value>()? {
            fields.push(Field::new(key, value));
        }
        // Events wait in queues by the thousand: no more room left over from growing the
        // vector than a pipeline's few new fields need, and no less (a vector that grew to
        // just its length gets it now).
        fields.reserve_exact(ROOM_TO_GROW);
        fields.shrink_to(fields.len() + ROOM_TO_GROW);
        Ok(EventData::from_unsorted(fields))
    }
}

/// A field name read from JSON: a well-known name (`well_known_names!` below) becomes the `'static` one
/// (no allocation, and the bytes every look-up compares stay in one hot place), any other is
/// owned.
struct FieldName(Key);

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<FieldName, E> {
                Ok(FieldName(key_of(name)))
            }
            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<FieldName, E> {
                Ok(FieldName(
                    well_known_name(&name).map_or(Key::Owned(name), Key::Borrowed),
                ))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// The key for a borrowed name: the `'static` copy of a well-known name, else an owned copy.
fn key_of(name: &str) -> Key {
    well_known_name(name).map_or_else(|| Key::Owned(name.to_owned()), Key::Borrowed)
}

/// Declares the well-known names and their look-up (a `match`: length checks and compares).
macro_rules! well_known_names {
    ($($name:literal),* $(,)?) => {
        /// Event-data field names common enough that reading them from JSON reuses one
        /// `'static` copy: sGTM's standard fields and the GA4 client's.
        #[cfg(test)]
        const WELL_KNOWN_NAMES: &[&str] = &[$($name),*];

        /// The `'static` copy of `name`, when it is a well-known name.
        fn well_known_name(name: &str) -> Option<&'static str> {
            match name {
                $($name => Some($name),)*
                _ => None,
            }
        }
    };
}

well_known_names![
    "client_hints",
    "client_id",
    "currency",
    "engagement_time_msec",
    "event_id",
    "event_name",
    "event_source_url",
    "event_time",
    "ga_session_id",
    "ga_session_number",
    "ip_override",
    "items",
    "language",
    "page_encoding",
    "page_hostname",
    "page_location",
    "page_path",
    "page_referrer",
    "page_title",
    "screen_resolution",
    "timestamp",
    "transaction_id",
    "unique_event_id",
    "user_agent",
    "user_data",
    "user_id",
    "value",
    "viewport_size",
    "x-ga-dma",
    "x-ga-gcd",
    "x-ga-gcs",
    "x-ga-gtm_version",
    "x-ga-measurement_id",
    "x-ga-mp2-seg",
    "x-ga-mp2-user_properties",
    "x-ga-npa",
    "x-ga-page_id",
    "x-ga-protocol_version",
    "x-ga-system_properties",
    "x-ga-tfd",
];

mod text;

#[cfg(test)]
mod tests;
