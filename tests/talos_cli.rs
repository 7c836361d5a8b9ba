//! `infraflux talos config`: a talosconfig from the secrets in state, written 0600, with
//! the secrets never on the terminal.

use assert_cmd::Command;
use infraflux::model::address::ResourceAddr;
use infraflux::state::{LocalStore, ResourceState, ResourceStatus, StateDocument, StateStore};

const CA: &str = "-----BEGIN CERTIFICATE-----\nTALOS-CA\n-----END CERTIFICATE-----\n";
const KEY: &str =
    "-----BEGIN ED25519 PRIVATE KEY-----\nADMIN-KEY-SECRET\n-----END ED25519 PRIVATE KEY-----\n";

fn infraflux(state_dir: &std::path::Path) -> Command {
    let mut command = Command::cargo_bin("infraflux").unwrap();
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PROXMOX_TOKEN", "root@pam!infraflux=0000")
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--color", "never"]);
    command
}

#[test]
fn talos_config_writes_a_private_talosconfig_from_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::in_project(dir.path());
    let mut document = StateDocument::new("dev");
    let attributes = serde_json::json!({"os_ca_crt": CA, "admin_crt": CA, "admin_key": KEY});
    document.resources.insert(
        ResourceAddr::new("dev", "workload", "talos_secrets", "cluster"),
        ResourceState {
            kind: "talos_secrets".into(),
            provider: "talos".into(),
            id: Some("workload".into()),
            attributes: attributes.as_object().unwrap().clone(),
            sensitive: vec!["os_ca_crt".into(), "admin_crt".into(), "admin_key".into()],
            dependencies: Vec::new(),
            status: ResourceStatus::Ready,
        },
    );
    document.serial = 1;
    store.persist(&document).unwrap();

    let out = dir.path().join("talosconfig");
    let output = infraflux(dir.path())
        .args([
            "talos",
            "config",
            "--env",
            "dev",
            "--cluster",
            "workload",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("context `dev-workload`, endpoints 10.10.0.10"),
        "{stderr}"
    );
    assert!(!stdout.contains("ADMIN-KEY") && !stderr.contains("ADMIN-KEY"));

    let text = std::fs::read_to_string(&out).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let context = &config["contexts"]["dev-workload"];
    assert_eq!(config["context"], "dev-workload");
    assert_eq!(context["endpoints"][0], "10.10.0.10");
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(context["key"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(key).unwrap(), KEY);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn talos_config_without_secrets_in_state_says_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let output = infraflux(dir.path())
        .args([
            "talos",
            "config",
            "--env",
            "dev",
            "--cluster",
            "workload",
            "--out",
            "-",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no Talos secrets for dev/workload in state"),
        "{stderr}"
    );
    assert!(stderr.contains("infraflux apply --env dev"), "{stderr}");
}
