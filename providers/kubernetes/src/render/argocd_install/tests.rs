//! The rendered ArgoCD is upstream's install manifest, whole: every object of
//! `install.yaml` (one replica) or `ha/install.yaml` (HA), compared with the release
//! files beside the workspace (`../shared/upstream`, read here with serde_yaml, not with
//! the renderer's reader), the CRDs with their full schemas.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use crate::inputs::PlatformInputs;
use crate::render::platform;
use crate::upstream::testing::{mirror_sources, shared_mirror};
use crate::upstream::{Loaded, ReleaseFile};

use super::{CLUSTER_SCOPED, NAMESPACED, SIMULATED_ANNOTATION};

fn inputs(replicas: u32, extra: Value) -> PlatformInputs {
    let mut attributes = json!({
        "service": "argocd", "version": "v3.5.1", "environment": "env",
        "workloads": {"replicas": replicas, "anti_affinity": replicas > 1},
        "adopt": [{"service": "cilium", "version": "1.18.4", "values": {}}],
    });
    for (key, value) in extra.as_object().unwrap() {
        attributes[key] = value.clone();
    }
    PlatformInputs::parse(attributes.as_object().unwrap()).unwrap()
}

fn load(file: &ReleaseFile) -> Option<Loaded> {
    let sources = mirror_sources()?;
    Some(
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sources.load(file))
            .unwrap(),
    )
}

/// (apiVersion, kind, name) of every document of an upstream file, read with serde_yaml.
fn upstream_identities(mirror: &Path, file: &ReleaseFile) -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(mirror.join(file.relative_path())).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).unwrap())
        .filter(|document| !document.is_null())
        .map(|document| {
            let text = |v: &serde_yaml::Value| v.as_str().unwrap().to_string();
            (
                text(&document["apiVersion"]),
                text(&document["kind"]),
                text(&document["metadata"]["name"]),
            )
        })
        .collect()
}

use serde::Deserialize;

/// The objects of the render that come from upstream (InfraFlux's own left out: the
/// Namespace, the AppProject and the Applications).
fn from_upstream(manifests: &[Value]) -> Vec<&Value> {
    manifests
        .iter()
        .filter(|m| {
            !matches!(
                m["kind"].as_str(),
                Some("Namespace" | "AppProject" | "Application")
            )
        })
        .collect()
}

fn identities(manifests: &[&Value]) -> BTreeSet<(String, String, String)> {
    manifests
        .iter()
        .map(|m| {
            let text = |v: &Value| v.as_str().unwrap().to_string();
            (
                text(&m["apiVersion"]),
                text(&m["kind"]),
                text(&m["metadata"]["name"]),
            )
        })
        .collect()
}

/// Renders `inputs` and checks it is `file`, whole, in `namespace`.
fn check_is_upstream(inputs: &PlatformInputs, expected: &ReleaseFile, namespace: &str) {
    let Some(mirror) = shared_mirror() else {
        return;
    };
    let file = inputs.release_file().unwrap().unwrap();
    assert_eq!(file, expected);
    let loaded = load(file).unwrap();
    let manifests = platform(inputs, Some(&loaded)).unwrap();
    let rendered = from_upstream(&manifests);
    let upstream = upstream_identities(&mirror, file);
    assert_eq!(identities(&rendered), upstream);
    assert_eq!(rendered.len(), upstream.len(), "no object twice");

    // Each object as published but for its namespace (and the ClusterRoleBindings'
    // subjects): CRDs keep their full schemas, images their upstream tags.
    let Loaded::Upstream(documents) = &loaded else {
        unreachable!()
    };
    for document in documents.iter() {
        let name = &document["metadata"]["name"];
        let object = rendered
            .iter()
            .find(|m| m["kind"] == document["kind"] && &m["metadata"]["name"] == name)
            .unwrap();
        let mut expected = document.clone();
        let kind = document["kind"].as_str().unwrap();
        if !CLUSTER_SCOPED.contains(&kind) {
            expected["metadata"]["namespace"] = json!(namespace);
        }
        if kind == "ClusterRoleBinding" {
            for subject in expected["subjects"].as_array_mut().unwrap() {
                subject["namespace"] = json!(namespace);
            }
        }
        assert_eq!(*object, &expected, "{kind} {name}");
    }
    let crd = rendered
        .iter()
        .find(|m| m["metadata"]["name"] == "applications.argoproj.io")
        .unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert!(schema["properties"]["spec"]["properties"]["source"].is_object());
    assert!(schema.get("x-kubernetes-preserve-unknown-fields").is_none());

    // InfraFlux's own objects on top.
    let namespace_object = manifests.iter().find(|m| m["kind"] == "Namespace").unwrap();
    assert_eq!(namespace_object["metadata"]["name"], namespace);
    assert!(manifests.iter().any(|m| m["kind"] == "AppProject"));
    assert!(
        manifests
            .iter()
            .any(|m| m["kind"] == "Application" && m["metadata"]["name"] == "cilium")
    );
}

#[test]
fn one_replica_installs_every_object_of_install_yaml() {
    let file = crate::upstream::argocd("v3.5.1", false).unwrap();
    check_is_upstream(&inputs(1, json!({})), file, "argocd");
}

#[test]
fn a_highly_available_environment_installs_every_object_of_ha_install_yaml() {
    let file = crate::upstream::argocd("v3.5.1", true).unwrap();
    check_is_upstream(&inputs(3, json!({})), file, "argocd");
}

#[test]
fn the_ha_setting_wins_over_the_workload_policy() {
    let install = crate::upstream::argocd("v3.5.1", false).unwrap();
    let ha = crate::upstream::argocd("v3.5.1", true).unwrap();
    assert_eq!(
        inputs(3, json!({"ha": false})).release_file().unwrap(),
        Some(install)
    );
    assert_eq!(
        inputs(1, json!({"ha": true})).release_file().unwrap(),
        Some(ha)
    );
}

#[test]
fn another_namespace_holds_every_namespaced_object_and_the_bound_accounts() {
    let file = crate::upstream::argocd("v3.5.1", false).unwrap();
    check_is_upstream(&inputs(1, json!({"namespace": "gitops"})), file, "gitops");
}

#[test]
fn every_kind_of_the_release_files_has_a_known_scope() {
    let Some(_) = shared_mirror() else {
        return;
    };
    for (install, ha) in crate::upstream::ARGOCD {
        for file in [install, ha] {
            let Loaded::Upstream(documents) = load(file).unwrap() else {
                unreachable!()
            };
            for document in documents.iter() {
                let kind = document["kind"].as_str().unwrap();
                assert!(
                    CLUSTER_SCOPED.contains(&kind) || NAMESPACED.contains(&kind),
                    "{file}: {kind} has no known scope"
                );
                assert!(
                    document["metadata"].get("namespace").is_none(),
                    "{file}: upstream names no namespace"
                );
            }
        }
    }
}

#[test]
fn upstream_documents_are_written_so_that_kubernetes_reads_them_back_the_same() {
    use crate::render::kubernetes_yaml;
    let Some(_) = shared_mirror() else {
        return;
    };
    let file = crate::upstream::argocd("v3.5.1", true).unwrap();
    let Loaded::Upstream(documents) = load(file).unwrap() else {
        unreachable!()
    };
    for document in documents.iter() {
        let written = kubernetes_yaml::to_string(document);
        // As the API server (YAML 1.1) and a YAML 1.2 reader read it.
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
fn a_simulated_install_renders_only_infrafluxs_objects_and_says_so() {
    let simulated = Loaded::Simulated {
        reason: "no network".into(),
    };
    let manifests = platform(&inputs(1, json!({})), Some(&simulated)).unwrap();
    let kinds: Vec<&str> = manifests
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Namespace", "AppProject", "Application"]);
    assert_eq!(
        manifests[0]["metadata"]["annotations"][SIMULATED_ANNOTATION],
        "argo-cd v3.5.1: no network"
    );
}
