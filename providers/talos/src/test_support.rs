//! Shared fixtures for unit tests: one secrets bundle per test binary (RSA-4096 is slow).

use std::sync::OnceLock;

use crate::secrets::ClusterSecrets;

pub(crate) fn secrets() -> &'static ClusterSecrets {
    static SECRETS: OnceLock<ClusterSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| ClusterSecrets::generate().expect("secrets generate"))
}
