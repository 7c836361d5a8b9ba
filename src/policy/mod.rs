//! Environment policy: rules a platform team enforces across dev → staging → prod.
//!
//! Each rule has an id, a severity, a message, the config location of the offending
//! value, and a fix hint. A cluster may waive a rule with a reason
//! (`policy.waivers: [{rule, reason}]`); a waived finding is still shown, as a warning
//! carrying the reason, in every `validate` and plan. Rule families live one per file.

mod availability;
mod isolation;
mod parity;
mod pinning;
mod resources;

pub use parity::{ParityRow, clusters_in_one_only, parity_report};

use crate::config::{Configuration, KeyPath};
use crate::diag::{Origin, Problem, Problems, Severity, did_you_mean};
use crate::model::{Cluster, Model};

/// Every rule, for waiver checks and documentation (README "Policy").
pub const RULES: &[(&str, &str)] = &[
    (
        "pinned-versions",
        "prod: workload image tags and the gitops revision are pinned",
    ),
    (
        "ha-workloads",
        "staging and prod: ≥ 3 replicas spread over nodes",
    ),
    (
        "etcd-quorum",
        "staging and prod: an odd number (≥ 3) of control planes",
    ),
    (
        "no-empty-apps",
        "prod: ArgoCD applications may not be empty",
    ),
    (
        "resource-bounds",
        "limits grow from dev to staging to prod; namespaces have quotas",
    ),
    (
        "network-isolation",
        "staging and prod: default-deny network policies, pod security not privileged",
    ),
    (
        "platform-parity",
        "environments run the same platform services at the same versions",
    ),
    (
        "control-plane-spread",
        "control planes of one cluster on distinct Proxmox nodes",
    ),
    (
        "control-plane-scale-in",
        "a plan never removes half or more of a cluster's control planes at once (etcd quorum)",
    ),
];

/// A rule violation before waivers are applied.
pub(crate) struct Finding<'a> {
    pub rule: &'static str,
    pub severity: Severity,
    pub cluster: &'a Cluster,
    /// Key path of the offending value in the cluster's effective configuration.
    pub path: &'static str,
    pub message: String,
    pub label: String,
    pub help: String,
}

/// Run every rule over the model.
pub fn check_policy(model: &Model, config: &Configuration) -> Problems {
    let mut findings = Vec::new();
    for cluster in model.clusters() {
        pinning::check(cluster, &mut findings);
        availability::check(cluster, &mut findings);
        isolation::check(cluster, &mut findings);
        resources::check_cluster(cluster, &mut findings);
    }
    resources::check_ordering(model, &mut findings);
    parity::check(model, config, &mut findings);

    let mut problems = Problems::new();
    for cluster in model.clusters() {
        check_waiver_rules(cluster, config, &mut problems);
    }
    for finding in findings {
        problems.push(to_problem(finding, config));
    }
    problems
}

fn locate(config: &Configuration, cluster: &Cluster, path: &str) -> Option<Origin> {
    config
        .effective
        .iter()
        .find(|e| e.environment == cluster.environment && e.cluster == cluster.name)
        .map(|e| e.node.origin_of(&KeyPath::parse(path)))
}

fn to_problem(finding: Finding, config: &Configuration) -> Problem {
    let origin = locate(config, finding.cluster, finding.path);
    let code = rule_code(finding.rule);
    let waiver = finding
        .cluster
        .waivers
        .iter()
        .find(|w| w.rule == finding.rule);
    match waiver {
        Some(waiver) => Problem::warning(
            code,
            format!("waived for {}: {}", finding.cluster.id(), finding.message),
        )
        .at_opt(origin)
        .label(finding.label)
        .help(format!("waiver reason: {}", waiver.reason)),
        None => Problem {
            severity: finding.severity,
            ..Problem::error(
                code,
                format!("{}: {}", finding.cluster.id(), finding.message),
            )
        }
        .at_opt(origin)
        .label(finding.label)
        .help(format!(
            "{} (or waive it: `policy.waivers: [{{rule: {}, reason: …}}]`)",
            finding.help, finding.rule
        )),
    }
}

fn rule_code(rule: &str) -> &'static str {
    match rule {
        "pinned-versions" => "policy::pinned-versions",
        "ha-workloads" => "policy::ha-workloads",
        "etcd-quorum" => "policy::etcd-quorum",
        "no-empty-apps" => "policy::no-empty-apps",
        "resource-bounds" => "policy::resource-bounds",
        "network-isolation" => "policy::network-isolation",
        "platform-parity" => "policy::platform-parity",
        "control-plane-spread" => "policy::control-plane-spread",
        "control-plane-scale-in" => "policy::control-plane-scale-in",
        _ => "policy::unknown-rule",
    }
}

/// A waiver must name a real rule and give a reason.
fn check_waiver_rules(cluster: &Cluster, config: &Configuration, problems: &mut Problems) {
    for (i, waiver) in cluster.waivers.iter().enumerate() {
        let path = format!("policy.waivers[{i}]");
        let effective = config
            .effective
            .iter()
            .find(|e| e.environment == cluster.environment && e.cluster == cluster.name);
        let origin = |key: &str| {
            effective.map(|e| e.node.origin_of(&KeyPath::parse(&format!("{path}.{key}"))))
        };
        if !RULES.iter().any(|(id, _)| *id == waiver.rule) {
            let help = match did_you_mean(&waiver.rule, RULES.iter().map(|(id, _)| *id)) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!(
                    "rules: {}",
                    RULES
                        .iter()
                        .map(|(id, _)| *id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            problems.push(
                Problem::error(
                    "policy::unknown-rule",
                    format!("waiver names unknown rule `{}`", waiver.rule),
                )
                .at_opt(origin("rule"))
                .label("no such rule")
                .help(help),
            );
        }
        if waiver.reason.trim().is_empty() {
            problems.push(
                Problem::error("policy::waiver-without-reason", "a waiver needs a reason")
                    .at_opt(origin("reason"))
                    .label("empty reason")
                    .help("say why the rule does not apply; it is shown in every plan"),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::config::interpolate::Variables;
    use crate::config::{Configuration, Selection, load_config};
    use crate::diag::Problems;
    use crate::model::resolve_model;
    use std::path::Path;

    struct Token;
    impl Variables for Token {
        fn var(&self, name: &str) -> Option<String> {
            (name == "PROXMOX_TOKEN").then(|| "root@pam!ci=secret".to_string())
        }
    }

    /// The bundled example with `edit(file, text) -> text` applied to chosen files,
    /// checked by policy. Returns the policy problems.
    pub fn policy_of(edits: &[(&str, &str, &str)]) -> (Problems, Configuration) {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .as_path(),
            dir.path(),
        );
        for (file, from, to) in edits {
            let path = dir.path().join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file} does not contain {from:?}");
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        }
        let (config, problems) = load_config(dir.path(), &Selection::default(), &Token);
        assert!(!problems.has_errors(), "{problems:?}");
        let (model, problems) = resolve_model(&config);
        assert!(!problems.has_errors(), "{problems:?}");
        let policy = super::check_policy(&model.unwrap(), &config);
        (policy, config)
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// (code, message, file name, line) of each problem.
    pub fn described(
        problems: &Problems,
        config: &Configuration,
    ) -> Vec<(String, String, String, u32)> {
        problems
            .iter()
            .map(|p| {
                let origin = p.origin.expect("policy findings have a location");
                let file = config.sources().path(origin.file);
                let short = file.components().rev().take(2).collect::<Vec<_>>();
                let short = format!(
                    "{}/{}",
                    short[1].as_os_str().to_string_lossy(),
                    short[0].as_os_str().to_string_lossy()
                );
                (p.code.to_string(), p.message.clone(), short, origin.line)
            })
            .collect()
    }

    #[test]
    fn the_bundled_example_passes_every_rule() {
        let (problems, config) = policy_of(&[]);
        assert!(problems.is_empty(), "{:?}", described(&problems, &config));
    }

    #[test]
    fn a_waiver_turns_an_error_into_a_warning_with_its_reason() {
        let (problems, _) = policy_of(&[
            ("environments/prod.yaml", "replicas: 3", "replicas: 2"),
            (
                "environments/prod.yaml",
                "sync_wave: 2\n",
                "sync_wave: 2\npolicy:\n  waivers:\n    - {rule: ha-workloads, reason: batch jobs only}\n",
            ),
        ]);
        let waived: Vec<_> = problems
            .iter()
            .filter(|p| p.code == "policy::ha-workloads")
            .collect();
        assert_eq!(waived.len(), 3, "one per prod cluster");
        assert!(
            waived
                .iter()
                .all(|p| p.severity == crate::diag::Severity::Warning)
        );
        assert_eq!(
            waived[0].help.as_deref(),
            Some("waiver reason: batch jobs only")
        );
    }

    #[test]
    fn a_waiver_for_an_unknown_rule_is_an_error() {
        let (problems, config) = policy_of(&[(
            "environments/prod.yaml",
            "sync_wave: 2\n",
            "sync_wave: 2\npolicy:\n  waivers:\n    - {rule: ha-workload, reason: x}\n",
        )]);
        let found = described(&problems, &config);
        assert!(
            found.contains(&(
                "policy::unknown-rule".into(),
                "waiver names unknown rule `ha-workload`".into(),
                "environments/prod.yaml".into(),
                7
            )),
            "{found:?}"
        );
    }
}
