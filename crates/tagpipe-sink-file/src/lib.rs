//! # tagpipe-sink-file
//!
//! `file`: appends each event's data as one JSON line (NDJSON) to a file, creating it if needed.
//! An event counts as `sent` once its batch is written and flushed (and, with `fsync: true`,
//! synced to disk).
//!
//! ```yaml
//! sinks:
//!   file/archive:
//!     path: /var/lib/tagpipe/events.ndjson
//!     fsync: false
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tagpipe_core::batch::{BatchConfig, BatchSettings};
use tagpipe_core::component::SinkParts;
use tagpipe_core::driver::service_fn;
use tagpipe_core::{
    BoxError, BoxFuture, DestinationOutcome, Event, SinkComponent, SinkConfig, SinkContext,
    ValidationError,
};
use tagpipe_sink_console::encode_lines;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// `file` sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to (required). Created if missing; its directory must exist.
    pub path: PathBuf,
    /// Sync each written batch to disk before reporting it sent. Default: `false`.
    #[serde(default)]
    pub fsync: bool,
    /// Batching: default `max_events: 1000`, `timeout: 0s`.
    #[serde(default)]
    pub batch: BatchConfig,
}

const DEFAULT_BATCH: BatchSettings = BatchSettings {
    max_events: 1000,
    timeout: std::time::Duration::ZERO,
};

impl SinkConfig for FileSinkConfig {
    fn validate(&self) -> Vec<ValidationError> {
        let mut problems = self.batch.refuse_max_bytes();
        if self.path.as_os_str().is_empty() {
            problems.push(ValidationError::new("path", "must not be empty"));
        }
        problems
    }

    fn build(&self, _cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        Box::pin(async move {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| format!("cannot open {} for appending: {e}", self.path.display()))?;
            let file = Arc::new(Mutex::new(file));
            let fsync = self.fsync;
            let service = service_fn(move |events: Vec<Event>| {
                let file = file.clone();
                async move {
                    let buf = encode_lines(&events)?;
                    let mut file = file.lock().await;
                    file.write_all(&buf).await?;
                    file.flush().await?;
                    if fsync {
                        file.sync_data().await?;
                    }
                    Ok(vec![DestinationOutcome::sent(); events.len()])
                }
            });
            Ok(SinkParts {
                service: service.into(),
                batch: self.batch.resolve(DEFAULT_BATCH),
                // One writer: lines from concurrent batches must not interleave.
                concurrency: 1,
                wait_for_delivery: false,
            })
        })
    }
}

impl SinkComponent for FileSinkConfig {
    const TYPE: &'static str = "file";
}
