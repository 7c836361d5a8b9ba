//! The Kubernetes Node object of a machine: deleted when the machine left its cluster,
//! and, during a rollout, waited for: Ready, on the kubelet version it should run
//! (`talosctl upgrade-k8s` checks the same before going on).
//!
//! A node that was reset no longer runs a kubelet, but its Node object stays (NotReady)
//! until someone deletes it: `talosctl reset` leaves that to `kubectl delete node`. The
//! removal deletes it through the cluster's API, as the cluster admin: a short-lived
//! client certificate (`system:masters`) issued from the Kubernetes CA in the cluster's
//! secrets, as Talos issues the admin kubeconfig's.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::secrets::{CertificateAndKey, issue_kubernetes_client_certificate};

/// Where the API answers (`https://host:6443`) and who asks.
pub struct ClusterApi {
    pub url: String,
    pub client: reqwest::Client,
}

impl ClusterApi {
    /// The cluster's API at `url` as its admin, trusting only the cluster's CA.
    pub fn as_admin(url: &str, kubernetes_ca: &CertificateAndKey) -> Result<ClusterApi> {
        let admin = issue_kubernetes_client_certificate(
            kubernetes_ca,
            "system:masters",
            "infraflux:node-removal",
        )?;
        let invalid = |message: String| Error::InvalidInput {
            attribute: "kubernetes_ca".into(),
            message,
        };
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", admin.crt, admin.key).as_bytes())
                .map_err(|e| invalid(format!("the admin certificate: {e}")))?;
        let ca = reqwest::Certificate::from_pem(kubernetes_ca.crt.as_bytes())
            .map_err(|e| invalid(format!("the Kubernetes CA: {e}")))?;
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            // A cluster endpoint nobody serves yet (not bootstrapped) must not hold a
            // rollout step for long.
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| invalid(format!("an HTTP client: {e}")))?;
        Ok(ClusterApi {
            url: url.trim_end_matches('/').to_string(),
            client,
        })
    }
}

/// Delete the Node object `name`; `Ok(false)` when there was none.
pub async fn delete_node_object(api: &ClusterApi, name: &str) -> Result<bool> {
    let url = format!("{}/api/v1/nodes/{name}", api.url);
    let failed = |message: String| Error::Api {
        call: "DELETE Node",
        node: api.url.clone(),
        kind: crate::error::ApiErrorKind::Other,
        message,
    };
    let response = api
        .client
        .delete(&url)
        .send()
        .await
        .map_err(|e| failed(format!("{e}")))?;
    match response.status().as_u16() {
        200 | 202 => Ok(true),
        404 => Ok(false),
        status => {
            let body = response.text().await.unwrap_or_default();
            Err(failed(format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            )))
        }
    }
}

/// What a Node object says of its kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Condition `Ready` is `True`.
    pub ready: bool,
    /// `status.nodeInfo.kubeletVersion` (`v1.34.1`).
    pub kubelet_version: Option<String>,
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, kubelet {}",
            if self.ready { "Ready" } else { "not Ready" },
            self.kubelet_version
                .as_deref()
                .unwrap_or("of unknown version")
        )
    }
}

/// The Node object `name`'s status; `Ok(None)` when there is none.
pub async fn node_status(api: &ClusterApi, name: &str) -> Result<Option<NodeStatus>> {
    let url = format!("{}/api/v1/nodes/{name}", api.url);
    let failed = |message: String| Error::Api {
        call: "GET Node",
        node: api.url.clone(),
        kind: crate::error::ApiErrorKind::Other,
        message,
    };
    let response = api
        .client
        .get(&url)
        .send()
        .await
        .map_err(|e| failed(format!("{e}")))?;
    let status = response.status().as_u16();
    if status == 404 {
        return Ok(None);
    }
    let body = response.text().await.map_err(|e| failed(format!("{e}")))?;
    if status != 200 {
        return Err(failed(format!(
            "HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        )));
    }
    let node: Value = serde_json::from_str(&body).map_err(|e| failed(format!("{e}")))?;
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let kubelet_version = node
        .pointer("/status/nodeInfo/kubeletVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Some(NodeStatus {
        ready,
        kubelet_version,
    }))
}

/// Wait until the Node object `name` is Ready and, when given, reports `kubelet_version`
/// (`v1.34.1`). The API may not answer for a while (a control plane restarting): that
/// is waited through too, until `timeout`.
pub async fn wait_for_node(
    api: &ClusterApi,
    name: &str,
    kubelet_version: Option<&str>,
    timeout: Duration,
    interval: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let last = match node_status(api, name).await {
            Ok(Some(status))
                if status.ready
                    && kubelet_version
                        .is_none_or(|v| status.kubelet_version.as_deref() == Some(v)) =>
            {
                return Ok(());
            }
            Ok(Some(status)) => format!("the Node is {status}"),
            Ok(None) => "there is no Node object yet (the kubelet has not registered)".into(),
            Err(error) => format!("the API did not answer: {error}"),
        };
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                condition: format!(
                    "Node {name} to be Ready{}",
                    kubelet_version
                        .map(|v| format!(" on kubelet {v}"))
                        .unwrap_or_default()
                ),
                seconds: started.elapsed().as_secs(),
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}
