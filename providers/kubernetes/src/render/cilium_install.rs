//! Cilium, installed the way Talos documents for a cluster with no CNI ("Deploying Cilium
//! CNI", method 5 "Using a job"): a Job in `kube-system` runs the official Cilium CLI
//! (`cilium install`), which installs the official chart of the configured version with
//! the Talos values, from inside the cluster.
//!
//! Why this way and not another Talos documents: InfraFlux must not carry a copy of the
//! chart's output (a hand-written subset drifts from upstream), and rendering the chart
//! itself needs Helm's Go templates, which a Rust binary does not have. The Job needs
//! neither: the chart is rendered by the Cilium CLI, in the cluster, at the version asked
//! for, and the same values later go to the ArgoCD Application that adopts Cilium
//! ([`super::argocd::adoption_application`]), so both render the same chart.
//!
//! What InfraFlux renders is only the Job's own setup, as Talos documents it: a
//! ServiceAccount bound to `cluster-admin`, the values in a ConfigMap, and the Job on a
//! control-plane node's host network (no CNI yet: the in-cluster Service address does
//! not work, so it talks to the API server on the node's own address, port 6443). With
//! `--wait` the CLI exits once Cilium is ready, so the Job's completion is the install's.
//!
//! The Job's name carries a digest of the version and values: a changed configuration is
//! a new Job (a Job's pod template cannot change), running `cilium upgrade` once an
//! install Job has run. Once ArgoCD has adopted Cilium, the provider applies none of this
//! any more (the crate README, "Cilium").

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::inputs::{PlatformInputs, WorkloadPolicy};
use crate::render::{MANAGED_BY, deep_merge};

/// The official Cilium CLI image the install Job runs (pinned: a `latest` tag would make
/// two installs of the same configuration differ).
pub const CLI_IMAGE: &str = "quay.io/cilium/cilium-cli:v0.18.9";
/// Where Cilium and its installer live.
pub const NAMESPACE: &str = "kube-system";
/// The installer's ServiceAccount and ClusterRoleBinding.
pub const INSTALLER: &str = "cilium-install";
/// The ConfigMap holding the Helm values.
pub const VALUES_CONFIG_MAP: &str = "cilium-install-values";
const VALUES_DIR: &str = "/etc/cilium-install";

/// Helm values of the Cilium install, for the install Job and for ArgoCD's adoption
/// alike: what Talos documents for Cilium without kube-proxy (IPAM by Kubernetes, the
/// KubePrism endpoint localhost:7445, the cgroup v2 mount Talos provides rather than
/// Cilium's own, the capabilities Talos allows: no SYS_MODULE), Hubble's certificates
/// made by the chart's CronJob (the `helm` default generates new ones on every render,
/// which ArgoCD would see as a difference forever), the operator's replicas from the
/// workload policy, and the configuration's values over all of it.
pub fn values(configured: &Map<String, Value>, policy: &WorkloadPolicy) -> Value {
    let mut merged = json!({
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": true,
        "k8sServiceHost": "localhost",
        "k8sServicePort": 7445,
        "cgroup": {"autoMount": {"enabled": false}, "hostRoot": "/sys/fs/cgroup"},
        "securityContext": {"capabilities": {
            "ciliumAgent": ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_ADMIN",
                "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
            "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"],
        }},
        "hubble": {"tls": {"auto": {"method": "cronJob"}}},
        // The operator is leader-elected: a second replica is a warm standby, a third
        // adds nothing (and each needs its own node: hostNetwork and a host port).
        "operator": {"replicas": if policy.replicas > 1 { 2 } else { 1 }},
    });
    deep_merge(&mut merged, &Value::Object(configured.clone()));
    merged
}

/// Whether a Job runs `cilium install` (nothing installed yet) or `cilium upgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Install,
    Upgrade,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Install => "install",
            Step::Upgrade => "upgrade",
        }
    }
}

/// The install Job for `digest`, given the Jobs the resource recorded (`objects`): the
/// recorded Job of this very configuration keeps its step; a configuration after another
/// one upgrades; the first installs.
fn job(recorded_jobs: &[String], digest: &str) -> (String, Step) {
    for step in [Step::Install, Step::Upgrade] {
        let name = format!("cilium-{}-{digest}", step.verb());
        if recorded_jobs.contains(&name) {
            return (name, step);
        }
    }
    let step = if recorded_jobs.iter().any(|name| is_installer_job(name)) {
        Step::Upgrade
    } else {
        Step::Install
    };
    (format!("cilium-{}-{digest}", step.verb()), step)
}

/// A Job this module names.
pub fn is_installer_job(name: &str) -> bool {
    name.starts_with("cilium-install-") || name.starts_with("cilium-upgrade-")
}

/// The first 8 hex digits of the sha256 of the version and values.
fn digest(version: &str, values: &Value) -> String {
    let text = json!({"version": version, "values": values}).to_string();
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}

/// The installer of `inputs` (the cilium platform service), in apply order.
pub fn install(inputs: &PlatformInputs) -> Vec<Value> {
    let values = values(&inputs.values, &inputs.workloads);
    let (job_name, step) = job(&inputs.recorded_jobs, &digest(&inputs.version, &values));
    let labels = json!({"managed-by": MANAGED_BY, "app.kubernetes.io/name": INSTALLER});
    let service_account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": INSTALLER, "namespace": NAMESPACE, "labels": labels},
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": INSTALLER, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": INSTALLER, "namespace": NAMESPACE}],
    });
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": VALUES_CONFIG_MAP, "namespace": NAMESPACE, "labels": labels},
        // JSON is YAML: Helm reads it as the values file.
        "data": {"values.yaml": serde_json::to_string_pretty(&values).unwrap_or_default()},
    });
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "backoffLimit": 10,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": INSTALLER}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "serviceAccountName": INSTALLER,
                    "hostNetwork": true,
                    // Every node is tainted not-ready until a CNI runs.
                    "tolerations": [{"operator": "Exists"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
                        ]}],
                    }}},
                    "containers": [{
                        "name": INSTALLER,
                        "image": CLI_IMAGE,
                        "env": [
                            // No CNI: the API server on this (control-plane) node's address.
                            {"name": "KUBERNETES_SERVICE_HOST",
                             "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                            {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"},
                        ],
                        "command": [
                            "cilium", step.verb(),
                            "--version", inputs.version,
                            "--namespace", NAMESPACE,
                            "--values", format!("{VALUES_DIR}/values.yaml"),
                            "--wait",
                        ],
                        "volumeMounts": [{"name": "values", "mountPath": VALUES_DIR, "readOnly": true}],
                    }],
                    "volumes": [{"name": "values", "configMap": {"name": VALUES_CONFIG_MAP}}],
                },
            },
        },
    });
    vec![service_account, binding, config_map, job]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(values: Value, replicas: u32, recorded_jobs: &[&str]) -> PlatformInputs {
        let mut attributes = json!({"service": "cilium", "version": "1.18.4", "values": values,
            "workloads": {"replicas": replicas}});
        attributes["objects"] = recorded_jobs
            .iter()
            .map(|name| json!({"apiVersion": "batch/v1", "kind": "Job", "namespace": "kube-system", "name": name}))
            .collect();
        PlatformInputs::parse(attributes.as_object().unwrap()).unwrap()
    }

    fn job_of(manifests: &[Value]) -> &Value {
        manifests.iter().find(|m| m["kind"] == "Job").unwrap()
    }

    #[test]
    fn the_job_runs_the_cilium_cli_with_the_talos_values() {
        let manifests = install(&inputs(json!({}), 3, &[]));
        let kinds: Vec<&str> = manifests
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["ServiceAccount", "ClusterRoleBinding", "ConfigMap", "Job"]
        );
        let job = job_of(&manifests);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["containers"][0]["image"], CLI_IMAGE);
        let command: Vec<&str> = pod["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            command,
            [
                "cilium",
                "install",
                "--version",
                "1.18.4",
                "--namespace",
                "kube-system",
                "--values",
                "/etc/cilium-install/values.yaml",
                "--wait"
            ]
        );
        let config = &manifests[2]["data"]["values.yaml"];
        let values: Value = serde_json::from_str(config.as_str().unwrap()).unwrap();
        assert_eq!(values["k8sServicePort"], 7445);
        assert_eq!(values["kubeProxyReplacement"], true);
        assert_eq!(values["cgroup"]["hostRoot"], "/sys/fs/cgroup");
        assert_eq!(values["cgroup"]["autoMount"]["enabled"], false);
        assert_eq!(values["hubble"]["tls"]["auto"]["method"], "cronJob");
        assert_eq!(values["operator"]["replicas"], 2);
        let capabilities = values["securityContext"]["capabilities"]["ciliumAgent"].to_string();
        assert!(
            !capabilities.contains("SYS_MODULE"),
            "Talos loads no modules for pods"
        );
    }

    #[test]
    fn a_changed_configuration_is_a_new_job_that_upgrades() {
        let first = install(&inputs(json!({}), 1, &[]));
        let name = job_of(&first)["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(name.starts_with("cilium-install-"), "{name}");
        // The same configuration, recorded: the same Job (a refresh finds no drift).
        assert_eq!(install(&inputs(json!({}), 1, &[&name])), first);
        // Another value: a new Job, which upgrades.
        let changed = install(&inputs(json!({"bpf": {"masquerade": true}}), 1, &[&name]));
        let job = job_of(&changed);
        let upgrade = job["metadata"]["name"].as_str().unwrap();
        assert!(upgrade.starts_with("cilium-upgrade-"), "{upgrade}");
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["command"][1],
            "upgrade"
        );
        // And once recorded, it stays the upgrade Job.
        assert_eq!(
            job_of(&install(&inputs(
                json!({"bpf": {"masquerade": true}}),
                1,
                &[upgrade]
            )))["metadata"]["name"],
            upgrade
        );
    }

    #[test]
    fn configured_values_win() {
        let values = values(
            json!({"operator": {"replicas": 3}, "k8sServicePort": 6443})
                .as_object()
                .unwrap(),
            &WorkloadPolicy::default(),
        );
        assert_eq!(values["operator"]["replicas"], 3);
        assert_eq!(values["k8sServicePort"], 6443);
        assert_eq!(values["ipam"]["mode"], "kubernetes");
    }
}
