//! `infraflux bootstrap` end to end in the local lab, as a CI job runs it: `lab up --env
//! dev`, then `bootstrap` through the lab's overlay (Proxmox simulator, fake Talos
//! nodes, the cluster's Kubernetes API over TLS with the kubeconfig Talos handed out),
//! then `bootstrap` again, then `lab down`. Loopback only, each command bounded in time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// A generous bound for a debug build on a busy 2-core machine (a run takes seconds).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The bundled configuration, with the lab's files and state under `project`.
fn infraflux(project: &Path) -> Command {
    let mut command = Command::cargo_bin("infraflux").unwrap();
    command
        .current_dir(project)
        .arg("--config")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"))
        .env_remove("PROXMOX_TOKEN")
        .env_remove("INFRAFLUX_CONFIG")
        .env_remove("INFRAFLUX_OVERLAY")
        .env_remove("INFRAFLUX_STATE_DIR")
        .env("NO_COLOR", "1")
        .timeout(RUN_LIMIT);
    command
}

/// `bootstrap` over the lab's overlay and state.
fn bootstrap(project: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = infraflux(project)
        .args([
            "--overlay",
            ".infraflux/lab/overlay",
            "--state-dir",
            ".infraflux/lab",
        ])
        .arg("bootstrap")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bootstrap_in_the_lab_is_ready_and_a_second_run_changes_nothing() {
    let project = tempfile::tempdir().unwrap();
    let up = infraflux(project.path())
        .arg("--state-dir")
        .arg(project.path())
        .args(["lab", "up", "--env", "dev"])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // Stop the background lab whatever happens below.
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = infraflux(self.0)
                .arg("--state-dir")
                .arg(self.0)
                .args(["lab", "down"])
                .output();
        }
    }
    let _down = Down(project.path());

    let (code, stdout, stderr) = bootstrap(
        project.path(),
        &[
            "--env",
            "dev",
            "--auto-approve",
            "--timeout",
            "60s",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
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
    let (code, stdout, stderr) = bootstrap(project.path(), &["--env", "dev", "--timeout", "60s"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("No changes."), "{stdout}");
    assert!(
        stdout.contains("Ready signal for dev/workload: ready"),
        "{stdout}"
    );
    assert!(stdout.contains("  ok nodes: 2/2 Ready"), "{stdout}");
}
