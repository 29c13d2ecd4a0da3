//! # tagpipe-source-file
//!
//! Two sources that read newline-delimited JSON (NDJSON) event data — one sGTM event-data object
//! per line — so pipelines run without any HTTP traffic (replays, backfills, tests):
//!
//! ```yaml
//! sources:
//!   file/replay:
//!     path: events.ndjson
//!   stdin:
//! ```
//!
//! Blank lines are skipped. A line that is not a JSON object is reported (with its line number)
//! and not accepted; the rest of the input carries on. The source finishes at the end of its
//! input; when every source has finished, tagpipe drains its sinks and exits.

mod config;
mod reader;

pub use config::{FileSourceConfig, StdinSourceConfig};
