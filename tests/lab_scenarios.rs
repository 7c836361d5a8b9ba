//! Day-2 scenarios in the local lab, end to end through the real providers: after a first
//! `bootstrap`, a user edits the configuration and the next run carries the edit to the
//! (simulated) machines and cluster — and nothing else. Loopback only, each command
//! bounded in time, the lab stopped by a drop guard.
//!
//! A second `bootstrap` that changes nothing is covered by tests/bootstrap_lab.rs.

mod support;

use std::path::Path;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use support::TestContext;
use support::lab::{LabUp, project};

/// `bootstrap --env dev` without asking, bounded, as a user runs it after an edit.
const BOOTSTRAP: [&str; 6] = [
    "bootstrap",
    "--env",
    "dev",
    "--auto-approve",
    "--timeout",
    "60s",
];

/// The plan's changes other than no-ops, as `(type, action)`.
fn planned(lab: &LabUp<'_>) -> Vec<(String, String)> {
    planned_names(lab)
        .into_iter()
        .map(|(kind, _, action)| (kind, action))
        .collect()
}

/// A lab with `dev` bootstrapped to ready.
fn bootstrapped(project: &TestContext) -> LabUp<'_> {
    let lab = LabUp::start(project, "dev");
    let first = lab.run(&BOOTSTRAP).success();
    assert!(
        first
            .output()
            .contains("Apply complete! Resources: 15 added"),
        "{first:?}"
    );
    assert_eq!(planned(&lab), [], "a fresh bootstrap leaves nothing to do");
    lab
}

/// Replace `from` by `to` in the project's `config/<file>`, which must contain it.
fn edit(project: &Path, file: &str, from: &str, to: &str) {
    let path = project.join("config").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// The lab's record of a node's `talos_machine_config` in dev/workload (`null` if none).
fn machine_config_record(project: &Path, node: &str) -> Value {
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join(".infraflux/lab/.infraflux/state/dev.json")).unwrap(),
    )
    .unwrap();
    state["resources"][format!("dev/workload/talos_machine_config.{node}")].clone()
}

/// The recorded attributes of a node's `talos_machine_config` in dev/workload.
fn machine_config_state(project: &Path, node: &str) -> Value {
    machine_config_record(project, node)["attributes"].clone()
}

/// The regression terraform-provider-talos #195 has: a machine-config patch added after
/// the nodes are configured must reach them, as an in-place update of each node's
/// machine config (not ignored, and not a new VM).
#[test]
fn a_talos_patch_added_later_updates_the_machine_configs_in_place() {
    let project = project();
    let lab = bootstrapped(&project);

    edit(
        project.path(),
        "defaults/cluster.yaml",
        "  install_disk: /dev/sda\n",
        "  install_disk: /dev/sda\n  patches:\n    - machine:\n        sysctls:\n          net.core.somaxconn: \"65535\"\n",
    );
    let changes = planned(&lab);
    assert!(!changes.is_empty(), "the patch was ignored");
    assert!(
        changes
            .iter()
            .all(|(kind, action)| kind == "talos_machine_config" && action == "update"),
        "only the machine configs change, in place: {changes:?}"
    );
    // One per node of dev/workload (a control-plane node and a worker).
    assert_eq!(changes.len(), 2, "{changes:?}");

    let human = lab.run(&["plan", "--env", "dev"]).success();
    assert!(
        human
            .stdout
            .contains("Plan: 0 to add, 2 to change, 0 to destroy."),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("will be updated in-place"),
        "{}",
        human.stdout
    );

    // The plan shows what the nodes will get (secrets masked).
    assert!(
        human.stdout.contains("net.core.somaxconn: '65535'"),
        "{}",
        human.stdout
    );

    let second = lab.run(&BOOTSTRAP).success();
    assert!(
        second
            .output()
            .contains("Apply complete! Resources: 0 added, 2 changed, 0 destroyed."),
        "{second:?}"
    );
    for node in ["cp-1", "general-1"] {
        assert!(
            second.stderr.contains(&format!(
                "dev/workload/talos_machine_config.{node}: Modifications complete"
            )),
            "{}",
            second.stderr
        );
        // What the node answered to this apply (a configured node takes a patch like
        // this one without rebooting), recorded with the config it was sent.
        let attributes = machine_config_state(project.path(), node);
        assert_eq!(attributes["apply_mode"], "no_reboot", "{node}");
        assert_eq!(
            attributes["apply_details"], "Applied configuration without a reboot",
            "{node}"
        );
        assert!(
            attributes["machine_config_masked"]
                .as_str()
                .unwrap()
                .contains("net.core.somaxconn"),
            "{node}"
        );
    }
    assert!(
        !second.output().contains("proxmox_vm"),
        "the VMs are not touched: {second:?}"
    );
    assert!(
        second
            .stdout
            .contains("Ready signal for dev/workload: ready"),
        "{}",
        second.stdout
    );
    // The nodes hold what the configuration says: nothing left to apply.
    assert_eq!(planned(&lab), []);
}

/// A platform edit (the dev namespaces' quota) is applied on the next run: only the
/// namespace objects change, bootstrap applies them and the cluster is ready again.
#[test]
fn a_platform_change_is_applied_on_the_next_bootstrap() {
    let project = project();
    let lab = bootstrapped(&project);

    edit(
        project.path(),
        "environments/dev.yaml",
        "quota: {cpu: \"4\", memory: 8Gi, pods: 30}",
        "quota: {cpu: \"6\", memory: 8Gi, pods: 40}",
    );
    let changes = planned(&lab);
    assert!(!changes.is_empty(), "the quota change was ignored");
    assert!(
        changes
            .iter()
            .all(|(kind, action)| kind == "kubernetes_namespace" && action == "update"),
        "only the namespaces change, in place: {changes:?}"
    );

    let second = lab.run(&BOOTSTRAP).success();
    assert!(
        second.output().contains(&format!(
            "Apply complete! Resources: 0 added, {} changed, 0 destroyed.",
            changes.len()
        )),
        "{second:?}"
    );
    assert!(
        second
            .stdout
            .contains("Ready signal for dev/workload: ready"),
        "{}",
        second.stdout
    );
    assert_eq!(planned(&lab), []);
}

/// The network to one node goes mid-apply (its Talos node cuts the connection instead of
/// answering): that node's apply fails and the run fails, what succeeded is recorded,
/// the failed config is not, and the next run converges.
#[test]
fn a_connection_lost_mid_apply_leaves_truthful_state_and_the_next_run_converges() {
    let project = project();
    let lab = LabUp::start_with(
        &project,
        "dev",
        &[("INFRAFLUX_LAB_DROP_FIRST_APPLY", "dev-workload-general-1")],
    );

    let first = lab.run(&BOOTSTRAP);
    assert_ne!(first.code, 0, "{first:?}");
    assert!(
        first
            .output()
            .contains("Apply failed: 14 done, 1 failed, 0 skipped."),
        "{first:?}"
    );
    let output = first.output();
    let failed: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("talos_machine_config") && l.contains("failed"))
        .collect();
    assert!(!failed.is_empty(), "{first:?}");
    assert!(
        failed.iter().all(|l| l.contains("general-1")),
        "only general-1 fails: {failed:?}"
    );
    // Said as it is: the node may or may not have taken the config.
    assert!(
        failed
            .iter()
            .any(|l| l.contains("connection lost mid-call (outcome unknown)")),
        "{failed:?}"
    );
    // Recorded: the control plane's config, which its node acknowledged, as applied;
    // the worker's, whose outcome is unknown, as a create still pending (no ID), not
    // as applied.
    let cp = machine_config_record(project.path(), "cp-1");
    assert_eq!(cp["status"], "ready", "{}", cp["status"]);
    assert_eq!(cp["attributes"]["apply_mode"], "no_reboot");
    let worker = machine_config_record(project.path(), "general-1");
    assert_eq!(worker["status"], "pending_create", "{}", worker["status"]);
    assert!(worker["id"].is_null(), "{}", worker["id"]);
    // No answer from the node is recorded (it is still unknown).
    assert!(
        !worker["attributes"]["apply_details"].is_string(),
        "{}",
        worker["attributes"]["apply_details"]
    );
    let remaining = planned(&lab);
    assert!(
        remaining.contains(&("talos_machine_config".to_string(), "create".to_string())),
        "{remaining:?}"
    );
    assert!(
        remaining.iter().all(|(kind, _)| kind != "proxmox_vm"),
        "{remaining:?}"
    );

    let second = lab.run(&BOOTSTRAP).success();
    assert!(
        second
            .stderr
            .contains("dev/workload/talos_machine_config.general-1: Creation complete"),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stdout
            .contains("Ready signal for dev/workload: ready"),
        "{}",
        second.stdout
    );
    assert_eq!(planned(&lab), []);
}

/// The lab's state of dev.
fn state(project: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(project.join(".infraflux/lab/.infraflux/state/dev.json")).unwrap(),
    )
    .unwrap()
}

/// What identifies a machine of dev/workload and what it was told: its address, its VM
/// (VMID and Proxmox node) and its machine config as recorded (the config sent and the
/// node's answer).
#[derive(Debug, Clone, PartialEq)]
struct Machine {
    address: Ipv4Addr,
    vmid: Value,
    node: Value,
    config: Value,
}

/// Every machine of dev/workload, by name.
fn machines(project: &Path) -> BTreeMap<String, Machine> {
    let state = state(project);
    let resources = state["resources"].as_object().unwrap();
    let prefix = "dev/workload/proxmox_vm.";
    resources
        .iter()
        .filter_map(|(address, vm)| Some((address.strip_prefix(prefix)?, vm)))
        .map(|(name, vm)| {
            let attributes = &vm["attributes"];
            let ipv4 = attributes["ipv4"].as_str().unwrap();
            let config = &resources[&format!("dev/workload/talos_machine_config.{name}")];
            (
                name.to_string(),
                Machine {
                    address: ipv4.split('/').next().unwrap().parse().unwrap(),
                    vmid: attributes["vmid"].clone(),
                    node: attributes["node"].clone(),
                    config: config["attributes"].clone(),
                },
            )
        })
        .collect()
}

/// `machine`'s Talos API (port 50000 of its address, the lab's) with the admin
/// certificate of the cluster's secrets in state, as `talosctl -n <machine>` reaches it;
/// `call` is run on it. `None` when the node does not answer (e.g. rebooting).
fn try_on_node<T>(
    project: &Path,
    machine: &str,
    call: impl AsyncFnOnce(&mut infraflux_talos::api::NodeClient) -> Option<T>,
) -> Option<T> {
    use infraflux_talos::api::{ClientIdentity, ConnectOptions, Credentials, NodeClient};
    use infraflux_talos::secrets::ClusterSecrets;
    let state = state(project);
    let secrets = state["resources"]["dev/workload/talos_secrets.cluster"]["attributes"]
        .as_object()
        .expect("the cluster's secrets in state");
    let identity = ClientIdentity::from_secrets(&ClusterSecrets::from_attributes(secrets).unwrap());
    let endpoint = format!("{}:50000", machines(project)[machine].address);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let credentials = Credentials::Mutual(identity);
        let mut client = NodeClient::connect(&endpoint, &credentials, &ConnectOptions::default())
            .await
            .ok()?;
        call(&mut client).await
    })
}

/// [`try_on_node`] on a node that answers.
fn on_node<T>(
    project: &Path,
    machine: &str,
    call: impl AsyncFnOnce(&mut infraflux_talos::api::NodeClient) -> T,
) -> T {
    try_on_node(project, machine, async |client| Some(call(client).await))
        .unwrap_or_else(|| panic!("{machine} does not answer"))
}

/// The hostnames of dev/workload's etcd members as `machine` lists them: what
/// `talosctl -n <machine> etcd members` shows.
fn etcd_members(project: &Path, machine: &str) -> Vec<String> {
    let members = on_node(project, machine, async |client| {
        client.etcd_members().await.unwrap()
    });
    let mut names: Vec<String> = members.into_iter().map(|m| m.hostname).collect();
    names.sort();
    names
}

/// The Talos version `machine` runs.
fn talos_version(project: &Path, machine: &str) -> String {
    on_node(project, machine, async |client| {
        client.version().await.unwrap().tag
    })
}

/// The names of dev/workload's Node objects, as its Kubernetes API lists them (with the
/// admin kubeconfig in state).
fn node_objects(project: &Path) -> Vec<String> {
    let mut names: Vec<String> = nodes(project)
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Each Node's name and the kubelet version it reports.
fn node_kubelets(project: &Path) -> BTreeMap<String, String> {
    nodes(project)
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// dev/workload's Node objects.
fn nodes(project: &Path) -> Vec<Value> {
    use base64::Engine;
    let state = state(project);
    let kubeconfig =
        state["resources"]["dev/workload/talos_kubeconfig.cluster"]["attributes"]["kubeconfig"]
            .as_str()
            .expect("the kubeconfig in state");
    let kubeconfig: serde_yaml::Value = serde_yaml::from_str(kubeconfig).unwrap();
    let data = |value: &serde_yaml::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap()
    };
    let cluster = &kubeconfig["clusters"][0]["cluster"];
    let user = &kubeconfig["users"][0]["user"];
    let server = cluster["server"].as_str().unwrap().to_string();
    let mut pem = data(&user["client-certificate-data"]);
    pem.extend(data(&user["client-key-data"]));
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&data(&cluster["certificate-authority-data"])).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let list = runtime.block_on(async {
        client
            .get(format!("{server}/api/v1/nodes"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let list: Value = serde_json::from_str(&list).expect("a NodeList");
    list["items"].as_array().unwrap().clone()
}

/// `dev-workload-<name>` for each name: the hostnames of dev/workload's machines.
fn hostnames(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("dev-workload-{n}")).collect()
}

/// `address` + `n`.
fn after(address: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(address) + n)
}

/// The machines named are in both, unchanged.
fn untouched(before: &BTreeMap<String, Machine>, now: &BTreeMap<String, Machine>, names: &[&str]) {
    for name in names {
        assert_eq!(before.get(*name), now.get(*name), "`{name}` was touched");
    }
}

/// `(type, action)` of the plan's changes to these machines, and whether anything else
/// changes (new Talos images aside: a machine on a new Proxmox node needs one).
fn machine_changes(lab: &LabUp<'_>) -> BTreeSet<(String, String)> {
    let changes = planned_names(lab);
    for (kind, name, action) in &changes {
        assert!(
            matches!(kind.as_str(), "proxmox_vm" | "talos_machine_config")
                || (kind == "proxmox_image" && action == "create"),
            "{kind}.{name} {action}: only machines added or removed may change"
        );
    }
    changes
        .into_iter()
        .filter(|(kind, _, _)| kind != "proxmox_image")
        .map(|(kind, name, action)| (format!("{kind}.{name}"), action))
        .collect()
}

/// The plan's changes other than no-ops, as `(type, name, action)`.
fn planned_names(lab: &LabUp<'_>) -> Vec<(String, String, String)> {
    let run = lab.run(&["plan", "--env", "dev", "--json"]).success();
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

fn expect(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Issue 13, as a user tried it on the lab: growing the dev control plane from 1 to 3
/// used to move `general-1` to another address (its VM replaced, its machine config
/// rewritten, the apply failing), and shrinking it deleted VMs that were still etcd
/// members. Now each step touches only the machines it adds or removes, and etcd's
/// membership follows every step: 1 → 3 (both join), 3 → 1 refused (two of three
/// members at once), 3 → 2 with a warning for the even count (cp-3 leaves etcd before
/// its VM goes), 2 → 1 (cp-2 leaves), and a worker pool 1 → 2 → 1.
#[test]
fn scaling_pools_touches_only_the_machines_added_or_removed() {
    let project = project();
    let lab = bootstrapped(&project);
    let first = machines(project.path());
    let start = first["cp-1"].address;
    assert_eq!(first["general-1"].address, after(start, 1));
    assert_eq!(etcd_members(project.path(), "cp-1"), hostnames(&["cp-1"]));

    // The control plane 1 → 3.
    edit(
        project.path(),
        "clusters/workload.yaml",
        "  dev:\n    template: small\n",
        "  dev:\n    template: small\n    control_plane:\n      count: 3\n",
    );
    assert_eq!(
        machine_changes(&lab),
        expect(&[
            ("proxmox_vm.cp-2", "create"),
            ("proxmox_vm.cp-3", "create"),
            ("talos_machine_config.cp-2", "create"),
            ("talos_machine_config.cp-3", "create"),
        ])
    );
    let grow = lab.run(&BOOTSTRAP).success();
    assert!(
        grow.stdout.contains("Ready signal for dev/workload: ready"),
        "{}",
        grow.stdout
    );
    let grown = machines(project.path());
    untouched(&first, &grown, &["cp-1", "general-1"]);
    assert_eq!(
        node_objects(project.path()),
        hostnames(&["cp-1", "cp-2", "cp-3", "general-1"])
    );
    assert_eq!(grown["cp-2"].address, after(start, 2));
    assert_eq!(grown["cp-3"].address, after(start, 3));
    assert_eq!(planned(&lab), []);
    assert_eq!(
        etcd_members(project.path(), "cp-1"),
        hostnames(&["cp-1", "cp-2", "cp-3"])
    );

    // 3 → 1 in one step: refused at the count, nothing touched.
    edit(
        project.path(),
        "clusters/workload.yaml",
        "count: 3\n",
        "count: 1\n",
    );
    let refused = lab.run(&["plan", "--env", "dev"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused
            .stderr
            .contains("removing 2 of 3 control planes at once (cp-2, cp-3) loses etcd quorum"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("config/clusters/workload.yaml:8:14]"),
        "{}",
        refused.stderr
    );
    let refused = lab.run(&BOOTSTRAP);
    assert_eq!(refused.code, 1, "{refused}");
    assert_eq!(machines(project.path()), grown);

    // 3 → 2 keeps a majority: only cp-3 goes; the even count is warned about.
    edit(
        project.path(),
        "clusters/workload.yaml",
        "count: 1\n",
        "count: 2\n",
    );
    assert_eq!(
        machine_changes(&lab),
        expect(&[
            ("proxmox_vm.cp-3", "delete"),
            ("talos_machine_config.cp-3", "delete"),
        ])
    );
    let shrink = lab.run(&BOOTSTRAP).success();
    assert!(
        shrink
            .stderr
            .contains("2 control planes tolerate no more failures than 1"),
        "{}",
        shrink.stderr
    );
    let shrunk = machines(project.path());
    untouched(&grown, &shrunk, &["cp-1", "cp-2", "general-1"]);
    assert!(!shrunk.contains_key("cp-3"));
    // cp-3 left etcd on its way out: no dead member counts against quorum.
    assert_eq!(
        etcd_members(project.path(), "cp-1"),
        hostnames(&["cp-1", "cp-2"])
    );
    // … and its Node object is gone with it (no NotReady node left behind).
    assert_eq!(
        node_objects(project.path()),
        hostnames(&["cp-1", "cp-2", "general-1"])
    );

    // A worker pool 1 → 2: the new worker takes the lowest free address, cp-3's.
    edit(
        project.path(),
        "clusters/workload.yaml",
        "      count: 2\n",
        "      count: 2\n    workers:\n      - {name: general, count: 2}\n",
    );
    assert_eq!(
        machine_changes(&lab),
        expect(&[
            ("proxmox_vm.general-2", "create"),
            ("talos_machine_config.general-2", "create"),
        ])
    );
    lab.run(&BOOTSTRAP).success();
    let workers = machines(project.path());
    untouched(&shrunk, &workers, &["cp-1", "cp-2", "general-1"]);
    assert_eq!(workers["general-2"].address, after(start, 3));

    // … and back to 1.
    edit(
        project.path(),
        "clusters/workload.yaml",
        "{name: general, count: 2}",
        "{name: general, count: 1}",
    );
    assert_eq!(
        machine_changes(&lab),
        expect(&[
            ("proxmox_vm.general-2", "delete"),
            ("talos_machine_config.general-2", "delete"),
        ])
    );
    let last = lab.run(&BOOTSTRAP).success();
    assert!(
        last.stdout.contains("Ready signal for dev/workload: ready"),
        "{}",
        last.stdout
    );
    assert_eq!(machines(project.path()), shrunk);
    assert_eq!(planned(&lab), []);

    // 2 → 1: one member at a time is allowed; cp-2 leaves etcd before its VM goes.
    edit(
        project.path(),
        "clusters/workload.yaml",
        "      count: 2\n",
        "      count: 1\n",
    );
    assert_eq!(
        machine_changes(&lab),
        expect(&[
            ("proxmox_vm.cp-2", "delete"),
            ("talos_machine_config.cp-2", "delete"),
        ])
    );
    let single = lab.run(&BOOTSTRAP).success();
    assert!(
        single
            .stdout
            .contains("Ready signal for dev/workload: ready"),
        "{}",
        single.stdout
    );
    let one = machines(project.path());
    untouched(&shrunk, &one, &["cp-1", "general-1"]);
    assert!(!one.contains_key("cp-2"));
    assert_eq!(etcd_members(project.path(), "cp-1"), hostnames(&["cp-1"]));
    assert_eq!(planned(&lab), []);
}

/// The machine configs of dev/workload in the order `stderr`'s progress lines started
/// them (`…talos_machine_config.<name>: Modifying...`), each checked to start only after
/// the one before it finished: one node at a time.
fn rolled(stderr: &str) -> Vec<String> {
    const PREFIX: &str = "dev/workload/talos_machine_config.";
    let mut order = Vec::new();
    let mut running: Option<String> = None;
    for line in stderr.lines() {
        let Some(rest) = line.split(PREFIX).nth(1) else {
            continue;
        };
        let Some((name, event)) = rest.split_once(": ") else {
            continue;
        };
        if event.starts_with("Modifying...") {
            assert!(
                running.is_none(),
                "{name} started while {running:?} ran:\n{stderr}"
            );
            running = Some(name.to_string());
            order.push(name.to_string());
        } else if event.starts_with("Modifications complete") {
            assert_eq!(running.as_deref(), Some(name), "{stderr}");
            running = None;
        }
    }
    order
}

/// dev/workload with 3 control planes and 2 workers, bootstrapped to an empty plan.
fn three_and_two(project: &TestContext) -> (LabUp<'_>, [&'static str; 5]) {
    edit(
        project.path(),
        "clusters/workload.yaml",
        "  dev:\n    template: small\n",
        "  dev:\n    template: small\n    control_plane:\n      count: 3\n    workers:\n      - {name: general, count: 2}\n",
    );
    let lab = LabUp::start(project, "dev");
    lab.run(&BOOTSTRAP).success();
    assert_eq!(planned(&lab), []);
    (lab, ["cp-1", "cp-2", "cp-3", "general-1", "general-2"])
}

/// The planned changes (`planned_names`) are an update of each node's machine config.
fn only_machine_configs_update(changes: Vec<(String, String, String)>, nodes: &[&str]) {
    let changes: BTreeSet<(String, String)> = changes
        .into_iter()
        .map(|(kind, name, action)| (format!("{kind}.{name}"), action))
        .collect();
    let expected: BTreeSet<(String, String)> = nodes
        .iter()
        .map(|n| (format!("talos_machine_config.{n}"), "update".to_string()))
        .collect();
    assert_eq!(changes, expected, "only the machine configs change");
}

/// The rollout of a 3 control planes + 2 workers cluster, run by `bootstrap` and killed
/// (SIGKILL) once `upgraded` holds for cp-2: cp-1 and cp-2 are through, neither worker
/// was reached. The next run resumes: what is left, one node at a time, control planes
/// first, and the cluster is ready again.
/// `untouched` asks a worker itself, after the kill, whether it still runs as before.
fn killed_and_resumed(
    project: &TestContext,
    lab: &LabUp<'_>,
    upgraded: &dyn Fn(&str) -> bool,
    untouched: &dyn Fn(&str) -> bool,
) {
    let mut run = project
        .std_command()
        .args(support::lab::OVERLAY_ARGS)
        .args(BOOTSTRAP)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !upgraded("cp-2") {
        assert!(
            started.elapsed() < support::lab::RUN_LIMIT,
            "cp-2 was never upgraded"
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(upgraded("cp-1"));
    for node in ["general-1", "general-2"] {
        assert!(
            !upgraded(node) && untouched(node),
            "{node} was reached before the control planes"
        );
    }
    // cp-3 may be through too: it rolls as soon as cp-2 is recorded, and the kill comes
    // after this test has seen that record (up to a poll later). It may even have its
    // new config on the node, unrecorded: the next run's refresh reads it there and
    // does not roll it again (CI saw that once). Either way the next run rolls what is
    // left, the workers last, and never a node recorded as through.
    let cp3_recorded = upgraded("cp-3");

    let resumed = lab.run(&BOOTSTRAP).success();
    let order = rolled(&resumed.stderr);
    let expected: &[&[&str]] = if cp3_recorded {
        &[&["general-1", "general-2"]]
    } else {
        &[
            &["cp-3", "general-1", "general-2"],
            &["general-1", "general-2"],
        ]
    };
    assert!(
        expected.contains(
            &order
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
        ),
        "{order:?}, cp-3 recorded as through at the kill: {cp3_recorded}\n{}",
        resumed.stderr
    );
    assert!(
        resumed
            .stdout
            .contains("Ready signal for dev/workload: ready"),
        "{}",
        resumed.stdout
    );
}

/// Issue 13: a Talos upgrade of a cluster of 3 control planes and 2 workers rolls node
/// by node, control planes first, each back on the new version and healthy before the
/// next; a run killed (SIGKILL) midway leaves the nodes it had not reached untouched, and
/// the next run resumes where it stopped.
#[test]
fn a_talos_upgrade_rolls_node_by_node_and_resumes_after_a_kill() {
    let project = project();
    let (lab, nodes) = three_and_two(&project);
    for node in nodes {
        assert_eq!(talos_version(project.path(), node), "v1.13.9", "{node}");
    }
    let before = machines(project.path());

    edit(
        project.path(),
        "defaults/cluster.yaml",
        "version: v1.13.9",
        "version: v1.13.10",
    );
    // The new version's image replaces the old one on Proxmox (the VMs keep their
    // disks); every machine config changes, nothing else.
    let (images, changes): (Vec<_>, Vec<_>) = planned_names(&lab)
        .into_iter()
        .partition(|(kind, _, _)| kind == "proxmox_image");
    let images: BTreeSet<(String, String)> = images
        .into_iter()
        .map(|(_, name, action)| (name.split('-').next().unwrap().to_string(), action))
        .collect();
    assert_eq!(
        images,
        expect(&[("v1.13.10", "create"), ("v1.13.9", "delete")])
    );
    only_machine_configs_update(changes, &nodes);
    // The plan shows the rollout: control planes first, one at a time, and its gates.
    let plan = lab.run(&["plan", "--env", "dev"]).success();
    let rollout = rollout_in(&plan.stdout);
    insta::assert_snapshot!("talos_upgrade_rollout", rollout);

    // Killed once two nodes are through; the next run resumes.
    let upgraded =
        |name: &str| machine_config_state(project.path(), name)["talos_version"] == "v1.13.10";
    let untouched = |name: &str| talos_version(project.path(), name) == "v1.13.9";
    killed_and_resumed(&project, &lab, &upgraded, &untouched);
    for node in nodes {
        assert_eq!(talos_version(project.path(), node), "v1.13.10", "{node}");
    }
    assert_eq!(
        etcd_members(project.path(), "cp-1"),
        hostnames(&["cp-1", "cp-2", "cp-3"])
    );
    let after = machines(project.path());
    for node in nodes {
        assert_eq!(after[node].address, before[node].address, "{node}");
        assert_eq!(
            after[node].vmid, before[node].vmid,
            "{node}: the VM is kept"
        );
    }
    assert_eq!(planned(&lab), []);
}

/// Issue 13: `--replace` of control planes' VMs cascades through their nodes: the plan
/// replaces each machine config with its VM, in a rollout; apply has each node leave
/// first (drain, etcd leave, reset) while its VM still exists, then replaces the VM,
/// then applies a fresh config to the new one, which joins etcd, before the next node
/// leaves (two of three at once would break quorum). No dead member is left, nothing
/// else moves, and the next plan is empty.
#[test]
fn replacing_control_planes_vms_cascades_through_their_nodes_one_at_a_time() {
    let project = project();
    edit(
        project.path(),
        "clusters/workload.yaml",
        "  dev:\n    template: small\n",
        "  dev:\n    template: small\n    control_plane:\n      count: 3\n",
    );
    let lab = LabUp::start(&project, "dev");
    lab.run(&BOOTSTRAP).success();
    assert_eq!(planned(&lab), []);
    let before = machines(project.path());
    let members_before = on_node(project.path(), "cp-1", async |client| {
        client.etcd_members().await.unwrap()
    });
    let old_ids: Vec<u64> = members_before
        .iter()
        .filter(|m| m.hostname != "dev-workload-cp-1")
        .map(|m| m.id)
        .collect();
    assert_eq!(old_ids.len(), 2);

    let saved = project.path().join("replace.plan");
    let saved = saved.to_str().unwrap();
    let plan = lab
        .run(&[
            "plan",
            "--env",
            "dev",
            "--replace",
            "dev/workload/proxmox_vm.cp-2",
            "--replace",
            "dev/workload/proxmox_vm.cp-3",
            "--out",
            saved,
        ])
        .success();
    for name in ["cp-2", "cp-3"] {
        assert!(
            plan.stdout
                .contains(&format!("talos_machine_config.{name} must be replaced")),
            "{}",
            plan.stdout
        );
    }
    assert!(
        flat(&plan.stdout).contains("because what it runs on is replaced"),
        "{}",
        plan.stdout
    );
    let rollout = rollout_in(&plan.stdout);
    insta::assert_snapshot!("control_plane_replacement_rollout", rollout);

    let applied = lab.run(&["apply", saved]).success();
    let at = |line: &str| {
        applied
            .stderr
            .find(line)
            .unwrap_or_else(|| panic!("no `{line}`:\n{}", applied.stderr))
    };
    // Each node left before its VM was replaced and came back on the new one, and
    // cp-2 was back before cp-3 left.
    let steps = [
        at("talos_machine_config.cp-2: Destroying..."),
        at("talos_machine_config.cp-2: Destruction complete"),
        at("proxmox_vm.cp-2: Replacement complete"),
        at("talos_machine_config.cp-2: Replacement complete"),
        at("talos_machine_config.cp-3: Destroying..."),
        at("talos_machine_config.cp-3: Destruction complete"),
        at("proxmox_vm.cp-3: Replacement complete"),
        at("talos_machine_config.cp-3: Replacement complete"),
    ];
    assert!(steps.is_sorted(), "{steps:?}\n{}", applied.stderr);

    let after = machines(project.path());
    for name in ["cp-2", "cp-3"] {
        // A new VM under the machine's recorded identity: same VM id, same address.
        assert_eq!(after[name].vmid, before[name].vmid, "{name}");
        assert_eq!(after[name].address, before[name].address, "{name}");
    }
    for name in ["cp-1", "general-1"] {
        assert_eq!(after[name].vmid, before[name].vmid, "{name}");
        assert_eq!(after[name].config, before[name].config, "{name}");
    }
    let members_after = on_node(project.path(), "cp-1", async |client| {
        client.etcd_members().await.unwrap()
    });
    let mut names: Vec<&str> = members_after.iter().map(|m| m.hostname.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dev-workload-cp-1",
            "dev-workload-cp-2",
            "dev-workload-cp-3"
        ]
    );
    assert!(
        members_after.iter().all(|m| !old_ids.contains(&m.id)),
        "the old members are gone: {members_after:?}"
    );
    lab.run(&BOOTSTRAP).success();
    assert_eq!(planned(&lab), []);
}

/// Issue 14 (Talos drift): a node upgraded by hand, outside InfraFlux (`talosctl
/// upgrade`), shows in the plan as drift of its Talos version (read back from the node),
/// and the next run brings it back to the configured version, through the rollout.
#[test]
fn a_node_upgraded_by_hand_is_drift_and_is_brought_back() {
    use infraflux_talos::api::UpgradeOptions;
    let project = project();
    let lab = bootstrapped(&project);
    assert_eq!(talos_version(project.path(), "general-1"), "v1.13.9");
    let schematic = machine_config_state(project.path(), "general-1")["schematic"]
        .as_str()
        .unwrap()
        .to_string();
    let image = format!("factory.talos.dev/installer/{schematic}:v1.13.10");
    on_node(project.path(), "general-1", async |client| {
        client.upgrade(&UpgradeOptions::new(image)).await.unwrap()
    });
    let started = std::time::Instant::now();
    while try_on_node(project.path(), "general-1", async |client| {
        client.version().await.ok().map(|v| v.tag)
    })
    .as_deref()
        != Some("v1.13.10")
    {
        assert!(
            started.elapsed() < support::lab::RUN_LIMIT,
            "general-1 never came back on v1.13.10"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let plan = lab.run(&["plan", "--env", "dev"]).success();
    assert!(plan.stdout.contains("v1.13.10"), "{}", plan.stdout);
    assert_eq!(
        planned_names(&lab),
        [(
            "talos_machine_config".to_string(),
            "general-1".to_string(),
            "update".to_string()
        )]
    );
    lab.run(&BOOTSTRAP).success();
    assert_eq!(talos_version(project.path(), "general-1"), "v1.13.9");
    assert_eq!(talos_version(project.path(), "cp-1"), "v1.13.9");
    assert_eq!(planned(&lab), []);
}

/// Issue 14 (Talos drift): the machine config a node runs is read back (`talosctl read
/// /system/state/config.yaml`). One changed on the node by hand, here its kubelet moved
/// to another patch release as `talosctl apply-config --mode no-reboot` would, is drift:
/// the plan shows that node's config and its Kubernetes version, and apply puts back
/// the config InfraFlux rendered, byte for byte.
#[test]
fn a_machine_config_changed_on_the_node_is_drift_and_is_put_back() {
    use infraflux_talos::api::ApplyMode;
    use infraflux_talos::drift::{APPLIED_CONFIG_PATH, sha256_hex};
    let project = project();
    let lab = bootstrapped(&project);
    let recorded = machine_config_state(project.path(), "general-1");
    let applied = on_node(project.path(), "general-1", async |client| {
        client
            .read_file(APPLIED_CONFIG_PATH, 1 << 20)
            .await
            .unwrap()
    });
    assert_eq!(
        recorded["config_sha256"].as_str().unwrap(),
        sha256_hex(&applied),
        "the node holds the bytes InfraFlux applied"
    );
    let text = String::from_utf8(applied).unwrap();
    assert!(text.contains("kubelet:v1.32.2"), "{text}");
    let by_hand = text.replace("kubelet:v1.32.2", "kubelet:v1.32.3");
    on_node(project.path(), "general-1", async |client| {
        client
            .apply_configuration(by_hand.as_bytes(), ApplyMode::NoReboot)
            .await
            .unwrap()
    });

    let plan = lab.run(&["plan", "--env", "dev"]).success();
    assert!(plan.stdout.contains("1.32.3"), "{}", plan.stdout);
    assert_eq!(
        planned_names(&lab),
        [(
            "talos_machine_config".to_string(),
            "general-1".to_string(),
            "update".to_string()
        )]
    );
    lab.run(&BOOTSTRAP).success();
    let back = on_node(project.path(), "general-1", async |client| {
        client
            .read_file(APPLIED_CONFIG_PATH, 1 << 20)
            .await
            .unwrap()
    });
    assert_eq!(String::from_utf8(back).unwrap(), text);
    assert_eq!(planned(&lab), []);
}

/// Issue 13 (Kubernetes upgrade): a change of `kubernetes.version` that skips a minor
/// version, or that the Talos release does not run, is refused at plan time with the way
/// out; one minor version up rolls through the machine configs, one node at a time.
#[test]
fn a_kubernetes_upgrade_goes_one_minor_version_at_a_time() {
    let project = project();
    let lab = bootstrapped(&project);
    edit(
        project.path(),
        "defaults/cluster.yaml",
        "version: 1.32.2",
        "version: 1.34.1",
    );
    let skipped = lab.run(&["plan", "--env", "dev"]);
    assert_eq!(skipped.code, 1, "{skipped}");
    assert!(
        flat(&skipped.stderr).contains("Kubernetes 1.32.2 → 1.34.1 skips 1.33"),
        "{}",
        skipped.stderr
    );
    edit(
        project.path(),
        "defaults/cluster.yaml",
        "version: 1.34.1",
        "version: 1.37.0",
    );
    let unsupported = lab.run(&["plan", "--env", "dev"]);
    assert_eq!(unsupported.code, 1, "{unsupported}");
    assert!(
        flat(&unsupported.stderr).contains("Talos 1.13 runs Kubernetes 1.31 to 1.36, not 1.37.0"),
        "{}",
        unsupported.stderr
    );

    edit(
        project.path(),
        "defaults/cluster.yaml",
        "version: 1.37.0",
        "version: 1.33.4",
    );
    assert_eq!(
        planned_names(&lab)
            .into_iter()
            .filter(|(kind, _, _)| kind == "talos_machine_config")
            .collect::<Vec<_>>(),
        [
            (
                "talos_machine_config".to_string(),
                "cp-1".to_string(),
                "update".to_string()
            ),
            (
                "talos_machine_config".to_string(),
                "general-1".to_string(),
                "update".to_string()
            ),
        ]
    );
    let upgraded = lab.run(&BOOTSTRAP).success();
    assert_eq!(rolled(&upgraded.stderr), ["cp-1", "general-1"]);
    assert_eq!(
        machine_config_state(project.path(), "general-1")["kubernetes_version"],
        "1.33.4"
    );
    assert_eq!(planned(&lab), []);
}

/// The Kubernetes version a machine's kubelet runs, as the node's applied config says
/// (read from the node).
fn kubelet_version(project: &Path, machine: &str) -> Option<String> {
    use infraflux_talos::drift::{APPLIED_CONFIG_PATH, applied_config};
    let bytes = on_node(project, machine, async |client| {
        client
            .read_file(APPLIED_CONFIG_PATH, 1 << 20)
            .await
            .unwrap()
    });
    applied_config(&bytes).kubernetes_version
}

/// Issue 13: a Kubernetes minor upgrade of a cluster of 3 control planes and 2 workers
/// rolls node by node like a Talos upgrade: each node's kubelet restarts on the new
/// version and is healthy again before the next node; killed midway, the next run
/// resumes. The plan shows the rollout (snapshot).
#[test]
fn a_kubernetes_upgrade_rolls_node_by_node_and_resumes_after_a_kill() {
    let project = project();
    let (lab, nodes) = three_and_two(&project);
    for node in nodes {
        assert_eq!(
            kubelet_version(project.path(), node).as_deref(),
            Some("1.32.2")
        );
    }

    edit(
        project.path(),
        "defaults/cluster.yaml",
        "version: 1.32.2",
        "version: 1.33.4",
    );
    only_machine_configs_update(planned_names(&lab), &nodes);
    let plan = lab.run(&["plan", "--env", "dev"]).success();
    let rollout = rollout_in(&plan.stdout);
    insta::assert_snapshot!("kubernetes_upgrade_rollout", rollout);

    let upgraded =
        |name: &str| machine_config_state(project.path(), name)["kubernetes_version"] == "1.33.4";
    let untouched = |name: &str| kubelet_version(project.path(), name).as_deref() == Some("1.32.2");
    killed_and_resumed(&project, &lab, &upgraded, &untouched);
    for node in nodes {
        assert_eq!(
            kubelet_version(project.path(), node).as_deref(),
            Some("1.33.4"),
            "{node}"
        );
    }
    // Every Node reports the new kubelet (the rollout waited for each).
    assert!(
        node_kubelets(project.path())
            .values()
            .all(|version| version == "v1.33.4"),
        "{:?}",
        node_kubelets(project.path())
    );
    assert_eq!(
        etcd_members(project.path(), "cp-1"),
        hostnames(&["cp-1", "cp-2", "cp-3"])
    );
    assert_eq!(planned(&lab), []);
}

/// The rollout a human plan shows (after `Rollout `, up to the blank line).
fn rollout_in(plan: &str) -> &str {
    plan.split("Rollout ")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no rollout in the plan:\n{plan}"))
}

/// `text` with its line breaks (and the report's gutter) folded into spaces: a
/// diagnostic wraps long messages.
fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| *word != "│")
        .collect::<Vec<_>>()
        .join(" ")
}
