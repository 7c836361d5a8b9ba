//! Deserializing the raw types straight from a [`Node`] tree, without building a
//! `serde_json::Value` first: resolving thousands of (environment, cluster) pairs spent
//! a quarter of its time converting each merged tree to JSON only to read it back.
//!
//! The result is the same as `serde_json::from_value(node.to_json())` (a property test
//! below checks it on arbitrary trees and the bundled example), down to JSON's lack of
//! infinities and NaN: like `to_json`, a non-finite number reads as null.

use serde::de::value::{BorrowedStrDeserializer, Error};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::node::{Entry, Node, Value};

/// Deserialize `T` from a node tree.
pub fn from_node<'a, T: serde::Deserialize<'a>>(node: &'a Node) -> Result<T, Error> {
    T::deserialize(node)
}

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Float(f) if !f.is_finite() => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::String(s) => visitor.visit_borrowed_str(s),
            // Like serde_json, a visitor must take every item (a struct read from a list
            // longer than its fields is an error, not a silent truncation).
            Value::List(items) => {
                let mut access = Items(items.iter());
                let value = visitor.visit_seq(&mut access)?;
                match access.0.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(
                        items.len(),
                        &"fewer elements in array",
                    )),
                }
            }
            Value::Map(map) => {
                let mut access = Entries {
                    entries: map.iter(),
                    value: None,
                };
                let value = visitor.visit_map(&mut access)?;
                match access.entries.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(
                        map.len(),
                        &"fewer elements in map",
                    )),
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            Value::Float(f) if !f.is_finite() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.value {
            // Unit variants are written as their name, e.g. `role: edge`.
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(EnumExpected(name, variants, visitor)),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// Reports "expected enum" for a value that is not a variant name.
struct EnumExpected<V>(&'static str, &'static [&'static str], V);

impl<'de, V: Visitor<'de>> Visitor<'de> for EnumExpected<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "one of {:?} for {}", self.1, self.0)
    }
}

struct Items<'de>(std::slice::Iter<'de, Node>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|item| seed.deserialize(item)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    entries: indexmap::map::Iter<'de, String, Entry>,
    value: Option<&'de Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, entry)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(&entry.node);
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a map value without its key"))?;
        seed.deserialize(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawSettings;
    use crate::config::yaml::parse_file;
    use crate::diag::SourceMap;
    use proptest::prelude::*;

    fn parse(text: &str) -> Node {
        let mut sources = SourceMap::new();
        let id = sources.add("t.yaml", text.to_string());
        parse_file(id, sources.get(id)).unwrap()
    }

    /// Both ways of reading a tree, as comparable JSON (or the fact that both failed).
    fn both(node: &Node) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
        let direct = from_node::<RawSettings>(node)
            .ok()
            .map(|r| serde_json::to_value(r).unwrap());
        let via_json = serde_json::from_value::<RawSettings>(node.to_json())
            .ok()
            .map(|r| serde_json::to_value(r).unwrap());
        (direct, via_json)
    }

    #[test]
    fn reads_the_bundled_example_like_serde_json() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for directory in ["defaults", "templates", "environments", "clusters"] {
            for entry in std::fs::read_dir(root.join(directory)).unwrap() {
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                let mut node = parse(&text);
                // Layer-only keys are not settings.
                if let Some(map) = node.as_map_mut() {
                    map.shift_remove("clusters");
                    map.shift_remove("environments");
                }
                let (direct, via_json) = both(&node);
                assert!(direct.is_some(), "{text}");
                assert_eq!(direct, via_json, "{text}");
            }
        }
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for text in [
            "role: captain\n",
            "role: [edge]\n",
            "sync_wave: 1.5\n",
            "sync_wave: '1'\n",
            "control_plane: {memory: [1]}\n",
            "workers: [{count: 1}]\n",
            "proxmox: {endpiont: x}\n",
            "network: 5\n",
            // A struct read from a list with more items than it has fields (found by
            // the property test below).
            "lifecycle: [.nan, 1]\n",
        ] {
            assert_eq!(both(&parse(text)), (None, None), "{text}");
        }
    }

    fn arbitrary_settings() -> impl Strategy<Value = String> {
        // Keys and values that RawSettings accepts, and some it does not.
        let key = prop::sample::select(
            &[
                "role",
                "template",
                "sync_wave",
                "workers",
                "name",
                "count",
                "memory",
                "cpu",
                "platform",
                "cilium",
                "enabled",
                "values",
                "version",
                "network",
                "vip",
                "dns",
                "talos",
                "patches",
                "lifecycle",
                "prevent_destroy",
                "extra",
            ][..],
        );
        let leaf = prop::sample::select(
            &[
                "1", "-1", "1.5", "true", "null", "edge", "4Gi", "'2'", "[]", "{}", ".nan", "-.inf",
            ][..],
        )
        .prop_map(str::to_string);
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                prop::collection::vec((key.clone(), inner), 0..4).prop_map(|entries| {
                    let mut seen = std::collections::HashSet::new();
                    let body: Vec<String> = entries
                        .into_iter()
                        .filter(|(k, _)| seen.insert(*k))
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect();
                    format!("{{{}}}", body.join(", "))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_on_arbitrary_trees(text in arbitrary_settings()) {
            let node = parse(&text);
            let (direct, via_json) = both(&node);
            prop_assert_eq!(direct, via_json, "{}", text);
        }
    }
}
