//! `infraflux destroy`: plan the deletion of everything in scope (dependants first),
//! ask, apply. `lifecycle.prevent_destroy` refuses it for protected resources.

use std::process::ExitCode;

use super::apply::plan_and_apply;
use super::engine::{Context, load_desired, parse_addresses};
use crate::cli::{DestroyArgs, GlobalArgs};
use crate::plan::{PlanMode, PlanOptions};

pub fn run(global: &GlobalArgs, args: &DestroyArgs, context: &Context) -> miette::Result<ExitCode> {
    let (environment, desired) = load_desired(global, &args.selection, context)?;
    let options = PlanOptions {
        mode: PlanMode::Destroy,
        cluster: args.selection.cluster.clone(),
        targets: parse_addresses(&args.targets)?,
        ..PlanOptions::default()
    };
    plan_and_apply(
        &environment,
        desired,
        &options,
        args.auto_approve,
        args.parallelism,
        args.lock.lock_timeout,
        None,
        context,
    )
}
