//! The provider contract: what the InfraFlux engine asks of a provider and what it gets
//! back. One request/response pair per operation, typed, async. No network dependencies:
//! the engine depends on this crate only, the binary wires concrete providers in.
//!
//! ## Values
//! Attributes are JSON objects ([`Attributes`]). A value that is not known until apply
//! (a generated ID, an address handed out by the infrastructure) is the [`unknown`]
//! marker; a reference to another resource's attribute in desired attributes is the
//! [`reference`] marker, which the engine resolves (to a value, or to unknown) before
//! it calls a provider. Providers therefore see only concrete values and unknowns.
//!
//! ## Operations
//! - `validate`: check desired attributes without I/O (diagnostics per attribute);
//! - `read`: refresh many resources at once (a provider lists an endpoint once, not per
//!   resource);
//! - `plan`: prior + desired → planned attributes, which changes force replacement;
//! - `create`, `update`, `delete`: change the world; `import`: adopt an existing object;
//! - `inventory`: hosts and their free capacity, for placement at plan time (optional).
//!
//! ## Clusters
//! [`signal::ClusterSignal`]: a cluster's ready signal and rendered manifests, for
//! `bootstrap`.

mod error;
mod schema;
pub mod signal;
mod value;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::{ErrorKind, HttpContext, ProviderError};
pub use schema::lookup;
pub use schema::{AttributeSchema, ResourceSchema};
pub use value::{
    Attributes, OUTPUTS, Reference, contains_unknown, is_reference, is_unknown, parse_reference,
    reference, reference_target, references_as_unknown, unknown,
};

/// Identifies the resource an operation is about. The address is the engine's canonical
/// string `<env>/<cluster>/<type>.<name>`; providers use it for messages and logs only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub address: String,
    /// Resource type, e.g. `proxmox_vm`.
    pub kind: String,
}

// ---- validate -------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ValidateRequest {
    pub resource: ResourceRef,
    pub desired: Attributes,
}

#[derive(Debug, Clone, Default)]
pub struct ValidateResponse {
    pub diagnostics: Vec<Diagnostic>,
}

/// A provider's finding about desired attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Dotted attribute path the finding is about, when there is one.
    pub attribute: Option<String>,
    pub summary: String,
    /// Ends with what to do about it.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

// ---- read (refresh) ---------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// Every resource of this provider to refresh; providers batch as their API allows.
    pub resources: Vec<ReadItem>,
    /// Read everything in full even when a cheap listing says nothing changed.
    pub deep: bool,
}

#[derive(Debug, Clone)]
pub struct ReadItem {
    pub resource: ResourceRef,
    /// The provider's ID for the object, as recorded in state.
    ///
    /// Empty for a create that was interrupted before its ID was recorded: the provider
    /// looks the object up by its natural key (a VM's name, a secret's name) and, when
    /// it finds it, returns `Found` with the object's ID in the `id` attribute (the
    /// engine moves it out of the attributes); `Gone` when there is none.
    pub id: String,
    /// Attributes as last recorded.
    pub prior: Attributes,
}

#[derive(Debug, Clone, Default)]
pub struct ReadResponse {
    /// One result per requested item, in any order.
    pub results: Vec<ReadResult>,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub address: String,
    pub outcome: ReadOutcome,
}

#[derive(Debug, Clone)]
pub enum ReadOutcome {
    /// The object exists with these attributes.
    Found(Attributes),
    /// The object is confirmed gone (not merely unreachable).
    Gone,
    /// This one object could not be read; the others are still usable.
    Failed(ProviderError),
}

// ---- plan -----------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    pub resource: ResourceRef,
    /// Current attributes, `None` when the resource does not exist yet. Borrowed from
    /// state: a provider reads them, and a copy per resource was a steady fleet plan
    /// copying its whole state once more.
    pub prior: Option<&'a Attributes>,
    /// What the configuration asks for; may contain unknowns.
    pub desired: Attributes,
}

#[derive(Debug, Clone)]
pub struct PlanResponse {
    /// Desired attributes completed by the provider: defaults filled in, computed
    /// attributes copied from prior or marked unknown.
    pub planned: Attributes,
    /// Attribute paths whose change cannot be made in place.
    pub requires_replace: Vec<String>,
    /// Create the replacement before deleting the old object (e.g. a rolling node).
    pub create_before_destroy: bool,
}

// ---- create / update / delete / import ----------------------------------------------

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub resource: ResourceRef,
    /// Planned attributes with every input known (computed ones may be unknown).
    pub planned: Attributes,
    /// The object replaces another one in this run (`--replace`, a forced replacement,
    /// a dependant replaced with its host): what replaces a member of something running
    /// (a node of a cluster) must be back in it before the run goes on.
    pub replacing: bool,
}

#[derive(Debug, Clone)]
pub struct CreateResponse {
    pub id: String,
    /// Final attributes, every one known.
    pub attributes: Attributes,
}

#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub resource: ResourceRef,
    pub id: String,
    pub prior: Attributes,
    pub planned: Attributes,
}

#[derive(Debug, Clone)]
pub struct UpdateResponse {
    pub attributes: Attributes,
}

#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub resource: ResourceRef,
    pub id: String,
    pub prior: Attributes,
    /// Everything in scope goes in this run (`destroy`): steps that only matter to
    /// what stays (a node leaving its cluster gracefully) can be skipped.
    pub teardown: bool,
}

#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub resource: ResourceRef,
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct ImportResponse {
    pub attributes: Attributes,
}

// ---- inventory (placement at plan time) ----------------------------------------------

/// What the engine is about to place or create, so a provider can report the hosts they
/// may go on and what stands in their way (a storage that cannot hold them).
#[derive(Debug, Clone)]
pub struct InventoryRequest {
    /// Resources of one group (e.g. one cluster's VMs and images) not yet in state, with
    /// their desired attributes (references resolved to values or left out).
    pub resources: Vec<InventoryItem>,
}

#[derive(Debug, Clone)]
pub struct InventoryItem {
    pub resource: ResourceRef,
    pub desired: Attributes,
}

/// Hosts that can run the resources, as the infrastructure sees them now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Names the pool of hosts (e.g. the PVE API URL, never a credential), so several
    /// groups placed on the same hosts share one account of what the plan uses.
    pub scope: String,
    pub hosts: Vec<Host>,
    /// Problems found before anything is changed (preflight), per resource address.
    pub problems: Vec<(String, Diagnostic)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub online: bool,
    /// Bytes not in use now.
    pub memory_free: u64,
    pub memory_total: u64,
}

/// A limit on how many operations may run at once for one key (e.g. one create per
/// Proxmox storage, to avoid "can't lock file … got timeout").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConcurrencyKey {
    pub key: String,
    pub limit: usize,
}

/// Changes that run one at a time, in order, and stop at the first failure: a rolling
/// change across the nodes of a cluster (an upgrade), where breaking two nodes at once
/// could break the cluster. Ordered by `rank` (e.g. control planes before workers),
/// then by the plan's order; once one fails, the rest are not started (reported as
/// skipped) and keep their old state, so a re-run resumes where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rollout {
    pub key: String,
    pub rank: u32,
    /// What each step waits for before the next one starts, for the plan to show
    /// (e.g. "back on its Talos version and as healthy as before").
    pub gates: String,
}

/// Which operation is about to run, for [`Provider::concurrency_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name, e.g. `proxmox`; resource types of this provider start with `<name>_`.
    fn name(&self) -> &str;

    /// The resource types this provider manages.
    fn schemas(&self) -> Vec<ResourceSchema>;

    async fn validate(&self, request: ValidateRequest) -> ValidateResponse {
        let _ = request;
        ValidateResponse::default()
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadResponse, ProviderError>;

    /// Default planning: desired attributes as they are, computed attributes carried
    /// over from prior (unknown on create), replacement where the schema says so.
    async fn plan(&self, request: PlanRequest<'_>) -> Result<PlanResponse, ProviderError> {
        let schema = self
            .schemas()
            .into_iter()
            .find(|s| s.kind == request.resource.kind)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::InvalidInput,
                    "plan",
                    &request.resource.address,
                    format!("unknown resource type `{}`", request.resource.kind),
                )
            })?;
        Ok(schema.default_plan(request.prior, request.desired))
    }

    async fn create(&self, request: CreateRequest) -> Result<CreateResponse, ProviderError>;

    async fn update(&self, request: UpdateRequest) -> Result<UpdateResponse, ProviderError>;

    async fn delete(&self, request: DeleteRequest) -> Result<(), ProviderError>;

    async fn import(&self, request: ImportRequest) -> Result<ImportResponse, ProviderError>;

    /// The hosts the given resources may be placed on, and preflight problems; `None`
    /// when this provider places nothing (the default). Called at plan time with a
    /// refresh only; planning without one stays offline.
    async fn inventory(
        &self,
        request: InventoryRequest,
    ) -> Result<Option<Inventory>, ProviderError> {
        let _ = request;
        Ok(None)
    }

    /// The per-key concurrency limit an operation falls under, if any.
    fn concurrency_key(
        &self,
        operation: Operation,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Option<ConcurrencyKey> {
        let _ = (operation, resource, attributes);
        None
    }

    /// The rollout an operation belongs to, if any (see [`Rollout`]). `attributes` are
    /// the planned ones (references resolved; values only apply will know are unknown
    /// markers), or for a delete the recorded ones.
    fn rollout(
        &self,
        operation: Operation,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Option<Rollout> {
        let _ = (operation, resource, attributes);
        None
    }
}
