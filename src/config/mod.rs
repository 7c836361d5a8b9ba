//! Stage 1: reading the configuration hierarchy.
//!
//! `load_config` reads every layer (`layers`), with positions (`yaml`), interpolated
//! (`interpolate`) and checked against the format (`schema`, generated from `raw`), then
//! composes each selected (environment, cluster) pair (`effective`, using `merge`). The
//! result keeps the YAML trees with their origins so later stages can point at the
//! layer that set any value. `show` renders an effective configuration.

pub mod de;
pub mod effective;
pub mod interpolate;
pub mod layers;
pub mod limits;
pub mod merge;
pub mod node;
pub mod raw;
pub mod schema;
pub mod secrets;
mod secrets_layers;
pub mod secrets_write;
pub mod show;
pub mod yaml;

pub use effective::{EffectiveConfig, Selection};
pub use interpolate::{ProcessVariables, References, Variables};
pub use layers::{ConfigPaths, LayerKind, LoadedConfig};
pub use node::{KeyPath, Node};

use crate::diag::Problems;

/// Everything read from a configuration directory for one selection. The layers are
/// shared: one read of the files serves every selection composed from them.
#[derive(Debug)]
pub struct Configuration {
    pub layers: std::sync::Arc<LoadedConfig>,
    pub effective: Vec<EffectiveConfig>,
    /// Every secret value of this selection (encrypted layers and the references its
    /// pairs resolved), and where it sits.
    pub secrets: secrets::SecretValues,
}

impl Configuration {
    pub fn sources(&self) -> &crate::diag::SourceMap {
        &self.layers.sources
    }
}

/// Load and compose, resolving the selection's references. Problems (including
/// warnings) are returned alongside whatever could be read, so a caller can report
/// them all at once.
pub fn load_config<'a>(
    paths: impl Into<ConfigPaths<'a>>,
    selection: &Selection,
    env: &dyn Variables,
) -> (Configuration, Problems) {
    let mut problems = Problems::new();
    let layers = layers::load_layers_with(paths.into(), env, &mut problems);
    let configuration = compose_config(
        std::sync::Arc::new(layers),
        selection,
        References::Resolve,
        &mut problems,
    );
    (configuration, problems)
}

/// Compose `selection` from layers already read (no layer file is read again), its
/// references resolved or deferred; the problems found are added to `problems`,
/// secret values masked in all of them.
pub fn compose_config(
    layers: std::sync::Arc<LoadedConfig>,
    selection: &Selection,
    references: References,
    problems: &mut Problems,
) -> Configuration {
    let mut secrets = layers.secrets.clone();
    let effective = effective::compose(&layers, selection, references, &mut secrets, problems);
    secrets.redact_problems(problems);
    Configuration {
        layers,
        effective,
        secrets,
    }
}
