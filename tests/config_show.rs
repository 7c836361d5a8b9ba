//! `infraflux config show --provenance` and `infraflux config schema` on the bundled
//! example: provenance names the right file:line for values from each of the five
//! layers, and the committed `config/infraflux.schema.json` is exactly what
//! `config schema` prints, is valid JSON Schema, and accepts every example file.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::{TestContext, root};

const TOKEN: &str = support::TOKEN;

/// Run infraflux in a project with a copy of the bundled example; it must succeed.
fn infraflux(args: &[&str]) -> String {
    let run = TestContext::with_example().token(Some(TOKEN)).run(args);
    assert!(run.code == 0, "infraflux {args:?} failed:\n{run}");
    run.stdout
}

/// The provenance comment of the line that is exactly `line` (indentation included)
/// before its comment.
fn provenance_of<'a>(output: &'a str, line: &str) -> &'a str {
    let found: Vec<&str> = output
        .lines()
        .filter_map(|l| {
            let (value, comment) = l.split_once("  # ")?;
            (value.trim_end() == line).then_some(comment)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one line `{line}` with a provenance comment in:\n{output}"
    );
    found[0]
}

#[test]
fn provenance_names_the_layer_of_each_value_in_prod_workload() {
    let output = infraflux(&[
        "config",
        "show",
        "--env",
        "prod",
        "--cluster",
        "workload",
        "--provenance",
    ]);
    for (line, origin) in [
        // defaults/*.yaml
        ("  version: v1.13.9", "config/defaults/cluster.yaml:6"),
        ("  pods: 10.244.0.0/16", "config/defaults/networking.yaml:7"),
        (
            "  endpoint: https://pve1.lab.example.internal:8006",
            "config/defaults/proxmox.yaml:5",
        ),
        // templates/large.yaml (chosen by the cluster's prod override)
        ("  count: 3", "config/templates/large.yaml:4"),
        ("    memory: 32Gi", "config/templates/large.yaml:12"),
        // environments/prod.yaml
        ("  revision: v1.4.2", "config/environments/prod.yaml:6"),
        ("sync_wave: 2", "config/environments/prod.yaml:4"),
        (
            "  prevent_destroy: true",
            "config/environments/prod.yaml:16",
        ),
        // clusters/workload.yaml
        ("role: workload", "config/clusters/workload.yaml:3"),
        // clusters/workload.yaml: environments.prod
        ("template: large", "config/clusters/workload.yaml:22"),
        ("    start: 10.30.0.30", "config/clusters/workload.yaml:27"),
        ("  vip: 10.30.0.6", "config/clusters/workload.yaml:28"),
    ] {
        assert_eq!(provenance_of(&output, line), origin, "for `{line}`");
    }
    // The secret is masked, its origin still shown.
    assert_eq!(
        provenance_of(&output, "  token: (sensitive)"),
        "config/defaults/proxmox.yaml:6"
    );
    assert!(!output.contains(TOKEN));
}

#[test]
fn provenance_follows_a_value_merged_into_a_template_mapping() {
    // prod/edge: the template (small) sets the control plane, the cluster's prod override
    // raises only its count; the other keys keep the template's lines.
    let output = infraflux(&[
        "config",
        "show",
        "--env",
        "prod",
        "--cluster",
        "edge",
        "--provenance",
    ]);
    assert_eq!(
        provenance_of(&output, "  count: 3"),
        "config/clusters/edge.yaml:8"
    );
    assert_eq!(
        provenance_of(&output, "  memory: 4Gi"),
        "config/templates/small.yaml:6"
    );
    assert_eq!(
        provenance_of(&output, "template: small"),
        "config/clusters/edge.yaml:4"
    );
    // The environment's own settings, and a default overridden by it.
    assert_eq!(
        provenance_of(&output, "  image_tag: 1.4.2"),
        "config/environments/prod.yaml:10"
    );
}

#[test]
fn show_without_provenance_prints_plain_yaml_of_the_merged_values() {
    let output = infraflux(&["config", "show", "--env", "dev", "--cluster", "workload"]);
    assert!(!output.contains('#'), "{output}");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&output).expect("show prints YAML");
    assert_eq!(yaml["template"].as_str(), Some("small"));
    assert_eq!(yaml["gitops"]["revision"].as_str(), Some("dev"));
    assert_eq!(
        yaml["network"]["nodes"]["start"].as_str(),
        Some("10.10.0.10")
    );
    assert_eq!(yaml["proxmox"]["token"].as_str(), Some("(sensitive)"));
    // Layer-only keys are not part of an effective configuration.
    assert!(yaml.get("environments").is_none());
    assert!(yaml.get("clusters").is_none());
}

// ---------------------------------------------------------------------------------------
// The schema

fn schema_output(args: &[&str]) -> Value {
    let mut all = vec!["config", "schema"];
    all.extend_from_slice(args);
    serde_json::from_str(&infraflux(&all)).expect("config schema prints JSON")
}

#[test]
fn the_committed_schema_is_what_config_schema_prints() {
    let printed = infraflux(&["config", "schema"]);
    let committed = std::fs::read_to_string(root().join("config/infraflux.schema.json"))
        .expect("config/infraflux.schema.json is committed");
    assert!(
        printed == committed,
        "config/infraflux.schema.json is out of date; regenerate it with\n  \
         cargo run -q -- config schema > config/infraflux.schema.json"
    );
}

#[test]
fn every_schema_is_valid_json_schema() {
    for args in [
        &[][..],
        &["--layer", "defaults"],
        &["--layer", "template"],
        &["--layer", "environment"],
        &["--layer", "cluster"],
    ] {
        let schema = schema_output(args);
        if let Err(error) = jsonschema::meta::validate(&schema) {
            panic!("config schema {args:?} is not valid JSON Schema: {error}");
        }
        assert!(
            jsonschema::validator_for(&schema).is_ok(),
            "config schema {args:?} does not compile"
        );
    }
}

/// Every example file as (layer kind, path, JSON value).
fn example_files() -> Vec<(&'static str, PathBuf, Value)> {
    let mut files = Vec::new();
    for (kind, directory) in [
        ("defaults", "defaults"),
        ("template", "templates"),
        ("environment", "environments"),
        ("cluster", "clusters"),
    ] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("config").join(directory))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            let value: Value = serde_yaml::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is YAML: {e}", path.display()));
            files.push((kind, path, value));
        }
    }
    assert!(files.len() >= 14, "the example has files of every kind");
    files
}

fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    jsonschema::validator_for(schema)
        .unwrap()
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_example_file_validates_against_the_committed_schema() {
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("config/infraflux.schema.json")).unwrap(),
    )
    .unwrap();
    for (kind, path, value) in example_files() {
        let problems = errors(&committed, &value);
        assert!(problems.is_empty(), "{}: {problems:?}", path.display());
        let layer = schema_output(&["--layer", kind]);
        let problems = errors(&layer, &value);
        assert!(
            problems.is_empty(),
            "{} against the {kind} schema: {problems:?}",
            path.display()
        );
    }
}

#[test]
fn the_schema_rejects_what_validate_rejects() {
    // The schema editors use must not be looser than the checks: a misspelt key, a
    // wrong type and a key of another layer kind are all errors.
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("config/infraflux.schema.json")).unwrap(),
    )
    .unwrap();
    let misspelt = serde_json::json!({"proxmox": {"endpiont": "https://x:8006"}});
    assert_eq!(errors(&committed, &misspelt).len(), 1);
    let wrong_type = serde_json::json!({"control_plane": {"cpu": "four"}});
    assert_eq!(errors(&committed, &wrong_type).len(), 1);
    let nested = serde_json::json!({"environments": {"dev": {"sync_wav": 1}}});
    assert_eq!(errors(&committed, &nested).len(), 1);
    let defaults = schema_output(&["--layer", "defaults"]);
    let cluster_only = serde_json::json!({"environments": {"dev": {}}});
    assert_eq!(errors(&defaults, &cluster_only).len(), 1);
    let environment_only = serde_json::json!({"clusters": ["workload"]});
    assert_eq!(
        errors(&schema_output(&["--layer", "cluster"]), &environment_only).len(),
        1
    );
}

#[test]
fn every_example_file_names_the_schema_for_editors() {
    for (_, path, _) in example_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../infraflux.schema.json"),
            "{}",
            path.display()
        );
    }
}
