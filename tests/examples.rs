//! Every shipped configuration (the bundled `config/` and each folder of `examples/`)
//! validates cleanly, so the README and the examples never lie.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn configurations() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("config")];
    for entry in std::fs::read_dir(root.join("examples")).expect("examples/ exists") {
        let path = entry.expect("readable examples/").path();
        if path.join("environments").is_dir() {
            dirs.push(path);
        }
    }
    dirs
}

#[test]
fn every_shipped_configuration_validates() {
    let dirs = configurations();
    assert!(
        dirs.len() >= 2,
        "expected config/ and at least one example, found {dirs:?}"
    );
    for dir in dirs {
        let output = Command::cargo_bin("infraflux")
            .unwrap()
            .arg("--config")
            .arg(&dir)
            .args(["validate", "--color", "never"])
            .env("PROXMOX_TOKEN", "root@pam!infraflux=0000")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{}: {stdout}{stderr}",
            dir.display()
        );
        assert!(
            stdout.starts_with("configuration valid:"),
            "{}: {stdout}",
            dir.display()
        );
        assert!(
            stderr.is_empty(),
            "{} has warnings: {stderr}",
            dir.display()
        );
    }
}

#[test]
fn the_bundled_example_has_the_environments_the_readme_describes() {
    let output = Command::cargo_bin("infraflux")
        .unwrap()
        .args(["validate", "--json"])
        .env("PROXMOX_TOKEN", "root@pam!infraflux=0000")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["environments"],
        serde_json::json!([
            {"name": "dev", "clusters": ["workload"]},
            {"name": "staging", "clusters": ["workload"]},
            {"name": "prod", "clusters": ["management", "workload", "edge"]},
        ])
    );
}
