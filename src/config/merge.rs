//! Deep merge of configuration layers, most specific last.
//!
//! Rules (documented in README "Merge rules"):
//! - mappings merge key by key, recursively;
//! - scalars replace;
//! - lists replace, unless every item of both lists is a mapping with a `name`: then
//!   items merge by name (an overlay item with a new name is appended);
//! - an explicit `null` removes the key.
//!
//! Every node keeps the origin of the layer that supplied it, so provenance survives.

use super::node::{Node, Value};

/// Merge `overlay` onto `base`.
pub fn merge(base: &mut Node, overlay: &Node) {
    match (&mut base.value, &overlay.value) {
        (Value::Map(base_map), Value::Map(overlay_map)) => {
            for (key, entry) in overlay_map {
                if entry.node.is_null() {
                    base_map.shift_remove(key);
                    continue;
                }
                match base_map.get_mut(key) {
                    Some(existing) => merge(&mut existing.node, &entry.node),
                    None => {
                        base_map.insert(key.clone(), entry.clone());
                    }
                }
            }
        }
        (Value::List(base_items), Value::List(overlay_items))
            if !overlay_items.is_empty()
                && is_named_list(base_items)
                && is_named_list(overlay_items) =>
        {
            // Items by name, found once: a search per overlay item made merging two
            // long lists quadratic.
            let mut by_name: std::collections::HashMap<String, usize> = base_items
                .iter()
                .enumerate()
                .rev()
                .filter_map(|(i, b)| item_name(b).map(|name| (name.to_string(), i)))
                .collect();
            for item in overlay_items {
                let name = item_name(item).unwrap_or_default();
                match by_name.get(name) {
                    Some(&index) => merge(&mut base_items[index], item),
                    None => {
                        by_name.insert(name.to_string(), base_items.len());
                        base_items.push(item.clone());
                    }
                }
            }
            base.origin = overlay.origin;
        }
        _ => *base = overlay.clone(),
    }
}

/// Merge several layers in order into a fresh tree; `null` layers (empty files) are skipped.
pub fn merge_all<'a>(layers: impl IntoIterator<Item = &'a Node>) -> Option<Node> {
    let mut result: Option<Node> = None;
    for layer in layers {
        if layer.is_null() {
            continue;
        }
        match &mut result {
            None => {
                let mut first = layer.clone();
                // An explicit null in the first layer removes nothing: drop it so the
                // effective tree never carries nulls.
                strip_nulls(&mut first);
                result = Some(first);
            }
            Some(base) => merge(base, layer),
        }
    }
    result
}

fn strip_nulls(node: &mut Node) {
    if let Value::Map(map) = &mut node.value {
        map.retain(|_, entry| !entry.node.is_null());
        for entry in map.values_mut() {
            strip_nulls(&mut entry.node);
        }
    }
}

/// An empty overlay list replaces (`workers: []` means "no worker pools", as a reader
/// would expect); an empty base list still takes named items by merge.
/// A list whose items are all mappings with a string `name` (an empty list counts, so
/// an overlay can append named items to nothing).
pub fn is_named_list(items: &[Node]) -> bool {
    items.iter().all(|item| item_name(item).is_some())
}

pub fn item_name(item: &Node) -> Option<&str> {
    item.get("name")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse_file;
    use crate::diag::SourceMap;
    use proptest::prelude::*;

    fn parse_into(map: &mut SourceMap, name: &str, text: &str) -> Node {
        let id = map.add(name, text.to_string());
        parse_file(id, map.get(id)).unwrap()
    }

    fn merged(base: &str, overlay: &str) -> (serde_json::Value, Node, SourceMap) {
        let mut sources = SourceMap::new();
        let mut base = parse_into(&mut sources, "base.yaml", base);
        let overlay = parse_into(&mut sources, "overlay.yaml", overlay);
        merge(&mut base, &overlay);
        (base.to_json(), base, sources)
    }

    #[test]
    fn maps_merge_recursively_and_scalars_replace() {
        let (json, _, _) = merged(
            "network: {vip: 10.0.0.5, pods: 10.244.0.0/16}\nsync_wave: 0\n",
            "network: {vip: 10.0.0.6}\nsync_wave: 2\n",
        );
        assert_eq!(
            json,
            serde_json::json!({"network": {"vip": "10.0.0.6", "pods": "10.244.0.0/16"}, "sync_wave": 2})
        );
    }

    #[test]
    fn plain_lists_replace() {
        let (json, _, _) = merged("dns: [1.1.1.1, 8.8.8.8]\n", "dns: [9.9.9.9]\n");
        assert_eq!(json, serde_json::json!({"dns": ["9.9.9.9"]}));
    }

    #[test]
    fn named_lists_merge_by_name() {
        let (json, _, _) = merged(
            "workers:\n  - {name: general, count: 1, cpu: 2}\n",
            "workers:\n  - {name: general, count: 3}\n  - {name: gpu, count: 1}\n",
        );
        assert_eq!(
            json,
            serde_json::json!({"workers": [
                {"name": "general", "count": 3, "cpu": 2},
                {"name": "gpu", "count": 1}
            ]})
        );
    }

    #[test]
    fn an_empty_list_clears_named_items() {
        let (json, _, _) = merged("workers:\n  - {name: general, count: 1}\n", "workers: []\n");
        assert_eq!(json, serde_json::json!({"workers": []}));
    }

    #[test]
    fn explicit_null_removes_a_key() {
        let (json, _, _) = merged(
            "platform: {monitoring: {enabled: true}, argocd: {}}\n",
            "platform: {monitoring: null}\n",
        );
        assert_eq!(json, serde_json::json!({"platform": {"argocd": {}}}));
    }

    #[test]
    fn merged_values_keep_the_origin_of_the_layer_that_set_them() {
        let (_, node, sources) = merged(
            "network:\n  vip: 10.0.0.5\n  pods: 10.244.0.0/16\n",
            "network:\n  vip: 10.0.0.6\n",
        );
        let vip = node
            .lookup(&crate::config::node::KeyPath::parse("network.vip"))
            .unwrap();
        let pods = node
            .lookup(&crate::config::node::KeyPath::parse("network.pods"))
            .unwrap();
        assert_eq!(sources.describe(vip.origin), "overlay.yaml:2");
        assert_eq!(sources.describe(pods.origin), "base.yaml:3");
    }

    // Property tests over random JSON-like trees (converted to nodes).
    fn arbitrary_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(serde_json::Value::from),
            (-100i64..100).prop_map(serde_json::Value::from),
            "[a-z]{0,4}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn node_of(json: &serde_json::Value) -> Node {
        let mut sources = SourceMap::new();
        let text = serde_json::to_string(json).unwrap();
        let id = sources.add("p.yaml", text);
        parse_file(id, sources.get(id)).unwrap()
    }

    proptest! {
        #[test]
        fn merging_a_tree_onto_itself_changes_nothing(json in arbitrary_value()) {
            let mut base = node_of(&json);
            let overlay = base.clone();
            merge(&mut base, &overlay);
            prop_assert_eq!(base.to_json(), overlay.to_json());
        }

        #[test]
        fn the_overlay_wins_for_every_scalar_it_sets(base in arbitrary_value(), overlay in arbitrary_value()) {
            let mut merged = node_of(&base);
            let overlay_node = node_of(&overlay);
            merge(&mut merged, &overlay_node);
            let merged = merged.to_json();
            // Every scalar leaf of the overlay (reached through maps only) is in the result.
            fn check(overlay: &serde_json::Value, merged: &serde_json::Value) -> bool {
                match overlay {
                    serde_json::Value::Object(map) => match merged {
                        serde_json::Value::Object(merged_map) => map.iter().all(|(k, v)| {
                            if v.is_null() { !merged_map.contains_key(k) }
                            else { merged_map.get(k).is_some_and(|m| check(v, m)) }
                        }),
                        _ => false,
                    },
                    serde_json::Value::Array(_) => merged.is_array(),
                    leaf => leaf == merged,
                }
            }
            prop_assert!(check(&overlay, &merged), "overlay {overlay} merged {merged}");
        }

        #[test]
        fn keys_the_overlay_does_not_mention_keep_the_base_value(base in arbitrary_value(), overlay in arbitrary_value()) {
            let mut merged = node_of(&base);
            merge(&mut merged, &node_of(&overlay));
            let merged = merged.to_json();
            if let (Some(base_map), Some(overlay_map)) = (base.as_object(), overlay.as_object()) {
                for (key, value) in base_map {
                    if !overlay_map.contains_key(key) {
                        prop_assert_eq!(merged.get(key), Some(value));
                    }
                }
            }
        }
    }
}
