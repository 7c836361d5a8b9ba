//! The Proxmox provider at scale THROUGH THE ENGINE (`plan` → refresh → placement →
//! provider plans; `apply` → the parallel walk with its per-key limits), against fakepve
//! with 300 VMs over 3 nodes:
//!
//! - a plan when nothing changed, over the VMs alone and with the images managed too:
//!   API calls counted by the fake (≤ 3 per endpoint; one cluster listing is the aim —
//!   images are confirmed from their storage's usage in it);
//! - 30 new VMs (and their images) applied at `--parallelism 10` with 20 ms of network
//!   latency per request and tasks that take time (fakepve's clock at 1/100): API calls
//!   per VM (creates pick VMIDs from one shared listing), wall time against the bound
//!   of one create at a time per node and storage (what the provider did before it
//!   limited only the tasks that take PVE's storage lock — `benches/proxmox_apply.rs`
//!   measures against the floor); no failure allowed, lock failures counted apart.
//!
//! Prints the figures. Needs `INFRAFLUX_FAKEPVE_PYTHON`; without it, says so and exits 0.
//! Run with `cargo bench --bench proxmox_engine` (a `harness = false` bench: under
//! `cargo test --benches` or the dev profile it prints the same figures).

#[path = "../providers/proxmox/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infraflux::apply::{ApplyOptions, NoReporter, apply};
use infraflux::graph::DesiredResource;
use infraflux::graph::placement::{Rule, Spread};
use infraflux::plan::{Action, PlanOptions, plan};
use infraflux::state::{ResourceState, ResourceStatus, StateDocument, StateStore};
use infraflux::testing::MemoryStore;
use infraflux::vocabulary::ResourceAddr;
use infraflux_provider::{Attributes, ReadItem, ReadOutcome, ReadRequest, ResourceRef, reference};
use serde_json::{Value, json};

const VMS: u32 = 300;
const FIRST_VMID: u32 = 5000;
const CREATES: usize = 30;
const PARALLELISM: usize = 10;
/// fakepve's clock: PVE seconds × this = real seconds (task durations and latency).
const TIME_SCALE: f64 = 0.01;
/// Network latency per request, in PVE seconds: 20 ms at the time scale above.
const LATENCY: f64 = 2.0;
const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
const LAUNCHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/providers/proxmox/tests/support/fakepve_launcher.py"
);

fn connection(fake: &support::FakePve) -> Attributes {
    json!({
        "endpoint": fake.url,
        "token": support::TOKEN,
        "tls": {"fingerprint": fake.fingerprint},
    })
    .as_object()
    .unwrap()
    .clone()
}

fn addr(kind: &str, name: &str) -> ResourceAddr {
    ResourceAddr::new("bench", "scale", kind, name)
}

fn images_of(connection: &Attributes) -> Vec<DesiredResource> {
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
                origin: "bench".into(),
                secrets: Default::default(),
                replace_with: Vec::new(),
                placement: Some(Rule::PerHost {
                    group: "bench/scale".into(),
                    host: node.to_string(),
                }),
            }
        })
        .collect()
}

/// A VM; `follows_image`: its `image` refers to the image on its node (the 300 adopted
/// VMs keep the volume they were created from, as imported VMs do).
fn vm(
    name: &str,
    mut attributes: Attributes,
    memory_mib: u64,
    follows_image: bool,
) -> DesiredResource {
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
    attributes.remove("vmid");
    attributes.remove("mac");
    if follows_image {
        // As the graph builds VMs: the image of the node offline placement chose;
        // placement replaces it with the one on the node it picks.
        let node = attributes["node"].as_str().unwrap_or("pve1").to_string();
        attributes.insert("image".into(), per_host[&node].clone());
    }
    DesiredResource {
        address: addr("proxmox_vm", name),
        provider: "proxmox".into(),
        kind: "proxmox_vm".into(),
        attributes,
        depends_on: Vec::new(),
        prevent_destroy: false,
        origin: "bench".into(),
        secrets: Default::default(),
        replace_with: Vec::new(),
        placement: Some(Rule::Machine {
            group: "bench/scale".into(),
            hosts: NODES.iter().map(|n| n.to_string()).collect(),
            spread: Spread::Even,
            allow_colocation: true,
            memory: memory_mib << 20,
            per_host: if follows_image {
                BTreeMap::from([("image".to_string(), per_host)])
            } else {
                BTreeMap::new()
            },
        }),
    }
}

fn new_vm(i: usize, connection: &Attributes) -> DesiredResource {
    let mut attributes = json!({
        "node": "pve1", "name": format!("new-{i}"), "cores": 1, "memory_mib": 128,
        "disk_gib": 20, "storage": "local-lvm", "bridge": "vmbr0", "vlan": null,
        "ipv4": format!("10.2.0.{}/24", i + 10), "gateway": "10.2.0.1", "dns": ["10.2.0.1"],
        "tags": ["bench", "infraflux"], "guest_agent": false, "vmid_range": [7000, 7999],
    })
    .as_object()
    .unwrap()
    .clone();
    attributes.extend(connection.clone());
    vm(&format!("new-{i}"), attributes, 128, true)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let python = match support::python() {
        Ok(python) => python,
        Err(reason) => {
            println!("proxmox_engine bench {reason}");
            return;
        }
    };
    if tokio::time::timeout(Duration::from_secs(900), run(&python))
        .await
        .is_err()
    {
        eprintln!("proxmox_engine bench: gave up after 900 s");
        std::process::exit(1);
    }
}

async fn requests(fake: &mut support::FakePve) -> u64 {
    fake.expect(json!({"op": "requests"}))
        .await
        .as_u64()
        .unwrap()
}

async fn run(python: &str) {
    let mut fake = support::FakePve::start_with(
        python,
        LAUNCHER,
        support::Options {
            nodes: 3,
            vms: VMS,
            import_content: true,
            time_scale: 0.0,
        },
    )
    .await
    .expect("fakepve starts");
    let providers = infraflux::commands::providers();
    let proxmox = providers.get("proxmox").unwrap().clone();
    let connection = connection(&fake);

    // State as after adopting the 300 VMs: one deep read.
    let items: Vec<ReadItem> = (FIRST_VMID..FIRST_VMID + VMS)
        .map(|vmid| {
            let mut prior = connection.clone();
            prior.insert(
                "node".into(),
                json!(NODES[((vmid - FIRST_VMID) % 3) as usize]),
            );
            prior.insert("image".into(), json!("local:import/talos-v1.13.9.raw"));
            prior.insert(
                "vmid_range".into(),
                json!([FIRST_VMID, FIRST_VMID + VMS - 1]),
            );
            ReadItem {
                resource: ResourceRef {
                    address: addr("proxmox_vm", &format!("bench-{vmid}")).to_string(),
                    kind: "proxmox_vm".into(),
                },
                id: vmid.to_string(),
                prior,
            }
        })
        .collect();
    let read = proxmox
        .read(ReadRequest {
            resources: items,
            deep: true,
        })
        .await
        .expect("deep read");
    let mut state = StateDocument::new("bench");
    let mut desired = Vec::new();
    for result in read.results {
        let ReadOutcome::Found(attributes) = result.outcome else {
            panic!("{}: not found", result.address);
        };
        let address: ResourceAddr = result.address.parse().unwrap();
        let memory = attributes["memory_mib"].as_u64().unwrap();
        desired.push(vm(&address.name, attributes.clone(), memory, false));
        state.resources.insert(
            address,
            ResourceState {
                kind: "proxmox_vm".into(),
                provider: "proxmox".into(),
                id: Some(attributes["vmid"].to_string()),
                attributes: attributes.into(),
                sensitive: vec!["token".into()],
                dependencies: Vec::new(),
                status: ResourceStatus::Ready,
            },
        );
    }
    desired.sort_by(|a, b| a.address.cmp(&b.address));

    // 1. Nothing changed: plan (refresh + placement + provider plans).
    let before = requests(&mut fake).await;
    let started = Instant::now();
    let unchanged = plan(desired.clone(), &state, &providers, &PlanOptions::default())
        .await
        .expect("plan");
    let plan_time = started.elapsed();
    let plan_calls = requests(&mut fake).await - before;
    let changes = unchanged
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .count();
    println!("fakepve: {VMS} VMs on 3 nodes, one endpoint");
    println!(
        "plan, nothing changed : {VMS} VMs, {changes} changes, {} drift, {plan_calls} API calls ({:.4}/VM), {:.0} ms",
        unchanged.drift.len(),
        plan_calls as f64 / f64::from(VMS),
        plan_time.as_secs_f64() * 1000.0
    );

    // 2. With latency: the images (with one VM per node), then one create alone to
    //    calibrate, then the 30 at parallelism 10.
    fake.expect(json!({"op": "time_scale", "value": TIME_SCALE}))
        .await;
    fake.expect(json!({"op": "slow_network", "latency": LATENCY}))
        .await;
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let mut wanted = desired.clone();
    wanted.extend(images_of(&connection));
    wanted.extend((0..3).map(|i| new_vm(i, &connection)));
    let first = plan_and_apply(&wanted, state, &providers, &store, &mut fake).await;
    wanted.push(new_vm(3, &connection));
    let one = plan_and_apply(&wanted, first.state, &providers, &store, &mut fake).await;
    wanted.extend((4..4 + CREATES).map(|i| new_vm(i, &connection)));
    let many = plan_and_apply(&wanted, one.state, &providers, &store, &mut fake).await;
    let state = many.state;
    let failures = first.failures + one.failures + many.failures;
    let lock_failures = first.lock_failures + one.lock_failures + many.lock_failures;
    // The bound of one create at a time per node and storage (the provider's limit
    // before storage slots): the busiest node's share of the 30, back to back.
    let mut per_node = BTreeMap::<String, usize>::new();
    for resource in state.resources.values().filter(|r| {
        r.kind == "proxmox_vm"
            && r.attributes.parse()["name"]
                .as_str()
                .and_then(|n| n.strip_prefix("new-"))
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= 4)
    }) {
        *per_node
            .entry(
                resource.attributes.parse()["node"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_default() += 1;
    }
    let busiest = per_node.values().copied().max().unwrap_or(0);
    let ideal = one.wall.mul_f64(busiest as f64);
    println!(
        "from here on: {:.0} ms of latency per request, tasks at {TIME_SCALE} × PVE's durations",
        LATENCY * TIME_SCALE * 1000.0
    );
    println!(
        "images + 3 VMs        : {:.0} ms",
        first.wall.as_secs_f64() * 1000.0
    );
    println!(
        "one create alone      : {:.0} ms, {} API calls in the apply (apply of one new VM)",
        one.wall.as_secs_f64() * 1000.0,
        one.apply_calls
    );
    println!(
        "{CREATES} creates at --parallelism {PARALLELISM}: {} failed ({} on a lock), spread {per_node:?}",
        many.failures, many.lock_failures
    );
    println!(
        "  API calls           : plan {} + apply {} = {:.2}/VM in the apply, {:.2}/VM with the plan",
        many.plan_calls,
        many.apply_calls,
        many.apply_calls as f64 / CREATES as f64,
        (many.plan_calls + many.apply_calls) as f64 / CREATES as f64,
    );
    println!(
        "  wall                : apply {:.0} ms; one at a time: {busiest} × one create = {:.0} ms; ratio {:.2}",
        many.wall.as_secs_f64() * 1000.0,
        ideal.as_secs_f64() * 1000.0,
        many.wall.as_secs_f64() / ideal.as_secs_f64().max(f64::EPSILON)
    );
    // The same with the images managed too: one listing shows each image's storage
    // usage, unchanged, so no storage is listed.
    fake.expect(json!({"op": "slow_network", "latency": 0.0}))
        .await;
    let before = requests(&mut fake).await;
    let everything = plan(wanted.clone(), &state, &providers, &PlanOptions::default())
        .await
        .expect("plan");
    let all_calls = requests(&mut fake).await - before;
    let images = state
        .resources
        .values()
        .filter(|r| r.kind == "proxmox_image")
        .count();
    let all_changes = everything
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .count();
    println!(
        "plan, nothing changed : {} VMs + {images} images, {all_changes} changes, {} drift, {all_calls} API calls",
        state.resources.len() - images,
        everything.drift.len(),
    );
    fake.stop().await;
    if plan_calls > 3 || all_calls > 3 || changes + all_changes > 0 || failures > 0 {
        eprintln!(
            "proxmox_engine bench: FAILED (refresh calls {plan_calls} and {all_calls} with images, changes {}, create failures {failures} ({lock_failures} on a lock))",
            changes + all_changes
        );
        std::process::exit(1);
    }
}

/// What one plan and apply did.
struct Applied {
    state: StateDocument,
    /// The apply's wall time (the plan's not included).
    wall: Duration,
    plan_calls: u64,
    apply_calls: u64,
    failures: usize,
    /// Failures PVE's locks caused ("can't lock file … got timeout", "VM is locked").
    lock_failures: usize,
}

/// Plan `desired` against `state` and apply it at [`PARALLELISM`], counting the fake's
/// requests for each.
async fn plan_and_apply(
    desired: &[DesiredResource],
    state: StateDocument,
    providers: &infraflux::registry::ProviderRegistry,
    store: &Arc<dyn StateStore>,
    fake: &mut support::FakePve,
) -> Applied {
    let before = requests(fake).await;
    let planned = plan(desired.to_vec(), &state, providers, &PlanOptions::default())
        .await
        .expect("plan");
    let planned_at = requests(fake).await;
    let started = Instant::now();
    let summary = apply(
        &planned,
        state,
        store.clone(),
        providers,
        Arc::new(NoReporter),
        &ApplyOptions {
            parallelism: PARALLELISM,
            ..ApplyOptions::default()
        },
    )
    .await
    .expect("apply runs");
    let wall = started.elapsed();
    let applied_at = requests(fake).await;
    for failure in &summary.failed {
        eprintln!("{}: {}", failure.address, failure.message);
    }
    let lock_failures = summary
        .failed
        .iter()
        .filter(|f| f.message.contains("lock"))
        .count();
    Applied {
        state: summary.state,
        wall,
        plan_calls: planned_at - before,
        apply_calls: applied_at - planned_at,
        failures: summary.failed.len(),
        lock_failures,
    }
}
