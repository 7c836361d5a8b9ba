//! `platform-parity`: every environment runs the same platform services at the same
//! versions, unless an environment-specific layer says otherwise on purpose. The
//! differences are also a table (`infraflux diff-env A B`).

use super::Finding;
use crate::config::{Configuration, KeyPath};
use crate::diag::Severity;
use crate::model::{Cluster, Model, ServiceKind};

/// One platform service that differs between two environments' instances of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParityRow {
    pub cluster: String,
    pub service: &'static str,
    /// `enabled 1.18.4` / `disabled` / `absent` per side.
    pub left: String,
    pub right: String,
    /// `file:line` of the value on the right side.
    pub source: Option<String>,
}

fn describe(cluster: Option<&Cluster>, kind: ServiceKind) -> String {
    match cluster.and_then(|c| c.platform.service(kind)) {
        None => "absent".into(),
        Some(s) if !s.enabled => "disabled".into(),
        Some(s) => format!("enabled {}", s.version_text.as_deref().unwrap_or("?")),
    }
}

/// Differences between the platform of the clusters two environments share.
pub fn parity_report(
    model: &Model,
    config: &Configuration,
    left: &str,
    right: &str,
) -> Vec<ParityRow> {
    let mut rows = Vec::new();
    let in_env = |env: &str| {
        model
            .clusters()
            .filter(move |c| c.environment == env)
            .collect::<Vec<_>>()
    };
    let (lefts, rights) = (in_env(left), in_env(right));
    // Only clusters both environments run are comparable; the others are listed apart
    // (see `clusters_in_one_only`).
    let mut names: Vec<&str> = lefts
        .iter()
        .filter(|l| rights.iter().any(|r| r.name == l.name))
        .map(|c| c.name.as_str())
        .collect();
    names.sort();
    for name in names {
        let l = lefts.iter().find(|c| c.name == name).copied();
        let r = rights.iter().find(|c| c.name == name).copied();
        for kind in ServiceKind::ALL {
            let (left_text, right_text) = (describe(l, kind), describe(r, kind));
            if left_text != right_text {
                // Point at the value that differs: the version when both run the
                // service, otherwise the `enabled` switch.
                let field = if left_text.starts_with("enabled") && right_text.starts_with("enabled")
                {
                    "version"
                } else {
                    "enabled"
                };
                let source = r.and_then(|r| {
                    config
                        .effective
                        .iter()
                        .find(|e| e.environment == r.environment && e.cluster == r.name)
                        .map(|e| {
                            let path = KeyPath::parse(&format!("platform.{}.{field}", kind.key()));
                            config.sources().describe(e.node.origin_of(&path))
                        })
                });
                rows.push(ParityRow {
                    cluster: name.to_string(),
                    service: kind.key(),
                    left: left_text,
                    right: right_text,
                    source,
                });
            }
        }
    }
    rows
}

/// Clusters run by only one of two environments: (only left, only right).
pub fn clusters_in_one_only(model: &Model, left: &str, right: &str) -> (Vec<String>, Vec<String>) {
    let names = |env: &str| {
        model
            .clusters()
            .filter(|c| c.environment == env)
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    let (l, r) = (names(left), names(right));
    (
        l.iter().filter(|n| !r.contains(n)).cloned().collect(),
        r.iter().filter(|n| !l.contains(n)).cloned().collect(),
    )
}

/// A difference is deliberate when the value comes from a layer that applies to one
/// environment only (its environment file, or a cluster's override for it); anything
/// else (a template picked per environment, say) is reported.
pub(crate) fn check<'a>(model: &'a Model, config: &Configuration, findings: &mut Vec<Finding<'a>>) {
    let clusters: Vec<&Cluster> = model.clusters().collect();
    for (i, a) in clusters.iter().enumerate() {
        for b in &clusters[i + 1..] {
            if a.name != b.name || a.environment == b.environment {
                continue;
            }
            for kind in ServiceKind::ALL {
                let (sa, sb) = (a.platform.service(kind), b.platform.service(kind));
                let same = match (sa, sb) {
                    (Some(x), Some(y)) => {
                        x.enabled == y.enabled && (!x.enabled || x.version == y.version)
                    }
                    (None, None) => true,
                    _ => false,
                };
                if same {
                    continue;
                }
                let deliberate = |c: &Cluster| {
                    config
                        .effective
                        .iter()
                        .find(|e| e.environment == c.environment && e.cluster == c.name)
                        .is_some_and(|e| {
                            ["enabled", "version"].iter().any(|field| {
                                let path =
                                    KeyPath::parse(&format!("platform.{}.{field}", kind.key()));
                                e.node.lookup(&path).is_some_and(|value| {
                                    is_environment_specific(config, c, value.origin)
                                })
                            })
                        })
                };
                if deliberate(a) || deliberate(b) {
                    continue;
                }
                findings.push(Finding {
                    rule: "platform-parity",
                    severity: Severity::Warning,
                    cluster: b,
                    path: match kind {
                        ServiceKind::Cilium => "platform.cilium",
                        ServiceKind::CertManager => "platform.cert_manager",
                        ServiceKind::Monitoring => "platform.monitoring",
                        ServiceKind::ExternalDns => "platform.external_dns",
                        ServiceKind::Argocd => "platform.argocd",
                    },
                    message: format!(
                        "{} differs from {}: {} vs {}",
                        kind.key(),
                        a.id(),
                        describe(Some(b), kind),
                        describe(Some(a), kind)
                    ),
                    label: "not the same as in the other environment".into(),
                    help: "set the same version everywhere, or override it explicitly in the environment's own layer".into(),
                });
            }
        }
    }
}

/// Whether a value was written in a layer that applies to one environment only: its
/// environment file, or a cluster file's `environments.<env>` block.
fn is_environment_specific(
    config: &Configuration,
    cluster: &Cluster,
    origin: crate::diag::Origin,
) -> bool {
    let in_environment_file = config
        .layers
        .environments
        .get(&cluster.environment)
        .is_some_and(|layer| layer.file == origin.file);
    let override_block = config
        .layers
        .clusters
        .get(&cluster.name)
        .and_then(|layer| layer.node.get("environments"))
        .and_then(|envs| envs.get(&cluster.environment));
    in_environment_file || override_block.is_some_and(|block| subtree_contains(block, origin))
}

/// Whether `origin` is a value written inside some node of `tree`.
fn subtree_contains(tree: &crate::config::Node, origin: crate::diag::Origin) -> bool {
    use crate::config::node::Value;
    tree.origin == origin
        || match &tree.value {
            Value::Map(map) => map.values().any(|e| subtree_contains(&e.node, origin)),
            Value::List(items) => items.iter().any(|n| subtree_contains(n, origin)),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Selection;
    use crate::model::resolve_model;
    use crate::policy::tests::policy_of;

    #[test]
    fn deliberate_overrides_are_not_findings_but_appear_in_the_report() {
        let (problems, config) = policy_of(&[(
            "environments/staging.yaml",
            "sync_wave: 1\n",
            "sync_wave: 1\nplatform:\n  monitoring:\n    version: 80.0.0\n",
        )]);
        assert!(!problems.iter().any(|p| p.code == "policy::platform-parity"));
        let _ = Selection::default();
        let (model, _) = resolve_model(&config);
        let rows = parity_report(&model.unwrap(), &config, "dev", "staging");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (
                rows[0].service,
                rows[0].left.as_str(),
                rows[0].right.as_str()
            ),
            ("monitoring", "enabled 79.5.0", "enabled 80.0.0")
        );
        assert!(
            rows[0]
                .source
                .as_deref()
                .unwrap()
                .ends_with("environments/staging.yaml:7"),
            "{rows:?}"
        );
    }

    #[test]
    fn a_difference_from_a_shared_layer_is_a_warning() {
        let (problems, _) = policy_of(&[(
            "templates/medium.yaml",
            "control_plane:\n",
            "platform:\n  monitoring:\n    version: 80.0.0\ncontrol_plane:\n",
        )]);
        let parity: Vec<_> = problems
            .iter()
            .filter(|p| p.code == "policy::platform-parity")
            .collect();
        assert!(!parity.is_empty());
        assert!(parity.iter().all(|p| p.severity == Severity::Warning));
    }
}
