//! # tagpipe-sink-bigquery
//!
//! The `bigquery` sink writes one row per event — with the Storage Write API (`_default`
//! stream, rows encoded as protocol buffers from the table's columns; the default) or with
//! `tabledata.insertAll`:
//!
//! - `schema: stape_logs` — the delivery-log columns of Stape's tags (`timestamp`, `type`,
//!   `trace_id`, `tag_name`, `event_name`, `request_method`, `request_url`, `request_body`,
//!   `response_status_code`, `response_headers`, `response_body`, plus `message`), for the `logs`
//!   source: a table made by the Stape tag keeps working;
//! - `schema: events` — `event_name`, `event_id`, `client_id`, `timestamp`, `page_location`,
//!   `ip_override`, `user_agent`, `value`, `currency`, and the whole event as a JSON column;
//! - `schema: custom` — your `columns: [{name, type, path}]`.
//!
//! Each row carries an `insertId` (the event's `event_id`, else `unique_event_id`, else a hash
//! of the row) for BigQuery's best-effort de-duplication. Invalid rows are rejected alone
//! (`skipInvalidRows`), with BigQuery's reason as the event's outcome; rows BigQuery could not
//! take for a transient reason are sent again; whole requests are retried on 429, 5xx and
//! transport errors, within `retry.max_elapsed`. With `create_table: true` the dataset and the
//! table (day-partitioned on the timestamp column, or by ingestion time) are created at start-up
//! when missing; otherwise a missing table stops start-up with a clear error. The health check
//! (`tagpipe run --require-healthy`) reads the table with the sink's credentials before that.
//!
//! ```yaml
//! sources:
//!   logs:
//! sinks:
//!   bigquery/logs:
//!     dataset: tagging
//!     table: spotify_logs
//!     schema: stape_logs
//!     create_table: true
//! pipelines:
//!   delivery_logs: { sources: [logs], sinks: [bigquery/logs] }
//! ```

mod auth;
mod config;
pub mod schema;
mod service;
mod storage;

pub use service::{insert_id, request_row};

use std::sync::Arc;

use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use tagpipe_core::batch::BatchSettings;
use tagpipe_core::component::SinkParts;
use tagpipe_core::{BoxError, BoxFuture, SinkComponent, SinkConfig, SinkContext, ValidationError};

pub use config::{AuthConfig, AuthKind, BigQuerySinkConfig, EndpointConfig, SchemaKind, WriteApi};
pub use schema::{Column, ColumnType};

const DEFAULT_BATCH: BatchSettings = BatchSettings {
    max_events: 500,
    timeout: std::time::Duration::from_secs(1),
};

impl SinkConfig for BigQuerySinkConfig {
    fn validate(&self) -> Vec<ValidationError> {
        self.problems()
    }

    /// Reads the table's metadata with the sink's credentials (nothing is written). With
    /// `create_table: true` a table BigQuery answers "not found" for is healthy: start-up
    /// creates it.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let project = self.project_id()?;
            let client = auth::client(self).await?;
            match lookup_table(&client, &project, self).await {
                Ok(true) => Ok(()),
                Ok(false) if self.create_table => Ok(()),
                Ok(false) => Err(missing_table(&project, self).into()),
                Err(e) => Err(format!(
                    "cannot read table {project}.{}.{}: {e}",
                    self.dataset, self.table
                )
                .into()),
            }
        })
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        Box::pin(async move {
            let project = self.project_id()?;
            let client = auth::client(self).await?;
            let columns = schema::columns(self.schema, &self.columns);
            ensure_table(&client, &project, self, &columns).await?;
            let writer = match self.write_api {
                WriteApi::InsertAll => None,
                WriteApi::StorageWrite => {
                    let writer_client = auth::client(self).await?;
                    let writer =
                        storage::Writer::new(self.endpoint.grpc.as_deref(), writer_client).await?;
                    let stream = gcp_bigquery_client::storage::StreamName::new_default(
                        project.clone(),
                        self.dataset.clone(),
                        self.table.clone(),
                    );
                    Some((writer, stream))
                }
            };
            let shared = service::Shared {
                config: self.clone(),
                project,
                columns,
                client,
                writer,
                tag_name: cx.id.to_string(),
                logs: cx.logs,
            };
            let mut batch = self.batch.resolve(DEFAULT_BATCH);
            batch.max_events = batch.max_events.min(500);
            Ok(SinkParts {
                service: tagpipe_core::driver::service_with(
                    Arc::new(shared),
                    |shared, events| async move { shared.write(events).await },
                )
                .into(),
                batch,
                concurrency: self.concurrency,
                wait_for_delivery: false,
            })
        })
    }
}

impl SinkComponent for BigQuerySinkConfig {
    const TYPE: &'static str = "bigquery";
}

/// Whether the configured table exists (`false` when BigQuery answers 404), or why it could
/// not be asked (unreachable, credentials refused, …).
async fn lookup_table(
    client: &gcp_bigquery_client::Client,
    project: &str,
    config: &BigQuerySinkConfig,
) -> Result<bool, gcp_bigquery_client::error::BQError> {
    match client
        .table()
        .get(project, &config.dataset, &config.table, None)
        .await
    {
        Ok(_) => Ok(true),
        Err(gcp_bigquery_client::error::BQError::ResponseError { error })
            if error.error.code == 404 =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn missing_table(project: &str, config: &BigQuerySinkConfig) -> String {
    format!(
        "table {project}.{}.{} does not exist or cannot be read \
         (create it, or set `create_table: true`)",
        config.dataset, config.table
    )
}

/// Checks that the table exists, creating the dataset and the table when allowed.
async fn ensure_table(
    client: &gcp_bigquery_client::Client,
    project: &str,
    config: &BigQuerySinkConfig,
    columns: &[Column],
) -> Result<(), String> {
    let (dataset, table) = (&config.dataset, &config.table);
    if matches!(lookup_table(client, project, config).await, Ok(true)) {
        return Ok(());
    }
    if !config.create_table {
        return Err(missing_table(project, config));
    }
    if client.dataset().get(project, dataset).await.is_err() {
        client
            .dataset()
            .create(Dataset::new(project, dataset))
            .await
            .map_err(|e| format!("cannot create dataset {project}.{dataset}: {e}"))?;
    }
    let partitioning = match schema::partition_column(columns) {
        Some(column) => TimePartitioning::per_day().field(column),
        None => TimePartitioning::per_day(),
    };
    let definition = Table::new(
        project,
        dataset,
        table,
        TableSchema::new(schema::fields(columns)),
    )
    .time_partitioning(partitioning);
    client
        .table()
        .create(definition)
        .await
        .map_err(|e| format!("cannot create table {project}.{dataset}.{table}: {e}"))?;
    tracing::info!(%project, %dataset, %table, "created the BigQuery table");
    Ok(())
}
