//! Interoperability with the `age` command-line tool (Debian package `age`): state that
//! InfraFlux encrypts decrypts with `age -d -i key.txt`, and a state file encrypted with
//! `age -r age1… -a` loads in InfraFlux. Skipped, saying why, when `age` is not on PATH
//! (a failure when INFRAFLUX_REQUIRE_AGE is set, as in CI).

use std::path::Path;
use std::process::Command;

use age::secrecy::ExposeSecret;
use infraflux::state::{
    Encryption, IdentitySource, LocalStore, ResourceState, ResourceStatus, StateDocument,
    StateStore, format,
};
use serde_json::{Value, json};

const SECRET: &str = "kubeconfig-token-interop";

/// Set (to anything) to fail instead of skipping when the `age` command is missing; CI
/// sets it (`.ci/run`).
const REQUIRE_VAR: &str = "INFRAFLUX_REQUIRE_AGE";

fn age_available() -> bool {
    match Command::new("age").arg("--version").output() {
        Ok(output) if output.status.success() => true,
        _ => {
            let reason = "the `age` command is not on PATH (install the Debian package `age`)";
            if std::env::var_os(REQUIRE_VAR).is_some() {
                panic!("{reason}, and {REQUIRE_VAR} is set");
            }
            eprintln!("skipped: {reason}");
            false
        }
    }
}

fn document() -> StateDocument {
    let Value::Object(attributes) = json!({"name": "cp-1", "token": SECRET}) else {
        unreachable!()
    };
    let mut doc = StateDocument::new("prod");
    doc.serial = 3;
    doc.lineage = uuid::Uuid::from_u128(7);
    doc.resources.insert(
        "prod/workload/talos_machine_config.cp-1".parse().unwrap(),
        ResourceState {
            kind: "talos_machine_config".into(),
            provider: "talos".into(),
            id: None,
            attributes: attributes.into(),
            sensitive: vec!["token".into()],
            dependencies: vec![],
            status: ResourceStatus::Ready,
        },
    );
    doc
}

/// An age-keygen style key file in `dir`; returns (its path, the public key).
fn key_file(dir: &Path) -> (std::path::PathBuf, String) {
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let path = dir.join("key.txt");
    std::fs::write(
        &path,
        format!(
            "# public key: {public}\n{}\n",
            identity.to_string().expose_secret()
        ),
    )
    .unwrap();
    (path, public)
}

fn encryption(key: &Path) -> Encryption {
    Encryption {
        identities: vec![IdentitySource::File(key.to_path_buf())],
        ..Encryption::default()
    }
}

#[test]
fn state_encrypted_by_infraflux_decrypts_with_the_age_cli() {
    if !age_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = key_file(dir.path());
    let store = LocalStore::new(dir.path().join("state")).with_encryption(Some(encryption(&key)));
    store.persist(&document()).unwrap();
    let output = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(store.state_path("prod"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The plaintext is the normal checksummed envelope.
    assert_eq!(
        format::decode(&output.stdout, "age output").unwrap(),
        document()
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(SECRET));
}

#[test]
fn state_encrypted_by_the_age_cli_loads_in_infraflux() {
    if !age_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_file(dir.path());
    let plain = dir.path().join("prod.plain.json");
    std::fs::write(&plain, format::encode(&document()).unwrap()).unwrap();
    let store = LocalStore::new(dir.path().join("state")).with_encryption(Some(encryption(&key)));
    std::fs::create_dir_all(store.directory()).unwrap();
    for armor in [true, false] {
        let mut command = Command::new("age");
        command.arg("-r").arg(&public);
        if armor {
            command.arg("-a");
        }
        let output = command
            .arg("-o")
            .arg(store.state_path("prod"))
            .arg(&plain)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            store.load("prod").unwrap(),
            Some(document()),
            "armor: {armor}"
        );
    }
}
