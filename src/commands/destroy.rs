//! `infraflux destroy`: arguments → [`DestroyRequest`] → [`operation::destroy`].

use std::process::ExitCode;

use super::wiring::parse_addresses;
use crate::cli::DestroyArgs;
use crate::operation::apply::RunOptions;
use crate::operation::destroy::DestroyRequest;
use crate::operation::{self, Context, Workspace};

pub fn run(
    args: &DestroyArgs,
    workspace: &Workspace,
    context: &Context,
) -> miette::Result<ExitCode> {
    let request = DestroyRequest {
        environment: args.selection.environment.clone(),
        cluster: args.selection.cluster.clone(),
        targets: parse_addresses(&args.targets)?,
        run: RunOptions {
            auto_approve: args.auto_approve,
            parallelism: args.parallelism,
            lock_timeout: args.lock.lock_timeout,
        },
    };
    operation::destroy::run(workspace, &request, context)
}
