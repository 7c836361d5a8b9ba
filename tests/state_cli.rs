//! `infraflux state …` over a temporary directory holding state written through the
//! library.

mod support;

use std::path::Path;

use infraflux::state::{
    Encryption, IdentitySource, LocalStore, LockInfo, ResourceState, ResourceStatus, StateDocument,
    StateStore,
};
use infraflux::vocabulary::ResourceAddr;
use infraflux::vocabulary::Sensitive;
use serde_json::{Value, json};
use support::{RunExt, TestContext};

const SECRET: &str = "hunter2-do-not-print";

fn resource(kind: &str, attributes: Value, dependencies: &[&str]) -> ResourceState {
    let Value::Object(attributes) = attributes else {
        panic!("attributes are an object")
    };
    ResourceState {
        kind: kind.to_string(),
        provider: kind.split('_').next().unwrap().to_string(),
        id: Some("101".to_string()),
        attributes: attributes.into(),
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

/// A project directory for state; plain diagnostics (no box drawing and no wrapping at
/// 80 columns).
fn context() -> TestContext {
    TestContext::new().env("NO_GRAPHICS", "1")
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn list_prints_addresses_one_per_line() {
    let project = context();
    let _filters = project.filters();
    write_state(project.path());
    project
        .command()
        .args(["state", "list"])
        .assert()
        .success()
        .stdout(
            "dev/workload/proxmox_vm.cp-1\n\
             dev/workload/proxmox_vm.cp-2\n\
             dev/workload/talos_machine_config.cp-1\n\
             prod/edge/proxmox_vm.w-1\n",
        );
    project
        .command()
        .args(["state", "list", "--env", "prod"])
        .assert()
        .success()
        .stdout("prod/edge/proxmox_vm.w-1\n");
    // An environment without state lists nothing and says so on stderr.
    let run = project
        .command()
        .args(["state", "list", "--env", "staging"])
        .run()
        .success();
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn list_json_describes_each_resource() {
    let project = context();
    write_state(project.path());
    let output = project
        .command()
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
    let project = context();
    write_state(project.path());
    let elsewhere = context();
    elsewhere
        .command()
        .args(["state", "list", "--env", "prod", "--state-dir"])
        .arg(project.path())
        .assert()
        .success()
        .stdout("prod/edge/proxmox_vm.w-1\n");
    elsewhere
        .command()
        .args(["state", "list", "--env", "prod"])
        .env("INFRAFLUX_STATE_DIR", project.path())
        .assert()
        .success()
        .stdout("prod/edge/proxmox_vm.w-1\n");
    elsewhere
        .command()
        .args(["state", "list"])
        .assert()
        .success()
        .stdout("");
}

#[test]
fn show_masks_sensitive_attributes() {
    let project = context();
    write_state(project.path());
    let output = project
        .command()
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

    let output = project
        .command()
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
    let project = context();
    let _filters = project.filters();
    write_state(project.path());
    let run = project
        .command()
        .args(["state", "show", "dev/proxmox_vm.cp-1"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
    let run = project
        .command()
        .args(["state", "show", "dev/workload/proxmox_vm.nope"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
    let run = project
        .command()
        .args(["state", "show", "staging/workload/proxmox_vm.cp-1"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn rm_removes_under_the_lock_and_bumps_the_serial() {
    let project = context();
    let store = write_state(project.path());
    project
        .command()
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
    let project = context();
    let _filters = project.filters();
    let store = write_state(project.path());
    let before = store.load("dev").unwrap();
    let run = project
        .command()
        .args([
            "state",
            "rm",
            "dev/workload/proxmox_vm.cp-2",
            "dev/workload/proxmox_vm.nope",
        ])
        .run()
        .code(1);
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!(run.stderr);
    assert_eq!(store.load("dev").unwrap(), before);
    assert!(!store.lock_path("dev").exists());
}

#[test]
fn mv_renames_and_refuses_conflicts() {
    let project = context();
    let _filters = project.filters();
    let store = write_state(project.path());
    project
        .command()
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

    for to in [
        // already in the state
        "dev/workload/proxmox_vm.cp-2",
        // the resource types differ
        "dev/workload/talos_machine_config.x",
        // different environments
        "prod/workload/proxmox_vm.cp-9",
    ] {
        let run = project
            .command()
            .args(["state", "mv", "dev/workload/proxmox_vm.cp-9", to])
            .run()
            .code(1);
        insta::assert_snapshot!(run.stderr);
    }
    assert_eq!(store.load("dev").unwrap().unwrap(), dev);
}

#[test]
fn a_held_lock_names_its_holder_and_blocks_edits() {
    let project = context();
    let _filters = project.filters();
    let store = write_state(project.path());
    let guard = store.lock("dev", LockInfo::new("apply")).unwrap();
    let output = project
        .command()
        .args(["state", "rm", "dev/workload/proxmox_vm.cp-2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    // What differs from run to run, here; the rest in the snapshot.
    for part in [
        &format!("pid {}", std::process::id()),
        &guard.info().host,
        &format!("infraflux state unlock {} --env dev", guard.info().id),
    ] {
        assert!(text.contains(part), "`{part}` not in:\n{text}");
    }
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&support::escape(&guard.info().host), "[HOST]");
    let _host = settings.bind_to_scope();
    insta::assert_snapshot!(text);
    assert!(!text.contains("STALE"), "{text}");
    // With a timeout it waits, then fails the same way.
    let run = project
        .command()
        .args([
            "state",
            "mv",
            "--lock-timeout",
            "1s",
            "dev/workload/proxmox_vm.cp-2",
            "dev/workload/proxmox_vm.cp-3",
        ])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
    assert_eq!(store.load("dev").unwrap().unwrap().serial, 4);
    drop(guard);
}

#[test]
fn a_lock_released_while_waiting_lets_the_edit_through() {
    let project = context();
    let store = write_state(project.path());
    let guard = store.lock("dev", LockInfo::new("apply")).unwrap();
    let child = project
        .std_command()
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
    let project = context();
    let _filters = project.filters();
    let store = write_state(project.path());
    let mut child = std::process::Command::new("sh")
        .args(["-c", "exit 0"])
        .spawn()
        .unwrap();
    let mut info = LockInfo::new("apply");
    info.pid = child.id();
    child.wait().unwrap();
    std::fs::write(store.lock_path("dev"), serde_json::to_vec(&info).unwrap()).unwrap();

    let output = project
        .command()
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
    let project = context();
    let _filters = project.filters();
    let store = write_state(project.path());
    let mut info = LockInfo::new("apply");
    info.host = format!("{}-elsewhere", info.host);
    std::fs::write(store.lock_path("dev"), serde_json::to_vec(&info).unwrap()).unwrap();

    let output = project
        .command()
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
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&support::escape(&info.host), "[HOST]");
    let _host = settings.bind_to_scope();
    insta::assert_snapshot!(text);

    // The wrong ID is refused and the lock stays.
    let run = project
        .command()
        .args(["state", "unlock", "not-the-id", "--env", "dev"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
    let run = project
        .command()
        .args(["state", "unlock", "not-the-id"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
    // It names the lock there is (its ID differs from run to run).
    assert!(run.stderr.contains(&info.id), "{}", run.stderr);
    assert!(store.lock_path("dev").exists());

    // The right ID breaks it (the environment is found from the ID).
    let run = project
        .command()
        .args(["state", "unlock", &info.id])
        .run()
        .success();
    insta::assert_snapshot!(run.stdout);
    assert!(!store.lock_path("dev").exists());
    project
        .command()
        .args(["state", "rm", "dev/workload/proxmox_vm.cp-2"])
        .assert()
        .success();
    let run = project
        .command()
        .args(["state", "unlock", &info.id, "--env", "dev"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn a_corrupt_state_file_points_at_the_backup() {
    let project = context();
    let _filters = project.filters();
    // The file's checksums, and where the truncated JSON ends, follow its random lineage.
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"xxh3-128:[0-9a-f]{32}", "xxh3-128:[HASH]");
    settings.add_filter(r"line \d+ column \d+", "line [N] column [N]");
    let _hashes = settings.bind_to_scope();
    let store = write_state(project.path());
    let path = store.state_path("dev");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"cores\": 4", "\"cores\": 40")).unwrap();
    let run = project
        .command()
        .args(["state", "list", "--env", "dev"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
    // Cut inside a member's name (where a third of the file ends moved with the
    // checksum's length).
    let cut = text.find("\"cores\"").unwrap() + 3;
    std::fs::write(&path, &text[..cut]).unwrap();
    let run = project
        .command()
        .args(["state", "show", "dev/workload/proxmox_vm.cp-1"])
        .run()
        .code(1);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn a_bad_lock_timeout_is_a_usage_error() {
    let project = context();
    let _filters = project.filters();
    let run = project
        .command()
        .args([
            "state",
            "rm",
            "--lock-timeout",
            "soon",
            "dev/workload/proxmox_vm.cp-2",
        ])
        .run()
        .code(2);
    insta::assert_snapshot!(run.stderr);
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
    let project = context();
    write_state(project.path());
    let output = project
        .command()
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
    let output = project.command().args(["state", "list"]).output().unwrap();
    assert!(
        !stderr(&output).contains("unencrypted"),
        "{}",
        stderr(&output)
    );
    let (key, _) = keypair();
    let output = project
        .command()
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
    let project = context();
    let _filters = project.filters();
    let (old, _) = keypair();
    let (new, new_public) = keypair();
    // Plaintext state, moved to the old key by a write, then rotated.
    write_state(project.path());
    let run = project
        .command()
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .args(["state", "rekey"])
        .run()
        .success();
    insta::assert_snapshot!(run.stdout);
    let store = LocalStore::in_project(project.path()).with_encryption(Some(key_encryption(&old)));
    assert_eq!(store.load("dev").unwrap().unwrap().serial, 4);
    let output = project
        .command()
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .env("INFRAFLUX_STATE_RECIPIENTS", &new_public)
        .args(["state", "rekey", "--env", "prod"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!(stdout(&output));
    assert!(!stdout(&output).contains("`dev`"));
    project
        .command()
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .env("INFRAFLUX_STATE_RECIPIENTS", &new_public)
        .args(["state", "rekey", "--env", "dev"])
        .assert()
        .success();
    // The new key reads every environment; the old one none.
    let run = project
        .command()
        .env("INFRAFLUX_STATE_IDENTITY", &new)
        .args(["state", "list"])
        .run()
        .success();
    insta::assert_snapshot!(run.stdout);
    let output = project
        .command()
        .env("INFRAFLUX_STATE_IDENTITY", &old)
        .args(["state", "list", "--env", "dev"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = stderr(&output);
    insta::assert_snapshot!(text);
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
    // Without any key: told what to set.
    let output = project.command().args(["state", "list"]).output().unwrap();
    assert!(!output.status.success());
    insta::assert_snapshot!(stderr(&output));
    let output = project.command().args(["state", "rekey"]).output().unwrap();
    assert!(!output.status.success());
    insta::assert_snapshot!(stderr(&output));
    // No secret in any file of the state directory.
    for entry in std::fs::read_dir(project.path().join(".infraflux/state")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET));
    }
}
