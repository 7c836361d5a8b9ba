//! The Talos provider for InfraFlux.
//!
//! - [`secrets`]: the cluster PKI and tokens (`talos_secrets`), generated locally once;
//! - [`config`]: machine configs rendered per node for the pinned Talos version
//!   (`talos_machine_config`), with user patches and a secret-masked rendering for plans;
//! - [`api`]: the Talos API client (gRPC over TLS: insecure in maintenance mode, mTLS
//!   with the admin certificate afterwards), one connection per node;
//! - [`provider`]: the `Provider` implementation for `talos_secrets`,
//!   `talos_machine_config`, `talos_bootstrap` and `talos_kubeconfig`;
//! - [`bootstrap`]: bootstrapping etcd, retried with backoff while the node answers
//!   "not available yet", until a caller-chosen deadline;
//! - [`ready`]: waiting for API, etcd and kubelet, with a caller-chosen deadline;
//!
//! Providers depend on `infraflux-provider` only, never on the engine. The fake Talos
//! node its tests run against lives in `infraflux-lab` (`infraflux_lab::talos`), not here.

pub mod api;
pub mod bootstrap;
pub mod compatibility;
pub mod config;
pub mod drift;
mod error;
pub mod key_pool;
pub mod node_object;
pub mod provider;
pub mod ready;
pub mod removal;
pub mod secrets;
pub mod upgrade;
mod validated;

pub use error::{ApiErrorKind, Error, Result};
pub use provider::TalosProvider;

#[cfg(test)]
pub(crate) mod test_support;
