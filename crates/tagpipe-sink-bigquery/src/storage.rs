//! The Storage Write API (`write_api: storage_write`): rows encoded as protocol buffers from the
//! table's columns and appended to the table's `_default` stream (at-least-once), at most ~9 MB
//! per `AppendRows`. Per-row errors come back in `row_errors`; gRPC statuses `Unavailable`,
//! `ResourceExhausted`, `DeadlineExceeded`, `Aborted` and `Internal` are transient.

use gcp_bigquery_client::google::cloud::bigquery::storage::v1::big_query_write_client::BigQueryWriteClient;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    AppendRowsRequest, append_rows_response,
};
use gcp_bigquery_client::storage::{
    ColumnMode, ColumnType as ProtoType, FieldDescriptor, StorageApi, StreamName, TableDescriptor,
};
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};
use serde_json::{Map, Value};
use tonic::transport::Channel;

use crate::schema::{Column, ColumnType};

/// Largest `AppendRows` payload (the API's limit is 10 MB).
pub(crate) const MAX_APPEND_BYTES: usize = 9 * 1024 * 1024;

/// One row as protocol-buffer fields, numbered like the columns (1, 2, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProtoRow(Vec<(u32, ProtoValue)>);

#[derive(Debug, Clone, PartialEq)]
enum ProtoValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl prost::Message for ProtoRow {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for (tag, value) in &self.0 {
            match value {
                ProtoValue::Text(s) => prost::encoding::string::encode(*tag, s, buf),
                ProtoValue::Int(i) => prost::encoding::int64::encode(*tag, i, buf),
                ProtoValue::Float(f) => prost::encoding::double::encode(*tag, f, buf),
                ProtoValue::Bool(b) => prost::encoding::bool::encode(*tag, b, buf),
            }
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Rows are only ever written.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0
            .iter()
            .map(|(tag, value)| match value {
                ProtoValue::Text(s) => prost::encoding::string::encoded_len(*tag, s),
                ProtoValue::Int(i) => prost::encoding::int64::encoded_len(*tag, i),
                ProtoValue::Float(f) => prost::encoding::double::encoded_len(*tag, f),
                ProtoValue::Bool(b) => prost::encoding::bool::encoded_len(*tag, b),
            })
            .sum()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The proto description of the columns.
pub(crate) fn descriptor(columns: &[Column]) -> TableDescriptor {
    TableDescriptor {
        field_descriptors: columns
            .iter()
            .enumerate()
            .map(|(i, c)| FieldDescriptor {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                name: c.name.clone(),
                typ: match c.kind {
                    ColumnType::String | ColumnType::Json => ProtoType::String,
                    ColumnType::Integer | ColumnType::Timestamp => ProtoType::Int64,
                    ColumnType::Float => ProtoType::Double,
                    ColumnType::Boolean => ProtoType::Bool,
                },
                mode: ColumnMode::Nullable,
            })
            .collect(),
    }
}

/// A JSON row (as built for `insertAll`) as proto fields. Timestamps become microseconds.
pub(crate) fn proto_row(columns: &[Column], row: &Map<String, Value>) -> Result<ProtoRow, String> {
    let mut fields = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        let Some(v) = row.get(&c.name) else { continue };
        let tag = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let value = match c.kind {
            ColumnType::String | ColumnType::Json => {
                ProtoValue::Text(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            }
            ColumnType::Integer => ProtoValue::Int(
                v.as_i64()
                    .ok_or_else(|| format!("column `{}`: not an integer", c.name))?,
            ),
            ColumnType::Float => ProtoValue::Float(
                v.as_f64()
                    .ok_or_else(|| format!("column `{}`: not a number", c.name))?,
            ),
            ColumnType::Boolean => ProtoValue::Bool(
                v.as_bool()
                    .ok_or_else(|| format!("column `{}`: not a boolean", c.name))?,
            ),
            ColumnType::Timestamp => {
                ProtoValue::Int(v.as_str().and_then(micros_from_rfc3339).ok_or_else(|| {
                    format!("column `{}`: `{v}` is not an RFC 3339 UTC time", c.name)
                })?)
            }
        };
        fields.push((tag, value));
    }
    Ok(ProtoRow(fields))
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` → microseconds since the epoch.
#[allow(clippy::many_single_char_names)]
fn micros_from_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.ends_with('Z') || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let frac = match s.get(19..s.len() - 1) {
        Some("") => 0,
        Some(f) if f.starts_with('.') => {
            let digits = &f[1..];
            let mut v: i64 = digits.get(..digits.len().min(6))?.parse().ok()?;
            for _ in digits.len().min(6)..6 {
                v *= 10;
            }
            v
        }
        _ => return None,
    };
    let days = tagpipe_core::time::days_from_civil(y, m, d);
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + frac)
}

/// How one `AppendRows` call ended.
pub(crate) enum AppendOutcome {
    /// Accepted, except the rows with errors (index → message).
    Appended(Vec<(usize, String)>),
    /// Worth trying again.
    Transient(String),
    /// Refused for good.
    Rejected(String),
}

/// Where `AppendRows` calls go.
pub(crate) enum Writer {
    /// A configured gRPC endpoint (emulators, private endpoints), without credentials.
    Direct(BigQueryWriteClient<Channel>),
    /// Google's endpoint through the client crate's authorised connection pool.
    Google(Box<tokio::sync::Mutex<gcp_bigquery_client::Client>>),
}

impl Writer {
    /// Connects to `grpc` when given, else uses Google's endpoint with `client`'s credentials.
    pub(crate) async fn new(
        grpc: Option<&str>,
        client: gcp_bigquery_client::Client,
    ) -> Result<Self, String> {
        match grpc {
            Some(url) => BigQueryWriteClient::connect(url.to_owned())
                .await
                .map(Self::Direct)
                .map_err(|e| format!("cannot connect to the Storage Write endpoint {url}: {e}")),
            None => Ok(Self::Google(Box::new(tokio::sync::Mutex::new(client)))),
        }
    }
}

/// Appends `rows` to the table's `_default` stream.
pub(crate) async fn append(
    writer: &Writer,
    stream: &StreamName,
    columns: &[Column],
    rows: &[ProtoRow],
) -> AppendOutcome {
    let (proto_rows, _) = StorageApi::create_rows(&descriptor(columns), rows, MAX_APPEND_BYTES);
    let responses = match writer {
        Writer::Direct(client) => {
            let request = AppendRowsRequest {
                write_stream: stream.to_string(),
                offset: None,
                trace_id: "tagpipe".into(),
                missing_value_interpretations: std::collections::HashMap::new(),
                default_missing_value_interpretation: 0,
                rows: Some(proto_rows),
            };
            let mut request = tonic::Request::new(tokio_stream::iter(vec![request]));
            if let Ok(v) = format!("write_stream={stream}").parse() {
                request.metadata_mut().insert("x-goog-request-params", v);
            }
            client
                .clone()
                .append_rows(request)
                .await
                .map(tonic::Response::into_inner)
        }
        Writer::Google(client) => {
            let mut client = client.lock().await;
            match client
                .storage_mut()
                .append_rows(stream, proto_rows, "tagpipe".into())
                .await
            {
                Ok(streaming) => Ok(streaming),
                Err(e) => return AppendOutcome::Transient(format!("Storage Write: {e}")),
            }
        }
    };
    let mut responses = match responses {
        Ok(r) => r,
        Err(status) => return classify(&status),
    };
    let mut row_errors = Vec::new();
    loop {
        match responses.message().await {
            Ok(Some(response)) => {
                for e in response.row_errors {
                    row_errors.push((usize::try_from(e.index).unwrap_or(usize::MAX), e.message));
                }
                if let Some(append_rows_response::Response::Error(status)) = response.response
                    && row_errors.is_empty()
                {
                    let code = tonic::Code::from_i32(status.code);
                    return classify(&tonic::Status::new(code, status.message));
                }
            }
            Ok(None) => break,
            Err(status) => return classify(&status),
        }
    }
    AppendOutcome::Appended(row_errors)
}

fn classify(status: &tonic::Status) -> AppendOutcome {
    use tonic::Code;
    let text = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal
        | Code::Unknown => AppendOutcome::Transient(text),
        _ => AppendOutcome::Rejected(format!("rejected: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn timestamps_round_trip_to_microseconds() {
        assert_eq!(micros_from_rfc3339("1970-01-01T00:00:00.000001Z"), Some(1));
        assert_eq!(
            micros_from_rfc3339("2025-05-27T20:16:56.000000Z"),
            Some(1_748_377_016_000_000)
        );
        assert_eq!(
            micros_from_rfc3339("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(micros_from_rfc3339("yesterday"), None);
    }

    #[test]
    fn rows_encode_as_numbered_fields() {
        let columns = vec![
            Column {
                name: "a".into(),
                kind: ColumnType::String,
                path: "a".into(),
            },
            Column {
                name: "b".into(),
                kind: ColumnType::Integer,
                path: "b".into(),
            },
        ];
        let mut row = Map::new();
        row.insert("a".into(), Value::from("hi"));
        row.insert("b".into(), Value::from(150));
        let encoded = proto_row(&columns, &row).unwrap().encode_to_vec();
        // field 1, length-delimited "hi"; field 2, varint 150.
        assert_eq!(encoded, [0x0a, 0x02, b'h', b'i', 0x10, 0x96, 0x01]);
    }
}
