//! Delivery log records: what a sink sent, what came back, and why an event was not sent.
//!
//! The fields are the columns of the Stape tags' BigQuery log table (`timestamp`, `type`,
//! `trace_id`, `tag_name`, `event_name`, `request_method`, `request_url`, `request_body`,
//! `response_status_code`, `response_headers`, `response_body`), plus `message` for records that
//! explain something. Bodies and headers are JSON strings; secrets never appear in them.

use serde::Serialize;

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LogKind {
    /// A request about to be sent.
    Request,
    /// The destination's answer.
    Response,
    /// An event not sent, and why.
    Message,
    /// A request the destination refused for good.
    Rejected,
    /// A request that will be tried again.
    Retry,
}

/// One delivery log record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryLog {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// `Request`, `Response`, `Message`, `Rejected` or `Retry`.
    #[serde(rename = "type")]
    pub kind: LogKind,
    /// The incoming request's `trace-id` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The sink's ID or configured name.
    pub tag_name: String,
    /// The event name(s) concerned (comma-separated for a batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_method: Option<String>,
    /// Request URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_url: Option<String>,
    /// Request body (JSON text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// Response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status_code: Option<u16>,
    /// Response headers (JSON object text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<String>,
    /// Response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Why (for `Message`, `Rejected`, `Retry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl DeliveryLog {
    /// A record of `kind` for `tag_name`, stamped now.
    pub fn new(kind: LogKind, tag_name: &str) -> Self {
        Self {
            timestamp: now_ms(),
            kind,
            trace_id: None,
            tag_name: tag_name.to_owned(),
            event_name: None,
            request_method: None,
            request_url: None,
            request_body: None,
            response_status_code: None,
            response_headers: None,
            response_body: None,
            message: None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
