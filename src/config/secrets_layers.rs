//! Encrypted layer parts: `<dir>/<kind>/<name>.age.yaml` beside `<name>.yaml`. Each is
//! decrypted in memory ([`super::secrets`]), kept in the source map as a secret file
//! (diagnostics name its lines but never quote it), checked like any layer file, its
//! values recorded as secrets, and merged onto the plain layer of the same name, after
//! it (or added as the whole layer when there is no plain file).
//!
//! Without an age identity, a part whose layer is known otherwise (a plain file of the
//! same name, or any defaults part) is left closed ([`super::layers::LockedPart`]):
//! only the pairs that use its layer need it, so `validate` and a dev run do not need
//! the key of prod's secrets.

use std::path::Path;

use super::layers::{
    Layer, LayerKind, LoadedConfig, LockedPart, Reading, finish_layer, yaml_files_where,
};
use super::merge::merge;
use super::secrets::{encrypted_layer_name, is_encrypted_layer};
use super::yaml::parse_within;
use crate::diag::Problems;

/// What became of one encrypted part.
enum Part {
    Read(Layer),
    /// No identity to open it; its layer exists without it.
    Locked(LockedPart),
    /// Reported; the layer is left out.
    Broken,
}

/// Load every encrypted part under the configuration's root and merge it in.
pub(super) fn load_encrypted_layers(
    config: &mut LoadedConfig,
    reading: &mut Reading,
    problems: &mut Problems,
) {
    let root = config.root.clone();
    for kind in LayerKind::ALL {
        for path in yaml_files_where(&root.join(kind.directory()), problems, is_encrypted_layer) {
            match load_encrypted_layer(kind, &path, config, reading, problems) {
                Part::Read(part) => add_part(config, part),
                Part::Locked(locked) => config.locked.push(locked),
                Part::Broken => config.broken.push((kind, encrypted_layer_name(&path))),
            }
        }
    }
}

fn load_encrypted_layer(
    kind: LayerKind,
    path: &Path,
    config: &mut LoadedConfig,
    reading: &mut Reading,
    problems: &mut Problems,
) -> Part {
    let name = encrypted_layer_name(path);
    let known = kind == LayerKind::Defaults
        || match kind {
            LayerKind::Template => config.templates.contains_key(&name),
            LayerKind::Environment => config.environments.contains_key(&name),
            LayerKind::Cluster => config.clusters.contains_key(&name),
            LayerKind::Defaults => true,
        };
    let sources = &mut config.sources;
    let text = match reading.secrets.decrypt_layer(path) {
        Ok(text) => text,
        Err(failure) => {
            // Keep the path (with no text) so the problem names its file.
            let file = sources.add(path, String::new());
            let origin = sources.get(file).origin(file, 0, 0);
            let problem = failure.clone().into_problem().at(origin);
            if failure.code == "config::secret-no-key" && known {
                return Part::Locked(LockedPart {
                    kind,
                    name,
                    problem,
                });
            }
            problems.push(problem);
            return Part::Broken;
        }
    };
    if !reading
        .limits
        .admit(path, text.expose().len() as u64, sources, problems)
    {
        return Part::Broken;
    }
    let file = sources.add_secret(path, text.expose().clone());
    let node = match parse_within(file, sources.get(file), &mut reading.limits.values) {
        Ok(node) => node,
        Err(problem) => {
            if reading.limits.values.worth_reporting(&problem) {
                problems.push(problem);
            }
            return Part::Broken;
        }
    };
    let mut layer = Layer {
        kind,
        name,
        file,
        node,
        unchecked: Vec::new(),
    };
    // The schema also reports a file that is not a mapping.
    finish_layer(&mut layer, path, sources, reading, problems);
    reading.secrets.found.add_file(file, &layer.node);
    Part::Read(layer)
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
        Some(plain) => {
            if plain.node.is_null() {
                plain.node = part.node;
            } else if !part.node.is_null() {
                merge(&mut plain.node, &part.node);
            }
            plain.unchecked.extend(part.unchecked);
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
