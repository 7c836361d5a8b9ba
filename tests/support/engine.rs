//! The engine commands (plan, apply, destroy, graph, import, bootstrap) in process, over
//! a configuration directory, with mock providers that have the real providers' schemas
//! (which attributes are computed, sensitive, force a replacement) standing in for
//! proxmox, talos and kubernetes, and a state store of the test's choosing (in memory by
//! default). The command line is parsed as the binary parses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use infraflux::apply::CancellationToken;
use infraflux::cli::{Cli, Command};
use infraflux::operation::{Context, Prompt, Sink};
use infraflux::registry::ProviderRegistry;
use infraflux::state::StateStore;
use infraflux::testing::MemoryStore;
use infraflux_provider::Provider;
use infraflux_provider::signal::ClusterSignal;
use infraflux_provider_mock::{MockProvider, Op};

use super::Run;

/// The token the in-process runs resolve `${env:PROXMOX_TOKEN}` to.
pub const TOKEN: &str = "root@pam!ci=secret";

/// The environment variables an in-process run sees (for `${env:…}`).
#[derive(Debug, Clone, Default)]
pub struct Variables(pub BTreeMap<String, String>);

impl Variables {
    /// `PROXMOX_TOKEN` = [`TOKEN`], nothing else.
    pub fn example() -> Self {
        Variables::default().with("PROXMOX_TOKEN", TOKEN)
    }

    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_string(), value.into());
        self
    }
}

impl infraflux::config::Variables for Variables {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Mock providers with the real providers' schemas, registered.
pub fn mock_providers() -> (ProviderRegistry, Vec<Arc<MockProvider>>) {
    // The real providers read upstream release files from the shared mirror only.
    let real = infraflux::commands::providers_with(super::upstream::sources());
    let mocks: Vec<Arc<MockProvider>> = ["proxmox", "talos", "kubernetes"]
        .into_iter()
        .map(|name| {
            Arc::new(MockProvider::new(
                name,
                real.get(name).expect("a real provider").schemas(),
            ))
        })
        .collect();
    let mut registry = ProviderRegistry::new();
    for mock in &mocks {
        registry.register(mock.clone());
    }
    // The ready signal as the binary wires it (tests point it elsewhere with
    // `Engine::clusters`).
    if let Some(signal) = real.signal() {
        registry.set_signal(signal.clone());
    }
    (registry, mocks)
}

/// The engine commands in process, against mock providers.
pub struct Engine {
    pub registry: ProviderRegistry,
    pub mocks: Vec<Arc<MockProvider>>,
    /// The state, unless [`Engine::store`] replaced it.
    pub memory: MemoryStore,
    store: Arc<dyn StateStore>,
    pub variables: Variables,
    /// Answers to approval prompts, in order; `None`: no terminal to ask.
    pub answers: Option<Arc<Mutex<Vec<String>>>>,
    /// The run's Ctrl-C: cancel it to interrupt.
    pub cancel: CancellationToken,
    config: PathBuf,
    /// Global flags before each command's own (`-vv`).
    global: Vec<String>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// Over the bundled example, state in memory, `PROXMOX_TOKEN` set.
    pub fn new() -> Self {
        plain_reports();
        let (registry, mocks) = mock_providers();
        let memory = MemoryStore::new();
        Engine {
            registry,
            mocks,
            store: Arc::new(memory.clone()),
            memory,
            variables: Variables::example(),
            answers: None,
            cancel: CancellationToken::new(),
            config: super::example_config(),
            global: Vec::new(),
        }
    }

    /// Over the configuration in `dir`.
    pub fn config(mut self, dir: &Path) -> Self {
        self.config = dir.to_path_buf();
        self
    }

    /// State in `store` instead of memory.
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = store;
        self
    }

    pub fn variables(mut self, variables: Variables) -> Self {
        self.variables = variables;
        self
    }

    /// The state store the runs use.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Answer approval prompts with `answers`, in order.
    pub fn answers(mut self, answers: &[&str]) -> Self {
        self.answers = Some(Arc::new(Mutex::new(
            answers.iter().map(|a| a.to_string()).collect(),
        )));
        self
    }

    /// A global flag before every command's own arguments.
    pub fn global(mut self, flag: &str) -> Self {
        self.global.push(flag.to_string());
        self
    }

    /// Where `bootstrap` (and `apply`'s look after it) takes the ready signals.
    pub fn clusters(mut self, signal: Arc<dyn ClusterSignal>) -> Self {
        self.registry.set_signal(signal);
        self
    }

    /// `infraflux --config <config> --color never <global> <args>`, in process.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut argv: Vec<String> = vec!["infraflux".into(), "--config".into()];
        argv.push(self.config.display().to_string());
        argv.extend(["--color".into(), "never".into()]);
        argv.extend(self.global.iter().cloned());
        argv.extend(args.iter().map(|a| a.to_string()));
        let cli = Cli::parse_from(argv);
        let (out, out_buffer) = Sink::buffer();
        let (err, err_buffer) = Sink::buffer();
        let prompt = self
            .answers
            .clone()
            .map(|answers| Box::new(move |_: &str| answers.lock().unwrap().remove(0)) as Prompt);
        let context = Context {
            providers: self.registry.clone(),
            store: self.store.clone(),
            variables: Box::new(self.variables.clone()),
            prompt,
            out,
            err,
            color: false,
            cancel: self.cancel.clone(),
            handle_signals: false,
        };
        let result = match &cli.command {
            Command::Plan(_)
            | Command::Apply(_)
            | Command::Destroy(_)
            | Command::Graph(_)
            | Command::Import(_)
            | Command::Bootstrap(_) => infraflux::commands::run_in(&cli, &context),
            other => panic!("not an engine command: {other:?}"),
        };
        let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8(b.lock().unwrap().clone()).unwrap();
        let (code, report) = match result {
            Ok(code) => (code, String::new()),
            Err(report) => (ExitCode::from(1), format!("{report:?}")),
        };
        Run {
            code: exit_code(code),
            stdout: text(&out_buffer),
            stderr: text(&err_buffer) + &report,
        }
    }

    /// The mock standing in for provider `name`.
    pub fn mock(&self, name: &str) -> &MockProvider {
        self.mocks
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no mock provider `{name}`"))
    }

    /// Operations `op` all mocks were asked for.
    pub fn count(&self, op: Op) -> usize {
        self.mocks.iter().map(|m| m.count(op)).sum()
    }

    /// Addresses created, per provider in the order the creates finished.
    pub fn created(&self) -> Vec<String> {
        self.mocks
            .iter()
            .flat_map(|m| m.finished(Op::Create))
            .collect()
    }
}

/// Errors rendered as the binary renders them off a terminal (plain, not wrapped), so
/// what a test sees does not depend on the terminal it runs in.
fn plain_reports() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = miette::set_hook(Box::new(|_| {
            Box::new(
                miette::MietteHandlerOpts::new()
                    .color(false)
                    .unicode(true)
                    .wrap_lines(false)
                    .build(),
            )
        }));
    });
}

/// The number behind an [`ExitCode`] (which does not say it).
pub fn exit_code(code: ExitCode) -> i32 {
    (0..=255u8)
        .find(|c| ExitCode::from(*c) == code)
        .map(i32::from)
        .expect("an exit code is a byte")
}
