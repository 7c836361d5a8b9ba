//! A rolled update's gate against a fake node that restarts its kubelet, as Talos does
//! when a config applied in place changes the kubelet (a Kubernetes upgrade): the gate
//! holds the rollout until the kubelet is healthy again.

mod support;

use std::time::Duration;

use infraflux_lab::talos::FakeNode;
use infraflux_talos::api::ApplyMode;
use infraflux_talos::config::{Role, installer_image};
use infraflux_talos::upgrade::{RolloutOptions, Upgraded, node_health, upgrade_node};
use support::nodes::{SCHEMATIC, config_for, configure, identity, mutual, options, wait_until};

async fn kubelet_healthy(node: &FakeNode) -> bool {
    node_health(
        &node.endpoint(),
        Role::ControlPlane,
        &identity(),
        &options(),
    )
    .await
    .unwrap()
    .kubelet
}

#[tokio::test]
async fn a_kubelet_restarted_by_a_config_change_holds_the_rollout_until_it_is_back() {
    let node = FakeNode::start().await.unwrap();
    node.set_not_ready_window(Duration::from_secs(2));
    let config = config_for("cp-1", Role::ControlPlane, "v1.13.9", &[]);
    configure(&node, &config).await;
    wait_until("the kubelet to be healthy", || kubelet_healthy(&node)).await;

    let before = node_health(
        &node.endpoint(),
        Role::ControlPlane,
        &identity(),
        &options(),
    )
    .await
    .unwrap();
    assert!(before.kubelet);
    let upgraded = config.replace("kubelet:v1.33.1", "kubelet:v1.34.0");
    assert_ne!(upgraded, config);
    mutual(&node)
        .await
        .apply_configuration(upgraded.as_bytes(), ApplyMode::NoReboot)
        .await
        .unwrap();
    assert!(
        !kubelet_healthy(&node).await,
        "the kubelet restarts with its new image"
    );

    let outcome = upgrade_node(
        &node.endpoint(),
        Role::ControlPlane,
        &identity(),
        &installer_image(SCHEMATIC, "v1.13.9"),
        Some(before),
        &RolloutOptions {
            timeout: Duration::from_secs(20),
            interval: Duration::from_millis(50),
            connect: options(),
        },
    )
    .await
    .unwrap();
    assert_eq!(outcome, Upgraded::AlreadyThere);
    assert!(
        kubelet_healthy(&node).await,
        "the gate let the rollout go on while the kubelet restarted"
    );
}
