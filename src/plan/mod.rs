//! Stage 4: the plan — what apply will do, resource by resource.
//!
//! [`plan`] refreshes state through the providers ([`refresh`]), builds the graph,
//! resolves references in execution order (to values from state and from the planned
//! attributes of dependencies; unknown where those are unknown), asks each resource's
//! provider to plan it, and chooses an [`Action`] per resource:
//!
//! | situation                                          | action                          |
//! |----------------------------------------------------|---------------------------------|
//! | configured, not in state (or deleted outside)      | Create                          |
//! | planned attributes equal the current ones          | NoOp                            |
//! | they differ                                        | Update                          |
//! | a force-new input changed, tainted, `--replace`, or an interrupted delete | DeleteThenCreate (CreateThenDelete when the provider asks) |
//! | in state, not configured (or `destroy`)            | Delete                          |
//! | `--refresh-only`: refresh found a difference       | Read                            |
//!
//! A resource the refresh could not reach (its endpoint or node is down) is *unknown*:
//! the plan leaves it and everything that waits for it out ([`Plan::unknown`]), plans
//! the rest, and says it is partial ([`Plan::is_partial`]; `plan` and `apply` exit 3).
//!
//! A plan is bound to the state it was made from (lineage, serial) and to the
//! configuration (a sha256 digest of the desired resources); a saved plan whose state or
//! configuration changed since is refused ([`saved`]).

mod change;
mod parallel;
mod pieces;
mod refresh;
pub mod render;
pub(crate) mod resolve;
pub mod saved;
mod text_diff;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};

use infraflux_provider::{
    Diagnostic, PlanRequest, ProviderError, ResourceRef, ResourceSchema, Severity, ValidateRequest,
    references_as_unknown, unknown,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use change::{Action, AttributeDiff, Change, Drift, Reason, Unknown, diff};
use pieces::{MIN_RESOURCES_FOR_THREADS, Outcome};
pub(crate) use refresh::apply_drift;
use resolve::Lookup;

use crate::graph::{self, DesiredResource, GraphOptions, OrderedVertex, ResourceGraph, Vertex};
use crate::registry::ProviderRegistry;
use crate::state::by_reference::MarkerReads;
use crate::state::{ResourceStatus, StateDocument};
use crate::vocabulary::ResourceAddr;

/// Version of the plan format (saved plans and `plan --json`, docs/plan-json.md).
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no provider registered for `{provider}` (needed by `{address}`)")]
    NoProvider {
        provider: String,
        address: ResourceAddr,
    },
    #[error(transparent)]
    Graph(#[from] graph::Error),
    #[error("the configuration of {} resource{} is invalid:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<InvalidResource>),
    #[error("cannot refresh {} resource{}: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refresh(Vec<ProviderError>),
    #[error(
        "the provider found the object of the interrupted create of `{0}` but returned no `id` attribute"
    )]
    AdoptionWithoutId(ResourceAddr),
    #[error("cannot plan `{address}`")]
    Provider {
        address: ResourceAddr,
        #[source]
        source: ProviderError,
    },
    #[error(
        "`{from}` attribute `{attribute}` refers to `{target}` attribute `{target_attribute}`, which it does not have"
    )]
    UnresolvedReference {
        from: ResourceAddr,
        attribute: String,
        target: String,
        target_attribute: String,
    },
    #[error("--replace `{0}`: no such resource in the configuration")]
    UnknownReplace(ResourceAddr),
    #[error("the plan would destroy {} protected by lifecycle.prevent_destroy: {}", if .0.len() == 1 { "a resource" } else { "resources" }, .0.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "))]
    PreventDestroy(Vec<ResourceAddr>),
    #[error("state is for environment `{found}`, not `{expected}`")]
    WrongEnvironment { expected: String, found: String },
    #[error(transparent)]
    Saved(#[from] saved::Error),
    #[error(transparent)]
    Placement(#[from] graph::placement::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// What to do about it, for the command's diagnostic.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::NoProvider { provider, .. } => Some(format!(
                "this build of infraflux has no `{provider}` provider; the provider crates are not wired in yet"
            )),
            Error::PreventDestroy(_) => Some(
                "set `lifecycle.prevent_destroy: false` for this cluster or environment if the destruction is intended, or change the configuration so it is not needed".into(),
            ),
            Error::UnknownReplace(_) => Some("check the address with `infraflux graph`".into()),
            Error::Invalid(_) => Some(
                "the provider rejected these attributes before anything was contacted; `infraflux config show --provenance` shows which file sets each value".into(),
            ),
            Error::Saved(error) => error.help().map(str::to_string),
            Error::Provider { source, .. } => source.help.clone(),
            // A provider that knows what to do says so (e.g. how to provide a release
            // file); otherwise the usual suspects.
            Error::Refresh(errors) => Some(
                errors
                    .iter()
                    .find_map(|e| e.help.clone())
                    .unwrap_or_else(|| "check that the endpoints are reachable and the credentials valid, or plan with --refresh=false".into()),
            ),
            Error::Placement(graph::placement::Error::Inventory { .. }) => Some("placement lists the Proxmox nodes' free memory: check that the endpoint is reachable and the token may audit the cluster (Sys.Audit), or plan with --refresh=false for the offline placement".into()),
            _ => None,
        }
    }
}

/// A resource whose provider rejected its desired attributes (`Provider::validate`).
#[derive(Debug)]
pub struct InvalidResource {
    pub address: ResourceAddr,
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for InvalidResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}", self.address)?;
            if let Some(attribute) = &diagnostic.attribute {
                write!(f, " `{attribute}`")?;
            }
            write!(f, ": {}", diagnostic.summary)?;
            if let Some(detail) = &diagnostic.detail {
                write!(f, " ({detail})")?;
            }
        }
        Ok(())
    }
}

/// What to plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanMode {
    #[default]
    Normal,
    /// Delete everything in scope (`infraflux destroy`).
    Destroy,
    /// Only record what changed outside InfraFlux (`--refresh-only`).
    RefreshOnly,
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub mode: PlanMode,
    /// Only this cluster.
    pub cluster: Option<String>,
    /// `--target`: these and what they depend on.
    pub targets: Vec<ResourceAddr>,
    /// `--replace`: replace these even if nothing changed.
    pub replace: Vec<ResourceAddr>,
    /// `--refresh=false` turns this off (pending records are read regardless).
    pub refresh: bool,
    /// `--refresh=deep`: providers read every resource in full, not only what their
    /// listings show changed.
    pub deep_refresh: bool,
    /// A complete plan, for `--json`, `--out` and apply, carries two things a plan that
    /// is only shown as text never reads, and so skips:
    /// - the configuration's digest ([`config_digest`]), which `--json` shows and a
    ///   saved plan is checked against: serializing and hashing every desired resource
    ///   was up to a fifth of a fleet plan;
    /// - each no-op's attributes (its `after`), which `--json` shows. They are the
    ///   recorded ones by definition (references to a no-op resolve against state):
    ///   holding a second copy of every recorded attribute was a quarter of a steady
    ///   fleet plan's memory;
    /// - each change's configuration ([`Change::desired`]), kept for apply to resolve
    ///   its references again: a quarter of a fleet create plan's memory.
    ///
    /// README: Performance.
    pub complete: bool,
    /// Threads to plan with; 0 for one per core (`plan::parallel`).
    pub threads: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            mode: PlanMode::Normal,
            cluster: None,
            targets: Vec::new(),
            replace: Vec::new(),
            refresh: true,
            deep_refresh: false,
            complete: true,
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub environment: String,
    pub lineage: uuid::Uuid,
    pub serial: u64,
    /// sha256 (hex) of the desired resources, see [`config_digest`]; empty when the
    /// plan was made without it ([`PlanOptions::digest`]), and then never saved.
    pub config_digest: String,
    pub mode: PlanMode,
    /// What refresh found changed outside InfraFlux; apply records it first.
    pub drift: Vec<Drift>,
    /// Every resource in scope, in an execution order (no-ops included), but the
    /// unknown ones.
    pub changes: Vec<Change>,
    /// Resources left out because they could not be read (or wait for one that could
    /// not): the plan is partial. In execution order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<Unknown>,
    /// Changes that run one at a time, in order, stopping at the first failure (see
    /// [`infraflux_provider::Rollout`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<PlannedRollout>,
}

/// One rollout of a plan: its steps in the order they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRollout {
    pub key: String,
    /// What each step waits for before the next one starts.
    pub gates: String,
    pub steps: Vec<ResourceAddr>,
}

impl Plan {
    /// The rollout `address` is a step of, and its position in it.
    pub fn rollout_of(&self, address: &ResourceAddr) -> Option<(&PlannedRollout, usize)> {
        self.rollouts.iter().find_map(|rollout| {
            let position = rollout.steps.iter().position(|s| s == address)?;
            Some((rollout, position))
        })
    }
}

/// The rollouts the providers put `changes` in, each ordered by rank, then by the
/// plan's order.
fn rollouts(changes: &[Change], providers: &ProviderRegistry) -> Vec<PlannedRollout> {
    // (rollout, the change it orders by, host first, the change itself)
    let mut found: Vec<(infraflux_provider::Rollout, usize, u8, usize)> = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let Some(operation) = change.action.operation() else {
            continue;
        };
        // The planned attributes (the configuration's, resolved), the same whether the
        // plan keeps the configuration too (`PlanOptions::complete`) or not.
        let Some(attributes) = change
            .after
            .as_ref()
            .or(change.desired.as_ref())
            .or(change.before_attributes())
        else {
            continue;
        };
        let Some(provider) = providers.get(&change.provider) else {
            continue;
        };
        let resource = infraflux_provider::ResourceRef {
            address: change.address.to_string(),
            kind: change.address.kind.clone(),
        };
        // A resource replaced with its host is, to its provider, that node changing: it
        // rolls like an update, and its host's replacement joins the rollout just
        // before it, so hosts are replaced one at a time too (a control plane has
        // rejoined etcd before the next one leaves).
        let host_replaced = change.reason == Some(Reason::HostReplaced);
        let operation = if host_replaced {
            infraflux_provider::Operation::Update
        } else {
            operation
        };
        if let Some(rollout) = provider.rollout(operation, &resource, attributes) {
            if host_replaced {
                for (host, _) in changes
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.action.is_replace() && change.wait_for.contains(&h.address))
                {
                    found.push((rollout.clone(), index, 0, host));
                }
            }
            found.push((rollout, index, 1, index));
        }
    }
    found.sort_by(|(a, i, h, _), (b, j, g, _)| (&a.key, a.rank, i, h).cmp(&(&b.key, b.rank, j, g)));
    let mut planned: Vec<PlannedRollout> = Vec::new();
    for (rollout, _, _, index) in found {
        let address = changes[index].address.clone();
        match planned.last_mut() {
            Some(last) if last.key == rollout.key => last.steps.push(address),
            _ => planned.push(PlannedRollout {
                key: rollout.key,
                gates: rollout.gates,
                steps: vec![address],
            }),
        }
    }
    planned
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub read: usize,
    /// Left out: could not be read, or wait for one that could not.
    pub unknown: usize,
}

impl Plan {
    /// Whether applying would change anything (`--detailed-exitcode` 2).
    pub fn has_changes(&self) -> bool {
        // As Terraform: drift alone (outside a refresh-only plan) is not a change.
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }

    /// Whether some resources were left out because they could not be read.
    pub fn is_partial(&self) -> bool {
        !self.unknown.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            unknown: self.unknown.len(),
            ..Summary::default()
        };
        for change in &self.changes {
            match change.action {
                Action::NoOp => {}
                Action::Create => summary.add += 1,
                Action::Update => summary.change += 1,
                Action::DeleteThenCreate | Action::CreateThenDelete => {
                    summary.add += 1;
                    summary.destroy += 1;
                }
                Action::Delete => summary.destroy += 1,
                Action::Read => summary.read += 1,
            }
        }
        summary
    }

    pub fn change(&self, address: &ResourceAddr) -> Option<&Change> {
        self.changes.iter().find(|c| &c.address == address)
    }
}

/// The exit code of a partial plan (and of the apply of one), with or without
/// `--detailed-exitcode`: some resources could not be read; the rest was planned.
pub const PARTIAL_EXIT_CODE: u8 = 3;

/// `--detailed-exitcode`: 0 no changes, 1 error, 2 changes present, 3 partial (some
/// resources unknown, whatever the rest holds).
pub fn detailed_exit_code(plan: &Result<Plan, Error>) -> u8 {
    match plan {
        Ok(plan) if plan.is_partial() => PARTIAL_EXIT_CODE,
        Ok(plan) if plan.has_changes() => 2,
        Ok(_) => 0,
        Err(_) => 1,
    }
}

/// The configuration's digest: sha256 of the desired resources' canonical JSON (sorted
/// by address). Formatting, comments and layer layout do not count; any value that
/// reaches a resource does.
pub fn config_digest(desired: &[DesiredResource]) -> String {
    let mut sorted: Vec<&DesiredResource> = desired.iter().collect();
    sorted.sort_by(|a, b| a.address.cmp(&b.address));
    let mut hasher = Sha256::new();
    {
        // Serialized into the hash as it is written, not into a buffer per resource.
        use std::io::Write as _;
        let mut writer = std::io::BufWriter::with_capacity(64 * 1024, &mut hasher);
        for resource in sorted {
            serde_json::to_writer(&mut writer, resource).expect("desired resources serialize");
            writer.write_all(b"\n").expect("hashing never fails");
        }
        writer.flush().expect("hashing never fails");
    }
    hex::encode(hasher.finalize())
}

/// Every provider's schemas by provider and kind, fetched once per plan (read from
/// every thread that plans).
pub(crate) struct Schemas {
    by_provider: HashMap<String, HashMap<String, ResourceSchema>>,
}

impl Schemas {
    pub(crate) fn of(providers: &ProviderRegistry) -> Self {
        let by_provider = providers
            .names()
            .filter_map(|name| {
                let provider = providers.get(name)?;
                let schemas = provider
                    .schemas()
                    .into_iter()
                    .map(|schema| (schema.kind.clone(), schema))
                    .collect();
                Some((name.to_string(), schemas))
            })
            .collect();
        Schemas { by_provider }
    }

    pub(crate) fn get(&self, provider: &str, kind: &str) -> Option<&ResourceSchema> {
        self.by_provider.get(provider)?.get(kind)
    }
}

/// Plan `desired` against `state` (one environment's document).
pub async fn plan(
    desired: Vec<DesiredResource>,
    state: &StateDocument,
    providers: &ProviderRegistry,
    options: &PlanOptions,
) -> Result<Plan, Error> {
    let environment = state.environment.clone();
    let config_digest = if options.complete {
        config_digest(&desired)
    } else {
        String::new()
    };
    let in_scope = |addr: &ResourceAddr| {
        addr.environment == environment
            && options.cluster.as_ref().is_none_or(|c| *c == addr.cluster)
    };
    for resource in desired.iter().filter(|d| in_scope(&d.address)) {
        if providers.get(&resource.provider).is_none() {
            return Err(Error::NoProvider {
                provider: resource.provider.clone(),
                address: resource.address.clone(),
            });
        }
    }
    validate(
        &desired,
        &in_scope,
        providers,
        parallel::threads(options.threads),
    )
    .await?;
    for replace in &options.replace {
        if !desired.iter().any(|d| &d.address == replace) {
            return Err(Error::UnknownReplace(replace.clone()));
        }
    }
    // `--replace` of what is replaced with its host (a machine config: a fresh config is
    // a fresh node) replaces the host, and it with it.
    let hosts: Vec<ResourceAddr> = desired
        .iter()
        .filter(|d| options.replace.contains(&d.address))
        .flat_map(|d| d.replace_with.iter().cloned())
        .filter(|host| !options.replace.contains(host))
        .collect();
    let with_hosts;
    let options = if hosts.is_empty() {
        options
    } else {
        with_hosts = PlanOptions {
            replace: options.replace.iter().cloned().chain(hosts).collect(),
            ..options.clone()
        };
        &with_hosts
    };

    // Fetched once, read by the refresh and by every thread that plans.
    let schemas = Schemas::of(providers);
    let read_all = options.refresh || options.mode == PlanMode::RefreshOnly;
    let deep = read_all && options.deep_refresh;
    let refresh::Refreshed { drift, unreachable } =
        refresh::refresh(state, &in_scope, providers, &schemas, read_all, deep).await?;
    // What exists now: state with the drift applied, copied only when there is drift
    // (a copy of a 100,000-resource state costs as much as reading it).
    let current: std::borrow::Cow<'_, StateDocument> = if drift.is_empty() {
        std::borrow::Cow::Borrowed(state)
    } else {
        let mut current = state.clone();
        apply_drift(&mut current, &drift);
        std::borrow::Cow::Owned(current)
    };
    // New machines are placed from the providers' inventories (with a refresh only);
    // existing ones stay where state has them.
    let desired = match options.mode {
        PlanMode::Normal => place(desired, &current, providers, read_all, &in_scope).await?,
        PlanMode::Destroy | PlanMode::RefreshOnly => desired,
    };

    let graph_options = GraphOptions {
        mode: match options.mode {
            PlanMode::Destroy => graph::Mode::Destroy,
            PlanMode::Normal | PlanMode::RefreshOnly => graph::Mode::Normal,
        },
        cluster: options.cluster.clone(),
        targets: options.targets.clone(),
    };
    let protection = OrphanProtection::new(&desired, &state.environment);
    let graph = ResourceGraph::build(desired, &*current, &graph_options)?;

    let (mut changes, unknown) = if options.mode == PlanMode::RefreshOnly {
        let changes = drift
            .iter()
            .filter(|d| graph.get(&d.address).is_some() || options.targets.is_empty())
            .map(read_change)
            .collect();
        let unknown = unreachable
            .iter()
            .map(|(address, reason)| Unknown {
                address: address.clone(),
                reason: format!("unreachable: {reason}"),
            })
            .collect();
        (changes, unknown)
    } else {
        pieces::plan_changes(
            graph,
            &current,
            state,
            providers,
            &schemas,
            options,
            &unreachable,
        )
        .await?
    };

    for change in changes
        .iter_mut()
        .filter(|c| matches!(c.reason, Some(Reason::NotInConfiguration)))
    {
        change.prevent_destroy = protection.protects(&change.address);
    }
    let protected: Vec<ResourceAddr> = changes
        .iter()
        .filter(|c| c.prevent_destroy && c.action.deletes())
        .map(|c| c.address.clone())
        .collect();
    if !protected.is_empty() {
        return Err(Error::PreventDestroy(protected));
    }

    Ok(Plan {
        format_version: FORMAT_VERSION,
        environment: state.environment.clone(),
        lineage: state.lineage,
        serial: state.serial,
        config_digest,
        mode: options.mode,
        drift: if options.mode == PlanMode::RefreshOnly {
            Vec::new()
        } else {
            drift
        },
        rollouts: rollouts(&changes, providers),
        changes,
        unknown,
    })
}

/// Placement ([`graph::placement`]) with the inventories it asks for fetched from the
/// providers; `online` false places offline (no inventory). The graph builds the requests
/// and solves; the I/O is here.
async fn place(
    desired: Vec<DesiredResource>,
    state: &StateDocument,
    providers: &ProviderRegistry,
    online: bool,
    in_scope: &dyn Fn(&ResourceAddr) -> bool,
) -> Result<Vec<DesiredResource>, graph::placement::Error> {
    let mut inventories = HashMap::new();
    if online {
        for query in graph::placement::inventory_requests(&desired, state, in_scope) {
            let Some(provider) = providers.get(&query.provider) else {
                continue;
            };
            match provider.inventory(query.request).await {
                Ok(Some(inventory)) => {
                    inventories.insert(query.group, inventory);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(graph::placement::Error::Inventory {
                        address: query.address,
                        source: Box::new(source),
                    });
                }
            }
        }
    }
    graph::placement::solve(desired, state, &inventories).map_err(graph::placement::Error::Problems)
}

/// Every in-scope resource's desired attributes through its provider's `validate` (no
/// I/O), before anything is refreshed: a bad value is reported for all resources at once,
/// not as the first failure halfway through an apply. References to other resources are
/// still markers here; providers accept those. Warnings go to the log.
///
/// A fleet's resources are validated on the machine's cores, a run of them per piece of
/// work ([`parallel`]); the problems come in the resources' order all the same.
async fn validate(
    desired: &[DesiredResource],
    in_scope: &(dyn Fn(&ResourceAddr) -> bool + Sync),
    providers: &ProviderRegistry,
    threads: usize,
) -> Result<(), Error> {
    let selected: Vec<&DesiredResource> = desired.iter().filter(|d| in_scope(&d.address)).collect();
    let threads = if selected.len() < MIN_RESOURCES_FOR_THREADS {
        1
    } else {
        threads
    };
    // A few runs per thread, so one that drew slow resources does not hold up the rest.
    let runs: Vec<&[&DesiredResource]> = selected
        .chunks(selected.len().div_ceil(threads * 4).max(1))
        .collect();
    let invalid: Vec<InvalidResource> = parallel::map(runs, threads, async |run| {
        let mut invalid = Vec::new();
        for resource in run {
            if let Some(found) = validate_resource(resource, providers).await {
                invalid.push(found);
            }
        }
        invalid
    })
    .await
    .into_iter()
    .flatten()
    .collect();
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(invalid))
    }
}

/// What `resource`'s provider rejects of it, if anything.
async fn validate_resource(
    resource: &DesiredResource,
    providers: &ProviderRegistry,
) -> Option<InvalidResource> {
    let provider = providers.get(&resource.provider)?;
    let response = provider
        .validate(ValidateRequest {
            resource: ResourceRef {
                address: resource.address.to_string(),
                kind: resource.kind.clone(),
            },
            desired: resource
                .attributes
                .iter()
                .map(|(name, value)| (name.clone(), references_as_unknown(value)))
                .collect(),
        })
        .await;
    let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) = response
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    for warning in warnings {
        tracing::warn!(address = %resource.address, attribute = ?warning.attribute, "{}", warning.summary);
    }
    (!errors.is_empty()).then(|| InvalidResource {
        address: resource.address.clone(),
        diagnostics: errors,
    })
}

/// Whether a resource that left the configuration is still protected from deletion.
/// Its own `lifecycle.prevent_destroy` went with its configuration, so it inherits the
/// setting of what remains: its cluster's resources, else its environment's, else the
/// environment default (on in prod). Removing a prod cluster from the configuration
/// therefore never deletes it silently; set `lifecycle.prevent_destroy: false` (or
/// `infraflux state rm`) to let it go.
struct OrphanProtection {
    environment: String,
    clusters: BTreeMap<String, bool>,
    any_in_environment: Option<bool>,
}

impl OrphanProtection {
    fn new(desired: &[DesiredResource], environment: &str) -> Self {
        let mut clusters: BTreeMap<String, bool> = BTreeMap::new();
        let mut any_in_environment = None;
        for resource in desired
            .iter()
            .filter(|d| d.address.environment == environment)
        {
            *clusters
                .entry(resource.address.cluster.clone())
                .or_default() |= resource.prevent_destroy;
            *any_in_environment.get_or_insert(false) |= resource.prevent_destroy;
        }
        OrphanProtection {
            environment: environment.to_string(),
            clusters,
            any_in_environment,
        }
    }

    fn protects(&self, addr: &ResourceAddr) -> bool {
        self.clusters
            .get(&addr.cluster)
            .copied()
            .or(self.any_in_environment)
            .unwrap_or(self.environment == "prod")
    }
}

fn read_change(drift: &Drift) -> Change {
    Change {
        address: drift.address.clone(),
        provider: drift.before.provider.clone(),
        action: Action::Read,
        reason: None,
        id: drift.before.id.clone(),
        before: Some(drift.before.attributes.parse()),
        after: drift.after.as_ref().map(|a| a.attributes.parse()),
        desired: None,
        requires_replace: Vec::new(),
        sensitive: drift.before.sensitive.clone(),
        wait_for: Vec::new(),
        dependencies: drift.before.dependencies.clone(),
        prevent_destroy: false,
        refreshed: drift.after.clone().map(Box::new),
    }
}

/// What planning one vertex comes to, given what its piece planned before it.
async fn plan_vertex(
    ordered: OrderedVertex,
    context: &pieces::PieceContext<'_>,
    left_out: &HashSet<ResourceAddr>,
    reads: &mut pieces::PieceReads,
) -> Result<Outcome, Error> {
    let pieces::PieceContext {
        schemas,
        current,
        options,
        unreachable,
        ..
    } = *context;
    let OrderedVertex {
        vertex,
        wait_for,
        dependencies,
    } = ordered;
    let addr = vertex.address();
    let reason = match unreachable.get(addr) {
        Some(reason) => Some(format!("unreachable: {reason}")),
        None => wait_for
            .iter()
            .find(|before| left_out.contains(*before))
            .map(|before| format!("waits for `{before}`, which is unknown")),
    };
    if let Some(reason) = reason {
        return Ok(Outcome::Unknown(Unknown {
            address: addr.clone(),
            reason,
        }));
    }
    let change = match vertex {
        Vertex::Configured(desired) if options.mode == PlanMode::Destroy => {
            // Never created: nothing to destroy, kept for ordering only.
            no_op(&desired, wait_for)
        }
        Vertex::Configured(mut desired) => {
            // A plan only shown keeps no configuration (`PlanOptions::complete`): it
            // is resolved in place, not copied.
            let attributes = if options.complete {
                desired.attributes.clone()
            } else {
                std::mem::take(&mut desired.attributes)
            };
            let resolved =
                resolve_for_plan(&desired, attributes, context, current, schemas, reads)?;
            // Hosts are planned before what is replaced with them, in the same piece
            // (`pieces`).
            let host_replaced = desired.replace_with.iter().any(|host| {
                context
                    .change(&host.to_string())
                    .is_some_and(|change| change.action.is_replace())
            });
            let replacement = if host_replaced {
                Some(Reason::HostReplaced)
            } else {
                options
                    .replace
                    .contains(&desired.address)
                    .then_some(Reason::ReplaceRequested)
            };
            let mut change =
                plan_configured(desired, resolved, context, replacement, &mut reads.markers)
                    .await?;
            if !options.complete {
                if change.action == Action::NoOp {
                    change.after = None;
                }
                // Kept for apply to resolve again; a plan only shown is never applied.
                change.desired = None;
            }
            change.wait_for = wait_for;
            change.dependencies = dependencies;
            change
        }
        Vertex::Orphan { ref address } | Vertex::Destroy { ref address, .. } => {
            // The graph made these vertices from `current`'s resources.
            let state = current
                .resources
                .get(address)
                .expect("a vertex that deletes is recorded in state");
            let prevent_destroy = match &vertex {
                Vertex::Destroy {
                    desired: Some(d), ..
                } => d.prevent_destroy,
                _ => false,
            };
            Change {
                address: address.clone(),
                provider: state.provider.clone(),
                action: Action::Delete,
                reason: Some(if options.mode == PlanMode::Destroy {
                    Reason::Destroy
                } else {
                    Reason::NotInConfiguration
                }),
                id: state.id.clone(),
                // What it holds by reference, as values (`state::by_reference`).
                before: Some(
                    current
                        .resolve_stored(&state.attributes)
                        .attributes
                        .into_owned(),
                ),
                after: None,
                desired: None,
                requires_replace: Vec::new(),
                sensitive: state.sensitive.clone(),
                wait_for,
                dependencies: state.dependencies.clone(),
                prevent_destroy,
                refreshed: None,
            }
        }
    };
    Ok(Outcome::Planned(Box::new(change)))
}

fn no_op(desired: &DesiredResource, wait_for: Vec<ResourceAddr>) -> Change {
    Change {
        address: desired.address.clone(),
        provider: desired.provider.clone(),
        action: Action::NoOp,
        reason: None,
        id: None,
        before: None,
        after: None,
        desired: None,
        requires_replace: Vec::new(),
        sensitive: Vec::new(),
        wait_for,
        dependencies: Vec::new(),
        prevent_destroy: desired.prevent_destroy,
        refreshed: None,
    }
}

/// Resolve references against what the plan so far says about each target.
fn resolve_for_plan(
    desired: &DesiredResource,
    attributes: infraflux_provider::Attributes,
    so_far: &pieces::PieceContext<'_>,
    current: &StateDocument,
    schemas: &Schemas,
    reads: &mut pieces::PieceReads,
) -> Result<resolve::Resolved, Error> {
    let mut lookup_reference = |reference: &infraflux_provider::Reference| {
        let Some(target) = so_far.change(reference.address.as_str()).or_else(|| {
            // Not in canonical form: as its address says.
            let address = reference.address.parse::<ResourceAddr>().ok()?;
            so_far.change(&address.to_string())
        }) else {
            return Lookup::Missing;
        };
        let schema = schemas.get(&target.provider, &target.address.kind);
        let sensitive =
            resolve::referenced_is_sensitive(&target.sensitive, &reference.attribute, schema);
        // A no-op's attributes are the recorded ones; a plan that is only shown keeps
        // them there, not in the change (`PlanOptions::complete`).
        let attributes = target.after.as_ref().map(Cow::Borrowed).or_else(|| {
            let recorded = (target.action == Action::NoOp)
                .then(|| current.resources.get(&target.address))
                .flatten()?;
            let read = reads
                .for_reference
                .entry((target.address.clone(), reference.attribute.clone()))
                .or_insert_with(|| {
                    resolve::recorded_for_reference(current, recorded, &reference.attribute, schema)
                });
            Some(Cow::Borrowed(read))
        });
        match attributes
            .as_deref()
            .and_then(|a| resolve::referenced_value(a, &reference.attribute, schema))
        {
            Some(value) => Lookup::Value(value.into_owned(), sensitive),
            None => {
                // Not planned (yet): a computed attribute of a resource being created.
                let root = reference.attribute.split('.').next().unwrap_or_default();
                let declared = schema.is_some_and(|s| s.attribute(root).is_some());
                if declared {
                    Lookup::Unknown(sensitive)
                } else {
                    Lookup::Missing
                }
            }
        }
    };
    resolve::resolve_owned_references(attributes, &mut lookup_reference).map_err(
        |(attribute, reference)| Error::UnresolvedReference {
            from: desired.address.clone(),
            attribute,
            target: reference.address,
            target_attribute: reference.attribute,
        },
    )
}

async fn plan_configured(
    desired: DesiredResource,
    resolved: resolve::Resolved,
    context: &pieces::PieceContext<'_>,
    replacement: Option<Reason>,
    markers: &mut MarkerReads,
) -> Result<Change, Error> {
    let pieces::PieceContext {
        schemas,
        current,
        recorded,
        providers,
        ..
    } = *context;
    let addr = &desired.address;
    let provider = providers.get(&desired.provider).expect("checked in plan");
    let prior = current.resources.get(addr);
    let forced = match prior.map(|p| p.status) {
        Some(ResourceStatus::Tainted) => Some(Reason::Tainted),
        Some(ResourceStatus::PendingDelete) => Some(Reason::InterruptedDelete),
        // Asked for (`--replace`), or its host is replaced.
        Some(_) => replacement,
        _ => None,
    };
    let resource = ResourceRef {
        address: addr.to_string(),
        kind: desired.kind.clone(),
    };
    // What the record holds by reference, as values again (`state::by_reference`).
    let prior_attributes = prior.map(|p| current.resolve_owned_with(p.attributes.parse(), markers));
    let response = provider
        .plan(PlanRequest {
            resource,
            prior: prior_attributes
                .as_ref()
                .filter(|_| forced.is_none())
                .map(|r| r.attributes.as_ref()),
            desired: resolved.attributes,
        })
        .await
        .map_err(|source| Error::Provider {
            address: addr.clone(),
            source,
        })?;

    let mut sensitive: Vec<String> = schemas
        .get(&desired.provider, &desired.kind)
        .map(|s| s.sensitive_attributes().map(str::to_string).collect())
        .unwrap_or_default();
    sensitive.extend(resolved.sensitive);
    sensitive.extend(desired.secrets.names.iter().cloned());
    mark_derived_secrets(&desired, &response.planned, &mut sensitive);
    sensitive.sort();
    sensitive.dedup();

    let (action, reason) = match (prior, forced) {
        (None, _) => {
            // Known to state as existing, and refresh found it gone (an interrupted
            // create or delete is no news: it never finished).
            let deleted_outside = recorded.resources.get(addr).is_some_and(|r| {
                matches!(r.status, ResourceStatus::Ready | ResourceStatus::Tainted)
            });
            (
                Action::Create,
                deleted_outside.then_some(Reason::DeletedOutside),
            )
        }
        (Some(_), Some(reason)) => (replace_action(response.create_before_destroy), Some(reason)),
        (Some(_), None) if !response.requires_replace.is_empty() => (
            replace_action(response.create_before_destroy),
            Some(Reason::RequiresReplace),
        ),
        // A value recorded by reference that its resource no longer holds: changed.
        (Some(_), None) if prior_attributes.as_ref().is_some_and(|r| r.stale) => {
            (Action::Update, None)
        }
        // State never holds the schema's unrecorded attributes: they are not compared.
        (Some(_), None)
            if !prior_attributes.as_ref().is_some_and(|prior| {
                let recorded = prior.attributes.as_ref();
                schemas
                    .get(&desired.provider, &desired.kind)
                    .map_or(*recorded == response.planned, |schema| {
                        schema.records_same(recorded, &response.planned)
                    })
            }) =>
        {
            (Action::Update, None)
        }
        (Some(_), None) => (Action::NoOp, None),
    };
    let mut after = response.planned;
    // A replaced object's computed values are new: unknown until created.
    if action.is_replace()
        && let Some(schema) = schemas.get(&desired.provider, &desired.kind)
    {
        for attribute in schema.attributes.iter().filter(|a| a.computed) {
            after.insert(attribute.name.clone(), unknown());
        }
    }
    Ok(Change {
        address: addr.clone(),
        provider: desired.provider.clone(),
        action,
        reason,
        id: prior.and_then(|p| p.id.clone()),
        // A no-op's attributes are the same before and after: kept once.
        before: prior_attributes
            .filter(|_| action != Action::NoOp)
            .map(|r| r.attributes.into_owned()),
        after: Some(after),
        // A no-op is never applied: the configuration's attributes, kept for apply to
        // resolve again, go now (in a steady fleet plan, a sixth of its memory).
        desired: (action != Action::NoOp).then_some(desired.attributes),
        requires_replace: response.requires_replace,
        sensitive,
        wait_for: Vec::new(),
        dependencies: Vec::new(),
        prevent_destroy: desired.prevent_destroy,
        refreshed: None,
    })
}

/// A provider may carry an input into another planned attribute (a rendered document,
/// a connection string): a planned attribute holding a secret of the resource's
/// configuration ([`DesiredResource::secrets`]) is secret too.
fn mark_derived_secrets(
    desired: &DesiredResource,
    planned: &infraflux_provider::Attributes,
    sensitive: &mut Vec<String>,
) {
    let mut values = crate::vocabulary::SecretStrings::default();
    for secret in &desired.secrets.values {
        values.add_value(secret.expose());
    }
    for (name, value) in planned {
        if !sensitive.contains(name) && values.json_contains_secret(value) {
            sensitive.push(name.clone());
        }
    }
}

fn replace_action(create_before_destroy: bool) -> Action {
    if create_before_destroy {
        Action::CreateThenDelete
    } else {
        Action::DeleteThenCreate
    }
}

#[cfg(test)]
mod tests;
