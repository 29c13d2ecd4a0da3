//! The stream between the tiers: created at start-up when missing (if allowed), otherwise
//! checked to exist — retried while NATS is unreachable, reported each time.

use std::time::Duration;

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::{self, stream};
use tagpipe_core::{BoxError, ComponentId};
use tokio_util::sync::CancellationToken;

use crate::config::{Retention, StreamSettings};

impl StreamSettings {
    /// The stream, created with `subjects` when missing and `create` is on.
    pub(crate) async fn ensure(
        &self,
        js: &jetstream::Context,
        subjects: &[String],
    ) -> Result<stream::Stream, BoxError> {
        match js.get_stream(&self.name).await {
            Ok(stream) => Ok(stream),
            Err(error) if is_not_found(&error) => {
                if !self.create {
                    return Err(format!(
                        "stream `{}` does not exist (and `stream.create` is off)",
                        self.name
                    )
                    .into());
                }
                let config = stream::Config {
                    name: self.name.clone(),
                    subjects: subjects.to_vec(),
                    retention: match self.retention {
                        Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
                        Retention::Limits => stream::RetentionPolicy::Limits,
                        Retention::Interest => stream::RetentionPolicy::Interest,
                    },
                    num_replicas: self.replicas,
                    max_age: self.max_age,
                    max_bytes: self
                        .max_bytes
                        .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
                    duplicate_window: self.duplicate_window,
                    storage: if self.memory {
                        stream::StorageType::Memory
                    } else {
                        stream::StorageType::File
                    },
                    ..stream::Config::default()
                };
                let stream = js.get_or_create_stream(config).await?;
                tracing::info!(stream = %self.name, ?subjects, replicas = self.replicas, "created the JetStream stream");
                Ok(stream)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// [`StreamSettings::ensure`], retried with growing pauses (up to 10 s) until it works or
/// `stop` is cancelled (`None`).
pub(crate) async fn ensure_retrying(
    settings: &StreamSettings,
    js: &jetstream::Context,
    subjects: &[String],
    component: &ComponentId,
    stop: &CancellationToken,
) -> Option<stream::Stream> {
    let mut pause = Duration::from_millis(250);
    loop {
        match settings.ensure(js, subjects).await {
            Ok(stream) => return Some(stream),
            Err(error) => {
                tracing::warn!(component = %component, stream = %settings.name, %error, retry_in = ?pause, "JetStream stream not available yet");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Whether JetStream said the stream does not exist.
fn is_not_found(error: &GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}
