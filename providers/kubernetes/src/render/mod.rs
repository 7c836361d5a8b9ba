//! Manifest rendering: typed inputs → `Vec<serde_json::Value>` manifests, pure
//! functions with no cluster involved. Each resource type renders here; `--render`
//! writes the same manifests to files.

pub mod argocd;
pub mod argocd_install;
pub mod cilium_install;
pub(crate) mod kubernetes_yaml;
mod namespace;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::inputs::{HandoffInputs, InputError, NamespaceInputs, PlatformInputs, Service};
use crate::object::{ObjectRef, sort_for_apply};
use crate::upstream::Loaded;

pub use namespace::namespace;

/// The value of the `managed-by` label on everything InfraFlux renders.
pub const MANAGED_BY: &str = "infraflux";

pub(crate) fn managed_labels() -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert("managed-by".into(), json!(MANAGED_BY));
    labels
}

/// Merge `overlay` into `base`: objects key by key, anything else replaced.
pub fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// A platform service: for cilium, the Job that installs it with the Cilium CLI (as
/// Talos documents); ArgoCD's upstream install manifest (`release`, read by
/// [`crate::upstream`]) with the `platform` AppProject and the Applications adopting
/// services installed before it; an ArgoCD Application with the Helm chart for the
/// others. In apply order.
pub fn platform(
    inputs: &PlatformInputs,
    release: Option<&Loaded>,
) -> Result<Vec<Value>, InputError> {
    let mut manifests = match inputs.service {
        Service::Cilium => cilium_install::install(inputs),
        Service::Argocd => {
            let release = release.ok_or_else(|| InputError {
                attribute: "version".into(),
                message: "ArgoCD's release file was not read before rendering (a bug in InfraFlux)"
                    .into(),
            })?;
            let mut manifests = argocd_install::install(inputs, release);
            manifests.push(argocd::platform_project(&inputs.argocd_namespace));
            for adopted in &inputs.adopt {
                manifests.extend(argocd::adoption_application(inputs, adopted));
            }
            manifests
        }
        _ => argocd::platform_application(inputs).into_iter().collect(),
    };
    sort_for_apply(&mut manifests);
    Ok(manifests)
}

/// An environment namespace and its policies, in apply order.
pub fn environment_namespace(inputs: &NamespaceInputs) -> Vec<Value> {
    let mut manifests = namespace(inputs);
    sort_for_apply(&mut manifests);
    manifests
}

/// The handoff's AppProject and app-of-apps Application.
pub fn handoff(inputs: &HandoffInputs) -> Vec<Value> {
    argocd::handoff(inputs)
}

/// Write manifests to `dir`, one YAML file per object, numbered in apply order
/// (`000-apiextensions.k8s.io-customresourcedefinition-applications.argoproj.io.yaml`).
/// `start` is the first number, so several resources can share a directory. Files are
/// created readable by their owner only: Helm values may carry secrets of the
/// configuration.
pub fn write_manifests(
    dir: &Path,
    start: usize,
    manifests: &[Value],
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (index, manifest) in manifests.iter().enumerate() {
        let stem = ObjectRef::from_manifest(manifest)
            .map(|o| o.file_stem())
            .unwrap_or_else(|| "object".into());
        let path = dir.join(format!("{:03}-{stem}.yaml", start + index));
        // Read by kubectl and ArgoCD as YAML 1.1: strings such as `no` are quoted.
        let text = kubernetes_yaml::to_string(manifest);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&path)?, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
