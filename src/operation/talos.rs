//! Talos views of a cluster for `talosctl` users and reviewers:
//!
//! - a talosconfig built from the cluster's Talos secrets in state (the Talos API CA and
//!   the `os:admin` client certificate) and the control-plane addresses from the
//!   configuration;
//! - every node's machine config, rendered by the Talos provider's own planning from the
//!   configuration and the secrets in state (never new secrets: those would lock the
//!   cluster out).
//!
//! Both hold secrets: the command layer writes them 0600 and never prints them unasked.

use base64::Engine;

use infraflux_provider::{PlanRequest, ResourceRef};

use crate::config::Selection;
use crate::graph::{DesiredResource, build_desired};
use crate::model::{Cluster, Model, NodeRole};
use crate::plan::resolve::{lookup_recorded, resolve_references};
use crate::private_file;
use crate::state::{ResourceState, StateDocument};
use crate::vocabulary::ResourceAddr;

use super::context::Context;
use super::diagnostic::{diagnostic, diagnostic_text};
use super::load::{Workspace, checked_model};

/// A talosconfig for one cluster.
pub struct Talosconfig {
    /// `<environment>-<cluster>`.
    pub context_name: String,
    pub endpoints: Vec<String>,
    /// The YAML document (holds the admin key).
    pub text: String,
}

/// The talosconfig of one cluster, from its secrets in state.
pub fn talosconfig(
    workspace: &Workspace,
    environment: &str,
    cluster: &str,
    context: &Context,
) -> miette::Result<Talosconfig> {
    let (_, found) = load_cluster(workspace, environment, cluster, context)?;
    let (addr, secrets) = secrets_in_state(environment, cluster, context)?;
    let pem = |name: &str| {
        secrets
            .attributes
            .get(name)
            .and_then(|v| v.as_str().map(str::to_string))
            .map(|text| base64::engine::general_purpose::STANDARD.encode(text))
            .ok_or_else(|| {
                diagnostic_text(
                    format!("`{addr}` has no `{name}` in state"),
                    Some("re-create or re-import the cluster's secrets".into()),
                )
            })
    };
    let control_planes: Vec<String> = found
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::ControlPlane)
        .map(|n| n.address.to_string())
        .collect();
    let context_name = format!("{environment}-{cluster}");
    let document = serde_json::json!({
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
    let text = serde_yaml::to_string(&document)
        .map_err(|e| diagnostic_text(format!("cannot render the talosconfig: {e}"), None))?;
    Ok(Talosconfig {
        context_name,
        endpoints: control_planes,
        text,
    })
}

/// Render every node's machine config of one cluster into `dir`; returns the files.
pub fn render(
    workspace: &Workspace,
    environment: &str,
    cluster: &str,
    dir: &std::path::Path,
    context: &Context,
) -> miette::Result<Vec<std::path::PathBuf>> {
    let (model, _) = load_cluster(workspace, environment, cluster, context)?;
    let state = context
        .store
        .load(environment)
        .map_err(|e| diagnostic(&e, None))?
        .unwrap_or_else(|| StateDocument::new(environment));
    let configs = machine_configs(&model, environment, cluster, &state, context)?;
    write_machine_configs(dir, &configs)
}

/// The model of one (environment, cluster) pair, or the configuration's problems.
fn load_cluster(
    workspace: &Workspace,
    environment: &str,
    cluster: &str,
    context: &Context,
) -> miette::Result<(Model, Cluster)> {
    let selection = Selection {
        environment: Some(environment.to_string()),
        cluster: Some(cluster.to_string()),
    };
    let model = checked_model(workspace, &selection, context, false)?;
    let found = model.clusters().next().cloned();
    match found {
        Some(found) => Ok((model, found)),
        None => Err(diagnostic_text(
            format!("the configuration has no cluster `{cluster}` in environment `{environment}`"),
            Some("check --env and --cluster against `infraflux validate`".into()),
        )),
    }
}

/// The cluster's `talos_secrets` as recorded in state; an error that says how to get
/// them when they are not there (never generated here).
fn secrets_in_state(
    environment: &str,
    cluster: &str,
    context: &Context,
) -> miette::Result<(ResourceAddr, ResourceState)> {
    let state = context
        .store
        .load(environment)
        .map_err(|e| diagnostic(&e, None))?;
    let addr = ResourceAddr::new(environment, cluster, "talos_secrets", "cluster");
    match state.and_then(|mut s| s.resources.remove(&addr)) {
        Some(secrets) => Ok((addr, secrets)),
        None => Err(missing_secrets(environment, cluster, &addr)),
    }
}

fn missing_secrets(environment: &str, cluster: &str, addr: &ResourceAddr) -> miette::Report {
    diagnostic_text(
        format!("no Talos secrets for {environment}/{cluster} in state"),
        Some(format!(
            "run `infraflux apply --env {environment}` first, or import existing secrets with `infraflux import {addr} <secrets.yaml>`"
        )),
    )
}

/// One node's rendered machine config (contains secrets: never print it).
pub(crate) struct MachineConfig {
    /// The node's name in the configuration (`cp-1`).
    pub node: String,
    pub yaml: String,
}

/// Every node's machine config of one cluster, rendered by the Talos provider's plan
/// (the same code that renders what apply sends to the nodes) from the desired
/// `talos_machine_config` resources with their secret references resolved from state.
pub(crate) fn machine_configs(
    model: &Model,
    environment: &str,
    cluster: &str,
    state: &StateDocument,
    context: &Context,
) -> miette::Result<Vec<MachineConfig>> {
    let secrets_addr = ResourceAddr::new(environment, cluster, "talos_secrets", "cluster");
    if !state.resources.contains_key(&secrets_addr) {
        return Err(missing_secrets(environment, cluster, &secrets_addr));
    }
    let desired: Vec<DesiredResource> = build_desired(model)
        .into_iter()
        .filter(|d| {
            d.kind == "talos_machine_config"
                && d.address.environment == environment
                && d.address.cluster == cluster
        })
        .collect();
    let provider = context.providers.get(&desired.first().map_or_else(
        || crate::graph::desired::TALOS.to_string(),
        |d| d.provider.clone(),
    ));
    let Some(provider) = provider else {
        return Err(diagnostic_text(
            "no Talos provider in this build".into(),
            None,
        ));
    };
    let runtime = context.runtime()?;
    let mut configs = Vec::new();
    for resource in desired {
        let resolved = resolve_references(&resource.attributes, &mut |reference| {
            lookup_recorded(state, &context.providers, reference)
        })
        .map_err(|(attribute, reference)| {
            diagnostic_text(
                format!(
                    "cannot render {}: `{attribute}` refers to `{}` of `{}`, which state does not have",
                    resource.address, reference.attribute, reference.address
                ),
                Some(format!(
                    "run `infraflux apply --env {environment}` first, or re-import the cluster's secrets"
                )),
            )
        })?;
        let request = PlanRequest {
            resource: ResourceRef {
                address: resource.address.to_string(),
                kind: resource.kind.clone(),
            },
            prior: None,
            desired: resolved.attributes,
        };
        let planned = runtime
            .block_on(provider.plan(request))
            .map_err(|e| {
                diagnostic(
                    &e,
                    Some("fix the node's settings in the configuration".into()),
                )
            })?
            .planned;
        let Some(yaml) = planned.get("machine_config").and_then(|v| v.as_str()) else {
            return Err(diagnostic_text(
                format!(
                    "the Talos provider rendered no machine config for {}",
                    resource.address
                ),
                None,
            ));
        };
        configs.push(MachineConfig {
            node: resource.address.name.clone(),
            yaml: yaml.to_string(),
        });
    }
    Ok(configs)
}

/// Write `<node>.yaml` per config into `dir` (created 0700 when missing), each 0600;
/// returns the paths written.
pub(crate) fn write_machine_configs(
    dir: &std::path::Path,
    configs: &[MachineConfig],
) -> miette::Result<Vec<std::path::PathBuf>> {
    let cannot = |path: &std::path::Path, e: std::io::Error| {
        diagnostic_text(
            format!("cannot write `{}`: {e}", path.display()),
            Some("pick another output directory".into()),
        )
    };
    private_file::create_dir(dir).map_err(|e| cannot(dir, e))?;
    let mut written = Vec::new();
    for config in configs {
        let path = dir.join(format!("{}.yaml", config.node));
        private_file::write(&path, config.yaml.as_bytes()).map_err(|e| cannot(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
