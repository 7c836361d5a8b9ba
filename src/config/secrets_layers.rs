//! Encrypted layer parts: `<dir>/<kind>/<name>.age.yaml` beside `<name>.yaml`. Each is
//! decrypted in memory ([`super::secrets`]), kept in the source map as a secret file
//! (diagnostics name its lines but never quote it), interpolated and checked like any
//! layer file, its values recorded as secrets, and merged onto the plain layer of the
//! same name, after it (or added as the whole layer when there is no plain file).

use std::path::Path;

use super::interpolate::{Variables, interpolate_with_secrets};
use super::layers::{
    Layer, LayerKind, Limits, LoadedConfig, check_duplicate_names, yaml_files_where,
};
use super::merge::merge;
use super::schema::check_layer;
use super::secrets::{SecretFiles, encrypted_layer_name, is_encrypted_layer};
use super::yaml::parse_within;
use crate::diag::Problems;

/// Load every encrypted part under the configuration's root and merge it in.
pub(super) fn load_encrypted_layers(
    config: &mut LoadedConfig,
    env: &dyn Variables,
    secrets: &mut SecretFiles<'_>,
    limits: &mut Limits,
    problems: &mut Problems,
) {
    let root = config.root.clone();
    for kind in LayerKind::ALL {
        for path in yaml_files_where(&root.join(kind.directory()), problems, is_encrypted_layer) {
            match load_encrypted_layer(kind, &path, config, env, secrets, limits, problems) {
                Some(part) => add_part(config, part),
                None => config.broken.push((kind, encrypted_layer_name(&path))),
            }
        }
    }
}

fn load_encrypted_layer(
    kind: LayerKind,
    path: &Path,
    config: &mut LoadedConfig,
    env: &dyn Variables,
    secrets: &mut SecretFiles<'_>,
    limits: &mut Limits,
    problems: &mut Problems,
) -> Option<Layer> {
    let sources = &mut config.sources;
    let text = match secrets.decrypt_layer(path) {
        Ok(text) => text,
        Err(failure) => {
            // Keep the path (with no text) so the problem names its file.
            let file = sources.add(path, String::new());
            let origin = sources.get(file).origin(file, 0, 0);
            problems.push(failure.into_problem().at(origin));
            return None;
        }
    };
    if !limits.admit(path, text.expose().len() as u64, sources, problems) {
        return None;
    }
    let file = sources.add_secret(path, text.expose().clone());
    let mut node = match parse_within(file, sources.get(file), &mut limits.values) {
        Ok(node) => node,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    interpolate_with_secrets(&mut node, base_dir, env, secrets, problems);
    // The schema also reports a file that is not a mapping.
    check_layer(kind, &node, &sources.get(file).text, problems);
    check_duplicate_names(&node, problems);
    secrets.found.add_file(file, &node);
    Some(Layer {
        kind,
        name: encrypted_layer_name(path),
        file,
        node,
    })
}

/// Merge a part onto the plain layer of the same kind and name, or add it as the layer.
fn add_part(config: &mut LoadedConfig, part: Layer) {
    let plain = match part.kind {
        LayerKind::Defaults => config.defaults.iter_mut().find(|l| l.name == part.name),
        LayerKind::Template => config.templates.get_mut(&part.name),
        LayerKind::Environment => config.environments.get_mut(&part.name),
        LayerKind::Cluster => config.clusters.get_mut(&part.name),
    };
    match plain {
        Some(plain) if plain.node.is_null() => plain.node = part.node,
        Some(plain) => {
            if !part.node.is_null() {
                merge(&mut plain.node, &part.node);
            }
        }
        None => match part.kind {
            LayerKind::Defaults => config.defaults.push(part),
            LayerKind::Template => {
                config.templates.insert(part.name.clone(), part);
            }
            LayerKind::Environment => {
                config.environments.insert(part.name.clone(), part);
            }
            LayerKind::Cluster => {
                config.clusters.insert(part.name.clone(), part);
            }
        },
    }
}
