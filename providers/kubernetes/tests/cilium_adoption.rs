//! Cilium's install by the Cilium CLI Job, and its adoption by ArgoCD, against the fake
//! API server through the real `kube` client: before ArgoCD, a changed configuration
//! runs a new Job that upgrades (the old one is pruned); once ArgoCD's adoption
//! Application exists, InfraFlux neither applies nor refreshes anything of Cilium, so
//! the two never fight over it.

use std::time::Duration;

use serde_json::{Value, json};

use infraflux_kubernetes::provider::{KubernetesProvider, PLATFORM, ProviderOptions};
use infraflux_kubernetes::wait::WaitOptions;
use infraflux_lab::kubernetes::{FakeApiServer, ready_reactor};
use infraflux_provider::{
    Attributes, CreateRequest, PlanRequest, Provider, ReadItem, ReadOutcome, ReadRequest,
    ResourceRef, UpdateRequest,
};

fn options() -> ProviderOptions {
    let wait = WaitOptions {
        timeout: Duration::from_secs(5),
        interval: Duration::from_millis(20),
    };
    ProviderOptions {
        crd_wait: wait,
        ready_wait: wait,
        // ArgoCD from the release files beside the workspace; `None` there: cilium only.
        upstream: infraflux_kubernetes::upstream::testing::mirror_sources().unwrap_or_default(),
    }
}

fn resource(service: &str) -> ResourceRef {
    ResourceRef {
        address: format!("dev/workload/{PLATFORM}.{service}"),
        kind: PLATFORM.into(),
    }
}

fn cilium(kubeconfig: &str, values: Value) -> Attributes {
    json!({"service": "cilium", "version": "1.18.4", "values": values, "environment": "dev",
        "workloads": {"replicas": 1}, "kubeconfig": kubeconfig})
    .as_object()
    .unwrap()
    .clone()
}

/// Plan and create; the state's attributes.
async fn create(provider: &KubernetesProvider, service: &str, desired: &Attributes) -> Attributes {
    let planned = provider
        .plan(PlanRequest {
            resource: resource(service),
            prior: None,
            desired: desired.clone(),
        })
        .await
        .unwrap()
        .planned;
    provider
        .create(CreateRequest {
            resource: resource(service),
            planned,
            replacing: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .attributes
}

/// Plan and update from `prior` to `desired`; the state's attributes.
async fn update(
    provider: &KubernetesProvider,
    service: &str,
    prior: &Attributes,
    desired: &Attributes,
) -> Attributes {
    let planned = provider
        .plan(PlanRequest {
            resource: resource(service),
            prior: Some(prior),
            desired: desired.clone(),
        })
        .await
        .unwrap()
        .planned;
    provider
        .update(UpdateRequest {
            resource: resource(service),
            id: format!("platform/{service}"),
            prior: prior.clone(),
            planned,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .attributes
}

/// The drift a refresh finds.
async fn drift(provider: &KubernetesProvider, prior: &Attributes) -> Value {
    let read = provider
        .read(ReadRequest {
            resources: vec![ReadItem {
                resource: resource("cilium"),
                id: "platform/cilium".into(),
                prior: prior.clone(),
            }],
            deep: false,
        })
        .await
        .unwrap();
    match &read.results[0].outcome {
        ReadOutcome::Found(attributes) => attributes["drift"].clone(),
        other => panic!("{other:?}"),
    }
}

/// The installer's values, as stored.
fn values_config_map(server: &FakeApiServer) -> Value {
    server
        .object(
            "v1",
            "ConfigMap",
            Some("kube-system"),
            "cilium-install-values",
        )
        .unwrap()
}

fn jobs(server: &FakeApiServer) -> Vec<String> {
    let mut names: Vec<String> = server
        .objects_of("Job")
        .iter()
        .map(|job| job["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn before_argocd_a_changed_configuration_runs_a_new_job_that_upgrades() {
    let server = FakeApiServer::start().await.unwrap();
    server.set_reactor(ready_reactor());
    let provider = KubernetesProvider::new(options());
    let kubeconfig = server.kubeconfig();
    let installed = create(&provider, "cilium", &cilium(&kubeconfig, json!({}))).await;
    let [install] = &jobs(&server)[..] else {
        panic!("{:?}", jobs(&server))
    };
    assert!(install.starts_with("cilium-install-"), "{install}");
    assert_eq!(drift(&provider, &installed).await, json!([]));

    let changed = cilium(&kubeconfig, json!({"bpf": {"masquerade": true}}));
    let upgraded = update(&provider, "cilium", &installed, &changed).await;
    let [upgrade] = &jobs(&server)[..] else {
        panic!("the install Job is pruned: {:?}", jobs(&server))
    };
    assert!(upgrade.starts_with("cilium-upgrade-"), "{upgrade}");
    let job = server
        .object("batch/v1", "Job", Some("kube-system"), upgrade)
        .unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"][1],
        "upgrade"
    );
    let values = values_config_map(&server);
    assert!(
        values["data"]["values.yaml"]
            .as_str()
            .unwrap()
            .contains("masquerade")
    );
    assert_eq!(drift(&provider, &upgraded).await, json!([]));
}

#[tokio::test]
async fn once_argocd_owns_cilium_infraflux_applies_and_refreshes_nothing_of_it() {
    let Some(_) = infraflux_kubernetes::upstream::testing::shared_mirror() else {
        return;
    };
    let server = FakeApiServer::start().await.unwrap();
    server.set_reactor(ready_reactor());
    let provider = KubernetesProvider::new(options());
    let kubeconfig = server.kubeconfig();
    let installed = create(&provider, "cilium", &cilium(&kubeconfig, json!({}))).await;
    let argocd = json!({"service": "argocd", "version": "v3.5.1", "values": {},
        "environment": "dev", "workloads": {"replicas": 1}, "kubeconfig": kubeconfig,
        "adopt": [{"service": "cilium", "version": "1.18.4", "values": {}}]});
    create(&provider, "argocd", argocd.as_object().unwrap()).await;
    assert!(
        server
            .object(
                "argoproj.io/v1alpha1",
                "Application",
                Some("argocd"),
                "cilium"
            )
            .is_some()
    );

    // A changed value: nothing of Cilium is written (the adoption Application carries
    // it), and the objects recorded stay the ones InfraFlux applied.
    let before = server.patch_count();
    let changed = cilium(&kubeconfig, json!({"bpf": {"masquerade": true}}));
    let updated = update(&provider, "cilium", &installed, &changed).await;
    assert_eq!(server.patch_count(), before, "nothing applied");
    assert_eq!(updated["objects"], installed["objects"]);
    assert!(jobs(&server)[0].starts_with("cilium-install-"));

    // What InfraFlux installed changing is ArgoCD's business now: no drift.
    let mut values = values_config_map(&server);
    values["data"] = json!({"values.yaml": "{}"});
    server.insert(values);
    assert_eq!(drift(&provider, &updated).await, json!([]));
    // Where no adoption Application is (ArgoCD in another namespace), the same change is
    // drift: ownership is what keeps InfraFlux out.
    let mut elsewhere = updated.clone();
    elsewhere.insert("argocd_namespace".into(), json!("gitops"));
    let found = drift(&provider, &elsewhere).await;
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("cilium-install-values")),
        "{found}"
    );
}
