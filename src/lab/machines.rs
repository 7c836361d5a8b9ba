//! What runs inside the lab's VMs: a fake Talos node on the VM's own loopback address
//! (from its cloud-init `ipconfig0`) at port 50000 while the VM runs, and, once a
//! cluster is bootstrapped, a fake Kubernetes API at the cluster's endpoint (the VIP,
//! port 6443) over TLS with a certificate from the cluster's own Kubernetes CA, so the
//! kubeconfig Talos hands out works unchanged. The API has a Node (Ready) per
//! configured machine of its cluster, and plays the controllers (`ready_reactor`): what
//! the platform and the handoff apply becomes Current, Synced and Healthy.
//!
//! Without ArgoCD's release manifest, the lab simulates its install
//! ([`LabMachines::simulating_argocd`]): the APIs serve ArgoCD's kinds from the start.
//!
//! Fault injection for tests: [`DROP_FIRST_APPLY_VAR`] names VMs (comma-separated) whose
//! Talos node cuts the network on its first `ApplyConfiguration` instead of answering,
//! as a link lost mid-apply does. Read once, when the lab starts.
//!
//! The nodes behave as real ones do where the engine must cope: not ready for a moment
//! after a config is applied (`Bootstrap` answers "not available yet"), mutual TLS
//! enforced in the handshake once configured (see `infraflux_lab::talos`).
//!
//! Limits: a reboot keeps the node as it is, but a VM stopped and started again comes
//! back in maintenance mode (its fake node is new), as if its disk had been wiped; and
//! nothing restarts a node that was never stopped by PVE.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use infraflux_lab::kubernetes::{FakeApiServer, ready_reactor};
use infraflux_lab::pve::{Booted, Machines};
use infraflux_lab::talos::{
    ClusterBootstrapped, DEFAULT_NOT_READY_WINDOW, Etcd, FakeNode, NodeEvent, NodeIdentity, Trustd,
};
use serde_json::json;

/// The Talos API port of every lab VM.
pub const TALOS_PORT: u16 = 50000;

/// VM names (`dev-workload-general-1,…`) whose Talos node drops its first apply.
pub const DROP_FIRST_APPLY_VAR: &str = "INFRAFLUX_LAB_DROP_FIRST_APPLY";

#[derive(Default)]
struct Inner {
    /// Fake Talos nodes by VMID.
    nodes: HashMap<u32, FakeNode>,
    /// Fake Kubernetes APIs by cluster endpoint (`https://127.N.0.5:6443`).
    /// Shared with the tasks that finish a kubelet's restart (see `on_event`).
    apis: HashMap<String, Arc<FakeApiServer>>,
    /// VMs whose node has yet to drop its first apply ([`DROP_FIRST_APPLY_VAR`]); a name
    /// leaves the set when its node is armed, so a restarted VM answers normally.
    drop_first_apply: HashSet<String>,
}

/// The lab's [`Machines`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct LabMachines {
    inner: Arc<Mutex<Inner>>,
    trustd: Trustd,
    /// Each cluster's etcd members across its control planes.
    etcd: Etcd,
    /// Each cluster's API serves ArgoCD's kinds from the start (the lab has no copy of
    /// ArgoCD's release manifest and simulates its install: `lab run` says so loudly).
    simulate_argocd: bool,
}

impl LabMachines {
    /// Machines with the faults [`DROP_FIRST_APPLY_VAR`] asks for.
    pub fn new() -> Self {
        let machines = LabMachines::default();
        if let Ok(names) = std::env::var(DROP_FIRST_APPLY_VAR) {
            machines.inner().drop_first_apply = names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
        }
        machines
    }

    /// These machines, with every cluster API simulating ArgoCD's install.
    pub fn simulating_argocd(mut self) -> Self {
        self.simulate_argocd = true;
        self
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every address something of the lab listens on (Talos nodes and APIs).
    pub fn listeners(&self) -> Vec<SocketAddr> {
        let inner = self.inner();
        inner
            .nodes
            .values()
            .map(FakeNode::address)
            .chain(inner.apis.values().map(|api| api.address()))
            .collect()
    }

    /// Stop every node and API.
    pub async fn shutdown(&self) {
        let (nodes, apis) = {
            let mut inner = self.inner();
            (
                std::mem::take(&mut inner.nodes),
                std::mem::take(&mut inner.apis),
            )
        };
        for node in nodes.into_values() {
            node.stop().await;
        }
        drop(apis);
    }

    async fn on_event(&self, event: NodeEvent) {
        match event {
            NodeEvent::Configured(identity) => {
                let api = self.inner().apis.get(&identity.endpoint).cloned();
                if let Some(api) = api {
                    register(api, identity);
                }
            }
            NodeEvent::Bootstrapped(bootstrapped) => {
                if let Err(message) = self.serve_api(&bootstrapped).await {
                    tracing::warn!(endpoint = %bootstrapped.node.endpoint, "{message}");
                }
            }
        }
    }

    /// Serve the cluster's API at its endpoint, with a Node per configured machine.
    async fn serve_api(&self, bootstrapped: &ClusterBootstrapped) -> Result<(), String> {
        let endpoint = bootstrapped.node.endpoint.clone();
        if self.inner().apis.contains_key(&endpoint) {
            return Ok(());
        }
        let address = endpoint_address(&endpoint).ok_or_else(|| {
            format!("the cluster endpoint `{endpoint}` is not https://<ip>:<port>")
        })?;
        let api = FakeApiServer::start_tls(
            address,
            &bootstrapped.api_server.crt,
            &bootstrapped.api_server.key,
            Some(&bootstrapped.kubernetes_ca_crt),
        )
        .await
        .map_err(|e| format!("cannot serve the Kubernetes API at {address}: {e}"))?;
        api.set_reactor(ready_reactor());
        if self.simulate_argocd {
            api.simulate_argocd();
        }
        let mut inner = self.inner();
        for node in inner.nodes.values() {
            if let Some(identity) = node.identity().filter(|i| i.endpoint == endpoint) {
                api.insert(node_object(&identity));
            }
        }
        inner.apis.insert(endpoint, Arc::new(api));
        Ok(())
    }
}

/// `https://127.0.0.5:6443` → `127.0.0.5:6443`.
fn endpoint_address(endpoint: &str) -> Option<SocketAddr> {
    let rest = endpoint.strip_prefix("https://")?;
    let host_port = rest.split('/').next()?;
    host_port.parse().ok()
}

/// A configured machine's Node. A config that moves its kubelet to another version
/// restarts the kubelet (as the fake node does): its Node turns NotReady, still on the
/// old version, and is Ready on the new one only once the restart is over, as a real
/// kubelet re-registers.
fn register(api: Arc<FakeApiServer>, identity: NodeIdentity) {
    let previous = api.object("v1", "Node", None, &identity.hostname);
    let restarting = previous.filter(|node| {
        node.pointer("/status/nodeInfo/kubeletVersion")
            .and_then(serde_json::Value::as_str)
            != identity.kubelet_version.as_deref()
    });
    let Some(mut node) = restarting else {
        api.insert(node_object(&identity));
        return;
    };
    node["status"]["conditions"] = json!([{"type": "Ready", "status": "False",
        "reason": "KubeletNotReady", "message": "kubelet is restarting"}]);
    api.insert(node);
    tokio::spawn(async move {
        tokio::time::sleep(DEFAULT_NOT_READY_WINDOW).await;
        api.insert(node_object(&identity));
    });
}

/// A Ready Node, as the kubelet of a healthy Talos machine registers it.
fn node_object(identity: &NodeIdentity) -> serde_json::Value {
    let mut labels = json!({
        "kubernetes.io/hostname": identity.hostname,
        "kubernetes.io/os": "linux",
    });
    if identity.role == "controlplane" {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": identity.hostname, "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"}],
            "addresses": [
                {"type": "InternalIP", "address": identity.address.ip().to_string()},
                {"type": "Hostname", "address": identity.hostname},
            ],
            "nodeInfo": {"osImage": "Talos (InfraFlux lab)", "operatingSystem": "linux",
                "architecture": "amd64", "kubeletVersion": identity.kubelet_version},
        },
    })
}

#[async_trait]
impl Machines for LabMachines {
    async fn started(&self, vm: Booted) -> Result<(), String> {
        let ip: IpAddr = vm.ipv4.ok_or_else(|| {
            format!(
                "VM {} ({}) has no ipconfig0 address: the lab starts its Talos node there",
                vm.vmid, vm.name
            )
        })?;
        if !ip.is_loopback() {
            return Err(format!(
                "VM {} ({}) has address {ip}: lab VMs run on loopback addresses (127.x.y.z); run with the lab's overlay",
                vm.vmid, vm.name
            ));
        }
        let node = FakeNode::start_on(SocketAddr::new(ip, TALOS_PORT))
            .await
            .map_err(|e| format!("cannot start the Talos node on {ip}:{TALOS_PORT}: {e}"))?;
        node.use_trustd(&self.trustd);
        node.use_etcd(&self.etcd);
        if self.inner().drop_first_apply.remove(&vm.name) {
            tracing::info!(vm = %vm.name, "this node drops its first apply ({DROP_FIRST_APPLY_VAR})");
            node.drop_connection_on_next_apply();
        }
        let machines = self.clone();
        node.on_event(Arc::new(move |event| {
            let machines = machines.clone();
            Box::pin(async move { machines.on_event(event).await })
        }));
        let previous = self.inner().nodes.insert(vm.vmid, node);
        if let Some(previous) = previous {
            previous.stop().await;
        }
        Ok(())
    }

    async fn stopped(&self, vmid: u32) {
        let (node, api) = {
            let mut inner = self.inner();
            let Some(node) = inner.nodes.remove(&vmid) else {
                return;
            };
            // The API goes when the last machine of its cluster does.
            let endpoint = node.identity().map(|i| i.endpoint);
            let still_running = inner
                .nodes
                .values()
                .any(|n| n.identity().map(|i| i.endpoint) == endpoint);
            let api = match endpoint {
                Some(endpoint) if !still_running => inner.apis.remove(&endpoint),
                _ => None,
            };
            (node, api)
        };
        node.stop().await;
        drop(api);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booted(ipv4: Option<&str>) -> Booted {
        Booted {
            vmid: 1000,
            name: "dev-workload-cp-1".into(),
            node: "pve1".into(),
            ipv4: ipv4.map(|ip| ip.parse().unwrap()),
        }
    }

    #[tokio::test]
    async fn a_vm_runs_a_talos_node_on_its_address_until_it_stops() {
        let machines = LabMachines::new();
        // An address of this process's own, so parallel tests do not meet.
        let ip = format!("127.{}.0.10", 1 + std::process::id() % 250);
        machines.started(booted(Some(&ip))).await.unwrap();
        let address: SocketAddr = format!("{ip}:{TALOS_PORT}").parse().unwrap();
        assert_eq!(machines.listeners(), [address]);
        assert!(tokio::net::TcpStream::connect(address).await.is_ok());
        machines.stopped(1000).await;
        assert!(machines.listeners().is_empty());
        assert!(tokio::net::TcpStream::connect(address).await.is_err());
    }

    #[tokio::test]
    async fn a_vm_without_a_loopback_address_does_not_start() {
        let machines = LabMachines::new();
        let error = machines
            .started(booted(Some("10.0.0.10")))
            .await
            .unwrap_err();
        assert!(error.contains("loopback"), "{error}");
        let error = machines.started(booted(None)).await.unwrap_err();
        assert!(error.contains("no ipconfig0 address"), "{error}");
        assert!(machines.listeners().is_empty());
    }

    #[test]
    fn endpoints_are_read_as_socket_addresses() {
        assert_eq!(
            endpoint_address("https://127.0.0.5:6443"),
            Some("127.0.0.5:6443".parse().unwrap())
        );
        assert_eq!(endpoint_address("https://cluster.example:6443"), None);
    }
}
