//! ArgoCD objects: one Application per platform service (a Helm chart, with the
//! environment's HA settings and resources), the `platform` AppProject those belong to,
//! and the handoff (an AppProject and an app-of-apps Application per environment).

use serde_json::{Map, Value, json};

use crate::inputs::{Adopted, HandoffInputs, PlatformInputs, Service, WorkloadPolicy};
use crate::render::{MANAGED_BY, cilium_install, deep_merge};

pub const API_VERSION: &str = "argoproj.io/v1alpha1";
/// The cluster ArgoCD runs in, as ArgoCD names it.
pub const IN_CLUSTER: &str = "https://kubernetes.default.svc";
/// The AppProject platform services belong to.
pub const PLATFORM_PROJECT: &str = "platform";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// Where a platform service's chart comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chart {
    pub repository: &'static str,
    pub chart: &'static str,
    pub release: &'static str,
}

/// The Helm chart of a service ArgoCD installs or adopts; `None` for ArgoCD itself.
pub fn chart(service: Service) -> Option<Chart> {
    let (repository, chart, release) = match service {
        Service::Cilium => ("https://helm.cilium.io/", "cilium", "cilium"),
        Service::CertManager => ("https://charts.jetstack.io", "cert-manager", "cert-manager"),
        Service::Monitoring => (
            "https://prometheus-community.github.io/helm-charts",
            "kube-prometheus-stack",
            "kube-prometheus-stack",
        ),
        Service::ExternalDns => (
            "https://kubernetes-sigs.github.io/external-dns/",
            "external-dns",
            "external-dns",
        ),
        Service::Argocd => return None,
    };
    Some(Chart {
        repository,
        chart,
        release,
    })
}

/// Automated sync with prune and self-heal, retried with exponential backoff (5s,
/// doubling, at most 3m between attempts, 5 attempts).
fn sync_policy(automated: bool, sync_options: &[&str]) -> Value {
    let mut policy = json!({
        "retry": {"limit": 5, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}},
        "syncOptions": sync_options,
    });
    if automated {
        policy["automated"] = json!({"prune": true, "selfHeal": true});
    }
    policy
}

fn labels(environment: Option<&str>) -> Value {
    let mut labels = Map::new();
    labels.insert("managed-by".into(), json!(MANAGED_BY));
    if let Some(environment) = environment {
        labels.insert("environment".into(), json!(environment));
    }
    Value::Object(labels)
}

/// Topology spread and (preferred) anti-affinity on the node's hostname, for pods
/// with these labels.
fn spread(match_labels: Value) -> (Value, Value) {
    (
        json!([{
            "maxSkew": 1,
            "topologyKey": HOSTNAME,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": match_labels},
        }]),
        json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": HOSTNAME, "labelSelector": {"matchLabels": match_labels}},
        }]}}),
    )
}

/// Chart values for the environment's policy: replicas, spreading, requests/limits.
/// The configuration's own `values` are merged over these and win.
pub fn policy_values(service: Service, policy: &WorkloadPolicy) -> Value {
    let resources =
        json!({"requests": policy.requests.to_json(), "limits": policy.limits.to_json()});
    let replicas = policy.replicas;
    let spread_on = policy.anti_affinity && replicas > 1;
    match service {
        Service::CertManager => {
            let component = |name: &str| {
                let mut values = json!({
                    "replicaCount": replicas,
                    "resources": resources,
                    "podDisruptionBudget": {"enabled": replicas > 1},
                });
                if spread_on {
                    let (constraints, affinity) = spread(json!({
                        "app.kubernetes.io/instance": "cert-manager",
                        "app.kubernetes.io/component": name,
                    }));
                    values["topologySpreadConstraints"] = constraints;
                    values["affinity"] = affinity;
                }
                values
            };
            let mut values = component("controller");
            values["crds"] = json!({"enabled": true});
            values["webhook"] = component("webhook");
            values["cainjector"] = component("cainjector");
            values
        }
        Service::Monitoring => {
            let spec = || {
                let mut spec = json!({"replicas": replicas, "resources": resources});
                if spread_on {
                    spec["podAntiAffinity"] = json!("soft");
                    spec["podAntiAffinityTopologyKey"] = json!(HOSTNAME);
                }
                spec
            };
            json!({
                "prometheus": {"prometheusSpec": spec()},
                "alertmanager": {"alertmanagerSpec": spec()},
                "prometheusOperator": {"resources": resources},
                // Grafana keeps its state in SQLite: one replica.
                "grafana": {"resources": resources},
            })
        }
        // external-dns has no leader election: a second replica would fight the first
        // over DNS records, so only resources follow the policy.
        Service::ExternalDns => json!({"resources": resources}),
        Service::Cilium => cilium_install::values(&Map::new(), policy),
        Service::Argocd => json!({}),
    }
}

fn helm_application(
    inputs: &PlatformInputs,
    chart: Chart,
    version: &str,
    namespace: &str,
    values: Value,
    sync_options: &[&str],
) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "Application",
        "metadata": {
            "name": chart.release,
            "namespace": inputs.argocd_namespace,
            "labels": labels(inputs.environment.as_deref()),
        },
        "spec": {
            "project": PLATFORM_PROJECT,
            "source": {
                "repoURL": chart.repository,
                "chart": chart.chart,
                "targetRevision": version,
                "helm": {"releaseName": chart.release, "valuesObject": values},
            },
            "destination": {"server": IN_CLUSTER, "namespace": namespace},
            "syncPolicy": sync_policy(true, sync_options),
        },
    })
}

/// The Application of a Helm-installed platform service (cert-manager, monitoring,
/// external-dns).
pub fn platform_application(inputs: &PlatformInputs) -> Option<Value> {
    let chart = chart(inputs.service)?;
    if inputs.service == Service::Cilium {
        return None;
    }
    let mut values = policy_values(inputs.service, &inputs.workloads);
    deep_merge(&mut values, &Value::Object(inputs.values.clone()));
    Some(helm_application(
        inputs,
        chart,
        &inputs.version,
        &inputs.namespace,
        values,
        // kube-prometheus-stack's CRDs exceed the client-side apply annotation limit.
        &["CreateNamespace=true", "ServerSideApply=true"],
    ))
}

/// The Application that takes over a service installed before ArgoCD, with the same
/// version and values it was installed with, so the first sync changes nothing.
pub fn adoption_application(inputs: &PlatformInputs, adopted: &Adopted) -> Option<Value> {
    let chart = chart(adopted.service)?;
    let values = cilium_install::values(&adopted.values, &inputs.workloads);
    Some(helm_application(
        inputs,
        chart,
        &adopted.version,
        adopted.service.default_namespace(),
        values,
        &["ServerSideApply=true"],
    ))
}

/// The AppProject platform services belong to: every chart repository, any namespace,
/// cluster-scoped objects allowed (CRDs, webhooks, ClusterRoles).
pub fn platform_project(argocd_namespace: &str) -> Value {
    let repositories: Vec<&str> = Service::ALL
        .into_iter()
        .filter_map(chart)
        .map(|c| c.repository)
        .collect();
    json!({
        "apiVersion": API_VERSION,
        "kind": "AppProject",
        "metadata": {"name": PLATFORM_PROJECT, "namespace": argocd_namespace, "labels": labels(None)},
        "spec": {
            "description": "Platform services installed by InfraFlux",
            "sourceRepos": repositories,
            "destinations": [{"server": IN_CLUSTER, "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    })
}

/// The handoff: an AppProject confined to the environment's repository and namespace
/// (plus ArgoCD's, where the app-of-apps creates its children; no cluster-scoped
/// objects), and the app-of-apps Application at the environment's path.
pub fn handoff(inputs: &HandoffInputs) -> Vec<Value> {
    let labels = labels(Some(&inputs.environment));
    let project = json!({
        "apiVersion": API_VERSION,
        "kind": "AppProject",
        "metadata": {"name": inputs.project, "namespace": inputs.argocd_namespace, "labels": labels},
        "spec": {
            "description": format!("Workloads of environment {}, handed over by InfraFlux", inputs.environment),
            "sourceRepos": [inputs.repository],
            "destinations": [
                {"server": IN_CLUSTER, "namespace": inputs.destination_namespace},
                {"server": IN_CLUSTER, "namespace": inputs.argocd_namespace},
            ],
        },
    });
    let application = json!({
        "apiVersion": API_VERSION,
        "kind": "Application",
        "metadata": {
            "name": inputs.application,
            "namespace": inputs.argocd_namespace,
            "labels": labels,
            "annotations": {"argocd.argoproj.io/sync-wave": inputs.sync_wave.to_string()},
        },
        "spec": {
            "project": inputs.project,
            "source": {
                "repoURL": inputs.repository,
                "targetRevision": inputs.revision,
                "path": inputs.path,
            },
            "destination": {"server": IN_CLUSTER, "namespace": inputs.destination_namespace},
            "syncPolicy": sync_policy(inputs.automated, &[]),
        },
    });
    vec![project, application]
}
