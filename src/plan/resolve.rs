//! Reference markers → values. Used at plan time (values from the planned attributes of
//! dependencies, unknown where those are unknown) and again during apply (values from
//! state, by then known).

use std::borrow::Cow;

use infraflux_provider::{
    Attributes, OUTPUTS, Reference, ResourceSchema, lookup, parse_reference, unknown,
};
use serde_json::Value;

use crate::registry::ProviderRegistry;
use crate::state::{ResourceState, StateDocument};
use crate::vocabulary::ResourceAddr;

/// What a reference to `attribute` of a resource resolves to: the value at that dotted
/// path of its `attributes`, or for [`OUTPUTS`] every attribute its `schema` says is
/// computed, as one object (`None` without the schema).
pub(crate) fn referenced_value<'a>(
    attributes: &'a Attributes,
    attribute: &str,
    schema: Option<&ResourceSchema>,
) -> Option<Cow<'a, Value>> {
    if attribute == OUTPUTS {
        let outputs = schema?
            .attributes
            .iter()
            .filter(|a| a.computed)
            .filter_map(|a| Some((a.name.clone(), attributes.get(&a.name)?.clone())))
            .collect();
        return Some(Cow::Owned(Value::Object(outputs)));
    }
    lookup(attributes, attribute).map(Cow::Borrowed)
}

/// A reference resolved against recorded state (apply, `talos render`): the record's
/// value, and whether it is secret; missing when state has no such resource or value.
pub(crate) fn lookup_recorded(
    state: &StateDocument,
    providers: &ProviderRegistry,
    reference: &Reference,
) -> Lookup {
    let Some(record) = reference
        .address
        .parse::<ResourceAddr>()
        .ok()
        .and_then(|address| state.resources.get(&address))
    else {
        return Lookup::Missing;
    };
    let schema = outputs_schema(providers, record, &reference.attribute);
    let schema = schema.as_ref();
    let attributes = recorded_for_reference(state, record, &reference.attribute, schema);
    match referenced_value(&attributes, &reference.attribute, schema) {
        Some(value) => Lookup::Value(
            value.into_owned(),
            referenced_is_sensitive(&record.sensitive, &reference.attribute, schema),
        ),
        None => Lookup::Missing,
    }
}

/// What [`referenced_value`] reads of a recorded resource for a reference to
/// `attribute`, with what the record holds by reference as values
/// (`state::by_reference`): only the members it reads are parsed.
pub(crate) fn recorded_for_reference(
    state: &StateDocument,
    record: &ResourceState,
    attribute: &str,
    schema: Option<&ResourceSchema>,
) -> Attributes {
    let names: Vec<&str> = if attribute == OUTPUTS {
        schema.map_or_else(Vec::new, |schema| {
            schema
                .attributes
                .iter()
                .filter(|a| a.computed)
                .map(|a| a.name.as_str())
                .collect()
        })
    } else {
        vec![attribute.split('.').next().unwrap_or(attribute)]
    };
    state
        .resolve_owned(record.attributes.only(&names))
        .attributes
        .into_owned()
}

/// The schema [`referenced_value`] needs for a reference to `attribute` of a recorded
/// resource: its provider's, for [`OUTPUTS`] only (`None` otherwise).
fn outputs_schema(
    providers: &ProviderRegistry,
    record: &ResourceState,
    attribute: &str,
) -> Option<ResourceSchema> {
    if attribute != OUTPUTS {
        return None;
    }
    providers
        .get(&record.provider)?
        .schemas()
        .into_iter()
        .find(|schema| schema.kind == record.kind)
}

/// Whether what a reference to `attribute` resolves to is secret: its top-level name is
/// among the resource's `sensitive` names or sensitive in its `schema`; for [`OUTPUTS`],
/// any computed attribute is.
pub(crate) fn referenced_is_sensitive(
    sensitive: &[String],
    attribute: &str,
    schema: Option<&ResourceSchema>,
) -> bool {
    let secret = |name: &str| {
        sensitive.iter().any(|s| s == name)
            || schema
                .and_then(|s| s.attribute(name))
                .is_some_and(|a| a.sensitive)
    };
    if attribute == OUTPUTS {
        return schema.is_some_and(|s| s.attributes.iter().any(|a| a.computed && secret(&a.name)));
    }
    secret(attribute.split('.').next().unwrap_or(attribute))
}

/// What a reference's target has for the referenced attribute.
pub(crate) enum Lookup {
    /// The value, and whether it is secret.
    Value(Value, bool),
    /// Not known yet (the target is created or replaced by this plan).
    Unknown(bool),
    /// The target has no such attribute.
    Missing,
}

/// Attributes with every reference resolved, and the top-level names whose values came
/// from a secret (sensitivity follows the value).
pub(crate) struct Resolved {
    pub attributes: Attributes,
    pub sensitive: Vec<String>,
}

/// Resolve every reference in `attributes`; `Err` carries the reference (and the
/// top-level attribute holding it) that could not be resolved.
pub(crate) fn resolve_references(
    attributes: &Attributes,
    lookup: &mut dyn FnMut(&Reference) -> Lookup,
) -> Result<Resolved, (String, Reference)> {
    resolve_owned_references(attributes.clone(), lookup)
}

/// [`resolve_references`] in `attributes` themselves, when nothing else needs them
/// unresolved: a plan only shown resolves every resource's configuration in place
/// rather than holding a resolved copy beside it.
pub(crate) fn resolve_owned_references(
    mut attributes: Attributes,
    lookup: &mut dyn FnMut(&Reference) -> Lookup,
) -> Result<Resolved, (String, Reference)> {
    let mut sensitive = Vec::new();
    for (key, value) in attributes.iter_mut() {
        let mut secret = false;
        resolve_value(value, lookup, &mut secret).map_err(|r| (key.clone(), r))?;
        if secret {
            sensitive.push(key.clone());
        }
    }
    Ok(Resolved {
        attributes,
        sensitive,
    })
}

fn resolve_value(
    value: &mut Value,
    lookup: &mut dyn FnMut(&Reference) -> Lookup,
    secret: &mut bool,
) -> Result<(), Reference> {
    if let Some(reference) = parse_reference(value) {
        *value = match lookup(&reference) {
            Lookup::Value(value, sensitive) => {
                *secret |= sensitive;
                value
            }
            Lookup::Unknown(sensitive) => {
                *secret |= sensitive;
                unknown()
            }
            Lookup::Missing => return Err(reference),
        };
        return Ok(());
    }
    match value {
        Value::Array(items) => {
            for item in items {
                resolve_value(item, lookup, secret)?;
            }
        }
        Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                resolve_value(item, lookup, secret)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use infraflux_provider::{is_unknown, reference};
    use serde_json::json;

    #[test]
    fn references_resolve_anywhere_and_carry_sensitivity() {
        let attributes = json!({
            "plain": 1,
            "image": reference("dev/w/x.a", "volume"),
            "nested": [{"config": reference("dev/w/x.b", "kubeconfig")}],
            "later": reference("dev/w/x.c", "id"),
        });
        let resolved = resolve_references(attributes.as_object().unwrap(), &mut |r| match r
            .attribute
            .as_str()
        {
            "volume" => Lookup::Value(json!("local:iso/talos.raw"), false),
            "kubeconfig" => Lookup::Value(json!("apiVersion: v1"), true),
            _ => Lookup::Unknown(false),
        })
        .unwrap();
        assert_eq!(resolved.attributes["image"], json!("local:iso/talos.raw"));
        assert_eq!(
            resolved.attributes["nested"][0]["config"],
            json!("apiVersion: v1")
        );
        assert!(is_unknown(&resolved.attributes["later"]));
        assert_eq!(resolved.sensitive, vec!["nested".to_string()]);

        let error = resolve_references(attributes.as_object().unwrap(), &mut |_| Lookup::Missing)
            .err()
            .unwrap();
        assert_eq!(error.1.address, "dev/w/x.a");
    }
}
