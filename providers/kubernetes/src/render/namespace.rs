//! An environment's namespace and its guard rails: labels (with the Pod Security level
//! enforced), NetworkPolicies, a ResourceQuota and a LimitRange.

use serde_json::{Map, Value, json};

use crate::inputs::NamespaceInputs;
use crate::render::{MANAGED_BY, managed_labels};

pub fn namespace(inputs: &NamespaceInputs) -> Vec<Value> {
    let mut labels: Map<String, Value> = inputs.labels.clone();
    labels.extend(managed_labels());
    labels.insert("environment".into(), json!(inputs.environment));
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        json!(inputs.pod_security.as_str()),
    );
    let mut manifests = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": inputs.name, "labels": labels},
    })];
    if inputs.default_deny {
        manifests.extend(network_policies(inputs));
    }
    if let Some(quota) = &inputs.quota {
        // Quota on requests only: every pod then needs requests, which the LimitRange
        // below supplies to containers that do not state their own.
        manifests.push(json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": metadata("environment-quota", inputs),
            "spec": {"hard": {
                "requests.cpu": quota.cpu,
                "requests.memory": quota.memory,
                "pods": quota.pods.to_string(),
            }},
        }));
    }
    manifests.push(json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata("container-defaults", inputs),
        "spec": {"limits": [{
            "type": "Container",
            "default": inputs.workloads.limits.to_json(),
            "defaultRequest": inputs.workloads.requests.to_json(),
        }]},
    }));
    manifests
}

fn metadata(name: &str, inputs: &NamespaceInputs) -> Value {
    json!({
        "name": name,
        "namespace": inputs.name,
        "labels": {"managed-by": MANAGED_BY, "environment": inputs.environment},
    })
}

fn namespace_selector(name: &str) -> Value {
    json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}})
}

/// Deny everything, then allow: traffic within the namespace, ArgoCD reaching in (its
/// controllers probe health endpoints), and DNS to kube-system over UDP and TCP.
fn network_policies(inputs: &NamespaceInputs) -> Vec<Value> {
    let policy = |name: &str, spec: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(name, inputs),
            "spec": spec,
        })
    };
    vec![
        policy(
            "default-deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        policy(
            "allow-same-namespace",
            json!({
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"podSelector": {}}]}],
            }),
        ),
        policy(
            "allow-from-argocd",
            json!({
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [namespace_selector(&inputs.argocd_namespace)]}],
            }),
        ),
        policy(
            "allow-dns",
            json!({
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [namespace_selector("kube-system")],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }],
            }),
        ),
    ]
}
