//! # tagpipe-sink-console
//!
//! `console`: writes each event's data as one JSON line to standard output (or standard error).
//! tagpipe's own logs go to standard error, so standard output carries only events.
//!
//! ```yaml
//! sinks:
//!   console:
//!     target: stdout   # or stderr
//! ```

use std::io::Write as _;

use serde::Deserialize;
use tagpipe_core::batch::{BatchConfig, BatchSettings};
use tagpipe_core::component::SinkParts;
use tagpipe_core::driver::service_fn;
use tagpipe_core::{
    BoxError, BoxFuture, DestinationOutcome, Event, SinkComponent, SinkConfig, SinkContext,
};
use tokio::io::AsyncWriteExt;

/// `console` sink settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// Where to write: `stdout` (default) or `stderr`.
    #[serde(default)]
    pub target: Target,
    /// Batching: default `max_events: 512`, `timeout: 0s` (write whatever is queued at once).
    #[serde(default)]
    pub batch: BatchConfig,
}

/// The console stream to write to.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

const DEFAULT_BATCH: BatchSettings = BatchSettings {
    max_events: 512,
    timeout: std::time::Duration::ZERO,
};

impl SinkConfig for ConsoleSinkConfig {
    fn validate(&self) -> Vec<tagpipe_core::ValidationError> {
        self.batch.refuse_max_bytes()
    }

    fn build(&self, _cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        let target = self.target;
        Box::pin(async move {
            let service = service_fn(move |events: Vec<Event>| async move {
                let buf = encode_lines(&events)?;
                match target {
                    Target::Stdout => write_all(tokio::io::stdout(), &buf).await?,
                    Target::Stderr => write_all(tokio::io::stderr(), &buf).await?,
                }
                Ok(vec![DestinationOutcome::sent(); events.len()])
            });
            Ok(SinkParts {
                service: service.into(),
                batch: self.batch.resolve(DEFAULT_BATCH),
                concurrency: 1,
                wait_for_delivery: false,
            })
        })
    }
}

impl SinkComponent for ConsoleSinkConfig {
    const TYPE: &'static str = "console";
}

/// Each event's data as one JSON line.
pub fn encode_lines(events: &[Event]) -> Result<Vec<u8>, BoxError> {
    let mut buf = Vec::with_capacity(events.len() * 256);
    for event in events {
        serde_json::to_writer(&mut buf, &*event.data)?;
        writeln!(buf)?;
    }
    Ok(buf)
}

async fn write_all(
    mut out: impl tokio::io::AsyncWrite + Unpin,
    buf: &[u8],
) -> Result<(), BoxError> {
    out.write_all(buf).await?;
    out.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tagpipe_core::{EventData, RequestContext};

    use super::*;

    #[test]
    fn one_json_line_per_event() {
        let mut data = EventData::new();
        data.insert("event_name", "page_view".into());
        let cx = Arc::new(RequestContext::detached());
        let events = vec![Event::new(data.clone(), cx.clone()), Event::new(data, cx)];
        let out = String::from_utf8(encode_lines(&events).unwrap()).unwrap();
        assert_eq!(
            out,
            "{\"event_name\":\"page_view\"}\n{\"event_name\":\"page_view\"}\n"
        );
    }
}
