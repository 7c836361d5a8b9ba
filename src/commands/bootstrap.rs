//! `infraflux bootstrap [--env E] [--cluster C]`: for each environment in promotion order
//! (by `sync_wave`: dev → staging → prod), plan and apply it exactly as `apply` does
//! (promotion gate included), then wait for each of its clusters' ready signal
//! ([`infraflux_kubernetes::signal`]) with the kubeconfig from state. The first
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

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use infraflux_kubernetes::api::KubeApi;
use infraflux_kubernetes::client::Kubeconfig;
use infraflux_kubernetes::provider::{Connector, KubeConnector};
use infraflux_kubernetes::signal::{self, Expectations, ReadyReport};
use infraflux_kubernetes::wait::WaitOptions;

use super::apply::{RunOptions, apply_environment};
use super::engine::{Context, Sink, diagnostic_text, load_desired_for};
use crate::cli::{BootstrapArgs, GlobalArgs};
use crate::config::Selection;
use crate::graph::DesiredResource;
use crate::model::{Cluster, Model};
use crate::operation::load::load_model;
use crate::state::StateDocument;
use crate::vocabulary::ResourceAddr;

use report::{ApplyOutcome, BootstrapReport, ClusterReport, EnvironmentReport, Rendered};

/// Opens a cluster's API from the kubeconfig recorded in state (`talos_kubeconfig`), for
/// the ready signal. Tests put a fake API server behind it.
#[async_trait]
pub trait ClusterApi: Send + Sync {
    /// The error says what failed without quoting the kubeconfig (it holds a key).
    async fn open(&self, kubeconfig: &str) -> Result<Arc<dyn KubeApi>, String>;
}

/// The real clusters, through the `kube` client.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubeconfigApi {
    pub connector: KubeConnector,
}

#[async_trait]
impl ClusterApi for KubeconfigApi {
    async fn open(&self, kubeconfig: &str) -> Result<Arc<dyn KubeApi>, String> {
        let kubeconfig = Kubeconfig::new(kubeconfig.to_string())
            .map_err(|e| format!("the kubeconfig in state {e}"))?;
        self.connector
            .connect(&kubeconfig)
            .await
            .map_err(|e| format!("cannot connect to the cluster API: {e}"))
    }
}

/// Bootstrap with the real Kubernetes client for the ready signal.
pub fn run(
    global: &GlobalArgs,
    args: &BootstrapArgs,
    context: &Context,
) -> miette::Result<ExitCode> {
    run_with(global, args, context, &KubeconfigApi::default())
}

/// Bootstrap with `clusters` opening the clusters' APIs for the ready signal (tests and
/// the lab may pass their own).
pub fn run_with(
    global: &GlobalArgs,
    args: &BootstrapArgs,
    context: &Context,
    clusters: &dyn ClusterApi,
) -> miette::Result<ExitCode> {
    let model = load_selection(global, args, context)?;
    let progress = Progress {
        err: context.err.clone(),
        fancy: fancy_symbols(global, context),
    };
    if let Some(dir) = &args.render {
        return render(&model, dir, args.json, &progress, context);
    }
    // With --json, standard output carries the JSON document only.
    let out = if args.json {
        context.err.clone()
    } else {
        context.out.clone()
    };
    let mut result = BootstrapReport::new(&model);
    let mut failure: Option<miette::Report> = None;
    let mut code = 0u8;
    for (index, environment) in selected(&model).enumerate() {
        let entry = &mut result.environments[index];
        (code, failure) = apply_one(
            global,
            args,
            &environment.name,
            &out,
            &progress,
            entry,
            context,
        );
        if code != 0 {
            break;
        }
        let state = context
            .store
            .load(&environment.name)
            .map_err(|e| super::engine::diagnostic(&e, None))?
            .unwrap_or_else(|| StateDocument::new(&environment.name));
        let desired = crate::graph::build_desired(&model);
        for cluster in &environment.clusters {
            let step = progress.start(format!("{}: ready signal", cluster.id()));
            let signal = ready_signal(cluster, &desired, &state, args.timeout, clusters, context);
            let report = match signal {
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
            if !args.json {
                out.write(&report::human(&report, progress.fancy));
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
    if args.json {
        context.out.write(&result.json());
    }
    match failure {
        Some(report) => Err(report),
        None => Ok(ExitCode::from(code)),
    }
}

/// Plan and apply one environment as `apply` does, plans and summary to `out`. Returns
/// the run's exit code so far (0: go on to the signal) and the diagnostic of an apply
/// that was refused or could not start.
fn apply_one(
    global: &GlobalArgs,
    args: &BootstrapArgs,
    environment: &str,
    out: &Sink,
    progress: &Progress,
    entry: &mut EnvironmentReport,
    context: &Context,
) -> (u8, Option<miette::Report>) {
    let step = progress.start(format!("{environment}: plan and apply"));
    let cluster = args.selection.cluster.as_deref();
    let applied =
        load_desired_for(global, Some(environment), cluster, context).and_then(|(_, desired)| {
            let run = RunOptions {
                auto_approve: args.auto_approve,
                parallelism: args.parallelism,
                lock_timeout: args.lock.lock_timeout,
                promotion: None,
            };
            apply_environment(
                global,
                environment,
                desired,
                cluster,
                false,
                run,
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
pub(super) fn apply_tail(
    global: &GlobalArgs,
    environment: &str,
    cluster: Option<&str>,
    context: &Context,
) {
    let selection = Selection {
        environment: Some(environment.to_string()),
        cluster: cluster.map(str::to_string),
    };
    let (_, model, problems) = load_model(
        global.config_paths(),
        &selection,
        context.variables.as_ref(),
        false,
    );
    let Some(model) = model.filter(|_| !problems.has_errors()) else {
        return;
    };
    let desired = crate::graph::build_desired(&model);
    let has_handoff = |cluster: &Cluster| {
        kubernetes_resources(cluster, &desired)
            .any(|d| d.kind == infraflux_kubernetes::provider::HANDOFF)
    };
    let Ok(Some(state)) = context.store.load(environment) else {
        return;
    };
    let fancy = fancy_symbols(global, context);
    for cluster in model.clusters().filter(|c| has_handoff(c)) {
        let report = match ready_signal(
            cluster,
            &desired,
            &state,
            Duration::ZERO,
            &KubeconfigApi::default(),
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
    global: &GlobalArgs,
    args: &BootstrapArgs,
    context: &Context,
) -> miette::Result<Model> {
    let selection = Selection {
        environment: args.selection.environment.clone(),
        cluster: args.selection.cluster.clone(),
    };
    let model = super::engine::load_checked_model(global, &selection, context, false)?;
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

/// The Kubernetes resources of one cluster, as (type, attributes).
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
    clusters: &dyn ClusterApi,
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
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("no kubeconfig in state (`{addr}`)"))?;
    let expectations = Expectations::from_resources(
        cluster.nodes.len(),
        kubernetes_resources(cluster, desired).map(|d| (d.kind.as_str(), &d.attributes)),
    )
    .map_err(|e| format!("cannot tell what ready means: {e}"))?;
    let options = WaitOptions {
        timeout,
        // Often enough to notice readiness soon, rarely enough not to load the API.
        interval: (timeout / 20).clamp(Duration::from_millis(100), Duration::from_secs(5)),
    };
    let runtime = context.runtime().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        if context.handle_signals {
            super::engine::watch_interrupts(context.cancel.clone(), context.err.clone());
        }
        let api = clusters.open(kubeconfig).await?;
        tokio::select! {
            report = signal::wait(api.as_ref(), &expectations, options) => Ok(Some(report)),
            () = context.cancel.cancelled() => Ok(None),
        }
    })
}

/// `--render DIR`: manifests and machine configs, per cluster, without a cluster.
fn render(
    model: &Model,
    dir: &Path,
    json: bool,
    progress: &Progress,
    context: &Context,
) -> miette::Result<ExitCode> {
    let desired = crate::graph::build_desired(model);
    let mut result = BootstrapReport::new(model);
    for (index, environment) in selected(model).enumerate() {
        let state = context
            .store
            .load(&environment.name)
            .map_err(|e| super::engine::diagnostic(&e, None))?
            .unwrap_or_else(|| StateDocument::new(&environment.name));
        for cluster in &environment.clusters {
            let step = progress.start(format!("{}: render", cluster.id()));
            let base = dir.join(&cluster.environment).join(&cluster.name);
            let manifests = write_cluster_manifests(cluster, &desired, &base)?;
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
/// order, under `base/kubernetes`. Values may hold secrets from the configuration (a
/// Helm value from `${age:…}`), so the directory is created 0700 and the files are 0600.
fn write_cluster_manifests(
    cluster: &Cluster,
    desired: &[DesiredResource],
    base: &Path,
) -> miette::Result<Vec<std::path::PathBuf>> {
    let cannot = |e: std::io::Error| {
        diagnostic_text(
            format!("cannot write into `{}`: {e}", base.display()),
            Some("pick another --render directory".into()),
        )
    };
    let dir = base.join("kubernetes");
    crate::private_file::create_dir(&dir).map_err(cannot)?;
    let mut manifests = Vec::new();
    for resource in kubernetes_resources(cluster, desired) {
        let rendered =
            infraflux_kubernetes::provider::render_resource(&resource.kind, &resource.attributes)
                .map_err(|e| {
                diagnostic_text(
                    format!("cannot render {}: {e}", resource.address),
                    Some("fix the value in the configuration".into()),
                )
            })?;
        let written = infraflux_kubernetes::render::write_manifests(
            &dir,
            manifests.len(),
            &rendered.manifests,
        )
        .map_err(cannot)?;
        manifests.extend(written);
    }
    Ok(manifests)
}

/// ▸ ✔ ✗ for a person at a terminal; ASCII for logs and pipes.
fn fancy_symbols(global: &GlobalArgs, context: &Context) -> bool {
    context.color
        || (context.handle_signals
            && super::output::use_color(
                global.color,
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ))
}

/// Progress lines on standard error: started, done with the time it took, failed.
struct Progress {
    err: Sink,
    fancy: bool,
}

struct Step<'a> {
    progress: &'a Progress,
    name: String,
    started: Instant,
}

impl Progress {
    fn start(&self, name: String) -> Step<'_> {
        let symbol = if self.fancy { "▸" } else { ">" };
        self.err.write(&format!("{symbol} {name}\n"));
        Step {
            progress: self,
            name,
            started: Instant::now(),
        }
    }
}

impl Step<'_> {
    fn done(self, what: &str) {
        let symbol = if self.progress.fancy { "✔" } else { "OK" };
        self.finish(symbol, what);
    }

    fn failed(self, why: &str) {
        let symbol = if self.progress.fancy { "✗" } else { "FAIL" };
        self.finish(symbol, why);
    }

    fn finish(self, symbol: &str, text: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let separator = if text.is_empty() { "" } else { ": " };
        self.progress.err.write(&format!(
            "{symbol} {}{separator}{text} ({elapsed:.1}s)\n",
            self.name
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(fancy: bool) -> (Progress, Arc<std::sync::Mutex<Vec<u8>>>) {
        let (err, buffer) = Sink::buffer();
        (Progress { err, fancy }, buffer)
    }

    fn text(buffer: &Arc<std::sync::Mutex<Vec<u8>>>) -> String {
        String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn progress_lines_use_symbols_on_a_terminal_and_ascii_elsewhere() {
        for (fancy, started, done, failed) in [(true, "▸", "✔", "✗"), (false, ">", "OK", "FAIL")]
        {
            let (progress, buffer) = progress(fancy);
            progress.start("dev: plan and apply".into()).done("");
            progress
                .start("dev/workload: ready signal".into())
                .failed("not ready after 600s: nodes");
            let output = text(&buffer);
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(lines.len(), 4, "{output}");
            assert_eq!(lines[0], format!("{started} dev: plan and apply"));
            // Done and failed lines end with the time the step took.
            assert!(lines[1].starts_with(&format!("{done} dev: plan and apply (")));
            assert!(lines[1].ends_with("s)"), "{}", lines[1]);
            assert!(lines[3].starts_with(&format!(
                "{failed} dev/workload: ready signal: not ready after 600s: nodes ("
            )));
            assert!(output.is_ascii() != fancy, "{output}");
        }
    }
}
