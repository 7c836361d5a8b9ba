//! The Talos API client against the in-process fake node (127.0.0.1, ephemeral ports).

mod support;

use infraflux_lab::talos::{FakeNode, Stage};
use infraflux_talos::ApiErrorKind;
use infraflux_talos::api::{
    ApplyMode, BootstrapOutcome, ClientIdentity, Credentials, NodeClient, NodeMode, detect_mode,
};
use infraflux_talos::config::Role;
use infraflux_talos::secrets::ClusterSecrets;
use support::nodes::{config, config_for, identity, insecure, mutual, options, secrets};

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
        // machined answers NO_REBOOT to an apply in maintenance mode.
        assert_eq!(outcome.mode, ApplyMode::NoReboot);
        assert_eq!(outcome.details, "Applied configuration without a reboot");
        assert_eq!(node.stage(), Stage::Configured);
        // It runs the version its config installed.
        assert_eq!(node.version(), version);

        // Configured: mTLS works, calls without a client certificate are refused.
        assert_eq!(
            detect_mode(&endpoint, Some(&identity()), &options())
                .await
                .unwrap(),
            NodeMode::Configured
        );
        let refused = async {
            NodeClient::connect(&endpoint, &Credentials::Insecure, &options())
                .await?
                .version()
                .await
        }
        .await
        .unwrap_err();
        assert_eq!(refused.api_kind(), Some(ApiErrorKind::Unauthenticated));
        let error = detect_mode(&endpoint, None, &options()).await.unwrap_err();
        assert!(error.to_string().contains("another cluster"), "{error}");

        let mut client = mutual(&node).await;
        assert_eq!(client.version().await.unwrap().tag, version);
        // Its services start first (see tests/lifecycle.rs for the not-ready window).
        node.become_ready();
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
    insecure(&node)
        .await
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
async fn changes_talos_cannot_make_in_place_are_refused_without_reboot_and_reboot_in_auto() {
    let node = FakeNode::start().await.unwrap();
    let first = config(Role::ControlPlane, "v1.13.9");
    support::nodes::configure(&node, &first).await;
    let mut client = mutual(&node).await;
    let same = client
        .apply_configuration(first.as_bytes(), ApplyMode::NoReboot)
        .await
        .unwrap();
    assert_eq!(same.mode, ApplyMode::NoReboot);
    // Install settings change in place on Talos 1.13 (they matter at the next upgrade).
    let changed_install = first.replace("/dev/sda", "/dev/sdb");
    let install = client
        .apply_configuration(changed_install.as_bytes(), ApplyMode::NoReboot)
        .await
        .unwrap();
    assert_eq!(install.mode, ApplyMode::NoReboot);
    // Environment variables do not: refused in no-reboot mode, a reboot in auto mode.
    let with_env = config_for(
        "cp-1",
        Role::ControlPlane,
        "v1.13.9",
        &["machine:\n  env:\n    HTTP_PROXY: http://proxy:3128\n"],
    );
    let error = client
        .apply_configuration(with_env.as_bytes(), ApplyMode::NoReboot)
        .await
        .unwrap_err();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::Rejected), "{error}");
    assert!(
        error
            .to_string()
            .contains("can't be applied in immediate mode"),
        "{error}"
    );
    assert!(error.to_string().contains("machine.env"), "{error}");
    let auto = client
        .apply_configuration(with_env.as_bytes(), ApplyMode::Auto)
        .await
        .unwrap();
    assert_eq!(auto.mode, ApplyMode::Reboot);
    // Until it has rebooted, the node takes no further config.
    let again = client
        .apply_configuration(with_env.as_bytes(), ApplyMode::Auto)
        .await
        .unwrap_err();
    assert_eq!(again.api_kind(), Some(ApiErrorKind::NotReady), "{again}");
    assert!(again.to_string().contains("node is rebooting"), "{again}");
    node.stop().await;
}
