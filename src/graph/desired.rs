//! Model → desired resources: one function per resource family. The attribute layout of
//! every type is documented in `docs/resources.md`; keep the two in step.
//!
//! Per cluster, in dependency order:
//! `proxmox_image` (one per Proxmox node used) → `proxmox_vm` → `talos_secrets` →
//! `talos_machine_config` → `talos_bootstrap` → `talos_kubeconfig` →
//! `kubernetes_platform` (cilium, then argocd, then the others) →
//! `kubernetes_namespace` → `kubernetes_handoff`.

use std::collections::{BTreeMap, BTreeSet};

use infraflux_provider::{Attributes, OUTPUTS, reference};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::DesiredResource;
use super::placement::{Rule, Spread};
use crate::model::{Cluster, HostKey, Machine, Model, NodeRole, ServiceKind, Tls};
use crate::vocabulary::ResourceAddr;

pub const PROXMOX: &str = "proxmox";
pub const TALOS: &str = "talos";
pub const KUBERNETES: &str = "kubernetes";

/// Every resource of every cluster in the model.
pub fn build_desired(model: &Model) -> Vec<DesiredResource> {
    build_desired_on(model, crate::cores::available())
}

/// [`build_desired`] on up to `threads` threads.
fn build_desired_on(model: &Model, threads: usize) -> Vec<DesiredResource> {
    let clusters: Vec<&Cluster> = model.clusters().collect();
    // A fleet's clusters are built on the machine's cores, a run of them per thread, and
    // put back in their order: each cluster's resources depend on that cluster only.
    let threads = threads.min(clusters.len() / MIN_CLUSTERS_PER_THREAD);
    let mut resources = crate::cores::map_runs(&clusters, threads, |run| {
        let mut resources = Vec::new();
        for cluster in run {
            build_cluster(cluster, &mut resources);
        }
        resources
    });
    mark_secret_attributes(&mut resources, &model.secrets);
    resources
}

/// Fewer clusters than this for each thread are built on one: starting a thread costs
/// more than building them.
const MIN_CLUSTERS_PER_THREAD: usize = 16;

/// Every attribute holding a value read from an age-encrypted file is sensitive, even
/// where the provider's schema does not say so (a password in Helm values, a token in a
/// repository URL): found by value, so it does not matter which model field carried it.
fn mark_secret_attributes(
    resources: &mut [DesiredResource],
    secrets: &crate::vocabulary::SecretStrings,
) {
    if secrets.is_empty() {
        return;
    }
    for resource in resources {
        let names: Vec<String> = resource
            .attributes
            .iter()
            .filter(|(_, value)| secrets.json_contains_secret(value))
            .map(|(name, _)| name.clone())
            .collect();
        if names.is_empty() {
            continue;
        }
        let values = secrets.values_in(&serde_json::Value::Object(resource.attributes.clone()));
        resource.secrets = super::SecretAttributes {
            names,
            values: values
                .into_iter()
                .map(crate::vocabulary::Sensitive::new)
                .collect(),
        };
    }
}

fn build_cluster(cluster: &Cluster, out: &mut Vec<DesiredResource>) {
    let placement = place_machines(cluster);
    let images = images(cluster, out);
    vms(cluster, &placement, &images, out);
    let secrets = talos_secrets(cluster, out);
    let configs = machine_configs(cluster, &secrets, out);
    let bootstrap = talos_bootstrap(cluster, &secrets, &configs, out);
    let kubeconfig = talos_kubeconfig(cluster, &secrets, &bootstrap, out);
    let platform = platform_services(cluster, &kubeconfig, out);
    let namespaces = namespaces(cluster, &kubeconfig, &platform, out);
    handoff(cluster, &kubeconfig, &platform, &namespaces, out);
}

fn addr(cluster: &Cluster, kind: &str, name: &str) -> ResourceAddr {
    ResourceAddr::new(&cluster.environment, &cluster.name, kind, name)
}

/// An object literal's members as attributes, in a map of their number: `json!` grows
/// its map member by member (to twice what it needs, at worst), and a fleet's desired
/// resources are held until the plan is made.
fn attributes(value: Value) -> Attributes {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        _ => unreachable!("attributes are built from object literals"),
    }
}

fn resource(
    cluster: &Cluster,
    provider: &str,
    kind: &str,
    name: &str,
    attributes: Attributes,
    depends_on: Vec<ResourceAddr>,
    origin: String,
) -> DesiredResource {
    DesiredResource {
        address: addr(cluster, kind, name),
        provider: provider.to_string(),
        kind: kind.to_string(),
        attributes,
        depends_on,
        prevent_destroy: cluster.lifecycle.prevent_destroy,
        origin,
        secrets: Default::default(),
        replace_with: Vec::new(),
        placement: None,
    }
}

// ---- Proxmox --------------------------------------------------------------------------

/// The PVE API every proxmox resource of the cluster talks to: `endpoint`, `token`
/// (sensitive in the provider's schema, so plans print `(sensitive)`), `tls`, and
/// `storage_concurrency` when the configuration sets it.
fn proxmox_connection(cluster: &Cluster, attributes: &mut Attributes) {
    let p = &cluster.proxmox;
    let tls = match &p.tls {
        Tls::System => json!("system"),
        Tls::Insecure => json!("insecure"),
        Tls::CaFile(path) => json!({ "ca_file": path.to_string_lossy() }),
        Tls::Fingerprint(fingerprint) => json!({ "fingerprint": fingerprint }),
    };
    attributes.insert("endpoint".into(), json!(p.endpoint.as_str()));
    attributes.insert("token".into(), json!(p.token.expose()));
    attributes.insert("tls".into(), tls);
    // A setting of the PVE cluster the provider reads with the connection (absent: its
    // default); never a change of the resource.
    if let Some(limit) = p.storage_concurrency {
        attributes.insert("storage_concurrency".into(), json!(limit));
    }
}

// ---- images ---------------------------------------------------------------------------

/// The Image Factory schematic for a set of official extensions: its canonical YAML
/// (extensions sorted and deduplicated) and the sha256 hex of that YAML.
pub fn schematic(extensions: &[String]) -> (String, String) {
    let extensions: BTreeSet<&String> = extensions.iter().collect();
    let mut yaml = String::from("customization:\n  systemExtensions:\n    officialExtensions:\n");
    for extension in extensions {
        yaml.push_str("      - ");
        yaml.push_str(extension);
        yaml.push('\n');
    }
    let id = hex::encode(Sha256::digest(yaml.as_bytes()));
    (yaml, id)
}

/// A proposed Proxmox node for every machine: the one it is pinned to or was first
/// placed on, else round-robin over `proxmox.nodes` (the offline placement of
/// [`placement`](super::placement) for a fresh cluster). The plan re-places new
/// machines from the cluster's free memory and keeps existing ones where they are.
fn place_machines(cluster: &Cluster) -> Vec<(&Machine, &str)> {
    let nodes = &cluster.proxmox.nodes;
    cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, machine)| {
            let node = machine
                .node
                .as_deref()
                .unwrap_or(nodes[i % nodes.len()].as_str());
            (machine, node)
        })
        .collect()
}

/// The image's name on a node.
fn image_name(cluster: &Cluster, node: &str) -> String {
    let (_, schematic) = schematic(&cluster.talos.extensions);
    format!("v{}-{}-{node}", cluster.talos.version, &schematic[..8])
}

/// `proxmox.image_upload` as the `upload` attribute of `proxmox_image` (the provider's
/// `image_upload` module documents the shape).
fn image_upload(cluster: &Cluster) -> Value {
    let Some(upload) = &cluster.proxmox.image_upload else {
        return Value::Null;
    };
    let (known_hosts, fingerprint) = match &upload.host_key {
        HostKey::KnownHosts(path) => (json!(path), Value::Null),
        HostKey::Fingerprint(fingerprint) => (Value::Null, json!(fingerprint)),
    };
    json!({
        "method": "ssh",
        "user": upload.user,
        "port": upload.port,
        "private_key_file": upload.private_key_file,
        "known_hosts": known_hosts,
        "host_key_fingerprint": fingerprint,
        "hosts": upload.hosts,
        "source_dir": upload.source_dir,
        "import_dir": upload.import_dir,
    })
}

/// One image per node VMs may be placed on (`proxmox.nodes`); placement keeps those on
/// nodes that get a VM (and those that exist). Returns (node, address).
fn images(cluster: &Cluster, out: &mut Vec<DesiredResource>) -> Vec<(String, ResourceAddr)> {
    let (_, schematic) = schematic(&cluster.talos.extensions);
    let version = format!("v{}", cluster.talos.version);
    let mut images = Vec::new();
    for node in &cluster.proxmox.nodes {
        let filename = format!("talos-{version}-{}-nocloud-amd64.raw", &schematic[..8]);
        let mut image_attributes = attributes(json!({
                "node": node,
                "storage": cluster.proxmox.image_storage,
                "talos_version": version,
                "schematic": schematic,
                "url": format!("https://factory.talos.dev/image/{schematic}/{version}/nocloud-amd64.raw.xz"),
                "filename": filename,
        }));
        let upload = image_upload(cluster);
        if !upload.is_null() {
            image_attributes.insert("upload".into(), upload);
        }
        proxmox_connection(cluster, &mut image_attributes);
        let mut image = resource(
            cluster,
            PROXMOX,
            "proxmox_image",
            &image_name(cluster, node),
            image_attributes,
            Vec::new(),
            format!(
                "cluster {}, talos.version and talos.extensions",
                cluster.id()
            ),
        );
        image.placement = Some(Rule::PerHost {
            group: cluster.id(),
            host: node.clone(),
        });
        images.push((node.clone(), image.address.clone()));
        out.push(image);
    }
    images
}

// ---- VMs ------------------------------------------------------------------------------

fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::ControlPlane => "controlplane",
        NodeRole::Worker => "worker",
    }
}

fn vms(
    cluster: &Cluster,
    placement: &[(&Machine, &str)],
    images: &[(String, ResourceAddr)],
    out: &mut Vec<DesiredResource>,
) {
    let prefix = cluster.network.cidr.prefix_len();
    let guest_agent = cluster
        .talos
        .extensions
        .iter()
        .any(|e| e == "siderolabs/qemu-guest-agent");
    for (machine, node) in placement {
        let image = &images
            .iter()
            .find(|(n, _)| n == node)
            .expect("an image per node used")
            .1;
        let mut vm_attributes = attributes(json!({
                "node": node,
                "name": machine.hostname,
                "cores": machine.cpu,
                "memory_mib": machine.memory.mebibytes(),
                "disk_gib": machine.disk.gibibytes(),
                "storage": cluster.proxmox.storage,
                "bridge": cluster.proxmox.bridge,
                "vlan": cluster.proxmox.vlan,
                "ipv4": format!("{}/{prefix}", machine.address),
                "gateway": cluster.network.gateway.to_string(),
                "dns": cluster.network.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "tags": ["infraflux", cluster.environment, cluster.name, role_name(machine.role)],
                "vmid_range": [cluster.proxmox.vmid_start, cluster.proxmox.vmid_end],
                "image": reference(image.to_string(), "volume"),
                "guest_agent": guest_agent,
        }));
        proxmox_connection(cluster, &mut vm_attributes);
        let mut vm = resource(
            cluster,
            PROXMOX,
            "proxmox_vm",
            &machine.name,
            vm_attributes,
            Vec::new(),
            format!("cluster {}, node pool {}", cluster.id(), machine.pool),
        );
        vm.placement = Some(Rule::Machine {
            group: cluster.id(),
            // A machine pinned to a node, or recreated after it was first placed, goes
            // there (an existing VM stays where it is, whatever this says).
            hosts: match &machine.node {
                Some(node) => vec![node.clone()],
                None => cluster.proxmox.nodes.clone(),
            },
            spread: match machine.role {
                NodeRole::ControlPlane => Spread::Distinct,
                NodeRole::Worker => Spread::Even,
            },
            allow_colocation: cluster.proxmox.allow_colocation,
            memory: machine.memory.0,
            // Each VM imports its disk from the image on its own node.
            per_host: BTreeMap::from([(
                "image".to_string(),
                images
                    .iter()
                    .map(|(node, image)| (node.clone(), reference(image.to_string(), "volume")))
                    .collect(),
            )]),
        });
        out.push(vm);
    }
}

// ---- Talos ----------------------------------------------------------------------------

fn cluster_name(cluster: &Cluster) -> String {
    format!("{}-{}", cluster.environment, cluster.name)
}

fn endpoint(cluster: &Cluster) -> String {
    format!("https://{}:6443", cluster.network.vip)
}

/// Proxmox virtio NICs appear as `ens18` in Talos (the provider's default is `eth0`).
const INTERFACE: &str = "ens18";

/// What a Talos API client needs: the Talos CA and the admin certificate.
const CLIENT_SECRET_ATTRIBUTES: [&str; 3] = ["os_ca_crt", "admin_crt", "admin_key"];

/// `secrets` input: an object of references to `talos_secrets.cluster`'s attributes.
fn secrets_object(secrets: &ResourceAddr, names: &[&str]) -> Value {
    Value::Object(
        names
            .iter()
            .map(|name| (name.to_string(), reference(secrets.to_string(), *name)))
            .collect(),
    )
}

fn talos_secrets(cluster: &Cluster, out: &mut Vec<DesiredResource>) -> ResourceAddr {
    let secrets = resource(
        cluster,
        TALOS,
        "talos_secrets",
        "cluster",
        attributes(json!({
            "cluster_name": cluster_name(cluster),
        })),
        Vec::new(),
        format!("cluster {}", cluster.id()),
    );
    let addr = secrets.address.clone();
    out.push(secrets);
    addr
}

fn machine_configs(
    cluster: &Cluster,
    secrets: &ResourceAddr,
    out: &mut Vec<DesiredResource>,
) -> Vec<ResourceAddr> {
    let (_, schematic) = schematic(&cluster.talos.extensions);
    let version = format!("v{}", cluster.talos.version);
    let prefix = cluster.network.cidr.prefix_len();
    let mut configs = Vec::new();
    for machine in &cluster.nodes {
        let vm = addr(cluster, "proxmox_vm", &machine.name);
        let mut config = resource(
            cluster,
            TALOS,
            "talos_machine_config",
            &machine.name,
            attributes(json!({
                "cluster_name": cluster_name(cluster),
                "hostname": machine.hostname,
                "address": format!("{}/{prefix}", machine.address),
                "gateway": cluster.network.gateway.to_string(),
                "dns": cluster.network.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "role": role_name(machine.role),
                "endpoint": endpoint(cluster),
                "vip": cluster.network.vip.to_string(),
                "interface": INTERFACE,
                "talos_version": version,
                "kubernetes_version": cluster.kubernetes.version.to_string(),
                "install_disk": cluster.talos.install_disk,
                "schematic": schematic,
                "pod_cidr": cluster.network.pods.to_string(),
                "service_cidr": cluster.network.services.to_string(),
                "patches": cluster.talos.patches,
                // The bundle is what `talos_secrets` computes: one reference to its
                // outputs, where sixteen were a third of these resources' memory.
                "secrets": reference(secrets.to_string(), OUTPUTS),
            })),
            vec![vm.clone()],
            format!("cluster {}, node pool {}", cluster.id(), machine.pool),
        );
        // A new VM is a new node: its config goes and comes with it.
        config.replace_with = vec![vm];
        configs.push(config.address.clone());
        out.push(config);
    }
    configs
}

fn talos_bootstrap(
    cluster: &Cluster,
    secrets: &ResourceAddr,
    configs: &[ResourceAddr],
    out: &mut Vec<DesiredResource>,
) -> ResourceAddr {
    let first = cluster
        .nodes
        .iter()
        .position(|m| m.role == NodeRole::ControlPlane)
        .unwrap_or(0);
    let node = cluster
        .nodes
        .get(first)
        .map(|m| m.address.to_string())
        .unwrap_or_default();
    let bootstrap = resource(
        cluster,
        TALOS,
        "talos_bootstrap",
        "cluster",
        attributes(json!({
            "endpoint": node,
            "secrets": secrets_object(secrets, &CLIENT_SECRET_ATTRIBUTES),
        })),
        configs.get(first).cloned().into_iter().collect(),
        format!("cluster {}, first control plane", cluster.id()),
    );
    let addr = bootstrap.address.clone();
    out.push(bootstrap);
    addr
}

fn talos_kubeconfig(
    cluster: &Cluster,
    secrets: &ResourceAddr,
    bootstrap: &ResourceAddr,
    out: &mut Vec<DesiredResource>,
) -> ResourceAddr {
    let node = cluster
        .nodes
        .iter()
        .find(|m| m.role == NodeRole::ControlPlane)
        .map(|m| m.address.to_string())
        .unwrap_or_default();
    let kubeconfig = resource(
        cluster,
        TALOS,
        "talos_kubeconfig",
        "cluster",
        attributes(json!({
            "endpoint": node,
            "secrets": secrets_object(secrets, &CLIENT_SECRET_ATTRIBUTES),
        })),
        vec![bootstrap.clone()],
        format!("cluster {}", cluster.id()),
    );
    let addr = kubeconfig.address.clone();
    out.push(kubeconfig);
    addr
}

// ---- Kubernetes -----------------------------------------------------------------------

/// The environment's workload policy as the Kubernetes provider reads it (CPU in
/// millicores, memory in bytes).
fn workloads(cluster: &Cluster) -> Value {
    let w = &cluster.workloads;
    json!({
        "replicas": w.replicas,
        "anti_affinity": w.anti_affinity,
        "requests": {"cpu": w.requests.cpu, "memory": w.requests.memory},
        "limits": {"cpu": w.limits.cpu, "memory": w.limits.memory},
    })
}

/// Enabled services in install order: cilium (the network) first, argocd next, the rest
/// after argocd. Returns the addresses in that order.
fn platform_services(
    cluster: &Cluster,
    kubeconfig: &ResourceAddr,
    out: &mut Vec<DesiredResource>,
) -> Vec<ResourceAddr> {
    let rank = |kind: ServiceKind| match kind {
        ServiceKind::Cilium => 0,
        ServiceKind::Argocd => 1,
        _ => 2,
    };
    let mut services: Vec<_> = cluster.platform.enabled().collect();
    services.sort_by_key(|s| (rank(s.kind), s.kind.key()));
    let mut addresses: Vec<ResourceAddr> = Vec::new();
    let mut cilium = None;
    let mut argocd = None;
    for service in services {
        let depends_on = match service.kind {
            ServiceKind::Cilium => Vec::new(),
            ServiceKind::Argocd => cilium.iter().cloned().collect(),
            _ => argocd
                .iter()
                .chain(cilium.iter())
                .take(1)
                .cloned()
                .collect(),
        };
        let mut platform_attributes = attributes(json!({
            "service": service.kind.key(),
            "version": service.version_text,
            "values": service.values,
            "environment": cluster.environment,
            "workloads": workloads(cluster),
            "kubeconfig": reference(kubeconfig.to_string(), "kubeconfig"),
        }));
        if service.kind == ServiceKind::Argocd {
            // ArgoCD's HA manifest where the environment is highly available, unless the
            // configuration says otherwise.
            platform_attributes.insert(
                "ha".into(),
                json!(service.ha.unwrap_or(cluster.workloads.replicas > 1)),
            );
            // ArgoCD takes over what was installed before it, as it was installed.
            let adopt: Vec<Value> = cluster
                .platform
                .enabled()
                .filter(|s| s.kind == ServiceKind::Cilium)
                .map(|s| json!({"service": s.kind.key(), "version": s.version_text, "values": s.values}))
                .collect();
            platform_attributes.insert("adopt".into(), Value::Array(adopt));
        }
        let platform = resource(
            cluster,
            KUBERNETES,
            "kubernetes_platform",
            service.kind.key(),
            platform_attributes,
            depends_on,
            format!("cluster {}, platform.{}", cluster.id(), service.kind.key()),
        );
        match service.kind {
            ServiceKind::Cilium => cilium = Some(platform.address.clone()),
            ServiceKind::Argocd => argocd = Some(platform.address.clone()),
            _ => {}
        }
        addresses.push(platform.address.clone());
        out.push(platform);
    }
    addresses
}

fn namespaces(
    cluster: &Cluster,
    kubeconfig: &ResourceAddr,
    platform: &[ResourceAddr],
    out: &mut Vec<DesiredResource>,
) -> Vec<ResourceAddr> {
    let name = &cluster.environment;
    let namespace = resource(
        cluster,
        KUBERNETES,
        "kubernetes_namespace",
        name,
        attributes(json!({
            "name": name,
            "environment": cluster.environment,
            "labels": {
                "app.kubernetes.io/managed-by": "infraflux",
                "infraflux.io/environment": cluster.environment,
            },
            "pod_security": cluster.namespaces.pod_security.as_str(),
            "default_deny": cluster.namespaces.default_deny,
            "quota": cluster.namespaces.quota.map(|q| json!({"cpu": q.cpu, "memory": q.memory, "pods": q.pods})),
            "workloads": workloads(cluster),
            "kubeconfig": reference(kubeconfig.to_string(), "kubeconfig"),
        })),
        platform.to_vec(),
        format!(
            "cluster {}, environment {}",
            cluster.id(),
            cluster.environment
        ),
    );
    let addr = namespace.address.clone();
    out.push(namespace);
    vec![addr]
}

fn handoff(
    cluster: &Cluster,
    kubeconfig: &ResourceAddr,
    platform: &[ResourceAddr],
    namespaces: &[ResourceAddr],
    out: &mut Vec<DesiredResource>,
) {
    let env = &cluster.environment;
    let mut depends_on: Vec<ResourceAddr> = namespaces.to_vec();
    depends_on.extend(platform.iter().filter(|a| a.name == "argocd").cloned());
    let handoff = resource(
        cluster,
        KUBERNETES,
        "kubernetes_handoff",
        env,
        attributes(json!({
            "project": format!("{}-{}", env, cluster.name),
            "application": format!("{}-{}", env, cluster.name),
            "argocd_namespace": "argocd",
            "repository": cluster.gitops.repository,
            "revision": cluster.gitops.revision,
            "path": cluster.gitops.path,
            "destination_namespace": env,
            "environment": env,
            "automated": true,
            "sync_wave": cluster.sync_wave,
            // Production deploys a tag or a commit, never a moving branch.
            "pin_revision": env == "prod",
            "kubeconfig": reference(kubeconfig.to_string(), "kubeconfig"),
        })),
        depends_on,
        format!("cluster {}, gitops", cluster.id()),
    );
    out.push(handoff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Selection, Variables as EnvLookup, load_config};
    use crate::graph::{GraphOptions, ResourceGraph};
    use crate::model::resolve_model;
    use crate::state::StateDocument;
    use std::path::Path;

    struct FakeEnvironment;
    impl EnvLookup for FakeEnvironment {
        fn var(&self, name: &str) -> Option<String> {
            (name == "PROXMOX_TOKEN").then(|| "root@pam!ci=secret".to_string())
        }
    }

    fn model(environment: &str, cluster: &str) -> Model {
        let selection = Selection {
            environment: Some(environment.into()),
            cluster: Some(cluster.into()),
        };
        let (config, problems) = load_config(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            &selection,
            &FakeEnvironment,
        );
        assert!(!problems.has_errors(), "{problems:?}");
        let (model, problems) = resolve_model(&config);
        assert!(!problems.has_errors(), "{problems:?}");
        model.unwrap()
    }

    #[test]
    fn schematic_is_the_hash_of_canonical_yaml() {
        let (yaml, id) = schematic(&[
            "siderolabs/qemu-guest-agent".into(),
            "siderolabs/iscsi-tools".into(),
            "siderolabs/iscsi-tools".into(),
        ]);
        assert_eq!(
            yaml,
            "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/iscsi-tools\n      - siderolabs/qemu-guest-agent\n"
        );
        assert_eq!(id, hex::encode(Sha256::digest(yaml.as_bytes())));
        assert_eq!(id.len(), 64);
    }

    /// Issue 15: a fleet's clusters are built on several threads, and come out as they
    /// would on one, in the same order.
    #[test]
    fn a_fleet_is_built_the_same_on_many_threads_as_on_one() {
        let mut model = model("dev", "workload");
        let environment = &mut model.environments[0];
        let template = environment.clusters[0].clone();
        environment.clusters = (0..70)
            .map(|i| {
                let mut cluster = template.clone();
                cluster.name = format!("c{i:02}");
                cluster
            })
            .collect();
        let one = build_desired_on(&model, 1);
        let many = build_desired_on(&model, 4);
        assert_eq!(many, one);
        assert_eq!(
            one.iter()
                .filter(|d| d.kind == "talos_secrets")
                .map(|d| d.address.cluster.clone())
                .collect::<Vec<_>>(),
            (0..70).map(|i| format!("c{i:02}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn storage_concurrency_reaches_every_proxmox_resource_only_when_set() {
        let mut model = model("dev", "workload");
        let proxmox = |desired: &[DesiredResource]| -> Vec<Option<Value>> {
            desired
                .iter()
                .filter(|d| d.provider == "proxmox")
                .map(|d| d.attributes.get("storage_concurrency").cloned())
                .collect()
        };
        // Unset: the provider's default, and no attribute (so no resource changes).
        let unset = proxmox(&build_desired(&model));
        assert!(!unset.is_empty() && unset.iter().all(Option::is_none));
        for environment in model.environments.iter_mut() {
            for cluster in environment.clusters.iter_mut() {
                cluster.proxmox.storage_concurrency = Some(2);
            }
        }
        let set = proxmox(&build_desired(&model));
        assert!(set.iter().all(|value| value == &Some(json!(2))), "{set:?}");
    }

    #[test]
    fn argocd_is_ha_where_the_environment_is() {
        let ha = |environment: &str| {
            build_desired(&model(environment, "workload"))
                .into_iter()
                .find(|d| {
                    d.address
                        .to_string()
                        .ends_with("kubernetes_platform.argocd")
                })
                .unwrap()
                .attributes["ha"]
                .clone()
        };
        // dev runs one replica, staging and prod three.
        assert_eq!(
            [ha("dev"), ha("staging"), ha("prod")],
            [json!(false), json!(true), json!(true)]
        );
    }

    #[test]
    fn example_configuration_builds_an_acyclic_graph_in_family_order() {
        let model = model("prod", "workload");
        let desired = build_desired(&model);
        let kinds: Vec<&str> = desired.iter().map(|d| d.kind.as_str()).collect();
        for kind in [
            "proxmox_image",
            "proxmox_vm",
            "talos_secrets",
            "talos_machine_config",
            "talos_bootstrap",
            "talos_kubeconfig",
            "kubernetes_platform",
            "kubernetes_namespace",
            "kubernetes_handoff",
        ] {
            assert!(kinds.contains(&kind), "no {kind}");
        }
        let cluster = model.clusters().next().unwrap();
        let vms: Vec<&DesiredResource> =
            desired.iter().filter(|d| d.kind == "proxmox_vm").collect();
        assert_eq!(vms.len(), cluster.nodes.len());
        // Control planes on distinct Proxmox nodes.
        let cp_nodes: BTreeSet<&str> = vms
            .iter()
            .filter(|vm| vm.attributes["tags"][3] == "controlplane")
            .map(|vm| vm.attributes["node"].as_str().unwrap())
            .collect();
        let control_planes = cluster
            .nodes
            .iter()
            .filter(|m| m.role == NodeRole::ControlPlane)
            .count();
        assert_eq!(
            cp_nodes.len(),
            control_planes.min(cluster.proxmox.nodes.len())
        );
        assert!(
            desired.iter().all(|d| d.prevent_destroy),
            "prod is protected"
        );

        let graph = ResourceGraph::build(
            desired,
            &StateDocument::new("prod"),
            &GraphOptions::default(),
        )
        .unwrap();
        let order: Vec<String> = graph
            .execution_order()
            .iter()
            .map(|v| v.address().to_string())
            .collect();
        let position = |suffix: &str| {
            order
                .iter()
                .position(|a| a.ends_with(suffix))
                .unwrap_or_else(|| panic!("{suffix} not in {order:?}"))
        };
        assert!(position("proxmox_vm.cp-1") < position("talos_machine_config.cp-1"));
        assert!(position("talos_bootstrap.cluster") < position("talos_kubeconfig.cluster"));
        assert!(position("kubernetes_platform.cilium") < position("kubernetes_platform.argocd"));
        assert!(
            position("kubernetes_platform.argocd") < position("kubernetes_platform.monitoring")
        );
        assert!(position("kubernetes_namespace.prod") < position("kubernetes_handoff.prod"));
    }
}
