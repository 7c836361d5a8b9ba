//! `infraflux bootstrap` end to end in the local lab, as a CI job runs it: `lab up --env
//! dev`, then `bootstrap` through the lab's overlay (Proxmox simulator, fake Talos
//! nodes, the cluster's Kubernetes API over TLS with the kubeconfig Talos handed out),
//! then `bootstrap` again, then `lab down`. Loopback only, each command bounded in time.

mod support;

use serde_json::Value;
use support::lab::{LabUp, project};

#[test]
fn bootstrap_in_the_lab_is_ready_and_a_second_run_changes_nothing() {
    let project = project();
    let lab = LabUp::start(&project, "dev");

    let run = lab.run(&[
        "bootstrap",
        "--env",
        "dev",
        "--auto-approve",
        "--timeout",
        "60s",
        "--json",
    ]);
    let (code, stdout, stderr) = (run.code, run.stdout, run.stderr);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(report["outcome"], "ready");
    let cluster = &report["environments"][0]["clusters"][0];
    assert_eq!(cluster["cluster"], "workload");
    let checks = cluster["signal"]["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names[..2], ["api", "nodes"]);
    assert!(names.contains(&"handoff dev-workload"), "{names:?}");
    assert!(checks.iter().all(|c| c["state"] == "ready"), "{checks:?}");
    assert!(
        stderr.contains("Apply complete! Resources: 15 added"),
        "{stderr}"
    );
    assert!(
        stderr.contains("OK dev/workload: ready signal ("),
        "{stderr}"
    );

    // Again, without --auto-approve: it would have to ask if there were changes.
    let run = lab.run(&["bootstrap", "--env", "dev", "--timeout", "60s"]);
    let (code, stdout, stderr) = (run.code, run.stdout, run.stderr);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("No changes."), "{stdout}");
    assert!(
        stdout.contains("Ready signal for dev/workload: ready"),
        "{stdout}"
    );
    assert!(stdout.contains("  ok nodes: 2/2 Ready"), "{stdout}");
}
