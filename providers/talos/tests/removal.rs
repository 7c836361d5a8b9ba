//! Taking a node out of its cluster (scale in) against fake nodes that keep etcd's
//! quorum rules: a control plane leaves etcd on its way out and powers off, a worker
//! powers off, the last member is refused before anything is touched, a reset that
//! etcd stops (quorum) is reported rather than waited on forever, and an unreachable
//! control plane is never given up on silently.

mod support;

use std::future::ready;
use std::time::Duration;

use infraflux_lab::talos::{Etcd, FakeNode, Stage};
use infraflux_talos::ApiErrorKind;
use infraflux_talos::api::UpgradeOptions;
use infraflux_talos::bootstrap::Backoff;
use infraflux_talos::config::{Role, installer_image};
use infraflux_talos::removal::{Removal, RemovalOptions, remove_node};
use support::nodes::{
    SCHEMATIC, config_for, configure, identity, mutual, options, secrets, wait_until,
};

/// "Until the test says so."
const HELD: Duration = Duration::from_secs(3600);

fn within(timeout: Duration) -> RemovalOptions {
    RemovalOptions {
        timeout,
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
        connect: options(),
        peers: Vec::new(),
    }
}

/// Nodes of one cluster, configured; the first control plane bootstrapped, the others
/// joined.
async fn cluster(nodes: &[(&str, Role)]) -> Vec<FakeNode> {
    let etcd = Etcd::new();
    let mut started = Vec::new();
    for (hostname, role) in nodes {
        let node = FakeNode::start().await.unwrap();
        node.use_etcd(&etcd);
        node.set_not_ready_window(Duration::ZERO);
        if *role == Role::Worker {
            // A worker's API certificate comes from a control plane's trustd.
            node.emulate_trustd(&secrets().os_ca);
        }
        configure(&node, &config_for(hostname, *role, "v1.13.9", &[])).await;
        started.push(node);
    }
    mutual(&started[0]).await.bootstrap().await.unwrap();
    started
}

async fn member_names(node: &FakeNode) -> Vec<String> {
    let mut names: Vec<String> = mutual(node)
        .await
        .etcd_members()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.hostname)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_control_plane_leaves_etcd_and_powers_off_and_a_worker_powers_off() {
    let nodes = cluster(&[
        ("cp-1", Role::ControlPlane),
        ("cp-2", Role::ControlPlane),
        ("cp-3", Role::ControlPlane),
        ("general-1", Role::Worker),
    ])
    .await;
    let [cp1, cp2, cp3, worker] = &nodes[..] else {
        unreachable!()
    };
    assert_eq!(member_names(cp1).await, ["cp-1", "cp-2", "cp-3"]);

    let removal = remove_node(
        &cp3.endpoint(),
        "cp-3",
        Role::ControlPlane,
        &identity(),
        &within(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(removal, Removal::Reset);
    assert_eq!(
        cp3.stage(),
        Stage::Maintenance,
        "cp-3 is wiped when the removal ends"
    );
    wait_until("cp-3 to power off", || ready(cp3.is_down())).await;
    assert_eq!(member_names(cp1).await, ["cp-1", "cp-2"]);

    // Two members: one may still leave (the one left is a started quorum of its own).
    remove_node(
        &cp2.endpoint(),
        "cp-2",
        Role::ControlPlane,
        &identity(),
        &within(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(member_names(cp1).await, ["cp-1"]);

    let removal = remove_node(
        &worker.endpoint(),
        "general-1",
        Role::Worker,
        &identity(),
        &within(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(removal, Removal::Reset);
    assert_eq!(worker.stage(), Stage::Maintenance);
    wait_until("the worker to power off", || ready(worker.is_down())).await;
    assert!(
        cp1.sequence_errors().is_empty(),
        "{:?}",
        cp1.sequence_errors()
    );
}

#[tokio::test]
async fn the_last_member_is_refused_before_anything_is_touched() {
    let nodes = cluster(&[("cp-1", Role::ControlPlane)]).await;
    let error = remove_node(
        &nodes[0].endpoint(),
        "cp-1",
        Role::ControlPlane,
        &identity(),
        &within(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::Rejected), "{error}");
    assert!(error.to_string().contains("etcd's last member"), "{error}");
    assert!(!nodes[0].is_down());
    assert_eq!(nodes[0].stage(), Stage::Bootstrapped);
    assert_eq!(member_names(&nodes[0]).await, ["cp-1"]);
}

#[tokio::test]
async fn a_reset_that_etcd_stops_is_reported_and_the_node_is_left_as_it_is() {
    let nodes = cluster(&[
        ("cp-1", Role::ControlPlane),
        ("cp-2", Role::ControlPlane),
        ("cp-3", Role::ControlPlane),
    ])
    .await;
    let [cp1, cp2, cp3] = &nodes[..] else {
        unreachable!()
    };
    // cp-3 is down (upgrading): cp-2 leaving would leave one started member of two.
    cp3.set_reboot_window(HELD);
    mutual(cp3)
        .await
        .upgrade(&UpgradeOptions::new(installer_image(SCHEMATIC, "v1.13.10")))
        .await
        .unwrap();
    wait_until("cp-3 to go down", || ready(cp3.is_down())).await;

    let error = remove_node(
        &cp2.endpoint(),
        "cp-2",
        Role::ControlPlane,
        &identity(),
        &within(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("to finish its reset"), "{text}");
    assert!(text.contains("quorum"), "{text}");
    assert!(!cp2.is_down(), "the node is left running");
    assert_eq!(cp2.stage(), Stage::Configured, "and configured");
    assert!(
        cp2.sequence_errors()
            .iter()
            .any(|e| e.contains("not enough started members")),
        "{:?}",
        cp2.sequence_errors()
    );
    assert_eq!(member_names(cp1).await, ["cp-1", "cp-2", "cp-3"]);
}

#[tokio::test]
async fn an_unreachable_control_plane_is_an_error_and_an_unreachable_worker_is_not() {
    let nodes = cluster(&[("cp-1", Role::ControlPlane), ("general-1", Role::Worker)]).await;
    let mut nodes = nodes.into_iter();
    let (cp1, worker) = (nodes.next().unwrap(), nodes.next().unwrap());
    let (cp_endpoint, worker_endpoint) = (cp1.endpoint(), worker.endpoint());
    cp1.stop().await;
    worker.stop().await;

    let error = remove_node(
        &cp_endpoint,
        "cp-1",
        Role::ControlPlane,
        &identity(),
        &within(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert_eq!(error.api_kind(), Some(ApiErrorKind::Unreachable), "{text}");
    assert!(text.contains("cannot leave etcd"), "{text}");
    assert!(text.contains("etcd remove-member"), "{text}");

    let removal = remove_node(
        &worker_endpoint,
        "general-1",
        Role::Worker,
        &identity(),
        &within(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert!(matches!(removal, Removal::Unreachable(_)), "{removal:?}");
}

#[tokio::test]
async fn a_control_plane_that_left_already_is_found_gone_through_a_peer() {
    let nodes = cluster(&[
        ("cp-1", Role::ControlPlane),
        ("cp-2", Role::ControlPlane),
        ("cp-3", Role::ControlPlane),
        ("cp-4", Role::ControlPlane),
    ])
    .await;
    let mut nodes = nodes.into_iter();
    let (cp1, _cp2, cp3, cp4) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    let with_peer = RemovalOptions {
        peers: vec![cp1.endpoint()],
        ..within(Duration::from_secs(30))
    };
    let first = remove_node(
        &cp4.endpoint(),
        "cp-4",
        Role::ControlPlane,
        &identity(),
        &with_peer,
    )
    .await
    .unwrap();
    assert_eq!(first, Removal::Reset);
    wait_until("cp-4 to power off", || ready(cp4.is_down())).await;

    // The run was killed before state recorded the removal: the retry finds cp-4 off,
    // and etcd (through cp-1) no longer lists it.
    let retried = remove_node(
        &cp4.endpoint(),
        "cp-4",
        Role::ControlPlane,
        &identity(),
        &with_peer,
    )
    .await
    .unwrap();
    assert_eq!(retried, Removal::AlreadyLeft);

    // A control plane that does not answer but that etcd still lists is not given up
    // on: deleting its VM would leave a dead member.
    let cp3_endpoint = cp3.endpoint();
    cp3.stop().await;
    let error = remove_node(
        &cp3_endpoint,
        "cp-3",
        Role::ControlPlane,
        &identity(),
        &with_peer,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("cannot leave etcd"), "{error}");
    assert_eq!(member_names(&cp1).await, ["cp-1", "cp-2", "cp-3"]);
}
