//! Simulators of the systems InfraFlux drives, each on loopback and in process:
//!
//! - [`pve`]: a Proxmox VE API simulator (HTTPS, token auth, PVE 9's endpoints and
//!   answers) that the real `proxmox` provider runs against unchanged;
//! - [`talos`]: a fake Talos node (a tonic server speaking the provider's
//!   `machine.MachineService` subset, maintenance → configured → bootstrapped, mTLS from
//!   the applied PKI required in the handshake, not-ready windows after a config and
//!   after reboots, Upgrade and Reset through a reboot), [`talos::Trustd`], which issues
//!   API certificates across nodes, and [`talos::Etcd`], each cluster's etcd members
//!   with etcd's quorum rules;
//! - [`kubernetes`]: a fake Kubernetes API server (discovery, server-side apply, GET,
//!   LIST, DELETE; plain HTTP or TLS), with [`kubernetes::ready_reactor`] playing the
//!   controllers.
//!
//! Used by the `infraflux lab` command (the binary's default feature `lab`, whose
//! `src/lab/` wires these together) and, as a dev-dependency, by the providers' and the
//! engine's tests. Nothing here is compiled into a provider; nothing here depends on the
//! `infraflux` engine. A simulator must never be kinder than the system it stands for.

pub mod kubernetes;
pub mod pve;
pub mod talos;
