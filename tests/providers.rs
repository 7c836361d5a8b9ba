//! The real providers wired into the binary against what the graph builder emits for
//! the shipped example (`config/`): every attribute is one the provider knows, every
//! resource passes the provider's `validate`, and `infraflux plan` runs end to end.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use infraflux::commands::providers;
use infraflux::config::{Selection, load_config};
use infraflux::graph::{DesiredResource, build_desired};
use infraflux::model::resolve_model;
use infraflux_provider::{
    Attributes, ResourceRef, Severity, ValidateRequest, parse_reference, references_as_unknown,
};
use serde_json::Value;
use support::TestContext;

const TOKEN: &str = "root@pam!infraflux=0000";

struct Variables;
impl infraflux::config::Variables for Variables {
    fn var(&self, name: &str) -> Option<String> {
        (name == "PROXMOX_TOKEN").then(|| TOKEN.to_string())
    }
}

fn config_dir() -> PathBuf {
    support::example_config()
}

fn desired(environment: &str) -> Vec<DesiredResource> {
    let selection = Selection {
        environment: Some(environment.into()),
        cluster: None,
    };
    let (config, problems) = load_config(&config_dir(), &selection, &Variables);
    assert!(!problems.has_errors(), "{problems:?}");
    let (model, problems) = resolve_model(&config);
    assert!(!problems.has_errors(), "{problems:?}");
    let desired = build_desired(&model.unwrap())
        .into_iter()
        .filter(|d| d.address.environment == environment)
        .collect();
    // As a plan without refresh places them: images only where a VM goes.
    infraflux::graph::placement::solve(
        desired,
        &infraflux::state::StateDocument::new(environment),
        &Default::default(),
    )
    .expect("the example places offline")
}

const DEV_TYPES: [&str; 9] = [
    "proxmox_image",
    "proxmox_vm",
    "talos_secrets",
    "talos_machine_config",
    "talos_bootstrap",
    "talos_kubeconfig",
    "kubernetes_platform",
    "kubernetes_namespace",
    "kubernetes_handoff",
];

/// Every attribute the builder emits is an input of the provider's schema, and the
/// provider's `validate` finds no error.
async fn check_environment(environment: &str) -> BTreeSet<String> {
    let registry = providers();
    let mut kinds = BTreeSet::new();
    let mut failures = Vec::new();
    for resource in desired(environment) {
        kinds.insert(resource.kind.clone());
        let provider = registry
            .get(&resource.provider)
            .unwrap_or_else(|| panic!("no provider `{}`", resource.provider));
        let schema = provider
            .schemas()
            .into_iter()
            .find(|s| s.kind == resource.kind)
            .unwrap_or_else(|| panic!("provider has no schema for {}", resource.kind));
        for name in resource.attributes.keys() {
            match schema.attribute(name) {
                Some(attribute) if !attribute.computed => {}
                _ => failures.push(format!(
                    "{}: `{name}` is not an input of {}",
                    resource.address, resource.kind
                )),
            }
        }
        let desired: Attributes = resource
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), references_as_unknown(v)))
            .collect();
        let response = provider
            .validate(ValidateRequest {
                resource: ResourceRef {
                    address: resource.address.to_string(),
                    kind: resource.kind.clone(),
                },
                desired,
            })
            .await;
        for diagnostic in response.diagnostics {
            if diagnostic.severity == Severity::Error {
                failures.push(format!("{}: {diagnostic:?}", resource.address));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    kinds
}

#[tokio::test]
async fn dev_resources_pass_the_real_providers_validation() {
    let kinds = check_environment("dev").await;
    let expected: BTreeSet<String> = DEV_TYPES.iter().map(|k| k.to_string()).collect();
    assert_eq!(kinds, expected);
}

#[tokio::test]
async fn prod_resources_pass_the_real_providers_validation() {
    check_environment("prod").await;
}

#[test]
fn a_wrong_attribute_fails_the_provider_validation() {
    // The check above can fail: a namespace with an unknown pod security level does.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = providers();
    let namespace = desired("dev")
        .into_iter()
        .find(|d| d.kind == "kubernetes_namespace")
        .unwrap();
    let mut attributes = namespace.attributes.clone();
    attributes.insert("pod_security".into(), Value::String("strict".into()));
    let response = runtime.block_on(registry.get("kubernetes").unwrap().validate(
        ValidateRequest {
            resource: ResourceRef {
                address: namespace.address.to_string(),
                kind: namespace.kind.clone(),
            },
            desired: attributes,
        },
    ));
    assert!(
        response.diagnostics.iter().any(
            |d| d.severity == Severity::Error && d.attribute.as_deref() == Some("pod_security")
        ),
        "{:?}",
        response.diagnostics
    );
}

#[test]
fn machine_configs_use_the_proxmox_nic_and_kubeconfigs_reference_talos() {
    for resource in desired("dev") {
        if resource.kind == "talos_machine_config" {
            assert_eq!(resource.attributes["interface"], "ens18");
        }
        if let Some(kubeconfig) = resource.attributes.get("kubeconfig") {
            let reference = parse_reference(kubeconfig).expect("a reference");
            assert_eq!(reference.address, "dev/workload/talos_kubeconfig.cluster");
            assert_eq!(reference.attribute, "kubeconfig");
        }
    }
}

/// `infraflux plan --env <environment> --refresh=false` over the bundled example, with
/// state in an empty project directory; it must succeed without printing the token.
fn plan(environment: &str) -> (String, String) {
    let project = TestContext::new()
        .config(config_dir())
        .token(Some(TOKEN))
        .env("NO_GRAPHICS", "1");
    let run = project
        .run(&[
            "--state-dir",
            project.path().to_str().unwrap(),
            "plan",
            "--env",
            environment,
            "--refresh=false",
        ])
        .success();
    let (stdout, stderr) = (run.stdout, run.stderr);
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token was printed"
    );
    assert!(
        !stdout.contains("infraflux=0000"),
        "part of the token was printed"
    );
    (stdout, stderr)
}

fn summary(stdout: &str) -> &str {
    stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

#[test]
fn plan_dev_with_the_real_providers() {
    let (stdout, _) = plan("dev");
    let count = desired("dev").len();
    assert_eq!(
        summary(&stdout),
        format!("Plan: {count} to add, 0 to change, 0 to destroy.")
    );
    // Every type planned; the token attribute listed, masked.
    insta::assert_snapshot!("plan_dev", stdout);
}

#[test]
fn plan_prod_with_the_real_providers() {
    let (stdout, _) = plan("prod");
    let count = desired("prod").len();
    assert_eq!(
        summary(&stdout),
        format!("Plan: {count} to add, 0 to change, 0 to destroy.")
    );
}
