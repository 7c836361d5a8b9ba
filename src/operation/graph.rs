//! `graph`: the resource graph of one environment, as the plan would walk it.

use crate::graph::{GraphOptions, ResourceGraph};

use super::context::Context;
use super::diagnostic::diagnostic;
use super::load::{Workspace, load_environment};

/// The graph of the selected environment (`cluster` narrows it), with the offline
/// placement a plan without refresh would make.
pub fn run(
    workspace: &Workspace,
    environment: Option<&str>,
    cluster: Option<&str>,
    context: &Context,
) -> miette::Result<ResourceGraph> {
    let loaded = load_environment(workspace, environment, cluster, context)?;
    // Reading without the lock: the graph is a view, and a stale one is harmless.
    let state = context
        .store
        .load(&loaded.environment)
        .map_err(|e| diagnostic(&e, None))?
        .unwrap_or_else(|| crate::state::StateDocument::new(&loaded.environment));
    let desired = crate::graph::placement::solve(loaded.desired, &state, &Default::default())
        .map_err(|problems| {
            diagnostic(&crate::graph::placement::Error::Problems(problems), None)
        })?;
    let options = GraphOptions {
        cluster: cluster.map(str::to_string),
        ..GraphOptions::default()
    };
    ResourceGraph::build(desired, &state, &options).map_err(|e| diagnostic(&e, None))
}
