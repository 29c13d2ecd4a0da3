//! The sink's service (a `tower::Service` through `service_with`): a batch of events → `insertAll` requests (split by rows and bytes)
//! → one outcome per event. Whole requests are retried on 429, 5xx and transport errors; after a
//! partial failure only the retryable rows are sent again, the others are rejected with their
//! reason.

use std::collections::BTreeMap;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tagpipe_core::logs::{DeliveryLog, LogEmitter, LogKind};
use tagpipe_core::{DestinationOutcome, Event};

use crate::config::BigQuerySinkConfig;
use crate::schema::{self, Column};
use crate::storage::{self, AppendOutcome, Writer};
use gcp_bigquery_client::storage::StreamName;

/// Shared by all calls.
pub(crate) struct Shared {
    pub config: BigQuerySinkConfig,
    pub project: String,
    pub columns: Vec<Column>,
    pub client: Client,
    /// Set for `write_api: storage_write`.
    pub writer: Option<(Writer, StreamName)>,
    pub tag_name: String,
    pub logs: Option<LogEmitter>,
}

/// How one write attempt ended.
enum Written {
    /// Per-row errors by position in the attempt: (retryable, message).
    Rows(BTreeMap<usize, (bool, String)>),
    /// The whole request failed transiently.
    Transient(String),
    /// The whole request was refused.
    Rejected(String),
}

/// A row ready to insert.
struct Row {
    index: usize,
    insert_id: String,
    json: Map<String, Value>,
    size: usize,
}

/// Reasons BigQuery gives for rows worth sending again.
const RETRYABLE_ROW_REASONS: &[&str] = &[
    "backendError",
    "internalError",
    "timeout",
    "stopped",
    "rateLimitExceeded",
];

impl Shared {
    pub(crate) async fn write(&self, events: Vec<Event>) -> Vec<DestinationOutcome> {
        let mut outcomes: Vec<Option<DestinationOutcome>> = vec![None; events.len()];
        let mut rows = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            // Let requests waiting on this worker thread run between rows of a large batch.
            tokio::task::coop::consume_budget().await;
            match schema::row(&self.columns, event) {
                Ok(json) => {
                    let insert_id = insert_id(&event.data, &json);
                    let size = encoded_len(&json) + insert_id.len() + 32;
                    rows.push(Row {
                        index,
                        insert_id,
                        json,
                        size,
                    });
                }
                Err(reason) => {
                    outcomes[index] = Some(DestinationOutcome::failed(format!("row: {reason}")));
                }
            }
        }
        // The rows carry everything from here: the events go now (unless the driver keeps them
        // for a dead-letter sink) rather than stay in memory for the whole exchange.
        drop(events);
        for chunk in self.chunks(rows) {
            for (index, outcome) in self.insert(chunk).await {
                outcomes[index] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| DestinationOutcome::failed("no outcome (internal error)")))
            .collect()
    }

    fn chunks(&self, rows: Vec<Row>) -> Vec<Vec<Row>> {
        let mut chunks = Vec::new();
        let mut current: Vec<Row> = Vec::new();
        let mut bytes = 0;
        for row in rows {
            if !current.is_empty()
                && (current.len() >= 500 || bytes + row.size > self.config.max_request_bytes())
            {
                chunks.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += row.size;
            current.push(row);
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    /// Writes `rows`, retrying whole requests and retryable rows within the retry budget.
    async fn insert(&self, mut rows: Vec<Row>) -> Vec<(usize, DestinationOutcome)> {
        let mut done = Vec::with_capacity(rows.len());
        let mut backoff = self.config.retry.start();
        let url = format!(
            "projects/{}/datasets/{}/tables/{}",
            self.project, self.config.dataset, self.config.table
        );
        while !rows.is_empty() {
            let reason = match self.attempt(&rows).await {
                Written::Rows(errors) => {
                    self.log(
                        LogKind::Response,
                        &url,
                        Some(200),
                        format!("{} rows, {} row errors", rows.len(), errors.len()),
                    );
                    let mut again = Vec::new();
                    for (i, row) in rows.into_iter().enumerate() {
                        match errors.get(&i) {
                            None => done.push((row.index, DestinationOutcome::sent())),
                            Some((true, _)) => again.push(row),
                            Some((false, text)) => done.push((
                                row.index,
                                DestinationOutcome::failed(format!("rejected row: {text}")),
                            )),
                        }
                    }
                    rows = again;
                    if rows.is_empty() {
                        break;
                    }
                    format!("{} rows to retry", rows.len())
                }
                Written::Rejected(rejected) => {
                    self.log(LogKind::Rejected, &url, None, rejected.clone());
                    done.extend(
                        rows.drain(..)
                            .map(|r| (r.index, DestinationOutcome::failed(rejected.clone()))),
                    );
                    break;
                }
                Written::Transient(transient) => transient,
            };
            let Some(delay) = backoff.next_delay(None) else {
                let reason = format!(
                    "gave up after {} attempts in {:?}: {reason}",
                    backoff.tries(),
                    backoff.elapsed()
                );
                done.extend(
                    rows.drain(..)
                        .map(|r| (r.index, DestinationOutcome::failed(reason.clone()))),
                );
                break;
            };
            self.log(
                LogKind::Retry,
                &url,
                None,
                format!("{reason}; retrying in {delay:?}"),
            );
            tokio::time::sleep(delay).await;
        }
        done
    }

    /// One request with the configured write API.
    async fn attempt(&self, rows: &[Row]) -> Written {
        if let Some((writer, stream)) = &self.writer {
            let mut proto = Vec::with_capacity(rows.len());
            let mut positions = Vec::with_capacity(rows.len());
            let mut errors = BTreeMap::new();
            for (i, row) in rows.iter().enumerate() {
                match storage::proto_row(&self.columns, &row.json) {
                    Ok(p) => {
                        positions.push(i);
                        proto.push(p);
                    }
                    Err(e) => {
                        errors.insert(i, (false, e));
                    }
                }
            }
            if proto.is_empty() {
                return Written::Rows(errors);
            }
            return match storage::append(writer, stream, &self.columns, &proto).await {
                AppendOutcome::Appended(row_errors) => {
                    for (index, message) in row_errors {
                        if let Some(&i) = positions.get(index) {
                            errors.insert(i, (false, message));
                        }
                    }
                    Written::Rows(errors)
                }
                AppendOutcome::Transient(t) => Written::Transient(t),
                AppendOutcome::Rejected(r) => Written::Rejected(r),
            };
        }
        let mut request = TableDataInsertAllRequest::new();
        if self.config.ignore_unknown_values {
            request.ignore_unknown_values();
        }
        request.skip_invalid_rows();
        let copies = rows
            .iter()
            .map(|row| request_row(&row.insert_id, &row.json));
        if let Err(e) = request.add_rows(copies.collect()) {
            tracing::error!(error = %e, "cannot add the rows to the request");
        }
        let result = self
            .client
            .tabledata()
            .insert_all(
                &self.project,
                &self.config.dataset,
                &self.config.table,
                request,
            )
            .await;
        match result {
            Ok(response) => Written::Rows(
                response
                    .insert_errors
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|e| {
                        let index = usize::try_from(e.index?).ok()?;
                        let errors = e.errors.unwrap_or_default();
                        let retryable = !errors.is_empty()
                            && errors.iter().all(|x| {
                                x.reason
                                    .as_deref()
                                    .is_some_and(|r| RETRYABLE_ROW_REASONS.contains(&r))
                            });
                        let text = errors
                            .iter()
                            .map(|x| {
                                format!(
                                    "{}: {}",
                                    x.reason.as_deref().unwrap_or("error"),
                                    x.message.as_deref().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ");
                        Some((index, (retryable, text)))
                    })
                    .collect(),
            ),
            Err(error) => match classify(&error) {
                Ok(transient) => Written::Transient(transient),
                Err(rejected) => Written::Rejected(rejected),
            },
        }
    }

    fn log(&self, kind: LogKind, url: &str, status: Option<u16>, message: String) {
        metrics::counter!("tagpipe_delivery_log_records_total", "sink" => self.tag_name.clone(),
            "type" => format!("{kind:?}"))
        .increment(1);
        if kind != LogKind::Response {
            tracing::warn!(sink = %self.tag_name, "{message}");
        }
        if let Some(logs) = &self.logs {
            let mut record = DeliveryLog::new(kind, &self.tag_name);
            record.request_method = Some("POST".into());
            record.request_url = Some(url.to_owned());
            record.response_status_code = status;
            record.message = Some(message);
            logs.emit(record);
        }
    }
}

/// `Ok(reason)` for a transient failure worth retrying, `Err(reason)` for a rejection.
fn classify(error: &BQError) -> Result<String, String> {
    match error {
        BQError::ResponseError { error } => {
            let code = error.error.code;
            let text = format!("HTTP {code}: {}", error.error.message);
            if code == 429 || code >= 500 {
                Ok(text)
            } else {
                Err(format!("rejected: {text}"))
            }
        }
        BQError::RequestError(e) => Ok(format!("transport error: {e}")),
        other => Err(format!("rejected: {other}")),
    }
}

/// The row's `insertId`: the event's id, else the Data Client's, else a hash of the row.
pub fn insert_id(data: &tagpipe_core::EventData, row: &Map<String, Value>) -> String {
    for key in ["event_id", "unique_event_id"] {
        if let Some(Value::String(id)) = data.get(key)
            && !id.is_empty()
        {
            return id.clone();
        }
    }
    let digest = Sha256::digest(serde_json::to_vec(row).unwrap_or_default());
    digest[..16]
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A row as the `insertAll` request carries it: a copy (the sink keeps its rows for a retry),
/// made as a plain clone of the map rather than serialised into a new `Value` (what the client
/// library's `add_row` does).
pub fn request_row(insert_id: &str, row: &Map<String, Value>) -> TableDataInsertAllRequestRows {
    TableDataInsertAllRequestRows {
        insert_id: Some(insert_id.to_owned()),
        json: Value::Object(row.clone()),
    }
}

/// The length of a row's JSON, counted while serialising (no string is built).
fn encoded_len(row: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, row);
    count.0
}
