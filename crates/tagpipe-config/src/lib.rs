//! # tagpipe-config
//!
//! Reads a pipeline file into a [`TopologyConfig`]:
//!
//! ```yaml
//! sources:    { <id>: {…}, … }      # id = type or type/name, e.g. http, file/replay
//! processors: { <id>: {…}, … }
//! sinks:      { <id>: {…}, … }      # every sink also takes `buffer: {max_events, when_full}`
//! pipelines:
//!   <name>: { sources: [<id>…], processors: [<id>…], sinks: [<id>…] }
//! runtime:    { shutdown_timeout: 30s }
//! ```
//!
//! Every problem is reported with file, line and column, all at once: YAML syntax, wrong types,
//! unknown fields (with "did you mean"), unknown component types, undefined or duplicate IDs,
//! pipelines without a source or sink, unset `${env:VAR}` without a default, and each
//! component's own `validate`. Validation does no I/O beyond reading the file (and
//! `${file:…}` references). A component no pipeline uses is a warning.

mod document;
mod error;
mod expand;
mod navigate;
mod registry;
mod suggest;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use serde_saphyr::Spanned;
use tagpipe_core::queue::BufferConfig;
use tagpipe_core::topology::{PipelineEntry, SinkEntry, TopologyConfig};
use tagpipe_core::{ComponentId, ValidationError};

pub use document::RuntimeSettings;
pub use error::{ConfigError, ConfigErrors};
pub use registry::Registry;

use document::{Entries, Node, Pos, Skeleton, locate, pos};
use expand::Expansion;
use navigate::KeyFilter;
use registry::{Doc, SINK_ENVELOPE_KEYS};

/// A configuration that passed every check.
#[derive(Debug)]
pub struct LoadedConfig {
    /// What to build.
    pub topology: TopologyConfig,
    /// The process-wide settings (`runtime:`); `shutdown_timeout` is in `topology` too.
    pub runtime: RuntimeSettings,
    /// Things worth knowing that do not stop a run (unused components).
    pub warnings: Vec<ConfigError>,
}

/// Loads and validates a pipeline file, expanding variables from the process environment.
pub fn load_file(path: &Path, registry: &Registry) -> Result<LoadedConfig, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::at(
            &name,
            (0, 0),
            format!("cannot read the file: {e}"),
        )])
    })?;
    load_str(&name, &text, registry, &std::env::vars().collect())
}

/// Loads and validates pipeline YAML `text` (named `file` in errors) with variables from `env`.
#[allow(clippy::implicit_hasher)]
pub fn load_str(
    file: &str,
    text: &str,
    registry: &Registry,
    env: &HashMap<String, String>,
) -> Result<LoadedConfig, ConfigErrors> {
    let expansion = expand::expand(text, env);
    if !expansion.errors.is_empty() {
        return Err(ConfigErrors(
            expansion
                .errors
                .iter()
                .map(|(at, message)| ConfigError::at(file, *at, message))
                .collect(),
        ));
    }
    let mut options = serde_saphyr::Options::default();
    options.property_map = Some(Rc::new(expansion.vars.clone()));
    options.property_syntax = serde_saphyr::PropertySyntax::DockerCompose;
    let doc = Doc {
        text: &expansion.text,
        options,
    };
    let mut loader = Loader {
        file,
        expansion: &expansion,
        errors: Vec::new(),
        warnings: Vec::new(),
        dead_letter_targets: Vec::new(),
    };
    let skeleton: Skeleton =
        match serde_saphyr::from_str_with_options(&expansion.text, doc.options.clone()) {
            Ok(s) => s,
            Err(e) => {
                let error = loader.yaml_error(&e, (1, 1), None, &[]);
                return Err(ConfigErrors(vec![error]));
            }
        };
    let topology = loader.load(&doc, registry, &skeleton);
    if loader.errors.is_empty() {
        Ok(LoadedConfig {
            topology,
            runtime: skeleton.runtime,
            warnings: loader.warnings,
        })
    } else {
        loader.errors.sort_by_key(|e| (e.line, e.column));
        loader.errors.dedup();
        Err(ConfigErrors(loader.errors))
    }
}

struct Loader<'a> {
    file: &'a str,
    expansion: &'a Expansion,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// Sinks named as some sink's `dead_letter` (used, even if no pipeline lists them).
    dead_letter_targets: Vec<String>,
}

/// A component section's entries with their IDs parsed and types checked.
struct Checked<'s> {
    id: ComponentId,
    key: &'s Spanned<String>,
    node: &'s Spanned<Node>,
}

impl Loader<'_> {
    fn error(&mut self, at: Pos, message: impl Into<String>) {
        let at = self.expansion.original(at);
        self.errors.push(ConfigError::at(self.file, at, message));
    }

    fn load(&mut self, doc: &Doc<'_>, registry: &Registry, skeleton: &Skeleton) -> TopologyConfig {
        let sources = self.check_ids("sources", &skeleton.sources, &registry.sources);
        let processors = self.check_ids("processors", &skeleton.processors, &registry.processors);
        let sinks = self.check_ids("sinks", &skeleton.sinks, &registry.sinks);

        let mut topology = TopologyConfig {
            sources: Vec::new(),
            processors: Vec::new(),
            sinks: Vec::new(),
            pipelines: Vec::new(),
            shutdown_timeout: skeleton.runtime.shutdown_timeout,
            require_healthy: false,
            fingerprints: std::collections::HashMap::new(),
        };
        for (section, checked) in [
            ("sources", &sources),
            ("processors", &processors),
            ("sinks", &sinks),
        ] {
            for c in checked {
                if let Some(fingerprint) = fingerprint(doc, section, &c.key.value) {
                    topology.fingerprints.insert(c.id.clone(), fingerprint);
                }
            }
        }
        for c in &sources {
            let parse = registry.sources[c.id.kind()];
            if let Some(config) = self.component(doc, c, parse, &[]) {
                self.validation(c, &config.validate());
                if let Some(target) = config.dead_letter() {
                    self.source_dead_letter(c, target, &sinks);
                }
                topology.sources.push((c.id.clone(), config));
            }
        }
        for c in &processors {
            let parse = registry.processors[c.id.kind()];
            if let Some(config) = self.component(doc, c, parse, &[]) {
                self.validation(c, &config.validate());
                topology.processors.push((c.id.clone(), config));
            }
        }
        for c in &sinks {
            let parse = registry.sinks[c.id.kind()];
            let config = self.component(doc, c, parse, SINK_ENVELOPE_KEYS);
            let envelope: Result<SinkEnvelope, _> = navigate::component(
                doc.text,
                doc.options.clone(),
                "sinks",
                c.key.value.as_str(),
                KeyFilter::Only(SINK_ENVELOPE_KEYS),
            );
            let envelope = envelope
                .map_err(|e| {
                    let error = self.yaml_error(&e, pos(c.key), Some(c.node), &[]);
                    self.errors.push(error);
                })
                .ok();
            if let Some(envelope) = &envelope {
                for problem in envelope.buffer.problems("buffer") {
                    self.error(locate(c.node, &problem.field), problem.message);
                }
            }
            let dead_letter = envelope
                .as_ref()
                .and_then(|e| e.dead_letter.as_ref())
                .and_then(|target| self.dead_letter(c, target, &sinks));
            if let (Some(config), Some(envelope)) = (config, envelope) {
                self.validation(c, &config.validate());
                topology.sinks.push(SinkEntry {
                    id: c.id.clone(),
                    buffer: envelope.buffer,
                    config,
                    dead_letter,
                });
            }
        }
        topology.pipelines = self.pipelines(&skeleton.pipelines, &sources, &processors, &sinks);
        topology
    }

    /// Checks a sink's `dead_letter` target: a defined sink other than itself.
    fn dead_letter(
        &mut self,
        c: &Checked<'_>,
        target: &Spanned<String>,
        sinks: &[Checked<'_>],
    ) -> Option<ComponentId> {
        if target.value == c.id.as_str() {
            self.error(
                pos(target),
                format!("{}: a sink cannot be its own dead_letter", c.id),
            );
            return None;
        }
        self.dead_letter_target(c, &target.value, pos(target), sinks)
    }

    /// Checks a source's `dead_letter`: a sink defined under `sinks:`.
    fn source_dead_letter(&mut self, c: &Checked<'_>, target: &str, sinks: &[Checked<'_>]) {
        self.dead_letter_target(c, target, locate(c.node, "dead_letter"), sinks);
    }

    /// The sink `target` names (recorded as a dead-letter target), or an error at `at` with the
    /// closest sink name as a hint.
    fn dead_letter_target(
        &mut self,
        c: &Checked<'_>,
        target: &str,
        at: Pos,
        sinks: &[Checked<'_>],
    ) -> Option<ComponentId> {
        let Some(found) = sinks.iter().find(|s| s.id.as_str() == target) else {
            let hint = suggest::hint(target, sinks.iter().map(|s| s.id.as_str()));
            self.error(
                at,
                format!(
                    "{}: dead_letter `{target}` is not a sink defined under `sinks:`{hint}",
                    c.id
                ),
            );
            return None;
        };
        self.dead_letter_targets.push(found.id.to_string());
        Some(found.id.clone())
    }

    /// Parses IDs and checks their types are registered.
    fn check_ids<'s, P>(
        &mut self,
        section: &str,
        entries: &'s Entries<Spanned<Node>>,
        known: &std::collections::BTreeMap<&'static str, P>,
    ) -> Vec<Checked<'s>> {
        let mut checked = Vec::new();
        for (key, node) in &entries.0 {
            match ComponentId::parse(&key.value) {
                Err(message) => self.error(pos(key), message),
                Ok(id) if !known.contains_key(id.kind()) => {
                    let hint = suggest::hint(id.kind(), known.keys().copied());
                    let list = known.keys().copied().collect::<Vec<_>>().join(", ");
                    self.error(
                        pos(key),
                        format!(
                            "unknown {} type `{}`{hint}; known types: {list}",
                            singular(section),
                            id.kind()
                        ),
                    );
                }
                Ok(id) => checked.push(Checked { id, key, node }),
            }
        }
        checked
    }

    fn component<C: ?Sized>(
        &mut self,
        doc: &Doc<'_>,
        c: &Checked<'_>,
        parse: fn(&Doc<'_>, &str) -> Result<Box<C>, serde_saphyr::Error>,
        extra_fields: &[&str],
    ) -> Option<Box<C>> {
        match parse(doc, &c.key.value) {
            Ok(config) => Some(config),
            Err(e) => {
                let error = self.yaml_error(&e, pos(c.key), Some(c.node), extra_fields);
                self.errors.push(error);
                None
            }
        }
    }

    fn validation(&mut self, c: &Checked<'_>, problems: &[ValidationError]) {
        for p in problems {
            let at = if p.field.is_empty() {
                pos(c.key)
            } else {
                locate(c.node, &p.field)
            };
            self.error(at, format!("{}: {p}", c.id));
        }
    }

    fn pipelines(
        &mut self,
        pipelines: &Entries<Spanned<document::PipelineSpec>>,
        sources: &[Checked<'_>],
        processors: &[Checked<'_>],
        sinks: &[Checked<'_>],
    ) -> Vec<PipelineEntry> {
        let mut used: HashSet<(&str, String)> = HashSet::new();
        let mut entries = Vec::new();
        if pipelines.0.is_empty() {
            self.error(
                (1, 1),
                "no pipelines: add a `pipelines:` section connecting sources to sinks",
            );
        }
        for (name, spec) in &pipelines.0 {
            let spec_value = &spec.value;
            let mut entry = PipelineEntry {
                name: name.value.clone(),
                sources: Vec::new(),
                processors: Vec::new(),
                sinks: Vec::new(),
            };
            for (kind, refs, defined, out) in [
                ("source", &spec_value.sources, sources, &mut entry.sources),
                (
                    "processor",
                    &spec_value.processors,
                    processors,
                    &mut entry.processors,
                ),
                ("sink", &spec_value.sinks, sinks, &mut entry.sinks),
            ] {
                for reference in refs {
                    let Some(found) = defined.iter().find(|c| c.id.as_str() == reference.value)
                    else {
                        let hint =
                            suggest::hint(&reference.value, defined.iter().map(|c| c.id.as_str()));
                        self.error(
                            pos(reference),
                            format!(
                                "pipeline `{}` uses {kind} `{}`, which is not defined under `{kind}s:`{hint}",
                                name.value, reference.value
                            ),
                        );
                        continue;
                    };
                    if out.contains(&found.id) {
                        self.error(
                            pos(reference),
                            format!(
                                "pipeline `{}` lists {kind} `{}` twice",
                                name.value, reference.value
                            ),
                        );
                        continue;
                    }
                    used.insert((kind, found.id.to_string()));
                    out.push(found.id.clone());
                }
            }
            if spec_value.sources.is_empty() {
                self.error(
                    pos(name),
                    format!("pipeline `{}` has no source", name.value),
                );
            }
            if spec_value.sinks.is_empty() {
                self.error(pos(name), format!("pipeline `{}` has no sink", name.value));
            }
            entries.push(entry);
        }
        for (kind, defined) in [
            ("source", sources),
            ("processor", processors),
            ("sink", sinks),
        ] {
            for c in defined {
                let dead_letter =
                    kind == "sink" && self.dead_letter_targets.contains(&c.id.to_string());
                if !used.contains(&(kind, c.id.to_string())) && !dead_letter {
                    let at = self.expansion.original(pos(c.key));
                    self.warnings.push(ConfigError::at(
                        self.file,
                        at,
                        format!("{kind} `{}` is defined but no pipeline uses it", c.id),
                    ));
                }
            }
        }
        entries
    }

    /// Turns a parser error into a positioned [`ConfigError`], adding "did you mean".
    fn yaml_error(
        &self,
        error: &serde_saphyr::Error,
        fallback: Pos,
        node: Option<&Spanned<Node>>,
        extra_fields: &[&str],
    ) -> ConfigError {
        let rendered = error.without_snippet().render();
        let mut message = strip_position(&rendered).to_owned();
        let mut at = error
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| (l.line(), l.column()));
        if let Some((word, expected)) = unknown_name(&rendered) {
            // With variables in play the parser redacts the name ("an interpolated field"):
            // recover it from the text at the error's position, or from the keys around.
            let redacted = word.starts_with("an interpolated ");
            let known = || expected.iter().copied().chain(extra_fields.iter().copied());
            let word = match (redacted, at, node) {
                (false, _, _) => Some(word.to_owned()),
                (true, Some(at), _) => word_at(&self.expansion.text, at),
                (true, None, Some(node)) => {
                    find_unknown_key(node, &expected, extra_fields).map(|key| {
                        at = Some(pos(key));
                        key.value.clone()
                    })
                }
                (true, None, None) => None,
            };
            if let Some(word) = word {
                if redacted {
                    let kind = if rendered.starts_with("unknown field") {
                        "field"
                    } else {
                        "variant"
                    };
                    let expected_list = expected.join(", ");
                    message = format!("unknown {kind} `{word}`, expected one of {expected_list}");
                }
                message.push_str(&suggest::hint(&word, known()));
                if at.is_none()
                    && let Some(node) = node
                    && let Some((key, _)) =
                        node.value.children.iter().find(|(k, _)| k.value == word)
                {
                    at = Some(pos(key));
                }
            }
        }
        ConfigError::at(
            self.file,
            self.expansion.original(at.unwrap_or(fallback)),
            message,
        )
    }
}

/// The part of a sink's mapping that the runtime handles for every sink.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkEnvelope {
    /// The sink's queue.
    #[serde(default)]
    buffer: BufferConfig,
    /// The sink that receives the events this one fails for good.
    #[serde(default)]
    dead_letter: Option<Spanned<String>>,
}

/// A fingerprint of one component's configuration as loaded (variables expanded), for a reload
/// to tell what changed. `None` when it cannot be read (the component then counts as changed).
fn fingerprint(doc: &Doc<'_>, section: &str, key: &str) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let value: serde_json::Value = navigate::component(
        doc.text,
        doc.options.clone(),
        section,
        key,
        KeyFilter::Except(&[]),
    )
    .ok()?;
    let mut hasher = std::hash::DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    Some(hasher.finish())
}

fn singular(section: &str) -> &str {
    section.strip_suffix('s').unwrap_or(section)
}

/// `unknown field `x`, expected one of a, b` → (`x`, [a, b]); the same for variants.
fn unknown_name(message: &str) -> Option<(&str, Vec<&str>)> {
    let message = message.split(" at line ").next().unwrap_or(message);
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (word, rest) = rest.split_once('`')?;
    let expected = rest
        .split_once("expected one of ")
        .or_else(|| rest.split_once("expected "))
        .map(|(_, list)| {
            list.split(", ")
                .map(|s| s.trim().trim_matches('`'))
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Some((word, expected))
}

/// The plain word (a key or scalar) starting at `at` in `text`, unless it is a `${…}` reference.
fn word_at(text: &str, (line, column): Pos) -> Option<String> {
    let line = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let rest: String = line
        .chars()
        .skip(usize::try_from(column).ok()?.saturating_sub(1))
        .collect();
    let rest = rest.trim_start_matches(['"', '\'']);
    let word: String = rest
        .chars()
        .take_while(|c| {
            !matches!(c, ':' | ',' | '}' | ']' | '"' | '\'' | '#') && !c.is_whitespace()
        })
        .collect();
    (!word.is_empty() && !word.starts_with('$')).then_some(word)
}

/// The first key in `node` (document order) that is not among `expected` or `extra`, looking
/// first at mappings that also hold expected keys.
fn find_unknown_key<'n>(
    node: &'n Spanned<Node>,
    expected: &[&str],
    extra: &[&str],
) -> Option<&'n Spanned<String>> {
    fn walk<'n>(
        node: &'n Spanned<Node>,
        expected: &[&str],
        extra: &[&str],
        need_sibling: bool,
    ) -> Option<&'n Spanned<String>> {
        let keys = &node.value.children;
        let has_sibling = keys
            .iter()
            .any(|(k, _)| expected.contains(&k.value.as_str()));
        if !keys.is_empty() && (has_sibling || !need_sibling) {
            let unknown = keys.iter().find(|(k, _)| {
                !expected.contains(&k.value.as_str()) && !extra.contains(&k.value.as_str())
            });
            if let Some((k, _)) = unknown {
                return Some(k);
            }
        }
        keys.iter()
            .map(|(_, child)| child)
            .chain(node.value.items.iter())
            .find_map(|child| walk(child, expected, extra, need_sibling))
    }
    walk(node, expected, extra, true).or_else(|| {
        node.value
            .children
            .iter()
            .find_map(|(_, child)| walk(child, expected, extra, false))
    })
}

/// Drops the parser's own ` at line N, column M` suffix: positions are printed in front.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .filter(|&i| message[i..].contains(", column "))
        .map_or(message, |i| &message[..i])
}

#[cfg(test)]
mod tests;
