//! Executing one change: final plan, pending record, provider call, result record.

use infraflux_provider::{
    Attributes, CreateRequest, DeleteRequest, PlanRequest, Provider, ResourceRef, UpdateRequest,
    contains_unknown,
};

use super::Journal;
use crate::plan::{Action, Change};
use crate::state::{self, ResourceState, ResourceStatus};

/// Why a change failed; `persist` when state could not be saved (which stops the walk).
pub(crate) struct Failed {
    pub message: String,
    pub persist: Option<state::Error>,
}

impl Failed {
    fn provider(error: impl std::fmt::Display) -> Self {
        Failed {
            message: error.to_string(),
            persist: None,
        }
    }

    fn persist(error: state::Error) -> Self {
        Failed {
            message: format!("cannot save state: {error}"),
            persist: Some(error),
        }
    }
}

fn resource(change: &Change) -> ResourceRef {
    ResourceRef {
        address: change.address.to_string(),
        kind: change.address.kind.clone(),
    }
}

/// The record of a change's resource: without the attributes its schema says state
/// never holds (a rendered document, kept by its digest), and with what it took whole
/// from another resource's outputs recorded by reference (`state::by_reference`).
fn record(
    change: &Change,
    provider: &dyn Provider,
    id: Option<String>,
    mut attributes: Attributes,
    status: ResourceStatus,
) -> ResourceState {
    if let Some(schema) = provider
        .schemas()
        .into_iter()
        .find(|s| s.kind == change.address.kind)
    {
        attributes = schema.recorded(attributes);
    }
    // A value taken whole from another resource's outputs is recorded as a reference.
    if let Some(desired) = &change.desired {
        crate::state::by_reference::record_by_reference(desired, &mut attributes);
    }
    ResourceState {
        kind: change.address.kind.clone(),
        provider: change.provider.clone(),
        id,
        attributes: attributes.into(),
        sensitive: change.sensitive.clone(),
        dependencies: change.dependencies.clone(),
        status,
    }
}

/// A resource's record as state holds it, and its attributes as its provider takes
/// them: with the values recorded by reference resolved (`state::by_reference`).
struct Prior {
    record: ResourceState,
    attributes: Attributes,
}

fn read_prior(journal: &Journal, address: &crate::vocabulary::ResourceAddr) -> Option<Prior> {
    journal.read(|state| {
        state.resources.get(address).map(|record| Prior {
            attributes: state
                .resolve_stored(&record.attributes)
                .attributes
                .into_owned(),
            record: record.clone(),
        })
    })
}

/// How a change is run: `teardown` when the plan deletes everything in scope
/// (`destroy`), passed on to the provider's deletes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub teardown: bool,
}

pub(crate) async fn execute(
    change: &Change,
    resolved: Option<Attributes>,
    provider: &dyn Provider,
    journal: &Journal,
    run: Run,
) -> Result<(), Failed> {
    let prior = read_prior(journal, &change.address);
    match change.action {
        Action::Delete => delete(change, prior, provider, journal, run).await,
        Action::Create | Action::Update | Action::DeleteThenCreate | Action::CreateThenDelete => {
            let resolved = resolved.unwrap_or_default();
            let planned = final_plan(change, resolved, prior.as_ref(), provider).await?;
            match change.action {
                Action::Create => create(change, planned, provider, journal).await,
                Action::Update => {
                    let prior =
                        prior.ok_or_else(|| Failed::provider("nothing in state to update"))?;
                    update(change, prior, planned, provider, journal).await
                }
                Action::DeleteThenCreate => {
                    delete(change, prior, provider, journal, run).await?;
                    create(change, planned, provider, journal).await
                }
                _ => create_then_delete(change, prior, planned, provider, journal).await,
            }
        }
        Action::NoOp | Action::Read => Ok(()),
    }
}

/// A replaced resource's dependants that are replaced with it (`Reason::HostReplaced`)
/// leave first: their delete runs before the host's, while the host still exists (a
/// node drains and leaves etcd before its VM goes). Their own vertex, later, finds
/// nothing left to delete and creates them on the new host.
pub(crate) struct LeavingFirst {
    pub change: Change,
    pub provider: std::sync::Arc<dyn Provider>,
}

pub(crate) async fn leave_first(
    leaving: &[LeavingFirst],
    journal: &Journal,
    reporter: &dyn super::Reporter,
    run: Run,
) -> Result<(), Failed> {
    for LeavingFirst { change, provider } in leaving {
        let prior = read_prior(journal, &change.address);
        let started = std::time::Instant::now();
        reporter.started(&change.address, Action::Delete);
        match delete(change, prior, provider.as_ref(), journal, run).await {
            Ok(()) => reporter.finished(&change.address, Action::Delete, started.elapsed()),
            Err(failed) => {
                let message = format!(
                    "{} could not leave first, so nothing was replaced: {}",
                    change.address, failed.message
                );
                reporter.failed(&change.address, Action::Delete, &message, started.elapsed());
                return Err(Failed {
                    message,
                    persist: failed.persist,
                });
            }
        }
    }
    Ok(())
}

/// Ask the provider to plan again with the values known now, and check the result
/// against the reviewed plan.
async fn final_plan(
    change: &Change,
    resolved: Attributes,
    prior: Option<&Prior>,
    provider: &dyn Provider,
) -> Result<Attributes, Failed> {
    let prior = match change.action {
        Action::Update => prior.map(|p| &p.attributes),
        _ => None,
    };
    let response = provider
        .plan(PlanRequest {
            resource: resource(change),
            prior,
            desired: resolved,
        })
        .await
        .map_err(Failed::provider)?;
    if change.action == Action::Update && !response.requires_replace.is_empty() {
        return Err(Failed::provider(format!(
            "the plan changed during apply: it was an in-place update, now `{}` requires replacement; run plan again",
            response.requires_replace.join("`, `")
        )));
    }
    if let Some(reviewed) = &change.after {
        for (key, value) in reviewed {
            if contains_unknown(value) {
                continue;
            }
            if response.planned.get(key) != Some(value) {
                let shown = |v: Option<&serde_json::Value>| {
                    if change.is_sensitive(key) {
                        crate::vocabulary::MASK.to_string()
                    } else {
                        v.map_or("null".into(), |v| v.to_string())
                    }
                };
                return Err(Failed::provider(format!(
                    "the plan changed during apply: attribute `{key}` was planned as {}, now {}; run plan again",
                    shown(Some(value)),
                    shown(response.planned.get(key))
                )));
            }
        }
    }
    Ok(response.planned)
}

async fn create(
    change: &Change,
    planned: Attributes,
    provider: &dyn Provider,
    journal: &Journal,
) -> Result<(), Failed> {
    let pending = record(
        change,
        provider,
        None,
        planned.clone(),
        ResourceStatus::PendingCreate,
    );
    journal
        .write(|state| {
            state.set_record(&change.address, Some(pending));
            // Where InfraFlux creates a machine's VM is the machine's identity from now on.
            crate::graph::machines::record_created(&mut state.machines, &change.address, &planned);
        })
        .map_err(Failed::persist)?;
    // On failure the pending record stays: the next plan reads it and adopts an object
    // the provider may have made part-way, or creates it again.
    let created = provider
        .create(CreateRequest {
            resource: resource(change),
            planned,
            replacing: change.action.is_replace(),
        })
        .await
        .map_err(Failed::provider)?;
    let ready = record(
        change,
        provider,
        Some(created.id),
        created.attributes,
        ResourceStatus::Ready,
    );
    journal
        .write(|state| {
            state.set_record(&change.address, Some(ready));
        })
        .map_err(Failed::persist)
}

async fn update(
    change: &Change,
    prior: Prior,
    planned: Attributes,
    provider: &dyn Provider,
    journal: &Journal,
) -> Result<(), Failed> {
    let id = prior.record.id.clone().unwrap_or_default();
    // On failure the prior record stays as it is (as Terraform does): the object is
    // where it was, and tainting it would replace a VM for a failed memory change.
    let updated = provider
        .update(UpdateRequest {
            resource: resource(change),
            id: id.clone(),
            prior: prior.attributes,
            planned,
        })
        .await
        .map_err(Failed::provider)?;
    let ready = record(
        change,
        provider,
        Some(id),
        updated.attributes,
        ResourceStatus::Ready,
    );
    journal
        .write(|state| {
            state.set_record(&change.address, Some(ready));
        })
        .map_err(Failed::persist)
}

async fn delete(
    change: &Change,
    prior: Option<Prior>,
    provider: &dyn Provider,
    journal: &Journal,
    run: Run,
) -> Result<(), Failed> {
    let Some(prior) = prior else {
        return Ok(());
    };
    if let Some(id) = prior.record.id.clone() {
        let mut pending = prior.record.clone();
        pending.status = ResourceStatus::PendingDelete;
        journal
            .write(|state| {
                state.set_record(&change.address, Some(pending));
            })
            .map_err(Failed::persist)?;
        // On failure the pending record stays; the next plan reads it and deletes again.
        provider
            .delete(DeleteRequest {
                resource: resource(change),
                id,
                prior: prior.attributes,
                teardown: run.teardown,
            })
            .await
            .map_err(Failed::provider)?;
    }
    journal
        .write(|state| {
            state.set_record(&change.address, None);
        })
        .map_err(Failed::persist)
}

/// Create the replacement, then delete the old object.
///
/// Not crash-safe yet: the state document holds one object per address, so while both
/// exist only the new one is recorded, and an interruption between the create and the
/// delete leaves the old object unmanaged. Needs "deposed" objects in state.
async fn create_then_delete(
    change: &Change,
    prior: Option<Prior>,
    planned: Attributes,
    provider: &dyn Provider,
    journal: &Journal,
) -> Result<(), Failed> {
    create(change, planned, provider, journal).await?;
    if let Some(prior) = prior
        && let Some(id) = prior.record.id
    {
        provider
            .delete(DeleteRequest {
                resource: resource(change),
                id,
                prior: prior.attributes,
                teardown: false,
            })
            .await
            .map_err(Failed::provider)?;
    }
    Ok(())
}
