//! `plan`: load → desired resources → lock state → refresh and diff → a [`Plan`] for the
//! command to render (and, with `--out`, save).

use std::path::Path;
use std::time::Duration;

use crate::plan::{Plan, PlanOptions, plan, saved};

use super::context::Context;
use super::diagnostic::diagnostic;
use super::load::{Workspace, load_environment, reload_if_changed};

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// `None`: the configuration's only environment.
    pub environment: Option<String>,
    /// Mode, targets, replacements, refresh; its `cluster` narrows the plan.
    pub plan: PlanOptions,
    pub lock_timeout: Duration,
}

/// Plan one environment against its state (locked while planning).
pub fn run(
    workspace: &Workspace,
    request: &PlanRequest,
    context: &Context,
) -> miette::Result<Plan> {
    let mut loaded = load_environment(
        workspace,
        request.environment.as_deref(),
        request.plan.cluster.as_deref(),
        context,
    )?;
    let locked = context.lock_and_reload(
        &loaded.environment,
        "plan",
        request.lock_timeout,
        loaded.state.take(),
    )?;
    let state = &locked.state;
    // The document read without the lock is the one locked (the usual case): the
    // machine identities were resolved from it already.
    let reloaded = match locked.read_again {
        true => reload_if_changed(workspace, &loaded, state, context)?,
        false => None,
    };
    let loaded = reloaded.unwrap_or(loaded);
    let runtime = context.runtime()?;
    runtime
        .block_on(plan(
            loaded.desired,
            state,
            &context.providers,
            &request.plan,
        ))
        .map_err(|error| {
            let help = error.help();
            diagnostic(&error, help)
        })
}

/// Save `plan` for `apply PLANFILE`, encrypted as state is when a key is configured.
pub fn save(plan: &Plan, path: &Path, context: &Context) -> miette::Result<()> {
    if context.store.encryption().is_none() {
        context.err.write("warning: the saved plan holds the configuration's secrets in plaintext (the file is readable by you only); set INFRAFLUX_STATE_RECIPIENTS or INFRAFLUX_STATE_IDENTITY_FILE to encrypt saved plans as state (README: State encryption)\n");
    }
    saved::save_encrypted(plan, path, context.store.encryption()).map_err(|e| {
        let help = e.help().map(str::to_string);
        diagnostic(&e, help)
    })
}
