//! The local lab (feature `lab`): the whole pipeline on loopback, with the real
//! providers. Only the endpoints differ from a real run.
//!
//! The simulators themselves live in the `infraflux-lab` crate; this module wires them:
//!
//! - `infraflux_lab::pve`: a Proxmox VE API simulator (HTTPS, token auth, PVE's shapes);
//! - [`machines`]: what runs in the simulated VMs: a fake Talos node on each VM's
//!   address (`127.N.0.x:50000`) while it runs, and a fake Kubernetes API on the
//!   cluster's VIP (`127.N.0.5:6443`, TLS from the cluster's own CA) once bootstrapped;
//! - [`overlay`]: which addresses each cluster gets, and the configuration overlay that
//!   points the configuration at the lab.

pub mod machines;
pub mod overlay;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use infraflux_lab::pve::{ClusterOptions, PveSimulator};
use machines::LabMachines;
use overlay::{Connection, LabLayout};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the PVE simulator")]
    Simulator(#[source] std::io::Error),
    #[error("cannot write the lab's overlay to {path}")]
    Overlay {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a lab behaves beyond its layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabOptions {
    /// The cluster APIs simulate ArgoCD's install (no release manifest at hand).
    pub simulate_argocd: bool,
}

/// A running lab: the PVE simulator, what runs in its VMs, and the overlay that points
/// the configuration at it.
pub struct Lab {
    pve: PveSimulator,
    machines: LabMachines,
    layout: LabLayout,
    overlay: PathBuf,
}

impl Lab {
    /// Start the simulator for `layout` on 127.0.0.1 and write the overlay to
    /// `overlay_dir`. Needs a Tokio runtime that keeps running while the lab is used
    /// (the commands that use it run their own).
    pub async fn start(
        layout: LabLayout,
        overlay_dir: &Path,
        options: LabOptions,
    ) -> Result<Lab, Error> {
        let mut machines = LabMachines::new();
        if options.simulate_argocd {
            machines = machines.simulating_argocd();
        }
        let options = ClusterOptions {
            nodes: layout.nodes.clone(),
            disk_storages: layout.disk_storages.clone(),
            image_storages: layout.image_storages.clone(),
            ..ClusterOptions::default()
        };
        let pve = PveSimulator::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            options,
            Arc::new(machines.clone()),
        )
        .await
        .map_err(Error::Simulator)?;
        let connection = Connection {
            endpoint: &pve.url(),
            token: pve.token(),
            fingerprint: pve.fingerprint(),
        };
        overlay::write_overlay(overlay_dir, &layout, &connection).map_err(|source| {
            Error::Overlay {
                path: overlay_dir.to_path_buf(),
                source,
            }
        })?;
        Ok(Lab {
            pve,
            machines,
            layout,
            overlay: overlay_dir.to_path_buf(),
        })
    }

    /// `https://127.0.0.1:PORT`, the simulated PVE API.
    pub fn endpoint(&self) -> String {
        self.pve.url()
    }

    pub fn layout(&self) -> &LabLayout {
        &self.layout
    }

    pub fn overlay(&self) -> &Path {
        &self.overlay
    }

    /// Every address the lab listens on now.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        let mut listeners = vec![self.pve.address()];
        listeners.extend(self.machines.listeners());
        listeners
    }

    /// Stop everything; the overlay stays (the caller removes it with the lab's files).
    pub async fn stop(self) {
        self.machines.shutdown().await;
        drop(self.pve);
    }
}
