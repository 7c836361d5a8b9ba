//! What the provider's integration tests share: the real control plane (one per test
//! binary, from infraflux-testkit), clients on it, and a connector that counts writes.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use infraflux_kubernetes::api::{ApiError, ApplyOptions, KubeApi};
use infraflux_kubernetes::client::{ClientOptions, KubeClient, Kubeconfig};
use infraflux_kubernetes::object::ObjectRef;
use infraflux_kubernetes::provider::{Connector, ProviderOptions};
use infraflux_kubernetes::upstream::Sources;
use infraflux_kubernetes::wait::WaitOptions;
pub use infraflux_testkit::control_plane::{self, ControlPlane};

/// Bounded waits for a real cluster on a busy machine: CRDs are Established within a
/// second, kwok runs pods within seconds. Release files (ArgoCD's install manifests) are
/// read from `upstream`: [`mirror`] for a test that installs ArgoCD,
/// `Sources::default()` for one that installs nothing of upstream's.
pub fn options(upstream: Sources) -> ProviderOptions {
    ProviderOptions {
        crd_wait: WaitOptions {
            timeout: Duration::from_secs(30),
            interval: Duration::from_millis(200),
        },
        ready_wait: WaitOptions {
            timeout: Duration::from_secs(120),
            interval: Duration::from_millis(200),
        },
        upstream,
    }
}

/// ArgoCD's release files beside the workspace (`../shared/upstream`), read as an offline
/// mirror; `None` (a skip printed, a failure when CI requires them) without them.
pub fn mirror() -> Option<Sources> {
    infraflux_kubernetes::upstream::testing::mirror_sources()
}

pub fn kubeconfig(plane: &ControlPlane) -> Kubeconfig {
    Kubeconfig::new(plane.kubeconfig_text()).expect("the control plane's kubeconfig")
}

/// The provider's own client on the control plane.
pub async fn client(plane: &ControlPlane) -> KubeClient {
    KubeClient::new(&kubeconfig(plane), ClientOptions::default())
        .await
        .expect("a client for the control plane")
}

/// Connects with the real client and counts the writes made through it.
#[derive(Default)]
pub struct Counting {
    pub applies: Arc<AtomicUsize>,
    pub deletes: Arc<AtomicUsize>,
}

impl Counting {
    pub fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }

    pub fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Connector for Counting {
    async fn connect(&self, kubeconfig: &Kubeconfig) -> Result<Arc<dyn KubeApi>, ApiError> {
        Ok(Arc::new(Counted {
            client: KubeClient::new(kubeconfig, ClientOptions::default()).await?,
            applies: self.applies.clone(),
            deletes: self.deletes.clone(),
        }))
    }
}

struct Counted {
    client: KubeClient,
    applies: Arc<AtomicUsize>,
    deletes: Arc<AtomicUsize>,
}

#[async_trait]
impl KubeApi for Counted {
    async fn apply(&self, manifest: &Value, options: ApplyOptions) -> Result<Value, ApiError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.client.apply(manifest, options).await
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ApiError> {
        self.client.get(object).await
    }

    async fn delete(&self, object: &ObjectRef) -> Result<bool, ApiError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.client.delete(object).await
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        self.client.list(api_version, kind, namespace).await
    }

    async fn refresh_discovery(&self) -> Result<(), ApiError> {
        self.client.refresh_discovery().await
    }
}
