//! Refresh: ask providers what exists now, one batched `read` per provider.
//!
//! Records left pending by an interrupted apply are always read, even with
//! `--refresh=false`, because nothing else can tell whether the interrupted operation
//! happened:
//! - `PendingCreate` (no ID yet) is read with an empty ID; a provider looks the object up
//!   by its natural key (a VM's name) and, when it finds it, returns its ID in the `id`
//!   attribute. Found → adopted (Ready); gone → forgotten (created again if configured).
//! - `PendingDelete` found → stays pending (deleted again, or replaced if configured);
//!   gone → forgotten.
//!
//! A resource whose read failed as transient (its endpoint or node unreachable, a time-out)
//! is not an error of the whole plan: it is returned as unreachable, and the plan leaves
//! it and what waits for it out (a partial plan). Any other failure (a permission, a bad
//! answer) fails the plan as before.

use std::collections::BTreeMap;

use infraflux_provider::{ReadItem, ReadOutcome, ReadRequest, ResourceRef};
use tokio::task::JoinSet;

use super::{Drift, Error};
use crate::registry::ProviderRegistry;
use crate::state::{ResourceState, ResourceStatus, StateDocument};
use crate::vocabulary::ResourceAddr;

/// What a refresh found.
pub(crate) struct Refreshed {
    /// What differs from state, sorted by address.
    pub drift: Vec<Drift>,
    /// Resources that could not be read because they could not be reached, with why.
    pub unreachable: BTreeMap<ResourceAddr, String>,
}

/// Why a transient read failure leaves a resource unknown: the first line of the
/// provider's message (the rest is detail and help for an error report) and, for HTTP,
/// the request that failed (its URL carries no secret).
fn unreachable_reason(error: &infraflux_provider::ProviderError) -> String {
    let first = error.message.lines().next().unwrap_or_default();
    match &error.http {
        Some(http) => {
            let status = http.status.map(|s| format!(" → {s}")).unwrap_or_default();
            format!("{first} ({} {}{status})", http.method, http.url)
        }
        None => first.to_string(),
    }
}

/// Read the resources of `state` that `in_scope` selects (all of them when `read_all`,
/// only pending ones otherwise; in full when `deep`) and return what differs and what
/// could not be reached.
pub(crate) async fn refresh(
    state: &StateDocument,
    in_scope: &dyn Fn(&ResourceAddr) -> bool,
    providers: &ProviderRegistry,
    schemas: &crate::plan::Schemas,
    read_all: bool,
    deep: bool,
) -> Result<Refreshed, Error> {
    let mut batches: BTreeMap<&str, Vec<ReadItem>> = BTreeMap::new();
    for (addr, resource) in &state.resources {
        let pending = matches!(
            resource.status,
            ResourceStatus::PendingCreate | ResourceStatus::PendingDelete
        );
        if !in_scope(addr) || !(read_all || pending) {
            continue;
        }
        if providers.get(&resource.provider).is_none() {
            return Err(Error::NoProvider {
                provider: resource.provider.clone(),
                address: addr.clone(),
            });
        }
        batches
            .entry(resource.provider.as_str())
            .or_default()
            .push(ReadItem {
                resource: ResourceRef {
                    address: addr.to_string(),
                    kind: resource.kind.clone(),
                },
                id: resource.id.clone().unwrap_or_default(),
                // What the record holds by reference, as values (`state::by_reference`).
                prior: state
                    .resolve_stored(&resource.attributes)
                    .attributes
                    .into_owned(),
            });
    }

    let mut reads = JoinSet::new();
    for (name, items) in batches {
        let provider = providers.get(name).expect("checked above").clone();
        let expected: Vec<String> = items.iter().map(|i| i.resource.address.clone()).collect();
        reads.spawn(async move {
            let response = provider
                .read(ReadRequest {
                    resources: items,
                    deep,
                })
                .await;
            (expected, response)
        });
    }

    let mut failures = Vec::new();
    let mut drift = Vec::new();
    let mut unreachable = BTreeMap::new();
    let parse = |address: &str| {
        address
            .parse::<ResourceAddr>()
            .map_err(|_| Error::Internal(address.to_string()))
    };
    while let Some(joined) = reads.join_next().await {
        let (expected, response) = joined.map_err(|e| Error::Internal(e.to_string()))?;
        let response = match response {
            Ok(response) => response,
            // The provider could not read anything (e.g. its API is down): every one of
            // its resources is unknown.
            Err(error) if error.kind.is_retryable() => {
                for address in &expected {
                    unreachable.insert(parse(address)?, unreachable_reason(&error));
                }
                continue;
            }
            Err(error) => {
                failures.push(error);
                continue;
            }
        };
        let mut outcomes: BTreeMap<String, ReadOutcome> = response
            .results
            .into_iter()
            .map(|r| (r.address, r.outcome))
            .collect();
        for address in expected {
            let addr = parse(&address)?;
            let before = &state.resources[&addr];
            let unrecorded: Vec<String> = schemas
                .get(&before.provider, &before.kind)
                .map(|s| s.unrecorded_attributes().map(str::to_string).collect())
                .unwrap_or_default();
            let after = match outcomes.remove(&address) {
                Some(ReadOutcome::Found(mut attributes)) => {
                    // As state records it: never an attribute its schema leaves out, and
                    // a value read back as it was recorded by reference, by reference.
                    for name in &unrecorded {
                        attributes.shift_remove(name);
                    }
                    if crate::state::by_reference::may_hold_markers(&before.attributes) {
                        state.rerecord(&mut attributes, &before.attributes.parse());
                    }
                    Some(found(&addr, before, attributes)?)
                }
                Some(ReadOutcome::Gone) => None,
                Some(ReadOutcome::Failed(error)) if error.kind.is_retryable() => {
                    unreachable.insert(addr, unreachable_reason(&error));
                    continue;
                }
                Some(ReadOutcome::Failed(error)) => {
                    failures.push(error);
                    continue;
                }
                None => {
                    failures.push(infraflux_provider::ProviderError::new(
                        infraflux_provider::ErrorKind::Other,
                        "read",
                        &address,
                        "the provider returned no result for this resource",
                    ));
                    continue;
                }
            };
            // A record written before its schema left an attribute out still has it: that
            // is no drift.
            let names: Vec<&str> = unrecorded.iter().map(String::as_str).collect();
            let recorded_before = if !names.is_empty() && !before.attributes.only(&names).is_empty()
            {
                let mut recorded = before.clone();
                let mut attributes = recorded.attributes.parse();
                for name in &unrecorded {
                    attributes.shift_remove(name);
                }
                recorded.attributes = attributes.into();
                std::borrow::Cow::Owned(recorded)
            } else {
                std::borrow::Cow::Borrowed(before)
            };
            if after.as_ref() != Some(recorded_before.as_ref()) {
                drift.push(Drift {
                    address: addr,
                    before: before.clone(),
                    after,
                });
            }
        }
    }
    if !failures.is_empty() {
        failures.sort_by(|a, b| a.address.cmp(&b.address));
        return Err(Error::Refresh(failures));
    }
    drift.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(Refreshed { drift, unreachable })
}

fn found(
    addr: &ResourceAddr,
    before: &ResourceState,
    mut attributes: infraflux_provider::Attributes,
) -> Result<ResourceState, Error> {
    let mut after = before.clone();
    match before.status {
        ResourceStatus::PendingCreate => {
            let id = attributes
                .shift_remove("id")
                .and_then(|id| id.as_str().map(str::to_string))
                .ok_or_else(|| Error::AdoptionWithoutId(addr.clone()))?;
            after.id = Some(id);
            after.status = ResourceStatus::Ready;
        }
        ResourceStatus::Ready | ResourceStatus::PendingDelete | ResourceStatus::Tainted => {}
    }
    after.attributes = attributes.into();
    Ok(after)
}

/// `state` with the drift applied.
pub(crate) fn apply_drift(state: &mut StateDocument, drift: &[Drift]) {
    for entry in drift {
        // Through `set_record`: what others recorded of it by reference stays theirs.
        state.set_record(&entry.address, entry.after.clone());
    }
}
