//! What `bootstrap` reports: the ready signal per cluster for people, and the whole run
//! as JSON (`--json`, shape documented in the README, "Bootstrap").

use std::path::PathBuf;

use infraflux_provider::signal::{CheckState, Outcome, ReadyReport};
use serde::Serialize;

use crate::model::{Cluster, Model};

/// The run: `--json` prints this.
#[derive(Debug, Serialize)]
pub(super) struct BootstrapReport {
    /// Every selected cluster is ready (or, with --render, rendered).
    pub ready: bool,
    /// `ready`, `not_ready`, `interrupted` or `rendered`.
    pub outcome: &'static str,
    /// In promotion order; environments after a failure are listed with `not_run`.
    pub environments: Vec<EnvironmentReport>,
}

#[derive(Debug, Serialize)]
pub(super) struct EnvironmentReport {
    pub environment: String,
    pub apply: ApplyOutcome,
    /// Why the apply could not start or finish, when it says more than the plan output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub clusters: Vec<ClusterReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ApplyOutcome {
    Succeeded,
    Failed,
    Interrupted,
    /// A previous environment failed, or --render.
    NotRun,
}

#[derive(Debug, Serialize)]
pub(super) struct ClusterReport {
    pub cluster: String,
    pub environment: String,
    pub ready: bool,
    /// Why there is no signal (no kubeconfig in state, interrupted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<ReadyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Rendered>,
}

/// Files written by --render.
#[derive(Debug, Serialize)]
pub(super) struct Rendered {
    pub manifests: Vec<PathBuf>,
    pub machine_configs: Vec<PathBuf>,
}

impl BootstrapReport {
    pub fn new(model: &Model) -> Self {
        BootstrapReport {
            ready: false,
            outcome: "not_ready",
            environments: super::selected(model)
                .map(|e| EnvironmentReport {
                    environment: e.name.clone(),
                    apply: ApplyOutcome::NotRun,
                    error: None,
                    clusters: Vec::new(),
                })
                .collect(),
        }
    }

    /// Settle the outcome from the exit code (0, 1 or 130).
    pub fn finish(&mut self, code: u8) {
        self.ready = code == 0;
        self.outcome = match code {
            0 => "ready",
            130 => "interrupted",
            _ => "not_ready",
        };
    }

    pub fn finish_rendered(&mut self) {
        self.ready = true;
        self.outcome = "rendered";
    }

    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Only strings, numbers and paths: serialisation cannot fail; say so if it does.
            format!("{{\"error\": \"cannot serialise the report: {e}\"}}")
        });
        text.push('\n');
        text
    }
}

impl ClusterReport {
    fn new(cluster: &Cluster) -> Self {
        ClusterReport {
            cluster: cluster.name.clone(),
            environment: cluster.environment.clone(),
            ready: false,
            error: None,
            signal: None,
            rendered: None,
        }
    }

    pub fn signal(cluster: &Cluster, signal: ReadyReport) -> Self {
        ClusterReport {
            ready: signal.is_ready(),
            signal: Some(signal),
            ..Self::new(cluster)
        }
    }

    pub fn error(cluster: &Cluster, error: String) -> Self {
        ClusterReport {
            error: Some(error),
            ..Self::new(cluster)
        }
    }

    pub fn rendered(cluster: &Cluster, rendered: Rendered) -> Self {
        ClusterReport {
            ready: true,
            rendered: Some(rendered),
            ..Self::new(cluster)
        }
    }
}

/// One line on why a signal is not ready: `timed out after 600s: nodes, handoff dev-workload`.
pub(super) fn not_ready_reason(report: &ReadyReport) -> String {
    let names: Vec<&str> = report.not_ready().map(|c| c.name.as_str()).collect();
    let how = match report.outcome {
        Outcome::Ready => return "ready".into(),
        Outcome::Failed => "failed".to_string(),
        Outcome::TimedOut => format!("not ready after {}s", report.waited_seconds),
    };
    format!("{how}: {}", names.join(", "))
}

/// The ready signal of one cluster for people: a headline, one line per check, and
/// under each check that is not ready the objects and their conditions.
pub(super) fn human(cluster: &ClusterReport, fancy: bool) -> String {
    let id = format!("{}/{}", cluster.environment, cluster.cluster);
    let Some(signal) = &cluster.signal else {
        return format!(
            "Ready signal for {id}: not taken: {}\n",
            cluster.error.as_deref().unwrap_or("unknown reason")
        );
    };
    let headline = match signal.outcome {
        Outcome::Ready => "ready".to_string(),
        Outcome::Failed => "FAILED".to_string(),
        Outcome::TimedOut => format!("NOT READY after {}s", signal.waited_seconds),
    };
    let mut text = format!("Ready signal for {id}: {headline}\n");
    for check in &signal.checks {
        let symbol = match (check.state, fancy) {
            (CheckState::Ready, true) => "✔",
            (CheckState::Ready, false) => "ok",
            (CheckState::Pending, true) => "…",
            (CheckState::Pending, false) => "..",
            (CheckState::Failed, true) => "✗",
            (CheckState::Failed, false) => "FAIL",
        };
        text.push_str(&format!("  {symbol} {}: {}\n", check.name, check.summary));
        for object in &check.not_ready {
            text.push_str(&format!("      {}: {}\n", object.object, object.status));
            for condition in &object.conditions {
                text.push_str(&format!("        {condition}\n"));
            }
        }
    }
    text
}
