//! Where the real test counterparts are: the binaries `.ci/counterparts` builds from the
//! official Go modules (tests/counterparts/*) into its version-keyed cache.
//!
//! Each is found by its variable (set by .ci/run), else in the `counterparts.env` that
//! `.ci/counterparts` writes into `${INFRAFLUX_CI_CACHE:-$HOME/.cache/infraflux-ci}`, so
//! `cargo test` finds them on a machine where the script ran once. Without them a test is
//! skipped with a printed reason, unless `INFRAFLUX_REQUIRE_COUNTERPARTS` is set (CI sets
//! it): then that is a failure.

#![allow(dead_code)]

use std::path::PathBuf;

/// Set (to anything but `0` or empty) to fail instead of skipping when a counterpart is
/// missing.
pub const REQUIRE_VAR: &str = "INFRAFLUX_REQUIRE_COUNTERPARTS";

/// The folder of `kube-apiserver` and `kube-controller-manager`.
pub const KUBE_BIN_DIR: &str = "INFRAFLUX_KUBE_BIN_DIR";
pub const ETCD_BIN: &str = "INFRAFLUX_ETCD_BIN";
pub const KWOK_BIN: &str = "INFRAFLUX_KWOK_BIN";
pub const TALOS_VALIDATE: &str = "INFRAFLUX_TALOS_VALIDATE";

const HOW: &str = "run `.ci/counterparts` (it builds them from tests/counterparts/ with Go)";

fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("INFRAFLUX_CI_CACHE") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/infraflux-ci")),
    }
}

/// The value of `name`: the environment, else the `counterparts.env` of the cache.
fn lookup(name: &str) -> Option<PathBuf> {
    if let Some(value) = std::env::var_os(name).filter(|value| !value.is_empty()) {
        return Some(PathBuf::from(value));
    }
    let text = std::fs::read_to_string(cache_dir()?.join("counterparts.env")).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == name).then(|| PathBuf::from(value.trim()))
    })
}

pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|value| !value.is_empty() && value != "0")
}

/// The paths `name` (a variable above) names, each of `files` under it (or the path itself
/// when `files` is empty), if they all exist.
pub fn find(name: &str, files: &[&str]) -> Result<Vec<PathBuf>, String> {
    let Some(base) = lookup(name) else {
        return Err(format!(
            "{name} is not set and no counterparts.env names it; {HOW}"
        ));
    };
    let paths: Vec<PathBuf> = if files.is_empty() {
        vec![base]
    } else {
        files.iter().map(|file| base.join(file)).collect()
    };
    match paths.iter().find(|path| !path.is_file()) {
        Some(missing) => Err(format!(
            "{} does not exist ({name}); {HOW}",
            missing.display()
        )),
        None => Ok(paths),
    }
}

/// `None` after printing `skipped: <why>` (past the test harness's capture, so that a
/// plain `cargo test` shows it), or a panic when counterparts are required.
pub fn skip<T>(why: &str) -> Option<T> {
    if required() {
        panic!("{why}, and {REQUIRE_VAR} is set");
    }
    let line = format!("skipped: {why}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    None
}

/// The `talos-validate` binary, or `None` (skipped, reason printed).
pub fn talos_validate() -> Option<PathBuf> {
    match find(TALOS_VALIDATE, &[]) {
        Ok(mut paths) => paths.pop(),
        Err(why) => skip(&why),
    }
}
