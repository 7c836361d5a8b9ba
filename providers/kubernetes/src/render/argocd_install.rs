//! ArgoCD itself: the official install manifest of the pinned release
//! (`manifests/install.yaml`, or `manifests/ha/install.yaml` for an HA install; read by
//! [`crate::upstream`]), every object as published, placed in the configured namespace.
//!
//! What InfraFlux adds, and only that: the Namespace (upstream installs into an
//! existing `argocd` namespace: `kubectl apply -n argocd`), `metadata.namespace` on every
//! namespaced object (what `-n` does), and the namespace of the ServiceAccounts that the
//! ClusterRoleBindings bind (upstream writes `argocd` there; its documentation says to
//! change it when installing elsewhere). The `platform` AppProject and the adoption
//! Applications are rendered by [`super::argocd`].

use serde_json::{Value, json};

use crate::inputs::PlatformInputs;
use crate::render::MANAGED_BY;
use crate::upstream::Loaded;

/// Annotation on the Namespace of a simulated install (the lab without the release
/// file): what was simulated and why. The lab's API serves ArgoCD's kinds when it sees it.
pub const SIMULATED_ANNOTATION: &str = "infraflux.io/simulated-install";

/// Kinds of ArgoCD's install manifests that are cluster-scoped; every other kind is
/// namespaced (a test checks that the release files hold no kind outside both lists).
pub const CLUSTER_SCOPED: [&str; 3] = [
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// Namespaced kinds of ArgoCD's install manifests.
pub const NAMESPACED: [&str; 10] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "StatefulSet",
    "NetworkPolicy",
    "Job",
];

/// The install of `inputs` (an argocd platform service) from its release file.
pub fn install(inputs: &PlatformInputs, release: &Loaded) -> Vec<Value> {
    let namespace = &inputs.namespace;
    let mut namespace_object = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {"managed-by": MANAGED_BY}},
    });
    let documents = match release {
        Loaded::Upstream(documents) => documents,
        Loaded::Simulated { reason } => {
            namespace_object["metadata"]["annotations"] = json!({
                SIMULATED_ANNOTATION: format!("argo-cd {}: {reason}", inputs.version),
            });
            return vec![namespace_object];
        }
    };
    let mut manifests = vec![namespace_object];
    for document in documents.iter() {
        let mut manifest = document.clone();
        let kind = manifest["kind"].as_str().unwrap_or("").to_string();
        if !CLUSTER_SCOPED.contains(&kind.as_str()) {
            manifest["metadata"]["namespace"] = json!(namespace);
        }
        if kind == "ClusterRoleBinding" {
            for subject in manifest["subjects"].as_array_mut().into_iter().flatten() {
                if subject["kind"] == "ServiceAccount" {
                    subject["namespace"] = json!(namespace);
                }
            }
        }
        manifests.push(manifest);
    }
    manifests
}

#[cfg(test)]
mod tests;
