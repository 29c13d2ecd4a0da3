//! The README's configuration reference is checked against the config structs: every field a
//! component accepts (as serde sees it) must be documented in README.md.

use std::collections::BTreeSet;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::support::repo;

/// A deserializer that only records the field names a struct asks for.
struct FieldNames<'a>(&'a mut BTreeSet<&'static str>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend(fields);
        Err(Stop)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields<T: for<'de> Deserialize<'de>>() -> BTreeSet<&'static str> {
    let mut names = BTreeSet::new();
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

#[test]
fn every_config_field_is_in_the_readme() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let components: Vec<(&str, BTreeSet<&'static str>)> = vec![
        ("http", fields::<tagpipe_source_http::HttpSourceConfig>()),
        (
            "http events",
            fields::<tagpipe_source_http::EventsEndpoint>(),
        ),
        ("http ga4", fields::<tagpipe_source_http::Ga4Endpoint>()),
        ("http data", fields::<tagpipe_source_http::DataEndpoint>()),
        ("http debug", fields::<tagpipe_source_http::DebugSettings>()),
        (
            "file source",
            fields::<tagpipe_source_file::FileSourceConfig>(),
        ),
        ("consent", fields::<tagpipe_consent::ConsentConfig>()),
        ("mapping", fields::<tagpipe_mapping::MappingConfig>()),
        ("mapping filter", fields::<tagpipe_mapping::FilterConfig>()),
        (
            "mapping event_name",
            fields::<tagpipe_mapping::EventNameConfig>(),
        ),
        ("hashing field", fields::<tagpipe_hashing::FieldRule>()),
        (
            "console",
            fields::<tagpipe_sink_console::ConsoleSinkConfig>(),
        ),
        ("file sink", fields::<tagpipe_sink_file::FileSinkConfig>()),
        (
            "spotify",
            fields::<tagpipe_sink_spotify::SpotifySinkConfig>(),
        ),
        (
            "spotify_device_id",
            fields::<tagpipe_sink_spotify::SpotifyDeviceIdConfig>(),
        ),
        (
            "bigquery",
            fields::<tagpipe_sink_bigquery::BigQuerySinkConfig>(),
        ),
        ("nats sink", fields::<tagpipe_nats::NatsSinkConfig>()),
        ("nats source", fields::<tagpipe_nats::NatsSourceConfig>()),
        (
            "nats connection",
            fields::<tagpipe_nats::ConnectionConfig>(),
        ),
        ("nats tls", fields::<tagpipe_nats::TlsConfig>()),
        ("nats stream", fields::<tagpipe_nats::StreamSettings>()),
        ("buffer", fields::<tagpipe_core::queue::BufferConfig>()),
        ("batch", fields::<tagpipe_core::batch::BatchConfig>()),
        ("retry", fields::<tagpipe_core::retry::RetryConfig>()),
        ("runtime", fields::<tagpipe_config::RuntimeSettings>()),
    ];
    let mut missing = Vec::new();
    for (component, names) in &components {
        assert!(!names.is_empty(), "no fields read for {component}");
        for name in names {
            if !readme.contains(&format!("`{name}")) && !readme.contains(&format!(".{name}`")) {
                missing.push(format!("{component}: `{name}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "fields missing from README.md:\n{}",
        missing.join("\n")
    );
}
