//! Every shipped configuration (the bundled `config/` and each folder of `examples/`)
//! validates cleanly, so the README and the examples never lie.

mod support;

use std::path::PathBuf;

use support::TestContext;

const TOKEN: &str = "root@pam!infraflux=0000";

fn configurations() -> Vec<PathBuf> {
    let root = support::root();
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
        let run = TestContext::new()
            .config(&dir)
            .token(Some(TOKEN))
            .run(&["validate"]);
        let (stdout, stderr) = (&run.stdout, &run.stderr);
        assert!(run.code == 0, "{}: {stdout}{stderr}", dir.display());
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
    // In the project root, where the binary finds `config/` by itself.
    let run = TestContext::with_example()
        .token(Some(TOKEN))
        .run(&["validate", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["environments"],
        serde_json::json!([
            {"name": "dev", "clusters": ["workload"]},
            {"name": "staging", "clusters": ["workload"]},
            {"name": "prod", "clusters": ["management", "workload", "edge"]},
        ])
    );
}
