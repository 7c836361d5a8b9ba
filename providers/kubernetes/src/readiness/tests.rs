//! Each kind's rules on JSON fixtures shaped like what the API server returns.

use serde_json::{Value, json};

use super::*;

fn in_progress(status: Status) -> String {
    match status {
        Status::InProgress(reason) => reason,
        other => panic!("expected InProgress, got {other:?}"),
    }
}

fn failed(status: Status) -> String {
    match status {
        Status::Failed(reason) => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn deployment(spec: i64, status: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "dev", "generation": 2},
        "spec": {"replicas": spec},
        "status": status,
    })
}

#[test]
fn missing_objects_are_not_found() {
    assert_eq!(status(None), Status::NotFound);
}

#[test]
fn deployment_available_is_current() {
    let object = deployment(
        3,
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
            "availableReplicas": 3, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}),
    );
    assert_eq!(status(Some(&object)), Status::Current);
}

#[test]
fn deployment_with_unobserved_generation_is_in_progress() {
    let object = deployment(
        1,
        json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
            "availableReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]}),
    );
    assert!(in_progress(status(Some(&object))).contains("generation 2 not yet observed"));
}

#[test]
fn deployment_rollout_steps_are_reported() {
    let base = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
        "readyReplicas": 3, "availableReplicas": 3,
        "conditions": [{"type": "Available", "status": "True"}]});
    let with = |key: &str, value: i64| {
        let mut status = base.clone();
        status[key] = json!(value);
        deployment(3, status)
    };
    assert_eq!(
        in_progress(status(Some(&with("replicas", 1)))),
        "replicas: 1/3"
    );
    assert_eq!(
        in_progress(status(Some(&with("updatedReplicas", 2)))),
        "updated: 2/3"
    );
    assert_eq!(
        in_progress(status(Some(&with("replicas", 4)))),
        "pending termination: 1"
    );
    assert_eq!(
        in_progress(status(Some(&with("availableReplicas", 0)))),
        "available: 0/3"
    );
    assert_eq!(
        in_progress(status(Some(&with("readyReplicas", 2)))),
        "ready: 2/3"
    );
}

#[test]
fn deployment_past_its_deadline_failed() {
    let object = deployment(
        1,
        json!({"observedGeneration": 2, "replicas": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"web-5d\" has timed out progressing."}]}),
    );
    assert!(failed(status(Some(&object))).contains("has timed out progressing"));
}

#[test]
fn deployment_without_available_condition_waits() {
    let object = deployment(
        1,
        json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
            "availableReplicas": 1, "conditions": [{"type": "Available", "status": "False"}]}),
    );
    assert!(in_progress(status(Some(&object))).contains("Available"));
}

#[test]
fn stalled_and_reconciling_conditions_decide_first() {
    let mut object = deployment(1, json!({"observedGeneration": 2}));
    object["status"]["conditions"] = json!([
        {"type": "Stalled", "status": "True", "reason": "ImagePull", "message": "no such image"}]);
    assert_eq!(failed(status(Some(&object))), "ImagePull: no such image");
    object["status"]["conditions"] = json!([
        {"type": "Reconciling", "status": "True", "reason": "Progressing"}]);
    assert_eq!(in_progress(status(Some(&object))), "Progressing");
}

#[test]
fn objects_being_deleted_are_in_progress() {
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "deletionTimestamp": "2025-01-01T00:00:00Z"}});
    assert_eq!(in_progress(status(Some(&object))), "being deleted");
}

fn stateful_set(status: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "dev", "generation": 1},
        "spec": {"replicas": 3}, "status": status})
}

#[test]
fn stateful_set_rules() {
    let ready = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
        "currentReplicas": 3, "updatedReplicas": 3, "currentRevision": "db-1",
        "updateRevision": "db-1"});
    assert_eq!(status(Some(&stateful_set(ready.clone()))), Status::Current);
    let mut rolling = ready.clone();
    rolling["updateRevision"] = json!("db-2");
    assert!(in_progress(status(Some(&stateful_set(rolling)))).contains("update revision"));
    let mut not_ready = ready.clone();
    not_ready["readyReplicas"] = json!(1);
    assert_eq!(
        in_progress(status(Some(&stateful_set(not_ready)))),
        "ready: 1/3"
    );
    let mut partitioned = stateful_set(json!({"observedGeneration": 1, "replicas": 3,
        "readyReplicas": 3, "currentReplicas": 2, "updatedReplicas": 0}));
    partitioned["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    assert!(in_progress(status(Some(&partitioned))).contains("partitioned"));
    partitioned["status"]["updatedReplicas"] = json!(1);
    assert_eq!(status(Some(&partitioned)), Status::Current);
}

#[test]
fn daemon_set_rules() {
    let object = |status: Value| {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "cilium", "namespace": "kube-system", "generation": 1},
            "status": status})
    };
    let ready = json!({"observedGeneration": 1, "desiredNumberScheduled": 3,
        "currentNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3,
        "numberReady": 3});
    assert_eq!(status(Some(&object(ready.clone()))), Status::Current);
    let mut unavailable = ready.clone();
    unavailable["numberAvailable"] = json!(2);
    assert_eq!(
        in_progress(status(Some(&object(unavailable)))),
        "available: 2/3"
    );
    assert!(
        in_progress(status(Some(&object(json!({"observedGeneration": 1})))))
            .contains("desiredNumberScheduled")
    );
}

#[test]
fn job_must_complete() {
    let object = |status: Value| {
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "namespace": "dev"}, "status": status})
    };
    assert_eq!(
        in_progress(status(Some(&object(json!({}))))),
        "job not started"
    );
    // kstatus would call this Current; a provisioner waits for completion.
    assert!(
        in_progress(status(Some(&object(
            json!({"startTime": "2025-01-01T00:00:00Z", "active": 1})
        ))))
        .contains("1 active")
    );
    let complete = object(json!({"startTime": "2025-01-01T00:00:00Z", "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}]}));
    assert_eq!(status(Some(&complete)), Status::Current);
    let failed_job = object(json!({"startTime": "2025-01-01T00:00:00Z", "failed": 6,
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit"}]}));
    assert!(failed(status(Some(&failed_job))).contains("BackoffLimitExceeded"));
}

#[test]
fn crd_must_be_established() {
    let crd = |conditions: Value| {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "applications.argoproj.io"},
            "status": {"conditions": conditions}})
    };
    assert_eq!(
        status(Some(&crd(json!([
            {"type": "NamesAccepted", "status": "True"},
            {"type": "Established", "status": "True"}])))),
        Status::Current
    );
    assert!(
        in_progress(status(Some(&crd(json!([
            {"type": "Established", "status": "False", "reason": "Installing"}])))))
        .contains("Installing")
    );
    assert!(in_progress(status(Some(&crd(json!([]))))).contains("not Established"));
    assert!(
        failed(status(Some(&crd(json!([
            {"type": "NamesAccepted", "status": "False", "reason": "MultipleNamesConflict"}])))))
        .contains("MultipleNamesConflict")
    );
}

#[test]
fn pod_rules() {
    let pod = |status: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "dev"}, "status": status})
    };
    assert_eq!(
        status(Some(&pod(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]})))),
        Status::Current
    );
    assert_eq!(
        status(Some(&pod(json!({"phase": "Succeeded"})))),
        Status::Current
    );
    assert!(
        failed(status(Some(&pod(
            json!({"phase": "Failed", "message": "OOMKilled"})
        ))))
        .contains("OOMKilled")
    );
    assert!(
        failed(status(Some(&pod(json!({"phase": "Running",
            "containerStatuses": [{"name": "app",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})))))
        .contains("crash-looping")
    );
    assert!(
        in_progress(status(Some(&pod(json!({"phase": "Pending",
            "containerStatuses": [{"name": "app",
                "state": {"waiting": {"reason": "ImagePullBackOff"}}}]})))))
        .contains("ImagePullBackOff")
    );
    assert!(
        in_progress(status(Some(&pod(
            json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available"}]})
        ))))
        .contains("0/3 nodes")
    );
}

#[test]
fn pvc_must_be_bound() {
    let pvc = |phase: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "dev"}, "status": {"phase": phase}})
    };
    assert_eq!(status(Some(&pvc("Bound"))), Status::Current);
    assert!(in_progress(status(Some(&pvc("Pending")))).contains("Pending"));
}

#[test]
fn load_balancer_needs_ingress() {
    let service = |kind: &str, status: Value| {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "dev"},
            "spec": {"type": kind}, "status": status})
    };
    assert_eq!(
        status(Some(&service("ClusterIP", json!({})))),
        Status::Current
    );
    assert!(
        in_progress(status(Some(&service(
            "LoadBalancer",
            json!({"loadBalancer": {}})
        ))))
        .contains("ingress")
    );
    assert_eq!(
        status(Some(&service(
            "LoadBalancer",
            json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.50"}]}})
        ))),
        Status::Current
    );
}

#[test]
fn unknown_kinds_follow_a_ready_condition() {
    let certificate = |conditions: Value| {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "tls", "namespace": "dev"},
            "status": {"conditions": conditions}})
    };
    assert_eq!(
        status(Some(&certificate(
            json!([{"type": "Ready", "status": "True"}])
        ))),
        Status::Current
    );
    assert!(
        in_progress(status(Some(&certificate(json!([
            {"type": "Ready", "status": "False", "reason": "Issuing",
             "message": "Issuing certificate as Secret does not exist"}])))))
        .contains("Issuing certificate")
    );
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    assert_eq!(status(Some(&config_map)), Status::Current);
}

#[test]
fn namespace_terminating_is_in_progress() {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "dev"}, "status": {"phase": "Terminating"}});
    assert!(in_progress(status(Some(&namespace))).contains("terminating"));
}

fn application(status: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "prod-workload", "namespace": "argocd"},
        "spec": {"source": {"repoURL": "https://git.example/apps.git", "targetRevision": "v1.4.2",
            "path": "environments/prod"}},
        "status": status})
}

fn synced_healthy() -> Value {
    json!({
        "sync": {"status": "Synced", "revision": "4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e",
            "comparedTo": {"source": {"targetRevision": "v1.4.2"}}},
        "health": {"status": "Healthy"},
        "operationState": {"phase": "Succeeded", "message": "successfully synced"}
    })
}

#[test]
fn application_synced_and_healthy_at_its_revision_is_current() {
    assert_eq!(
        status(Some(&application(synced_healthy()))),
        Status::Current
    );
    let sha = Expectation {
        revision: Some("4f1c2a9".into()),
    };
    assert_eq!(
        status_with(Some(&application(synced_healthy())), &sha),
        Status::Current
    );
    let other_sha = Expectation {
        revision: Some("0000000".into()),
    };
    assert!(
        in_progress(status_with(
            Some(&application(synced_healthy())),
            &other_sha
        ))
        .contains("not yet synced at revision 0000000")
    );
}

#[test]
fn application_compared_against_an_older_revision_waits() {
    let mut old = synced_healthy();
    old["sync"]["comparedTo"]["source"]["targetRevision"] = json!("v1.4.1");
    assert!(in_progress(status(Some(&application(old)))).contains("v1.4.2"));
}

#[test]
fn application_out_of_sync_or_progressing_waits() {
    let mut out_of_sync = synced_healthy();
    out_of_sync["sync"]["status"] = json!("OutOfSync");
    assert_eq!(
        in_progress(status(Some(&application(out_of_sync)))),
        "sync status OutOfSync"
    );
    let mut progressing = synced_healthy();
    progressing["health"]["status"] = json!("Progressing");
    assert_eq!(
        in_progress(status(Some(&application(progressing)))),
        "health Progressing"
    );
    let mut running = synced_healthy();
    running["operationState"] = json!({"phase": "Running", "message": "waiting for hooks"});
    assert!(in_progress(status(Some(&application(running)))).contains("waiting for hooks"));
}

#[test]
fn degraded_application_fails_with_its_message() {
    let mut degraded = synced_healthy();
    degraded["health"] = json!({"status": "Degraded"});
    degraded["resources"] = json!([
        {"kind": "Deployment", "namespace": "prod", "name": "api",
         "health": {"status": "Degraded", "message": "Deployment \"api\" exceeded its progress deadline"}},
        {"kind": "Service", "namespace": "prod", "name": "api", "health": {"status": "Healthy"}}
    ]);
    let reason = failed(status(Some(&application(degraded.clone()))));
    assert_eq!(
        reason,
        "Degraded: Deployment prod/api: Deployment \"api\" exceeded its progress deadline"
    );
    degraded["health"]["message"] = json!("custom health message");
    assert_eq!(
        failed(status(Some(&application(degraded)))),
        "Degraded: custom health message"
    );
}

#[test]
fn application_error_conditions_and_failed_operations() {
    let mut comparison = synced_healthy();
    comparison["conditions"] = json!([{"type": "ComparisonError",
        "message": "repository not accessible"}]);
    assert!(in_progress(status(Some(&application(comparison)))).contains("ComparisonError"));
    let mut invalid = synced_healthy();
    invalid["conditions"] = json!([{"type": "InvalidSpecError",
        "message": "application destination namespace is not permitted"}]);
    assert!(failed(status(Some(&application(invalid)))).contains("not permitted"));
    let mut warning = synced_healthy();
    warning["conditions"] = json!([{"type": "SharedResourceWarning", "message": "shared"}]);
    assert_eq!(status(Some(&application(warning))), Status::Current);
    let mut failed_sync = synced_healthy();
    failed_sync["operationState"] =
        json!({"phase": "Failed", "message": "one or more objects failed to apply"});
    assert!(failed(status(Some(&application(failed_sync)))).contains("failed to apply"));
}

#[test]
fn conditions_are_summarised_one_per_line() {
    let object = deployment(
        1,
        json!({"conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
             "message": "Deployment does not have minimum availability."},
            {"type": "Progressing", "status": "True"}]}),
    );
    assert_eq!(
        conditions_summary(&object),
        [
            "Available=False MinimumReplicasUnavailable: Deployment does not have minimum availability.",
            "Progressing=True"
        ]
    );
}

#[test]
fn commit_shas_are_told_from_branches() {
    assert!(is_commit_sha("4f1c2a9"));
    assert!(!is_commit_sha("main"));
    assert!(!is_commit_sha("v1.4.2"));
    assert!(!is_commit_sha("abc"));
}
