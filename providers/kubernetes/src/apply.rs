//! Applying a set of manifests: in phase order (CRDs → Namespaces → prerequisites →
//! the rest), waiting for CRDs to be Established and refreshing discovery before the
//! kinds they define are applied, and writing only what differs from the live objects
//! (a re-run against an unchanged cluster sends no PATCH).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, ApplyOptions, KubeApi};
use crate::object::{ObjectRef, Phase};
use crate::readiness::Expectation;
use crate::wait::{WaitError, WaitOptions, wait_for};

/// Annotation with the digest of the manifest last applied: a field dropped from a
/// manifest leaves the live object a superset of it, so the digest is what tells that
/// the object needs applying again (server-side apply then removes the field).
pub const DIGEST_ANNOTATION: &str = "infraflux.io/manifest-digest";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("manifest without apiVersion, kind or metadata.name")]
    Identity,
    #[error("reading {object}")]
    Read {
        object: ObjectRef,
        #[source]
        source: ApiError,
    },
    #[error("applying {object}")]
    Apply {
        object: ObjectRef,
        #[source]
        source: ApiError,
    },
    #[error("deleting {object}")]
    Delete {
        object: ObjectRef,
        #[source]
        source: ApiError,
    },
    #[error("refreshing discovery after installing CRDs")]
    Discovery(#[source] ApiError),
    #[error("waiting for CRDs to be Established")]
    Crds(#[source] WaitError),
    #[error("waiting for objects to become ready")]
    Wait(#[source] WaitError),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Read { source, .. }
            | Error::Apply { source, .. }
            | Error::Delete { source, .. }
            | Error::Discovery(source) => source.is_retryable(),
            _ => false,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Written (created or changed), in apply order.
    pub applied: Vec<ObjectRef>,
    /// Already as desired: not written.
    pub unchanged: Vec<ObjectRef>,
}

/// The digest of a manifest (without the digest annotation itself).
pub fn digest(manifest: &Value) -> String {
    let mut manifest = manifest.clone();
    if let Some(annotations) = manifest
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(DIGEST_ANNOTATION);
    }
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&manifest).unwrap_or_default());
    hex::encode(&hasher.finalize()[..16])
}

/// The manifest as applied: with the digest annotation.
pub fn annotated(manifest: &Value) -> Value {
    let digest = digest(manifest);
    let mut manifest = manifest.clone();
    let metadata = &mut manifest["metadata"];
    if !metadata["annotations"].is_object() {
        metadata["annotations"] = json!({});
    }
    metadata["annotations"][DIGEST_ANNOTATION] = json!(digest);
    manifest
}

/// Whether every field of `desired` has the same value in `live` (the API server adds
/// defaults and status, so live objects are supersets). Arrays must match item by item.
/// A zero value (`0`, `false`, `""`, `[]`, `{}`, `null`) matches an absent field: the API
/// server does not store the zero value of an `omitempty` field (a probe's
/// `initialDelaySeconds: 0` is gone once stored), and seeing drift there would re-apply
/// the object on every run.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(desired), Value::Object(live)) => {
            desired.iter().all(|(key, value)| match live.get(key) {
                Some(live) => is_subset(value, live),
                None => is_zero(value),
            })
        }
        (Value::Array(desired), Value::Array(live)) => {
            desired.len() == live.len() && desired.iter().zip(live).all(|(d, l)| is_subset(d, l))
        }
        (desired, live) => desired == live,
    }
}

/// The zero value of its JSON type, which Go's `omitempty` leaves out.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

/// Whether the live object is what `manifest` asks for, as last applied by InfraFlux.
pub fn is_up_to_date(manifest: &Value, live: &Value) -> bool {
    let annotated = annotated(manifest);
    is_subset(&annotated, live)
}

/// Apply manifests in phase order and return what was written. CRDs are waited for
/// (Established) with `crd_wait` before anything else.
pub async fn apply_manifests(
    api: &dyn KubeApi,
    manifests: &[Value],
    options: ApplyOptions,
    crd_wait: WaitOptions,
) -> Result<ApplyReport, Error> {
    let mut ordered: Vec<(Phase, ObjectRef, &Value)> = Vec::new();
    for manifest in manifests {
        let object = ObjectRef::from_manifest(manifest).ok_or(Error::Identity)?;
        ordered.push((Phase::of(&object.kind), object, manifest));
    }
    ordered.sort_by_key(|(phase, _, _)| *phase);
    let mut report = ApplyReport::default();
    let mut crds = Vec::new();
    let mut crds_done = false;
    for (phase, object, manifest) in &ordered {
        if *phase > Phase::CustomResourceDefinitions && !crds_done {
            crds_done = true;
            if !crds.is_empty() {
                let targets: Vec<(ObjectRef, Expectation)> = crds
                    .iter()
                    .map(|o: &ObjectRef| (o.clone(), Expectation::default()))
                    .collect();
                wait_for(api, &targets, crd_wait)
                    .await
                    .map_err(Error::Crds)?;
                api.refresh_discovery().await.map_err(Error::Discovery)?;
            }
        }
        if *phase == Phase::CustomResourceDefinitions {
            crds.push(object.clone());
        }
        let live = api.get(object).await.map_err(|source| Error::Read {
            object: object.clone(),
            source,
        })?;
        if live
            .as_ref()
            .is_some_and(|live| is_up_to_date(manifest, live))
        {
            report.unchanged.push(object.clone());
            continue;
        }
        tracing::debug!(%object, "applying");
        api.apply(&annotated(manifest), options)
            .await
            .map_err(|source| Error::Apply {
                object: object.clone(),
                source,
            })?;
        report.applied.push(object.clone());
    }
    if !crds_done && !crds.is_empty() {
        let targets: Vec<(ObjectRef, Expectation)> = crds
            .iter()
            .map(|o| (o.clone(), Expectation::default()))
            .collect();
        wait_for(api, &targets, crd_wait)
            .await
            .map_err(Error::Crds)?;
        api.refresh_discovery().await.map_err(Error::Discovery)?;
    }
    Ok(report)
}

/// Delete objects in reverse apply order; objects already gone are fine.
pub async fn delete_objects(api: &dyn KubeApi, objects: &[ObjectRef]) -> Result<(), Error> {
    let mut ordered: Vec<&ObjectRef> = objects.iter().collect();
    ordered.sort_by_key(|o| std::cmp::Reverse(Phase::of(&o.kind)));
    for object in ordered {
        api.delete(object).await.map_err(|source| Error::Delete {
            object: object.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Stores what is applied; CRDs become Established; records the calls in order.
    #[derive(Default)]
    struct Recorder {
        objects: Mutex<BTreeMap<ObjectRef, Value>>,
        calls: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl KubeApi for Recorder {
        async fn apply(&self, manifest: &Value, _: ApplyOptions) -> Result<Value, ApiError> {
            let object = ObjectRef::from_manifest(manifest).unwrap();
            self.calls.lock().unwrap().push(format!("apply {object}"));
            let mut stored = manifest.clone();
            if object.kind == "CustomResourceDefinition" {
                stored["status"] =
                    json!({"conditions": [{"type": "Established", "status": "True"}]});
            }
            self.objects.lock().unwrap().insert(object, stored.clone());
            Ok(stored)
        }
        async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ApiError> {
            Ok(self.objects.lock().unwrap().get(object).cloned())
        }
        async fn delete(&self, object: &ObjectRef) -> Result<bool, ApiError> {
            self.calls.lock().unwrap().push(format!("delete {object}"));
            Ok(self.objects.lock().unwrap().remove(object).is_some())
        }
        async fn list(&self, _: &str, _: &str, _: Option<&str>) -> Result<Vec<Value>, ApiError> {
            Ok(Vec::new())
        }
        async fn refresh_discovery(&self) -> Result<(), ApiError> {
            self.calls.lock().unwrap().push("refresh discovery".into());
            Ok(())
        }
    }

    fn manifest(api_version: &str, kind: &str, name: &str) -> Value {
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "data": {"a": "1"}})
    }

    fn options() -> WaitOptions {
        WaitOptions {
            timeout: std::time::Duration::from_secs(10),
            interval: std::time::Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn crds_first_then_discovery_then_the_rest_and_a_rerun_writes_nothing() {
        let api = Recorder::default();
        let manifests = vec![
            manifest("argoproj.io/v1alpha1", "Application", "app"),
            manifest("v1", "ConfigMap", "config"),
            manifest("v1", "Namespace", "argocd"),
            manifest(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "applications.argoproj.io",
            ),
        ];
        let report = apply_manifests(&api, &manifests, ApplyOptions::default(), options())
            .await
            .unwrap();
        assert_eq!(report.applied.len(), 4);
        assert_eq!(
            *api.calls.lock().unwrap(),
            [
                "apply CustomResourceDefinition applications.argoproj.io",
                "refresh discovery",
                "apply Namespace argocd",
                "apply ConfigMap config",
                "apply Application app",
            ]
        );
        api.calls.lock().unwrap().clear();
        let report = apply_manifests(&api, &manifests, ApplyOptions::default(), options())
            .await
            .unwrap();
        assert!(report.applied.is_empty());
        assert_eq!(report.unchanged.len(), 4);
        assert_eq!(*api.calls.lock().unwrap(), ["refresh discovery"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_field_is_applied_again() {
        let api = Recorder::default();
        let mut config = manifest("v1", "ConfigMap", "config");
        config["data"]["b"] = json!("2");
        apply_manifests(&api, &[config], ApplyOptions::default(), options())
            .await
            .unwrap();
        let report = apply_manifests(
            &api,
            &[manifest("v1", "ConfigMap", "config")],
            ApplyOptions::default(),
            options(),
        )
        .await
        .unwrap();
        assert_eq!(report.applied.len(), 1);
    }

    #[test]
    fn live_objects_are_supersets() {
        let desired = json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {"name": "x"}});
        let live = json!({"spec": {"containers": [{"name": "a", "terminationMessagePath": "/dev/termination-log"}]},
            "metadata": {"name": "x", "uid": "1"}, "status": {}});
        assert!(is_subset(&desired, &live));
        let changed = json!({"spec": {"containers": [{"name": "b"}]}, "metadata": {"name": "x"}});
        assert!(!is_subset(&changed, &live));
        let longer = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert!(!is_subset(&longer, &live));
    }

    #[test]
    fn zero_values_the_server_leaves_out_are_no_drift() {
        // As kube-apiserver v1.34 stores a Deployment whose probe says
        // `initialDelaySeconds: 0` (tests/real_control_plane.rs found it).
        let desired = json!({"readinessProbe": {"initialDelaySeconds": 0, "periodSeconds": 10,
            "httpGet": {"path": "/healthz"}}, "args": [], "env": {}});
        let live = json!({"readinessProbe": {"periodSeconds": 10,
            "httpGet": {"path": "/healthz", "scheme": "HTTP"}}});
        assert!(is_subset(&desired, &live));
        // A value that is not zero must be there.
        let desired = json!({"readinessProbe": {"initialDelaySeconds": 5}});
        assert!(!is_subset(&desired, &live));
        let desired = json!({"args": ["--debug"]});
        assert!(!is_subset(&desired, &live));
    }

    #[tokio::test]
    async fn delete_goes_in_reverse_order() {
        let api = Recorder::default();
        delete_objects(
            &api,
            &[
                ObjectRef::new("v1", "Namespace", None, "dev"),
                ObjectRef::new("v1", "LimitRange", Some("dev"), "defaults"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            *api.calls.lock().unwrap(),
            ["delete LimitRange dev/defaults", "delete Namespace dev"]
        );
    }
}
