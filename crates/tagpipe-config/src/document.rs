//! The shape of a pipeline file, read with positions.
//!
//! The file is read twice over: first its skeleton (sections, component IDs, pipelines) with
//! every node's position, then each component's own config struct straight from the same YAML
//! text (see [`crate::navigate`]), so that errors inside a component keep exact positions.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A position: 1-based line and column.
pub(crate) type Pos = (u64, u64);

pub(crate) fn pos<T>(spanned: &Spanned<T>) -> Pos {
    (spanned.referenced.line(), spanned.referenced.column())
}

/// A mapping read in file order (YAML duplicate keys are already rejected by the parser).
#[derive(Debug)]
pub(crate) struct Entries<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of IDs to settings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_any(EntriesVisitor(PhantomData))
    }
}

/// The positions of a YAML subtree: each mapping key and each sequence item, recursively.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub children: Vec<(Spanned<String>, Spanned<Node>)>,
    pub items: Vec<Spanned<Node>>,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        macro_rules! scalar {
            ($($method:ident: $ty:ty),*) => {$(
                fn $method<E: de::Error>(self, _: $ty) -> Result<Node, E> { Ok(Node::default()) }
            )*};
        }
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
                    visit_str: &str, visit_bytes: &[u8], visit_i128: i128, visit_u128: u128);
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut node = Node::default();
                while let Some(item) = seq.next_element()? {
                    node.items.push(item);
                }
                Ok(node)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut node = Node::default();
                while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
                    let key = Spanned {
                        value: key.value.0,
                        referenced: key.referenced,
                        defined: key.defined,
                    };
                    node.children.push((key, map.next_value()?));
                }
                Ok(node)
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// Where a dotted path (`batch.max_events`, `items.0`) points inside `node`: the deepest key
/// found, or `node` itself.
pub(crate) fn locate(node: &Spanned<Node>, path: &str) -> Pos {
    let mut current = node;
    let mut found = pos(node);
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        if let Some((key, child)) = current
            .value
            .children
            .iter()
            .find(|(k, _)| k.value == segment)
        {
            found = pos(key);
            current = child;
        } else if let Some(item) = segment
            .parse::<usize>()
            .ok()
            .and_then(|i| current.value.items.get(i))
        {
            found = pos(item);
            current = item;
        } else {
            break;
        }
    }
    found
}

/// The top level of a pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Skeleton {
    #[serde(default)]
    pub sources: Entries<Spanned<Node>>,
    #[serde(default)]
    pub processors: Entries<Spanned<Node>>,
    #[serde(default)]
    pub sinks: Entries<Spanned<Node>>,
    #[serde(default)]
    pub pipelines: Entries<Spanned<PipelineSpec>>,
    #[serde(default)]
    pub runtime: RuntimeSettings,
}

/// A pipeline: the component IDs it connects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineSpec {
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub processors: Vec<Spanned<String>>,
    #[serde(default)]
    pub sinks: Vec<Spanned<String>>,
}

/// Process-wide settings (`runtime:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// How long a graceful shutdown may take to drain the sinks' queues before undelivered
    /// events are given up (and reported). Default: `30s`.
    #[serde(
        default = "default_shutdown_timeout",
        deserialize_with = "tagpipe_core::duration::deserialize"
    )]
    pub shutdown_timeout: Duration,
    /// Also serve the Prometheus metrics on a listener of their own, e.g. `0.0.0.0:9598`, for
    /// when the scraper must not reach the event endpoints. Default: none (metrics are served
    /// on the HTTP source's listener, see its `metrics`).
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
    /// The path of the metrics on `metrics_address`. Default: `/metrics`.
    #[serde(
        default = "default_metrics_path",
        deserialize_with = "deserialize_url_path"
    )]
    pub metrics_path: String,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            shutdown_timeout: default_shutdown_timeout(),
            metrics_address: None,
            metrics_path: default_metrics_path(),
        }
    }
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

/// A URL path: starts with `/`.
fn deserialize_url_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let path = String::deserialize(deserializer)?;
    if path.starts_with('/') {
        Ok(path)
    } else {
        Err(de::Error::custom(format!(
            "`{path}` is not a URL path: it must start with `/`"
        )))
    }
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
