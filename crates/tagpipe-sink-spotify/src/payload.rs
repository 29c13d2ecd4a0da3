//! One CAPI event from one tagpipe event, field by field as Stape's Spotify tag builds it — with
//! its defects fixed: email-only events are sent, times are correct RFC 3339, a numeric `amount`
//! is a number, and an `event_id` is derived when the event has none.
//!
//! The event is a typed [`CapiEvent`] that borrows what it can from the event data and the
//! sink's settings, serialised straight to the request's JSON: no intermediate JSON tree and no
//! copies of the event's strings per event (a tree is made only for debug answers and dead
//! letters). [`CapiEvent::write_json`] writes that JSON by hand (the bytes `serde_json` writes).

use std::borrow::Cow;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use tagpipe_core::event_data::ValueRef;
use tagpipe_core::time::AsciiText;
use tagpipe_core::{EventData, RequestContext};
use tagpipe_hashing::{Preset, is_sha256_hex, lower_hex_into, normalise, sha256_hex};

use crate::config::SpotifySinkConfig;
use crate::time::{self, EventTime};

/// Google's Measurement Protocol debug renderer: its hits are never sent.
const DEBUG_RENDERER: &str = "https://gtm-msr.appspot.com/";

/// What to do with one event.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built and read at once on the stack: its objects' members kept inline spare two \
              allocations per event, a box would add one"
)]
pub enum Built<'a> {
    /// Send this CAPI event.
    Send(CapiEvent<'a>),
    /// Not sent on purpose.
    Skip(String),
    /// Cannot be sent: required data missing.
    Fail(String),
}

/// One event of a CAPI request's `conversion_events.events`, borrowing from the event data and
/// the sink's settings it was built from. Fields serialise in alphabetical order (the order the
/// tag's JSON objects have), absent ones are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapiEvent<'a> {
    /// `WEB`, `APP` or `OFFLINE`, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_source: Option<&'static str>,
    /// `amount`, `currency` and the configured extra details.
    pub event_details: Object<'a>,
    /// The deduplication id: configured, from the event, or derived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<CapiText<'a>>,
    /// The event's name.
    pub event_name: Cow<'a, str>,
    /// The page the event happened on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_url: Option<Cow<'a, str>>,
    /// RFC 3339 time (or the event's own text, passed through).
    pub event_time: CapiText<'a>,
    /// Present (and `true`) only when targeting is opted out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub opt_out_targeting: bool,
    /// Hashed emails and phone, IP address, device id and the configured extras.
    pub user_data: Object<'a>,
}

impl CapiEvent<'_> {
    /// The event as a JSON tree (tests compare the hand-written JSON with it; the sink's debug
    /// answers and dead letters read back the JSON it wrote).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A JSON object of a CAPI event (`event_details`, `user_data`): a few members kept in key
/// order, as a JSON map orders them, without a map's allocations.
///
/// Up to two members (`INLINE_MEMBERS`) are kept inline (a GA4 purchase has two in each object):
/// building an event's two objects allocates nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(SmallVec<[(&'a str, Member<'a>); INLINE_MEMBERS]>);

/// The members an [`Object`] holds without allocating.
const INLINE_MEMBERS: usize = 2;

/// A member's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Member<'a> {
    /// A JSON string.
    Text(Cow<'a, str>),
    /// Any JSON value.
    Value(Cow<'a, Value>),
    /// Strings built here (hashes).
    Texts(Vec<String>),
}

impl<'a> Object<'a> {
    /// Sets `key`, replacing what it had.
    pub fn insert(&mut self, key: &'a str, value: Member<'a>) {
        // Members mostly come in key order (`amount`, then `currency`; `hashed_emails`, then
        // `ip_address`): a key after the last one is pushed without a search.
        if self.0.last().is_none_or(|(last, _)| *last < key) {
            self.0.push((key, value));
            return;
        }
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => self.0[at].1 = value,
            Err(at) => self.0.insert(at, (key, value)),
        }
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Member<'a>> {
        self.position(key).map(|at| self.0.remove(at).1)
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.0.binary_search_by(|(k, _)| (*k).cmp(key)).ok()
    }
}

impl Serialize for Object<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Serialize for Member<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Member::Text(text) => serializer.serialize_str(text),
            Member::Value(value) => value.serialize(serializer),
            Member::Texts(texts) => texts.serialize(serializer),
        }
    }
}

/// Builds the CAPI event for `data`, with `now_ms` as the time of events that carry none (the
/// sink passes when the event's request was received).
pub fn build<'a>(
    data: &'a EventData,
    context: &RequestContext,
    config: &'a SpotifySinkConfig,
    now_ms: i64,
) -> Built<'a> {
    let known = Known::of(data);
    let page = known
        .page_location
        .and_then(ValueRef::as_str)
        .or_else(|| context.header("referer"));
    if page.is_some_and(|p| p.starts_with(DEBUG_RENDERER)) {
        return Built::Skip(
            "Measurement Protocol debug hit (gtm-msr.appspot.com): not sent".into(),
        );
    }
    let event_name = known.event_name.map_or(Cow::Borrowed(""), text);

    let event_time = config
        .server_event_data
        .event_time
        .as_ref()
        .and_then(time::read)
        .or_else(|| {
            first(&[known.event_time, known.event_time_camel, known.timestamp]).and_then(time::read)
        })
        .unwrap_or(EventTime::Millis(now_ms))
        .render();

    let event_id = config
        .server_event_data
        .event_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(Cow::Borrowed)
        .or_else(|| {
            first(&[known.event_id, known.event_id_camel])
                .map(text)
                .filter(|s| !s.is_empty())
        });
    let event_id = match event_id {
        Some(id) => Some(CapiText::Given(id)),
        None if config.derive_event_id => Some(CapiText::Made(derived_event_id(
            &known,
            &event_name,
            event_time.as_bytes(),
        ))),
        None => None,
    };
    let event_source_url = config
        .server_event_data
        .event_source_url
        .as_deref()
        .or_else(|| known.page_location.and_then(ValueRef::as_str))
        .filter(|s| !s.is_empty())
        .map(Cow::Borrowed);
    let user_data = user_data(data, &known, config);
    let identified = [
        "ip_address",
        "device_id",
        "hashed_emails",
        "hashed_phone_number",
    ]
    .iter()
    .any(|k| user_data.contains_key(k));

    if event_name.is_empty() {
        return Built::Fail("event_name is empty".into());
    }
    if event_time.is_empty() {
        return Built::Fail("event_time is empty".into());
    }
    if !identified {
        return Built::Fail(
            "no user identifier: none of ip_address, device_id, hashed_emails, hashed_phone_number"
                .into(),
        );
    }
    Built::Send(CapiEvent {
        action_source: config
            .action_source
            .map(crate::config::ActionSource::as_str),
        event_details: event_details(&known, config),
        event_id,
        event_name,
        event_source_url,
        event_time,
        opt_out_targeting: config.opt_out_targeting,
        user_data,
    })
}

/// A value as text (numbers and booleans as JSON text).
fn text(v: ValueRef<'_>) -> Cow<'_, str> {
    match v {
        ValueRef::Str(s) => Cow::Borrowed(s),
        ValueRef::Value(Value::String(s)) => Cow::Borrowed(s),
        ValueRef::Value(Value::Null) => Cow::Borrowed(""),
        ValueRef::Value(other) => Cow::Owned(other.to_string()),
    }
}

/// A value as text, empty when missing.
fn optional_text(value: Option<ValueRef<'_>>) -> Cow<'_, str> {
    value.map_or(Cow::Borrowed(""), text)
}

/// Whether a value counts as given: not null, not empty, not the strings `undefined`/`null`,
/// not an empty array or object.
fn given<'a>(v: impl Into<ValueRef<'a>>) -> bool {
    let given_text = |s: &str| !matches!(s.trim(), "" | "undefined" | "null");
    match v.into() {
        ValueRef::Str(s) => given_text(s),
        ValueRef::Value(Value::String(s)) => given_text(s),
        ValueRef::Value(Value::Null) => false,
        ValueRef::Value(Value::Array(a)) => !a.is_empty(),
        ValueRef::Value(Value::Object(o)) => !o.is_empty(),
        ValueRef::Value(_) => true,
    }
}

/// The event-data fields the payload reads, found in one pass over the event data (a look-up
/// each would search the fields two dozen times per event).
#[derive(Default)]
struct Known<'a> {
    page_location: Option<ValueRef<'a>>,
    event_name: Option<ValueRef<'a>>,
    event_time: Option<ValueRef<'a>>,
    event_time_camel: Option<ValueRef<'a>>,
    timestamp: Option<ValueRef<'a>>,
    event_id: Option<ValueRef<'a>>,
    event_id_camel: Option<ValueRef<'a>>,
    value: Option<ValueRef<'a>>,
    currency: Option<ValueRef<'a>>,
    user_data: Option<ValueRef<'a>>,
    email: Option<ValueRef<'a>>,
    email_address: Option<ValueRef<'a>>,
    phone: Option<ValueRef<'a>>,
    phone_number: Option<ValueRef<'a>>,
    ip_override: Option<ValueRef<'a>>,
    client_id: Option<ValueRef<'a>>,
    unique_event_id: Option<ValueRef<'a>>,
    transaction_id: Option<ValueRef<'a>>,
    page_id: Option<ValueRef<'a>>,
}

impl<'a> Known<'a> {
    fn of(data: &'a EventData) -> Self {
        let mut known = Self::default();
        // `fields` and `view`: the values of other fields are not built (a deferred one, like
        // GA4's `client_hints`, stays unbuilt), and text is read as text.
        for field in data.fields() {
            // Byte patterns: a length check and integer compares per field.
            let slot = match field.name().as_bytes() {
                b"page_location" => &mut known.page_location,
                b"event_name" => &mut known.event_name,
                b"event_time" => &mut known.event_time,
                b"eventTime" => &mut known.event_time_camel,
                b"timestamp" => &mut known.timestamp,
                b"event_id" => &mut known.event_id,
                b"eventId" => &mut known.event_id_camel,
                b"value" => &mut known.value,
                b"currency" => &mut known.currency,
                b"user_data" => &mut known.user_data,
                b"email" => &mut known.email,
                b"email_address" => &mut known.email_address,
                b"phone" => &mut known.phone,
                b"phone_number" => &mut known.phone_number,
                b"ip_override" => &mut known.ip_override,
                b"client_id" => &mut known.client_id,
                b"unique_event_id" => &mut known.unique_event_id,
                b"transaction_id" => &mut known.transaction_id,
                b"x-ga-page_id" => &mut known.page_id,
                _ => continue,
            };
            *slot = Some(field.view());
        }
        known
    }
}

/// The first given value among `candidates`, in order.
fn first<'a>(candidates: &[Option<ValueRef<'a>>]) -> Option<ValueRef<'a>> {
    candidates.iter().flatten().copied().find(|&v| given(v))
}

/// The first given value among the fields `names` of a nested object.
fn first_nested<'a>(object: &'a Map<String, Value>, names: &[&str]) -> Option<ValueRef<'a>> {
    names
        .iter()
        .filter_map(|name| object.get(*name))
        .find(|v| given(*v))
        .map(ValueRef::Value)
}

/// A number when the value is numeric (`"123"` → 123), else `None`.
fn as_number<'a>(v: impl Into<ValueRef<'a>>) -> Option<Value> {
    let v = v.into();
    if let Some(number @ Value::Number(_)) = v.as_value() {
        return Some(number.clone());
    }
    let t = v.as_str()?.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    t.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

fn event_details<'a>(known: &Known<'a>, config: &'a SpotifySinkConfig) -> Object<'a> {
    let mut details = Object::default();
    if let Some(amount) = known.value.and_then(as_number) {
        details.insert("amount", Member::Value(Cow::Owned(amount)));
    }
    if let Some(currency) = known.currency.filter(|&v| given(v)) {
        details.insert("currency", Member::Text(text(currency)));
    }
    for (k, v) in &config.event_details {
        if !given(v) {
            continue;
        }
        let v = if k == "amount" {
            as_number(v).map_or(Cow::Borrowed(v), Cow::Owned)
        } else {
            Cow::Borrowed(v)
        };
        details.insert(k.as_str(), Member::Value(v));
    }
    details
}

fn user_data<'a>(
    data: &'a EventData,
    known: &Known<'a>,
    config: &'a SpotifySinkConfig,
) -> Object<'a> {
    let mut user = Object::default();
    // `email`, `email_address`, then `user_data.email`, `user_data.email_address`,
    // `user_data.sha256_email_address`.
    let nested = match known.user_data {
        Some(ValueRef::Value(Value::Object(nested))) => Some(nested),
        _ => None,
    };
    let emails = first(&[known.email, known.email_address]).or_else(|| {
        nested.and_then(|n| first_nested(n, &["email", "email_address", "sha256_email_address"]))
    });
    if let Some(emails) = emails {
        set_emails(&mut user, emails);
    }
    let phone = first(&[known.phone, known.phone_number]).or_else(|| {
        nested.and_then(|n| first_nested(n, &["phone", "phone_number", "sha256_phone_number"]))
    });
    if let Some(phone) = phone.and_then(first_value) {
        set_phone(&mut user, phone);
    }
    if let Some(ip) = known.ip_override.filter(|&v| given(v)) {
        user.insert("ip_address", Member::Text(text(ip)));
    }
    for (k, v) in config.user_data.iter().filter(|(_, v)| given(*v)) {
        match k.as_str() {
            "hashed_emails" => set_emails(&mut user, v.into()),
            "hashed_phone_number" => set_phone(&mut user, v.into()),
            _ => user.insert(k.as_str(), Member::Value(Cow::Borrowed(v))),
        }
    }
    if !user.contains_key("device_id")
        && let Some(id) = data.get_ref(&config.device_id_field).filter(|&v| given(v))
    {
        user.insert("device_id", Member::Text(text(id)));
    }
    user
}

/// From an array or object, the first given value; otherwise the value.
fn first_value(v: ValueRef<'_>) -> Option<ValueRef<'_>> {
    match v {
        ValueRef::Value(Value::Array(a)) => a.iter().find(|x| given(*x)).map(ValueRef::Value),
        ValueRef::Value(Value::Object(o)) => o.values().find(|x| given(*x)).map(ValueRef::Value),
        other => Some(other),
    }
}

/// Sets `hashed_emails` to the hashes of the emails of `v` — a string is one email, an array's
/// elements and an object's values are emails; absent-looking ones go —, or removes it when
/// none is left.
fn set_emails(user: &mut Object<'_>, v: ValueRef<'_>) {
    let mut hashes = Vec::with_capacity(1);
    let mut add = |email: ValueRef<'_>| {
        if given(email) {
            hashes.push(hashed(&text(email), Preset::Email));
        }
    };
    match v {
        ValueRef::Value(Value::Array(a)) => a.iter().for_each(|e| add(e.into())),
        ValueRef::Value(Value::Object(o)) => o.values().for_each(|e| add(e.into())),
        other => add(other),
    }
    if hashes.is_empty() {
        user.remove("hashed_emails");
    } else {
        user.insert("hashed_emails", Member::Texts(hashes));
    }
}

/// Sets `hashed_phone_number` to the hash of `v`, a given value (an array or object as its
/// JSON text, as the tag does).
fn set_phone(user: &mut Object<'_>, v: ValueRef<'_>) {
    let hash = hashed(&text(v), Preset::Phone);
    user.insert("hashed_phone_number", Member::Text(Cow::Owned(hash)));
}

/// `sha256(trim(lowercase))` of an email, or of a phone number without spaces, `-`, `(`, `)`,
/// unless the text already is 64 hex characters.
fn hashed(s: &str, preset: Preset) -> String {
    if is_sha256_hex(s) {
        return s.to_owned();
    }
    let mut phone = String::new();
    let input = if preset == Preset::Phone {
        normalise(s, Preset::Phone, false, &mut phone);
        phone.as_str()
    } else {
        s
    };
    let mut normalised = String::new();
    normalise(input, Preset::Email, false, &mut normalised);
    let mut out = String::with_capacity(64);
    sha256_hex(normalised.as_bytes(), &mut out);
    out
}

/// A stable id for an event without one: the same event (client, name, time, page, ids) always
/// gets the same id, so a retried or replayed event deduplicates at Spotify.
fn derived_event_id(known: &Known<'_>, event_name: &str, event_time: &[u8]) -> AsciiText {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update(bytes);
        hasher.update([0x1f]);
    };
    part(optional_text(known.client_id).as_bytes());
    part(event_name.as_bytes());
    part(event_time);
    for value in [
        known.page_location,
        known.unique_event_id,
        known.transaction_id,
        known.page_id,
    ] {
        part(optional_text(value).as_bytes());
    }
    let digest = hasher.finalize();
    let mut id = [0u8; 32];
    lower_hex_into(&digest[..16], &mut id);
    AsciiText::new(&id)
}

/// Text of a CAPI field: ASCII this sink made, kept inline — an RFC 3339 time, a derived
/// event id: no allocation, and nothing to check or escape when written —, or text the event or
/// the configuration gave. Reads as `&str`.
#[derive(Clone)]
pub enum CapiText<'a> {
    /// Made here.
    Made(AsciiText),
    /// As given.
    Given(Cow<'a, str>),
}

impl CapiText<'_> {
    /// The text's bytes (made text without a UTF-8 check).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            CapiText::Made(text) => text.as_bytes(),
            CapiText::Given(text) => text.as_bytes(),
        }
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl std::ops::Deref for CapiText<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            CapiText::Made(text) => text.as_str(),
            CapiText::Given(text) => text,
        }
    }
}

impl PartialEq for CapiText<'_> {
    /// The same text, whichever way it came.
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<&str> for CapiText<'_> {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for CapiText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for CapiText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

mod json;
#[cfg(test)]
mod tests;
