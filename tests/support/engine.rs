//! Driving the engine commands (plan, apply, destroy, graph, import) through the library
//! with mock providers standing in for proxmox, talos and kubernetes, over the shipped
//! example configuration or a copy of it a test edits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use infraflux::apply::CancellationToken;
use infraflux::cli::{Cli, Command};
use infraflux::operation::{Context, Sink};
use infraflux::registry::ProviderRegistry;
use infraflux::state::StateStore;
use infraflux::testing::MemoryStore;
use infraflux_provider_mock::{MockProvider, Op};

struct Variables;
impl infraflux::config::Variables for Variables {
    fn var(&self, name: &str) -> Option<String> {
        (name == "PROXMOX_TOKEN").then(|| "root@pam!ci=secret".to_string())
    }
}

/// Mock providers with the real providers' schemas (which attributes are computed,
/// sensitive, force a replacement), standing in for proxmox, talos and kubernetes.
pub fn providers() -> (ProviderRegistry, Vec<Arc<MockProvider>>) {
    let real = infraflux::commands::providers();
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
    (registry, mocks)
}

/// What a command did: its exit code and both streams (a returned error's report is
/// appended to `err`, as the binary prints it).
pub struct Run {
    pub code: ExitCode,
    pub out: String,
    pub err: String,
}

impl Run {
    /// Panics with both streams unless the command succeeded.
    pub fn success(self) -> Run {
        assert_eq!(self.code, ExitCode::SUCCESS, "{}\n{}", self.out, self.err);
        self
    }
}

pub struct Harness {
    pub registry: ProviderRegistry,
    pub mocks: Vec<Arc<MockProvider>>,
    /// The state, in memory (unless `state` is replaced).
    pub store: MemoryStore,
    /// Where commands keep state: `store` unless a test puts another backend here.
    pub state: Arc<dyn StateStore>,
    /// Answers to the approval prompt, in order (`None`: no terminal).
    pub answers: Option<Arc<Mutex<Vec<String>>>>,
    pub config: PathBuf,
}

impl Harness {
    /// Over the shipped example configuration.
    pub fn new() -> Self {
        Harness::with_config(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
    }

    /// Over the configuration in `config`.
    pub fn with_config(config: &Path) -> Self {
        let (registry, mocks) = providers();
        let store = MemoryStore::new();
        Harness {
            registry,
            mocks,
            state: Arc::new(store.clone()),
            store,
            answers: None,
            config: config.to_path_buf(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut argv = vec![
            "infraflux",
            "--config",
            self.config.to_str().unwrap(),
            "--color",
            "never",
        ];
        argv.extend_from_slice(args);
        let cli = Cli::parse_from(argv);
        let (out, out_buffer) = Sink::buffer();
        let (err, err_buffer) = Sink::buffer();
        let prompt = self.answers.clone().map(|answers| {
            Box::new(move |_: &str| answers.lock().unwrap().remove(0))
                as infraflux::operation::Prompt
        });
        let context = Context {
            providers: self.registry.clone(),
            store: self.state.clone(),
            variables: Box::new(Variables),
            prompt,
            out,
            err,
            color: false,
            cancel: CancellationToken::new(),
            handle_signals: false,
        };
        let result = match &cli.command {
            Command::Plan(_)
            | Command::Apply(_)
            | Command::Destroy(_)
            | Command::Graph(_)
            | Command::Import(_) => infraflux::commands::run_in(&cli, &context),
            other => panic!("not an engine command: {other:?}"),
        };
        let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8(b.lock().unwrap().clone()).unwrap();
        match result {
            Ok(code) => Run {
                code,
                out: text(&out_buffer),
                err: text(&err_buffer),
            },
            Err(report) => Run {
                code: ExitCode::from(1),
                out: text(&out_buffer),
                err: format!("{}{report:?}", text(&err_buffer)),
            },
        }
    }

    /// Creates the mock providers made, all together.
    pub fn creates(&self) -> usize {
        self.mocks.iter().map(|m| m.count(Op::Create)).sum()
    }
}
