//! `infraflux graph`: the resource graph of one environment in Graphviz DOT.

use std::process::ExitCode;

use crate::cli::GraphArgs;
use crate::operation::{self, Context, Workspace};

pub fn run(args: &GraphArgs, workspace: &Workspace, context: &Context) -> miette::Result<ExitCode> {
    let graph = operation::graph::run(
        workspace,
        args.selection.environment.as_deref(),
        args.selection.cluster.as_deref(),
        context,
    )?;
    context.out.write(&graph.to_dot());
    Ok(ExitCode::SUCCESS)
}
