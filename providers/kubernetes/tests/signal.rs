//! The ready signal against the fake API server through the real `kube` client: a
//! cluster whose platform, namespace and handoff were applied is ready once its nodes
//! are; a Degraded handoff Application fails the signal with its message.

use std::time::Duration;

use serde_json::{Value, json};

use infraflux_kubernetes::api::ApplyOptions;
use infraflux_kubernetes::apply::apply_manifests;
use infraflux_kubernetes::client::{ClientOptions, KubeClient, Kubeconfig};
use infraflux_kubernetes::provider::{HANDOFF, NAMESPACE, PLATFORM, Releases, render_resource};
use infraflux_kubernetes::signal::{self, CheckState, Expectations, Outcome};
use infraflux_kubernetes::wait::WaitOptions;
use infraflux_lab::kubernetes::{FakeApiServer, ready_reactor};
use infraflux_provider::Attributes;

fn attrs(value: Value) -> Attributes {
    value.as_object().unwrap().clone()
}

/// One dev cluster: cilium, argocd, its namespace and handoff.
fn resources() -> Vec<(&'static str, Attributes)> {
    let workloads = json!({"replicas": 1, "anti_affinity": false,
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    vec![
        (
            PLATFORM,
            attrs(
                json!({"service": "cilium", "version": "1.18.4", "values": {},
                "environment": "dev", "workloads": workloads}),
            ),
        ),
        (
            PLATFORM,
            attrs(
                json!({"service": "argocd", "version": "v3.5.1", "values": {},
                "environment": "dev", "workloads": workloads}),
            ),
        ),
        (
            NAMESPACE,
            attrs(
                json!({"name": "dev", "environment": "dev", "pod_security": "baseline",
                "default_deny": true, "workloads": workloads}),
            ),
        ),
        (
            HANDOFF,
            attrs(json!({"environment": "dev", "project": "dev-workload",
                "application": "dev-workload", "argocd_namespace": "argocd",
                "repository": "https://git.example.internal/platform/apps.git",
                "revision": "main", "path": "environments/dev",
                "destination_namespace": "dev", "automated": true, "sync_wave": 0})),
        ),
    ]
}

fn node(name: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
            "reason": if ready { "KubeletReady" } else { "KubeletNotReady" }}]}})
}

fn options() -> WaitOptions {
    // Bounded and short: the fake answers at once.
    WaitOptions {
        timeout: Duration::from_secs(2),
        interval: Duration::from_millis(20),
    }
}

/// A fake cluster with everything applied (and made ready by the reactor); `None` (a skip
/// is printed) without ArgoCD's release files beside the workspace.
async fn bootstrapped() -> Option<(FakeApiServer, KubeClient, Expectations)> {
    let sources = infraflux_kubernetes::upstream::testing::mirror_sources()?;
    let server = FakeApiServer::start().await.unwrap();
    server.set_reactor(ready_reactor());
    let kubeconfig = Kubeconfig::new(server.kubeconfig()).unwrap();
    let client = KubeClient::new(&kubeconfig, ClientOptions::default())
        .await
        .unwrap();
    let resources = resources();
    let mut releases = Releases::default();
    for (kind, attributes) in &resources {
        let loaded = Releases::load(&sources, kind, attributes).await.unwrap();
        let rendered = render_resource(kind, attributes, &loaded).unwrap();
        releases.extend(loaded);
        apply_manifests(
            &client,
            &rendered.manifests,
            ApplyOptions::default(),
            options(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let expectations =
        Expectations::from_resources(2, resources.iter().map(|(k, a)| (*k, a)), &releases).unwrap();
    Some((server, client, expectations))
}

#[tokio::test]
async fn ready_once_nodes_are_ready_and_everything_applied_is_current() {
    let Some((server, client, expectations)) = bootstrapped().await else {
        return;
    };
    server.insert(node("cp-1", true));
    server.insert(node("worker-1", false));

    let report = signal::wait(&client, &expectations, options()).await;
    assert_eq!(report.outcome, Outcome::TimedOut);
    let pending: Vec<&str> = report.not_ready().map(|c| c.name.as_str()).collect();
    assert_eq!(pending, ["nodes"], "{report:#?}");
    assert_eq!(report.checks[1].not_ready[0].object, "Node worker-1");

    server.insert(node("worker-1", true));
    let report = signal::wait(&client, &expectations, options()).await;
    assert_eq!(report.outcome, Outcome::Ready, "{report:#?}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "api",
            "nodes",
            "platform cilium",
            "platform argocd",
            "rbac and network policies",
            "namespace dev",
            "handoff dev-workload"
        ]
    );
}

#[tokio::test]
async fn a_degraded_handoff_fails_the_signal_with_its_message() {
    let Some((server, client, expectations)) = bootstrapped().await else {
        return;
    };
    server.insert(node("cp-1", true));
    server.insert(node("worker-1", true));
    assert!(server.set_status(
        "argoproj.io/v1alpha1",
        "Application",
        Some("argocd"),
        "dev-workload",
        json!({"sync": {"status": "Synced"},
            "health": {"status": "Degraded", "message": "Deployment web: CrashLoopBackOff"},
            "operationState": {"phase": "Succeeded"}}),
    ));
    let report = signal::wait(&client, &expectations, options()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let handoff = report.checks.last().unwrap();
    assert_eq!(handoff.name, "handoff dev-workload");
    assert_eq!(handoff.state, CheckState::Failed);
    assert_eq!(
        handoff.not_ready[0].status,
        "failed: Degraded: Deployment web: CrashLoopBackOff"
    );
}
