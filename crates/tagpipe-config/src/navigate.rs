//! Reading one component's config struct straight from the pipeline file.
//!
//! [`component`] walks the YAML document to `<section>.<id>` and deserialises the component's
//! own struct there, optionally hiding some keys from it (a sink's `buffer:` belongs to the
//! runtime, not to the sink). Reading from the document itself — not from a buffered copy —
//! keeps every error's line and column exact.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};

/// Which keys of the component's mapping its struct gets to see.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyFilter {
    /// All but these.
    Except(&'static [&'static str]),
    /// Only these.
    Only(&'static [&'static str]),
}

impl KeyFilter {
    fn allows(self, key: &str) -> bool {
        match self {
            KeyFilter::Except(hidden) => !hidden.contains(&key),
            KeyFilter::Only(shown) => shown.contains(&key),
        }
    }
}

/// Deserialises the component at `section.key` of the YAML `text`.
pub(crate) fn component<T: DeserializeOwned>(
    text: &str,
    options: serde_saphyr::Options,
    section: &str,
    key: &str,
    filter: KeyFilter,
) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        let found = Find {
            key: section,
            seed: Find {
                key,
                seed: Filtered::<T> {
                    filter,
                    marker: PhantomData,
                },
            },
        }
        .deserialize(de)?;
        found
            .flatten()
            .ok_or_else(|| de::Error::custom(format!("`{section}.{key}` not found")))
    })
}

/// Finds `key` in a mapping and deserialises its value with `seed`.
struct Find<'k, S> {
    key: &'k str,
    seed: S,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Find<'_, S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Find<'_, S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a mapping containing `{}`", self.key)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seed = Some(self.seed);
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            match seed.take() {
                Some(s) if key == self.key => found = Some(map.next_value_seed(s)?),
                other => {
                    seed = other;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// Deserialises `T` from a mapping, showing it only the keys `filter` allows. An empty value
/// (`console:`) reads as an empty mapping, so all-default components need no `{}`.
struct Filtered<T> {
    filter: KeyFilter,
    marker: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Filtered<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::deserialize(FilteredDeserializer {
            inner: deserializer,
            filter: self.filter,
        })
    }
}

struct FilteredDeserializer<D> {
    inner: D,
    filter: KeyFilter,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for FilteredDeserializer<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(FilteredVisitor {
            inner: visitor,
            filter: self.filter,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct FilteredVisitor<V> {
    inner: V,
    filter: KeyFilter,
}

macro_rules! forward_scalar {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> { self.inner.$method(v) }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for FilteredVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
                    visit_str: &str, visit_string: String, visit_bytes: &[u8]);

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_map(EmptyMap(PhantomData))
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_map(EmptyMap(PhantomData))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(FilteredMap {
            inner: map,
            filter: self.filter,
        })
    }
}

struct FilteredMap<A> {
    inner: A,
    filter: KeyFilter,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FilteredMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.inner.next_key::<String>()? {
            if self.filter.allows(&key) {
                let key = de::value::StringDeserializer::<A::Error>::new(key);
                return seed.deserialize(key).map(Some);
            }
            self.inner.next_value::<IgnoredAny>()?;
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

struct EmptyMap<E>(PhantomData<E>);

impl<'de, E: de::Error> MapAccess<'de> for EmptyMap<E> {
    type Error = E;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, E> {
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, _: S) -> Result<S::Value, E> {
        Err(de::Error::custom("no value in an empty mapping"))
    }
}
