//! Waiting for a cluster to come up: the caller names the nodes and chooses the
//! deadline and polling interval; there is no hidden retry loop elsewhere.
//!
//! Ready means, for every node: the Talos API answers over mTLS and kubelet runs
//! healthy; for every control plane: etcd runs healthy; and the etcd member list (asked
//! of the first control plane) has one voting member per control plane. Kubernetes
//! `Ready` is deliberately not required: nodes are NotReady until a CNI exists, and the
//! CNI is installed after this point.

use std::time::{Duration, Instant};

use crate::api::{ClientIdentity, ConnectOptions, Credentials, NodeClient};
use crate::config::Role;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ReadyTarget {
    /// `host[:port]` of the node's Talos API.
    pub endpoint: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    pub timeout: Duration,
    pub interval: Duration,
    pub connect: ConnectOptions,
}

/// What was observed when the cluster was found ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyReport {
    pub etcd_members: Vec<String>,
    pub checks: usize,
}

/// One check of every condition; `Err` carries the first unmet condition.
pub async fn check_ready(
    targets: &[ReadyTarget],
    identity: &ClientIdentity,
    connect: &ConnectOptions,
) -> std::result::Result<Vec<String>, String> {
    let credentials = Credentials::Mutual(identity.clone());
    let control_planes: Vec<&ReadyTarget> = targets
        .iter()
        .filter(|t| t.role == Role::ControlPlane)
        .collect();
    if control_planes.is_empty() {
        return Err("no control-plane node given".into());
    }
    let mut first_control_plane = None;
    for target in targets {
        let mut client = NodeClient::connect(&target.endpoint, &credentials, connect)
            .await
            .map_err(|e| format!("API of {} is not up: {e}", target.endpoint))?;
        client
            .version()
            .await
            .map_err(|e| format!("API of {} is not up: {e}", target.endpoint))?;
        let services = client
            .services()
            .await
            .map_err(|e| format!("services of {}: {e}", target.endpoint))?;
        let healthy = |id: &str| {
            services
                .iter()
                .any(|s| s.id == id && s.state == "Running" && s.healthy)
        };
        if !healthy("kubelet") {
            return Err(format!(
                "kubelet on {} is not running healthy",
                target.endpoint
            ));
        }
        if target.role == Role::ControlPlane {
            if !healthy("etcd") {
                return Err(format!(
                    "etcd on {} is not running healthy",
                    target.endpoint
                ));
            }
            if first_control_plane.is_none() {
                first_control_plane = Some(client);
            }
        }
    }
    let mut client = first_control_plane.ok_or("no control plane answered")?;
    let members = client
        .etcd_members()
        .await
        .map_err(|e| format!("etcd members from {}: {e}", client.node()))?;
    let voting: Vec<String> = members
        .iter()
        .filter(|m| !m.is_learner)
        .map(|m| m.hostname.clone())
        .collect();
    if voting.len() < control_planes.len() {
        return Err(format!(
            "etcd has {} voting member(s) of {} control plane(s)",
            voting.len(),
            control_planes.len()
        ));
    }
    Ok(voting)
}

/// Poll [`check_ready`] until it passes or `options.timeout` elapses.
pub async fn wait_ready(
    targets: &[ReadyTarget],
    identity: &ClientIdentity,
    options: &WaitOptions,
) -> Result<ReadyReport> {
    let started = Instant::now();
    let mut checks = 0;
    loop {
        checks += 1;
        let last = match check_ready(targets, identity, &options.connect).await {
            Ok(etcd_members) => {
                return Ok(ReadyReport {
                    etcd_members,
                    checks,
                });
            }
            Err(reason) => reason,
        };
        let elapsed = started.elapsed();
        if elapsed + options.interval > options.timeout {
            return Err(Error::Timeout {
                condition: "the Talos cluster to be ready (API, etcd, kubelet)".into(),
                seconds: options.timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(options.interval).await;
    }
}
