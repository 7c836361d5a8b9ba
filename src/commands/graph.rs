//! `infraflux graph`: the resource graph of one environment in Graphviz DOT.

use std::process::ExitCode;

use super::engine::{Context, diagnostic, load_desired};
use crate::cli::{GlobalArgs, GraphArgs};
use crate::graph::{GraphOptions, ResourceGraph};
use crate::state::StateDocument;

pub fn run(global: &GlobalArgs, args: &GraphArgs, context: &Context) -> miette::Result<ExitCode> {
    let (environment, desired) = load_desired(global, &args.selection, context)?;
    // Reading without the lock: the graph is a view, and a stale one is harmless.
    let state = context
        .store
        .load(&environment)
        .map_err(|e| diagnostic(&e, None))?
        .unwrap_or_else(|| StateDocument::new(&environment));
    // The offline placement a plan without refresh would make.
    let desired = crate::graph::placement::solve(desired, &state, &Default::default()).map_err(
        |problems| diagnostic(&crate::graph::placement::Error::Problems(problems), None),
    )?;
    let options = GraphOptions {
        cluster: args.selection.cluster.clone(),
        ..GraphOptions::default()
    };
    let graph =
        ResourceGraph::build(desired, &state, &options).map_err(|e| diagnostic(&e, None))?;
    context.out.write(&graph.to_dot());
    Ok(ExitCode::SUCCESS)
}
