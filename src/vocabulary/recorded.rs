//! What state records, as the stages before it (the graph, placement) ask for it: they
//! read recorded resources through [`Recorded`] and never depend on the state module,
//! whose document implements it (`state::StateDocument`).

use infraflux_provider::Attributes;

use super::address::ResourceAddr;
use super::machines::MachineRecords;

/// One environment's recorded resources.
pub trait Recorded {
    /// The environment the record is of.
    fn environment(&self) -> &str;

    /// Every recorded resource's address, in address order.
    fn addresses(&self) -> Vec<&ResourceAddr>;

    /// Whether `address` is recorded.
    fn contains(&self, address: &ResourceAddr) -> bool;

    /// The recorded attributes of `address` (`None`: not recorded), read anew.
    fn attributes(&self, address: &ResourceAddr) -> Option<Attributes>;

    /// Only the attributes `names` of `address` (`None`: not recorded): the others are
    /// not read at all.
    fn some_attributes(&self, address: &ResourceAddr, names: &[&str]) -> Option<Attributes>;

    /// What `address` depended on when it was last applied (empty when not recorded).
    fn dependencies(&self, address: &ResourceAddr) -> &[ResourceAddr];

    /// The machine identities recorded so far (`graph::machines` completes them from
    /// the resources for state written before identities were recorded).
    fn machines(&self) -> &MachineRecords;
}
