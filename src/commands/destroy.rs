//! `infraflux destroy`: plan the deletion of everything in scope (dependants first),
//! ask, apply. `lifecycle.prevent_destroy` refuses it for protected resources.

use std::process::ExitCode;

use super::apply::{RunOptions, plan_and_apply};
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
    let run = RunOptions {
        auto_approve: args.auto_approve,
        parallelism: args.parallelism,
        lock_timeout: args.lock.lock_timeout,
        promotion: None,
    };
    plan_and_apply(&environment, desired, &options, run, context)
}
