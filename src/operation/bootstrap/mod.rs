//! `bootstrap [--env E] [--cluster C]`: for each environment in promotion order (by
//! `sync_wave`: dev → staging → prod), plan and apply it exactly as `apply` does
//! (promotion gate included), then wait for each of its clusters' ready signal (through
//! the contract's [`ClusterSignal`], with the kubeconfig from state). The first
//! environment that fails to apply or to become ready stops the run: the next one is
//! promoted only onto a ready predecessor. Re-running is safe: an applied environment
//! plans no changes and its signal is checked again.
//!
//! `--render DIR` touches no cluster: it writes every Kubernetes manifest the clusters'
//! resources render, one file per object, and every node's machine config (when the
//! cluster's Talos secrets are in state), for review or a GitOps repository.
//!
//! Exit codes: 0 every selected cluster is ready (or rendered); 1 an apply failed, a
//! signal was not ready in time or failed; 130 interrupted.

mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use infraflux_provider::signal::{ClusterSignal, ReadyReport, ReadyRequest, SignalResource};

use crate::config::Selection;
use crate::graph::DesiredResource;
use crate::model::{Cluster, Model};
use crate::state::StateDocument;
use crate::vocabulary::ResourceAddr;

use super::apply::{RunOptions, apply_environment};
use super::context::{Context, Sink};
use super::diagnostic::{diagnostic, diagnostic_text};
use super::load::{Loaded, Workspace, checked_model, load_environment};
use super::progress::{Steps, watch_interrupts};

use report::{ApplyOutcome, BootstrapReport, ClusterReport, EnvironmentReport, Rendered};

/// What `bootstrap` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BootstrapRequest {
    pub environment: Option<String>,
    pub cluster: Option<String>,
    /// Write manifests and machine configs here instead of applying.
    pub render: Option<PathBuf>,
    /// Standard output carries the JSON report only.
    pub json: bool,
    /// How long to wait for each cluster's ready signal.
    pub timeout: Duration,
    pub run: RunOptions,
    /// ▸ ✔ ✗ in progress lines (a person at a terminal) rather than ASCII.
    pub fancy: bool,
}

pub fn run(
    workspace: &Workspace,
    request: &BootstrapRequest,
    context: &Context,
) -> miette::Result<ExitCode> {
    let model = load_selection(workspace, request, context)?;
    let steps = Steps {
        err: context.err.clone(),
        fancy: request.fancy,
    };
    if let Some(dir) = &request.render {
        return render(&model, dir, request.json, &steps, context);
    }
    let signal = cluster_signal(context)?;
    // With --json, standard output carries the JSON document only.
    let out = if request.json {
        context.err.clone()
    } else {
        context.out.clone()
    };
    let desired = crate::graph::build_desired(&model);
    let mut result = BootstrapReport::new(&model);
    let mut failure: Option<miette::Report> = None;
    let mut code = 0u8;
    for (index, environment) in selected(&model).enumerate() {
        let entry = &mut result.environments[index];
        (code, failure) = apply_one(
            workspace,
            request,
            &environment.name,
            &out,
            &steps,
            entry,
            context,
        );
        if code != 0 {
            break;
        }
        let state = context
            .store
            .load(&environment.name)
            .map_err(|e| diagnostic(&e, None))?
            .unwrap_or_else(|| StateDocument::new(&environment.name));
        for cluster in &environment.clusters {
            let step = steps.start(format!("{}: ready signal", cluster.id()));
            let outcome = ready_signal(
                cluster,
                &desired,
                &state,
                request.timeout,
                signal.as_ref(),
                context,
            );
            let report = match outcome {
                Ok(Some(ready)) => {
                    if ready.is_ready() {
                        step.done("");
                    } else {
                        step.failed(&report::not_ready_reason(&ready));
                    }
                    ClusterReport::signal(cluster, ready)
                }
                Ok(None) => {
                    step.failed("interrupted");
                    code = 130;
                    ClusterReport::error(cluster, "interrupted".into())
                }
                Err(reason) => {
                    step.failed(&reason);
                    ClusterReport::error(cluster, reason)
                }
            };
            if !request.json {
                out.write(&report::human(&report, steps.fancy));
            }
            if code == 0 && !report.ready {
                code = 1;
            }
            result.environments[index].clusters.push(report);
            if code == 130 {
                break;
            }
        }
        if code != 0 {
            break;
        }
    }
    result.finish(code);
    if request.json {
        context.out.write(&result.json());
    }
    match failure {
        Some(report) => Err(report),
        None => Ok(ExitCode::from(code)),
    }
}

/// The provider that gives the ready signal and renders manifests.
fn cluster_signal(context: &Context) -> miette::Result<Arc<dyn ClusterSignal>> {
    context.providers.signal().cloned().ok_or_else(|| {
        diagnostic_text(
            "this build has no provider that gives a cluster's ready signal".into(),
            Some("build InfraFlux with its Kubernetes provider".into()),
        )
    })
}

/// Plan and apply one environment as `apply` does, plans and summary to `out`. Returns
/// the run's exit code so far (0: go on to the signal) and the diagnostic of an apply
/// that was refused or could not start.
fn apply_one(
    workspace: &Workspace,
    request: &BootstrapRequest,
    environment: &str,
    out: &Sink,
    steps: &Steps,
    entry: &mut EnvironmentReport,
    context: &Context,
) -> (u8, Option<miette::Report>) {
    let step = steps.start(format!("{environment}: plan and apply"));
    let cluster = request.cluster.as_deref();
    let applied =
        load_environment(workspace, Some(environment), cluster, context).and_then(|loaded| {
            apply_environment(
                workspace,
                &loaded,
                cluster,
                false,
                &request.run,
                out,
                context,
            )
        });
    match applied {
        Ok(exit) if exit == ExitCode::SUCCESS => {
            step.done("");
            entry.apply = ApplyOutcome::Succeeded;
            (0, None)
        }
        Ok(exit) if exit == ExitCode::from(130) => {
            step.failed("interrupted");
            entry.apply = ApplyOutcome::Interrupted;
            (130, None)
        }
        Ok(_) => {
            step.failed("apply did not complete (see above)");
            entry.apply = ApplyOutcome::Failed;
            (1, None)
        }
        Err(report) => {
            step.failed(&first_line(&report));
            entry.apply = ApplyOutcome::Failed;
            entry.error = Some(first_line(&report));
            (1, Some(report))
        }
    }
}

/// The environments with a selected cluster, in promotion order (`--cluster edge` skips
/// the environments that do not run `edge`).
fn selected(model: &Model) -> impl Iterator<Item = &crate::model::Environment> {
    model.environments.iter().filter(|e| !e.clusters.is_empty())
}

/// The tail of a successful `apply`: one look (no waiting) at the ready signal of each
/// applied cluster that has a handoff, printed after the apply summary. It informs and
/// does not change apply's exit code: the provider already waited for every resource it
/// applied, and `bootstrap` is the command whose exit code is the signal.
pub(super) fn apply_tail(loaded: &Loaded, fancy: bool, context: &Context) {
    let Some(signal) = context.providers.signal() else {
        return;
    };
    let desired = &loaded.desired;
    let has_handoff = |cluster: &Cluster| {
        kubernetes_resources(cluster, desired).any(|d| signal.is_handoff(&d.kind))
    };
    let Ok(Some(state)) = context.store.load(&loaded.environment) else {
        return;
    };
    let clusters = loaded
        .model
        .clusters()
        .filter(|c| c.environment == loaded.environment && has_handoff(c));
    for cluster in clusters {
        let report = match ready_signal(
            cluster,
            desired,
            &state,
            Duration::ZERO,
            signal.as_ref(),
            context,
        ) {
            Ok(Some(ready)) => ClusterReport::signal(cluster, ready),
            Ok(None) => return,
            Err(reason) => ClusterReport::error(cluster, reason),
        };
        context
            .out
            .write(&format!("\n{}", report::human(&report, fancy)));
    }
}

/// The model of the selection, environments in promotion order; the configuration's
/// problems when it has errors.
fn load_selection(
    workspace: &Workspace,
    request: &BootstrapRequest,
    context: &Context,
) -> miette::Result<Model> {
    let selection = Selection {
        environment: request.environment.clone(),
        cluster: request.cluster.clone(),
    };
    let model = checked_model(workspace, &selection, context, false)?;
    if model.environments.iter().all(|e| e.clusters.is_empty()) {
        return Err(diagnostic_text(
            "the selection has no cluster to bootstrap".into(),
            Some("check --env and --cluster against `infraflux validate`".into()),
        ));
    }
    Ok(model)
}

fn first_line(report: &miette::Report) -> String {
    report.to_string().lines().next().unwrap_or("").to_string()
}

/// The Kubernetes resources of one cluster.
fn kubernetes_resources<'a>(
    cluster: &'a Cluster,
    desired: &'a [DesiredResource],
) -> impl Iterator<Item = &'a DesiredResource> {
    desired.iter().filter(move |d| {
        d.provider == crate::graph::desired::KUBERNETES
            && d.address.environment == cluster.environment
            && d.address.cluster == cluster.name
    })
}

/// Wait for one cluster's ready signal. `Ok(None)`: interrupted; `Err`: no signal could
/// be taken (no kubeconfig in state, or no connection).
fn ready_signal(
    cluster: &Cluster,
    desired: &[DesiredResource],
    state: &StateDocument,
    timeout: Duration,
    signal: &dyn ClusterSignal,
    context: &Context,
) -> Result<Option<ReadyReport>, String> {
    let addr = ResourceAddr::new(
        &cluster.environment,
        &cluster.name,
        "talos_kubeconfig",
        "cluster",
    );
    let kubeconfig = state
        .resources
        .get(&addr)
        .and_then(|r| r.attributes.get("kubeconfig"))
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| format!("no kubeconfig in state (`{addr}`)"))?;
    let request = ReadyRequest {
        kubeconfig: kubeconfig.to_string(),
        nodes: cluster.nodes.len(),
        resources: kubernetes_resources(cluster, desired)
            .map(|d| SignalResource {
                kind: d.kind.clone(),
                attributes: d.attributes.clone(),
            })
            .collect(),
        timeout,
        // Often enough to notice readiness soon, rarely enough not to load the API.
        interval: (timeout / 20).clamp(Duration::from_millis(100), Duration::from_secs(5)),
    };
    let runtime = context.runtime().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        if context.handle_signals {
            watch_interrupts(context.cancel.clone(), context.err.clone());
        }
        tokio::select! {
            report = signal.ready_signal(request) => report.map(Some),
            () = context.cancel.cancelled() => Ok(None),
        }
    })
}

/// `--render DIR`: manifests and machine configs, per cluster, without a cluster.
fn render(
    model: &Model,
    dir: &Path,
    json: bool,
    steps: &Steps,
    context: &Context,
) -> miette::Result<ExitCode> {
    let signal = cluster_signal(context)?;
    let desired = crate::graph::build_desired(model);
    let mut result = BootstrapReport::new(model);
    for (index, environment) in selected(model).enumerate() {
        let state = context
            .store
            .load(&environment.name)
            .map_err(|e| diagnostic(&e, None))?
            .unwrap_or_else(|| StateDocument::new(&environment.name));
        for cluster in &environment.clusters {
            let step = steps.start(format!("{}: render", cluster.id()));
            let base = dir.join(&cluster.environment).join(&cluster.name);
            let manifests =
                write_cluster_manifests(cluster, &desired, &base, signal.as_ref(), context)?;
            // Machine configs need the cluster's secrets, which only apply creates.
            let secrets = ResourceAddr::new(
                &cluster.environment,
                &cluster.name,
                "talos_secrets",
                "cluster",
            );
            let machine_configs = if state.resources.contains_key(&secrets) {
                let configs = super::talos::machine_configs(
                    model,
                    &cluster.environment,
                    &cluster.name,
                    &state,
                    context,
                )?;
                Some(super::talos::write_machine_configs(
                    &base.join("talos"),
                    &configs,
                )?)
            } else {
                None
            };
            let note = match &machine_configs {
                Some(files) => format!(
                    "{} manifests, {} machine configs",
                    manifests.len(),
                    files.len()
                ),
                None => format!(
                    "{} manifests; no machine configs: no Talos secrets in state yet (they are created by `infraflux bootstrap --env {}`)",
                    manifests.len(),
                    cluster.environment
                ),
            };
            step.done(&note);
            let rendered = Rendered {
                manifests,
                machine_configs: machine_configs.unwrap_or_default(),
            };
            if !json {
                for path in rendered.manifests.iter().chain(&rendered.machine_configs) {
                    context.out.write(&format!("{}\n", path.display()));
                }
            }
            result.environments[index]
                .clusters
                .push(ClusterReport::rendered(cluster, rendered));
        }
    }
    result.finish_rendered();
    if json {
        context.out.write(&result.json());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every manifest of one cluster's Kubernetes resources, one file per object in apply
/// order (`NNN-<object>.yaml`), under `base/kubernetes`. Values may hold secrets from the
/// configuration (a Helm value from `${age:…}`), so the directory is created 0700 and
/// the files are 0600.
fn write_cluster_manifests(
    cluster: &Cluster,
    desired: &[DesiredResource],
    base: &Path,
    signal: &dyn ClusterSignal,
    context: &Context,
) -> miette::Result<Vec<PathBuf>> {
    let cannot = |path: &Path, e: std::io::Error| {
        diagnostic_text(
            format!("cannot write into `{}`: {e}", path.display()),
            Some("pick another --render directory".into()),
        )
    };
    let dir = base.join("kubernetes");
    crate::private_file::create_dir(&dir).map_err(|e| cannot(base, e))?;
    let mut written = Vec::new();
    // Upstream release files may be read from the cache or the network.
    let runtime = context.runtime()?;
    for resource in kubernetes_resources(cluster, desired) {
        let manifests = runtime
            .block_on(signal.render_manifests(&resource.kind, &resource.attributes))
            .map_err(|e| {
                diagnostic_text(
                    format!("cannot render {}: {e}", resource.address),
                    Some(
                        e.help
                            .unwrap_or_else(|| "fix the value in the configuration".into()),
                    ),
                )
            })?;
        for manifest in manifests {
            let path = dir.join(format!("{:03}-{}.yaml", written.len(), manifest.file_stem));
            crate::private_file::write(&path, manifest.yaml.as_bytes())
                .map_err(|e| cannot(base, e))?;
            written.push(path);
        }
    }
    Ok(written)
}
