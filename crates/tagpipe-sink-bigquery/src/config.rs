//! The `bigquery` sink configuration.

use std::path::PathBuf;

use serde::Deserialize;
use tagpipe_core::ValidationError;
use tagpipe_core::batch::BatchConfig;
use tagpipe_core::retry::RetryConfig;

use crate::schema::Column;

/// `bigquery` sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigQuerySinkConfig {
    /// The Google Cloud project. Default: `$GOOGLE_CLOUD_PROJECT`.
    #[serde(default)]
    pub project: Option<String>,
    /// The dataset (required).
    pub dataset: String,
    /// The table (required).
    pub table: String,
    /// How to authenticate.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Endpoint overrides (emulators, private endpoints).
    #[serde(default)]
    pub endpoint: EndpointConfig,
    /// Row shape: `stape_logs` (the delivery-log columns of Stape's tags, for the `logs` source),
    /// `events` (typed common columns plus the whole event as JSON, default) or `custom` (the
    /// `columns` list).
    #[serde(default)]
    pub schema: SchemaKind,
    /// For `schema: custom`: the columns, each `{name, type, path}`.
    #[serde(default)]
    pub columns: Vec<Column>,
    /// Create the dataset and the table (day-partitioned) when missing. Otherwise a missing
    /// table is a start-up error. Default: `false`.
    #[serde(default)]
    pub create_table: bool,
    /// Write API: `storage_write` (the Storage Write API's `_default` stream: cheaper and faster
    /// on Google; default) or `insert_all` (`tabledata.insertAll`, with `insertId`s).
    #[serde(default)]
    pub write_api: WriteApi,
    /// Ignore row fields the table does not have (as the Stape tag does). Default: `true`.
    #[serde(default = "yes")]
    pub ignore_unknown_values: bool,
    /// Batching: default `max_events: 500` (the insertAll limit), `timeout: 1s`,
    /// `max_bytes: 5000000` (insertAll accepts up to 10 MB, 5 MB is recommended; Storage Write
    /// appends stay under 9 MB).
    #[serde(default)]
    pub batch: BatchConfig,
    /// Requests in flight. Default: 2.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retries of whole requests and of retryable rows.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// Credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `application_default` (ADC: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud, metadata server,
    /// workload identity; default), `service_account_key` (with `key_path`) or `none`
    /// (emulators).
    #[serde(rename = "type", default)]
    pub kind: AuthKind,
    /// For `service_account_key`: the key file.
    #[serde(default)]
    pub key_path: Option<PathBuf>,
}

/// Credential sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// Application default credentials.
    #[default]
    ApplicationDefault,
    /// A service-account key file.
    ServiceAccountKey,
    /// No credentials (emulators).
    None,
}

/// Endpoint overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// REST base URL including `/bigquery/v2` (default Google's).
    #[serde(default)]
    pub rest: Option<String>,
    /// Storage Write gRPC endpoint, e.g. `http://127.0.0.1:9060` (default Google's, with the
    /// configured credentials; a configured endpoint is called without credentials).
    #[serde(default)]
    pub grpc: Option<String>,
}

/// Row shapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaKind {
    /// The Stape tags' log table.
    StapeLogs,
    /// One row per event.
    #[default]
    Events,
    /// The `columns` list.
    Custom,
}

/// Write APIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteApi {
    /// The Storage Write API (`AppendRows` on the `_default` stream).
    #[default]
    StorageWrite,
    /// `tabledata.insertAll`.
    InsertAll,
}

fn yes() -> bool {
    true
}
fn default_concurrency() -> usize {
    2
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl BigQuerySinkConfig {
    /// The project: `project`, else `GOOGLE_CLOUD_PROJECT`.
    pub(crate) fn project_id(&self) -> Result<String, &'static str> {
        self.project
            .clone()
            .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok())
            .filter(|p| !p.is_empty())
            .ok_or("no project: set `project` or GOOGLE_CLOUD_PROJECT")
    }

    /// The request size limit (`batch.max_bytes`).
    pub(crate) fn max_request_bytes(&self) -> usize {
        self.batch.max_bytes.unwrap_or(5_000_000)
    }

    pub(crate) fn problems(&self) -> Vec<ValidationError> {
        let mut p = Vec::new();
        for (field, value) in [("dataset", &self.dataset), ("table", &self.table)] {
            if !is_identifier(value) {
                p.push(ValidationError::new(
                    field,
                    "letters, digits, `_` and `-` only",
                ));
            }
        }
        if self.project.as_deref().is_some_and(str::is_empty) {
            p.push(ValidationError::new("project", "must not be empty"));
        }
        if self.auth.kind == AuthKind::ServiceAccountKey && self.auth.key_path.is_none() {
            p.push(ValidationError::new(
                "auth.key_path",
                "`service_account_key` needs `key_path`",
            ));
        }
        match self.schema {
            SchemaKind::Custom if self.columns.is_empty() => {
                p.push(ValidationError::new(
                    "columns",
                    "`schema: custom` needs at least one column",
                ));
            }
            SchemaKind::StapeLogs | SchemaKind::Events if !self.columns.is_empty() => {
                p.push(ValidationError::new("columns", "only for `schema: custom`"));
            }
            _ => {}
        }
        for (i, c) in self.columns.iter().enumerate() {
            if !is_identifier(&c.name) || c.name.contains('-') {
                p.push(ValidationError::new(
                    format!("columns.{i}.name"),
                    "letters, digits and `_` only",
                ));
            }
            if self.columns[..i].iter().any(|o| o.name == c.name) {
                p.push(ValidationError::new(
                    format!("columns.{i}.name"),
                    "used twice",
                ));
            }
        }
        if self.concurrency == 0 {
            p.push(ValidationError::new("concurrency", "must be at least 1"));
        }
        if self.batch.max_bytes.is_some_and(|b| b < 1024) {
            p.push(ValidationError::new(
                "batch.max_bytes",
                "must be at least 1024",
            ));
        }
        p.extend(self.retry.problems("retry"));
        p
    }
}
