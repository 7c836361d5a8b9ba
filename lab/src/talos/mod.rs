//! A fake Talos node: an in-process tonic server on a loopback address that speaks the
//! same `machine.MachineService` subset as a real node and keeps the state a
//! provisioner cares about. It must never be kinder than a real node: where it differs
//! from Talos 1.13 in a way a client could notice, that is a bug here.
//!
//! - **maintenance**: a self-signed certificate, no client authentication; accepts
//!   `ApplyConfiguration` (answered `NO_REBOOT`, as machined does for a `REBOOT` or
//!   `AUTO` request without a config) and `Version`.
//! - **configured** (after an apply): serves a certificate issued by the Talos API CA
//!   found in the applied config and, like apid, requires and verifies a client
//!   certificate in the TLS handshake: a missing or foreign one is refused there.
//!   Changes Talos cannot make in place are refused in `NO_REBOOT` mode
//!   (`InvalidArgument`) and reboot the node in `AUTO`/`REBOOT` mode.
//! - **not ready**: for a while after a config is applied and after every reboot
//!   (container runtime and etcd still starting), `Bootstrap` answers
//!   `FailedPrecondition: bootstrap is not available yet` and kubelet/etcd are not
//!   healthy. [`DEFAULT_NOT_READY_WINDOW`], [`FakeNode::set_not_ready_window`].
//! - **kubelet restart**: a config applied in place that changes `machine.kubelet`
//!   (its image: a Kubernetes upgrade) restarts the kubelet, as Talos's kubelet
//!   controller does: not healthy for the not-ready window, etcd untouched.
//! - **rebooting**: shortly after answering a call that reboots it (an apply needing a
//!   reboot, `Upgrade`, `Reset`), the node resets every connection and refuses new
//!   ones for [`DEFAULT_REBOOT_WINDOW`] ([`FakeNode::set_reboot_window`]), then comes
//!   back not ready. `Upgrade` comes back on the installer image's tag; `Reset` (wiping
//!   the system disk) comes back in maintenance mode on the boot medium's version.
//! - **bootstrapped** (after `Bootstrap` on a control plane): etcd has its first
//!   member, a second `Bootstrap` returns `AlreadyExists`, `Kubeconfig` streams a real
//!   gzip tar. etcd membership and quorum across nodes: see [`Etcd`].
//!
//! `Version` reports the version the node runs: the boot medium's
//! ([`DEFAULT_VERSION`], [`FakeNode::set_version`]) in maintenance mode, the installer
//! image's tag once a config installed it or an upgrade replaced it.
//!
//! Fault injection: [`FakeNode::drop_connection_on_next_apply`] makes the next
//! `ApplyConfiguration` cut every open connection instead of answering, without applying.
//!
//! For the engine's lab, where fake nodes come and go with simulated VMs:
//! [`FakeNode::on_event`] reports a node configured or a cluster bootstrapped (with a
//! Kubernetes API server certificate issued by the cluster's CA, so the lab can serve
//! that cluster's API at its endpoint), [`Trustd`] plays trustd across nodes (a worker
//! configured before any control plane gets its API certificate once one is), and
//! [`Etcd`] holds each cluster's etcd members across nodes.
//!
//! Not modelled: the install-and-reboot a node booted from an ISO goes through after
//! its first config (here the node only goes through its not-ready window), time sync,
//! draining, learners.

mod config;
mod etcd;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

use infraflux_talos::api::generated::machine::machine_service_server::MachineServiceServer;
use infraflux_talos::api::{certificates, crypto_provider, private_key};
use infraflux_talos::secrets::{CertificateAndKey, issue_server_certificate};

use config::NodePki;
pub use etcd::{Etcd, MemberStatus};
use etcd::{LocalEtcd, NodeView};
use service::FakeService;

/// How long a TLS handshake may take before the fake gives up on a connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Kubeconfig stream chunk size; small, so clients must reassemble several chunks.
const CHUNK: usize = 512;
/// The not-ready window after a config apply and after each reboot, unless set. A real
/// node takes seconds to minutes; the lab keeps it short but never zero.
pub const DEFAULT_NOT_READY_WINDOW: Duration = Duration::from_millis(300);
/// How long a reboot keeps the node unreachable, unless set.
pub const DEFAULT_REBOOT_WINDOW: Duration = Duration::from_millis(300);
/// The Talos version a fake node boots (its ISO) unless set.
pub const DEFAULT_VERSION: &str = "v1.13.9";
/// Between answering a call that reboots the node and going down. A real node answers
/// first and then runs its reboot sequence (seconds of stopping services); this must
/// leave the answer time to reach the client.
const REBOOT_DELAY: Duration = Duration::from_millis(200);
/// An "until further notice" deadline (tests that end a window by hand).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Maintenance,
    Configured,
    Bootstrapped,
}

/// One `ApplyConfiguration` the fake accepted.
#[derive(Debug, Clone)]
pub struct AppliedConfig {
    pub requested_mode: i32,
    /// Whether the connection carried a verified client certificate.
    pub authenticated: bool,
    pub config: Vec<u8>,
}

/// Who a configured node is, from its applied config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Where its Talos API listens.
    pub address: SocketAddr,
    pub hostname: String,
    /// `controlplane` or `worker`.
    pub role: String,
    pub cluster_name: String,
    /// The cluster's Kubernetes endpoint, `https://<vip>:6443`.
    pub endpoint: String,
    /// The version its kubelet runs (`v1.34.1`, the kubelet image's tag).
    pub kubelet_version: Option<String>,
}

/// A cluster bootstrapped on a node: what it takes to serve its Kubernetes API.
#[derive(Clone)]
pub struct ClusterBootstrapped {
    pub node: NodeIdentity,
    /// The cluster's Kubernetes CA certificate (PEM): clients' certificates are issued
    /// by it, and the kubeconfig trusts it.
    pub kubernetes_ca_crt: String,
    /// A server certificate for the endpoint's host, issued by the Kubernetes CA, with
    /// its key (PEM).
    pub api_server: CertificateAndKey,
}

/// What a fake node reports to its [`NodeHook`].
#[derive(Clone)]
pub enum NodeEvent {
    /// A config was applied (first or again).
    Configured(NodeIdentity),
    /// `Bootstrap` succeeded on this control plane. Reported before the call answers, so
    /// whatever the hook starts is up when the client hears "bootstrapped".
    Bootstrapped(ClusterBootstrapped),
}

/// Called on every [`NodeEvent`]; the node awaits the returned future.
pub type NodeHook =
    Arc<dyn Fn(NodeEvent) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Plays trustd for a set of fake nodes (see the module docs). Clones share the CAs.
#[derive(Clone, Default)]
pub struct Trustd(Arc<Mutex<Vec<CertificateAndKey>>>);

impl Trustd {
    pub fn new() -> Self {
        Trustd::default()
    }

    fn register(&self, ca: &CertificateAndKey) {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !known.iter().any(|k| k.crt == ca.crt) {
            known.push(ca.clone());
        }
    }

    /// The CA (with its key) whose certificate is `crt`, once a control plane has it.
    fn find(&self, crt: &str) -> Option<CertificateAndKey> {
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known.iter().find(|k| k.crt == crt).cloned()
    }
}

/// Whether the node runs.
#[derive(Debug, Clone)]
enum Power {
    Running,
    /// Answering still until `from`, down from `from` to `until`, then `after`.
    Rebooting {
        from: Instant,
        until: Instant,
        after: AfterReboot,
    },
    /// Down from `from` on, for good.
    Halted {
        from: Instant,
    },
}

/// What a reboot changes.
#[derive(Debug, Clone)]
enum AfterReboot {
    /// Same system; a staged config takes effect.
    Restart,
    /// Comes back on this version.
    Upgrade(String),
    /// System disk wiped: maintenance mode, on the boot medium's version.
    Wipe,
}

struct State {
    stage: Stage,
    config: Option<Vec<u8>>,
    pki: Option<NodePki>,
    applies: Vec<AppliedConfig>,
    bootstrap_calls: usize,
    drop_next_apply: bool,
    /// Stands in for trustd on the control planes: issues a worker's API certificate.
    trustd_ca: Option<CertificateAndKey>,
    /// Shared trustd of a lab (see [`Trustd`]).
    trustd: Option<Trustd>,
    hook: Option<NodeHook>,
    /// The etcd clusters this node's cluster lives in (its own unless shared).
    etcd: Etcd,
    local_etcd: LocalEtcd,
    /// The version of the boot medium (maintenance mode) and the one running.
    boot_version: String,
    version: String,
    power: Power,
    ready_at: Instant,
    /// Until then the kubelet restarts (an in-place change of its config: a new
    /// Kubernetes version, extra args): not healthy, while etcd runs on.
    kubelet_ready_at: Instant,
    not_ready_window: Duration,
    reboot_window: Duration,
    /// A config was applied with a reboot: further applies wait for it.
    reboot_pending: bool,
    /// A config applied in `STAGED` mode, in force after the next reboot.
    staged: Option<(Vec<u8>, NodePki)>,
    reboots: usize,
    /// Sequences that failed after their call was answered (e.g. a graceful reset that
    /// etcd refused to let leave).
    sequence_errors: Vec<String>,
}

impl State {
    /// Finish a reboot whose time is up. Done whenever the state is looked at, so the
    /// node needs no timer of its own.
    fn settle(&mut self, now: Instant) {
        let Power::Rebooting { until, .. } = self.power else {
            return;
        };
        if now < until {
            return;
        }
        let Power::Rebooting { after, .. } = std::mem::replace(&mut self.power, Power::Running)
        else {
            return;
        };
        self.reboots += 1;
        self.reboot_pending = false;
        self.ready_at = until + self.not_ready_window;
        if self.local_etcd == LocalEtcd::Stopped {
            self.local_etcd = LocalEtcd::Fresh;
        }
        match after {
            AfterReboot::Wipe => self.wipe(),
            AfterReboot::Restart | AfterReboot::Upgrade(_) => {
                if let Some((config, pki)) = self.staged.take() {
                    self.config = Some(config);
                    self.pki = Some(pki);
                }
                if let AfterReboot::Upgrade(version) = after {
                    self.version = version;
                }
            }
        }
    }

    /// Back to maintenance mode: no config, no etcd data, the boot medium's system.
    fn wipe(&mut self) {
        self.stage = Stage::Maintenance;
        self.config = None;
        self.pki = None;
        self.staged = None;
        self.local_etcd = LocalEtcd::Fresh;
        self.version = self.boot_version.clone();
    }

    fn is_down(&self, now: Instant) -> bool {
        match self.power {
            Power::Running => false,
            Power::Rebooting { from, .. } | Power::Halted { from } => now >= from,
        }
    }

    /// Up, not about to go down, and past the not-ready window.
    fn is_ready(&self, now: Instant) -> bool {
        matches!(self.power, Power::Running) && now >= self.ready_at
    }

    fn kubelet_is_ready(&self, now: Instant) -> bool {
        self.is_ready(now) && now >= self.kubelet_ready_at
    }
}

struct Shared {
    address: SocketAddr,
    state: Mutex<State>,
    /// Cancelled to cut every open connection; replaced by a fresh token afterwards.
    kill: Mutex<CancellationToken>,
    maintenance_identity: CertificateAndKey,
}

impl Shared {
    /// The node's state, settled to now. Never held while calling into [`Etcd`] (which
    /// locks the states of its nodes).
    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.settle(Instant::now());
        state
    }

    fn etcd_view(&self) -> NodeView {
        let state = self.state();
        NodeView {
            cluster: state.pki.as_ref().map(|p| p.cluster_key().to_string()),
            control_plane: state.pki.as_ref().is_some_and(NodePki::is_control_plane),
            hostname: state
                .pki
                .as_ref()
                .map(|p| p.hostname.clone())
                .unwrap_or_default(),
            ip: self.address.ip(),
            ready: state.is_ready(Instant::now()),
            local: state.local_etcd,
        }
    }

    fn set_local_etcd(&self, local: LocalEtcd) {
        self.state().local_etcd = local;
    }

    /// Go down [`REBOOT_DELAY`] from now for the reboot window, then come back `after`.
    fn begin_reboot(self: &Arc<Self>, after: AfterReboot) {
        let from = Instant::now() + REBOOT_DELAY;
        {
            let mut state = self.state();
            let until = from + state.reboot_window;
            state.power = Power::Rebooting { from, until, after };
        }
        self.cut_connections_at(from);
    }

    /// Power off [`REBOOT_DELAY`] from now, for good.
    fn halt(self: &Arc<Self>) {
        let from = Instant::now() + REBOOT_DELAY;
        self.state().power = Power::Halted { from };
        self.cut_connections_at(from);
    }

    fn cut_connections_at(self: &Arc<Self>, at: Instant) {
        let shared = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(shared) = shared.upgrade() {
                shared.cut_connections();
            }
        });
    }

    fn kill_token(&self) -> CancellationToken {
        self.kill
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn cut_connections(&self) {
        let mut kill = self
            .kill
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        kill.cancel();
        *kill = CancellationToken::new();
    }

    /// TLS settings for a new connection, by the node's current stage.
    fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let provider = crypto_provider();
        let pki = self.state().pki.clone();
        let node = self.address.to_string();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match pki {
            None => builder.with_no_client_auth().with_single_cert(
                certificates(&self.maintenance_identity.crt, &node).map_err(|e| e.to_string())?,
                private_key(&self.maintenance_identity.key, &node).map_err(|e| e.to_string())?,
            ),
            Some(pki) => {
                let server = match &pki.server {
                    Some(server) => server.clone(),
                    None => self.certificate_from_trustd(&pki.os_ca)?,
                };
                let mut roots = rustls::RootCertStore::empty();
                for certificate in certificates(&pki.os_ca.crt, &node).map_err(|e| e.to_string())? {
                    roots.add(certificate).map_err(|e| e.to_string())?;
                }
                // As apid does (client auth "mutual": require and verify), a connection
                // without a certificate of this cluster fails in the handshake itself.
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| e.to_string())?;
                builder
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(
                        certificates(&server.crt, &node).map_err(|e| e.to_string())?,
                        private_key(&server.key, &node).map_err(|e| e.to_string())?,
                    )
            }
        }
        .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// A worker's API certificate from the lab's trustd, kept once issued. Until a control
    /// plane of its cluster is configured there is none, and connections are refused.
    fn certificate_from_trustd(
        &self,
        os_ca: &CertificateAndKey,
    ) -> Result<CertificateAndKey, String> {
        let trustd = self.state().trustd.clone();
        let ca = trustd
            .and_then(|t| t.find(&os_ca.crt))
            .ok_or("no API certificate yet: waiting for trustd on a control plane")?;
        let server =
            issue_server_certificate(&ca, &[self.address.ip()]).map_err(|e| e.to_string())?;
        if let Some(pki) = self.state().pki.as_mut() {
            pki.server = Some(server.clone());
        }
        Ok(server)
    }
}

/// A running fake node. Dropping it stops the server.
pub struct FakeNode {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Start on `127.0.0.1:0` (an ephemeral port).
    pub async fn start() -> std::io::Result<FakeNode> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start on a given loopback address (`127.x.y.z:port`), e.g. to give several fake
    /// nodes distinct IPs. Non-loopback addresses are refused.
    pub async fn start_on(address: SocketAddr) -> std::io::Result<FakeNode> {
        if !address.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the fake Talos node listens on loopback addresses only",
            ));
        }
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let maintenance_identity = {
            let key = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
            let params = rcgen::CertificateParams::new(vec![address.ip().to_string()])
                .map_err(std::io::Error::other)?;
            let crt = params.self_signed(&key).map_err(std::io::Error::other)?;
            CertificateAndKey {
                crt: crt.pem(),
                key: key.serialize_pem(),
            }
        };
        let shared = Arc::new(Shared {
            address,
            state: Mutex::new(State {
                stage: Stage::Maintenance,
                config: None,
                pki: None,
                applies: Vec::new(),
                bootstrap_calls: 0,
                drop_next_apply: false,
                trustd_ca: None,
                trustd: None,
                hook: None,
                etcd: Etcd::new(),
                local_etcd: LocalEtcd::Fresh,
                boot_version: DEFAULT_VERSION.to_string(),
                version: DEFAULT_VERSION.to_string(),
                power: Power::Running,
                ready_at: Instant::now(),
                kubelet_ready_at: Instant::now(),
                not_ready_window: DEFAULT_NOT_READY_WINDOW,
                reboot_window: DEFAULT_REBOOT_WINDOW,
                reboot_pending: false,
                staged: None,
                reboots: 0,
                sequence_errors: Vec::new(),
            }),
            kill: Mutex::new(CancellationToken::new()),
            maintenance_identity,
        });
        let shutdown = CancellationToken::new();
        let (sender, receiver) = mpsc::channel::<std::io::Result<FakeIo>>(16);
        tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            sender,
            shutdown.clone(),
        ));
        let service = MachineServiceServer::new(FakeService::new(shared.clone()));
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(ReceiverStream::new(receiver), stop.cancelled_owned())
                .await;
        });
        Ok(FakeNode {
            shared,
            shutdown,
            task: Some(task),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// `host:port` for clients.
    pub fn endpoint(&self) -> String {
        self.shared.address.to_string()
    }

    pub fn stage(&self) -> Stage {
        self.shared.state().stage
    }

    /// Every accepted `ApplyConfiguration`, oldest first.
    pub fn applies(&self) -> Vec<AppliedConfig> {
        self.shared.state().applies.clone()
    }

    /// The config currently in force.
    pub fn config(&self) -> Option<Vec<u8>> {
        self.shared.state().config.clone()
    }

    pub fn bootstrap_calls(&self) -> usize {
        self.shared.state().bootstrap_calls
    }

    /// The Talos version the node runs now.
    pub fn version(&self) -> String {
        self.shared.state().version.clone()
    }

    /// The version of the node's boot medium (what maintenance mode runs, and what a
    /// wiped node comes back on). Set before the node is configured.
    pub fn set_version(&self, version: &str) {
        let mut state = self.shared.state();
        state.boot_version = version.to_string();
        if state.pki.is_none() {
            state.version = version.to_string();
        }
    }

    /// How long the node stays not ready after a config apply and after each reboot.
    pub fn set_not_ready_window(&self, window: Duration) {
        self.shared.state().not_ready_window = window.min(FOREVER);
    }

    /// How long a reboot keeps the node down.
    pub fn set_reboot_window(&self, window: Duration) {
        self.shared.state().reboot_window = window.min(FOREVER);
    }

    /// End the current not-ready window now.
    pub fn become_ready(&self) {
        self.shared.state().ready_at = Instant::now();
    }

    /// End the current reboot now (the node comes back, not ready yet).
    pub fn finish_reboot(&self) {
        let now = Instant::now();
        let mut state = self.shared.state();
        if let Power::Rebooting { from, until, .. } = &mut state.power {
            *from = (*from).min(now);
            *until = now;
        }
        state.settle(now);
    }

    /// Whether the node is down (rebooting or halted): connections are reset.
    pub fn is_down(&self) -> bool {
        self.shared.state().is_down(Instant::now())
    }

    /// Completed reboots.
    pub fn reboots(&self) -> usize {
        self.shared.state().reboots
    }

    /// Sequences that failed after their call was answered, oldest first.
    pub fn sequence_errors(&self) -> Vec<String> {
        self.shared.state().sequence_errors.clone()
    }

    /// The etcd members of this node's cluster (empty before bootstrap or when not
    /// configured).
    pub fn etcd_members(&self) -> Vec<MemberStatus> {
        let (etcd, cluster) = {
            let state = self.shared.state();
            (
                state.etcd.clone(),
                state.pki.as_ref().map(|p| p.cluster_key().to_string()),
            )
        };
        cluster.map(|c| etcd.members(&c)).unwrap_or_default()
    }

    /// The next `ApplyConfiguration` cuts all connections instead of answering, and the
    /// config is not applied.
    pub fn drop_connection_on_next_apply(&self) {
        self.shared.state().drop_next_apply = true;
    }

    /// A worker's config carries the Talos API CA certificate without its key; a real
    /// worker gets its API certificate from trustd on the control planes. Give the fake
    /// the CA (certificate and key) to play that part.
    pub fn emulate_trustd(&self, os_ca: &CertificateAndKey) {
        self.shared.state().trustd_ca = Some(os_ca.clone());
    }

    /// Use a trustd shared with other fake nodes (see [`Trustd`]).
    pub fn use_trustd(&self, trustd: &Trustd) {
        self.shared.state().trustd = Some(trustd.clone());
    }

    /// Keep etcd membership in `etcd`, shared with the other nodes of the cluster
    /// (before the node is configured). Without it a node has an etcd of its own.
    pub fn use_etcd(&self, etcd: &Etcd) {
        self.shared.state().etcd = etcd.clone();
    }

    /// Report configuration and bootstrap to `hook` (see [`NodeEvent`]).
    pub fn on_event(&self, hook: NodeHook) {
        self.shared.state().hook = Some(hook);
    }

    /// Who the node is, once configured.
    pub fn identity(&self) -> Option<NodeIdentity> {
        self.shared
            .state()
            .pki
            .as_ref()
            .map(|pki| config::identity(pki, self.shared.address))
    }

    /// Stop the server and wait for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.shared.cut_connections();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.shared.cut_connections();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    sender: mpsc::Sender<std::io::Result<FakeIo>>,
    shutdown: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        if shared.state().is_down(Instant::now()) {
            // Rebooting: the connection is reset (RST), as a host whose API is gone.
            let _ = tcp.set_zero_linger();
            drop(tcp);
            continue;
        }
        let shared = shared.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            if let Some(io) = handshake(tcp, &shared).await {
                let _ = sender.send(Ok(io)).await;
            }
        });
    }
}

async fn handshake(tcp: TcpStream, shared: &Shared) -> Option<FakeIo> {
    // Taken first, so a reboot during the handshake cuts this connection too.
    let killed = shared.kill_token().cancelled_owned();
    let config = shared.server_config().ok()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .ok()?
        .ok()?;
    let authenticated = tls.get_ref().1.peer_certificates().is_some();
    Some(FakeIo {
        inner: tls,
        info: ConnectionInfo { authenticated },
        killed: Box::pin(killed),
    })
}

/// Per-connection facts handed to the handlers.
#[derive(Debug, Clone, Copy)]
struct ConnectionInfo {
    authenticated: bool,
}

/// A TLS connection that fails with "connection reset" once its kill token fires.
struct FakeIo {
    inner: TlsStream<TcpStream>,
    info: ConnectionInfo,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl FakeIo {
    fn check_killed(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        self.killed.as_mut().poll(cx).is_ready().then(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fake node cut the connection",
            )
        })
    }
}

impl Connected for FakeIo {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info
    }
}

impl AsyncRead for FakeIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(error) = self.check_killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FakeIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(error) = self.check_killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(error) = self.check_killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
