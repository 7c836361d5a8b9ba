//! What the real API server and its controllers do around an object's life that a
//! client can see, done by the fake at once or after [`CONTROLLER_DELAY`]:
//!
//! - a new Namespace gets the label `kubernetes.io/metadata.name`, the finalizer
//!   `kubernetes` and phase `Active`, and in it a `default` ServiceAccount and the
//!   `kube-root-ca.crt` ConfigMap (the controller manager's work);
//! - an Established CRD gets the finalizer `customresourcecleanup.apiextensions.k8s.io`;
//! - a DaemonSet counts its template's changes in the annotation
//!   `deprecated.daemonset.template.generation`;
//! - objects go into a namespace that exists and is not being deleted (404, 403);
//! - DELETE of an object with finalizers only marks it (`deletionTimestamp`); it goes
//!   when its last finalizer does. DELETE of a Namespace makes it `Terminating`; after
//!   [`CONTROLLER_DELAY`] what is in it is deleted, and the namespace goes unless a
//!   finalizer holds it. DELETE of a CRD removes its custom resources and its kinds
//!   after the same delay;
//! - DELETE answers with a `Status`, or with the object for the kinds whose REST
//!   storage returns it (Pods, Services, ServiceAccounts, Namespaces, custom resources…).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::kinds::Kind;
use super::{Key, State, Stored, TIMESTAMP, failure, respond};

/// How long the fake's stand-ins for the namespace and CRD controllers take: a
/// namespace or CRD being deleted is seen Terminating for at least this long, as on a
/// real cluster (where it takes a second or more).
pub(super) const CONTROLLER_DELAY: Duration = Duration::from_millis(300);

const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Work left for a controller after a DELETE.
pub(super) enum Cleanup {
    Namespace(String),
    Crd(String),
}

/// Refuse an object whose namespace is missing, or new content in a namespace being
/// deleted.
pub(super) fn refuse_in_namespace(
    state: &State,
    kind: &Kind,
    namespace: &str,
    name: &str,
    creating: bool,
) -> Option<Response<Full<Bytes>>> {
    let key = namespace_key(namespace);
    let Some(stored) = state.objects.get(&key) else {
        return Some(failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("namespaces \"{namespace}\" not found"),
        ));
    };
    if creating && stored.object["metadata"]["deletionTimestamp"].is_string() {
        return Some(failure(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                kind.resource()
            ),
        ));
    }
    None
}

pub(super) fn namespace_key(name: &str) -> Key {
    (String::new(), "namespaces".into(), None, name.into())
}

/// What the server adds to a new object before storing it.
pub(super) fn prepare_for_create(kind: &Kind, stored: &mut Stored) {
    if kind.group.is_empty() && kind.kind == "Namespace" {
        if stored.object["spec"]["finalizers"].is_null() {
            stored.object["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        stored.object["status"] = json!({"phase": "Active"});
    }
}

/// The cleanup finalizer the apiextensions controllers put on an Established CRD.
pub(super) fn hold_crd(stored: &mut Stored) {
    if stored.server_finalizers.iter().any(|f| f == CRD_CLEANUP) {
        return;
    }
    stored.server_finalizers.push(CRD_CLEANUP.into());
    let finalizers = &mut stored.object["metadata"]["finalizers"];
    if !finalizers.is_array() {
        *finalizers = json!([]);
    }
    if let Some(list) = finalizers.as_array_mut() {
        list.insert(0, json!(CRD_CLEANUP));
    }
}

const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// A DaemonSet's template generation: 1 when created, one more for each change of its
/// pod template (the API server's DaemonSet strategy).
pub(super) fn template_generation(before: &Value, object: &mut Value, created: bool) {
    let previous = before["metadata"]["annotations"][TEMPLATE_GENERATION]
        .as_str()
        .and_then(|generation| generation.parse::<i64>().ok())
        .unwrap_or(0);
    if created || before["spec"]["template"] != object["spec"]["template"] {
        object["metadata"]["annotations"][TEMPLATE_GENERATION] = json!((previous + 1).to_string());
    }
}

/// What the server keeps true of an object whatever is applied.
pub(super) fn enforce(kind: &Kind, stored: &mut Stored) {
    if kind.group.is_empty() && kind.kind == "Namespace" {
        let name = stored.object["metadata"]["name"].clone();
        stored.object["metadata"]["labels"][NAME_LABEL] = name;
    }
}

/// No finalizer left (for a Namespace, neither in metadata nor in spec).
pub(super) fn finalized(object: &Value) -> bool {
    let empty = |list: &Value| list.as_array().is_none_or(Vec::is_empty);
    let released = empty(&object["metadata"]["finalizers"]);
    if object["kind"] == "Namespace" {
        released && empty(&object["spec"]["finalizers"])
    } else {
        released
    }
}

/// What the controller manager puts in every new namespace.
pub(super) fn namespace_created(state: &mut State, namespace: &str) {
    let by_controller = json!([{"manager": "kube-controller-manager", "operation": "Update",
        "apiVersion": "v1", "time": TIMESTAMP, "fieldsType": "FieldsV1", "fieldsV1": {}}]);
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace}});
    let ca = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-root-ca.crt", "namespace": namespace,
            "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
        "data": {"ca.crt": state.ca_pem}});
    for (plural, mut object) in [("serviceaccounts", account), ("configmaps", ca)] {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let key: Key = (String::new(), plural.into(), Some(namespace.into()), name);
        if state.objects.contains_key(&key) {
            continue;
        }
        state.revision += 1;
        object["metadata"]["uid"] =
            json!(format!("00000000-0000-0000-0000-{:012}", state.revision));
        object["metadata"]["creationTimestamp"] = json!(TIMESTAMP);
        object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
        object["metadata"]["managedFields"] = by_controller.clone();
        state.objects.insert(
            key,
            Stored {
                object,
                owned: Default::default(),
                updates: by_controller.as_array().cloned().unwrap_or_default(),
                server_finalizers: Vec::new(),
            },
        );
    }
}

/// DELETE of the object at `key`: the answer, and the controller work it starts.
pub(super) fn delete(
    state: &mut State,
    kind: &Kind,
    key: &Key,
) -> (Response<Full<Bytes>>, Option<Cleanup>) {
    let name = key.3.clone();
    let Some(stored) = state.objects.get_mut(key) else {
        return (
            failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} \"{name}\" not found", kind.resource()),
            ),
            None,
        );
    };
    let namespace = kind.group.is_empty() && kind.kind == "Namespace";
    let crd = kind.kind == "CustomResourceDefinition";
    let deleting = stored.object["metadata"]["deletionTimestamp"].is_string();
    if namespace && deleting {
        return (
            failure(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on namespaces \"{name}\": The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."
                ),
            ),
            None,
        );
    }
    if namespace || !finalized(&stored.object) {
        if !deleting {
            stored.object["metadata"]["deletionTimestamp"] = json!(TIMESTAMP);
            stored.object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if namespace {
                stored.object["status"]["phase"] = json!("Terminating");
            }
            state.revision += 1;
            stored.object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
        }
        let cleanup = if namespace {
            Some(Cleanup::Namespace(name))
        } else if crd {
            Some(Cleanup::Crd(name))
        } else {
            None
        };
        return (respond(StatusCode::OK, &stored.object), cleanup);
    }
    let stored = state.objects.remove(key).expect("found above");
    state.revision += 1;
    if kind.returns_deleted {
        return (respond(StatusCode::OK, &stored.object), None);
    }
    let mut details = json!({"name": name, "kind": kind.plural,
        "uid": stored.object["metadata"]["uid"]});
    if !kind.group.is_empty() {
        details["group"] = json!(kind.group);
    }
    (
        respond(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "details": details}),
        ),
        None,
    )
}

/// The controller's part after a DELETE: empty the namespace, or remove the CRD's
/// custom resources and kinds; then the object goes unless a finalizer holds it.
pub(super) fn cleanup(state: &mut State, cleanup: Cleanup) {
    match cleanup {
        Cleanup::Namespace(name) => {
            let inside: Vec<Key> = state
                .objects
                .keys()
                .filter(|key| key.2.as_deref() == Some(name.as_str()))
                .cloned()
                .collect();
            let mut held = false;
            for key in inside {
                let stored = state.objects.get_mut(&key).expect("listed above");
                if finalized(&stored.object) {
                    state.objects.remove(&key);
                } else {
                    held = true;
                    if !stored.object["metadata"]["deletionTimestamp"].is_string() {
                        stored.object["metadata"]["deletionTimestamp"] = json!(TIMESTAMP);
                    }
                }
            }
            state.revision += 1;
            let revision = state.revision.to_string();
            let key = namespace_key(&name);
            if held {
                return;
            }
            let Some(stored) = state.objects.get_mut(&key) else {
                return;
            };
            stored.object["spec"]["finalizers"] = json!([]);
            stored.object["metadata"]["resourceVersion"] = json!(revision);
            if finalized(&stored.object) {
                state.objects.remove(&key);
            }
        }
        Cleanup::Crd(name) => {
            let key: Key = (
                "apiextensions.k8s.io".into(),
                "customresourcedefinitions".into(),
                None,
                name,
            );
            let Some(stored) = state.objects.get_mut(&key) else {
                return;
            };
            let group = stored.object["spec"]["group"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let plural = stored.object["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or("")
                .to_string();
            stored.server_finalizers.retain(|f| f != CRD_CLEANUP);
            let remaining: Vec<Value> = stored.object["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| *f != CRD_CLEANUP)
                .cloned()
                .collect();
            stored.object["metadata"]["finalizers"] = Value::Array(remaining);
            let done = finalized(&stored.object);
            state
                .objects
                .retain(|(g, p, _, _), _| !(*g == group && *p == plural));
            state
                .kinds
                .retain(|k| !(k.group == group && k.plural == plural));
            state.revision += 1;
            if done {
                state.objects.remove(&key);
            }
        }
    }
}

/// An object whose last finalizer was released while it was being deleted is gone;
/// a namespace waiting for it may now finish.
pub(super) fn finish(state: &mut State, key: &Key) {
    state.objects.remove(key);
    if let Some(namespace) = key.2.clone() {
        let terminating = state
            .objects
            .get(&namespace_key(&namespace))
            .is_some_and(|ns| ns.object["metadata"]["deletionTimestamp"].is_string());
        if terminating {
            cleanup(state, Cleanup::Namespace(namespace));
        }
    }
}
