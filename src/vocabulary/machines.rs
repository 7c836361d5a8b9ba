//! Machine identities: what a machine was given when it was first allocated — its
//! address and Proxmox node (its name is the key, its VM ID is the one Proxmox gave its
//! VM) — as state records them and resolution reads them back. A machine keeps its
//! identity for as long as state holds anything of it, whatever else the configuration
//! adds or removes, so scaling one pool never moves another pool's machines.
//!
//! Written by the apply (`graph::machines` keeps the record in step with the resources
//! of each machine), read by the operation layer and handed to `model` resolution, which
//! neither depends on state nor on the graph: this plain type is all they share.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// One machine's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineIdentity {
    /// The pool it belongs to (`cp` for control planes, else a worker pool's name).
    pub pool: String,
    /// Its node address, first allocated from the cluster's node range or pinned.
    pub address: Ipv4Addr,
    /// The Proxmox node its VM was first placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its VM's ID, once Proxmox gave it one (the VM's own: a replaced VM gets a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u64>,
}

/// The identities of one environment's machines: cluster → machine name → identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MachineRecords {
    clusters: BTreeMap<String, BTreeMap<String, MachineIdentity>>,
}

impl MachineRecords {
    pub fn is_empty(&self) -> bool {
        self.clusters.values().all(BTreeMap::is_empty)
    }

    /// The machines of `cluster`, by name.
    pub fn cluster(&self, cluster: &str) -> Option<&BTreeMap<String, MachineIdentity>> {
        self.clusters.get(cluster)
    }

    pub fn get(&self, cluster: &str, machine: &str) -> Option<&MachineIdentity> {
        self.clusters.get(cluster)?.get(machine)
    }

    pub fn insert(&mut self, cluster: &str, machine: &str, identity: MachineIdentity) {
        self.clusters
            .entry(cluster.to_string())
            .or_default()
            .insert(machine.to_string(), identity);
    }

    /// Every identity as (cluster, machine, identity), in that order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &MachineIdentity)> {
        self.clusters.iter().flat_map(|(cluster, machines)| {
            machines
                .iter()
                .map(move |(name, identity)| (cluster.as_str(), name.as_str(), identity))
        })
    }
}

/// The pool and index of a machine name: `general-2` → (`general`, 2).
pub fn split_machine_name(name: &str) -> Option<(&str, u32)> {
    let (pool, index) = name.rsplit_once('-')?;
    if pool.is_empty() || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((pool, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_as_clusters_of_machines() {
        let mut records = MachineRecords::default();
        assert!(records.is_empty());
        records.insert(
            "workload",
            "cp-1",
            MachineIdentity {
                pool: "cp".into(),
                address: Ipv4Addr::new(10, 10, 0, 10),
                node: Some("pve1".into()),
                vmid: None,
            },
        );
        let json = serde_json::to_value(&records).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"workload": {"cp-1": {"pool": "cp", "address": "10.10.0.10", "node": "pve1"}}})
        );
        assert_eq!(
            serde_json::from_value::<MachineRecords>(json).unwrap(),
            records
        );
        assert_eq!(
            records.get("workload", "cp-1").unwrap().address,
            Ipv4Addr::new(10, 10, 0, 10)
        );
    }

    #[test]
    fn machine_names_are_a_pool_and_an_index() {
        assert_eq!(split_machine_name("general-12"), Some(("general", 12)));
        assert_eq!(split_machine_name("gpu-a-1"), Some(("gpu-a", 1)));
        assert_eq!(split_machine_name("cp-"), None);
        assert_eq!(split_machine_name("cp"), None);
        assert_eq!(split_machine_name("-1"), None);
        assert_eq!(split_machine_name("cp-1a"), None);
    }
}
