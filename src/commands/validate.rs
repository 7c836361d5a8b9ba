//! `infraflux validate`: load, merge and resolve; report every problem. Like `terraform
//! validate`, it needs no secret: references (`${env:…}`, `${file:…}`, `${age:…}`) are
//! checked for form and place but not read, and checks of the values that wait on one
//! are left to `plan`.

use std::process::ExitCode;

use serde::Serialize;

use super::output::Output;
use crate::cli::{GlobalArgs, ValidateArgs};
use crate::config::{ProcessVariables, Selection};
use crate::diag::{Problems, ProblemsReport, Severity, SourceMap, printable};
use crate::operation::load::load_model_unresolved;

pub fn run(global: &GlobalArgs, args: &ValidateArgs, output: &Output) -> miette::Result<ExitCode> {
    let selection = Selection {
        environment: args.selection.environment.clone(),
        cluster: args.selection.cluster.clone(),
    };
    let (config, model, problems) =
        load_model_unresolved(global.config_paths(), &selection, &ProcessVariables, true);
    if args.json {
        let report = JsonReport::new(&problems, config.sources(), model.as_ref());
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
        return Ok(if problems.has_errors() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    output.problems(&problems, &config);
    match model {
        Some(model) if !problems.has_errors() => {
            let clusters = model.clusters().count();
            let nodes: usize = model.clusters().map(|c| c.nodes.len()).sum();
            println!(
                "configuration valid: {} environment{}, {clusters} cluster{}, {nodes} node{}",
                model.environments.len(),
                plural(model.environments.len()),
                plural(clusters),
                plural(nodes),
            );
            if !model.unresolved.is_empty() {
                println!(
                    "not fully checked: {} (a value they need comes from `${{env:…}}`, `${{file:…}}` or `${{age:…}}`, which validate does not read; plan checks it)",
                    model.unresolved.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(ProblemsReport::new(&problems, "the configuration").into()),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `validate --json`, format version 1 (README "validate --json").
#[derive(Serialize)]
struct JsonReport {
    format_version: u32,
    valid: bool,
    errors: usize,
    warnings: usize,
    problems: Vec<JsonProblem>,
    environments: Vec<JsonEnvironment>,
    /// Pairs (`env/cluster`) whose checks wait on a reference validate does not read.
    unresolved: Vec<String>,
}

#[derive(Serialize)]
struct JsonProblem {
    severity: Severity,
    code: &'static str,
    message: String,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    label: Option<String>,
    help: Option<String>,
}

#[derive(Serialize)]
struct JsonEnvironment {
    name: String,
    clusters: Vec<String>,
}

impl JsonReport {
    fn new(problems: &Problems, sources: &SourceMap, model: Option<&crate::model::Model>) -> Self {
        let errors = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        JsonReport {
            format_version: 1,
            valid: errors == 0,
            errors,
            warnings: problems.len() - errors,
            problems: problems
                .sorted()
                .into_iter()
                // Terminal escapes a value carried are written out visibly: the report
                // is printed, and JSON leaves C1 controls and bidi marks as they are.
                .map(|p| JsonProblem {
                    severity: p.severity,
                    code: p.code,
                    message: printable(&p.message).into_owned(),
                    file: p.origin.map(|o| sources.path(o.file).display().to_string()),
                    line: p.origin.map(|o| o.line),
                    column: p.origin.map(|o| o.column),
                    label: p.label.as_deref().map(|l| printable(l).into_owned()),
                    help: p.help.as_deref().map(|h| printable(h).into_owned()),
                })
                .collect(),
            environments: model
                .map(|m| {
                    m.environments
                        .iter()
                        .map(|e| JsonEnvironment {
                            name: e.name.clone(),
                            clusters: e.clusters.iter().map(|c| c.name.clone()).collect(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            unresolved: model.map(|m| m.unresolved.clone()).unwrap_or_default(),
        }
    }
}
