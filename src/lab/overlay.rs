//! Which Proxmox nodes and storages the lab simulates and which addresses each cluster
//! gets, read from the configuration itself; and the overlay that points that
//! configuration at the lab.
//!
//! Every (environment, cluster) pair gets its own `127.N.0.0/16`: nodes from
//! `127.N.0.10`, the VIP `127.N.0.5`, the gateway `127.N.0.1` (Linux routes all of
//! 127/8 to loopback, so each fake Talos node can listen on its VM's own address). The
//! overlay sets the Proxmox connection (`endpoint`, `token` read from a 0600 file beside
//! it and never written into YAML, `tls.fingerprint`) in `defaults/lab.yaml`, so that the
//! main defaults' `${env:PROXMOX_TOKEN}` is never needed, and again with the network in
//! one file per cluster, `clusters/<name>.yaml`, under `environments:` (the most
//! specific layer, which no layer of the configuration can override). Nothing else
//! differs from a real run.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::Selection;
use crate::model::Model;
use crate::operation::load::load_model;

/// One (environment, cluster) pair and its lab network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabCluster {
    pub environment: String,
    pub cluster: String,
    /// The second octet: the pair's network is `127.<octet>.0.0/16`.
    pub octet: u8,
}

impl LabCluster {
    pub fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, 0, 5)
    }

    pub fn first_node(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, 0, 10)
    }
}

/// What the lab simulates for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabLayout {
    /// The environments read, in promotion order (dev → staging → prod).
    pub environments: Vec<String>,
    pub nodes: Vec<String>,
    pub disk_storages: Vec<String>,
    pub image_storages: Vec<String>,
    pub clusters: Vec<LabCluster>,
}

/// Where the configuration's `${env:…}` references have no value, a stand-in: reading
/// the layout needs no secret (the overlay replaces the token anyway). InfraFlux's own
/// settings (the age identity that opens `${age:…}` values, say) are never made up:
/// a stand-in there would hide the fallback to the state's identity.
struct Placeholders;

impl crate::config::Variables for Placeholders {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().or_else(|| {
            (!name.starts_with("INFRAFLUX_")).then(|| "lab@pve!placeholder=unset".to_string())
        })
    }
}

/// Read the configuration (without overlays) for `environment` (every environment when
/// `None`): the Proxmox nodes and storages its clusters use, and a free network per
/// pair. `Err` carries the configuration's problems, rendered.
pub fn layout(config_dir: &Path, environment: Option<&str>) -> Result<LabLayout, String> {
    let selection = Selection {
        environment: environment.map(str::to_string),
        cluster: None,
    };
    let (config, model, problems) = load_model(config_dir, &selection, &Placeholders, false);
    let Some(model) = model else {
        return Err(crate::diag::render_problems(
            &problems,
            config.sources(),
            false,
        ));
    };
    Ok(layout_of(&model, free_octets()))
}

impl LabLayout {
    /// The environments up to `environment` in promotion order, each applied before the
    /// next (the promotion guard refuses staging before dev), and only their clusters.
    pub fn promotion_to(&self, environment: &str) -> Option<LabLayout> {
        let end = self.environments.iter().position(|e| e == environment)?;
        let environments = self.environments[..=end].to_vec();
        Some(LabLayout {
            clusters: self
                .clusters
                .iter()
                .filter(|c| environments.contains(&c.environment))
                .cloned()
                .collect(),
            environments,
            ..self.clone()
        })
    }
}

fn layout_of(model: &Model, mut octets: impl Iterator<Item = u8>) -> LabLayout {
    let mut nodes = BTreeSet::new();
    let mut disk_storages = BTreeSet::new();
    let mut image_storages = BTreeSet::new();
    let mut clusters = Vec::new();
    for cluster in model.clusters() {
        nodes.extend(cluster.proxmox.nodes.iter().cloned());
        disk_storages.insert(cluster.proxmox.storage.clone());
        image_storages.insert(cluster.proxmox.image_storage.clone());
        if let Some(octet) = octets.next() {
            clusters.push(LabCluster {
                environment: cluster.environment.clone(),
                cluster: cluster.name.clone(),
                octet,
            });
        }
    }
    LabLayout {
        environments: model.environments.iter().map(|e| e.name.clone()).collect(),
        nodes: nodes.into_iter().collect(),
        disk_storages: disk_storages.into_iter().collect(),
        image_storages: image_storages.into_iter().collect(),
        clusters,
    }
}

/// Second octets whose VIP and first node ports are free now, each reserved for as long
/// as this process runs: a listener on `127.N.255.254` (an address no lab machine gets)
/// that a second lab starting at the same instant cannot bind. Checking for free ports
/// alone was not enough: machines bind their addresses only when their VMs start, so
/// two labs could both find a network free and then collide.
fn free_octets() -> impl Iterator<Item = u8> {
    static RESERVED: std::sync::Mutex<Vec<TcpListener>> = std::sync::Mutex::new(Vec::new());
    // Start somewhere that depends on the process, so labs rarely probe the same octets.
    let start = (std::process::id().wrapping_mul(2_654_435_761) % 150) as u16;
    (0..150u16)
        .map(move |i| (100 + (start + i) % 150) as u8)
        .filter(|octet| {
            let free = |address: Ipv4Addr, port: u16| {
                TcpListener::bind(SocketAddrV4::new(address, port)).is_ok()
            };
            let reservation = TcpListener::bind(SocketAddrV4::new(
                Ipv4Addr::new(127, *octet, 255, 254),
                super::machines::TALOS_PORT,
            ));
            let Ok(reservation) = reservation else {
                return false;
            };
            let usable = free(Ipv4Addr::new(127, *octet, 0, 5), 6443)
                && free(
                    Ipv4Addr::new(127, *octet, 0, 10),
                    super::machines::TALOS_PORT,
                );
            if usable && let Ok(mut reserved) = RESERVED.lock() {
                reserved.push(reservation);
            }
            usable
        })
}

/// The simulator's connection, as the overlay sets it.
pub struct Connection<'a> {
    pub endpoint: &'a str,
    pub token: &'a str,
    pub fingerprint: &'a str,
}

/// The token file beside the cluster files (`${file:../proxmox-token}` from them).
pub const TOKEN_FILE: &str = "proxmox-token";

/// Write the overlay into `dir` (replacing what was there).
pub fn write_overlay(
    dir: &Path,
    layout: &LabLayout,
    connection: &Connection<'_>,
) -> std::io::Result<Vec<PathBuf>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir.join("clusters"))?;
    std::fs::create_dir_all(dir.join("defaults"))?;
    crate::private_file::write(&dir.join(TOKEN_FILE), connection.token.as_bytes())?;
    let proxmox = json!({
        "endpoint": connection.endpoint,
        "token": format!("${{file:../{TOKEN_FILE}}}"),
        "tls": {"ca_file": null, "insecure": null, "fingerprint": connection.fingerprint},
    });
    let defaults = dir.join("defaults").join("lab.yaml");
    std::fs::write(
        &defaults,
        format!(
            "# Written by `infraflux lab`: the local lab's Proxmox VE simulator.\n# Removed by `infraflux lab down`; do not edit.\n{}",
            serde_yaml::to_string(&json!({ "proxmox": proxmox })).map_err(std::io::Error::other)?
        ),
    )?;
    // The environments it serves: any other would reach the simulator with its real
    // addresses (config::layers::Served).
    let served = dir.join(crate::config::layers::OVERLAY_FILE);
    std::fs::write(
        &served,
        format!(
            "# Written by `infraflux lab`: the environments this lab runs; others are refused.\n# Removed by `infraflux lab down`; do not edit.\n{}",
            serde_yaml::to_string(&json!({ "environments": layout.environments }))
                .map_err(std::io::Error::other)?
        ),
    )?;
    let mut written = vec![defaults, served];
    let mut names: Vec<&str> = layout.clusters.iter().map(|c| c.cluster.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut environments = serde_json::Map::new();
        for pair in layout.clusters.iter().filter(|c| c.cluster == name) {
            let network = format!("127.{}.0", pair.octet);
            environments.insert(
                pair.environment.clone(),
                json!({
                    "proxmox": proxmox,
                    "network": {
                        "nodes": {
                            "cidr": format!("127.{}.0.0/16", pair.octet),
                            "gateway": format!("{network}.1"),
                            "start": pair.first_node().to_string(),
                        },
                        "vip": pair.vip().to_string(),
                    },
                }),
            );
        }
        let text = format!(
            "# Written by `infraflux lab`: points cluster `{name}` at the local lab.\n# Removed by `infraflux lab down`; do not edit.\n{}",
            serde_yaml::to_string(&json!({ "environments": environments }))
                .map_err(std::io::Error::other)?
        );
        let path = dir.join("clusters").join(format!("{name}.yaml"));
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Model {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let (_, model, problems) = load_model(&dir, &Selection::default(), &Placeholders, false);
        model.unwrap_or_else(|| panic!("{problems:?}"))
    }

    #[test]
    fn every_pair_gets_its_own_network_and_the_configured_nodes_and_storages() {
        let layout = layout_of(&example(), 100u8..);
        assert_eq!(layout.environments, ["dev", "staging", "prod"]);
        assert_eq!(layout.nodes, ["pve1", "pve2", "pve3"]);
        assert_eq!(layout.disk_storages, ["local-lvm"]);
        assert_eq!(layout.image_storages, ["local"]);
        let pairs: Vec<(String, String, u8)> = layout
            .clusters
            .iter()
            .map(|c| (c.environment.clone(), c.cluster.clone(), c.octet))
            .collect();
        assert_eq!(pairs.len(), 5, "{pairs:?}");
        assert!(pairs.contains(&("dev".into(), "workload".into(), 100)));
        let octets: BTreeSet<u8> = pairs.iter().map(|p| p.2).collect();
        assert_eq!(octets.len(), 5);
    }

    #[test]
    fn the_overlay_points_the_configuration_at_the_lab_without_writing_the_token_into_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay");
        let layout = LabLayout {
            environments: vec!["dev".into()],
            nodes: vec!["pve1".into()],
            disk_storages: vec!["local-lvm".into()],
            image_storages: vec!["local".into()],
            clusters: vec![LabCluster {
                environment: "dev".into(),
                cluster: "workload".into(),
                octet: 123,
            }],
        };
        let token = "root@pam!lab=0f1e2d3c-secret";
        let fingerprint = ["AB"; 32].join(":");
        write_overlay(
            &overlay,
            &layout,
            &Connection {
                endpoint: "https://127.0.0.1:8006",
                token,
                fingerprint: &fingerprint,
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(overlay.join("clusters/workload.yaml")).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("127.123.0.0/16"), "{text}");
        assert_eq!(
            std::fs::read_to_string(overlay.join(TOKEN_FILE)).unwrap(),
            token
        );
        // The overlay merged onto the bundled configuration: the lab's values win, with
        // the overlay file as their origin, and PROXMOX_TOKEN is not needed.
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let overlays = [overlay.clone()];
        struct NoVariables;
        impl crate::config::Variables for NoVariables {
            fn var(&self, _: &str) -> Option<String> {
                None
            }
        }
        let selection = Selection {
            environment: Some("dev".into()),
            cluster: None,
        };
        let (loaded, model, problems) = load_model(
            crate::config::ConfigPaths {
                dir: &config,
                overlays: &overlays,
                file_dirs: &[],
            },
            &selection,
            &NoVariables,
            false,
        );
        let model = model.unwrap_or_else(|| panic!("{problems:?}"));
        let cluster = model.clusters().next().unwrap();
        assert_eq!(cluster.proxmox.endpoint.as_str(), "https://127.0.0.1:8006/");
        assert_eq!(cluster.proxmox.token.expose(), token);
        assert_eq!(
            cluster.proxmox.tls,
            crate::model::Tls::Fingerprint(fingerprint.clone())
        );
        assert_eq!(cluster.network.vip, Ipv4Addr::new(127, 123, 0, 5));
        assert_eq!(cluster.nodes[0].address, Ipv4Addr::new(127, 123, 0, 10));
        let effective = &loaded.effective[0].node;
        let origin = effective
            .lookup(&crate::config::KeyPath::parse("network.vip"))
            .unwrap()
            .origin;
        assert!(
            loaded
                .sources()
                .path(origin.file)
                .ends_with("overlay/clusters/workload.yaml")
        );
        // An environment the lab does not run is refused: it would reach the simulator
        // with its real 10.x addresses.
        let staging = Selection {
            environment: Some("staging".into()),
            cluster: None,
        };
        let (_, model, problems) = load_model(
            crate::config::ConfigPaths {
                dir: &config,
                overlays: &overlays,
                file_dirs: &[],
            },
            &staging,
            &NoVariables,
            false,
        );
        assert!(model.is_none());
        let refused: Vec<&str> = problems
            .iter()
            .filter(|p| p.code == "config::environment-not-served")
            .map(|p| p.message.as_str())
            .collect();
        assert_eq!(refused.len(), 1, "{problems:?}");
        assert!(
            refused[0].ends_with("is for dev only, not `staging`"),
            "{refused:?}"
        );
    }
}
