//! Shared fixtures for unit tests: one secrets bundle per test binary (RSA-4096 is slow).

use std::sync::OnceLock;

use crate::config::{ClusterSettings, NodeSettings, Role, installer_image};
use crate::secrets::ClusterSecrets;

pub(crate) fn secrets() -> &'static ClusterSecrets {
    static SECRETS: OnceLock<ClusterSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| ClusterSecrets::generate().expect("secrets generate"))
}

pub(crate) const SCHEMATIC: &str =
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

pub(crate) fn cluster_settings(talos_version: &str) -> ClusterSettings {
    ClusterSettings {
        cluster_name: "workload".into(),
        endpoint: "https://10.0.0.10:6443".into(),
        talos_version: talos_version.into(),
        kubernetes_version: "1.33.1".into(),
        installer_image: installer_image(SCHEMATIC, talos_version),
        pod_cidr: "10.244.0.0/16".into(),
        service_cidr: "10.96.0.0/12".into(),
        vip: None,
    }
}

pub(crate) fn node_settings(hostname: &str, address: &str, role: Role) -> NodeSettings {
    NodeSettings {
        hostname: hostname.into(),
        address: address.into(),
        gateway: Some("10.0.0.1".into()),
        dns: vec!["1.1.1.1".into(), "9.9.9.9".into()],
        role,
        install_disk: "/dev/sda".into(),
        interface: "eth0".into(),
        patches: Vec::new(),
    }
}
