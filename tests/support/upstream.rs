//! The upstream release files InfraFlux installs (ArgoCD's install manifests), for the
//! tests: the copies kept beside the repository in `../shared/upstream` (CI has them
//! there too), laid out as an offline mirror. Nothing upstream is in the project.
//!
//! Every run a test starts reads them as its mirror (`INFRAFLUX_MANIFESTS`, set by
//! [`super::TestContext`]) and never reaches the network: the download URL is a
//! loopback port where nothing listens, and the cache is the test's own.

#![allow(dead_code)]

use std::path::PathBuf;

use infraflux_kubernetes::upstream::Sources;

/// A base URL where nothing listens: a test that would download fails at once.
pub const UNREACHABLE: &str = "http://127.0.0.1:9";

/// `../shared/upstream` beside the repository, when it holds ArgoCD's release files.
pub fn mirror() -> Option<PathBuf> {
    let dir = super::root().join("../shared/upstream");
    dir.join("argo-cd-v3.5.1/install.yaml")
        .is_file()
        .then(|| dir.canonicalize().unwrap_or(dir))
}

/// [`mirror`], or `None` after printing `skipped: …` (a panic when CI requires the
/// counterparts of the tests).
pub fn required_mirror() -> Option<PathBuf> {
    match mirror() {
        Some(dir) => Some(dir),
        None => super::counterparts::skip(&format!(
            "{} has no argo-cd-v3.5.1/install.yaml (the upstream release files beside the repository)",
            super::root().join("../shared/upstream").display()
        )),
    }
}

/// Sources for a provider in a test process: the shared mirror, never the network.
pub fn sources() -> Sources {
    Sources {
        mirror: mirror(),
        cache: None,
        base_url: Some(UNREACHABLE.into()),
        ..Sources::default()
    }
}
