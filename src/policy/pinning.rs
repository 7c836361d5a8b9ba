//! `pinned-versions`: prod runs what was tested — no moving image tags, no moving
//! gitops revisions.

use super::Finding;
use crate::diag::Severity;
use crate::model::Cluster;

/// The seeds' branch-per-environment model: each environment's own protected branch.
fn protected_branch(environment: &str) -> Option<&'static str> {
    match environment {
        "dev" => Some("dev"),
        "staging" => Some("stg"),
        "prod" => Some("prd"),
        _ => None,
    }
}

fn is_moving_tag(tag: &str) -> bool {
    tag == "latest" || tag.ends_with("-latest") || tag.is_empty()
}

/// A tag (`v1.4.2`, `1.4.2`), a commit (7–40 hex digits), or the environment's branch.
pub(crate) fn is_pinned_revision(revision: &str, environment: &str) -> bool {
    let is_commit =
        (7..=40).contains(&revision.len()) && revision.chars().all(|c| c.is_ascii_hexdigit());
    let version = revision.strip_prefix('v').unwrap_or(revision);
    let is_tag = semver::Version::parse(version).is_ok() || revision.starts_with("refs/tags/");
    is_commit || is_tag || protected_branch(environment) == Some(revision)
}

pub(crate) fn check<'a>(cluster: &'a Cluster, findings: &mut Vec<Finding<'a>>) {
    if cluster.environment != "prod" {
        return;
    }
    let tag = &cluster.workloads.image_tag;
    if is_moving_tag(tag) {
        findings.push(Finding {
            rule: "pinned-versions",
            severity: Severity::Error,
            cluster,
            path: "workloads.image_tag",
            message: format!("prod runs the moving image tag `{tag}`"),
            label: "not pinned".into(),
            help: "pin a released tag, e.g. `image_tag: 1.4.2`".into(),
        });
    }
    let revision = &cluster.gitops.revision;
    if !is_pinned_revision(revision, &cluster.environment) {
        findings.push(Finding {
            rule: "pinned-versions",
            severity: Severity::Error,
            cluster,
            path: "gitops.revision",
            message: format!("prod tracks the moving revision `{revision}`"),
            label: "moves with every push".into(),
            help: "pin a tag (`v1.4.2`), a commit, or the protected branch `prd`".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::{described, policy_of};

    #[test]
    fn revisions_that_are_pinned() {
        for (revision, env) in [
            ("v1.4.2", "prod"),
            ("1.4.2", "prod"),
            ("3f2a9c1", "prod"),
            ("prd", "prod"),
            ("stg", "staging"),
        ] {
            assert!(is_pinned_revision(revision, env), "{revision}");
        }
        for (revision, env) in [
            ("main", "prod"),
            ("HEAD", "prod"),
            ("stg", "prod"),
            ("release", "prod"),
        ] {
            assert!(!is_pinned_revision(revision, env), "{revision}");
        }
    }

    #[test]
    fn prod_with_latest_and_main_fails_at_the_prod_layer() {
        let (problems, config) = policy_of(&[
            (
                "environments/prod.yaml",
                "image_tag: 1.4.2",
                "image_tag: latest",
            ),
            (
                "environments/prod.yaml",
                "revision: v1.4.2",
                "revision: main",
            ),
        ]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::pinned-versions".into(),
                "prod/workload: prod runs the moving image tag `latest`".into(),
                "environments/prod.yaml".into(),
                10
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "policy::pinned-versions".into(),
                "prod/edge: prod tracks the moving revision `main`".into(),
                "environments/prod.yaml".into(),
                6
            )),
            "{found:?}"
        );
    }

    #[test]
    fn a_moving_revision_inherited_from_defaults_is_reported_at_defaults() {
        let (problems, config) = policy_of(&[(
            "environments/prod.yaml",
            "gitops:\n  revision: v1.4.2\n",
            "",
        )]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::pinned-versions".into(),
                "prod/management: prod tracks the moving revision `main`".into(),
                "defaults/platform.yaml".into(),
                29
            )),
            "{found:?}"
        );
    }
}
