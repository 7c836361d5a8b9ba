#![allow(dead_code)] // each test file that includes this module uses a part of it
//! The official Talos machine-config JSON schemas, for tests here and in the engine
//! (`tests/talos_cli.rs` includes this file with `#[path]`).
//!
//! Schemas come from `shared/schemas/` next to the repository clone; callers skip, with
//! the reason printed, when that folder is absent.

use std::path::PathBuf;

use serde_json::Value;

pub fn schemas_dir() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../shared/schemas"),
        manifest.join("../../../shared/schemas"),
        PathBuf::from("/work/shared/schemas"),
    ]
    .into_iter()
    .find(|dir| dir.join("talos-config.v1.13.9.schema.json").is_file())
}

pub struct Schema {
    pub validator: jsonschema::Validator,
    pub version: &'static str,
}

/// The schema in `file`, for Talos `version`; `None` (with the reason printed) when the
/// schemas folder is absent.
pub fn schema(file: &str, version: &'static str) -> Option<Schema> {
    let Some(dir) = schemas_dir() else {
        println!("skipping: no shared/schemas folder next to the repository");
        return None;
    };
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    Some(Schema {
        validator: jsonschema::validator_for(&schema).unwrap(),
        version,
    })
}

/// The schema for a Talos version as the configuration pins it (`v1.13.9`, `1.14.0`).
pub fn schema_for_version(talos_version: &str) -> Option<Schema> {
    let trimmed = talos_version.trim_start_matches('v');
    if trimmed.starts_with("1.13") {
        schema("talos-config.v1.13.9.schema.json", "v1.13.9")
    } else if trimmed.starts_with("1.14") {
        schema("talos-config.v1.14.0-rc.1.schema.json", "v1.14.0-rc.1")
    } else {
        panic!("no schema for Talos {talos_version}")
    }
}

/// Known slips of the 1.14.0-rc.1 schema (shared/schemas/SOURCES.md): it names
/// `UnattendedInstallConfig` `UnattendedInstall` and `KubeSpanEndpointsConfig`
/// `KubeSpanEndpoints`. We emit the kinds Talos parses, and rename for validation only.
pub fn adjust_for_schema_slips(version: &str, mut document: Value) -> Value {
    if version.starts_with("v1.14") {
        let renamed = match document.get("kind").and_then(Value::as_str) {
            Some("UnattendedInstallConfig") => Some("UnattendedInstall"),
            Some("KubeSpanEndpointsConfig") => Some("KubeSpanEndpoints"),
            _ => None,
        };
        if let Some(kind) = renamed {
            document["kind"] = Value::String(kind.into());
        }
    }
    document
}

/// Validate one document; the errors, each with where it is.
pub fn errors(schema: &Schema, document: Value) -> Vec<String> {
    let document = adjust_for_schema_slips(schema.version, document);
    schema
        .validator
        .iter_errors(&document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}
