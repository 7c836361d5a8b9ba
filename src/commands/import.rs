//! `infraflux import ADDR ID`: adopt an existing object ([`operation::import`]).

use std::process::ExitCode;

use crate::cli::ImportArgs;
use crate::operation::{self, Context, Workspace, diagnostic};
use crate::vocabulary::ResourceAddr;

pub fn run(
    args: &ImportArgs,
    workspace: &Workspace,
    context: &Context,
) -> miette::Result<ExitCode> {
    let address: ResourceAddr = args.address.parse().map_err(|e| diagnostic(&e, None))?;
    let environment = operation::import::run(workspace, &address, &args.id, context)?;
    context.out.write(&format!(
        "Imported {address} (id {}). Run `infraflux plan --env {environment}` to see how it differs from the configuration.\n",
        args.id
    ));
    Ok(ExitCode::SUCCESS)
}
