//! Reading the configuration, once per command run. A [`Workspace`] holds the layer
//! files as read (with the problems found reading them); every selection an operation
//! needs (the selected environment for the plan, every environment for the promotion
//! gate, the state backend setting) is composed from it without reading a file again.

use std::sync::Arc;

use crate::config::layers::{LoadedConfig, load_layers_with};
use crate::config::{self, ConfigPaths, Configuration, References, Selection};
use crate::diag::{Problems, ProblemsReport};
use crate::graph::{DesiredResource, build_desired};
use crate::model::{Model, resolve_model};

use super::context::Context;
use super::diagnostic::diagnostic_text;

/// The configuration layers of one command run.
#[derive(Debug, Clone)]
pub struct Workspace {
    layers: Arc<LoadedConfig>,
    /// Found while reading the files: reported with the first model loaded.
    problems: Problems,
}

impl Workspace {
    /// Read every layer file (the only place a command run reads them).
    pub fn read<'a>(paths: impl Into<ConfigPaths<'a>>, variables: &dyn config::Variables) -> Self {
        let mut problems = Problems::new();
        let layers = load_layers_with(paths.into(), variables, &mut problems);
        Workspace {
            layers: Arc::new(layers),
            problems,
        }
    }

    pub fn layers(&self) -> &LoadedConfig {
        &self.layers
    }

    /// The effective configuration of `selection`, its references resolved, with
    /// every problem found so far.
    pub fn configuration(&self, selection: &Selection) -> (Configuration, Problems) {
        self.configuration_with(selection, References::Resolve)
    }

    /// [`Self::configuration`], references resolved or deferred.
    pub fn configuration_with(
        &self,
        selection: &Selection,
        references: References,
    ) -> (Configuration, Problems) {
        let mut problems = self.problems.clone();
        let config =
            config::compose_config(self.layers.clone(), selection, references, &mut problems);
        (config, problems)
    }

    /// The model of `selection`: composed, resolved and (`with_policy`) checked against
    /// the environment policy. `None` when there are errors.
    pub fn load_model(
        &self,
        selection: &Selection,
        with_policy: bool,
    ) -> (Configuration, Option<Model>, Problems) {
        self.load_model_with(selection, with_policy, References::Resolve)
    }

    /// [`Self::load_model`], references resolved or deferred.
    pub fn load_model_with(
        &self,
        selection: &Selection,
        with_policy: bool,
        references: References,
    ) -> (Configuration, Option<Model>, Problems) {
        let (config, problems) = self.configuration_with(selection, references);
        check_model(config, problems, with_policy)
    }
}

/// Read, compose and resolve in one call: for commands that need one model only (the
/// lab's overlay).
pub fn load_model<'a>(
    paths: impl Into<ConfigPaths<'a>>,
    selection: &Selection,
    variables: &dyn config::Variables,
    with_policy: bool,
) -> (Configuration, Option<Model>, Problems) {
    Workspace::read(paths, variables).load_model(selection, with_policy)
}

/// [`load_model`] with references deferred: no variable, referenced file or secret is
/// read, and checks of the values that wait on one are skipped (`validate`,
/// `diff-env`, like `terraform validate`).
pub fn load_model_unresolved<'a>(
    paths: impl Into<ConfigPaths<'a>>,
    selection: &Selection,
    variables: &dyn config::Variables,
    with_policy: bool,
) -> (Configuration, Option<Model>, Problems) {
    Workspace::read(paths, variables).load_model_with(selection, with_policy, References::Defer)
}

/// Resolve the model of a composed configuration and run the policy on it.
fn check_model(
    config: Configuration,
    mut problems: Problems,
    with_policy: bool,
) -> (Configuration, Option<Model>, Problems) {
    // Resolved even when reading found errors: values refused while reading are left
    // out (and their checks skipped), so the problems of every file come in one run.
    let (model, more) = resolve_model(&config);
    problems.extend(more);
    // The policy judges a whole configuration only.
    if with_policy
        && !problems.has_errors()
        && let Some(model) = &model
    {
        problems.extend(crate::policy::check_policy(model, &config));
    }
    // A check may quote a value; secret values are masked wherever quoted.
    config.secrets.redact_problems(&mut problems);
    let model = model.filter(|_| !problems.has_errors());
    (config, model, problems)
}

/// The model of a selection, every problem (warnings too) shown on the context's
/// stderr; an error when the configuration has errors.
pub fn checked_model(
    workspace: &Workspace,
    selection: &Selection,
    context: &Context,
    with_policy: bool,
) -> miette::Result<Model> {
    let (config, model, problems) = workspace.load_model(selection, with_policy);
    if !problems.is_empty() {
        context.err.write(&crate::diag::render_problems(
            &problems,
            config.sources(),
            context.color,
        ));
    }
    match model {
        Some(model) if !problems.has_errors() => Ok(model),
        _ => Err(ProblemsReport::new(&problems, "the configuration").into()),
    }
}

/// One environment's model and desired resources.
pub struct Loaded {
    pub environment: String,
    pub model: Model,
    /// The environment's resources (all of its clusters; a `--cluster` selection is the
    /// plan's to apply).
    pub desired: Vec<DesiredResource>,
}

/// The selected environment (the only one when `environment` is `None`) as desired
/// resources. Policy runs on every plan and apply, not only `validate`: a waived rule is
/// shown (as a warning with its reason) each time.
pub fn load_environment(
    workspace: &Workspace,
    environment: Option<&str>,
    cluster: Option<&str>,
    context: &Context,
) -> miette::Result<Loaded> {
    // The environment is chosen before anything is composed: composing every
    // environment would resolve (and need the secrets of) all of them.
    let names: Vec<&str> = workspace
        .layers()
        .environments
        .keys()
        .map(String::as_str)
        .collect();
    let chosen = match (environment, names.as_slice()) {
        (Some(name), _) => Some(name),
        (None, [only]) => Some(*only),
        (None, []) => None,
        (None, names) => {
            return Err(diagnostic_text(
                format!(
                    "choose an environment: the configuration has {}",
                    names.join(", ")
                ),
                Some("pass --env, e.g. `--env dev`: each environment has its own state and is planned and applied on its own".into()),
            ));
        }
    };
    let selection = Selection {
        environment: chosen.map(str::to_string),
        cluster: cluster.map(str::to_string),
    };
    let model = checked_model(workspace, &selection, context, true)?;
    let environment = match chosen {
        Some(name) => name.to_string(),
        None => model
            .environments
            .first()
            .map(|e| e.name.clone())
            .unwrap_or_default(),
    };
    let desired = desired_of(&model, &environment);
    Ok(Loaded {
        environment,
        model,
        desired,
    })
}

/// The desired resources of one environment of `model`.
pub fn desired_of(model: &Model, environment: &str) -> Vec<DesiredResource> {
    build_desired(model)
        .into_iter()
        .filter(|d| d.address.environment == environment)
        .collect()
}
