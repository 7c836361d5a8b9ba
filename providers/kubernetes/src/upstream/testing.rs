//! For the crate's tests: the upstream release files kept beside the workspace
//! (`../shared/upstream`, laid out as a mirror; CI has it), never in the project.

use std::path::PathBuf;

/// Set (to anything but `0` or empty) to fail instead of skipping when a counterpart of
/// the tests is missing; CI sets it.
const REQUIRE_VAR: &str = "INFRAFLUX_REQUIRE_COUNTERPARTS";

/// `../shared/upstream` beside the workspace, when it holds ArgoCD's release files;
/// otherwise `None` after printing `skipped: …`, or a panic when CI requires them.
pub fn shared_mirror() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/upstream");
    if dir.join("argo-cd-v3.5.1/install.yaml").is_file() {
        return Some(dir);
    }
    let why = format!(
        "{} has no argo-cd-v3.5.1/install.yaml (the upstream release files beside the workspace)",
        dir.display()
    );
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{why}, and {REQUIRE_VAR} is set");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("skipped: {why}\n").as_bytes(),
    );
    None
}

/// Sources reading only the shared mirror.
pub fn mirror_sources() -> Option<super::Sources> {
    Some(super::Sources {
        mirror: Some(shared_mirror()?),
        ..Default::default()
    })
}
