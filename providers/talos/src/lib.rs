//! The Talos provider for InfraFlux.
//!
//! - [`secrets`]: the cluster PKI and tokens (`talos_secrets`), generated locally once;
//! - [`config`]: machine configs rendered per node for the pinned Talos version
//!   (`talos_machine_config`), with user patches and a secret-masked rendering for plans;
//! - [`api`]: the Talos API client (gRPC over TLS: insecure in maintenance mode, mTLS
//!   with the admin certificate afterwards), one connection per node;
//! - [`provider`]: the `Provider` implementation for `talos_secrets`,
//!   `talos_machine_config`, `talos_bootstrap` and `talos_kubeconfig`;
//! - [`ready`]: waiting for API, etcd and kubelet, with a caller-chosen deadline;
//! - [`testing`] (feature `testing`): an in-process fake Talos node.
//!
//! Providers depend on `infraflux-provider` only, never on the engine.

pub mod api;
pub mod config;
mod error;
pub mod provider;
pub mod ready;
pub mod secrets;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{ApiErrorKind, Error, Result};
pub use provider::TalosProvider;

#[cfg(test)]
pub(crate) mod test_support;
