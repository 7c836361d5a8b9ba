//! The ready signal: is a bootstrapped cluster ready to be handed to its users?
//!
//! Ready means, checked in this order and reported one line each:
//! - **api**: the API server answers;
//! - **nodes**: as many nodes as the model has are registered and `Ready`;
//! - **platform `<service>`**: every object of each enabled platform service (Cilium,
//!   ArgoCD, cert-manager…) is Current by the kstatus rules of [`crate::readiness`];
//! - **rbac and network policies**: every ServiceAccount, Role, RoleBinding,
//!   ClusterRole, ClusterRoleBinding and NetworkPolicy InfraFlux applies exists;
//! - **namespace `<name>`**: the environment namespace with its quota and limits;
//! - **handoff `<application>`**: the AppProject exists and the Application is Synced
//!   and Healthy at the expected revision, its last operation Succeeded, with no
//!   `*Error` condition.
//!
//! The objects are the ones the provider renders for the cluster's resources
//! ([`Expectations::from_resources`]), so the signal checks exactly what apply applied.
//! [`check`] looks once; [`wait`] polls until ready, until something has failed (a
//! Degraded Application: waiting will not help), or until the caller's timeout, and
//! then reports every object that is not ready with its status and conditions.

use infraflux_provider::Attributes;
use serde_json::Value;

use crate::api::KubeApi;
use crate::inputs::InputError;
use crate::object::ObjectRef;
use crate::provider::{HANDOFF, NAMESPACE, PLATFORM, Releases, render_resource};
use crate::readiness::{self, Expectation, Status};
use crate::wait::WaitOptions;

/// Kinds whose existence is the check (they have no status).
const ACCESS_KINDS: [&str; 6] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "NetworkPolicy",
];

const ACCESS_CHECK: &str = "rbac and network policies";

/// One line of the signal: a name and the objects that must be Current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `platform cilium`, `namespace dev`, `handoff dev-workload`.
    pub name: String,
    pub objects: Vec<(ObjectRef, Expectation)>,
}

/// What a ready cluster has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// Nodes that must be registered and Ready.
    pub nodes: usize,
    /// In report order: platform services, RBAC and network policies, namespaces,
    /// handoffs.
    pub components: Vec<Component>,
}

impl Expectations {
    /// From a cluster's `kubernetes_platform`, `kubernetes_namespace` and
    /// `kubernetes_handoff` resources (type, attributes; other types are ignored),
    /// rendered as the provider renders them, with the release files they install
    /// already read. The `kubeconfig` attribute is not read.
    pub fn from_resources<'a>(
        nodes: usize,
        resources: impl IntoIterator<Item = (&'a str, &'a Attributes)>,
        releases: &Releases,
    ) -> Result<Self, InputError> {
        let mut platform = Vec::new();
        let mut namespaces = Vec::new();
        let mut handoffs = Vec::new();
        let mut access = Vec::new();
        for (kind, attributes) in resources {
            let (name, list) = match kind {
                PLATFORM => (
                    format!("platform {}", string(attributes, "service")),
                    &mut platform,
                ),
                NAMESPACE => (
                    format!("namespace {}", string(attributes, "name")),
                    &mut namespaces,
                ),
                HANDOFF => (
                    format!("handoff {}", string(attributes, "application")),
                    &mut handoffs,
                ),
                _ => continue,
            };
            let rendered = render_resource(kind, attributes, releases)?;
            let mut objects = Vec::new();
            for manifest in &rendered.manifests {
                let Some(object) = ObjectRef::from_manifest(manifest) else {
                    continue;
                };
                if ACCESS_KINDS.contains(&object.kind.as_str()) {
                    access.push((object, Expectation::default()));
                } else {
                    objects.push((object, rendered.expectation.clone()));
                }
            }
            list.push(Component { name, objects });
        }
        let mut components = platform;
        if !access.is_empty() {
            components.push(Component {
                name: ACCESS_CHECK.into(),
                objects: access,
            });
        }
        components.extend(namespaces);
        components.extend(handoffs);
        Ok(Expectations { nodes, components })
    }
}

fn string<'a>(attributes: &'a Attributes, name: &str) -> &'a str {
    attributes.get(name).and_then(Value::as_str).unwrap_or("?")
}

// The report types are the contract's: the engine prints and serialises them.
pub use infraflux_provider::signal::{CheckReport, CheckState, NotReady, Outcome, ReadyReport};

/// Look once (a wait with no time: a signal still pending is reported as timed out).
pub async fn check(api: &dyn KubeApi, expectations: &Expectations) -> ReadyReport {
    let checks = check_all(api, expectations).await;
    let outcome = outcome(&checks).unwrap_or(Outcome::TimedOut);
    ReadyReport {
        outcome,
        waited_seconds: 0,
        checks,
    }
}

/// Look until ready, until something failed, or until `options.timeout`; every
/// `options.interval` in between.
pub async fn wait(
    api: &dyn KubeApi,
    expectations: &Expectations,
    options: WaitOptions,
) -> ReadyReport {
    let started = tokio::time::Instant::now();
    let deadline = started + options.timeout;
    loop {
        let checks = check_all(api, expectations).await;
        let now = tokio::time::Instant::now();
        let decided = outcome(&checks).or((now >= deadline).then_some(Outcome::TimedOut));
        if let Some(outcome) = decided {
            return ReadyReport {
                outcome,
                waited_seconds: (now - started).as_secs(),
                checks,
            };
        }
        tokio::time::sleep(options.interval.min(deadline - now)).await;
    }
}

/// `Some` once the answer cannot change by waiting.
fn outcome(checks: &[CheckReport]) -> Option<Outcome> {
    if checks.iter().any(|c| c.state == CheckState::Failed) {
        Some(Outcome::Failed)
    } else if checks.iter().all(|c| c.state == CheckState::Ready) {
        Some(Outcome::Ready)
    } else {
        None
    }
}

async fn check_all(api: &dyn KubeApi, expectations: &Expectations) -> Vec<CheckReport> {
    let mut checks = Vec::with_capacity(expectations.components.len() + 2);
    // The API first: when it does not answer, every other check says so once instead of
    // one error per object.
    if let Err(error) = api.list("v1", "Namespace", None).await {
        checks.push(CheckReport {
            name: "api".into(),
            state: CheckState::Pending,
            summary: format!("not reachable: {error}"),
            not_ready: Vec::new(),
        });
        let names = std::iter::once("nodes".to_string())
            .chain(expectations.components.iter().map(|c| c.name.clone()));
        checks.extend(names.map(|name| CheckReport {
            name,
            state: CheckState::Pending,
            summary: "not checked: the API is not reachable".into(),
            not_ready: Vec::new(),
        }));
        return checks;
    }
    checks.push(CheckReport {
        name: "api".into(),
        state: CheckState::Ready,
        summary: "answering".into(),
        not_ready: Vec::new(),
    });
    checks.push(check_nodes(api, expectations.nodes).await);
    for component in &expectations.components {
        checks.push(check_component(api, component).await);
    }
    checks
}

async fn check_nodes(api: &dyn KubeApi, expected: usize) -> CheckReport {
    let nodes = match api.list("v1", "Node", None).await {
        Ok(nodes) => nodes,
        Err(error) => {
            return CheckReport {
                name: "nodes".into(),
                state: CheckState::Pending,
                summary: format!("cannot list nodes: {error}"),
                not_ready: Vec::new(),
            };
        }
    };
    let mut ready = 0;
    let mut not_ready = Vec::new();
    for node in &nodes {
        let condition = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
        if condition.is_some_and(|c| c["status"] == "True") {
            ready += 1;
            continue;
        }
        let conditions = readiness::conditions_summary(node)
            .into_iter()
            .filter(|line| line.starts_with("Ready="))
            .collect();
        not_ready.push(NotReady {
            object: format!(
                "Node {}",
                node.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ),
            status: "not Ready".into(),
            conditions,
        });
    }
    let mut summary = format!("{ready}/{expected} Ready");
    if nodes.len() < expected {
        summary.push_str(&format!(" ({} of {expected} registered)", nodes.len()));
    }
    CheckReport {
        name: "nodes".into(),
        state: if ready >= expected {
            CheckState::Ready
        } else {
            CheckState::Pending
        },
        summary,
        not_ready,
    }
}

async fn check_component(api: &dyn KubeApi, component: &Component) -> CheckReport {
    let mut not_ready = Vec::new();
    let mut failed = false;
    for (object, expectation) in &component.objects {
        let (status, conditions) = match api.get(object).await {
            Ok(live) => (
                readiness::status_with(live.as_ref(), expectation),
                live.as_ref()
                    .map(readiness::conditions_summary)
                    .unwrap_or_default(),
            ),
            Err(error) => (
                Status::InProgress(format!("could not be read: {error}")),
                Vec::new(),
            ),
        };
        if status.is_current() {
            continue;
        }
        failed |= matches!(status, Status::Failed(_));
        not_ready.push(NotReady {
            object: object.to_string(),
            status: status.to_string(),
            conditions,
        });
    }
    let total = component.objects.len();
    let noun = if total == 1 { "object" } else { "objects" };
    CheckReport {
        name: component.name.clone(),
        state: if failed {
            CheckState::Failed
        } else if not_ready.is_empty() {
            CheckState::Ready
        } else {
            CheckState::Pending
        },
        summary: format!("{}/{total} {noun} current", total - not_ready.len()),
        not_ready,
    }
}

#[cfg(test)]
mod tests;
