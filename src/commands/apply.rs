//! `infraflux apply [PLANFILE]`: arguments → [`ApplyRequest`] → [`operation::apply`].
//! Exit 0 when everything was applied, 1 when something failed, 130 when interrupted.

use std::process::ExitCode;

use crate::cli::{ApplyArgs, GlobalArgs};
use crate::operation::apply::{ApplyRequest, RunOptions};
use crate::operation::{self, Context, Workspace};

pub fn run(
    global: &GlobalArgs,
    args: &ApplyArgs,
    workspace: &Workspace,
    context: &Context,
) -> miette::Result<ExitCode> {
    let request = ApplyRequest {
        environment: args.selection.environment.clone(),
        cluster: args.selection.cluster.clone(),
        plan_file: args.plan_file.clone(),
        skip_promotion_check: args.skip_promotion_check,
        run: RunOptions {
            auto_approve: args.auto_approve,
            parallelism: args.parallelism,
            lock_timeout: args.lock.lock_timeout,
        },
        fancy: super::output::fancy_symbols(global, context),
    };
    operation::apply::run(workspace, &request, context)
}
