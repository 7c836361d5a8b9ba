//! Machine-config generation for 1,000 nodes with one cluster PKI (generated once, as
//! `talos_secrets` does). Budget: under one second for the 1,000 renderings.
//!
//! `cargo bench -p infraflux-talos --bench config_generation`

use std::time::Instant;

use infraflux_talos::config::{
    ClusterSettings, NodeSettings, Renderer, Role, installer_image, masked_yaml,
};
use infraflux_talos::secrets::ClusterSecrets;

const NODES: usize = 1000;
const BUDGET_SECONDS: f64 = 1.0;

fn node(index: usize) -> NodeSettings {
    let role = if index < 3 {
        Role::ControlPlane
    } else {
        Role::Worker
    };
    NodeSettings {
        hostname: format!("node-{index}"),
        address: format!(
            "10.{}.{}.{}/16",
            1 + index / 65536,
            (index / 256) % 256,
            index % 256
        ),
        gateway: Some("10.1.0.1".into()),
        dns: vec!["1.1.1.1".into(), "9.9.9.9".into()],
        role,
        install_disk: "/dev/sda".into(),
        interface: "eth0".into(),
        patches: vec!["machine:\n  kubelet:\n    extraArgs:\n      max-pods: '150'\n".into()],
    }
}

fn main() {
    let started = Instant::now();
    let secrets = ClusterSecrets::generate().expect("secrets");
    println!(
        "PKI generated once: {:.0} ms (RSA-4096 dominates)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let nodes: Vec<NodeSettings> = (0..NODES).map(node).collect();
    let mut over_budget = false;
    for version in ["v1.13.9", "v1.14.0-rc.1"] {
        let cluster = ClusterSettings {
            cluster_name: "bench".into(),
            endpoint: "https://10.1.0.10:6443".into(),
            talos_version: version.into(),
            kubernetes_version: "1.33.1".into(),
            installer_image: installer_image("0123456789abcdef", version),
            pod_cidr: "10.244.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
            vip: None,
        };
        let started = Instant::now();
        let renderer = Renderer::new(cluster, &secrets).expect("renderer");
        let mut bytes = 0;
        for node in &nodes {
            let documents = renderer.documents(node).expect("documents");
            bytes += infraflux_talos::config::to_yaml(&documents)
                .expect("yaml")
                .len();
            bytes += masked_yaml(&documents).expect("masked").len();
        }
        let seconds = started.elapsed().as_secs_f64();
        over_budget |= seconds >= BUDGET_SECONDS;
        println!(
            "talos {version}: {NODES} machine configs (+ masked renderings) in {:.0} ms ({:.2} ms/node, {:.1} MiB)",
            seconds * 1000.0,
            seconds * 1000.0 / NODES as f64,
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    if over_budget {
        println!("over the {BUDGET_SECONDS} s budget");
    }
}
