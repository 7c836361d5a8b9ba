//! The provider end to end against the fake API server, through the real `kube`
//! client: bootstrap a cluster's platform, namespaces and handoff; a re-run writes
//! nothing; a Degraded Application fails with its message; a changed manifest is
//! applied on the next run; CRDs are waited for until Established.

use std::time::Duration;

use serde_json::{Value, json};

use infraflux_kubernetes::provider::{
    HANDOFF, KubernetesProvider, NAMESPACE, PLATFORM, ProviderOptions,
};
use infraflux_kubernetes::wait::WaitOptions;
use infraflux_lab::kubernetes::{FakeApiServer, ready_reactor};
use infraflux_provider::{
    Attributes, CreateRequest, PlanRequest, Provider, ReadItem, ReadOutcome, ReadRequest,
    ResourceRef, UpdateRequest,
};

/// `None` (a skip is printed) without the upstream release files beside the workspace.
fn options() -> Option<ProviderOptions> {
    // Bounded, and short: the fake answers at once; the reactor makes objects ready
    // as they are applied.
    let wait = WaitOptions {
        timeout: Duration::from_secs(5),
        interval: Duration::from_millis(20),
    };
    Some(ProviderOptions {
        crd_wait: wait,
        ready_wait: wait,
        // ArgoCD from the release files beside the workspace, as an offline mirror.
        upstream: infraflux_kubernetes::upstream::testing::mirror_sources()?,
    })
}

fn attrs(value: Value) -> Attributes {
    value.as_object().unwrap().clone()
}

fn resource(kind: &str, name: &str) -> ResourceRef {
    ResourceRef {
        address: format!("prod/workload/{kind}.{name}"),
        kind: kind.into(),
    }
}

fn workloads() -> Value {
    json!({"replicas": 3, "anti_affinity": true,
        "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}})
}

/// The resources of one cluster in prod, in graph order.
fn cluster(kubeconfig: &str) -> Vec<(ResourceRef, Attributes)> {
    let platform = |service: &str, version: &str, extra: Value| {
        let mut attributes = json!({"service": service, "version": version, "values": {},
            "environment": "prod", "workloads": workloads(), "kubeconfig": kubeconfig});
        for (key, value) in extra.as_object().unwrap() {
            attributes[key] = value.clone();
        }
        (resource(PLATFORM, service), attrs(attributes))
    };
    vec![
        platform(
            "cilium",
            "1.18.4",
            json!({"values": {"kubeProxyReplacement": true}}),
        ),
        platform(
            "argocd",
            "v3.5.1",
            json!({"adopt": [{"service": "cilium", "version": "1.18.4",
                "values": {"kubeProxyReplacement": true}}]}),
        ),
        platform("cert_manager", "v1.19.1", json!({})),
        platform("monitoring", "79.5.0", json!({})),
        (
            resource(NAMESPACE, "prod"),
            attrs(
                json!({"name": "prod", "environment": "prod", "pod_security": "restricted",
                "default_deny": true, "quota": {"cpu": "32", "memory": "64Gi", "pods": 200},
                "workloads": workloads(), "kubeconfig": kubeconfig}),
            ),
        ),
        (
            resource(HANDOFF, "prod"),
            attrs(json!({"environment": "prod", "project": "prod-workload",
                "application": "prod-workload", "argocd_namespace": "argocd",
                "repository": "https://git.example.internal/platform/apps.git",
                "revision": "v1.4.2", "path": "environments/prod",
                "destination_namespace": "prod", "automated": true, "sync_wave": 2,
                "kubeconfig": kubeconfig})),
        ),
    ]
}

async fn plan(
    provider: &KubernetesProvider,
    resource: &ResourceRef,
    desired: &Attributes,
) -> Attributes {
    provider
        .plan(PlanRequest {
            resource: resource.clone(),
            prior: None,
            desired: desired.clone(),
        })
        .await
        .unwrap()
        .planned
}

/// Create every resource; returns the state (attributes per resource).
async fn bootstrap(
    provider: &KubernetesProvider,
    kubeconfig: &str,
) -> Vec<(ResourceRef, String, Attributes)> {
    let mut state = Vec::new();
    for (resource, desired) in cluster(kubeconfig) {
        let planned = plan(provider, &resource, &desired).await;
        let created = provider
            .create(CreateRequest {
                resource: resource.clone(),
                planned,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        state.push((resource, created.id, created.attributes));
    }
    state
}

#[tokio::test]
async fn bootstrap_then_rerun_writes_nothing() {
    let server = FakeApiServer::start().await.unwrap();
    server.set_reactor(ready_reactor());
    let Some(options) = options() else {
        return;
    };
    let provider = KubernetesProvider::new(options);
    let state = bootstrap(&provider, &server.kubeconfig()).await;

    // What a bootstrapped cluster has: Cilium's install Job (Cilium itself is what the
    // Job installs), ArgoCD, the Applications.
    let jobs = server.objects_of("Job");
    assert!(
        jobs.iter()
            .any(|job| job["metadata"]["namespace"] == "kube-system"
                && job["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("cilium-install-")),
        "{jobs:?}"
    );
    assert!(
        server
            .object(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                "applications.argoproj.io"
            )
            .is_some()
    );
    for name in [
        "cilium",
        "cert-manager",
        "kube-prometheus-stack",
        "prod-workload",
    ] {
        assert!(
            server
                .object("argoproj.io/v1alpha1", "Application", Some("argocd"), name)
                .is_some(),
            "Application {name}"
        );
    }
    let namespace = server.object("v1", "Namespace", None, "prod").unwrap();
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let policies = server.objects_of("NetworkPolicy");
    let in_namespace = |namespace: &str| {
        policies
            .iter()
            .filter(|p| p["metadata"]["namespace"] == namespace)
            .count()
    };
    // The environment's four, and the eight of ArgoCD's HA manifest (prod is HA).
    assert_eq!((in_namespace("prod"), in_namespace("argocd")), (4, 8));
    assert!(
        server
            .object(
                "apps/v1",
                "StatefulSet",
                Some("argocd"),
                "argocd-redis-ha-server"
            )
            .is_some()
    );
    let handoff = server
        .object(
            "argoproj.io/v1alpha1",
            "Application",
            Some("argocd"),
            "prod-workload",
        )
        .unwrap();
    assert_eq!(
        handoff["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
        "2"
    );
    assert_eq!(state[0].1, "platform/cilium");
    // The installer's ServiceAccount, binding, values and Job.
    assert_eq!(state[0].2["objects"].as_array().unwrap().len(), 4);
    assert!(server.patch_count() > 40);

    // A second run of every resource (an update with the same attributes) and a
    // refresh: no writes at all.
    let before = server.patch_count();
    for (resource, id, attributes) in &state {
        provider
            .update(UpdateRequest {
                resource: resource.clone(),
                id: id.clone(),
                prior: attributes.clone(),
                planned: attributes.clone(),
            })
            .await
            .unwrap();
    }
    let read = provider
        .read(ReadRequest {
            resources: state
                .iter()
                .map(|(resource, id, prior)| ReadItem {
                    resource: resource.clone(),
                    id: id.clone(),
                    prior: prior.clone(),
                })
                .collect(),
            deep: false,
        })
        .await
        .unwrap();
    for result in &read.results {
        let ReadOutcome::Found(attributes) = &result.outcome else {
            panic!("{}: {:?}", result.address, result.outcome)
        };
        assert_eq!(attributes["drift"], json!([]), "{}", result.address);
    }
    assert_eq!(server.patch_count(), before, "a re-run must not write");
    assert!(
        server
            .requests()
            .iter()
            .all(|(method, _)| method == "GET" || method == "PATCH")
    );
}

#[tokio::test]
async fn a_degraded_application_fails_with_its_message() {
    let server = FakeApiServer::start().await.unwrap();
    server.set_reactor(std::sync::Arc::new(|object: &mut Value| {
        infraflux_lab::kubernetes::make_ready(object);
        if object["kind"] == "Application" && object["metadata"]["name"] == "prod-workload" {
            object["status"]["health"] = json!({"status": "Degraded"});
            object["status"]["resources"] = json!([{"kind": "Deployment", "namespace": "prod",
                "name": "api", "health": {"status": "Degraded",
                    "message": "Deployment \"api\" exceeded its progress deadline"}}]);
        }
    }));
    let Some(options) = options() else {
        return;
    };
    let provider = KubernetesProvider::new(options);
    let resources = cluster(&server.kubeconfig());
    for (resource, desired) in &resources[..resources.len() - 1] {
        let planned = plan(&provider, resource, desired).await;
        provider
            .create(CreateRequest {
                resource: resource.clone(),
                planned,
            })
            .await
            .unwrap();
    }
    let (resource, desired) = resources.last().unwrap();
    let planned = plan(&provider, resource, desired).await;
    let error = provider
        .create(CreateRequest {
            resource: resource.clone(),
            planned,
        })
        .await
        .unwrap_err();
    assert_eq!(error.address, "prod/workload/kubernetes_handoff.prod");
    assert!(
        error.message.contains(
            "Application argocd/prod-workload: failed: Degraded: Deployment prod/api: Deployment \"api\" exceeded its progress deadline"
        ),
        "{}",
        error.message
    );
    assert!(!error.message.contains("fake-token"));
}

#[tokio::test]
async fn a_changed_manifest_is_applied_on_the_next_run() {
    let server = FakeApiServer::start().await.unwrap();
    server.set_reactor(ready_reactor());
    let Some(options) = options() else {
        return;
    };
    let provider = KubernetesProvider::new(options);
    let kubeconfig = server.kubeconfig();
    let (resource, desired) = cluster(&kubeconfig).remove(4);
    let planned = plan(&provider, &resource, &desired).await;
    let created = provider
        .create(CreateRequest {
            resource: resource.clone(),
            planned,
        })
        .await
        .unwrap();

    let mut changed = created.attributes.clone();
    changed.insert(
        "quota".into(),
        json!({"cpu": "48", "memory": "64Gi", "pods": 200}),
    );
    changed.insert("default_deny".into(), json!(false));
    let before = server.patch_count();
    let updated = provider
        .update(UpdateRequest {
            resource: resource.clone(),
            id: created.id.clone(),
            prior: created.attributes.clone(),
            planned: changed,
        })
        .await
        .unwrap();
    assert_eq!(
        server.patch_count(),
        before + 1,
        "only the quota is written"
    );
    let quota = server
        .object("v1", "ResourceQuota", Some("prod"), "environment-quota")
        .unwrap();
    assert_eq!(quota["spec"]["hard"]["requests.cpu"], "48");
    assert_eq!(quota["metadata"]["generation"], 2);
    assert!(
        server.objects_of("NetworkPolicy").is_empty(),
        "policies no longer rendered are deleted"
    );

    // Drift made behind InfraFlux's back shows in read and plans as an update.
    server.insert(json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "container-defaults", "namespace": "prod"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "9", "memory": "9Gi"}}]}}));
    let read = provider
        .read(ReadRequest {
            resources: vec![ReadItem {
                resource: resource.clone(),
                id: created.id.clone(),
                prior: updated.attributes.clone(),
            }],
            deep: false,
        })
        .await
        .unwrap();
    let ReadOutcome::Found(refreshed) = &read.results[0].outcome else {
        panic!("{:?}", read.results[0].outcome)
    };
    assert_eq!(
        refreshed["drift"],
        json!(["LimitRange prod/container-defaults differs"])
    );
    let plan = provider
        .plan(PlanRequest {
            resource: resource.clone(),
            prior: Some(refreshed.clone()),
            desired: updated.attributes.clone(),
        })
        .await
        .unwrap();
    assert_eq!(plan.planned["drift"], json!([]));
}

#[tokio::test]
async fn crds_are_waited_for_until_established() {
    let server = FakeApiServer::start().await.unwrap();
    // No reactor: the CRDs stay un-Established, so applying ArgoCD must stop at them
    // and say which and why, and never try the Applications.
    let Some(mut options) = options() else {
        return;
    };
    options.crd_wait.timeout = Duration::from_secs(1);
    let provider = KubernetesProvider::new(options);
    let (resource, desired) = cluster(&server.kubeconfig()).remove(1);
    let planned = plan(&provider, &resource, &desired).await;
    let error = provider
        .create(CreateRequest { resource, planned })
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .starts_with("waiting for CRDs to be Established: 3 objects not ready after 1s"),
        "{}",
        error.message
    );
    assert!(error.message.contains(
        "CustomResourceDefinition applications.argoproj.io: in progress: not Established yet"
    ));
    assert!(
        server
            .requests()
            .iter()
            .all(|(_, path)| !path.contains("namespaces/argocd"))
    );
}

#[tokio::test]
async fn validate_reports_attribute_problems_without_reading_anything() {
    // No mirror and nowhere to download from: validate reads no release file.
    let provider = KubernetesProvider::new(ProviderOptions::default());
    let response = provider
        .validate(infraflux_provider::ValidateRequest {
            resource: resource(PLATFORM, "argocd"),
            desired: attrs(json!({"service": "argocd", "version": "v3.4.0", "ha": "yes"})),
        })
        .await;
    let summaries: Vec<(String, Option<String>)> = response
        .diagnostics
        .iter()
        .map(|d| (d.summary.clone(), d.attribute.clone()))
        .collect();
    assert_eq!(
        summaries,
        [
            ("must be true or false".to_string(), Some("ha".to_string())),
            (
                "a kubeconfig document is required".to_string(),
                Some("kubeconfig".to_string())
            ),
        ]
    );
    let response = provider
        .validate(infraflux_provider::ValidateRequest {
            resource: resource(PLATFORM, "argocd"),
            desired: attrs(json!({"service": "argocd", "version": "v3.4.0"})),
        })
        .await;
    assert_eq!(
        response.diagnostics[0].attribute.as_deref(),
        Some("version")
    );
    assert!(
        response.diagnostics[0].summary.contains("pinned: v3.5.1"),
        "{:?}",
        response.diagnostics
    );
}

#[tokio::test]
async fn an_unreachable_cluster_is_transient_and_keeps_the_kubeconfig_secret() {
    // A port that was just free: nothing listens there any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
         users:\n- name: u\n  user:\n    token: s3cret-token\n"
    );
    let Some(options) = options() else {
        return;
    };
    let provider = KubernetesProvider::new(options);
    let (resource, desired) = cluster(&kubeconfig).remove(4);
    let planned = plan(&provider, &resource, &desired).await;
    let error = provider
        .create(CreateRequest { resource, planned })
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        infraflux_provider::ErrorKind::Transient,
        "{error}"
    );
    assert!(!format!("{error} {error:?}").contains("s3cret-token"));
}

#[test]
fn render_writes_every_manifest_without_a_cluster() {
    let Some(mirror) = infraflux_kubernetes::upstream::testing::shared_mirror() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("resources.json");
    let resources: Vec<Value> = cluster("unused")
        .into_iter()
        .map(|(resource, attributes)| json!({"type": resource.kind, "attributes": attributes}))
        .collect();
    std::fs::write(&input, serde_json::to_string(&resources).unwrap()).unwrap();
    let out = dir.path().join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_infraflux-kubernetes"))
        .arg("--render")
        .arg(&out)
        .arg(&input)
        .env(infraflux_kubernetes::upstream::MIRROR_VAR, &mirror)
        .status()
        .unwrap();
    assert!(status.success());
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(files.len() > 40, "{files:?}");
    assert_eq!(
        files[0],
        "000-core-serviceaccount-kube-system-cilium-install.yaml"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("-argoproj.io-application-argocd-cilium.yaml"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("core-namespace-prod.yaml"))
    );
    let text = std::fs::read_to_string(out.join(files.last().unwrap())).unwrap();
    assert!(text.contains("kind: Application"), "{text}");
    assert!(
        !text.contains(DIGEST),
        "the digest is added only when applying"
    );
}

const DIGEST: &str = infraflux_kubernetes::apply::DIGEST_ANNOTATION;
