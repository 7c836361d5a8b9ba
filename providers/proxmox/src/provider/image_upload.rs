//! The `upload` attribute of `proxmox_image`: `null` (PVE downloads the image itself with
//! `download-url`) or the opt-in SSH fallback ([`crate::upload`]):
//!
//! ```json
//! {"method": "ssh", "user": "root", "private_key_file": "/home/ops/.ssh/pve",
//!  "known_hosts": "/home/ops/.ssh/known_hosts", "host_key_fingerprint": null,
//!  "port": 22, "hosts": {"pve1": "192.0.2.11"}, "source_dir": "images",
//!  "import_dir": null}
//! ```
//!
//! The image file is read from `source_dir/<filename>` on the machine running InfraFlux
//! (fetched there beforehand: the point is that the nodes cannot fetch it);
//! `import_dir` defaults to the storage's path (from the API) + `/import`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use infraflux_provider::{ErrorKind, ProviderError, is_unknown};
use serde_json::Value;

use super::attributes::Problems;
use crate::upload::{HostKeyCheck, SshTarget};

pub const ATTRIBUTE: &str = "upload";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUploadSpec {
    pub user: String,
    pub port: u16,
    pub private_key_file: PathBuf,
    pub host_key: HostKeyCheck,
    /// Node name → address to connect to; a node not listed is reached by its name.
    pub hosts: BTreeMap<String, String>,
    pub source_dir: PathBuf,
    pub import_dir: Option<String>,
}

impl SshUploadSpec {
    pub fn target(&self, node: &str) -> SshTarget {
        SshTarget {
            host: self.hosts.get(node).cloned().unwrap_or_else(|| node.into()),
            port: self.port,
            user: self.user.clone(),
            private_key_file: self.private_key_file.clone(),
            host_key: self.host_key.clone(),
            timeout: Duration::from_secs(30),
        }
    }
}

fn string(map: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Read the `upload` attribute; problems are added under `upload`.
pub fn read(value: Option<&Value>, problems: &mut Problems) -> Option<SshUploadSpec> {
    let map = match value {
        None | Some(Value::Null) => return None,
        Some(value) if is_unknown(value) => return None,
        Some(Value::Object(map)) => map,
        Some(other) => {
            problems.add(
                ATTRIBUTE,
                "expected an object or null",
                format!("got `{other}`"),
            );
            return None;
        }
    };
    let mut bad = |summary: String, detail: &str| problems.add(ATTRIBUTE, summary, detail);
    match map.get("method").and_then(Value::as_str) {
        Some("ssh") => {}
        other => {
            bad(
                format!("unknown upload method {other:?}"),
                "the only upload method is `ssh`; leave `image_upload` unset for PVE's own download-url",
            );
            return None;
        }
    }
    let private_key_file = string(map, "private_key_file");
    if private_key_file.is_none() {
        bad(
            "`private_key_file` is missing".into(),
            "name the private key InfraFlux logs in to the nodes with (no passphrase)",
        );
    }
    let host_key = match (
        string(map, "known_hosts"),
        string(map, "host_key_fingerprint"),
    ) {
        (Some(path), None) => Some(HostKeyCheck::KnownHosts(path.into())),
        (None, Some(fingerprint)) if fingerprint.starts_with("SHA256:") => {
            Some(HostKeyCheck::Fingerprint(fingerprint))
        }
        (None, Some(_)) => {
            bad(
                "`host_key_fingerprint` is not a SHA-256 fingerprint".into(),
                "use the form `ssh-keygen -lf` prints: SHA256:<base64>",
            );
            None
        }
        (Some(_), Some(_)) => {
            bad(
                "both `known_hosts` and `host_key_fingerprint` are set".into(),
                "choose one way to verify the nodes' host keys",
            );
            None
        }
        (None, None) => {
            bad(
                "no way to verify the nodes' host keys".into(),
                "set `known_hosts` (a file listing every node) or `host_key_fingerprint`; unknown keys are never accepted",
            );
            None
        }
    };
    let port = match map.get("port") {
        None | Some(Value::Null) => Some(22),
        Some(value) => match value.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(port) if port > 0 => Some(port),
            _ => {
                bad(
                    format!("`port` {value} is not a TCP port"),
                    "use 1 to 65535",
                );
                None
            }
        },
    };
    let hosts = map
        .get("hosts")
        .and_then(Value::as_object)
        .map(|hosts| {
            hosts
                .iter()
                .filter_map(|(node, address)| Some((node.clone(), address.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(SshUploadSpec {
        user: string(map, "user").unwrap_or_else(|| "root".into()),
        port: port?,
        private_key_file: private_key_file?.into(),
        host_key: host_key?,
        hosts,
        source_dir: string(map, "source_dir")
            .unwrap_or_else(|| "images".into())
            .into(),
        import_dir: string(map, "import_dir"),
    })
}

/// The local image file, or an error saying where to put it.
pub fn source_file(
    spec: &SshUploadSpec,
    filename: &str,
    url: &str,
    address: &str,
) -> Result<PathBuf, ProviderError> {
    let path = spec.source_dir.join(filename);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ProviderError::new(
            ErrorKind::InvalidInput,
            "create",
            address,
            format!(
                "the image to upload over SSH is not at {}\n  help: fetch it there first (it is {url}, decompressed to `{filename}`), or change `proxmox.image_upload.source_dir`",
                path.display()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_an_ssh_upload_with_defaults() {
        let mut problems = Problems::default();
        let spec = read(
            Some(
                &json!({"method": "ssh", "private_key_file": "/k", "known_hosts": "/kh",
                         "hosts": {"pve1": "192.0.2.11"}}),
            ),
            &mut problems,
        )
        .unwrap();
        assert!(problems.0.is_empty());
        assert_eq!(spec.user, "root");
        assert_eq!(spec.port, 22);
        assert_eq!(spec.target("pve1").host, "192.0.2.11");
        assert_eq!(spec.target("pve2").host, "pve2");
        assert_eq!(spec.host_key, HostKeyCheck::KnownHosts("/kh".into()));
        assert_eq!(read(Some(&Value::Null), &mut problems), None);
    }

    #[test]
    fn refuses_an_upload_without_host_key_verification() {
        let mut problems = Problems::default();
        let spec = read(
            Some(&json!({"method": "ssh", "private_key_file": "/k"})),
            &mut problems,
        );
        assert!(spec.is_none());
        assert_eq!(problems.0.len(), 1);
        assert!(
            problems.0[0]
                .summary
                .contains("verify the nodes' host keys")
        );
    }
}
