//! `network-isolation`: staging and prod namespaces deny traffic by default and do not
//! run privileged pods.

use super::Finding;
use crate::diag::Severity;
use crate::model::{Cluster, PodSecurity};

pub(crate) fn check<'a>(cluster: &'a Cluster, findings: &mut Vec<Finding<'a>>) {
    if !matches!(cluster.environment.as_str(), "staging" | "prod") {
        return;
    }
    if !cluster.namespaces.default_deny {
        findings.push(Finding {
            rule: "network-isolation",
            severity: Severity::Error,
            cluster,
            path: "namespaces.default_deny",
            message: format!("{} namespaces accept all traffic", cluster.environment),
            label: "default-deny off".into(),
            help: "set `namespaces.default_deny: true`".into(),
        });
    }
    if cluster.namespaces.pod_security == PodSecurity::Privileged {
        findings.push(Finding {
            rule: "network-isolation",
            severity: Severity::Error,
            cluster,
            path: "namespaces.pod_security",
            message: format!("{} namespaces allow privileged pods", cluster.environment),
            label: "privileged".into(),
            help: "use `namespaces.pod_security: restricted` (or `baseline`)".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::tests::{described, policy_of};

    #[test]
    fn prod_without_default_deny_or_with_privileged_pods_fails() {
        let (problems, config) = policy_of(&[(
            "environments/prod.yaml",
            "namespaces:\n",
            "namespaces:\n  default_deny: false\n  pod_security: privileged\n",
        )]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::network-isolation".into(),
                "prod/workload: prod namespaces accept all traffic".into(),
                "environments/prod.yaml".into(),
                18
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "policy::network-isolation".into(),
                "prod/workload: prod namespaces allow privileged pods".into(),
                "environments/prod.yaml".into(),
                19
            )),
            "{found:?}"
        );
    }

    #[test]
    fn dev_may_relax_isolation() {
        let (problems, _) = policy_of(&[(
            "environments/dev.yaml",
            "pod_security: baseline",
            "pod_security: privileged\n  default_deny: false",
        )]);
        assert!(
            !problems
                .iter()
                .any(|p| p.code == "policy::network-isolation")
        );
    }
}
