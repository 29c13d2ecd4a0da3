//! The `file` and `stdin` source configurations.

use std::path::PathBuf;

use serde::Deserialize;
use tagpipe_core::component::RunningSource;
use tagpipe_core::{
    BoxError, BoxFuture, SourceComponent, SourceConfig, SourceContext, ValidationError,
};

use crate::reader::{ReadLimits, read_ndjson};

/// `file`: reads NDJSON event data from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Path of the NDJSON file (required).
    pub path: PathBuf,
    /// Longest accepted line in bytes; longer lines are reported and skipped. Default: 1048576.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

/// `stdin`: reads NDJSON event data from standard input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// Longest accepted line in bytes; longer lines are reported and skipped. Default: 1048576.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    1024 * 1024
}

fn check_max_line_bytes(value: usize) -> Vec<ValidationError> {
    if value == 0 {
        vec![ValidationError::new("max_line_bytes", "must be at least 1")]
    } else {
        Vec::new()
    }
}

impl SourceConfig for FileSourceConfig {
    fn validate(&self) -> Vec<ValidationError> {
        let mut problems = check_max_line_bytes(self.max_line_bytes);
        if self.path.as_os_str().is_empty() {
            problems.push(ValidationError::new("path", "must not be empty"));
        }
        problems
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        Box::pin(async move {
            let file = tokio::fs::File::open(&self.path)
                .await
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
            let limits = ReadLimits {
                max_line_bytes: self.max_line_bytes,
            };
            let running: RunningSource =
                Box::pin(read_ndjson(tokio::io::BufReader::new(file), limits, cx));
            Ok(running)
        })
    }
}

impl SourceComponent for FileSourceConfig {
    const TYPE: &'static str = "file";
}

impl SourceConfig for StdinSourceConfig {
    fn validate(&self) -> Vec<ValidationError> {
        check_max_line_bytes(self.max_line_bytes)
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        let limits = ReadLimits {
            max_line_bytes: self.max_line_bytes,
        };
        Box::pin(async move {
            let running: RunningSource = Box::pin(read_ndjson(
                tokio::io::BufReader::new(tokio::io::stdin()),
                limits,
                cx,
            ));
            Ok(running)
        })
    }
}

impl SourceComponent for StdinSourceConfig {
    const TYPE: &'static str = "stdin";
}
