//! The sink's delivery log: `Request`, `Response`, `Message`, `Rejected` and `Retry` records,
//! written to the console according to `log_type`, and always published on the delivery-log
//! stream (read by `logs` sources, e.g. into BigQuery).

use tagpipe_core::logs::{DeliveryLog, LogEmitter};

use crate::config::LogType;

/// Writes delivery records.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryLogger {
    pub tag_name: String,
    pub log_type: LogType,
    pub stream: Option<LogEmitter>,
}

impl DeliveryLogger {
    /// Whether a record would be read: shown by `log_type`, or a `logs` source listens.
    pub(crate) fn wants(&self, debug: bool) -> bool {
        self.shows(debug) || self.stream.as_ref().is_some_and(LogEmitter::is_listened)
    }

    fn shows(&self, debug: bool) -> bool {
        match self.log_type {
            LogType::No => false,
            LogType::Debug => debug,
            LogType::Always => true,
        }
    }

    /// Logs `record` when `log_type` allows it (`debug`: only for requests in debug mode).
    pub(crate) fn emit(&self, record: &DeliveryLog, debug: bool) {
        metrics::counter!("tagpipe_delivery_log_records_total", "sink" => self.tag_name.clone(),
            "type" => format!("{:?}", record.kind))
        .increment(1);
        if self.shows(debug)
            && let Ok(line) = serde_json::to_string(record)
        {
            tracing::info!(target: "tagpipe::delivery", "{line}");
        }
        if let Some(stream) = self.stream.as_ref().filter(|s| s.is_listened()) {
            stream.emit(record.clone());
        }
    }
}
