//! Machine configs (`talos_machine_config`): one multi-document YAML per node, rendered
//! in the style of the pinned Talos version.
//!
//! - **1.13**: a `v1alpha1` document for machine and Kubernetes settings (KubePrism,
//!   hostDNS, CNI `none`, kube-proxy disabled, install disk and image), plus the network
//!   documents 1.13 moved out of `v1alpha1` (`HostnameConfig`, `LinkConfig`,
//!   `Layer2VIPConfig` on control planes, `ResolverConfig`).
//! - **1.14**: a trimmed `v1alpha1` document (machine type, trustd token, Talos CA,
//!   bootstrap token, etcd CA) and the separate documents 1.14 defines:
//!   `DiscoveryIdentityConfig`, `DiscoveryServiceConfig`, `UnattendedInstallConfig`,
//!   `KubeClusterConfig`, `KubeNetworkConfig`, `KubeAPIServerCAConfig`, `KubeletConfig`,
//!   `KubeNodeConfig`, `KubePrismConfig`, the network documents above with host DNS in
//!   `ResolverConfig`, and on control planes `KubeAggregatorCAConfig`,
//!   `KubeServiceAccountConfig`, `KubeEtcdEncryptionConfig`, `KubeAPIServerConfig`,
//!   `KubeControllerManagerConfig`, `KubeSchedulerConfig`, `KubeProxyConfig` (disabled),
//!   `KubeCoreDNSConfig`, `KubeAdmissionControlConfig`, `KubeAuditPolicyConfig` and
//!   `KubeAuthorizerConfig` (Node, RBAC). No `KubeFlannelCNIConfig`: in 1.14 its absence
//!   is what "no built-in CNI" means.
//!
//! Rendering is deterministic: the same inputs give byte-identical output, so a change
//! of any input (a patch included) is a change of the rendering.

mod mask;
mod patch;
mod yaml;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::secrets::ClusterSecrets;

pub use mask::{mask_secrets, masked_yaml};
pub use patch::{apply_patches, parse_patch};

/// The KubePrism port (Talos default).
pub const KUBEPRISM_PORT: u16 = 7445;
const DISCOVERY_ENDPOINT: &str = "https://discovery.talos.dev/";

/// Talos minor versions this renderer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TalosVersion {
    V1_13,
    V1_14,
}

impl TalosVersion {
    /// Parse `v1.13.9`, `1.14.0-rc.1`…; only the minor version matters for rendering.
    pub fn parse(version: &str) -> Result<Self> {
        let trimmed = version.trim_start_matches('v');
        let mut parts = trimmed.split(['.', '-']);
        match (parts.next(), parts.next()) {
            (Some("1"), Some("13")) => Ok(TalosVersion::V1_13),
            (Some("1"), Some("14")) => Ok(TalosVersion::V1_14),
            _ => Err(Error::input(
                "talos_version",
                format!("`{version}` is not supported; supported: 1.13.x, 1.14.x"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ControlPlane,
    Worker,
}

impl Role {
    pub fn parse(role: &str) -> Result<Self> {
        match role {
            "controlplane" => Ok(Role::ControlPlane),
            "worker" => Ok(Role::Worker),
            other => Err(Error::input(
                "role",
                format!("`{other}` is not a role; use controlplane or worker"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "controlplane",
            Role::Worker => "worker",
        }
    }
}

/// Settings shared by every node of a cluster.
#[derive(Clone)]
pub struct ClusterSettings {
    pub cluster_name: String,
    /// `https://VIP:6443`.
    pub endpoint: String,
    /// The full Talos version (`v1.13.9`), used in the installer image tag.
    pub talos_version: String,
    /// Without a leading `v` (`1.33.1`).
    pub kubernetes_version: String,
    /// `factory.talos.dev/installer/<schematic>:<talos_version>`.
    pub installer_image: String,
    pub pod_cidr: String,
    pub service_cidr: String,
    /// The shared control-plane address; defaults to the endpoint's host when that is an
    /// IP address.
    pub vip: Option<IpAddr>,
}

/// Settings of one node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub hostname: String,
    /// CIDR form, e.g. `10.0.0.11/24`.
    pub address: String,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    pub role: Role,
    pub install_disk: String,
    /// Network interface name the address (and VIP) go on.
    pub interface: String,
    /// User patches: YAML documents (strategic merge, `$patch: delete`), applied in order.
    pub patches: Vec<String>,
}

/// The factory installer image for a schematic and Talos version.
pub fn installer_image(schematic: &str, talos_version: &str) -> String {
    let version = if talos_version.starts_with('v') {
        talos_version.to_string()
    } else {
        format!("v{talos_version}")
    };
    format!("factory.talos.dev/installer/{schematic}:{version}")
}

/// Renders machine configs for one cluster. Secrets are encoded once here, so rendering
/// many nodes costs only the per-node work.
pub struct Renderer {
    cluster: ClusterSettings,
    version: TalosVersion,
    vip: Option<IpAddr>,
    secrets: Arc<EncodedSecrets>,
}

/// Secrets in the two encodings the documents use: base64 of PEM (`v1alpha1`) and
/// plain PEM (1.14 `Kube*` documents). Made once per bundle and shared by the renderers
/// of its cluster's machine configs (`validated`): encoded and copied for each, they
/// were a fiftieth of a fleet's steady plan (issue 15).
pub struct EncodedSecrets {
    raw: ClusterSecrets,
    os_ca_crt_b64: String,
    os_ca_key_b64: String,
    kubernetes_ca_crt_b64: String,
    kubernetes_ca_key_b64: String,
    aggregator_ca_crt_b64: String,
    aggregator_ca_key_b64: String,
    etcd_ca_crt_b64: String,
    etcd_ca_key_b64: String,
    service_account_key_b64: String,
}

/// Never the values: they are the cluster's CA keys.
impl std::fmt::Debug for EncodedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncodedSecrets { .. }")
    }
}

impl EncodedSecrets {
    pub fn new(secrets: &ClusterSecrets) -> Self {
        let b64 = |s: &str| STANDARD.encode(s);
        EncodedSecrets {
            os_ca_crt_b64: b64(&secrets.os_ca.crt),
            os_ca_key_b64: b64(&secrets.os_ca.key),
            kubernetes_ca_crt_b64: b64(&secrets.kubernetes_ca.crt),
            kubernetes_ca_key_b64: b64(&secrets.kubernetes_ca.key),
            aggregator_ca_crt_b64: b64(&secrets.aggregator_ca.crt),
            aggregator_ca_key_b64: b64(&secrets.aggregator_ca.key),
            etcd_ca_crt_b64: b64(&secrets.etcd_ca.crt),
            etcd_ca_key_b64: b64(&secrets.etcd_ca.key),
            service_account_key_b64: b64(&secrets.service_account_key),
            raw: secrets.clone(),
        }
    }

    /// The bundle as it was given.
    pub fn raw(&self) -> &ClusterSecrets {
        &self.raw
    }
}

impl Renderer {
    /// The cluster's shared address (the VIP), when it has one.
    pub fn vip(&self) -> Option<IpAddr> {
        self.vip
    }

    pub fn new(cluster: ClusterSettings, secrets: &ClusterSecrets) -> Result<Self> {
        Self::with_secrets(cluster, Arc::new(EncodedSecrets::new(secrets)))
    }

    /// [`Self::new`] with the bundle encoded already.
    pub fn with_secrets(cluster: ClusterSettings, secrets: Arc<EncodedSecrets>) -> Result<Self> {
        let version = TalosVersion::parse(&cluster.talos_version)?;
        validate_cluster(&cluster)?;
        let vip = match cluster.vip {
            Some(vip) => Some(vip),
            None => endpoint_host(&cluster.endpoint)?.parse::<IpAddr>().ok(),
        };
        Ok(Renderer {
            cluster,
            version,
            vip,
            secrets,
        })
    }

    pub fn version(&self) -> TalosVersion {
        self.version
    }

    /// The documents for one node, patches applied.
    pub fn documents(&self, node: &NodeSettings) -> Result<Vec<Value>> {
        validate_node(node)?;
        let mut documents = match self.version {
            TalosVersion::V1_13 => self.documents_1_13(node)?,
            TalosVersion::V1_14 => self.documents_1_14(node)?,
        };
        for (index, text) in node.patches.iter().enumerate() {
            let patch = parse_patch(index, text)?;
            documents = apply_patches(documents, &patch, index)?;
        }
        Ok(documents)
    }

    /// The node's machine config as multi-document YAML (contains secrets).
    pub fn render(&self, node: &NodeSettings) -> Result<String> {
        to_yaml(&self.documents(node)?)
    }

    fn node_network_documents(&self, node: &NodeSettings, host_dns: bool) -> Vec<Value> {
        let mut documents = vec![json!({
            "apiVersion": "v1alpha1",
            "kind": "HostnameConfig",
            "hostname": node.hostname,
        })];
        let mut link = json!({
            "apiVersion": "v1alpha1",
            "kind": "LinkConfig",
            "name": node.interface,
            "up": true,
            "addresses": [{"address": node.address}],
        });
        if let Some(gateway) = &node.gateway {
            link["routes"] = json!([{"gateway": gateway}]);
        }
        documents.push(link);
        if let (Role::ControlPlane, Some(vip)) = (node.role, self.vip) {
            documents.push(json!({
                "apiVersion": "v1alpha1",
                "kind": "Layer2VIPConfig",
                "name": vip.to_string(),
                "link": node.interface,
            }));
        }
        let mut resolver = json!({"apiVersion": "v1alpha1", "kind": "ResolverConfig"});
        if !node.dns.is_empty() {
            resolver["nameservers"] = Value::Array(
                node.dns
                    .iter()
                    .map(|address| json!({"address": address}))
                    .collect(),
            );
        }
        if host_dns {
            resolver["hostDNS"] = json!({"enabled": true, "forwardKubeDNSToHost": true});
        }
        if resolver.as_object().is_some_and(|o| o.len() > 2) {
            documents.push(resolver);
        }
        documents
    }

    fn node_ip_subnet(&self, node: &NodeSettings) -> String {
        // kubelet and etcd must not pick the VIP: pin them to the node's own subnet.
        network_of(&node.address).unwrap_or_else(|| node.address.clone())
    }

    fn kubernetes_image(&self, component: &str) -> String {
        format!(
            "registry.k8s.io/{component}:v{}",
            self.cluster.kubernetes_version
        )
    }

    fn kubelet_image(&self) -> String {
        format!(
            "ghcr.io/siderolabs/kubelet:v{}",
            self.cluster.kubernetes_version
        )
    }

    fn api_server_cert_sans(&self) -> Vec<String> {
        let mut sans = Vec::new();
        if let Ok(host) = endpoint_host(&self.cluster.endpoint) {
            sans.push(host);
        }
        if let Some(vip) = self.vip {
            let vip = vip.to_string();
            if !sans.contains(&vip) {
                sans.push(vip);
            }
        }
        sans
    }

    fn documents_1_13(&self, node: &NodeSettings) -> Result<Vec<Value>> {
        let s = &self.secrets;
        let control_plane = node.role == Role::ControlPlane;
        let cp_key = |key: &str| {
            if control_plane {
                key.to_string()
            } else {
                String::new()
            }
        };

        let mut machine = Map::new();
        machine.insert("type".into(), json!(node.role.as_str()));
        machine.insert("token".into(), json!(s.raw.trustd_token));
        machine.insert(
            "ca".into(),
            json!({"crt": s.os_ca_crt_b64, "key": cp_key(&s.os_ca_key_b64)}),
        );
        machine.insert("certSANs".into(), json!([]));
        machine.insert(
            "kubelet".into(),
            json!({
                "image": self.kubelet_image(),
                "defaultRuntimeSeccompProfileEnabled": true,
                "disableManifestsDirectory": true,
                "nodeIP": {"validSubnets": [self.node_ip_subnet(node)]},
            }),
        );
        machine.insert(
            "install".into(),
            json!({
                "disk": node.install_disk,
                "image": self.cluster.installer_image,
                "wipe": false,
            }),
        );
        machine.insert(
            "features".into(),
            json!({
                "diskQuotaSupport": true,
                "kubePrism": {"enabled": true, "port": KUBEPRISM_PORT},
                "hostDNS": {"enabled": true, "forwardKubeDNSToHost": true},
            }),
        );
        if control_plane {
            machine.insert(
                "nodeLabels".into(),
                json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
            );
        }

        let mut cluster = Map::new();
        cluster.insert("id".into(), json!(s.raw.cluster_id));
        cluster.insert("secret".into(), json!(s.raw.cluster_secret));
        cluster.insert(
            "controlPlane".into(),
            json!({"endpoint": self.cluster.endpoint}),
        );
        cluster.insert("clusterName".into(), json!(self.cluster.cluster_name));
        cluster.insert(
            "network".into(),
            json!({
                "cni": {"name": "none"},
                "dnsDomain": "cluster.local",
                "podSubnets": [self.cluster.pod_cidr],
                "serviceSubnets": [self.cluster.service_cidr],
            }),
        );
        cluster.insert("token".into(), json!(s.raw.bootstrap_token));
        if control_plane {
            cluster.insert(
                "secretboxEncryptionSecret".into(),
                json!(s.raw.secretbox_encryption_secret),
            );
        }
        cluster.insert(
            "ca".into(),
            json!({"crt": s.kubernetes_ca_crt_b64, "key": cp_key(&s.kubernetes_ca_key_b64)}),
        );
        if control_plane {
            cluster.insert(
                "aggregatorCA".into(),
                json!({"crt": s.aggregator_ca_crt_b64, "key": s.aggregator_ca_key_b64}),
            );
            cluster.insert(
                "serviceAccount".into(),
                json!({"key": s.service_account_key_b64}),
            );
            cluster.insert(
                "apiServer".into(),
                json!({
                    "image": self.kubernetes_image("kube-apiserver"),
                    "certSANs": self.api_server_cert_sans(),
                    "admissionControl": [{
                        "name": "PodSecurity",
                        "configuration": pod_security_configuration(true),
                    }],
                    "auditPolicy": audit_policy(true),
                }),
            );
            cluster.insert(
                "controllerManager".into(),
                json!({"image": self.kubernetes_image("kube-controller-manager")}),
            );
            cluster.insert(
                "proxy".into(),
                json!({"disabled": true, "image": self.kubernetes_image("kube-proxy")}),
            );
            cluster.insert(
                "scheduler".into(),
                json!({"image": self.kubernetes_image("kube-scheduler")}),
            );
        }
        cluster.insert(
            "discovery".into(),
            json!({
                "enabled": true,
                "registries": {"kubernetes": {"disabled": true}, "service": {}},
            }),
        );
        if control_plane {
            cluster.insert(
                "etcd".into(),
                json!({
                    "ca": {"crt": s.etcd_ca_crt_b64, "key": s.etcd_ca_key_b64},
                    "advertisedSubnets": [self.node_ip_subnet(node)],
                }),
            );
        }

        let mut documents = vec![v1alpha1(machine, cluster)];
        documents.extend(self.node_network_documents(node, false));
        Ok(documents)
    }

    fn documents_1_14(&self, node: &NodeSettings) -> Result<Vec<Value>> {
        let s = &self.secrets;
        let control_plane = node.role == Role::ControlPlane;

        let mut machine = Map::new();
        machine.insert("type".into(), json!(node.role.as_str()));
        machine.insert("token".into(), json!(s.raw.trustd_token));
        machine.insert(
            "ca".into(),
            if control_plane {
                json!({"crt": s.os_ca_crt_b64, "key": s.os_ca_key_b64})
            } else {
                json!({"crt": s.os_ca_crt_b64, "key": ""})
            },
        );
        machine.insert("certSANs".into(), json!([]));
        machine.insert("features".into(), json!({"diskQuotaSupport": true}));
        let mut cluster = Map::new();
        cluster.insert("token".into(), json!(s.raw.bootstrap_token));
        if control_plane {
            cluster.insert(
                "etcd".into(),
                json!({
                    "ca": {"crt": s.etcd_ca_crt_b64, "key": s.etcd_ca_key_b64},
                    "advertisedSubnets": [self.node_ip_subnet(node)],
                }),
            );
        }

        let mut documents = vec![
            v1alpha1(machine, cluster),
            json!({
                "apiVersion": "v1alpha1",
                "kind": "DiscoveryServiceConfig",
                "name": "default",
                "endpoint": DISCOVERY_ENDPOINT,
            }),
            json!({
                "apiVersion": "v1alpha1",
                "kind": "DiscoveryIdentityConfig",
                "clusterID": s.raw.cluster_id,
                "clusterSecret": s.raw.cluster_secret,
            }),
            json!({
                "apiVersion": "v1alpha1",
                // The real kind; the 1.14.0-rc.1 schema misspells it `UnattendedInstall`.
                "kind": "UnattendedInstallConfig",
                "installer": {"image": self.cluster.installer_image},
                "provisioning": {
                    "diskSelector": {"match": format!("disk.dev_path == {:?}", node.install_disk)},
                    "wipe": false,
                },
            }),
        ];
        documents.extend(self.node_network_documents(node, true));
        documents.push(json!({
            "apiVersion": "v1alpha1",
            "kind": "KubeClusterConfig",
            "clusterName": self.cluster.cluster_name,
            "endpoint": self.cluster.endpoint,
        }));
        documents.push(json!({
            "apiVersion": "v1alpha1",
            "kind": "KubeNetworkConfig",
            "dnsDomain": "cluster.local",
            "podSubnets": [self.cluster.pod_cidr],
            "serviceSubnets": [self.cluster.service_cidr],
        }));
        documents.push(if control_plane {
            json!({
                "apiVersion": "v1alpha1",
                "kind": "KubeAPIServerCAConfig",
                "issuingCA": {"cert": s.raw.kubernetes_ca.crt, "key": s.raw.kubernetes_ca.key},
            })
        } else {
            json!({
                "apiVersion": "v1alpha1",
                "kind": "KubeAPIServerCAConfig",
                "acceptedCAs": [s.raw.kubernetes_ca.crt],
            })
        });
        documents.push(json!({
            "apiVersion": "v1alpha1",
            "kind": "KubeletConfig",
            "image": self.kubelet_image(),
            "defaultRuntimeSeccompProfileEnabled": true,
        }));
        let mut node_config = json!({
            "apiVersion": "v1alpha1",
            "kind": "KubeNodeConfig",
            "nodeIP": {"validSubnets": [self.node_ip_subnet(node)]},
        });
        if control_plane {
            node_config["labels"] =
                json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""});
        }
        documents.push(node_config);
        documents.push(json!({
            "apiVersion": "v1alpha1",
            "kind": "KubePrismConfig",
            "port": KUBEPRISM_PORT,
        }));
        if control_plane {
            documents.extend([
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeAggregatorCAConfig",
                    "issuingCA": {"cert": s.raw.aggregator_ca.crt, "key": s.raw.aggregator_ca.key},
                }),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeAdmissionControlConfig",
                    "name": "PodSecurity",
                    "configuration": pod_security_configuration(false),
                }),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeAuditPolicyConfig",
                    "configuration": audit_policy(false),
                }),
                json!({"apiVersion": "v1alpha1", "kind": "KubeAuthorizerConfig", "name": "node", "type": "Node"}),
                json!({"apiVersion": "v1alpha1", "kind": "KubeAuthorizerConfig", "name": "rbac", "type": "RBAC"}),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeEtcdEncryptionConfig",
                    "config": {"resources": [{
                        "providers": [{"secretbox": {"keys": [{
                            "name": "key1",
                            "secret": s.raw.secretbox_encryption_secret,
                        }]}}],
                        "resources": ["secrets"],
                    }]},
                }),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeServiceAccountConfig",
                    "issuer": {
                        "privateKey": s.raw.service_account_key,
                        "issuerURL": self.cluster.endpoint,
                    },
                }),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeAPIServerConfig",
                    "image": self.kubernetes_image("kube-apiserver"),
                    "certExtraSANs": self.api_server_cert_sans(),
                }),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeControllerManagerConfig",
                    "image": self.kubernetes_image("kube-controller-manager"),
                }),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeSchedulerConfig",
                    "image": self.kubernetes_image("kube-scheduler"),
                }),
                json!({
                    "apiVersion": "v1alpha1",
                    "kind": "KubeProxyConfig",
                    "enabled": false,
                    "image": self.kubernetes_image("kube-proxy"),
                }),
                json!({"apiVersion": "v1alpha1", "kind": "KubeCoreDNSConfig", "enabled": true}),
            ]);
        }
        Ok(documents)
    }
}

/// The `v1alpha1` document of `machine` and `cluster`, moved in: `json!` would copy
/// each through serde (a tenth of rendering a fleet's machine configs, issue 15).
fn v1alpha1(machine: Map<String, Value>, cluster: Map<String, Value>) -> Value {
    let mut document = Map::with_capacity(4);
    document.insert("version".into(), Value::from("v1alpha1"));
    document.insert("debug".into(), Value::Bool(false));
    document.insert("machine".into(), Value::Object(machine));
    document.insert("cluster".into(), Value::Object(cluster));
    Value::Object(document)
}

/// PodSecurity admission defaults as Talos generates them. The v1alpha1 form carries
/// apiVersion and kind; the 1.14 document leaves them out.
fn pod_security_configuration(with_type: bool) -> Value {
    let mut value = json!({
        "defaults": {
            "audit": "restricted",
            "audit-version": "latest",
            "enforce": "baseline",
            "enforce-version": "latest",
            "warn": "restricted",
            "warn-version": "latest",
        },
        "exemptions": {"namespaces": ["kube-system"], "runtimeClasses": [], "usernames": []},
    });
    if with_type {
        value["apiVersion"] = json!("pod-security.admission.config.k8s.io/v1alpha1");
        value["kind"] = json!("PodSecurityConfiguration");
    }
    value
}

fn audit_policy(with_type: bool) -> Value {
    let mut value = json!({"rules": [{"level": "Metadata"}]});
    if with_type {
        value["apiVersion"] = json!("audit.k8s.io/v1");
        value["kind"] = json!("Policy");
    }
    value
}

/// Serialize documents as one multi-document YAML string.
pub fn to_yaml(documents: &[Value]) -> Result<String> {
    // A machine config is ~11 KiB: one buffer, grown rarely.
    let mut out = String::with_capacity(16 * 1024);
    for (index, document) in documents.iter().enumerate() {
        if index > 0 {
            out.push_str("---\n");
        }
        // serde_yaml's bytes, written directly where that is certain (see `yaml`).
        if yaml::write_document(document, &mut out).is_none() {
            let text = serde_yaml::to_string(document).map_err(|e| {
                Error::input("machine_config", format!("YAML encoding failed: {e}"))
            })?;
            out.push_str(&text);
        }
    }
    Ok(out)
}

/// Split multi-document YAML into JSON values (empty documents dropped).
pub fn parse_documents(text: &str) -> std::result::Result<Vec<Value>, String> {
    use serde::Deserialize as _;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| {
            e.location()
                .map(|l| format!("invalid YAML at line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "invalid YAML".to_string())
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn endpoint_host(endpoint: &str) -> Result<String> {
    let rest = endpoint.strip_prefix("https://").ok_or_else(|| {
        Error::input(
            "endpoint",
            format!("`{endpoint}` must start with https:// (e.g. https://10.0.0.10:6443)"),
        )
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default().to_string()
    } else {
        authority.split(':').next().unwrap_or_default().to_string()
    };
    if host.is_empty() {
        return Err(Error::input(
            "endpoint",
            format!("`{endpoint}` has no host"),
        ));
    }
    Ok(host)
}

fn parse_cidr(value: &str) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = value.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

/// `10.0.0.11/24` → `10.0.0.0/24`.
fn network_of(cidr: &str) -> Option<String> {
    let (ip, prefix) = parse_cidr(cidr)?;
    Some(match ip {
        IpAddr::V4(v4) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            format!(
                "{}/{prefix}",
                std::net::Ipv4Addr::from(u32::from(v4) & mask)
            )
        }
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            format!(
                "{}/{prefix}",
                std::net::Ipv6Addr::from(u128::from(v6) & mask)
            )
        }
    })
}

fn validate_cluster(cluster: &ClusterSettings) -> Result<()> {
    if cluster.cluster_name.is_empty() {
        return Err(Error::input("cluster_name", "must not be empty"));
    }
    endpoint_host(&cluster.endpoint)?;
    for (name, value) in [
        ("pod_cidr", &cluster.pod_cidr),
        ("service_cidr", &cluster.service_cidr),
    ] {
        if parse_cidr(value).is_none() {
            return Err(Error::input(
                name,
                format!("`{value}` is not a CIDR (e.g. 10.244.0.0/16)"),
            ));
        }
    }
    let version = cluster.kubernetes_version.as_str();
    if version.starts_with('v') || version.split('.').count() != 3 {
        return Err(Error::input(
            "kubernetes_version",
            format!("`{version}` must look like 1.33.1 (no leading v)"),
        ));
    }
    if cluster.installer_image.is_empty() {
        return Err(Error::input("installer_image", "must not be empty"));
    }
    Ok(())
}

fn validate_node(node: &NodeSettings) -> Result<()> {
    if node.hostname.is_empty()
        || node.hostname.len() > 63
        || !node
            .hostname
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::input(
            "hostname",
            format!(
                "`{}` must be a DNS label (lower-case letters, digits, -)",
                node.hostname
            ),
        ));
    }
    if parse_cidr(&node.address).is_none() {
        return Err(Error::input(
            "address",
            format!("`{}` must be in CIDR form, e.g. 10.0.0.11/24", node.address),
        ));
    }
    if let Some(gateway) = &node.gateway
        && gateway.parse::<IpAddr>().is_err()
    {
        return Err(Error::input(
            "gateway",
            format!("`{gateway}` is not an IP address"),
        ));
    }
    for dns in &node.dns {
        if dns.parse::<IpAddr>().is_err() {
            return Err(Error::input("dns", format!("`{dns}` is not an IP address")));
        }
    }
    if !node.install_disk.starts_with("/dev/") {
        return Err(Error::input(
            "install_disk",
            format!(
                "`{}` must be a device path like /dev/sda",
                node.install_disk
            ),
        ));
    }
    if node.interface.is_empty() {
        return Err(Error::input("interface", "must not be empty"));
    }
    Ok(())
}

/// The address part of a CIDR (`10.0.0.11/24` → `10.0.0.11`).
pub fn address_ip(cidr: &str) -> Option<IpAddr> {
    parse_cidr(cidr).map(|(ip, _)| ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cluster_settings, node_settings, secrets};

    #[test]
    fn versions_parse_by_minor_and_unknown_versions_are_refused() {
        assert_eq!(TalosVersion::parse("v1.13.9").unwrap(), TalosVersion::V1_13);
        assert_eq!(
            TalosVersion::parse("1.14.0-rc.1").unwrap(),
            TalosVersion::V1_14
        );
        let error = TalosVersion::parse("v1.12.0").unwrap_err().to_string();
        assert!(error.contains("supported: 1.13.x, 1.14.x"), "{error}");
    }

    #[test]
    fn installer_image_names_the_schematic_and_version() {
        assert_eq!(
            installer_image("abc123", "1.13.9"),
            "factory.talos.dev/installer/abc123:v1.13.9"
        );
    }

    #[test]
    fn network_of_masks_host_bits() {
        assert_eq!(network_of("10.0.0.11/24").unwrap(), "10.0.0.0/24");
        assert_eq!(network_of("fd00::5/64").unwrap(), "fd00::/64");
        assert_eq!(network_of("10.0.0.11"), None);
    }

    #[test]
    fn rendering_is_deterministic_and_role_dependent() {
        for version in ["v1.13.9", "v1.14.0-rc.1"] {
            let renderer = Renderer::new(cluster_settings(version), secrets()).unwrap();
            let cp = node_settings("cp-1", "10.0.0.11/24", Role::ControlPlane);
            let worker = node_settings("w-1", "10.0.0.21/24", Role::Worker);
            assert_eq!(renderer.render(&cp).unwrap(), renderer.render(&cp).unwrap());
            let cp_yaml = renderer.render(&cp).unwrap();
            let worker_yaml = renderer.render(&worker).unwrap();
            // Control planes carry the CA keys and the VIP; workers neither.
            assert!(cp_yaml.contains("Layer2VIPConfig"), "{version}");
            assert!(!worker_yaml.contains("Layer2VIPConfig"), "{version}");
            let key_b64 = STANDARD.encode(&secrets().kubernetes_ca.key);
            assert!(!worker_yaml.contains(&key_b64));
            assert!(!worker_yaml.contains(&secrets().kubernetes_ca.key));
            assert!(!worker_yaml.contains(&secrets().service_account_key));
        }
    }

    #[test]
    fn version_1_13_is_v1alpha1_with_cilium_ready_networking() {
        let renderer = Renderer::new(cluster_settings("v1.13.9"), secrets()).unwrap();
        let cp = node_settings("cp-1", "10.0.0.11/24", Role::ControlPlane);
        let documents = renderer.documents(&cp).unwrap();
        let v1 = &documents[0];
        assert_eq!(v1["cluster"]["network"]["cni"]["name"], "none");
        assert_eq!(v1["cluster"]["proxy"]["disabled"], true);
        assert_eq!(v1["machine"]["features"]["kubePrism"]["port"], 7445);
        assert_eq!(
            v1["machine"]["install"]["image"],
            "factory.talos.dev/installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.13.9"
        );
        let vip = documents
            .iter()
            .find(|d| d["kind"] == "Layer2VIPConfig")
            .unwrap();
        assert_eq!(vip["name"], "10.0.0.10");
        assert_eq!(vip["link"], "eth0");
    }

    #[test]
    fn version_1_14_uses_separate_documents_without_flannel() {
        let renderer = Renderer::new(cluster_settings("v1.14.0-rc.1"), secrets()).unwrap();
        let cp = node_settings("cp-1", "10.0.0.11/24", Role::ControlPlane);
        let documents = renderer.documents(&cp).unwrap();
        let kinds: Vec<&str> = documents
            .iter()
            .filter_map(|d| d["kind"].as_str())
            .collect();
        for kind in [
            "KubeClusterConfig",
            "KubePrismConfig",
            "KubeProxyConfig",
            "UnattendedInstallConfig",
            "DiscoveryIdentityConfig",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        assert!(!kinds.contains(&"KubeFlannelCNIConfig"));
        let proxy = documents
            .iter()
            .find(|d| d["kind"] == "KubeProxyConfig")
            .unwrap();
        assert_eq!(proxy["enabled"], false);
        assert!(documents[0]["cluster"].get("network").is_none());
    }

    #[test]
    fn invalid_inputs_name_the_attribute() {
        let renderer = Renderer::new(cluster_settings("v1.13.9"), secrets()).unwrap();
        let mut node = node_settings("cp-1", "10.0.0.11", Role::ControlPlane);
        let error = renderer.render(&node).unwrap_err().to_string();
        assert!(error.contains("`address`"), "{error}");
        node.address = "10.0.0.11/24".into();
        node.hostname = "CP_1".into();
        let error = renderer.render(&node).unwrap_err().to_string();
        assert!(error.contains("`hostname`"), "{error}");
        let mut cluster = cluster_settings("v1.13.9");
        cluster.endpoint = "10.0.0.10:6443".into();
        assert!(Renderer::new(cluster, secrets()).is_err());
    }
}
