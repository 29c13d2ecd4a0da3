//! Reading a request body within hard limits: size (before and after gzip), time, and
//! completeness.

use std::io::Read as _;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::error::HttpError;

/// Reads the whole body: 413 above `max` bytes (compressed or not), 408 when the client is too
/// slow, 400 when the body is cut short or its gzip is broken, 415 for an unknown encoding.
/// A request without a body gets the same answer sooner from [`read_if_empty`], which its
/// caller asks first.
pub(crate) async fn read(
    body: Incoming,
    headers: &HeaderMap,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, max).collect()).await;
    let raw = match collected {
        Err(_) => {
            return Err(HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {timeout:?}"),
            ));
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large(max)),
        Ok(Err(e)) => {
            return Err(HttpError::bad_request(format!(
                "the request body was cut short or malformed: {e}"
            )));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    decode(raw, headers, max)
}

/// [`read`]'s answer for a request that has no body (a GA4 `GET`, nearly always), given at once
/// — nothing to wait for, so no timer and no future to set up; `None` when there is a body.
pub(crate) fn read_if_empty(
    body: &Incoming,
    headers: &HeaderMap,
    max: usize,
) -> Option<Result<Bytes, HttpError>> {
    hyper::body::Body::is_end_stream(body).then(|| decode(Bytes::new(), headers, max))
}

fn too_large(max: usize) -> HttpError {
    HttpError::too_large(format!("the request body is larger than {max} bytes"))
}

/// Undoes `Content-Encoding: gzip` (or `deflate`), bounded by `max` decompressed bytes.
fn decode(raw: Bytes, headers: &HeaderMap, max: usize) -> Result<Bytes, HttpError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let mut out = Vec::new();
    let read = match encoding.as_deref() {
        None | Some("" | "identity") => return Ok(raw),
        Some("gzip" | "x-gzip") => flate2::read::MultiGzDecoder::new(&raw[..])
            .take(max as u64 + 1)
            .read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(&raw[..])
            .take(max as u64 + 1)
            .read_to_end(&mut out),
        Some(other) => {
            return Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding `{other}` (use gzip, deflate or none)"),
            ));
        }
    };
    read.map_err(|e| HttpError::bad_request(format!("the compressed body is invalid: {e}")))?;
    if out.len() > max {
        return Err(HttpError::too_large(format!(
            "the request body is larger than {max} bytes once decompressed"
        )));
    }
    Ok(Bytes::from(out))
}

/// The media type of `Content-Type`, lowercased, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use http::HeaderValue;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_is_decoded_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let ok = decode(Bytes::from(gzip(b"{\"a\":1}")), &headers, 100).unwrap();
        assert_eq!(&ok[..], b"{\"a\":1}");
        // A small body that inflates past the limit: a zip bomb.
        let bomb = gzip(&vec![b'a'; 1_000_000]);
        assert!(bomb.len() < 2000);
        let err = decode(Bytes::from(bomb), &headers, 64 * 1024).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let err = decode(Bytes::from_static(b"not gzip"), &headers, 100).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        let err = decode(Bytes::from_static(b"x"), &headers, 100).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
