//! What the engine commands (plan, apply, destroy, graph) share: the [`Context`] they run
//! in (providers, state store, terminal), loading the configuration into desired
//! resources, and turning engine errors into diagnostics.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::apply::{CancellationToken, Reporter};
use crate::cli::{GlobalArgs, SelectionArgs};
use crate::config::{self, ProcessVariables, Selection};
use crate::diag::ProblemsReport;
use crate::graph::{DesiredResource, build_desired};
use crate::operation::load::load_model;
use crate::plan::Action;
use crate::registry::ProviderRegistry;
use crate::state::{LockGuard, LockInfo, StateDocument, StateStore};
use crate::vocabulary::ResourceAddr;

use super::output::Output;

/// A writer several places can hold (data goes to `out`, progress to `err`).
#[derive(Clone)]
pub struct Sink(Arc<Mutex<Box<dyn Write + Send>>>);

impl Sink {
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Sink(Arc::new(Mutex::new(Box::new(writer))))
    }

    /// A sink that keeps what is written, and a handle to read it.
    pub fn buffer() -> (Sink, Arc<Mutex<Vec<u8>>>) {
        #[derive(Clone)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("buffer lock").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (Sink::new(Shared(buffer.clone())), buffer)
    }

    pub fn write(&self, text: &str) {
        let mut writer = self.0.lock().expect("sink lock");
        // Output that cannot be written (a closed pipe) is not worth failing an apply for.
        let _ = writer.write_all(text.as_bytes());
        let _ = writer.flush();
    }
}

/// Asks the user a question and returns the answer.
pub type Prompt = Box<dyn Fn(&str) -> String + Send + Sync>;

/// Where the engine commands run.
pub struct Context {
    pub providers: ProviderRegistry,
    pub store: Arc<dyn StateStore>,
    /// Environment variables for `${env:…}` in the configuration.
    pub variables: Box<dyn config::Variables + Send + Sync>,
    /// `None` when there is no terminal to ask (approval then needs --auto-approve).
    pub prompt: Option<Prompt>,
    pub out: Sink,
    pub err: Sink,
    pub color: bool,
    /// Cancelled by the first Ctrl-C (wired by [`Context::from_process`]'s commands).
    pub cancel: CancellationToken,
    /// Listen for Ctrl-C during apply.
    pub handle_signals: bool,
}

/// The providers this binary has: Proxmox (one client per PVE endpoint, taken from each
/// resource's `endpoint`, `token` and `tls` attributes and made on first use), Talos and
/// Kubernetes (which connect per operation, to the nodes and the kubeconfig their
/// resources name). Building the registry does no I/O.
pub fn providers() -> ProviderRegistry {
    ProviderRegistry::new()
        .with(Arc::new(infraflux_proxmox::ProxmoxEndpoints::new(
            infraflux_proxmox::ProviderOptions::default(),
        )))
        .with(Arc::new(infraflux_talos::TalosProvider::default()))
        .with(Arc::new(
            infraflux_kubernetes::provider::KubernetesProvider::new(
                infraflux_kubernetes::provider::ProviderOptions::default(),
            ),
        ))
}

impl Context {
    /// The real process: its terminal, environment, providers, and the selected state
    /// store (`--state-backend`; local: `--state-dir`, else `.infraflux/state` beside the
    /// configuration directory).
    pub fn from_process(global: &GlobalArgs, output: &Output) -> Context {
        let prompt: Option<Prompt> = std::io::stdin().is_terminal().then(|| {
            Box::new(|question: &str| {
                eprint!("{question}");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                answer.trim().to_string()
            }) as Prompt
        });
        Context {
            providers: providers(),
            // A misconfigured backend fails the first state operation with its reason
            // (commands lock state before they change anything).
            store: super::state::open_store(global)
                .unwrap_or_else(|e| Arc::new(crate::state::select::Misconfigured::new(e))),
            variables: Box::new(ProcessVariables),
            prompt,
            out: Sink::new(std::io::stdout()),
            err: Sink::new(std::io::stderr()),
            color: output.color_stdout,
            cancel: CancellationToken::new(),
            handle_signals: true,
        }
    }

    pub fn runtime(&self) -> miette::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| miette::miette!("cannot start the async runtime: {e}"))
    }

    /// Take the environment's state lock and load its document (a new one if none).
    pub fn lock_and_load(
        &self,
        environment: &str,
        operation: &str,
        timeout: std::time::Duration,
    ) -> miette::Result<(Box<dyn LockGuard>, StateDocument)> {
        let info = LockInfo::new(operation);
        let guard = self
            .store
            .lock_with_timeout(environment, info, timeout)
            .map_err(|e| diagnostic(&e, Some(e.help())))?;
        let state = self
            .store
            .load(environment)
            .map_err(|e| diagnostic(&e, Some(e.help())))?
            .unwrap_or_else(|| StateDocument::new(environment));
        Ok((guard, state))
    }
}

/// The configuration of the selected environment as desired resources.
pub fn load_desired(
    global: &GlobalArgs,
    selection: &SelectionArgs,
    context: &Context,
) -> miette::Result<(String, Vec<DesiredResource>)> {
    load_desired_for(
        global,
        selection.environment.as_deref(),
        selection.cluster.as_deref(),
        context,
    )
}

/// The model of a selection, every problem (warnings too) shown on stderr; an error when
/// the configuration has errors. `with_policy` runs the environment policy as well.
pub fn load_checked_model(
    global: &GlobalArgs,
    selection: &Selection,
    context: &Context,
    with_policy: bool,
) -> miette::Result<crate::model::Model> {
    let (config, model, problems) = load_model(
        global.config_paths(),
        selection,
        context.variables.as_ref(),
        with_policy,
    );
    if !problems.is_empty() {
        context.err.write(&crate::diag::render_problems(
            &problems,
            config.sources(),
            context.color,
        ));
    }
    match model {
        Some(model) if !problems.has_errors() => Ok(model),
        _ => Err(ProblemsReport::new(&problems, "the configuration").into()),
    }
}

pub fn load_desired_for(
    global: &GlobalArgs,
    environment: Option<&str>,
    cluster: Option<&str>,
    context: &Context,
) -> miette::Result<(String, Vec<DesiredResource>)> {
    let selection = Selection {
        environment: environment.map(str::to_string),
        cluster: cluster.map(str::to_string),
    };
    // Policy runs on every plan and apply, not only `validate`: a waived rule is shown
    // (as a warning with its reason) each time.
    let model = load_checked_model(global, &selection, context, true)?;
    let environment = match (environment, model.environments.as_slice()) {
        (Some(name), _) => name.to_string(),
        (None, [only]) => only.name.clone(),
        (None, environments) => {
            let names: Vec<&str> = environments.iter().map(|e| e.name.as_str()).collect();
            return Err(diagnostic_text(
                format!(
                    "choose an environment: the configuration has {}",
                    names.join(", ")
                ),
                Some("pass --env, e.g. `--env dev`: each environment has its own state and is planned and applied on its own".into()),
            ));
        }
    };
    let desired = build_desired(&model)
        .into_iter()
        .filter(|d| d.address.environment == environment)
        .collect();
    Ok((environment, desired))
}

pub fn parse_addresses(texts: &[String]) -> miette::Result<Vec<ResourceAddr>> {
    texts
        .iter()
        .map(|t| t.parse().map_err(|e| diagnostic(&e, None)))
        .collect()
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct EngineDiagnostic {
    message: String,
    #[help]
    help: Option<String>,
}

/// An error with its causes on one line, and what to do about it.
pub fn diagnostic(error: &dyn std::error::Error, help: Option<String>) -> miette::Report {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    diagnostic_text(message, help)
}

pub fn diagnostic_text(message: String, help: Option<String>) -> miette::Report {
    EngineDiagnostic { message, help }.into()
}

/// Prints apply progress to `err`, one line per event, Terraform-style. On a terminal a
/// live summary line (done, running, failed, skipped, elapsed) stays under the events.
pub struct ProgressReporter {
    pub err: Sink,
    live: Option<Mutex<LiveSummary>>,
}

struct LiveSummary {
    total: usize,
    running: usize,
    done: usize,
    failed: usize,
    skipped: usize,
    started: std::time::Instant,
}

impl ProgressReporter {
    /// `total`: the changes the apply will make; `live`: keep a summary line updated
    /// (only on a terminal).
    pub fn new(err: Sink, total: usize, live: bool) -> Self {
        ProgressReporter {
            err,
            live: live.then(|| {
                Mutex::new(LiveSummary {
                    total,
                    running: 0,
                    done: 0,
                    failed: 0,
                    skipped: 0,
                    started: std::time::Instant::now(),
                })
            }),
        }
    }

    /// Print one event line; on a terminal, redraw the summary line below it.
    fn event(&self, line: String, update: impl FnOnce(&mut LiveSummary)) {
        let Some(live) = &self.live else {
            self.err.write(&line);
            return;
        };
        let mut summary = live.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut summary);
        let status = format!(
            "[{}/{} done, {} running, {} failed, {} skipped, {}s]",
            summary.done,
            summary.total,
            summary.running,
            summary.failed,
            summary.skipped,
            summary.started.elapsed().as_secs()
        );
        // Clear the old summary line, print the event, draw the summary again.
        self.err.write(&format!("\r\x1b[2K{line}{status}"));
        if summary.done + summary.failed + summary.skipped >= summary.total {
            self.err.write("\r\x1b[2K");
        }
    }
}

fn doing(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating...", "Creation complete"),
        Action::Update => ("Modifying...", "Modifications complete"),
        Action::Delete => ("Destroying...", "Destruction complete"),
        Action::DeleteThenCreate | Action::CreateThenDelete => {
            ("Replacing...", "Replacement complete")
        }
        Action::Read => ("Recording...", "Recorded"),
        Action::NoOp => ("", ""),
    }
}

fn seconds(elapsed: Duration) -> String {
    format!("{}s", elapsed.as_secs())
}

impl Reporter for ProgressReporter {
    fn started(&self, address: &ResourceAddr, action: Action) {
        self.event(format!("{address}: {}\n", doing(action).0), |s| {
            s.running += 1
        });
    }
    fn finished(&self, address: &ResourceAddr, action: Action, elapsed: Duration) {
        self.event(
            format!(
                "{address}: {} after {}\n",
                doing(action).1,
                seconds(elapsed)
            ),
            |s| {
                s.running = s.running.saturating_sub(1);
                s.done += 1;
            },
        );
    }
    fn failed(&self, address: &ResourceAddr, action: Action, error: &str, elapsed: Duration) {
        self.event(
            format!(
                "{address}: {action} failed after {}: {error}\n",
                seconds(elapsed)
            ),
            |s| {
                s.running = s.running.saturating_sub(1);
                s.failed += 1;
            },
        );
    }
    fn skipped(&self, address: &ResourceAddr, because: &ResourceAddr) {
        self.event(format!("{address}: skipped because of {because}\n"), |s| {
            s.skipped += 1
        });
    }
}

/// Cancel `token` on the first Ctrl-C; exit 130 at once on the second.
pub fn watch_interrupts(token: CancellationToken, err: Sink) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        err.write("\nInterrupt received: finishing the operations in flight and starting nothing new. Press Ctrl-C again to stop at once (state may then miss the last results).\n");
        token.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            err.write("Second interrupt: stopping now.\n");
            std::process::exit(130);
        }
    });
}
