//! Object identity (`apps/v1 Deployment argocd/argocd-server`) and apply order, over
//! plain JSON manifests.

use std::fmt;

use serde_json::Value;

/// The objects a resource recorded in its computed `objects` attribute
/// (`[{apiVersion, kind, namespace, name}]`; absent or unknown before the first apply:
/// none).
pub fn recorded_objects(attributes: &serde_json::Map<String, Value>) -> Vec<ObjectRef> {
    let object = |value: &Value| {
        Some(ObjectRef {
            api_version: value["apiVersion"].as_str()?.to_string(),
            kind: value["kind"].as_str()?.to_string(),
            namespace: value["namespace"].as_str().map(str::to_string),
            name: value["name"].as_str()?.to_string(),
        })
    };
    attributes
        .get("objects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(object)
        .collect()
}

/// Which object: group/version, kind, namespace (none for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(
        api_version: impl Into<String>,
        kind: impl Into<String>,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    /// The identity of a manifest; `None` when apiVersion, kind or metadata.name is missing.
    pub fn from_manifest(manifest: &Value) -> Option<Self> {
        Some(ObjectRef {
            api_version: manifest.get("apiVersion")?.as_str()?.to_string(),
            kind: manifest.get("kind")?.as_str()?.to_string(),
            namespace: manifest
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: manifest.pointer("/metadata/name")?.as_str()?.to_string(),
        })
    }

    /// `apps` for `apps/v1`, the empty string for the core group (`v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map(|(group, _)| group)
            .unwrap_or("")
    }

    pub fn version(&self) -> &str {
        self.api_version
            .split_once('/')
            .map(|(_, version)| version)
            .unwrap_or(&self.api_version)
    }

    /// A file name for `--render`: `020-apps-deployment-argocd-argocd-server.yaml`.
    pub fn file_stem(&self) -> String {
        let group = if self.group().is_empty() {
            "core"
        } else {
            self.group()
        };
        let mut stem = format!("{}-{}", group, self.kind.to_lowercase());
        if let Some(namespace) = &self.namespace {
            stem.push('-');
            stem.push_str(namespace);
        }
        stem.push('-');
        stem.push_str(&self.name);
        stem.replace(['/', ':'], "_")
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {}/{}", self.kind, namespace, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Apply phases, in order. CRDs first (and waited for: kinds they define are unknown to
/// the API server until they are Established), then namespaces, then what workloads
/// reference (identity, permissions, configuration), then everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    CustomResourceDefinitions,
    Namespaces,
    Prerequisites,
    Rest,
}

impl Phase {
    pub fn of(kind: &str) -> Phase {
        match kind {
            "CustomResourceDefinition" => Phase::CustomResourceDefinitions,
            "Namespace" => Phase::Namespaces,
            "ServiceAccount" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
            | "ConfigMap" | "Secret" => Phase::Prerequisites,
            _ => Phase::Rest,
        }
    }
}

/// Sort manifests into apply order; stable, so the order within a phase is the order
/// they were rendered in.
pub fn sort_for_apply(manifests: &mut [Value]) {
    manifests.sort_by_key(|m| Phase::of(m.get("kind").and_then(Value::as_str).unwrap_or("")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_and_groups() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "dev"}});
        let object = ObjectRef::from_manifest(&deployment).unwrap();
        assert_eq!(object.group(), "apps");
        assert_eq!(object.version(), "v1");
        assert_eq!(object.to_string(), "Deployment dev/web");
        let namespace = ObjectRef::new("v1", "Namespace", None, "dev");
        assert_eq!(namespace.group(), "");
        assert_eq!(namespace.version(), "v1");
        assert_eq!(namespace.file_stem(), "core-namespace-dev");
        assert!(ObjectRef::from_manifest(&json!({"kind": "Namespace"})).is_none());
    }

    #[test]
    fn apply_order_is_crds_namespaces_prerequisites_rest() {
        let manifest =
            |kind: &str| json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": kind}});
        let mut manifests = vec![
            manifest("Deployment"),
            manifest("ConfigMap"),
            manifest("Namespace"),
            manifest("ClusterRole"),
            manifest("CustomResourceDefinition"),
            manifest("Service"),
            manifest("ServiceAccount"),
        ];
        sort_for_apply(&mut manifests);
        let kinds: Vec<&str> = manifests
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "Namespace",
                "ConfigMap",
                "ClusterRole",
                "ServiceAccount",
                "Deployment",
                "Service"
            ]
        );
    }
}
