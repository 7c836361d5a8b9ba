//! Day-2 calls against fake nodes that behave as real ones do: the not-ready window
//! after a config (Bootstrap retried through it), the apply mode in maintenance, the
//! TLS refusal of a missing client certificate, Upgrade through a reboot, Reset back to
//! maintenance, and etcd membership with quorum.

mod support;

use std::future::ready;
use std::time::Duration;

use infraflux_lab::talos::{Etcd, FakeNode, Stage};
use infraflux_talos::ApiErrorKind;
use infraflux_talos::api::{
    ApplyMode, BootstrapOutcome, ClientIdentity, Credentials, NodeClient, NodeMode, ResetOptions,
    UpgradeOptions, detect_mode,
};
use infraflux_talos::bootstrap::{Backoff, BootstrapOptions, bootstrap};
use infraflux_talos::config::{Role, installer_image};
use infraflux_talos::secrets::ClusterSecrets;
use support::nodes::{
    SCHEMATIC, config, config_for, configure, identity, insecure, mutual, options, secrets,
    wait_until,
};

/// "Until the test says so."
const HELD: Duration = Duration::from_secs(3600);

fn quick_retries(timeout: Duration) -> BootstrapOptions {
    BootstrapOptions {
        timeout,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        connect: options(),
    }
}

/// A single bootstrapped control plane, past its not-ready window.
async fn bootstrapped_control_plane(node: &FakeNode) {
    configure(node, &config(Role::ControlPlane, "v1.13.9")).await;
    node.become_ready();
    mutual(node).await.bootstrap().await.unwrap();
}

#[tokio::test]
async fn bootstrap_is_retried_through_the_not_ready_window_and_succeeds_once_ready() {
    let node = FakeNode::start().await.unwrap();
    node.set_not_ready_window(HELD);
    configure(&node, &config(Role::ControlPlane, "v1.13.9")).await;

    // Asked at once, the node says what a real one says.
    let error = mutual(&node).await.bootstrap().await.unwrap_err();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::NotReady), "{error}");
    assert!(
        error.to_string().contains("bootstrap is not available yet"),
        "{error}"
    );

    let endpoint = node.endpoint();
    let waiting = tokio::spawn(async move {
        bootstrap(
            &endpoint,
            &identity(),
            &quick_retries(Duration::from_secs(60)),
        )
        .await
    });
    wait_until("Bootstrap to be asked again", || {
        ready(node.bootstrap_calls() >= 3)
    })
    .await;
    assert_eq!(node.stage(), Stage::Configured);
    node.become_ready();
    let report = waiting.await.unwrap().unwrap();
    assert_eq!(report.outcome, BootstrapOutcome::Bootstrapped);
    assert!(report.attempts >= 2, "{report:?}");
    assert_eq!(node.stage(), Stage::Bootstrapped);

    // Asked again (lost state): AlreadyExists is success, at once.
    let again = bootstrap(
        &node.endpoint(),
        &identity(),
        &quick_retries(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(again.outcome, BootstrapOutcome::AlreadyBootstrapped);
    assert_eq!(again.attempts, 1);
    node.stop().await;
}

#[tokio::test]
async fn a_bootstrap_that_never_becomes_available_fails_after_the_timeout_saying_why() {
    let node = FakeNode::start().await.unwrap();
    node.set_not_ready_window(HELD);
    configure(&node, &config(Role::ControlPlane, "v1.13.9")).await;
    let error = bootstrap(
        &node.endpoint(),
        &identity(),
        &quick_retries(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("did not become available within"),
        "{message}"
    );
    assert!(
        message.contains("last answer: Bootstrap on") && message.contains("not available yet"),
        "{message}"
    );
    assert_eq!(node.stage(), Stage::Configured);
    node.stop().await;
}

#[tokio::test]
async fn bootstrap_on_a_worker_fails_at_once_instead_of_waiting() {
    let node = FakeNode::start().await.unwrap();
    node.emulate_trustd(&secrets().os_ca);
    node.set_not_ready_window(Duration::ZERO);
    configure(&node, &config(Role::Worker, "v1.13.9")).await;
    let error = bootstrap(
        &node.endpoint(),
        &identity(),
        &quick_retries(Duration::from_secs(600)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::Rejected), "{error}");
    assert!(
        error
            .to_string()
            .contains("bootstrap is only available on control plane nodes"),
        "{error}"
    );
    assert_eq!(node.bootstrap_calls(), 1);
    node.stop().await;
}

#[tokio::test]
async fn an_apply_in_maintenance_mode_is_answered_no_reboot_whatever_was_asked() {
    for requested in [ApplyMode::Auto, ApplyMode::Reboot, ApplyMode::NoReboot] {
        let node = FakeNode::start().await.unwrap();
        let outcome = insecure(&node)
            .await
            .apply_configuration(config(Role::ControlPlane, "v1.13.9").as_bytes(), requested)
            .await
            .unwrap();
        assert_eq!(outcome.mode, ApplyMode::NoReboot, "{requested:?}");
        assert_eq!(outcome.details, "Applied configuration without a reboot");
        assert_eq!(node.stage(), Stage::Configured);
        assert!(!node.is_down());
        assert_eq!(node.reboots(), 0);
        node.stop().await;
    }
}

#[tokio::test]
async fn a_configured_node_refuses_a_missing_or_foreign_certificate_in_the_handshake() {
    let node = FakeNode::start().await.unwrap();
    configure(&node, &config(Role::ControlPlane, "v1.13.9")).await;

    let missing = async {
        NodeClient::connect(&node.endpoint(), &Credentials::Insecure, &options())
            .await?
            .version()
            .await
    }
    .await
    .unwrap_err();
    assert_eq!(
        missing.api_kind(),
        Some(ApiErrorKind::Unauthenticated),
        "{missing}"
    );
    let message = missing.to_string();
    assert!(
        message.contains("refused the TLS handshake because no client certificate was sent"),
        "{message}"
    );
    // A TLS alert, not a gRPC answer: no call reached the node's API.
    assert!(message.contains("CertificateRequired"), "{message}");
    assert!(
        !message.contains("client certificate required once"),
        "{message}"
    );

    let other =
        ClusterSecrets::generate_with_service_account_key(secrets().service_account_key.clone())
            .unwrap();
    let foreign = async {
        NodeClient::connect(
            &node.endpoint(),
            &Credentials::Mutual(ClientIdentity::from_secrets(&other)),
            &options(),
        )
        .await?
        .version()
        .await
    }
    .await
    .unwrap_err();
    assert!(foreign.to_string().contains("certificate"), "{foreign}");

    // Without our admin certificate, detecting the mode says what is wrong.
    let error = detect_mode(&node.endpoint(), None, &options())
        .await
        .unwrap_err();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::Unauthenticated));
    assert!(error.to_string().contains("another cluster"), "{error}");
    node.stop().await;
}

#[tokio::test]
async fn upgrade_goes_through_a_reboot_and_comes_back_on_the_new_version() {
    let node = FakeNode::start().await.unwrap();
    bootstrapped_control_plane(&node).await;
    node.set_reboot_window(HELD);
    let mut client = mutual(&node).await;
    assert_eq!(client.version().await.unwrap().tag, "v1.13.9");

    let error = client
        .upgrade(&UpgradeOptions::new("ghcr.io/siderolabs/installer:latest"))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("error validating installer image"),
        "{error}"
    );
    assert!(!node.is_down());

    let ack = client
        .upgrade(&UpgradeOptions::new(installer_image(
            SCHEMATIC,
            "v1.14.0-rc.1",
        )))
        .await
        .unwrap();
    assert_eq!(ack.ack, "Upgrade request received");
    assert!(!ack.actor_id.is_empty());

    // Rebooting: the open connection breaks and new ones are reset.
    wait_until("the node to go down", || ready(node.is_down())).await;
    assert!(client.version().await.is_err());
    let refused = NodeClient::connect(
        &node.endpoint(),
        &Credentials::Mutual(identity()),
        &options(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.api_kind(),
        Some(ApiErrorKind::Unreachable),
        "{refused}"
    );

    node.finish_reboot();
    let version = mutual(&node).await.version().await.unwrap();
    assert_eq!(version.tag, "v1.14.0-rc.1");
    assert_eq!(node.version(), "v1.14.0-rc.1");
    assert_eq!(node.reboots(), 1);
    // Still configured and still the cluster's etcd member.
    node.become_ready();
    assert_eq!(node.stage(), Stage::Bootstrapped);
    let members = mutual(&node).await.etcd_members().await.unwrap();
    assert_eq!(members.len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn reset_returns_the_node_to_maintenance_on_its_boot_version() {
    let node = FakeNode::start().await.unwrap();
    node.set_version("v1.13.8");
    bootstrapped_control_plane(&node).await;
    assert_eq!(node.version(), "v1.13.9");
    node.set_reboot_window(HELD);

    // A graceful reset leaves etcd first; etcd refuses to lose its last member, so the
    // reset stops there and the node stays as it was.
    mutual(&node)
        .await
        .reset(&ResetOptions::default())
        .await
        .unwrap();
    wait_until("the reset sequence to fail", || {
        ready(!node.sequence_errors().is_empty())
    })
    .await;
    let errors = node.sequence_errors();
    assert!(
        errors[0].contains("re-configuration failed due to not enough started members"),
        "{errors:?}"
    );
    assert!(!node.is_down());
    mutual(&node).await.version().await.unwrap();

    // Not graceful: wiped, rebooted, back in maintenance mode.
    let actor = mutual(&node)
        .await
        .reset(&ResetOptions {
            graceful: false,
            ..ResetOptions::default()
        })
        .await
        .unwrap();
    assert!(!actor.is_empty());
    wait_until("the node to go down", || ready(node.is_down())).await;
    node.finish_reboot();
    assert_eq!(
        detect_mode(&node.endpoint(), Some(&identity()), &options())
            .await
            .unwrap(),
        NodeMode::Maintenance
    );
    assert_eq!(
        insecure(&node).await.version().await.unwrap().tag,
        "v1.13.8"
    );
    assert_eq!(node.stage(), Stage::Maintenance);
    assert!(node.config().is_none());
    node.stop().await;
}

#[tokio::test]
async fn etcd_members_are_listed_left_and_removed_under_quorum() {
    let etcd = Etcd::new();
    let mut nodes = Vec::new();
    for hostname in ["cp-1", "cp-2", "cp-3"] {
        let node = FakeNode::start().await.unwrap();
        node.use_etcd(&etcd);
        node.set_not_ready_window(Duration::ZERO);
        configure(
            &node,
            &config_for(hostname, Role::ControlPlane, "v1.13.9", &[]),
        )
        .await;
        nodes.push(node);
    }
    let [cp1, cp2, cp3] = &nodes[..] else {
        unreachable!()
    };
    mutual(cp1).await.bootstrap().await.unwrap();
    // The other control planes join once bootstrapped (and ready).
    let mut client = mutual(cp1).await;
    let members = client.etcd_members().await.unwrap();
    let mut hostnames: Vec<&str> = members.iter().map(|m| m.hostname.as_str()).collect();
    hostnames.sort();
    assert_eq!(hostnames, ["cp-1", "cp-2", "cp-3"]);
    let id = |name: &str| members.iter().find(|m| m.hostname == name).unwrap().id;
    // A later Bootstrap on a member is AlreadyExists.
    assert_eq!(
        mutual(cp2).await.bootstrap().await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );

    // cp-3 goes down for an upgrade (all healthy: allowed).
    cp3.set_reboot_window(HELD);
    mutual(cp3)
        .await
        .upgrade(&UpgradeOptions::new(installer_image(SCHEMATIC, "v1.13.10")))
        .await
        .unwrap();
    wait_until("cp-3 to go down", || ready(cp3.is_down())).await;
    assert_eq!(client.etcd_members().await.unwrap().len(), 3);

    // With cp-3 down, cp-2 may not leave (one started member of two left) and cp-1
    // may not upgrade.
    let refused = mutual(cp2).await.etcd_leave_cluster().await.unwrap_err();
    assert_eq!(refused.api_kind(), Some(ApiErrorKind::Other), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("re-configuration failed due to not enough started members"),
        "{refused}"
    );
    let refused = client
        .upgrade(&UpgradeOptions::new(installer_image(SCHEMATIC, "v1.13.10")))
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("etcd member {:016x} is not healthy", id("cp-3"))),
        "{refused}"
    );

    // An unknown member is NotFound; the down member can be removed.
    let unknown = client.etcd_remove_member(42).await.unwrap_err();
    assert_eq!(
        unknown.api_kind(),
        Some(ApiErrorKind::NotFound),
        "{unknown}"
    );
    client.etcd_remove_member(id("cp-3")).await.unwrap();
    assert_eq!(client.etcd_members().await.unwrap().len(), 2);

    // Two members: an upgrade would lose quorum.
    let refused = client
        .upgrade(&UpgradeOptions::new(installer_image(SCHEMATIC, "v1.13.10")))
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("etcd member count(2) is insufficient to maintain quorum"),
        "{refused}"
    );

    // cp-2 leaves; the last member never can.
    mutual(cp2).await.etcd_leave_cluster().await.unwrap();
    let members = client.etcd_members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].hostname, "cp-1");
    let last = client.etcd_leave_cluster().await.unwrap_err();
    assert!(
        last.to_string()
            .contains("re-configuration failed due to not enough started members"),
        "{last}"
    );

    // cp-3 comes back with the data of a removed member: it does not rejoin.
    cp3.finish_reboot();
    assert_eq!(mutual(cp3).await.version().await.unwrap().tag, "v1.13.10");
    assert_eq!(client.etcd_members().await.unwrap().len(), 1);
    for node in nodes {
        node.stop().await;
    }
}
