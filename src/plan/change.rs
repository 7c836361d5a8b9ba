//! What a plan is made of: [`Action`]s, [`Change`]s, [`Drift`], attribute diffs.

use std::fmt;

use infraflux_provider::{Attributes, is_unknown};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::ResourceState;
use crate::vocabulary::ResourceAddr;

/// What happens to one resource. A closed set, as OpenTofu's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    /// Replace: delete the old object, then create the new one.
    DeleteThenCreate,
    /// Replace: create the new object, then delete the old one.
    CreateThenDelete,
    Delete,
    /// Record what refresh found (drift) in state; no provider call.
    Read,
}

impl Action {
    /// The provider operation this action starts with, for concurrency limits and
    /// rollouts (`None`: no provider call).
    pub fn operation(self) -> Option<infraflux_provider::Operation> {
        use infraflux_provider::Operation;
        match self {
            Action::Create | Action::DeleteThenCreate | Action::CreateThenDelete => {
                Some(Operation::Create)
            }
            Action::Update => Some(Operation::Update),
            Action::Delete => Some(Operation::Delete),
            Action::NoOp | Action::Read => None,
        }
    }

    /// The symbol in plan output, as Terraform's.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::DeleteThenCreate => "-/+",
            Action::CreateThenDelete => "+/-",
            Action::Delete => "-",
            Action::Read => "<=",
        }
    }

    pub fn is_replace(self) -> bool {
        matches!(self, Action::DeleteThenCreate | Action::CreateThenDelete)
    }

    /// Whether the action deletes an object (`lifecycle.prevent_destroy` refuses these).
    pub fn deletes(self) -> bool {
        self.is_replace() || self == Action::Delete
    }

    /// Whether the action creates an object.
    pub fn creates(self) -> bool {
        self.is_replace() || self == Action::Create
    }

    /// `will be created`, for the header of a change.
    pub fn describe(self) -> &'static str {
        match self {
            Action::NoOp => "is unchanged",
            Action::Create => "will be created",
            Action::Update => "will be updated in-place",
            Action::DeleteThenCreate | Action::CreateThenDelete => "must be replaced",
            Action::Delete => "will be destroyed",
            Action::Read => "will be read (changed outside InfraFlux)",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::NoOp => "no-op",
            Action::Create => "create",
            Action::Update => "update",
            Action::DeleteThenCreate => "delete-then-create",
            Action::CreateThenDelete => "create-then-delete",
            Action::Delete => "delete",
            Action::Read => "read",
        })
    }
}

/// Why an action was chosen, when the action alone does not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A create or update failed part-way earlier.
    Tainted,
    /// `--replace`.
    ReplaceRequested,
    /// An input that cannot change in place changed.
    RequiresReplace,
    /// An earlier delete was interrupted and the object still exists.
    InterruptedDelete,
    /// The configuration no longer names it.
    NotInConfiguration,
    /// `infraflux destroy`.
    Destroy,
    /// Deleted outside InfraFlux; created again.
    DeletedOutside,
    /// What it runs on is replaced (`replace_with`): a machine config whose VM is
    /// replaced leaves the cluster before the VM goes and is applied to the new one.
    HostReplaced,
}

impl Reason {
    /// The line under the change header.
    pub fn explain(&self, address: &ResourceAddr) -> String {
        match self {
            Reason::Tainted => format!(
                "(because {address} is tainted: an earlier create or update failed part-way)"
            ),
            Reason::ReplaceRequested => "(because of --replace)".to_string(),
            Reason::RequiresReplace => {
                "(because an attribute that forces replacement changed)".to_string()
            }
            Reason::InterruptedDelete => "(because an earlier delete was interrupted)".to_string(),
            Reason::NotInConfiguration => {
                format!("(because {address} is not in the configuration)")
            }
            Reason::Destroy => "(because of destroy)".to_string(),
            Reason::DeletedOutside => "(because it was deleted outside InfraFlux)".to_string(),
            Reason::HostReplaced => {
                "(because what it runs on is replaced: it leaves first, and is created on the new one)"
                    .to_string()
            }
        }
    }
}

/// The change of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: ResourceAddr,
    pub provider: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The provider's ID of the existing object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Current attributes (after refresh); `None` when creating, and for a no-op,
    /// whose are its `after` (read both through [`Change::before_attributes`]).
    pub before: Option<Attributes>,
    /// Planned attributes (unknowns marked); `None` when deleting, and for a no-op of a
    /// plan made only to be shown (`PlanOptions::complete`: they are the recorded ones).
    pub after: Option<Attributes>,
    /// The configuration's attributes with references unresolved: apply resolves them
    /// again with the values known by then and asks the provider to plan once more.
    /// `None` for a no-op (never applied), a delete, and in a plan only shown
    /// (`PlanOptions::complete` off: never applied either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Attributes>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires_replace: Vec<String>,
    /// Top-level attribute names whose values are secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Changes that must finish before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wait_for: Vec<ResourceAddr>,
    /// The configuration's dependencies, recorded in state after apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<ResourceAddr>,
    #[serde(default)]
    pub prevent_destroy: bool,
    /// For `Read`: the refreshed record to store (`None`: gone). Boxed: only a read
    /// has one, and a fleet's plan holds a change per resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<Box<ResourceState>>,
}

impl Change {
    /// The attributes before the change. A no-op planned here keeps one copy of its
    /// attributes, in `after`: its `before` is equal by definition, and a second copy of
    /// every recorded attribute (rendered machine configs included) was a third of the
    /// memory of a steady plan.
    pub fn before_attributes(&self) -> Option<&Attributes> {
        match (&self.before, self.action) {
            (None, Action::NoOp) => self.after.as_ref(),
            (before, _) => before.as_ref(),
        }
    }

    pub fn attribute_diffs(&self) -> Vec<AttributeDiff> {
        diff(self.before_attributes(), self.after.as_ref())
    }

    pub fn is_sensitive(&self, path: &str) -> bool {
        let root = path.split('.').next().unwrap_or(path);
        self.sensitive.iter().any(|s| s == root)
    }
}

/// A resource a partial plan leaves out, and so its apply: its provider could not read
/// it (an unreachable endpoint or node), or it waits for one that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unknown {
    pub address: ResourceAddr,
    /// `unreachable: <the provider's error>`, or `waits for <address>, which is unknown`.
    pub reason: String,
}

/// What refresh found different from state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub address: ResourceAddr,
    pub before: ResourceState,
    /// `None`: the object is gone.
    pub after: Option<ResourceState>,
}

/// One attribute path whose value differs.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDiff {
    /// Dotted path (objects are walked; arrays compare whole).
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Attribute-level differences between two attribute sets, sorted by path. Equal
/// inputs give no differences.
pub fn diff(before: Option<&Attributes>, after: Option<&Attributes>) -> Vec<AttributeDiff> {
    let empty = Attributes::new();
    let mut diffs = Vec::new();
    diff_objects(
        "",
        before.unwrap_or(&empty),
        after.unwrap_or(&empty),
        &mut diffs,
    );
    diffs.sort_by(|a, b| a.path.cmp(&b.path));
    diffs
}

fn is_plain_object(value: &Value) -> bool {
    value.is_object() && !is_unknown(value) && !infraflux_provider::is_reference(value)
}

fn diff_objects(
    prefix: &str,
    before: &Attributes,
    after: &Attributes,
    out: &mut Vec<AttributeDiff>,
) {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (before.get(key), after.get(key)) {
            (Some(b), Some(a)) if a == b => {}
            (Some(Value::Object(b)), Some(Value::Object(a)))
                if is_plain_object(&Value::Object(b.clone()))
                    && is_plain_object(&Value::Object(a.clone())) =>
            {
                diff_objects(&path, b, a, out);
            }
            (b, a) => out.push(AttributeDiff {
                path,
                before: b.cloned(),
                after: a.cloned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn attrs(value: Value) -> Attributes {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn nested_objects_are_walked_and_arrays_compared_whole() {
        let before =
            attrs(json!({"a": 1, "labels": {"x": "1", "y": "2"}, "list": [1, 2], "gone": true}));
        let after =
            attrs(json!({"a": 1, "labels": {"x": "1", "y": "3"}, "list": [1, 3], "new": null}));
        let paths: Vec<(String, Option<Value>, Option<Value>)> = diff(Some(&before), Some(&after))
            .into_iter()
            .map(|d| (d.path, d.before, d.after))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("gone".into(), Some(json!(true)), None),
                ("labels.y".into(), Some(json!("2")), Some(json!("3"))),
                ("list".into(), Some(json!([1, 2])), Some(json!([1, 3]))),
                ("new".into(), None, Some(Value::Null)),
            ]
        );
    }

    #[test]
    fn symbols_follow_terraform() {
        let symbols: Vec<&str> = [
            Action::NoOp,
            Action::Create,
            Action::Update,
            Action::DeleteThenCreate,
            Action::CreateThenDelete,
            Action::Delete,
            Action::Read,
        ]
        .iter()
        .map(|a| a.symbol())
        .collect();
        assert_eq!(symbols, [" ", "+", "~", "-/+", "+/-", "-", "<="]);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn diff_of_a_value_with_itself_is_empty(map in proptest::collection::btree_map("[a-z]{1,5}", json_value(), 0..6)) {
            let attributes: Attributes = map.into_iter().collect();
            prop_assert!(diff(Some(&attributes), Some(&attributes)).is_empty());
        }

        #[test]
        fn diff_is_empty_only_for_equal_values(
            a in proptest::collection::btree_map("[a-c]", json_value(), 0..3),
            b in proptest::collection::btree_map("[a-c]", json_value(), 0..3),
        ) {
            let a: Attributes = a.into_iter().collect();
            let b: Attributes = b.into_iter().collect();
            prop_assert_eq!(diff(Some(&a), Some(&b)).is_empty(), a == b);
        }
    }
}
