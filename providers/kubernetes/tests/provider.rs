//! The provider end to end against a real control plane (etcd, kube-apiserver,
//! controller manager, scheduler and kwok's fake nodes, from infraflux-testkit) through
//! the real `kube` client: bootstrap a cluster's platform, namespace and handoff, every
//! rendered object created and its workloads really rolled out; a re-run writes nothing;
//! a Degraded Application fails with its message; a changed manifest is applied on the
//! next run and objects no longer rendered are deleted; drift made by another tool is
//! seen, and repairing it conflicts with that tool's field ownership until forced; a
//! delete removes everything. ArgoCD's application controller is played by the test
//! (infraflux_testkit::argocd): nothing here syncs Git.
//!
//! What is expected is derived from what the renderer returns for the same attributes,
//! never from a list of objects written here.

mod support;

use serde_json::{Value, json};

use infraflux_kubernetes::api::KubeApi;
use infraflux_kubernetes::object::ObjectRef;
use infraflux_kubernetes::provider::{
    HANDOFF, KubernetesProvider, NAMESPACE, PLATFORM, ProviderOptions, Releases, render_resource,
};
use infraflux_kubernetes::readiness;
use infraflux_kubernetes::upstream::Sources;
use infraflux_provider::{
    Attributes, CreateRequest, DeleteRequest, ErrorKind, PlanRequest, Provider, ReadItem,
    ReadOutcome, ReadRequest, ResourceRef, UpdateRequest,
};
use infraflux_testkit::argocd::{self, ApplicationController};
use support::{ControlPlane, Counting, control_plane, mirror, options};

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
    json!({"replicas": 2, "anti_affinity": false,
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
}

/// The namespace resource of `environment`.
fn namespace(kubeconfig: &str, environment: &str) -> (ResourceRef, Attributes) {
    (
        resource(NAMESPACE, environment),
        attrs(
            json!({"name": environment, "environment": environment, "pod_security": "restricted",
            "default_deny": true, "quota": {"cpu": "32", "memory": "64Gi", "pods": 200},
            "workloads": workloads(), "kubeconfig": kubeconfig}),
        ),
    )
}

/// The resources of one cluster, in graph order; the namespace and the handoff are
/// `environment`'s (the platform is the cluster's, the same for every environment).
fn cluster(kubeconfig: &str, environment: &str) -> Vec<(ResourceRef, Attributes)> {
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
        namespace(kubeconfig, environment),
        (
            resource(HANDOFF, environment),
            attrs(
                json!({"environment": environment, "project": format!("{environment}-workload"),
                "application": format!("{environment}-workload"), "argocd_namespace": "argocd",
                "repository": "https://git.example.internal/platform/apps.git",
                "revision": "v1.4.2", "path": format!("environments/{environment}"),
                "destination_namespace": environment, "automated": true, "sync_wave": 2,
                "kubeconfig": kubeconfig}),
            ),
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

async fn create(
    provider: &KubernetesProvider,
    resource: &ResourceRef,
    desired: &Attributes,
) -> Result<(String, Attributes), infraflux_provider::ProviderError> {
    let planned = plan(provider, resource, desired).await;
    provider
        .create(CreateRequest {
            resource: resource.clone(),
            planned,
            replacing: false,
        })
        .await
        .map(|created| (created.id, created.attributes))
}

async fn read(
    provider: &KubernetesProvider,
    resource: &ResourceRef,
    id: &str,
    prior: &Attributes,
) -> ReadOutcome {
    let mut response = provider
        .read(ReadRequest {
            resources: vec![ReadItem {
                resource: resource.clone(),
                id: id.to_string(),
                prior: prior.clone(),
            }],
            deep: false,
        })
        .await
        .unwrap();
    response.results.remove(0).outcome
}

/// The objects a resource renders to, in the renderer's order, with the release files
/// it installs read from `upstream`.
async fn rendered(upstream: &Sources, kind: &str, attributes: &Attributes) -> Vec<ObjectRef> {
    let releases = Releases::load(upstream, kind, attributes).await.unwrap();
    render_resource(kind, attributes, &releases)
        .unwrap()
        .manifests
        .iter()
        .filter_map(ObjectRef::from_manifest)
        .collect()
}

/// A provider on the real client that counts its writes, reading release files from
/// `upstream`.
fn provider(counting: &std::sync::Arc<Counting>, upstream: &Sources) -> KubernetesProvider {
    KubernetesProvider::with_connector(counting.clone(), options(upstream.clone()))
}

fn plane() -> Option<&'static ControlPlane> {
    control_plane::shared()
}

#[tokio::test]
async fn bootstrap_rolls_out_on_real_nodes_and_a_rerun_writes_nothing() {
    let Some(plane) = plane() else { return };
    let Some(upstream) = mirror() else { return };
    let _alone = plane.exclusive();
    // As many nodes as replicas: prod runs ArgoCD's HA manifest, whose redis-ha servers
    // (three) and haproxies, API servers and repo servers (two each) run one replica per
    // node (required anti-affinity on the host name); with fewer nodes the rest never
    // runs. The control plane's own kwok node and two more.
    for node in ["kwok-node-1", "kwok-node-2"] {
        plane.add_node(node).await.unwrap();
    }
    let _argocd = ApplicationController::healthy(plane.endpoint());
    let counting = std::sync::Arc::new(Counting::default());
    let provider = provider(&counting, &upstream);
    let kubeconfig = plane.kubeconfig_text();
    let client = support::client(plane).await;

    let mut state = Vec::new();
    for (resource, desired) in cluster(&kubeconfig, "prod") {
        let (id, attributes) = create(&provider, &resource, &desired)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Every rendered object is there, recorded, and Current by kstatus on the live
        // object: Deployments, DaemonSets and StatefulSets rolled out on kwok's nodes,
        // CRDs Established, Applications Synced and Healthy.
        let objects = rendered(&upstream, &resource.kind, &desired).await;
        assert!(!objects.is_empty(), "{}", resource.address);
        assert_eq!(
            attributes["objects"].as_array().unwrap().len(),
            objects.len(),
            "{}",
            resource.address
        );
        for object in &objects {
            let live = client.get(object).await.unwrap();
            let status = readiness::status(live.as_ref());
            assert!(status.is_current(), "{object}: {status}");
        }
        state.push((resource, id, attributes));
    }
    // The workloads among them ran on kwok's nodes: every pod Running and Ready there.
    let mut rolled_out = 0;
    for (resource, _, attributes) in &state {
        rolled_out += rendered(&upstream, &resource.kind, attributes)
            .await
            .iter()
            .filter(|o| ["Deployment", "DaemonSet", "StatefulSet"].contains(&o.kind.as_str()))
            .count();
    }
    assert!(rolled_out > 0, "the platform has workloads to roll out");
    let pods = client.list("v1", "Pod", None).await.unwrap();
    assert!(!pods.is_empty());
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?");
        assert!(
            pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|node| node.starts_with("kwok-")),
            "{name}"
        );
        assert_eq!(
            readiness::status(Some(pod)),
            readiness::Status::Current,
            "{name}"
        );
    }

    let namespace = client
        .get(&ObjectRef::new("v1", "Namespace", None, "prod"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    // Cilium is what its install Job installs (the Job ran to completion on a kwok
    // node); InfraFlux applies the installer's ServiceAccount, binding, values and Job.
    let jobs = client
        .list("batch/v1", "Job", Some("kube-system"))
        .await
        .unwrap();
    assert!(
        jobs.iter().any(|job| job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("cilium-install-")),
        "{jobs:?}"
    );
    assert_eq!(state[0].2["objects"].as_array().unwrap().len(), 4);
    // The environment's four NetworkPolicies, and the eight of ArgoCD's HA manifest
    // (prod is HA), with its redis-ha StatefulSet.
    let policies = client
        .list("networking.k8s.io/v1", "NetworkPolicy", None)
        .await
        .unwrap();
    let in_namespace = |namespace: &str| {
        policies
            .iter()
            .filter(|p| p["metadata"]["namespace"] == namespace)
            .count()
    };
    assert_eq!((in_namespace("prod"), in_namespace("argocd")), (4, 8));
    let redis = ObjectRef::new(
        "apps/v1",
        "StatefulSet",
        Some("argocd"),
        "argocd-redis-ha-server",
    );
    assert!(client.get(&redis).await.unwrap().is_some());
    let handoff = client
        .get(&ObjectRef::new(
            "argoproj.io/v1alpha1",
            "Application",
            Some("argocd"),
            "prod-workload",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        handoff["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
        "2"
    );
    assert_eq!(state[0].1, "platform/cilium");
    assert!(counting.applies() > 0);

    // A second run of every resource (an update with the same attributes) and a
    // refresh: no writes at all, and no drift.
    let (applies, deletes) = (counting.applies(), counting.deletes());
    for (resource, id, attributes) in &state {
        provider
            .update(UpdateRequest {
                resource: resource.clone(),
                id: id.clone(),
                prior: attributes.clone(),
                planned: attributes.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (resource, id, attributes) in &state {
        let ReadOutcome::Found(refreshed) = read(&provider, resource, id, attributes).await else {
            panic!("{}: not found", resource.address)
        };
        assert_eq!(refreshed["drift"], json!([]), "{}", resource.address);
    }
    assert_eq!(
        (counting.applies(), counting.deletes()),
        (applies, deletes),
        "a re-run must not write"
    );
}

#[tokio::test]
async fn a_degraded_application_fails_with_its_message() {
    let Some(plane) = plane() else { return };
    let Some(upstream) = mirror() else { return };
    let _alone = plane.exclusive();
    let _argocd = ApplicationController::start(plane.endpoint(), |application| {
        Some(if application["metadata"]["name"] == "degraded-workload" {
            argocd::degraded(
                application,
                "api",
                "Deployment \"api\" exceeded its progress deadline",
            )
        } else {
            argocd::synced_and_healthy(application)
        })
    });
    // The HA ArgoCD rolls out on three nodes (see the bootstrap test).
    for node in ["kwok-node-1", "kwok-node-2"] {
        plane.add_node(node).await.unwrap();
    }
    let counting = std::sync::Arc::new(Counting::default());
    let provider = provider(&counting, &upstream);
    let mut resources = cluster(&plane.kubeconfig_text(), "degraded");
    // ArgoCD without adopting Cilium: its adoption Application on the shared control
    // plane would make the provider leave Cilium alone in the bootstrap test.
    resources[1].1.remove("adopt");
    // ArgoCD, the namespace, then the handoff.
    for index in [1, 4] {
        let (resource, desired) = &resources[index];
        create(&provider, resource, desired)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (resource, desired) = resources.last().unwrap();
    let error = create(&provider, resource, desired).await.unwrap_err();
    assert_eq!(error.address, "prod/workload/kubernetes_handoff.degraded");
    assert!(
        error.message.contains(
            "Application argocd/degraded-workload: failed: Degraded: Deployment degraded/api: Deployment \"api\" exceeded its progress deadline"
        ),
        "{}",
        error.message
    );
    assert!(!error.message.contains("client-key-data"));
}

#[tokio::test]
async fn a_changed_manifest_is_applied_and_drift_is_repaired_once_forced() {
    let Some(plane) = plane() else { return };
    let counting = std::sync::Arc::new(Counting::default());
    let provider = provider(&counting, &Sources::default());
    let client = support::client(plane).await;
    let (resource, desired) = namespace(&plane.kubeconfig_text(), "changes");
    let (id, created) = create(&provider, &resource, &desired)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = rendered(&Sources::default(), NAMESPACE, &desired).await;

    let mut changed = created.clone();
    changed.insert(
        "quota".into(),
        json!({"cpu": "48", "memory": "64Gi", "pods": 200}),
    );
    changed.insert("default_deny".into(), json!(false));
    let after = rendered(&Sources::default(), NAMESPACE, &changed).await;
    let dropped: Vec<&ObjectRef> = before.iter().filter(|o| !after.contains(o)).collect();
    assert!(!dropped.is_empty(), "no default-deny policies any more");
    let (applies, deletes) = (counting.applies(), counting.deletes());
    let updated = provider
        .update(UpdateRequest {
            resource: resource.clone(),
            id: id.clone(),
            prior: created.clone(),
            planned: changed,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counting.applies(), applies + 1, "only the quota is written");
    assert_eq!(counting.deletes(), deletes + dropped.len());
    let quota = ObjectRef::new("v1", "ResourceQuota", Some("changes"), "environment-quota");
    let live = client.get(&quota).await.unwrap().unwrap();
    assert_eq!(live["spec"]["hard"]["requests.cpu"], "48");
    for object in dropped {
        assert!(
            client.get(object).await.unwrap().is_none(),
            "{object} is no longer rendered and must be deleted"
        );
    }

    // Another tool changes the LimitRange (as `kubectl edit` does: a merge patch under
    // its own field manager). read sees the drift, and the plan repairs it.
    let endpoint = plane.endpoint();
    let path = "/api/v1/namespaces/changes/limitranges/container-defaults";
    let answer = endpoint
        .merge_patch(
            path,
            &json!({"spec": {"limits": [{"type": "Container",
                "default": {"cpu": "9", "memory": "9Gi"}}]}}),
            "kubectl-edit",
        )
        .await;
    assert!(answer.is_success(), "{answer}");
    let ReadOutcome::Found(refreshed) = read(&provider, &resource, &id, &updated.attributes).await
    else {
        panic!("the namespace is gone")
    };
    assert_eq!(
        refreshed["drift"],
        json!(["LimitRange changes/container-defaults differs"])
    );
    let planned = provider
        .plan(PlanRequest {
            resource: resource.clone(),
            prior: Some(&refreshed),
            desired: updated.attributes.clone(),
        })
        .await
        .unwrap()
        .planned;
    assert_eq!(planned["drift"], json!([]));
    // The edit made `kubectl-edit` the owner of the list: taking it back is a conflict
    // the API server reports, named, until the resource says to force.
    let error = provider
        .update(UpdateRequest {
            resource: resource.clone(),
            id: id.clone(),
            prior: refreshed.clone(),
            planned: planned.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict, "{error}");
    assert!(
        error.message.contains("(owned by kubectl-edit)"),
        "{}",
        error.message
    );
    let mut forced = planned.clone();
    forced.insert("force_conflicts".into(), json!(true));
    provider
        .update(UpdateRequest {
            resource: resource.clone(),
            id: id.clone(),
            prior: refreshed,
            planned: forced.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ReadOutcome::Found(repaired) = read(&provider, &resource, &id, &forced).await else {
        panic!("the namespace is gone")
    };
    assert_eq!(repaired["drift"], json!([]));
}

#[tokio::test]
async fn a_field_another_manager_owns_conflicts_until_forced() {
    let Some(plane) = plane() else { return };
    let endpoint = plane.endpoint();
    // helm installed the namespace's quota first, with another value.
    for (path, body) in [
        (
            "/api/v1/namespaces/owned".to_string(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "owned"}}),
        ),
        (
            "/api/v1/namespaces/owned/resourcequotas/environment-quota".to_string(),
            json!({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "environment-quota", "namespace": "owned"},
                "spec": {"hard": {"requests.cpu": "8"}}}),
        ),
    ] {
        let answer = endpoint.apply(&path, &body, "helm", false).await;
        assert!(answer.is_success(), "{path}: {answer}");
    }
    let counting = std::sync::Arc::new(Counting::default());
    let provider = provider(&counting, &Sources::default());
    let (resource, desired) = namespace(&plane.kubeconfig_text(), "owned");
    let error = create(&provider, &resource, &desired).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict, "{error}");
    assert!(
        error.message.contains(
            "ResourceQuota owned/environment-quota: conflicts with other field managers: .spec.hard.requests.cpu (owned by helm)"
        ),
        "{}",
        error.message
    );
    let mut forced = desired.clone();
    forced.insert("force_conflicts".into(), json!(true));
    create(&provider, &resource, &forced)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let quota = endpoint
        .get("/api/v1/namespaces/owned/resourcequotas/environment-quota")
        .await;
    assert_eq!(quota.body["spec"]["hard"]["requests.cpu"], "32");
    let owners: Vec<&str> = quota.body["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["fieldsV1"]["f:spec"]["f:hard"]["f:requests.cpu"].is_object())
        .map(|entry| entry["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["infraflux"]);
}

#[tokio::test]
async fn delete_removes_every_object_and_the_namespace_goes() {
    let Some(plane) = plane() else { return };
    let counting = std::sync::Arc::new(Counting::default());
    let provider = provider(&counting, &Sources::default());
    let client = support::client(plane).await;
    let (resource, desired) = namespace(&plane.kubeconfig_text(), "removed");
    let (id, created) = create(&provider, &resource, &desired)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    provider
        .delete(DeleteRequest {
            resource: resource.clone(),
            id: id.clone(),
            prior: created.clone(),
            teardown: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The namespace controller finishes what the delete started: the namespace is
    // Terminating, then gone with what was in it.
    let path = "/api/v1/namespaces/removed";
    let gone = plane
        .endpoint()
        .wait_until(path, std::time::Duration::from_secs(90), |answer| {
            answer.status == 404
        })
        .await;
    assert!(gone.is_some(), "the namespace is still there after 90s");
    for object in rendered(&Sources::default(), NAMESPACE, &desired).await {
        assert!(client.get(&object).await.unwrap().is_none(), "{object}");
    }
    assert!(matches!(
        read(&provider, &resource, &id, &created).await,
        ReadOutcome::Gone
    ));
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
    // The namespace: no release file to read.
    let provider = KubernetesProvider::new(options(Sources::default()));
    let (resource, desired) = cluster(&kubeconfig, "prod").remove(4);
    let planned = plan(&provider, &resource, &desired).await;
    let error = provider
        .create(CreateRequest {
            resource,
            planned,
            replacing: false,
        })
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
    let resources: Vec<Value> = cluster("unused", "prod")
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
