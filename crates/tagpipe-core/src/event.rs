//! The event model: sGTM-style event data plus the request context it arrived with.
//!
//! An [`Event`] is cheap to clone: its data and context sit behind `Arc`s, so fanning one event
//! out to several pipelines and sinks copies two pointers, not the JSON. A processor that changes
//! the data calls [`Event::data_mut`], which copies the JSON only when another destination still
//! shares it (copy on write).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::ack::{AckReceiver, AckTracker};

pub use crate::event_data::EventData;

/// One event on its way through a pipeline.
#[derive(Clone)]
pub struct Event {
    /// The event data. Shared between destinations; see [`Event::data_mut`].
    pub data: Arc<EventData>,
    /// The request the event arrived with, shared by every event of that request.
    pub context: Arc<RequestContext>,
    pub(crate) ack: Option<Arc<AckTracker>>,
}

impl Event {
    /// An event with the given data and context, without acknowledgement tracking.
    pub fn new(data: EventData, context: Arc<RequestContext>) -> Self {
        Self {
            data: Arc::new(data),
            context,
            ack: None,
        }
    }

    /// Tracks this event's outcome at every destination; the receiver resolves once each
    /// destination reached by the event has reported `sent`, `skipped` or `failed`.
    pub fn with_acknowledgement(mut self) -> (Self, AckReceiver) {
        let (tracker, receiver) = AckTracker::new();
        self.ack = Some(tracker);
        (self, receiver)
    }

    /// Mutable access to the data, copying it first if another destination shares it.
    pub fn data_mut(&mut self) -> &mut EventData {
        Arc::make_mut(&mut self.data)
    }

    /// The `event_name` field, when it is a string.
    pub fn event_name(&self) -> Option<&str> {
        self.data.get_str("event_name")
    }

    /// Whether this event's outcome is being tracked for its source.
    pub fn is_tracked(&self) -> bool {
        self.ack.is_some()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("data", &self.data)
            .field("context", &self.context)
            .field("tracked", &self.ack.is_some())
            .finish()
    }
}

/// What is known about the request an event arrived with.
pub struct RequestContext {
    /// When the request was received.
    pub received_at: SystemTime,
    /// The client's address (after trusted-proxy resolution), when known.
    pub client_addr: Option<IpAddr>,
    /// The request headers. `Debug` output lists their names only, never values.
    pub headers: HeaderMap,
    /// Cookies from the request's `Cookie` header, in order.
    pub cookies: Vec<(String, String)>,
    /// The request's `trace-id` header, used to correlate logs.
    pub trace_id: Option<String>,
    /// Whether the request asked for a debug answer (`x-tagpipe-debug: 1`).
    pub debug: bool,
    /// Cookies and headers that processors and sinks ask the source to send back.
    pub response: ResponseActions,
}

impl RequestContext {
    /// A context for an event that did not come with a request (files, stdin, tests).
    pub fn detached() -> Self {
        Self {
            received_at: SystemTime::now(),
            client_addr: None,
            headers: HeaderMap::new(),
            cookies: Vec::new(),
            trace_id: None,
            debug: false,
            response: ResponseActions::default(),
        }
    }

    /// A context built from request headers: cookies and trace id are read from them.
    pub fn from_headers(headers: HeaderMap, client_addr: Option<IpAddr>) -> Self {
        let cookies = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_cookie_header)
            .collect();
        let trace_id = headers
            .get(&TRACE_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Self {
            client_addr,
            headers,
            cookies,
            trace_id,
            ..Self::detached()
        }
    }

    /// When the request was received, in milliseconds since the Unix epoch (0 before it).
    pub fn received_ms(&self) -> u64 {
        self.received_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The first cookie with this name.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A request header as text, when present and valid. A [`HeaderName`] (`http::header::…`)
    /// is found without parsing the name first, as a `&str` is.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The headers that may be stored or forwarded with an event (disk buffers, NATS), as text:
    /// all but [`NOT_PERSISTED_HEADERS`] and values that are not text.
    pub fn persisted_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(name, _)| !NOT_PERSISTED_HEADERS.contains(name))
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
    }
}

/// The `trace-id` request header, which sets [`RequestContext::trace_id`].
static TRACE_ID: HeaderName = HeaderName::from_static("trace-id");

/// Request headers that never leave the process with an event: credentials, and `Cookie` (the
/// parsed `cookies` travel on their own).
pub const NOT_PERSISTED_HEADERS: [HeaderName; 3] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
];

impl Default for RequestContext {
    fn default() -> Self {
        Self::detached()
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        let cookie_names: Vec<&str> = self.cookies.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RequestContext")
            .field("received_at", &self.received_at)
            .field("client_addr", &self.client_addr)
            .field("headers", &header_names)
            .field("cookies", &cookie_names)
            .field("trace_id", &self.trace_id)
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
}

/// Parses a `Cookie` request header (`a=1; b=2`) into name/value pairs.
pub fn parse_cookie_header(header: &str) -> impl Iterator<Item = (String, String)> + '_ {
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some((name.to_owned(), value.to_owned()))
    })
}

/// The response side channel: what processors and sinks want the source's HTTP answer to carry.
#[derive(Debug, Default)]
pub struct ResponseActions {
    inner: Mutex<ResponseParts>,
}

/// Cookies and headers collected for one response.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResponseParts {
    /// Cookies to set, one `Set-Cookie` header each. A later cookie with the same name and
    /// domain replaces an earlier one.
    pub cookies: Vec<SetCookie>,
    /// Extra headers, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ResponseActions {
    /// Asks for a cookie to be set on the response.
    pub fn set_cookie(&self, cookie: SetCookie) {
        let mut parts = lock(&self.inner);
        parts
            .cookies
            .retain(|c| !(c.name == cookie.name && c.domain == cookie.domain));
        parts.cookies.push(cookie);
    }

    /// Asks for a header to be added to the response.
    pub fn add_header(&self, name: HeaderName, value: HeaderValue) {
        lock(&self.inner).headers.push((name, value));
    }

    /// A copy of everything asked for so far.
    pub fn snapshot(&self) -> ResponseParts {
        lock(&self.inner).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the data inconsistent (plain pushes).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `SameSite` attribute of a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SameSite {
    /// `SameSite=Lax`
    Lax,
    /// `SameSite=Strict`
    Strict,
    /// `SameSite=None`
    None,
}

/// A cookie to set on the HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie value (sent as is; callers use cookie-safe values).
    pub value: String,
    /// `Domain` attribute.
    pub domain: Option<String>,
    /// `Path` attribute.
    pub path: Option<String>,
    /// `Max-Age` in seconds.
    pub max_age: Option<u64>,
    /// `SameSite` attribute.
    pub same_site: Option<SameSite>,
    /// `Secure` flag.
    pub secure: bool,
    /// `HttpOnly` flag.
    pub http_only: bool,
}

impl SetCookie {
    /// A session cookie with only a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            domain: None,
            path: None,
            max_age: None,
            same_site: None,
            secure: false,
            http_only: false,
        }
    }
}

impl fmt::Display for SetCookie {
    /// Formats the `Set-Cookie` header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)?;
        if let Some(domain) = &self.domain {
            write!(f, "; Domain={domain}")?;
        }
        if let Some(path) = &self.path {
            write!(f, "; Path={path}")?;
        }
        if let Some(max_age) = self.max_age {
            write!(f, "; Max-Age={max_age}")?;
        }
        if let Some(same_site) = self.same_site {
            let v = match same_site {
                SameSite::Lax => "Lax",
                SameSite::Strict => "Strict",
                SameSite::None => "None",
            };
            write!(f, "; SameSite={v}")?;
        }
        if self.secure {
            f.write_str("; Secure")?;
        }
        if self.http_only {
            f.write_str("; HttpOnly")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn receipt_time_in_milliseconds() {
        let mut cx = RequestContext::detached();
        cx.received_at =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_748_377_016_123);
        assert_eq!(cx.received_ms(), 1_748_377_016_123);
        cx.received_at = std::time::UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(cx.received_ms(), 0);
    }

    #[test]
    fn cookies_and_trace_id_come_from_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            HeaderValue::from_static("_ga=GA1.1.2; __spdt=abc; e=\"q\""),
        );
        headers.insert("trace-id", HeaderValue::from_static("t-1"));
        headers.insert("authorization", HeaderValue::from_static("Bearer sekrit"));
        let cx = RequestContext::from_headers(headers, None);
        assert_eq!(cx.cookie("__spdt"), Some("abc"));
        assert_eq!(cx.cookie("e"), Some("q"));
        assert_eq!(cx.cookie("missing"), None);
        assert_eq!(cx.trace_id.as_deref(), Some("t-1"));
        let debug = format!("{cx:?}");
        assert!(!debug.contains("sekrit"), "{debug}");
        assert!(debug.contains("authorization"));
        let persisted: Vec<&str> = cx.persisted_headers().map(|(name, _)| name).collect();
        assert_eq!(
            persisted,
            ["trace-id"],
            "no credentials or cookie header leave the process"
        );
    }

    #[test]
    fn set_cookie_formats_every_attribute_and_replaces_same_name() {
        let actions = ResponseActions::default();
        actions.set_cookie(SetCookie::new("a", "1"));
        actions.set_cookie(SetCookie {
            domain: Some("example.com".into()),
            path: Some("/".into()),
            max_age: Some(60),
            same_site: Some(SameSite::Lax),
            secure: true,
            http_only: true,
            ..SetCookie::new("a", "2")
        });
        actions.set_cookie(SetCookie::new("a", "3"));
        let parts = actions.snapshot();
        let rendered: Vec<String> = parts.cookies.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "a=2; Domain=example.com; Path=/; Max-Age=60; SameSite=Lax; Secure; HttpOnly",
                "a=3"
            ]
        );
    }

    #[test]
    fn data_mut_copies_only_when_shared() {
        let mut data = EventData::new();
        data.insert("event_name", Value::from("page_view"));
        let original = Event::new(data, Arc::new(RequestContext::detached()));
        let mut copy = original.clone();
        copy.data_mut().insert("x", Value::from(1));
        assert!(original.data.get("x").is_none());
        assert_eq!(copy.data.get("x"), Some(&Value::from(1)));
        assert_eq!(original.event_name(), Some("page_view"));
        let mut alone = copy;
        let before = Arc::as_ptr(&alone.data);
        alone.data_mut().insert("y", Value::from(2));
        assert_eq!(
            before,
            Arc::as_ptr(&alone.data),
            "an unshared event is changed in place"
        );
    }
}
