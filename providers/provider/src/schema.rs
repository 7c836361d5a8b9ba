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
    /// Planned, and passed to create and update, but never written to state: a value
    /// derived from the recorded ones (a rendered document, kept in state by its
    /// digest). The plan does not compare it; another recorded attribute must change
    /// when it does.
    pub unrecorded: bool,
}

impl AttributeSchema {
    pub fn input(name: impl Into<String>) -> Self {
        AttributeSchema {
            name: name.into(),
            computed: false,
            force_new: false,
            sensitive: false,
            unrecorded: false,
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

    /// See [`AttributeSchema::unrecorded`].
    pub fn unrecorded(mut self) -> Self {
        self.unrecorded = true;
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

    /// Names of the attributes never written to state ([`AttributeSchema::unrecorded`]).
    pub fn unrecorded_attributes(&self) -> impl Iterator<Item = &str> {
        self.attributes
            .iter()
            .filter(|a| a.unrecorded)
            .map(|a| a.name.as_str())
    }

    /// The attributes as state records them: without the unrecorded ones.
    pub fn recorded(&self, mut attributes: Attributes) -> Attributes {
        // `shift_remove`: the others keep their order (a provider may render from it).
        for name in self.unrecorded_attributes() {
            attributes.shift_remove(name);
        }
        attributes
    }

    /// Whether two sets of attributes record the same: equal but for the unrecorded
    /// attributes (which a plan has and state never does).
    pub fn records_same(&self, recorded: &Attributes, planned: &Attributes) -> bool {
        let unrecorded: Vec<&str> = self.unrecorded_attributes().collect();
        if unrecorded.is_empty() {
            return recorded == planned;
        }
        let kept = |name: &String| !unrecorded.contains(&name.as_str());
        let count = |attributes: &Attributes| attributes.keys().filter(|n| kept(n)).count();
        count(recorded) == count(planned)
            && recorded
                .iter()
                .filter(|(name, _)| kept(name))
                .all(|(name, value)| planned.get(name) == Some(value))
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
    fn unrecorded_attributes_are_left_out_of_the_record_and_of_the_comparison() {
        let schema = ResourceSchema::new(
            "test_config",
            vec![
                AttributeSchema::input("memory"),
                AttributeSchema::computed("rendered").unrecorded(),
                AttributeSchema::computed("digest"),
            ],
        );
        let planned = attrs(json!({"memory": 1, "rendered": "doc", "digest": "d1"}));
        let recorded = schema.recorded(planned.clone());
        assert_eq!(recorded, attrs(json!({"memory": 1, "digest": "d1"})));
        assert!(schema.records_same(&recorded, &planned));
        // Whatever the unrecorded value, on either side.
        let mut with_other = recorded.clone();
        with_other.insert("rendered".into(), json!("older"));
        assert!(schema.records_same(&with_other, &planned));
        // Any recorded attribute that differs, is missing or is extra is a change.
        let changed = attrs(json!({"memory": 1, "rendered": "doc", "digest": "d2"}));
        assert!(!schema.records_same(&recorded, &changed));
        let missing = attrs(json!({"memory": 1, "rendered": "doc"}));
        assert!(!schema.records_same(&recorded, &missing));
        let extra = attrs(json!({"memory": 1, "digest": "d1", "other": 0}));
        assert!(!schema.records_same(&recorded, &extra));
        // Without unrecorded attributes, it is equality.
        assert!(!schema_records_same_without_unrecorded(&recorded, &planned));
    }

    fn schema_records_same_without_unrecorded(a: &Attributes, b: &Attributes) -> bool {
        schema().records_same(a, b)
    }

    #[test]
    fn lookup_follows_dotted_paths() {
        let a = attrs(json!({"net": {"ips": ["10.0.0.1"]}}));
        assert_eq!(lookup(&a, "net.ips.0"), Some(&json!("10.0.0.1")));
        assert_eq!(lookup(&a, "net.x"), None);
    }
}
