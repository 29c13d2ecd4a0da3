//! Clear answers to bad requests: a status and `{"error": "<what and where>"}`.

use http::StatusCode;

use crate::response::{Reply, json};

/// A request refused with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub(crate) fn into_reply(self) -> Reply {
        json(self.status, &serde_json::json!({ "error": self.message }))
    }
}
