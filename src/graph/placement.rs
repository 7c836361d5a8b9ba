//! Placement at plan time: which host each new machine goes on.
//!
//! [`desired`](super::desired) proposes a host for every machine and marks what may move with
//! a [`Rule`]: a [`Rule::Machine`] may go on any of its candidate hosts; a
//! [`Rule::PerHost`] resource (a node's copy of the Talos image) is needed only where a
//! machine of its group ends up. This step decides, in order:
//!
//! 1. a machine that state already knows stays where state says it is (after refresh: a
//!    VM moved by HA or a migration is drift the plan reports, never something to undo);
//! 2. new machines are placed one by one, control planes first: control planes on hosts
//!    with no control plane of their group (colocated only with `allow_colocation`,
//!    otherwise a problem), workers on the host with the fewest machines of their group;
//!    ties go to the host with the most free memory, then to the configured order;
//! 3. free memory comes from the provider's [`Inventory`] (one call per group, and only
//!    when the group has something new to place: [`inventory_requests`] says which; the
//!    plan makes the calls, so this module does no I/O) minus what this plan already placed on
//!    the same hosts, for every group sharing them; a host that is offline or lacks the
//!    memory is not a candidate;
//! 4. `PerHost` resources no machine needs are dropped, unless they exist already. A
//!    new machine needs those of its host; an existing one only when what its per-host
//!    attributes refer to exists nowhere (a VM moved by HA needs no new image).
//!
//! Without an inventory (`--refresh=false`, `validate`, `graph`, a provider that has
//! none) the same rules run with every candidate online and unlimited memory, which is
//! deterministic and needs no network.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use infraflux_provider::{
    Attributes, Inventory, InventoryItem, InventoryRequest, ProviderError, ResourceRef,
    is_reference, reference_target,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DesiredResource;
use crate::vocabulary::{Recorded, ResourceAddr};

/// The attribute holding a placed resource's host.
pub const HOST_ATTRIBUTE: &str = "node";

/// How a resource may be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Goes on one of `hosts` (configured order); `node` holds the choice.
    Machine {
        /// Machines placed together, e.g. a cluster's (`dev/workload`).
        group: String,
        hosts: Vec<String>,
        spread: Spread,
        allow_colocation: bool,
        /// Bytes of memory it needs on its host.
        memory: u64,
        /// Attributes whose value depends on the host: attribute → host → value.
        per_host: BTreeMap<String, BTreeMap<String, Value>>,
    },
    /// Needed on `host` only if a machine of `group` is placed there.
    PerHost { group: String, host: String },
}

/// How machines of one group share hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Each on its own host (control planes: losing one host loses one etcd member).
    Distinct,
    /// Evenly over the hosts (workers).
    Even,
}

/// Why a resource cannot be placed or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub address: ResourceAddr,
    pub summary: String,
    /// Ends with what to do.
    pub help: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: {}\n  help: {}",
            self.address, self.summary, self.help
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot place {} resource{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<Problem>),
    #[error("cannot list the hosts to place `{address}` on")]
    Inventory {
        address: ResourceAddr,
        #[source]
        source: Box<ProviderError>,
    },
}

/// One inventory call to make before placing: the provider to ask, the group's first
/// new resource (named when the call fails), and the request.
#[derive(Debug, Clone)]
pub struct InventoryQuery {
    pub group: String,
    pub provider: String,
    pub address: ResourceAddr,
    pub request: InventoryRequest,
}

/// The inventories [`solve`] needs: one per group with something new to place (see the
/// module docs). `in_scope` limits the groups asked about. The caller asks the
/// providers and passes the answers, by group, to [`solve`].
pub fn inventory_requests(
    desired: &[DesiredResource],
    state: &dyn Recorded,
    in_scope: &dyn Fn(&ResourceAddr) -> bool,
) -> Vec<InventoryQuery> {
    new_members(desired, state, in_scope)
        .into_iter()
        .map(|(group, members)| {
            let first = &desired[members[0]];
            InventoryQuery {
                group,
                provider: first.provider.clone(),
                address: first.address.clone(),
                request: InventoryRequest {
                    resources: members
                        .iter()
                        .map(|&i| InventoryItem {
                            resource: ResourceRef {
                                address: desired[i].address.to_string(),
                                kind: desired[i].kind.clone(),
                            },
                            desired: without_references(&desired[i].attributes),
                        })
                        .collect(),
                },
            }
        })
        .collect()
}

fn without_references(attributes: &Attributes) -> Attributes {
    attributes
        .iter()
        .filter(|(_, value)| !is_reference(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

fn group_of(resource: &DesiredResource) -> Option<&str> {
    match resource.placement.as_ref()? {
        Rule::Machine { group, .. } | Rule::PerHost { group, .. } => Some(group),
    }
}

/// Per group with something not yet in state: the indices of those resources (machines
/// to place and per-host resources to create, for the provider's preflight).
fn new_members(
    desired: &[DesiredResource],
    state: &dyn Recorded,
    in_scope: &dyn Fn(&ResourceAddr) -> bool,
) -> BTreeMap<String, Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, resource) in desired.iter().enumerate() {
        if let Some(group) = group_of(resource)
            && in_scope(&resource.address)
            && !state.contains(&resource.address)
        {
            groups.entry(group.to_string()).or_default().push(i);
        }
    }
    // Per-host resources alone (every machine exists) need no inventory.
    groups.retain(|_, members| {
        members
            .iter()
            .any(|&i| matches!(desired[i].placement, Some(Rule::Machine { .. })))
    });
    groups
}

/// What one host offers while placing: its inventory entry, if any.
struct HostView<'a> {
    name: &'a str,
    online: bool,
    /// `None`: unlimited (no inventory).
    free: Option<u64>,
}

/// Place `desired` against `state` and the inventories by group (none: offline).
pub fn solve(
    mut desired: Vec<DesiredResource>,
    state: &dyn Recorded,
    inventories: &HashMap<String, Inventory>,
) -> Result<Vec<DesiredResource>, Vec<Problem>> {
    let mut problems = Vec::new();
    // Memory this plan places, per (inventory scope, host).
    let mut planned: HashMap<(String, String), u64> = HashMap::new();
    // Per group and host: machines, and control planes.
    let mut members: HashMap<(String, String), usize> = HashMap::new();
    let mut control_planes: HashMap<(String, String), usize> = HashMap::new();

    // 1. What exists stays.
    let mut new = Vec::new();
    let mut pinned = Vec::new();
    for (i, resource) in desired.iter().enumerate() {
        let Some(Rule::Machine { group, spread, .. }) = &resource.placement else {
            continue;
        };
        let existing = state
            .some_attributes(&resource.address, &[HOST_ATTRIBUTE])
            .and_then(|mut attributes| attributes.remove(HOST_ATTRIBUTE));
        match existing.as_ref().and_then(Value::as_str) {
            Some(host) => {
                *members
                    .entry((group.clone(), host.to_string()))
                    .or_default() += 1;
                if *spread == Spread::Distinct {
                    *control_planes
                        .entry((group.clone(), host.to_string()))
                        .or_default() += 1;
                }
                pinned.push((i, host.to_string()));
            }
            None => new.push(i),
        }
    }
    // Hosts whose per-host resources some machine needs, by group.
    let mut needed: BTreeSet<(String, String)> = BTreeSet::new();
    for (i, host) in pinned {
        if pin(&mut desired[i], &host, state)
            && let Some(Rule::Machine { group, .. }) = &desired[i].placement
        {
            needed.insert((group.clone(), host));
        }
    }
    // Control planes first, then in the order built.
    new.sort_by_key(|&i| match &desired[i].placement {
        Some(Rule::Machine {
            spread: Spread::Distinct,
            ..
        }) => 0,
        _ => 1,
    });

    // 2. New machines.
    for i in new {
        // Borrowed, not cloned: a machine's rule holds its per-host attributes, and a
        // fleet places tens of thousands of machines.
        let Some(Rule::Machine {
            group,
            hosts,
            spread,
            allow_colocation,
            memory,
            ..
        }) = &desired[i].placement
        else {
            continue;
        };
        let (spread, allow_colocation, memory) = (*spread, *allow_colocation, *memory);
        let inventory = inventories.get(group);
        let views: Vec<HostView> = hosts
            .iter()
            .map(|name| match inventory {
                None => HostView {
                    name,
                    online: true,
                    free: None,
                },
                Some(inventory) => {
                    let host = inventory.hosts.iter().find(|h| &h.name == name);
                    let used = planned
                        .get(&(inventory.scope.clone(), name.clone()))
                        .copied()
                        .unwrap_or(0);
                    HostView {
                        name,
                        online: host.is_some_and(|h| h.online),
                        free: Some(host.map_or(0, |h| h.memory_free.saturating_sub(used))),
                    }
                }
            })
            .collect();
        let fits = |v: &&HostView| v.online && v.free.is_none_or(|free| free >= memory);
        let count = |map: &HashMap<(String, String), usize>, host: &str| {
            map.get(&(group.clone(), host.to_string()))
                .copied()
                .unwrap_or(0)
        };
        let candidates: Vec<&HostView> = views.iter().filter(fits).collect();
        // Lower is better: (spread key, less free memory is worse, configured order).
        let rank = |v: &HostView, position: usize| {
            let spread_key = match spread {
                Spread::Distinct => count(&control_planes, v.name),
                Spread::Even => count(&members, v.name),
            };
            (spread_key, u64::MAX - v.free.unwrap_or(u64::MAX), position)
        };
        let best = candidates
            .iter()
            .enumerate()
            .min_by_key(|(position, v)| rank(v, *position))
            .map(|(_, v)| *v);
        let chosen = match best {
            None => {
                problems.push(no_room(&desired[i].address, memory, &views, inventory));
                continue;
            }
            Some(view)
                if spread == Spread::Distinct
                    && count(&control_planes, view.name) > 0
                    && !allow_colocation =>
            {
                problems.push(colocation(&desired[i].address, group, &views, memory));
                continue;
            }
            Some(view) => view.name.to_string(),
        };
        if let Some(inventory) = inventory {
            *planned
                .entry((inventory.scope.clone(), chosen.clone()))
                .or_default() += memory;
        }
        *members.entry((group.clone(), chosen.clone())).or_default() += 1;
        if spread == Spread::Distinct {
            *control_planes
                .entry((group.clone(), chosen.clone()))
                .or_default() += 1;
        }
        needed.insert((group.clone(), chosen.clone()));
        set_host(&mut desired[i], &chosen);
    }

    // 4. Per-host resources where no machine is, unless they exist.
    desired.retain(|resource| match &resource.placement {
        Some(Rule::PerHost { group, host }) => {
            needed.contains(&(group.clone(), host.clone())) || state.contains(&resource.address)
        }
        _ => true,
    });

    // The providers' preflight, for what is still to be created.
    for inventory in inventories.values() {
        for (address, diagnostic) in &inventory.problems {
            let Ok(addr) = address.parse::<ResourceAddr>() else {
                continue;
            };
            if desired.iter().any(|d| d.address == addr) && !state.contains(&addr) {
                problems.push(Problem {
                    address: addr,
                    summary: diagnostic.summary.clone(),
                    help: diagnostic.detail.clone().unwrap_or_default(),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(desired)
    } else {
        Err(problems)
    }
}

/// Put `host` in the resource's host attribute and its per-host attributes.
fn set_host(resource: &mut DesiredResource, host: &str) {
    resource
        .attributes
        .insert(HOST_ATTRIBUTE.into(), Value::String(host.into()));
    if let Some(Rule::Machine { per_host, .. }) = &resource.placement {
        for (attribute, values) in per_host {
            if let Some(value) = values.get(host) {
                resource.attributes.insert(attribute.clone(), value.clone());
            }
        }
    }
}

/// Whether `value` refers to a resource state has.
fn refers_to_existing(value: &Value, state: &dyn Recorded) -> bool {
    reference_target(value)
        .and_then(|(address, _)| address.parse::<ResourceAddr>().ok())
        .is_some_and(|addr| state.contains(&addr))
}

/// Keep an existing machine on `host`. Its per-host attributes follow the host when what
/// they refer to there exists, else keep referring to what exists (a VM moved by HA does
/// not need a new image on its new node: its disk was imported long ago). Returns
/// whether the host's per-host resources must be created for it.
fn pin(resource: &mut DesiredResource, host: &str, state: &dyn Recorded) -> bool {
    resource
        .attributes
        .insert(HOST_ATTRIBUTE.into(), Value::String(host.into()));
    let Some(Rule::Machine { per_host, .. }) = &resource.placement else {
        return false;
    };
    let mut needs_host = false;
    for (attribute, values) in per_host {
        let here = values.get(host);
        if here.is_some_and(|v| refers_to_existing(v, state)) {
            resource
                .attributes
                .insert(attribute.clone(), here.cloned().unwrap_or_default());
        } else if resource
            .attributes
            .get(attribute)
            .is_some_and(|v| refers_to_existing(v, state))
        {
            // As built: refers to something that exists; leave it.
        } else if let Some(value) = here {
            resource.attributes.insert(attribute.clone(), value.clone());
            needs_host = true;
        }
    }
    needs_host
}

fn mebibytes(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

fn describe(views: &[HostView]) -> String {
    views
        .iter()
        .map(|v| match (v.online, v.free) {
            (false, _) => format!("{} offline or unknown", v.name),
            (true, Some(free)) => format!("{} {} MiB free", v.name, mebibytes(free)),
            (true, None) => v.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_room(
    addr: &ResourceAddr,
    memory: u64,
    views: &[HostView],
    inventory: Option<&Inventory>,
) -> Problem {
    let unknown: BTreeSet<&str> = views
        .iter()
        .filter(|v| inventory.is_some_and(|i| !i.hosts.iter().any(|h| h.name == v.name)))
        .map(|v| v.name)
        .collect();
    let mut help =
        "free memory on a node, add nodes to `proxmox.nodes`, or lower the pool's `memory`"
            .to_string();
    if !unknown.is_empty() {
        help = format!(
            "the Proxmox cluster has no node named {}: fix `proxmox.nodes`; or {help}",
            unknown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Problem {
        address: addr.clone(),
        summary: format!(
            "no node can take it: it needs {} MiB of memory, counting what this plan already places ({})",
            mebibytes(memory),
            describe(views)
        ),
        help,
    }
}

fn colocation(addr: &ResourceAddr, group: &str, views: &[HostView], memory: u64) -> Problem {
    Problem {
        address: addr.clone(),
        summary: format!(
            "every node that can take this control plane ({} MiB) already runs one of {group}'s control planes ({})",
            mebibytes(memory),
            describe(views)
        ),
        help: "bring a node online or free memory on one, add a node to `proxmox.nodes`, lower `control_plane.count`, or accept losing several control planes with one node by setting `proxmox.allow_colocation: true`".into(),
    }
}

#[cfg(test)]
mod tests;
