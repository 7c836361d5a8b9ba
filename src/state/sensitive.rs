//! Secret attributes in display: a resource's `sensitive` list names them (a top-level
//! name, or a dotted path into nested objects), and every view of state shows them as
//! [`MASK`].

use infraflux_provider::Attributes;
use serde_json::Value;

use super::ResourceState;

/// What a secret value prints as.
pub const MASK: &str = crate::vocabulary::MASK;

impl ResourceState {
    /// The attributes with every sensitive one replaced by [`MASK`]: the only form of
    /// them that may be printed.
    pub fn masked_attributes(&self) -> Attributes {
        let mut attributes = self.attributes.parse();
        for name in &self.sensitive {
            if let Some(value) = attributes.get_mut(name) {
                *value = Value::String(MASK.to_string());
                continue;
            }
            let mut parts = name.split('.');
            let first = parts.next().unwrap_or_default();
            let mut current = attributes.get_mut(first);
            for part in parts {
                current = current
                    .and_then(Value::as_object_mut)
                    .and_then(|object| object.get_mut(part));
            }
            if let Some(value) = current {
                *value = Value::String(MASK.to_string());
            }
        }
        attributes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ResourceStatus;
    use serde_json::json;

    #[test]
    fn sensitive_attributes_are_masked_at_any_depth() {
        let Value::Object(attributes) = json!({
            "name": "cp-1",
            "password": "hunter2",
            "tls": {"key": "PRIVATE", "cert": "PUBLIC"},
            "a.b": "dotted-name-secret",
        }) else {
            unreachable!()
        };
        let resource = ResourceState {
            kind: "talos_config".into(),
            provider: "talos".into(),
            id: None,
            attributes: attributes.into(),
            sensitive: vec![
                "password".into(),
                "tls.key".into(),
                "a.b".into(),
                "missing.x".into(),
            ],
            dependencies: vec![],
            status: ResourceStatus::Ready,
        };
        let masked = Value::Object(resource.masked_attributes());
        assert_eq!(
            masked,
            json!({
                "name": "cp-1",
                "password": MASK,
                "tls": {"key": MASK, "cert": "PUBLIC"},
                "a.b": MASK,
            })
        );
        let text = masked.to_string();
        for secret in ["hunter2", "PRIVATE", "dotted-name-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
