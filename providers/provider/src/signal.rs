//! The cluster-level half of the contract: the ready signal and the manifests a
//! cluster's resources render to. The engine asks for both through [`ClusterSignal`]
//! (implemented by the Kubernetes provider) and never reaches into a provider's modules.
//!
//! The report types are plain data so that `bootstrap` can print them and serialise them
//! into its `--json` document (README, "Bootstrap").

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::Attributes;

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Ready,
    /// Not yet; waiting may help.
    Pending,
    /// Waiting will not help (a Degraded Application, a failed sync).
    Failed,
}

/// An object that is not ready, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    /// `Deployment argocd/argocd-server`.
    pub object: String,
    /// `in progress: available: 0/1`, `not found`, `failed: Degraded: …`.
    pub status: String,
    /// The live object's conditions, one line each (`Available=False Reason: message`).
    pub conditions: Vec<String>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub name: String,
    pub state: CheckState,
    /// `3/3 objects current`, `2/3 nodes Ready`.
    pub summary: String,
    pub not_ready: Vec<NotReady>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ready,
    /// Something failed; waiting longer would not help.
    Failed,
    /// Still pending when the caller's timeout ran out.
    TimedOut,
}

/// A cluster's ready signal: every check, in report order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyReport {
    pub outcome: Outcome,
    /// Seconds spent waiting.
    pub waited_seconds: u64,
    pub checks: Vec<CheckReport>,
}

impl ReadyReport {
    pub fn is_ready(&self) -> bool {
        self.outcome == Outcome::Ready
    }

    /// The checks that are not ready.
    pub fn not_ready(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks.iter().filter(|c| c.state != CheckState::Ready)
    }
}

/// One resource of the cluster whose objects the signal checks.
#[derive(Debug, Clone)]
pub struct SignalResource {
    /// Resource type, e.g. `kubernetes_platform`.
    pub kind: String,
    pub attributes: Attributes,
}

/// What a ready cluster has, and how long to wait for it.
#[derive(Clone)]
pub struct ReadyRequest {
    /// The cluster's kubeconfig (it holds a key: never quoted in errors).
    pub kubeconfig: String,
    /// Nodes that must be registered and Ready.
    pub nodes: usize,
    /// The cluster's resources of this provider (others are ignored).
    pub resources: Vec<SignalResource>,
    /// Zero: look once.
    pub timeout: Duration,
    pub interval: Duration,
}

impl std::fmt::Debug for ReadyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyRequest")
            .field("kubeconfig", &"(sensitive)")
            .field("nodes", &self.nodes)
            .field("resources", &self.resources.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One rendered object, as a file would hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedManifest {
    /// A file name without extension that says what the object is
    /// (`deployment-argocd-argocd-server`).
    pub file_stem: String,
    pub yaml: String,
}

/// Why a resource's manifests could not be rendered: one line without secrets, and what
/// to do about it when the provider knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    pub message: String,
    pub help: Option<String>,
}

impl RenderError {
    pub fn new(message: impl Into<String>) -> Self {
        RenderError {
            message: message.into(),
            help: None,
        }
    }
}

/// The ready signal and manifest rendering of the provider that manages what runs in a
/// cluster. Errors are one line that says what failed, without secrets.
#[async_trait]
pub trait ClusterSignal: Send + Sync {
    /// Wait for the cluster's ready signal (cancel by dropping the future).
    async fn ready_signal(&self, request: ReadyRequest) -> Result<ReadyReport, String>;

    /// Whether resources of this type take part in the handoff to GitOps (a cluster
    /// with one has a ready signal worth showing after `apply`).
    fn is_handoff(&self, kind: &str) -> bool;

    /// The manifests one resource renders to, in apply order, without a cluster (upstream
    /// release files it installs may be read from a mirror, a cache or the network).
    async fn render_manifests(
        &self,
        kind: &str,
        attributes: &Attributes,
    ) -> Result<Vec<RenderedManifest>, RenderError>;
}
