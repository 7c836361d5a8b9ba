//! Resource schemas: which attributes a type has, which are computed, which force
//! replacement, which are secret.

use serde_json::Value;

use crate::PlanResponse;
use crate::value::{Attributes, unknown};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSchema {
    pub kind: String,
    pub attributes: Vec<AttributeSchema>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeSchema {
    pub name: String,
    /// Set by the provider (an ID, a MAC); never from configuration.
    pub computed: bool,
    /// A change cannot be made in place: the resource is replaced.
    pub force_new: bool,
    /// Shown as `(sensitive)`; encrypted in state when a key is configured.
    pub sensitive: bool,
}

impl AttributeSchema {
    pub fn input(name: impl Into<String>) -> Self {
        AttributeSchema {
            name: name.into(),
            computed: false,
            force_new: false,
            sensitive: false,
        }
    }

    pub fn computed(name: impl Into<String>) -> Self {
        AttributeSchema {
            computed: true,
            ..Self::input(name)
        }
    }

    pub fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }

    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
}

impl ResourceSchema {
    pub fn new(kind: impl Into<String>, attributes: Vec<AttributeSchema>) -> Self {
        ResourceSchema {
            kind: kind.into(),
            attributes,
        }
    }

    pub fn attribute(&self, name: &str) -> Option<&AttributeSchema> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Names of sensitive attributes.
    pub fn sensitive_attributes(&self) -> impl Iterator<Item = &str> {
        self.attributes
            .iter()
            .filter(|a| a.sensitive)
            .map(|a| a.name.as_str())
    }

    /// Plan by the schema alone: desired inputs, computed attributes carried over from
    /// prior (or unknown when creating or replacing), replacement when a force-new input
    /// changes.
    ///
    /// It takes the desired attributes, as the provider's request owns them: they become
    /// the planned ones, not copied (a copy of every resource's attributes, per plan).
    pub fn default_plan(&self, prior: Option<&Attributes>, desired: Attributes) -> PlanResponse {
        let mut requires_replace = Vec::new();
        if let Some(prior) = prior {
            for attribute in self
                .attributes
                .iter()
                .filter(|a| a.force_new && !a.computed)
            {
                if prior.get(&attribute.name) != desired.get(&attribute.name) {
                    requires_replace.push(attribute.name.clone());
                }
            }
        }
        // Sized for the computed attributes added below: growing a map rehashes and
        // copies it, once per resource of a 100k-resource plan. The values move.
        let computed = self.attributes.iter().filter(|a| a.computed).count();
        let mut planned = Attributes::with_capacity(desired.len() + computed);
        planned.extend(desired);
        for attribute in self.attributes.iter().filter(|a| a.computed) {
            let carried = prior
                .filter(|_| requires_replace.is_empty())
                .and_then(|p| p.get(&attribute.name))
                .cloned();
            planned.insert(attribute.name.clone(), carried.unwrap_or_else(unknown));
        }
        PlanResponse {
            planned,
            requires_replace,
            create_before_destroy: false,
        }
    }
}

/// Dotted-path lookup into attributes (`network.ipv4`, `disks.0.size`).
pub fn lookup<'a>(attributes: &'a Attributes, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = attributes.get(parts.next()?)?;
    for part in parts {
        value = match value {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::is_unknown;
    use serde_json::json;

    fn schema() -> ResourceSchema {
        ResourceSchema::new(
            "test_vm",
            vec![
                AttributeSchema::input("memory"),
                AttributeSchema::input("node").force_new(),
                AttributeSchema::computed("mac"),
            ],
        )
    }

    fn attrs(value: Value) -> Attributes {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn create_marks_computed_attributes_unknown() {
        let plan = schema().default_plan(None, attrs(json!({"memory": 1, "node": "a"})));
        assert!(is_unknown(&plan.planned["mac"]));
        assert!(plan.requires_replace.is_empty());
    }

    #[test]
    fn in_place_change_keeps_computed_values_and_force_new_change_replaces() {
        let prior = attrs(json!({"memory": 1, "node": "a", "mac": "BC:24"}));
        let plan = schema().default_plan(Some(&prior), attrs(json!({"memory": 2, "node": "a"})));
        assert_eq!(plan.planned["mac"], json!("BC:24"));
        assert!(plan.requires_replace.is_empty());
        let plan = schema().default_plan(Some(&prior), attrs(json!({"memory": 1, "node": "b"})));
        assert_eq!(plan.requires_replace, vec!["node".to_string()]);
        assert!(is_unknown(&plan.planned["mac"]));
    }

    #[test]
    fn lookup_follows_dotted_paths() {
        let a = attrs(json!({"net": {"ips": ["10.0.0.1"]}}));
        assert_eq!(lookup(&a, "net.ips.0"), Some(&json!("10.0.0.1")));
        assert_eq!(lookup(&a, "net.x"), None);
    }
}
