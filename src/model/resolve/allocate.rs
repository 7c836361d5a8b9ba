//! Machines and their addresses. A machine keeps the identity state records for it
//! (its address and Proxmox node), so adding or removing machines in one pool never
//! moves another machine:
//!
//! 1. **Membership.** A pool's machines are the ones state records for it, lowest index
//!    first, up to its `count`; the rest are leaving (as are those of a removed pool).
//!    Missing ones are added as `<pool>-<n>` with the lowest `n` no recorded machine
//!    uses. Without records this is `<pool>-1` … `<pool>-<count>`.
//! 2. **Pins** (`machines: {<name>: {address, node}}` of a pool) must name a machine of
//!    the pool, an address of the node network that no other machine holds, and one
//!    of `proxmox.nodes`. A pinned address wins over the recorded one (the VM is then
//!    replaced: the plan shows it).
//! 3. **Addresses.** A recorded machine keeps its address; a new one takes the lowest
//!    address from `network.nodes.start` that no recorded machine (leaving ones
//!    included: their VMs still hold them until the removal is applied) and no pin
//!    holds.
//! 4. **Checks** on the result: the node range (from `start` to the highest address
//!    taken from it) fits the network and holds neither the VIP nor the gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// A host name label's limit (RFC 1123); Kubernetes node names and Talos hostnames are
/// held to it.
const MAX_HOSTNAME: usize = 63;

use super::{Resolver, last_host, usable_in};
use crate::model::{
    CONTROL_PLANE_POOL, Cluster, LeavingMachine, Machine, MachinePin, Network, NodePool, NodeRange,
    NodeRole,
};
use crate::vocabulary::{MachineIdentity, split_machine_name};

/// What allocation works from.
pub(super) struct Request<'a> {
    pub environment: &'a str,
    pub cluster: &'a str,
    pub control_plane: &'a NodePool,
    pub workers: &'a [NodePool],
    pub network: &'a Network,
    /// `None` when `proxmox.nodes` is invalid (pinned nodes are then not checked).
    pub proxmox_nodes: Option<&'a [String]>,
    /// What state records of this cluster's machines, by name.
    pub recorded: &'a BTreeMap<String, MachineIdentity>,
}

/// The machines of a cluster.
pub(super) struct Allocation {
    /// Control planes first, then each worker pool in configured order; by index.
    pub nodes: Vec<Machine>,
    pub leaving: Vec<LeavingMachine>,
    pub range: NodeRange,
}

/// One machine of a pool, before its address is known.
struct Member<'a> {
    name: String,
    pool: &'a NodePool,
    /// The pool's key path (`control_plane`, `workers[0]`).
    path: String,
    recorded: Option<&'a MachineIdentity>,
    pin: Option<&'a MachinePin>,
}

fn role_of(pool: &str) -> NodeRole {
    if pool == CONTROL_PLANE_POOL {
        NodeRole::ControlPlane
    } else {
        NodeRole::Worker
    }
}

/// The index of a machine name, for ordering (names that are not `<pool>-<n>` last).
fn index_of(name: &str) -> u32 {
    split_machine_name(name).map_or(u32::MAX, |(_, index)| index)
}

/// The cluster's machines (`None` when a problem was reported).
pub(super) fn allocate(r: &mut Resolver, request: &Request) -> Option<Allocation> {
    let Request {
        environment,
        cluster,
        control_plane,
        workers,
        network,
        proxmox_nodes,
        recorded,
    } = request;
    let pools: Vec<(&NodePool, String)> = std::iter::once((*control_plane, "control_plane".into()))
        .chain(
            workers
                .iter()
                .enumerate()
                .map(|(i, pool)| (pool, format!("workers[{i}]"))),
        )
        .collect();

    // 1. Membership.
    let mut members: Vec<Member> = Vec::new();
    let mut leaving: Vec<LeavingMachine> = Vec::new();
    for (pool, path) in &pools {
        let mut known: Vec<(&String, &MachineIdentity)> = recorded
            .iter()
            .filter(|(_, identity)| identity.pool == pool.name)
            .collect();
        known.sort_by_key(|(name, _)| (index_of(name), name.as_str()));
        let count = pool.count as usize;
        let mut names: Vec<(String, Option<&MachineIdentity>)> = Vec::new();
        for (position, (name, identity)) in known.into_iter().enumerate() {
            if position < count {
                names.push((name.clone(), Some(identity)));
            } else {
                leaving.push(leaving_machine(name, identity));
            }
        }
        let mut next = 1u32;
        while names.len() < count {
            let name = format!("{}-{next}", pool.name);
            next += 1;
            if !recorded.contains_key(&name) {
                names.push((name, None));
            }
        }
        names.sort_by_key(|(name, _)| index_of(name));
        for (name, identity) in names {
            members.push(Member {
                pin: pool.machines.get(&name),
                name,
                pool,
                path: path.clone(),
                recorded: identity,
            });
        }
    }
    for (name, identity) in recorded.iter() {
        if !pools.iter().any(|(pool, _)| pool.name == identity.pool) {
            leaving.push(leaving_machine(name, identity));
        }
    }
    leaving.sort_by(|a, b| (&a.pool, index_of(&a.name)).cmp(&(&b.pool, index_of(&b.name))));

    // 2. Pins.
    let mut ok = check_pins(r, &pools, &members, request);

    // 3. Addresses.
    let cidr = network.cidr;
    let start = network.node_range.first;
    if !usable_in(&cidr, start) {
        // Reported with the network: there is nothing to allocate from.
        return None;
    }
    let mut taken: BTreeSet<Ipv4Addr> = recorded.values().map(|i| i.address).collect();
    taken.extend(members.iter().filter_map(|m| m.pin?.address));
    let mut cursor = Some(start);
    let mut machines = Vec::with_capacity(members.len());
    // The highest address taken from the range (pins are outside it).
    let mut highest = start;
    let mut fits = true;
    for member in &members {
        let pinned = member.pin.and_then(|pin| pin.address);
        let address = match (pinned, member.recorded) {
            (Some(address), _) => address,
            (None, Some(identity)) => identity.address,
            (None, None) => match next_free(&mut cursor, &taken, &cidr) {
                Some(address) => {
                    taken.insert(address);
                    address
                }
                None => {
                    fits = false;
                    continue;
                }
            },
        };
        if pinned.is_none() && address >= start && usable_in(&cidr, address) {
            highest = highest.max(address);
        }
        let node = member.pin.and_then(|pin| pin.node.clone()).or_else(|| {
            member
                .recorded
                .and_then(|identity| identity.node.clone())
                .filter(|node| proxmox_nodes.is_some_and(|nodes| nodes.contains(node)))
        });
        machines.push(Machine {
            hostname: format!("{environment}-{cluster}-{}", member.name),
            name: member.name.clone(),
            role: member.pool.role,
            pool: member.pool.name.clone(),
            address,
            node,
            recorded: member.recorded.is_some(),
            cpu: member.pool.cpu,
            memory: member.pool.memory,
            disk: member.pool.disk,
        });
    }
    // A machine's hostname is its node's name in Kubernetes and Talos: a DNS label.
    let mut reported = BTreeSet::new();
    for member in &members {
        let hostname = format!("{environment}-{cluster}-{}", member.name);
        if hostname.len() > MAX_HOSTNAME && reported.insert(member.path.clone()) {
            // A worker pool's name; the control plane's is fixed (`cp`).
            let at = match member.pool.role {
                NodeRole::Worker => format!("{}.name", member.path),
                NodeRole::ControlPlane => member.path.clone(),
            };
            r.invalid(
                &at,
                format!(
                    "the hostname `{hostname}` is {} characters: a host name is at most {MAX_HOSTNAME}",
                    hostname.len()
                ),
                "too long a hostname",
                "hostnames are `<environment>-<cluster>-<pool>-<n>`: shorten the pool, cluster or environment name",
            );
            ok = false;
        }
    }
    for machine in &leaving {
        if machine.address >= start && usable_in(&cidr, machine.address) {
            highest = highest.max(machine.address);
        }
    }
    if !fits {
        r.invalid(
            "network.nodes.start",
            format!(
                "{} nodes starting at {start} do not fit in {cidr}",
                members.len()
            ),
            "the node range runs past the network",
            &format!(
                "start lower (the last usable address is {}) or use a larger network",
                last_host(&cidr)
            ),
        );
        return None;
    }
    let range = NodeRange {
        first: start,
        count: u32::from(highest) - u32::from(start) + 1,
    };

    // 4. Checks.
    ok &= check_range(r, network, &range, &members, &machines, &leaving);
    ok.then_some(Allocation {
        nodes: machines,
        leaving,
        range,
    })
}

fn leaving_machine(name: &str, identity: &MachineIdentity) -> LeavingMachine {
    LeavingMachine {
        name: name.to_string(),
        pool: identity.pool.clone(),
        role: role_of(&identity.pool),
        address: identity.address,
    }
}

/// The lowest usable address from `cursor` on that is not taken; `None` once the network
/// is exhausted.
fn next_free(
    cursor: &mut Option<Ipv4Addr>,
    taken: &BTreeSet<Ipv4Addr>,
    cidr: &ipnet::Ipv4Net,
) -> Option<Ipv4Addr> {
    loop {
        let candidate = (*cursor)?;
        if !usable_in(cidr, candidate) {
            return None;
        }
        *cursor = u32::from(candidate).checked_add(1).map(Ipv4Addr::from);
        if !taken.contains(&candidate) {
            return Some(candidate);
        }
    }
}

/// Every pin names a machine of its pool, a known node and a free address of the node
/// network. Returns whether all do.
fn check_pins(
    r: &mut Resolver,
    pools: &[(&NodePool, String)],
    members: &[Member],
    request: &Request,
) -> bool {
    let network = request.network;
    let mut ok = true;
    let mut pinned: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for (pool, path) in pools {
        for (name, pin) in &pool.machines {
            let at = format!("{path}.machines.{name}");
            if !members
                .iter()
                .any(|m| m.name == *name && m.pool.name == pool.name)
            {
                let names: Vec<&str> = members
                    .iter()
                    .filter(|m| m.pool.name == pool.name)
                    .map(|m| m.name.as_str())
                    .collect();
                r.invalid(
                    &at,
                    format!(
                        "`{name}` is not a machine of pool `{}`, which has {} ({})",
                        pool.name,
                        names.len(),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                    "no such machine",
                    "pin one of the pool's machines, or raise its `count`",
                );
                ok = false;
                continue;
            }
            if let (Some(node), Some(nodes)) = (&pin.node, request.proxmox_nodes)
                && !nodes.contains(node)
            {
                r.invalid(
                    &format!("{at}.node"),
                    format!("`{name}` is pinned to Proxmox node `{node}`, which is not in `proxmox.nodes`"),
                    "not one of `proxmox.nodes`",
                    &format!(
                        "pin one of {}, or add `{node}` to `proxmox.nodes`",
                        nodes.join(", ")
                    ),
                );
                ok = false;
            }
            let Some(address) = pin.address else {
                continue;
            };
            let address_path = format!("{at}.address");
            let holder = request
                .recorded
                .iter()
                .find(|(other, identity)| *other != name && identity.address == address);
            let problem = if !usable_in(&network.cidr, address) {
                Some((
                    format!(
                        "`{address}` pinned for `{name}` is outside the node network {}",
                        network.cidr
                    ),
                    "not a usable address of the node network".to_string(),
                    format!("pin an address of {}", network.cidr),
                ))
            } else if address == network.vip || address == network.gateway {
                let what = if address == network.vip {
                    "the VIP"
                } else {
                    "the gateway"
                };
                Some((
                    format!("`{address}` pinned for `{name}` is {what}"),
                    format!("{what}'s address"),
                    "pin another address".to_string(),
                ))
            } else if let Some(other) = pinned.insert(address, name) {
                Some((
                    format!("`{address}` is pinned for both `{other}` and `{name}`"),
                    format!("also pinned for `{other}`"),
                    "give each machine its own address".to_string(),
                ))
            } else if let Some((other, _)) = holder {
                Some((
                    format!("`{address}` pinned for `{name}` is the address of `{other}`"),
                    format!("`{other}` holds it (recorded in state)"),
                    format!(
                        "pin a free address: `{other}` keeps its address while state holds it (for a machine being removed, until the removal is applied)"
                    ),
                ))
            } else {
                None
            };
            if let Some((message, label, help)) = problem {
                r.invalid(&address_path, message, &label, &help);
                ok = false;
            }
        }
    }
    ok
}

/// The node range holds neither the VIP nor the gateway; no machine outside it has
/// either address or an address outside the network.
fn check_range(
    r: &mut Resolver,
    network: &Network,
    range: &NodeRange,
    members: &[Member],
    machines: &[Machine],
    leaving: &[LeavingMachine],
) -> bool {
    // The range runs from `start` to the highest address of the network taken from it:
    // it fits the network.
    let mut ok = true;
    if range.contains(network.vip) {
        r.invalid(
            "network.vip",
            format!("the VIP {} is inside the node range {range}", network.vip),
            "a node will be given this address",
            &format!("move the VIP out of {range}, e.g. below `network.nodes.start`"),
        );
        ok = false;
    }
    if range.contains(network.gateway) {
        r.invalid(
            "network.nodes.gateway",
            format!(
                "the gateway {} is inside the node range {range}",
                network.gateway
            ),
            "a node will be given this address",
            "start the node range after the gateway",
        );
        ok = false;
    }
    // Recorded addresses outside the range (pins are checked as pins).
    let outside = machines
        .iter()
        .zip(members)
        .filter(|(_, member)| member.pin.and_then(|p| p.address).is_none())
        .map(|(machine, member)| (machine.name.as_str(), machine.address, member.path.as_str()))
        .chain(leaving.iter().map(|m| (m.name.as_str(), m.address, "")))
        .filter(|(_, address, _)| !range.contains(*address));
    for (name, address, path) in outside {
        let (key, what) = if address == network.vip {
            ("network.vip", "the VIP")
        } else if address == network.gateway {
            ("network.nodes.gateway", "the gateway")
        } else if !usable_in(&network.cidr, address) {
            ("network.nodes.cidr", "")
        } else {
            continue;
        };
        let pin = if path.is_empty() {
            "remove the machine first".to_string()
        } else {
            format!(
                "pin a new address for it (`{path}.machines.{name}.address`), which replaces its VM"
            )
        };
        let (message, label) = if what.is_empty() {
            (
                format!(
                    "machine `{name}` has the address {address} (recorded in state), outside the node network {}",
                    network.cidr
                ),
                "does not hold the machine's address".to_string(),
            )
        } else {
            (
                format!("{what} {address} is the address of machine `{name}` (recorded in state)"),
                format!("machine `{name}` holds this address"),
            )
        };
        r.invalid(
            key,
            message,
            &label,
            &format!("a machine keeps its address: change this back, or {pin}"),
        );
        ok = false;
    }
    ok
}

/// The addresses of `cluster`'s machines outside its node range, each with the key
/// path to report an overlap at (its pin, else the range's start).
pub(super) fn addresses_outside(cluster: &Cluster) -> Vec<(Ipv4Addr, String)> {
    let range = cluster.network.node_range;
    let pools = std::iter::once((&cluster.control_plane, "control_plane".to_string())).chain(
        cluster
            .workers
            .iter()
            .enumerate()
            .map(|(i, pool)| (pool, format!("workers[{i}]"))),
    );
    let mut pins: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for (pool, path) in pools {
        for (name, pin) in &pool.machines {
            if let Some(address) = pin.address {
                pins.insert(address, format!("{path}.machines.{name}.address"));
            }
        }
    }
    cluster
        .nodes
        .iter()
        .map(|m| m.address)
        .chain(cluster.leaving.iter().map(|m| m.address))
        .filter(|address| !range.contains(*address))
        .map(|address| {
            let path = pins
                .get(&address)
                .cloned()
                .unwrap_or_else(|| "network.nodes.start".to_string());
            (address, path)
        })
        .collect()
}
