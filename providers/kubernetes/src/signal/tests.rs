//! The ready signal on JSON fixtures: what it reports when ready, pending, failed or
//! unreachable.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::*;
use crate::api::{ApiError, ApplyOptions};

/// A cluster as JSON objects; `get` and `list` answer from them.
#[derive(Default)]
struct Fixtures {
    objects: Mutex<BTreeMap<ObjectRef, Value>>,
    unreachable: bool,
    reads: Mutex<usize>,
}

impl Fixtures {
    fn put(&self, object: Value) {
        let key = ObjectRef::from_manifest(&object).expect("a fixture with identity");
        self.objects.lock().unwrap().insert(key, object);
    }

    fn reads(&self) -> usize {
        *self.reads.lock().unwrap()
    }
}

#[async_trait]
impl KubeApi for Fixtures {
    async fn apply(&self, manifest: &Value, _: ApplyOptions) -> Result<Value, ApiError> {
        Ok(manifest.clone())
    }
    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ApiError> {
        *self.reads.lock().unwrap() += 1;
        if self.unreachable {
            return Err(ApiError::Transport("connection refused".into()));
        }
        Ok(self.objects.lock().unwrap().get(object).cloned())
    }
    async fn delete(&self, _: &ObjectRef) -> Result<bool, ApiError> {
        Ok(false)
    }
    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        _: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        *self.reads.lock().unwrap() += 1;
        if self.unreachable {
            return Err(ApiError::Transport(
                "https://10.0.0.10:6443: connection refused".into(),
            ));
        }
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| o.api_version == api_version && o.kind == kind)
            .map(|(_, v)| v.clone())
            .collect())
    }
    async fn refresh_discovery(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

fn node(name: &str, ready: bool) -> Value {
    let condition = if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady"})
    } else {
        json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "message": "container runtime network not ready: cni plugin not initialized"})
    };
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
            condition]}})
}

fn deployment(available: bool) -> Value {
    let count = i64::from(available);
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "argocd-server", "namespace": "argocd", "generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": count, "availableReplicas": count,
            "conditions": [{"type": "Available",
                "status": if available { "True" } else { "False" },
                "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                "message": "Deployment does not have minimum availability."}]}})
}

fn network_policy() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": "dev"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        "status": {"phase": "Active"}})
}

/// The handoff Application: synced at `compared` (the target revision ArgoCD compared
/// against), healthy as `health`, last operation `phase`.
fn application(compared: &str, health: Value, phase: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "dev-workload", "namespace": "argocd"},
        "spec": {"source": {"repoURL": "https://git.example.internal/apps.git",
            "targetRevision": "main", "path": "environments/dev"}},
        "status": {
            "sync": {"status": "Synced", "revision": "4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e",
                "comparedTo": {"source": {"targetRevision": compared}}},
            "health": health,
            "operationState": {"phase": phase, "message": "successfully synced"}}})
}

fn object(manifest: &Value) -> ObjectRef {
    ObjectRef::from_manifest(manifest).unwrap()
}

fn expectations() -> Expectations {
    Expectations {
        nodes: 2,
        components: vec![
            Component {
                name: "platform argocd".into(),
                objects: vec![(object(&deployment(true)), Expectation::default())],
            },
            Component {
                name: ACCESS_CHECK.into(),
                objects: vec![(object(&network_policy()), Expectation::default())],
            },
            Component {
                name: "handoff dev-workload".into(),
                objects: vec![(
                    object(&application("main", json!({}), "Succeeded")),
                    Expectation {
                        revision: Some("main".into()),
                    },
                )],
            },
        ],
    }
}

/// Every object of [`expectations`] ready.
fn ready_cluster() -> Fixtures {
    let fixtures = Fixtures::default();
    for object in [
        namespace("kube-system"),
        namespace("dev"),
        node("cp-1", true),
        node("worker-1", true),
        deployment(true),
        network_policy(),
        application("main", json!({"status": "Healthy"}), "Succeeded"),
    ] {
        fixtures.put(object);
    }
    fixtures
}

fn options() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(60),
        interval: Duration::from_secs(5),
    }
}

fn check_named<'a>(report: &'a ReadyReport, name: &str) -> &'a CheckReport {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {report:#?}"))
}

#[tokio::test]
async fn ready_when_every_check_passes_in_report_order() {
    let report = check(&ready_cluster(), &expectations()).await;
    assert_eq!(report.outcome, Outcome::Ready, "{report:#?}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "api",
            "nodes",
            "platform argocd",
            "rbac and network policies",
            "handoff dev-workload"
        ]
    );
    assert!(report.checks.iter().all(|c| c.state == CheckState::Ready));
    assert_eq!(check_named(&report, "nodes").summary, "2/2 Ready");
    assert_eq!(
        check_named(&report, "platform argocd").summary,
        "1/1 object current"
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_names_each_object_not_ready_and_its_conditions() {
    let cluster = ready_cluster();
    cluster.put(node("worker-1", false));
    cluster.put(deployment(false));
    let report = wait(&cluster, &expectations(), options()).await;
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert_eq!(report.waited_seconds, 60);

    let nodes = check_named(&report, "nodes");
    assert_eq!(nodes.state, CheckState::Pending);
    assert_eq!(nodes.summary, "1/2 Ready");
    assert_eq!(
        nodes.not_ready,
        [NotReady {
            object: "Node worker-1".into(),
            status: "not Ready".into(),
            conditions: vec![
                "Ready=False KubeletNotReady: container runtime network not ready: cni plugin not initialized"
                    .into()
            ],
        }]
    );
    let argocd = check_named(&report, "platform argocd");
    assert_eq!(argocd.state, CheckState::Pending);
    assert_eq!(argocd.summary, "0/1 object current");
    assert_eq!(
        argocd.not_ready[0].object,
        "Deployment argocd/argocd-server"
    );
    assert_eq!(argocd.not_ready[0].status, "in progress: available: 0/1");
    assert_eq!(
        argocd.not_ready[0].conditions,
        [
            "Available=False MinimumReplicasUnavailable: Deployment does not have minimum availability."
        ]
    );
    // What was ready is reported as ready, not lumped in with the rest.
    assert_eq!(
        check_named(&report, "handoff dev-workload").state,
        CheckState::Ready
    );
}

#[tokio::test(start_paused = true)]
async fn a_degraded_application_fails_at_once_with_its_message() {
    let cluster = ready_cluster();
    cluster.put(application(
        "main",
        json!({"status": "Degraded", "message": "Deployment web: CrashLoopBackOff"}),
        "Succeeded",
    ));
    let report = wait(&cluster, &expectations(), options()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        report.waited_seconds, 0,
        "no waiting for what cannot recover"
    );
    let handoff = check_named(&report, "handoff dev-workload");
    assert_eq!(handoff.state, CheckState::Failed);
    assert_eq!(
        handoff.not_ready[0].status,
        "failed: Degraded: Deployment web: CrashLoopBackOff"
    );
    // One pass: api list, node list, three objects.
    assert_eq!(cluster.reads(), 5);
}

#[tokio::test]
async fn an_application_at_another_revision_is_not_ready() {
    let cluster = ready_cluster();
    cluster.put(application(
        "release-1",
        json!({"status": "Healthy"}),
        "Succeeded",
    ));
    let report = check(&cluster, &expectations()).await;
    assert!(!report.is_ready());
    let handoff = check_named(&report, "handoff dev-workload");
    assert_eq!(handoff.state, CheckState::Pending);
    assert!(
        handoff.not_ready[0]
            .status
            .starts_with("in progress: not yet synced at revision main"),
        "{handoff:?}"
    );
}

#[tokio::test]
async fn missing_network_policies_and_unregistered_nodes_are_named() {
    let cluster = ready_cluster();
    cluster
        .objects
        .lock()
        .unwrap()
        .retain(|o, _| o.kind != "NetworkPolicy" && o.name != "worker-1");
    let report = check(&cluster, &expectations()).await;
    let access = check_named(&report, ACCESS_CHECK);
    assert_eq!(access.state, CheckState::Pending);
    assert_eq!(
        access.not_ready,
        [NotReady {
            object: "NetworkPolicy dev/default-deny".into(),
            status: "not found".into(),
            conditions: Vec::new(),
        }]
    );
    assert_eq!(
        check_named(&report, "nodes").summary,
        "1/2 Ready (1 of 2 registered)"
    );
    let pending: Vec<&str> = report.not_ready().map(|c| c.name.as_str()).collect();
    assert_eq!(pending, ["nodes", ACCESS_CHECK]);
}

#[tokio::test]
async fn an_unreachable_api_is_one_reason_not_one_per_object() {
    let cluster = Fixtures {
        unreachable: true,
        ..Fixtures::default()
    };
    let report = check(&cluster, &expectations()).await;
    assert!(!report.is_ready());
    let api = check_named(&report, "api");
    assert_eq!(api.state, CheckState::Pending);
    assert_eq!(
        api.summary,
        "not reachable: https://10.0.0.10:6443: connection refused"
    );
    assert!(
        report.checks[1..]
            .iter()
            .all(|c| c.summary == "not checked: the API is not reachable"),
        "{report:#?}"
    );
    assert_eq!(cluster.reads(), 1);
}

fn attrs(value: Value) -> Attributes {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn expectations_come_from_what_the_provider_renders() {
    let workloads = json!({"replicas": 1, "anti_affinity": false,
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let argocd = attrs(
        json!({"service": "argocd", "version": "v3.5.1", "values": {},
        "environment": "dev", "workloads": workloads}),
    );
    let namespace = attrs(
        json!({"name": "dev", "environment": "dev", "pod_security": "baseline",
        "default_deny": true, "workloads": workloads}),
    );
    let handoff = attrs(json!({"environment": "dev", "project": "dev-workload",
        "application": "dev-workload", "argocd_namespace": "argocd",
        "repository": "https://git.example.internal/platform/apps.git",
        "revision": "main", "path": "environments/dev",
        "destination_namespace": "dev", "automated": true, "sync_wave": 0}));
    let vm = attrs(json!({"name": "cp-1"}));
    let Some(sources) = crate::upstream::testing::mirror_sources() else {
        return;
    };
    let releases = crate::provider::Releases::load(&sources, "kubernetes_platform", &argocd)
        .await
        .unwrap();
    let expectations = Expectations::from_resources(
        3,
        [
            ("kubernetes_handoff", &handoff),
            ("proxmox_vm", &vm),
            ("kubernetes_platform", &argocd),
            ("kubernetes_namespace", &namespace),
        ],
        &releases,
    )
    .unwrap();
    assert_eq!(expectations.nodes, 3);
    let names: Vec<&str> = expectations
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "platform argocd",
            ACCESS_CHECK,
            "namespace dev",
            "handoff dev-workload"
        ]
    );
    let find = |component: usize, kind: &str, name: &str| {
        expectations.components[component]
            .objects
            .iter()
            .find(|(o, _)| o.kind == kind && o.name == name)
            .cloned()
    };
    assert!(find(0, "Deployment", "argocd-server").is_some());
    assert!(
        find(0, "ServiceAccount", "argocd-server").is_none(),
        "RBAC is its own check"
    );
    assert!(find(1, "NetworkPolicy", "default-deny").is_some());
    assert!(find(1, "ClusterRole", "argocd-server").is_some());
    assert!(find(2, "Namespace", "dev").is_some());
    let (_, expectation) = find(3, "Application", "dev-workload").unwrap();
    assert_eq!(expectation.revision.as_deref(), Some("main"));
    assert!(find(3, "AppProject", "dev-workload").is_some());
}
