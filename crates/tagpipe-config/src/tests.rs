//! Every class of configuration error, with its line and column.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use tagpipe_core::component::{RunningSource, SinkParts};
use tagpipe_core::queue::WhenFull;
use tagpipe_core::{
    BoxError, BoxFuture, ProcessorComponent, ProcessorConfig, ProcessorContext, ProcessorLayer,
    Secret, SinkComponent, SinkConfig, SinkContext, SourceComponent, SourceConfig, SourceContext,
    ValidationError,
};

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoSource {
    listen: String,
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<Secret>,
}

impl SourceConfig for DemoSource {
    fn validate(&self) -> Vec<ValidationError> {
        if self.listen.contains(':') {
            Vec::new()
        } else {
            vec![ValidationError::new("listen", "expected host:port")]
        }
    }
    fn build(&self, _cx: SourceContext) -> BoxFuture<'_, Result<RunningSource, BoxError>> {
        unreachable!("not built in these tests")
    }
}

impl SourceComponent for DemoSource {
    const TYPE: &'static str = "demo";
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DemoProcessor {
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rule {
    field: String,
}

impl ProcessorConfig for DemoProcessor {
    fn validate(&self) -> Vec<ValidationError> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.field.is_empty())
            .map(|(i, _)| ValidationError::new(format!("rules.{i}.field"), "must not be empty"))
            .collect()
    }
    fn build(&self, _cx: ProcessorContext) -> Result<ProcessorLayer, BoxError> {
        unreachable!("not built in these tests")
    }
}

impl ProcessorComponent for DemoProcessor {
    const TYPE: &'static str = "rewrite";
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DemoSink {
    #[serde(default)]
    #[allow(dead_code)]
    port: u16,
}

impl SinkConfig for DemoSink {
    fn build(&self, _cx: SinkContext) -> BoxFuture<'_, Result<SinkParts, BoxError>> {
        unreachable!("not built in these tests")
    }
}

impl SinkComponent for DemoSink {
    const TYPE: &'static str = "console";
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.source::<DemoSource>()
        .processor::<DemoProcessor>()
        .sink::<DemoSink>();
    r
}

fn env() -> HashMap<String, String> {
    HashMap::from([
        ("PORT".to_owned(), "9000".to_owned()),
        ("TOKEN".to_owned(), "tok-secret-1".to_owned()),
    ])
}

fn load(text: &str) -> Result<LoadedConfig, ConfigErrors> {
    load_str("test.yaml", text, &registry(), &env())
}

/// The errors as `line:column: message`.
fn errors(text: &str) -> Vec<(u64, u64, String)> {
    load(text)
        .expect_err("expected errors")
        .0
        .into_iter()
        .map(|e| (e.line, e.column, e.message))
        .collect()
}

fn one_error(text: &str) -> (u64, u64, String) {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

const VALID: &str = "\
sources:
  demo:
    listen: 127.0.0.1:8080
    token: ${env:TOKEN}
processors:
  rewrite/a:
    rules: [{field: x}]
sinks:
  console:
  console/two:
    port: ${env:PORT}
    buffer: {max_events: 5, when_full: drop_newest}
pipelines:
  main:
    sources: [demo]
    processors: [rewrite/a]
    sinks: [console, console/two]
runtime:
  shutdown_timeout: 5s
  metrics_address: 127.0.0.1:9598
";

#[test]
fn a_valid_file_loads_with_envelopes_env_and_runtime_settings() {
    let loaded = load(VALID).expect("valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let t = &loaded.topology;
    assert_eq!(t.sources.len(), 1);
    assert_eq!(t.sinks.len(), 2);
    assert_eq!(t.sinks[1].buffer.max_events, 5);
    assert_eq!(t.sinks[1].buffer.when_full, WhenFull::DropNewest);
    assert_eq!(t.sinks[0].buffer.max_events, 1_000);
    assert_eq!(t.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(
        loaded.runtime.metrics_address,
        Some("127.0.0.1:9598".parse().unwrap())
    );
    assert_eq!(loaded.runtime.metrics_path, "/metrics");
    let sink_debug = format!("{:?}", t.sinks[1].config);
    assert!(sink_debug.contains("9000"), "{sink_debug}");
    let source_debug = format!("{:?}", t.sources[0].1);
    assert!(
        !source_debug.contains("tok-secret-1"),
        "secrets never in Debug: {source_debug}"
    );
    assert_eq!(t.pipelines[0].sinks.len(), 2);
}

#[test]
fn runtime_metrics_settings_are_checked_with_positions() {
    let (line, column, message) = one_error("runtime:\n  metrics_address: 127.0.0.1:99999\n");
    assert_eq!((line, column), (2, 20), "{message}");
    let (line, column, message) = one_error("runtime:\n  metrics_path: metrics\n");
    assert_eq!((line, column), (2, 17), "{message}");
    assert!(message.contains("must start with `/`"), "{message}");
}

#[test]
fn yaml_syntax_error() {
    let (line, column, message) = one_error("sources:\n  demo:\n    listen: [x\n");
    assert_eq!((line, column), (3, 13), "{message}");
}

#[test]
fn wrong_type() {
    let text = VALID.replace("port: ${env:PORT}", "port: eighty");
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (11, 11), "{message}");
    assert!(message.contains("u16"), "{message}");
}

#[test]
fn wrong_type_from_env() {
    let mut env = env();
    env.insert("PORT".into(), "not-a-port".into());
    let err = load_str("test.yaml", VALID, &registry(), &env).expect_err("bad port");
    assert_eq!((err.0[0].line, err.0[0].column), (11, 11), "{err}");
}

#[test]
fn unknown_field_with_did_you_mean() {
    let text = VALID.replace("    listen: 127.0.0.1:8080", "    lisen: 127.0.0.1:8080");
    let all = errors(&text);
    let (line, column, message) = &all[0];
    assert_eq!((*line, *column), (3, 5), "{all:?}");
    assert!(message.contains("unknown field `lisen`"), "{message}");
    assert!(message.contains("did you mean `listen`?"), "{message}");
}

#[test]
fn unknown_field_in_a_sink_suggests_envelope_keys_too() {
    let text = VALID.replace("    buffer: {", "    bufer: {");
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (12, 5), "{message}");
    assert!(message.contains("did you mean `buffer`?"), "{message}");
}

#[test]
fn unknown_field_in_the_envelope() {
    let text = VALID.replace("max_events: 5", "max_event: 5");
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (12, 14), "{message}");
    assert!(message.contains("did you mean `max_events`?"), "{message}");
}

#[test]
fn bad_enum_value_in_the_envelope() {
    let text = VALID.replace("when_full: drop_newest", "when_full: drop_oldest");
    let (line, column, message) = one_error(&text);
    assert_eq!(line, 12, "{message}");
    assert!(column >= 30, "{column}: {message}");
    assert!(message.contains("did you mean `drop_newest`?"), "{message}");
}

#[test]
fn unknown_component_type() {
    let text = VALID.replace("  console/two:", "  consol/two:");
    let all = errors(&text);
    let (line, column, message) = &all[0];
    assert_eq!((*line, *column), (10, 3), "{all:?}");
    assert!(message.contains("unknown sink type `consol`"), "{message}");
    assert!(message.contains("did you mean `console`?"), "{message}");
}

#[test]
fn invalid_component_id() {
    let text = VALID.replace("  rewrite/a:", "  Rewrite/a:");
    let all = errors(&text);
    assert_eq!((all[0].0, all[0].1), (6, 3), "{all:?}");
    assert!(all[0].2.contains("invalid component id"), "{all:?}");
}

#[test]
fn pipeline_naming_an_undefined_component() {
    let text = VALID.replace(
        "sinks: [console, console/two]",
        "sinks: [console, console/to]",
    );
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (17, 22), "{message}");
    assert!(message.contains("sink `console/to`"), "{message}");
    assert!(message.contains("did you mean `console/two`?"), "{message}");
}

#[test]
fn duplicate_ids() {
    let text = VALID.replace("  console/two:\n", "  console:\n");
    let all = errors(&text);
    assert_eq!((all[0].0, all[0].1), (10, 3), "{all:?}");
    assert!(all[0].2.contains("duplicate"), "{all:?}");
}

#[test]
fn a_pipeline_listing_a_sink_twice() {
    let text = VALID.replace("sinks: [console, console/two]", "sinks: [console, console]");
    let all = errors(&text);
    assert_eq!((all[0].0, all[0].1), (17, 22), "{all:?}");
    assert!(all[0].2.contains("twice"), "{all:?}");
}

#[test]
fn pipeline_without_source_or_sink() {
    let text = VALID
        .replace("    sources: [demo]\n", "")
        .replace("    sinks: [console, console/two]\n", "");
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|e| (e.0, e.1) == (14, 3)), "{all:?}");
    assert!(all.iter().any(|e| e.2.contains("has no source")));
    assert!(all.iter().any(|e| e.2.contains("has no sink")));
}

#[test]
fn unset_env_var_without_default() {
    let text = VALID.replace("${env:PORT}", "${env:NOT_SET_ANYWHERE}");
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (11, 11), "{message}");
    assert!(
        message.contains("`NOT_SET_ANYWHERE` is not set"),
        "{message}"
    );
}

#[test]
fn env_defaults_and_dollar_escapes() {
    let text = VALID.replace("${env:PORT}", "${env:NOT_SET:-7070}");
    let loaded = load(&text).expect("valid");
    assert!(format!("{:?}", loaded.topology.sinks[1].config).contains("7070"));
    let text = VALID.replace("127.0.0.1:8080", "'$$x:${env:PORT}'");
    let loaded = load(&text).expect("valid");
    let debug = format!("{:?}", loaded.topology.sources[0].1);
    assert!(debug.contains(r#"listen: "$x:9000""#), "{debug}");
}

#[test]
fn positions_after_an_expanded_reference_stay_exact() {
    let text = VALID.replace(
        "buffer: {max_events: 5, when_full: drop_newest}",
        "buffer: {max_events: \"${env:PORT}\", when_full: sideways}",
    );
    let (line, column, message) = one_error(&text);
    // `sideways` is at column 52 of the original line (48 once `${env:` became `${`).
    assert_eq!((line, column), (12, 52), "{message}");
}

#[test]
fn validation_errors_point_at_the_field() {
    let text = VALID.replace("listen: 127.0.0.1:8080", "listen: nowhere");
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (3, 5), "{message}");
    assert!(
        message.contains("demo: `listen`: expected host:port"),
        "{message}"
    );

    let text = VALID.replace(
        "rules: [{field: x}]",
        "rules:\n      - field: a\n      - field: ''",
    );
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (9, 9), "{message}");
}

#[test]
fn zero_capacity_buffer_is_rejected() {
    let text = VALID.replace("max_events: 5", "max_events: 0");
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (12, 14), "{message}");
}

#[test]
fn every_error_is_listed_at_once() {
    let text = VALID
        .replace("    listen: 127.0.0.1:8080", "    lisen: 127.0.0.1:8080")
        .replace("  console/two:", "  consol/two:")
        .replace("[console, console/two]", "[console, console/two, nope]");
    let all = errors(&text);
    assert!(all.len() >= 3, "{all:#?}");
    let lines: Vec<u64> = all.iter().map(|e| e.0).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "errors come in file order");
}

#[test]
fn unused_components_are_warnings() {
    let text = VALID.replace("  console/two:\n", "  console/spare:\n  console/two:\n");
    let loaded = load(&text).expect("valid");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(
        (loaded.warnings[0].line, loaded.warnings[0].column),
        (10, 3)
    );
    assert!(loaded.warnings[0].message.contains("console/spare"));
}

#[test]
fn unknown_top_level_section() {
    let text = format!("{VALID}sink:\n  console:\n");
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (21, 1), "{message}");
    assert!(message.contains("did you mean `sinks`?"), "{message}");
}

#[test]
fn an_empty_file_says_what_is_missing() {
    let (_, _, message) = one_error("");
    assert!(message.contains("no pipelines"), "{message}");
}

#[test]
fn errors_display_file_line_column() {
    let err = load(&VALID.replace("lisen", "x").replace("listen:", "lisen:")).expect_err("bad");
    let text = err.to_string();
    assert!(
        text.starts_with("error: test.yaml:3:5: unknown field"),
        "{text}"
    );
}

#[test]
fn dead_letter_targets_are_checked_and_count_as_used() {
    let text = VALID.replace(
        "    buffer: {max_events: 5, when_full: drop_newest}\n",
        "    buffer: {max_events: 5, when_full: drop_newest}\n    dead_letter: console/dlq\n  console/dlq:\n",
    );
    let loaded = load(&text).expect("valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let two = loaded
        .topology
        .sinks
        .iter()
        .find(|s| s.id.as_str() == "console/two")
        .unwrap();
    assert_eq!(
        two.dead_letter.as_ref().map(ComponentId::as_str),
        Some("console/dlq")
    );

    let text = VALID.replace(
        "    buffer: {max_events: 5, when_full: drop_newest}\n",
        "    buffer: {max_events: 5, when_full: drop_newest}\n    dead_letter: console/dql\n",
    );
    let (line, column, message) = one_error(&text);
    assert_eq!((line, column), (13, 18), "{message}");
    assert!(
        message.contains("dead_letter `console/dql` is not a sink"),
        "{message}"
    );
    let text = VALID.replace(
        "    buffer: {max_events: 5, when_full: drop_newest}\n",
        "    buffer: {max_events: 5, when_full: drop_newest}\n    dead_letter: console/two\n",
    );
    let (_, _, message) = one_error(&text);
    assert!(message.contains("its own dead_letter"), "{message}");
}

/// Property test (the stable toolchain has no libFuzzer): thousands of seeded mutations of a
/// valid file must each load or fail with positioned errors — never panic.
#[test]
fn the_loader_never_panics_on_mutated_files() {
    let mut state: u64 = 0x0C0F_F1E5_EED5_1234;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: &[u8] = b" :-{}[],\n\t#&*!|>'\"$%@`?~=01aZ_.\\\xc3\xa9";
    for _ in 0..3_000 {
        let mut bytes = VALID.as_bytes().to_vec();
        for _ in 0..=(next() % 6) {
            if bytes.is_empty() {
                break;
            }
            let at = (next() % bytes.len() as u64) as usize;
            match next() % 4 {
                0 => bytes[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                1 => bytes.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                2 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(errors) = load(&text) {
            assert!(!errors.0.is_empty());
            assert!(errors.0.iter().all(|e| e.line > 0), "{errors}");
        }
    }
}
