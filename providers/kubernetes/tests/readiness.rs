//! The kstatus rules (src/readiness.rs) on real objects: Deployments, DaemonSets,
//! StatefulSets and Jobs that the controller manager and the scheduler run on kwok's
//! fake nodes become Current by the same rules that judge a real cluster; a Deployment
//! that cannot make progress is Failed once its deadline passes, with the reason the
//! controller gave. The unit tests (src/readiness/tests.rs) cover the rules over JSON.

mod support;

use std::time::Duration;

use serde_json::{Value, json};

use infraflux_kubernetes::api::{ApplyOptions, KubeApi};
use infraflux_kubernetes::object::ObjectRef;
use infraflux_kubernetes::readiness::{self, Expectation, Status};
use infraflux_kubernetes::wait::{WaitError, WaitOptions, wait_for};
use support::control_plane;

const NAMESPACE: &str = "rollouts";

fn wait(seconds: u64) -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(seconds),
        interval: Duration::from_millis(200),
    }
}

fn pod_template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": "registry.example/app:1"}]}})
}

fn workload(kind: &str, name: &str, spec: Value) -> Value {
    let api_version = if kind == "Job" { "batch/v1" } else { "apps/v1" };
    json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec})
}

async fn apply_all(client: &dyn KubeApi, manifests: &[Value]) -> Vec<(ObjectRef, Expectation)> {
    client
        .apply(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            ApplyOptions::default(),
        )
        .await
        .unwrap();
    let mut targets = Vec::new();
    for manifest in manifests {
        client
            .apply(manifest, ApplyOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        targets.push((
            ObjectRef::from_manifest(manifest).unwrap(),
            Expectation::default(),
        ));
    }
    targets
}

#[tokio::test]
async fn workloads_become_current_once_they_run_on_the_nodes() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let client = support::client(plane).await;
    let manifests = [
        workload(
            "Deployment",
            "web",
            json!({"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": pod_template("web")}),
        ),
        workload(
            "DaemonSet",
            "agent",
            json!({"selector": {"matchLabels": {"app": "agent"}},
                "template": pod_template("agent")}),
        ),
        workload(
            "StatefulSet",
            "store",
            json!({"replicas": 2, "serviceName": "store",
                "selector": {"matchLabels": {"app": "store"}}, "template": pod_template("store")}),
        ),
    ];
    let targets = apply_all(&client, &manifests).await;
    wait_for(&client, &targets, wait(120))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (object, _) in &targets {
        let live = client.get(object).await.unwrap().unwrap();
        assert_eq!(readiness::status(Some(&live)), Status::Current, "{object}");
        // Current means what it says: the controller counted every replica ready.
        let status = &live["status"];
        match object.kind.as_str() {
            "Deployment" => assert_eq!(status["availableReplicas"], 3, "{status}"),
            "StatefulSet" => assert_eq!(status["readyReplicas"], 2, "{status}"),
            "DaemonSet" => {
                assert!(status["desiredNumberScheduled"].as_i64().unwrap() >= 1);
                assert_eq!(status["numberReady"], status["desiredNumberScheduled"]);
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test]
async fn a_job_is_current_once_complete() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let client = support::client(plane).await;
    let mut template = pod_template("once");
    template["spec"]["restartPolicy"] = json!("Never");
    let job = workload("Job", "once", json!({"template": template}));
    let targets = apply_all(&client, &[job]).await;
    wait_for(&client, &targets, wait(120))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let live = client.get(&targets[0].0).await.unwrap().unwrap();
    assert_eq!(live["status"]["succeeded"], 1, "{}", live["status"]);
}

#[tokio::test]
async fn a_deployment_that_cannot_progress_fails_at_its_deadline() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let client = support::client(plane).await;
    // No node has this label: the pods stay Pending, the deadline passes.
    let mut template = pod_template("stuck");
    template["spec"]["nodeSelector"] = json!({"infraflux.test/no-such-node": "true"});
    let deployment = workload(
        "Deployment",
        "stuck",
        json!({"replicas": 1, "progressDeadlineSeconds": 2,
            "selector": {"matchLabels": {"app": "stuck"}}, "template": template}),
    );
    let targets = apply_all(&client, &[deployment]).await;
    let error = wait_for(&client, &targets, wait(120)).await.unwrap_err();
    let WaitError::Failed(pending) = error else {
        panic!("not a failure: {error}")
    };
    assert_eq!(pending.object.name, "stuck");
    let text = pending.to_string();
    assert!(
        text.starts_with("Deployment rollouts/stuck: failed: progress deadline exceeded: "),
        "{text}"
    );
    assert!(
        pending
            .conditions
            .iter()
            .any(|c| c.starts_with("Progressing=False ProgressDeadlineExceeded")),
        "{text}"
    );
    assert!(
        pending
            .conditions
            .iter()
            .any(|c| c.starts_with("Available=False MinimumReplicasUnavailable")),
        "{text}"
    );
}
