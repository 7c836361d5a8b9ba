//! `infraflux lab run|up|down|status`: the pipeline against a local lab.
//!
//! `run` is the README's one command: a lab in this process, then what a real run does
//! (through the overlay and a state directory of the lab's own): `plan`, `bootstrap`
//! (the apply, then the ready signal), and a second plan that must be empty. `up` runs the lab in
//! the background (`lab serve`, re-executing this binary) for plan/apply from a CI job;
//! `down` stops it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::output::Output;
use crate::cli::{
    BootstrapArgs, GlobalArgs, LabCommand, LabRunArgs, LabUpArgs, LockArgs, PlanArgs, SelectionArgs,
};
use crate::lab::overlay::{self, LabLayout};
use crate::lab::process::{self, LabPaths, LabRecord, Stopped};
use crate::lab::{Lab, LabOptions};
use crate::operation::{Workspace, diagnostic, diagnostic_text};
use infraflux_kubernetes::upstream::{Loaded, Sources, WhenUnavailable};

/// How long `lab up` waits for the background lab to answer.
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the ready signal may take: the lab's API plays every controller at once, so
/// a cluster that is not ready by then never will be.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `lab down` waits after SIGTERM before SIGKILL.
const DOWN_GRACE: Duration = Duration::from_secs(10);

pub fn run(global: &GlobalArgs, command: LabCommand, output: &Output) -> miette::Result<ExitCode> {
    match command {
        LabCommand::Run(args) => run_lab(global, &args, output),
        LabCommand::Up(args) => up(global, &args),
        LabCommand::Down => down(global),
        LabCommand::Status => status(global),
        LabCommand::Serve(args) => serve(global, &args),
    }
}

/// Where `.infraflux/` is, as for the real state (`--state-dir`, else beside the
/// configuration directory).
fn lab_paths(global: &GlobalArgs) -> LabPaths {
    let project = match global.state_dir.as_deref() {
        Some(dir) => dir,
        None => global.config.parent().unwrap_or(Path::new("")),
    };
    LabPaths::in_project(project)
}

/// The configuration's layout, or its problems as a diagnostic.
fn read_layout(global: &GlobalArgs, environment: Option<&str>) -> miette::Result<LabLayout> {
    overlay::layout(&global.config, environment).map_err(|rendered| {
        eprint!("{rendered}");
        diagnostic_text(
            "the configuration has problems; the lab needs it to load".into(),
            Some(
                "fix the problems above (`infraflux validate` lists them), then run the lab again"
                    .into(),
            ),
        )
    })
}

/// The lab's own runtime: its servers keep running on these threads while the commands
/// run theirs on the main thread.
fn lab_runtime() -> miette::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("infraflux-lab")
        .enable_all()
        .build()
        .map_err(|e| diagnostic_text(format!("cannot start the lab's runtime: {e}"), None))
}

fn start_error(error: crate::lab::Error) -> miette::Report {
    diagnostic(
        &error,
        Some(
            "the lab listens on 127.0.0.0/8 only; check that loopback addresses can be bound"
                .into(),
        ),
    )
}

fn describe(lab_endpoint: &str, layout: &LabLayout) -> String {
    let mut text = format!(
        "Lab: Proxmox VE simulator at {lab_endpoint} (nodes {})\n",
        layout.nodes.join(", ")
    );
    for pair in &layout.clusters {
        text.push_str(&format!(
            "Lab: {}/{} on 127.{}.0.0/16 (nodes from {}, VIP {})\n",
            pair.environment,
            pair.cluster,
            pair.octet,
            pair.first_node(),
            pair.vip()
        ));
    }
    text
}

/// A refusal when a background lab is up: `run` would replace its overlay and state.
fn refuse_if_up(paths: &LabPaths, what: &str) -> miette::Result<()> {
    let record = LabRecord::read(&paths.record()).map_err(|e| diagnostic(&e, None))?;
    match record {
        Some(record) if process::is_lab_process(record.pid) => Err(diagnostic_text(
            format!("a background lab is running (pid {}); {what}", record.pid),
            Some("stop it with `infraflux lab down`, or use it: `infraflux --overlay .infraflux/lab/overlay --state-dir .infraflux/lab plan --env dev`".into()),
        )),
        _ => Ok(()),
    }
}

// ---- lab run --------------------------------------------------------------------------

/// The steps of a run, timed.
struct Phases {
    started: Instant,
    done: Vec<(String, Duration)>,
}

impl Phases {
    fn time<T>(&mut self, name: impl Into<String>, step: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = step();
        self.done.push((name.into(), started.elapsed()));
        result
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(name, took)| format!("{name} {:.1}s", took.as_secs_f64()))
            .collect();
        format!(
            "{} (total {:.1}s)",
            parts.join(", "),
            self.started.elapsed().as_secs_f64()
        )
    }
}

fn run_lab(global: &GlobalArgs, args: &LabRunArgs, output: &Output) -> miette::Result<ExitCode> {
    let mut phases = Phases {
        started: Instant::now(),
        done: Vec::new(),
    };
    let paths = lab_paths(global);
    refuse_if_up(&paths, "`lab run` starts a lab of its own")?;
    let all = read_layout(global, None)?;
    let Some(layout) = all.promotion_to(&args.environment) else {
        return Err(diagnostic_text(
            format!("unknown environment `{}`", args.environment),
            Some(format!(
                "the configuration has {}",
                all.environments.join(", ")
            )),
        ));
    };
    let environments = layout.environments.clone();
    // Every cluster of the run is new (the lab starts empty): its RSA service-account
    // key is most of a cluster's CPU, so all of them start now, in the background.
    super::wiring::generate_cluster_keys_ahead(layout.clusters.len());
    // A new lab has no VMs: state from an earlier run would describe none of them.
    if paths.root.exists() {
        std::fs::remove_dir_all(&paths.root).map_err(|e| diagnostic(&e, None))?;
    }
    let runtime = lab_runtime()?;
    let (upstream, simulated) = phases.time("release files", || lab_upstream(global, &runtime))?;
    if let Some(reason) = &simulated {
        eprint!("{}", simulation_banner(reason));
    }
    let options = LabOptions {
        simulate_argocd: simulated.is_some(),
    };
    let lab = phases
        .time("lab start", || {
            runtime.block_on(Lab::start(layout, &paths.overlay(), options))
        })
        .map_err(start_error)?;
    eprint!("{}", describe(&lab.endpoint(), lab.layout()));
    let mut lab_global = global.clone();
    lab_global.overlay = vec![paths.overlay()];
    lab_global.state_dir = Some(paths.state_dir());
    // Whatever backend the environment names, the lab's state stays in its directory.
    lab_global.state_backend = Some(crate::cli::StateBackend::Local);
    // Each environment before it in promotion order first, as a real promotion goes.
    let outcome = environments.iter().try_for_each(|environment| {
        steps(&lab_global, environment, output, &mut phases, &upstream)
    });
    phases.time("lab stop", || runtime.block_on(lab.stop()));
    runtime.shutdown_timeout(Duration::from_secs(5));
    // The overlay points at a lab that is gone; the state stays for a look
    // (`infraflux --state-dir .infraflux/lab state list`).
    let _ = std::fs::remove_dir_all(paths.overlay());
    match outcome {
        Ok(()) => {
            eprintln!(
                "\nLab run of `{}` complete: {}",
                args.environment,
                phases.summary()
            );
            if simulated.is_some() {
                eprintln!(
                    "Lab: ArgoCD was SIMULATED in this run (see the notice at the start): its release manifest was not installed"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(report) => {
            eprintln!(
                "\nLab run of `{}` failed after: {}",
                args.environment,
                phases.summary()
            );
            Err(report)
        }
    }
}

/// Where the lab's ArgoCD comes from: the mirror (`--manifests`), the cache or the
/// network, as for a real run; when none has a release file, a simulated install (the
/// reason returned, to be said loudly). Every pinned file is read now, so that a
/// download happens once, before the lab starts, and lands in the cache.
fn lab_upstream(
    global: &GlobalArgs,
    runtime: &tokio::runtime::Runtime,
) -> miette::Result<(Sources, Option<String>)> {
    let mut sources = super::wiring::manifest_sources(global);
    sources.when_unavailable = WhenUnavailable::Simulate;
    let mut simulated = None;
    for (install, ha_install) in infraflux_kubernetes::upstream::ARGOCD {
        for file in [install, ha_install] {
            match runtime.block_on(sources.load(file)) {
                Ok(Loaded::Upstream(_)) => {}
                Ok(Loaded::Simulated { reason }) => {
                    simulated.get_or_insert(reason);
                }
                // A mirror without the file, or a file that is not the release: the
                // user's setup is wrong, and simulating would hide it.
                Err(error) => return Err(diagnostic(&error, Some(error.help()))),
            }
        }
    }
    Ok((sources, simulated))
}

/// The notice of a simulated ArgoCD install, framed so that nobody misses it.
fn simulation_banner(reason: &str) -> String {
    let rule = "Lab: ".to_string() + &"=".repeat(74) + "\n";
    format!(
        "{rule}Lab: SIMULATED ARGOCD: the lab has no copy of ArgoCD's release manifest\n\
         Lab:   ({reason}).\n\
         Lab: Its cluster APIs serve ArgoCD's kinds and play its controller, and InfraFlux\n\
         Lab: applies only its own ArgoCD objects (the namespace, the AppProject, the\n\
         Lab: Applications). This run does NOT show that the upstream manifest installs.\n\
         Lab: For the real one: --manifests DIR (a mirror holding argo-cd-<version>/install.yaml\n\
         Lab: and ha-install.yaml) or network access to raw.githubusercontent.com once.\n{rule}"
    )
}

/// plan → apply → ready signal → plan (empty), each as the real command runs it, with
/// upstream release files from `upstream`.
fn steps(
    global: &GlobalArgs,
    environment: &str,
    output: &Output,
    phases: &mut Phases,
    upstream: &Sources,
) -> miette::Result<()> {
    // One read of the configuration (with the lab's overlay) for the whole run.
    let workspace = Workspace::read(global.config_paths(), &crate::config::ProcessVariables);
    let mut context = super::wiring::process_context(global, output, &workspace);
    // The Kubernetes provider may simulate ArgoCD's install here, and only here.
    context.providers = super::wiring::providers_with(upstream.clone());
    // The lab's secrets are its own throwaway PKI for loopback fakes: its state needs no
    // encryption keys, and a plaintext warning about it would only be noise.
    if let Some(dir) = &global.state_dir {
        context.store = std::sync::Arc::new(crate::state::LocalStore::in_project(dir));
    }
    let selection = || SelectionArgs {
        environment: Some(environment.to_string()),
        cluster: None,
    };
    let plan_args = |detailed_exitcode| PlanArgs {
        selection: selection(),
        lock: LockArgs {
            lock_timeout: Duration::ZERO,
        },
        targets: Vec::new(),
        replace: Vec::new(),
        refresh: crate::cli::Refresh::True,
        refresh_only: false,
        detailed_exitcode,
        json: false,
        out: None,
    };
    eprintln!("\n== plan ({environment}) ==");
    phases.time(format!("plan {environment}"), || {
        super::plan::run(&plan_args(false), &workspace, &context)
    })?;
    // `infraflux bootstrap --env E --auto-approve`: the same plan and apply as `apply`
    // (promotion gate included), then the ready signal through the kubeconfig in state.
    eprintln!("\n== bootstrap ({environment}): apply, then the ready signal ==");
    let bootstrapped = phases.time(format!("bootstrap {environment}"), || {
        super::bootstrap::run(
            global,
            &BootstrapArgs {
                selection: selection(),
                lock: LockArgs {
                    lock_timeout: Duration::ZERO,
                },
                render: None,
                timeout: READY_TIMEOUT,
                auto_approve: true,
                parallelism: crate::apply::DEFAULT_PARALLELISM,
                json: false,
            },
            &workspace,
            &context,
        )
    })?;
    if bootstrapped != ExitCode::SUCCESS {
        return Err(diagnostic_text(
            format!("`{environment}` was not applied, or is not ready"),
            Some("see the failures above; the lab's state is in .infraflux/lab".into()),
        ));
    }
    eprintln!("\n== second plan ({environment}): must be empty ==");
    let second = phases.time(format!("second plan {environment}"), || {
        super::plan::run(&plan_args(true), &workspace, &context)
    })?;
    if second != ExitCode::SUCCESS {
        return Err(diagnostic_text(
            "the second plan is not empty: applying did not converge".into(),
            Some("a provider reads back something other than what it applied; the changes above name the attributes".into()),
        ));
    }
    Ok(())
}

// ---- lab up / serve / down / status ---------------------------------------------------

fn up(global: &GlobalArgs, args: &LabUpArgs) -> miette::Result<ExitCode> {
    let paths = lab_paths(global);
    refuse_if_up(&paths, "only one runs at a time")?;
    // Check the configuration here, where its problems can be shown.
    read_layout(global, args.environment.as_deref())?;
    if paths.root.exists() {
        std::fs::remove_dir_all(&paths.root).map_err(|e| diagnostic(&e, None))?;
    }
    std::fs::create_dir_all(&paths.root).map_err(|e| diagnostic(&e, None))?;
    let log = std::fs::File::create(paths.log()).map_err(|e| diagnostic(&e, None))?;
    let executable = std::env::current_exe().map_err(|e| diagnostic(&e, None))?;
    let mut command = Command::new(executable);
    command.arg("--config").arg(&global.config);
    if let Some(dir) = &global.state_dir {
        command.arg("--state-dir").arg(dir);
    }
    command.args(["lab", "serve"]);
    if let Some(environment) = &args.environment {
        command.args(["--env", environment]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // Its own process group: a Ctrl-C in this terminal later does not stop it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| diagnostic(&e, None))?;
    let deadline = Instant::now() + UP_TIMEOUT;
    let record = loop {
        if let Some(record) = LabRecord::read(&paths.record()).ok().flatten() {
            break record;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(paths.log()).unwrap_or_default();
            return Err(diagnostic_text(
                format!(
                    "the lab stopped while starting ({status}):\n{}",
                    log.trim_end()
                ),
                None,
            ));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(diagnostic_text(
                format!("the lab did not start within {}s", UP_TIMEOUT.as_secs()),
                Some(format!("its log is {}", paths.log().display())),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let environment = args
        .environment
        .clone()
        .or_else(|| record.clusters.first().map(|c| c.environment.clone()))
        .unwrap_or_else(|| "dev".into());
    let overlay = relative(&record.overlay);
    let state = relative(&record.state_dir);
    eprint!(
        "{}",
        describe(
            &record.endpoint,
            &LabLayout {
                environments: Vec::new(),
                nodes: record.nodes.clone(),
                disk_storages: Vec::new(),
                image_storages: Vec::new(),
                clusters: record.clusters.clone(),
            }
        )
    );
    println!(
        "Lab running in the background (pid {}). Use it with the overlay and the lab's own state:\n\n    infraflux --overlay {overlay} --state-dir {state} plan --env {environment}\n    infraflux --overlay {overlay} --state-dir {state} apply --env {environment} --auto-approve\n\nor export INFRAFLUX_OVERLAY={overlay} INFRAFLUX_STATE_DIR={state} INFRAFLUX_STATE_BACKEND=local\n(the lab's state must stay apart from the real one: add --state-backend local where\nINFRAFLUX_STATE_BACKEND=postgres is set). Stop it with `infraflux lab down`.",
        record.pid
    );
    Ok(ExitCode::SUCCESS)
}

fn relative(path: &Path) -> String {
    let current = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&current)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn serve(global: &GlobalArgs, args: &LabUpArgs) -> miette::Result<ExitCode> {
    let paths = lab_paths(global);
    let layout = read_layout(global, args.environment.as_deref())?;
    let runtime = lab_runtime()?;
    let lab = runtime
        // Commands run against a background lab are ordinary runs: they install the
        // real ArgoCD manifest (from a mirror, the cache or the network), never a
        // simulation.
        .block_on(Lab::start(layout, &paths.overlay(), LabOptions::default()))
        .map_err(start_error)?;
    let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
    let record = LabRecord {
        pid: std::process::id(),
        endpoint: lab.endpoint(),
        nodes: lab.layout().nodes.clone(),
        clusters: lab.layout().clusters.clone(),
        overlay: absolute(paths.overlay()),
        state_dir: absolute(paths.state_dir()),
        started: chrono::Utc::now().to_rfc3339(),
    };
    record
        .write(&paths.record())
        .map_err(|e| diagnostic(&e, None))?;
    eprintln!("lab serving at {} (pid {})", record.endpoint, record.pid);
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut interrupt)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    });
    eprintln!("lab stopping");
    runtime.block_on(lab.stop());
    let _ = std::fs::remove_file(paths.record());
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(ExitCode::SUCCESS)
}

fn down(global: &GlobalArgs) -> miette::Result<ExitCode> {
    let paths = lab_paths(global);
    let record = LabRecord::read(&paths.record()).map_err(|e| diagnostic(&e, None))?;
    let stopped = match &record {
        Some(record) => process::stop(record.pid, DOWN_GRACE).map_err(|e| diagnostic(&e, None))?,
        None => Stopped::NotRunning,
    };
    if paths.root.exists() {
        std::fs::remove_dir_all(&paths.root).map_err(|e| diagnostic(&e, None))?;
    }
    let message = match (stopped, &record) {
        (Stopped::Terminated, Some(record)) => format!("Lab stopped (pid {}).", record.pid),
        (Stopped::Killed, Some(record)) => format!(
            "Lab did not stop within {}s of SIGTERM and was killed (pid {}).",
            DOWN_GRACE.as_secs(),
            record.pid
        ),
        _ => "No lab was running.".to_string(),
    };
    println!("{message} Removed {}.", relative(&paths.root));
    Ok(ExitCode::SUCCESS)
}

fn status(global: &GlobalArgs) -> miette::Result<ExitCode> {
    let paths = lab_paths(global);
    let record = LabRecord::read(&paths.record()).map_err(|e| diagnostic(&e, None))?;
    match record {
        Some(record) if process::is_lab_process(record.pid) => {
            println!(
                "Lab running (pid {}, since {}): Proxmox VE simulator at {}",
                record.pid, record.started, record.endpoint
            );
            for pair in &record.clusters {
                println!(
                    "  {}/{}: 127.{}.0.0/16, VIP {}",
                    pair.environment,
                    pair.cluster,
                    pair.octet,
                    pair.vip()
                );
            }
            println!(
                "  overlay: {}\n  state:   {}",
                relative(&record.overlay),
                relative(&record.state_dir)
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            println!("No lab is running (start one with `infraflux lab up`).");
            Ok(ExitCode::from(1))
        }
    }
}
