//! GA4 gtag.js hits (`/g/collect`) turned into sGTM event data, as the sGTM GA4 client does.
//!
//! The query string carries the parameters shared by every hit; a POST body carries one hit per
//! non-empty line, each a URL-encoded parameter set whose values override the query's. Mapping:
//!
//! | parameter | event data |
//! |---|---|
//! | `en` | `event_name` (required) |
//! | `v`, `tid`, `gtm`, `_p` | `x-ga-protocol_version`, `x-ga-measurement_id`, `x-ga-gtm_version`, `x-ga-page_id` |
//! | `cid`, `uid`, `sid`, `sct` | `client_id`, `user_id`, `ga_session_id`, `ga_session_number` (number) |
//! | `dl`, `dt`, `dr`, `ul`, `sr`, `cu` | `page_location`, `page_title`, `page_referrer`, `language`, `screen_resolution`, `currency` |
//! | `seg`, `_et` | `x-ga-mp2-seg`, `engagement_time_msec` (number) |
//! | `gcs`, `gcd`, `npa`, `dma`, `tfd` | `x-ga-gcs`, `x-ga-gcd`, `x-ga-npa`, `x-ga-dma`, `x-ga-tfd` |
//! | `ep.NAME` / `epn.NAME` | `NAME` as a string / as a number |
//! | `up.NAME` / `upn.NAME` | `x-ga-mp2-user_properties.NAME` as a string / as a number |
//! | `uaa uab uafvl uamb uam uap uapv uaw` | `client_hints.{architecture, bitness, full_version_list, mobile, model, platform, platform_version, wow64}` |
//! | `pr1`, `pr2`, … | `items[]` (`id` item_id, `nm` item_name, `pr` price, `qt` quantity, …, `k0`/`v0` custom) |
//! | `em` (`tv.1~em.HASH~ph.HASH~…`) | `user_data.sha256_email_address`, `sha256_phone_number`, `address.*` |
//! | `_uip` | `ip_override` (else the client's address) |
//! | other `_x` | `x-ga-system_properties.x` |
//! | anything else | `x-ga-NAME` |
//!
//! `user_agent` comes from the `User-Agent` header. A number parameter whose value is not a
//! number keeps its text rather than being dropped.
//!
//! `client_hints` and `x-ga-system_properties` are built on first read: the hit keeps their
//! parameters as text in the event's buffer
//! ([`SlotBuilder::set_built_text`](tagpipe_core::event_data::SlotBuilder::set_built_text)), and
//! the object (two dozen small allocations for the client hints, with `full_version_list`) is
//! built the first time a processor or sink reads it — never, in a pipeline that only sends to
//! Spotify. While the hit is read, that text is collected in a buffer each thread reuses: a hit
//! allocates nothing for either.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::thread::LocalKey;

use serde_json::{Map, Number, Value};
use tagpipe_core::EventData;
use tagpipe_core::event_data::{Key, SlotBuilder, SlotTable, ValueRef};

use crate::client_ip::ip_override_to_normalise;
/// The events of a request's hits: one (nearly every request) kept inline.
pub use crate::events::Decoded;
use crate::urlencoded;

/// Parses a `/g/collect` request (query string, body) into one event per hit. The query is
/// text, as a request's URI is (`http` checks it); the body's lines are checked here.
pub fn parse_hits(
    query: &str,
    body: &[u8],
    client_addr: IpAddr,
    user_agent: Option<&str>,
    max_events: usize,
) -> Result<Decoded, String> {
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .collect();
    let query_error = |e: String| format!("query string: {e}");
    if lines.is_empty() {
        // A single hit (a GET, nearly always): parameters go straight from the query into the
        // event data's text, escaped ones decoded into one reused buffer on the way.
        let mut hit = HitBuilder::new(client_addr, query.len(), user_agent);
        urlencoded::for_each_str(query, |name, value| hit.apply(&name, value))
            .map_err(query_error)?;
        let event = hit.finish(user_agent).map_err(|e| format!("hit 0: {e}"))?;
        return Ok(Decoded::from_buf([event]));
    }
    let shared = urlencoded::parse_str(query).map_err(query_error)?;
    if lines.len() > max_events {
        return Err(format!(
            "{} hits in one request; at most {max_events} are accepted",
            lines.len()
        ));
    }
    let mut events = Decoded::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let own =
            urlencoded::parse(line).map_err(|e| format!("hit {i} (body line {}): {e}", i + 1))?;
        let mut hit = HitBuilder::new(client_addr, query.len() + line.len(), user_agent);
        // The shared parameters, overridden by the hit's own.
        for (name, value) in &shared {
            if !own.iter().any(|(n, _)| n == name) {
                hit.apply(name, value);
            }
        }
        for (name, value) in &own {
            hit.apply(name, value);
        }
        events.push(
            hit.finish(user_agent)
                .map_err(|e| format!("hit {i}: {e}"))?,
        );
    }
    Ok(events)
}

/// The event-data names the parameter table (and the builder's own fields) map to, in event-data
/// order (bytes, as `str` sorts): each is a slot of the hit's [`SlotBuilder`], so a hit's fields
/// come out sorted without a sort. `transaction_id` and `value` (`ep.`/`epn.` parameters of
/// every purchase, read by the Spotify sink) have slots too: no name to allocate for them.
macro_rules! known_names {
    ($($slot:ident = $name:literal,)*) => {
        /// A slot of the hit's [`SlotBuilder`]: one event-data name known in advance.
        #[derive(Clone, Copy)]
        enum Known { $($slot,)* }

        impl Known {
            /// The slots' names, by slot.
            const NAMES: [&'static str; [$($name),*].len()] = [$($name),*];

            /// The slots' names and their prefixes, worked out at compile time.
            const TABLE: SlotTable<{ Self::NAMES.len() }> = {
                let table = SlotTable::new(Self::NAMES);
                // In order, so a hit's fields need no order check when finishing.
                assert!(table.is_sorted(), "the GA4 names are listed in byte order");
                table
            };

            /// The slot of an event-data name: a match (length compares, a name compare only
            /// for names of the same length) rather than a binary search of name compares.
            fn of(name: &str) -> Option<usize> {
                match name {
                    $($name => Some(Self::$slot as usize),)*
                    _ => None,
                }
            }
        }
    };
}

known_names! {
    ClientHints = "client_hints",
    ClientId = "client_id",
    Currency = "currency",
    EngagementTimeMsec = "engagement_time_msec",
    EventName = "event_name",
    GaSessionId = "ga_session_id",
    GaSessionNumber = "ga_session_number",
    IpOverride = "ip_override",
    Items = "items",
    Language = "language",
    PageLocation = "page_location",
    PageReferrer = "page_referrer",
    PageTitle = "page_title",
    ScreenResolution = "screen_resolution",
    TransactionId = "transaction_id",
    UserAgent = "user_agent",
    UserData = "user_data",
    UserId = "user_id",
    Value = "value",
    Dma = "x-ga-dma",
    Gcd = "x-ga-gcd",
    Gcs = "x-ga-gcs",
    GtmVersion = "x-ga-gtm_version",
    MeasurementId = "x-ga-measurement_id",
    Seg = "x-ga-mp2-seg",
    UserProperties = "x-ga-mp2-user_properties",
    Npa = "x-ga-npa",
    PageId = "x-ga-page_id",
    ProtocolVersion = "x-ga-protocol_version",
    SystemProperties = "x-ga-system_properties",
    Tfd = "x-ga-tfd",
}

/// The event data of one hit. Fields whose names are known in advance go into their slot
/// (a later parameter overwrites an earlier one, as inserting would); the few others are
/// inserted at the end. No sort, no allocation for known names, and their string values are
/// text in the event's one buffer (`SlotBuilder::set_text`), not a `String` each.
struct HitBuilder {
    known: SlotBuilder,
    /// Fields with names outside [`Known`], in parameter order.
    others: Vec<(Key, Value)>,
    user_properties: Map<String, Value>,
    /// The client hints' decoded values in parameter order, in [`ClientHints`]' text form:
    /// the object is built on first read.
    client_hints: ClientHints,
    /// The `_x` parameters in [`SystemProperties`]' text form: the object is built on first read.
    system_properties: SystemProperties,
    user_data: Map<String, Value>,
    address: Map<String, Value>,
    items: Vec<(usize, Value)>,
}

/// The longest text of an IPv4 address (nearly every client's; an IPv6 one grows the hit's
/// text buffer).
const IPV4_TEXT: usize = "255.255.255.255".len();

impl HitBuilder {
    /// A hit from a client at `client_addr`, whose parameters take up to `parameter_bytes`.
    fn new(client_addr: IpAddr, parameter_bytes: usize, user_agent: Option<&str>) -> Self {
        let mut hit = Self {
            known: SlotBuilder::from_table(&Known::TABLE),
            others: Vec::new(),
            user_properties: Map::new(),
            client_hints: ClientHints(Pooled::take(&CLIENT_HINTS_TEXT)),
            system_properties: SystemProperties(Pooled::take(&SYSTEM_PROPERTIES_TEXT)),
            user_data: Map::new(),
            address: Map::new(),
            items: Vec::new(),
        };
        // Decoded values are never longer than their parameters: room for all of them, the
        // address and the user agent in one allocation.
        hit.known
            .reserve_text(parameter_bytes + IPV4_TEXT + user_agent.map_or(0, str::len));
        // The client's address first: an `_uip` (or `ep.ip_override`) parameter comes later
        // and wins.
        hit.known.set_text_with(Known::IpOverride as usize, |text| {
            push_address(text, client_addr);
        });
        hit
    }

    /// The event data, checked for an event name and the protocol version.
    fn finish(self, user_agent: Option<&str>) -> Result<EventData, String> {
        let HitBuilder {
            mut known,
            others,
            user_properties,
            client_hints,
            system_properties,
            mut user_data,
            address,
            mut items,
        } = self;
        for (slot, text, build) in [
            (
                Known::ClientHints,
                &client_hints.0,
                ClientHints::build as fn(&str) -> Value,
            ),
            (
                Known::SystemProperties,
                &system_properties.0,
                SystemProperties::build,
            ),
        ] {
            if !text.is_empty() {
                known.set_built_text(slot as usize, |t| t.push_str(text), build);
            }
        }
        if !user_properties.is_empty() {
            known.set(
                Known::UserProperties as usize,
                Value::Object(user_properties),
            );
        }
        if !address.is_empty() {
            user_data.insert("address".into(), Value::Object(address));
        }
        if !user_data.is_empty() {
            known.set(Known::UserData as usize, Value::Object(user_data));
        }
        if !items.is_empty() {
            items.sort_by_key(|(i, _)| *i);
            let items = items.into_iter().map(|(_, v)| v).collect();
            known.set(Known::Items as usize, Value::Array(items));
        }
        if let Some(ua) = user_agent {
            // Last: the header wins over any parameter of that name.
            known.set_text(Known::UserAgent as usize, ua);
        }
        // As every source's `ip_override` is normalised (`1.2.3.4:5678` → `1.2.3.4`); the
        // slot is read by position and the client's own address, plain text, is not parsed.
        if let Some(bare) = known
            .get_ref(Known::IpOverride as usize)
            .and_then(ValueRef::as_str)
            .and_then(ip_override_to_normalise)
        {
            known.set_text_with(Known::IpOverride as usize, |text| push_address(text, bare));
        }
        let text = |slot: Known| known.get_ref(slot as usize).and_then(ValueRef::as_str);
        if text(Known::EventName).is_none_or(str::is_empty) {
            return Err("missing the event name (`en`)".into());
        }
        if let Some(v) = text(Known::ProtocolVersion)
            && v != "2"
        {
            return Err(format!("unsupported protocol version `v={v}` (expected 2)"));
        }
        Ok(known.finish(others))
    }

    fn set(&mut self, slot: Known, value: Value) {
        self.known.set(slot as usize, value);
    }

    /// Sets a field whose name is only known at run time (`epn.NAME`). A name with a slot
    /// costs no allocation.
    fn set_named(&mut self, name: &str, value: Value) {
        match Known::of(name) {
            Some(slot) => self.known.set(slot, value),
            None => self.others.push((Key::Owned(name.to_owned()), value)),
        }
    }

    /// Sets a string field whose name is only known at run time (`ep.NAME`, `x-ga-NAME`). A
    /// name with a slot costs no allocation, nor does its value.
    fn set_named_text(&mut self, name: Cow<'_, str>, value: &str) {
        match Known::of(&name) {
            Some(slot) => self.known.set_text(slot, value),
            None => self
                .others
                .push((Key::Owned(name.into_owned()), Value::from(value))),
        }
    }

    fn apply(&mut self, name: &str, value: &str) {
        // Byte-array patterns compile to a length check and integer compares (no memcmp
        // calls): this table is the hot path of GA4 ingestion.
        let slot = match name.as_bytes() {
            b"en" => Known::EventName,
            b"v" => Known::ProtocolVersion,
            b"tid" => Known::MeasurementId,
            b"gtm" => Known::GtmVersion,
            b"_p" => Known::PageId,
            b"cid" => Known::ClientId,
            b"uid" => Known::UserId,
            b"sid" => Known::GaSessionId,
            b"seg" => Known::Seg,
            b"dl" => Known::PageLocation,
            b"dt" => Known::PageTitle,
            b"dr" => Known::PageReferrer,
            b"ul" => Known::Language,
            b"sr" => Known::ScreenResolution,
            b"cu" => Known::Currency,
            b"gcs" => Known::Gcs,
            b"gcd" => Known::Gcd,
            b"npa" => Known::Npa,
            b"dma" => Known::Dma,
            b"tfd" => Known::Tfd,
            b"_uip" => Known::IpOverride,
            b"sct" => return self.set(Known::GaSessionNumber, number(value)),
            b"_et" => return self.set(Known::EngagementTimeMsec, number(value)),
            b"em" => return self.user_provided_data(value),
            _ => return self.other(name, value),
        };
        self.known.set_text(slot as usize, value);
    }

    fn other(&mut self, name: &str, value: &str) {
        match name.as_bytes() {
            [b'e', b'p', b'.', ..] => self.set_named_text(name[3..].into(), value),
            [b'e', b'p', b'n', b'.', ..] => self.set_named(&name[4..], number(value)),
            [b'u', b'p', b'.', ..] => {
                self.user_properties
                    .insert(name[3..].to_owned(), Value::from(value));
            }
            [b'u', b'p', b'n', b'.', ..] => {
                self.user_properties
                    .insert(name[4..].to_owned(), number(value));
            }
            [b'u', b'a', ..] => match ClientHints::index(name) {
                Some(hint) => self.client_hints.push(hint, value),
                None => self.unmapped(name, value),
            },
            [b'p', b'r', digits @ ..]
                if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) =>
            {
                if let Some(index) = name[2..].parse::<usize>().ok().filter(|&n| n >= 1) {
                    self.items.retain(|(i, _)| *i != index);
                    self.items.push((index, item(value)));
                } else {
                    self.unmapped(name, value);
                }
            }
            [b'_', ..] => self.system_properties.push(&name[1..], value),
            _ => self.unmapped(name, value),
        }
    }

    /// A parameter outside the table: `x-ga-NAME`.
    fn unmapped(&mut self, name: &str, value: &str) {
        self.set_named_text(format!("x-ga-{name}").into(), value);
    }

    /// `em=tv.1~em.HASH~ph.HASH~fn.HASH…`: user-provided data, hashed in the browser.
    fn user_provided_data(&mut self, value: &str) {
        for segment in value.split('~') {
            let Some((code, v)) = segment.split_once('.') else {
                continue;
            };
            let v = Value::String(v.to_owned());
            let (map, key) = match code {
                "em" => (&mut self.user_data, "sha256_email_address"),
                "ph" => (&mut self.user_data, "sha256_phone_number"),
                "fn" => (&mut self.address, "sha256_first_name"),
                "ln" => (&mut self.address, "sha256_last_name"),
                "sa" => (&mut self.address, "sha256_street"),
                "ct" => (&mut self.address, "city"),
                "rg" => (&mut self.address, "region"),
                "pc" => (&mut self.address, "postal_code"),
                "co" => (&mut self.address, "country"),
                _ => continue,
            };
            map.insert(key.to_owned(), v);
        }
    }
}

/// Appends an address as text; IPv4 (nearly every hit) without the formatting machinery.
fn push_address(text: &mut String, addr: IpAddr) {
    let IpAddr::V4(v4) = addr else {
        // Writing to a `String` cannot fail.
        let _ = write!(text, "{addr}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
}

thread_local! {
    /// The client hints' text of the hit this thread reads ([`Pooled`]).
    static CLIENT_HINTS_TEXT: Cell<String> = const { Cell::new(String::new()) };
    /// The system properties' text of the hit this thread reads ([`Pooled`]).
    static SYSTEM_PROPERTIES_TEXT: Cell<String> = const { Cell::new(String::new()) };
}

/// A text buffer taken from a thread's pool for the hit being read and given back, emptied,
/// when dropped: hit after hit, the same buffer (no allocation once it has held the longest).
struct Pooled {
    text: String,
    pool: &'static LocalKey<Cell<String>>,
}

impl Pooled {
    /// The most bytes a buffer keeps when given back.
    const KEPT: usize = 4 * 1024;

    /// The pool's buffer (an empty new one if another reader holds it, or while the thread's
    /// pools are being torn down).
    fn take(pool: &'static LocalKey<Cell<String>>) -> Self {
        Self {
            text: pool.try_with(Cell::take).unwrap_or_default(),
            pool,
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = String;

    fn deref(&self) -> &String {
        &self.text
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut text = std::mem::take(&mut self.text);
        if text.capacity() <= Self::KEPT {
            text.clear();
            // Called while the thread's pools are being torn down, the buffer is just freed.
            let _ = self.pool.try_with(|pool| pool.set(text));
        }
    }
}

/// A hit's client hints as text: per hint parameter, in order, its index in
/// [`ClientHints::PARAMETERS`] (one digit), the decoded value's length in bytes, `:`, and the
/// value. [`ClientHints::build`] reads it back into the object.
struct ClientHints(Pooled);

impl ClientHints {
    /// The hint parameters and their `client_hints` names.
    const PARAMETERS: [(&'static str, &'static str); 8] = [
        ("uaa", "architecture"),
        ("uab", "bitness"),
        ("uafvl", "full_version_list"),
        ("uamb", "mobile"),
        ("uam", "model"),
        ("uap", "platform"),
        ("uapv", "platform_version"),
        ("uaw", "wow64"),
    ];

    /// The index of a hint parameter.
    fn index(parameter: &str) -> Option<usize> {
        Self::PARAMETERS.iter().position(|(p, _)| *p == parameter)
    }

    fn push(&mut self, hint: usize, value: &str) {
        if self.0.capacity() == 0 {
            // gtag sends all eight, ~100 bytes: one allocation (the thread's first hint), not a
            // growing string.
            self.0.reserve(160);
        }
        // Digits by hand: `write!` costs ~500 instructions per hint, a sixteenth of a hit. The
        // index is one digit (eight hints).
        const { assert!(Self::PARAMETERS.len() <= 8) };
        self.0.push(char::from(b"01234567"[hint & 7]));
        push_part(&mut self.0, value);
    }

    /// The `client_hints` object from the text form (later hints of a name win).
    fn build(text: &str) -> Value {
        let mut hints = Map::new();
        let mut rest = text;
        while let Some((index, value, after)) = Self::next_entry(rest) {
            rest = after;
            let (parameter, name) = Self::PARAMETERS[index];
            let value = match parameter {
                "uamb" | "uaw" => Value::Bool(value == "1" || value == "?1"),
                "uafvl" => full_version_list(value),
                _ => Value::String(value.to_owned()),
            };
            hints.insert(name.to_owned(), value);
        }
        Value::Object(hints)
    }

    /// One entry's hint index and value, and the text after it; `None` at the end (or on
    /// text this module did not write).
    fn next_entry(text: &str) -> Option<(usize, &str, &str)> {
        let index = usize::from(text.as_bytes().first()?.wrapping_sub(b'0'));
        if index >= Self::PARAMETERS.len() {
            return None;
        }
        let (value, after) = next_part(text.get(1..)?)?;
        Some((index, value, after))
    }
}

/// A hit's system properties (`_x` parameters other than `_uip`, `_et`, `_p`) as text: per
/// parameter, in order, the name's length in bytes, `:`, the name, the value's length, `:`,
/// and the value. [`SystemProperties::build`] reads it back into the object.
struct SystemProperties(Pooled);

impl SystemProperties {
    fn push(&mut self, name: &str, value: &str) {
        push_part(&mut self.0, name);
        push_part(&mut self.0, value);
    }

    /// The `x-ga-system_properties` object from the text form (a later parameter of a name
    /// wins), each value a string.
    fn build(text: &str) -> Value {
        let mut properties = Map::new();
        let mut rest = text;
        while let Some((name, after)) = next_part(rest)
            && let Some((value, after)) = next_part(after)
        {
            properties.insert(name.to_owned(), Value::from(value));
            rest = after;
        }
        Value::Object(properties)
    }
}

/// Appends `part` length-prefixed (`<bytes>:<part>`), as the client hints' and the system
/// properties' text forms keep their values: any text, read back by [`next_part`].
fn push_part(text: &mut String, part: &str) {
    push_decimal(text, part.len());
    text.push(':');
    text.push_str(part);
}

/// One part [`push_part`] wrote and the text after it; `None` at the end (or on text it did
/// not write).
fn next_part(text: &str) -> Option<(&str, &str)> {
    let (len, after) = text.split_once(':')?;
    let len: usize = len.parse().ok()?;
    (len <= after.len() && after.is_char_boundary(len)).then(|| after.split_at(len))
}

/// `Chromium;128.0.6613.120|Google%20Chrome;128.0.6613.120` → `[{brand, version}, …]`
/// (gtag percent-encodes the brands inside the already encoded parameter).
fn full_version_list(value: &str) -> Value {
    // Byte searches: the separators are ASCII and the entries short (no `memchr` calls).
    let mut list = Vec::with_capacity(4);
    let mut rest = value;
    while !rest.is_empty() {
        let end = rest.bytes().position(|b| b == b'|').unwrap_or(rest.len());
        let entry = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if entry.is_empty() {
            continue;
        }
        let (brand, version) = match entry.bytes().rposition(|b| b == b';') {
            Some(i) => (&entry[..i], &entry[i + 1..]),
            None => (entry, ""),
        };
        let brand =
            urlencoded::decode(brand.as_bytes()).map_or_else(|_| brand.to_owned(), Cow::into_owned);
        let mut m = Map::new();
        m.insert("brand".into(), Value::String(brand));
        m.insert("version".into(), Value::String(version.to_owned()));
        list.push(Value::Object(m));
    }
    Value::Array(list)
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: usize) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    out.push(char::from(b"0123456789"[n % 10]));
}

/// A number when the text is one (integers stay integers), else the text.
fn number(value: &str) -> Value {
    if let Ok(i) = value.parse::<i64>() {
        return Value::Number(i.into());
    }
    value
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or_else(|| Value::String(value.to_owned()), Value::Number)
}

/// One item: `~`-separated segments of a two-letter code and a value.
fn item(value: &str) -> Value {
    let mut m = Map::new();
    let mut custom_keys: Vec<(char, String)> = Vec::new();
    let mut custom_values: Vec<(char, String)> = Vec::new();
    for segment in value.split('~') {
        let Some(code) = segment.get(..2) else {
            continue;
        };
        let v = &segment[2..];
        let key = match code {
            "id" => "item_id",
            "nm" => "item_name",
            "br" => "item_brand",
            "ca" => "item_category",
            "c2" => "item_category2",
            "c3" => "item_category3",
            "c4" => "item_category4",
            "c5" => "item_category5",
            "va" => "item_variant",
            "cp" => "coupon",
            "ln" => "item_list_name",
            "li" => "item_list_id",
            "af" => "affiliation",
            "lo" => "location_id",
            "pr" | "qt" | "ds" | "lp" => {
                let key = match code {
                    "pr" => "price",
                    "qt" => "quantity",
                    "ds" => "discount",
                    _ => "index",
                };
                m.insert(key.into(), number(v));
                continue;
            }
            _ => {
                let mut chars = code.chars();
                match (chars.next(), chars.next()) {
                    (Some('k'), Some(n)) if n.is_ascii_digit() => {
                        custom_keys.push((n, v.to_owned()));
                    }
                    (Some('v'), Some(n)) if n.is_ascii_digit() => {
                        custom_values.push((n, v.to_owned()));
                    }
                    _ => {}
                }
                continue;
            }
        };
        m.insert(key.into(), Value::String(v.to_owned()));
    }
    for (n, key) in custom_keys {
        if let Some((_, value)) = custom_values.iter().find(|(m, _)| *m == n) {
            m.insert(key, Value::String(value.clone()));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests;
