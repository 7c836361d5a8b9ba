//! Machine identities in step with state: a machine's identity is set where InfraFlux
//! creates its VM ([`record_created`]: the address and node the plan chose, a pinned
//! address included) and kept while state holds any of its resources
//! ([`desired`](super::desired) names a machine's `proxmox_vm` and `talos_machine_config`
//! after it). Nothing else overwrites it: a VM re-addressed or moved outside InfraFlux is
//! drift to report against its identity, not a new identity.
//!
//! State written before identities were recorded (format version 1), or a VM brought in
//! by `import`, has resources but no identity: it is adopted from what the resources
//! hold (the VM's `ipv4`, `node` and `vmid`, else the machine config's `address`), so the
//! first plan after an upgrade finds every machine where it is and changes nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use infraflux_provider::Attributes;
use serde_json::Value;

use crate::vocabulary::{MachineIdentity, MachineRecords, Recorded, split_machine_name};

/// The resource types named after a machine, and the attribute holding its address.
const VM: &str = "proxmox_vm";
const MACHINE_CONFIG: &str = "talos_machine_config";
/// What an identity is made of: a VM's address, node and ID, or a machine config's
/// address.
const VM_READS: &[&str] = &["ipv4", "node", "vmid"];
const CONFIG_READS: &[&str] = &["address"];

/// What state holds of one machine.
#[derive(Default)]
struct Held {
    vm: Option<Attributes>,
    config: Option<Attributes>,
}

/// The identities of the machines `state` holds resources of: those recorded, completed
/// (a VM ID once the VM has one, a node once placed), and those adopted from the
/// resources where none is recorded. Identities of machines with no resource left are
/// dropped: their addresses are free again.
pub fn recorded_machines(state: &dyn Recorded) -> MachineRecords {
    let environment = state.environment();
    let mut held: BTreeMap<(&str, &str), Held> = BTreeMap::new();
    for address in state.addresses() {
        if address.environment != environment {
            continue;
        }
        let key = (address.cluster.as_str(), address.name.as_str());
        // Only what an identity is made of is read.
        match address.kind.as_str() {
            VM => held.entry(key).or_default().vm = state.some_attributes(address, VM_READS),
            MACHINE_CONFIG => {
                held.entry(key).or_default().config = state.some_attributes(address, CONFIG_READS)
            }
            _ => {}
        }
    }
    let mut records = MachineRecords::default();
    for ((cluster, name), held) in held {
        let identity = match state.machines().get(cluster, name) {
            Some(recorded) => Some(complete(recorded.clone(), &held)),
            None => adopt(name, &held),
        };
        if let Some(identity) = identity {
            records.insert(cluster, name, identity);
        }
    }
    records
}

/// Record where InfraFlux creates a machine's VM (`attributes`: the planned ones of
/// the `proxmox_vm` at `resource`): the address and node the plan chose, a pinned
/// address included, become the machine's identity. Other resources leave it alone.
pub fn record_created(
    machines: &mut MachineRecords,
    resource: &crate::vocabulary::ResourceAddr,
    attributes: &Attributes,
) {
    if resource.kind != VM {
        return;
    }
    let held = Held {
        vm: Some(
            VM_READS
                .iter()
                .filter_map(|name| Some((name.to_string(), attributes.get(*name)?.clone())))
                .collect(),
        ),
        config: None,
    };
    if let Some(mut identity) = adopt(&resource.name, &held) {
        // Known once created (`complete` fills it in then).
        identity.vmid = None;
        machines.insert(&resource.cluster, &resource.name, identity);
    }
}

/// Fill in what the record could not know when it was made.
fn complete(mut identity: MachineIdentity, held: &Held) -> MachineIdentity {
    if let Some(vm) = &held.vm {
        if identity.node.is_none() {
            identity.node = text(vm, "node");
        }
        // The VM's own ID: a replaced VM has a new one.
        if let Some(vmid) = vmid(vm) {
            identity.vmid = Some(vmid);
        }
    }
    identity
}

/// An identity from the resources' attributes; `None` when no address can be read.
fn adopt(name: &str, held: &Held) -> Option<MachineIdentity> {
    let (pool, _) = split_machine_name(name)?;
    let address = held
        .vm
        .as_ref()
        .and_then(|vm| address(vm, "ipv4"))
        .or_else(|| {
            held.config
                .as_ref()
                .and_then(|config| address(config, "address"))
        })?;
    Some(MachineIdentity {
        pool: pool.to_string(),
        address,
        node: held.vm.as_ref().and_then(|vm| text(vm, "node")),
        vmid: held.vm.as_ref().and_then(vmid),
    })
}

fn text(attributes: &Attributes, key: &str) -> Option<String> {
    attributes.get(key)?.as_str().map(str::to_string)
}

/// `10.0.0.10/24` (or a bare `10.0.0.10`) → `10.0.0.10`.
fn address(attributes: &Attributes, key: &str) -> Option<Ipv4Addr> {
    let text = attributes.get(key)?.as_str()?;
    text.split('/').next()?.parse().ok()
}

fn vmid(attributes: &Attributes) -> Option<u64> {
    match attributes.get("vmid")? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ResourceState, ResourceStatus, StateDocument};
    use crate::vocabulary::ResourceAddr;
    use serde_json::json;

    fn record(state: &mut StateDocument, kind: &str, name: &str, attributes: Value) {
        let Value::Object(attributes) = attributes else {
            unreachable!()
        };
        state.resources.insert(
            ResourceAddr::new("dev", "workload", kind, name),
            ResourceState {
                kind: kind.into(),
                provider: "test".into(),
                id: Some("1".into()),
                attributes: attributes.into(),
                sensitive: vec![],
                dependencies: vec![],
                status: ResourceStatus::Ready,
            },
        );
    }

    fn identity(
        pool: &str,
        address: &str,
        node: Option<&str>,
        vmid: Option<u64>,
    ) -> MachineIdentity {
        MachineIdentity {
            pool: pool.into(),
            address: address.parse().unwrap(),
            node: node.map(str::to_string),
            vmid,
        }
    }

    #[test]
    fn identities_are_adopted_from_vms_and_machine_configs() {
        let mut state = StateDocument::new("dev");
        record(
            &mut state,
            VM,
            "cp-1",
            json!({"ipv4": "10.10.0.10/24", "node": "pve2", "vmid": 1004}),
        );
        record(
            &mut state,
            MACHINE_CONFIG,
            "cp-1",
            json!({"address": "10.10.0.10/24"}),
        );
        // A machine whose VM is gone (being replaced): its config still says where it is.
        record(
            &mut state,
            MACHINE_CONFIG,
            "general-1",
            json!({"address": "10.10.0.11/24"}),
        );
        record(&mut state, "talos_secrets", "cluster", json!({}));
        let records = recorded_machines(&state);
        assert_eq!(
            records.get("workload", "cp-1"),
            Some(&identity("cp", "10.10.0.10", Some("pve2"), Some(1004)))
        );
        assert_eq!(
            records.get("workload", "general-1"),
            Some(&identity("general", "10.10.0.11", None, None))
        );
        assert_eq!(records.iter().count(), 2);
    }

    #[test]
    fn a_vm_infraflux_creates_sets_its_machines_identity() {
        let mut machines = MachineRecords::default();
        machines.insert(
            "workload",
            "general-1",
            identity("general", "10.10.0.11", Some("pve2"), Some(1001)),
        );
        let Value::Object(planned) =
            json!({"ipv4": "10.10.0.40/24", "node": "pve3", "vmid": "(known after apply)"})
        else {
            unreachable!()
        };
        let vm = ResourceAddr::new("dev", "workload", VM, "general-1");
        record_created(&mut machines, &vm, &planned);
        assert_eq!(
            machines.get("workload", "general-1"),
            Some(&identity("general", "10.10.0.40", Some("pve3"), None))
        );
        let config = ResourceAddr::new("dev", "workload", MACHINE_CONFIG, "cp-1");
        record_created(&mut machines, &config, &planned);
        assert_eq!(machines.get("workload", "cp-1"), None);
    }

    #[test]
    fn recorded_identities_win_over_drifted_attributes_and_go_with_their_last_resource() {
        let mut state = StateDocument::new("dev");
        // Re-addressed outside InfraFlux, and the VM replaced (a new VMID).
        record(
            &mut state,
            VM,
            "cp-1",
            json!({"ipv4": "10.10.0.99/24", "node": "pve3", "vmid": 1009}),
        );
        state.machines.insert(
            "workload",
            "cp-1",
            identity("cp", "10.10.0.10", Some("pve1"), Some(1000)),
        );
        // Recorded, but nothing of it is left.
        state.machines.insert(
            "workload",
            "general-2",
            identity("general", "10.10.0.12", Some("pve2"), Some(1002)),
        );
        let records = recorded_machines(&state);
        assert_eq!(
            records.get("workload", "cp-1"),
            Some(&identity("cp", "10.10.0.10", Some("pve1"), Some(1009)))
        );
        assert_eq!(records.get("workload", "general-2"), None);
    }
}
