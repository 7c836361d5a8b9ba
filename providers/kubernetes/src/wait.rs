//! Waiting for objects to become Current, with a timeout and poll interval chosen by
//! the caller. When time runs out the answer says which objects are not ready and why
//! (their status and conditions), never just "deadline exceeded".

use std::fmt;
use std::time::Duration;

use crate::api::{ApiError, KubeApi};
use crate::object::ObjectRef;
use crate::readiness::{self, Expectation, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    pub timeout: Duration,
    /// Time between two polls of the objects still pending.
    pub interval: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(600),
            interval: Duration::from_secs(5),
        }
    }
}

/// An object that was not Current when the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub object: ObjectRef,
    pub status: Status,
    /// One line per condition of the live object.
    pub conditions: Vec<String>,
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.status)?;
        if !self.conditions.is_empty() {
            write!(f, " [{}]", self.conditions.join("; "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    #[error("{} not ready after {}s: {}", plural(.pending.len()), .timeout.as_secs(), join(.pending))]
    NotReady {
        timeout: Duration,
        pending: Vec<Pending>,
    },
    #[error("{0}")]
    Failed(Pending),
    #[error("reading {object}")]
    Api {
        object: ObjectRef,
        #[source]
        source: ApiError,
    },
}

fn plural(count: usize) -> String {
    if count == 1 {
        "1 object".into()
    } else {
        format!("{count} objects")
    }
}

fn join(pending: &[Pending]) -> String {
    pending
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Poll until every object is Current. Returns at once when one has Failed.
pub async fn wait_for(
    api: &dyn KubeApi,
    targets: &[(ObjectRef, Expectation)],
    options: WaitOptions,
) -> Result<(), WaitError> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut remaining: Vec<&(ObjectRef, Expectation)> = targets.iter().collect();
    loop {
        let mut pending = Vec::new();
        let mut still = Vec::new();
        for target in remaining {
            let (object, expectation) = target;
            let live = match api.get(object).await {
                Ok(live) => live,
                Err(error) if error.is_retryable() => {
                    pending.push(Pending {
                        object: object.clone(),
                        status: Status::InProgress(format!("could not be read: {error}")),
                        conditions: Vec::new(),
                    });
                    still.push(target);
                    continue;
                }
                Err(source) => {
                    return Err(WaitError::Api {
                        object: object.clone(),
                        source,
                    });
                }
            };
            let status = readiness::status_with(live.as_ref(), expectation);
            let conditions = live
                .as_ref()
                .map(readiness::conditions_summary)
                .unwrap_or_default();
            match status {
                Status::Current => {}
                Status::Failed(_) => {
                    return Err(WaitError::Failed(Pending {
                        object: object.clone(),
                        status,
                        conditions,
                    }));
                }
                status => {
                    pending.push(Pending {
                        object: object.clone(),
                        status,
                        conditions,
                    });
                    still.push(target);
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(WaitError::NotReady {
                timeout: options.timeout,
                pending,
            });
        }
        tokio::time::sleep(options.interval.min(deadline - now)).await;
        remaining = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApplyOptions;
    use async_trait::async_trait;
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Answers `get` from a script: each object's successive states, the last repeated.
    #[derive(Default)]
    struct Scripted {
        states: Mutex<HashMap<ObjectRef, Vec<Option<Value>>>>,
        reads: Mutex<usize>,
    }

    impl Scripted {
        fn script(&self, object: &ObjectRef, states: Vec<Option<Value>>) {
            self.states.lock().unwrap().insert(object.clone(), states);
        }
    }

    #[async_trait]
    impl KubeApi for Scripted {
        async fn apply(&self, manifest: &Value, _: ApplyOptions) -> Result<Value, ApiError> {
            Ok(manifest.clone())
        }
        async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ApiError> {
            *self.reads.lock().unwrap() += 1;
            let mut states = self.states.lock().unwrap();
            let script = states.get_mut(object).expect("scripted object");
            Ok(if script.len() > 1 {
                script.remove(0)
            } else {
                script[0].clone()
            })
        }
        async fn delete(&self, _: &ObjectRef) -> Result<bool, ApiError> {
            Ok(true)
        }
        async fn list(&self, _: &str, _: &str, _: Option<&str>) -> Result<Vec<Value>, ApiError> {
            Ok(Vec::new())
        }
        async fn refresh_discovery(&self) -> Result<(), ApiError> {
            Ok(())
        }
    }

    fn deployment(available: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "argocd-server", "namespace": "argocd", "generation": 1},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                "readyReplicas": available, "availableReplicas": available,
                "conditions": [{"type": "Available",
                    "status": if available == 1 { "True" } else { "False" },
                    "reason": "MinimumReplicasUnavailable"}]}})
    }

    fn server() -> ObjectRef {
        ObjectRef::new("apps/v1", "Deployment", Some("argocd"), "argocd-server")
    }

    fn options() -> WaitOptions {
        WaitOptions {
            timeout: Duration::from_secs(60),
            interval: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_until_current() {
        let api = Scripted::default();
        api.script(
            &server(),
            vec![None, Some(deployment(0)), Some(deployment(1))],
        );
        wait_for(&api, &[(server(), Expectation::default())], options())
            .await
            .unwrap();
        assert_eq!(*api.reads.lock().unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_names_pending_objects_and_their_conditions() {
        let api = Scripted::default();
        api.script(&server(), vec![Some(deployment(0))]);
        let config = ObjectRef::new("v1", "ConfigMap", Some("argocd"), "argocd-cm");
        api.script(
            &config,
            vec![Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "namespace": "argocd"}}))],
        );
        let missing = ObjectRef::new("v1", "Service", Some("argocd"), "argocd-repo-server");
        api.script(&missing, vec![None]);
        let error = wait_for(
            &api,
            &[
                (server(), Expectation::default()),
                (config, Expectation::default()),
                (missing, Expectation::default()),
            ],
            options(),
        )
        .await
        .unwrap_err();
        let WaitError::NotReady { pending, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(pending.len(), 2);
        assert_eq!(
            error.to_string(),
            "2 objects not ready after 60s: Deployment argocd/argocd-server: in progress: available: 0/1 \
             [Available=False MinimumReplicasUnavailable]; Service argocd/argocd-repo-server: not found"
        );
        assert!(!error.to_string().contains("deadline"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_object_ends_the_wait_at_once() {
        let api = Scripted::default();
        let app = ObjectRef::new("argoproj.io/v1alpha1", "Application", Some("argocd"), "a");
        api.script(
            &app,
            vec![Some(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "a", "namespace": "argocd"},
                "status": {"health": {"status": "Degraded", "message": "crash loop"}}}),
            )],
        );
        let error = wait_for(&api, &[(app, Expectation::default())], options())
            .await
            .unwrap_err();
        assert!(matches!(error, WaitError::Failed(_)));
        assert_eq!(
            error.to_string(),
            "Application argocd/a: failed: Degraded: crash loop"
        );
        assert_eq!(*api.reads.lock().unwrap(), 1);
    }
}
