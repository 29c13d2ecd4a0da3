//! The one place where component crates are registered. A new source, processor or sink is a
//! new crate plus one line here.

use tagpipe_config::Registry;

/// Every component type this binary knows.
pub(crate) fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .source::<tagpipe_source_file::FileSourceConfig>()
        .source::<tagpipe_source_file::StdinSourceConfig>()
        .source::<tagpipe_source_http::HttpSourceConfig>()
        .source::<tagpipe_core::logs::LogsSourceConfig>()
        .source::<tagpipe_nats::NatsSourceConfig>()
        .processor::<tagpipe_consent::ConsentConfig>()
        .processor::<tagpipe_mapping::MappingConfig>()
        .processor::<tagpipe_hashing::HashingConfig>()
        .processor::<tagpipe_sink_spotify::SpotifyDeviceIdConfig>()
        .sink::<tagpipe_sink_console::ConsoleSinkConfig>()
        .sink::<tagpipe_sink_file::FileSinkConfig>()
        .sink::<tagpipe_sink_spotify::SpotifySinkConfig>()
        .sink::<tagpipe_sink_bigquery::BigQuerySinkConfig>()
        .sink::<tagpipe_nats::NatsSinkConfig>();
    registry
}
