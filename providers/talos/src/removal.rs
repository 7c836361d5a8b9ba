//! Taking a node out of its cluster before its machine goes (scale in, removal).
//!
//! The order is Talos's own graceful reset (`talosctl reset --graceful`, the default):
//! the node cordons and drains itself (evictions, so PodDisruptionBudgets hold), a
//! control plane then leaves etcd, and the node wipes its disks and powers off. Only
//! then may its VM be deleted: deleting the VM of a control plane that is still an etcd
//! member leaves a dead member that counts against quorum.
//!
//! A reset is answered at once and runs afterwards; etcd refusing the leave (it would
//! break quorum) stops the sequence with the node still up. So the node is watched
//! until it stops answering, within a bound: a node that still answers when the bound
//! is reached did not finish, and the removal fails with the node left as it is.
//!
//! A control plane is first asked for etcd's member list: removing the last member is
//! refused here, before anything is touched (etcd would refuse it as well, after the
//! node had drained itself). A control plane that does not answer is looked up in etcd
//! through a peer: gone from the member list, it left already (a removal whose run was
//! killed after the reset); still listed, its removal fails rather than leave a dead
//! member behind.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, instrument, warn};

use crate::api::{ClientIdentity, ConnectOptions, Credentials, NodeClient, ResetOptions, WipeMode};
use crate::bootstrap::Backoff;
use crate::config::Role;
use crate::error::{ApiErrorKind, Error, Result};

/// How long a removal may take, and how often the node is asked whether it is gone.
#[derive(Debug, Clone)]
pub struct RemovalOptions {
    /// From the reset to the node no longer answering: draining honours
    /// PodDisruptionBudgets, so this can take minutes on a real cluster.
    pub timeout: Duration,
    pub backoff: Backoff,
    pub connect: ConnectOptions,
    /// Where another member of the cluster answers (the cluster VIP's Talos API): asked
    /// whether a control plane that does not answer has left etcd already.
    pub peers: Vec<String>,
}

/// What the removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Drained, out of etcd (a control plane), wiped; powering off.
    Reset,
    /// The node did not answer: nothing could be done on it. Only a worker's removal
    /// goes on this way (its VM's deletion removes it); a control plane's is an error.
    Unreachable(String),
    /// A control plane that does not answer and that etcd (asked through a peer) no
    /// longer lists: an earlier removal reset it (a run killed after the reset, before
    /// state recorded it). Its VM may go.
    AlreadyLeft,
}

/// Reset the node at `endpoint` (see the module docs).
#[instrument(skip_all, fields(node = %endpoint, role = ?role))]
pub async fn remove_node(
    endpoint: &str,
    hostname: &str,
    role: Role,
    identity: &ClientIdentity,
    options: &RemovalOptions,
) -> Result<Removal> {
    let credentials = Credentials::Mutual(identity.clone());
    let mut client = match NodeClient::connect(endpoint, &credentials, &options.connect).await {
        Ok(client) => client,
        Err(error) if is_gone(&error) && role == Role::Worker => {
            warn!(%error, "the worker does not answer; its VM's deletion removes it");
            return Ok(Removal::Unreachable(error.to_string()));
        }
        Err(error) if is_gone(&error) => {
            if left_etcd(hostname, &credentials, options).await {
                info!(
                    "the control plane does not answer and etcd no longer lists it: it left already"
                );
                return Ok(Removal::AlreadyLeft);
            }
            return Err(Error::Api {
                call: "Reset",
                node: endpoint.to_string(),
                kind: ApiErrorKind::Unreachable,
                message: format!(
                    "the control plane does not answer, so it cannot leave etcd ({error}); its VM is kept: deleting it would leave a dead etcd member that counts against quorum. Bring the node back and apply again, or remove its member from a healthy control plane (`talosctl -n <control plane> etcd members`, then `etcd remove-member <id>`) and forget this machine's config (`infraflux state rm`)"
                ),
            });
        }
        Err(error) => return Err(error),
    };
    if role == Role::ControlPlane {
        let members = client.etcd_members().await?;
        if members.len() == 1 {
            return Err(Error::Api {
                call: "Reset",
                node: endpoint.to_string(),
                kind: ApiErrorKind::Rejected,
                message: "this control plane is etcd's last member: removing it would remove the cluster's data".into(),
            });
        }
        info!(members = members.len(), "leaving etcd as part of the reset");
    }
    client
        .reset(&ResetOptions {
            graceful: true,
            reboot: false,
            mode: WipeMode::All,
        })
        .await?;
    wait_until_gone(endpoint, &credentials, options).await?;
    info!("the node is reset: wiped, and powering off");
    Ok(Removal::Reset)
}

/// Whether a peer answers and its etcd lists no member named `hostname`. Any doubt (no
/// peer answers) is `false`: the removal is not given up on.
async fn left_etcd(hostname: &str, credentials: &Credentials, options: &RemovalOptions) -> bool {
    for peer in &options.peers {
        let members = async {
            let mut client = NodeClient::connect(peer, credentials, &options.connect).await?;
            client.etcd_members().await
        }
        .await;
        match members {
            Ok(members) => return members.iter().all(|m| m.hostname != hostname),
            Err(error) => warn!(%peer, %error, "the peer did not answer"),
        }
    }
    false
}

/// An error that means nobody answers there (as opposed to a refusal).
fn is_gone(error: &Error) -> bool {
    matches!(
        error.api_kind(),
        Some(ApiErrorKind::Unreachable | ApiErrorKind::ConnectionLost | ApiErrorKind::Timeout)
    )
}

/// Ask the node for its version until it no longer answers as a member of the
/// cluster: powered off, or wiped (back in maintenance mode it presents another
/// certificate, which the cluster's client refuses, having accepted it before the
/// reset). An error when it still answers at the deadline.
async fn wait_until_gone(
    endpoint: &str,
    credentials: &Credentials,
    options: &RemovalOptions,
) -> Result<()> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut attempt = 0;
    loop {
        let left = |error: &Error| {
            is_gone(error) || error.api_kind() == Some(ApiErrorKind::Unauthenticated)
        };
        let answered = match NodeClient::connect(endpoint, credentials, &options.connect).await {
            Ok(mut client) => match client.version().await {
                Ok(_) => true,
                Err(error) => !left(&error),
            },
            Err(error) => !left(&error),
        };
        if !answered {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                condition: format!("node {endpoint} to finish its reset and power off"),
                seconds: started.elapsed().as_secs(),
                last: format!(
                    "it still answers: it may still be draining pods that a PodDisruptionBudget protects, or etcd refused to let it leave because the rest would lose quorum (`talosctl -n {endpoint} events`, `dmesg`)"
                ),
            });
        }
        attempt += 1;
        tokio::time::sleep(
            options
                .backoff
                .delay(attempt)
                .min(deadline - Instant::now()),
        )
        .await;
    }
}
