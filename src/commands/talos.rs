//! `infraflux talos config`: a talosconfig for `talosctl`, built from the cluster's Talos
//! secrets in state (the Talos API CA and the `os:admin` client certificate) and the
//! control-plane addresses from the configuration. Written 0600; never printed unless
//! asked for with `--out -`.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;

use super::engine::{Context, diagnostic_text};
use crate::cli::{GlobalArgs, TalosConfigArgs};
use crate::config::Selection;
use crate::diag::ProblemsReport;
use crate::model::NodeRole;
use crate::model::address::ResourceAddr;
use crate::model::load_model;

pub fn config(
    global: &GlobalArgs,
    args: &TalosConfigArgs,
    context: &Context,
) -> miette::Result<ExitCode> {
    let selection = Selection {
        environment: Some(args.environment.clone()),
        cluster: Some(args.cluster.clone()),
    };
    let (config, model, problems) = load_model(
        global.config_paths(),
        &selection,
        context.variables.as_ref(),
        false,
    );
    let Some(cluster) = model
        .as_ref()
        .and_then(|m| m.clusters().next())
        .filter(|_| !problems.has_errors())
    else {
        context.err.write(&crate::diag::render_problems(
            &problems,
            config.sources(),
            context.color,
        ));
        return Err(ProblemsReport::new(&problems, "the configuration").into());
    };
    let state = context
        .store
        .load(&args.environment)
        .map_err(|e| super::engine::diagnostic(&e, None))?;
    let addr = ResourceAddr::new(&args.environment, &args.cluster, "talos_secrets", "cluster");
    let Some(secrets) = state.as_ref().and_then(|s| s.resources.get(&addr)) else {
        return Err(diagnostic_text(
            format!(
                "no Talos secrets for {}/{} in state",
                args.environment, args.cluster
            ),
            Some(format!(
                "run `infraflux apply --env {}` first, or import existing secrets with `infraflux import {addr} <secrets.yaml>`",
                args.environment
            )),
        ));
    };
    let pem = |name: &str| {
        secrets
            .attributes
            .get(name)
            .and_then(|v| v.as_str())
            .map(|text| base64::engine::general_purpose::STANDARD.encode(text))
            .ok_or_else(|| {
                diagnostic_text(
                    format!("`{addr}` has no `{name}` in state"),
                    Some("re-create or re-import the cluster's secrets".into()),
                )
            })
    };
    let control_planes: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::ControlPlane)
        .map(|n| n.address.to_string())
        .collect();
    let context_name = format!("{}-{}", args.environment, args.cluster);
    let talosconfig = serde_json::json!({
        "context": context_name,
        "contexts": {
            context_name.clone(): {
                "endpoints": control_planes,
                "nodes": control_planes.first().into_iter().collect::<Vec<_>>(),
                "ca": pem("os_ca_crt")?,
                "crt": pem("admin_crt")?,
                "key": pem("admin_key")?,
            }
        }
    });
    let text = serde_yaml::to_string(&talosconfig)
        .map_err(|e| diagnostic_text(format!("cannot render the talosconfig: {e}"), None))?;
    if args.out.as_os_str() == "-" {
        context.out.write(&text);
        return Ok(ExitCode::SUCCESS);
    }
    write_private(&args.out, &text).map_err(|e| {
        diagnostic_text(
            format!("cannot write `{}`: {e}", args.out.display()),
            Some("pick another --out path".into()),
        )
    })?;
    context.err.write(&format!(
        "Wrote {} (context `{context_name}`, endpoints {}). Use it with `talosctl --talosconfig {} …`.\n",
        args.out.display(),
        control_planes.join(", "),
        args.out.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Create or replace a file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
