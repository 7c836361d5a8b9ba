//! The promotion guard: prod runs only what staging ran, staging only what dev ran.
//!
//! The *promotable configuration* of an environment is every effective value that does
//! not come from an environment-specific layer: values from `defaults/` and from the
//! shared part of `clusters/<name>.yaml`, but not from `environments/<env>.yaml`, a
//! cluster's `environments.<env>` block, or a template (sizes are chosen per
//! environment). A successful apply records it in the environment's state; applying
//! the next environment (by sync wave) compares against that record.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::node::Value as NodeValue;
use crate::config::show::{SENSITIVE_PLACEHOLDER, is_sensitive_key};
use crate::config::{Configuration, KeyPath, LayerKind, Node};
use crate::diag::Origin;
use crate::state::PromotionRecord;

/// Per cluster: dotted key path → value. A key set by an environment-specific layer is
/// recorded with `null` (effective configurations never hold nulls): it is this
/// environment's own business and is not compared.
pub type PromotableValues = BTreeMap<String, BTreeMap<String, Value>>;

/// The environment promoted from: the one with the highest sync wave below this one's.
/// An environment's wave is the lowest of its clusters' (as in the model); read from
/// the composed values, so no environment needs resolving.
pub fn previous_environment(config: &Configuration, environment: &str) -> Option<String> {
    let mut waves: BTreeMap<&str, i64> = BTreeMap::new();
    for effective in &config.effective {
        let wave = match effective.node.get("sync_wave").map(|n| &n.value) {
            Some(NodeValue::Int(wave)) => *wave,
            _ => 0,
        };
        waves
            .entry(effective.environment.as_str())
            .and_modify(|w| *w = (*w).min(wave))
            .or_insert(wave);
    }
    let wave = *waves.get(environment)?;
    waves
        .into_iter()
        .filter(|(_, w)| *w < wave)
        .max_by_key(|(_, w)| *w)
        .map(|(name, _)| name.to_string())
}

/// The promotable values of every cluster of `environment`.
pub fn promotable_values(config: &Configuration, environment: &str) -> PromotableValues {
    let mut clusters = BTreeMap::new();
    for effective in config
        .effective
        .iter()
        .filter(|e| e.environment == environment)
    {
        // The origins of the cluster's block for this environment, gathered once: a
        // search of the block per value made large blocks quadratic.
        let mut override_block = std::collections::HashSet::new();
        if let Some(block) = config
            .layers
            .clusters
            .get(&effective.cluster)
            .and_then(|layer| layer.node.get("environments"))
            .and_then(|envs| envs.get(environment))
        {
            origins(block, &mut override_block);
        }
        let is_promotable = |origin: Origin| {
            let shared_layer = config
                .layers
                .defaults
                .iter()
                .chain(config.layers.clusters.get(&effective.cluster))
                .any(|layer| {
                    layer.file == origin.file
                        && matches!(layer.kind, LayerKind::Defaults | LayerKind::Cluster)
                });
            shared_layer && !override_block.contains(&origin)
        };
        let mut values = BTreeMap::new();
        flatten(
            &effective.node,
            &KeyPath::root(),
            &is_promotable,
            &mut values,
        );
        // Values from age-encrypted files are recorded (in state) and compared masked.
        for (path, value) in values.iter_mut() {
            if value.is_null() {
                continue;
            }
            let origin = effective
                .node
                .lookup(&KeyPath::parse(path))
                .map(|n| n.origin);
            let secrets = &config.secrets;
            if origin.is_some_and(|o| secrets.is_secret_origin(o))
                || secrets.json_contains_secret(value)
            {
                *value = Value::String(SENSITIVE_PLACEHOLDER.into());
            }
        }
        clusters.insert(effective.cluster.clone(), values);
    }
    clusters
}

fn origins(tree: &Node, out: &mut std::collections::HashSet<Origin>) {
    out.insert(tree.origin);
    match &tree.value {
        NodeValue::Map(map) => map.values().for_each(|e| origins(&e.node, out)),
        NodeValue::List(items) => items.iter().for_each(|n| origins(n, out)),
        _ => {}
    }
}

fn flatten(
    node: &Node,
    path: &KeyPath,
    keep: &dyn Fn(Origin) -> bool,
    out: &mut BTreeMap<String, Value>,
) {
    match &node.value {
        NodeValue::Map(map) => {
            for (key, entry) in map {
                let child = path.key(key);
                if is_sensitive_key(key) {
                    let value = if keep(entry.node.origin) {
                        Value::String(SENSITIVE_PLACEHOLDER.into())
                    } else {
                        Value::Null
                    };
                    out.insert(child.to_string(), value);
                } else {
                    flatten(&entry.node, &child, keep, out);
                }
            }
        }
        // Lists are compared whole: an item's identity is its position or name.
        _ => {
            let value = if keep(node.origin) {
                node.to_json()
            } else {
                Value::Null
            };
            out.insert(path.to_string(), value);
        }
    }
}

pub fn digest(values: &PromotableValues) -> String {
    let canonical = serde_json::to_vec(values).expect("promotable values serialize");
    format!("sha256:{}", hex::encode(Sha256::digest(canonical)))
}

pub fn record(values: PromotableValues, skipped_check: Option<String>) -> PromotionRecord {
    PromotionRecord {
        digest: digest(&values),
        clusters: values,
        applied_at: chrono::Utc::now(),
        skipped_check,
    }
}

/// One value that differs from what the previous environment last applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub cluster: String,
    pub key: String,
    pub previous: Option<Value>,
    pub current: Option<Value>,
}

/// Differences for the clusters both environments run (a cluster the previous
/// environment does not run has nothing to be promoted from).
pub fn differences(current: &PromotableValues, previous: &PromotionRecord) -> Vec<Difference> {
    let mut found = Vec::new();
    for (cluster, values) in current {
        let Some(before) = previous.clusters.get(cluster) else {
            continue;
        };
        let keys: std::collections::BTreeSet<&String> =
            values.keys().chain(before.keys()).collect();
        for key in keys {
            let (was, now) = (before.get(key), values.get(key));
            let environment_specific =
                was.is_some_and(Value::is_null) || now.is_some_and(Value::is_null);
            if !environment_specific && was != now {
                found.push(Difference {
                    cluster: cluster.clone(),
                    key: key.clone(),
                    previous: was.cloned(),
                    current: now.cloned(),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Selection, load_config};

    struct Token;
    impl crate::config::Variables for Token {
        fn var(&self, name: &str) -> Option<String> {
            (name == "PROXMOX_TOKEN").then(|| "root@pam!ci=very-secret".to_string())
        }
    }

    fn example() -> Configuration {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        load_config(&dir, &Selection::default(), &Token).0
    }

    #[test]
    fn environments_are_promoted_in_sync_wave_order() {
        let config = example();
        assert_eq!(
            previous_environment(&config, "prod").as_deref(),
            Some("staging")
        );
        assert_eq!(
            previous_environment(&config, "staging").as_deref(),
            Some("dev")
        );
        assert_eq!(previous_environment(&config, "dev"), None);
    }

    #[test]
    fn promotable_values_leave_out_environment_layers_and_mask_secrets() {
        let config = example();
        let dev = promotable_values(&config, "dev");
        let workload = &dev["workload"];
        assert_eq!(
            workload["platform.cilium.version"],
            Value::String("1.18.4".into())
        );
        assert_eq!(
            workload["proxmox.token"],
            Value::String(crate::vocabulary::MASK.into())
        );
        // From environments/dev.yaml, a template, or the cluster's dev block: not promotable.
        for key in [
            "gitops.revision",
            "workloads.replicas",
            "control_plane.count",
            "network.vip",
        ] {
            assert_eq!(workload[key], Value::Null, "{key} should not be promotable");
        }
        assert!(!serde_json::to_string(&dev).unwrap().contains("very-secret"));
        // The shared layers are the same for every environment's workload cluster.
        let staging = promotable_values(&config, "staging");
        assert!(differences(&staging, &record(dev, None)).is_empty());
    }

    #[test]
    fn a_shared_value_changed_since_the_previous_apply_is_a_difference() {
        let config = example();
        let mut previous = record(promotable_values(&config, "staging"), None);
        previous.clusters.get_mut("workload").unwrap().insert(
            "platform.cilium.version".into(),
            Value::String("1.17.0".into()),
        );
        let found = differences(&promotable_values(&config, "prod"), &previous);
        assert_eq!(
            found,
            vec![Difference {
                cluster: "workload".into(),
                key: "platform.cilium.version".into(),
                previous: Some(Value::String("1.17.0".into())),
                current: Some(Value::String("1.18.4".into())),
            }]
        );
    }
}
