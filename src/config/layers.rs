//! Finding and reading the layer files of a configuration directory:
//!
//! ```text
//! <dir>/defaults/*.yaml          merged in file-name order
//! <dir>/templates/<size>.yaml
//! <dir>/environments/<env>.yaml
//! <dir>/clusters/<name>.yaml
//! ```
//!
//! A file `<name>.age.yaml` in any of these directories is an age-encrypted part of layer
//! `<name>`, loaded after every plain file and overlay ([`super::secrets_layers`]).
//!
//! Each file is parsed with positions, interpolated, checked against its kind's schema
//! and for duplicate names in named lists. A broken file is reported and left out, so
//! problems in other files are still found.
//!
//! **Overlays** (`--overlay DIR`, e.g. the one `infraflux lab up` writes) are directories
//! of the same layout whose files merge after the same-kind layers of the main
//! directory: overlay defaults come after every main defaults file; an overlay
//! `environments/dev.yaml` (template, cluster) is deep-merged into the main file of the
//! same name, right after it (a cluster file's `environments:` overrides included), or
//! stands alone when the main directory has none. Values keep the overlay file as their
//! origin, so provenance and diagnostics point at it.
//!
//! References (`${env:…}`, `${file:…}`, `${age:…}`) are only checked here; they are
//! resolved when a selection is composed, and only for its pairs
//! ([`super::interpolate`]). A value an overlay replaces is never resolved (the lab's
//! overlay sets `proxmox.token`, so `PROXMOX_TOKEN` need not be set for a lab run).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::interpolate::{FileRoots, ReferenceContext, Variables, check_references};
use super::limits::{MAX_FILE_BYTES, MAX_TOTAL_BYTES, ReadError, SizeBudget, read_bounded, size};
use super::merge::{item_name, merge};
use super::node::{KeyPath, Node, Value};
use super::schema::check_layer;
use super::secrets::{SecretFiles, SecretValues, is_encrypted_layer};
use super::secrets_layers::load_encrypted_layers;
use super::yaml::{Budget, parse_within};
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
    /// Paths (in this layer's tree) of values refused and left out, or whose checks
    /// would only repeat a problem already reported: see
    /// [`super::EffectiveConfig::unchecked`].
    pub unchecked: Vec<KeyPath>,
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
    /// Layer files that exist but could not be used (unreadable, not UTF-8, broken
    /// YAML). Their problems are already reported; references to them by name are not
    /// reported again as unknown.
    pub broken: Vec<(LayerKind, String)>,
    /// Encrypted parts that could not be opened because no age identity is set: only
    /// the pairs that use their layer need them ([`LoadedConfig::locked`]).
    pub locked: Vec<LockedPart>,
    /// Every value of the encrypted layers (`*.age.yaml`), and where. Values of
    /// references are found when a selection is composed.
    pub secrets: SecretValues,
    /// What resolving the references of a selection needs.
    pub references: ReferenceContext,
    /// Overlays that serve some environments only (their `overlay.yaml`).
    pub served: Vec<Served>,
}

/// An overlay's `overlay.yaml` saying which environments it is for: the lab's overlay
/// points the Proxmox connection at a simulator but gives its addresses to the
/// environments it runs only; any other environment would reach the simulator with its
/// real addresses, so composing one with this overlay is refused.
#[derive(Debug, Clone)]
pub struct Served {
    /// The `environments:` key of the overlay file, where refusals point.
    pub origin: crate::diag::Origin,
    pub overlay: PathBuf,
    pub environments: Vec<String>,
}

/// The file of an overlay directory that limits it to some environments.
pub const OVERLAY_FILE: &str = "overlay.yaml";

/// An encrypted part of a layer left closed for want of an age identity, and the
/// problem to report when a pair that uses the layer is resolved.
#[derive(Debug, Clone)]
pub struct LockedPart {
    pub kind: LayerKind,
    pub name: String,
    pub problem: Problem,
}

impl LoadedConfig {
    /// `state.<key>` of the defaults files (the last file that sets it wins), as text.
    pub fn state_setting(&self, key: &str) -> Option<String> {
        self.defaults.iter().rev().find_map(|layer| {
            layer
                .node
                .get("state")?
                .get(key)?
                .as_str()
                .map(str::to_string)
        })
    }

    /// Whether `name` is a layer file of `kind` that was found but left out.
    pub fn is_broken(&self, kind: LayerKind, name: &str) -> bool {
        self.broken.iter().any(|(k, n)| *k == kind && n == name)
    }

    /// The overlay that does not serve `environment`, if one does not.
    pub fn refusing_overlay(&self, environment: &str) -> Option<&Served> {
        self.served
            .iter()
            .find(|s| !s.environments.iter().any(|e| e == environment))
    }

    /// Why a layer of `kind` named `name` (any defaults file for
    /// [`LayerKind::Defaults`]) is incomplete: its encrypted part is closed.
    pub fn locked(&self, kind: LayerKind, name: &str) -> Option<&Problem> {
        self.locked
            .iter()
            .find(|l| l.kind == kind && (kind == LayerKind::Defaults || l.name == name))
            .map(|l| &l.problem)
    }
}

/// Where a configuration is read from: its directory, then overlay directories of the
/// same layout, in order (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct ConfigPaths<'a> {
    pub dir: &'a Path,
    pub overlays: &'a [PathBuf],
    /// Directories besides the configuration's own that `${file:…}` may read
    /// (`--allow-file-dir`).
    pub file_dirs: &'a [PathBuf],
}

impl<'a> From<&'a Path> for ConfigPaths<'a> {
    fn from(dir: &'a Path) -> Self {
        ConfigPaths {
            dir,
            overlays: &[],
            file_dirs: &[],
        }
    }
}

impl<'a> From<&'a PathBuf> for ConfigPaths<'a> {
    fn from(dir: &'a PathBuf) -> Self {
        ConfigPaths::from(dir.as_path())
    }
}

/// What reading the files of one configuration carries from file to file.
pub(super) struct Reading {
    /// Where `${file:…}` may read.
    pub roots: FileRoots,
    /// The variables `${env:…}` references name.
    pub names: BTreeSet<String>,
    pub limits: Limits,
    pub secrets: SecretFiles,
}

/// What the files of one configuration may still take: bytes, and values once parsed
/// (aliases expanded). One budget for every file, so spreading input over many files
/// gains nothing.
#[derive(Debug, Default)]
pub(super) struct Limits {
    pub bytes: SizeBudget,
    pub values: Budget,
    /// The total size was reached (and reported, once).
    pub full: bool,
}

impl Limits {
    /// Take a file's text from the byte budget; past the total, the file is reported
    /// (the first time) and left out.
    pub fn admit(
        &mut self,
        path: &Path,
        bytes: u64,
        sources: &mut SourceMap,
        problems: &mut Problems,
    ) -> bool {
        if !self.full && self.bytes.take(bytes) {
            return true;
        }
        if !self.full {
            self.full = true;
            let file = sources.add(path, String::new());
            problems.push(
                Problem::error(
                    "config::configuration-too-large",
                    format!(
                        "the configuration is larger than {} in total",
                        size(MAX_TOTAL_BYTES)
                    ),
                )
                .at(sources.get(file).origin(file, 0, 0))
                .label("this file and the ones read after it are left out")
                .help("a configuration holds settings, not data: move large values (dashboards, certificates) out of it, or split it into several configurations"),
            );
        }
        false
    }
}

/// Read every layer under `root`. Problems are collected; layers with errors that make
/// them unusable (syntax, unreadable) are left out.
pub fn load_layers(root: &Path, env: &dyn Variables, problems: &mut Problems) -> LoadedConfig {
    load_layers_with(ConfigPaths::from(root), env, problems)
}

/// [`load_layers`] with overlays merged after the main directory's layers.
pub fn load_layers_with(
    paths: ConfigPaths<'_>,
    env: &dyn Variables,
    problems: &mut Problems,
) -> LoadedConfig {
    #[cfg(any(test, feature = "testing"))]
    reads::count();
    let root = paths.dir;
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
    // Main files are parsed first (so they come first in the source map), then the
    // overlays, then the encrypted parts.
    let mut reading = Reading {
        roots: FileRoots::new(
            std::iter::once(root)
                .chain(paths.overlays.iter().map(PathBuf::as_path))
                .chain(paths.file_dirs.iter().map(PathBuf::as_path)),
        ),
        names: BTreeSet::new(),
        limits: Limits::default(),
        secrets: SecretFiles::new(root, env),
    };
    let mut parsed = Vec::new();
    for kind in LayerKind::ALL {
        for path in yaml_files(&root.join(kind.directory()), problems) {
            match parse_layer(
                kind,
                &path,
                &mut config.sources,
                &mut reading.limits,
                problems,
            ) {
                Some(layer) => parsed.push((layer, path)),
                None => config.broken.push((kind, file_stem(&path))),
            }
        }
    }
    let overlays = load_overlays(
        paths.overlays,
        &mut config.sources,
        &mut config.served,
        &mut reading,
        problems,
    );
    for (mut layer, path) in parsed {
        finish_layer(&mut layer, &path, &config.sources, &mut reading, problems);
        add_layer(&mut config, layer);
    }
    // Encrypted parts belong to their main layer: they merge before any overlay, so an
    // overlay (the lab's, say) always has the last word over endpoints and tokens.
    load_encrypted_layers(&mut config, &mut reading, problems);
    for overlay in overlays {
        add_layer(&mut config, overlay);
    }
    config.secrets = std::mem::take(&mut reading.secrets.found);
    config.references = ReferenceContext::new(reading.names, env, reading.roots, reading.secrets);
    check_names(&config, problems);
    check_environments_list_clusters(&config, problems);
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

/// Environment and cluster names are file names, and become Kubernetes namespaces,
/// hostnames and state files: each must be a DNS label (RFC 1123), or the plan fails
/// later with no place to point at.
fn check_names(config: &LoadedConfig, problems: &mut Problems) {
    let named = config.environments.values().chain(config.clusters.values());
    for layer in named {
        if is_dns_label(&layer.name) {
            continue;
        }
        let file = config.sources.path(layer.file).display().to_string();
        problems.push(
            Problem::error(
                "config::invalid-name",
                format!(
                    "{} name `{}` is not a DNS label",
                    layer.kind.noun(),
                    layer.name
                ),
            )
            .at(config.sources.get(layer.file).origin(layer.file, 0, 0))
            .label("the file's name is the name")
            .help(format!(
                "rename `{file}`: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters (it names Kubernetes namespaces, hostnames and state)"
            )),
        );
    }
}

/// A DNS label (RFC 1123): `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// An environment file without `clusters:` (an empty file, say) ran no clusters, and
/// the next plan proposed destroying everything it had. Running none must be said:
/// `clusters: []`.
fn check_environments_list_clusters(config: &LoadedConfig, problems: &mut Problems) {
    for (name, layer) in &config.environments {
        let refused = layer
            .unchecked
            .iter()
            .any(|p| p.segments().first() == Some(&super::node::Segment::Key("clusters".into())));
        if layer.node.get("clusters").is_some()
            || refused
            || config.locked(LayerKind::Environment, name).is_some()
        {
            continue;
        }
        let empty = layer.node.is_null();
        problems.push(
            Problem::error(
                "config::no-clusters",
                format!("environment `{name}` does not say which clusters it runs"),
            )
            .at(config.sources.get(layer.file).origin(layer.file, 0, 0))
            .label(if empty { "empty file" } else { "no `clusters:`" })
            .help("list them, e.g. `clusters: [workload]`; write `clusters: []` for an environment that runs none (the next apply destroys what it has)"),
        );
    }
}

/// The plain layer files of a directory (encrypted `*.age.yaml` parts are loaded apart).
fn yaml_files(dir: &Path, problems: &mut Problems) -> Vec<PathBuf> {
    yaml_files_where(dir, problems, |path| !is_encrypted_layer(path))
}

/// `*.yaml` and `*.yml` files of a directory that `keep` accepts, sorted by name (a
/// missing directory is empty).
pub(super) fn yaml_files_where(
    dir: &Path,
    problems: &mut Problems,
    keep: impl Fn(&Path) -> bool,
) -> Vec<PathBuf> {
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
        // Not only regular files: a directory or a dangling link named `*.yaml` is
        // reported as unreadable rather than silently skipped.
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml") | Some("yml")
            ) && keep(p)
        })
        .collect();
    files.sort();
    files
}

/// Add a layer; a named layer (template, environment, cluster) that already exists takes
/// the new one merged into it (an overlay after its main file).
fn add_layer(config: &mut LoadedConfig, layer: Layer) {
    let named = match layer.kind {
        LayerKind::Defaults => {
            config.defaults.push(layer);
            return;
        }
        LayerKind::Template => &mut config.templates,
        LayerKind::Environment => &mut config.environments,
        LayerKind::Cluster => &mut config.clusters,
    };
    match named.get_mut(&layer.name) {
        // An empty part (an encrypted file or overlay with no settings) changes nothing.
        Some(_) if layer.node.is_null() => {}
        Some(existing) => {
            if existing.node.is_null() {
                existing.node = layer.node;
            } else {
                merge(&mut existing.node, &layer.node);
            }
            existing.unchecked.extend(layer.unchecked);
        }
        None => {
            named.insert(layer.name.clone(), layer);
        }
    }
}

/// Every layer of the overlay directories, in order, each complete (interpolated and
/// checked on its own).
fn load_overlays(
    overlays: &[PathBuf],
    sources: &mut SourceMap,
    served: &mut Vec<Served>,
    reading: &mut Reading,
    problems: &mut Problems,
) -> Vec<Layer> {
    let mut layers = Vec::new();
    for dir in overlays {
        if !dir.is_dir() {
            problems.push(
                Problem::error(
                    "config::missing-overlay",
                    format!("overlay directory `{}` not found", dir.display()),
                )
                .help("pass `--overlay DIR` (or INFRAFLUX_OVERLAY) a folder laid out like the configuration (defaults/, environments/, clusters/); `infraflux lab up` writes one to .infraflux/lab/overlay"),
            );
            continue;
        }
        if let Some(limit) = read_served(dir, sources, reading, problems) {
            served.push(limit);
        }
        for kind in LayerKind::ALL {
            for path in yaml_files(&dir.join(kind.directory()), problems) {
                if let Some(mut layer) =
                    parse_layer(kind, &path, sources, &mut reading.limits, problems)
                {
                    finish_layer(&mut layer, &path, sources, reading, problems);
                    layers.push(layer);
                }
            }
        }
    }
    layers
}

/// An overlay's [`OVERLAY_FILE`], when it has one: `environments: [names]`.
fn read_served(
    dir: &Path,
    sources: &mut SourceMap,
    reading: &mut Reading,
    problems: &mut Problems,
) -> Option<Served> {
    let path = dir.join(OVERLAY_FILE);
    if !path.exists() {
        return None;
    }
    let bytes = match read_bounded(&path, MAX_FILE_BYTES) {
        Ok(bytes)
            if reading
                .limits
                .admit(&path, bytes.len() as u64, sources, problems) =>
        {
            bytes
        }
        Ok(_) => return None,
        Err(error) => {
            let file = sources.add(&path, String::new());
            problems.push(unreadable(&path, &error).at(sources.get(file).origin(file, 0, 0)));
            return None;
        }
    };
    let file = sources.add(&path, String::from_utf8_lossy(&bytes).into_owned());
    let node = match parse_within(file, sources.get(file), &mut reading.limits.values) {
        Ok(node) => node,
        Err(problem) => {
            if reading.limits.values.worth_reporting(&problem) {
                problems.push(problem);
            }
            return None;
        }
    };
    let list = node.get("environments").and_then(Node::as_list);
    let environments: Option<Vec<String>> = list.and_then(|items| {
        items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect()
    });
    match environments {
        Some(environments) if node.as_map().is_some_and(|m| m.len() == 1) => Some(Served {
            origin: node
                .as_map()
                .and_then(|m| m.get("environments"))
                .map_or(node.origin, |e| e.key_origin),
            overlay: dir.to_path_buf(),
            environments,
        }),
        _ => {
            problems.push(
                Problem::error(
                    "config::invalid-overlay",
                    format!("`{}` does not say which environments the overlay is for", path.display()),
                )
                .at(node.origin)
                .label("expected `environments: [names]` only")
                .help("write `environments: [dev]`, or remove the file to let the overlay apply to every environment"),
            );
            // Refuse every environment rather than apply to all by mistake.
            Some(Served {
                origin: node.origin,
                overlay: dir.to_path_buf(),
                environments: Vec::new(),
            })
        }
    }
}

/// Check a parsed layer: its references (not resolved here), its format, its names.
/// Values the format refuses are reported and left out, so the rest of the layer is
/// still checked (and composed, and resolved) in the same run.
pub(super) fn finish_layer(
    layer: &mut Layer,
    path: &Path,
    sources: &SourceMap,
    reading: &mut Reading,
    problems: &mut Problems,
) {
    let base_dir = path.parent().unwrap_or(Path::new("."));
    check_references(
        &layer.node,
        base_dir,
        &reading.roots,
        &mut reading.names,
        problems,
    );
    let mut refused = check_layer(
        layer.kind,
        &layer.node,
        &sources.get(layer.file).text,
        problems,
    );
    if layer.kind == LayerKind::Template
        && let Some(entry) = layer.node.as_map().and_then(|m| m.get("template"))
    {
        // The template is chosen by defaults, environments and clusters; one named
        // here was silently ignored.
        problems.push(
            Problem::error(
                "config::template-in-template",
                format!("template `{}` cannot choose a template", layer.name),
            )
            .at(entry.key_origin)
            .label("ignored: templates do not nest")
            .help("set `template:` in defaults/, an environment or a cluster file; copy the settings this template should share into it"),
        );
        refused.remove.push(KeyPath::root().key("template"));
    }
    // A second item of the same name would merge into the first; it is left out.
    for duplicate in check_duplicate_names(&layer.node, problems) {
        refused.unchecked.push(duplicate.up_to_first_index());
        refused.remove.push(duplicate);
    }
    layer.node.remove_paths(&refused.remove);
    layer.unchecked.extend(refused.unchecked);
}

/// Read and parse one file (nothing checked yet).
fn parse_layer(
    kind: LayerKind,
    path: &Path,
    sources: &mut SourceMap,
    limits: &mut Limits,
    problems: &mut Problems,
) -> Option<Layer> {
    let name = file_stem(path);
    let bytes = match read_bounded(path, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(error) => {
            // Keep the path in the source map (with no text) so the problem still names
            // its file in `validate --json` and in the rendered report.
            let file = sources.add(path, String::new());
            problems.push(unreadable(path, &error).at(sources.get(file).origin(file, 0, 0)));
            return None;
        }
    };
    if !limits.admit(path, bytes.len() as u64, sources, problems) {
        return None;
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            // Point at the first byte that is not UTF-8 (the text before it is valid, so
            // its offset is the same in the lossy copy that is kept for rendering).
            let offset = error.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(error.as_bytes()).into_owned();
            let file = sources.add(path, lossy);
            let source = sources.get(file);
            let end = source.text[offset..]
                .chars()
                .next()
                .map_or(offset, |c| offset + c.len_utf8());
            problems.push(
                Problem::error(
                    "config::unreadable",
                    format!("`{}` is not UTF-8 text", path.display()),
                )
                .at(source.origin(file, offset, end))
                .label("not UTF-8")
                .help("save the file as UTF-8"),
            );
            return None;
        }
    };
    let file = sources.add(path, text);
    parse_source(kind, name, file, sources, &mut limits.values, problems)
}

/// Why a layer file could not be read, as a problem (to be placed at the file).
pub(super) fn unreadable(path: &Path, error: &ReadError) -> Problem {
    match error {
        ReadError::TooLarge(limit) => Problem::error(
            "config::file-too-large",
            format!("`{}` is larger than {}", path.display(), size(*limit)),
        )
        .label("not read")
        .help("a configuration file holds settings, not data: move large values (dashboards, certificates) out of it, or split it"),
        ReadError::NotAFile(_) | ReadError::Io(_) => Problem::error(
            "config::unreadable",
            format!("cannot read `{}`: {error}", path.display()),
        )
        .help("check that it is a readable file (permissions, not a directory, a FIFO or a device)"),
    }
}

/// Parse a file already in the source map; its top level must be a mapping.
pub(super) fn parse_source(
    kind: LayerKind,
    name: String,
    file: FileId,
    sources: &SourceMap,
    values: &mut Budget,
    problems: &mut Problems,
) -> Option<Layer> {
    let node = match parse_within(file, sources.get(file), values) {
        Ok(node) => node,
        Err(problem) => {
            if values.worth_reporting(&problem) {
                problems.push(problem);
            }
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
    Some(Layer {
        kind,
        name,
        file,
        node,
        unchecked: Vec::new(),
    })
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}

/// Two items with the same `name` in one list of one file would silently merge into one;
/// say so instead. Returns the paths of the later items.
pub(super) fn check_duplicate_names(node: &Node, problems: &mut Problems) -> Vec<KeyPath> {
    let mut duplicates = Vec::new();
    find_duplicate_names(node, &mut KeyPath::root(), &mut duplicates, problems);
    duplicates
}

fn find_duplicate_names(
    node: &Node,
    path: &mut KeyPath,
    duplicates: &mut Vec<KeyPath>,
    problems: &mut Problems,
) {
    match &node.value {
        Value::List(items) => {
            let mut seen: IndexMap<&str, &Node> = IndexMap::new();
            for (i, item) in items.iter().enumerate() {
                path.push(super::node::Segment::Index(i));
                if let Some(name) = item_name(item)
                    && let Some(first) = seen.insert(name, item)
                {
                    let name_origin = item.get("name").map_or(item.origin, |n| n.origin);
                    problems.push(
                            Problem::error("config::duplicate-name", format!("duplicate name `{name}`"))
                                .at(name_origin)
                                .label(format!("`{name}` is already used on line {}", first.origin.line))
                                .help("give each item its own name; items with the same name merge across layers, not within one list"),
                        );
                    duplicates.push(path.clone());
                }
                find_duplicate_names(item, path, duplicates, problems);
                path.pop();
            }
        }
        Value::Map(map) => {
            for (key, entry) in map {
                path.push(super::node::Segment::Key(key.clone()));
                find_duplicate_names(&entry.node, path, duplicates, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyPath;

    struct NoVariables;
    impl Variables for NoVariables {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    fn load(files: &[(&str, &[u8])], dirs: &[&str]) -> (LoadedConfig, Vec<Problem>) {
        let dir = tempfile::tempdir().unwrap();
        for (path, bytes) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        for path in dirs {
            std::fs::create_dir_all(dir.path().join(path)).unwrap();
        }
        let mut problems = Problems::new();
        let config = load_layers(dir.path(), &NoVariables, &mut problems);
        (config, problems.into_iter().collect())
    }

    /// A fresh identity's key text and an encryption to its public key.
    fn age_key() -> (String, crate::encryption::Encryption) {
        use age::secrecy::ExposeSecret;
        let identity = age::x25519::Identity::generate();
        let encryption = crate::encryption::Encryption {
            recipients: vec![identity.to_public().to_string()],
            ..Default::default()
        };
        (identity.to_string().expose_secret().to_string(), encryption)
    }

    struct Key(String);
    impl Variables for Key {
        fn var(&self, name: &str) -> Option<String> {
            (name == crate::config::secrets::IDENTITY_VAR).then(|| self.0.clone())
        }
    }

    #[test]
    fn an_encrypted_layer_merges_after_its_plain_file_and_its_values_are_secret() {
        let (key, encryption) = age_key();
        let dir = tempfile::tempdir().unwrap();
        let environments = dir.path().join("environments");
        std::fs::create_dir_all(&environments).unwrap();
        std::fs::write(
            environments.join("dev.yaml"),
            "clusters: []\ngitops: {revision: dev, path: x}\n",
        )
        .unwrap();
        let sealed = encryption
            .encrypt(b"gitops:\n  revision: from-the-secret-part\n")
            .unwrap();
        std::fs::write(environments.join("dev.age.yaml"), &sealed).unwrap();
        let sealed_alone = encryption
            .encrypt(b"clusters: []\ngitops:\n  revision: from-the-secret-part\n")
            .unwrap();
        std::fs::write(environments.join("edge.age.yaml"), &sealed_alone).unwrap();
        let mut problems = Problems::new();
        let config = load_layers(dir.path(), &Key(key), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            config.environments.keys().collect::<Vec<_>>(),
            ["dev", "edge"],
            "an encrypted part is its layer, not a layer named `dev.age`"
        );
        let dev = &config.environments["dev"].node;
        let revision = dev.lookup(&KeyPath::parse("gitops.revision")).unwrap();
        assert_eq!(revision.as_str(), Some("from-the-secret-part"));
        assert!(
            config
                .sources
                .path(revision.origin.file)
                .ends_with("dev.age.yaml")
        );
        assert!(config.secrets.is_secret_origin(revision.origin));
        let path = dev.lookup(&KeyPath::parse("gitops.path")).unwrap();
        assert!(!config.secrets.is_secret_origin(path.origin));
        assert!(config.secrets.contains_secret("from-the-secret-part"));
    }

    #[test]
    fn an_encrypted_layer_without_the_key_is_reported_at_its_file_and_left_out() {
        let (_, encryption) = age_key();
        let (other_key, _) = age_key();
        let dir = tempfile::tempdir().unwrap();
        let environments = dir.path().join("environments");
        std::fs::create_dir_all(&environments).unwrap();
        std::fs::write(environments.join("dev.yaml"), "clusters: []\n").unwrap();
        std::fs::write(
            environments.join("prod.age.yaml"),
            encryption.encrypt(b"clusters: []\n").unwrap(),
        )
        .unwrap();
        let mut problems = Problems::new();
        let config = load_layers(dir.path(), &Key(other_key), &mut problems);
        let problems: Vec<Problem> = problems.into_iter().collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "config::secret-wrong-key");
        let origin = problems[0].origin.expect("names the file");
        assert!(config.sources.path(origin.file).ends_with("prod.age.yaml"));
        assert!(config.is_broken(LayerKind::Environment, "prod"));
    }

    /// Write `files` under a fresh directory; returns it.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn an_overlay_has_the_last_word_over_an_encrypted_part() {
        let (key, encryption) = age_key();
        let main = tree(&[(
            "environments/dev.yaml",
            "clusters: []\ngitops: {revision: dev, path: x}\n",
        )]);
        let sealed = encryption
            .encrypt(b"gitops:\n  revision: from-the-secret-part\n")
            .unwrap();
        std::fs::write(main.path().join("environments/dev.age.yaml"), &sealed).unwrap();
        let overlay = tree(&[("environments/dev.yaml", "gitops: {revision: lab}\n")]);
        let overlays = [overlay.path().to_path_buf()];
        let mut problems = Problems::new();
        let config = load_layers_with(
            ConfigPaths {
                dir: main.path(),
                overlays: &overlays,
                file_dirs: &[],
            },
            &Key(key),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let revision = config.environments["dev"]
            .node
            .lookup(&KeyPath::parse("gitops.revision"))
            .unwrap();
        assert_eq!(revision.as_str(), Some("lab"));
        assert!(
            config
                .sources
                .path(revision.origin.file)
                .starts_with(overlay.path())
        );
    }

    #[test]
    fn overlays_merge_after_their_kind_and_keep_their_files_as_origins() {
        let main = tree(&[
            (
                "defaults/a.yaml",
                "proxmox: {endpoint: https://pve:8006, storage: local-lvm}\n",
            ),
            ("defaults/b.yaml", "talos: {install_disk: /dev/sda}\n"),
            ("environments/dev.yaml", "clusters: [w]\nsync_wave: 0\n"),
            (
                "clusters/w.yaml",
                "environments: {dev: {network: {vip: 10.0.0.5}}}\n",
            ),
        ]);
        let overlay = tree(&[
            (
                "defaults/lab.yaml",
                "proxmox: {endpoint: https://127.0.0.1:1}\n",
            ),
            (
                "clusters/w.yaml",
                "environments: {dev: {network: {vip: 127.1.0.5}}}\n",
            ),
            ("environments/qa.yaml", "clusters: [w]\n"),
        ]);
        let overlays = [overlay.path().to_path_buf()];
        let mut problems = Problems::new();
        let config = load_layers_with(
            ConfigPaths {
                dir: main.path(),
                overlays: &overlays,
                file_dirs: &[],
            },
            &NoVariables,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        // Defaults: the overlay's file comes after every main one.
        let names: Vec<&str> = config.defaults.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "lab"]);
        // A named layer: merged into the main file of the same name.
        let cluster = &config.clusters["w"].node;
        let vip = cluster
            .lookup(&crate::config::KeyPath::parse(
                "environments.dev.network.vip",
            ))
            .unwrap();
        assert_eq!(vip.as_str(), Some("127.1.0.5"));
        assert!(
            config
                .sources
                .path(vip.origin.file)
                .starts_with(overlay.path())
        );
        // A layer only the overlay has stands alone.
        assert!(config.environments.contains_key("qa"));
    }

    /// The messages of composing `selection` of a tree (with overlays), references
    /// resolved or deferred.
    fn compose_messages(
        main: &Path,
        overlays: &[PathBuf],
        selection: &crate::config::Selection,
        references: crate::config::References,
    ) -> Vec<String> {
        let mut problems = Problems::new();
        let layers = load_layers_with(
            ConfigPaths {
                dir: main,
                overlays,
                file_dirs: &[],
            },
            &NoVariables,
            &mut problems,
        );
        crate::config::compose_config(
            std::sync::Arc::new(layers),
            selection,
            references,
            &mut problems,
        );
        problems.into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn a_reference_an_overlay_replaces_is_never_resolved() {
        let main = tree(&[
            (
                "defaults/proxmox.yaml",
                "proxmox: {token: '${env:PROXMOX_TOKEN}', storage: '${env:STORAGE}'}\n",
            ),
            ("environments/dev.yaml", "clusters: [c]\n"),
            ("clusters/c.yaml", "role: edge\n"),
        ]);
        let overlay = tree(&[("defaults/lab.yaml", "proxmox: {token: 'root@pam!lab=x'}\n")]);
        let messages = compose_messages(
            main.path(),
            &[overlay.path().to_path_buf()],
            &Default::default(),
            crate::config::References::Resolve,
        );
        // The token is replaced: only the storage's variable is missing.
        assert_eq!(messages, ["environment variable `STORAGE` is not set"]);
    }

    #[test]
    fn only_the_selected_environments_references_are_resolved() {
        let main = tree(&[
            ("environments/dev.yaml", "clusters: [c]\n"),
            (
                "environments/prod.yaml",
                "clusters: [c]\nproxmox: {token: '${env:PROD_TOKEN}'}\n",
            ),
            ("clusters/c.yaml", "role: edge\n"),
        ]);
        let dev = crate::config::Selection {
            environment: Some("dev".into()),
            cluster: None,
        };
        let resolve = crate::config::References::Resolve;
        assert!(compose_messages(main.path(), &[], &dev, resolve).is_empty());
        assert_eq!(
            compose_messages(main.path(), &[], &Default::default(), resolve),
            ["environment variable `PROD_TOKEN` is not set"]
        );
        // Deferred (validate), nothing is read at all.
        let defer = crate::config::References::Defer;
        assert!(compose_messages(main.path(), &[], &Default::default(), defer).is_empty());
    }

    #[test]
    fn an_encrypted_part_without_its_key_is_needed_only_by_the_pairs_that_use_it() {
        let (_, encryption) = age_key();
        let main = tree(&[
            ("environments/dev.yaml", "clusters: [c]\n"),
            ("environments/prod.yaml", "clusters: [c]\n"),
            ("clusters/c.yaml", "role: edge\n"),
        ]);
        std::fs::write(
            main.path().join("environments/prod.age.yaml"),
            encryption
                .encrypt(b"proxmox: {token: 'root@pam!x=y'}\n")
                .unwrap(),
        )
        .unwrap();
        let selection = |env: &str| crate::config::Selection {
            environment: Some(env.into()),
            cluster: None,
        };
        let resolve = crate::config::References::Resolve;
        assert!(compose_messages(main.path(), &[], &selection("dev"), resolve).is_empty());
        let prod = compose_messages(main.path(), &[], &selection("prod"), resolve);
        assert_eq!(prod.len(), 1, "{prod:?}");
        assert!(prod[0].contains("no age identity is set"), "{prod:?}");
        let defer = crate::config::References::Defer;
        assert!(compose_messages(main.path(), &[], &Default::default(), defer).is_empty());
    }

    #[test]
    fn a_missing_overlay_directory_is_an_error() {
        let main = tree(&[("environments/dev.yaml", "clusters: []\n")]);
        let overlays = [main.path().join("nope")];
        let mut problems = Problems::new();
        load_layers_with(
            ConfigPaths {
                dir: main.path(),
                overlays: &overlays,
                file_dirs: &[],
            },
            &NoVariables,
            &mut problems,
        );
        let codes: Vec<&str> = problems.iter().map(|p| p.code).collect();
        assert_eq!(codes, ["config::missing-overlay"]);
    }

    #[test]
    fn a_file_that_is_not_utf8_is_reported_at_its_first_bad_byte() {
        let (config, problems) = load(
            &[
                ("environments/dev.yaml", b"clusters: []\n"),
                ("clusters/edge.yaml", b"role: edge\ntemplate: sm\xffall\n"),
            ],
            &[],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        let origin = problems[0].origin.expect("the problem names its file");
        assert!(problems[0].message.ends_with("is not UTF-8 text"));
        assert!(
            config
                .sources
                .path(origin.file)
                .ends_with("clusters/edge.yaml")
        );
        assert_eq!((origin.line, origin.column), (2, 13));
        assert!(config.is_broken(LayerKind::Cluster, "edge"));
    }

    #[test]
    fn a_directory_named_like_a_layer_file_is_unreadable_not_skipped() {
        let (config, problems) = load(
            &[("environments/dev.yaml", b"clusters: []\n")],
            &["templates/small.yaml"],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "config::unreadable");
        let origin = problems[0].origin.expect("the problem names its file");
        assert!(
            config
                .sources
                .path(origin.file)
                .ends_with("templates/small.yaml")
        );
        assert_eq!((origin.line, origin.column), (1, 1));
        assert!(config.is_broken(LayerKind::Template, "small"));
    }
}

/// How many times this thread read a configuration directory: tests prove that a
/// command reads its configuration once (commands run on the calling thread).
#[cfg(any(test, feature = "testing"))]
pub mod reads {
    use std::cell::Cell;

    thread_local! {
        static READS: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn count() {
        READS.with(|reads| reads.set(reads.get() + 1));
    }

    /// Reads on this thread so far.
    pub fn so_far() -> usize {
        READS.with(Cell::get)
    }
}
