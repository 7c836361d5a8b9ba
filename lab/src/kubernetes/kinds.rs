//! The kinds the fake serves and how it describes them in discovery: the built-in kinds
//! a cluster's platform uses (scope, plural, singular name as kube-apiserver v1.34
//! reports them), plus the kinds of CRDs once Established.
//!
//! Per kind, what the real API server does differently from one kind to the next
//! (tests/kubernetes_differential.rs compares): whether objects carry
//! `metadata.generation`, whether DELETE answers with the object or with a `Status`, and
//! whether there is a `status` subresource.

use std::collections::BTreeMap;

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Kind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Objects carry `metadata.generation`, bumped when anything but metadata and status
    /// changes (workloads, policies, CRDs and every custom resource; not ConfigMaps,
    /// Secrets, Namespaces, RBAC…).
    pub generation: bool,
    /// DELETE answers with the deleted object rather than a `Status`.
    pub returns_deleted: bool,
    /// `GET …/<name>/status` is served.
    pub status_subresource: bool,
    /// Defined by a CRD (served by the apiextensions server, whose 404s differ).
    pub custom: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps` or `deployments.apps`, as the API server names a resource in
    /// messages.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// (group, version, kind, plural, namespaced, generation, returns deleted, status
/// subresource)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    bool,
    bool,
);

const BUILTIN: &[Row] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        false,
        true,
        true,
    ),
    ("", "v1", "Node", "nodes", false, false, false, true),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        true,
        false,
    ),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        false,
        false,
        false,
    ),
    ("", "v1", "Secret", "secrets", true, false, false, false),
    ("", "v1", "Service", "services", true, false, true, true),
    (
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        false,
        false,
        false,
    ),
    ("", "v1", "Pod", "pods", true, true, true, true),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        false,
        false,
        true,
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        false,
        false,
        true,
    ),
    (
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        false,
        false,
        false,
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        false,
        true,
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        true,
        false,
        true,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        true,
        false,
        true,
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        true,
        false,
        true,
    ),
    ("batch", "v1", "Job", "jobs", true, true, false, true),
    (
        "batch", "v1", "CronJob", "cronjobs", true, true, false, true,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        true,
        false,
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        false,
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        true,
        false,
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        true,
        false,
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        true,
        false,
        false,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        false,
        false,
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        false,
        true,
        false,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        false,
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        true,
        false,
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        true,
        false,
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        false,
        true,
    ),
];

pub(super) fn builtin() -> Vec<Kind> {
    BUILTIN
        .iter()
        .map(
            |&(group, version, kind, plural, namespaced, generation, returns_deleted, status)| {
                Kind {
                    group: group.into(),
                    version: version.into(),
                    kind: kind.into(),
                    plural: plural.into(),
                    namespaced,
                    generation,
                    returns_deleted,
                    status_subresource: status,
                    custom: false,
                }
            },
        )
        .collect()
}

/// The kinds a CRD defines (its served versions).
pub(super) fn of_crd(crd: &Value) -> Vec<Kind> {
    let spec = &crd["spec"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        spec["names"]["kind"].as_str(),
        spec["names"]["plural"].as_str(),
    ) else {
        return Vec::new();
    };
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|version| version["served"] == json!(true))
        .map(|version| Kind {
            group: group.to_string(),
            version: version["name"].as_str().unwrap_or("v1").to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced: spec["scope"] == "Namespaced",
            generation: true,
            returns_deleted: false,
            status_subresource: version["subresources"]["status"].is_object(),
            custom: true,
        })
        .collect()
}

/// `GET /apis`.
pub(super) fn group_list(kinds: &[Kind]) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for kind in kinds.iter().filter(|k| !k.group.is_empty()) {
        let versions = groups.entry(&kind.group).or_default();
        if !versions.contains(&kind.version.as_str()) {
            versions.push(&kind.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1` or `/apis/<group>/<version>`; `None` when nothing is served there.
pub(super) fn resource_list(kinds: &[Kind], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for kind in kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        // The verbs the fake serves: no create (POST), update (PUT) or watch.
        resources.push(
            json!({"name": kind.plural, "singularName": kind.kind.to_lowercase(),
            "namespaced": kind.namespaced, "kind": kind.kind,
            "verbs": ["delete", "get", "list", "patch"]}),
        );
        if kind.status_subresource {
            resources.push(
                json!({"name": format!("{}/status", kind.plural), "singularName": "",
                "namespaced": kind.namespaced, "kind": kind.kind, "verbs": ["get"]}),
            );
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": resources}),
    )
}
