//! What the fake node reads from an applied machine config (either Talos version's
//! style), and what it derives from it: its identity, its PKI, the kubeconfig it hands
//! out, which changes need a reboot, and the version an installer image carries.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tonic::Status;

use infraflux_talos::config::parse_documents;
use infraflux_talos::secrets::{
    CertificateAndKey, issue_kubernetes_client_certificate, issue_kubernetes_server_certificate,
    issue_server_certificate,
};

use super::{ClusterBootstrapped, NodeIdentity};

/// What the fake learned from the applied config.
#[derive(Clone)]
pub(super) struct NodePki {
    pub(super) role: String,
    pub(super) hostname: String,
    pub(super) cluster_name: String,
    pub(super) endpoint: String,
    pub(super) os_ca: CertificateAndKey,
    pub(super) kubernetes_ca: Option<CertificateAndKey>,
    /// `None` for a worker waiting for [`super::Trustd`] to issue it.
    pub(super) server: Option<CertificateAndKey>,
    /// The `v1alpha1` document without the fields Talos changes in place (see
    /// [`reboot_relevant`]): a config whose value differs needs a reboot.
    pub(super) needs_reboot: Value,
    /// `machine.install.image` (1.13) or `UnattendedInstallConfig.installer.image` (1.14).
    pub(super) installer_image: Option<String>,
    /// The tag of `machine.kubelet.image` (`v1.34.1`): the version its kubelet reports.
    pub(super) kubelet_version: Option<String>,
}

impl NodePki {
    pub(super) fn is_control_plane(&self) -> bool {
        self.role == "controlplane"
    }

    /// Nodes of one cluster share its Talos API CA; the fake's shared services (trustd,
    /// etcd) know a cluster by it.
    pub(super) fn cluster_key(&self) -> &str {
        &self.os_ca.crt
    }
}

/// The `v1alpha1` fields Talos 1.13 applies without a reboot (`CanApplyImmediate` in
/// machined's runtime): `debug`, `cluster`, and under `machine` the CA and cert SANs,
/// time, install, network, sysfs, sysctls, logging, controlPlane, kubelet, kernel,
/// registries, pods, seccomp profiles, node labels/annotations/taints and five
/// features. The other documents (hostname, links, resolvers…) always apply in place.
const IMMEDIATE_MACHINE_FIELDS: &[&str] = &[
    "ca",
    "acceptedCAs",
    "time",
    "certSANs",
    "install",
    "network",
    "sysfs",
    "sysctls",
    "logging",
    "controlPlane",
    "kubelet",
    "kernel",
    "registries",
    "pods",
    "seccompProfiles",
    "nodeAnnotations",
    "nodeLabels",
    "nodeTaints",
];
const IMMEDIATE_FEATURES: &[&str] = &[
    "kubernetesTalosAPIAccess",
    "kubePrism",
    "hostDNS",
    "imageCache",
    "nodeAddressSortAlgorithm",
];

/// The `v1alpha1` document less what changes in place.
fn reboot_relevant(document: &Value) -> Value {
    let mut document = document.clone();
    if let Some(object) = document.as_object_mut() {
        object.remove("debug");
        object.remove("cluster");
    }
    if let Some(machine) = document.get_mut("machine").and_then(Value::as_object_mut) {
        for field in IMMEDIATE_MACHINE_FIELDS {
            machine.remove(*field);
        }
        if let Some(features) = machine.get_mut("features").and_then(Value::as_object_mut) {
            for feature in IMMEDIATE_FEATURES {
                features.remove(*feature);
            }
        }
    }
    document
}

/// The top-level keys of `machine` (or the document) whose change needs a reboot, for
/// the refusal's message (the real node prints a config diff; values may be secret).
pub(super) fn reboot_changes(current: &Value, new: &Value) -> Vec<String> {
    let keys = |value: &Value, path: &str| -> Vec<(String, Value)> {
        let value = if path.is_empty() {
            Some(value)
        } else {
            value.get(path)
        };
        value
            .and_then(Value::as_object)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let mut changed = Vec::new();
    for (prefix, path) in [("", ""), ("machine.", "machine")] {
        let (old, new) = (keys(current, path), keys(new, path));
        let mut names: Vec<&String> = old.iter().chain(&new).map(|(k, _)| k).collect();
        names.sort();
        names.dedup();
        for name in names {
            if path.is_empty() && name == "machine" {
                continue;
            }
            let find = |list: &[(String, Value)]| {
                list.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            };
            if find(&old) != find(&new) {
                changed.push(format!("{prefix}{name}"));
            }
        }
    }
    changed
}

/// The Talos version an installer image installs: its tag
/// (`factory.talos.dev/installer/<schematic>:v1.13.9` → `v1.13.9`), when it is one.
pub(super) fn image_version(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (_, tag) = without_digest.rsplit_once(':')?;
    if tag.contains('/') {
        return None; // a registry port, not a tag
    }
    let core = tag.strip_prefix('v')?;
    let numbers = core.split(['-', '+']).next().unwrap_or(core);
    let parts: Vec<&str> = numbers.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    .then(|| tag.to_string())
}

fn string_at<'a>(documents: &'a [Value], kind: Option<&str>, path: &[&str]) -> Option<&'a str> {
    let document = documents.iter().find(|d| match kind {
        None => d.get("kind").is_none(),
        Some(kind) => d.get("kind").and_then(Value::as_str) == Some(kind),
    })?;
    let mut value = document;
    for key in path {
        value = value.get(key)?;
    }
    value.as_str()
}

pub(super) fn identity(pki: &NodePki, address: SocketAddr) -> NodeIdentity {
    NodeIdentity {
        address,
        hostname: pki.hostname.clone(),
        role: pki.role.clone(),
        cluster_name: pki.cluster_name.clone(),
        endpoint: pki.endpoint.clone(),
        kubelet_version: pki.kubelet_version.clone(),
    }
}

/// The bootstrap event: the API server certificate for the endpoint's host.
pub(super) fn bootstrapped(
    pki: &NodePki,
    address: SocketAddr,
) -> Result<ClusterBootstrapped, Status> {
    let ca = pki
        .kubernetes_ca
        .as_ref()
        .ok_or_else(|| Status::failed_precondition("no Kubernetes CA key on this node"))?;
    let host = pki
        .endpoint
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    let (ips, names): (Vec<IpAddr>, Vec<&str>) = match host.parse::<IpAddr>() {
        Ok(ip) => (vec![ip], vec!["kubernetes", "kubernetes.default"]),
        Err(_) => (
            Vec::new(),
            vec![host, "kubernetes", "kubernetes.default"]
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
        ),
    };
    let api_server = issue_kubernetes_server_certificate(ca, &ips, &names)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(ClusterBootstrapped {
        node: identity(pki, address),
        kubernetes_ca_crt: ca.crt.clone(),
        api_server,
    })
}

fn decode_b64(value: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(value).ok()?).ok()
}

/// Read what the fake needs from an applied config (either Talos version's style).
pub(super) fn read_config(
    data: &[u8],
    address: SocketAddr,
    trustd_ca: Option<&CertificateAndKey>,
    shared_trustd: bool,
) -> Result<NodePki, Status> {
    let invalid = |message: &str| Status::invalid_argument(format!("invalid config: {message}"));
    let text = std::str::from_utf8(data).map_err(|_| invalid("not UTF-8"))?;
    let documents = parse_documents(text).map_err(|m| invalid(&m))?;
    let role = string_at(&documents, None, &["machine", "type"])
        .ok_or_else(|| invalid("machine.type is missing"))?
        .to_string();
    let os_ca = CertificateAndKey {
        crt: string_at(&documents, None, &["machine", "ca", "crt"])
            .and_then(decode_b64)
            .ok_or_else(|| invalid("machine.ca.crt is missing or not base64"))?,
        key: string_at(&documents, None, &["machine", "ca", "key"])
            .and_then(decode_b64)
            .unwrap_or_default(),
    };
    let endpoint = string_at(&documents, None, &["cluster", "controlPlane", "endpoint"])
        .or_else(|| string_at(&documents, Some("KubeClusterConfig"), &["endpoint"]))
        .unwrap_or_default()
        .to_string();
    let cluster_name = string_at(&documents, None, &["cluster", "clusterName"])
        .or_else(|| string_at(&documents, Some("KubeClusterConfig"), &["clusterName"]))
        .unwrap_or("cluster")
        .to_string();
    let hostname = string_at(&documents, Some("HostnameConfig"), &["hostname"])
        .unwrap_or("talos-fake")
        .to_string();
    let kubernetes_ca = match (
        string_at(&documents, None, &["cluster", "ca", "crt"]).and_then(decode_b64),
        string_at(&documents, None, &["cluster", "ca", "key"]).and_then(decode_b64),
    ) {
        (Some(crt), Some(key)) if !key.is_empty() => Some(CertificateAndKey { crt, key }),
        _ => match (
            string_at(
                &documents,
                Some("KubeAPIServerCAConfig"),
                &["issuingCA", "cert"],
            ),
            string_at(
                &documents,
                Some("KubeAPIServerCAConfig"),
                &["issuingCA", "key"],
            ),
        ) {
            (Some(crt), Some(key)) => Some(CertificateAndKey {
                crt: crt.to_string(),
                key: key.to_string(),
            }),
            _ => None,
        },
    };
    let v1alpha1 = documents.iter().find(|d| d.get("kind").is_none());
    let installer_image = v1alpha1
        .and_then(|d| d.pointer("/machine/install/image"))
        .or_else(|| {
            documents
                .iter()
                .find(|d| d.get("kind").and_then(Value::as_str) == Some("UnattendedInstallConfig"))
                .and_then(|d| d.pointer("/installer/image"))
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let kubelet_version = v1alpha1
        .and_then(|d| d.pointer("/machine/kubelet/image"))
        .and_then(Value::as_str)
        .and_then(|image| image.rsplit_once(':'))
        .filter(|(_, tag)| !tag.contains('/'))
        .map(|(_, tag)| tag.to_string());
    let needs_reboot = v1alpha1.map(reboot_relevant).unwrap_or(Value::Null);
    let issuer = match trustd_ca {
        _ if !os_ca.key.is_empty() => Some(&os_ca),
        Some(trustd) if trustd.crt == os_ca.crt => Some(trustd),
        // Issued later, when a connection comes and trustd has the CA.
        _ if shared_trustd => None,
        _ => {
            return Err(Status::failed_precondition(
                "no Talos API CA key in the config and no trustd to issue a certificate",
            ));
        }
    };
    let server = issuer
        .map(|issuer| {
            issue_server_certificate(issuer, &[address.ip()])
                .map_err(|e| invalid(&format!("machine.ca cannot issue certificates: {e}")))
        })
        .transpose()?;
    Ok(NodePki {
        role,
        hostname,
        cluster_name,
        endpoint,
        os_ca,
        kubernetes_ca,
        server,
        needs_reboot,
        installer_image,
        kubelet_version,
    })
}

pub(super) fn kubeconfig_yaml(pki: &NodePki) -> Result<String, Status> {
    let ca = pki
        .kubernetes_ca
        .as_ref()
        .ok_or_else(|| Status::failed_precondition("no Kubernetes CA key on this node"))?;
    let client = issue_kubernetes_client_certificate(ca, "system:masters", "admin")
        .map_err(|e| Status::internal(e.to_string()))?;
    let name = &pki.cluster_name;
    let user = format!("admin@{name}");
    let document = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": pki.endpoint,
            "certificate-authority-data": STANDARD.encode(&ca.crt),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": STANDARD.encode(&client.crt),
            "client-key-data": STANDARD.encode(&client.key),
        }}],
        "contexts": [{"name": user, "context": {"cluster": name, "namespace": "default", "user": user}}],
        "current-context": user,
    });
    serde_yaml::to_string(&document).map_err(|e| Status::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn installer_image_tags_are_talos_versions() {
        assert_eq!(
            image_version("factory.talos.dev/installer/abc:v1.13.9").as_deref(),
            Some("v1.13.9")
        );
        assert_eq!(
            image_version("ghcr.io/siderolabs/installer:v1.14.0-rc.1@sha256:00").as_deref(),
            Some("v1.14.0-rc.1")
        );
        assert_eq!(image_version("registry:5000/installer"), None);
        assert_eq!(image_version("ghcr.io/siderolabs/installer:latest"), None);
    }

    #[test]
    fn only_fields_talos_cannot_change_in_place_need_a_reboot() {
        let base = json!({"version": "v1alpha1", "machine": {"type": "controlplane",
            "install": {"disk": "/dev/sda"}, "sysctls": {}}, "cluster": {"a": 1}});
        let mut install = base.clone();
        install["machine"]["install"]["disk"] = json!("/dev/sdb");
        install["cluster"]["a"] = json!(2);
        assert_eq!(reboot_relevant(&base), reboot_relevant(&install));
        let mut env = base.clone();
        env["machine"]["env"] = json!({"HTTP_PROXY": "x"});
        assert_ne!(reboot_relevant(&base), reboot_relevant(&env));
        assert_eq!(
            reboot_changes(&reboot_relevant(&base), &reboot_relevant(&env)),
            ["machine.env"]
        );
    }
}
