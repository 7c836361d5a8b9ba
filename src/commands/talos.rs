//! `infraflux talos config`: a talosconfig for `talosctl` ([`operation::talos`]),
//! written 0600; never printed unless asked for with `--out -`.
//!
//! `infraflux talos render`: every node's machine config, written 0600 into a 0700
//! directory.

use std::process::ExitCode;

use crate::cli::{TalosConfigArgs, TalosRenderArgs};
use crate::operation::{self, Context, Workspace, diagnostic_text};
use crate::private_file;

pub fn config(
    args: &TalosConfigArgs,
    workspace: &Workspace,
    context: &Context,
) -> miette::Result<ExitCode> {
    let talosconfig =
        operation::talos::talosconfig(workspace, &args.environment, &args.cluster, context)?;
    if args.out.as_os_str() == "-" {
        context.out.write(&talosconfig.text);
        return Ok(ExitCode::SUCCESS);
    }
    private_file::write(&args.out, talosconfig.text.as_bytes()).map_err(|e| {
        diagnostic_text(
            format!("cannot write `{}`: {e}", args.out.display()),
            Some("pick another --out path".into()),
        )
    })?;
    context.err.write(&format!(
        "Wrote {} (context `{}`, endpoints {}). Use it with `talosctl --talosconfig {} …`.\n",
        args.out.display(),
        talosconfig.context_name,
        talosconfig.endpoints.join(", "),
        args.out.display()
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn render(
    args: &TalosRenderArgs,
    workspace: &Workspace,
    context: &Context,
) -> miette::Result<ExitCode> {
    let written = operation::talos::render(
        workspace,
        &args.environment,
        &args.cluster,
        &args.out,
        context,
    )?;
    for path in &written {
        context.out.write(&format!("{}\n", path.display()));
    }
    context.err.write(&format!(
        "Wrote {} machine config{} for {}/{} to {} (mode 0600: they hold the cluster's secrets).\n",
        written.len(),
        if written.len() == 1 { "" } else { "s" },
        args.environment,
        args.cluster,
        args.out.display()
    ));
    Ok(ExitCode::SUCCESS)
}
