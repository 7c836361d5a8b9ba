//! Loading a model as every command does: configuration, model and policy together.
//! It lives above the stages, so none of them has to import another for it (`model`
//! does not import `policy`).

use crate::config::{ConfigPaths, Configuration, Selection, Variables, load_config};
use crate::diag::Problems;
use crate::model::{Model, resolve_model};
use crate::policy::check_policy;

/// Stages 1 and 2 together, as every command runs them: load the configuration, and
/// when it loaded without errors resolve the model (and, with `with_policy`, run the
/// environment policy). Problems of all stages are returned together; the model only
/// when none of them is an error.
pub fn load_model<'a>(
    paths: impl Into<ConfigPaths<'a>>,
    selection: &Selection,
    env: &dyn Variables,
    with_policy: bool,
) -> (Configuration, Option<Model>, Problems) {
    let (config, mut problems) = load_config(paths, selection, env);
    if problems.has_errors() {
        return (config, None, problems);
    }
    let (model, more) = resolve_model(&config);
    problems.extend(more);
    if with_policy && let Some(model) = &model {
        problems.extend(check_policy(model, &config));
    }
    // A check may quote a value; values from age files are masked wherever quoted.
    config.layers.secrets.redact_problems(&mut problems);
    let model = model.filter(|_| !problems.has_errors());
    (config, model, problems)
}
