//! The Proxmox VE provider.
//!
//! - [`client`]: a thin HTTP client (API token or ticket login, TLS verified, by a CA
//!   file, by a pinned SHA-256 fingerprint, or explicitly not), counting requests and
//!   retrying transient failures with exponential backoff and jitter;
//! - [`api`]: the typed endpoints a provisioner needs;
//! - [`error`]: PVE's answers classified into the contract's error kinds;
//! - [`task`]: UPIDs and the one task waiter;
//! - [`property`]: typed property strings (`netN`, `scsiN`, `ipconfigN`, `agent`,
//!   tags), compared with PVE's defaults filled in.
//!
//! - [`upload`]: the opt-in SSH/SFTP image upload (host key verified, checksum
//!   checked, renamed into place only when complete);
//! - [`provider`]: the `Provider` implementation for `proxmox_image` and `proxmox_vm`.
//!
//! The resource types and their attributes are described in this crate's README.

pub mod api;
pub mod client;
pub mod error;
pub mod property;
pub mod task;
mod tls;
pub mod upload;

pub use client::{
    Client, ClientConfig, Credentials, RetryPolicy, Secret, SetupError, TlsVerification,
};
pub use error::ApiError;
pub use tls::fingerprint_of;
pub mod provider;

pub use provider::{ProviderOptions, ProxmoxEndpoints, ProxmoxProvider};
