//! `ha-workloads`, `etcd-quorum`, `control-plane-spread`: staging and prod survive the
//! loss of a node. `control-plane-scale-in`: no plan removes so many control planes at
//! once that etcd loses quorum.

use super::Finding;
use crate::diag::Severity;
use crate::model::{Cluster, NodeRole};

fn is_ha_environment(environment: &str) -> bool {
    matches!(environment, "staging" | "prod")
}

pub(crate) fn check<'a>(cluster: &'a Cluster, findings: &mut Vec<Finding<'a>>) {
    let ha = is_ha_environment(&cluster.environment);
    let workloads = &cluster.workloads;
    if ha && workloads.replicas < 3 {
        findings.push(Finding {
            rule: "ha-workloads",
            severity: Severity::Error,
            cluster,
            path: "workloads.replicas",
            message: format!(
                "{} runs {} workload replica(s)",
                cluster.environment, workloads.replicas
            ),
            label: "fewer than 3".into(),
            help: "set `workloads.replicas: 3` or more".into(),
        });
    }
    if ha && !workloads.anti_affinity {
        findings.push(Finding {
            rule: "ha-workloads",
            severity: Severity::Error,
            cluster,
            path: "workloads.anti_affinity",
            message: format!(
                "{} workloads are not spread over nodes",
                cluster.environment
            ),
            label: "anti-affinity off".into(),
            help: "set `workloads.anti_affinity: true`".into(),
        });
    }
    let count = cluster.control_plane.count;
    if ha && (count < 3 || count.is_multiple_of(2)) {
        findings.push(Finding {
            rule: "etcd-quorum",
            severity: Severity::Error,
            cluster,
            path: "control_plane.count",
            message: format!(
                "{count} control plane(s) cannot keep etcd quorum through a node failure"
            ),
            label: "needs an odd count ≥ 3".into(),
            help: "set `control_plane.count: 3` (or 5)".into(),
        });
    } else if !ha && count > 1 && count.is_multiple_of(2) {
        findings.push(Finding {
            rule: "etcd-quorum",
            severity: Severity::Warning,
            cluster,
            path: "control_plane.count",
            message: format!(
                "{count} control planes tolerate no more failures than {}",
                count - 1
            ),
            label: "even count".into(),
            help: "use an odd count".into(),
        });
    }
    scale_in(cluster, findings);
    let nodes = cluster.proxmox.nodes.len() as u32;
    if count > nodes && !cluster.proxmox.allow_colocation {
        findings.push(Finding {
            rule: "control-plane-spread",
            severity: Severity::Error,
            cluster,
            path: "proxmox.nodes",
            message: format!("{count} control planes cannot sit on distinct nodes: only {nodes} Proxmox node(s)"),
            label: "too few nodes".into(),
            help: "add Proxmox nodes, lower `control_plane.count`, or set `proxmox.allow_colocation: true`".into(),
        });
    }
}

/// How many of `members` etcd members may go at once with a majority left: a cluster
/// of n keeps quorum (⌊n/2⌋ + 1) through ⌊(n − 1)/2⌋ losses.
pub(crate) fn removable_at_once(members: u32) -> u32 {
    members.saturating_sub(1) / 2
}

/// Control planes state holds that the configuration drops. Each leaves etcd on its way
/// out (the Talos provider resets it gracefully before its VM goes), so one at a time
/// keeps quorum while the rest are up: 2 → 1 is fine. Several at once is refused when
/// they are half of the members or more (3 → 1): should any of them fail to leave
/// (down, unreachable), its dead member and the ones already gone leave the rest
/// without quorum, and the Kubernetes API with it. (A count of 0, no control plane at
/// all, is refused when the configuration is resolved.)
fn scale_in<'a>(cluster: &'a Cluster, findings: &mut Vec<Finding<'a>>) {
    let kept = cluster
        .nodes
        .iter()
        .filter(|m| m.role == NodeRole::ControlPlane && m.recorded)
        .count() as u32;
    let leaving: Vec<_> = cluster
        .leaving
        .iter()
        .filter(|m| m.role == NodeRole::ControlPlane)
        .collect();
    let removed = leaving.len() as u32;
    let members = kept + removed;
    let spare = removable_at_once(members).max(1);
    if removed <= spare {
        return;
    }
    let names: Vec<&str> = leaving.iter().map(|m| m.name.as_str()).collect();
    let help = format!(
        "etcd keeps quorum while a majority of its {members} members remain: remove at most {spare} at a time — set `control_plane.count: {}`, apply, then lower it again",
        members - spare
    );
    findings.push(Finding {
        rule: "control-plane-scale-in",
        severity: Severity::Error,
        cluster,
        path: "control_plane.count",
        message: format!(
            "removing {removed} of {members} control planes at once ({}) loses etcd quorum",
            names.join(", ")
        ),
        label: format!("{members} → {kept} control planes"),
        help,
    });
}

#[cfg(test)]
mod tests {
    use crate::policy::tests::{described, policy_of};

    #[test]
    fn etcd_tolerates_losing_fewer_than_half_of_its_members() {
        use super::removable_at_once;
        // (members, how many may go at once with a majority left)
        for (members, spare) in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 3)] {
            assert_eq!(removable_at_once(members), spare, "{members}");
            let quorum = members / 2 + 1;
            assert!(members - spare >= quorum, "{members}");
            assert!(members - (spare + 1) < quorum, "{members}");
        }
    }

    #[test]
    fn staging_with_one_replica_and_no_spread_fails() {
        let (problems, config) = policy_of(&[
            ("environments/staging.yaml", "replicas: 3", "replicas: 1"),
            (
                "environments/staging.yaml",
                "anti_affinity: true",
                "anti_affinity: false",
            ),
        ]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::ha-workloads".into(),
                "staging/workload: staging runs 1 workload replica(s)".into(),
                "environments/staging.yaml".into(),
                9
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "policy::ha-workloads".into(),
                "staging/workload: staging workloads are not spread over nodes".into(),
                "environments/staging.yaml".into(),
                10
            )),
            "{found:?}"
        );
    }

    #[test]
    fn prod_edge_with_one_control_plane_fails_where_the_count_comes_from() {
        let (problems, config) = policy_of(&[(
            "clusters/edge.yaml",
            "    control_plane:\n      count: 3\n",
            "",
        )]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::etcd-quorum".into(),
                "prod/edge: 1 control plane(s) cannot keep etcd quorum through a node failure"
                    .into(),
                "templates/small.yaml".into(),
                4
            )),
            "{found:?}"
        );
    }

    #[test]
    fn more_control_planes_than_proxmox_nodes_fails_unless_colocation_is_allowed() {
        let (problems, config) = policy_of(&[(
            "defaults/proxmox.yaml",
            "nodes: [pve1, pve2, pve3]",
            "nodes: [pve1, pve2]",
        )]);
        let found = described(&problems, &config);
        assert!(
            found.iter().any(|f| f.0 == "policy::control-plane-spread"
                && f.2 == "defaults/proxmox.yaml"
                && f.3 == 7),
            "{found:?}"
        );
        let (problems, _) = policy_of(&[(
            "defaults/proxmox.yaml",
            "nodes: [pve1, pve2, pve3]",
            "nodes: [pve1, pve2]\n  allow_colocation: true",
        )]);
        assert!(
            !problems
                .iter()
                .any(|p| p.code == "policy::control-plane-spread")
        );
    }
}
