//! Stage 2: the resolved, validated model.
//!
//! `resolve_model` turns each effective configuration (`config::EffectiveConfig`) into a
//! typed [`Cluster`]: sizes parsed, addresses checked against their networks, versions
//! and URLs parsed, node addresses allocated. Machines state already records keep the
//! identity recorded for them ([`resolve_model_with`]: the operation layer reads it from
//! state), so the model of a configuration depends on what was applied before. The model carries no spans: when a value is
//! wrong, `resolve` looks its origin up by key path in the effective YAML tree, so the
//! diagnostic points at the layer that supplied it.

mod network;
mod resolve;
pub mod units;

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

pub use network::NodeRange;
pub use resolve::{RecordedMachines, resolve_model, resolve_model_with};
pub use units::{Bytes, MilliCpu};

use crate::vocabulary::{SecretStrings, Sensitive};

/// Everything a run works on: the selected environments, each with its clusters.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// In promotion order: by sync wave, then name (dev → staging → prod).
    pub environments: Vec<Environment>,
    /// Values read from age-encrypted files: the graph marks every attribute holding one
    /// sensitive (`config::secrets`).
    #[serde(skip)]
    pub secrets: SecretStrings,
    /// Pairs (`env/cluster`) left out because a value they need waits on a reference
    /// that was not resolved (`validate` resolves none): checked once resolved.
    #[serde(skip)]
    pub unresolved: Vec<String>,
}

impl Model {
    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.environments.iter().flat_map(|e| e.clusters.iter())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub sync_wave: u32,
    pub clusters: Vec<Cluster>,
}

/// One cluster as it runs in one environment.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub environment: String,
    pub name: String,
    pub role: Role,
    pub template: Option<String>,
    pub proxmox: Proxmox,
    pub talos: Talos,
    pub kubernetes: Kubernetes,
    pub control_plane: NodePool,
    pub workers: Vec<NodePool>,
    pub network: Network,
    pub platform: Platform,
    pub gitops: GitOps,
    pub workloads: Workloads,
    pub sync_wave: u32,
    pub lifecycle: Lifecycle,
    pub namespaces: Namespaces,
    /// Policy rules waived for this cluster, with their reasons.
    pub waivers: Vec<Waiver>,
    /// Every machine, control planes first, with its address.
    pub nodes: Vec<Machine>,
    /// Machines state still holds that the configuration no longer has (a lowered
    /// `count`, a removed pool): the plan removes them, and until then they keep their
    /// addresses.
    pub leaving: Vec<LeavingMachine>,
}

impl Cluster {
    /// `prod/workload`, the prefix of every address in this cluster.
    pub fn id(&self) -> String {
        format!("{}/{}", self.environment, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Management,
    Workload,
    Edge,
}

#[derive(Debug, Clone, Serialize)]
pub struct Proxmox {
    pub endpoint: url::Url,
    pub token: Sensitive<String>,
    pub nodes: Vec<String>,
    pub storage: String,
    pub image_storage: String,
    pub bridge: String,
    pub vlan: Option<u16>,
    pub vmid_start: u32,
    pub vmid_end: u32,
    pub allow_colocation: bool,
    /// `None`: the provider's default.
    pub storage_concurrency: Option<u32>,
    pub tls: Tls,
    /// `None`: nodes download the image themselves.
    pub image_upload: Option<SshImageUpload>,
}

/// `proxmox.image_upload` with `method: ssh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshImageUpload {
    pub user: String,
    pub port: u16,
    pub private_key_file: String,
    pub host_key: HostKey,
    pub hosts: std::collections::BTreeMap<String, String>,
    pub source_dir: String,
    pub import_dir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKey {
    KnownHosts(String),
    Fingerprint(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    /// Verified against the system's roots.
    System,
    CaFile(std::path::PathBuf),
    Fingerprint(String),
    Insecure,
}

#[derive(Debug, Clone, Serialize)]
pub struct Talos {
    pub version: semver::Version,
    pub extensions: Vec<String>,
    pub install_disk: String,
    pub patches: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kubernetes {
    pub version: semver::Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
}

/// The pool name of the control planes (worker pools may not use it).
pub const CONTROL_PLANE_POOL: &str = "cp";

#[derive(Debug, Clone, Serialize)]
pub struct NodePool {
    pub name: String,
    pub role: NodeRole,
    pub count: u32,
    pub cpu: u32,
    pub memory: Bytes,
    pub disk: Bytes,
    /// Pins by machine name (`machines:` of the pool).
    pub machines: std::collections::BTreeMap<String, MachinePin>,
}

/// What the configuration pins one machine to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MachinePin {
    pub address: Option<Ipv4Addr>,
    /// A Proxmox node (one of `proxmox.nodes`).
    pub node: Option<String>,
}

/// One VM / Talos node.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Unique within the cluster: `cp-1`, `general-2`; `<pool>-<n>`, the lowest `n`
    /// free when it was first allocated.
    pub name: String,
    /// `dev-workload-cp-1`.
    pub hostname: String,
    pub role: NodeRole,
    pub pool: String,
    /// Pinned, or as recorded in state, or (a new machine) the lowest free address of
    /// the node range.
    pub address: Ipv4Addr,
    /// The Proxmox node it is pinned to or was first placed on (`None`: placement picks).
    pub node: Option<String>,
    /// State records it (else it is new in this plan).
    pub recorded: bool,
    pub cpu: u32,
    pub memory: Bytes,
    pub disk: Bytes,
}

/// A machine state still holds that the configuration no longer has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeavingMachine {
    pub name: String,
    pub pool: String,
    pub role: NodeRole,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dns: Vec<IpAddr>,
    /// Where machines take their addresses: from `start` (the lowest free one first) up
    /// to the highest address a machine of the range holds.
    pub node_range: NodeRange,
    pub vip: Ipv4Addr,
    pub pods: IpNet,
    pub services: IpNet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Cilium,
    CertManager,
    Monitoring,
    ExternalDns,
    Argocd,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 5] = [
        ServiceKind::Cilium,
        ServiceKind::CertManager,
        ServiceKind::Monitoring,
        ServiceKind::ExternalDns,
        ServiceKind::Argocd,
    ];

    /// The key under `platform:`.
    pub fn key(self) -> &'static str {
        match self {
            ServiceKind::Cilium => "cilium",
            ServiceKind::CertManager => "cert_manager",
            ServiceKind::Monitoring => "monitoring",
            ServiceKind::ExternalDns => "external_dns",
            ServiceKind::Argocd => "argocd",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformService {
    pub kind: ServiceKind,
    pub enabled: bool,
    /// Required when enabled.
    pub version: Option<semver::Version>,
    /// The version exactly as written (`v1.19.1` keeps its `v` for chart and image tags).
    pub version_text: Option<String>,
    pub values: serde_json::Map<String, serde_json::Value>,
    /// argocd only: the HA install, when the configuration says (else the workload
    /// policy decides).
    pub ha: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    pub services: Vec<PlatformService>,
}

impl Platform {
    pub fn service(&self, kind: ServiceKind) -> Option<&PlatformService> {
        self.services.iter().find(|s| s.kind == kind)
    }

    pub fn enabled(&self) -> impl Iterator<Item = &PlatformService> {
        self.services.iter().filter(|s| s.enabled)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GitOps {
    pub repository: String,
    pub revision: String,
    /// With `{environment}` replaced.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResourceList {
    pub cpu: MilliCpu,
    pub memory: Bytes,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workloads {
    pub replicas: u32,
    pub requests: ResourceList,
    pub limits: ResourceList,
    pub anti_affinity: bool,
    pub image_tag: String,
    pub allow_empty_apps: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lifecycle {
    pub prevent_destroy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurity {
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Privileged => "privileged",
            PodSecurity::Baseline => "baseline",
            PodSecurity::Restricted => "restricted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub cpu: MilliCpu,
    pub memory: Bytes,
    pub pods: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Namespaces {
    pub pod_security: PodSecurity,
    pub default_deny: bool,
    pub quota: Option<Quota>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiver {
    pub rule: String,
    pub reason: String,
}
