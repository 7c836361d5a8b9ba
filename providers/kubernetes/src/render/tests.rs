//! Rendering tests: the content that matters, and every manifest validated against the
//! official strict schemas in `../shared/schemas` (skipped, with the reason printed,
//! only when that folder is absent).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::inputs::{HandoffInputs, InputError, NamespaceInputs, PlatformInputs};
use crate::upstream::Loaded;

fn attrs(value: Value) -> infraflux_provider::Attributes {
    value.as_object().unwrap().clone()
}

/// The shipped configuration's environments (`config/environments/*.yaml`).
fn workloads(environment: &str) -> Value {
    match environment {
        "dev" => json!({"replicas": 1, "anti_affinity": false,
            "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}}),
        "staging" => json!({"replicas": 3, "anti_affinity": true,
            "requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
        _ => json!({"replicas": 3, "anti_affinity": true,
            "requests": {"cpu": 1000, "memory": 1073741824u64}, "limits": {"cpu": 2000, "memory": 2147483648u64}}),
    }
}

fn platform_inputs(environment: &str, service: &str, version: &str) -> PlatformInputs {
    let mut attributes = json!({
        "service": service, "version": version, "environment": environment,
        "workloads": workloads(environment), "values": {},
    });
    if service == "cilium" {
        attributes["values"] = json!({"kubeProxyReplacement": true, "k8sServiceHost": "localhost",
            "k8sServicePort": 7445, "ipam": {"mode": "kubernetes"}});
    }
    if service == "argocd" {
        attributes["adopt"] = json!([{"service": "cilium", "version": "1.18.4",
            "values": {"kubeProxyReplacement": true}}]);
    }
    PlatformInputs::parse(&attrs(attributes)).unwrap()
}

/// ArgoCD's release file for `inputs`, from the shared mirror (`../shared/upstream`);
/// without it (a skip is printed) a simulated install stands in.
fn release(inputs: &PlatformInputs) -> Option<Loaded> {
    let file = inputs.release_file().ok()??;
    let loaded = crate::upstream::testing::mirror_sources().map(|sources| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sources.load(file))
            .unwrap()
    });
    Some(loaded.unwrap_or(Loaded::Simulated {
        reason: "no shared mirror in this test run".into(),
    }))
}

/// A platform service as the provider renders it, its release file read.
fn render_platform(inputs: &PlatformInputs) -> Result<Vec<Value>, InputError> {
    platform(inputs, release(inputs).as_ref())
}

fn namespace_inputs(environment: &str) -> NamespaceInputs {
    NamespaceInputs::parse(&attrs(json!({
        "name": environment, "environment": environment,
        "pod_security": if environment == "dev" { "baseline" } else { "restricted" },
        "default_deny": true,
        "quota": {"cpu": "8", "memory": "16Gi", "pods": 50},
        "workloads": workloads(environment),
    })))
    .unwrap()
}

fn handoff_inputs(environment: &str, wave: u32, revision: &str) -> HandoffInputs {
    HandoffInputs::parse(&attrs(json!({
        "environment": environment, "project": format!("{environment}-workload"),
        "application": format!("{environment}-workload"), "argocd_namespace": "argocd",
        "repository": "https://git.example.internal/platform/apps.git", "revision": revision,
        "path": format!("environments/{environment}"), "destination_namespace": environment,
        "automated": true, "sync_wave": wave,
    })))
    .unwrap()
}

/// Everything InfraFlux renders for the three shipped environments.
fn everything() -> Vec<Value> {
    let mut manifests = Vec::new();
    for (environment, wave, revision) in [
        ("dev", 0, "dev"),
        ("staging", 1, "stg"),
        ("prod", 2, "v1.4.2"),
    ] {
        for (service, version) in [
            ("cilium", "1.18.4"),
            ("argocd", "v3.5.1"),
            ("cert_manager", "v1.19.1"),
            ("monitoring", "79.5.0"),
            ("external_dns", "1.19.0"),
        ] {
            manifests
                .extend(render_platform(&platform_inputs(environment, service, version)).unwrap());
        }
        manifests.extend(environment_namespace(&namespace_inputs(environment)));
        manifests.extend(handoff(&handoff_inputs(environment, wave, revision)));
    }
    manifests
}

fn find<'a>(manifests: &'a [Value], kind: &str, name: &str) -> &'a Value {
    manifests
        .iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

// ---- content ------------------------------------------------------------------------------

#[test]
fn namespace_carries_environment_and_pod_security_labels() {
    let manifests = environment_namespace(&namespace_inputs("prod"));
    let namespace = find(&manifests, "Namespace", "prod");
    let labels = &namespace["metadata"]["labels"];
    assert_eq!(labels["environment"], "prod");
    assert_eq!(labels["managed-by"], "infraflux");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(
        manifests[0]["kind"], "Namespace",
        "the namespace is applied first"
    );
}

#[test]
fn network_policies_deny_by_default_and_allow_namespace_argocd_and_dns() {
    let manifests = environment_namespace(&namespace_inputs("dev"));
    let deny = find(&manifests, "NetworkPolicy", "default-deny");
    assert_eq!(
        deny["spec"],
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    );
    let same = find(&manifests, "NetworkPolicy", "allow-same-namespace");
    assert_eq!(
        same["spec"]["ingress"][0]["from"][0],
        json!({"podSelector": {}})
    );
    assert_eq!(
        same["spec"]["egress"][0]["to"][0],
        json!({"podSelector": {}})
    );
    let argocd = find(&manifests, "NetworkPolicy", "allow-from-argocd");
    assert_eq!(
        argocd["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "argocd"
    );
    let dns = find(&manifests, "NetworkPolicy", "allow-dns");
    assert_eq!(
        dns["spec"]["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "kube-system"
    );
    assert_eq!(
        dns["spec"]["egress"][0]["ports"],
        json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}])
    );
}

#[test]
fn without_default_deny_there_are_no_policies() {
    let mut inputs = namespace_inputs("dev");
    inputs.default_deny = false;
    assert!(
        environment_namespace(&inputs)
            .iter()
            .all(|m| m["kind"] != "NetworkPolicy")
    );
}

#[test]
fn quota_and_limit_range_follow_the_workload_policy() {
    let manifests = environment_namespace(&namespace_inputs("prod"));
    let quota = find(&manifests, "ResourceQuota", "environment-quota");
    assert_eq!(
        quota["spec"]["hard"],
        json!({"requests.cpu": "8", "requests.memory": "16Gi", "pods": "50"})
    );
    let limits = find(&manifests, "LimitRange", "container-defaults");
    assert_eq!(
        limits["spec"]["limits"][0],
        json!({"type": "Container",
            "default": {"cpu": "2", "memory": "2Gi"},
            "defaultRequest": {"cpu": "1", "memory": "1Gi"}})
    );
}

#[test]
fn platform_applications_use_the_charts_and_environment_ha() {
    let dev = render_platform(&platform_inputs("dev", "cert_manager", "v1.19.1")).unwrap();
    let prod = render_platform(&platform_inputs("prod", "cert_manager", "v1.19.1")).unwrap();
    let source = &prod[0]["spec"]["source"];
    assert_eq!(source["repoURL"], "https://charts.jetstack.io");
    assert_eq!(source["chart"], "cert-manager");
    assert_eq!(source["targetRevision"], "v1.19.1");
    let values = &source["helm"]["valuesObject"];
    assert_eq!(values["replicaCount"], 3);
    assert_eq!(values["webhook"]["replicaCount"], 3);
    assert_eq!(
        values["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        values["resources"]["limits"],
        json!({"cpu": "2", "memory": "2Gi"})
    );
    let dev_values = &dev[0]["spec"]["source"]["helm"]["valuesObject"];
    assert_eq!(dev_values["replicaCount"], 1);
    assert!(dev_values.get("topologySpreadConstraints").is_none());

    let monitoring = render_platform(&platform_inputs("staging", "monitoring", "79.5.0")).unwrap();
    let source = &monitoring[0]["spec"]["source"];
    assert_eq!(
        source["repoURL"],
        "https://prometheus-community.github.io/helm-charts"
    );
    assert_eq!(source["chart"], "kube-prometheus-stack");
    assert_eq!(
        source["helm"]["valuesObject"]["prometheus"]["prometheusSpec"]["replicas"],
        3
    );
    let dns = render_platform(&platform_inputs("prod", "external_dns", "1.19.0")).unwrap();
    assert_eq!(dns[0]["spec"]["source"]["chart"], "external-dns");
}

#[test]
fn configured_values_win_over_policy_values() {
    let mut inputs = platform_inputs("prod", "cert_manager", "v1.19.1");
    inputs.values = attrs(json!({"replicaCount": 2, "prometheus": {"enabled": false}}));
    let manifests = render_platform(&inputs).unwrap();
    let values = &manifests[0]["spec"]["source"]["helm"]["valuesObject"];
    assert_eq!(values["replicaCount"], 2);
    assert_eq!(values["prometheus"]["enabled"], false);
    assert_eq!(values["webhook"]["replicaCount"], 3);
}

#[test]
fn cilium_is_installed_by_the_cli_job_and_adopted_with_the_same_values() {
    let inputs = platform_inputs("prod", "cilium", "1.18.4");
    let manifests = render_platform(&inputs).unwrap();
    let config = find(&manifests, "ConfigMap", "cilium-install-values");
    let installed: Value =
        serde_json::from_str(config["data"]["values.yaml"].as_str().unwrap()).unwrap();
    assert!(
        manifests
            .iter()
            .any(|m| m["kind"] == "Job" && m["spec"]["template"]["spec"]["hostNetwork"] == true)
    );

    let argocd = render_platform(&platform_inputs("prod", "argocd", "v3.5.1")).unwrap();
    let adoption = find(&argocd, "Application", "cilium");
    let source = &adoption["spec"]["source"];
    assert_eq!(source["repoURL"], "https://helm.cilium.io/");
    assert_eq!(source["targetRevision"], "1.18.4");
    // The same chart values as the install Job's (the fixture's argocd adopts cilium
    // with `kubeProxyReplacement` only, as its cilium is configured with more).
    assert_eq!(
        source["helm"]["valuesObject"],
        cilium_install::values(
            &attrs(json!({"kubeProxyReplacement": true})),
            &inputs.workloads
        )
    );
    assert_eq!(
        installed,
        cilium_install::values(&inputs.values, &inputs.workloads)
    );
    assert_eq!(adoption["spec"]["destination"]["namespace"], "kube-system");
}

#[test]
fn argocd_versions_without_a_pinned_release_file_are_refused() {
    let error = platform_inputs("dev", "argocd", "v2.14.0")
        .release_file()
        .unwrap_err();
    assert_eq!(error.attribute, "version");
    assert!(
        error.message.contains("pinned: v3.5.1"),
        "{}",
        error.message
    );
}

#[test]
fn handoff_is_an_app_of_apps_with_retry_and_sync_wave() {
    let manifests = handoff(&handoff_inputs("prod", 2, "v1.4.2"));
    let project = find(&manifests, "AppProject", "prod-workload");
    assert_eq!(
        project["spec"]["sourceRepos"],
        json!(["https://git.example.internal/platform/apps.git"])
    );
    assert!(project["spec"].get("clusterResourceWhitelist").is_none());
    let application = find(&manifests, "Application", "prod-workload");
    assert_eq!(
        application["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
        "2"
    );
    assert_eq!(application["spec"]["source"]["targetRevision"], "v1.4.2");
    assert_eq!(application["spec"]["source"]["path"], "environments/prod");
    assert_eq!(
        application["spec"]["syncPolicy"]["automated"],
        json!({"prune": true, "selfHeal": true})
    );
    assert_eq!(
        application["spec"]["syncPolicy"]["retry"]["backoff"],
        json!({"duration": "5s", "factor": 2, "maxDuration": "3m"})
    );
}

#[test]
fn render_writes_one_file_per_object() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = environment_namespace(&namespace_inputs("dev"));
    let written = write_manifests(dir.path(), 0, &manifests).unwrap();
    assert_eq!(written.len(), manifests.len());
    let first = std::fs::read_to_string(&written[0]).unwrap();
    assert!(written[0].ends_with("000-core-namespace-dev.yaml"));
    let parsed: Value = serde_yaml::from_str(&first).unwrap();
    assert_eq!(parsed, manifests[0]);
}

// ---- official schemas -----------------------------------------------------------------------

fn schema_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/schemas");
    dir.is_dir().then_some(dir)
}

/// The official schema for a kind, `None` when the folder has none for it.
fn schema_file(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Namespace" => "k8s-v1.32.2-standalone-strict-namespace-v1.json",
        "NetworkPolicy" => "k8s-v1.32.2-standalone-strict-networkpolicy-networking-v1.json",
        "ResourceQuota" => "k8s-v1.32.2-standalone-strict-resourcequota-v1.json",
        "LimitRange" => "k8s-v1.32.2-standalone-strict-limitrange-v1.json",
        "Deployment" => "k8s-v1.32.2-standalone-strict-deployment-apps-v1.json",
        "Application" => "argocd-application-v1alpha1.openapiv3-strict.json",
        "AppProject" => "argocd-appproject-v1alpha1.openapiv3-strict.json",
        _ => return None,
    })
}

fn validator(dir: &std::path::Path, file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    // kubernetes-json-schema names no specific draft (`http://json-schema.org/schema#`);
    // its schemas are draft-04.
    let draft = if schema.get("$schema").is_some() {
        schema.as_object_mut().unwrap().remove("$schema");
        jsonschema::Draft::Draft4
    } else {
        jsonschema::Draft::Draft202012
    };
    jsonschema::options()
        .with_draft(draft)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_rendered_manifest_validates_against_the_official_schemas() {
    let Some(dir) = schema_dir() else {
        println!("skipped: ../shared/schemas is absent (looked next to the workspace)");
        return;
    };
    // ArgoCD's Deployments and NetworkPolicies are upstream's.
    if crate::upstream::testing::shared_mirror().is_none() {
        return;
    }
    let manifests = everything();
    let mut validators = std::collections::HashMap::new();
    let mut without_schema = BTreeSet::new();
    let mut validated = BTreeSet::new();
    let mut problems = Vec::new();
    for manifest in &manifests {
        let kind = manifest["kind"].as_str().unwrap();
        let Some(file) = schema_file(kind) else {
            without_schema.insert(kind.to_string());
            continue;
        };
        let validator = validators
            .entry(file)
            .or_insert_with(|| validator(&dir, file));
        for error in validator.iter_errors(manifest) {
            problems.push(format!(
                "{kind} {}: {} at {}",
                manifest["metadata"]["name"],
                error,
                error.instance_path()
            ));
        }
        validated.insert(kind.to_string());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        validated.into_iter().collect::<Vec<_>>(),
        [
            "AppProject",
            "Application",
            "Deployment",
            "LimitRange",
            "Namespace",
            "NetworkPolicy",
            "ResourceQuota"
        ]
    );
    println!("kinds without an official schema here: {without_schema:?}");
}

#[test]
fn the_strict_schemas_reject_a_typo() {
    let Some(dir) = schema_dir() else {
        println!("skipped: ../shared/schemas is absent");
        return;
    };
    let mut application = handoff(&handoff_inputs("dev", 0, "dev")).remove(1);
    application["spec"]["syncPolicy"]["automated"]["selfheal"] = json!(true);
    let validator = validator(&dir, schema_file("Application").unwrap());
    assert!(!validator.is_valid(&application));
    if crate::upstream::testing::shared_mirror().is_none() {
        return;
    }
    let mut deployment = find(
        &render_platform(&platform_inputs("dev", "argocd", "v3.5.1")).unwrap(),
        "Deployment",
        "argocd-server",
    )
    .clone();
    deployment["spec"]["replica"] = json!(1);
    let validator = validator_deployment(&dir);
    assert!(!validator.is_valid(&deployment));
}

fn validator_deployment(dir: &std::path::Path) -> jsonschema::Validator {
    validator(dir, schema_file("Deployment").unwrap())
}
