//! `destroy`: plan the deletion of everything in scope (dependants first), ask, apply.
//! `lifecycle.prevent_destroy` refuses it for protected resources.

use std::process::ExitCode;

use crate::plan::{PlanMode, PlanOptions};
use crate::vocabulary::ResourceAddr;

use super::apply::{RunOptions, plan_and_apply};
use super::context::Context;
use super::load::{Workspace, load_environment};

#[derive(Debug, Clone, Default)]
pub struct DestroyRequest {
    pub environment: Option<String>,
    pub cluster: Option<String>,
    /// Only these resources (and what depends on them).
    pub targets: Vec<ResourceAddr>,
    pub run: RunOptions,
}

pub fn run(
    workspace: &Workspace,
    request: &DestroyRequest,
    context: &Context,
) -> miette::Result<ExitCode> {
    let loaded = load_environment(
        workspace,
        request.environment.as_deref(),
        request.cluster.as_deref(),
        context,
    )?;
    let options = PlanOptions {
        mode: PlanMode::Destroy,
        cluster: request.cluster.clone(),
        targets: request.targets.clone(),
        ..PlanOptions::default()
    };
    plan_and_apply(
        workspace,
        &loaded,
        &options,
        &request.run,
        None,
        &context.out,
        context,
    )
}
