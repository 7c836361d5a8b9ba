//! Upgrading one node's Talos, as `talosctl upgrade` does, and gating on it.
//!
//! The node is sent `Upgrade` with the installer image of the new version; it checks
//! etcd first (a control plane refuses while a member is unhealthy, or with two
//! members), answers, installs and reboots. The node is then watched until it is back
//! on the new version and as healthy as it was before: kubelet (and, on a control
//! plane, etcd) running healthy again if they were, and etcd holding at least as many
//! voting members as before. Only then may the next node go (the engine runs a
//! cluster's updates one at a time, control planes first). What was not up before
//! (etcd on a control plane not bootstrapped yet) is not waited for.
//!
//! Resumable: a node already on the new version is not sent `Upgrade` again, only
//! gated, so a run that was killed midway picks up where it stopped.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, instrument};

use crate::api::{ClientIdentity, ConnectOptions, Credentials, NodeClient, UpgradeOptions};
use crate::config::Role;
use crate::error::{Error, Result};

/// How long an upgrade may take and how often the node is asked.
#[derive(Debug, Clone, Copy)]
pub struct RolloutOptions {
    /// From the `Upgrade` call to the node passing its gates: installing and rebooting
    /// take minutes on real hardware.
    pub timeout: Duration,
    pub interval: Duration,
    pub connect: ConnectOptions,
}

/// What the upgrade of one node did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgraded {
    /// Sent `Upgrade`; back on the new version and healthy.
    Upgraded { from: String },
    /// Already on the new version (an earlier run upgraded it): gated only.
    AlreadyThere,
}

/// The Talos version an installer image installs: its tag (`…/installer:v1.13.10`).
pub fn image_version(image: &str) -> Option<&str> {
    let (_, tag) = image.rsplit_once(':')?;
    (tag.starts_with('v') && !tag.contains('/')).then_some(tag)
}

/// Upgrade the node at `endpoint` to `image` and wait for its gates (module docs).
#[instrument(skip_all, fields(node = %endpoint, image = %image))]
///
/// `before` is what must be healthy again; `None` samples it now. A caller that
/// changes the node first (a config applied in place restarts the kubelet) samples it
/// before that change, with [`node_health`], or the gate would accept the restart.
pub async fn upgrade_node(
    endpoint: &str,
    role: Role,
    identity: &ClientIdentity,
    image: &str,
    before: Option<Health>,
    options: &RolloutOptions,
) -> Result<Upgraded> {
    let target = image_version(image).ok_or_else(|| Error::InvalidInput {
        attribute: "installer_image".into(),
        message: format!("`{image}` has no Talos version tag (vX.Y.Z)"),
    })?;
    let credentials = Credentials::Mutual(identity.clone());
    let started = Instant::now();
    let deadline = started + options.timeout;
    // The node may be rebooting (a run killed mid-upgrade): wait for it to answer.
    let mut client = loop {
        let answered = async {
            let mut client = NodeClient::connect(endpoint, &credentials, &options.connect).await?;
            let version = client.version().await?;
            Ok::<_, Error>((client, version))
        }
        .await;
        match answered {
            Ok(answered) => break answered,
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(options.interval).await,
        }
    };
    let (ref mut node, ref version) = client;
    let before = match before {
        Some(before) => before,
        None => Health::of(node, role).await,
    };
    let outcome = if version.tag == target {
        info!(version = %version.tag, "already on the new version; gating only");
        Upgraded::AlreadyThere
    } else {
        info!(from = %version.tag, to = %target, "upgrading");
        node.upgrade(&UpgradeOptions::new(image)).await?;
        Upgraded::Upgraded {
            from: version.tag.clone(),
        }
    };
    loop {
        let gated = gates(endpoint, &credentials, role, target, &before, options).await;
        let last = match gated {
            Ok(()) => {
                info!(
                    seconds = started.elapsed().as_secs(),
                    "back on the new version and healthy"
                );
                return Ok(outcome);
            }
            Err(unmet) => unmet,
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                condition: format!(
                    "node {endpoint} to come back on Talos {target} as healthy as before ({before})"
                ),
                seconds: started.elapsed().as_secs(),
                last,
            });
        }
        tokio::time::sleep(options.interval).await;
    }
}

/// What is healthy on the node at `endpoint` now (kubelet; etcd and its voting members
/// on a control plane), for [`upgrade_node`]'s gates.
pub async fn node_health(
    endpoint: &str,
    role: Role,
    identity: &ClientIdentity,
    connect: &ConnectOptions,
) -> Result<Health> {
    let credentials = Credentials::Mutual(identity.clone());
    let mut client = NodeClient::connect(endpoint, &credentials, connect).await?;
    Ok(Health::of(&mut client, role).await)
}

/// What of a node was healthy: what must be healthy again after its update.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    pub kubelet: bool,
    pub etcd: bool,
    /// Voting etcd members, as the node lists them (0: it lists none).
    pub members: usize,
}

impl Health {
    async fn of(client: &mut NodeClient, role: Role) -> Health {
        let services = client.services().await.unwrap_or_default();
        let healthy = |id: &str| {
            services
                .iter()
                .any(|s| s.id == id && s.state == "Running" && s.healthy)
        };
        let etcd = role == Role::ControlPlane && healthy("etcd");
        Health {
            kubelet: healthy("kubelet"),
            etcd,
            members: if etcd {
                voting_members(client).await.unwrap_or(0)
            } else {
                0
            },
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.kubelet {
            parts.push("kubelet healthy".to_string());
        }
        if self.etcd {
            parts.push(format!("etcd healthy with {} voting members", self.members));
        }
        if parts.is_empty() {
            parts.push("answering".to_string());
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// Voting etcd members as `client`'s node lists them.
async fn voting_members(client: &mut NodeClient) -> Result<usize> {
    Ok(client
        .etcd_members()
        .await?
        .iter()
        .filter(|m| !m.is_learner)
        .count())
}

/// One check of the gates; the first unmet one.
async fn gates(
    endpoint: &str,
    credentials: &Credentials,
    role: Role,
    target: &str,
    before: &Health,
    options: &RolloutOptions,
) -> std::result::Result<(), String> {
    let unmet = |e: Error| e.to_string();
    let mut client = NodeClient::connect(endpoint, credentials, &options.connect)
        .await
        .map_err(unmet)?;
    let version = client.version().await.map_err(unmet)?;
    if version.tag != target {
        return Err(format!("the node runs Talos {}", version.tag));
    }
    let now = Health::of(&mut client, role).await;
    if before.kubelet && !now.kubelet {
        return Err("kubelet is not running healthy".into());
    }
    if before.etcd && !now.etcd {
        return Err("etcd is not running healthy".into());
    }
    if now.members < before.members {
        return Err(format!(
            "etcd has {} voting member(s), {} before",
            now.members, before.members
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::image_version;

    #[test]
    fn the_version_is_the_installer_image_tag() {
        assert_eq!(
            image_version("factory.talos.dev/installer/abc:v1.13.10"),
            Some("v1.13.10")
        );
        assert_eq!(
            image_version("registry.local:5000/installer:v1.13.9"),
            Some("v1.13.9")
        );
        assert_eq!(image_version("registry.local:5000/installer"), None);
        assert_eq!(
            image_version("factory.talos.dev/installer/abc:latest"),
            None
        );
    }
}
