//! A fleet for the Proxmox provider through the engine against fakepve: one Talos image
//! per node and N new VMs spread evenly over 3 nodes, planned and applied from an empty
//! state. Shared by `benches/proxmox_apply.rs` (how fast) and `tests/proxmox_fleet.rs`
//! (what it did: every VM right, PVE's storage lock respected).

// Each includer uses its own part.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infraflux::apply::{ApplyOptions, ApplySummary, NoReporter, apply};
use infraflux::graph::DesiredResource;
use infraflux::graph::placement::{Rule, Spread};
use infraflux::plan::{PlanOptions, plan};
use infraflux::state::{StateDocument, StateStore};
use infraflux::testing::MemoryStore;
use infraflux::vocabulary::ResourceAddr;
use infraflux_provider::{Attributes, reference};
use serde_json::{Value, json};

pub const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
/// The VMs' disk storage (one per node: the storage-lock limit is per node and storage).
pub const STORAGE: &str = "local-lvm";
pub const DISK_GIB: u64 = 20;
pub const LAUNCHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/providers/proxmox/tests/support/fakepve_launcher.py"
);

/// The connection attributes of every resource; `storage_concurrency` as the
/// configuration's `proxmox.storage_concurrency` would set it.
pub fn connection(url: &str, fingerprint: &str, storage_concurrency: Option<usize>) -> Attributes {
    let mut connection = json!({
        "endpoint": url,
        "token": "root@pam!ci=f4k3-5ecr3t",
        "tls": {"fingerprint": fingerprint},
    })
    .as_object()
    .unwrap()
    .clone();
    if let Some(limit) = storage_concurrency {
        connection.insert("storage_concurrency".into(), json!(limit));
    }
    connection
}

fn addr(kind: &str, name: &str) -> ResourceAddr {
    ResourceAddr::new("fleet", "apply", kind, name)
}

pub fn images(connection: &Attributes) -> Vec<DesiredResource> {
    NODES
        .iter()
        .map(|node| {
            let mut attributes = json!({
                "node": node, "storage": "local", "talos_version": "v1.13.9",
                "schematic": "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
                "url": "https://factory.talos.dev/image/ce4c9805/v1.13.9/nocloud-amd64.raw",
                "filename": "talos-v1.13.9.raw",
            })
            .as_object()
            .unwrap()
            .clone();
            attributes.extend(connection.clone());
            DesiredResource {
                address: addr("proxmox_image", &format!("talos-{node}")),
                provider: "proxmox".into(),
                kind: "proxmox_image".into(),
                attributes,
                depends_on: Vec::new(),
                prevent_destroy: false,
                origin: "fleet".into(),
                secrets: Default::default(),
                replace_with: Vec::new(),
                placement: Some(Rule::PerHost {
                    group: "fleet/apply".into(),
                    host: node.to_string(),
                }),
            }
        })
        .collect()
}

/// A new VM; placement picks its node (evenly) and the image on that node.
pub fn vm(i: usize, connection: &Attributes) -> DesiredResource {
    let per_host: BTreeMap<String, Value> = NODES
        .iter()
        .map(|node| {
            (
                node.to_string(),
                reference(
                    addr("proxmox_image", &format!("talos-{node}")).to_string(),
                    "volume",
                ),
            )
        })
        .collect();
    let mut attributes = json!({
        "node": "pve1", "name": format!("vm-{i}"), "cores": 1, "memory_mib": 128,
        "disk_gib": DISK_GIB, "storage": STORAGE, "bridge": "vmbr0", "vlan": null,
        "ipv4": format!("10.2.0.{}/24", i + 10), "gateway": "10.2.0.1", "dns": ["10.2.0.1"],
        "tags": ["fleet", "infraflux"], "guest_agent": false, "vmid_range": [7000, 7999],
    })
    .as_object()
    .unwrap()
    .clone();
    attributes.insert("image".into(), per_host["pve1"].clone());
    attributes.extend(connection.clone());
    DesiredResource {
        address: addr("proxmox_vm", &format!("vm-{i}")),
        provider: "proxmox".into(),
        kind: "proxmox_vm".into(),
        attributes,
        depends_on: Vec::new(),
        prevent_destroy: false,
        origin: "fleet".into(),
        secrets: Default::default(),
        replace_with: Vec::new(),
        placement: Some(Rule::Machine {
            group: "fleet/apply".into(),
            hosts: NODES.iter().map(|n| n.to_string()).collect(),
            spread: Spread::Even,
            allow_colocation: true,
            memory: 128 << 20,
            per_host: BTreeMap::from([("image".to_string(), per_host)]),
        }),
    }
}

/// The images and `count` VMs.
pub fn desired(count: usize, connection: &Attributes) -> Vec<DesiredResource> {
    let mut desired = images(connection);
    desired.extend((0..count).map(|i| vm(i, connection)));
    desired
}

/// What one plan and apply from an empty state did.
pub struct Applied {
    pub summary: ApplySummary,
    pub plan_wall: Duration,
    pub apply_wall: Duration,
}

/// Plan `desired` from an empty state and apply it at `parallelism` (the CLI's default
/// when `None`).
pub async fn plan_and_apply(desired: Vec<DesiredResource>, parallelism: Option<usize>) -> Applied {
    let providers = infraflux::commands::providers();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let state = StateDocument::new("fleet");
    let started = Instant::now();
    let planned = plan(desired, &state, &providers, &PlanOptions::default())
        .await
        .expect("plan");
    let plan_wall = started.elapsed();
    let started = Instant::now();
    let summary = apply(
        &planned,
        state,
        store,
        &providers,
        Arc::new(NoReporter),
        &ApplyOptions {
            parallelism: parallelism.unwrap_or(ApplyOptions::default().parallelism),
            ..ApplyOptions::default()
        },
    )
    .await
    .expect("apply runs");
    Applied {
        summary,
        plan_wall,
        apply_wall: started.elapsed(),
    }
}

/// Plan the deletion of everything in `state` (nothing desired) and apply it.
pub async fn destroy_all(state: StateDocument, parallelism: usize) -> ApplySummary {
    let providers = infraflux::commands::providers();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let planned = plan(Vec::new(), &state, &providers, &PlanOptions::default())
        .await
        .expect("plan");
    apply(
        &planned,
        state,
        store,
        &providers,
        Arc::new(NoReporter),
        &ApplyOptions {
            parallelism,
            ..ApplyOptions::default()
        },
    )
    .await
    .expect("apply runs")
}

/// The requests of an apply, from fakepve's log, sorted out.
#[derive(Debug, Default)]
pub struct Calls {
    pub total: usize,
    /// Requests whose path names one VM (`/nodes/N/qemu/VMID…`) or one of its tasks
    /// (`…/tasks/UPID:…:qmcreate:VMID:…`), by VMID.
    pub per_vm: BTreeMap<u64, usize>,
    /// `POST /nodes/N/qemu`: the creates (their VMID is in the body, not the path).
    pub creates: usize,
    /// `METHOD path-shape` → count, VMIDs and UPIDs replaced by placeholders.
    pub by_shape: BTreeMap<String, usize>,
}

impl Calls {
    pub fn from_log(log: &Value) -> Self {
        let mut calls = Calls::default();
        for entry in log.as_array().into_iter().flatten() {
            let method = entry[0].as_str().unwrap_or_default();
            let path = entry[1].as_str().unwrap_or_default();
            calls.total += 1;
            let parts: Vec<&str> = path.split('/').collect();
            let mut vmid = None;
            let shape: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(i, part)| {
                    if i > 0 && parts[i - 1] == "qemu" && part.parse::<u64>().is_ok() {
                        vmid = part.parse().ok();
                        "{vmid}".to_string()
                    } else if part.starts_with("UPID:") {
                        let fields: Vec<&str> = part.split(':').collect();
                        if let Some(id) = fields.get(6).and_then(|id| id.parse::<u64>().ok()) {
                            vmid = Some(id);
                        }
                        format!("{{upid:{}}}", fields.get(5).unwrap_or(&"?"))
                    } else if i > 0 && parts[i - 1] == "nodes" {
                        "{node}".to_string()
                    } else {
                        part.to_string()
                    }
                })
                .collect();
            if method == "POST" && parts.len() == 6 && parts[5] == "qemu" {
                calls.creates += 1;
            }
            if let Some(vmid) = vmid.filter(|v| (7000..8000).contains(v)) {
                *calls.per_vm.entry(vmid).or_default() += 1;
            }
            *calls
                .by_shape
                .entry(format!("{method} {}", shape.join("/")))
                .or_default() += 1;
        }
        calls
    }

    pub fn vms(&self) -> usize {
        self.per_vm.len()
    }

    /// Calls per VM on average: those that name the VM, and its create.
    pub fn per_vm_mean(&self) -> f64 {
        (self.per_vm.values().sum::<usize>() + self.creates) as f64 / self.vms().max(1) as f64
    }
}

/// VMs per node among `vms` (fakepve's `vms` answer), ours only (VMIDs 7000–7999).
pub fn per_node(vms: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for vm in vms.as_array().into_iter().flatten() {
        if vm["vmid"]
            .as_u64()
            .is_some_and(|v| (7000..8000).contains(&v))
        {
            *counts
                .entry(vm["node"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    counts
}

/// The VM names fakepve has, ours only.
pub fn names(vms: &Value) -> BTreeSet<String> {
    vms.as_array()
        .into_iter()
        .flatten()
        .filter(|vm| {
            vm["vmid"]
                .as_u64()
                .is_some_and(|v| (7000..8000).contains(&v))
        })
        .filter_map(|vm| vm["name"].as_str().map(str::to_string))
        .collect()
}
