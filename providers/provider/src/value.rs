//! Attribute values: JSON, plus two markers the engine understands.
//!
//! - unknown: `{"$infraflux": "unknown"}` — known only after apply;
//! - reference: `{"$infraflux": "ref", "address": "...", "attribute": "..."}` — the value
//!   of another resource's attribute (with [`OUTPUTS`], every attribute its provider
//!   computes, as one object); resolved by the engine, never seen by providers.

use serde_json::{Map, Value, json};

pub type Attributes = Map<String, Value>;

const MARKER: &str = "$infraflux";

/// A value known only after apply.
pub fn unknown() -> Value {
    json!({ MARKER: "unknown" })
}

pub fn is_unknown(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.get(MARKER).and_then(Value::as_str) == Some("unknown"))
}

/// Whether a value is or contains an unknown anywhere.
pub fn contains_unknown(value: &Value) -> bool {
    match value {
        _ if is_unknown(value) => true,
        Value::Array(items) => items.iter().any(contains_unknown),
        Value::Object(map) => map.values().any(contains_unknown),
        _ => false,
    }
}

/// A reference to `attribute` (a dotted path, or [`OUTPUTS`]) of the resource at
/// `address`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub address: String,
    pub attribute: String,
}

/// The `attribute` of a reference to a resource's outputs: every attribute its schema
/// says the provider computes, as one object (the inputs, which the configuration gave,
/// are left out). One marker where a value is what a resource made: a machine config's
/// secrets bundle was sixteen references, a third of a fleet plan's desired resources.
pub const OUTPUTS: &str = "*";

pub fn reference(address: impl Into<String>, attribute: impl Into<String>) -> Value {
    json!({ MARKER: "ref", "address": address.into(), "attribute": attribute.into() })
}

pub fn parse_reference(value: &Value) -> Option<Reference> {
    reference_target(value).map(|(address, attribute)| Reference {
        address: address.to_string(),
        attribute: attribute.to_string(),
    })
}

/// A reference's address and attribute, borrowed: the engine looks for references in
/// every value of every resource (most objects are not one, and are told so by their
/// size before any key is hashed).
pub fn reference_target(value: &Value) -> Option<(&str, &str)> {
    let object = value.as_object()?;
    if object.len() != 3 || object.get(MARKER).and_then(Value::as_str) != Some("ref") {
        return None;
    }
    Some((
        object.get("address")?.as_str()?,
        object.get("attribute")?.as_str()?,
    ))
}

/// Whether `value` is a reference marker.
pub fn is_reference(value: &Value) -> bool {
    reference_target(value).is_some()
}

/// A value as providers see it before apply (in `validate`): every reference replaced by
/// an unknown, since its target may not exist yet.
pub fn references_as_unknown(value: &Value) -> Value {
    if is_reference(value) {
        return unknown();
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(references_as_unknown).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), references_as_unknown(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_recognised_only_in_their_exact_shape() {
        assert!(is_unknown(&unknown()));
        assert!(!is_unknown(&json!({"$infraflux": "unknown", "x": 1})));
        assert!(contains_unknown(&json!({"a": [1, unknown()]})));
        assert!(!contains_unknown(&json!({"a": [1, "unknown"]})));
        let r = reference("dev/workload/proxmox_vm.cp-1", "ipv4");
        assert_eq!(
            parse_reference(&r),
            Some(Reference {
                address: "dev/workload/proxmox_vm.cp-1".into(),
                attribute: "ipv4".into()
            })
        );
        assert_eq!(
            parse_reference(&json!({"address": "x", "attribute": "y"})),
            None
        );
        // Only the exact shape: a user's map that happens to carry the marker key and
        // more is data, not a reference.
        let mut longer = r.clone();
        longer["note"] = json!("x");
        assert_eq!(parse_reference(&longer), None);
        assert!(!is_reference(&longer));
        assert_eq!(
            reference_target(&r),
            Some(("dev/workload/proxmox_vm.cp-1", "ipv4"))
        );
    }
}
