//! A fake Talos node: an in-process tonic server on a
//! loopback address that speaks the same `machine.MachineService` subset as a real node
//! and keeps the state a provisioner cares about.
//!
//! - **maintenance**: a self-signed certificate, no client authentication; accepts
//!   `ApplyConfiguration` and `Version` only.
//! - **configured** (after an apply): serves a certificate issued by the Talos API CA
//!   found in the applied config, verifies client certificates against it, and rejects
//!   every call from a connection without a valid client certificate.
//! - **bootstrapped** (after `Bootstrap` on a control plane): etcd is healthy, a second
//!   `Bootstrap` returns `AlreadyExists`, `Kubeconfig` streams a real gzip tar.
//!
//! Fault injection: [`FakeNode::drop_connection_on_next_apply`] makes the next
//! `ApplyConfiguration` cut every open connection instead of answering, without applying.
//!
//! For the engine's lab, where fake nodes come and go with simulated VMs:
//! [`FakeNode::on_event`] reports a node configured or a cluster bootstrapped (with a
//! Kubernetes API server certificate issued by the cluster's CA, so the lab can serve
//! that cluster's API at its endpoint), and [`Trustd`] plays trustd across nodes: a
//! worker configured before any control plane gets its API certificate once one is.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::server::WebPkiClientVerifier;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use infraflux_talos::api::generated::common::Data;
use infraflux_talos::api::generated::machine::apply_configuration_request::Mode;
use infraflux_talos::api::generated::machine::machine_service_server::{
    MachineService, MachineServiceServer,
};
use infraflux_talos::api::generated::machine::{
    ApplyConfiguration, ApplyConfigurationRequest, ApplyConfigurationResponse, Bootstrap,
    BootstrapRequest, BootstrapResponse, EtcdMember, EtcdMemberListRequest, EtcdMemberListResponse,
    EtcdMembers, PlatformInfo, ServiceHealth, ServiceInfo, ServiceList, ServiceListResponse,
    Version, VersionInfo, VersionResponse,
};
use infraflux_talos::api::{certificates, crypto_provider, pack_kubeconfig, private_key};
use infraflux_talos::config::parse_documents;
use infraflux_talos::secrets::{
    CertificateAndKey, issue_kubernetes_client_certificate, issue_kubernetes_server_certificate,
    issue_server_certificate,
};

/// How long a TLS handshake may take before the fake gives up on a connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Kubeconfig stream chunk size; small, so clients must reassemble several chunks.
const CHUNK: usize = 512;

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

/// What the fake learned from the applied config.
#[derive(Clone)]
struct NodePki {
    role: String,
    hostname: String,
    cluster_name: String,
    endpoint: String,
    os_ca: CertificateAndKey,
    kubernetes_ca: Option<CertificateAndKey>,
    /// `None` for a worker waiting for [`Trustd`] to issue it.
    server: Option<CertificateAndKey>,
    /// The parts of the config that need a reboot to change (install settings).
    install: Value,
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
}

struct Shared {
    address: SocketAddr,
    state: Mutex<State>,
    /// Cancelled to cut every open connection; replaced by a fresh token afterwards.
    kill: Mutex<CancellationToken>,
    maintenance_identity: CertificateAndKey,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
                // Unauthenticated connections are let through the handshake and refused
                // per call, so clients get a gRPC status rather than a TLS alert.
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
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
        let service = MachineServiceServer::new(FakeService {
            shared: shared.clone(),
        });
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
            .map(|pki| identity(pki, self.shared.address))
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
        killed: Box::pin(shared.kill_token().cancelled_owned()),
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

struct FakeService {
    shared: Arc<Shared>,
}

fn authenticated<T>(request: &Request<T>) -> bool {
    request
        .extensions()
        .get::<ConnectionInfo>()
        .is_some_and(|info| info.authenticated)
}

impl FakeService {
    /// Configured nodes answer only connections with a verified client certificate.
    fn require_configured<T>(&self, request: &Request<T>) -> Result<NodePki, Status> {
        let state = self.shared.state();
        match (&state.pki, authenticated(request)) {
            (None, _) => Err(Status::unimplemented(
                "the node is in maintenance mode: only ApplyConfiguration and Version are served",
            )),
            (Some(_), false) => Err(Status::unauthenticated(
                "client certificate required once the node is configured",
            )),
            (Some(pki), true) => Ok(pki.clone()),
        }
    }
}

fn string_at<'a>(documents: &'a [Value], kind: Option<&str>, path: &[&str]) -> Option<&'a str> {
    let document = documents.iter().find(|d| match kind {
        None => d.get("kind").is_none(),
        Some(kind) => d.get("kind").and_then(Value::as_str) == Some(kind),
    })?;
    let mut value = document;
    for key in path {
        value = value.get(key)?;
    }
    value.as_str()
}

fn identity(pki: &NodePki, address: SocketAddr) -> NodeIdentity {
    NodeIdentity {
        address,
        hostname: pki.hostname.clone(),
        role: pki.role.clone(),
        cluster_name: pki.cluster_name.clone(),
        endpoint: pki.endpoint.clone(),
    }
}

/// The bootstrap event: the API server certificate for the endpoint's host.
fn bootstrapped(pki: &NodePki, address: SocketAddr) -> Result<ClusterBootstrapped, Status> {
    let ca = pki
        .kubernetes_ca
        .as_ref()
        .ok_or_else(|| Status::failed_precondition("no Kubernetes CA key on this node"))?;
    let host = pki
        .endpoint
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    let (ips, names): (Vec<IpAddr>, Vec<&str>) = match host.parse::<IpAddr>() {
        Ok(ip) => (vec![ip], vec!["kubernetes", "kubernetes.default"]),
        Err(_) => (
            Vec::new(),
            vec![host, "kubernetes", "kubernetes.default"]
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
        ),
    };
    let api_server = issue_kubernetes_server_certificate(ca, &ips, &names)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(ClusterBootstrapped {
        node: identity(pki, address),
        kubernetes_ca_crt: ca.crt.clone(),
        api_server,
    })
}

fn decode_b64(value: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(value).ok()?).ok()
}

/// Read what the fake needs from an applied config (either Talos version's style).
fn read_config(
    data: &[u8],
    address: SocketAddr,
    trustd_ca: Option<&CertificateAndKey>,
    shared_trustd: bool,
) -> Result<NodePki, Status> {
    let invalid = |message: &str| Status::invalid_argument(format!("invalid config: {message}"));
    let text = std::str::from_utf8(data).map_err(|_| invalid("not UTF-8"))?;
    let documents = parse_documents(text).map_err(|m| invalid(&m))?;
    let role = string_at(&documents, None, &["machine", "type"])
        .ok_or_else(|| invalid("machine.type is missing"))?
        .to_string();
    let os_ca = CertificateAndKey {
        crt: string_at(&documents, None, &["machine", "ca", "crt"])
            .and_then(decode_b64)
            .ok_or_else(|| invalid("machine.ca.crt is missing or not base64"))?,
        key: string_at(&documents, None, &["machine", "ca", "key"])
            .and_then(decode_b64)
            .unwrap_or_default(),
    };
    let endpoint = string_at(&documents, None, &["cluster", "controlPlane", "endpoint"])
        .or_else(|| string_at(&documents, Some("KubeClusterConfig"), &["endpoint"]))
        .unwrap_or_default()
        .to_string();
    let cluster_name = string_at(&documents, None, &["cluster", "clusterName"])
        .or_else(|| string_at(&documents, Some("KubeClusterConfig"), &["clusterName"]))
        .unwrap_or("cluster")
        .to_string();
    let hostname = string_at(&documents, Some("HostnameConfig"), &["hostname"])
        .unwrap_or("talos-fake")
        .to_string();
    let kubernetes_ca = match (
        string_at(&documents, None, &["cluster", "ca", "crt"]).and_then(decode_b64),
        string_at(&documents, None, &["cluster", "ca", "key"]).and_then(decode_b64),
    ) {
        (Some(crt), Some(key)) if !key.is_empty() => Some(CertificateAndKey { crt, key }),
        _ => match (
            string_at(
                &documents,
                Some("KubeAPIServerCAConfig"),
                &["issuingCA", "cert"],
            ),
            string_at(
                &documents,
                Some("KubeAPIServerCAConfig"),
                &["issuingCA", "key"],
            ),
        ) {
            (Some(crt), Some(key)) => Some(CertificateAndKey {
                crt: crt.to_string(),
                key: key.to_string(),
            }),
            _ => None,
        },
    };
    let install = documents
        .iter()
        .find(|d| d.get("kind").is_none())
        .and_then(|d| d.pointer("/machine/install"))
        .cloned()
        .or_else(|| {
            documents
                .iter()
                .find(|d| d.get("kind").and_then(Value::as_str) == Some("UnattendedInstallConfig"))
                .cloned()
        })
        .unwrap_or(Value::Null);
    let issuer = match trustd_ca {
        _ if !os_ca.key.is_empty() => Some(&os_ca),
        Some(trustd) if trustd.crt == os_ca.crt => Some(trustd),
        // Issued later, when a connection comes and trustd has the CA.
        _ if shared_trustd => None,
        _ => {
            return Err(Status::failed_precondition(
                "no Talos API CA key in the config and no trustd to issue a certificate",
            ));
        }
    };
    let server = issuer
        .map(|issuer| {
            issue_server_certificate(issuer, &[address.ip()])
                .map_err(|e| invalid(&format!("machine.ca cannot issue certificates: {e}")))
        })
        .transpose()?;
    Ok(NodePki {
        role,
        hostname,
        cluster_name,
        endpoint,
        os_ca,
        kubernetes_ca,
        server,
        install,
    })
}

fn kubeconfig_yaml(pki: &NodePki) -> Result<String, Status> {
    let ca = pki
        .kubernetes_ca
        .as_ref()
        .ok_or_else(|| Status::failed_precondition("no Kubernetes CA key on this node"))?;
    let client = issue_kubernetes_client_certificate(ca, "system:masters", "admin")
        .map_err(|e| Status::internal(e.to_string()))?;
    let name = &pki.cluster_name;
    let user = format!("admin@{name}");
    let document = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": pki.endpoint,
            "certificate-authority-data": STANDARD.encode(&ca.crt),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": STANDARD.encode(&client.crt),
            "client-key-data": STANDARD.encode(&client.key),
        }}],
        "contexts": [{"name": user, "context": {"cluster": name, "namespace": "default", "user": user}}],
        "current-context": user,
    });
    serde_yaml::to_string(&document).map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl MachineService for FakeService {
    async fn apply_configuration(
        &self,
        request: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        let authenticated = authenticated(&request);
        let message = request.into_inner();
        let requested = Mode::try_from(message.mode).unwrap_or(Mode::Reboot);
        let drop_connection = std::mem::take(&mut self.shared.state().drop_next_apply);
        if drop_connection {
            self.shared.cut_connections();
            // Never answer: the client sees the connection break mid-call.
            std::future::pending::<()>().await;
        }
        let (trustd_ca, trustd) = {
            let state = self.shared.state();
            (state.trustd_ca.clone(), state.trustd.clone())
        };
        let pki = read_config(
            &message.data,
            self.shared.address,
            trustd_ca.as_ref(),
            trustd.is_some(),
        )?;
        if let Some(trustd) = &trustd
            && !pki.os_ca.key.is_empty()
        {
            trustd.register(&pki.os_ca);
        }
        let event = NodeEvent::Configured(identity(&pki, self.shared.address));
        // The lock is released before the hook is awaited (the guard is not `Send`).
        let (mode, details, hook) = {
            let mut state = self.shared.state();
            let (mode, details) = match &state.pki {
                None => {
                    state.stage = Stage::Configured;
                    (
                        Mode::Reboot,
                        "Applied configuration: the node installs Talos and reboots".to_string(),
                    )
                }
                Some(_) if !authenticated => {
                    return Err(Status::unauthenticated(
                        "client certificate required once the node is configured",
                    ));
                }
                Some(current) => {
                    let unchanged = state.config.as_deref() == Some(message.data.as_slice());
                    let needs_reboot = current.install != pki.install;
                    match (requested, unchanged, needs_reboot) {
                        (_, true, _) => (Mode::NoReboot, "No changes".to_string()),
                        (Mode::NoReboot, false, true) => {
                            return Err(Status::failed_precondition(
                                "install settings changed: this change requires a reboot",
                            ));
                        }
                        (Mode::Reboot, false, _) | (Mode::Auto, false, true) => (
                            Mode::Reboot,
                            "Applied configuration with a reboot".to_string(),
                        ),
                        (Mode::Staged, false, _) => (
                            Mode::Staged,
                            "Staged configuration to be applied after the next reboot".to_string(),
                        ),
                        _ => (
                            Mode::NoReboot,
                            "Applied configuration without a reboot".to_string(),
                        ),
                    }
                }
            };
            // Keep the Kubernetes CA learned from a control-plane config.
            state.pki = Some(pki);
            state.config = Some(message.data.clone());
            state.applies.push(AppliedConfig {
                requested_mode: message.mode,
                authenticated,
                config: message.data,
            });
            (mode, details, state.hook.clone())
        };
        if let Some(hook) = hook {
            hook(event).await;
        }
        Ok(Response::new(ApplyConfigurationResponse {
            messages: vec![ApplyConfiguration {
                metadata: None,
                warnings: Vec::new(),
                mode: mode as i32,
                mode_details: details,
            }],
        }))
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        let pki = self.require_configured(&request)?;
        let hook = {
            let mut state = self.shared.state();
            state.bootstrap_calls += 1;
            if pki.role != "controlplane" {
                return Err(Status::failed_precondition(
                    "bootstrap is only supported on control plane nodes",
                ));
            }
            if state.stage == Stage::Bootstrapped {
                return Err(Status::already_exists("etcd data directory is not empty"));
            }
            state.hook.clone()
        };
        if let Some(hook) = hook {
            hook(NodeEvent::Bootstrapped(bootstrapped(
                &pki,
                self.shared.address,
            )?))
            .await;
        }
        self.shared.state().stage = Stage::Bootstrapped;
        Ok(Response::new(BootstrapResponse {
            messages: vec![Bootstrap { metadata: None }],
        }))
    }

    async fn etcd_member_list(
        &self,
        request: Request<EtcdMemberListRequest>,
    ) -> Result<Response<EtcdMemberListResponse>, Status> {
        let pki = self.require_configured(&request)?;
        if pki.role != "controlplane" || self.stage() != Stage::Bootstrapped {
            return Err(Status::failed_precondition(
                "etcd is not running on this node",
            ));
        }
        Ok(Response::new(EtcdMemberListResponse {
            messages: vec![EtcdMembers {
                metadata: None,
                legacy_members: Vec::new(),
                members: vec![EtcdMember {
                    id: 1,
                    hostname: pki.hostname.clone(),
                    peer_urls: vec![format!("https://{}:2380", self.shared.address.ip())],
                    client_urls: vec![format!("https://{}:2379", self.shared.address.ip())],
                    is_learner: false,
                }],
            }],
        }))
    }

    type KubeconfigStream = tokio_stream::Iter<std::vec::IntoIter<Result<Data, Status>>>;

    async fn kubeconfig(
        &self,
        request: Request<()>,
    ) -> Result<Response<Self::KubeconfigStream>, Status> {
        let pki = self.require_configured(&request)?;
        if pki.role != "controlplane" {
            return Err(Status::failed_precondition(
                "kubeconfig is only available on control plane nodes",
            ));
        }
        let yaml = kubeconfig_yaml(&pki)?;
        let archive =
            pack_kubeconfig(yaml.as_bytes()).map_err(|e| Status::internal(e.to_string()))?;
        let chunks: Vec<Result<Data, Status>> = archive
            .chunks(CHUNK)
            .map(|chunk| {
                Ok(Data {
                    metadata: None,
                    bytes: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    async fn service_list(
        &self,
        request: Request<()>,
    ) -> Result<Response<ServiceListResponse>, Status> {
        let pki = self.require_configured(&request)?;
        let stage = self.stage();
        let service = |id: &str, running: bool| ServiceInfo {
            id: id.to_string(),
            state: if running { "Running" } else { "Preparing" }.to_string(),
            events: None,
            health: Some(ServiceHealth {
                unknown: false,
                healthy: running,
                last_message: String::new(),
                last_change: None,
            }),
        };
        let mut services = vec![service("apid", true), service("kubelet", true)];
        if pki.role == "controlplane" {
            services.push(service("etcd", stage == Stage::Bootstrapped));
        }
        Ok(Response::new(ServiceListResponse {
            messages: vec![ServiceList {
                metadata: None,
                services,
            }],
        }))
    }

    async fn version(&self, request: Request<()>) -> Result<Response<VersionResponse>, Status> {
        let maintenance = self.stage() == Stage::Maintenance;
        if !maintenance && !authenticated(&request) {
            return Err(Status::unauthenticated(
                "client certificate required once the node is configured",
            ));
        }
        Ok(Response::new(VersionResponse {
            messages: vec![Version {
                metadata: None,
                version: Some(VersionInfo {
                    tag: "v1.13.9".into(),
                    sha: String::new(),
                    built: String::new(),
                    go_version: String::new(),
                    os: "linux".into(),
                    arch: "amd64".into(),
                }),
                platform: Some(PlatformInfo {
                    name: "metal".into(),
                    mode: if maintenance { "maintenance" } else { "metal" }.into(),
                }),
                features: None,
            }],
        }))
    }
}

impl FakeService {
    fn stage(&self) -> Stage {
        self.shared.state().stage
    }
}
