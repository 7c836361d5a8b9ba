//! Day 2: scaling pools in and out through the engine (mock providers, a copy of the
//! shipped configuration edited as a user edits it). A machine keeps its address, VM and
//! machine config whatever happens to the other pools; a plan touches only the machines
//! added or removed; a scale-in that would lose etcd quorum is refused at the count that
//! changed; state written before identities were recorded plans no change.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use infraflux::state::{LocalStore, StateDocument};
use infraflux_provider_mock::Op;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::Run;
use support::engine::Engine;

/// The dev override of clusters/workload.yaml every edit below starts from.
const DEV: &str = "  dev:\n    template: small\n";

/// What a user sees of one machine: its address, its VM (the provider's ID) and Proxmox
/// node, and the digest of the machine config it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Machine {
    address: String,
    vm: String,
    node: String,
    config: String,
}

fn document(harness: &Engine) -> StateDocument {
    harness.state().load("dev").unwrap().expect("dev has state")
}

/// Every machine of dev/workload in state, by name.
fn machines(harness: &Engine) -> BTreeMap<String, Machine> {
    let state = document(harness);
    let mut found = BTreeMap::new();
    for (address, vm) in &state.resources {
        if address.kind != "proxmox_vm" {
            continue;
        }
        let config = state
            .resources
            .iter()
            .find(|(a, _)| a.kind == "talos_machine_config" && a.name == address.name)
            .map(|(_, config)| {
                let text = serde_json::to_string(&config.attributes).unwrap();
                hex(&Sha256::digest(text.as_bytes()))
            })
            .unwrap_or_default();
        found.insert(
            address.name.clone(),
            Machine {
                address: vm.attributes.parse()["ipv4"].as_str().unwrap().to_string(),
                vm: vm.id.clone().unwrap(),
                node: vm.attributes.parse()["node"].as_str().unwrap().to_string(),
                config,
            },
        );
    }
    found
}

/// `text` with every run of white space (a diagnostic wrapped to the terminal) as one
/// space.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The plan's changes other than no-ops, as `(type, name, action)`.
fn planned(harness: &Engine) -> BTreeSet<(String, String, String)> {
    let run = harness.run(&["plan", "--env", "dev", "--json"]).success();
    let plan: Value = serde_json::from_str(&run.stdout).expect("one JSON plan");
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op")
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap().to_string();
            (text("type"), text("name"), text("action"))
        })
        .collect()
}

fn changes(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

fn apply(harness: &Engine) -> Run {
    harness
        .run(&["apply", "--env", "dev", "--auto-approve"])
        .success()
}

/// `before`'s machines are in `after`, unchanged.
fn untouched(
    before: &BTreeMap<String, Machine>,
    after: &BTreeMap<String, Machine>,
    names: &[&str],
) {
    for name in names {
        assert_eq!(before.get(*name), after.get(*name), "`{name}` was touched");
    }
}

fn deletes(harness: &Engine) -> usize {
    harness.mocks.iter().map(|m| m.count(Op::Delete)).sum()
}

/// Set the dev control-plane count of dev/workload (an override in the cluster file).
fn control_planes(project: &std::path::Path, from: Option<u32>, to: u32) {
    let (old, new) = match from {
        None => (
            DEV.to_string(),
            format!("{DEV}    control_plane:\n      count: {to}\n"),
        ),
        Some(from) => (
            format!("    control_plane:\n      count: {from}\n"),
            format!("    control_plane:\n      count: {to}\n"),
        ),
    };
    edit(project, "clusters/workload.yaml", &old, &new);
}

/// The lab's report, through the engine: the control plane grows 1 → 3 and back down
/// as far as etcd allows in one step, and the worker never moves.
#[test]
fn the_control_plane_grows_and_shrinks_without_touching_other_machines() {
    let project = support::TestContext::with_example();
    let harness = Engine::new().config(&project.path().join("config"));
    apply(&harness);
    let first = machines(&harness);
    assert_eq!(first["cp-1"].address, "10.10.0.10/24");
    assert_eq!(first["general-1"].address, "10.10.0.11/24");

    // 1 → 3: two control planes and the image on the node the third one lands on.
    control_planes(project.path(), None, 3);
    assert_eq!(
        planned(&harness),
        changes(&[
            ("proxmox_vm", "cp-2", "create"),
            ("proxmox_vm", "cp-3", "create"),
            ("talos_machine_config", "cp-2", "create"),
            ("talos_machine_config", "cp-3", "create"),
            ("proxmox_image", "v1.13.9-a21512b3-pve3", "create"),
        ])
    );
    apply(&harness);
    let grown = machines(&harness);
    untouched(&first, &grown, &["cp-1", "general-1"]);
    assert_eq!(grown["cp-2"].address, "10.10.0.12/24");
    assert_eq!(grown["cp-3"].address, "10.10.0.13/24");
    // Each control plane on its own node.
    let nodes: BTreeSet<&str> = ["cp-1", "cp-2", "cp-3"]
        .iter()
        .map(|name| grown[*name].node.as_str())
        .collect();
    assert_eq!(nodes.len(), 3);
    // State records every identity.
    let state = document(&harness);
    let recorded: Vec<(&str, String)> = state
        .machines
        .iter()
        .map(|(_, name, identity)| (name, identity.address.to_string()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("cp-1", "10.10.0.10".to_string()),
            ("cp-2", "10.10.0.12".to_string()),
            ("cp-3", "10.10.0.13".to_string()),
            ("general-1", "10.10.0.11".to_string()),
        ]
    );
    assert_eq!(planned(&harness), changes(&[]));

    // 3 → 1 in one step: two of three etcd members gone at once. Refused, at the count.
    control_planes(project.path(), Some(3), 1);
    let refused = harness.run(&["plan", "--env", "dev"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("removing 2 of 3 control planes at once (cp-2, cp-3) loses etcd quorum"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("clusters/workload.yaml:8:14]"),
        "reported at the count: {}",
        refused.stderr
    );
    assert!(
        flat(&refused.stderr).contains("set `control_plane.count: 2`, apply, then lower it again"),
        "{}",
        refused.stderr
    );
    insta::with_settings!({filters => vec![(r"[^\s\[]*/config/", "[CONFIG]/")]}, {
        insta::assert_snapshot!("three_to_one_refused", refused.stderr);
    });
    let refused = harness.run(&["apply", "--env", "dev", "--auto-approve"]);
    assert_eq!(refused.code, 1);
    assert_eq!(deletes(&harness), 0, "nothing was removed");

    // 3 → 2 keeps a majority: only cp-3 goes, with a warning for the even count.
    control_planes(project.path(), Some(1), 2);
    let plan = harness.run(&["plan", "--env", "dev"]).success();
    assert!(
        plan.stderr
            .contains("2 control planes tolerate no more failures than 1"),
        "{}",
        plan.stderr
    );
    assert_eq!(
        planned(&harness),
        changes(&[
            ("proxmox_vm", "cp-3", "delete"),
            ("talos_machine_config", "cp-3", "delete"),
        ])
    );
    apply(&harness);
    let shrunk = machines(&harness);
    untouched(&grown, &shrunk, &["cp-1", "cp-2", "general-1"]);
    assert!(!shrunk.contains_key("cp-3"));
    assert!(
        document(&harness)
            .machines
            .get("workload", "cp-3")
            .is_none()
    );

    // 2 → 1: one at a time is allowed (the member leaves etcd before its VM goes).
    control_planes(project.path(), Some(2), 1);
    assert_eq!(
        planned(&harness),
        changes(&[
            ("proxmox_vm", "cp-2", "delete"),
            ("talos_machine_config", "cp-2", "delete"),
        ])
    );
    apply(&harness);
    let back = machines(&harness);
    untouched(&first, &back, &["cp-1", "general-1"]);
    assert_eq!(back.len(), 2);
}

#[test]
fn a_worker_pool_grows_and_shrinks_without_touching_other_machines() {
    let project = support::TestContext::with_example();
    let harness = Engine::new().config(&project.path().join("config"));
    apply(&harness);
    let first = machines(&harness);

    edit(
        project.path(),
        "clusters/workload.yaml",
        DEV,
        &format!("{DEV}    workers:\n      - {{name: general, count: 3}}\n"),
    );
    assert_eq!(
        planned(&harness),
        changes(&[
            ("proxmox_vm", "general-2", "create"),
            ("proxmox_vm", "general-3", "create"),
            ("talos_machine_config", "general-2", "create"),
            ("talos_machine_config", "general-3", "create"),
            ("proxmox_image", "v1.13.9-a21512b3-pve3", "create"),
        ])
    );
    apply(&harness);
    let grown = machines(&harness);
    untouched(&first, &grown, &["cp-1", "general-1"]);
    assert_eq!(grown["general-2"].address, "10.10.0.12/24");
    assert_eq!(grown["general-3"].address, "10.10.0.13/24");

    // Workers hold no quorum: two go at once.
    edit(
        project.path(),
        "clusters/workload.yaml",
        "count: 3}",
        "count: 1}",
    );
    assert_eq!(
        planned(&harness),
        changes(&[
            ("proxmox_vm", "general-2", "delete"),
            ("proxmox_vm", "general-3", "delete"),
            ("talos_machine_config", "general-2", "delete"),
            ("talos_machine_config", "general-3", "delete"),
        ])
    );
    apply(&harness);
    let back = machines(&harness);
    assert_eq!(back, first);

    // A control plane added now takes the lowest address free again.
    control_planes(project.path(), None, 3);
    apply(&harness);
    let after = machines(&harness);
    untouched(&first, &after, &["cp-1", "general-1"]);
    assert_eq!(after["cp-2"].address, "10.10.0.12/24");
    assert_eq!(after["cp-3"].address, "10.10.0.13/24");
}

/// A removed machine whose deletion failed is still in state: its address is not given
/// to a machine added meanwhile.
#[test]
fn the_address_of_a_machine_still_being_removed_is_not_reused() {
    let project = support::TestContext::with_example();
    let harness = Engine::new().config(&project.path().join("config"));
    edit(
        project.path(),
        "clusters/workload.yaml",
        DEV,
        &format!("{DEV}    workers:\n      - {{name: general, count: 2}}\n"),
    );
    apply(&harness);
    assert_eq!(machines(&harness)["general-2"].address, "10.10.0.12/24");

    edit(
        project.path(),
        "clusters/workload.yaml",
        "count: 2}",
        "count: 1}",
    );
    harness.mocks[0].fail(
        Op::Delete,
        "dev/workload/proxmox_vm.general-2",
        "VM is locked",
    );
    let failed = harness.run(&["apply", "--env", "dev", "--auto-approve"]);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(
        document(&harness)
            .machines
            .get("workload", "general-2")
            .is_some()
    );

    control_planes(project.path(), None, 2);
    let plan = planned(&harness);
    assert!(
        plan.contains(&("proxmox_vm".into(), "general-2".into(), "delete".into())),
        "{plan:?}"
    );
    let run = harness.run(&["plan", "--env", "dev", "--json"]).success();
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let cp2 = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "dev/workload/proxmox_vm.cp-2")
        .unwrap();
    assert_eq!(cp2["after"]["ipv4"], "10.10.0.13/24");
}

/// State written by the version before identities were recorded (format 1, no
/// `machines`): the first plan finds every machine where it is and changes nothing; the
/// identities are recorded by the next apply, and scaling from there moves nothing.
#[test]
fn state_written_before_identities_were_recorded_plans_no_change() {
    let project = support::TestContext::with_example();
    let state_dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state_dir.path());
    let path = store.state_path("dev");
    let harness = Engine::new()
        .config(&project.path().join("config"))
        .store(Arc::new(store));
    apply(&harness);
    let first = machines(&harness);

    // As the previous version wrote it.
    let mut envelope: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(envelope.remove("machines").is_some());
    envelope.remove("checksum");
    envelope.insert("format_version".into(), 1.into());
    let checksum = infraflux::state::format::sha256_checksum(&envelope);
    envelope.insert("checksum".into(), checksum.into());
    std::fs::write(&path, serde_json::to_vec_pretty(&envelope).unwrap()).unwrap();

    let plan = harness.run(&["plan", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);

    // The first scaling after the upgrade: the identities are adopted from the VMs and
    // machine configs, so the worker stays where it is (a fresh allocation would move
    // it to .13).
    control_planes(project.path(), None, 3);
    assert_eq!(
        planned(&harness),
        changes(&[
            ("proxmox_vm", "cp-2", "create"),
            ("proxmox_vm", "cp-3", "create"),
            ("talos_machine_config", "cp-2", "create"),
            ("talos_machine_config", "cp-3", "create"),
            ("proxmox_image", "v1.13.9-a21512b3-pve3", "create"),
        ])
    );
    apply(&harness);
    let grown = machines(&harness);
    untouched(&first, &grown, &["cp-1", "general-1"]);
    let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written["format_version"], infraflux::state::FORMAT_VERSION);
    let recorded = &written["machines"]["workload"];
    assert_eq!(recorded["general-1"]["address"], "10.10.0.11");
    assert_eq!(recorded["general-1"]["pool"], "general");
    assert_eq!(recorded["cp-3"]["address"], "10.10.0.13");
}

/// An apply with nothing to change records the identities adopted from older state.
#[test]
fn an_apply_with_nothing_to_change_records_adopted_identities() {
    let harness = Engine::new();
    apply(&harness);
    let mut state = document(&harness);
    assert!(!state.machines.is_empty());
    state.machines = Default::default();
    state.serial += 1;
    harness.state().persist(&state).unwrap();
    let run = apply(&harness);
    assert!(run.stdout.contains("No changes."), "{}", run.stdout);
    let state = document(&harness);
    assert_eq!(
        state
            .machines
            .get("workload", "general-1")
            .map(|m| m.address.to_string()),
        Some("10.10.0.11".to_string())
    );
}

/// A pinned address and node are what the machine gets.
#[test]
fn a_pinned_address_and_node_are_kept() {
    let project = support::TestContext::with_example();
    let harness = Engine::new().config(&project.path().join("config"));
    edit(
        project.path(),
        "clusters/workload.yaml",
        DEV,
        &format!(
            "{DEV}    workers:\n      - name: general\n        machines:\n          general-1: {{address: 10.10.0.40, node: pve3}}\n"
        ),
    );
    apply(&harness);
    let machines = machines(&harness);
    assert_eq!(machines["general-1"].address, "10.10.0.40/24");
    assert_eq!(machines["general-1"].node, "pve3");
    assert_eq!(machines["cp-1"].address, "10.10.0.10/24");
    assert_eq!(planned(&harness), changes(&[]));
}

/// Pinning a running machine to a new address replaces its VM there, and the machine
/// keeps that address when the pin is taken out again.
#[test]
fn a_pinned_address_becomes_the_machines_own() {
    let project = support::TestContext::with_example();
    let harness = Engine::new().config(&project.path().join("config"));
    apply(&harness);
    let first = machines(&harness);
    let pinned = format!(
        "{DEV}    workers:\n      - name: general\n        machines:\n          general-1: {{address: 10.10.0.40}}\n"
    );
    edit(project.path(), "clusters/workload.yaml", DEV, &pinned);
    let plan = planned(&harness);
    assert!(
        plan.contains(&(
            "proxmox_vm".into(),
            "general-1".into(),
            "delete-then-create".into()
        )),
        "{plan:?}"
    );
    assert!(
        plan.iter().all(|(_, name, _)| name == "general-1"),
        "only general-1 changes: {plan:?}"
    );
    apply(&harness);
    let moved = machines(&harness);
    assert_eq!(moved["general-1"].address, "10.10.0.40/24");
    untouched(&first, &moved, &["cp-1"]);

    edit(project.path(), "clusters/workload.yaml", &pinned, DEV);
    assert_eq!(planned(&harness), changes(&[]));
}

/// Replace the first `from` by `to` in the project's `config/<file>`, which must contain
/// it: an edit as a user makes it.
fn edit(project: &std::path::Path, file: &str, from: &str, to: &str) {
    let path = project.join("config").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}
