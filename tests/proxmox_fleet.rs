//! 30 VMs (and one image per node) created over 3 nodes through the engine and the real
//! Proxmox provider against fakepve, at a parallelism above the storage-lock limit:
//!
//! - the tasks that take PVE's storage lock (create, resize, destroy — see
//!   providers/proxmox/src/provider/storage_slots.rs) never run more at once on a node's
//!   storage than `storage_concurrency` allows, and do reach it (so creates pipeline);
//!   fakepve's tasks are given a duration so that overlapping ones are seen overlapping;
//! - every VM is made once, as configured, and running; deleting them all keeps to the
//!   setting too and leaves none.
//!
//! Needs `INFRAFLUX_FAKEPVE_PYTHON` (see providers/proxmox/tests/support); without it
//! each test prints why it is skipped.

#[path = "../providers/proxmox/tests/support/mod.rs"]
mod fakepve;
#[path = "../benches/fleet/mod.rs"]
mod fleet;

use std::collections::BTreeSet;

use infraflux_proxmox::provider::storage_slots::DEFAULT_STORAGE_CONCURRENCY;
use serde_json::{Value, json};

const VMS: usize = 30;

macro_rules! python_or_skip {
    () => {
        match fakepve::python() {
            Ok(python) => python,
            Err(reason) => {
                eprintln!("{reason}");
                return;
            }
        }
    };
}

/// Create the fleet with `storage_concurrency` (the default when `None`); returns the
/// most storage-locking tasks seen at once per node, and fakepve's VMs. With `destroy`,
/// then deletes it all and returns the most seen then too.
async fn create_fleet(
    python: &str,
    storage_concurrency: Option<usize>,
    destroy: bool,
) -> (Value, Value, Option<Value>) {
    let mut fake = fakepve::FakePve::start_with(
        python,
        fleet::LAUNCHER,
        fakepve::Options {
            nodes: 3,
            vms: 0,
            import_content: true,
            // Tasks and latency in real time at 1/100 of PVE's: the download 50 ms.
            time_scale: 0.01,
        },
    )
    .await
    .expect("fakepve starts");
    // Each storage-locking task 20 ms, each answer 2 ms.
    fake.expect(json!({"op": "storage_task_secs", "value": 2.0}))
        .await;
    fake.expect(json!({"op": "slow_network", "latency": 0.2}))
        .await;
    let connection = fleet::connection(&fake.url, &fake.fingerprint, storage_concurrency);
    let applied = fleet::plan_and_apply(fleet::desired(VMS, &connection), Some(VMS + 3)).await;
    let failures: Vec<String> = applied
        .summary
        .failed
        .iter()
        .map(|f| format!("{}: {}", f.address, f.message))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    let most = fake.expect(json!({"op": "storage_tasks_most"})).await;
    let vms = fake.expect(json!({"op": "vms"})).await;
    let destroyed = if destroy {
        fake.expect(json!({"op": "storage_tasks_reset"})).await;
        let summary = fleet::destroy_all(applied.summary.state, VMS + 3).await;
        let failures: Vec<String> = summary
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.address, f.message))
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(summary.state.resources.is_empty(), "everything deleted");
        let left = fake.expect(json!({"op": "vms"})).await;
        assert!(fleet::names(&left).is_empty(), "no VM left: {left}");
        Some(fake.expect(json!({"op": "storage_tasks_most"})).await)
    } else {
        None
    };
    fake.stop().await;
    (most, vms, destroyed)
}

/// Every VM once, 10 per node, running, as configured.
fn assert_fleet_made(vms: &Value) {
    let ours: Vec<&Value> = vms
        .as_array()
        .unwrap()
        .iter()
        .filter(|vm| {
            vm["vmid"]
                .as_u64()
                .is_some_and(|v| (7000..8000).contains(&v))
        })
        .collect();
    assert_eq!(
        ours.len(),
        VMS,
        "one VM per resource, no duplicate or orphan"
    );
    let names: BTreeSet<&str> = ours.iter().filter_map(|vm| vm["name"].as_str()).collect();
    let expected: BTreeSet<String> = (0..VMS).map(|i| format!("vm-{i}")).collect();
    assert_eq!(
        names,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    let per_node = fleet::per_node(vms);
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
    for vm in ours {
        let name = vm["name"].as_str().unwrap();
        let config = &vm["config"];
        assert_eq!(vm["status"], "running", "{name}");
        let scsi0 = config["scsi0"].as_str().unwrap_or_default();
        assert!(
            scsi0.starts_with(&format!("{}:", fleet::STORAGE))
                && scsi0.contains(&format!("size={}G", fleet::DISK_GIB)),
            "{name}: boot disk {scsi0}"
        );
        let index: usize = name.trim_start_matches("vm-").parse().unwrap();
        assert_eq!(
            config["ipconfig0"],
            format!("ip=10.2.0.{}/24,gw=10.2.0.1", index + 10),
            "{name}"
        );
        assert!(
            config["description"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("proxmox_vm.{name})"))),
            "{name}: marker"
        );
        assert_eq!(config["tags"], "fleet;infraflux", "{name}");
    }
}

fn most_per_node(most: &Value) -> Vec<u64> {
    fleet::NODES
        .iter()
        .map(|node| most[node].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_locking_tasks_stay_within_the_setting_and_every_vm_is_made() {
    let python = python_or_skip!();
    let (most, vms, destroyed) = create_fleet(&python, Some(2), true).await;
    // At most 2 at once on each node's storage, and 2 reached: the 10 creates of a node
    // overlap, never beyond the setting.
    assert_eq!(most_per_node(&most), [2, 2, 2], "{most}");
    assert_fleet_made(&vms);
    // The deletes too.
    let destroyed = destroyed.unwrap();
    assert_eq!(most_per_node(&destroyed), [2, 2, 2], "{destroyed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_storage_concurrency_holds_at_a_parallelism_above_it() {
    let python = python_or_skip!();
    let (most, vms, _) = create_fleet(&python, None, false).await;
    let most = most_per_node(&most);
    assert!(
        most.iter()
            .all(|n| (2..=DEFAULT_STORAGE_CONCURRENCY as u64).contains(n)),
        "at most {DEFAULT_STORAGE_CONCURRENCY} storage-locking tasks at once per node, and several: {most:?}"
    );
    assert_fleet_made(&vms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_at_a_time_when_the_setting_says_so() {
    let python = python_or_skip!();
    let (most, vms, _) = create_fleet(&python, Some(1), false).await;
    assert_eq!(most_per_node(&most), [1, 1, 1], "{most}");
    assert_fleet_made(&vms);
}
