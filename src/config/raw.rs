//! The configuration format as the user writes it: every key optional, because any layer
//! may set any part. These types are the single source of the format: the JSON Schema
//! (`infraflux config schema`, used to check every file) is generated from them, and the
//! merged configuration of one (environment, cluster) pair is deserialized into them
//! before `model` checks what the values mean.
//!
//! Doc comments become the schema's descriptions, which editors show on hover.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings any layer may carry: defaults, templates, environments, clusters and a
/// cluster's per-environment overrides.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// What the cluster is for: `management`, `workload` or `edge`.
    pub role: Option<RawRole>,
    /// The size template (a file in `templates/`): node counts and VM sizes.
    pub template: Option<String>,
    /// The Proxmox VE cluster the VMs run on.
    pub proxmox: Option<RawProxmox>,
    /// Talos Linux: version, system extensions, install disk, machine-config patches.
    pub talos: Option<RawTalos>,
    /// Kubernetes version installed by Talos.
    pub kubernetes: Option<RawKubernetes>,
    /// Control-plane nodes (they run etcd; use an odd count).
    pub control_plane: Option<RawControlPlane>,
    /// Worker pools, merged across layers by `name`.
    pub workers: Option<Vec<RawWorkerPool>>,
    /// Node, pod and service networks and the control-plane VIP.
    pub network: Option<RawNetwork>,
    /// Platform services installed by `infraflux bootstrap`.
    pub platform: Option<RawPlatform>,
    /// The application repository ArgoCD is handed.
    pub gitops: Option<RawGitOps>,
    /// Policy for the environment's workloads.
    pub workloads: Option<RawWorkloads>,
    /// ArgoCD sync wave of this environment's handoff (dev 0, staging 1, prod 2).
    #[schemars(range(min = 0))]
    pub sync_wave: Option<i64>,
    /// Guard rails for destructive changes.
    pub lifecycle: Option<RawLifecycle>,
    /// Environment namespaces: pod security, network isolation, quota.
    pub namespaces: Option<RawNamespaces>,
    /// Policy waivers (each with a reason, shown in every plan).
    pub policy: Option<RawPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawRole {
    Management,
    Workload,
    Edge,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProxmox {
    /// API URL, e.g. `https://pve1.example.internal:8006`.
    pub endpoint: Option<String>,
    /// API token `USER@REALM!TOKENID=SECRET`; use `${env:…}` or `${file:…}`, never a literal.
    pub token: Option<String>,
    /// Proxmox nodes VMs may be placed on.
    pub nodes: Option<Vec<String>>,
    /// Storage for VM disks, e.g. `local-lvm`.
    pub storage: Option<String>,
    /// Storage that holds the Talos image (needs the `import` content type).
    pub image_storage: Option<String>,
    /// Bridge the VMs' network device attaches to, e.g. `vmbr0`.
    pub bridge: Option<String>,
    /// VLAN tag on the VMs' network device.
    #[schemars(range(min = 1, max = 4094))]
    pub vlan: Option<i64>,
    /// Range VM IDs are picked from.
    pub vmid_range: Option<RawVmidRange>,
    /// Allow several control planes of one cluster on the same Proxmox node.
    pub allow_colocation: Option<bool>,
    /// How many operations that take PVE's storage lock (VM create, disk resize, VM
    /// delete) run at once per node and storage: 1 to 16, default 4.
    #[schemars(range(min = 1, max = 16))]
    pub storage_concurrency: Option<i64>,
    /// How the API's TLS certificate is trusted.
    pub tls: Option<RawTls>,
    /// How the Talos image reaches the nodes. Unset: each node downloads it itself
    /// (`download-url`, PVE 8.4+). `method: ssh` uploads it over SFTP instead, for older
    /// PVE or nodes that cannot reach the Image Factory.
    pub image_upload: Option<RawImageUpload>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawImageUpload {
    /// `download` (PVE fetches the image, the default) or `ssh` (upload over SFTP).
    pub method: Option<RawUploadMethod>,
    /// SSH user on the nodes (default `root`).
    pub user: Option<String>,
    /// SSH port (default 22).
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i64>,
    /// Private key to log in with (no passphrase).
    pub private_key_file: Option<String>,
    /// OpenSSH known_hosts file listing every node's host key; unknown keys are refused.
    pub known_hosts: Option<String>,
    /// Alternative to `known_hosts`: the nodes' host key fingerprint, `SHA256:<base64>`.
    pub host_key_fingerprint: Option<String>,
    /// Address to reach each node at, by node name (default: the node name).
    pub hosts: Option<IndexMap<String, String>>,
    /// Local directory holding the image files to upload (default `images`).
    pub source_dir: Option<String>,
    /// Directory of the image storage's `import` content on the nodes (default: the
    /// storage's path + `/import`, e.g. `/var/lib/vz/import`).
    pub import_dir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawUploadMethod {
    Download,
    Ssh,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVmidRange {
    #[schemars(range(min = 100, max = 999_999_999))]
    pub start: Option<i64>,
    #[schemars(range(min = 100, max = 999_999_999))]
    pub end: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the CA that signed the API certificate.
    pub ca_file: Option<String>,
    /// SHA-256 fingerprint of the API certificate (`AB:CD:…`).
    pub fingerprint: Option<String>,
    /// Skip certificate checks. Only for labs.
    pub insecure: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTalos {
    /// Talos version, e.g. `v1.13.9`.
    pub version: Option<String>,
    /// System extensions baked into the image, e.g. `siderolabs/qemu-guest-agent`.
    pub extensions: Option<Vec<String>>,
    /// Disk Talos installs to.
    pub install_disk: Option<String>,
    /// Machine-config patches (strategic merge), applied in order.
    pub patches: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetes {
    /// Kubernetes version, e.g. `1.32.2`.
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawControlPlane {
    #[schemars(range(min = 1))]
    pub count: Option<i64>,
    /// Virtual CPU cores per node.
    #[schemars(range(min = 1))]
    pub cpu: Option<i64>,
    /// Memory per node, e.g. `4Gi`.
    pub memory: Option<RawQuantity>,
    /// System disk per node, e.g. `40Gi`.
    pub disk: Option<RawQuantity>,
    /// Pins for individual machines, by name (`cp-1`): an address and/or a Proxmox node.
    /// Unpinned machines keep the address and node they were first given.
    pub machines: Option<IndexMap<String, RawMachine>>,
}

/// What one machine is pinned to. Each machine otherwise takes the lowest free address
/// of the node range when it is first created, and keeps it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMachine {
    /// Its node address (IPv4, inside `network.nodes.cidr`). Changing it replaces the
    /// machine's VM.
    pub address: Option<String>,
    /// The Proxmox node (one of `proxmox.nodes`) its VM is created on; an existing VM
    /// stays where it is.
    pub node: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWorkerPool {
    /// Pool name; layers merge pools with the same name.
    pub name: String,
    #[schemars(range(min = 0))]
    pub count: Option<i64>,
    #[schemars(range(min = 1))]
    pub cpu: Option<i64>,
    pub memory: Option<RawQuantity>,
    pub disk: Option<RawQuantity>,
    /// Pins for individual machines, by name (`general-1`): an address and/or a Proxmox
    /// node. Unpinned machines keep the address and node they were first given.
    pub machines: Option<IndexMap<String, RawMachine>>,
}

/// A Kubernetes-style quantity: `512Mi`, `4Gi`, `500m`, or a plain number.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawQuantity {
    Number(i64),
    Text(String),
}

impl JsonSchema for RawQuantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "A Kubernetes quantity: `512Mi`, `4Gi`, `500m`, or a plain number",
        })
    }
}

impl std::fmt::Display for RawQuantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawQuantity::Number(n) => write!(f, "{n}"),
            RawQuantity::Text(t) => f.write_str(t),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub nodes: Option<RawNodeNetwork>,
    /// Control-plane virtual IP (the Kubernetes API endpoint); inside the node CIDR,
    /// outside the node range.
    pub vip: Option<String>,
    /// Pod CIDR.
    pub pods: Option<String>,
    /// Service CIDR.
    pub services: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNodeNetwork {
    /// The node subnet, e.g. `10.10.10.0/24`.
    pub cidr: Option<String>,
    /// Default gateway, inside `cidr`.
    pub gateway: Option<String>,
    /// DNS servers.
    pub dns: Option<Vec<String>>,
    /// First node address; nodes take consecutive addresses from here (control planes
    /// first, then worker pools in order).
    pub start: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlatform {
    pub cilium: Option<RawService>,
    pub cert_manager: Option<RawService>,
    pub monitoring: Option<RawService>,
    pub external_dns: Option<RawService>,
    pub argocd: Option<RawService>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub enabled: Option<bool>,
    /// Chart or release version, e.g. `1.18.4`.
    pub version: Option<String>,
    /// Helm values (merged across layers like any mapping).
    pub values: Option<IndexMap<String, serde_json::Value>>,
    /// argocd only: install ArgoCD's HA manifest (`manifests/ha/install.yaml`: redis-ha,
    /// several replicas; it needs three nodes). Default: when the environment's
    /// `workloads.replicas` is more than 1 (staging and prod in the shipped example).
    pub ha: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGitOps {
    /// Application repository URL.
    pub repository: Option<String>,
    /// Branch, tag or commit ArgoCD tracks.
    pub revision: Option<String>,
    /// Path in the repository; `{environment}` is replaced by the environment's name.
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWorkloads {
    #[schemars(range(min = 0))]
    pub replicas: Option<i64>,
    pub resources: Option<RawResources>,
    /// Spread replicas over nodes (pod anti-affinity on hostname).
    pub anti_affinity: Option<bool>,
    /// Image tag workloads run; pin it (no `latest`) in prod.
    pub image_tag: Option<String>,
    /// Allow ArgoCD applications with no resources.
    pub allow_empty_apps: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub requests: Option<RawResourceList>,
    pub limits: Option<RawResourceList>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResourceList {
    /// CPU, e.g. `500m`.
    pub cpu: Option<RawQuantity>,
    /// Memory, e.g. `512Mi`.
    pub memory: Option<RawQuantity>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLifecycle {
    /// Refuse plans that would destroy this environment's resources (default: on in prod).
    pub prevent_destroy: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNamespaces {
    /// Pod Security Standard enforced on environment namespaces.
    pub pod_security: Option<RawPodSecurity>,
    /// Install a default-deny NetworkPolicy (plus allows for DNS, the namespace itself
    /// and ArgoCD).
    pub default_deny: Option<bool>,
    /// ResourceQuota of each environment namespace.
    pub quota: Option<RawQuota>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawPodSecurity {
    Privileged,
    Baseline,
    Restricted,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// Total CPU requests, e.g. `8`.
    pub cpu: Option<RawQuantity>,
    /// Total memory requests, e.g. `16Gi`.
    pub memory: Option<RawQuantity>,
    #[schemars(range(min = 1))]
    pub pods: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub waivers: Option<Vec<RawWaiver>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWaiver {
    /// The rule id, e.g. `ha-workloads`.
    pub rule: String,
    /// Why the rule does not apply here; shown in every plan.
    pub reason: String,
}
