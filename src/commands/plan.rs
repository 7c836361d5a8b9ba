//! `infraflux plan`: load → desired resources → lock state → plan → render (→ save).

use std::process::ExitCode;

use super::engine::{Context, diagnostic, load_desired, parse_addresses};
use crate::cli::{GlobalArgs, PlanArgs};
use crate::plan::{PlanMode, PlanOptions, plan, render, saved};

pub fn run(global: &GlobalArgs, args: &PlanArgs, context: &Context) -> miette::Result<ExitCode> {
    let (environment, desired) = load_desired(global, &args.selection, context)?;
    let options = PlanOptions {
        mode: if args.refresh_only {
            PlanMode::RefreshOnly
        } else {
            PlanMode::Normal
        },
        cluster: args.selection.cluster.clone(),
        targets: parse_addresses(&args.targets)?,
        replace: parse_addresses(&args.replace)?,
        refresh: args.refresh,
    };
    let (_lock, state) = context.lock_and_load(&environment, "plan", args.lock.lock_timeout)?;
    let runtime = context.runtime()?;
    let result = runtime.block_on(plan(desired, &state, &context.providers, &options));
    let plan = match result {
        Ok(plan) => plan,
        Err(error) => {
            let help = error.help();
            return Err(diagnostic(&error, help));
        }
    };
    if args.json {
        context.out.write(&format!(
            "{}\n",
            serde_json::to_string_pretty(&render::json(&plan)).expect("JSON renders")
        ));
    } else {
        context.out.write(&render::human(&plan, context.color));
    }
    if let Some(path) = &args.out {
        if context.store.encryption().is_none() {
            context.err.write("warning: the saved plan holds the configuration's secrets in plaintext (the file is readable by you only); set INFRAFLUX_STATE_RECIPIENTS or INFRAFLUX_STATE_IDENTITY_FILE to encrypt saved plans as state (README: State encryption)\n");
        }
        saved::save_encrypted(&plan, path, context.store.encryption()).map_err(|e| {
            let help = e.help().map(str::to_string);
            diagnostic(&e, help)
        })?;
        if !args.json {
            context.out.write(&format!(
                "\nSaved the plan to {}. Apply exactly this plan with:\n    infraflux apply {}\n",
                path.display(),
                path.display()
            ));
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
