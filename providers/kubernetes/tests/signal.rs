//! The ready signal on a real control plane, through the real `kube` client: what a
//! cluster's platform, namespace and handoff render is applied, the controller manager,
//! the scheduler and kwok run it, and the signal waits on the real objects — ArgoCD's
//! Deployments and StatefulSet (from its v3.5.1 release manifest) available on kwok's
//! nodes, Cilium's install Job complete, the CRDs Established, the Applications Synced
//! and Healthy (the test plays ArgoCD's application controller: nothing here syncs Git).
//! It is not ready while an Application has no status or a node is missing, turns ready
//! once they are there, and a Degraded handoff fails it with its message.

mod support;

use std::time::Duration;

use serde_json::{Value, json};

use infraflux_kubernetes::api::ApplyOptions;
use infraflux_kubernetes::apply::apply_manifests;
use infraflux_kubernetes::provider::{HANDOFF, NAMESPACE, PLATFORM, Releases, render_resource};
use infraflux_kubernetes::signal::{self, CheckState, Expectations, Outcome, ReadyReport};
use infraflux_kubernetes::wait::WaitOptions;
use infraflux_provider::Attributes;
use infraflux_testkit::argocd::{self, ApplicationController};
use support::{ControlPlane, control_plane, mirror};

fn attrs(value: Value) -> Attributes {
    value.as_object().unwrap().clone()
}

/// One cluster: cilium, argocd, the namespace and handoff of `environment`.
fn resources(environment: &str) -> Vec<(&'static str, Attributes)> {
    let workloads = json!({"replicas": 1, "anti_affinity": false,
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    vec![
        (
            PLATFORM,
            attrs(
                json!({"service": "cilium", "version": "1.18.4", "values": {},
                "environment": environment, "workloads": workloads}),
            ),
        ),
        (
            PLATFORM,
            attrs(
                json!({"service": "argocd", "version": "v3.5.1", "values": {},
                "environment": environment, "workloads": workloads}),
            ),
        ),
        (
            NAMESPACE,
            attrs(
                json!({"name": environment, "environment": environment, "pod_security": "baseline",
                "default_deny": true, "workloads": workloads}),
            ),
        ),
        (
            HANDOFF,
            attrs(
                json!({"environment": environment, "project": format!("{environment}-workload"),
                "application": format!("{environment}-workload"), "argocd_namespace": "argocd",
                "repository": "https://git.example.internal/platform/apps.git",
                "revision": "main", "path": format!("environments/{environment}"),
                "destination_namespace": environment, "automated": true, "sync_wave": 0}),
            ),
        ),
    ]
}

fn within(seconds: u64) -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(seconds),
        interval: Duration::from_millis(200),
    }
}

/// Everything `environment`'s resources render (ArgoCD from its release files in
/// `upstream`), applied as the provider applies it (CRDs Established first); the
/// expectations of a cluster of `nodes` nodes.
async fn bootstrapped(
    plane: &ControlPlane,
    upstream: &infraflux_kubernetes::upstream::Sources,
    environment: &str,
    nodes: usize,
) -> (infraflux_kubernetes::client::KubeClient, Expectations) {
    let client = support::client(plane).await;
    let resources = resources(environment);
    let mut releases = Releases::default();
    for (kind, attributes) in &resources {
        let loaded = Releases::load(upstream, kind, attributes).await.unwrap();
        let rendered = render_resource(kind, attributes, &loaded).unwrap();
        releases.extend(loaded);
        apply_manifests(
            &client,
            &rendered.manifests,
            ApplyOptions::default(),
            within(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let expectations =
        Expectations::from_resources(nodes, resources.iter().map(|(k, a)| (*k, a)), &releases)
            .unwrap();
    (client, expectations)
}

fn pending(report: &ReadyReport) -> Vec<&str> {
    report.not_ready().map(|c| c.name.as_str()).collect()
}

/// The components with an ArgoCD Application among their objects.
fn with_applications(expectations: &Expectations) -> Vec<&str> {
    expectations
        .components
        .iter()
        .filter(|c| c.objects.iter().any(|(o, _)| o.kind == "Application"))
        .map(|c| c.name.as_str())
        .collect()
}

#[tokio::test]
async fn ready_once_applications_are_synced_and_every_node_runs() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let Some(upstream) = mirror() else { return };
    let _alone = plane.exclusive();
    let (client, expectations) = bootstrapped(plane, &upstream, "dev", 1).await;
    let names: Vec<String> = ["api", "nodes"]
        .into_iter()
        .map(String::from)
        .chain(expectations.components.iter().map(|c| c.name.clone()))
        .collect();

    // No application controller yet: the workloads roll out, the CRDs are Established,
    // but nothing gives the Applications a status.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let waiting_for_argocd = with_applications(&expectations);
    assert!(waiting_for_argocd.contains(&"handoff dev-workload"));
    let report = loop {
        let report = signal::check(&client, &expectations).await;
        if pending(&report) == waiting_for_argocd || tokio::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pending(&report), waiting_for_argocd, "{report:#?}");
    let handoff = report.checks.last().unwrap();
    assert_eq!(handoff.state, CheckState::Pending);
    assert!(
        handoff
            .not_ready
            .iter()
            .any(|n| n.object == "Application argocd/dev-workload"
                && n.status == "in progress: sync status Unknown"),
        "{handoff:#?}"
    );

    // ArgoCD syncs: the signal turns ready.
    let _argocd = ApplicationController::healthy(plane.endpoint());
    let report = signal::wait(&client, &expectations, within(120)).await;
    assert_eq!(report.outcome, Outcome::Ready, "{report:#?}");
    let reported: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(reported, names);

    // A cluster of two nodes is not ready with one...
    let two = Expectations {
        nodes: 2,
        ..expectations.clone()
    };
    let report = signal::check(&client, &two).await;
    assert_eq!(pending(&report), ["nodes"], "{report:#?}");
    assert_eq!(report.checks[1].summary, "1/2 Ready (1 of 2 registered)");
    // ...and ready once the second has joined and is Ready.
    plane.add_node("kwok-node-1").await.unwrap();
    let report = signal::wait(&client, &two, within(120)).await;
    assert_eq!(report.outcome, Outcome::Ready, "{report:#?}");
    assert_eq!(report.checks[1].summary, "2/2 Ready");
}

#[tokio::test]
async fn a_degraded_handoff_fails_the_signal_with_its_message() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let Some(upstream) = mirror() else { return };
    let _alone = plane.exclusive();
    let _argocd = ApplicationController::start(plane.endpoint(), |application| {
        Some(if application["metadata"]["name"] == "qa-workload" {
            argocd::degraded(application, "web", "CrashLoopBackOff")
        } else {
            argocd::synced_and_healthy(application)
        })
    });
    let (client, expectations) = bootstrapped(plane, &upstream, "qa", 1).await;
    let report = signal::wait(&client, &expectations, within(120)).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    let handoff = report.checks.last().unwrap();
    assert_eq!(handoff.name, "handoff qa-workload");
    assert_eq!(handoff.state, CheckState::Failed);
    assert_eq!(
        handoff.not_ready[0].status,
        "failed: Degraded: Deployment qa/web: CrashLoopBackOff"
    );
}
