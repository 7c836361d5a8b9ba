//! Finding and reading the layer files of a configuration directory:
//!
//! ```text
//! <dir>/defaults/*.yaml          merged in file-name order
//! <dir>/templates/<size>.yaml
//! <dir>/environments/<env>.yaml
//! <dir>/clusters/<name>.yaml
//! ```
//!
//! Each file is parsed with positions, interpolated, checked against its kind's schema
//! and for duplicate names in named lists. A broken file is reported and left out, so
//! problems in other files are still found.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::interpolate::{Environment, interpolate};
use super::merge::item_name;
use super::node::{Node, Value};
use super::schema::check_layer;
use super::yaml::parse_file;
use crate::diag::{FileId, Problem, Problems, SourceMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    Defaults,
    Template,
    Environment,
    Cluster,
}

impl LayerKind {
    pub const ALL: [LayerKind; 4] = [
        LayerKind::Defaults,
        LayerKind::Template,
        LayerKind::Environment,
        LayerKind::Cluster,
    ];

    pub fn directory(self) -> &'static str {
        match self {
            LayerKind::Defaults => "defaults",
            LayerKind::Template => "templates",
            LayerKind::Environment => "environments",
            LayerKind::Cluster => "clusters",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            LayerKind::Defaults => "defaults",
            LayerKind::Template => "template",
            LayerKind::Environment => "environment",
            LayerKind::Cluster => "cluster",
        }
    }

    pub fn parse(name: &str) -> Option<LayerKind> {
        LayerKind::ALL
            .into_iter()
            .find(|k| k.noun() == name || k.directory() == name)
    }
}

/// One parsed file.
#[derive(Debug, Clone)]
pub struct Layer {
    pub kind: LayerKind,
    /// The file stem: `prod`, `workload`, `small`, `networking`.
    pub name: String,
    pub file: FileId,
    pub node: Node,
}

/// Every layer of a configuration directory, with the sources they were read from.
#[derive(Debug, Default)]
pub struct LoadedConfig {
    pub root: PathBuf,
    pub sources: SourceMap,
    pub defaults: Vec<Layer>,
    pub templates: IndexMap<String, Layer>,
    pub environments: IndexMap<String, Layer>,
    pub clusters: IndexMap<String, Layer>,
}

/// Read every layer under `root`. Problems are collected; layers with errors that make
/// them unusable (syntax, unreadable) are left out.
pub fn load_layers(root: &Path, env: &dyn Environment, problems: &mut Problems) -> LoadedConfig {
    let mut config = LoadedConfig {
        root: root.to_path_buf(),
        ..LoadedConfig::default()
    };
    if !root.is_dir() {
        problems.push(
            Problem::error(
                "config::missing-directory",
                format!("configuration directory `{}` not found", root.display()),
            )
            .help("run from the project root, or pass `--config DIR` (a folder with defaults/, templates/, environments/ and clusters/)"),
        );
        return config;
    }
    for kind in LayerKind::ALL {
        for path in yaml_files(&root.join(kind.directory()), problems) {
            let Some(layer) = load_layer(kind, &path, &mut config.sources, env, problems) else {
                continue;
            };
            match kind {
                LayerKind::Defaults => config.defaults.push(layer),
                LayerKind::Template => {
                    config.templates.insert(layer.name.clone(), layer);
                }
                LayerKind::Environment => {
                    config.environments.insert(layer.name.clone(), layer);
                }
                LayerKind::Cluster => {
                    config.clusters.insert(layer.name.clone(), layer);
                }
            }
        }
    }
    if config.environments.is_empty() && !problems.has_errors() {
        problems.push(
            Problem::error(
                "config::no-environments",
                format!("no environments in `{}`", root.join("environments").display()),
            )
            .help("add environments/<name>.yaml listing the clusters it runs, e.g. `clusters: [workload]`"),
        );
    }
    config
}

/// `*.yaml` and `*.yml` files of a directory, sorted by name (a missing directory is empty).
fn yaml_files(dir: &Path, problems: &mut Problems) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            problems.push(Problem::error(
                "config::unreadable",
                format!("cannot read directory `{}`: {error}", dir.display()),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                )
        })
        .collect();
    files.sort();
    files
}

fn load_layer(
    kind: LayerKind,
    path: &Path,
    sources: &mut SourceMap,
    env: &dyn Environment,
    problems: &mut Problems,
) -> Option<Layer> {
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                problems.push(
                    Problem::error(
                        "config::unreadable",
                        format!("`{}` is not UTF-8 text", path.display()),
                    )
                    .help("save the file as UTF-8"),
                );
                return None;
            }
        },
        Err(error) => {
            problems.push(
                Problem::error(
                    "config::unreadable",
                    format!("cannot read `{}`: {error}", path.display()),
                )
                .help("check the file's permissions"),
            );
            return None;
        }
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let file = sources.add(path, text);
    let mut node = match parse_file(file, sources.get(file)) {
        Ok(node) => node,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    if !node.is_null() && node.as_map().is_none() {
        problems.push(
            Problem::error(
                "config::not-a-mapping",
                format!("a {} file holds a mapping of settings", kind.noun()),
            )
            .at(node.origin)
            .label(format!("found {}", node.kind_name()))
            .help("write `key: value` lines at the top level"),
        );
        return None;
    }
    let base_dir = path.parent().unwrap_or(Path::new("."));
    interpolate(&mut node, base_dir, env, problems);
    check_layer(kind, &node, problems);
    check_duplicate_names(&node, problems);
    Some(Layer {
        kind,
        name,
        file,
        node,
    })
}

/// Two items with the same `name` in one list of one file would silently merge into one;
/// say so instead.
fn check_duplicate_names(node: &Node, problems: &mut Problems) {
    match &node.value {
        Value::List(items) => {
            let mut seen: IndexMap<&str, &Node> = IndexMap::new();
            for item in items {
                if let Some(name) = item_name(item) {
                    if let Some(first) = seen.insert(name, item) {
                        let name_origin = item.get("name").map_or(item.origin, |n| n.origin);
                        problems.push(
                            Problem::error("config::duplicate-name", format!("duplicate name `{name}`"))
                                .at(name_origin)
                                .label(format!("`{name}` is already used on line {}", first.origin.line))
                                .help("give each item its own name; items with the same name merge across layers, not within one list"),
                        );
                    }
                }
                check_duplicate_names(item, problems);
            }
        }
        Value::Map(map) => {
            for entry in map.values() {
                check_duplicate_names(&entry.node, problems);
            }
        }
        _ => {}
    }
}
