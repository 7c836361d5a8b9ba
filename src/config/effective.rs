//! The effective configuration of one (environment, cluster) pair: the deep merge of
//! defaults → template → environment → cluster → the cluster's override for that
//! environment, most specific last. Layer-only keys (`clusters` of an environment,
//! `environments` of a cluster) are not part of the result.

use std::collections::{HashMap, HashSet};

use super::interpolate::{References, resolve_references};
use super::layers::{Layer, LayerKind, LoadedConfig};
use super::merge::merge_all;
use super::node::{KeyPath, Node, Value};
use super::secrets::SecretValues;
use super::yaml::MAX_VALUES;
use crate::diag::{Problem, Problems, did_you_mean};

/// The most values the selected pairs may hold together. Each pair is a copy of the
/// layers it merges, so a large shared layer times many pairs would exhaust memory even
/// with every file within its limits; a thousand clusters in three environments take
/// about a tenth of this.
pub const MAX_COMPOSED_VALUES: usize = 4 * MAX_VALUES;

/// Which pairs a command works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub environment: Option<String>,
    pub cluster: Option<String>,
}

/// The merged settings of one pair; every value keeps the origin of the layer that set it.
#[derive(Debug, Clone)]
pub struct EffectiveConfig {
    pub environment: String,
    pub cluster: String,
    /// Template name, when one applies.
    pub template: Option<String>,
    pub node: Node,
    /// Values whose checks are skipped: they wait on a deferred reference, or a problem
    /// about them is already reported (a reference that failed, a value the schema
    /// refused). A path covers everything below it.
    pub unchecked: Vec<KeyPath>,
    /// A layer of this pair is missing (a broken file, an unknown template, an
    /// encrypted part without its key): a key not set may be set there, so missing
    /// keys are not reported.
    pub incomplete: bool,
}

impl EffectiveConfig {
    /// Whether checks of the value at `path` are skipped ([`Self::unchecked`]).
    pub fn is_unchecked(&self, path: &KeyPath) -> bool {
        self.unchecked.iter().any(|u| path.starts_with(u))
    }
}

/// Compose every selected pair, reporting references to unknown environments, clusters
/// and templates where they are written.
pub fn compose(
    config: &LoadedConfig,
    selection: &Selection,
    references: References,
    secrets: &mut SecretValues,
    problems: &mut Problems,
) -> Vec<EffectiveConfig> {
    check_selection(config, selection, problems);
    // (environment, cluster) pairs whose override block is probably the misspelt one.
    let misnamed = check_cluster_overrides(config, problems);
    // `state:` is project-wide (see `LoadedConfig::state_setting`), not a pair's setting.
    let defaults: Vec<Node> = config
        .defaults
        .iter()
        .map(|l| without_key(&l.node, "state"))
        .collect();
    let defaults: Vec<&Node> = defaults.iter().collect();
    let defaults_size: usize = defaults.iter().map(|d| d.count_values()).sum();
    let mut composed = 0usize;
    // Each cluster's settings without its per-environment overrides, copied once per
    // cluster rather than once per pair.
    let mut cluster_settings: HashMap<&str, Node> = HashMap::new();
    let mut result = Vec::new();
    for (env_name, env_layer) in &config.environments {
        if selection
            .environment
            .as_ref()
            .is_some_and(|e| e != env_name)
        {
            continue;
        }
        if let Some(overlay) = config.refusing_overlay(env_name) {
            // Asked for by name: refused; among all environments: left out.
            if selection.environment.is_some() {
                problems.push(
                    Problem::error(
                        "config::environment-not-served",
                        format!(
                            "the overlay `{}` is for {} only, not `{env_name}`",
                            overlay.overlay.display(),
                            if overlay.environments.is_empty() {
                                "no environment".to_string()
                            } else {
                                overlay.environments.join(", ")
                            }
                        ),
                    )
                    .at(overlay.origin)
                    .label("the environments it serves")
                    .help(format!(
                        "`{env_name}` would run against it with its real addresses: serve it too (`infraflux lab up --env {env_name}`), or run without this overlay"
                    )),
                );
            }
            continue;
        }
        // The environment's settings without its cluster list, once per environment.
        let env_node = without_key(&env_layer.node, "clusters");
        for (cluster_name, cluster_origin) in cluster_names(env_layer, problems) {
            let Some((cluster_key, cluster_layer)) = config.clusters.get_key_value(&cluster_name)
            else {
                if config.is_broken(LayerKind::Cluster, &cluster_name) {
                    // Its file is there but broken, and already reported.
                    continue;
                }
                let known: Vec<&str> = config.clusters.keys().map(String::as_str).collect();
                problems.push(
                    Problem::error(
                        "config::unknown-cluster",
                        format!("environment `{env_name}` runs unknown cluster `{cluster_name}`"),
                    )
                    .at(cluster_origin)
                    .label("no such file in clusters/")
                    .help(suggest(
                        &cluster_name,
                        &known,
                        "clusters/<name>.yaml",
                    )),
                );
                continue;
            };
            if selection
                .cluster
                .as_ref()
                .is_some_and(|c| c != &cluster_name)
            {
                continue;
            }
            let cluster_node: &Node = cluster_settings
                .entry(cluster_key.as_str())
                .or_insert_with(|| without_key(&cluster_layer.node, "environments"));
            let override_node = cluster_layer
                .node
                .get("environments")
                .and_then(|e| e.get(env_name));
            let specific = [Some(&env_node), Some(cluster_node), override_node];
            let (template, template_missing) =
                template_layer(config, &defaults, &specific, problems);
            let mut layers: Vec<&Node> = defaults.clone();
            layers.extend(template.map(|t| &t.node));
            layers.extend(specific.into_iter().flatten());
            // The merge holds at most the values of its layers.
            composed = composed.saturating_add(
                defaults_size
                    + layers[defaults.len()..]
                        .iter()
                        .map(|l| l.count_values())
                        .sum::<usize>(),
            );
            if composed > MAX_COMPOSED_VALUES {
                problems.push(
                    Problem::error(
                        "config::too-many-values",
                        format!(
                            "the selected (environment, cluster) pairs hold more than {MAX_COMPOSED_VALUES} values together"
                        ),
                    )
                    .at(cluster_origin)
                    .label(format!("`{env_name}/{cluster_name}` reaches the limit"))
                    .help("select fewer pairs (--env, --cluster), or make the layers many pairs share (defaults/, templates/) smaller"),
                );
                return result;
            }
            let mut node = merge_all(layers).unwrap_or_else(|| {
                Node::new(Value::Map(Default::default()), cluster_layer.node.origin)
            });
            let mut unchecked =
                layers_unchecked(config, template, env_layer, cluster_layer, env_name);
            unchecked.extend(resolve_references(
                &mut node,
                &config.references,
                &config.sources,
                references,
                secrets,
                problems,
            ));
            // A closed encrypted part of one of the pair's layers: an error when its
            // values are needed, a gap in the checks when they are deferred.
            let locked: Vec<&Problem> = [
                config.locked(LayerKind::Defaults, ""),
                template.and_then(|t| config.locked(LayerKind::Template, &t.name)),
                config.locked(LayerKind::Environment, env_name),
                config.locked(LayerKind::Cluster, &cluster_name),
            ]
            .into_iter()
            .flatten()
            .collect();
            if references == References::Resolve {
                for problem in &locked {
                    problems.push((*problem).clone());
                }
            }
            let incomplete = template_missing
                || !locked.is_empty()
                || misnamed.contains(&(env_name.as_str(), cluster_name.as_str()))
                || config
                    .broken
                    .iter()
                    .any(|(kind, _)| *kind == LayerKind::Defaults);
            result.push(EffectiveConfig {
                environment: env_name.clone(),
                cluster: cluster_name,
                template: template.map(|t| t.name.clone()),
                node,
                unchecked,
                incomplete,
            });
        }
    }
    result
}

/// The paths of a pair's layers whose checks are skipped ([`Layer::unchecked`]), as
/// paths of the pair: a cluster's block for this environment (`environments.dev.x`)
/// becomes `x`, the blocks for other environments do not apply.
fn layers_unchecked(
    config: &LoadedConfig,
    template: Option<&Layer>,
    env_layer: &Layer,
    cluster_layer: &Layer,
    env_name: &str,
) -> Vec<KeyPath> {
    let mut paths: Vec<KeyPath> = config
        .defaults
        .iter()
        .chain(template)
        .chain([env_layer])
        .flat_map(|l| l.unchecked.iter().cloned())
        .collect();
    let environments = super::node::Segment::Key("environments".into());
    let this = super::node::Segment::Key(env_name.to_string());
    for path in &cluster_layer.unchecked {
        match path.segments() {
            [first] if *first == environments => paths.push(KeyPath::root()),
            [first, env, rest @ ..] if *first == environments && *env == this => {
                let mut inner = KeyPath::root();
                for segment in rest {
                    inner.push(segment.clone());
                }
                paths.push(inner);
            }
            [first, ..] if *first == environments => {}
            _ => paths.push(path.clone()),
        }
    }
    paths
}

fn check_selection(config: &LoadedConfig, selection: &Selection, problems: &mut Problems) {
    if let Some(env) = &selection.environment
        && !config.environments.contains_key(env)
        && !config.environments.is_empty()
        && !config.is_broken(LayerKind::Environment, env)
    {
        let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        problems.push(
            Problem::error(
                "config::unknown-environment",
                format!("unknown environment `{env}`"),
            )
            .help(suggest(env, &known, "environments/<name>.yaml")),
        );
    }
    if let Some(cluster) = &selection.cluster {
        if config.is_broken(LayerKind::Cluster, cluster) {
            // Already reported where the file is read.
        } else if !config.clusters.contains_key(cluster) && !config.clusters.is_empty() {
            let known: Vec<&str> = config.clusters.keys().map(String::as_str).collect();
            problems.push(
                Problem::error(
                    "config::unknown-cluster",
                    format!("unknown cluster `{cluster}`"),
                )
                .help(suggest(cluster, &known, "clusters/<name>.yaml")),
            );
        } else if let Some(env) = &selection.environment {
            let runs = config.environments.get(env).is_some_and(|layer| {
                cluster_names(layer, &mut Problems::new())
                    .iter()
                    .any(|(c, _)| c == cluster)
            });
            if config.environments.contains_key(env) && !runs {
                problems.push(
                    Problem::error(
                        "config::cluster-not-in-environment",
                        format!("environment `{env}` does not run cluster `{cluster}`"),
                    )
                    .at_opt(config.environments.get(env).map(|l| l.node.origin))
                    .help(format!("add `{cluster}` to `clusters:` in environments/{env}.yaml, or pick another --cluster")),
                );
            }
        }
    }
}

/// Per-environment overrides in a cluster file must name a known environment. Returns
/// the pairs an unknown name was probably meant for (`prdo` → prod): their settings
/// are in the misnamed block, so keys missing there are not reported again.
fn check_cluster_overrides<'a>(
    config: &'a LoadedConfig,
    problems: &mut Problems,
) -> HashSet<(&'a str, &'a str)> {
    let mut misnamed = HashSet::new();
    let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
    // Which clusters each environment runs, computed once (not per override).
    let runs: HashMap<&str, HashSet<String>> = config
        .environments
        .iter()
        .map(|(name, layer)| {
            let clusters = cluster_names(layer, &mut Problems::new())
                .into_iter()
                .map(|(cluster, _)| cluster)
                .collect();
            (name.as_str(), clusters)
        })
        .collect();
    for (cluster_name, layer) in &config.clusters {
        let Some(overrides) = layer.node.get("environments").and_then(Node::as_map) else {
            continue;
        };
        for (env_name, entry) in overrides {
            match config.environments.get(env_name) {
                None if config.is_broken(LayerKind::Environment, env_name) => {}
                None => {
                    if let Some(meant) = did_you_mean(env_name, known.iter().copied()) {
                        misnamed.insert((meant, cluster_name.as_str()));
                    }
                    problems.push(
                    Problem::error(
                        "config::unknown-environment",
                        format!(
                            "cluster `{cluster_name}` overrides unknown environment `{env_name}`"
                        ),
                    )
                    .at(entry.key_origin)
                    .label("no such file in environments/")
                    .help(suggest(
                        env_name,
                        &known,
                        "environments/<name>.yaml",
                    )),
                    )
                }
                Some(environment) => {
                    // An environment that does not say which clusters it runs is
                    // reported on its own (`config::no-clusters`).
                    let lists = environment.node.get("clusters").is_some();
                    if lists && !runs[env_name.as_str()].contains(cluster_name) {
                        problems.push(
                            Problem::warning(
                                "config::unused-override",
                                format!("environment `{env_name}` does not run cluster `{cluster_name}`; this override is never used"),
                            )
                            .at(entry.key_origin)
                            .label("unused")
                            .help(format!("add `{cluster_name}` to `clusters:` in environments/{env_name}.yaml, or remove this override")),
                        );
                    }
                }
            }
        }
    }
    misnamed
}

/// The clusters an environment lists, with where each is written; duplicates reported.
/// Linear in the length of the list (environments may list thousands of clusters).
fn cluster_names(env_layer: &Layer, problems: &mut Problems) -> Vec<(String, crate::diag::Origin)> {
    let mut names: Vec<(String, crate::diag::Origin)> = Vec::new();
    let Some(items) = env_layer.node.get("clusters").and_then(Node::as_list) else {
        return names;
    };
    let mut seen: HashMap<&str, crate::diag::Origin> = HashMap::with_capacity(items.len());
    for item in items {
        let Some(name) = item.as_str() else { continue };
        if let Some(first) = seen.get(name) {
            problems.push(
                Problem::error(
                    "config::duplicate-name",
                    format!("cluster `{name}` is listed twice"),
                )
                .at(item.origin)
                .label(format!("already listed on line {}", first.line))
                .help("list each cluster once"),
            );
            continue;
        }
        seen.insert(name, item.origin);
        names.push((name.to_string(), item.origin));
    }
    names
}

/// The template named by the most specific layer that names one, and whether one is
/// named but missing (unknown, or its file broken).
fn template_layer<'a>(
    config: &'a LoadedConfig,
    defaults: &[&Node],
    specific: &[Option<&Node>],
    problems: &mut Problems,
) -> (Option<&'a Layer>, bool) {
    let Some(chosen) = defaults
        .iter()
        .copied()
        .chain(specific.iter().copied().flatten())
        .filter_map(|layer| layer.get("template"))
        .rfind(|t| !t.is_null())
    else {
        return (None, false);
    };
    let Some(name) = chosen.as_str() else {
        return (None, true);
    };
    match config.templates.get(name) {
        Some(layer) => (Some(layer), false),
        None if config.is_broken(LayerKind::Template, name) => (None, true),
        None => {
            let known: Vec<&str> = config.templates.keys().map(String::as_str).collect();
            problems.push(
                Problem::error(
                    "config::unknown-template",
                    format!("unknown template `{name}`"),
                )
                .at(chosen.origin)
                .label("no such file in templates/")
                .help(suggest(name, &known, "templates/<name>.yaml")),
            );
            (None, true)
        }
    }
}

fn without_key(node: &Node, key: &str) -> Node {
    let mut copy = node.clone();
    if let Some(map) = copy.as_map_mut() {
        map.shift_remove(key);
    }
    copy
}

fn suggest(name: &str, known: &[&str], file_pattern: &str) -> String {
    match did_you_mean(name, known.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None if known.is_empty() => format!("create {file_pattern}"),
        None => format!("known: {} (or create {file_pattern})", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layers::load_layers;

    struct NoVariables;
    impl crate::config::Variables for NoVariables {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    #[test]
    fn the_selected_pairs_are_bounded_together() {
        // Each pair copies the layers it merges: a defaults file of 900,000 values is
        // within the loader's limits, and five pairs of it are not.
        let mut sources = crate::diag::SourceMap::new();
        let file = sources.add("defaults/big.yaml", "x".to_string());
        let origin = sources.get(file).origin(file, 0, 1);
        let node = |value| Node::new(value, origin);
        let map = |entries: Vec<(&str, Node)>| {
            node(Value::Map(
                entries
                    .into_iter()
                    .map(|(k, n)| {
                        (
                            k.to_string(),
                            super::super::node::Entry {
                                key_origin: origin,
                                node: n,
                            },
                        )
                    })
                    .collect(),
            ))
        };
        let big = node(Value::List(
            (0..900_000).map(|i| node(Value::Int(i))).collect(),
        ));
        let layer = |kind, name: &str, node| Layer {
            kind,
            name: name.to_string(),
            file,
            node,
            unchecked: Vec::new(),
        };
        let mut config = LoadedConfig {
            sources,
            ..Default::default()
        };
        config
            .defaults
            .push(layer(LayerKind::Defaults, "big", map(vec![("list", big)])));
        let names: Vec<Node> = (0..5)
            .map(|i| node(Value::String(format!("c{i}"))))
            .collect();
        config.environments.insert(
            "dev".into(),
            layer(
                LayerKind::Environment,
                "dev",
                map(vec![("clusters", node(Value::List(names)))]),
            ),
        );
        for i in 0..5 {
            let name = format!("c{i}");
            config
                .clusters
                .insert(name.clone(), layer(LayerKind::Cluster, &name, map(vec![])));
        }
        let mut problems = Problems::new();
        let composed = compose(
            &config,
            &Selection::default(),
            References::Resolve,
            &mut SecretValues::default(),
            &mut problems,
        );
        assert_eq!(
            composed.len(),
            4,
            "the pair that reaches the limit is not composed"
        );
        let problems: Vec<Problem> = problems.into_iter().collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "config::too-many-values");
        assert_eq!(
            problems[0].label.as_deref(),
            Some("`dev/c4` reaches the limit")
        );
    }

    fn compose_files(files: &[(&str, &str)], selection: &Selection) -> Vec<Problem> {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut problems = Problems::new();
        let config = load_layers(dir.path(), &NoVariables, &mut problems);
        compose(
            &config,
            selection,
            References::Resolve,
            &mut SecretValues::default(),
            &mut problems,
        );
        problems.into_iter().collect()
    }

    #[test]
    fn references_to_broken_files_are_not_reported_again_as_unknown() {
        // dev.yaml, edge.yaml and small.yaml exist but do not parse: only their syntax
        // errors are reported, not "unknown environment/cluster/template" for each use.
        let problems = compose_files(
            &[
                ("environments/dev.yaml", "clusters: [edge, workload\n"),
                ("environments/prod.yaml", "clusters: [edge, workload]\n"),
                ("clusters/edge.yaml", "role: [edge\n"),
                (
                    "clusters/workload.yaml",
                    "template: small\nenvironments: {dev: {sync_wave: 0}}\n",
                ),
                ("templates/small.yaml", "control_plane: {count: 1\n"),
            ],
            &Selection {
                environment: Some("dev".into()),
                cluster: Some("edge".into()),
            },
        );
        let codes: Vec<&str> = problems.iter().map(|p| p.code).collect();
        assert_eq!(codes, ["config::yaml-syntax"; 3], "{problems:#?}");
    }

    #[test]
    fn references_to_missing_files_are_still_unknown() {
        let problems = compose_files(
            &[
                ("environments/prod.yaml", "clusters: [edge]\n"),
                (
                    "clusters/edge.yaml",
                    "template: smal\nenvironments: {dev: {}}\n",
                ),
                ("templates/small.yaml", "{}\n"),
            ],
            &Selection::default(),
        );
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "cluster `edge` overrides unknown environment `dev`",
                "unknown template `smal`"
            ],
            "{problems:#?}"
        );
    }
}
