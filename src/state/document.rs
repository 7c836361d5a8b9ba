//! The state document of one environment.

use std::collections::BTreeMap;

use infraflux_provider::Attributes;
use serde::{Deserialize, Serialize};

use crate::model::address::ResourceAddr;

/// Bumped when the document's layout changes; older documents are migrated on load.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDocument {
    pub format_version: u32,
    /// Identifies this state's history: a saved plan from another lineage is refused.
    pub lineage: uuid::Uuid,
    /// Incremented on every write.
    pub serial: u64,
    pub environment: String,
    pub resources: BTreeMap<ResourceAddr, ResourceState>,
}

impl StateDocument {
    pub fn new(environment: impl Into<String>) -> Self {
        StateDocument {
            format_version: FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4(),
            serial: 0,
            environment: environment.into(),
            resources: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    /// Resource type, e.g. `proxmox_vm`.
    pub kind: String,
    /// Provider name, e.g. `proxmox`.
    pub provider: String,
    /// The provider's ID; `None` while a create is pending.
    pub id: Option<String>,
    pub attributes: Attributes,
    /// Names of attributes that are secrets (masked in output, encrypted at rest when a
    /// key is configured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Resources this one depended on when it was last applied (destroy order when the
    /// configuration no longer names them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<ResourceAddr>,
    pub status: ResourceStatus,
}

/// Recorded before a create or delete starts, so an interrupted apply never orphans a
/// resource: the next plan sees the pending record and adopts or cleans up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    Ready,
    PendingCreate,
    PendingDelete,
    /// A create or update failed part-way; the next plan replaces it.
    Tainted,
}
