//! Reading the configuration, once per command run. A [`Workspace`] holds the layer
//! files as read (with the problems found reading them); every selection an operation
//! needs (the selected environment for the plan, every environment for the promotion
//! gate, the state backend setting) is composed from it without reading a file again.

use std::sync::Arc;

use crate::config::layers::{LoadedConfig, load_layers_with};
use crate::config::{self, ConfigPaths, Configuration, References, Selection};
use crate::diag::{Problems, ProblemsReport};
use crate::graph::machines::recorded_machines;
use crate::graph::{DesiredResource, build_desired};
use crate::model::{Model, RecordedMachines, resolve_model_with};
use crate::state::{StateDocument, UnlockedRead};
use crate::vocabulary::MachineRecords;

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
    /// the environment policy, every machine new. `None` when there are errors.
    pub fn load_model(
        &self,
        selection: &Selection,
        with_policy: bool,
    ) -> (Configuration, Option<Model>, Problems) {
        self.load_model_with(
            selection,
            with_policy,
            References::Resolve,
            &RecordedMachines::new(),
        )
    }

    /// [`Self::load_model`], references resolved or deferred, the machines state
    /// records keeping their identities.
    pub fn load_model_with(
        &self,
        selection: &Selection,
        with_policy: bool,
        references: References,
        recorded: &RecordedMachines,
    ) -> (Configuration, Option<Model>, Problems) {
        let (config, problems) = self.configuration_with(selection, references);
        check_model(config, problems, with_policy, recorded)
    }

    /// The environments `selection` names that have a layer file.
    fn environments(&self, selection: &Selection) -> Vec<String> {
        self.layers
            .environments
            .keys()
            .filter(|name| selection.environment.as_ref().is_none_or(|e| e == *name))
            .cloned()
            .collect()
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
    Workspace::read(paths, variables).load_model_with(
        selection,
        with_policy,
        References::Defer,
        &RecordedMachines::new(),
    )
}

/// Resolve the model of a composed configuration and run the policy on it.
fn check_model(
    config: Configuration,
    mut problems: Problems,
    with_policy: bool,
    recorded: &RecordedMachines,
) -> (Configuration, Option<Model>, Problems) {
    // Resolved even when reading found errors: values refused while reading are left
    // out (and their checks skipped), so the problems of every file come in one run.
    let (model, more) = resolve_model_with(&config, recorded);
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

/// What the state of each environment of `selection` records of its machines (read
/// without the lock: a run that takes it checks with [`reload_if_changed`]).
pub fn recorded_for(
    workspace: &Workspace,
    selection: &Selection,
    context: &Context,
) -> miette::Result<RecordedMachines> {
    workspace
        .environments(selection)
        .into_iter()
        .map(|environment| {
            let state = context.load_state(&environment)?;
            Ok((environment, recorded_machines(&state)))
        })
        .collect()
}

/// The model of a selection, its machines keeping the identities their environments'
/// states record, every problem (warnings too) shown on the context's stderr; an error
/// when the configuration has errors.
pub fn checked_model(
    workspace: &Workspace,
    selection: &Selection,
    context: &Context,
    with_policy: bool,
) -> miette::Result<Model> {
    let recorded = recorded_for(workspace, selection, context)?;
    checked_model_with(workspace, selection, context, with_policy, &recorded)
}

fn checked_model_with(
    workspace: &Workspace,
    selection: &Selection,
    context: &Context,
    with_policy: bool,
    recorded: &RecordedMachines,
) -> miette::Result<Model> {
    let (config, model, problems) =
        workspace.load_model_with(selection, with_policy, References::Resolve, recorded);
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
    /// The machine identities the model was resolved with, as read from state.
    pub machines: MachineRecords,
    /// The cluster selected (`None`: all of the environment's).
    pub cluster: Option<String>,
    /// The environment's state as read (without the lock) for its machine identities:
    /// for [`Context::lock_and_reload`], which keeps it when it is still current.
    pub state: Option<UnlockedRead>,
}

/// The selected environment (the only one when `environment` is `None`) as desired
/// resources, its machines keeping the identities its state records. Policy runs on
/// every plan and apply, not only `validate`: a waived rule is shown (as a warning with
/// its reason) each time.
pub fn load_environment(
    workspace: &Workspace,
    environment: Option<&str>,
    cluster: Option<&str>,
    context: &Context,
) -> miette::Result<Loaded> {
    let environment = match environment {
        Some(name) => name.to_string(),
        None => sole_environment(workspace, cluster, context)?,
    };
    let selection = Selection {
        environment: Some(environment.clone()),
        cluster: cluster.map(str::to_string),
    };
    // As [`recorded_for`] reads it (only an environment with a layer file), the
    // document kept for the run's read under the lock.
    let state = if workspace.environments(&selection).contains(&environment) {
        Some(context.read_state(&environment)?)
    } else {
        None
    };
    let machines = state
        .as_ref()
        .map(|read| recorded_machines(&read.document))
        .unwrap_or_default();
    let mut loaded = resolve_environment(workspace, selection, environment, machines, context)?;
    loaded.state = state;
    Ok(loaded)
}

fn resolve_environment(
    workspace: &Workspace,
    selection: Selection,
    environment: String,
    machines: MachineRecords,
    context: &Context,
) -> miette::Result<Loaded> {
    let recorded = RecordedMachines::from([(environment.clone(), machines)]);
    let model = checked_model_with(workspace, &selection, context, true, &recorded)?;
    let machines = recorded.into_values().next().unwrap_or_default();
    let desired = desired_of(&model, &environment);
    Ok(Loaded {
        environment,
        model,
        desired,
        machines,
        cluster: selection.cluster,
        state: None,
    })
}

/// The configuration's only environment; an error that asks for `--env` when there are
/// several. Chosen from the layer files before anything is composed: composing every
/// environment would resolve (and need the secrets of) all of them.
fn sole_environment(
    workspace: &Workspace,
    cluster: Option<&str>,
    context: &Context,
) -> miette::Result<String> {
    let selection = Selection {
        environment: None,
        cluster: cluster.map(str::to_string),
    };
    match workspace.environments(&selection).as_slice() {
        [only] => Ok(only.clone()),
        [] => {
            // No environment file: the configuration's problems say why, if it has any.
            let model = checked_model_with(
                workspace,
                &selection,
                context,
                true,
                &RecordedMachines::new(),
            )?;
            model
                .environments
                .first()
                .map(|e| e.name.clone())
                .ok_or_else(|| {
                    diagnostic_text(
                        "the configuration has no environment".to_string(),
                        Some("add an environment file, e.g. `environments/dev.yaml`".into()),
                    )
                })
        }
        names => Err(diagnostic_text(
            format!(
                "choose an environment: the configuration has {}",
                names.join(", ")
            ),
            Some("pass --env, e.g. `--env dev`: each environment has its own state and is planned and applied on its own".into()),
        )),
    }
}

/// `loaded` again when `state`, read under the lock, records other machine identities
/// than those it was resolved with (`None`: it holds, the usual case). Another run
/// applied between the unlocked read and the lock (a run that waited for the lock with
/// `--lock-timeout`): planning with the identities it recorded keeps an address from
/// being handed out twice.
pub fn reload_if_changed(
    workspace: &Workspace,
    loaded: &Loaded,
    state: &StateDocument,
    context: &Context,
) -> miette::Result<Option<Loaded>> {
    let machines = recorded_machines(state);
    if machines == loaded.machines {
        return Ok(None);
    }
    let selection = Selection {
        environment: Some(loaded.environment.clone()),
        cluster: loaded.cluster.clone(),
    };
    resolve_environment(
        workspace,
        selection,
        loaded.environment.clone(),
        machines,
        context,
    )
    .map(Some)
}

/// The desired resources of one environment of `model`.
pub fn desired_of(model: &Model, environment: &str) -> Vec<DesiredResource> {
    build_desired(model)
        .into_iter()
        .filter(|d| d.address.environment == environment)
        .collect()
}
