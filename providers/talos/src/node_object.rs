//! The Kubernetes Node object of a machine that left its cluster.
//!
//! A node that was reset no longer runs a kubelet, but its Node object stays (NotReady)
//! until someone deletes it: `talosctl reset` leaves that to `kubectl delete node`. The
//! removal deletes it through the cluster's API, as the cluster admin: a short-lived
//! client certificate (`system:masters`) issued from the Kubernetes CA in the cluster's
//! secrets, as Talos issues the admin kubeconfig's.

use std::time::Duration;

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
