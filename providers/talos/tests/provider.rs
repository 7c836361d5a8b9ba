//! The Talos provider end to end against fake nodes on 127.0.0.1.

use std::sync::OnceLock;
use std::time::Duration;

use infraflux_lab::talos::{FakeNode, Stage};
use infraflux_provider::{
    Attributes, CreateRequest, ErrorKind, ImportRequest, PlanRequest, Provider, ReadItem,
    ReadOutcome, ReadRequest, ResourceRef, UpdateRequest, is_unknown,
};
use infraflux_talos::TalosProvider;
use infraflux_talos::api::{ClientIdentity, ConnectOptions};
use infraflux_talos::config::Role;
use infraflux_talos::ready::{ReadyTarget, WaitOptions, wait_ready};
use infraflux_talos::secrets::ClusterSecrets;
use serde_json::{Value, json};

fn connect() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(10),
    }
}

fn provider() -> TalosProvider {
    TalosProvider::new(connect())
}

fn resource(kind: &str, name: &str) -> ResourceRef {
    ResourceRef {
        address: format!("dev/lab/{kind}.{name}"),
        kind: kind.into(),
    }
}

fn object(value: Value) -> Attributes {
    value.as_object().unwrap().clone()
}

/// `talos_secrets` created through the provider, once per test binary.
fn secrets_attributes() -> &'static Attributes {
    static ATTRIBUTES: OnceLock<Attributes> = OnceLock::new();
    ATTRIBUTES.get_or_init(|| {
        // Tests run inside a runtime; create the secrets on a thread of their own.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let response = provider()
                    .create(CreateRequest {
                        resource: resource("talos_secrets", "lab"),
                        planned: object(json!({"cluster_name": "lab"})),
                        replacing: false,
                    })
                    .await
                    .unwrap();
                assert!(response.id.starts_with("talos-secrets-"));
                response.attributes
            })
        })
        .join()
        .unwrap()
    })
}

fn secrets_reference_values() -> Value {
    let mut secrets = secrets_attributes().clone();
    secrets.remove("cluster_name");
    Value::Object(secrets)
}

fn machine_config(hostname: &str, address: &str, role: &str, node: &FakeNode) -> Attributes {
    object(json!({
        "cluster_name": "lab",
        "endpoint": "https://10.0.0.10:6443",
        "hostname": hostname,
        "address": address,
        "gateway": "10.0.0.1",
        "dns": ["1.1.1.1"],
        "role": role,
        "install_disk": "/dev/sda",
        "talos_version": "v1.13.9",
        "schematic": "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
        "kubernetes_version": "1.33.1",
        "talos_endpoint": node.endpoint(),
        "secrets": secrets_reference_values(),
    }))
}

async fn plan_and_create(provider: &TalosProvider, name: &str, desired: Attributes) -> Attributes {
    let planned = provider
        .plan(PlanRequest {
            resource: resource("talos_machine_config", name),
            prior: None,
            desired,
        })
        .await
        .unwrap()
        .planned;
    assert!(planned["machine_config"].is_string());
    assert!(is_unknown(&planned["apply_mode"]));
    provider
        .create(CreateRequest {
            resource: resource("talos_machine_config", name),
            planned,
            replacing: false,
        })
        .await
        .unwrap()
        .attributes
}

fn identity() -> ClientIdentity {
    ClientIdentity::from_secrets(&ClusterSecrets::from_attributes(secrets_attributes()).unwrap())
}

#[tokio::test]
async fn apply_then_bootstrap_then_kubeconfig_end_to_end() {
    let provider = provider();
    let cp = FakeNode::start().await.unwrap();
    let worker = FakeNode::start().await.unwrap();
    let secrets = ClusterSecrets::from_attributes(secrets_attributes()).unwrap();
    worker.emulate_trustd(&secrets.os_ca);

    let cp_state = plan_and_create(
        &provider,
        "cp-1",
        machine_config("cp-1", "10.0.0.11/24", "controlplane", &cp),
    )
    .await;
    // What the real node answers in maintenance mode.
    assert_eq!(cp_state["apply_mode"], "no_reboot");
    assert_eq!(cp.stage(), Stage::Configured);
    assert!(
        !cp_state["machine_config_masked"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let worker_state = plan_and_create(
        &provider,
        "worker-1",
        machine_config("worker-1", "10.0.0.21/24", "worker", &worker),
    )
    .await;
    assert_eq!(worker.stage(), Stage::Configured);
    assert_eq!(worker_state["config_sha256"].as_str().unwrap().len(), 64);

    // Bootstrap exactly one control plane: right after its config the node answers
    // "bootstrap is not available yet", which the provider waits out.
    let bootstrap = provider
        .create(CreateRequest {
            resource: resource("talos_bootstrap", "lab"),
            planned: object(
                json!({"endpoint": cp.endpoint(), "secrets": secrets_reference_values()}),
            ),
            replacing: false,
        })
        .await
        .unwrap()
        .attributes;
    assert_eq!(bootstrap["bootstrapped_node"], json!(cp.endpoint()));
    assert_eq!(bootstrap["already_bootstrapped"], false);
    assert_eq!(cp.stage(), Stage::Bootstrapped);

    // Naming another node later plans no change: never a second bootstrap.
    let replan = provider
        .plan(PlanRequest {
            resource: resource("talos_bootstrap", "lab"),
            prior: Some(&bootstrap),
            desired: object(
                json!({"endpoint": worker.endpoint(), "secrets": secrets_reference_values()}),
            ),
        })
        .await
        .unwrap();
    assert_eq!(replan.planned, bootstrap);
    assert!(replan.requires_replace.is_empty());

    // Recreated from scratch (lost state): AlreadyExists from the node is success.
    let again = provider
        .create(CreateRequest {
            resource: resource("talos_bootstrap", "lab"),
            planned: object(
                json!({"endpoint": cp.endpoint(), "secrets": secrets_reference_values()}),
            ),
            replacing: false,
        })
        .await
        .unwrap()
        .attributes;
    assert_eq!(again["already_bootstrapped"], true);
    assert_eq!(worker.bootstrap_calls(), 0);

    let kubeconfig = provider
        .create(CreateRequest {
            resource: resource("talos_kubeconfig", "lab"),
            planned: object(
                json!({"endpoint": cp.endpoint(), "secrets": secrets_reference_values()}),
            ),
            replacing: false,
        })
        .await
        .unwrap()
        .attributes;
    let kubeconfig: serde_yaml::Value =
        serde_yaml::from_str(kubeconfig["kubeconfig"].as_str().unwrap()).unwrap();
    assert_eq!(kubeconfig["kind"], "Config");
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"],
        "https://10.0.0.10:6443"
    );

    // Ready: API, etcd, kubelet (no Kubernetes Ready before the CNI exists).
    let report = wait_ready(
        &[
            ReadyTarget {
                endpoint: cp.endpoint(),
                role: Role::ControlPlane,
            },
            ReadyTarget {
                endpoint: worker.endpoint(),
                role: Role::Worker,
            },
        ],
        &identity(),
        &WaitOptions {
            timeout: Duration::from_secs(20),
            interval: Duration::from_millis(100),
            connect: connect(),
        },
    )
    .await
    .unwrap();
    assert_eq!(report.etcd_members, vec!["cp-1".to_string()]);

    // Refresh: both nodes are configured with our PKI.
    let read = provider
        .read(ReadRequest {
            resources: vec![
                ReadItem {
                    resource: resource("talos_machine_config", "cp-1"),
                    id: "cp-1".into(),
                    prior: cp_state.clone(),
                },
                ReadItem {
                    resource: resource("talos_machine_config", "worker-1"),
                    id: "worker-1".into(),
                    prior: worker_state.clone(),
                },
            ],
            deep: false,
        })
        .await
        .unwrap();
    assert_eq!(read.results.len(), 2);
    for result in read.results {
        assert!(
            matches!(result.outcome, ReadOutcome::Found(_)),
            "{}: {:?}",
            result.address,
            result.outcome
        );
    }
    cp.stop().await;
    worker.stop().await;
}

#[tokio::test]
async fn same_config_plans_no_change_and_a_patch_change_is_an_update() {
    let provider = provider();
    let node = FakeNode::start().await.unwrap();
    let desired = machine_config("cp-1", "10.0.0.11/24", "controlplane", &node);
    let state = plan_and_create(&provider, "cp-1", desired.clone()).await;
    assert_eq!(node.applies().len(), 1);

    // Second run with the same inputs: the plan equals the state, and an update call
    // (if an engine made one anyway) does not touch the node.
    let replan = provider
        .plan(PlanRequest {
            resource: resource("talos_machine_config", "cp-1"),
            prior: Some(&state),
            desired: desired.clone(),
        })
        .await
        .unwrap();
    assert_eq!(replan.planned, state);
    let updated = provider
        .update(UpdateRequest {
            resource: resource("talos_machine_config", "cp-1"),
            id: "cp-1".into(),
            prior: state.clone(),
            planned: replan.planned,
        })
        .await
        .unwrap();
    assert_eq!(updated.attributes, state);
    assert_eq!(node.applies().len(), 1);

    // A patch change re-renders, plans an in-place update, and is applied over mTLS
    // without a reboot (terraform-provider-talos #195 ignored such changes).
    let mut patched = desired.clone();
    patched.insert(
        "patches".into(),
        json!(["machine:\n  kubelet:\n    extraArgs:\n      max-pods: '150'\n"]),
    );
    let plan = provider
        .plan(PlanRequest {
            resource: resource("talos_machine_config", "cp-1"),
            prior: Some(&state),
            desired: patched,
        })
        .await
        .unwrap();
    assert!(plan.requires_replace.is_empty());
    assert_ne!(plan.planned["config_sha256"], state["config_sha256"]);
    assert_ne!(
        plan.planned["machine_config_masked"],
        state["machine_config_masked"]
    );
    let updated = provider
        .update(UpdateRequest {
            resource: resource("talos_machine_config", "cp-1"),
            id: "cp-1".into(),
            prior: state,
            planned: plan.planned,
        })
        .await
        .unwrap();
    assert_eq!(updated.attributes["apply_mode"], "no_reboot");
    let applies = node.applies();
    assert_eq!(applies.len(), 2);
    assert!(applies[1].authenticated);
    assert!(String::from_utf8_lossy(&applies[1].config).contains("max-pods"));
    node.stop().await;
}

#[tokio::test]
async fn losing_the_connection_mid_create_is_a_transient_error_saying_so() {
    let provider = provider();
    let node = FakeNode::start().await.unwrap();
    node.drop_connection_on_next_apply();
    let desired = machine_config("cp-1", "10.0.0.11/24", "controlplane", &node);
    let planned = provider
        .plan(PlanRequest {
            resource: resource("talos_machine_config", "cp-1"),
            prior: None,
            desired,
        })
        .await
        .unwrap()
        .planned;
    let error = provider
        .create(CreateRequest {
            resource: resource("talos_machine_config", "cp-1"),
            planned,
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
    assert!(error.to_string().contains("outcome unknown"), "{error}");
    assert!(!error.to_string().contains("PRIVATE KEY"), "{error}");
    assert_eq!(node.stage(), Stage::Maintenance);
    node.stop().await;
}

#[tokio::test]
async fn a_node_back_in_maintenance_reads_as_gone() {
    let provider = provider();
    let node = FakeNode::start().await.unwrap();
    let prior = machine_config("cp-1", "10.0.0.11/24", "controlplane", &node);
    let read = provider
        .read(ReadRequest {
            resources: vec![ReadItem {
                resource: resource("talos_machine_config", "cp-1"),
                id: "cp-1".into(),
                prior,
            }],
            deep: false,
        })
        .await
        .unwrap();
    assert!(matches!(read.results[0].outcome, ReadOutcome::Gone));
    node.stop().await;
}

#[tokio::test]
async fn wait_ready_reports_what_is_missing_when_time_runs_out() {
    let provider = provider();
    let node = FakeNode::start().await.unwrap();
    plan_and_create(
        &provider,
        "cp-1",
        machine_config("cp-1", "10.0.0.11/24", "controlplane", &node),
    )
    .await;
    let error = wait_ready(
        &[ReadyTarget {
            endpoint: node.endpoint(),
            role: Role::ControlPlane,
        }],
        &identity(),
        &WaitOptions {
            timeout: Duration::from_millis(300),
            interval: Duration::from_millis(100),
            connect: connect(),
        },
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("etcd"), "{message}");
    node.stop().await;
}

#[tokio::test]
async fn secrets_survive_updates_and_import_reads_talosctl_secrets_yaml() {
    let provider = provider();
    let prior = secrets_attributes().clone();
    let updated = provider
        .update(UpdateRequest {
            resource: resource("talos_secrets", "lab"),
            id: "x".into(),
            prior: prior.clone(),
            planned: object(json!({"cluster_name": "renamed"})),
        })
        .await
        .unwrap()
        .attributes;
    assert_eq!(updated["cluster_name"], "renamed");
    for name in infraflux_talos::secrets::attribute::ALL {
        assert_eq!(updated[name], prior[name], "{name} changed");
    }

    let secrets = ClusterSecrets::from_attributes(&prior).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), secrets.to_talosctl_yaml()).unwrap();
    let imported = provider
        .import(ImportRequest {
            resource: resource("talos_secrets", "lab"),
            id: file.path().display().to_string(),
        })
        .await
        .unwrap()
        .attributes;
    assert_eq!(imported["os_ca_key"], prior["os_ca_key"]);
    assert_eq!(
        imported["service_account_key"],
        prior["service_account_key"]
    );
    assert_eq!(imported["bootstrap_token"], prior["bootstrap_token"]);
}

#[tokio::test]
async fn lab_nodes_share_trustd_and_report_configuration_and_bootstrap() {
    use infraflux_lab::talos::{NodeEvent, Trustd};
    use infraflux_talos::api::{Credentials, NodeClient};
    use std::sync::{Arc, Mutex};

    let provider = provider();
    let trustd = Trustd::new();
    let events: Arc<Mutex<Vec<NodeEvent>>> = Arc::default();
    let cp = FakeNode::start().await.unwrap();
    let worker = FakeNode::start().await.unwrap();
    for node in [&cp, &worker] {
        node.use_trustd(&trustd);
        let events = events.clone();
        node.on_event(Arc::new(move |event| {
            events.lock().unwrap().push(event);
            Box::pin(async {})
        }));
    }
    let mutual = Credentials::Mutual(identity());
    // A worker configured before any control plane: applied, but its API waits for
    // trustd, as a real worker's does.
    plan_and_create(
        &provider,
        "worker-1",
        machine_config("worker-1", "10.0.0.21/24", "worker", &worker),
    )
    .await;
    assert_eq!(worker.stage(), Stage::Configured);
    assert!(
        NodeClient::connect(&worker.endpoint(), &mutual, &connect())
            .await
            .is_err()
    );
    plan_and_create(
        &provider,
        "cp-1",
        machine_config("cp-1", "10.0.0.11/24", "controlplane", &cp),
    )
    .await;
    let mut client = NodeClient::connect(&worker.endpoint(), &mutual, &connect())
        .await
        .unwrap();
    client.version().await.unwrap();
    assert_eq!(
        worker.identity().map(|i| (i.hostname, i.role)),
        Some(("worker-1".into(), "worker".into()))
    );

    provider
        .create(CreateRequest {
            resource: resource("talos_bootstrap", "lab"),
            planned: object(
                json!({"endpoint": cp.endpoint(), "secrets": secrets_reference_values()}),
            ),
            replacing: false,
        })
        .await
        .unwrap();
    let events = events.lock().unwrap();
    let configured: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Configured(identity) => Some(identity.hostname.clone()),
            NodeEvent::Bootstrapped(_) => None,
        })
        .collect();
    assert_eq!(configured, ["worker-1", "cp-1"]);
    let Some(NodeEvent::Bootstrapped(bootstrapped)) = events.last() else {
        panic!("no bootstrap event");
    };
    assert_eq!(bootstrapped.node.endpoint, "https://10.0.0.10:6443");
    let secrets = ClusterSecrets::from_attributes(secrets_attributes()).unwrap();
    assert_eq!(bootstrapped.kubernetes_ca_crt, secrets.kubernetes_ca.crt);
    // The API server certificate names the endpoint's address.
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(bootstrapped.api_server.crt.as_bytes()).unwrap();
    let certificate = pem.parse_x509().unwrap();
    let names = certificate.subject_alternative_name().unwrap().unwrap();
    assert!(names.value.general_names.iter().any(|name| matches!(
        name,
        x509_parser::extensions::GeneralName::IPAddress(ip) if *ip == [10, 0, 0, 10]
    )));
}

#[tokio::test]
async fn a_bootstrap_that_never_becomes_available_fails_plainly_after_the_timeout() {
    let provider = provider();
    let cp = FakeNode::start().await.unwrap();
    // Its container runtime never comes up.
    cp.set_not_ready_window(Duration::from_secs(3600));
    plan_and_create(
        &provider,
        "cp-1",
        machine_config("cp-1", "10.0.0.11/24", "controlplane", &cp),
    )
    .await;
    let error = provider
        .create(CreateRequest {
            resource: resource("talos_bootstrap", "lab"),
            planned: object(json!({
                "endpoint": cp.endpoint(),
                "timeout_seconds": 0.5,
                "secrets": secrets_reference_values(),
            })),
            replacing: false,
        })
        .await
        .unwrap_err();
    let message = error.to_string();
    assert_eq!(error.kind, ErrorKind::Transient, "{message}");
    assert!(
        message.contains(&format!(
            "bootstrap on {} did not become available within",
            cp.endpoint()
        )),
        "{message}"
    );
    assert!(
        message.contains("not ready yet: bootstrap is not available yet"),
        "{message}"
    );
    // It kept asking (a bounded backoff), and never bootstrapped.
    assert!(cp.bootstrap_calls() >= 2, "{}", cp.bootstrap_calls());
    assert_eq!(cp.stage(), Stage::Configured);
    assert!(!message.contains("PRIVATE KEY"), "{message}");
}

#[tokio::test]
async fn a_bad_bootstrap_timeout_is_reported_as_invalid_input() {
    let error = provider()
        .create(CreateRequest {
            resource: resource("talos_bootstrap", "lab"),
            planned: object(json!({
                "endpoint": "127.0.0.1:1",
                "timeout_seconds": "soon",
                "secrets": secrets_reference_values(),
            })),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("timeout_seconds"), "{error}");
}
