//! Row shapes: the columns of each schema and how an event becomes a row.

use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use tagpipe_core::{Event, path};

use crate::config::SchemaKind;

/// A column of `schema: custom`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// `string`, `integer`, `float`, `boolean`, `timestamp` or `json`.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// The event field (dotted path) it holds; `.` for the whole event.
    pub path: String,
}

/// Column types.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// STRING.
    String,
    /// INTEGER.
    Integer,
    /// FLOAT.
    Float,
    /// BOOLEAN.
    Boolean,
    /// TIMESTAMP (from seconds or milliseconds, or an RFC 3339 string).
    Timestamp,
    /// JSON (the value's JSON text).
    Json,
}

fn column(name: &str, kind: ColumnType, path: &str) -> Column {
    Column {
        name: name.to_owned(),
        kind,
        path: path.to_owned(),
    }
}

/// The columns of a schema (`custom` is only used for [`SchemaKind::Custom`]).
pub fn columns(kind: SchemaKind, custom: &[Column]) -> Vec<Column> {
    use ColumnType::{Float, Integer, Json, String, Timestamp};
    match kind {
        SchemaKind::StapeLogs => [
            ("timestamp", Integer),
            ("type", String),
            ("trace_id", String),
            ("tag_name", String),
            ("event_name", String),
            ("request_method", String),
            ("request_url", String),
            ("request_body", String),
            ("response_status_code", Integer),
            ("response_headers", String),
            ("response_body", String),
            ("message", String),
        ]
        .iter()
        .map(|(n, t)| column(n, *t, n))
        .collect(),
        SchemaKind::Events => vec![
            column("event_name", String, "event_name"),
            column("event_id", String, "event_id"),
            column("client_id", String, "client_id"),
            column("timestamp", Timestamp, "timestamp"),
            column("page_location", String, "page_location"),
            column("ip_override", String, "ip_override"),
            column("user_agent", String, "user_agent"),
            column("value", Float, "value"),
            column("currency", String, "currency"),
            column("event", Json, "."),
        ],
        SchemaKind::Custom => custom.to_vec(),
    }
}

/// BigQuery field definitions for `columns`.
pub(crate) fn fields(columns: &[Column]) -> Vec<TableFieldSchema> {
    columns
        .iter()
        .map(|c| match c.kind {
            ColumnType::String => TableFieldSchema::string(&c.name),
            ColumnType::Integer => TableFieldSchema::integer(&c.name),
            ColumnType::Float => TableFieldSchema::float(&c.name),
            ColumnType::Boolean => TableFieldSchema::bool(&c.name),
            ColumnType::Timestamp => TableFieldSchema::timestamp(&c.name),
            ColumnType::Json => TableFieldSchema::json(&c.name),
        })
        .collect()
}

/// The column to partition by day on, if the schema has a timestamp.
pub(crate) fn partition_column(columns: &[Column]) -> Option<&str> {
    columns
        .iter()
        .find(|c| c.kind == ColumnType::Timestamp)
        .map(|c| c.name.as_str())
}

/// The row for `event`: each column's value, converted to its type. Missing fields are left out
/// (NULL). `Err` names a value that cannot have the column's type.
pub fn row(columns: &[Column], event: &Event) -> Result<Map<String, Value>, String> {
    let mut row = Map::new();
    for c in columns {
        let value = if c.path == "." {
            Some(whole_event(event, c.kind).map_err(|e| format!("column `{}`: {e}", c.name))?)
        } else {
            match (path::get(&event.data, &c.path), c.kind) {
                (None | Some(Value::Null), ColumnType::Timestamp) if c.path == "timestamp" => {
                    Some(received_at(event))
                }
                (None | Some(Value::Null), _) => None,
                (Some(v), kind) => {
                    Some(convert(v, kind).map_err(|e| format!("column `{}`: {e}", c.name))?)
                }
            }
        };
        if let Some(v) = value {
            row.insert(c.name.clone(), v);
        }
    }
    Ok(row)
}

/// The value of a column that holds the whole event (`path: "."`): as a `json` or `string`
/// column its JSON text, written straight from the event data (no copy of the event as a
/// `Value` first); any other type fails as [`convert`] says.
fn whole_event(event: &Event, kind: ColumnType) -> Result<Value, String> {
    match kind {
        ColumnType::Json | ColumnType::String => serde_json::to_string(&*event.data)
            .map(Value::String)
            .map_err(|e| e.to_string()),
        other => convert(&event.data.to_value(), other),
    }
}

fn received_at(event: &Event) -> Value {
    let ms = event
        .context
        .received_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Value::String(rfc3339_micros(i64::try_from(ms).unwrap_or(0) * 1000))
}

fn convert(v: &Value, kind: ColumnType) -> Result<Value, String> {
    let number = |v: &Value| -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    Ok(match kind {
        ColumnType::String => Value::String(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        ColumnType::Json => Value::String(v.to_string()),
        ColumnType::Float => number(v)
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{v}` is not a number"))?,
        ColumnType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            _ => number(v)
                .filter(|f| f.fract() == 0.0)
                .map(|f| Value::from(f as i64))
                .ok_or_else(|| format!("`{v}` is not an integer"))?,
        },
        ColumnType::Boolean => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
            _ => return Err(format!("`{v}` is not a boolean")),
        },
        ColumnType::Timestamp => match v {
            Value::String(s) if s.parse::<f64>().is_err() => v.clone(),
            _ => {
                let n = number(v).ok_or_else(|| format!("`{v}` is not a time"))?;
                // Up to ten integer digits: seconds; more: milliseconds.
                let micros = if n.abs().trunc() < 1e10 {
                    n * 1e6
                } else {
                    n * 1e3
                };
                Value::String(rfc3339_micros(micros as i64))
            }
        },
    })
}

/// RFC 3339 UTC with microseconds.
fn rfc3339_micros(us: i64) -> String {
    tagpipe_core::time::rfc3339(us, 6)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tagpipe_core::RequestContext;

    use super::*;

    fn event(v: Value) -> Event {
        let data = v.try_into().expect("test events are objects");
        Event::new(data, Arc::new(RequestContext::detached()))
    }

    #[test]
    fn events_rows_have_typed_columns_and_the_whole_event() {
        let cols = columns(SchemaKind::Events, &[]);
        let e = event(
            json!({"event_name": "purchase", "timestamp": 1_748_377_016, "value": "9.5",
                             "client_id": "1.2", "user_data": {"x": 1}}),
        );
        let r = row(&cols, &e).unwrap();
        assert_eq!(r["timestamp"], "2025-05-27T20:16:56.000000Z");
        assert_eq!(r["value"], 9.5);
        assert_eq!(r["client_id"], "1.2");
        let whole: Value = serde_json::from_str(r["event"].as_str().unwrap()).unwrap();
        assert_eq!(whole["user_data"]["x"], 1);
        assert!(!r.contains_key("currency"));
        assert_eq!(partition_column(&cols), Some("timestamp"));
    }

    #[test]
    fn a_time_of_up_to_ten_integer_digits_is_seconds_and_a_longer_one_milliseconds() {
        let at = |t: Value| {
            row(
                &[column("t", ColumnType::Timestamp, "t")],
                &event(json!({"t": t})),
            )
        };
        assert_eq!(
            at(json!(9_999_999_999.5)).unwrap()["t"],
            "2286-11-20T17:46:39.500000Z"
        );
        assert_eq!(
            at(json!(-9_999_999_999_i64)).unwrap()["t"],
            "1653-02-10T06:13:21.000000Z"
        );
        assert_eq!(
            at(json!(10_000_000_000_i64)).unwrap()["t"],
            "1970-04-26T17:46:40.000000Z"
        );
        assert_eq!(
            at(json!("1748377016123")).unwrap()["t"],
            "2025-05-27T20:16:56.123000Z"
        );
        assert_eq!(
            at(json!(-1e10)).unwrap()["t"],
            "1969-09-07T06:13:20.000000Z"
        );
        // Text that reads as no finite number: the epoch, or the latest time there is.
        assert_eq!(
            at(json!("NaN")).unwrap()["t"],
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            at(json!("inf")).unwrap()["t"],
            at(json!(1e300)).unwrap()["t"]
        );
    }

    #[test]
    fn a_whole_event_column_is_the_events_json_text_as_json_or_string() {
        let e = event(json!({"b": [1, {"c": "é\n"}], "a": 1.5, "event_name": "x"}));
        let text = e.data.to_value().to_string();
        for kind in [ColumnType::Json, ColumnType::String] {
            let r = row(&[column("whole", kind, ".")], &e).unwrap();
            assert_eq!(r["whole"], Value::String(text.clone()), "{kind:?}");
        }
        let refused = row(&[column("n", ColumnType::Integer, ".")], &e).unwrap_err();
        assert!(refused.starts_with("column `n`: "), "{refused}");
    }

    #[test]
    fn stape_log_rows_and_bad_values() {
        let cols = columns(SchemaKind::StapeLogs, &[]);
        let r = row(
            &cols,
            &event(
                json!({"timestamp": 1_748_377_016_123_u64, "type": "Response",
                                         "response_status_code": 200, "extra": 1}),
            ),
        )
        .unwrap();
        assert_eq!(r["timestamp"], 1_748_377_016_123_u64);
        assert!(!r.contains_key("extra"));
        assert_eq!(partition_column(&cols), None);
        let custom = vec![column("n", ColumnType::Integer, "a.b")];
        assert!(
            row(&custom, &event(json!({"a": {"b": "x"}})))
                .unwrap_err()
                .contains("column `n`")
        );
        assert_eq!(
            row(&custom, &event(json!({"a": {"b": "7"}}))).unwrap()["n"],
            7
        );
    }
}
