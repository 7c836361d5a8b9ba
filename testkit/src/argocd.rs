//! A stand-in for ArgoCD's application controller: the tests install ArgoCD's objects
//! on the real control plane, but nothing there syncs Git repositories, so this writes
//! each Application's status as the test decides — Synced and Healthy at its target
//! revision ([`synced_and_healthy`]), or whatever else the test returns.
//!
//! It writes as ArgoCD does: a merge patch of `status` under its own field manager
//! (`argocd-application-controller`), on the status subresource when the CRD has one,
//! else on the object (ArgoCD's Application CRD has none).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::endpoint::{Endpoint, object_path};

/// ArgoCD's field manager for status writes.
pub const MANAGER: &str = "argocd-application-controller";

/// The commit every branch or tag "resolves" to.
pub const COMMIT: &str = "4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e";

const APPLICATIONS: &str = "/apis/argoproj.io/v1alpha1/applications";

/// The status an Application should have (`None`: leave it as it is).
pub type Decide = dyn Fn(&Value) -> Option<Value> + Send + Sync;

/// Runs until dropped.
pub struct ApplicationController {
    endpoint: Endpoint,
    decide: Arc<Decide>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApplicationController {
    /// Every Application, in every namespace, Synced and Healthy.
    pub fn healthy(endpoint: Endpoint) -> Self {
        Self::start(endpoint, |application| {
            Some(synced_and_healthy(application))
        })
    }

    /// Every Application gets the status `decide` returns for it, checked every 100 ms.
    pub fn start(
        endpoint: Endpoint,
        decide: impl Fn(&Value) -> Option<Value> + Send + Sync + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let decide: Arc<Decide> = Arc::new(decide);
        let thread = {
            let stop = stop.clone();
            let (endpoint, decide) = (endpoint.clone(), decide.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    while !stop.load(Ordering::Relaxed) {
                        reconcile(&endpoint, decide.as_ref()).await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
            })
        };
        ApplicationController {
            endpoint,
            decide,
            stop,
            thread: Some(thread),
        }
    }

    /// Wait until every Application there is has the status decided for it (a test
    /// that just changed its mind must not race the controller's next round); `false`
    /// after `timeout`.
    pub async fn written(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let list = self.endpoint.get(APPLICATIONS).await;
            let done = list.is_success()
                && list.body["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|application| {
                        (self.decide)(application)
                            .is_none_or(|status| contains(&application["status"], &status))
                    });
            if done {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ApplicationController {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn reconcile(endpoint: &Endpoint, decide: &Decide) {
    // 404 until the CRD is installed and served.
    let list = endpoint.get(APPLICATIONS).await;
    if !list.is_success() {
        return;
    }
    for application in list.body["items"].as_array().into_iter().flatten() {
        let Some(status) = decide(application) else {
            continue;
        };
        if contains(&application["status"], &status) {
            continue;
        }
        let path = object_path(
            "argoproj.io/v1alpha1",
            "applications",
            application["metadata"]["namespace"].as_str(),
            application["metadata"]["name"].as_str().unwrap_or(""),
        );
        let patch = json!({"status": status});
        // A conflict (the object changed since the list) or a deleted object: next round.
        let answer = endpoint
            .merge_patch(&format!("{path}/status"), &patch, MANAGER)
            .await;
        if answer.status == 404 {
            endpoint.merge_patch(&path, &patch, MANAGER).await;
        }
    }
}

/// Whether every field of `wanted` has that value in `live`.
fn contains(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => wanted
            .iter()
            .all(|(key, value)| live.get(key).is_some_and(|l| contains(l, value))),
        (live, wanted) => live == wanted,
    }
}

/// When the stand-in's sync operations started and finished.
const SYNCED_AT: &str = "2025-01-01T00:00:00Z";

/// What ArgoCD writes after a successful sync: Synced at the target revision (a
/// commit SHA as it is, a branch or tag resolved to [`COMMIT`]), Healthy, the last
/// operation Succeeded. Every field upstream's Application CRD requires is there
/// (`comparedTo.destination`; the operation, `startedAt` and a source with its
/// `repoURL` in `operationState`): the real API server refuses a status without them.
pub fn synced_and_healthy(application: &Value) -> Value {
    let source = application["spec"]["source"].clone();
    let destination = application["spec"]["destination"].clone();
    let target = source["targetRevision"].as_str().unwrap_or("HEAD");
    let revision =
        if (7..=40).contains(&target.len()) && target.chars().all(|c| c.is_ascii_hexdigit()) {
            target.to_string()
        } else {
            COMMIT.to_string()
        };
    json!({
        "sync": {"status": "Synced", "revision": revision,
            "comparedTo": {"source": source, "destination": destination}},
        "health": {"status": "Healthy"},
        "operationState": {
            "operation": {"sync": {"revision": revision}, "initiatedBy": {"automated": true}},
            "phase": "Succeeded", "message": "successfully synced (all tasks run)",
            "startedAt": SYNCED_AT, "finishedAt": SYNCED_AT,
            "syncResult": {"revision": revision, "source": source}},
    })
}

/// Synced, but Degraded: one Deployment of the application failing with `message`.
pub fn degraded(application: &Value, deployment: &str, message: &str) -> Value {
    let mut status = synced_and_healthy(application);
    let namespace = application["spec"]["destination"]["namespace"].clone();
    status["health"] = json!({"status": "Degraded"});
    status["resources"] = json!([{"group": "apps", "version": "v1", "kind": "Deployment",
        "namespace": namespace, "name": deployment,
        "health": {"status": "Degraded", "message": message}}]);
    status
}

/// Healthy, but not synced to the target yet (ArgoCD has seen a change it has not
/// applied).
pub fn out_of_sync(application: &Value) -> Value {
    let mut status = synced_and_healthy(application);
    status["sync"]["status"] = json!("OutOfSync");
    status
}
