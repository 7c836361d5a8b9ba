//! User patches: Talos-style strategic merge over the rendered documents.
//!
//! - A patch is YAML, possibly several documents. A patch document without `kind`
//!   patches the `v1alpha1` document; one with `kind` (and `name`, for named kinds)
//!   patches the document of that kind and name, or is appended when there is none.
//! - Maps merge key by key; scalars replace; lists append, except
//!   `machine.network.interfaces` (matched on `interface`/`deviceSelector`) and `vlans`
//!   (matched on `vlanId`), whose matching items merge.
//! - `$patch: delete` on a map value removes that key; on a whole patch document it
//!   removes the matching document.

use serde_json::{Map, Value};

use super::parse_documents;
use crate::error::{Error, Result};

const DIRECTIVE: &str = "$patch";

pub fn parse_patch(index: usize, text: &str) -> Result<Vec<Value>> {
    let documents = parse_documents(text).map_err(|message| Error::Patch { index, message })?;
    for document in &documents {
        if !document.is_object() {
            return Err(Error::Patch {
                index,
                message: "each patch document must be a mapping".into(),
            });
        }
    }
    Ok(documents)
}

/// Identity of a document: its kind (`v1alpha1` for the legacy document) and name.
fn identity(document: &Value) -> (String, Option<String>) {
    match document.get("kind").and_then(Value::as_str) {
        Some(kind) => (
            kind.to_string(),
            document
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        None => ("v1alpha1".to_string(), None),
    }
}

fn is_delete(value: &Value) -> bool {
    value.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

pub fn apply_patches(
    mut documents: Vec<Value>,
    patch: &[Value],
    index: usize,
) -> Result<Vec<Value>> {
    for patch_document in patch {
        let wanted = identity(patch_document);
        let position = documents.iter().position(|d| identity(d) == wanted);
        if is_delete(patch_document) {
            if let Some(position) = position {
                documents.remove(position);
            }
            continue;
        }
        match position {
            Some(position) => merge(&mut documents[position], patch_document, ""),
            None if wanted.0 == "v1alpha1" => {
                return Err(Error::Patch {
                    index,
                    message: "patches the v1alpha1 document, which this config does not have"
                        .into(),
                });
            }
            None => documents.push(strip_directives(patch_document)),
        }
    }
    Ok(documents)
}

fn merge(target: &mut Value, patch: &Value, path: &str) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if key == DIRECTIVE {
                    continue;
                }
                if is_delete(value) {
                    target.remove(key);
                    continue;
                }
                let child = format!("{path}.{key}");
                match target.get_mut(key) {
                    Some(existing) => merge(existing, value, &child),
                    None => {
                        target.insert(key.clone(), strip_directives(value));
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) => {
            let merge_key: &[&str] = match path {
                ".machine.network.interfaces" => &["interface", "deviceSelector"],
                _ if path.ends_with(".vlans") => &["vlanId"],
                _ => &[],
            };
            for item in patch {
                let matching = merge_key.iter().find_map(|key| {
                    let wanted = item.get(*key)?;
                    target.iter().position(|t| t.get(*key) == Some(wanted))
                });
                match matching {
                    Some(position) if is_delete(item) => {
                        target.remove(position);
                    }
                    Some(position) => merge(&mut target[position], item, path),
                    None => target.push(strip_directives(item)),
                }
            }
        }
        (target, patch) => *target = strip_directives(patch),
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != DIRECTIVE)
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(documents: Vec<Value>, patch: &str) -> Vec<Value> {
        apply_patches(documents, &parse_patch(0, patch).unwrap(), 0).unwrap()
    }

    #[test]
    fn maps_merge_scalars_replace_lists_append() {
        let base = vec![
            json!({"version": "v1alpha1", "machine": {"type": "worker", "certSANs": ["a"], "kubelet": {"image": "x"}}}),
        ];
        let out = apply(
            base,
            "machine:\n  certSANs: [b]\n  kubelet:\n    extraArgs: {v: '2'}\n  type: controlplane\n",
        );
        assert_eq!(
            out[0]["machine"],
            json!({"type": "controlplane", "certSANs": ["a", "b"], "kubelet": {"image": "x", "extraArgs": {"v": "2"}}})
        );
    }

    #[test]
    fn patch_delete_removes_keys_and_documents() {
        let base = vec![
            json!({"version": "v1alpha1", "machine": {"features": {"kubePrism": {"enabled": true}, "hostDNS": {}}}}),
            json!({"apiVersion": "v1alpha1", "kind": "KubePrismConfig", "port": 7445}),
            json!({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "10.0.0.10"}),
        ];
        let out = apply(
            base,
            "machine:\n  features:\n    kubePrism:\n      $patch: delete\n---\napiVersion: v1alpha1\nkind: KubePrismConfig\n$patch: delete\n",
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["machine"]["features"], json!({"hostDNS": {}}));
        assert_eq!(out[1]["kind"], "Layer2VIPConfig");
    }

    #[test]
    fn named_documents_merge_by_kind_and_name_and_new_ones_are_appended() {
        let base = vec![
            json!({"version": "v1alpha1"}),
            json!({"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "eth0", "up": true}),
        ];
        let out = apply(
            base,
            "apiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nmtu: 9000\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: eth1\nup: true\n",
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[1]["mtu"], 9000);
        assert_eq!(out[2]["name"], "eth1");
    }

    #[test]
    fn interfaces_merge_by_name() {
        let base = vec![
            json!({"machine": {"network": {"interfaces": [{"interface": "eth0", "mtu": 1500}]}}}),
        ];
        let out = apply(
            base,
            "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: 9000\n",
        );
        assert_eq!(
            out[0]["machine"]["network"]["interfaces"],
            json!([{"interface": "eth0", "mtu": 9000}])
        );
    }

    #[test]
    fn malformed_patches_are_reported_with_their_index() {
        let error = parse_patch(3, "machine: [unclosed")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("config patch 3"), "{error}");
        let error = parse_patch(1, "- a\n- b\n").unwrap_err().to_string();
        assert!(error.contains("mapping"), "{error}");
    }
}
