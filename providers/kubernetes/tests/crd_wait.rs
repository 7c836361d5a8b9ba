//! CRDs are waited for until Established before the custom resources they define are
//! applied, on a control plane of this binary's own (what it does to the `argoproj.io`
//! group would disturb other tests): a CRD whose kind another CRD of the group already
//! claims is never Established (the API server's naming controller says
//! `NamesAccepted=False`), and applying ArgoCD stops there, says which and why, and
//! never sends an Application.

mod support;

use serde_json::json;

use infraflux_kubernetes::provider::{KubernetesProvider, PLATFORM};
use infraflux_provider::{CreateRequest, PlanRequest, Provider, ResourceRef};
use support::{Counting, control_plane, mirror, options};

#[tokio::test]
async fn a_crd_that_is_never_established_stops_the_apply_before_its_custom_resources() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let Some(upstream) = mirror() else { return };
    let endpoint = plane.endpoint();
    // Installed before ArgoCD: a CRD of the same group that claims the kind Application.
    let squatter = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "squatters.argoproj.io"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
            "names": {"kind": "Application", "plural": "squatters", "listKind": "SquatterList"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/squatters.argoproj.io";
    let answer = endpoint.apply(path, &squatter, "squatter", false).await;
    assert!(answer.is_success(), "{answer}");
    let established = endpoint
        .wait_until(path, std::time::Duration::from_secs(30), |answer| {
            answer.body["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
        .await;
    assert!(established.is_some(), "the squatter is not Established");

    let provider = KubernetesProvider::with_connector(
        std::sync::Arc::new(Counting::default()),
        options(upstream),
    );
    let resource = ResourceRef {
        address: "dev/workload/kubernetes_platform.argocd".into(),
        kind: PLATFORM.into(),
    };
    let desired = json!({"service": "argocd", "version": "v3.5.1", "values": {},
        "environment": "dev", "kubeconfig": plane.kubeconfig_text(),
        "workloads": {"replicas": 1, "anti_affinity": false,
            "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "adopt": [{"service": "cilium", "version": "1.18.4", "values": {}}]});
    let planned = provider
        .plan(PlanRequest {
            resource: resource.clone(),
            prior: None,
            desired: desired.as_object().unwrap().clone(),
        })
        .await
        .unwrap()
        .planned;
    let error = provider
        .create(CreateRequest {
            resource,
            planned,
            replacing: false,
        })
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .starts_with("waiting for CRDs to be Established: CustomResourceDefinition applications.argoproj.io: failed: names not accepted: "),
        "{}",
        error.message
    );
    assert!(error.message.contains("Application"), "{}", error.message);
    // Nothing of kind Application was sent (it would have gone to the squatter's
    // resource, which now serves that kind).
    // (The server answers 429 while it re-initializes the group's storage.)
    let squatted = endpoint
        .wait_until(
            "/apis/argoproj.io/v1alpha1/squatters",
            std::time::Duration::from_secs(30),
            |answer| answer.is_success(),
        )
        .await
        .expect("the squatters are listed");
    assert_eq!(squatted["items"], json!([]), "{squatted}");
}
