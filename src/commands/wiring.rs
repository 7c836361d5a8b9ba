//! The real process wired for the operations: the concrete providers this binary has,
//! its terminal, environment variables and state store.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use crate::apply::CancellationToken;
use crate::cli::GlobalArgs;
use crate::config::ProcessVariables;
use crate::operation::{Context, Prompt, Sink, Workspace, diagnostic};
use crate::registry::ProviderRegistry;
use crate::vocabulary::ResourceAddr;
use infraflux_kubernetes::upstream::Sources;

use super::output::Output;

/// The providers this binary has, with the upstream release files read as the
/// environment says (`INFRAFLUX_MANIFESTS`, `INFRAFLUX_MANIFESTS_URL`, the XDG cache).
pub fn providers() -> ProviderRegistry {
    providers_with(Sources::from_environment())
}

/// Where upstream release files come from for a run: `--manifests` (or its variable)
/// over what the environment says.
pub fn manifest_sources(global: &GlobalArgs) -> Sources {
    let mut sources = Sources::from_environment();
    if let Some(dir) = &global.manifests {
        sources.mirror = Some(dir.clone());
    }
    sources
}

/// The providers this binary has: Proxmox (one client per PVE endpoint, taken from each
/// resource's `endpoint`, `token` and `tls` attributes and made on first use), Talos and
/// Kubernetes (which connect per operation, to the nodes and the kubeconfig their
/// resources name, and read the upstream release files it installs from `upstream`;
/// Kubernetes also gives the ready signal). Building the registry does no I/O.
pub fn providers_with(upstream: Sources) -> ProviderRegistry {
    let kubernetes = Arc::new(infraflux_kubernetes::provider::KubernetesProvider::new(
        infraflux_kubernetes::provider::ProviderOptions {
            upstream,
            ..Default::default()
        },
    ));
    ProviderRegistry::new()
        .with(Arc::new(infraflux_proxmox::ProxmoxEndpoints::new(
            infraflux_proxmox::ProviderOptions::default(),
        )))
        .with(Arc::new(infraflux_talos::TalosProvider::default()))
        .with(kubernetes.clone())
        .with_signal(kubernetes)
}

/// Start the Talos service-account keys of `clusters` clusters that this run will
/// create one after another (`lab run`'s environments, in promotion order), so that
/// later clusters find theirs made on an idle core rather than on their critical path.
pub fn generate_cluster_keys_ahead(clusters: usize) {
    infraflux_talos::key_pool::prefetch_service_account_keys(clusters);
}

/// The real process: its terminal, environment, providers, and the selected state
/// store (`--state-backend`, else the configuration's `state.backend`; local:
/// `--state-dir`, else `.infraflux/state` beside the configuration directory), taken
/// from the run's one read of the configuration.
pub fn process_context(global: &GlobalArgs, output: &Output, workspace: &Workspace) -> Context {
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
        providers: providers_with(manifest_sources(global)),
        // A misconfigured backend fails the first state operation with its reason
        // (commands lock state before they change anything).
        store: super::state::open_store(global, Some(workspace.layers()))
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

pub fn parse_addresses(texts: &[String]) -> miette::Result<Vec<ResourceAddr>> {
    texts
        .iter()
        .map(|t| t.parse().map_err(|e| diagnostic(&e, None)))
        .collect()
}
