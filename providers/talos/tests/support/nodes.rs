#![allow(dead_code)] // each test file that includes this module uses a part of it
//! Fixtures for tests against `infraflux_lab::talos::FakeNode`: one secrets bundle per
//! test binary (RSA-4096 is slow), rendered configs, clients, and a bounded wait.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use infraflux_lab::talos::FakeNode;
use infraflux_talos::api::{ClientIdentity, ConnectOptions, Credentials, NodeClient};
use infraflux_talos::config::{ClusterSettings, NodeSettings, Renderer, Role, installer_image};
use infraflux_talos::secrets::ClusterSecrets;

pub const SCHEMATIC: &str = "abc";

pub fn secrets() -> &'static ClusterSecrets {
    static SECRETS: OnceLock<ClusterSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| ClusterSecrets::generate().unwrap())
}

pub fn options() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(10),
    }
}

pub fn identity() -> ClientIdentity {
    ClientIdentity::from_secrets(secrets())
}

/// A rendered machine config of the `lab` cluster.
pub fn config_for(hostname: &str, role: Role, version: &str, patches: &[&str]) -> String {
    let cluster = ClusterSettings {
        cluster_name: "lab".into(),
        endpoint: "https://10.0.0.10:6443".into(),
        talos_version: version.into(),
        kubernetes_version: "1.33.1".into(),
        installer_image: installer_image(SCHEMATIC, version),
        pod_cidr: "10.244.0.0/16".into(),
        service_cidr: "10.96.0.0/12".into(),
        vip: None,
    };
    let node = NodeSettings {
        hostname: hostname.into(),
        address: "10.0.0.11/24".into(),
        gateway: Some("10.0.0.1".into()),
        dns: vec!["1.1.1.1".into()],
        role,
        install_disk: "/dev/sda".into(),
        interface: "eth0".into(),
        patches: patches.iter().map(|p| p.to_string()).collect(),
    };
    Renderer::new(cluster, secrets())
        .unwrap()
        .render(&node)
        .unwrap()
}

pub fn config(role: Role, version: &str) -> String {
    config_for("cp-1", role, version, &[])
}

pub async fn mutual(node: &FakeNode) -> NodeClient {
    NodeClient::connect(
        &node.endpoint(),
        &Credentials::Mutual(identity()),
        &options(),
    )
    .await
    .unwrap()
}

pub async fn insecure(node: &FakeNode) -> NodeClient {
    NodeClient::connect(&node.endpoint(), &Credentials::Insecure, &options())
        .await
        .unwrap()
}

/// Apply `config` to a node in maintenance mode, as the provider's create does.
pub async fn configure(node: &FakeNode, config: &str) {
    insecure(node)
        .await
        .apply_configuration(config.as_bytes(), infraflux_talos::api::ApplyMode::Auto)
        .await
        .unwrap();
}

/// Poll `condition` until it holds; panics naming `what` after 20 s (a bound for a
/// stuck test, not a measurement).
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
