//! `infraflux config show` and `infraflux config schema`.

use std::process::ExitCode;

use miette::miette;

use super::output::Output;
use crate::cli::{GlobalArgs, SchemaArgs, ShowArgs};
use crate::config::schema::{any_layer_schema, layer_schema};
use crate::config::show::render_yaml_masked;
use crate::config::{LayerKind, ProcessVariables, Selection, load_config};
use crate::diag::ProblemsReport;

pub fn show(global: &GlobalArgs, args: &ShowArgs, output: &Output) -> miette::Result<ExitCode> {
    let selection = Selection {
        environment: Some(args.environment.clone()),
        cluster: Some(args.cluster.clone()),
    };
    let (config, problems) = load_config(global.config_paths(), &selection, &ProcessVariables);
    output.problems(&problems, &config);
    if problems.has_errors() {
        return Err(ProblemsReport::new(&problems, "the configuration").into());
    }
    let effective = config.effective.first().ok_or_else(|| {
        miette!(
            "environment `{}` does not run cluster `{}`",
            args.environment,
            args.cluster
        )
    })?;
    let sources = args.provenance.then(|| config.sources());
    print!(
        "{}",
        render_yaml_masked(&effective.node, sources, &config.secrets)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn schema(args: &SchemaArgs) -> miette::Result<ExitCode> {
    let schema = match &args.layer {
        None => any_layer_schema(),
        Some(name) => {
            let kind = LayerKind::parse(name).ok_or_else(|| {
                miette!(
                    help = "use one of: defaults, template, environment, cluster",
                    "unknown layer kind `{name}`"
                )
            })?;
            layer_schema(kind)
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).expect("schema serializes")
    );
    Ok(ExitCode::SUCCESS)
}
