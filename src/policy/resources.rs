//! `no-empty-apps` and `resource-bounds`: prod apps are never empty, limits grow from dev
//! to staging to prod, and every environment namespace has a quota.

use super::Finding;
use crate::diag::Severity;
use crate::model::{Cluster, Model};

pub(crate) fn check_cluster<'a>(cluster: &'a Cluster, findings: &mut Vec<Finding<'a>>) {
    if cluster.environment == "prod" && cluster.workloads.allow_empty_apps {
        findings.push(Finding {
            rule: "no-empty-apps",
            severity: Severity::Error,
            cluster,
            path: "workloads.allow_empty_apps",
            message: "prod allows empty ArgoCD applications".into(),
            label: "an empty app would prune everything".into(),
            help: "set `workloads.allow_empty_apps: false`".into(),
        });
    }
    if cluster.namespaces.quota.is_none() {
        findings.push(Finding {
            rule: "resource-bounds",
            severity: Severity::Error,
            cluster,
            path: "namespaces",
            message: format!("{} namespaces have no resource quota", cluster.environment),
            label: "no `quota`".into(),
            help: "set `namespaces.quota: {cpu: \"8\", memory: 16Gi, pods: 50}`".into(),
        });
    }
}

/// The promotion order of environments this rule knows.
const ORDER: [&str; 3] = ["dev", "staging", "prod"];

/// A cluster's limits in a later environment are at least those in an earlier one.
pub(crate) fn check_ordering<'a>(model: &'a Model, findings: &mut Vec<Finding<'a>>) {
    let clusters: Vec<&Cluster> = model.clusters().collect();
    for later in &clusters {
        let Some(later_rank) = ORDER.iter().position(|e| *e == later.environment) else {
            continue;
        };
        for earlier in &clusters {
            let Some(earlier_rank) = ORDER.iter().position(|e| *e == earlier.environment) else {
                continue;
            };
            if earlier_rank >= later_rank || earlier.name != later.name {
                continue;
            }
            let (a, b) = (&earlier.workloads.limits, &later.workloads.limits);
            for (path, smaller, text_b, text_a) in [
                (
                    "workloads.resources.limits.cpu",
                    b.cpu < a.cpu,
                    b.cpu.to_string(),
                    a.cpu.to_string(),
                ),
                (
                    "workloads.resources.limits.memory",
                    b.memory < a.memory,
                    b.memory.to_string(),
                    a.memory.to_string(),
                ),
            ] {
                if smaller {
                    findings.push(Finding {
                        rule: "resource-bounds",
                        severity: Severity::Error,
                        cluster: later,
                        path,
                        message: format!(
                            "{} limit {text_b} is below {}'s {text_a}",
                            later.environment, earlier.environment
                        ),
                        label: format!("below {}", earlier.environment),
                        help: format!(
                            "raise it to at least {text_a}: what passed in {} must fit in {}",
                            earlier.environment, later.environment
                        ),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::tests::{described, policy_of};

    #[test]
    fn prod_limits_below_staging_fail_at_the_prod_value() {
        let (problems, config) = policy_of(&[
            (
                "environments/prod.yaml",
                "requests: {cpu: 1000m, memory: 1Gi}",
                "requests: {cpu: 1000m, memory: 256Mi}",
            ),
            (
                "environments/prod.yaml",
                "limits: {cpu: 2000m, memory: 2Gi}",
                "limits: {cpu: 2000m, memory: 512Mi}",
            ),
        ]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::resource-bounds".into(),
                "prod/workload: prod limit 512Mi is below staging's 1Gi".into(),
                "environments/prod.yaml".into(),
                14
            )),
            "{found:?}"
        );
    }

    #[test]
    fn empty_apps_in_prod_and_missing_quotas_fail() {
        let (problems, config) = policy_of(&[
            (
                "environments/prod.yaml",
                "allow_empty_apps: false",
                "allow_empty_apps: true",
            ),
            (
                "environments/dev.yaml",
                "  quota: {cpu: \"4\", memory: 8Gi, pods: 30}\n",
                "  quota: null\n",
            ),
            (
                "defaults/security.yaml",
                "  quota:\n    cpu: \"8\"\n    memory: 16Gi\n    pods: 50\n",
                "",
            ),
        ]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::no-empty-apps".into(),
                "prod/workload: prod allows empty ArgoCD applications".into(),
                "environments/prod.yaml".into(),
                11
            )),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.0 == "policy::resource-bounds"
                && f.1 == "dev/workload: dev namespaces have no resource quota"),
            "{found:?}"
        );
    }
}
