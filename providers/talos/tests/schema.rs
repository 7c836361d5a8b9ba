//! Every generated machine config validates against the official Talos JSON schema for
//! its version, one YAML document at a time (the schemas are a `oneOf` over kinds).
//!
//! Schemas come from `shared/schemas/` next to the repository clone (skipped, with the
//! reason printed, when that folder is absent).

mod support;

use std::sync::OnceLock;

use infraflux_talos::config::{
    ClusterSettings, NodeSettings, Renderer, Role, installer_image, parse_documents,
};
use infraflux_talos::secrets::ClusterSecrets;
use serde_json::Value;
use support::schema::{Schema, errors, schema};

fn secrets() -> &'static ClusterSecrets {
    static SECRETS: OnceLock<ClusterSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| ClusterSecrets::generate().unwrap())
}

fn cluster(talos_version: &str) -> ClusterSettings {
    ClusterSettings {
        cluster_name: "workload".into(),
        endpoint: "https://10.0.0.10:6443".into(),
        talos_version: talos_version.into(),
        kubernetes_version: "1.33.1".into(),
        installer_image: installer_image(
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
            talos_version,
        ),
        pod_cidr: "10.244.0.0/16".into(),
        service_cidr: "10.96.0.0/12".into(),
        vip: None,
    }
}

fn node(hostname: &str, address: &str, role: Role) -> NodeSettings {
    NodeSettings {
        hostname: hostname.into(),
        address: address.into(),
        gateway: Some("10.0.0.1".into()),
        dns: vec!["1.1.1.1".into()],
        role,
        install_disk: "/dev/sda".into(),
        interface: "eth0".into(),
        patches: Vec::new(),
    }
}

/// 3 control planes + 2 workers.
fn ha_cluster() -> Vec<NodeSettings> {
    vec![
        node("cp-1", "10.0.0.11/24", Role::ControlPlane),
        node("cp-2", "10.0.0.12/24", Role::ControlPlane),
        node("cp-3", "10.0.0.13/24", Role::ControlPlane),
        node("worker-1", "10.0.0.21/24", Role::Worker),
        node("worker-2", "10.0.0.22/24", Role::Worker),
    ]
}

/// A single control plane, no gateway or DNS, with a user patch.
fn dev_cluster() -> Vec<NodeSettings> {
    let mut dev = node("dev", "192.168.10.5/24", Role::ControlPlane);
    dev.gateway = None;
    dev.dns = Vec::new();
    dev.install_disk = "/dev/vda".into();
    dev.interface = "ens18".into();
    dev.patches = vec![
        "apiVersion: v1alpha1\nkind: LinkConfig\nname: ens18\nmtu: 1450\n".into(),
        "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.cloudflare.com]\n"
            .into(),
    ];
    vec![dev]
}

fn assert_valid(schema: &Schema, nodes: &[NodeSettings]) -> usize {
    let renderer = Renderer::new(cluster(schema.version), secrets()).unwrap();
    let mut validated = 0;
    for node in nodes {
        let yaml = renderer.render(node).unwrap();
        let documents = parse_documents(&yaml).unwrap();
        assert!(
            documents.len() > 1,
            "{}: expected several documents",
            node.hostname
        );
        for document in documents {
            let kind = document
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("v1alpha1")
                .to_string();
            let errors = errors(schema, document);
            assert!(
                errors.is_empty(),
                "{} {} document {kind} is invalid:\n{}",
                schema.version,
                node.hostname,
                errors.join("\n")
            );
            validated += 1;
        }
    }
    validated
}

#[test]
fn talos_1_13_configs_validate_for_ha_and_dev_clusters() {
    let Some(schema) = schema("talos-config.v1.13.9.schema.json", "v1.13.9") else {
        return;
    };
    assert!(assert_valid(&schema, &ha_cluster()) >= 5 * 4);
    assert!(assert_valid(&schema, &dev_cluster()) >= 5);
}

#[test]
fn talos_1_14_configs_validate_for_ha_and_dev_clusters() {
    let Some(schema) = schema("talos-config.v1.14.0-rc.1.schema.json", "v1.14.0-rc.1") else {
        return;
    };
    assert!(assert_valid(&schema, &ha_cluster()) >= 5 * 10);
    assert!(assert_valid(&schema, &dev_cluster()) >= 20);
}

#[test]
fn the_schemas_catch_a_broken_document() {
    // Guards the two tests above against a validator that accepts anything.
    let Some(schema) = schema("talos-config.v1.13.9.schema.json", "v1.13.9") else {
        return;
    };
    let broken = serde_json::json!({"version": "v1alpha1", "machine": {"type": "master-of-none"}});
    assert!(!schema.validator.is_valid(&broken));
    let unknown_field = serde_json::json!({"apiVersion": "v1alpha1", "kind": "KubePrismConfig", "port": 7445, "enabled": true});
    let schema_14 = self::schema("talos-config.v1.14.0-rc.1.schema.json", "v1.14.0-rc.1").unwrap();
    assert!(!schema_14.validator.is_valid(&unknown_field));
}
