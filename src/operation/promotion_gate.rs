//! The promotion gate of `apply`: an environment is applied only with the promotable
//! configuration its predecessor (by sync wave) last applied successfully.

use crate::config::{References, Selection};
use crate::promotion;
use crate::state::PromotionRecord;

use super::context::Context;
use super::diagnostic::{diagnostic, diagnostic_text};
use super::load::Workspace;

/// Check that the previous environment (by sync wave) was last applied successfully with
/// the same promotable configuration; returns the record to store after this apply.
/// Every environment is composed from the run's one read of the configuration.
pub fn check(
    workspace: &Workspace,
    environment: &str,
    skip: bool,
    context: &Context,
) -> miette::Result<PromotionRecord> {
    // This environment's values as it is applied (resolved); the order of every
    // environment from their sync waves alone (deferred: no other environment's
    // secrets are needed).
    let (config, _) = workspace.configuration(&Selection {
        environment: Some(environment.to_string()),
        cluster: None,
    });
    let current = promotion::promotable_values(&config, environment);
    let (every, _) = workspace.configuration_with(&Selection::default(), References::Defer);
    let Some(previous) = promotion::previous_environment(&every, environment) else {
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
