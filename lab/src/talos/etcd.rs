//! etcd across fake nodes: one member list per cluster, with etcd's own quorum rules.
//!
//! A cluster's first member is the control plane `Bootstrap` ran on. Every other
//! control plane of the cluster joins once the cluster is bootstrapped and the node is
//! up and past its not-ready window (as a real one's etcd joins by discovery); a member
//! is *started* while its node is up and ready. Removing a member follows etcd's
//! strict reconfiguration check (`mayRemoveMember`/`IsReadyToRemoveVotingMember`): the
//! members left must have a started quorum of their own, so the last member can never
//! be removed and neither can a healthy one while another is down in a cluster of
//! three. Nothing is answered without a leader (a started quorum of all members).
//!
//! What leaves a member's node out: `EtcdLeaveCluster` and a graceful reset stop its
//! etcd and remove its data (it joins again after its next reboot, if still
//! configured); a member removed by id from another node keeps stale data and stays
//! out until the node is wiped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::Shared;

/// One node's own etcd, as far as the cluster is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LocalEtcd {
    /// No data: joins (or is bootstrapped) when it can.
    Fresh,
    /// A member with this id.
    Member(u64),
    /// Left the cluster (data removed, etcd stopped) until the next reboot.
    Stopped,
    /// Removed by another node while keeping its data: stays out until wiped.
    Removed,
}

/// What the registry needs to know about a node, read under the node's own lock.
pub(super) struct NodeView {
    pub(super) cluster: Option<String>,
    pub(super) control_plane: bool,
    pub(super) hostname: String,
    pub(super) ip: IpAddr,
    /// Up (not rebooting, not halted) and past its not-ready window.
    pub(super) ready: bool,
    pub(super) local: LocalEtcd,
}

/// A member as `EtcdMemberList` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: u64,
    pub hostname: String,
    pub ip: IpAddr,
    pub started: bool,
}

/// Why etcd refused a member removal (the real error texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RemoveRefusal {
    NotFound,
    NotEnoughStarted,
    NoLeader,
}

impl RemoveRefusal {
    pub(super) fn etcd_error(self) -> &'static str {
        match self {
            RemoveRefusal::NotFound => "etcdserver: member not found",
            RemoveRefusal::NotEnoughStarted => {
                "etcdserver: re-configuration failed due to not enough started members"
            }
            RemoveRefusal::NoLeader => "etcdserver: no leader",
        }
    }
}

struct Member {
    id: u64,
    hostname: String,
    ip: IpAddr,
    node: Weak<Shared>,
}

#[derive(Default)]
struct Cluster {
    members: Vec<Member>,
    /// Every node configured as a control plane of this cluster.
    control_planes: Vec<Weak<Shared>>,
}

/// The etcd clusters of a set of fake nodes (see the module docs), keyed by the
/// cluster's Talos API CA. Clones share the clusters.
#[derive(Clone, Default)]
pub struct Etcd(Arc<Mutex<HashMap<String, Cluster>>>);

/// A started quorum of `started` out of `voters`.
fn quorum(voters: usize, started: usize) -> bool {
    started > voters / 2
}

fn new_member_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}

impl Etcd {
    pub fn new() -> Self {
        Etcd::default()
    }

    fn clusters(&self) -> MutexGuard<'_, HashMap<String, Cluster>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A control plane was configured for `cluster`.
    pub(super) fn register(&self, cluster: &str, node: &Arc<Shared>) {
        let mut clusters = self.clusters();
        let entry = clusters.entry(cluster.to_string()).or_default();
        entry.control_planes.retain(|n| n.strong_count() > 0);
        if !entry
            .control_planes
            .iter()
            .any(|n| std::ptr::eq(n.as_ptr(), Arc::as_ptr(node)))
        {
            entry.control_planes.push(Arc::downgrade(node));
        }
    }

    /// Bootstrap `cluster` on `node`: its first member. `None` when etcd has data
    /// there already (the node is, or was, a member: `AlreadyExists`).
    pub(super) fn bootstrap(&self, cluster: &str, node: &Arc<Shared>) -> Option<u64> {
        let mut clusters = self.clusters();
        let entry = clusters.entry(cluster.to_string()).or_default();
        reconcile(cluster, entry);
        let view = node.etcd_view();
        if view.local != LocalEtcd::Fresh || !entry.members.is_empty() {
            return None;
        }
        let id = new_member_id();
        entry.members.push(Member {
            id,
            hostname: view.hostname,
            ip: view.ip,
            node: Arc::downgrade(node),
        });
        node.set_local_etcd(LocalEtcd::Member(id));
        Some(id)
    }

    /// Every member with whether it is started; empty before bootstrap.
    pub(super) fn members(&self, cluster: &str) -> Vec<MemberStatus> {
        let mut clusters = self.clusters();
        let Some(entry) = clusters.get_mut(cluster) else {
            return Vec::new();
        };
        reconcile(cluster, entry);
        statuses(cluster, entry)
    }

    /// Remove member `id` under etcd's strict reconfiguration check; on success the
    /// removed node's etcd is `after` (stopped by a leave, or removed with stale data).
    pub(super) fn remove(
        &self,
        cluster: &str,
        id: u64,
        after: LocalEtcd,
    ) -> Result<(), RemoveRefusal> {
        let mut clusters = self.clusters();
        let Some(entry) = clusters.get_mut(cluster) else {
            return Err(RemoveRefusal::NotFound);
        };
        reconcile(cluster, entry);
        let members = statuses(cluster, entry);
        let started = members.iter().filter(|m| m.started).count();
        if !quorum(members.len(), started) {
            return Err(RemoveRefusal::NoLeader);
        }
        if !members.iter().any(|m| m.id == id) {
            return Err(RemoveRefusal::NotFound);
        }
        let others: Vec<&MemberStatus> = members.iter().filter(|m| m.id != id).collect();
        let others_started = others.iter().filter(|m| m.started).count();
        if !quorum(others.len(), others_started) {
            return Err(RemoveRefusal::NotEnoughStarted);
        }
        let position = entry.members.iter().position(|m| m.id == id);
        if let Some(member) = position.map(|p| entry.members.remove(p))
            && let Some(node) = member.node.upgrade()
            && node.etcd_view().local == LocalEtcd::Member(id)
        {
            node.set_local_etcd(after);
        }
        Ok(())
    }
}

/// Whether `member` is started: its node is alive, up, ready, in this cluster, and its
/// own etcd is this member.
fn started(cluster: &str, member: &Member) -> bool {
    member.node.upgrade().is_some_and(|node| {
        let view = node.etcd_view();
        view.ready
            && view.cluster.as_deref() == Some(cluster)
            && view.local == LocalEtcd::Member(member.id)
    })
}

fn statuses(cluster: &str, entry: &Cluster) -> Vec<MemberStatus> {
    entry
        .members
        .iter()
        .map(|m| MemberStatus {
            id: m.id,
            hostname: m.hostname.clone(),
            ip: m.ip,
            started: started(cluster, m),
        })
        .collect()
}

/// Control planes that can join do: the cluster is bootstrapped, the node is up and
/// ready, still of this cluster, with no etcd data.
fn reconcile(cluster: &str, entry: &mut Cluster) {
    entry.control_planes.retain(|n| n.strong_count() > 0);
    if entry.members.is_empty() {
        return;
    }
    for node in entry.control_planes.iter().filter_map(Weak::upgrade) {
        let view = node.etcd_view();
        if view.ready
            && view.control_plane
            && view.cluster.as_deref() == Some(cluster)
            && view.local == LocalEtcd::Fresh
        {
            let id = new_member_id();
            entry.members.push(Member {
                id,
                hostname: view.hostname,
                ip: view.ip,
                node: Arc::downgrade(&node),
            });
            node.set_local_etcd(LocalEtcd::Member(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quorum;

    #[test]
    fn quorum_is_a_strict_majority() {
        assert!(quorum(1, 1));
        assert!(!quorum(1, 0));
        assert!(!quorum(2, 1));
        assert!(quorum(3, 2));
        assert!(!quorum(4, 2));
        // The members left after removing the last one: none, so never a quorum.
        assert!(!quorum(0, 0));
    }
}
