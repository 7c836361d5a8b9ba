//! Which versions go together, and which version changes a cluster can take in one
//! step, as Talos itself decides them.
//!
//! The figures are Talos's own, from its machinery module
//! (`pkg/machinery/compatibility/talos1NN/talos1NN.go`: `MinimumHostUpgradeVersion`,
//! `MaximumHostDowngradeVersion`, `Minimum/MaximumKubernetesVersion`); the Kubernetes
//! rule is `talosctl upgrade-k8s`'s and Kubernetes' own version-skew policy: one minor
//! version at a time, never down a minor version.

use semver::Version;

/// One Talos minor release's limits.
struct Release {
    minor: u64,
    /// The oldest Talos a node can be upgraded from to this release.
    upgrade_from: (u64, u64),
    /// Nodes on this release or later cannot be downgraded to it.
    downgrade_below: (u64, u64),
    kubernetes_min: (u64, u64),
    kubernetes_max_minor: u64,
}

/// Talos 1.11 to 1.13 (every release 1.x the configuration may name).
const RELEASES: [Release; 3] = [
    Release {
        minor: 11,
        upgrade_from: (1, 9),
        downgrade_below: (1, 13),
        kubernetes_min: (1, 29),
        kubernetes_max_minor: 34,
    },
    Release {
        minor: 12,
        upgrade_from: (1, 10),
        downgrade_below: (1, 14),
        kubernetes_min: (1, 30),
        kubernetes_max_minor: 35,
    },
    Release {
        minor: 13,
        upgrade_from: (1, 11),
        downgrade_below: (1, 15),
        kubernetes_min: (1, 31),
        kubernetes_max_minor: 36,
    },
];

/// `v1.13.9` or `1.13.9`.
pub fn parse(version: &str) -> Option<Version> {
    Version::parse(version.strip_prefix('v').unwrap_or(version)).ok()
}

fn release(talos: &Version) -> Result<&'static Release, String> {
    RELEASES
        .iter()
        .find(|r| talos.major == 1 && talos.minor == r.minor)
        .ok_or_else(|| {
            format!(
                "Talos {talos} is not a release InfraFlux knows (1.11 to 1.13): its machine configs and upgrade rules may differ"
            )
        })
}

/// Whether `talos` supports running Kubernetes `kubernetes`.
pub fn check_kubernetes(talos: &Version, kubernetes: &Version) -> Result<(), String> {
    let release = release(talos)?;
    let (min_major, min_minor) = release.kubernetes_min;
    let supported = kubernetes.major == min_major
        && kubernetes.minor >= min_minor
        && kubernetes.minor <= release.kubernetes_max_minor;
    if supported {
        return Ok(());
    }
    Err(format!(
        "Talos 1.{} runs Kubernetes 1.{min_minor} to 1.{}, not {kubernetes}: change `kubernetes.version`, or `talos.version` to a release that supports it",
        release.minor, release.kubernetes_max_minor
    ))
}

/// Whether nodes on Talos `from` can be upgraded (or downgraded) to `to` in one step.
pub fn check_talos_change(from: &Version, to: &Version) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let target = release(to)?;
    let from_minor = (from.major, from.minor);
    if from_minor < target.upgrade_from {
        return Err(format!(
            "Talos {from} cannot be upgraded to {to} in one step: 1.{} needs at least {}.{} — upgrade to an intermediate release first, apply, then go on",
            target.minor, target.upgrade_from.0, target.upgrade_from.1
        ));
    }
    if from_minor >= target.downgrade_below {
        return Err(format!(
            "Talos {from} cannot be downgraded to {to}: 1.{} takes nodes from below {}.{} only",
            target.minor, target.downgrade_below.0, target.downgrade_below.1
        ));
    }
    Ok(())
}

/// Whether a cluster on Kubernetes `from` can go to `to` in one step.
pub fn check_kubernetes_change(from: &Version, to: &Version) -> Result<(), String> {
    if (from.major, from.minor) == (to.major, to.minor) {
        return Ok(());
    }
    if to.major != from.major || to.minor < from.minor {
        return Err(format!(
            "Kubernetes {from} cannot go down to {to}: the control plane's data is not downgraded across minor versions — restore from a backup instead"
        ));
    }
    if to.minor > from.minor + 1 {
        return Err(format!(
            "Kubernetes {from} → {to} skips 1.{}: upgrade one minor version at a time (set 1.{}.x, apply, then go on), as Kubernetes' version-skew policy and `talosctl upgrade-k8s` require",
            from.minor + 1,
            from.minor + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        parse(text).unwrap()
    }

    #[test]
    fn kubernetes_versions_follow_the_talos_release() {
        assert!(check_kubernetes(&v("v1.13.9"), &v("1.32.2")).is_ok());
        assert!(check_kubernetes(&v("v1.13.9"), &v("1.31.0")).is_ok());
        assert!(check_kubernetes(&v("v1.13.9"), &v("1.36.4")).is_ok());
        let old = check_kubernetes(&v("v1.13.9"), &v("1.30.9")).unwrap_err();
        assert!(
            old.contains("Talos 1.13 runs Kubernetes 1.31 to 1.36"),
            "{old}"
        );
        assert!(check_kubernetes(&v("v1.13.9"), &v("1.37.0")).is_err());
        assert!(check_kubernetes(&v("v1.11.3"), &v("1.35.0")).is_err());
        assert!(check_kubernetes(&v("v1.14.0"), &v("1.33.0")).is_err());
    }

    #[test]
    fn talos_goes_up_from_supported_releases_only() {
        assert!(check_talos_change(&v("1.13.9"), &v("1.13.10")).is_ok());
        assert!(check_talos_change(&v("1.11.5"), &v("1.13.9")).is_ok());
        let far = check_talos_change(&v("1.10.7"), &v("1.13.9")).unwrap_err();
        assert!(far.contains("needs at least 1.11"), "{far}");
        // Down within what the older release accepts.
        assert!(check_talos_change(&v("1.13.9"), &v("1.12.4")).is_ok());
        assert!(check_talos_change(&v("1.13.9"), &v("1.11.4")).is_err());
    }

    #[test]
    fn kubernetes_moves_one_minor_version_up_at_a_time() {
        assert!(check_kubernetes_change(&v("1.32.2"), &v("1.32.9")).is_ok());
        assert!(check_kubernetes_change(&v("1.32.2"), &v("1.33.0")).is_ok());
        let skip = check_kubernetes_change(&v("1.32.2"), &v("1.34.0")).unwrap_err();
        assert!(skip.contains("skips 1.33"), "{skip}");
        let down = check_kubernetes_change(&v("1.33.1"), &v("1.32.2")).unwrap_err();
        assert!(down.contains("cannot go down"), "{down}");
        // Patch downgrades within a minor are allowed.
        assert!(check_kubernetes_change(&v("1.32.5"), &v("1.32.2")).is_ok());
    }
}
