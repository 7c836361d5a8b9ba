//! One read of the configuration per command run: `plan`, `apply` (promotion gate, plan,
//! apply and the ready signal's look after it) and `bootstrap` (every environment, its
//! promotion gate, plan, apply and ready signal) each read the layer files once and
//! compose everything else from that read. Counted per thread by the `testing`
//! feature's `config::layers::reads`.

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use clap::Parser;
use infraflux::apply::CancellationToken;
use infraflux::cli::Cli;
use infraflux::config::layers::reads;
use infraflux::operation::{Context, Sink};
use infraflux::registry::ProviderRegistry;
use infraflux::testing::MemoryStore;
use infraflux_provider::Attributes;
use infraflux_provider::signal::{
    ClusterSignal, Outcome, ReadyReport, ReadyRequest, RenderedManifest,
};
use infraflux_provider_mock::MockProvider;

struct Variables;
impl infraflux::config::Variables for Variables {
    fn var(&self, name: &str) -> Option<String> {
        (name == "PROXMOX_TOKEN").then(|| "root@pam!ci=secret".to_string())
    }
}

/// A cluster that is ready as soon as it is asked.
struct ReadyAtOnce;

#[async_trait]
impl ClusterSignal for ReadyAtOnce {
    async fn ready_signal(&self, _request: ReadyRequest) -> Result<ReadyReport, String> {
        Ok(ReadyReport {
            outcome: Outcome::Ready,
            waited_seconds: 0,
            checks: Vec::new(),
        })
    }

    fn is_handoff(&self, kind: &str) -> bool {
        kind == "kubernetes_handoff"
    }

    fn render_manifests(
        &self,
        _kind: &str,
        _attributes: &Attributes,
    ) -> Result<Vec<RenderedManifest>, String> {
        Ok(Vec::new())
    }
}

fn registry() -> ProviderRegistry {
    let real = infraflux::commands::providers();
    let mut registry = ProviderRegistry::new();
    for name in ["proxmox", "talos", "kubernetes"] {
        registry.register(Arc::new(MockProvider::new(
            name,
            real.get(name).expect("a real provider").schemas(),
        )));
    }
    registry.set_signal(Arc::new(ReadyAtOnce));
    registry
}

/// Run one command; returns its exit code and how many times it read the configuration.
fn reads_of(args: &[&str], registry: &ProviderRegistry, store: &MemoryStore) -> (ExitCode, usize) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut argv = vec!["infraflux", "--config", config, "--color", "never"];
    argv.extend_from_slice(args);
    let cli = Cli::parse_from(argv);
    let (out, _) = Sink::buffer();
    let (err, err_buffer) = Sink::buffer();
    let context = Context {
        providers: registry.clone(),
        store: Arc::new(store.clone()),
        variables: Box::new(Variables),
        prompt: None,
        out,
        err,
        color: false,
        cancel: CancellationToken::new(),
        handle_signals: false,
    };
    let before = reads::so_far();
    let code = infraflux::commands::run_in(&cli, &context).unwrap_or_else(|report| {
        let err = String::from_utf8_lossy(&err_buffer.lock().unwrap()).to_string();
        panic!("{args:?} failed: {err}{report:?}")
    });
    (code, reads::so_far() - before)
}

#[test]
fn plan_apply_and_bootstrap_each_read_the_configuration_once() {
    let registry = registry();
    let store = MemoryStore::new();
    for args in [
        &["plan", "--env", "dev"][..],
        &["apply", "--env", "dev", "--auto-approve"],
        // The promotion gate composes every environment: from the same read.
        &["apply", "--env", "staging", "--auto-approve"],
        &["plan", "--env", "staging", "--detailed-exitcode"],
        // dev and staging plan no changes, prod is applied; each signal is taken.
        &["bootstrap", "--auto-approve"],
    ] {
        let (code, reads) = reads_of(args, &registry, &store);
        assert_eq!(code, ExitCode::SUCCESS, "{args:?}");
        assert_eq!(reads, 1, "{args:?} read the configuration {reads} times");
    }
}
