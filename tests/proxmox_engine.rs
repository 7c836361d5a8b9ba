//! The real `infraflux` binary with the real providers against fakepve (a fake PVE 9
//! API on a loopback address): the shipped example configuration, its Proxmox endpoint
//! pointed at the fake, planned and applied for the Proxmox resources of dev/workload
//! (`--target` the VMs, which brings their images along; Talos and Kubernetes have no
//! fake here).
//!
//! Life cycle: plan → apply → plan is empty → memory changed in the configuration →
//! an in-place update → apply → a VM retagged behind InfraFlux's back → the plan reports
//! the drift and corrects it → HA moves a VM: drift only, nothing moves it back →
//! destroy leaves nothing. Faults: a locked VM fails its own update with a clear error
//! while the other VM's update succeeds, and the next run converges; so does a create
//! whose PVE task fails; a storage without `import` content is refused at plan time
//! with the fix.
//!
//! Needs `INFRAFLUX_FAKEPVE_PYTHON` (see providers/proxmox/tests/support); without it
//! each test prints why it is skipped.

#[path = "../providers/proxmox/tests/support/mod.rs"]
mod fakepve;
mod support;

use std::path::{Path, PathBuf};

use fakepve::{FakePve, Options};
use infraflux_proxmox::{Client, ClientConfig, Credentials, TlsVerification};
use serde_json::{Value, json};
use support::{Run, TestContext};

const LAUNCHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/providers/proxmox/tests/support/fakepve_launcher.py"
);
const CP: &str = "dev/workload/proxmox_vm.cp-1";
const WORKER: &str = "dev/workload/proxmox_vm.general-1";

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

/// The example configuration in a temporary directory, its Proxmox endpoint the fake.
struct Workspace {
    context: TestContext,
}

impl Workspace {
    fn new(fake: &FakePve) -> Self {
        let context = TestContext::with_example().token(Some(fakepve::TOKEN));
        let (config, state) = (context.config_dir(), context.path().join("state"));
        let workspace = Workspace {
            context: context.config(config).state_dir(state),
        };
        workspace.write(
            "defaults/proxmox.yaml",
            &format!(
                "proxmox:\n  endpoint: {}\n  token: ${{env:PROXMOX_TOKEN}}\n  nodes: [pve1, pve2, pve3]\n  storage: local-lvm\n  image_storage: local\n  bridge: vmbr0\n  vmid_range: {{start: 1000, end: 1999}}\n  tls:\n    fingerprint: \"{}\"\n",
                fake.url, fake.fingerprint
            ),
        );
        workspace
    }

    fn write(&self, file: &str, text: &str) {
        self.context.write(file, text);
    }

    /// Memory of the small template's control plane and worker pool.
    fn set_memory(&self, control_plane: &str, worker: &str) {
        self.set_template(control_plane, worker, "40Gi");
    }

    /// The small template: memory of the control plane and the worker, the control
    /// plane's disk.
    fn set_template(&self, control_plane: &str, worker: &str, control_plane_disk: &str) {
        self.write(
            "templates/small.yaml",
            &format!(
                "control_plane: {{count: 1, cpu: 2, memory: {control_plane}, disk: {control_plane_disk}}}\nworkers:\n  - {{name: general, count: 1, cpu: 2, memory: {worker}, disk: 60Gi}}\n"
            ),
        );
    }

    fn run(&self, args: &[&str]) -> Run {
        let run = self.context.run(args);
        // Whatever happens, the token's secret is never printed.
        let secret = fakepve::TOKEN.split_once('=').unwrap().1;
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "the token was printed: {run}"
        );
        run
    }

    /// `plan` restricted to the two VMs (and so their images), with extra arguments.
    fn plan(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "plan",
            "--env",
            "dev",
            "--cluster",
            "workload",
            "--target",
            CP,
            "--target",
            WORKER,
            "--detailed-exitcode",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Plan the VMs into a file and apply exactly that plan.
    fn apply(&self) -> (Run, Run) {
        self.apply_with(&[])
    }

    /// [`Workspace::apply`] with extra plan arguments (`--refresh=deep`).
    fn apply_with(&self, extra: &[&str]) -> (Run, Run) {
        let file = self.context.path().join("plan.json");
        let mut args = vec!["--out", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let plan = self.plan(&args);
        let apply = self.run(&["apply", file.to_str().unwrap()]);
        (plan, apply)
    }

    /// The state document (wherever the local backend keeps it under `--state-dir`).
    fn state(&self) -> Value {
        let files = walk(&self.context.path().join("state"));
        let path = files
            .iter()
            .find(|f| f.file_name().is_some_and(|n| n == "dev.json"))
            .unwrap_or_else(|| panic!("no dev.json among {files:?}"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

async fn fake(python: &str, import_content: bool) -> FakePve {
    FakePve::start_with(
        python,
        LAUNCHER,
        Options {
            nodes: 3,
            vms: 0,
            import_content,
            time_scale: 0.0,
        },
    )
    .await
    .expect("fakepve starts")
}

/// The fake's VMs as (name, node, memory, cores).
async fn vms(fake: &mut FakePve) -> Vec<(String, String, String, String)> {
    let mut vms: Vec<_> = fake
        .expect(json!({"op": "vms"}))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| {
            let config = &vm["config"];
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                text(&vm["name"]),
                text(&vm["node"]),
                text(&config["memory"]),
                text(&config["cores"]),
            )
        })
        .collect();
    vms.sort();
    vms
}

fn vmid_of(workspace: &Workspace, address: &str) -> u32 {
    workspace.state()["resources"][address]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id for {address} in {}", workspace.state()))
        .parse()
        .unwrap()
}

/// Requests the fake has answered so far.
async fn requests(fake: &mut FakePve) -> u64 {
    fake.expect(json!({"op": "requests"}))
        .await
        .as_u64()
        .unwrap()
}

fn client(fake: &FakePve) -> Client {
    Client::new(ClientConfig::new(
        fake.url.parse().unwrap(),
        Credentials::api_token(fakepve::TOKEN).unwrap(),
        TlsVerification::Fingerprint(fake.fingerprint.clone()),
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_update_drift_and_destroy_through_the_engine() {
    let python = python_or_skip!();
    let mut fake = fake(&python, true).await;
    let workspace = Workspace::new(&fake);

    // First plan: two images (only on the nodes the VMs are placed on) and two VMs.
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        plan.stdout.contains(&format!("# {CP} will be created")),
        "{plan}"
    );
    assert!(
        plan.stdout.contains(&format!("# {WORKER} will be created")),
        "{plan}"
    );
    assert_eq!(plan.stdout.matches("proxmox_image.").count(), 2, "{plan}");
    assert!(
        plan.stdout
            .contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );

    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(apply.code, 0, "{apply}");
    let created = vms(&mut fake).await;
    assert_eq!(created.len(), 2, "{created:?}");
    // The control plane and the worker on different nodes (placed from the inventory).
    assert_ne!(created[0].1, created[1].1, "{created:?}");
    assert!(created.iter().all(|vm| vm.2 == "4096"), "{created:?}");
    let images: Vec<String> = workspace.state()["resources"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|a| a.contains("proxmox_image."))
        .cloned()
        .collect();
    assert_eq!(images.len(), 2, "{images:?}");
    let volumes = fake
        .expect(json!({"op": "volumes", "storage": "local"}))
        .await;
    assert!(
        volumes
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().is_some_and(|v| v.starts_with("import/talos-v"))),
        "{volumes}"
    );

    // Nothing changed: the next plan is empty, without drift, from one cluster listing
    // (the images are confirmed by their storage's unchanged usage in it).
    let before = requests(&mut fake).await;
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(plan.stdout.contains("No changes."), "{plan}");
    assert!(!plan.stdout.contains("changed outside InfraFlux"), "{plan}");
    assert_eq!(requests(&mut fake).await - before, 1);

    // More memory for the control plane: an in-place update of that VM only.
    workspace.set_memory("5Gi", "4Gi");
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        plan.stdout
            .contains(&format!("# {CP} will be updated in-place")),
        "{plan}"
    );
    assert!(plan.stdout.contains("memory_mib"), "{plan}");
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 0, "{apply}");
    let updated = vms(&mut fake).await;
    assert!(
        updated
            .iter()
            .any(|vm| vm.0.ends_with("cp-1") && vm.2 == "5120"),
        "{updated:?}"
    );
    // The VMs stayed where they were.
    assert_eq!(
        updated.iter().map(|vm| &vm.1).collect::<Vec<_>>(),
        created.iter().map(|vm| &vm.1).collect::<Vec<_>>()
    );
    assert_eq!(workspace.plan(&[]).code, 0);

    // Drift: someone retags the worker through the API (tags apply at once; CPU or
    // memory changes on a running VM would only be pending).
    let worker = vmid_of(&workspace, WORKER);
    let node = created
        .iter()
        .find(|vm| vm.0.ends_with("general-1"))
        .unwrap()
        .1
        .clone();
    client(&fake)
        .set_vm_config(&node, worker, &[("tags".into(), "hand-made".into())], &[])
        .await
        .expect("the fake takes the change");
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(plan.stdout.contains("changed outside InfraFlux"), "{plan}");
    assert!(
        plan.stdout.contains(&format!("{WORKER} has changed")),
        "{plan}"
    );
    assert!(
        plan.stdout
            .contains(&format!("# {WORKER} will be updated in-place")),
        "{plan}"
    );
    assert!(plan.stdout.contains("hand-made"), "{plan}");
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 0, "{apply}");
    let tags = client(&fake)
        .vm_config(&node, worker)
        .await
        .unwrap()
        .get("tags")
        .map(str::to_string);
    assert_eq!(tags.as_deref(), Some("dev;infraflux;worker;workload"));
    assert_eq!(workspace.plan(&[]).code, 0);

    // An image removed outside InfraFlux: its storage's usage drops, so a plain plan
    // lists the storage, finds it gone and plans it again; the apply converges.
    let image = workspace.state()["resources"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(address, _)| address.contains("proxmox_image."))
        .map(|(_, image)| image["attributes"].clone())
        .unwrap();
    let pve = client(&fake);
    let upid = pve
        .delete_volume(
            image["node"].as_str().unwrap(),
            "local",
            image["volume"].as_str().unwrap(),
        )
        .await
        .expect("the fake removes the image")
        .expect("a task");
    infraflux_proxmox::task::wait(
        &pve,
        &upid,
        infraflux_proxmox::task::WaitOptions::with_timeout(std::time::Duration::from_secs(30)),
    )
    .await
    .expect("the removal finishes");
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(plan.stdout.contains("has been deleted"), "{plan}");
    assert!(plan.stdout.contains("proxmox_image."), "{plan}");
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 0, "{apply}");
    assert_eq!(workspace.plan(&[]).code, 0);

    // HA moves the worker to pve3 (which has no image): reported as drift, never moved
    // back, and no image is planned for it.
    fake.expect(json!({"op": "migrate", "vmid": worker, "target": "pve3"}))
        .await;
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(
        plan.stdout.contains(&format!("{WORKER} has changed")),
        "{plan}"
    );
    assert!(plan.stdout.contains("\"pve3\""), "{plan}");
    assert!(plan.stdout.contains("No changes."), "{plan}");

    // Destroy leaves nothing.
    let destroy = workspace.run(&[
        "destroy",
        "--env",
        "dev",
        "--cluster",
        "workload",
        "--auto-approve",
    ]);
    assert_eq!(destroy.code, 0, "{destroy}");
    assert!(vms(&mut fake).await.is_empty());
    let volumes = fake
        .expect(json!({"op": "volumes", "storage": "local"}))
        .await;
    assert_eq!(volumes, json!([]));
    assert_eq!(workspace.state()["resources"], json!({}));
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_vm_fails_alone_and_the_next_run_converges() {
    let python = python_or_skip!();
    let mut fake = fake(&python, true).await;
    let workspace = Workspace::new(&fake);
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 0, "{apply}");

    // A backup holds the worker's lock while both VMs get more memory.
    let worker = vmid_of(&workspace, WORKER);
    fake.expect(json!({"op": "lock", "vmid": worker, "lock": "backup"}))
        .await;
    workspace.set_memory("5Gi", "5Gi");
    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(apply.code, 1, "{apply}");
    assert!(
        apply.stderr.contains(&format!("{WORKER}: update failed")),
        "{apply}"
    );
    assert!(apply.stderr.contains("locked"), "{apply}");
    assert!(apply.stderr.contains("qm unlock"), "{apply}");
    assert!(
        apply
            .stderr
            .contains(&format!("{CP}: Modifications complete")),
        "{apply}"
    );
    let memory: Vec<(String, String)> = vms(&mut fake)
        .await
        .into_iter()
        .map(|vm| (vm.0, vm.2))
        .collect();
    assert!(
        memory
            .iter()
            .any(|(name, m)| name.ends_with("cp-1") && m == "5120"),
        "{memory:?}"
    );
    assert!(
        memory
            .iter()
            .any(|(name, m)| name.ends_with("general-1") && m == "4096"),
        "{memory:?}"
    );

    // State tells the truth: the next plan still wants the worker's update only.
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    fake.expect(json!({"op": "unlock", "vmid": worker})).await;
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 0, "{apply}");
    assert_eq!(workspace.plan(&[]).code, 0);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_without_import_content_is_refused_before_anything_starts() {
    let python = python_or_skip!();
    // Storage `local` as on a fresh PVE: iso, vztmpl, backup; no import.
    let mut fake = fake(&python, false).await;
    let workspace = Workspace::new(&fake);
    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 1, "{plan}");
    assert!(
        plan.stderr
            .contains("does not allow the content type `import`"),
        "{plan}"
    );
    assert!(
        plan.stderr
            .contains("pvesm set local --content iso,vztmpl,backup,import"),
        "{plan}"
    );
    assert!(vms(&mut fake).await.is_empty());
    // Offline planning cannot know and does not ask.
    let offline = workspace.plan(&["--refresh=false"]);
    assert_eq!(offline.code, 2, "{offline}");
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_task_fails_alone_and_the_next_run_converges() {
    let python = python_or_skip!();
    let mut fake = fake(&python, true).await;
    let workspace = Workspace::new(&fake);
    // The control plane goes to pve1 and the worker to pve2 (spread, configured order):
    // PVE's create worker on pve2 fails once.
    fake.expect(json!({
        "op": "fail", "method": "POST", "suffix": "/nodes/pve2/qemu",
        "error": "live_restore_failed", "times": 1,
    }))
    .await;
    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(apply.code, 1, "{apply}");
    assert!(
        apply.stderr.contains(&format!("{WORKER}: create failed")),
        "{apply}"
    );
    assert!(apply.stderr.contains("live-restore failed"), "{apply}");
    assert!(
        apply.stderr.contains(&format!("{CP}: Creation complete")),
        "{apply}"
    );

    // The next run creates only what is missing, and then there is nothing to do.
    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        !plan.stdout.contains(&format!("# {CP} will be created")),
        "{plan}"
    );
    assert_eq!(apply.code, 0, "{apply}");
    let names: Vec<String> = vms(&mut fake).await.into_iter().map(|vm| vm.0).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(workspace.plan(&[]).code, 0);
    fake.stop().await;
}

// ---- Issue 14: an honest plan ----------------------------------------------------------

/// A started workspace: the fake, the example configuration pointed at it, both VMs
/// applied and running.
async fn applied(python: &str) -> (FakePve, Workspace) {
    let fake = fake(python, true).await;
    let workspace = Workspace::new(&fake);
    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(apply.code, 0, "{apply}");
    (fake, workspace)
}

/// The fake's VMs by VMID, as the launcher reports them.
async fn fake_vms(fake: &mut FakePve) -> std::collections::BTreeMap<u64, Value> {
    fake.expect(json!({"op": "vms"}))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| (vm["vmid"].as_u64().unwrap(), vm.clone()))
        .collect()
}

/// How every scenario ends: each VM in state is in the fake as state records it (node,
/// CPUs, memory, disk, tags, no change waiting for a restart) and running, and the next
/// plan — plain and deep — has nothing to do.
async fn converged(fake: &mut FakePve, workspace: &Workspace) {
    converged_with(fake, workspace, 2, &[]).await;
}

/// [`converged`] for `count` VMs, the plans with `extra` arguments (more `--target`s).
async fn converged_with(fake: &mut FakePve, workspace: &Workspace, count: usize, extra: &[&str]) {
    let vms = fake_vms(fake).await;
    let state = workspace.state();
    let recorded: Vec<(&String, &Value)> = state["resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(address, _)| address.contains("proxmox_vm."))
        .collect();
    assert_eq!(recorded.len(), count, "{state}");
    // No VM outside state (orphan or duplicate).
    assert_eq!(vms.len(), count, "{vms:?}");
    for (address, record) in recorded {
        assert_eq!(record["status"], json!("ready"), "{address}");
        let attributes = &record["attributes"];
        let vmid: u64 = record["id"].as_str().unwrap().parse().unwrap();
        let vm = &vms[&vmid];
        let config = &vm["config"];
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(vm["status"], json!("running"), "{address}: {vm}");
        assert_eq!(attributes["power"], json!("running"), "{address}");
        assert_eq!(attributes["pending"], json!({}), "{address}");
        assert_eq!(vm["node"], attributes["node"], "{address}");
        assert_eq!(
            text(&config["memory"]),
            attributes["memory_mib"].to_string(),
            "{address}"
        );
        assert_eq!(
            text(&config["cores"]),
            attributes["cores"].to_string(),
            "{address}"
        );
        assert!(
            text(&config["scsi0"]).contains(&format!("size={}G", attributes["disk_gib"])),
            "{address}: {config}"
        );
        // Pending values equal to the current ones change nothing (PVE drops them).
        for (key, value) in vm["pending"].as_object().unwrap() {
            assert_eq!(
                &config[key], value,
                "{address}: `{key}` waits for a restart"
            );
        }
    }
    for refresh in ["--refresh=true", "--refresh=deep"] {
        let mut args = extra.to_vec();
        args.push(refresh);
        let plan = workspace.plan(&args);
        assert_eq!(plan.code, 0, "{plan}");
        assert!(plan.stdout.contains("No changes."), "{plan}");
        assert!(!plan.stdout.contains("changed outside InfraFlux"), "{plan}");
    }
}

/// The worker's (VMID, node).
fn worker_of(workspace: &Workspace) -> (u32, String) {
    let state = workspace.state();
    let record = &state["resources"][WORKER];
    (
        record["id"].as_str().unwrap().parse().unwrap(),
        record["attributes"]["node"].as_str().unwrap().to_string(),
    )
}

async fn wait_for(fake: &FakePve, upid: infraflux_proxmox::task::Upid) {
    infraflux_proxmox::task::wait(
        &client(fake),
        &upid,
        infraflux_proxmox::task::WaitOptions::with_timeout(std::time::Duration::from_secs(30)),
    )
    .await
    .expect("the task finishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_stopped_by_hand_is_reported_and_started() {
    let python = python_or_skip!();
    let (mut fake, workspace) = applied(&python).await;
    let (worker, node) = worker_of(&workspace);
    wait_for(&fake, client(&fake).stop_vm(&node, worker).await.unwrap()).await;

    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        plan.stdout.contains(&format!("{WORKER} has changed")),
        "{plan}"
    );
    assert!(
        plan.stdout
            .contains(&format!("# {WORKER} will be updated in-place")),
        "{plan}"
    );
    assert!(
        plan.stdout.contains(r#"power = "stopped" -> "running""#),
        "{plan}"
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 0, "{apply}");
    converged(&mut fake, &workspace).await;
    fake.stop().await;
}

/// A create whose start task fails: the apply fails for that VM, its record stays
/// pending; the next plan adopts the stopped VM and plans its start; the apply after it
/// starts it (one VM, never two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_recorded_and_the_next_plan_retries_it() {
    let python = python_or_skip!();
    let mut fake = fake(&python, true).await;
    let workspace = Workspace::new(&fake);
    // The first start (of whichever VM is created first) fails.
    fake.expect(json!({
        "op": "fail", "method": "POST", "suffix": "/status/start",
        "error": "qemu_exited_code", "times": 1,
    }))
    .await;
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 1, "{apply}");
    assert!(apply.stderr.contains("QEMU exited with code 1"), "{apply}");
    let stopped: Vec<Value> = fake_vms(&mut fake)
        .await
        .into_values()
        .filter(|vm| vm["status"] == json!("stopped"))
        .collect();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    let name = stopped[0]["name"].as_str().unwrap().to_string();
    let address = if name.ends_with("cp-1") { CP } else { WORKER };

    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        plan.stdout
            .contains(&format!("# {address} will be updated in-place")),
        "{plan}"
    );
    assert!(
        plan.stdout.contains(r#"power = "stopped" -> "running""#),
        "{plan}"
    );
    assert!(!plan.stdout.contains("will be created"), "{plan}");
    let (_, apply) = workspace.apply();
    assert_eq!(apply.code, 0, "{apply}");
    assert_eq!(fake_vms(&mut fake).await.len(), 2);
    converged(&mut fake, &workspace).await;
    fake.stop().await;
}

/// The control plane's boot disk grown 40G → 50G outside InfraFlux: a plain plan reports
/// it (disks cannot shrink: it would replace the VM); once the configuration takes the new
/// size, there is nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_resized_outside_infraflux_is_reported() {
    let python = python_or_skip!();
    let (mut fake, workspace) = applied(&python).await;
    let state = workspace.state();
    let record = &state["resources"][CP];
    let vmid: u32 = record["id"].as_str().unwrap().parse().unwrap();
    let node = record["attributes"]["node"].as_str().unwrap().to_string();
    let resized = client(&fake)
        .resize_disk(&node, vmid, "scsi0", "50G")
        .await
        .unwrap();
    if let Some(upid) = resized {
        wait_for(&fake, upid).await;
    }

    let plan = workspace.plan(&[]);
    assert!(plan.stdout.contains(&format!("{CP} has changed")), "{plan}");
    assert!(plan.stdout.contains("disk_gib = 40 -> 50"), "{plan}");
    assert!(
        plan.stdout.contains(&format!("# {CP} must be replaced")),
        "{plan}"
    );
    // The configuration takes the new size: the drift is recorded, nothing changes.
    workspace.set_template("4Gi", "4Gi", "50Gi");
    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 0, "{plan}");
    assert!(plan.stdout.contains(&format!("{CP} has changed")), "{plan}");
    assert!(plan.stdout.contains("No changes."), "{plan}");
    assert_eq!(apply.code, 0, "{apply}");
    assert_eq!(
        workspace.state()["resources"][CP]["attributes"]["disk_gib"],
        json!(50)
    );
    converged(&mut fake, &workspace).await;
    fake.stop().await;
}

/// Memory raised by hand on the running worker waits for a restart: the listing (and a
/// plain plan) cannot see it; `--refresh=deep` reports it, and its apply sets the
/// configured value again so nothing is left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_memory_change_is_reported_by_a_deep_refresh() {
    let python = python_or_skip!();
    let (mut fake, workspace) = applied(&python).await;
    let (worker, node) = worker_of(&workspace);
    client(&fake)
        .set_vm_config(&node, worker, &[("memory".into(), "8192".into())], &[])
        .await
        .unwrap();
    assert_eq!(
        fake_vms(&mut fake).await[&u64::from(worker)]["pending"]["memory"],
        json!("8192")
    );

    let plain = workspace.plan(&[]);
    assert_eq!(plain.code, 0, "a plain refresh cannot see it: {plain}");
    let before = requests(&mut fake).await;
    let deep = workspace.plan(&["--refresh=deep"]);
    // One listing, one full read per VM, one content listing per image's storage.
    assert_eq!(requests(&mut fake).await - before, 1 + 2 + 2);
    assert_eq!(deep.code, 2, "{deep}");
    assert!(
        deep.stdout.contains(&format!("{WORKER} has changed")),
        "{deep}"
    );
    assert!(
        deep.stdout.contains(r#"+ pending.memory = "8192""#),
        "{deep}"
    );
    assert!(
        deep.stdout.contains(r#"- pending.memory = "8192" -> null"#),
        "{deep}"
    );
    assert!(
        deep.stdout
            .contains(&format!("# {WORKER} will be updated in-place")),
        "{deep}"
    );
    let (_, apply) = workspace.apply_with(&["--refresh=deep"]);
    assert_eq!(apply.code, 0, "{apply}");
    converged(&mut fake, &workspace).await;
    fake.stop().await;
}

/// The worker's node goes offline while the control plane was stopped by hand: the plan
/// is partial (the worker and its image unknown, exit 3) and still starts the control
/// plane; once the node is back, everything converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_gives_a_partial_plan_that_still_fixes_the_healthy_node() {
    let python = python_or_skip!();
    let (mut fake, workspace) = applied(&python).await;
    let state = workspace.state();
    let record = &state["resources"][CP];
    let cp: u32 = record["id"].as_str().unwrap().parse().unwrap();
    let cp_node = record["attributes"]["node"].as_str().unwrap().to_string();
    let (_, worker_node) = worker_of(&workspace);
    assert_ne!(cp_node, worker_node);
    wait_for(&fake, client(&fake).stop_vm(&cp_node, cp).await.unwrap()).await;
    fake.expect(json!({"op": "node_offline", "node": worker_node}))
        .await;

    let plan = workspace.plan(&[]);
    assert_eq!(plan.code, 3, "{plan}");
    assert!(
        plan.stdout.contains("Warning: this plan is partial"),
        "{plan}"
    );
    assert!(
        plan.stdout.contains(&format!("? {WORKER}: unreachable: ")),
        "{plan}"
    );
    // It names the request that failed: the node's 595.
    assert!(plan.stdout.contains("→ 595)"), "{plan}");
    assert!(
        plan.stdout
            .contains(&format!("# {CP} will be updated in-place")),
        "{plan}"
    );
    assert!(plan.stdout.contains("This plan is partial: "), "{plan}");
    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 3, "{plan}");
    assert_eq!(apply.code, 3, "{apply}");
    assert!(apply.stdout.contains("Apply complete!"), "{apply}");
    assert!(apply.stdout.contains("Partial: "), "{apply}");
    assert_eq!(
        fake_vms(&mut fake).await[&u64::from(cp)]["status"],
        json!("running")
    );

    fake.expect(json!({"op": "node_offline", "node": worker_node, "offline": false}))
        .await;
    converged(&mut fake, &workspace).await;
    fake.stop().await;
}

// ---- Issue 14: the fault matrix -------------------------------------------------------

/// The small template with `workers` in its worker pool, and the `--target`s that bring
/// the workers beyond the first into the plans (the control plane and `general-1` are
/// always there).
fn with_workers(workspace: &Workspace, workers: usize) -> Vec<String> {
    workspace.write(
        "templates/small.yaml",
        &format!(
            "control_plane: {{count: 1, cpu: 2, memory: 1Gi, disk: 40Gi}}\nworkers:\n  - {{name: general, count: {workers}, cpu: 2, memory: 1Gi, disk: 20Gi}}\n"
        ),
    );
    (2..=workers)
        .flat_map(|n| {
            [
                "--target".to_string(),
                format!("dev/workload/proxmox_vm.general-{n}"),
            ]
        })
        .collect()
}

/// Every VM in the fake is known to state: by its VMID, or — a create whose outcome the
/// apply could not learn — by the name of a record left `pending_create`, which the next
/// refresh adopts by the VM's description. Never an orphan.
async fn fake_vms_are_in_state(fake: &mut FakePve, workspace: &Workspace) {
    let state = workspace.state();
    let records: Vec<&Value> = state["resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(address, _)| address.contains("proxmox_vm."))
        .map(|(_, record)| record)
        .collect();
    for (vmid, vm) in fake_vms(fake).await {
        let known = records.iter().any(|record| {
            record["id"].as_str() == Some(vmid.to_string().as_str())
                || record["status"] == json!("pending_create")
                    && record["attributes"]["name"] == vm["name"]
        });
        assert!(known, "VM {vmid} ({}) is not in state: {state}", vm["name"]);
    }
}

/// The API token is deleted by an administrator once the first VM create has been
/// accepted: the apply fails with a credentials error (naming the token's kind of
/// failure, never its secret), state keeps every VM that was created, and once the token
/// is back the next apply converges without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_apply_fails_cleanly_and_the_next_run_converges() {
    let python = python_or_skip!();
    let mut fake = fake(&python, true).await;
    let workspace = Workspace::new(&fake);
    let targets = with_workers(&workspace, 3);
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    fake.expect(json!({"op": "revoke_tokens", "after_creates": 1}))
        .await;

    let (plan, apply) = workspace.apply_with(&targets);
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        plan.stdout
            .contains("Plan: 7 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    assert_eq!(apply.code, 1, "{apply}");
    assert!(apply.stderr.contains("authentication failure"), "{apply}");
    assert!(
        apply
            .stderr
            .contains("PVE refused the API token `root@pam!ci`"),
        "{apply}"
    );
    // Creates already past PVE's authentication when the token went still happen (up to
    // all four): each is in state all the same.
    let created = fake_vms(&mut fake).await;
    assert!(!created.is_empty(), "{created:?}");
    fake_vms_are_in_state(&mut fake, &workspace).await;

    // Planning without the token fails the same way, and changes nothing.
    let plan = workspace.plan(&targets);
    assert_eq!(plan.code, 1, "{plan}");
    assert!(
        plan.stderr
            .contains("PVE refused the API token `root@pam!ci`"),
        "{plan}"
    );

    fake.expect(json!({"op": "restore_tokens"})).await;
    let (plan, apply) = workspace.apply_with(&targets);
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(apply.code, 0, "{apply}");
    converged_with(&mut fake, &workspace, 4, &targets).await;
    fake.stop().await;
}

/// One request in ten is dropped (the connection reset before PVE reads it): reads and
/// task polls are retried, a create or start whose outcome is unknown is kept pending and
/// settled by the next run. Within a few runs the apply succeeds, with every VM made
/// once; then, the network healthy, fakepve equals state and nothing is left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_dropped_connections_converge_without_duplicates() {
    const RUNS: usize = 5;
    let python = python_or_skip!();
    let mut fake = fake(&python, true).await;
    let workspace = Workspace::new(&fake);
    let targets = with_workers(&workspace, 5);
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    fake.expect(json!({"op": "flaky_network", "drop_rate": 0.1, "seed": 14}))
        .await;

    let mut runs = Vec::new();
    while runs.len() < RUNS {
        let (plan, apply) = workspace.apply_with(&targets);
        // A run that fails says which resource and why, and never loses a created VM.
        fake_vms_are_in_state(&mut fake, &workspace).await;
        let done = plan.code == 0 || (plan.code == 2 && apply.code == 0);
        runs.push((plan, apply));
        if done {
            break;
        }
    }
    let (plan, apply) = runs.last().unwrap();
    assert!(
        plan.code == 0 || apply.code == 0,
        "not converged in {RUNS} runs; the last: {plan}\n{apply}"
    );
    eprintln!("converged in {} run(s)", runs.len());

    fake.expect(json!({"op": "flaky_network", "drop_rate": 0.0}))
        .await;
    converged_with(&mut fake, &workspace, 6, &targets).await;
    fake.stop().await;
}

/// `infraflux apply` killed with SIGKILL at several points of its conversation with PVE
/// (after 4, 8, … requests: image downloads, creates, task polls, starts), re-planned and
/// re-run each time; then left to finish. Nothing is lost or made twice: within two
/// uninterrupted runs fakepve equals state, every VM runs, and nothing is left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_several_points_of_an_apply_loses_and_duplicates_nothing() {
    const KILL_AFTER_REQUESTS: [u64; 6] = [4, 8, 12, 16, 24, 32];
    let python = python_or_skip!();
    // PVE's tasks take (a hundredth of) their time and each answer 20 ms, so that an
    // apply is still talking to PVE when it is killed.
    let mut fake = FakePve::start_with(
        &python,
        LAUNCHER,
        Options {
            nodes: 3,
            vms: 0,
            import_content: true,
            time_scale: 0.01,
        },
    )
    .await
    .expect("fakepve starts");
    fake.expect(json!({"op": "slow_network", "latency": 2.0}))
        .await;
    let workspace = Workspace::new(&fake);
    let targets = with_workers(&workspace, 5);
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let file = workspace.context.path().join("plan.json");
    let mut plan_args = vec!["--out", file.to_str().unwrap()];
    plan_args.extend_from_slice(&targets);

    let mut kills = 0;
    for after in KILL_AFTER_REQUESTS {
        let plan = workspace.plan(&plan_args);
        assert!(plan.code == 0 || plan.code == 2, "{plan}");
        if plan.code == 0 {
            break;
        }
        let start = requests(&mut fake).await;
        let mut child = workspace
            .context
            .std_command()
            .args(["apply", file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if requests(&mut fake).await - start >= after {
                // SIGKILL: no destructor, no final save, the state lock left behind.
                child.kill().unwrap();
                kills += 1;
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the apply hangs");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        child.wait().unwrap();
        // Every VM made so far is known to state, even mid-apply.
        fake_vms_are_in_state(&mut fake, &workspace).await;
    }
    assert!(kills >= 3, "only {kills} applies were killed mid-way");

    // Uninterrupted runs finish the job: two at most (a VM killed between its create and
    // its start is adopted stopped, then started).
    for _ in 0..2 {
        let (plan, apply) = workspace.apply_with(&targets);
        assert!(plan.code == 0 || plan.code == 2, "{plan}");
        if plan.code == 0 {
            break;
        }
        assert_eq!(apply.code, 0, "{apply}");
    }
    converged_with(&mut fake, &workspace, 6, &targets).await;
    fake.stop().await;
}

/// A node is offline before the first apply: placement leaves it out (the worker goes
/// to the next node, with its image), the apply converges without it, and once the node
/// is back nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_offline_before_the_first_apply_is_left_out_and_nothing_moves_when_it_returns() {
    let python = python_or_skip!();
    let mut fake = fake(&python, true).await;
    let workspace = Workspace::new(&fake);
    // The worker would go to pve2 (spread, configured order).
    fake.expect(json!({"op": "node_offline", "node": "pve2"}))
        .await;
    let (plan, apply) = workspace.apply();
    assert_eq!(plan.code, 2, "{plan}");
    assert!(!plan.stdout.contains("pve2"), "{plan}");
    assert!(
        plan.stdout
            .contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    assert_eq!(apply.code, 0, "{apply}");
    let (_, node) = worker_of(&workspace);
    assert_eq!(node, "pve3");
    converged(&mut fake, &workspace).await;

    fake.expect(json!({"op": "node_offline", "node": "pve2", "offline": false}))
        .await;
    converged(&mut fake, &workspace).await;
    assert_eq!(worker_of(&workspace).1, "pve3");
    fake.stop().await;
}
