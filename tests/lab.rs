//! The local lab end to end, as a user runs it: the README's `infraflux lab run --env
//! dev` (plan, bootstrap, second plan) in a directory with the bundled configuration and no PROXMOX_TOKEN, and `lab
//! up` → `plan --overlay` → `lab down` as a CI job would. Loopback only, each run
//! bounded in time.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::TestContext;
use support::lab::project;

/// `(PVE port, second octet)` from the lab's description lines.
fn lab_addresses(stderr: &str) -> (u16, u8) {
    let port = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Lab: Proxmox VE simulator at https://127.0.0.1:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no simulator address in:\n{stderr}"));
    let octet = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Lab: dev/workload on 127."))
        .and_then(|rest| rest.split('.').next())
        .and_then(|o| o.parse().ok())
        .unwrap_or_else(|| panic!("no cluster network in:\n{stderr}"));
    (port, octet)
}

fn listening(address: &str) -> bool {
    let address: SocketAddr = address.parse().unwrap();
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// Whether `pid` runs (a zombie waiting to be reaped by init does not).
fn running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            != Some("Z")
    })
}

#[test]
fn lab_run_takes_dev_through_plan_bootstrap_and_ready_to_an_empty_second_plan() {
    let project = project();
    let output = project
        .command()
        .args(["lab", "run", "--env", "dev"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // The first plan creates the whole environment; the apply creates every type.
    assert!(
        stdout.contains("Plan: 15 to add, 0 to change, 0 to destroy."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Apply complete! Resources: 15 added, 0 changed, 0 destroyed."),
        "{stdout}"
    );
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
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("/{kind}.")) && l.contains("Creation complete")),
            "no {kind} created:\n{stderr}"
        );
    }
    // The ready signal, through the kubeconfig Talos handed out, to the cluster's API.
    assert!(
        stdout.contains("Ready signal for dev/workload: ready"),
        "{stdout}"
    );
    assert!(stdout.contains("nodes: 2/2 Ready"), "{stdout}");
    // The second plan, the last thing printed, is empty.
    assert!(
        stdout
            .trim_end()
            .ends_with("No changes. The infrastructure matches the configuration."),
        "{stdout}"
    );
    assert!(stderr.contains("Lab run of `dev` complete"), "{stderr}");
    // Nothing is left listening: not the simulator, not the Talos nodes, not the API.
    let (port, octet) = lab_addresses(&stderr);
    for address in [
        format!("127.0.0.1:{port}"),
        format!("127.{octet}.0.10:50000"),
        format!("127.{octet}.0.11:50000"),
        format!("127.{octet}.0.5:6443"),
    ] {
        assert!(!listening(&address), "{address} still listens");
    }
    // The lab's state is its own; the project's real state was never written, and the
    // overlay (pointing at a lab that is gone) was removed.
    let lab = project.path().join(".infraflux/lab");
    assert!(lab.join(".infraflux/state/dev.json").is_file());
    assert!(!project.path().join(".infraflux/state").exists());
    assert!(!lab.join("overlay").exists());
}

#[test]
fn lab_run_of_prod_promotes_through_dev_and_staging_first() {
    let project = project();
    let output = project
        .command()
        .args(["lab", "run", "--env", "prod"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // In promotion order, each ready before the next is planned.
    let ready: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Ready signal for "))
        .collect();
    assert_eq!(
        ready,
        [
            "dev/workload: ready",
            "staging/workload: ready",
            "prod/management: ready",
            "prod/workload: ready",
            "prod/edge: ready",
        ]
    );
    assert_eq!(
        stdout
            .matches("No changes. The infrastructure matches the configuration.")
            .count(),
        3,
        "{stdout}"
    );
}

#[test]
fn lab_run_fails_on_a_configuration_problem() {
    let project = project();
    let output = project
        .command()
        .args(["lab", "run", "--env", "qa"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown environment `qa`"), "{stderr}");
}

#[test]
fn lab_up_serves_plans_through_the_overlay_until_lab_down() {
    let project = project();
    let up = project
        .command()
        .args(["lab", "up", "--env", "dev"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&up.stdout);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "infraflux --overlay .infraflux/lab/overlay --state-dir .infraflux/lab plan --env dev"
        ),
        "{stdout}"
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join(".infraflux/lab/lab.json")).unwrap(),
    )
    .unwrap();
    let pid = record["pid"].as_u64().unwrap();
    let (port, _) = lab_addresses(&stderr);
    // Stop the background lab whatever happens below.
    struct Down<'a>(&'a TestContext);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.command().args(["lab", "down"]).output();
        }
    }
    let down_guard = Down(&project);

    project.command().args(["lab", "status"]).assert().success();
    let plan = project
        .command()
        .args([
            "--overlay",
            ".infraflux/lab/overlay",
            "--state-dir",
            ".infraflux/lab",
            "plan",
            "--env",
            "dev",
        ])
        .output()
        .unwrap();
    let plan_out = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.status.success(),
        "{plan_out}\n{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        plan_out.contains("Plan: 15 to add, 0 to change, 0 to destroy."),
        "{plan_out}"
    );
    assert!(listening(&format!("127.0.0.1:{port}")));

    let down = project.command().args(["lab", "down"]).output().unwrap();
    let down_out = String::from_utf8_lossy(&down.stdout);
    assert!(down.status.success(), "{down_out}");
    assert!(
        down_out.contains(&format!("Lab stopped (pid {pid})")),
        "{down_out}"
    );
    drop(down_guard);
    assert!(!running(pid), "the lab process {pid} is still there");
    assert!(!listening(&format!("127.0.0.1:{port}")));
    assert!(!project.path().join(".infraflux/lab").exists());
    project.command().args(["lab", "status"]).assert().code(1);
}
