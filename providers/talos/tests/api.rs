//! The Talos API client against the in-process fake node (127.0.0.1, ephemeral ports).

use std::sync::OnceLock;
use std::time::Duration;

use infraflux_lab::talos::{FakeNode, Stage};
use infraflux_talos::ApiErrorKind;
use infraflux_talos::api::{
    ApplyMode, BootstrapOutcome, ClientIdentity, ConnectOptions, Credentials, NodeClient, NodeMode,
    detect_mode,
};
use infraflux_talos::config::{ClusterSettings, NodeSettings, Renderer, Role, installer_image};
use infraflux_talos::secrets::ClusterSecrets;

fn secrets() -> &'static ClusterSecrets {
    static SECRETS: OnceLock<ClusterSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| ClusterSecrets::generate().unwrap())
}

fn options() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(10),
    }
}

fn identity() -> ClientIdentity {
    ClientIdentity::from_secrets(secrets())
}

fn config(role: Role, version: &str) -> String {
    let cluster = ClusterSettings {
        cluster_name: "lab".into(),
        endpoint: "https://10.0.0.10:6443".into(),
        talos_version: version.into(),
        kubernetes_version: "1.33.1".into(),
        installer_image: installer_image("abc", version),
        pod_cidr: "10.244.0.0/16".into(),
        service_cidr: "10.96.0.0/12".into(),
        vip: None,
    };
    let node = NodeSettings {
        hostname: "cp-1".into(),
        address: "10.0.0.11/24".into(),
        gateway: Some("10.0.0.1".into()),
        dns: vec!["1.1.1.1".into()],
        role,
        install_disk: "/dev/sda".into(),
        interface: "eth0".into(),
        patches: Vec::new(),
    };
    Renderer::new(cluster, secrets())
        .unwrap()
        .render(&node)
        .unwrap()
}

async fn mutual(node: &FakeNode) -> NodeClient {
    NodeClient::connect(
        &node.endpoint(),
        &Credentials::Mutual(identity()),
        &options(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn apply_bootstrap_kubeconfig_over_insecure_then_mutual_tls() {
    for version in ["v1.13.9", "v1.14.0-rc.1"] {
        let node = FakeNode::start().await.unwrap();
        let endpoint = node.endpoint();
        assert_eq!(
            detect_mode(&endpoint, Some(&identity()), &options())
                .await
                .unwrap(),
            NodeMode::Maintenance
        );

        let mut insecure = NodeClient::connect(&endpoint, &Credentials::Insecure, &options())
            .await
            .unwrap();
        let outcome = insecure
            .apply_configuration(
                config(Role::ControlPlane, version).as_bytes(),
                ApplyMode::Auto,
            )
            .await
            .unwrap();
        assert_eq!(outcome.mode, ApplyMode::Reboot);
        assert_eq!(node.stage(), Stage::Configured);

        // Configured: mTLS works, calls without a client certificate are refused.
        assert_eq!(
            detect_mode(&endpoint, Some(&identity()), &options())
                .await
                .unwrap(),
            NodeMode::Configured
        );
        let mut fresh_insecure = NodeClient::connect(&endpoint, &Credentials::Insecure, &options())
            .await
            .unwrap();
        let refused = fresh_insecure.version().await.unwrap_err();
        assert_eq!(refused.api_kind(), Some(ApiErrorKind::Unauthenticated));
        let error = detect_mode(&endpoint, None, &options()).await.unwrap_err();
        assert!(error.to_string().contains("another cluster"), "{error}");

        let mut client = mutual(&node).await;
        assert_eq!(
            client.bootstrap().await.unwrap(),
            BootstrapOutcome::Bootstrapped
        );
        assert_eq!(
            client.bootstrap().await.unwrap(),
            BootstrapOutcome::AlreadyBootstrapped
        );
        assert_eq!(node.stage(), Stage::Bootstrapped);
        assert_eq!(node.bootstrap_calls(), 2);

        let kubeconfig = client.kubeconfig().await.unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&kubeconfig).unwrap();
        assert_eq!(parsed["current-context"], "admin@lab");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "https://10.0.0.10:6443"
        );

        let services = client.services().await.unwrap();
        assert!(services.iter().any(|s| s.id == "etcd" && s.healthy));
        let members = client.etcd_members().await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].hostname, "cp-1");
        node.stop().await;
    }
}

#[tokio::test]
async fn a_different_cluster_admin_certificate_is_refused() {
    let node = FakeNode::start().await.unwrap();
    node.emulate_trustd(&secrets().os_ca);
    let mut insecure = NodeClient::connect(&node.endpoint(), &Credentials::Insecure, &options())
        .await
        .unwrap();
    insecure
        .apply_configuration(config(Role::Worker, "v1.13.9").as_bytes(), ApplyMode::Auto)
        .await
        .unwrap();
    // A second cluster's CA: the node's certificate does not chain to it.
    let other =
        ClusterSecrets::generate_with_service_account_key(secrets().service_account_key.clone())
            .unwrap();
    let error = NodeClient::connect(
        &node.endpoint(),
        &Credentials::Mutual(ClientIdentity::from_secrets(&other)),
        &options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error.api_kind(),
            Some(ApiErrorKind::Unreachable | ApiErrorKind::Unauthenticated)
        ),
        "{error}"
    );
    assert!(error.to_string().contains("certificate"), "{error}");
    // Our own cluster's admin certificate works on the worker.
    mutual(&node).await.version().await.unwrap();
    node.stop().await;
}

#[tokio::test]
async fn losing_the_connection_mid_apply_is_reported_as_such() {
    let node = FakeNode::start().await.unwrap();
    node.drop_connection_on_next_apply();
    let mut client = NodeClient::connect(&node.endpoint(), &Credentials::Insecure, &options())
        .await
        .unwrap();
    let error = client
        .apply_configuration(
            config(Role::ControlPlane, "v1.13.9").as_bytes(),
            ApplyMode::Auto,
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.api_kind(),
        Some(ApiErrorKind::ConnectionLost),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("ApplyConfiguration"), "{message}");
    assert!(message.contains("outcome unknown"), "{message}");
    // The fake did not apply it; a retry on a new connection succeeds.
    assert_eq!(node.stage(), Stage::Maintenance);
    let mut retry = NodeClient::connect(&node.endpoint(), &Credentials::Insecure, &options())
        .await
        .unwrap();
    retry
        .apply_configuration(
            config(Role::ControlPlane, "v1.13.9").as_bytes(),
            ApplyMode::Auto,
        )
        .await
        .unwrap();
    assert_eq!(node.stage(), Stage::Configured);
    node.stop().await;
}

#[tokio::test]
async fn an_unreachable_node_is_reported_as_unreachable() {
    // Bind and drop a listener: nothing listens on that port any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    drop(listener);
    let error = NodeClient::connect(&endpoint, &Credentials::Insecure, &options())
        .await
        .unwrap_err();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::Unreachable), "{error}");
}

#[tokio::test]
async fn no_reboot_is_refused_for_install_changes_and_auto_reboots() {
    let node = FakeNode::start().await.unwrap();
    let first = config(Role::ControlPlane, "v1.13.9");
    NodeClient::connect(&node.endpoint(), &Credentials::Insecure, &options())
        .await
        .unwrap()
        .apply_configuration(first.as_bytes(), ApplyMode::Auto)
        .await
        .unwrap();
    let mut client = mutual(&node).await;
    let same = client
        .apply_configuration(first.as_bytes(), ApplyMode::NoReboot)
        .await
        .unwrap();
    assert_eq!(same.mode, ApplyMode::NoReboot);
    let changed_install = first.replace("/dev/sda", "/dev/sdb");
    let error = client
        .apply_configuration(changed_install.as_bytes(), ApplyMode::NoReboot)
        .await
        .unwrap_err();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::Rejected), "{error}");
    let auto = client
        .apply_configuration(changed_install.as_bytes(), ApplyMode::Auto)
        .await
        .unwrap();
    assert_eq!(auto.mode, ApplyMode::Reboot);
    node.stop().await;
}
