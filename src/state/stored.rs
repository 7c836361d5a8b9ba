//! A record's attributes as a state document holds them: their JSON text (compact, in
//! the order they were recorded), and the digest of their canonical serialization once
//! a comparison needed it. Whoever reads them parses the text again.
//!
//! Parsed, a fleet's recorded attributes take two and a half times the memory of their
//! text: each small object is a hash map with an index, each string its own
//! allocation. A plan reads each record once, when it plans that resource, and a
//! no-op's record is dropped right after; holding the text keeps the state of 10,000
//! resources at about 21 MiB instead of 55 (issue 15). The file is written from the
//! text without building a value, and its checksum hashes the XXH3 of that text
//! ([`super::format`]), so writing never parses a record either.
//!
//! The order is the recorded one: a provider that renders from its prior attributes
//! (the Kubernetes provider's manifests, digests and ConfigMaps) gets them back as
//! they were applied. Two attributes are equal when their canonical serializations
//! are: the same values, in any member order (as the maps they were compare).

use infraflux_provider::Attributes;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::OnceLock;

/// See the module documentation. The text is always that of a JSON object.
#[derive(Clone)]
pub struct StoredAttributes {
    text: Box<str>,
    /// XXH3-128 of the canonical serialization (compact, members sorted at every level),
    /// computed when first asked for: only a comparison of two different texts needs
    /// it, and computing it for every record read was a twentieth of a plan's CPU.
    digest: OnceLock<u128>,
}

const EMPTY: &str = "{}";

impl StoredAttributes {
    /// `attributes` as held.
    pub fn new(attributes: &Attributes) -> Self {
        let text = serde_json::to_string(attributes)
            .unwrap_or_else(|_| unreachable!("a map of JSON values serializes"));
        StoredAttributes {
            text: text.into_boxed_str(),
            digest: OnceLock::new(),
        }
    }

    /// The attributes an object's JSON text (valid, in any spacing) holds: its compact
    /// text made without parsing where that is sure to be `serde_json`'s
    /// ([`super::compact`]), else parsed and written.
    pub fn from_text(text: &str) -> serde_json::Result<Self> {
        let text = match super::compact::compact(text) {
            Some(compact) => compact,
            None => match super::parse::from_slice(text.as_bytes())? {
                Value::Object(attributes) => serde_json::to_string(&attributes)?,
                _ => return Err(serde::de::Error::custom("attributes are not an object")),
            },
        };
        Ok(StoredAttributes {
            // At its size: the allocator shrinks a buffer in place (keeping its block)
            // when it loses less than half, and a state's records live for the plan.
            text: Box::from(text.as_str()),
            digest: OnceLock::new(),
        })
    }

    /// No attributes.
    pub fn empty() -> Self {
        Self::new(&Attributes::new())
    }

    pub fn is_empty(&self) -> bool {
        &*self.text == EMPTY
    }

    /// The attributes, parsed (in their recorded order).
    pub fn parse(&self) -> Attributes {
        match super::parse::from_slice(self.text.as_bytes()) {
            Ok(Value::Object(attributes)) => attributes,
            // The text is this type's own serialization of an object.
            _ => unreachable!("stored attributes are the text of an object"),
        }
    }

    /// Only the members named, parsed; the others are skipped over unbuilt.
    pub fn only(&self, names: &[&str]) -> Attributes {
        let mut deserializer = serde_json::Deserializer::from_str(&self.text);
        let mut only = Only {
            names,
            found: Attributes::with_capacity(names.len()),
            all_found: false,
        };
        match deserializer.deserialize_map(&mut only) {
            Ok(()) => only.found,
            // Stopped once every name was found: the text is this type's own
            // serialization of a map, so no name comes twice.
            Err(_) if only.all_found => only.found,
            Err(_) => unreachable!("stored attributes are the text of an object"),
        }
    }

    /// The member `name`, parsed.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.only(&[name]).remove(name)
    }

    /// Change the attributes: parsed, changed by `change`, held again.
    pub fn edit<R>(&mut self, change: impl FnOnce(&mut Attributes) -> R) -> R {
        let mut attributes = self.parse();
        let result = change(&mut attributes);
        *self = Self::new(&attributes);
        result
    }

    /// XXH3-128 of the canonical serialization, which equality compares (computed on
    /// the first call: the text is parsed for it).
    pub fn digest(&self) -> u128 {
        *self
            .digest
            .get_or_init(|| super::format::canonical_object_hash(&self.parse()))
    }

    /// The compact text, in recorded order.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the text holds `needle`: a cheap test before parsing.
    pub fn mentions(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }
}

/// The same values, in any member order. The same text is the same values.
impl PartialEq for StoredAttributes {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text || self.digest() == other.digest()
    }
}

impl Eq for StoredAttributes {}

impl Default for StoredAttributes {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Attributes> for StoredAttributes {
    fn from(attributes: Attributes) -> Self {
        Self::new(&attributes)
    }
}

impl From<&Attributes> for StoredAttributes {
    fn from(attributes: &Attributes) -> Self {
        Self::new(attributes)
    }
}

impl std::fmt::Debug for StoredAttributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.parse().fmt(f)
    }
}

/// Written as the object it is (pretty in the state file), straight from the text.
impl Serialize for StoredAttributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut deserializer = serde_json::Deserializer::from_str(&self.text);
        serde_transcode::Transcoder::new(&mut deserializer).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredAttributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Attributes::deserialize(deserializer).map(|attributes| Self::new(&attributes))
    }
}

/// Builds a map of the named members only, and stops reading once it has them all
/// (a machine config's few identity members come before its rendered config).
struct Only<'a> {
    names: &'a [&'a str],
    found: Attributes,
    /// Set when the read stopped early, with an error to stop it.
    all_found: bool,
}

impl<'de> Visitor<'de> for &mut Only<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        while let Some(wanted) = access.next_key_seed(Named(self.names))? {
            match wanted {
                Some(name) => {
                    self.found
                        .insert(name.to_string(), access.next_value::<Value>()?);
                    if self.found.len() == self.names.len() {
                        self.all_found = true;
                        return Err(serde::de::Error::custom("every name found"));
                    }
                }
                None => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A member's key: which of the names it is, if any (read without allocating).
struct Named<'a>(&'a [&'a str]);

impl<'de, 'a> DeserializeSeed<'de> for Named<'a> {
    type Value = Option<&'a str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for Named<'a> {
    type Value = Option<&'a str>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|name| *name == key))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attributes(value: Value) -> Attributes {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn held_in_recorded_order_and_equal_in_any_order() {
        let original = attributes(json!({
            "name": "cp-1", "cores": 2, "ratio": 1.5, "tags": ["b", "a"],
            "nested": {"z": null, "a": {"y": true, "b": "q\"uote"}}, "empty": {}
        }));
        let stored = StoredAttributes::new(&original);
        assert_eq!(
            stored.text(),
            r#"{"name":"cp-1","cores":2,"ratio":1.5,"tags":["b","a"],"nested":{"z":null,"a":{"y":true,"b":"q\"uote"}},"empty":{}}"#
        );
        let parsed = stored.parse();
        assert_eq!(parsed, original);
        // Member order too, at every level (maps compare without it).
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            serde_json::to_string(&original).unwrap()
        );
        // The digest is the canonical serialization's: the same in any member order.
        let reordered: Attributes = original.clone().into_iter().rev().collect();
        let again = StoredAttributes::new(&reordered);
        assert_ne!(again.text(), stored.text());
        assert_eq!(again, stored);
        assert_eq!(
            stored.digest(),
            super::super::format::canonical_object_hash(&original)
        );
        assert_ne!(
            StoredAttributes::new(&attributes(json!({"cores": 3}))),
            StoredAttributes::new(&attributes(json!({"cores": 2})))
        );
    }

    #[test]
    fn single_members_are_read_without_the_rest() {
        let stored = StoredAttributes::new(&attributes(json!({
            "vmid": 104, "node": "pve2", "big": {"deep": [1, 2, {"x": "y"}]}, "ipv4": "10.0.0.4/24",
            "esc\"aped": 1
        })));
        assert_eq!(stored.get("vmid"), Some(json!(104)));
        assert_eq!(stored.get("big"), Some(json!({"deep": [1, 2, {"x": "y"}]})));
        assert_eq!(stored.get("esc\"aped"), Some(json!(1)));
        assert_eq!(stored.get("missing"), None);
        assert_eq!(
            Value::Object(stored.only(&["node", "ipv4", "absent"])),
            json!({"ipv4": "10.0.0.4/24", "node": "pve2"})
        );
        // Every name found (the read stops there), in the order of the text; a name
        // given twice is read once.
        assert_eq!(
            serde_json::to_string(&stored.only(&["node", "vmid"])).unwrap(),
            r#"{"vmid":104,"node":"pve2"}"#
        );
        assert_eq!(
            Value::Object(stored.only(&["ipv4", "ipv4"])),
            json!({"ipv4": "10.0.0.4/24"})
        );
        assert!(stored.only(&[]).is_empty());
        assert!(StoredAttributes::empty().is_empty() && !stored.is_empty());
        assert_eq!(StoredAttributes::empty().parse(), Attributes::new());
        let mut edited = stored.clone();
        edited.edit(|a| a.insert("vmid".into(), json!(105)));
        assert_eq!(edited.get("vmid"), Some(json!(105)));
        assert_ne!(edited, stored);
    }

    #[test]
    fn serializes_as_the_object_it_holds_pretty_or_not() {
        let original = attributes(json!({"b": [1, {"d": 2, "c": 3}], "a": "x"}));
        let stored = StoredAttributes::new(&original);
        let wrapped = json!({"attributes": Value::Object(original.clone())});
        #[derive(Serialize, Deserialize)]
        struct Record {
            attributes: StoredAttributes,
        }
        let record = Record {
            attributes: stored.clone(),
        };
        assert_eq!(
            serde_json::to_string_pretty(&record).unwrap(),
            serde_json::to_string_pretty(&wrapped).unwrap()
        );
        assert_eq!(serde_json::to_value(&record).unwrap(), wrapped);
        let back: Record = serde_json::from_value(wrapped).unwrap();
        assert_eq!(back.attributes.text(), stored.text());
        assert!(serde_json::from_value::<Record>(json!({"attributes": [1]})).is_err());
    }
}
