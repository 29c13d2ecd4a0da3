//! CORS for browser endpoints, as sGTM does it: the request's `Origin` is echoed in
//! `Access-Control-Allow-Origin` with `Access-Control-Allow-Credentials: true` (cookies flow),
//! unless an allow-list is configured, in which case other origins get no CORS headers at all.

use http::{HeaderMap, HeaderValue, header};

use crate::response::Reply;

/// The origin to allow for this request, if any (taken before the request's headers move into
/// its events' context).
pub(crate) fn allowed_origin(headers: &HeaderMap, allow_list: &[String]) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    (allow_list.is_empty() || allow_list.iter().any(|o| o.eq_ignore_ascii_case(text)))
        .then(|| origin.clone())
}

/// Adds the CORS answer headers: `Vary: Origin` always, the rest when the origin is allowed.
pub(crate) fn apply(reply: &mut Reply, origin: Option<&HeaderValue>) {
    let h = reply.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

/// Answers a preflight (`OPTIONS`): the CORS headers plus the allowed methods, the headers the
/// browser asked for, and how long the answer may be cached.
pub(crate) fn apply_preflight(reply: &mut Reply, request: &HeaderMap, allow_list: &[String]) {
    let origin = allowed_origin(request, allow_list);
    apply(reply, origin.as_ref());
    if origin.is_none() {
        return;
    }
    let h = reply.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
}
