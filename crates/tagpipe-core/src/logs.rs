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

/// Where sinks send their delivery log records: every `logs` source receives all of them.
/// Sending never blocks; a `logs` source that falls behind loses the oldest records and says so.
#[derive(Debug, Clone)]
pub struct LogEmitter {
    tx: tokio::sync::broadcast::Sender<std::sync::Arc<DeliveryLog>>,
}

impl LogEmitter {
    /// A stream holding at most `capacity` records per slow reader.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = tokio::sync::broadcast::channel(capacity.max(16));
        Self { tx }
    }

    /// Publishes a record (dropped at once when no `logs` source listens).
    pub fn emit(&self, record: DeliveryLog) {
        let _ = self.tx.send(std::sync::Arc::new(record));
    }

    /// Whether some `logs` source reads the stream (records are worth building).
    pub fn is_listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A new reader of the stream.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<DeliveryLog>> {
        self.tx.subscribe()
    }
}

/// `logs`: an internal source whose events are the delivery log records of every sink (except
/// the sinks its own pipelines feed, so writing logs never produces more logs). Each record
/// becomes one event whose data holds the record's columns (`timestamp`, `type`, `trace_id`,
/// `tag_name`, `event_name`, `request_*`, `response_*`, `message`).
///
/// ```yaml
/// sources:
///   logs:
/// pipelines:
///   delivery_logs: { sources: [logs], sinks: [bigquery/logs, console] }
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSourceConfig {}

impl crate::component::SourceConfig for LogsSourceConfig {
    fn build(
        &self,
        cx: crate::component::SourceContext,
    ) -> crate::component::BoxFuture<
        '_,
        Result<crate::component::RunningSource, crate::component::BoxError>,
    > {
        let mut rx = cx.logs.subscribe();
        // Keep no sender of the stream: it must close once the sinks are gone.
        let crate::component::SourceContext { id, output, .. } = cx;
        Box::pin(async move {
            let running: crate::component::RunningSource = Box::pin(async move {
                use tokio::sync::broadcast::error::RecvError;
                let context = std::sync::Arc::new(crate::event::RequestContext::detached());
                let mut lost = 0u64;
                // Runs until every sink has gone (the stream closes), so records written while
                // the sinks drain at shutdown are kept too.
                loop {
                    let first = match rx.recv().await {
                        Ok(record) => record,
                        Err(RecvError::Lagged(n)) => {
                            lost += n;
                            tracing::warn!(source = %id, lost = n, "logs source fell behind: records lost");
                            continue;
                        }
                        Err(RecvError::Closed) => break,
                    };
                    let mut batch = vec![first];
                    while batch.len() < 256 {
                        match rx.try_recv() {
                            Ok(record) => batch.push(record),
                            Err(_) => break,
                        }
                    }
                    let events = batch
                        .iter()
                        .filter_map(|r| match serde_json::to_value(&**r) {
                            Ok(serde_json::Value::Object(data)) => {
                                Some(crate::event::Event::new(data.into(), context.clone()))
                            }
                            _ => None,
                        })
                        .collect();
                    output.send_all(events).await;
                }
                if lost > 0 {
                    tracing::warn!(source = %id, lost, "delivery log records lost in total");
                }
                Ok(())
            });
            Ok(running)
        })
    }
}

impl crate::component::SourceComponent for LogsSourceConfig {
    const TYPE: &'static str = "logs";
}
