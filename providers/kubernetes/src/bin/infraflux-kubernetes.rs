//! `infraflux-kubernetes --render DIR RESOURCES.json`: write every manifest the given
//! resources render, one YAML file per object, numbered in apply order, without
//! touching a cluster. RESOURCES.json is a list of
//! `{"type": "kubernetes_platform", "attributes": {…}}` (the kubeconfig attribute is
//! not needed).
//!
//! ArgoCD's release file is read from the offline mirror `INFRAFLUX_MANIFESTS` when set,
//! else from the cache or downloaded (crate README, "Upstream release files").

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use infraflux_kubernetes::provider::{Releases, render_resource};
use infraflux_kubernetes::render::write_manifests;
use infraflux_kubernetes::upstream::Sources;

const USAGE: &str = "usage: infraflux-kubernetes --render DIR RESOURCES.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, input) = match args.as_slice() {
        [flag, dir, input] if flag == "--render" => (PathBuf::from(dir), PathBuf::from(input)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&dir, &input) {
        Ok(count) => {
            eprintln!("wrote {count} manifests to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &std::path::Path, input: &std::path::Path) -> Result<usize, String> {
    let text =
        std::fs::read_to_string(input).map_err(|e| format!("reading {}: {e}", input.display()))?;
    let resources: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", input.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let sources = Sources::from_environment();
    let mut written = 0;
    for (index, resource) in resources.iter().enumerate() {
        let kind = resource["type"]
            .as_str()
            .ok_or_else(|| format!("resource {index}: `type` is required"))?;
        let attributes = resource["attributes"]
            .as_object()
            .ok_or_else(|| format!("resource {index}: `attributes` must be an object"))?;
        let releases = runtime
            .block_on(Releases::load(&sources, kind, attributes))
            .map_err(|e| match e.help() {
                Some(help) => format!("resource {index} ({kind}): {e}\n  help: {help}"),
                None => format!("resource {index} ({kind}): {e}"),
            })?;
        let rendered = render_resource(kind, attributes, &releases)
            .map_err(|e| format!("resource {index} ({kind}): {e}"))?;
        written += write_manifests(dir, written, &rendered.manifests)
            .map_err(|e| format!("writing to {}: {e}", dir.display()))?
            .len();
    }
    Ok(written)
}
