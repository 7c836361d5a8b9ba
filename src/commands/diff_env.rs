//! `infraflux diff-env A B`: the platform parity report between two environments.

use std::process::ExitCode;

use super::output::Output;
use crate::cli::{DiffEnvArgs, GlobalArgs};
use crate::config::{ProcessVariables, Selection};
use crate::diag::ProblemsReport;
use crate::operation::load::load_model_unresolved;
use crate::policy::{clusters_in_one_only, parity_report};

pub fn run(global: &GlobalArgs, args: &DiffEnvArgs, output: &Output) -> miette::Result<ExitCode> {
    // References are not resolved: the report compares platform settings as written,
    // and needs no environment's secrets.
    let (config, model, mut problems) = load_model_unresolved(
        global.config_paths(),
        &Selection::default(),
        &ProcessVariables,
        false,
    );
    for env in [&args.left, &args.right] {
        if !config.layers.environments.contains_key(env) {
            problems.push(
                crate::diag::Problem::error(
                    "config::unknown-environment",
                    format!("unknown environment `{env}`"),
                )
                .help(format!(
                    "known: {}",
                    config
                        .layers
                        .environments
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }
    output.problems(&problems, &config);
    let Some(model) = model.filter(|_| !problems.has_errors()) else {
        return Err(ProblemsReport::new(&problems, "the configuration").into());
    };
    let rows = parity_report(&model, &config, &args.left, &args.right);
    let (only_left, only_right) = clusters_in_one_only(&model, &args.left, &args.right);
    if args.json {
        let json = serde_json::json!({
            "format_version": 1,
            "left": args.left,
            "right": args.right,
            "differences": rows,
            "clusters_only_in_left": only_left,
            "clusters_only_in_right": only_right,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("report serializes")
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (env, only) in [(&args.left, &only_left), (&args.right, &only_right)] {
        if !only.is_empty() {
            println!("clusters only in {env}: {}", only.join(", "));
        }
    }
    if rows.is_empty() {
        println!(
            "{} and {} run the same platform services at the same versions",
            args.left, args.right
        );
        return Ok(ExitCode::SUCCESS);
    }
    let headers = [
        "cluster",
        "service",
        args.left.as_str(),
        args.right.as_str(),
        "set by",
    ];
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.cluster.clone(),
                r.service.to_string(),
                r.left.clone(),
                r.right.clone(),
                r.source.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers));
    for row in &table {
        println!("{}", line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    Ok(ExitCode::SUCCESS)
}
