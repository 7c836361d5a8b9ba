//! The Talos provider for InfraFlux.
//!
//! - [`secrets`]: the cluster PKI and tokens (`talos_secrets`), generated locally once.
//!
//! Providers depend on `infraflux-provider` only, never on the engine.

mod error;
pub mod secrets;

pub use error::{ApiErrorKind, Error, Result};

#[cfg(test)]
pub(crate) mod test_support;
