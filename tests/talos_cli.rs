//! `infraflux talos config` and `infraflux talos render`: a talosconfig and the nodes'
//! machine configs from the secrets in state, written 0600, with the secrets never on
//! the terminal.

#[path = "../providers/talos/tests/support/schema.rs"]
mod talos_schema;

mod support;

use infraflux::state::{LocalStore, ResourceState, ResourceStatus, StateDocument, StateStore};
use infraflux::vocabulary::ResourceAddr;
use support::{RunExt, TestContext};

const CA: &str = "-----BEGIN CERTIFICATE-----\nTALOS-CA\n-----END CERTIFICATE-----\n";
const KEY: &str =
    "-----BEGIN ED25519 PRIVATE KEY-----\nADMIN-KEY-SECRET\n-----END ED25519 PRIVATE KEY-----\n";

/// The bundled example, with state in the project directory (`--state-dir`).
fn project() -> TestContext {
    let project = TestContext::new()
        .config(support::example_config())
        .token(Some("root@pam!infraflux=0000"));
    let state_dir = project.path().to_path_buf();
    project.state_dir(state_dir)
}

#[test]
fn talos_config_writes_a_private_talosconfig_from_state() {
    let dir = project();
    let store = LocalStore::in_project(dir.path());
    let mut document = StateDocument::new("dev");
    let attributes = serde_json::json!({"os_ca_crt": CA, "admin_crt": CA, "admin_key": KEY});
    document.resources.insert(
        ResourceAddr::new("dev", "workload", "talos_secrets", "cluster"),
        ResourceState {
            kind: "talos_secrets".into(),
            provider: "talos".into(),
            id: Some("workload".into()),
            attributes: attributes.as_object().unwrap().into(),
            sensitive: vec!["os_ca_crt".into(), "admin_crt".into(), "admin_key".into()],
            dependencies: Vec::new(),
            status: ResourceStatus::Ready,
        },
    );
    document.serial = 1;
    store.persist(&document).unwrap();

    let out = dir.path().join("talosconfig");
    let output = dir
        .command()
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
        .run();
    let stdout = &output.stdout;
    let stderr = &output.stderr;
    assert!(output.code == 0, "{stdout}{stderr}");
    let _filters = dir.filters();
    insta::assert_snapshot!("talos_config_stderr", stderr);
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
    let dir = project();
    let output = dir
        .command()
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
        .run();
    let stderr = &output.stderr;
    assert_eq!(output.code, 1, "{stderr}");
    let _filters = dir.filters();
    insta::assert_snapshot!("talos_config_without_secrets_stderr", stderr);
}

/// Real secrets for dev/workload, recorded in state as apply would.
fn store_generated_secrets(
    state_dir: &std::path::Path,
) -> infraflux_talos::secrets::ClusterSecrets {
    let secrets = infraflux_talos::secrets::ClusterSecrets::generate().unwrap();
    let store = LocalStore::in_project(state_dir);
    let mut document = StateDocument::new("dev");
    let attributes = secrets.to_attributes();
    document.resources.insert(
        ResourceAddr::new("dev", "workload", "talos_secrets", "cluster"),
        ResourceState {
            kind: "talos_secrets".into(),
            provider: "talos".into(),
            id: Some("talos-secrets-test".into()),
            sensitive: attributes.keys().cloned().collect(),
            attributes: attributes.into(),
            dependencies: Vec::new(),
            status: ResourceStatus::Ready,
        },
    );
    document.serial = 1;
    store.persist(&document).unwrap();
    secrets
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn talos_render_writes_every_nodes_config_privately_and_valid_for_its_version() {
    let dir = project();
    let secrets = store_generated_secrets(dir.path());
    let out = dir.path().join("rendered/dev-workload");
    let output = dir
        .command()
        .args([
            "talos",
            "render",
            "--env",
            "dev",
            "--cluster",
            "workload",
            "--out",
        ])
        .arg(&out)
        .run();
    let stdout = &output.stdout;
    let stderr = &output.stderr;
    assert!(output.code == 0, "{stdout}{stderr}");

    // The output names every file it wrote, and nothing secret.
    let listed: Vec<std::path::PathBuf> = stdout.lines().map(Into::into).collect();
    let mut on_disk: Vec<std::path::PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, on_disk);
    assert!(listed.iter().any(|p| p.ends_with("cp-1.yaml")), "{stdout}");
    let _filters = dir.filters();
    insta::assert_snapshot!("talos_render_stdout", stdout);
    insta::assert_snapshot!("talos_render_stderr", stderr);
    for secret in [
        secrets.cluster_secret.as_str(),
        secrets.bootstrap_token.as_str(),
        secrets.trustd_token.as_str(),
        secrets.os_ca.key.lines().nth(1).unwrap(),
    ] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }

    #[cfg(unix)]
    {
        assert_eq!(mode(&out), 0o700);
        for path in &listed {
            assert_eq!(mode(path), 0o600, "{}", path.display());
        }
    }

    // The configs carry the secrets from state (not new ones) and validate against the
    // official schema of the pinned Talos version (config/defaults/cluster.yaml: v1.13.9).
    let schema = talos_schema::schema_for_version("v1.13.9");
    for path in &listed {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(&secrets.trustd_token), "{}", path.display());
        let documents = infraflux_talos::config::parse_documents(&text).unwrap();
        assert!(documents.len() > 1, "{}: {text}", path.display());
        let Some(schema) = &schema else { continue };
        for document in documents {
            let errors = talos_schema::errors(schema, document);
            assert!(
                errors.is_empty(),
                "{}: {}",
                path.display(),
                errors.join("\n")
            );
        }
    }
}

#[test]
fn talos_render_without_secrets_in_state_never_generates_new_ones() {
    let dir = project();
    let out = dir.path().join("rendered");
    let output = dir
        .command()
        .args([
            "talos",
            "render",
            "--env",
            "dev",
            "--cluster",
            "workload",
            "--out",
        ])
        .arg(&out)
        .run();
    let stderr = &output.stderr;
    assert_eq!(output.code, 1, "{stderr}");
    let _filters = dir.filters();
    insta::assert_snapshot!("talos_render_without_secrets_stderr", stderr);
    assert!(!out.exists(), "nothing is written without secrets");
    assert!(
        LocalStore::in_project(dir.path())
            .load("dev")
            .unwrap()
            .is_none(),
        "no state is created"
    );
}

#[test]
fn bootstrap_render_writes_machine_configs_and_manifests_and_changes_no_state() {
    let dir = project();
    let secrets = store_generated_secrets(dir.path());
    let out = dir.path().join("review");
    let output = dir
        .command()
        .args([
            "bootstrap",
            "--env",
            "dev",
            "--cluster",
            "workload",
            "--render",
        ])
        .arg(&out)
        .run();
    let stdout = &output.stdout;
    let stderr = &output.stderr;
    assert!(output.code == 0, "{stdout}{stderr}");
    assert!(!stdout.contains(&secrets.cluster_secret) && !stderr.contains(&secrets.cluster_secret));

    let config = out.join("dev/workload/talos/cp-1.yaml");
    let _filters = dir.filters();
    insta::assert_snapshot!("bootstrap_render_stdout", stdout);
    #[cfg(unix)]
    assert_eq!(mode(&config), 0o600);
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains(&secrets.trustd_token)
    );
    assert!(
        std::fs::read_dir(out.join("dev/workload/kubernetes"))
            .unwrap()
            .count()
            > 20
    );

    // Nothing was applied: the state is the one stored above.
    let state = LocalStore::in_project(dir.path())
        .load("dev")
        .unwrap()
        .unwrap();
    assert_eq!(state.serial, 1);
    assert_eq!(state.resources.len(), 1);
}
