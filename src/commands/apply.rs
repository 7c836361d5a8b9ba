//! `infraflux apply [PLANFILE]`: plan and ask (or apply a saved plan as it is), then walk
//! the changes. Exit 0 when everything was applied, 1 when something failed, 130 when
//! interrupted.

use std::process::ExitCode;
use std::sync::Arc;

use super::engine::{
    Context, ProgressReporter, Sink, diagnostic, diagnostic_text, load_desired, load_desired_for,
    watch_interrupts,
};
use crate::apply::{ApplyOptions, ApplySummary, apply};
use crate::cli::{ApplyArgs, GlobalArgs};
use crate::config::{Selection, load_config};
use crate::model::resolve_model;
use crate::plan::{Plan, PlanMode, PlanOptions, config_digest, plan, render, saved};
use crate::promotion;
use crate::state::{PromotionRecord, StateDocument};

pub fn run(global: &GlobalArgs, args: &ApplyArgs, context: &Context) -> miette::Result<ExitCode> {
    let cluster = args.selection.cluster.as_deref();
    let (environment, code) = match &args.plan_file {
        Some(path) => apply_saved(global, args, path, context)?,
        None => {
            let (environment, desired) = load_desired(global, &args.selection, context)?;
            let run = RunOptions {
                auto_approve: args.auto_approve,
                parallelism: args.parallelism,
                lock_timeout: args.lock.lock_timeout,
                promotion: None,
            };
            let code = apply_environment(
                global,
                &environment,
                desired,
                cluster,
                args.skip_promotion_check,
                run,
                &context.out,
                context,
            )?;
            (environment, code)
        }
    };
    if code == ExitCode::SUCCESS {
        super::bootstrap::apply_tail(global, &environment, cluster, context);
    }
    Ok(code)
}

/// `apply` of one environment, as `apply` and `bootstrap` run it: the promotion gate,
/// then plan, ask, apply, with the plan and the summary written to `out`.
/// `run.promotion` is filled in by the gate.
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_environment(
    global: &GlobalArgs,
    environment: &str,
    desired: Vec<crate::graph::DesiredResource>,
    cluster: Option<&str>,
    skip_promotion_check: bool,
    mut run: RunOptions,
    out: &Sink,
    context: &Context,
) -> miette::Result<ExitCode> {
    run.promotion = Some(promotion_gate(
        global,
        environment,
        skip_promotion_check,
        context,
    )?);
    let options = PlanOptions {
        cluster: cluster.map(str::to_string),
        ..PlanOptions::default()
    };
    plan_and_apply_to(environment, desired, &options, run, out, context)
}

/// Apply a saved plan; returns its environment with the exit code.
fn apply_saved(
    global: &GlobalArgs,
    args: &ApplyArgs,
    path: &std::path::Path,
    context: &Context,
) -> miette::Result<(String, ExitCode)> {
    let plan = saved::load_encrypted(path, context.store.encryption()).map_err(|e| {
        let help = e.help().map(str::to_string);
        diagnostic(&e, help)
    })?;
    if let Some(requested) = &args.selection.environment
        && *requested != plan.environment
    {
        let error = saved::Error::Environment {
            plan: plan.environment.clone(),
            requested: requested.clone(),
        };
        return Err(diagnostic(&error, error.help().map(str::to_string)));
    }
    let (_, desired) = load_desired_for(
        global,
        Some(&plan.environment),
        args.selection.cluster.as_deref(),
        context,
    )?;
    let promotion = promotion_gate(
        global,
        &plan.environment,
        args.skip_promotion_check,
        context,
    )?;
    let (_lock, mut state) =
        context.lock_and_load(&plan.environment, "apply", args.lock.lock_timeout)?;
    // A plan made before the environment had any state: the state it planned against
    // was new and never stored; adopt its lineage.
    if state.serial == 0 && state.resources.is_empty() && plan.serial == 0 {
        state.lineage = plan.lineage;
    }
    saved::check(&plan, &state, &config_digest(&desired)).map_err(|e| {
        let help = e.help().map(str::to_string);
        diagnostic(&e, help)
    })?;
    let code = execute(
        &plan,
        state,
        args.parallelism,
        Some(promotion),
        &context.out,
        context,
    )?;
    Ok((plan.environment, code))
}

/// How `plan_and_apply` runs: the flags `apply` and `destroy` share.
pub(super) struct RunOptions {
    pub auto_approve: bool,
    pub parallelism: usize,
    pub lock_timeout: std::time::Duration,
    /// Recorded in state after a successful apply (`None` for destroy).
    pub promotion: Option<PromotionRecord>,
}

/// Plan, show, ask, apply: shared by `apply` and `destroy`.
pub(super) fn plan_and_apply(
    environment: &str,
    desired: Vec<crate::graph::DesiredResource>,
    options: &PlanOptions,
    run: RunOptions,
    context: &Context,
) -> miette::Result<ExitCode> {
    plan_and_apply_to(environment, desired, options, run, &context.out, context)
}

/// [`plan_and_apply`] with the plan and the summary written to `out` (`bootstrap
/// --json` keeps them off standard output).
fn plan_and_apply_to(
    environment: &str,
    desired: Vec<crate::graph::DesiredResource>,
    options: &PlanOptions,
    run: RunOptions,
    out: &Sink,
    context: &Context,
) -> miette::Result<ExitCode> {
    let RunOptions {
        auto_approve,
        parallelism,
        lock_timeout,
        promotion,
    } = run;
    let (_lock, state) = context.lock_and_load(environment, "apply", lock_timeout)?;
    let runtime = context.runtime()?;
    let plan = runtime
        .block_on(plan(desired, &state, &context.providers, options))
        .map_err(|e| {
            let help = e.help();
            diagnostic(&e, help)
        })?;
    out.write(&render::human(&plan, context.color));
    if !plan.has_changes() && plan.drift.is_empty() {
        // Nothing to change is a successful apply of this configuration too.
        if let Some(promotion) = promotion {
            record_promotion(state, promotion, context)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !auto_approve && plan.has_changes() {
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
    execute(&plan, state, parallelism, promotion, out, context)
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
        .filter(|c| c.action != crate::plan::Action::NoOp)
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
    if summary.is_success()
        && plan.mode != PlanMode::Destroy
        && let Some(promotion) = promotion
    {
        record_promotion(summary.state.clone(), promotion, context)?;
    }
    Ok(if summary.cancelled {
        ExitCode::from(130)
    } else if summary.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Check that the previous environment (by sync wave) was last applied successfully with
/// the same promotable configuration; returns the record to store after this apply.
fn promotion_gate(
    global: &GlobalArgs,
    environment: &str,
    skip: bool,
    context: &Context,
) -> miette::Result<PromotionRecord> {
    let (config, _) = load_config(
        global.config_paths(),
        &Selection::default(),
        context.variables.as_ref(),
    );
    let current = promotion::promotable_values(&config, environment);
    let Some(model) = resolve_model(&config).0 else {
        return Ok(promotion::record(current, None));
    };
    let Some(previous) = promotion::previous_environment(&model, environment) else {
        return Ok(promotion::record(current, None));
    };
    let recorded = context
        .store
        .load(&previous)
        .map_err(|e| diagnostic(&e, None))?
        .and_then(|state| state.promotion);
    let reason = match &recorded {
        None => Some(format!("`{previous}` has no successful apply on record")),
        Some(record) => {
            let found = promotion::differences(&current, record);
            (!found.is_empty()).then(|| {
                let lines: Vec<String> = found
                    .iter()
                    .map(|d| {
                        let show = |v: &Option<serde_json::Value>| {
                            v.as_ref()
                                .map_or("(not set)".to_string(), |v| v.to_string())
                        };
                        format!(
                            "  {}: {}: {} in {previous}, {} now",
                            d.cluster,
                            d.key,
                            show(&d.previous),
                            show(&d.current)
                        )
                    })
                    .collect();
                format!(
                    "its configuration differs from what `{previous}` last applied:\n{}",
                    lines.join("\n")
                )
            })
        }
    };
    match (reason, skip) {
        (None, _) => Ok(promotion::record(current, None)),
        (Some(reason), true) => {
            context.err.write(&format!(
                "Warning: skipping the promotion check for `{environment}`: {reason}\n  (recorded in the state of `{environment}`)\n"
            ));
            Ok(promotion::record(current, Some(reason)))
        }
        (Some(reason), false) => Err(diagnostic_text(
            format!("refusing to apply `{environment}`: {reason}"),
            Some(format!(
                "apply the same configuration to `{previous}` first (`infraflux apply --env {previous}`), or pass --skip-promotion-check (recorded in state)"
            )),
        )),
    }
}

fn record_promotion(
    mut state: StateDocument,
    promotion: PromotionRecord,
    context: &Context,
) -> miette::Result<()> {
    state.promotion = Some(promotion);
    state.serial += 1;
    context
        .store
        .persist(&state)
        .map_err(|e| diagnostic(&e, None))
}

fn summary_text(plan: &Plan, summary: &ApplySummary) -> String {
    use crate::plan::Action;
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
    if summary.is_success() {
        text.push_str(&format!(
            "{verb} complete! Resources: {added} added, {changed} changed, {destroyed} destroyed.\n"
        ));
        return text;
    }
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
