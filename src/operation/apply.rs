//! `apply [PLANFILE]`: the promotion gate, then plan and ask (or a saved plan as it is),
//! then the parallel walk of the changes with progress, then one look at the ready
//! signal of the applied clusters. Exit 0 when everything was applied, 1 when something
//! failed, 3 when everything planned was applied but the plan was partial (some
//! resources could not be read and were left out), 130 when interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::{ApplyOptions, ApplySummary, apply};
use crate::plan::{
    Action, PARTIAL_EXIT_CODE, Plan, PlanMode, PlanOptions, config_digest, plan, render, saved,
};
use crate::state::{PromotionRecord, StateDocument};

use super::context::{Context, Sink};
use super::diagnostic::{diagnostic, diagnostic_text};
use super::load::{Loaded, Workspace, load_environment, reload_if_changed};
use super::progress::{ProgressReporter, watch_interrupts};
use super::{bootstrap, promotion_gate};

/// What `apply` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    pub environment: Option<String>,
    pub cluster: Option<String>,
    /// Apply this saved plan as it is.
    pub plan_file: Option<PathBuf>,
    pub skip_promotion_check: bool,
    pub run: RunOptions,
    /// Symbols rather than ASCII in the ready signal shown after the apply.
    pub fancy: bool,
}

/// How a plan is applied: the flags `apply`, `destroy` and `bootstrap` share.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub auto_approve: bool,
    pub parallelism: usize,
    pub lock_timeout: Duration,
}

pub fn run(
    workspace: &Workspace,
    request: &ApplyRequest,
    context: &Context,
) -> miette::Result<ExitCode> {
    let cluster = request.cluster.as_deref();
    let (loaded, code) = match &request.plan_file {
        Some(path) => apply_saved(workspace, request, path, context)?,
        None => {
            let loaded =
                load_environment(workspace, request.environment.as_deref(), cluster, context)?;
            let code = apply_environment(
                workspace,
                &loaded,
                cluster,
                request.skip_promotion_check,
                &request.run,
                &context.out,
                context,
            )?;
            (loaded, code)
        }
    };
    if code == ExitCode::SUCCESS {
        bootstrap::apply_tail(&loaded, request.fancy, context);
    }
    Ok(code)
}

/// `apply` of one environment, as `apply` and `bootstrap` run it: the promotion gate,
/// then plan, ask, apply, with the plan and the summary written to `out`.
pub(super) fn apply_environment(
    workspace: &Workspace,
    loaded: &Loaded,
    cluster: Option<&str>,
    skip_promotion_check: bool,
    run: &RunOptions,
    out: &Sink,
    context: &Context,
) -> miette::Result<ExitCode> {
    let promotion = promotion_gate::check(
        workspace,
        &loaded.environment,
        skip_promotion_check,
        context,
    )?;
    let options = PlanOptions {
        cluster: cluster.map(str::to_string),
        ..PlanOptions::default()
    };
    plan_and_apply(
        workspace,
        loaded,
        &options,
        run,
        Some(promotion),
        out,
        context,
    )
}

/// Apply a saved plan; returns its environment's model with the exit code.
fn apply_saved(
    workspace: &Workspace,
    request: &ApplyRequest,
    path: &std::path::Path,
    context: &Context,
) -> miette::Result<(Loaded, ExitCode)> {
    let plan = saved::load_encrypted(path, context.store.encryption()).map_err(|e| {
        let help = e.help().map(str::to_string);
        diagnostic(&e, help)
    })?;
    if let Some(requested) = &request.environment
        && *requested != plan.environment
    {
        let error = saved::Error::Environment {
            plan: plan.environment.clone(),
            requested: requested.clone(),
        };
        return Err(diagnostic(&error, error.help().map(str::to_string)));
    }
    let mut loaded = load_environment(
        workspace,
        Some(&plan.environment),
        request.cluster.as_deref(),
        context,
    )?;
    let promotion = promotion_gate::check(
        workspace,
        &plan.environment,
        request.skip_promotion_check,
        context,
    )?;
    let locked = context.lock_and_reload(
        &plan.environment,
        "apply",
        request.run.lock_timeout,
        loaded.state.take(),
    )?;
    let (_lock, mut state) = (locked.guard, locked.state);
    // A plan made before the environment had any state: the state it planned against
    // was new and never stored; adopt its lineage.
    if state.serial == 0 && state.resources.is_empty() && plan.serial == 0 {
        state.lineage = plan.lineage;
    }
    saved::check(&plan, &state, &config_digest(&loaded.desired)).map_err(|e| {
        let help = e.help().map(str::to_string);
        diagnostic(&e, help)
    })?;
    let code = execute(
        &plan,
        state,
        request.run.parallelism,
        Some(promotion),
        &context.out,
        context,
    )?;
    Ok((loaded, code))
}

/// Plan, show, ask, apply: shared by `apply`, `destroy` and `bootstrap`. The plan and
/// the summary go to `out` (`bootstrap --json` keeps them off standard output);
/// `promotion` is recorded in state after a successful apply (`None` for destroy).
pub(super) fn plan_and_apply(
    workspace: &Workspace,
    loaded: &Loaded,
    options: &PlanOptions,
    run: &RunOptions,
    promotion: Option<PromotionRecord>,
    out: &Sink,
    context: &Context,
) -> miette::Result<ExitCode> {
    let environment = loaded.environment.as_str();
    let (_lock, state) = context.lock_and_load(environment, "apply", run.lock_timeout)?;
    let reloaded = reload_if_changed(workspace, loaded, &state, context)?;
    let loaded = reloaded.as_ref().unwrap_or(loaded);
    let runtime = context.runtime()?;
    let plan = runtime
        .block_on(plan(
            loaded.desired.clone(),
            &state,
            &context.providers,
            options,
        ))
        .map_err(|e| {
            let help = e.help();
            diagnostic(&e, help)
        })?;
    out.write(&render::human(&plan, context.color));
    if !plan.has_changes() && plan.drift.is_empty() {
        if plan.is_partial() {
            // Not known to match: nothing is recorded as applied.
            return Ok(ExitCode::from(PARTIAL_EXIT_CODE));
        }
        // Nothing to change is a successful apply of this configuration too.
        if let Some(promotion) = promotion {
            record_promotion(state, promotion, context)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !run.auto_approve && plan.has_changes() {
        let question = match options.mode {
            PlanMode::Destroy => format!(
                "\nDo you really want to destroy all resources in environment `{environment}`{}?\n  There is no undo. Only 'yes' will be accepted to confirm.\n\n  Enter a value: ",
                options
                    .cluster
                    .as_ref()
                    .map(|c| format!(", cluster `{c}`"))
                    .unwrap_or_default()
            ),
            _ => format!(
                "\nDo you want to perform these actions in environment `{environment}`?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
            ),
        };
        let Some(prompt) = &context.prompt else {
            return Err(diagnostic_text(
                "cannot ask for approval: standard input is not a terminal".into(),
                Some("review the plan and pass --auto-approve, or save it with `infraflux plan --out plan.json` and apply that file".into()),
            ));
        };
        if prompt(&question) != "yes" {
            context.err.write("Apply cancelled: nothing was changed.\n");
            return Ok(ExitCode::from(1));
        }
    }
    drop(runtime);
    execute(&plan, state, run.parallelism, promotion, out, context)
}

fn execute(
    plan: &Plan,
    state: StateDocument,
    parallelism: usize,
    promotion: Option<PromotionRecord>,
    out: &Sink,
    context: &Context,
) -> miette::Result<ExitCode> {
    let runtime = context.runtime()?;
    let options = ApplyOptions {
        parallelism,
        cancel: context.cancel.clone(),
    };
    let changes = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .count();
    // The live summary line only for a person watching: a real terminal on stderr.
    let live = context.handle_signals && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let reporter = Arc::new(ProgressReporter::new(context.err.clone(), changes, live));
    let summary = runtime
        .block_on(async {
            if context.handle_signals {
                watch_interrupts(context.cancel.clone(), context.err.clone());
            }
            apply(
                plan,
                state,
                context.store.clone(),
                &context.providers,
                reporter,
                &options,
            )
            .await
        })
        .map_err(|e| diagnostic(&e, None))?;
    out.write(&summary_text(plan, &summary));
    // A partial apply is not an apply of the whole configuration: no promotion.
    if summary.is_success()
        && !plan.is_partial()
        && plan.mode != PlanMode::Destroy
        && let Some(promotion) = promotion
    {
        record_promotion(summary.state.clone(), promotion, context)?;
    }
    Ok(if summary.cancelled {
        ExitCode::from(130)
    } else if !summary.is_success() {
        ExitCode::from(1)
    } else if plan.is_partial() {
        ExitCode::from(PARTIAL_EXIT_CODE)
    } else {
        ExitCode::SUCCESS
    })
}

fn record_promotion(
    mut state: StateDocument,
    promotion: PromotionRecord,
    context: &Context,
) -> miette::Result<()> {
    state.promotion = Some(promotion);
    // An apply with nothing to change records the identities adopted from older state.
    state.machines = crate::graph::machines::recorded_machines(&state);
    state.serial += 1;
    context
        .store
        .persist(&state)
        .map_err(|e| diagnostic(&e, None))
}

fn summary_text(plan: &Plan, summary: &ApplySummary) -> String {
    let count =
        |want: &dyn Fn(Action) -> bool| summary.done.iter().filter(|(_, a)| want(*a)).count();
    let added = count(&|a| a.creates());
    let changed = count(&|a| a == Action::Update);
    let destroyed = count(&|a| a.deletes());
    let mut text = String::from("\n");
    let verb = if plan.mode == PlanMode::Destroy {
        "Destroy"
    } else {
        "Apply"
    };
    let left_out = if plan.is_partial() {
        format!(
            "Partial: {} resource{} unknown and left out (could not be read); plan again once they can be reached.\n",
            plan.unknown.len(),
            if plan.unknown.len() == 1 {
                " was"
            } else {
                "s were"
            }
        )
    } else {
        String::new()
    };
    if summary.is_success() {
        text.push_str(&format!(
            "{verb} complete! Resources: {added} added, {changed} changed, {destroyed} destroyed.\n{left_out}"
        ));
        return text;
    }
    text.push_str(&left_out);
    text.push_str(&format!(
        "{verb} {}: {} done, {} failed, {} skipped{}.\n",
        if summary.cancelled {
            "interrupted"
        } else {
            "failed"
        },
        summary.done.len(),
        summary.failed.len(),
        summary.skipped.len(),
        if summary.not_started.is_empty() {
            String::new()
        } else {
            format!(", {} not started", summary.not_started.len())
        }
    ));
    for failure in &summary.failed {
        text.push_str(&format!(
            "  failed:  {}: {}\n",
            failure.address, failure.message
        ));
    }
    for (address, because) in &summary.skipped {
        text.push_str(&format!("  skipped: {address} (because of {because})\n"));
    }
    for address in &summary.not_started {
        text.push_str(&format!("  not started: {address}\n"));
    }
    text.push_str("State is saved; run `infraflux plan` to see what is left.\n");
    text
}
