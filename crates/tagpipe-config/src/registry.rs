//! The component registry: which `type` names exist and how to read their config structs.
//!
//! The binary registers every component crate in one place; a new destination is a new crate
//! plus one line there:
//!
//! ```ignore
//! registry.sink::<tagpipe_sink_console::ConsoleSinkConfig>();
//! ```

use std::collections::BTreeMap;

use tagpipe_core::{
    ProcessorComponent, ProcessorConfig, SinkComponent, SinkConfig, SourceComponent, SourceConfig,
};

use crate::navigate::{self, KeyFilter};

/// Keys of a sink's mapping that belong to the runtime (its queue, its dead-letter sink), not to
/// the sink's own struct.
pub(crate) const SINK_ENVELOPE_KEYS: &[&str] = &["buffer", "dead_letter"];

/// The YAML text being read, with its parser options.
pub(crate) struct Doc<'a> {
    pub text: &'a str,
    pub options: serde_saphyr::Options,
}

type Parse<C> = fn(&Doc<'_>, &str) -> Result<Box<C>, serde_saphyr::Error>;

/// Every known source, processor and sink type.
#[derive(Default)]
pub struct Registry {
    pub(crate) sources: BTreeMap<&'static str, Parse<dyn SourceConfig>>,
    pub(crate) processors: BTreeMap<&'static str, Parse<dyn ProcessorConfig>>,
    pub(crate) sinks: BTreeMap<&'static str, Parse<dyn SinkConfig>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a source type.
    pub fn source<C: SourceComponent>(&mut self) -> &mut Self {
        self.sources.insert(C::TYPE, |doc, key| {
            let config: C = navigate::component(
                doc.text,
                doc.options.clone(),
                "sources",
                key,
                KeyFilter::Except(&[]),
            )?;
            Ok(Box::new(config))
        });
        self
    }

    /// Registers a processor type.
    pub fn processor<C: ProcessorComponent>(&mut self) -> &mut Self {
        self.processors.insert(C::TYPE, |doc, key| {
            let config: C = navigate::component(
                doc.text,
                doc.options.clone(),
                "processors",
                key,
                KeyFilter::Except(&[]),
            )?;
            Ok(Box::new(config))
        });
        self
    }

    /// Registers a sink type.
    pub fn sink<C: SinkComponent>(&mut self) -> &mut Self {
        self.sinks.insert(C::TYPE, |doc, key| {
            let config: C = navigate::component(
                doc.text,
                doc.options.clone(),
                "sinks",
                key,
                KeyFilter::Except(SINK_ENVELOPE_KEYS),
            )?;
            Ok(Box::new(config))
        });
        self
    }

    /// Registered type names: `(sources, processors, sinks)`.
    pub fn types(&self) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
        (
            self.sources.keys().copied().collect(),
            self.processors.keys().copied().collect(),
            self.sinks.keys().copied().collect(),
        )
    }
}
