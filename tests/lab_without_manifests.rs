//! `lab run` on a machine with no copy of ArgoCD's release manifest (no mirror, an empty
//! cache, no network): it still reaches the ready signal, by a simulated ArgoCD install
//! it announces loudly on stderr; with the mirror, the real manifest is installed and
//! nothing is simulated.

mod support;

use support::TestContext;
use support::lab::project;

/// `lab run --env dev` in `project`, which must succeed: (stdout, stderr).
fn lab_run(project: &TestContext) -> (String, String) {
    let output = project
        .command()
        .args(["lab", "run", "--env", "dev"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn without_mirror_cache_or_network_the_lab_simulates_argocd_and_says_so() {
    let project = project()
        .env_remove("INFRAFLUX_MANIFESTS")
        .env("INFRAFLUX_MANIFESTS_URL", support::upstream::UNREACHABLE);
    let (stdout, stderr) = lab_run(&project);
    // Said before anything runs, by the provider when it renders, and at the end.
    let banner = stderr
        .find("Lab: SIMULATED ARGOCD: the lab has no copy of ArgoCD's release manifest")
        .unwrap_or_else(|| panic!("no notice:\n{stderr}"));
    assert!(
        banner < stderr.find("== plan (dev) ==").unwrap(),
        "{stderr}"
    );
    assert!(
        stderr.contains("downloading http://127.0.0.1:9/argo-cd-v3.5.1/install.yaml failed"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("SIMULATED INSTALL: argo-cd v3.5.1 install.yaml")
            .count(),
        1,
        "once per run, not per render:\n{stderr}"
    );
    assert!(
        stderr.contains("Lab: ArgoCD was SIMULATED in this run"),
        "{stderr}"
    );
    // Ready, with ArgoCD's own objects only: the namespace, the AppProject, the
    // Application adopting Cilium.
    assert!(
        stdout.contains("Ready signal for dev/workload: ready"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok platform argocd: 3/3 objects current"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("No changes. The infrastructure matches the configuration."),
        "{stdout}"
    );
}

#[test]
fn with_the_mirror_the_lab_installs_the_release_manifest() {
    if support::upstream::required_mirror().is_none() {
        return;
    }
    let project = project();
    let (stdout, stderr) = lab_run(&project);
    assert!(!stderr.contains("SIMULATED"), "{stderr}");
    // install.yaml's 59 objects but its 32 ServiceAccounts, Roles, bindings and
    // NetworkPolicies (their own check), with InfraFlux's namespace, AppProject and
    // adoption Application.
    assert!(
        stdout.contains("ok platform argocd: 30/30 objects current"),
        "{stdout}"
    );
}
