//! `infraflux bootstrap`: arguments → [`BootstrapRequest`] → [`operation::bootstrap`]
//! (apply each environment in promotion order, then its clusters' ready signals; or
//! `--render DIR`).

use std::process::ExitCode;

use crate::cli::{BootstrapArgs, GlobalArgs};
use crate::operation::apply::RunOptions;
use crate::operation::bootstrap::BootstrapRequest;
use crate::operation::{self, Context, Workspace};

pub fn run(
    global: &GlobalArgs,
    args: &BootstrapArgs,
    workspace: &Workspace,
    context: &Context,
) -> miette::Result<ExitCode> {
    let request = BootstrapRequest {
        environment: args.selection.environment.clone(),
        cluster: args.selection.cluster.clone(),
        render: args.render.clone(),
        json: args.json,
        timeout: args.timeout,
        run: RunOptions {
            auto_approve: args.auto_approve,
            parallelism: args.parallelism,
            lock_timeout: args.lock.lock_timeout,
        },
        fancy: super::output::fancy_symbols(global, context),
    };
    operation::bootstrap::run(workspace, &request, context)
}
