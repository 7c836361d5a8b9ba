//! The vendored bootstrap manifests of Cilium (`vendor/`): the subset InfraFlux applies
//! itself, before ArgoCD can install anything. How they were written and how to
//! regenerate the full manifests: `vendor/README.md`.

use serde_json::{Map, Value, json};

use crate::inputs::{InputError, PlatformInputs, WorkloadPolicy};
use crate::render::deep_merge;

pub const CILIUM_VERSION: &str = "1.18.4";

const CILIUM: [&str; 2] = [
    include_str!("../../vendor/cilium-1.18.4/rbac.yaml"),
    include_str!("../../vendor/cilium-1.18.4/workloads.yaml"),
];

/// Every document of the vendored YAML files, in order, read as Kubernetes reads them
/// (YAML 1.1 scalars: `defaultMode: 0400` is 256, not the string serde_yaml makes of it).
fn documents(files: &[&str]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|text| {
            super::kubernetes_yaml::documents(text)
                .expect("vendored manifests are valid YAML (tested)")
        })
        .collect()
}

/// Replace every string that is exactly `@name@` with the value of `name`.
fn substitute(value: &mut Value, variables: &Map<String, Value>) {
    match value {
        Value::String(text) => {
            if let Some(name) = text.strip_prefix('@').and_then(|t| t.strip_suffix('@'))
                && let Some(replacement) = variables.get(name)
            {
                *value = replacement.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, variables)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, variables)),
        _ => {}
    }
}

fn unsupported(service: &str, version: &str, vendored: &str) -> InputError {
    InputError {
        attribute: "version".into(),
        message: format!(
            "{service} {version} has no vendored bootstrap manifests (vendored: {vendored}); \
             set platform.{service}.version to {vendored} or regenerate vendor/ as vendor/README.md describes"
        ),
    }
}

/// Helm values of the Cilium install: what Talos needs (no kube-proxy, the KubePrism
/// API endpoint on localhost:7445, cgroups mounted by Talos at /sys/fs/cgroup, the
/// capabilities Talos allows), the operator's replicas from the workload policy, and
/// the configuration's values over all of it. ArgoCD adopts Cilium with these same
/// values.
pub fn cilium_values(values: &Map<String, Value>, policy: &WorkloadPolicy) -> Value {
    let mut merged = json!({
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": true,
        "k8sServiceHost": "localhost",
        "k8sServicePort": 7445,
        "cgroup": {"autoMount": {"enabled": false}, "hostRoot": "/sys/fs/cgroup"},
        "securityContext": {"capabilities": {
            "ciliumAgent": ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_ADMIN",
                "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
            "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"],
        }},
        // The operator is leader-elected: a second replica is a warm standby, a third
        // adds nothing (and each needs its own node: hostNetwork and a host port).
        "operator": {"replicas": if policy.replicas > 1 { 2 } else { 1 }},
    });
    deep_merge(&mut merged, &Value::Object(values.clone()));
    merged
}

/// Values keys the vendored subset applies; others take effect only once ArgoCD
/// adopts Cilium and renders the full chart.
pub const CILIUM_VALUES_APPLIED: [&str; 8] = [
    "ipam.mode",
    "kubeProxyReplacement",
    "k8sServiceHost",
    "k8sServicePort",
    "cgroup.autoMount.enabled",
    "cgroup.hostRoot",
    "securityContext.capabilities",
    "operator.replicas",
];

/// Dotted paths of the leaves of a values object (arrays are leaves).
pub fn value_paths(values: &Map<String, Value>) -> Vec<String> {
    let mut paths = Vec::new();
    fn walk(prefix: &str, value: &Value, paths: &mut Vec<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    walk(&format!("{prefix}{key}."), value, paths);
                }
            }
            _ => paths.push(prefix.trim_end_matches('.').to_string()),
        }
    }
    for (key, value) in values {
        walk(&format!("{key}."), value, &mut paths);
    }
    paths
}

/// Cilium's values that the vendored subset does not apply.
pub fn cilium_values_not_applied(values: &Map<String, Value>) -> Vec<String> {
    value_paths(values)
        .into_iter()
        .filter(|path| {
            !CILIUM_VALUES_APPLIED
                .iter()
                .any(|applied| path == applied || path.starts_with(&format!("{applied}.")))
        })
        .collect()
}

fn text(value: &Value) -> Value {
    match value {
        Value::String(s) => json!(s),
        other => json!(other.to_string()),
    }
}

pub fn cilium(inputs: &PlatformInputs) -> Result<Vec<Value>, InputError> {
    if inputs.version.trim_start_matches('v') != CILIUM_VERSION {
        return Err(unsupported("cilium", &inputs.version, CILIUM_VERSION));
    }
    let values = cilium_values(&inputs.values, &inputs.workloads);
    let at = |pointer: &str| values.pointer(pointer).cloned().unwrap_or(Value::Null);
    let mut variables = Map::new();
    variables.insert("k8sServiceHost".into(), text(&at("/k8sServiceHost")));
    variables.insert("k8sServicePort".into(), text(&at("/k8sServicePort")));
    variables.insert("cgroup.hostRoot".into(), at("/cgroup/hostRoot"));
    variables.insert(
        "securityContext.capabilities.ciliumAgent".into(),
        at("/securityContext/capabilities/ciliumAgent"),
    );
    variables.insert(
        "securityContext.capabilities.cleanCiliumState".into(),
        at("/securityContext/capabilities/cleanCiliumState"),
    );
    variables.insert("operator.replicas".into(), at("/operator/replicas"));
    let flag = |value: Value| {
        json!(if value == json!(true) || value == json!("true") {
            "true"
        } else {
            "false"
        })
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cilium-config", "namespace": "kube-system"},
        "data": {
            "ipam": text(&at("/ipam/mode")),
            "kube-proxy-replacement": flag(at("/kubeProxyReplacement")),
            "cgroup-root": text(&at("/cgroup/hostRoot")),
            "cluster-name": "default",
            "cluster-id": "0",
            "identity-allocation-mode": "crd",
            "routing-mode": "tunnel",
            "tunnel-protocol": "vxlan",
            "enable-ipv4": "true",
            "enable-ipv6": "false",
            "enable-ipv4-masquerade": "true",
            "enable-policy": "default",
            "enable-l7-proxy": "true",
            "enable-health-checking": "true",
            "enable-endpoint-health-checking": "true",
            "bpf-map-dynamic-size-ratio": "0.0025",
            "cni-exclusive": "true",
            "cni-log-file": "/var/run/cilium/cilium-cni.log",
            "write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
            "operator-prometheus-serve-addr": ":9963",
            "debug": "false",
        },
    });
    let mut manifests = documents(&CILIUM);
    for manifest in &mut manifests {
        substitute(manifest, &variables);
    }
    // ConfigMaps before the workloads that read them.
    let position = manifests
        .iter()
        .position(|m| m["kind"] == "DaemonSet")
        .unwrap_or(manifests.len());
    manifests.insert(position, config);
    Ok(manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_files_parse_and_have_identities() {
        for manifest in &documents(&CILIUM) {
            assert!(
                crate::object::ObjectRef::from_manifest(manifest).is_some(),
                "{manifest}"
            );
        }
    }

    #[test]
    fn vendored_manifests_read_as_kubernetes_reads_them_and_write_back_the_same() {
        use crate::render::kubernetes_yaml;
        let all: Vec<Value> = documents(&CILIUM);
        // Cilium's `defaultMode: 0400` is the octal 256 to Kubernetes, not a string.
        let projected = serde_json::to_string(&all).unwrap();
        assert!(projected.contains(r#""defaultMode":256"#));
        for document in &all {
            let written = kubernetes_yaml::to_string(document);
            assert_eq!(
                kubernetes_yaml::documents(&written).unwrap(),
                vec![document.clone()],
                "{written}"
            );
            let yaml_1_2: Value = serde_yaml::from_str(&written).unwrap();
            assert_eq!(&yaml_1_2, document, "{written}");
        }
    }

    #[test]
    fn placeholders_are_typed() {
        let mut value = json!({"replicas": "@r@", "keep": "@unknown@", "list": ["@r@"]});
        let mut variables = Map::new();
        variables.insert("r".into(), json!(2));
        substitute(&mut value, &variables);
        assert_eq!(
            value,
            json!({"replicas": 2, "keep": "@unknown@", "list": [2]})
        );
    }

    #[test]
    fn values_outside_the_subset_are_listed() {
        let values = json!({"kubeProxyReplacement": true, "hubble": {"relay": {"enabled": true}},
            "operator": {"replicas": 1, "prometheus": {"enabled": true}}});
        assert_eq!(
            cilium_values_not_applied(values.as_object().unwrap()),
            ["hubble.relay.enabled", "operator.prometheus.enabled"]
        );
    }
}
