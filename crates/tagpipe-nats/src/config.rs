//! The `nats` sink's and source's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tagpipe_core::batch::BatchConfig;
use tagpipe_core::retry::RetryConfig;
use tagpipe_core::{Secret, ValidationError};

/// How to reach NATS (`connection:` of the sink and the source).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`); list several servers of a cluster
    /// so a lost one is not a lost connection. An entry may hold several comma-separated URLs
    /// (handy for one environment variable). Default: `[nats://127.0.0.1:4222]`.
    #[serde(default = "default_urls")]
    pub urls: Vec<String>,
    /// A `.creds` file (user JWT and NKey seed), for NATS's decentralised authentication.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// User name, with `password`.
    #[serde(default)]
    pub user: Option<String>,
    /// Password for `user` (e.g. `${file:/run/secrets/nats}`). Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// An authentication token. Never logged.
    #[serde(default)]
    pub token: Option<Secret>,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsConfig,
    /// How long one connection attempt may take. Default: `5s`.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub connect_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            urls: default_urls(),
            credentials_file: None,
            user: None,
            password: None,
            token: None,
            tls: TlsConfig::default(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

/// `tls:` of a connection.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Refuse a connection without TLS. Default: `false` (a `tls://` URL asks for TLS anyway).
    #[serde(default)]
    pub required: bool,
    /// CA certificates (PEM) to trust, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS, with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM), with `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `stream:` — the JetStream stream between the tiers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// The stream's name. Default: `TAGPIPE`.
    #[serde(default = "default_stream_name")]
    pub name: String,
    /// Create the stream at start-up when it does not exist. With `false`, a missing stream is
    /// reported and waited for. Default: `true`.
    #[serde(default = "default_true")]
    pub create: bool,
    /// The subjects a created stream captures. Default: the sink's `subject` (sink), or
    /// `tagpipe.>` (source).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// What a created stream keeps: `work_queue` (default: a message is removed once acked),
    /// `limits` (kept until `max_age`/`max_bytes`), `interest`.
    #[serde(default)]
    pub retention: Retention,
    /// Copies of each message in a NATS cluster (1, 3 or 5). Default: 1.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Oldest message a created stream keeps. Default: `168h` (7 days).
    #[serde(
        default = "default_max_age",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub max_age: Duration,
    /// Most bytes a created stream keeps (then it refuses new messages, which the sink retries).
    /// Default: no limit.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// How long JetStream remembers `Nats-Msg-Id`s to drop re-published duplicates.
    /// Default: `2m`.
    #[serde(
        default = "default_duplicate_window",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub duplicate_window: Duration,
    /// Keep a created stream's messages in memory instead of files. Default: `false`.
    #[serde(default)]
    pub memory: bool,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: default_stream_name(),
            create: true,
            subjects: Vec::new(),
            retention: Retention::default(),
            replicas: default_replicas(),
            max_age: default_max_age(),
            max_bytes: None,
            duplicate_window: default_duplicate_window(),
            memory: false,
        }
    }
}

/// A stream's retention policy.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Removed once acked (one consumer per subject).
    #[default]
    WorkQueue,
    /// Kept until the limits.
    Limits,
    /// Kept while a consumer has not acked it.
    Interest,
}

/// The `nats` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// How to reach NATS.
    #[serde(default)]
    pub connection: ConnectionConfig,
    /// The subject events are published on. Default: `tagpipe.events`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// The stream (created at start-up when missing and `create` is on).
    #[serde(default)]
    pub stream: StreamSettings,
    /// Events per batch (published together; each acked on its own). Defaults:
    /// `max_events: 500`, `timeout: 5ms`.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Batches in flight at once. Default: 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retries of publishes that got no ack (NATS unreachable, stream full, timeout).
    #[serde(default)]
    pub retry: RetryConfig,
    /// `false` (default): a source answers its client (the HTTP response) only once JetStream
    /// has stored the event, so an accepted event survives the ingest node. `true`: answer as
    /// soon as the event is queued here (faster; a crash loses what is queued, unless the sink
    /// has a disk buffer).
    #[serde(default)]
    pub optimistic: bool,
    /// How long a publish waits for JetStream's ack. Default: `5s`.
    #[serde(
        default = "default_ack_timeout",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub ack_timeout: Duration,
}

/// The `nats` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// How to reach NATS.
    #[serde(default)]
    pub connection: ConnectionConfig,
    /// The stream to read (created at start-up when missing and `create` is on).
    #[serde(default)]
    pub stream: StreamSettings,
    /// The durable consumer's name: every process using the same name shares the messages.
    /// Default: `tagpipe`.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// Read only messages on this subject. Default: all of the stream.
    #[serde(default)]
    pub filter_subject: Option<String>,
    /// Deliveries of one message before it is given up (and sent to `dead_letter`).
    /// Default: 5.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// How long JetStream waits for an ack before redelivering; while a message's delivery is
    /// under way tagpipe tells JetStream so every half of this. Default: `30s`.
    #[serde(
        default = "default_ack_wait",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub ack_wait: Duration,
    /// How long JetStream waits before redelivering a message whose delivery failed.
    /// Default: `5s`.
    #[serde(
        default = "default_nak_delay",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub nak_delay: Duration,
    /// Most messages this process is delivering at once. Default: 1000.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// The sink that gets a message's event when its last delivery (`max_deliver`) failed,
    /// with `dead_letter: {source, reason, deliveries, at}` added. Without one, such a message
    /// is logged, counted and dropped.
    #[serde(default)]
    pub dead_letter: Option<String>,
}

impl NatsSinkConfig {
    /// Pure checks.
    pub fn problems(&self) -> Vec<ValidationError> {
        let mut problems = self.connection.problems();
        problems.extend(self.stream.problems());
        problems.extend(self.batch.refuse_max_bytes());
        problems.extend(self.retry.problems("retry"));
        if !valid_subject(&self.subject, false) {
            problems.push(ValidationError::new(
                "subject",
                "a subject is dot-separated tokens without spaces or wildcards",
            ));
        }
        if self.concurrency == 0 {
            problems.push(ValidationError::new("concurrency", "must be at least 1"));
        }
        problems
    }

    /// The subjects a stream created by the sink captures.
    pub fn stream_subjects(&self) -> Vec<String> {
        if self.stream.subjects.is_empty() {
            vec![self.subject.clone()]
        } else {
            self.stream.subjects.clone()
        }
    }
}

impl NatsSourceConfig {
    /// Pure checks.
    pub fn problems(&self) -> Vec<ValidationError> {
        let mut problems = self.connection.problems();
        problems.extend(self.stream.problems());
        if self.consumer.is_empty() || self.consumer.contains(['.', '*', '>', ' ']) {
            problems.push(ValidationError::new(
                "consumer",
                "a consumer name is a non-empty name without `.`, `*`, `>` or spaces",
            ));
        }
        if self.max_deliver == 0 {
            problems.push(ValidationError::new("max_deliver", "must be at least 1"));
        }
        if self.max_in_flight == 0 {
            problems.push(ValidationError::new("max_in_flight", "must be at least 1"));
        }
        if self.ack_wait < Duration::from_secs(1) {
            problems.push(ValidationError::new("ack_wait", "must be at least 1s"));
        }
        if let Some(filter) = &self.filter_subject
            && !valid_subject(filter, true)
        {
            problems.push(ValidationError::new(
                "filter_subject",
                "a subject is dot-separated tokens without spaces",
            ));
        }
        problems
    }

    /// The subjects a stream created by the source captures.
    pub fn stream_subjects(&self) -> Vec<String> {
        if self.stream.subjects.is_empty() {
            vec!["tagpipe.>".to_owned()]
        } else {
            self.stream.subjects.clone()
        }
    }
}

impl ConnectionConfig {
    fn problems(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        if self.urls.is_empty() {
            problems.push(ValidationError::new(
                "connection.urls",
                "list at least one server",
            ));
        }
        for (i, url) in self.urls.iter().enumerate() {
            if split_urls(url).any(|u| u.parse::<async_nats::ServerAddr>().is_err())
                || split_urls(url).next().is_none()
            {
                problems.push(ValidationError::new(
                    format!("connection.urls.{i}"),
                    format!("`{url}` is not a NATS server URL (nats://host:port)"),
                ));
            }
        }
        if self.password.is_some() != self.user.is_some() {
            problems.push(ValidationError::new(
                "connection.user",
                "`user` and `password` go together",
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            problems.push(ValidationError::new(
                "connection.tls.cert_file",
                "`cert_file` and `key_file` go together",
            ));
        }
        problems
    }
}

impl StreamSettings {
    fn problems(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        if self.name.is_empty() || self.name.contains(['.', '*', '>', ' ']) {
            problems.push(ValidationError::new(
                "stream.name",
                "a stream name is a non-empty name without `.`, `*`, `>` or spaces",
            ));
        }
        if !matches!(self.replicas, 1..=5) {
            problems.push(ValidationError::new("stream.replicas", "must be 1 to 5"));
        }
        for (i, subject) in self.subjects.iter().enumerate() {
            if !valid_subject(subject, true) {
                problems.push(ValidationError::new(
                    format!("stream.subjects.{i}"),
                    "a subject is dot-separated tokens without spaces",
                ));
            }
        }
        problems
    }
}

/// The URLs of one `urls` entry (comma-separated).
pub(crate) fn split_urls(entry: &str) -> impl Iterator<Item = &str> {
    entry.split(',').map(str::trim).filter(|u| !u.is_empty())
}

/// A NATS subject: non-empty dot-separated tokens; `*` and a final `>` only where allowed.
fn valid_subject(subject: &str, wildcards: bool) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t.contains(char::is_whitespace)
            && match *t {
                "*" => wildcards,
                ">" => wildcards && i == tokens.len() - 1,
                _ => !t.contains(['*', '>']),
            }
    })
}

fn default_urls() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_stream_name() -> String {
    "TAGPIPE".into()
}
fn default_true() -> bool {
    true
}
fn default_replicas() -> usize {
    1
}
fn default_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}
fn default_subject() -> String {
    "tagpipe.events".into()
}
fn default_concurrency() -> usize {
    4
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_consumer() -> String {
    "tagpipe".into()
}
fn default_max_deliver() -> u32 {
    5
}
fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_nak_delay() -> Duration {
    Duration::from_secs(5)
}
fn default_max_in_flight() -> usize {
    1000
}
