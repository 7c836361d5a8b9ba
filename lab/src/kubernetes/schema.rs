//! Built-in objects checked as kube-apiserver's server-side apply checks them before
//! anything else: a field the kind's schema does not declare is refused (a typo would
//! otherwise be stored by the fake and silently dropped by a cluster — or, as a cluster
//! does, refused: `failed to create typed patch object (…): .spec.replica: field not
//! declared in schema`).
//!
//! The schema is k8s-openapi's typed structs (generated from the Kubernetes OpenAPI, API
//! 1.32, the workspace's version): an object read into its kind's struct and written back
//! loses exactly the fields the struct does not know. Fields newer than 1.32 are refused
//! too (stricter than a 1.34 server, never kinder). Values of the wrong type are not
//! judged here: a struct that cannot be read (a quantity written as a number, which the
//! server accepts) leaves the object to the server's rules the fake does not have.

use serde_json::Value;

use super::kinds::Kind;

/// The first field of `object` its kind does not declare, named as the API server names
/// it (`.spec.template.spec.containers[name="web"].imagee`); `None` when every field is
/// declared, or when the kind has no struct here.
pub(super) fn undeclared_field(kind: &Kind, object: &Value) -> Option<String> {
    let back = round_trip(kind, object)?;
    first_missing(object, &back, "")
}

/// `object` through the struct of its kind; `None` without one or when it does not read.
fn round_trip(kind: &Kind, object: &Value) -> Option<Value> {
    use k8s_openapi::Resource;
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, networking::v1 as networking,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    fn through<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> Option<Value> {
        let typed: T = serde_json::from_value(object.clone()).ok()?;
        serde_json::to_value(typed).ok()
    }
    let api_version = kind.api_version();
    macro_rules! kinds {
        ($($path:path),* $(,)?) => {
            $(
                if api_version == <$path as Resource>::API_VERSION
                    && kind.kind == <$path as Resource>::KIND
                {
                    return through::<$path>(object);
                }
            )*
        };
    }
    kinds!(
        core::Namespace,
        core::Node,
        core::ServiceAccount,
        core::ConfigMap,
        core::Secret,
        core::Service,
        core::Endpoints,
        core::Pod,
        core::PersistentVolumeClaim,
        core::ResourceQuota,
        core::LimitRange,
        apps::Deployment,
        apps::DaemonSet,
        apps::StatefulSet,
        apps::ReplicaSet,
        batch::Job,
        batch::CronJob,
        policy::PodDisruptionBudget,
        rbac::Role,
        rbac::RoleBinding,
        rbac::ClusterRole,
        rbac::ClusterRoleBinding,
        networking::NetworkPolicy,
        networking::Ingress,
        networking::IngressClass,
        scheduling::PriorityClass,
        storage::StorageClass,
        coordination::Lease,
        admission::ValidatingWebhookConfiguration,
        admission::MutatingWebhookConfiguration,
        apiextensions::CustomResourceDefinition,
    );
    None
}

/// The first path (in key order) present in `sent` and absent from `kept`.
fn first_missing(sent: &Value, kept: &Value, at: &str) -> Option<String> {
    match (sent, kept) {
        (Value::Object(sent), Value::Object(kept)) => sent.iter().find_map(|(key, value)| {
            // `null` is the same as absent to the server; `status` is not applied.
            if value.is_null() || (at.is_empty() && key == "status") {
                return None;
            }
            let path = format!("{at}.{key}");
            match kept.get(key) {
                // A map's values (labels, data) hold no fields of the schema.
                Some(inner) => first_missing(value, inner, &path),
                None => Some(path),
            }
        }),
        (Value::Array(sent), Value::Array(kept)) => {
            sent.iter()
                .zip(kept)
                .enumerate()
                .find_map(|(index, (item, inner))| {
                    first_missing(item, inner, &format!("{at}{}", element(item, index)))
                })
        }
        _ => None,
    }
}

/// How the API server names a list element in a field path: by its `name` key where it
/// has one (containers, volumes, env…), else by position.
fn element(item: &Value, index: usize) -> String {
    match item.get("name").and_then(Value::as_str) {
        Some(name) => format!("[name=\"{name}\"]"),
        None => format!("[{index}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Kind {
        super::super::kinds::builtin()
            .into_iter()
            .find(|k| k.kind == "Deployment")
            .unwrap()
    }

    #[test]
    fn undeclared_fields_are_named_as_the_api_server_names_them() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any.key/at-all": "x"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx", "imagee": "x"}]}}}});
        assert_eq!(
            undeclared_field(&deployment(), &object).as_deref(),
            Some(".spec.template.spec.containers[name=\"web\"].imagee")
        );
        let mut declared = object.clone();
        declared["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("imagee");
        assert_eq!(undeclared_field(&deployment(), &declared), None);
    }
}
