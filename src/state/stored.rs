//! A record's attributes as a state document holds them: their canonical JSON text
//! (compact, object members sorted by key at every level, as the state checksum hashes
//! them), parsed again by whoever reads them.
//!
//! Parsed, a fleet's recorded attributes take two and a half times the memory of their
//! text: each small object is a hash map with an index, each string its own
//! allocation. A plan reads each record once, when it plans that resource, and a
//! no-op's record is dropped right after; holding the text keeps the state of 10,000
//! resources at about 21 MiB instead of 55 (issue 15). The checksum hashes the text as
//! it is, and the file is written from it without building a value.
//!
//! The members come back sorted by name, as `infraflux state show` lists them.

use infraflux_provider::Attributes;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// See the module documentation. Always the canonical text of a JSON object.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAttributes(Box<str>);

const EMPTY: &str = "{}";

impl StoredAttributes {
    /// `attributes` as held.
    pub fn new(attributes: &Attributes) -> Self {
        let mut text = Vec::new();
        super::format::write_canonical_object(attributes, &mut text);
        // serde_json writes UTF-8, and the rest is ASCII punctuation.
        let text = String::from_utf8(text)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        StoredAttributes(text.into_boxed_str())
    }

    /// No attributes.
    pub fn empty() -> Self {
        StoredAttributes(EMPTY.into())
    }

    pub fn is_empty(&self) -> bool {
        &*self.0 == EMPTY
    }

    /// The attributes, parsed (members in name order).
    pub fn parse(&self) -> Attributes {
        match super::parse::from_slice(self.0.as_bytes()) {
            Ok(Value::Object(attributes)) => attributes,
            // The text is this type's own serialization of an object.
            _ => unreachable!("stored attributes are the canonical text of an object"),
        }
    }

    /// Only the members named, parsed; the others are skipped over unbuilt.
    pub fn only(&self, names: &[&str]) -> Attributes {
        let mut deserializer = serde_json::Deserializer::from_str(&self.0);
        match deserializer.deserialize_map(Only(names)) {
            Ok(attributes) => attributes,
            Err(_) => unreachable!("stored attributes are the canonical text of an object"),
        }
    }

    /// Change the attributes: parsed, changed by `change`, held again.
    pub fn edit<R>(&mut self, change: impl FnOnce(&mut Attributes) -> R) -> R {
        let mut attributes = self.parse();
        let result = change(&mut attributes);
        *self = Self::new(&attributes);
        result
    }

    /// The member `name`, parsed.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.only(&[name]).remove(name)
    }

    /// The canonical text (what the checksum hashes).
    pub fn canonical(&self) -> &str {
        &self.0
    }

    /// Whether the text holds `needle`: a cheap test before parsing, e.g. for a marker
    /// in its canonical form.
    pub fn mentions(&self, needle: &str) -> bool {
        self.0.contains(needle)
    }
}

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
        let mut deserializer = serde_json::Deserializer::from_str(&self.0);
        serde_transcode::Transcoder::new(&mut deserializer).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredAttributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Attributes::deserialize(deserializer).map(|attributes| Self::new(&attributes))
    }
}

/// Builds a map of the named members only.
struct Only<'a>(&'a [&'a str]);

impl<'de> Visitor<'de> for Only<'_> {
    type Value = Attributes;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Attributes, A::Error> {
        let mut found = Attributes::with_capacity(self.0.len());
        while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.0.contains(&&*key) {
                found.insert(key.into_owned(), access.next_value::<Value>()?);
            } else {
                access.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
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
    fn the_text_is_canonical_and_parses_back_to_the_same_attributes() {
        let original = attributes(json!({
            "name": "cp-1", "cores": 2, "ratio": 1.5, "tags": ["b", "a"],
            "nested": {"z": null, "a": {"y": true, "b": "q\"uote"}}, "empty": {}
        }));
        let stored = StoredAttributes::new(&original);
        assert_eq!(
            stored.canonical(),
            r#"{"cores":2,"empty":{},"name":"cp-1","nested":{"a":{"b":"q\"uote","y":true},"z":null},"ratio":1.5,"tags":["b","a"]}"#
        );
        assert_eq!(stored.parse(), original);
        // Member order does not matter: the same attributes are the same text.
        let reordered: Attributes = original.clone().into_iter().rev().collect();
        assert_eq!(StoredAttributes::new(&reordered), stored);
        assert_ne!(
            StoredAttributes::new(&attributes(json!({"cores": 3}))),
            StoredAttributes::new(&attributes(json!({"cores": 2})))
        );
    }

    #[test]
    fn single_members_are_read_without_the_rest() {
        let stored = StoredAttributes::new(&attributes(json!({
            "vmid": 104, "node": "pve2", "big": {"deep": [1, 2, {"x": "y"}]}, "ipv4": "10.0.0.4/24"
        })));
        assert_eq!(stored.get("vmid"), Some(json!(104)));
        assert_eq!(stored.get("big"), Some(json!({"deep": [1, 2, {"x": "y"}]})));
        assert_eq!(stored.get("missing"), None);
        assert_eq!(
            Value::Object(stored.only(&["node", "ipv4", "absent"])),
            json!({"ipv4": "10.0.0.4/24", "node": "pve2"})
        );
        assert!(StoredAttributes::empty().is_empty() && !stored.is_empty());
        assert_eq!(StoredAttributes::empty().parse(), Attributes::new());
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
        let pretty = serde_json::to_string_pretty(&record).unwrap();
        let sorted: Value = serde_json::from_str(stored.canonical()).unwrap();
        assert_eq!(
            pretty,
            serde_json::to_string_pretty(&json!({"attributes": sorted})).unwrap()
        );
        assert_eq!(serde_json::to_value(&record).unwrap(), wrapped);
        let back: Record = serde_json::from_value(wrapped).unwrap();
        assert_eq!(back.attributes, stored);
        assert!(serde_json::from_value::<Record>(json!({"attributes": [1]})).is_err());
    }
}
