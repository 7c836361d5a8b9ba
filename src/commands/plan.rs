//! `infraflux plan`: arguments → [`PlanRequest`] → [`operation::plan`] → the plan,
//! human or `--json`, saved with `--out`.

use std::process::ExitCode;

use super::wiring::parse_addresses;
use crate::cli::{PlanArgs, Refresh};
use crate::operation::plan::PlanRequest;
use crate::operation::{self, Context, Workspace};
use crate::plan::{PARTIAL_EXIT_CODE, PlanMode, PlanOptions, render};

pub fn run(args: &PlanArgs, workspace: &Workspace, context: &Context) -> miette::Result<ExitCode> {
    let request = PlanRequest {
        environment: args.selection.environment.clone(),
        plan: PlanOptions {
            mode: if args.refresh_only {
                PlanMode::RefreshOnly
            } else {
                PlanMode::Normal
            },
            cluster: args.selection.cluster.clone(),
            targets: parse_addresses(&args.targets)?,
            replace: parse_addresses(&args.replace)?,
            refresh: args.refresh != Refresh::False,
            deep_refresh: args.refresh == Refresh::Deep,
            complete: args.json || args.out.is_some(),
            ..PlanOptions::default()
        },
        lock_timeout: args.lock.lock_timeout,
    };
    let plan = operation::plan::run(workspace, &request, context)?;
    if args.json {
        let json = serde_json::to_string_pretty(&render::json(&plan))
            .map_err(|e| miette::miette!("cannot render the plan as JSON: {e}"))?;
        context.out.write(&format!("{json}\n"));
    } else {
        render::human_to(&plan, context.color, &mut |piece| context.out.write(piece));
    }
    if let Some(path) = &args.out {
        operation::plan::save(&plan, path, context)?;
        if !args.json {
            context.out.write(&format!(
                "\nSaved the plan to {}. Apply exactly this plan with:\n    infraflux apply {}\n",
                path.display(),
                path.display()
            ));
        }
    }
    // A partial plan says so whatever the flags: some resources could not be read.
    let code = if plan.is_partial() {
        ExitCode::from(PARTIAL_EXIT_CODE)
    } else if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    // The process exits next: freeing a fleet's changes value by value would only cost
    // time (a tenth of a 10,000-resource plan's CPU); the OS takes the memory back whole.
    std::mem::forget(plan);
    Ok(code)
}
