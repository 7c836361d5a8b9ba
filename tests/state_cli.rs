//! `infraflux state …` over a temporary directory holding state written through the
//! library.

use std::path::Path;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use infraflux::state::{
    Encryption, IdentitySource, LocalStore, LockInfo, ResourceState, ResourceStatus, StateDocument,
    StateStore,
};
use infraflux::vocabulary::ResourceAddr;
use infraflux::vocabulary::Sensitive;
use predicates::prelude::*;
use serde_json::{Value, json};

const SECRET: &str = "hunter2-do-not-print";

fn resource(kind: &str, attributes: Value, dependencies: &[&str]) -> ResourceState {
    let Value::Object(attributes) = attributes else {
        panic!("attributes are an object")
    };
    ResourceState {
        kind: kind.to_string(),
        provider: kind.split('_').next().unwrap().to_string(),
        id: Some("101".to_string()),
        attributes,
        sensitive: vec!["password".to_string(), "tls.key".to_string()],
        dependencies: dependencies.iter().map(|d| d.parse().unwrap()).collect(),
        status: ResourceStatus::Ready,
    }
}

/// `dev` with three resources, `prod` with one.
fn write_state(project: &Path) -> LocalStore {
    let store = LocalStore::in_project(project);
    let mut dev = StateDocument::new("dev");
    dev.serial = 4;
    for (address, state) in [
        (
            "dev/workload/proxmox_vm.cp-1",
            resource(
                "proxmox_vm",
                json!({"name": "cp-1", "cores": 4, "password": SECRET, "tls": {"key": SECRET, "cert": "PUBLIC"}}),
                &[],
            ),
        ),
        (
            "dev/workload/proxmox_vm.cp-2",
            resource("proxmox_vm", json!({"name": "cp-2"}), &[]),
        ),
        (
            "dev/workload/talos_machine_config.cp-1",
            resource(
                "talos_machine_config",
                json!({"role": "controlplane"}),
                &["dev/workload/proxmox_vm.cp-1"],
            ),
        ),
    ] {
        dev.resources.insert(address.parse().unwrap(), state);
    }
    store.persist(&dev).unwrap();
    let mut prod = StateDocument::new("prod");
    prod.serial = 1;
    prod.resources.insert(
        "prod/edge/proxmox_vm.w-1".parse().unwrap(),
        resource("proxmox_vm", json!({"name": "w-1"}), &[]),
    );
    store.persist(&prod).unwrap();
    store
}

fn infraflux(project: &Path) -> Command {
    let mut command = cargo_bin_cmd!("infraflux");
    command
        .current_dir(project)
        .env_remove("INFRAFLUX_STATE_DIR")
        .env_remove("INFRAFLUX_STATE_RECIPIENTS")
        .env_remove("INFRAFLUX_STATE_IDENTITY_FILE")
        .env_remove("INFRAFLUX_STATE_IDENTITY")
        .env_remove("INFRAFLUX_STATE_PASSPHRASE")
        .env("NO_COLOR", "1")
        // Plain diagnostics: no box drawing and no wrapping at 80 columns.
        .env("NO_GRAPHICS", "1");
    command
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn list_prints_addresses_one_per_line() {
    let project = tempfile::tempdir().unwrap();
    write_state(project.path());
    infraflux(project.path())
        .args(["state", "list"])
        .assert()
        .success()
        .stdout(
            "dev/workload/proxmox_vm.cp-1\n\
             dev/workload/proxmox_vm.cp-2\n\
             dev/workload/talos_machine_config.cp-1\n\
             prod/edge/proxmox_vm.w-1\n",
        );
    infraflux(project.path())
        .args(["state", "list", "--env", "prod"])
        .assert()
        .success()
        .stdout("prod/edge/proxmox_vm.w-1\n");
    // An environment without state lists nothing and says so on stderr.
    infraflux(project.path())
        .args(["state", "list", "--env", "staging"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(
            "no state for environment `staging`",
        ));
}

#[test]
fn list_json_describes_each_resource() {
    let project = tempfile::tempdir().unwrap();
    write_state(project.path());
    let output = infraflux(project.path())
        .args(["state", "list", "--env", "dev", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(
        listed[2],
        json!({
            "address": "dev/workload/talos_machine_config.cp-1",
            "type": "talos_machine_config",
            "provider": "talos",
            "id": "101",
            "status": "ready",
        })
    );
}

#[test]
fn the_state_directory_comes_from_the_flag_or_the_environment() {
    let project = tempfile::tempdir().unwrap();
    write_state(project.path());
    let elsewhere = tempfile::tempdir().unwrap();
    infraflux(elsewhere.path())
        .args(["state", "list", "--env", "prod", "--state-dir"])
        .arg(project.path())
        .assert()
        .success()
        .stdout("prod/edge/proxmox_vm.w-1\n");
    infraflux(elsewhere.path())
        .args(["state", "list", "--env", "prod"])
        .env("INFRAFLUX_STATE_DIR", project.path())
        .assert()
        .success()
        .stdout("prod/edge/proxmox_vm.w-1\n");
    infraflux(elsewhere.path())
        .args(["state", "list"])
        .assert()
        .success()
        .stdout("");
}

#[test]
fn show_masks_sensitive_attributes() {
    let project = tempfile::tempdir().unwrap();
    write_state(project.path());
    let output = infraflux(project.path())
        .args(["state", "show", "dev/workload/proxmox_vm.cp-1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains(SECRET), "{text}");
    let shown: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(shown["address"], json!("dev/workload/proxmox_vm.cp-1"));
    assert_eq!(shown["type"], json!("proxmox_vm"));
    assert_eq!(
        shown["attributes"],
        json!({"name": "cp-1", "cores": 4, "password": "(sensitive)", "tls": {"key": "(sensitive)", "cert": "PUBLIC"}})
    );

    let output = infraflux(project.path())
        .args([
            "state",
            "show",
            "--json",
            "dev/workload/talos_machine_config.cp-1",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["attributes"], json!({"role": "controlplane"}));
    assert_eq!(
        shown["dependencies"],
        json!(["dev/workload/proxmox_vm.cp-1"])
    );
}

#[test]
fn show_explains_bad_addresses_and_missing_resources() {
    let project = tempfile::tempdir().unwrap();
    write_state(project.path());
    infraflux(project.path())
        .args(["state", "show", "dev/proxmox_vm.cp-1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid resource address"))
        .stderr(predicate::str::contains("help"));
    infraflux(project.path())
        .args(["state", "show", "dev/workload/proxmox_vm.nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no resource `dev/workload/proxmox_vm.nope` in the state of environment `dev`",
        ))
        .stderr(predicate::str::contains("infraflux state list --env dev"));
    infraflux(project.path())
        .args(["state", "show", "staging/workload/proxmox_vm.cp-1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no state for environment `staging`",
        ))
        .stderr(predicate::str::contains("--state-dir"));
}

#[test]
fn rm_removes_under_the_lock_and_bumps_the_serial() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    infraflux(project.path())
        .args([
            "state",
            "rm",
            "dev/workload/proxmox_vm.cp-2",
            "prod/edge/proxmox_vm.w-1",
        ])
        .assert()
        .success()
        .stdout("removed dev/workload/proxmox_vm.cp-2\nremoved prod/edge/proxmox_vm.w-1\n");
    let dev = store.load("dev").unwrap().unwrap();
    assert_eq!(dev.serial, 5);
    assert_eq!(dev.resources.len(), 2);
    let prod = store.load("prod").unwrap().unwrap();
    assert_eq!(prod.serial, 2);
    assert!(prod.resources.is_empty());
    assert!(!store.lock_path("dev").exists());
    assert!(!store.lock_path("prod").exists());
}

#[test]
fn rm_of_a_missing_resource_changes_nothing() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    let before = store.load("dev").unwrap();
    infraflux(project.path())
        .args([
            "state",
            "rm",
            "dev/workload/proxmox_vm.cp-2",
            "dev/workload/proxmox_vm.nope",
        ])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("proxmox_vm.nope"));
    assert_eq!(store.load("dev").unwrap(), before);
    assert!(!store.lock_path("dev").exists());
}

#[test]
fn mv_renames_and_refuses_conflicts() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    infraflux(project.path())
        .args([
            "state",
            "mv",
            "dev/workload/proxmox_vm.cp-1",
            "dev/workload/proxmox_vm.cp-9",
        ])
        .assert()
        .success()
        .stdout("moved dev/workload/proxmox_vm.cp-1 to dev/workload/proxmox_vm.cp-9\n");
    let dev = store.load("dev").unwrap().unwrap();
    assert_eq!(dev.serial, 5);
    let moved: ResourceAddr = "dev/workload/proxmox_vm.cp-9".parse().unwrap();
    assert!(dev.resources.contains_key(&moved));
    let config: ResourceAddr = "dev/workload/talos_machine_config.cp-1".parse().unwrap();
    assert_eq!(dev.resources[&config].dependencies, vec![moved]);

    for (to, expected) in [
        (
            "dev/workload/proxmox_vm.cp-2",
            "resource `dev/workload/proxmox_vm.cp-2` is already in the state",
        ),
        (
            "dev/workload/talos_machine_config.x",
            "the resource types differ",
        ),
        ("prod/workload/proxmox_vm.cp-9", "different environments"),
    ] {
        infraflux(project.path())
            .args(["state", "mv", "dev/workload/proxmox_vm.cp-9", to])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(expected))
            .stderr(predicate::str::contains("help"));
    }
    assert_eq!(store.load("dev").unwrap().unwrap(), dev);
}

#[test]
fn a_held_lock_names_its_holder_and_blocks_edits() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    let guard = store.lock("dev", LockInfo::new("apply")).unwrap();
    let output = infraflux(project.path())
        .args(["state", "rm", "dev/workload/proxmox_vm.cp-2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    for part in [
        "state for environment `dev` is locked by",
        &format!("pid {}", std::process::id()),
        "operation `apply`",
        &guard.info().host,
        " ago",
        &format!("infraflux state unlock {} --env dev", guard.info().id),
        "--lock-timeout",
    ] {
        assert!(text.contains(part), "`{part}` not in:\n{text}");
    }
    assert!(!text.contains("STALE"), "{text}");
    // With a timeout it waits, then fails the same way.
    infraflux(project.path())
        .args([
            "state",
            "mv",
            "--lock-timeout",
            "1s",
            "dev/workload/proxmox_vm.cp-2",
            "dev/workload/proxmox_vm.cp-3",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is locked by"));
    assert_eq!(store.load("dev").unwrap().unwrap().serial, 4);
    drop(guard);
}

#[test]
fn a_lock_released_while_waiting_lets_the_edit_through() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    let guard = store.lock("dev", LockInfo::new("apply")).unwrap();
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("infraflux"));
    let child = command
        .current_dir(project.path())
        .env_remove("INFRAFLUX_STATE_DIR")
        .args([
            "state",
            "rm",
            "--lock-timeout",
            "2m",
            "dev/workload/proxmox_vm.cp-2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(guard);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "removed dev/workload/proxmox_vm.cp-2\n");
    assert_eq!(store.load("dev").unwrap().unwrap().serial, 5);
}

/// Issue 14: a killed run's lock on this host is broken by the next run, which says so.
#[test]
fn a_stale_lock_is_broken_and_the_run_says_so() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    let mut child = std::process::Command::new("sh")
        .args(["-c", "exit 0"])
        .spawn()
        .unwrap();
    let mut info = LockInfo::new("apply");
    info.pid = child.id();
    child.wait().unwrap();
    std::fs::write(store.lock_path("dev"), serde_json::to_vec(&info).unwrap()).unwrap();

    let output = infraflux(project.path())
        .args(["state", "rm", "dev/workload/proxmox_vm.cp-2"])
        .output()
        .unwrap();
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "warning: broke the stale lock of environment `dev`: it was held by {} on {} (pid {}",
            info.owner, info.host, info.pid
        )),
        "{text}"
    );
    assert!(text.contains(&info.id), "{text}");
    assert!(text.contains("that process no longer runs"), "{text}");
    assert!(!store.lock_path("dev").exists());
    assert_eq!(store.load("dev").unwrap().unwrap().serial, 5);
}

/// A lock taken on another host cannot be checked: it is broken only by `state unlock`.
#[test]
fn a_lock_of_another_host_takes_unlock_with_its_id() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    let mut info = LockInfo::new("apply");
    info.host = format!("{}-elsewhere", info.host);
    std::fs::write(store.lock_path("dev"), serde_json::to_vec(&info).unwrap()).unwrap();

    let output = infraflux(project.path())
        .args(["state", "rm", "dev/workload/proxmox_vm.cp-2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(!text.contains("STALE"), "{text}");
    assert!(
        text.contains(&format!("infraflux state unlock {} --env dev", info.id)),
        "{text}"
    );

    // The wrong ID is refused and the lock stays.
    infraflux(project.path())
        .args(["state", "unlock", "not-the-id", "--env", "dev"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "lock ID `not-the-id` does not match the lock on environment `dev`",
        ));
    infraflux(project.path())
        .args(["state", "unlock", "not-the-id"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no lock with ID `not-the-id`"))
        .stderr(predicate::str::contains(&info.id));
    assert!(store.lock_path("dev").exists());

    // The right ID breaks it (the environment is found from the ID).
    infraflux(project.path())
        .args(["state", "unlock", &info.id])
        .assert()
        .success()
        .stdout(predicate::str::contains("unlocked environment `dev`"));
    assert!(!store.lock_path("dev").exists());
    infraflux(project.path())
        .args(["state", "rm", "dev/workload/proxmox_vm.cp-2"])
        .assert()
        .success();
    infraflux(project.path())
        .args(["state", "unlock", &info.id, "--env", "dev"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("environment `dev` is not locked"));
}

#[test]
fn a_corrupt_state_file_points_at_the_backup() {
    let project = tempfile::tempdir().unwrap();
    let store = write_state(project.path());
    let path = store.state_path("dev");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"cores\": 4", "\"cores\": 40")).unwrap();
    infraflux(project.path())
        .args(["state", "list", "--env", "dev"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is corrupt: checksum mismatch"))
        .stderr(predicate::str::contains("dev.json.backup"));
    std::fs::write(&path, &text[..text.len() / 3]).unwrap();
    infraflux(project.path())
        .args(["state", "show", "dev/workload/proxmox_vm.cp-1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is corrupt: it is not valid JSON"))
        .stderr(predicate::str::contains("dev.json.backup"));
}

#[test]
fn a_bad_lock_timeout_is_a_usage_error() {
    let project = tempfile::tempdir().unwrap();
    infraflux(project.path())
        .args([
            "state",
            "rm",
            "--lock-timeout",
            "soon",
            "dev/workload/proxmox_vm.cp-2",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid duration `soon`"));
}

/// (secret key, public key)
fn keypair() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    (
        identity.to_string().expose_secret().to_string(),
        identity.to_public().to_string(),
    )
}

fn key_encryption(key: &str) -> Encryption {
    Encryption {
        identities: vec![IdentitySource::Key(Sensitive::new(key.to_string()))],
        ..Encryption::default()
    }
}

#[test]
fn writes_without_a_key_warn_once_that_state_is_plaintext() {
    let project = tempfile::tempdir().unwrap();
    write_state(project.path());
    let output = infraflux(project.path())
        .args([
            "state",
            "rm",
            "dev/workload/proxmox_vm.cp-2",
            "prod/edge/proxmox_vm.w-1",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // Two environments written, one warning.
    assert_eq!(
        stderr(&output)
            .matches("state is stored unencrypted")
            .count(),
        1,
        "{}",
        stderr(&output)
    );
    // Reads do not warn; writes with a key do not either.
    let output = infraflux(project.path())
        .args(["state", "list"])
        .output()
        .unwrap();
    assert!(
        !stderr(&output).contains("unencrypted"),
        "{}",
        stderr(&output)
    );
    let (key, _) = keypair();
    let output = infraflux(project.path())
        .env("INFRAFLUX_STATE_IDENTITY", &key)
        .args([
            "state",
            "mv",
            "dev/workload/proxmox_vm.cp-1",
            "dev/workload/proxmox_vm.cp-9",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("unencrypted"),
        "{}",
        stderr(&output)
    );
    let bytes = std::fs::read(project.path().join(".infraflux/state/dev.json")).unwrap();
    assert!(bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
}

#[test]
fn rekey_rotates_every_environment_to_the_new_recipients() {
    let project = tempfile::tempdir().unwrap();
    let (old, _) = keypair();
    let (new, new_public) = keypair();
    // Plaintext state, moved to the old key by a write, then rotated.
    write_state(project.path());
    infraflux(project.path())
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .args(["state", "rekey"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "re-encrypted the state of environment `dev`",
        ))
        .stdout(predicate::str::contains(
            "re-encrypted the state of environment `prod`",
        ));
    let store = LocalStore::in_project(project.path()).with_encryption(Some(key_encryption(&old)));
    assert_eq!(store.load("dev").unwrap().unwrap().serial, 4);
    let output = infraflux(project.path())
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .env("INFRAFLUX_STATE_RECIPIENTS", &new_public)
        .args(["state", "rekey", "--env", "prod"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("`prod`") && !stdout(&output).contains("`dev`"));
    infraflux(project.path())
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .env("INFRAFLUX_STATE_RECIPIENTS", &new_public)
        .args(["state", "rekey", "--env", "dev"])
        .assert()
        .success();
    // The new key reads every environment; the old one none.
    infraflux(project.path())
        .env("INFRAFLUX_STATE_IDENTITY", &new)
        .args(["state", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("prod/edge/proxmox_vm.w-1"));
    let output = infraflux(project.path())
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .args(["state", "list", "--env", "dev"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("dev.json` cannot be decrypted"), "{text}");
    assert!(text.contains("state::wrong-key"), "{text}");
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
    // Without any key: told what to set.
    let output = infraflux(project.path())
        .args(["state", "list"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("INFRAFLUX_STATE_IDENTITY_FILE"),
        "{}",
        stderr(&output)
    );
    let output = infraflux(project.path())
        .args(["state", "rekey"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no state encryption is configured"),
        "{}",
        stderr(&output)
    );
    // No secret in any file of the state directory.
    for entry in std::fs::read_dir(project.path().join(".infraflux/state")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET));
    }
}
