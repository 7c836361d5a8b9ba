//! What a configured node holds, read back for the plan: the machine config it applied
//! and the Kubernetes version that config runs.
//!
//! Talos persists the config it was given byte for byte (a read-only container keeps
//! its bytes) at [`APPLIED_CONFIG_PATH`]; a config changed on the node by hand
//! (`talosctl edit mc`, `patch mc`, `apply-config`) is written anew. So the digest of
//! that file equals the recorded `config_sha256` exactly when nobody changed it, and
//! the refresh can tell drift from a config it applied itself.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::{ClientIdentity, ConnectOptions, Credentials, NodeClient};
use crate::config::{masked_yaml, parse_documents};
use crate::error::Result;

/// Where Talos keeps the applied machine config (its STATE partition).
pub const APPLIED_CONFIG_PATH: &str = "/system/state/config.yaml";

/// A machine config is a few KiB; anything past this is not one.
const CONFIG_LIMIT: usize = 1024 * 1024;

/// A config's digest, as `config_sha256` records it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The node's applied config, in the attributes the plan compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedConfig {
    /// sha256 of the file, as `config_sha256` records the config InfraFlux applied.
    pub sha256: String,
    /// The file with its secrets masked (as `machine_config_masked`), so a plan shows
    /// what changed on the node; `None` when it does not parse.
    pub masked: Option<String>,
    /// The kubelet image's version (`ghcr.io/siderolabs/kubelet:v1.34.1` → `1.34.1`).
    pub kubernetes_version: Option<String>,
}

impl AppliedConfig {
    /// Whether the node holds another config than the one recorded in `prior`.
    pub fn differs_from(&self, prior: &serde_json::Map<String, Value>) -> bool {
        prior.get("config_sha256").and_then(Value::as_str) != Some(self.sha256.as_str())
    }
}

/// The kubelet version of the config InfraFlux applied, read from its masked copy
/// (`machine_config_masked`: masking keeps the kubelet's image; the config itself is
/// not recorded).
pub fn recorded_kubelet_version(prior: &serde_json::Map<String, Value>) -> Option<String> {
    kubelet_version_of(prior.get("machine_config_masked")?.as_str()?)
}

/// The Kubernetes version a machine config's kubelet runs (`1.34.1`).
pub fn kubelet_version_of(config: &str) -> Option<String> {
    kubelet_version(&parse_documents(config).ok()?)
}

/// Read the applied config of the node at `endpoint`, as its admin.
pub async fn read_applied_config(
    endpoint: &str,
    identity: &ClientIdentity,
    options: &ConnectOptions,
) -> Result<AppliedConfig> {
    let mut client =
        NodeClient::connect(endpoint, &Credentials::Mutual(identity.clone()), options).await?;
    let bytes = client.read_file(APPLIED_CONFIG_PATH, CONFIG_LIMIT).await?;
    Ok(applied_config(&bytes))
}

/// The attributes of a config file's bytes.
pub fn applied_config(bytes: &[u8]) -> AppliedConfig {
    let documents = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| parse_documents(text).ok());
    AppliedConfig {
        sha256: sha256_hex(bytes),
        masked: documents.as_deref().and_then(|d| masked_yaml(d).ok()),
        kubernetes_version: documents.as_deref().and_then(kubelet_version),
    }
}

/// The tag of `machine.kubelet.image` in the v1alpha1 document, without its `v`.
fn kubelet_version(documents: &[Value]) -> Option<String> {
    let image = documents
        .iter()
        .find_map(|d| d.get("machine")?.get("kubelet")?.get("image")?.as_str())?;
    // A digest pins the image, not a version: nothing to read.
    let image = image.split('@').next()?;
    let (name, tag) = image.rsplit_once(':')?;
    if name.ends_with('/') || tag.contains('/') {
        return None;
    }
    Some(tag.trim_start_matches('v').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "version: v1alpha1\nmachine:\n  type: worker\n  token: abcdef.0123456789abcdef\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.1\ncluster:\n  secretboxEncryptionSecret: c2VjcmV0\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: w-1\n";

    #[test]
    fn the_digest_is_of_the_bytes_and_the_version_of_the_kubelet_image() {
        let applied = applied_config(CONFIG.as_bytes());
        assert_eq!(applied.sha256, sha256_hex(CONFIG.as_bytes()));
        assert_eq!(applied.kubernetes_version.as_deref(), Some("1.34.1"));
        let masked = applied.masked.unwrap();
        assert!(!masked.contains("abcdef.0123456789abcdef"), "{masked}");
        assert!(masked.contains("HostnameConfig"), "{masked}");
    }

    #[test]
    fn a_registry_port_or_a_digest_is_not_a_version() {
        let version = |image: &str| {
            applied_config(format!("machine:\n  kubelet:\n    image: {image}\n").as_bytes())
                .kubernetes_version
        };
        assert_eq!(
            version("mirror.local:5000/siderolabs/kubelet:v1.35.0").as_deref(),
            Some("1.35.0")
        );
        assert_eq!(version("mirror.local:5000/siderolabs/kubelet"), None);
        assert_eq!(version("ghcr.io/siderolabs/kubelet@sha256:abcd"), None);
    }

    #[test]
    fn the_recorded_kubelet_version_is_read_from_the_masked_config() {
        let masked = applied_config(CONFIG.as_bytes()).masked.unwrap();
        let prior = serde_json::json!({"machine_config_masked": masked});
        let prior = prior.as_object().unwrap();
        assert_eq!(recorded_kubelet_version(prior).as_deref(), Some("1.34.1"));
        // The rendered config is not recorded: nothing else is read.
        let rendered_only = serde_json::json!({"machine_config": CONFIG});
        assert_eq!(
            recorded_kubelet_version(rendered_only.as_object().unwrap()),
            None
        );
    }

    #[test]
    fn bytes_that_are_not_a_config_still_have_a_digest() {
        let applied = applied_config(b"\xff\xfe not yaml");
        assert_eq!(applied.masked, None);
        assert_eq!(applied.kubernetes_version, None);
        assert_eq!(applied.sha256.len(), 64);
    }
}
