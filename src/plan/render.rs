//! Plan renderers: human (Terraform's conventions) and JSON (docs/plan-json.md).
//!
//! Secrets print as `(sensitive)` and values known only after apply as
//! `(known after apply)`, in both.

use std::borrow::Cow;
use std::fmt::Write as _;

use infraflux_provider::{Attributes, contains_unknown};
use serde_json::{Value, json};

use super::{Action, AttributeDiff, Change, Drift, Plan, PlanMode};

const SENSITIVE: &str = crate::vocabulary::MASK;
const UNKNOWN: &str = "(known after apply)";

struct Style {
    color: bool,
}

impl Style {
    /// `text` in colour, or as it is (borrowed: a plan paints a symbol on every line).
    fn paint<'a>(&self, code: &str, text: &'a str) -> Cow<'a, str> {
        if self.color {
            Cow::Owned(format!("\x1b[{code}m{text}\x1b[0m"))
        } else {
            Cow::Borrowed(text)
        }
    }

    fn symbol(&self, action: Action) -> Cow<'static, str> {
        let code = match action {
            Action::Create => "32",
            Action::Update => "33",
            Action::Delete => "31",
            Action::DeleteThenCreate | Action::CreateThenDelete => "35",
            Action::Read => "36",
            Action::NoOp => "0",
        };
        self.paint(code, action.symbol())
    }

    fn bold<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.paint("1", text)
    }
}

fn value_text(value: Option<&Value>, sensitive: bool) -> String {
    match value {
        None => "null".to_string(),
        // An unknown value reveals nothing, secret or not.
        Some(v) if contains_unknown(v) => UNKNOWN.to_string(),
        Some(_) if sensitive => SENSITIVE.to_string(),
        // JSON escapes C0 controls; C1 controls and bidi marks from the configuration
        // must not reach the terminal either.
        Some(v) => crate::diag::printable(&serde_json::to_string(v).expect("values serialize"))
            .into_owned(),
    }
}

/// One attribute line: (symbol action, path, text).
type Line = (Action, String, String);

fn lines_for(change: &Change) -> (Vec<Line>, usize) {
    let sensitive = |path: &str| change.is_sensitive(path);
    let all = |attributes: Option<&Attributes>, action: Action, deleting: bool| -> Vec<Line> {
        let mut sorted: Vec<(&String, &Value)> = attributes.into_iter().flatten().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        sorted
            .into_iter()
            .map(|(key, value)| {
                let text = value_text(Some(value), sensitive(key));
                let text = if deleting {
                    format!("{text} -> null")
                } else {
                    text
                };
                (action, key.clone(), text)
            })
            .collect()
    };
    match change.action {
        Action::NoOp => (Vec::new(), 0),
        Action::Create => (all(change.after.as_ref(), Action::Create, false), 0),
        Action::Delete => (all(change.before.as_ref(), Action::Delete, true), 0),
        Action::Update | Action::DeleteThenCreate | Action::CreateThenDelete | Action::Read => {
            let diffs = change.attribute_diffs();
            let total = change
                .before
                .iter()
                .chain(change.after.iter())
                .flat_map(|a| a.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let changed_roots: std::collections::BTreeSet<&str> = diffs
                .iter()
                .map(|d| d.path.split('.').next().unwrap_or(&d.path))
                .collect();
            let lines = diffs
                .iter()
                .map(|d| diff_line(d, sensitive(&d.path), &change.requires_replace))
                .collect();
            (lines, total - changed_roots.len())
        }
    }
}

fn diff_line(diff: &AttributeDiff, sensitive: bool, requires_replace: &[String]) -> Line {
    let forces = if requires_replace.iter().any(|r| r == &diff.path) {
        " # forces replacement"
    } else {
        ""
    };
    match (&diff.before, &diff.after) {
        (None, after) => (
            Action::Create,
            diff.path.clone(),
            format!("{}{forces}", value_text(after.as_ref(), sensitive)),
        ),
        (before, None) => (
            Action::Delete,
            diff.path.clone(),
            format!("{} -> null{forces}", value_text(before.as_ref(), sensitive)),
        ),
        // Multi-line text (a machine config): the lines that changed, as a heredoc.
        (Some(Value::String(before)), Some(Value::String(after)))
            if !sensitive && (before.contains('\n') || after.contains('\n')) =>
        {
            let mut text = format!("<<-EOT{forces}");
            for line in super::text_diff::line_diff(before, after) {
                let _ = write!(text, "\n            {}", crate::diag::printable(&line));
            }
            text.push_str("\n        EOT");
            (Action::Update, diff.path.clone(), text)
        }
        (before, after) => (
            Action::Update,
            diff.path.clone(),
            format!(
                "{} -> {}{forces}",
                value_text(before.as_ref(), sensitive),
                value_text(after.as_ref(), sensitive)
            ),
        ),
    }
}

fn block(
    text: &mut String,
    style: &Style,
    header: &str,
    note: Option<String>,
    action: Action,
    change: &Change,
) {
    let _ = writeln!(text, "  {}", style.bold(&format!("# {header}")));
    if let Some(note) = note {
        let _ = writeln!(text, "  # {note}");
    }
    let (lines, hidden) = lines_for(change);
    let _ = writeln!(
        text,
        "{:>width$} resource \"{}\" \"{}\" {{",
        style.symbol(action),
        change.address.kind,
        change.address.name,
        width = 3 + style.symbol(action).len() - action.symbol().len()
    );
    let key_width = lines.iter().map(|(_, k, _)| k.len()).max().unwrap_or(0);
    for (line_action, key, value) in &lines {
        let key = crate::diag::printable(key);
        let _ = writeln!(
            text,
            "      {} {key:<key_width$} = {value}",
            style.symbol(*line_action)
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            text,
            "        # ({hidden} unchanged attribute{} hidden)",
            if hidden == 1 { "" } else { "s" }
        );
    }
    text.push_str("    }\n\n");
}

fn drift_change(drift: &Drift) -> Change {
    Change {
        address: drift.address.clone(),
        provider: drift.before.provider.clone(),
        action: Action::Read,
        reason: None,
        id: None,
        before: Some(drift.before.attributes.parse()),
        after: drift.after.as_ref().map(|a| a.attributes.parse()),
        desired: None,
        requires_replace: Vec::new(),
        sensitive: drift.before.sensitive.clone(),
        wait_for: Vec::new(),
        dependencies: Vec::new(),
        prevent_destroy: false,
        refreshed: None,
    }
}

/// The plan for a person, in Terraform's layout.
pub fn human(plan: &Plan, color: bool) -> String {
    let mut all = String::new();
    human_to(plan, color, &mut |piece| all.push_str(piece));
    all
}

/// Changes each thread renders at a time ([`human_to`]): a batch's text is held until
/// it is handed on, and a batch starts its threads.
const RENDERED_PER_THREAD: usize = 256;

/// Fewer changes than this are rendered on one thread: 10,000 creates render in about
/// 60 ms, and a second thread saved 20 ms of it for 3 MiB more peak memory; 100,000
/// render in 0.7 s.
const RENDERED_ON_ONE_THREAD: usize = 16 * 1024;

/// The blocks of `changes`, in order, handed to `emit`.
fn change_blocks(changes: &[&Change], style: &Style, threads: usize, emit: &mut dyn FnMut(&str)) {
    for batch in changes.chunks(RENDERED_PER_THREAD * threads) {
        let texts = crate::cores::map_runs(batch, threads, |run| {
            let mut text = String::new();
            for change in run {
                change_block(&mut text, style, change);
            }
            vec![text]
        });
        for text in texts {
            emit(&text);
        }
    }
}

/// One change's block, under its header and the reason it is planned.
fn change_block(text: &mut String, style: &Style, change: &Change) {
    let header = match (change.action, &change.after) {
        (Action::Read, None) => format!("{} has been deleted", change.address),
        (Action::Read, Some(_)) => format!("{} has changed", change.address),
        (action, _) => format!("{} {}", change.address, action.describe()),
    };
    let note = change.reason.as_ref().map(|r| r.explain(&change.address));
    block(text, style, &header, note, change.action, change);
}

/// [`human`] handed to `emit` in pieces as it is rendered: the plan of 100,000 resources
/// is about 100 MB of text, which is then never held whole.
pub fn human_to(plan: &Plan, color: bool, emit: &mut dyn FnMut(&str)) {
    let style = Style { color };
    let mut text = String::new();

    if !plan.drift.is_empty() {
        text.push_str(&style.bold("Note: objects have changed outside InfraFlux"));
        text.push_str("\n\nInfraFlux detected the following changes made outside InfraFlux since the last apply:\n\n");
        for drift in &plan.drift {
            let change = drift_change(drift);
            match &drift.after {
                Some(_) => block(
                    &mut text,
                    &style,
                    &format!("{} has changed", drift.address),
                    None,
                    Action::Update,
                    &change,
                ),
                None => {
                    let _ = writeln!(
                        text,
                        "  {}\n",
                        style.bold(&format!("# {} has been deleted", drift.address))
                    );
                }
            }
        }
    }

    unknown_section(&mut text, &style, plan);

    let visible: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    if visible.is_empty() {
        let line = match (plan.mode, plan.is_partial()) {
            (_, true) => format!(
                "No changes to what could be read. {}",
                partial_note(plan.unknown.len())
            ),
            (PlanMode::RefreshOnly, false) => {
                "No changes. Nothing changed outside InfraFlux.".to_string()
            }
            (_, false) => "No changes. The infrastructure matches the configuration.".to_string(),
        };
        text.push_str(&style.bold(&line));
        text.push('\n');
        emit(&text);
        return;
    }

    let mut used: Vec<Action> = visible.iter().map(|c| c.action).collect();
    used.sort_by_key(|a| legend_rank(*a));
    used.dedup();
    text.push_str("Resource actions are indicated with the following symbols:\n");
    for action in used {
        let _ = writeln!(
            text,
            "{:>width$} {}",
            style.symbol(action),
            legend(action),
            width = 3 + style.symbol(action).len() - action.symbol().len()
        );
    }
    text.push('\n');
    match plan.mode {
        PlanMode::RefreshOnly => text.push_str("This is a refresh-only plan: applying it records these changes in state and changes no remote object.\n\n"),
        _ => text.push_str("InfraFlux will perform the following actions:\n\n"),
    }
    // A batch of changes at a time is rendered on every core, then handed on in order:
    // rendering a fleet's create plan (100 MB of text at 100,000 resources) on one
    // thread was a fifth of that plan's time.
    let threads = if visible.len() < RENDERED_ON_ONE_THREAD {
        1
    } else {
        crate::cores::available()
    };
    emit(&text);
    text.clear();
    change_blocks(&visible, &style, threads, emit);
    rollout_section(&mut text, &style, plan);
    let summary = plan.summary();
    let line = match plan.mode {
        PlanMode::RefreshOnly => format!(
            "Refresh: {} resource{} changed outside InfraFlux.",
            summary.read,
            if summary.read == 1 { "" } else { "s" }
        ),
        _ => format!(
            "Plan: {} to add, {} to change, {} to destroy.",
            summary.add, summary.change, summary.destroy
        ),
    };
    let line = if plan.is_partial() {
        format!("{line} {}", partial_note(summary.unknown))
    } else {
        line
    };
    text.push_str(&style.bold(&line));
    text.push('\n');
    emit(&text);
}

/// Each rollout: its steps in the order they run, one at a time, and what each waits
/// for before the next.
fn rollout_section(text: &mut String, style: &Style, plan: &Plan) {
    for rollout in &plan.rollouts {
        text.push_str(&style.bold(&format!("Rollout {}", rollout.key)));
        let _ = writeln!(
            text,
            ": one at a time, in this order; each step waits until {}; the first failure stops the rest (they are left as they are):",
            rollout.gates
        );
        for (position, step) in rollout.steps.iter().enumerate() {
            let _ = writeln!(text, "  {}. {step}", position + 1);
        }
        text.push('\n');
    }
}

/// `This plan is partial: 2 resources unknown (left out).`
fn partial_note(unknown: usize) -> String {
    format!(
        "This plan is partial: {unknown} resource{} unknown (left out).",
        if unknown == 1 { "" } else { "s" }
    )
}

/// The resources a partial plan leaves out, each with why.
fn unknown_section(text: &mut String, style: &Style, plan: &Plan) {
    if !plan.is_partial() {
        return;
    }
    text.push_str(&style.bold("Warning: this plan is partial"));
    text.push_str("\n\nThese resources could not be read, or wait for one that could not; they are left out of this plan and of its apply:\n\n");
    for unknown in &plan.unknown {
        let _ = writeln!(
            text,
            "  {} {}: {}",
            style.paint("33", "?"),
            unknown.address,
            unknown.reason
        );
    }
    text.push_str("\nEverything else is planned below. Plan again once they can be reached.\n\n");
}

fn legend_rank(action: Action) -> u8 {
    match action {
        Action::Create => 0,
        Action::Update => 1,
        Action::Delete => 2,
        Action::DeleteThenCreate => 3,
        Action::CreateThenDelete => 4,
        Action::Read => 5,
        Action::NoOp => 6,
    }
}

fn legend(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update in-place",
        Action::Delete => "destroy",
        Action::DeleteThenCreate => "destroy and then create replacement",
        Action::CreateThenDelete => "create replacement and then destroy",
        Action::Read => "read (record in state)",
        Action::NoOp => "no-op",
    }
}

/// Replace secrets by `"(sensitive)"` and unknowns by `null`, collecting the unknown
/// paths.
fn mask(attributes: Option<&Attributes>, change: &Change, unknown: &mut Vec<String>) -> Value {
    fn walk(path: &str, value: &Value, unknown: &mut Vec<String>) -> Value {
        if infraflux_provider::is_unknown(value) {
            unknown.push(path.to_string());
            return Value::Null;
        }
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), walk(&format!("{path}.{k}"), v, unknown)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| walk(&format!("{path}.{i}"), v, unknown))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    match attributes {
        None => Value::Null,
        Some(attributes) => Value::Object(
            attributes
                .iter()
                .map(|(key, value)| {
                    let masked =
                        if change.is_sensitive(key) && !infraflux_provider::is_unknown(value) {
                            json!(SENSITIVE)
                        } else {
                            walk(key, value, unknown)
                        };
                    (key.clone(), masked)
                })
                .collect(),
        ),
    }
}

/// The plan as JSON, format version 1 (docs/plan-json.md).
pub fn json(plan: &Plan) -> Value {
    let summary = plan.summary();
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|change| {
            let mut before_unknown = Vec::new();
            let mut after_unknown = Vec::new();
            json!({
                "address": change.address.to_string(),
                "provider": change.provider,
                "type": change.address.kind,
                "name": change.address.name,
                "action": change.action.to_string(),
                "symbol": change.action.symbol(),
                "reason": change.reason,
                "before": mask(change.before_attributes(), change, &mut before_unknown),
                "after": mask(change.after.as_ref(), change, &mut after_unknown),
                "after_unknown": after_unknown,
                "sensitive": change.sensitive,
                "requires_replace": change.requires_replace,
                "wait_for": change.wait_for.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let drift: Vec<Value> = plan
        .drift
        .iter()
        .map(|d| {
            let change = drift_change(d);
            let mut unknown = Vec::new();
            json!({
                "address": d.address.to_string(),
                "before": mask(change.before.as_ref(), &change, &mut unknown),
                "after": mask(change.after.as_ref(), &change, &mut unknown),
            })
        })
        .collect();
    json!({
        "format_version": plan.format_version,
        "environment": plan.environment,
        "lineage": plan.lineage.to_string(),
        "serial": plan.serial,
        "config_digest": plan.config_digest,
        "mode": plan.mode,
        "has_changes": plan.has_changes(),
        "partial": plan.is_partial(),
        "summary": summary,
        "drift": drift,
        "changes": changes,
        "unknown": plan
            .unknown
            .iter()
            .map(|u| json!({"address": u.address.to_string(), "reason": u.reason}))
            .collect::<Vec<_>>(),
        "rollouts": plan
            .rollouts
            .iter()
            .map(|r| json!({
                "key": r.key,
                "gates": r.gates,
                "steps": r.steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Reason;
    use crate::testing::addr;

    /// A fleet's blocks, rendered in batches on several threads, are the blocks rendered
    /// one after another: the same text, in the plan's order.
    #[test]
    fn change_blocks_on_several_threads_are_those_rendered_on_one() {
        let changes: Vec<Change> = (0..RENDERED_PER_THREAD * 7 + 77)
            .map(|i| {
                let attributes = |v: usize| -> Attributes {
                    [
                        ("value".to_string(), json!(v)),
                        ("name".to_string(), json!(format!("n{i}"))),
                    ]
                    .into_iter()
                    .collect()
                };
                let action = [Action::Create, Action::Update, Action::Delete, Action::NoOp][i % 4];
                Change {
                    address: addr(&format!("r{i:05}")),
                    provider: "mock".into(),
                    action,
                    reason: (action == Action::Delete).then_some(Reason::NotInConfiguration),
                    id: None,
                    before: (action != Action::Create).then(|| attributes(i)),
                    after: (action != Action::Delete).then(|| attributes(i + 1)),
                    desired: None,
                    requires_replace: Vec::new(),
                    sensitive: Vec::new(),
                    wait_for: Vec::new(),
                    dependencies: Vec::new(),
                    prevent_destroy: false,
                    refreshed: None,
                }
            })
            .collect();
        let changes: Vec<&Change> = changes.iter().collect();
        let style = Style { color: false };
        let mut one_by_one = String::new();
        for change in &changes {
            change_block(&mut one_by_one, &style, change);
        }
        for threads in [1, 2, 3] {
            let mut rendered = String::new();
            change_blocks(&changes, &style, threads, &mut |piece| {
                rendered.push_str(piece)
            });
            assert_eq!(rendered, one_by_one, "{threads} threads");
        }
        // What the comparison is worth: every block, in order.
        let first = one_by_one.find("r00000").unwrap();
        let last = one_by_one
            .find(&format!("r{:05}", changes.len() - 1))
            .unwrap();
        assert!(first < last);
    }
}
