//! Building answers: JSON, empty, the 1×1 GIF, and the cookies and headers that processors and
//! sinks asked for through the event's response side channel.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use tagpipe_core::event::ResponseParts;

/// The response type of the HTTP source.
pub(crate) type Reply = Response<Full<Bytes>>;

/// A transparent 1×1 GIF, the classic answer to a pixel `GET`.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn empty(status: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(crate) fn gif() -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(GIF)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate"),
    );
    r
}

/// Adds the `Set-Cookie` headers (one per cookie) and extra headers collected for a request.
pub(crate) fn apply_parts(reply: &mut Reply, parts: &ResponseParts) {
    for cookie in &parts.cookies {
        if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
            reply.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    for (name, value) in &parts.headers {
        reply.headers_mut().append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gif_is_a_gif() {
        assert!(super::GIF.starts_with(b"GIF89a"));
        assert_eq!(super::GIF.last(), Some(&0x3b));
    }
}
