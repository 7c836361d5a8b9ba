//! The state document of one environment.

use std::collections::BTreeMap;

use infraflux_provider::Attributes;
use serde::{Deserialize, Serialize};

use super::StoredAttributes;
use crate::vocabulary::{MachineRecords, Recorded, ResourceAddr};

/// Bumped when the document's layout changes; older documents are migrated on load
/// (`format`). 2: `machines`. 3: values recorded by reference (`by_reference`), and
/// unrecorded attributes left out. 4: a record's attributes enter the checksum as their
/// own digest (`format`).
pub const FORMAT_VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDocument {
    pub format_version: u32,
    /// Identifies this state's history: a saved plan from another lineage is refused.
    pub lineage: uuid::Uuid,
    /// Incremented on every write.
    pub serial: u64,
    pub environment: String,
    pub resources: BTreeMap<ResourceAddr, ResourceState>,
    /// Every machine's identity (address, Proxmox node, VM ID), recorded when its first
    /// resource is and kept while state holds any of its resources, so that adding or
    /// removing machines never re-addresses another (`graph::machines`).
    #[serde(default, skip_serializing_if = "MachineRecords::is_empty")]
    pub machines: MachineRecords,
    /// What the last successful apply deployed of the promotable configuration (see
    /// `crate::promotion`); the next environment's apply compares against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionRecord>,
}

/// The promotable configuration (everything but environment-specific layers) as applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRecord {
    /// `sha256:<hex>` over `clusters`.
    pub digest: String,
    /// Per cluster: dotted key path → value (secrets masked).
    pub clusters: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    pub applied_at: chrono::DateTime<chrono::Utc>,
    /// The apply ran with `--skip-promotion-check` although the previous environment
    /// had not been applied with this configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_check: Option<String>,
}

impl StateDocument {
    pub fn new(environment: impl Into<String>) -> Self {
        StateDocument {
            format_version: FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4(),
            serial: 0,
            environment: environment.into(),
            resources: BTreeMap::new(),
            machines: MachineRecords::default(),
            promotion: None,
        }
    }
}

/// How the graph and placement read the document.
impl Recorded for StateDocument {
    fn environment(&self) -> &str {
        &self.environment
    }

    fn addresses(&self) -> Vec<&ResourceAddr> {
        self.resources.keys().collect()
    }

    fn contains(&self, address: &ResourceAddr) -> bool {
        self.resources.contains_key(address)
    }

    fn attributes(&self, address: &ResourceAddr) -> Option<Attributes> {
        self.resources.get(address).map(|r| r.attributes.parse())
    }

    fn some_attributes(&self, address: &ResourceAddr, names: &[&str]) -> Option<Attributes> {
        self.resources
            .get(address)
            .map(|r| r.attributes.only(names))
    }

    fn dependencies(&self, address: &ResourceAddr) -> &[ResourceAddr] {
        self.resources
            .get(address)
            .map_or(&[], |r| r.dependencies.as_slice())
    }

    fn machines(&self) -> &MachineRecords {
        &self.machines
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
    /// Held as compact JSON text ([`StoredAttributes`]), parsed by whoever reads it.
    pub attributes: StoredAttributes,
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
